"""Channels-last inputs through the torch twin's ReLU, spatial batchnorm and max pool: the
output and the input gradient keep x's memory format (torch.channels_last), as PyTorch's own
layers do, and equal the results of the same tensors laid out contiguously (and the builtins').

A network fed channels-last tensors then stays channels last from layer to layer, with no
transposing copies in between.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from parity_tests.tolerances import ASSERT_CLOSE
from torch_impl.functions import BatchNormFunction, MaxPool2dFunction, ReLUFunction

CL = torch.channels_last
# (N, C, H, W): drawn sizes, plus a batch of 1, an empty batch, a single channel and a 1 x 1 map.
_DRAWN = torch.randint(2, 10, (3, 4), generator=torch.Generator().manual_seed(20261207)).tolist()
SHAPES = [tuple(s) for s in _DRAWN] + [(1, 4, 5, 5), (0, 3, 4, 4), (2, 1, 6, 4), (3, 6, 1, 1)]


def _pair(shape, seed, dtype=torch.float64):
    """x and dout of ``shape`` (dout for a same-shaped output), contiguous, from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype), torch.randn(
        shape, generator=g, dtype=dtype
    )


def _run(fn, x, dout_of):
    """fn(x) and dx for the upstream gradient dout_of(out), x a fresh leaf."""
    x = x.detach().requires_grad_(True)
    out = fn(x)
    (dx,) = torch.autograd.grad(out, x, dout_of(out))
    return out, dx


def _is_channels_last(t):
    return t.is_contiguous(memory_format=CL)


def _distinct_layouts(t):
    """True when t's channels-last and contiguous layouts differ (not with C = 1, a 1 x 1
    map or an empty tensor, where one memory order is both)."""
    return t.numel() > 0 and t.shape[1] > 1 and t.shape[2] * t.shape[3] > 1


def _check_layouts(out, dx, x_cl):
    """out and dx channels last (and, where that differs, not plainly contiguous). An empty
    x has no memory order to keep."""
    if x_cl.numel() == 0:
        return
    assert _is_channels_last(out) and _is_channels_last(dx)
    assert not (_distinct_layouts(out) and out.is_contiguous())
    assert not (_distinct_layouts(dx) and dx.is_contiguous())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dout_layout", [CL, torch.contiguous_format])
def test_relu_keeps_channels_last(shape, dout_layout):
    x, dout = _pair(shape, 0)
    x[..., 0] = 0.0  # the kink: zero gradient
    ref_out, ref_dx = _run(ReLUFunction.apply, x, lambda o: dout)
    x_cl = x.to(memory_format=CL)
    out, dx = _run(ReLUFunction.apply, x_cl, lambda o: dout.to(memory_format=dout_layout))
    _check_layouts(out, dx, x_cl)
    assert torch.equal(out, ref_out) and torch.equal(dx, ref_dx)
    assert torch.equal(out, F.relu(x))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dout_layout", [CL, torch.contiguous_format])
@pytest.mark.parametrize("training", [True, False])
def test_spatial_batchnorm_keeps_channels_last(shape, dout_layout, training):
    x, dout = _pair(shape, 1)
    C = shape[1]
    g = torch.Generator().manual_seed(2)
    gamma = torch.rand(C, generator=g, dtype=x.dtype) + 0.5
    beta = torch.randn(C, generator=g, dtype=x.dtype)
    rm, rv = torch.randn(C, generator=g, dtype=x.dtype), torch.rand(C, generator=g, dtype=x.dtype)

    def bn(t, buffers):
        return lambda x_: BatchNormFunction.apply(x_, gamma, beta, *buffers, training, 0.9, 1e-5)

    buffers_ref, buffers_cl = (rm.clone(), rv.clone()), (rm.clone(), rv.clone())
    ref_out, ref_dx = _run(bn(x, buffers_ref), x, lambda o: dout)
    x_cl = x.to(memory_format=CL)
    out, dx = _run(bn(x_cl, buffers_cl), x_cl, lambda o: dout.to(memory_format=dout_layout))
    _check_layouts(out, dx, x_cl)
    torch.testing.assert_close(out, ref_out, **ASSERT_CLOSE["float64"])
    torch.testing.assert_close(dx, ref_dx, **ASSERT_CLOSE["float64"])
    for a, b in zip(buffers_cl, buffers_ref, strict=True):  # the same running statistics
        torch.testing.assert_close(a, b, **ASSERT_CLOSE["float64"])
    if shape[0] > 0 or not training:  # (PyTorch's batch_norm rejects an empty training batch)
        builtin = F.batch_norm(x_cl, rm.clone(), rv.clone(), gamma, beta, training, 0.1, 1e-5)
        torch.testing.assert_close(out, builtin, **ASSERT_CLOSE["float64"])


