"""Dropout: CS231n's p is the KEEP probability, PyTorch's F.dropout takes the DROP probability.

The registry entry compares the twins with a shared mask (numpy's seeded draw). Here:
* F.dropout(x, 1 - p) itself equals torch_impl's DropoutFunction fed with the builtin's mask
  (read back from its output), forward and backward, so "x * mask, mask in {0, 1/p}" is what the
  builtin computes;
* torch_impl's own draws keep each unit with probability p and scale kept units by exactly 1/p
  (binomial bounds at 5 sigma: a false alarm has probability < 1e-6), and numpy_impl's likewise;
* p = 1 and test mode are the identity.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from numpy_impl import layers as npl
from parity_tests.tolerances import ASSERT_CLOSE
from torch_impl import functional as tfn
from torch_impl import functions as tf

DTYPES = {"float64": torch.float64, "float32": torch.float32}
N_STAT = 200_000  # units per statistical draw


def _x(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    # |x| >= 0.1: a zero in the output can only come from the mask.
    x = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)
    return torch.tensor(x, dtype=dtype, requires_grad=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_builtin_dropout_equals_twin_with_its_mask(dtype, p):
    x = _x((7, 5, 3), DTYPES[dtype])
    with torch.random.fork_rng():
        torch.manual_seed(231)
        y_builtin = F.dropout(x, p=1 - p, training=True)  # conversion: drop prob = 1 - keep prob
    kept = y_builtin.detach() != 0
    # The builtin's kept units are x / p: the inverted-dropout scaling CS231n uses.
    torch.testing.assert_close(
        y_builtin.detach()[kept], x.detach()[kept] / p, **ASSERT_CLOSE[dtype]
    )
    mask = kept.to(DTYPES[dtype]) / p  # CS231n's cached mask: 0 or 1/p
    y_twin = tf.DropoutFunction.apply(x, p, True, mask)
    torch.testing.assert_close(y_twin, y_builtin, **ASSERT_CLOSE[dtype])

    dout = torch.randn(x.shape, dtype=DTYPES[dtype], generator=torch.Generator().manual_seed(1))
    (g_builtin,) = torch.autograd.grad(y_builtin, x, dout)
    (g_twin,) = torch.autograd.grad(y_twin, x, dout)
    torch.testing.assert_close(g_twin, g_builtin, **ASSERT_CLOSE[dtype])


def _assert_keep_rate_and_scale(y: np.ndarray, dx: np.ndarray, p: float, what: str):
    """y = dropout(ones), dx = backward of ones: kept fraction ~ p, kept values exactly 1/p."""
    kept = y != 0
    frac = kept.mean()
    bound = 5 * np.sqrt(p * (1 - p) / y.size)
    assert abs(frac - p) <= bound, f"{what}: kept {frac:.5f}, keep prob {p} (5 sigma {bound:.1e})"
    scale = np.unique(y[kept])
    # One scale for every kept unit, 1/p to the dtype's rounding (1/fl(p) or fl(1/p): 1 ulp).
    ulp = np.finfo(y.dtype).eps / p
    assert scale.size == 1 and abs(scale[0] - 1 / p) <= 2 * ulp, (
        f"{what}: kept units scaled by {scale[:5]}, not 1/p = {1 / p}"
    )
    # E[y] = 1: the mean of the output has std sqrt((1 - p) / p / n).
    bound_mean = 5 * np.sqrt((1 - p) / p / y.size)
    assert abs(y.astype(np.float64).mean() - 1) <= bound_mean + 1e-6, f"{what}: E[y] != x"
    assert np.array_equal(dx != 0, kept), f"{what}: backward mask differs from forward mask"
    assert np.all(dx[kept] == scale[0]), f"{what}: backward does not scale by the forward's 1/p"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.75])
def test_torch_twin_keep_rate_and_scaling(dtype, p):
    x = torch.ones(N_STAT, dtype=DTYPES[dtype], requires_grad=True)
    gen = torch.Generator().manual_seed(int(p * 1000))
    y = tf.DropoutFunction.apply(x, p, True, None, gen)
    (dx,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert y.dtype == DTYPES[dtype] and dx.dtype == DTYPES[dtype]
    _assert_keep_rate_and_scale(y.detach().numpy(), dx.numpy(), p, f"torch_impl {dtype}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.75])
def test_numpy_keep_rate_and_scaling(dtype, p):
    x = np.ones(N_STAT, dtype=dtype)
    y, cache = npl.dropout_forward(x, {"p": p, "mode": "train", "seed": int(p * 1000)})
    dx = npl.dropout_backward(np.ones_like(y), cache)
    assert y.dtype == dtype and dx.dtype == dtype
    _assert_keep_rate_and_scale(y, dx, p, f"numpy_impl {np.dtype(dtype).name}")


def test_functional_seed_reproduces_the_mask():
    x = _x((50, 40), torch.float64)
    y1 = tfn.dropout(x, {"p": 0.5, "mode": "train", "seed": 3})
    y2 = tfn.dropout(x, {"p": 0.5, "mode": "train", "seed": 3})
    y3 = tfn.dropout(x, {"p": 0.5, "mode": "train", "seed": 4})
    assert torch.equal(y1, y2), "same seed, different masks"
    assert not torch.equal(y1 != 0, y3 != 0), "different seeds, same mask"


@pytest.mark.parametrize("mode", ["train", "test"])
def test_identity_when_keeping_everything_or_testing(mode):
    p = 1.0 if mode == "train" else 0.3
    x = _x((4, 6), torch.float64)
    y = tfn.dropout(x, {"p": p, "mode": mode})
    (dx,) = torch.autograd.grad(y, x, torch.full_like(x, 2.0))
    assert torch.equal(y, x) and torch.equal(dx, torch.full_like(x, 2.0))
    y_np, cache = npl.dropout_forward(x.detach().numpy(), {"p": p, "mode": mode})
    assert np.array_equal(y_np, x.detach().numpy())
    assert np.array_equal(npl.dropout_backward(np.full((4, 6), 2.0), cache), np.full((4, 6), 2.0))


# One meaning per name: every dropout module and dict of the project takes the KEEP probability;
# the transformer layers' ``dropout`` argument (the course's DROP probability) is converted once.


def test_numpy_dropout_uses_a_given_mask_like_the_attention_layers():
    x = np.random.default_rng(0).standard_normal((4, 6))
    mask = np.where(np.random.default_rng(1).random((4, 6)) < 0.5, 0.0, 2.0)
    out, cache = npl.dropout_forward(x, {"p": 0.5, "mode": "train", "mask": mask})
    np.testing.assert_array_equal(out, x * mask)
    dx = npl.dropout_backward(np.ones_like(x), cache)
    np.testing.assert_array_equal(dx, mask)
    with pytest.raises(ValueError, match=r"dropout_param\['mask'\]"):
        npl.dropout_forward(x, {"p": 0.5, "mode": "train", "mask": mask[:, :3]})


def test_numpy_dropout_seeds_in_either_mode_as_the_course():
    # CS231n's dropout_forward calls np.random.seed(seed) before looking at the mode, so the
    # global random state after a test-mode call is the seeded one.
    x = np.ones((3, 3))
    npl.dropout_forward(x, {"p": 0.5, "mode": "test", "seed": 7})
    after_test = np.random.rand()  # noqa: NPY002 -- the global state is what is tested
    np.random.seed(7)  # noqa: NPY002
    assert after_test == np.random.rand()  # noqa: NPY002


def test_attention_and_layers_draw_the_same_numpy_mask():
    from numpy_impl import attention as npa

    param = {"p": 0.7, "mode": "train", "seed": 3}
    shape = (2, 3, 4)
    A = np.ones(shape)
    _, cache = npl.dropout_forward(A, dict(param))
    np.testing.assert_array_equal(npa._dropout_mask(shape, A.dtype, dict(param)), cache[1])


@pytest.mark.parametrize("drop", [0.0, 0.1, 0.5])
def test_transformer_dropout_argument_is_the_drop_probability(drop):
    from torch_impl import nn as tnn
    from torch_impl import transformer_layers as ttl

    layer = ttl.TransformerDecoderLayer(8, 2, dim_feedforward=16, dropout=drop)
    drops = [
        m
        for m in layer.modules()
        if isinstance(m, torch.nn.Module) and "Dropout" in type(m).__name__
    ]
    assert drops and all(isinstance(m, tnn.Dropout) for m in drops)
    assert all(m.p == pytest.approx(1 - drop) for m in drops)  # torch_impl.nn.Dropout: KEEP
    assert ttl.keep_probability(drop) == pytest.approx(1 - drop)


@pytest.mark.parametrize("bad", [1.0, -0.1, True, "0.1"])
def test_transformer_dropout_rejects_what_is_not_a_drop_probability(bad):
    from torch_impl import transformer_layers as ttl

    with pytest.raises((TypeError, ValueError), match="dropout"):
        ttl.MultiHeadAttention(8, 2, dropout=bad)


def test_attention_dropout_follows_the_module_generator_and_keep_probability():
    from torch_impl import transformer_layers as ttl

    torch.manual_seed(0)
    mha = ttl.MultiHeadAttention(8, 2, dropout=0.5).double()
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    mha.attn_drop.generator = torch.Generator().manual_seed(5)
    a = mha(x, x, x)
    mha.attn_drop.generator = torch.Generator().manual_seed(5)
    b = mha(x, x, x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    mha.eval()
    c = mha(x, x, x)
    assert not torch.equal(a, c)
