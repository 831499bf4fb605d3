"""Leaky ReLU and transposed convolution as ``torch.autograd.Function``s with hand-written
backward passes, and the ``nn.Module``s that hold their parameters: the two layers of CS231n's
GAN notebook (``gan_pytorch.py``) that torch_impl lacked (``nn.LeakyReLU``, ``nn.ConvTranspose2d``).

- Leaky ReLU (Maas et al., 2013): out = x for x > 0, negative_slope * x otherwise.
- Transposed convolution (DCGAN, Radford et al., 2016), the gradient of a convolution with
  respect to its input, used as a layer. With x (N, C, H, W), w (C, F, HH, WW)
  (nn.ConvTranspose2d's layout), stride s and padding p:
      out[n, f, y, z] = b[f] + sum x[n, c, i, j] w[c, f, k, l]
  over c and the (i, j, k, l) with i*s + k - p = y, j*s + l - p = z;
  H' = (H - 1) s - 2p + HH. Forward is conv's backward-to-input ("col2im" of W^T x), backward is
  conv's forward and conv's weight gradient (derivation in ``ConvTranspose2dFunction``).

Conventions as ``torch_impl.functions``: the same argument checks as the NumPy twin
(``numpy_impl.generative_layers``, through the pure-Python ``numpy_impl._checks_generative``),
every tensor follows the input's device and dtype, ``ctx.needs_input_grad`` decides which
gradients are computed, and backward passes are ``once_differentiable``. No builtin that the
parity suite compares against (F.leaky_relu, F.conv_transpose2d) is called.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from numpy_impl import _checks
from numpy_impl._checks_generative import check_conv_transpose_args, require_negative_slope
from torch_impl._utils import require_like

__all__ = ["LeakyReLUFunction", "ConvTranspose2dFunction", "LeakyReLU", "ConvTranspose2d"]


class LeakyReLUFunction(Function):
    """out = x where x > 0, else negative_slope * x.

    apply(x, negative_slope=0.01). d out / dx = 1 where x > 0, else negative_slope (the slope at
    x == 0 is negative_slope, as PyTorch's). Saved: the mask x > 0 (one byte per element).
    """

    @staticmethod
    def forward(ctx, x, negative_slope=0.01):
        _checks.require_float("x", x)
        slope = require_negative_slope(negative_slope)
        positive = x > 0
        ctx.slope = slope
        ctx.save_for_backward(positive)
        return torch.where(positive, x, x * slope)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        (positive,) = ctx.saved_tensors
        return torch.where(positive, dout, dout * ctx.slope), None


class ConvTranspose2dFunction(Function):
    """Transposed convolution (no output padding, no dilation, one group).

    apply(x, w, b, stride=1, pad=0): x (N, C, H, W); w (C, F, HH, WW); b (F,); output
    (N, F, H', W'), H' = (H - 1) * stride - 2 * pad + HH.

    Derivation. A convolution y = conv(u, w) with u (N, F, H', W') and weight w read as
    (C, F, HH, WW) (C filters over F channels), stride s, padding p, has the windows
        cols(u)[(f, k, l), (n, i, j)] = upad[n, f, i*s + k, j*s + l],    y = W2 @ cols(u),
    W2 = w.reshape(C, F*HH*WW). Its input gradient is du = col2im(W2^T @ dy): every column goes
    back onto its window, overlapping windows adding up, padding cropped. This layer is that
    map with dy := x:
        forward:  out = col2im(W2^T @ X2) + b,     X2 = x as (C, N*H*W).
    The adjoint of col2im is im2col, so differentiating ``out`` gives conv's forward and
    conv's weight gradient, both on the windows of dout:
        D = cols(dout)  (F*HH*WW, N*H*W)   (dout zero-padded by p; exactly H x W windows)
        dx = W2 @ D  (the convolution of dout with w),   dW2 = X2 @ D^T,   db = sum dout.
    col2im is ``F.fold`` (an index scatter, the same one conv's backward uses), im2col a strided
    ``unfold`` view copied once. Saved: x and w, for the gradients that are needed.
    """

    @staticmethod
    def forward(ctx, x, w, b, stride=1, pad=0):
        _checks.require_float("x", x)
        stride, pad, H_out, W_out = check_conv_transpose_args(
            x, w, b, {"stride": stride, "pad": pad}
        )
        require_like("x", x, w=w, b=b)
        N, C, H, W = x.shape
        F, HH, WW = w.shape[1:]
        x2 = x.transpose(0, 1).reshape(C, N * H * W)
        cols = w.reshape(C, F * HH * WW).T @ x2  # (F*HH*WW, N*H*W)
        # (N, F*HH*WW, H*W) for fold: column (i, j) of image n is the window at (i*s, j*s).
        cols = cols.view(F * HH * WW, N, H * W).transpose(0, 1)
        if N == 0:
            out = x.new_zeros(0, F, H_out, W_out)
        else:
            out = torch.nn.functional.fold(
                cols, (H_out, W_out), (HH, WW), padding=pad, stride=stride
            )
        out = out + b.view(1, F, 1, 1)
        need_x, need_w = ctx.needs_input_grad[:2]
        ctx.geometry = (x.shape, w.shape, stride, pad)
        ctx.save_for_backward(x if need_w else None, w if need_x else None)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        (N, C, H, W), (_, F, HH, WW), stride, pad = ctx.geometry
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dx = dw = db = None
        if need_x or need_w:
            # D = cols(dout): the H x W windows of the zero-padded dout, rows (f, k, l),
            # columns (n, i, j).
            dpad = torch.nn.functional.pad(dout, (pad, pad, pad, pad)) if pad else dout
            windows = dpad.unfold(2, HH, stride).unfold(3, WW, stride)  # (N, F, H, W, HH, WW)
            D = windows.permute(1, 4, 5, 0, 2, 3).reshape(F * HH * WW, N * H * W)
            if need_x:
                dx = (w.reshape(C, F * HH * WW) @ D).view(C, N, H, W).transpose(0, 1)
                dx = dx.contiguous()
            if need_w:
                dw = (x.transpose(0, 1).reshape(C, N * H * W) @ D.T).view(C, F, HH, WW)
        if need_b:
            db = dout.sum(dim=(0, 2, 3))
        return dx, dw, db, None, None


def _uniform_(tensor: torch.Tensor, fan_in: int) -> torch.Tensor:
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    with torch.no_grad():
        return tensor.uniform_(-bound, bound)


class LeakyReLU(nn.Module):
    """x where x > 0, else negative_slope * x, elementwise (nn.LeakyReLU's default slope)."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = require_negative_slope(negative_slope)

    def forward(self, x):
        return LeakyReLUFunction.apply(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ConvTranspose2d(nn.Module):
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
        kernel_size,
        stride: int = 1,
        padding: int = 0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.in_channels = _checks.require_int_param("in_channels", in_channels, 1)
        self.out_channels = _checks.require_int_param("out_channels", out_channels, 1)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = _checks.require_int_param("stride", stride, 1)
        self.padding = _checks.require_int_param("padding", padding, 0)
        factory = {"device": device, "dtype": dtype}
        self.w = nn.Parameter(torch.empty(in_channels, out_channels, *self.kernel_size, **factory))
        self.b = nn.Parameter(torch.empty(out_channels, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.out_channels * self.kernel_size[0] * self.kernel_size[1]
        _uniform_(self.w, fan_in)
        _uniform_(self.b, fan_in)

    def forward(self, x):
        return ConvTranspose2dFunction.apply(x, self.w, self.b, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )


def _pair(name, value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return tuple(_checks.require_int_param(name, v, 1) for v in value)
    v = _checks.require_int_param(name, value, 1)
    return v, v