@pytest.mark.parametrize("shape", [(3, 5, 7, 8), (1, 4, 4, 4), (0, 3, 6, 6), (2, 6, 9, 5)])
@pytest.mark.parametrize(
    ("pool", "stride"),
    # Non-overlapping windows (stride >= pool size: tiling, gaps, 1 x 1, non-square) and
    # overlapping ones (stride < pool size).
    [((2, 2), 2), ((3, 3), 3), ((1, 1), 1), ((2, 3), 3), ((3, 2), 4), ((1, 2), 2), ((3, 2), 1)],
)
@pytest.mark.parametrize("dout_layout", [CL, torch.contiguous_format])
def test_max_pool_keeps_channels_last(shape, pool, stride, dout_layout):
    x, _ = _pair(shape, 3)
    x = x.round(decimals=0)  # ties inside windows: the first maximum takes the gradient
    ph, pw = pool

    def pool_fn(x_):
        return MaxPool2dFunction.apply(x_, ph, pw, stride)

    def dout_of(o):
        g = torch.Generator().manual_seed(4)
        return torch.randn(o.shape, generator=g, dtype=o.dtype)

    ref_out, ref_dx = _run(pool_fn, x, dout_of)
    x_cl = x.to(memory_format=CL)
    out, dx = _run(pool_fn, x_cl, lambda o: dout_of(o).to(memory_format=dout_layout))
    _check_layouts(out, dx, x_cl)
    assert torch.equal(out, ref_out)
    torch.testing.assert_close(dx, ref_dx, **ASSERT_CLOSE["float64"])  # overlaps add in any order
    assert torch.equal(out, F.max_pool2d(x, (ph, pw), stride))


def test_float32_channels_last_network_stays_channels_last():
    """conv-free stack relu -> batchnorm -> max pool on a float32 channels-last batch: every
    intermediate and the input gradient stay channels last."""
    x, _ = _pair((4, 6, 8, 8), 5, torch.float32)
    x = x.to(memory_format=CL).requires_grad_(True)
    C = 6
    h = ReLUFunction.apply(x)
    assert _is_channels_last(h)
    h = BatchNormFunction.apply(h, torch.ones(C), torch.zeros(C), None, None, True, 0.9, 1e-5)
    assert _is_channels_last(h)
    h = MaxPool2dFunction.apply(h, 2, 2, 2)
    assert _is_channels_last(h) and not h.is_contiguous()
    (dx,) = torch.autograd.grad(h.square().sum(), x)
    assert _is_channels_last(dx) and not dx.is_contiguous()


@pytest.mark.parametrize(("pool", "stride"), [((2, 2), 2), ((3, 2), 3), ((2, 3), 4)])
def test_max_pool_channels_last_gradcheck(pool, stride):
    """The channels-last path's hand-written backward against numerical differences (distinct
    values, so every window has one maximum and the function is differentiable there)."""
    g = torch.Generator().manual_seed(6)
    N, C, H, W = 2, 3, 7, 9
    x = torch.randperm(N * C * H * W, generator=g).to(torch.float64).view(N, C, H, W) / 10
    x = x.to(memory_format=CL).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: MaxPool2dFunction.apply(t, *pool, stride), (x,))
