"""numpy_impl.layer_utils: every sandwich's backward against the centered numerical gradient
(float64), from one table of cases; plus the generic affine-norm-relu-dropout block's options."""

import numpy as np
import pytest

from numpy_impl import layer_utils as U
from numpy_impl import layers as L
from numpy_impl.gradient_check import eval_numerical_gradient_array, rel_error
from parity_tests.tolerances import REL_ERROR


def _affine_inputs(r):
    return [r.standard_normal((3, 2, 4)), r.standard_normal((8, 5)), r.standard_normal(5)]


def _norm_params(r, D):
    return [1 + 0.5 * r.standard_normal(D), 0.5 * r.standard_normal(D)]


def _conv_inputs(r, C=3, F=4, H=6, W=5, K=3):
    return [
        r.standard_normal((2, C, H, W)),
        0.5 * r.standard_normal((F, C, K, K)),
        r.standard_normal(F),
    ]


def _block(normalization, dropout):
    """affine_norm_relu with the given options; returns (forward, backward, make_args)."""

    def fwd(x, w, b, gamma, beta):
        bn_param = {"mode": "train"}
        drop = {"p": 0.7, "mode": "train", "seed": 5} if dropout else None
        if normalization is None:
            return U.affine_norm_relu_forward(x, w, b, dropout_param=drop)
        return U.affine_norm_relu_forward(x, w, b, gamma, beta, bn_param, normalization, drop)

    def bwd(dout, cache):
        dx, dw, db, dgamma, dbeta = U.affine_norm_relu_backward(dout, cache)
        if normalization is None:
            assert dgamma is None and dbeta is None
            # gamma and beta are unused: their true gradient is zero
            return dx, dw, db, np.zeros(5), np.zeros(5)
        return dx, dw, db, dgamma, dbeta

    # batchnorm subtracts the batch mean, so the affine bias b (argument 2) has no effect
    zero_grad = {2} if normalization == "batchnorm" else set()
    return fwd, bwd, lambda r: _affine_inputs(r) + _norm_params(r, 5), zero_grad


# name -> (forward taking only arrays, backward, make_args(rng) -> list of arrays,
#          indices of arguments whose true gradient is exactly zero)
SANDWICHES = {
    "affine_relu": (U.affine_relu_forward, U.affine_relu_backward, _affine_inputs, set()),
    "conv_relu": (
        lambda x, w, b: U.conv_relu_forward(x, w, b, {"stride": 2, "pad": 1}),
        U.conv_relu_backward,
        _conv_inputs,
        set(),
    ),
    "conv_bn_relu": (
        lambda x, w, b, g, be: U.conv_bn_relu_forward(
            x, w, b, g, be, {"stride": 1, "pad": 1}, {"mode": "train"}
        ),
        U.conv_bn_relu_backward,
        lambda r: _conv_inputs(r) + _norm_params(r, 4),
        {2},
    ),
    "conv_relu_pool": (
        lambda x, w, b: U.conv_relu_pool_forward(
            x, w, b, {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2, "stride": 2}
        ),
        U.conv_relu_pool_backward,
        lambda r: _conv_inputs(r, H=6, W=6),
        set(),
    ),
}
for _norm in (None, "batchnorm", "layernorm"):
    for _drop in (False, True):
        SANDWICHES[f"affine_{_norm}_relu{'_dropout' if _drop else ''}"] = _block(_norm, _drop)


@pytest.mark.parametrize("name", sorted(SANDWICHES))
def test_sandwich_backward_matches_numerical_gradient(name):
    fwd, bwd, make_args, zero_grad = SANDWICHES[name]
    r = np.random.default_rng(231)
    args = make_args(r)
    out, cache = fwd(*args)
    dout = r.standard_normal(out.shape)
    grads = bwd(dout, cache)
    assert len(grads) == len(args)
    for i, (arg, grad) in enumerate(zip(args, grads, strict=True)):
        assert grad.shape == arg.shape

        def f(z, i=i):
            return fwd(*args[:i], z, *args[i + 1 :])[0]

        num = eval_numerical_gradient_array(f, arg, dout)
        if i in zero_grad:
            # rel_error of round-off against round-off is meaningless; both must be ~0 instead.
            scale = np.abs(dout).sum()
            assert np.abs(grad).max() < 1e-12 * scale and np.abs(num).max() < 1e-8 * scale
            continue
        assert rel_error(grad, num) < REL_ERROR["numerical_layer"], f"gradient of argument {i}"


