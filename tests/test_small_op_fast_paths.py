"""The small ops' attribute-checked fast paths (softmax loss, layernorm, groupnorm): every call
the fast path does not recognize still goes through the full checks, the results match the
PyTorch builtins on either path, and the saved buffers survive a retained graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from parity_tests.tolerances import ASSERT_CLOSE
from torch_impl.losses import SoftmaxLossFunction
from torch_impl.normalization import LayerNormFunction, SpatialGroupNormFunction


def _scores(rng, N, C):
    x = torch.tensor(rng.standard_normal((N, C)) * 3, dtype=torch.float64, requires_grad=True)
    return x, torch.tensor(rng.integers(0, C, N))


@pytest.mark.parametrize("label_dtype", [torch.int64, torch.int32, torch.uint8])
def test_softmax_loss_matches_cross_entropy_for_every_label_dtype(label_dtype):
    rng = np.random.default_rng(0)
    N, C = int(rng.integers(1, 9)), int(rng.integers(1, 90))
    x, y = _scores(rng, N, C)
    loss = SoftmaxLossFunction.apply(x, y.to(label_dtype))
    (dx,) = torch.autograd.grad(loss, x)
    ref = F.cross_entropy(x, y)
    (dref,) = torch.autograd.grad(ref, x)
    torch.testing.assert_close(loss, ref, **ASSERT_CLOSE["float64"])
    torch.testing.assert_close(dx, dref, **ASSERT_CLOSE["float64"])


@pytest.mark.parametrize("shift", [-1, 1])
def test_softmax_loss_labels_out_of_range_name_y(shift):
    rng = np.random.default_rng(1)
    x, y = _scores(rng, 5, 4)
    y[2] = -1 if shift < 0 else 4
    with pytest.raises(ValueError, match=r"y must lie in \[0, 4\)"):
        SoftmaxLossFunction.apply(x, y)


def test_softmax_loss_retained_graph_gives_the_same_gradient_twice():
    rng = np.random.default_rng(2)
    x, y = _scores(rng, 6, 3)
    loss = SoftmaxLossFunction.apply(x, y)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward(torch.tensor(2.0, dtype=torch.float64))
    torch.testing.assert_close(x.grad, 3 * first, **ASSERT_CLOSE["float64"])


def test_softmax_loss_is_once_differentiable():
    rng = np.random.default_rng(3)
    x, y = _scores(rng, 4, 5)
    loss = SoftmaxLossFunction.apply(x, y)
    seed = torch.ones((), dtype=x.dtype, requires_grad=True)  # a differentiable dloss
    (dx,) = torch.autograd.grad(loss, x, seed, create_graph=True)
    assert dx.requires_grad
    with pytest.raises(RuntimeError, match="differentiate twice"):
        dx.sum().backward()


@pytest.mark.parametrize("eps", [1e-5, 0, np.float64(1e-3)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "3-d"])
def test_layernorm_matches_builtin_on_both_paths(eps, layout):
    rng = np.random.default_rng(4)
    D = int(rng.integers(1, 12))
    shape = {"contiguous": (5, D), "transposed": (D, 5), "3-d": (2, 3, D)}[layout]
    x = torch.tensor(rng.standard_normal(shape) + 50, requires_grad=True)
    if layout == "transposed":
        x = x.detach().t().requires_grad_()
    gamma = torch.tensor(rng.standard_normal(D) + 1, requires_grad=True)
    beta = torch.tensor(rng.standard_normal(D), requires_grad=True)
    dout = torch.tensor(rng.standard_normal(x.shape))
    out = LayerNormFunction.apply(x, gamma, beta, eps)
    grads = torch.autograd.grad(out, (x, gamma, beta), dout)
    ref = F.layer_norm(x, (D,), gamma, beta, float(eps))
    refs = torch.autograd.grad(ref, (x, gamma, beta), dout)
    torch.testing.assert_close(out, ref, **ASSERT_CLOSE["float64"])
    for got, want in zip(grads, refs, strict=True):
        torch.testing.assert_close(got, want, **ASSERT_CLOSE["float64"])


def test_layernorm_bad_arguments_still_name_them():
    x = torch.randn(3, 4, dtype=torch.float64)
    g = torch.ones(4, dtype=torch.float64)
    with pytest.raises(TypeError, match="gamma must have x's dtype"):
        LayerNormFunction.apply(x, g.float(), g, 1e-5)
    with pytest.raises(ValueError, match="beta must have shape"):
        LayerNormFunction.apply(x, g, torch.ones(5, dtype=torch.float64), 1e-5)
    with pytest.raises(ValueError, match="eps must be finite and >= 0"):
        LayerNormFunction.apply(x, g, g, -1.0)
    with pytest.raises(ValueError, match="eps must be finite and >= 0"):
        LayerNormFunction.apply(x, g, g, float("inf"))
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        LayerNormFunction.apply(torch.ones(3, 4, dtype=torch.int64), g, g, 1e-5)


@pytest.mark.parametrize("G", [1, 2, np.int64(4)])
def test_groupnorm_matches_builtin_on_both_paths(G):
    rng = np.random.default_rng(5)
    N, C, H, W = 3, 8, int(rng.integers(1, 5)), int(rng.integers(1, 5))
    x = torch.tensor(rng.standard_normal((N, C, H, W)) + 20, requires_grad=True)
    gamma = torch.tensor(rng.standard_normal((1, C, 1, 1)) + 1, requires_grad=True)
    beta = torch.tensor(rng.standard_normal((1, C, 1, 1)), requires_grad=True)
    dout = torch.tensor(rng.standard_normal(x.shape))
    out = SpatialGroupNormFunction.apply(x, gamma, beta, G, 1e-5)
    grads = torch.autograd.grad(out, (x, gamma, beta), dout)
    ref = F.group_norm(x, int(G), gamma.reshape(C), beta.reshape(C), 1e-5)
    refs = torch.autograd.grad(ref, (x, gamma, beta), dout)
    torch.testing.assert_close(out, ref, **ASSERT_CLOSE["float64"])
    for got, want in zip(grads, refs, strict=True):
        torch.testing.assert_close(got, want.reshape(got.shape), **ASSERT_CLOSE["float64"])


def test_groupnorm_bad_groups_still_name_them():
    x = torch.randn(2, 6, 3, 3)
    g = torch.ones(1, 6, 1, 1)
    with pytest.raises(ValueError, match="G=4 groups must divide"):
        SpatialGroupNormFunction.apply(x, g, g, 4, 1e-5)
    with pytest.raises(ValueError, match="G must be >= 1"):
        SpatialGroupNormFunction.apply(x, g, g, 0, 1e-5)
    with pytest.raises(TypeError, match="G must be an integer"):
        SpatialGroupNormFunction.apply(x, g, g, 2.0, 1e-5)
