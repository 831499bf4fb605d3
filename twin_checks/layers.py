"""Arguments of the feed-forward layers.

Affine, conv and transposed conv, pooling, normalization, dropout, leaky ReLU and the classifier
losses.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from twin_checks.common import (
    Array,
    dtype_name,
    require_dict,
    require_float,
    require_int_param,
    require_ndim,
    require_nonneg_real,
    require_param,
    require_shape,
    require_unit_interval,
    shape_of,
)


def require_mode(params: dict, dict_name: str, required: bool = True) -> str:
    mode = require_param(params, dict_name, "mode") if required else params.get("mode", "train")
    if mode not in ("train", "test"):
        raise ValueError(f"{dict_name}['mode'] must be 'train' or 'test', got {mode!r}")
    return mode


def require_keep_prob(p: object) -> float:
    """Dropout's ``p`` is CS231n's KEEP probability: it must lie in (0, 1]."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"dropout_param['p'] must be a number, got {p!r}")
    if not 0.0 < float(p) <= 1.0:
        raise ValueError(
            f"dropout_param['p'] is the keep probability and must lie in (0, 1], got {p}"
        )
    return float(p)


def require_groups(G: object, C: int) -> int:
    G = require_int_param("G", G, 1)
    if C % G != 0:
        raise ValueError(f"G={G} groups must divide the number of channels C={C}")
    return G


def require_labels(y: Array, N: int, C: int) -> None:
    """y: (N,) integer class indices in [0, C)."""
    if not hasattr(y, "shape"):
        raise TypeError(f"y must be an array of class indices, got {type(y).__name__}")
    if "int" not in dtype_name(y):
        raise TypeError(f"y must hold integer class indices, got dtype {dtype_name(y)}")
    require_shape("y", y, (N,), hint="one label per row of x")
    if N and (int(y.min()) < 0 or int(y.max()) >= C):
        raise ValueError(
            f"y must lie in [0, {C}) for x with C={C} classes, "
            f"got values in [{int(y.min())}, {int(y.max())}]"
        )


def conv_output_shape(H: int, W: int, HH: int, WW: int, stride: int, pad: int) -> tuple[int, int]:
    """Output size of a cross-correlation, with PyTorch's floor rule.

    H' = 1 + (H + 2*pad - HH) // stride (likewise W'). Any stride/pad/kernel that PyTorch accepts
    is accepted; a kernel larger than the padded input is an error.
    """
    stride = require_int_param("conv_param['stride']", stride, 1)
    pad = require_int_param("conv_param['pad']", pad, 0)
    Hp, Wp = H + 2 * pad, W + 2 * pad
    if HH > Hp or WW > Wp:
        raise ValueError(
            f"filter of size ({HH}, {WW}) is larger than the padded input ({Hp}, {Wp}) "
            f"(input ({H}, {W}), pad={pad})"
        )
    return 1 + (Hp - HH) // stride, 1 + (Wp - WW) // stride


def pool_output_shape(
    H: int, W: int, pool_height: object, pool_width: object, stride: object
) -> tuple[int, int]:
    """Output size of max pooling without padding, with PyTorch's floor rule."""
    ph = require_int_param("pool_param['pool_height']", pool_height, 1)
    pw = require_int_param("pool_param['pool_width']", pool_width, 1)
    stride = require_int_param("pool_param['stride']", stride, 1)
    if ph > H or pw > W:
        raise ValueError(f"pooling window ({ph}, {pw}) is larger than the input ({H}, {W})")
    return 1 + (H - ph) // stride, 1 + (W - pw) // stride


def check_conv_args(x: Array, w: Array, b: Array, conv_param: dict) -> tuple[int, int, int, int]:
    """Validate conv inputs; return (stride, pad, H_out, W_out).

    x: (N, C, H, W); w: (F, C, HH, WW); b: (F,); conv_param: {'stride', 'pad'}.
    """
    require_ndim("x", x, 4, "(N, C, H, W)")
    require_ndim("w", w, 4, "(F, C, HH, WW)")
    N, C, H, W = shape_of(x)
    F, Cw, HH, WW = shape_of(w)
    if Cw != C:
        raise ValueError(
            f"w has {Cw} input channels but x has C={C}: "
            f"w shape {shape_of(w)}, x shape {shape_of(x)}"
        )
    require_shape("b", b, (F,), hint="one bias per filter of w")
    stride = require_param(conv_param, "conv_param", "stride")
    pad = require_param(conv_param, "conv_param", "pad")
    H_out, W_out = conv_output_shape(H, W, HH, WW, stride, pad)
    return int(stride), int(pad), H_out, W_out


