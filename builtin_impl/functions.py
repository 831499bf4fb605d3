"""The layers and losses of CS231n assignments 1-2 through PyTorch's builtins.

Each function takes the arguments of the ``torch_impl.functions`` Function of the same op, in the
same order (CS231n's layouts: affine w (D, M), groupnorm gamma (1, C, 1, 1), batchnorm's CS231n
momentum, ...), converts them with ``builtin_impl.conversions`` and calls the builtin. Shapes:
x (N, C, H, W) for the spatial ops, (N, D) or (N, d1, ..., dk) for affine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from builtin_impl.conversions import channel_vector, linear_weight, torch_momentum

Tensor = torch.Tensor


def affine(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """``F.linear(x.reshape(N, D), w.T, b)``: x (N, d1..dk) with D = d1*...*dk = w's rows.

    (D is taken from w, not -1, which is ambiguous when N = 0 or D = 0.)
    """
    return F.linear(x.reshape(x.shape[0], w.shape[0]), linear_weight(w), b)


def relu(x: Tensor) -> Tensor:
    return F.relu(x)


def conv(x: Tensor, w: Tensor, b: Tensor, stride: int = 1, pad: int = 0) -> Tensor:
    """``F.conv2d``: both cross-correlate with w (F, C, HH, WW) and use the floor rule; CS231n's
    ``pad`` is PyTorch's ``padding``."""
    return F.conv2d(x, w, b, stride=stride, padding=pad)


def max_pool(x: Tensor, pool_height: int = 2, pool_width: int = 2, stride: int = 2) -> Tensor:
    """``F.max_pool2d`` with a (pool_height, pool_width) window, no padding, floor rule."""
    return F.max_pool2d(x, (pool_height, pool_width), stride=stride)


def batchnorm(
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    training: bool,
    momentum: float = 0.9,
    eps: float = 1e-5,
) -> Tensor:
    """``F.batch_norm`` per column of x (N, D) or per channel of x (N, C, H, W), with PyTorch's
    momentum ``1 - momentum``; updates running_mean/running_var in place when training (PyTorch
    averages the unbiased variance there, see ``conversions.torch_momentum``)."""
    return F.batch_norm(
        x,
        running_mean,
        running_var,
        gamma,
        beta,
        training=training,
        momentum=torch_momentum(momentum),
        eps=eps,
    )


def layernorm(x: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
    """``F.layer_norm`` over gamma's dimensions (the last ones of x: D of x (N, D), E of the
    transformer's (N, S, E))."""
    return F.layer_norm(x, gamma.shape, gamma, beta, eps=eps)


def spatial_groupnorm(x: Tensor, gamma: Tensor, beta: Tensor, G: int, eps: float = 1e-5) -> Tensor:
    """``F.group_norm`` with CS231n's (1, C, 1, 1) gamma/beta as its (C,) weight/bias."""
    return F.group_norm(x, G, channel_vector(gamma), channel_vector(beta), eps=eps)


def svm_loss(x: Tensor, y: Tensor) -> Tensor:
    """CS231n's multiclass SVM loss = C * ``F.multi_margin_loss(x, y, p=1, margin=1)``:
    PyTorch averages the hinge terms over the C classes as well (sum_{j != y} / C), CS231n
    over the batch only."""
    return x.shape[1] * F.multi_margin_loss(x, y, p=1, margin=1.0)


def softmax_loss(x: Tensor, y: Tensor) -> Tensor:
    """``F.cross_entropy(x, y)``: the mean over N of -log softmax(x)[y], CS231n's definition."""
    return F.cross_entropy(x, y)


def conv_transpose(x: Tensor, w: Tensor, b: Tensor, stride: int = 1, pad: int = 0) -> Tensor:
    """``F.conv_transpose2d``: the same weight layout (C_in, C_out, kH, kW); CS231n's ``pad``
    is PyTorch's ``padding``."""
    return F.conv_transpose2d(x, w, b, stride=stride, padding=pad)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return F.leaky_relu(x, negative_slope)
