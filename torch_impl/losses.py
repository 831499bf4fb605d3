"""Losses: the classifiers' SVM and softmax losses, the captioning model's temporal softmax
loss, and the GAN losses (binary cross-entropy with logits and the least-squares half squared
error).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

import twin_checks as _checks
from torch_impl._utils import labels_on
from twin_checks import check_same_shape, check_scores, check_temporal_loss_args

__all__ = [
    "SVMLossFunction",
    "SoftmaxLossFunction",
    "TemporalSoftmaxLossFunction",
    "BCEWithLogitsFunction",
    "HalfSquaredErrorFunction",
]


_LOG2_E = 1.0 / math.log(2.0)  # exp(t) = 2 ** (t * log2(e))
_EXP2_MIN_NUMEL = 16384  # exp2's saving (~0.4 ns per element) > a multiplication's call


class SVMLossFunction(Function):
    """Multiclass SVM (hinge) loss, margin 1, averaged over the batch (CS231n's scaling: summed
    over the classes, where F.multi_margin_loss also divides by C).

    apply(x, y): x (N, C) scores; y (N,) integer labels in [0, C). Returns a 0-d tensor:
        loss = (1/N) sum_i sum_{j != y_i} max(0, x_ij - x_{i,y_i} + 1).
    Each positive margin adds +1 to dx_ij and -1 to dx_{i,y_i}. Saved: margins.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor) -> Tensor:
        N, _ = _checks.check_scores_labels(x, y)
        y = labels_on(y, x).view(N, 1)
        margins = (x - x.gather(1, y) + 1).clamp_min_(0)
        margins.scatter_(1, y, 0)
        ctx.save_for_backward(margins, y)
        return margins.sum() / N

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dloss: Tensor) -> tuple[Tensor | None, ...]:
        margins, y = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None
        N = margins.shape[0]
        positive = (margins > 0).to(margins.dtype)
        dx = positive.scatter_(1, y, -positive.sum(1, keepdim=True))
        return dx.div_(N).mul_(dloss), None


def _scores_and_labels(x: Any, y: Any) -> tuple[int, Tensor, bool]:
    """(N, labels, in_range) for the softmax loss: x (N, C) float scores, y (N,) labels in
    [0, C) as an int64 (N, 1) column on x's device. The common call (an int64 y on x's device)
    is validated with attribute checks alone, and its range on CPU by the gather that reads
    x_{i,y_i} (in_range False: its bounds check raises, and the caller turns that into the full
    check's error); on other devices by ONE reduction (aminmax). Anything else goes through the
    full checks, which raise the error naming the argument."""
    if (
        isinstance(x, Tensor)
        and isinstance(y, Tensor)
        and x.ndim == 2
        and x.is_floating_point()
        and y.dtype == torch.int64
        and y.ndim == 1
        and y.device == x.device
    ):
        N, C = x.shape
        if N >= 1 and C >= 1 and y.shape[0] == N:
            if x.device.type == "cpu":
                return N, y.view(N, 1), False
            lo, hi = torch.aminmax(y)
            if int(lo) >= 0 and int(hi) < C:
                return N, y.view(N, 1), True
    N, _ = _checks.check_scores_labels(x, y)
    return N, labels_on(y, x).view(N, 1), True