def check_pool_args(x: Array, pool_param: dict) -> tuple[int, int, int, int, int]:
    """Validate max-pool inputs; return (pool_height, pool_width, stride, H_out, W_out)."""
    require_ndim("x", x, 4, "(N, C, H, W)")
    ph = require_param(pool_param, "pool_param", "pool_height")
    pw = require_param(pool_param, "pool_param", "pool_width")
    stride = require_param(pool_param, "pool_param", "stride")
    H_out, W_out = pool_output_shape(x.shape[2], x.shape[3], ph, pw, stride)
    return int(ph), int(pw), int(stride), H_out, W_out


def check_affine_args(x: Array, w: Array, b: Array) -> tuple[int, int]:
    """x: (N, d_1, ..., d_k) with prod(d_i) = D; w: (D, M); b: (M,). Returns (N, D)."""
    require_ndim("w", w, 2, "(D, M)")
    if len(x.shape) < 1:
        raise ValueError(f"x must have at least 1 dimension (N, ...), got shape {shape_of(x)}")
    N = int(x.shape[0])
    D = 1
    for s in x.shape[1:]:
        D *= int(s)
    if int(w.shape[0]) != D:
        raise ValueError(
            f"w must have shape (D, M) with D={D} = prod(x.shape[1:]) for x of shape "
            f"{shape_of(x)}, got w of shape {shape_of(w)}"
        )
    require_shape("b", b, (int(w.shape[1]),), hint="one bias per column of w")
    return N, D


def check_norm_args(
    x: Array, gamma: Array, beta: Array, ndim: int, feature_shape: tuple, layout: str
) -> None:
    """x has ``ndim`` dims laid out as ``layout``; gamma/beta must have ``feature_shape``."""
    require_ndim("x", x, ndim, layout)
    require_shape("gamma", gamma, feature_shape)
    require_shape("beta", beta, feature_shape)


def check_norm_param(params: Any, dict_name: str) -> float:
    """ln_param / gn_param: a dict with optional 'eps' (default 1e-5); 'mode' is accepted and
    ignored (CS231n passes the same dicts around for every normalization). Returns eps."""
    require_dict(params, dict_name)
    return require_nonneg_real(f"{dict_name}['eps']", params.get("eps", 1e-5))


def check_bn_param(bn_param: Any, D: int, dict_name: str = "bn_param") -> tuple[str, float, float]:
    """bn_param: 'mode' (required, 'train'/'test'), 'eps' (1e-5), 'momentum' (0.9), optional
    'running_mean'/'running_var' of shape (D,). Returns (mode, eps, momentum)."""
    require_dict(bn_param, dict_name)
    mode = require_mode(bn_param, dict_name, required=True)
    eps = require_nonneg_real(f"{dict_name}['eps']", bn_param.get("eps", 1e-5))
    momentum = require_unit_interval(f"{dict_name}['momentum']", bn_param.get("momentum", 0.9))
    for key in ("running_mean", "running_var"):
        if bn_param.get(key) is not None:
            require_shape(f"{dict_name}[{key!r}]", bn_param[key], (D,), hint="one per feature")
    return mode, eps, momentum


def check_scores_labels(x: Array, y: Array) -> tuple[int, int]:
    """Loss inputs: x (N, C) scores with N >= 1, C >= 1; y (N,) integer labels in [0, C)."""
    require_ndim("x", x, 2, "(N, C) scores")
    require_float("x", x)
    N, C = shape_of(x)
    if N < 1 or C < 1:
        raise ValueError(f"x must have at least one row and one class, got shape {(N, C)}")
    require_labels(y, N, C)
    return N, C


def require_negative_slope(negative_slope: object) -> float:
    """Leaky ReLU's slope for x <= 0: any finite real number (PyTorch accepts any)."""
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real):
        raise TypeError(
            f"negative_slope must be a real number, got {negative_slope!r} "
            f"({type(negative_slope).__name__})"
        )
    if not math.isfinite(float(negative_slope)):
        raise ValueError(f"negative_slope must be finite, got {negative_slope}")
    return float(negative_slope)


def conv_transpose_output_shape(
    H: int, W: int, HH: int, WW: int, stride: object, pad: object
) -> tuple[int, int]:
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


def check_conv_transpose_args(
    x: Array, w: Array, b: Array, conv_param: dict
) -> tuple[int, int, int, int]:
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
