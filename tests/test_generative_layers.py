"""torch_impl.nn's LeakyReLU and ConvTranspose2d against torch.nn's, the
transposed convolution as the adjoint of the convolution, and their argument checks.

(The Functions and the NumPy twins run through the parity registry: parity_tests/ops_generative.py.)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from numpy_impl import generative_layers as npgl
from parity_tests.tolerances import ASSERT_CLOSE
from torch_impl.functions import Conv2dFunction, ConvTranspose2dFunction, LeakyReLUFunction
from torch_impl.nn import ConvTranspose2d, LeakyReLU

F64 = ASSERT_CLOSE["float64"]


def _rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("slope", [0.01, 0.2, -0.3])
def test_leaky_relu_module_matches_nn(slope):
    x = torch.tensor(_rng().standard_normal((3, 4, 5)), requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    out, ref = LeakyReLU(slope)(x), nn.LeakyReLU(slope)(x_ref)
    torch.testing.assert_close(out, ref, **F64)
    dout = torch.tensor(_rng(1).standard_normal(out.shape))
    out.backward(dout)
    ref.backward(dout)
    torch.testing.assert_close(x.grad, x_ref.grad, **F64)


def test_leaky_relu_default_slope_and_kink():
    assert LeakyReLU().negative_slope == 0.01
    x = torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)
    LeakyReLUFunction.apply(x).sum().backward()
    # slope at 0 is negative_slope, as nn.LeakyReLU's backward
    torch.testing.assert_close(x.grad, torch.tensor([0.01, 0.01, 1.0], dtype=torch.float64))


@pytest.mark.parametrize(
    ("C", "F", "k", "stride", "padding", "HW"),
    [(16, 8, 4, 2, 1, (7, 7)), (8, 1, 4, 2, 1, (5, 5)), (3, 2, (2, 3), 3, 0, (2, 5))],
)
def test_conv_transpose_module_matches_nn(C, F, k, stride, padding, HW):
    """Same init (same seed: PyTorch's kaiming-uniform bound 1/sqrt(out_channels * kH * kW)),
    same output and gradients, in float64."""
    torch.manual_seed(0)
    ours = ConvTranspose2d(C, F, k, stride=stride, padding=padding).double()
    torch.manual_seed(0)
    ref = nn.ConvTranspose2d(C, F, k, stride=stride, padding=padding).double()
    torch.testing.assert_close(ours.w, ref.weight, rtol=0, atol=0)
    torch.testing.assert_close(ours.b, ref.bias, rtol=0, atol=0)
    x = torch.tensor(_rng().standard_normal((2, C, *HW)))
    out, expected = ours(x), ref(x)
    torch.testing.assert_close(out, expected, **F64)
    dout = torch.tensor(_rng(1).standard_normal(out.shape))
    out.backward(dout)
    expected.backward(dout)
    torch.testing.assert_close(ours.w.grad, ref.weight.grad, **F64)
    torch.testing.assert_close(ours.b.grad, ref.bias.grad, **F64)


def test_dc_generator_geometry_doubles_the_map():
    layer = ConvTranspose2d(128, 64, 4, stride=2, padding=1)
    assert layer(torch.zeros(3, 128, 7, 7)).shape == (3, 64, 14, 14)
    assert layer.w.shape == (128, 64, 4, 4) and layer.b.shape == (64,)


@pytest.mark.parametrize("seed", range(4))
def test_conv_transpose_is_the_adjoint_of_conv(seed):
    """<conv_transpose(x, w), y> = <x, conv(y, w)>: the derivation's claim, checked with
    torch_impl's own convolution (w read as (C filters, F channels, HH, WW), no bias)."""
    rng = _rng(seed)
    N, C, F = int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
    H, W = (int(v) for v in rng.integers(1, 5, size=2))
    HH, WW = (int(v) for v in rng.integers(1, 5, size=2))
    stride, pad = int(rng.integers(1, 4)), int(rng.integers(0, 2))
    H_out, W_out = (H - 1) * stride - 2 * pad + HH, (W - 1) * stride - 2 * pad + WW
    if min(H_out, W_out) < 1:
        pad = 0
        H_out, W_out = (H - 1) * stride + HH, (W - 1) * stride + WW
    x = torch.tensor(rng.standard_normal((N, C, H, W)))
    w = torch.tensor(rng.standard_normal((C, F, HH, WW)))
    y = torch.tensor(rng.standard_normal((N, F, H_out, W_out)))
    up = ConvTranspose2dFunction.apply(x, w, torch.zeros(F, dtype=torch.float64), stride, pad)
    down = Conv2dFunction.apply(y, w, torch.zeros(C, dtype=torch.float64), stride, pad)
    assert down.shape == x.shape
    torch.testing.assert_close((up * y).sum(), (x * down).sum(), **F64)


def test_float32_stays_float32_and_numpy_keeps_dtype():
    x = torch.randn(2, 3, 4, 4)
    w = torch.randn(3, 2, 4, 4)
    out = ConvTranspose2dFunction.apply(x, w, torch.zeros(2), 2, 1)
    assert out.dtype == torch.float32 and out.shape == (2, 2, 8, 8)
    o, _ = npgl.conv_transpose_forward_naive(
        x.numpy(), w.numpy(), np.zeros(2, np.float32), {"stride": 2, "pad": 1}
    )
    assert o.dtype == np.float32
    torch.testing.assert_close(torch.from_numpy(o), out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ConvTranspose2d(0, 2, 3), "in_channels must be >= 1"),
        (lambda: ConvTranspose2d(2, 2, (3, 3, 3)), "kernel_size"),
        (lambda: ConvTranspose2d(2, 2, 3, stride=0), "stride must be >= 1"),
        (lambda: ConvTranspose2d(2, 2, 3, padding=-1), "padding must be >= 0"),
        (lambda: LeakyReLU("0.1"), "negative_slope must be a real number"),
        (lambda: LeakyReLU(float("inf")), "negative_slope must be finite"),
    ],
)
def test_module_arguments_are_checked(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_wrong_input_is_named():
    layer = ConvTranspose2d(3, 2, 4, stride=2, padding=1)
    with pytest.raises(ValueError, match="w has 3 input channels .* x has C=4"):
        layer(torch.zeros(1, 4, 5, 5))
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        layer(torch.zeros(3, 5, 5))
    with pytest.raises(TypeError, match="w must have x's dtype"):
        layer(torch.zeros(1, 3, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="crops the transposed convolution's output"):
        ConvTranspose2dFunction.apply(
            torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), torch.zeros(1), 1, 1
        )


def test_numpy_backward_checks_dout_shape():
    x, w, b = np.zeros((1, 2, 3, 3)), np.zeros((2, 1, 2, 2)), np.zeros(1)
    _, cache = npgl.conv_transpose_forward_naive(x, w, b, {"stride": 1, "pad": 0})
    with pytest.raises(
        ValueError, match=r"dout must have the forward output's shape \(1, 1, 4, 4\)"
    ):
        npgl.conv_transpose_backward_naive(np.zeros((1, 1, 3, 3)), cache)
    _, cache = npgl.leaky_relu_forward(x)
    with pytest.raises(ValueError, match="dout must have"):
        npgl.leaky_relu_backward(np.zeros((1, 2)), cache)


def _entry(name):
    from parity_tests.registry import specs_with

    (spec,) = [s for s in specs_with("torch_impl_fn") if s.name == name]
    return spec


def test_the_parity_checks_catch_a_wrong_transpose_backward(monkeypatch):
    """The registry entries can fail: a dw off by 1e-6 (relative) in the NumPy twin, and a
    torch dx shifted by one column, are both reported (case 0: the DC generator's geometry)."""
    from parity_tests import checks

    original = npgl.conv_transpose_backward_naive

    def slightly_wrong(dout, cache):
        dx, dw, db = original(dout, cache)
        return dx, dw * (1 + 1e-6), db

    monkeypatch.setattr(npgl, "conv_transpose_backward_naive", slightly_wrong)
    spec = _entry("conv_transpose_naive")
    with pytest.raises(AssertionError, match="dw"):
        checks.check_numerical(spec, 0)
    monkeypatch.undo()

    checks.check_builtin(spec, 0, np.float64)  # passes as written

    def dx_off_by_one_column(t, c):
        x = t["x"] * 1.0  # a copy whose gradient the hook shifts, as a window index slip would
        x.register_hook(lambda g: g.roll(1, dims=3))
        return spec.torch_impl_fn({**t, "x": x}, c)

    with pytest.raises(AssertionError, match="dx: torch_impl vs builtin"):
        wrong = dataclasses.replace(spec, torch_impl_fn=dx_off_by_one_column)
        checks.check_builtin(wrong, 0, np.float64)
