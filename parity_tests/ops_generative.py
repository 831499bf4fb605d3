"""Registry entries for the GAN notebook's layers that torch_impl adds: leaky ReLU and the
transposed convolution (``numpy_impl.generative_layers`` / ``torch_impl.generative_layers``).

Conventions as ``parity_tests/ops_layers.py`` (whose case generators these entries reuse). The
builtins are ``F.leaky_relu`` and ``F.conv_transpose2d``, on the reference side only.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from builtin_impl import functions as bf
from numpy_impl import generative_layers as npgl
from parity_tests.ops_layers import (
    _X_INT,
    _away_from_zero,
    _batch,
    _case,
    _numpy_pair,
    _set_const,
    _set_input,
    _set_param,
    _xs_and,
)
from parity_tests.registry import BadInput, Case, ModuleInfo, OpSpec
from torch_impl import functions as tf
from torch_impl import nn as tnn

# ----------------------------------------------------------------------------------------------
# Input generators
# ----------------------------------------------------------------------------------------------


def _leaky_relu_case(rng, dtype, N=None, dims=None, slope=None) -> Case:
    """x (N, *dims) with every value >= 0.1 away from the kink; dims = () is a 1-D x. The slope
    is drawn from PyTorch's default, the GAN notebook's, zero (plain ReLU), a negative one and
    one above 1 (any finite slope is valid)."""
    N = _batch(rng) if N is None else N
    if dims is None:
        dims = tuple(int(d) for d in rng.integers(1, 6, size=rng.integers(1, 4)))
    if slope is None:
        slope = float(rng.choice([0.01, 0.2, 0.0, -0.5, 1.5]))
    return _case(dtype, {"x": _away_from_zero(rng, (N, *dims))}, negative_slope=slope)


def _conv_transpose_case(
    rng, dtype, N=None, HW=None, kernel=None, stride=None, pad=None, C=None
) -> Case:
    """x (N, C, H, W), w (C, F, HH, WW), b (F,) and a stride/pad whose output is non-empty;
    keyword overrides pin the awkward geometries (see the entry's flavors)."""
    N = _batch(rng) if N is None else N
    C, Fn = C or int(rng.integers(1, 4)), int(rng.integers(1, 4))
    H, W = HW or (int(s) for s in rng.integers(1, 6, size=2))
    HH, WW = kernel or (int(s) for s in rng.integers(1, 5, size=2))
    stride = stride or int(rng.integers(1, 4))
    if pad is None:
        # The largest padding that leaves at least one output row and column.
        most = min((H - 1) * stride + HH - 1, (W - 1) * stride + WW - 1) // 2
        pad = int(rng.integers(0, min(most, 2) + 1))
    inputs = {
        "x": rng.standard_normal((N, C, H, W)),
        "w": rng.standard_normal((C, Fn, HH, WW)) / np.sqrt(C * HH * WW),
        "b": rng.standard_normal(Fn),
    }
    return _case(dtype, inputs, conv_param={"stride": stride, "pad": pad})


# ----------------------------------------------------------------------------------------------
# torch_impl and builtin sides
# ----------------------------------------------------------------------------------------------


def _conv_transpose_apply(t, c):
    cp = c["conv_param"]
    return tf.ConvTranspose2dFunction.apply(t["x"], t["w"], t["b"], cp["stride"], cp["pad"])


def _conv_transpose_builtin(t, c):
    cp = c["conv_param"]
    return bf.conv_transpose(t["x"], t["w"], t["b"], cp["stride"], cp["pad"])


# ----------------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------------

_LEAKY_RELU_BAD = (
    _X_INT,
    BadInput("slope a string", _set_const("negative_slope", lambda c: "0.1"), "negative_slope"),
    BadInput("slope NaN", _set_const("negative_slope", lambda c: float("nan")), "negative_slope"),
    BadInput("slope True", _set_const("negative_slope", lambda c: True), "negative_slope"),
)

_CONV_TRANSPOSE_BAD = (
    _X_INT,
    BadInput(
        "w's first dimension != C",
        _set_input("w", lambda w: np.concatenate([w, w], axis=0)),
        "input channels",
    ),
    BadInput("b wrong length", _set_input("b", lambda b: np.append(b, 0.0)), "b must have shape"),
    BadInput("w 3-D", _set_input("w", lambda w: w[0]), "w must have 4 dimensions"),
    BadInput("x 3-D", _set_input("x", lambda x: x[0]), "x must have 4 dimensions"),
    BadInput("padding crops everything", _set_param("conv_param", "pad", 50), "crops"),
    BadInput("stride 0", _set_param("conv_param", "stride", 0), "stride"),
    BadInput("pad -1", _set_param("conv_param", "pad", -1), "pad"),
    BadInput("stride float", _set_param("conv_param", "stride", 2.0), "stride"),
    BadInput(
        "x with a 0-row map",
        _set_input("x", lambda x: np.zeros((*x.shape[:2], 0, x.shape[3]))),
        "H, W >= 1",
    ),
)

_CONV_TRANSPOSE_FLAVORS = (
    # the DC generator's geometry: kernel 4, stride 2, padding 1 (doubles the map)
    {"HW": (3, 3), "kernel": (4, 4), "stride": 2, "pad": 1},
    # batch of 1, stride 3 > a 1x2 kernel: output rows and columns no input reaches (bias only)
    {"N": 1, "HW": (3, 4), "kernel": (1, 2), "stride": 3, "pad": 0},
    # 1x1 maps: a 1x1 kernel on one channel; a 3x3 kernel cropped back to 1x1 by padding 1
    {"HW": (1, 1), "kernel": (1, 1), "pad": 0, "C": 1},
    {"HW": (1, 1), "kernel": (3, 3), "pad": 1},
    # padding crops the map to a single output pixel that only the middle input row/column reach
    {"HW": (2, 3), "kernel": (1, 1), "stride": 2, "pad": 1},
    # overlapping windows (kernel 3 > stride 1) with padding
    {"HW": (4, 3), "kernel": (3, 3), "stride": 1, "pad": 2},
    # an empty batch
    {"N": 0},
)

# ----------------------------------------------------------------------------------------------
# torch_impl.nn modules
# ----------------------------------------------------------------------------------------------


def _conv_transpose_module(m):
    b = nn.ConvTranspose2d(
        m.in_channels,
        m.out_channels,
        m.kernel_size,
        stride=m.stride,
        padding=m.padding,
        dtype=m.w.dtype,
        device=m.w.device,
    )
    b.weight, b.bias = m.w, m.b  # the same (C_in, C_out, kH, kW) layout
    return b


_LEAKY_RELU_MODULE = ModuleInfo(
    tnn.LeakyReLU,
    lambda case: tnn.LeakyReLU(case.consts["negative_slope"]),
    builtin=lambda m: nn.LeakyReLU(m.negative_slope),
)
_CONV_TRANSPOSE_MODULE = ModuleInfo(
    tnn.ConvTranspose2d,
    lambda case: tnn.ConvTranspose2d(
        *case.inputs["w"].shape[:2],
        case.inputs["w"].shape[2:],
        stride=case.consts["conv_param"]["stride"],
        padding=case.consts["conv_param"]["pad"],
    ),
    builtin=_conv_transpose_module,
)


OPS = [
    OpSpec(
        name="leaky_relu",
        make_case=_leaky_relu_case,
        flavors=({"N": 1, "slope": 0.01}, {"N": 0}, {"dims": ()}, {"slope": 0.0}),
        numpy_forward_backward=_numpy_pair(
            npgl, "leaky_relu_forward", "leaky_relu_backward", _xs_and("negative_slope")
        ),
        torch_impl_fn=lambda t, c: tf.LeakyReLUFunction.apply(t["x"], c["negative_slope"]),
        builtin_fn=lambda t, c: bf.leaky_relu(t["x"], c["negative_slope"]),
        bad_inputs=_LEAKY_RELU_BAD,
        conversion="F.leaky_relu(x, negative_slope): identical definition",
        module=_LEAKY_RELU_MODULE,
    ),
    OpSpec(
        name="conv_transpose_naive",
        make_case=_conv_transpose_case,
        flavors=_CONV_TRANSPOSE_FLAVORS,
        numpy_forward_backward=_numpy_pair(
            npgl,
            "conv_transpose_forward_naive",
            "conv_transpose_backward_naive",
            _xs_and("conv_param"),
        ),
        torch_impl_fn=_conv_transpose_apply,
        builtin_fn=_conv_transpose_builtin,
        bad_inputs=_CONV_TRANSPOSE_BAD,
        conversion="F.conv_transpose2d(x, w, b, stride, padding=pad): same (C_in, C_out, kH, kW) "
        "weight layout, no output padding",
        module=_CONV_TRANSPOSE_MODULE,
    ),
]
