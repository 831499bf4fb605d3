"""Inverted dropout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

import twin_checks as _checks

__all__ = [
    "DropoutFunction",
    "dropout_mask",
]


def dropout_mask(
    shape: Sequence[int], like: Tensor, p: float, generator: torch.Generator | None = None
) -> Tensor:
    """The inverted-dropout multiplier with KEEP probability p: (rand(shape) < p) / p, each entry
    0 or 1/p, on ``like``'s device and dtype, drawn from ``generator`` (torch's default generator
    when None). The one mask draw of the torch twin: DropoutFunction and the attention layers'
    dropout on the attention weights both use it.
    """
    u = torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)
    # In place: the comparison writes 0.0/1.0 into u itself (no bool array, no cast copy).
    return u.lt_(p).div_(p)


class DropoutFunction(Function):
    """Inverted dropout with CS231n's KEEP probability p (PyTorch's F.dropout takes 1 - p).

    apply(x, p, training, mask=None, generator=None). Train: out = x * mask with mask in {0, 1/p}
    (E[out] = x, so test mode needs no rescaling); ``mask`` (x's shape, CS231n's cached mask) is
    used as given, otherwise drawn as (rand(x.shape, generator) < p) / p on x's device and dtype.
    Test: out = x. Saved: the mask.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        p: float,
        training: bool,
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        _checks.require_float("x", x)
        p = _checks.require_keep_prob(p)
        ctx.training = bool(training)
        if not training:
            return x.clone()
        if mask is None:
            mask = dropout_mask(x.shape, x, p, generator)
        else:
            _checks.require_same_shape("mask", mask, "x", x)
            mask = torch.as_tensor(mask, device=x.device, dtype=x.dtype)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        if not ctx.training:
            return dout, None, None, None, None
        (mask,) = ctx.saved_tensors
        return dout * mask, None, None, None, None
