"""Elementwise nonlinearities: ReLU, sigmoid, tanh, the exact GELU (Hendrycks & Gimpel 2016) and
leaky ReLU (Maas et al. 2013: x for x > 0, negative_slope * x otherwise; the GAN notebook's)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

import twin_checks as _checks
from twin_checks import require_negative_slope

__all__ = [
    "ReLUFunction",
    "SigmoidFunction",
    "TanhFunction",
    "GELUFunction",
    "LeakyReLUFunction",
]


class ReLUFunction(Function):
    """out = max(0, x) elementwise; dx = dout where x > 0, else 0 (0 at the kink, as PyTorch).

    A NaN input gives a NaN output and a zero gradient, as CS231n's ``dout * (x > 0)`` (PyTorch's
    threshold_backward zeroes only where x <= 0, so it passes dout at a NaN).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        _checks.require_float("x", x)
        out = x.clamp_min(0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        # out > 0 exactly where x > 0 (and is False for NaN), the 0/1 mask of the derivative.
        # The comparison writes the mask as 0.0/1.0 straight into a float array shaped (and
        # strided) like out, and dout multiplies it in place: two vectorized passes and one
        # allocation. dout * (out > 0) casts the bool mask element by element on the fly (a slow,
        # unvectorized path) and allocates twice.
        mask = torch.gt(out, 0, out=torch.empty_like(out))
        return mask.mul_(dout)


class SigmoidFunction(Function):
    """out = 1 / (1 + exp(-x)); d out / dx = out * (1 - out).

    Computed from z = exp(-|x|) <= 1 (as numpy_impl does), so no exponential overflows:
    out = 1 / (1 + z) for x >= 0 and z / (1 + z) for x < 0, i.e. exp(min(x, 0)) / (1 + z).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        _checks.require_float("x", x)
        out = torch.exp(x.clamp_max(0)).div_(torch.exp(-x.abs()).add_(1))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> Tensor:
        (s,) = ctx.saved_tensors
        return dout * s * (1 - s)


class TanhFunction(Function):
    """out = tanh(x) = sign(x) * (1 - exp(-2|x|)) / (1 + exp(-2|x|)); d out / dx = 1 - out^2.

    With e = expm1(-2|x|) (in (-1, 0]) the ratio is -e / (2 + e): expm1 keeps full relative
    precision for tiny |x|, where 1 - exp(-2|x|) would cancel, and nothing overflows.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        _checks.require_float("x", x)
        e = torch.expm1(-2 * x.abs())
        out = torch.copysign(-e / (2 + e), x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> Tensor:
        (t,) = ctx.saved_tensors
        return dout * (1 - t * t)


class GELUFunction(Function):
    """Exact GELU x * Phi(x), Phi the standard normal CDF (PyTorch's default approximate='none').

    d/dx = Phi(x) + x * phi(x), phi the standard normal density.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x * 0.5 * (1 + torch.erf(x / math.sqrt(2.0)))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2.0)))
        pdf = torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return dout * (cdf + x * pdf)


class LeakyReLUFunction(Function):
    """out = x where x > 0, else negative_slope * x.

    apply(x, negative_slope=0.01). d out / dx = 1 where x > 0, else negative_slope (the slope at
    x == 0 is negative_slope, as PyTorch's). Saved: the mask x > 0 (one byte per element).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, negative_slope: float = 0.01) -> Tensor:
        _checks.require_float("x", x)
        slope = require_negative_slope(negative_slope)
        positive = x > 0
        ctx.slope = slope
        ctx.save_for_backward(positive)
        return torch.where(positive, x, x * slope)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        (positive,) = ctx.saved_tensors
        return torch.where(positive, dout, dout * ctx.slope), None
