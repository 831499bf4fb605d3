"""CS231n's layer API on tensors: the NumPy forwards' names and arguments, minus the cache.

Each function validates its arguments exactly as ``numpy_impl.layers`` does (same
``twin_checks`` calls in the same order, hence the same messages), reads CS231n's param
dicts, and returns an autograd-tracked tensor computed by the matching ``torch_impl.functions``
Function. Param dicts follow the course:

- bn_param: 'mode' ('train'/'test', required), 'eps' (1e-5), 'momentum' (0.9),
  'running_mean'/'running_var' (created as zeros on x's device and dtype on first use, stored
  back into the dict, and updated IN PLACE by every train-mode call).
- ln_param / gn_param: 'eps' (1e-5); 'mode' accepted and ignored.
- dropout_param: 'p' (KEEP probability), 'mode' (required), optional 'seed' (a torch.Generator
  on x's device seeded with it, so every call with the same seed draws the same mask), optional
  'mask' (used as given, e.g. numpy_impl's cached mask).
- conv_param: 'stride', 'pad'. pool_param: 'pool_height', 'pool_width', 'stride'.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import twin_checks as _checks
from torch_impl._utils import as_buffer
from torch_impl.functions import (
    AffineFunction,
    BatchNormFunction,
    Conv2dFunction,
    DropoutFunction,
    LayerNormFunction,
    MaxPool2dFunction,
    ReLUFunction,
    SigmoidFunction,
    SoftmaxLossFunction,
    SpatialGroupNormFunction,
    SVMLossFunction,
    TanhFunction,
)

__all__ = [
    "affine",
    "relu",
    "sigmoid",
    "tanh",
    "batchnorm",
    "layernorm",
    "dropout",
    "conv",
    "max_pool",
    "spatial_batchnorm",
    "spatial_groupnorm",
    "svm_loss",
    "softmax_loss",
]


def affine(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """x: (N, d_1, ..., d_k); w: (D, M) with D = prod(d_i); b: (M,). Returns (N, M)."""
    return AffineFunction.apply(x, w, b)


def relu(x: Tensor) -> Tensor:
    """max(0, x) elementwise."""
    return ReLUFunction.apply(x)


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)) elementwise."""
    return SigmoidFunction.apply(x)


def tanh(x: Tensor) -> Tensor:
    """tanh(x) elementwise."""
    return TanhFunction.apply(x)


def _running_stats(bn_param: dict[str, Any], x: Tensor, C: int) -> tuple[Tensor, Tensor]:
    """bn_param's running buffers as tensors on x's device/dtype, stored back into the dict so
    the in-place updates of the Function reach the caller."""
    for key in ("running_mean", "running_var"):
        bn_param[key] = as_buffer(bn_param.get(key), x, C)
    return bn_param["running_mean"], bn_param["running_var"]


def batchnorm(x: Tensor, gamma: Tensor, beta: Tensor, bn_param: dict[str, Any]) -> Tensor:
    """Batch normalization. x: (N, D); gamma, beta: (D,); bn_param as in the module docstring.

    Train mode: batch mean and BIASED batch variance; running statistics updated in place as
    running = momentum * running + (1 - momentum) * batch_stat. Test mode: running statistics.
    """
    _checks.require_float("x", x)
    _checks.check_norm_args(x, gamma, beta, 2, (x.shape[-1] if x.ndim else None,), "(N, D)")
    mode, eps, momentum = _checks.check_bn_param(bn_param, x.shape[1])
    running_mean, running_var = _running_stats(bn_param, x, x.shape[1])
    return BatchNormFunction.apply(
        x, gamma, beta, running_mean, running_var, mode == "train", momentum, eps
    )


