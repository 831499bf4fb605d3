"""Argument checks of the generative layers (leaky ReLU, transposed convolution), shared by both
twins.

Pure Python like :mod:`numpy_impl._checks`: it reads ``.shape`` only and imports neither NumPy
nor torch, so ``numpy_impl.generative_layers`` and ``torch_impl.generative_layers`` raise the same
message for the same bad input. Every message names the argument, the expected and the actual
value.
"""

from __future__ import annotations

import math
import numbers

from ._checks import require_int_param, require_ndim, require_param, require_shape, shape_of

__all__ = [
    "require_negative_slope",
    "conv_transpose_output_shape",
    "check_conv_transpose_args",
]


def require_negative_slope(negative_slope) -> float:
    """Leaky ReLU's slope for x <= 0: any finite real number (PyTorch accepts any)."""
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real):
        raise TypeError(
            f"negative_slope must be a real number, got {negative_slope!r} "
            f"({type(negative_slope).__name__})"
        )
    if not math.isfinite(float(negative_slope)):
        raise ValueError(f"negative_slope must be finite, got {negative_slope}")
    return float(negative_slope)


def conv_transpose_output_shape(H: int, W: int, HH: int, WW: int, stride, pad) -> tuple[int, int]:
    """Output size of a transposed convolution (no output padding, no dilation):

        H' = (H - 1) * stride - 2 * pad + HH   (likewise W'),

    the input size of the convolution whose input-gradient it is. The padding crops the full
    (H - 1) * stride + HH map on each side; cropping it to nothing is an error.
    """
    stride = require_int_param("conv_param['stride']", stride, 1)
    pad = require_int_param("conv_param['pad']", pad, 0)
    H_out = (H - 1) * stride - 2 * pad + HH
    W_out = (W - 1) * stride - 2 * pad + WW
    if H_out < 1 or W_out < 1:
        raise ValueError(
            f"conv_param['pad']={pad} crops the transposed convolution's output to nothing: "
            f"(H - 1) * stride - 2 * pad + HH = ({H} - 1) * {stride} - {2 * pad} + {HH} = {H_out} "
            f"rows, (W - 1) * stride - 2 * pad + WW = {W_out} columns (each must be >= 1)"
        )
    return H_out, W_out


def check_conv_transpose_args(x, w, b, conv_param: dict) -> tuple[int, int, int, int]:
    """Validate transposed-convolution inputs; return (stride, pad, H_out, W_out).

    x: (N, C, H, W); w: (C, F, HH, WW) (nn.ConvTranspose2d's layout: input channels first);
    b: (F,); conv_param: {'stride', 'pad'}. H, W >= 1 (a zero-size map has no output size).
    """
    require_ndim("x", x, 4, "(N, C, H, W)")
    require_ndim("w", w, 4, "(C, F, HH, WW)")
    N, C, H, W = shape_of(x)
    Cw, F, HH, WW = shape_of(w)
    if Cw != C:
        raise ValueError(
            f"w has {Cw} input channels (its first dimension) but x has C={C}: "
            f"w shape {shape_of(w)}, x shape {shape_of(x)}"
        )
    if H < 1 or W < 1:
        raise ValueError(f"x must have H, W >= 1, got shape {shape_of(x)}")
    require_shape("b", b, (F,), hint="one bias per output channel, w.shape[1]")
    stride = require_param(conv_param, "conv_param", "stride")
    pad = require_param(conv_param, "conv_param", "pad")
    H_out, W_out = conv_transpose_output_shape(H, W, HH, WW, stride, pad)
    return int(stride), int(pad), H_out, W_out
