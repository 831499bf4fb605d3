"""numpy_impl's layernorm and groupnorm on rows long enough for their fast paths.

The registry's random shapes are small; the row-by-row ufunc loops (rows of 512+ values), the
BLAS row dots (512 to 8192 values) and einsum's longer dots only run on larger normalized groups.
Here both layers are checked on such rows against PyTorch's builtins in float64 (an independent
implementation), in float32 against the float64 result, with mixed dtypes, and for leaving
NumPy's ufunc buffer size as the caller had it.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from numpy_impl import layers as L
from parity_tests.tolerances import ASSERT_CLOSE

EPS = 1e-5


def _inputs(rng, x_shape, param_shape, offset=0.0):
    """x with a per-row offset of up to ``offset`` standard deviations, gamma, beta, dout."""
    x = rng.standard_normal(x_shape) + offset * rng.uniform(
        -1, 1, size=(x_shape[0],) + (1,) * (len(x_shape) - 1)
    )
    gamma = rng.normal(1, 0.5, size=param_shape)
    beta = rng.standard_normal(param_shape)
    dout = rng.standard_normal(x_shape)
    return x, gamma, beta, dout


def _torch_reference(builtin, x, gamma, beta, dout):
    """out, dx, dgamma, dbeta of a builtin in float64 (gamma/beta flattened to (C,) or (D,))."""
    leaves = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, gamma, beta)]
    out = builtin(leaves[0], leaves[1].reshape(-1), leaves[2].reshape(-1))
    out.backward(torch.tensor(dout, dtype=torch.float64))
    return [out.detach().numpy()] + [t.grad.numpy() for t in leaves]


def _layernorm(x, gamma, beta, dout):
    out, cache = L.layernorm_forward(x, gamma, beta, {"eps": EPS})
    return [out, *L.layernorm_backward(dout, cache)]


def _groupnorm(G):
    def run(x, gamma, beta, dout):
        out, cache = L.spatial_groupnorm_forward(x, gamma, beta, G, {"eps": EPS})
        return [out, *L.spatial_groupnorm_backward(dout, cache)]

    return run


# (name, numpy function, builtin, x shape, gamma shape): D = 600 and 1024 rows take the row loops
# and BLAS dots, D = 9000 einsum's dot; groupnorm's groups of 2*16*16 = 512 and 4*24*24 = 2304
# values (per-channel sums over 256 and 576 values: einsum and BLAS dots).
CASES = [
    (
        "layernorm D=600",
        _layernorm,
        lambda x, g, b: F.layer_norm(x, x.shape[1:], g, b, EPS),
        (5, 600),
        (600,),
    ),
    (
        "layernorm D=1024",
        _layernorm,
        lambda x, g, b: F.layer_norm(x, x.shape[1:], g, b, EPS),
        (3, 1024),
        (1024,),
    ),
    (
        "layernorm D=9000",
        _layernorm,
        lambda x, g, b: F.layer_norm(x, x.shape[1:], g, b, EPS),
        (2, 9000),
        (9000,),
    ),
    (
        "groupnorm 16x16",
        _groupnorm(3),
        lambda x, g, b: F.group_norm(x, 3, g, b, EPS),
        (3, 6, 16, 16),
        (1, 6, 1, 1),
    ),
    (
        "groupnorm 24x24",
        _groupnorm(2),
        lambda x, g, b: F.group_norm(x, 2, g, b, EPS),
        (2, 8, 24, 24),
        (1, 8, 1, 1),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_long_rows_match_the_builtin_in_float64(case):
    _, run, builtin, x_shape, p_shape = case
    x, gamma, beta, dout = _inputs(np.random.default_rng(0), x_shape, p_shape, offset=3.0)
    want = _torch_reference(builtin, x, gamma, beta, dout)
    got = run(x, gamma, beta, dout)
    for name, g, w in zip(("out", "dx", "dgamma", "dbeta"), got, want, strict=True):
        assert g.dtype == np.float64 and g.shape == w.reshape(g.shape).shape, name
        np.testing.assert_allclose(g, w.reshape(g.shape), err_msg=name, **ASSERT_CLOSE["float64"])


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_long_rows_float32_as_accurate_as_float32_allows(case):
    # Rows offset by up to 3 standard deviations: the float32 mean's round-off is what shifts xhat.
    _, run, _, x_shape, p_shape = case
    inputs64 = _inputs(np.random.default_rng(1), x_shape, p_shape, offset=3.0)
    want = run(*inputs64)
    got = run(*(a.astype(np.float32) for a in inputs64))
    tol = ASSERT_CLOSE["float32"]
    for name, g, w in zip(("out", "dx"), got[:2], want[:2], strict=True):
        assert g.dtype == np.float32, name
        np.testing.assert_allclose(g, w, err_msg=name, **tol)
    # dgamma, dbeta are sums of N*H*W terms: their round-off scales with the sum of |terms|.
    x_shape_axes = (0,) if len(x_shape) == 2 else (0, 2, 3)
    for name, g, w in zip(("dgamma", "dbeta"), got[2:], want[2:], strict=True):
        assert g.dtype == np.float32, name
        scale = np.abs(inputs64[3]).sum(axis=x_shape_axes).reshape(g.shape) * 3
        np.testing.assert_array_less(np.abs(g - w), tol["rtol"] * scale + tol["atol"], err_msg=name)


@pytest.mark.parametrize("case", [CASES[1], CASES[4]], ids=[CASES[1][0], CASES[4][0]])
def test_long_rows_mixed_dtypes_promote_like_numpy(case):
    # float32 x with float64 gamma/beta: the output and dx come out float64, as x * gamma would.
    _, run, _, x_shape, p_shape = case
    x, gamma, beta, dout = _inputs(np.random.default_rng(2), x_shape, p_shape)
    want = run(x.astype(np.float32).astype(np.float64), gamma, beta, dout)
    got = run(x.astype(np.float32), gamma, beta, dout)
    for name, g, w in zip(("out", "dx", "dgamma", "dbeta"), got, want, strict=True):
        assert g.dtype == np.float64, name
        np.testing.assert_allclose(g, w, err_msg=name, **ASSERT_CLOSE["float32"])


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_long_rows_leave_the_ufunc_buffer_size_alone(case):
    _, run, _, x_shape, p_shape = case
    inputs = _inputs(np.random.default_rng(3), x_shape, p_shape)
    previous = np.setbufsize(4096)
    try:
        run(*(a.astype(np.float32) for a in inputs))
        assert np.getbufsize() == 4096
    finally:
        np.setbufsize(previous)