def spatial_batchnorm(x: Tensor, gamma: Tensor, beta: Tensor, bn_param: dict[str, Any]) -> Tensor:
    """Batchnorm per channel over (N, H, W). x: (N, C, H, W); gamma, beta: (C,); running
    statistics (C,); bn_param as in batchnorm."""
    _checks.require_float("x", x)
    C = x.shape[1] if x.ndim > 1 else None
    _checks.check_norm_args(x, gamma, beta, 4, (C,), "(N, C, H, W)")
    mode, eps, momentum = _checks.check_bn_param(bn_param, C)  # type: ignore[arg-type]
    running_mean, running_var = _running_stats(bn_param, x, C)  # type: ignore[arg-type]
    return BatchNormFunction.apply(
        x, gamma, beta, running_mean, running_var, mode == "train", momentum, eps
    )


def layernorm(x: Tensor, gamma: Tensor, beta: Tensor, ln_param: dict[str, Any]) -> Tensor:
    """Layer normalization of each row. x: (N, D); gamma, beta: (D,); ln_param: 'eps'."""
    _checks.require_float("x", x)
    _checks.check_norm_args(x, gamma, beta, 2, (x.shape[-1] if x.ndim else None,), "(N, D)")
    eps = _checks.check_norm_param(ln_param, "ln_param")
    return LayerNormFunction.apply(x, gamma, beta, eps)


def spatial_groupnorm(
    x: Tensor, gamma: Tensor, beta: Tensor, G: int, gn_param: dict[str, Any]
) -> Tensor:
    """Group normalization. x: (N, C, H, W); gamma, beta: (1, C, 1, 1); G divides C;
    gn_param: 'eps'."""
    _checks.require_float("x", x)
    C = x.shape[1] if x.ndim > 1 else None
    _checks.check_norm_args(x, gamma, beta, 4, (1, C, 1, 1), "(N, C, H, W)")
    G = _checks.require_groups(G, C)  # type: ignore[arg-type]
    eps = _checks.check_norm_param(gn_param, "gn_param")
    return SpatialGroupNormFunction.apply(x, gamma, beta, G, eps)


def dropout(x: Tensor, dropout_param: dict[str, Any]) -> Tensor:
    """Inverted dropout with KEEP probability dropout_param['p'] (see the module docstring).

    Train: x * mask, mask = (rand < p) / p (or dropout_param['mask'] as given). Test: x.
    """
    _checks.require_float("x", x)
    _checks.require_dict(dropout_param, "dropout_param")
    p = _checks.require_keep_prob(_checks.require_param(dropout_param, "dropout_param", "p"))
    mode = _checks.require_mode(dropout_param, "dropout_param", required=True)
    mask = dropout_param.get("mask")
    generator = None
    seed = dropout_param.get("seed")
    if mode == "train" and mask is None and seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(int(seed))
    return DropoutFunction.apply(x, p, mode == "train", mask, generator)


def conv(x: Tensor, w: Tensor, b: Tensor, conv_param: dict[str, Any]) -> Tensor:
    """Convolution (cross-correlation). x: (N, C, H, W); w: (F, C, HH, WW); b: (F,);
    conv_param: 'stride', 'pad'. Returns (N, F, H', W'), H' = 1 + (H + 2*pad - HH) // stride."""
    _checks.require_float("x", x)
    stride, pad, _, _ = _checks.check_conv_args(x, w, b, conv_param)
    return Conv2dFunction.apply(x, w, b, stride, pad)


def max_pool(x: Tensor, pool_param: dict[str, Any]) -> Tensor:
    """Max pooling without padding. x: (N, C, H, W); pool_param: 'pool_height', 'pool_width',
    'stride'. Returns (N, C, H', W'), H' = 1 + (H - pool_height) // stride."""
    _checks.require_float("x", x)
    ph, pw, stride, _, _ = _checks.check_pool_args(x, pool_param)
    return MaxPool2dFunction.apply(x, ph, pw, stride)


def svm_loss(x: Tensor, y: Tensor) -> Tensor:
    """Multiclass SVM loss (margin 1, mean over N). x: (N, C); y: (N,). Returns a 0-d tensor."""
    return SVMLossFunction.apply(x, y)


def softmax_loss(x: Tensor, y: Tensor) -> Tensor:
    """Softmax cross-entropy loss (mean over N). x: (N, C); y: (N,). Returns a 0-d tensor."""
    return SoftmaxLossFunction.apply(x, y)
