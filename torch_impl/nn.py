"""``nn.Module``s holding the parameters and buffers of CS231n's layers.

Each module calls the matching ``torch_impl.functions`` Function; the module's ``training`` flag
(``model.train()`` / ``model.eval()``) decides batchnorm's and dropout's mode. Parameter names
follow CS231n (``w``, ``b``, ``gamma``, ``beta``), and so do the layouts and conventions, where
they differ from ``torch.nn``:

- ``Affine.w`` is (D, M), the TRANSPOSE of ``nn.Linear.weight`` (M, D).
- ``BatchNorm``/``SpatialBatchNorm`` take CS231n's ``momentum`` (0.9 = the fraction of the running
  statistic KEPT; ``nn.BatchNorm`` uses 0.1 = the fraction replaced), track the BIASED batch
  variance, and start the running statistics at zeros, as bn_param's defaults do.
- ``SpatialGroupNorm.gamma``/``beta`` are (1, C, 1, 1).
- ``Dropout(p)`` takes the KEEP probability (``nn.Dropout`` takes the drop probability).

Weights are initialized as PyTorch initializes the corresponding layer (uniform in
+-1/sqrt(fan_in), i.e. kaiming_uniform with a=sqrt(5)), so models train the same out of the box.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

import twin_checks as _checks
from torch_impl.functions import (
    AffineFunction,
    BatchNormFunction,
    Conv2dFunction,
    ConvTranspose2dFunction,
    DropoutFunction,
    LayerNormFunction,
    LeakyReLUFunction,
    MaxPool2dFunction,
    ReLUFunction,
    SigmoidFunction,
    SoftmaxLossFunction,
    SpatialGroupNormFunction,
    SVMLossFunction,
    TanhFunction,
)
from twin_checks import require_negative_slope

__all__ = [
    "Affine",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "BatchNorm",
    "LayerNorm",
    "Dropout",
    "Conv2d",
    "MaxPool2d",
    "SpatialBatchNorm",
    "SpatialGroupNorm",
    "SVMLoss",
    "SoftmaxLoss",
    "Flatten",
    "LeakyReLU",
    "ConvTranspose2d",
]


def _uniform_fan_in_(tensor: torch.Tensor, fan_in: int) -> torch.Tensor:
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    with torch.no_grad():
        return tensor.uniform_(-bound, bound)


class Affine(nn.Module):
    """Fully connected layer out = x.reshape(N, D) @ w + b.

    w: (in_features, out_features) = (D, M), CS231n's layout (the transpose of nn.Linear's
    weight); b: (M,). Input (N, d_1, ..., d_k) with prod(d_i) = in_features; output (N, M).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features = _checks.require_int_param("in_features", in_features, 1)
        self.out_features = _checks.require_int_param("out_features", out_features, 1)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.w = nn.Parameter(torch.empty(in_features, out_features, **factory))
        self.b = nn.Parameter(torch.empty(out_features, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _uniform_fan_in_(self.w, self.in_features)
        _uniform_fan_in_(self.b, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        return AffineFunction.apply(x, self.w, self.b)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class ReLU(nn.Module):
    """max(0, x) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return ReLUFunction.apply(x)


class Sigmoid(nn.Module):
    """1 / (1 + exp(-x)) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return SigmoidFunction.apply(x)


class Tanh(nn.Module):
    """tanh(x) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return TanhFunction.apply(x)


class _BatchNormBase(nn.Module):
    _layout = (2, "(N, D)")  # the input's number of dimensions and their names
    running_mean: Tensor
    running_var: Tensor

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.9,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_features = _checks.require_int_param("num_features", num_features, 1)
        self.eps = _checks.require_nonneg_real("eps", eps)
        self.momentum = _checks.require_unit_interval("momentum", momentum)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.gamma = nn.Parameter(torch.ones(num_features, **factory))
        self.beta = nn.Parameter(torch.zeros(num_features, **factory))
        # CS231n's bn_param defaults: both running statistics start at zero.
        self.register_buffer("running_mean", torch.zeros(num_features, **factory))
        self.register_buffer("running_var", torch.zeros(num_features, **factory))

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.zero_()

    def forward(self, x: Tensor) -> Tensor:
        _checks.require_ndim("x", x, *self._layout)
        return BatchNormFunction.apply(
            x,
            self.gamma,
            self.beta,
            self.running_mean,
            self.running_var,
            self.training,
            self.momentum,
            self.eps,
        )

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum} (CS231n: kept)"


class BatchNorm(_BatchNormBase):
    """Batch normalization of (N, D) inputs; gamma, beta, running_mean, running_var: (D,).

    Train mode (module.train()) normalizes with the batch mean and biased variance and updates
    running = momentum * running + (1 - momentum) * batch_stat; eval mode uses the running stats.
    """


class SpatialBatchNorm(_BatchNormBase):
    """Batch normalization of (N, C, H, W) inputs per channel over (N, H, W); parameters and
    running statistics (C,); same conventions as BatchNorm."""

    _layout = (4, "(N, C, H, W)")

    def __init__(
        self,
        num_channels: int,
        eps: float = 1e-5,
        momentum: float = 0.9,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(num_channels, eps, momentum, device=device, dtype=dtype)


class LayerNorm(nn.Module):
    """Layer normalization over the last dimension: inputs (..., D), CS231n's (N, D) rows or a
    transformer's (N, T, D) tokens; gamma (ones), beta (zeros): (D,)."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_features = _checks.require_int_param("num_features", num_features, 1)
        self.eps = _checks.require_nonneg_real("eps", eps)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.gamma = nn.Parameter(torch.ones(num_features, **factory))
        self.beta = nn.Parameter(torch.zeros(num_features, **factory))

    def forward(self, x: Tensor) -> Tensor:
        return LayerNormFunction.apply(x, self.gamma, self.beta, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class SpatialGroupNorm(nn.Module):
    """Group normalization of (N, C, H, W) inputs, G groups of C // G channels;
    gamma, beta: (1, C, 1, 1) (CS231n's layout)."""

    def __init__(
        self,
        num_channels: int,
        G: int,
        eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_channels = _checks.require_int_param("num_channels", num_channels, 1)
        self.G = _checks.require_groups(G, num_channels)
        self.eps = _checks.require_nonneg_real("eps", eps)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.gamma = nn.Parameter(torch.ones(1, num_channels, 1, 1, **factory))
        self.beta = nn.Parameter(torch.zeros(1, num_channels, 1, 1, **factory))

    def forward(self, x: Tensor) -> Tensor:
        return SpatialGroupNormFunction.apply(x, self.gamma, self.beta, self.G, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, G={self.G}, eps={self.eps}"


class Dropout(nn.Module):
    """Inverted dropout with KEEP probability p (nn.Dropout's argument is 1 - p).

    Train mode: x * mask, mask = (rand < p) / p drawn from ``generator`` (torch's default
    generator when None); eval mode: identity.
    """

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.p = _checks.require_keep_prob(p)
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 1.0:  # (a keep probability of 1 drops nothing)
            return x
        return DropoutFunction.apply(x, self.p, True, None, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p} (keep probability)"


def _pair(name: str, value: int | tuple[int, int] | list[int]) -> tuple[int, ...]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return tuple(_checks.require_int_param(name, v, 1) for v in value)
    v = _checks.require_int_param(name, value, 1)
    return v, v


class _ConvParameters(nn.Module):
    """The checked sizes and the (uninitialized) w, b shared by Conv2d and ConvTranspose2d: w is
    (out, in, kH, kW), or (in, out, kH, kW) for the transposed conv (PyTorch's layouts)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int,
        transposed: bool,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__()
        self.in_channels = _checks.require_int_param("in_channels", in_channels, 1)
        self.out_channels = _checks.require_int_param("out_channels", out_channels, 1)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = _checks.require_int_param("stride", stride, 1)
        channels = (in_channels, out_channels) if transposed else (out_channels, in_channels)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.w = nn.Parameter(torch.empty(*channels, *self.kernel_size, **factory))
        self.b = nn.Parameter(torch.empty(out_channels, **factory))


class Conv2d(_ConvParameters):
    """Convolution (cross-correlation) with weight w (F, C, HH, WW) (nn.Conv2d's layout) and
    bias b (F,); symmetric zero padding ``pad``; input (N, C, H, W) -> (N, F, H', W')."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        pad: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, False, device, dtype)
        self.pad = _checks.require_int_param("pad", pad, 0)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        _uniform_fan_in_(self.w, fan_in)
        _uniform_fan_in_(self.b, fan_in)

    def forward(self, x: Tensor) -> Tensor:
        return Conv2dFunction.apply(x, self.w, self.b, self.stride, self.pad)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, pad={self.pad}"
        )


class MaxPool2d(nn.Module):
    """Max pooling without padding. pool_width defaults to pool_height, stride to pool_height
    (non-overlapping windows, as nn.MaxPool2d's stride defaults to the kernel size)."""

    def __init__(
        self, pool_height: int = 2, pool_width: int | None = None, stride: int | None = None
    ) -> None:
        super().__init__()
        self.pool_height = _checks.require_int_param("pool_height", pool_height, 1)
        self.pool_width = (
            self.pool_height
            if pool_width is None
            else _checks.require_int_param("pool_width", pool_width, 1)
        )
        self.stride = (
            self.pool_height if stride is None else _checks.require_int_param("stride", stride, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return MaxPool2dFunction.apply(x, self.pool_height, self.pool_width, self.stride)

    def extra_repr(self) -> str:
        return f"pool_height={self.pool_height}, pool_width={self.pool_width}, stride={self.stride}"


class SVMLoss(nn.Module):
    """Multiclass SVM loss, margin 1, mean over N (CS231n's scaling). forward(x (N, C), y (N,))."""

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return SVMLossFunction.apply(x, y)


class SoftmaxLoss(nn.Module):
    """Softmax cross-entropy loss, mean over N. forward(x (N, C), y (N,))."""

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return SoftmaxLossFunction.apply(x, y)


class Flatten(nn.Module):
    """(N, d_1, ..., d_k) -> (N, d_1 * ... * d_k), the flattening that Affine does implicitly."""

    def forward(self, x: Tensor) -> Tensor:
        # (the size written out: with N = 0 a -1 would be ambiguous)
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))


class LeakyReLU(nn.Module):
    """x where x > 0, else negative_slope * x, elementwise (nn.LeakyReLU's default slope)."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = require_negative_slope(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        return LeakyReLUFunction.apply(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ConvTranspose2d(_ConvParameters):
    """Transposed convolution with weight w (in_channels, out_channels, kH, kW)
    (nn.ConvTranspose2d's layout) and bias b (out_channels,);
    input (N, in_channels, H, W) -> (N, out_channels, H', W'), H' = (H - 1) * stride - 2 * padding
    + kH.

    Initialized as nn.ConvTranspose2d: uniform in +-1/sqrt(fan_in), where PyTorch's fan_in of
    this weight layout is w.shape[1] * kH * kW = out_channels * kH * kW.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, True, device, dtype)
        self.padding = _checks.require_int_param("padding", padding, 0)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.out_channels * self.kernel_size[0] * self.kernel_size[1]
        _uniform_fan_in_(self.w, fan_in)
        _uniform_fan_in_(self.b, fan_in)

    def forward(self, x: Tensor) -> Tensor:
        return ConvTranspose2dFunction.apply(x, self.w, self.b, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