def test_affine_relu_is_relu_of_affine():
    r = np.random.default_rng(0)
    x, w, b = _affine_inputs(r)
    out, _ = U.affine_relu_forward(x, w, b)
    np.testing.assert_array_equal(out, np.maximum(x.reshape(3, 8) @ w + b, 0))


def test_block_without_options_equals_affine_relu():
    r = np.random.default_rng(1)
    x, w, b = _affine_inputs(r)
    out1, c1 = U.affine_norm_relu_forward(x, w, b)
    out2, c2 = U.affine_relu_forward(x, w, b)
    np.testing.assert_array_equal(out1, out2)
    dout = r.standard_normal(out1.shape)
    for g1, g2 in zip(
        U.affine_norm_relu_backward(dout, c1)[:3], U.affine_relu_backward(dout, c2), strict=True
    ):
        np.testing.assert_array_equal(g1, g2)


def test_block_updates_running_stats_and_honours_test_mode():
    r = np.random.default_rng(2)
    x, w, b = _affine_inputs(r)
    g, be = _norm_params(r, 5)
    bn = {"mode": "train"}
    U.affine_norm_relu_forward(x, w, b, g, be, bn, "batchnorm")
    assert bn["running_mean"].shape == (5,)
    bn["mode"] = "test"
    out, _ = U.affine_norm_relu_forward(x, w, b, g, be, bn, "batchnorm", {"p": 0.5, "mode": "test"})
    a = x.reshape(3, 8) @ w + b
    expected = np.maximum(g * (a - bn["running_mean"]) / np.sqrt(bn["running_var"] + 1e-5) + be, 0)
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_block_rejects_unknown_normalization_and_missing_params():
    r = np.random.default_rng(3)
    x, w, b = _affine_inputs(r)
    with pytest.raises(ValueError, match="normalization.*'groupnorm'"):
        U.affine_norm_relu_forward(x, w, b, normalization="groupnorm")
    with pytest.raises(ValueError, match="gamma"):
        U.affine_norm_relu_forward(x, w, b, None, np.zeros(5), {"mode": "train"}, "batchnorm")
    with pytest.raises(ValueError, match="bn_param"):
        U.affine_norm_relu_forward(x, w, b, np.ones(5), np.zeros(5), None, "layernorm")


def test_conv_sandwiches_match_naive_layers():
    r = np.random.default_rng(4)
    x, w, b = _conv_inputs(r, H=6, W=6)
    conv, pool = {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2, "stride": 2}
    out, _ = U.conv_relu_pool_forward(x, w, b, conv, pool)
    a, _ = L.conv_forward_naive(x, w, b, conv)
    expected, _ = L.max_pool_forward_naive(np.maximum(a, 0), pool)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_sandwiches_keep_float32():
    r = np.random.default_rng(5)
    x, w, b = (a.astype(np.float32) for a in _conv_inputs(r, H=6, W=6))
    g, be = (a.astype(np.float32) for a in _norm_params(r, 4))
    out, cache = U.conv_bn_relu_forward(x, w, b, g, be, {"stride": 1, "pad": 1}, {"mode": "train"})
    assert out.dtype == np.float32
    assert all(grad.dtype == np.float32 for grad in U.conv_bn_relu_backward(out, cache))
    xa, wa, ba = (a.astype(np.float32) for a in _affine_inputs(r))
    ga, bea = (a.astype(np.float32) for a in _norm_params(r, 5))
    out, cache = U.affine_norm_relu_forward(
        xa, wa, ba, ga, bea, {"mode": "train"}, "layernorm", {"p": 0.5, "mode": "train", "seed": 0}
    )
    assert out.dtype == np.float32
    assert all(grad.dtype == np.float32 for grad in U.affine_norm_relu_backward(out, cache))