class SoftmaxLossFunction(Function):
    """Softmax cross-entropy loss averaged over the batch.

    apply(x, y): x (N, C) scores; y (N,) integer labels in [0, C). Returns a 0-d tensor:
        loss = -(1/N) sum_i log softmax(x_i)[y_i],   dx = (softmax(x) - onehot(y)) / N.
    Each row's maximum m_i is subtracted first (the softmax is unchanged, every exponent is <= 0,
    so logits of 1e4 cannot overflow); with s = x - m, e_ij = exp(s_ij) and Z_i = sum_j e_ij,
    the log-probability of the label is s_{i,y_i} - log Z_i (the log-sum-exp).
    Saved: softmax(x) - onehot(y), computed in place in the one (N, C) buffer that held s and e,
    so the backward is one scaling: dx = that * dloss / N.

    In the CS231n models C is small (10), and each tensor operation's fixed cost, not the
    arithmetic, is this loss's time: forward and backward are 13 tensor operations in all (on
    CPU the labels' range is checked by the gather's own bounds check, with no operation of
    its own).

    For scores of _EXP2_MIN_NUMEL values or more, exp(t) is computed as 2^(t * log2(e)): the
    same function (relative error ~1e-6 in float32, ~1e-14 in float64 at the bottom of the
    range), and torch.exp2 is about 2x faster than torch.exp on CPU, which more than pays for
    the extra multiplication once the exponential is most of this loss's time (256 x 1000);
    for fewer values the one operation fewer is worth more.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor) -> Tensor:
        N, labels, in_range = _scores_and_labels(x, y)
        shifted = torch.sub(x, x.amax(dim=1, keepdim=True))
        # s_y before the buffer is exponentiated in place; the loss subtracts it from log Z
        # (never x_y from log Z + m, which would round at the logits' scale |m|).
        try:
            shifted_y = shifted.gather(1, labels)
        except RuntimeError:
            if not in_range:
                _checks.check_scores_labels(x, y)  # raises: y must lie in [0, C)
            raise
        if shifted.numel() < _EXP2_MIN_NUMEL:
            e = shifted.exp_()
        else:
            e = shifted.mul_(_LOG2_E).exp2_()
        Z = e.sum(dim=1, keepdim=True)
        loss = Z.log().sub_(shifted_y).mean()
        ctx.save_for_backward(e.div_(Z).scatter_(1, labels, -1.0, reduce="add"))
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dloss: Tensor) -> tuple[Tensor | None, ...]:
        (softmax_minus_onehot,) = ctx.saved_tensors
        # Out of place: a retained graph (backward(retain_graph=True)) reuses the saved buffer.
        return softmax_minus_onehot * (dloss / softmax_minus_onehot.shape[0]), None


class TemporalSoftmaxLossFunction(Function):
    """CS231n's temporal_softmax_loss: x (N, T, V) scores, y (N, T) int targets, mask (N, T)
    (1/True = counts) -> scalar -(1/N) sum mask * log softmax(x)[y]. y and mask get no
    gradient."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        check_temporal_loss_args(x, y, mask)
        N = x.shape[0]
        m = mask.to(x.dtype)  # a bool/float64 mask must not change x's dtype
        shifted = x - x.amax(dim=2, keepdim=True)
        log_probs = shifted - torch.log(torch.exp(shifted).sum(dim=2, keepdim=True))
        picked = log_probs.gather(2, y[..., None].long())[..., 0]
        loss = -(m * picked).sum() / N
        ctx.save_for_backward(log_probs, y, m)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dloss: Tensor) -> tuple[Tensor | None, ...]:
        log_probs, y, m = ctx.saved_tensors
        N = log_probs.shape[0]
        dx = torch.exp(log_probs)
        index = y[..., None].long()
        dx.scatter_(2, index, dx.gather(2, index) - 1)
        dx = dx / N * m[..., None] * dloss
        return dx, None, None


def _sigmoid_minus(x: Tensor, t: Tensor) -> Tensor:
    """sigmoid(x) - t without cancellation (see numpy_impl.gan._sigmoid_minus)."""
    e = torch.exp(-x.abs())
    small = e / (1 + e)
    return torch.where(x >= 0, (1 - t) - small, small - t)


class BCEWithLogitsFunction(Function):
    """mean(max(x, 0) - x t + log(1 + exp(-|x|))): input x and target t of the same shape.

    d/dx = (sigmoid(x) - t) / n and d/dt = -x / n. Twin of ``numpy_impl.gan.bce_loss``.
    """

    @staticmethod
    def forward(ctx: Any, input: Tensor, target: Tensor) -> Tensor:
        check_scores("input", input)
        check_same_shape("target", target, "input", input)
        x, t = input, target.to(input.dtype)
        ctx.save_for_backward(x, t)
        return (x.clamp(min=0) - x * t + torch.log1p(torch.exp(-x.abs()))).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dloss: Tensor) -> tuple[Tensor | None, ...]:
        x, t = ctx.saved_tensors
        n = x.numel()
        need = ctx.needs_input_grad
        dx = _sigmoid_minus(x, t) / n * dloss if need[0] else None
        dt = -x / n * dloss if need[1] else None
        return dx, dt


class HalfSquaredErrorFunction(Function):
    """0.5 * mean((scores - target)^2) for the least-squares GAN losses; target has scores'
    shape. d/dscores = (scores - target) / n; d/dtarget = its negative."""

    @staticmethod
    def forward(ctx: Any, scores: Tensor, target: Tensor) -> Tensor:
        check_scores("scores", scores)
        check_same_shape("target", target, "scores", scores)
        diff = scores - target.to(scores.dtype)
        ctx.save_for_backward(diff)
        return 0.5 * (diff**2).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dloss: Tensor) -> tuple[Tensor | None, ...]:
        (diff,) = ctx.saved_tensors
        g = diff / diff.numel() * dloss
        need = ctx.needs_input_grad
        return g if need[0] else None, -g if need[1] else None
