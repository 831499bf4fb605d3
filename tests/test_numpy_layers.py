"""numpy_impl.layers: bad input, CS231n conventions (running averages, dropout's keep
probability), and hand-computed examples for conv, pool and the losses.

Gradients against the numerical gradient over randomized shapes live in parity_tests (one registry
of ops); here only what a registry cannot express is checked.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from numpy_impl import layers as L
from numpy_impl.gradient_check import eval_numerical_gradient_array, rel_error
from parity_tests.tolerances import ASSERT_CLOSE, REL_ERROR

RNG_SEED = 231


def rng():
    return np.random.default_rng(RNG_SEED)


def randn(*shape, dtype=np.float64, r=None):
    r = r if r is not None else rng()
    return r.standard_normal(shape).astype(dtype)


# Every op's no-mutation, fresh-output and float32 checks run over the registry
# (parity_tests/test_ops.py); here only the param dict's running statistics.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial", [False, True])
def test_float32_running_statistics_stay_float32(spatial):
    shape, C = ((2, 3, 4, 4), 3) if spatial else ((5, 4), 4)
    x = randn(*shape, dtype=np.float32)
    forward = L.spatial_batchnorm_forward if spatial else L.batchnorm_forward
    bn_param = {"mode": "train"}
    forward(x, np.ones(C, np.float32), np.zeros(C, np.float32), bn_param)
    for key in ("running_mean", "running_var"):
        assert bn_param[key].dtype == np.float32, key


# ----------------------------------------------------------------------------------------------
# Bad input: every message names the argument and the values involved.
# ----------------------------------------------------------------------------------------------


def _x(*shape):
    return np.zeros(shape)


def _bn_cache():
    return L.batchnorm_forward(randn(4, 3), np.ones(3), np.zeros(3), {"mode": "train"})[1]


BAD_INPUTS = {
    "affine x vs w": (
        lambda: L.affine_forward(_x(2, 3, 4), _x(11, 5), _x(5)),
        ValueError,
        ["w", "(2, 3, 4)", "(11, 5)", "D=12"],
    ),
    "affine b": (
        lambda: L.affine_forward(_x(2, 12), _x(12, 5), _x(4)),
        ValueError,
        ["b", "(5,)", "(4,)"],
    ),
    "affine integer x": (
        lambda: L.affine_forward(np.zeros((2, 3), int), _x(3, 2), _x(2)),
        TypeError,
        ["x", "int"],
    ),
    "affine dout": (
        lambda: L.affine_backward(_x(2, 4), (_x(2, 3), _x(3, 5), _x(5))),
        ValueError,
        ["dout", "(2, 5)", "(2, 4)"],
    ),
    "relu dout": (
        lambda: L.relu_backward(_x(3, 4), _x(4, 3)),
        ValueError,
        ["dout", "(4, 3)", "(3, 4)"],
    ),
    "sigmoid dout": (
        lambda: L.sigmoid_backward(_x(3), L.sigmoid_forward(_x(4))[1]),
        ValueError,
        ["dout", "(4,)", "(3,)"],
    ),
    "tanh dout": (
        lambda: L.tanh_backward(_x(3), L.tanh_forward(_x(4))[1]),
        ValueError,
        ["dout", "(4,)", "(3,)"],
    ),
    "batchnorm missing mode": (
        lambda: L.batchnorm_forward(_x(4, 3), _x(3), _x(3), {}),
        ValueError,
        ["bn_param", "'mode'"],
    ),
    "batchnorm bad mode": (
        lambda: L.batchnorm_forward(_x(4, 3), _x(3), _x(3), {"mode": "eval"}),
        ValueError,
        ["bn_param['mode']", "'eval'"],
    ),
    "batchnorm gamma": (
        lambda: L.batchnorm_forward(_x(4, 3), _x(4), _x(3), {"mode": "train"}),
        ValueError,
        ["gamma", "(3,)", "(4,)"],
    ),
    "batchnorm beta": (
        lambda: L.batchnorm_forward(_x(4, 3), _x(3), _x(1, 3), {"mode": "train"}),
        ValueError,
        ["beta", "(3,)", "(1, 3)"],
    ),
    "batchnorm x ndim": (
        lambda: L.batchnorm_forward(_x(4, 3, 2), _x(2), _x(2), {"mode": "train"}),
        ValueError,
        ["x", "(4, 3, 2)"],
    ),
    "batchnorm running_mean": (
        lambda: L.batchnorm_forward(
            _x(4, 3), _x(3), _x(3), {"mode": "train", "running_mean": _x(5)}
        ),
        ValueError,
        ["running_mean", "(3,)", "(5,)"],
    ),
    "batchnorm momentum": (
        lambda: L.batchnorm_forward(_x(4, 3), _x(3), _x(3), {"mode": "train", "momentum": 1.5}),
        ValueError,
        ["momentum", "1.5"],
    ),
    "batchnorm negative eps": (
        lambda: L.batchnorm_forward(_x(4, 3), _x(3), _x(3), {"mode": "train", "eps": -1e-5}),
        ValueError,
        ["eps", "-1e-05"],
    ),
    "batchnorm_backward dout": (
        lambda: L.batchnorm_backward(_x(3, 3), _bn_cache()),
        ValueError,
        ["dout", "(4, 3)", "(3, 3)"],
    ),
    "batchnorm_backward_alt dout": (
        lambda: L.batchnorm_backward_alt(_x(4, 2), _bn_cache()),
        ValueError,
        ["dout", "(4, 3)", "(4, 2)"],
    ),
    "layernorm gamma": (
        lambda: L.layernorm_forward(_x(4, 3), _x(4), _x(3), {}),
        ValueError,
        ["gamma", "(3,)", "(4,)"],
    ),
    "layernorm ln_param type": (
        lambda: L.layernorm_forward(_x(4, 3), _x(3), _x(3), None),
        TypeError,
        ["ln_param", "dict"],
    ),
    "layernorm dout": (
        lambda: L.layernorm_backward(
            _x(4, 4), L.layernorm_forward(randn(4, 3), _x(3), _x(3), {})[1]
        ),
        ValueError,
        ["dout", "(4, 3)", "(4, 4)"],
    ),
    "dropout p=0": (
        lambda: L.dropout_forward(_x(3), {"p": 0, "mode": "train"}),
        ValueError,
        ["dropout_param['p']", "keep", "(0, 1]", "0"],
    ),
    "dropout p>1": (
        lambda: L.dropout_forward(_x(3), {"p": 1.5, "mode": "train"}),
        ValueError,
        ["dropout_param['p']", "1.5"],
    ),
    "dropout p<0": (
        lambda: L.dropout_forward(_x(3), {"p": -0.2, "mode": "test"}),
        ValueError,
        ["dropout_param['p']", "-0.2"],
    ),
    "dropout missing p": (
        lambda: L.dropout_forward(_x(3), {"mode": "train"}),
        ValueError,
        ["dropout_param", "'p'"],
    ),
    "dropout missing mode": (
        lambda: L.dropout_forward(_x(3), {"p": 0.5}),
        ValueError,
        ["dropout_param", "'mode'"],
    ),
    "dropout dout": (
        lambda: L.dropout_backward(
            _x(2, 3), L.dropout_forward(_x(3, 2), {"p": 0.5, "mode": "train", "seed": 0})[1]
        ),
        ValueError,
        ["dout", "(3, 2)", "(2, 3)"],
    ),
    "conv channels": (
        lambda: L.conv_forward_naive(
            _x(1, 3, 5, 5), _x(2, 4, 3, 3), _x(2), {"stride": 1, "pad": 0}
        ),
        ValueError,
        ["w", "x", "(2, 4, 3, 3)", "(1, 3, 5, 5)"],
    ),
    "conv b": (
        lambda: L.conv_forward_naive(
            _x(1, 3, 5, 5), _x(2, 3, 3, 3), _x(3), {"stride": 1, "pad": 0}
        ),
        ValueError,
        ["b", "(2,)", "(3,)"],
    ),
    "conv window too large": (
        lambda: L.conv_forward_naive(
            _x(1, 1, 3, 4), _x(1, 1, 6, 2), _x(1), {"stride": 1, "pad": 1}
        ),
        ValueError,
        ["filter", "(6, 2)", "(5, 6)"],
    ),
    "conv stride 0": (
        lambda: L.conv_forward_naive(
            _x(1, 1, 3, 3), _x(1, 1, 2, 2), _x(1), {"stride": 0, "pad": 0}
        ),
        ValueError,
        ["stride", "0"],
    ),
    "conv float stride": (
        lambda: L.conv_forward_naive(
            _x(1, 1, 3, 3), _x(1, 1, 2, 2), _x(1), {"stride": 1.5, "pad": 0}
        ),
        TypeError,
        ["stride", "1.5"],
    ),
    "conv missing pad": (
        lambda: L.conv_forward_naive(_x(1, 1, 3, 3), _x(1, 1, 2, 2), _x(1), {"stride": 1}),
        ValueError,
        ["conv_param", "'pad'"],
    ),
    "conv x ndim": (
        lambda: L.conv_forward_naive(_x(1, 3, 3), _x(1, 1, 2, 2), _x(1), {"stride": 1, "pad": 0}),
        ValueError,
        ["x", "(1, 3, 3)"],
    ),
    "conv dout": (
        lambda: L.conv_backward_naive(
            _x(1, 1, 3, 3),
            L.conv_forward_naive(_x(1, 1, 3, 3), _x(1, 1, 2, 2), _x(1), {"stride": 1, "pad": 0})[1],
        ),
        ValueError,
        ["dout", "(1, 1, 2, 2)", "(1, 1, 3, 3)"],
    ),
    "pool window too large": (
        lambda: L.max_pool_forward_naive(
            _x(1, 1, 3, 3), {"pool_height": 4, "pool_width": 2, "stride": 1}
        ),
        ValueError,
        ["window", "(4, 2)", "(3, 3)"],
    ),
    "pool stride 0": (
        lambda: L.max_pool_forward_naive(
            _x(1, 1, 3, 3), {"pool_height": 2, "pool_width": 2, "stride": 0}
        ),
        ValueError,
        ["stride", "0"],
    ),
    "pool missing key": (
        lambda: L.max_pool_forward_naive(_x(1, 1, 3, 3), {"pool_height": 2, "stride": 2}),
        ValueError,
        ["pool_param", "'pool_width'"],
    ),
    "pool dout": (
        lambda: L.max_pool_backward_naive(
            _x(1, 1, 2, 1),
            L.max_pool_forward_naive(
                _x(1, 1, 4, 4), {"pool_height": 2, "pool_width": 2, "stride": 2}
            )[1],
        ),
        ValueError,
        ["dout", "(1, 1, 2, 2)", "(1, 1, 2, 1)"],
    ),
    "spatial batchnorm gamma": (
        lambda: L.spatial_batchnorm_forward(
            _x(2, 3, 2, 2), _x(1, 3, 1, 1), _x(3), {"mode": "train"}
        ),
        ValueError,
        ["gamma", "(3,)", "(1, 3, 1, 1)"],
    ),
    "spatial batchnorm mode": (
        lambda: L.spatial_batchnorm_forward(_x(2, 3, 2, 2), _x(3), _x(3), {}),
        ValueError,
        ["bn_param", "'mode'"],
    ),
    "spatial batchnorm dout": (
        lambda: L.spatial_batchnorm_backward(
            _x(2, 3, 2, 1),
            L.spatial_batchnorm_forward(randn(2, 3, 2, 2), _x(3), _x(3), {"mode": "train"})[1],
        ),
        ValueError,
        ["dout", "(2, 3, 2, 2)", "(2, 3, 2, 1)"],
    ),
    "groupnorm G": (
        lambda: L.spatial_groupnorm_forward(_x(2, 6, 2, 2), _x(1, 6, 1, 1), _x(1, 6, 1, 1), 4, {}),
        ValueError,
        ["G=4", "C=6"],
    ),
    "groupnorm gamma": (
        lambda: L.spatial_groupnorm_forward(_x(2, 6, 2, 2), _x(6), _x(1, 6, 1, 1), 3, {}),
        ValueError,
        ["gamma", "(1, 6, 1, 1)", "(6,)"],
    ),
    "groupnorm dout": (
        lambda: L.spatial_groupnorm_backward(
            _x(2, 6, 2, 3),
            L.spatial_groupnorm_forward(randn(2, 6, 2, 2), _x(1, 6, 1, 1), _x(1, 6, 1, 1), 2, {})[
                1
            ],
        ),
        ValueError,
        ["dout", "(2, 6, 2, 2)", "(2, 6, 2, 3)"],
    ),
}

for _loss in ("svm_loss", "softmax_loss"):
    _f = getattr(L, _loss)
    BAD_INPUTS.update(
        {
            f"{_loss} y too large": (
                lambda f=_f: f(_x(3, 5), np.array([0, 7, 1])),
                ValueError,
                ["y", "[0, 5)", "7"],
            ),
            f"{_loss} y negative": (
                lambda f=_f: f(_x(3, 5), np.array([0, -1, 1])),
                ValueError,
                ["y", "[0, 5)", "-1"],
            ),
            f"{_loss} y float": (
                lambda f=_f: f(_x(3, 5), np.array([0.0, 1.0, 2.0])),
                TypeError,
                ["y", "float64"],
            ),
            f"{_loss} y length": (
                lambda f=_f: f(_x(3, 5), np.array([0, 1])),
                ValueError,
                ["y", "(3,)", "(2,)"],
            ),
            f"{_loss} x ndim": (
                lambda f=_f: f(_x(3), np.array([0, 1, 2])),
                ValueError,
                ["x", "(3,)"],
            ),
            f"{_loss} empty batch": (
                lambda f=_f: f(_x(0, 5), np.zeros(0, int)),
                ValueError,
                ["x", "(0, 5)"],
            ),
        }
    )


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_naming_argument(case):
    call, exc, fragments = BAD_INPUTS[case]
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_mode_is_accepted_and_ignored_by_layernorm_and_groupnorm():
    x, g, b = randn(4, 3), randn(3), randn(3)
    out_train = L.layernorm_forward(x, g, b, {"mode": "train"})[0]
    out_test = L.layernorm_forward(x, g, b, {"mode": "test"})[0]
    out_none = L.layernorm_forward(x, g, b, {})[0]
    np.testing.assert_array_equal(out_train, out_test)
    np.testing.assert_array_equal(out_train, out_none)
    x4, g4, b4 = randn(2, 4, 3, 3), randn(1, 4, 1, 1), randn(1, 4, 1, 1)
    np.testing.assert_array_equal(
        L.spatial_groupnorm_forward(x4, g4, b4, 2, {"mode": "test"})[0],
        L.spatial_groupnorm_forward(x4, g4, b4, 2, {})[0],
    )


# ----------------------------------------------------------------------------------------------
# Batchnorm conventions
# ----------------------------------------------------------------------------------------------


def test_batchnorm_train_hand_example_and_running_averages():
    # columns: mean 2 and 4; biased variance 1 and 4
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    bn = {"mode": "train", "eps": 0.0}
    out, _ = L.batchnorm_forward(x, np.ones(2), np.zeros(2), bn)
    np.testing.assert_allclose(out, [[-1.0, -1.0], [1.0, 1.0]], rtol=0, atol=1e-15)
    # zeros by default, then momentum * running + (1 - momentum) * batch statistic
    np.testing.assert_allclose(bn["running_mean"], [0.2, 0.4], rtol=1e-15)
    np.testing.assert_allclose(bn["running_var"], [0.1, 0.4], rtol=1e-15)
    # second batch: mean (1, 0), biased variance (1, 0)
    bn["eps"] = 1e-5
    L.batchnorm_forward(np.array([[0.0, 0.0], [2.0, 0.0]]), np.ones(2), np.zeros(2), bn)
    np.testing.assert_allclose(bn["running_mean"], [0.9 * 0.2 + 0.1, 0.9 * 0.4], rtol=1e-15)
    np.testing.assert_allclose(bn["running_var"], [0.9 * 0.1 + 0.1, 0.9 * 0.4], rtol=1e-15)


def test_batchnorm_running_average_custom_momentum_and_biased_variance():
    x = randn(7, 3)
    rm0, rv0 = randn(3), np.abs(randn(3)) + 1
    bn = {"mode": "train", "momentum": 0.25, "running_mean": rm0, "running_var": rv0}
    L.batchnorm_forward(x, np.ones(3), np.zeros(3), bn)
    mean = x.sum(axis=0) / 7
    biased_var = ((x - mean) ** 2).sum(axis=0) / 7  # divide by N, not N - 1
    np.testing.assert_allclose(bn["running_mean"], 0.25 * rm0 + 0.75 * mean, rtol=1e-13)
    np.testing.assert_allclose(bn["running_var"], 0.25 * rv0 + 0.75 * biased_var, rtol=1e-13)
    # the update writes new arrays instead of modifying the caller's
    assert bn["running_mean"] is not rm0


def test_batchnorm_default_running_stats_are_zeros_of_x_dtype():
    bn = {"mode": "test"}
    x = np.array([[2.0, -4.0]], dtype=np.float32)
    out, _ = L.batchnorm_forward(x, np.ones(2, np.float32), np.zeros(2, np.float32), bn)
    for key in ("running_mean", "running_var"):
        assert bn[key].dtype == np.float32
        np.testing.assert_array_equal(bn[key], [0.0, 0.0])
    # zero mean and zero variance: out = x / sqrt(eps)
    np.testing.assert_allclose(out, x / np.sqrt(np.float32(1e-5)), rtol=1e-6)


def test_batchnorm_test_mode_uses_running_stats_and_leaves_them_alone():
    bn = {
        "mode": "test",
        "eps": 1.0,
        "running_mean": np.array([1.0, 2.0]),
        "running_var": np.array([3.0, 8.0]),
    }
    out, cache = L.batchnorm_forward(
        np.array([[3.0, 5.0], [1.0, -1.0]]), np.array([2.0, 3.0]), np.array([1.0, -1.0]), bn
    )
    # std = sqrt(3 + 1) = 2 and sqrt(8 + 1) = 3
    np.testing.assert_allclose(out, [[2 * 1 + 1, 3 * 1 - 1], [1, 3 * -1 - 1]], rtol=1e-15)
    np.testing.assert_array_equal(bn["running_mean"], [1.0, 2.0])
    np.testing.assert_array_equal(bn["running_var"], [3.0, 8.0])
    dx, dgamma, dbeta = L.batchnorm_backward(np.ones((2, 2)), cache)
    np.testing.assert_allclose(dx, [[1.0, 1.0], [1.0, 1.0]], rtol=1e-15)  # gamma / std
    np.testing.assert_allclose(dgamma, [1 + 0, 1 - 1], atol=1e-15)
    np.testing.assert_array_equal(dbeta, [2.0, 2.0])


def test_batchnorm_test_mode_backward_matches_numerical_gradient():
    r = rng()
    x, g, b = randn(4, 3, r=r), randn(3, r=r), randn(3, r=r)
    bn = {"mode": "test", "running_mean": randn(3, r=r), "running_var": np.abs(randn(3, r=r))}
    out, cache = L.batchnorm_forward(x, g, b, bn)
    dout = randn(*out.shape, r=r)
    dx, dg, db = L.batchnorm_backward(dout, cache)
    num_dx = eval_numerical_gradient_array(lambda z: L.batchnorm_forward(z, g, b, bn)[0], x, dout)
    num_dg = eval_numerical_gradient_array(lambda z: L.batchnorm_forward(x, z, b, bn)[0], g, dout)
    assert rel_error(dx, num_dx) < REL_ERROR["numerical_layer"]
    assert rel_error(dg, num_dg) < REL_ERROR["numerical_layer"]
    assert rel_error(db, dout.sum(axis=0)) < REL_ERROR["twin_float64"]


@pytest.mark.parametrize("backward", [L.batchnorm_backward, L.batchnorm_backward_alt])
def test_batchnorm_zero_variance_is_finite(backward):
    x = np.tile(np.array([[3.0, -1.0, 0.0]]), (5, 1))
    beta = np.array([0.5, 1.0, -2.0])
    out, cache = L.batchnorm_forward(x, np.ones(3), beta, {"mode": "train"})
    np.testing.assert_array_equal(out, np.tile(beta, (5, 1)))
    grads = backward(randn(5, 3), cache)
    assert all(np.isfinite(g).all() for g in grads)
    x32 = randn(1, 4, 2, 2, dtype=np.float32)  # batch of 1: every group is a single value
    out32, _ = L.spatial_groupnorm_forward(
        x32[:, :, :1, :1],
        np.ones((1, 4, 1, 1), np.float32),
        np.zeros((1, 4, 1, 1), np.float32),
        4,
        {},
    )
    assert np.isfinite(out32).all()


@given(N=st.integers(1, 9), D=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_batchnorm_backward_equals_alt(N, D, seed):
    r = np.random.default_rng(seed)
    x = 3 * r.standard_normal((N, D)) + r.standard_normal(D)
    g, b = r.standard_normal(D), r.standard_normal(D)
    _, cache = L.batchnorm_forward(x, g, b, {"mode": "train"})
    dout = r.standard_normal((N, D))
    for a, b_ in zip(
        L.batchnorm_backward(dout, cache), L.batchnorm_backward_alt(dout, cache), strict=True
    ):
        # Same math summed in another order: differences are round-off relative to the scale.
        np.testing.assert_allclose(a, b_, rtol=1e-9, atol=1e-12 * np.abs(dout).max())


def test_spatial_batchnorm_normalizes_each_channel_over_n_h_w():
    x = randn(3, 2, 4, 5) * np.array([1.0, 10.0])[None, :, None, None] + 5
    bn = {"mode": "train"}
    out, _ = L.spatial_batchnorm_forward(x, np.ones(2), np.zeros(2), bn)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1, rtol=1e-4)  # eps keeps it below 1
    np.testing.assert_allclose(bn["running_mean"], 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-12)


def _bn_reference(x, gamma, beta, dout, eps):
    """Textbook batchnorm in float64 with NumPy's own reductions over every axis but the
    channel axis 1: out, running-average terms (mean, biased var), dx, dgamma, dbeta."""
    x, gamma, beta, dout = (np.asarray(a, np.float64) for a in (x, gamma, beta, dout))
    axes = (0, *range(2, x.ndim))
    bshape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    xhat = (x - mean.reshape(bshape)) / np.sqrt(var + eps).reshape(bshape)
    out = gamma.reshape(bshape) * xhat + beta.reshape(bshape)
    dbeta, dgamma = dout.sum(axis=axes), (dout * xhat).sum(axis=axes)
    dxhat = dout * gamma.reshape(bshape)
    dx = (
        dxhat
        - dxhat.mean(axis=axes, keepdims=True)
        - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True)
    ) / np.sqrt(var + eps).reshape(bshape)
    return out, mean, var, dx, dgamma, dbeta


@given(
    N=st.integers(1, 40),
    C=st.integers(1, 5),
    H=st.integers(1, 4),
    W=st.integers(1, 4),
    spatial=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_batchnorm_matches_textbook_formulas_for_any_batch(N, C, H, W, spatial, seed):
    # Batches with and without power-of-two factors (6, 12, 24, 7, 1...) take every row
    # grouping of the implementation's matrix view of x.
    r = np.random.default_rng(seed)
    shape = (N, C, H, W) if spatial else (N, C)
    x = r.standard_normal(shape) * r.uniform(0.5, 3, C).reshape((1, C) + (1,) * (len(shape) - 2))
    x += r.normal(0, 2, C).reshape((1, C) + (1,) * (len(shape) - 2))
    gamma, beta, dout = r.standard_normal(C), r.standard_normal(C), r.standard_normal(shape)
    forward = L.spatial_batchnorm_forward if spatial else L.batchnorm_forward
    backward = L.spatial_batchnorm_backward if spatial else L.batchnorm_backward_alt
    bn = {"mode": "train", "momentum": 0.5, "eps": 1e-3}
    out, cache = forward(x, gamma, beta, bn)
    dx, dgamma, dbeta = backward(dout, cache)
    ref_out, mean, var, ref_dx, ref_dgamma, ref_dbeta = _bn_reference(x, gamma, beta, dout, 1e-3)
    for got, want in (
        (out, ref_out),
        (bn["running_mean"], 0.5 * mean),
        (bn["running_var"], 0.5 * var),
        (dx, ref_dx),
        (dgamma, ref_dgamma),
        (dbeta, ref_dbeta),
    ):
        assert got.shape == want.shape
        assert rel_error(got, want) < REL_ERROR["twin_float64"]


@pytest.mark.parametrize("shape", [(12, 3, 2, 2), (6, 5), (7, 2, 3, 1)])
def test_batchnorm_numerical_gradient_with_grouped_rows(shape):
    # 12 and 6 samples put several samples in each row of the matrix view, 7 (odd) one.
    r = rng()
    C = shape[1]
    x, gamma, beta = randn(*shape, r=r) + 1.5, randn(C, r=r), randn(C, r=r)
    dout = randn(*shape, r=r)
    forward = L.spatial_batchnorm_forward if len(shape) == 4 else L.batchnorm_forward
    backward = L.spatial_batchnorm_backward if len(shape) == 4 else L.batchnorm_backward_alt
    bn = {"mode": "train"}
    dx, dgamma, dbeta = backward(dout, forward(x, gamma, beta, bn)[1])
    for got, arg in ((dx, x), (dgamma, gamma), (dbeta, beta)):

        def f(_):
            return forward(x, gamma, beta, dict(bn))[0]

        num = eval_numerical_gradient_array(f, arg, dout)
        assert rel_error(got, num) < REL_ERROR["numerical_layer"]


@pytest.mark.parametrize("shape", [(64, 4, 16, 16), (8192, 3), (256, 1024)])
def test_batchnorm_float32_large_batch_is_as_accurate_as_torch_float32(shape):
    # Up to 16384 values per channel, mean 10: the float32 result must not drift from the
    # float64 result of the same float32 input by more than PyTorch's float32 tolerance, the
    # parameter gradients (sums over the batch) relative to the sum of their terms' magnitudes.
    r = rng()
    C = shape[1]
    bshape = (1, C) + (1,) * (len(shape) - 2)
    x = 10 + r.standard_normal(shape) * r.uniform(0.5, 1.5, C).reshape(bshape)
    x, dout = x.astype(np.float32), randn(*shape, dtype=np.float32, r=r)
    gamma = (1 + 0.5 * randn(C, r=r)).astype(np.float32)
    beta = randn(C, dtype=np.float32, r=r)
    spatial = len(shape) == 4
    forward = L.spatial_batchnorm_forward if spatial else L.batchnorm_forward
    backward = L.spatial_batchnorm_backward if spatial else L.batchnorm_backward_alt
    results = []
    for dt in (np.float32, np.float64):
        bn = {"mode": "train"}
        out, cache = forward(x.astype(dt), gamma.astype(dt), beta.astype(dt), bn)
        results.append(
            (
                out,
                *backward(dout.astype(dt), cache),
                bn["running_mean"],
                bn["running_var"],
                cache["xhat"] if not spatial else cache[0]["xhat"],
            )
        )
    (out, dx, dgamma, dbeta, rm, rv, _), (*want, xhat64) = results
    for got, ref in zip((out, dx, rm, rv), (want[0], want[1], want[4], want[5]), strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, **ASSERT_CLOSE["float32"])
    axes = (0, *range(2, len(shape)))
    rtol = ASSERT_CLOSE["float32"]["rtol"]
    for got, ref, terms in ((dgamma, want[2], dout * xhat64), (dbeta, want[3], dout)):
        assert got.dtype == np.float32
        np.testing.assert_array_less(np.abs(got - ref), rtol * np.abs(terms).sum(axis=axes))


@pytest.mark.parametrize("mode", ["train", "test"])
def test_batchnorm_cache_layout_and_fresh_contiguous_outputs(mode):
    # The documented cache: batchnorm's keys, arrays in x's layout, statistics broadcastable
    # against x in train mode and (C,) in test mode; spatial wraps it with x's shape.
    r = rng()
    for x in (randn(6, 3, r=r), randn(4, 3, 2, 5, r=r)):
        bn = {"mode": mode, "running_mean": randn(3, r=r), "running_var": randn(3, r=r) ** 2}
        spatial = x.ndim == 4
        forward = L.spatial_batchnorm_forward if spatial else L.batchnorm_forward
        out, cache = forward(x, randn(3, r=r), randn(3, r=r), bn)
        if spatial:
            cache, shape = cache
            assert shape == x.shape
        stat = (1, 3) + (1,) * (x.ndim - 2)
        if mode == "train":
            assert set(cache) == {"mode", "x", "xhat", "xmu", "var", "std", "gamma", "eps"}
            assert cache["x"] is x and cache["xhat"].shape == cache["xmu"].shape == x.shape
            assert cache["var"].shape == cache["std"].shape == stat
            np.testing.assert_allclose(cache["xhat"] * cache["std"], cache["xmu"], rtol=1e-12)
        else:
            assert set(cache) == {"mode", "xhat", "std", "gamma"}
            assert cache["xhat"].shape == x.shape and cache["std"].shape == (3,)
        assert out.flags.c_contiguous
        for a in (cache["xhat"], cache.get("xmu")):
            assert a is None or not np.shares_memory(out, a)


def test_batchnorm_accepts_non_contiguous_arrays():
    r = rng()
    base, dbase = randn(8, 6, 3, 4, r=r), randn(8, 6, 3, 4, r=r)
    x, dout = base[:, ::2], dbase[:, ::2]  # (8, 3, 3, 4) strided views
    gamma, beta = randn(3, r=r), randn(3, r=r)
    out, cache = L.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    out_c, cache_c = L.spatial_batchnorm_forward(x.copy(), gamma, beta, {"mode": "train"})
    np.testing.assert_array_equal(out, out_c)
    for a, b in zip(
        L.spatial_batchnorm_backward(dout, cache),
        L.spatial_batchnorm_backward(dout.copy(), cache_c),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    xt = randn(5, 8, r=r).T  # (8, 5) Fortran-ordered
    out, cache = L.batchnorm_forward(xt, gamma[:1].repeat(5), beta[:1].repeat(5), {"mode": "train"})
    np.testing.assert_array_equal(
        out,
        L.batchnorm_forward(xt.copy(), gamma[:1].repeat(5), beta[:1].repeat(5), {"mode": "train"})[
            0
        ],
    )


def test_batchnorm_float16_stays_float16():
    x = randn(64, 3, 2, 2, dtype=np.float16)
    g, b = np.ones(3, np.float16), np.zeros(3, np.float16)
    bn = {"mode": "train"}
    out, cache = L.spatial_batchnorm_forward(x, g, b, bn)
    grads = L.spatial_batchnorm_backward(np.ones_like(x), cache)
    for a in (out, *grads, bn["running_mean"], bn["running_var"]):
        assert a.dtype == np.float16


def test_groupnorm_hand_example():
    # One sample, 4 channels in 2 groups of 2 channels, 1x2 spatial.
    x = np.array([[[[1.0, 3.0]], [[1.0, 3.0]], [[0.0, 0.0]], [[4.0, 8.0]]]])
    gamma = np.array([1.0, 2.0, 1.0, 1.0]).reshape(1, 4, 1, 1)
    beta = np.array([0.0, 0.0, 1.0, 0.0]).reshape(1, 4, 1, 1)
    out, _ = L.spatial_groupnorm_forward(x, gamma, beta, 2, {"eps": 0.0})
    # group 0 = {1, 3, 1, 3}: mean 2, std 1. group 1 = {0, 0, 4, 8}: mean 3, std sqrt(11).
    s = np.sqrt(11.0)
    expected = [[[[-1.0, 1.0]], [[-2.0, 2.0]], [[1 - 3 / s, 1 - 3 / s]], [[1 / s, 5 / s]]]]
    np.testing.assert_allclose(out, expected, rtol=1e-14)


def test_layernorm_normalizes_each_row():
    x = np.array([[1.0, 2.0, 3.0], [10.0, 10.0, 40.0]])
    out, _ = L.layernorm_forward(x, np.ones(3), np.zeros(3), {"eps": 0.0})
    s = np.sqrt(2 / 3)
    np.testing.assert_allclose(
        out, [[-1 / s, 0, 1 / s], [-1 / np.sqrt(2), -1 / np.sqrt(2), np.sqrt(2)]], rtol=1e-14
    )


# ----------------------------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------------------------


def test_dropout_test_mode_is_identity():
    x = randn(4, 5)
    out, cache = L.dropout_forward(x, {"p": 0.3, "mode": "test"})
    np.testing.assert_array_equal(out, x)
    dout = randn(4, 5)
    np.testing.assert_array_equal(L.dropout_backward(dout, cache), dout)


def test_dropout_seed_reproduces_cs231n_mask():
    x = randn(6, 7)
    param = {"p": 0.4, "mode": "train", "seed": 123}
    out1, cache = L.dropout_forward(x, param)
    out2, _ = L.dropout_forward(x, param)
    np.testing.assert_array_equal(out1, out2)
    # CS231n's draw: np.random.seed(seed); mask = (np.random.rand(*x.shape) < p) / p
    np.random.seed(123)  # noqa: NPY002
    mask = (np.random.rand(*x.shape) < 0.4) / 0.4  # noqa: NPY002
    np.testing.assert_array_equal(out1, x * mask)
    np.testing.assert_array_equal(cache[1], mask)
    assert cache[0] is param


def test_dropout_keep_rate_and_scaling():
    p, shape = 0.3, (400, 500)
    x = np.abs(randn(*shape)) + 0.1  # never zero, so a zero output means dropped
    out, cache = L.dropout_forward(x, {"p": p, "mode": "train", "seed": 0})
    kept = out != 0
    n = kept.size
    assert abs(kept.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(out[kept], x[kept] / p, rtol=1e-15)
    dout = randn(*shape)
    dx = L.dropout_backward(dout, cache)
    np.testing.assert_allclose(dx[kept], dout[kept] / p, rtol=1e-15)
    np.testing.assert_array_equal(dx[~kept], 0)
    # inverted dropout keeps the expectation: mean(out / x) ~ 1
    assert abs((out / x).mean() - 1) < 5 * np.sqrt((1 - p) / p / n)


def test_dropout_p_one_keeps_everything_and_unseeded_masks_differ():
    x = randn(5, 5)
    np.testing.assert_array_equal(L.dropout_forward(x, {"p": 1, "mode": "train"})[0], x)
    a = L.dropout_forward(x, {"p": 0.5, "mode": "train"})[1][1]
    b = L.dropout_forward(x, {"p": 0.5, "mode": "train"})[1][1]
    assert not np.array_equal(a, b)


def test_dropout_backward_uses_cached_mask_even_if_mode_flips():
    x = randn(4, 4)
    param = {"p": 0.5, "mode": "train", "seed": 2}
    _, cache = L.dropout_forward(x, param)
    param["mode"] = "test"
    dout = np.ones((4, 4))
    np.testing.assert_array_equal(L.dropout_backward(dout, cache), cache[1])


# ----------------------------------------------------------------------------------------------
# Conv and pool: hand-computed examples and the definition
# ----------------------------------------------------------------------------------------------


def _conv_definition(x, w, b, stride, pad):
    """out[n,f,i,j] = b[f] + sum_{c,k,l} xpad[n,c,i*s+k,j*s+l] w[f,c,k,l], one scalar at a time."""
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.zeros((N, C, H + 2 * pad, W + 2 * pad))
    xp[:, :, pad : pad + H, pad : pad + W] = x
    Ho, Wo = (H + 2 * pad - HH) // stride + 1, (W + 2 * pad - WW) // stride + 1
    out = np.zeros((N, F, Ho, Wo))
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    total = b[f]
                    for c in range(C):
                        for k in range(HH):
                            for l in range(WW):
                                total += xp[n, c, i * stride + k, j * stride + l] * w[f, c, k, l]
                    out[n, f, i, j] = total
    return out


def test_conv_forward_hand_example():
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    w = np.array([[1.0, 0.0], [0.0, -1.0]]).reshape(1, 1, 2, 2)
    out, _ = L.conv_forward_naive(x, w, np.array([10.0]), {"stride": 1, "pad": 0})
    # x[i, j] - x[i + 1, j + 1] = -4 everywhere (no kernel flip: cross-correlation)
    np.testing.assert_array_equal(out, np.full((1, 1, 2, 2), 6.0))


def test_conv_forward_pad_and_stride_hand_example():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    out, _ = L.conv_forward_naive(x, np.ones((1, 1, 3, 3)), np.zeros(1), {"stride": 2, "pad": 1})
    np.testing.assert_array_equal(
        out, [[[[0 + 1 + 3 + 4, 1 + 2 + 4 + 5], [3 + 4 + 6 + 7, 4 + 5 + 7 + 8]]]]
    )


def test_conv_backward_hand_example():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.array([[1.0, 0.0], [0.0, -1.0]]).reshape(1, 1, 2, 2)
    _, cache = L.conv_forward_naive(x, w, np.zeros(1), {"stride": 1, "pad": 0})
    dx, dw, db = L.conv_backward_naive(np.ones((1, 1, 2, 2)), cache)
    # dw[k, l] = sum of the x values that met w[k, l]
    np.testing.assert_array_equal(
        dw[0, 0], [[0 + 1 + 3 + 4, 1 + 2 + 4 + 5], [3 + 4 + 6 + 7, 4 + 5 + 7 + 8]]
    )
    np.testing.assert_array_equal(db, [4.0])
    # dx: +1 wherever w[0, 0] landed, -1 wherever w[1, 1] landed
    np.testing.assert_array_equal(dx[0, 0], [[1, 1, 0], [1, 0, -1], [0, -1, -1]])


def test_conv_floor_rule_ignores_unreachable_rows_and_columns():
    x = randn(1, 2, 5, 6)
    w = randn(3, 2, 2, 2)
    out, cache = L.conv_forward_naive(x, w, np.zeros(3), {"stride": 2, "pad": 0})
    assert out.shape == (1, 3, 2, 3)  # 1 + (5 - 2) // 2 = 2, 1 + (6 - 2) // 2 = 3
    dx, _, _ = L.conv_backward_naive(np.ones(out.shape), cache)
    np.testing.assert_array_equal(dx[:, :, 4, :], 0)  # row 4 is never inside a window


@given(
    N=st.integers(1, 2),
    C=st.integers(1, 3),
    F=st.integers(1, 3),
    H=st.integers(1, 6),
    W=st.integers(1, 6),
    HH=st.integers(1, 3),
    WW=st.integers(1, 3),
    stride=st.integers(1, 4),
    pad=st.integers(0, 2),
    seed=st.integers(0, 2**16),
)
def test_conv_forward_matches_definition(N, C, F, H, W, HH, WW, stride, pad, seed):
    assume(HH <= H + 2 * pad and WW <= W + 2 * pad)
    r = np.random.default_rng(seed)
    x, w = r.standard_normal((N, C, H, W)), r.standard_normal((F, C, HH, WW))
    b = r.standard_normal(F)
    out, _ = L.conv_forward_naive(x, w, b, {"stride": stride, "pad": pad})
    expected = _conv_definition(x, w, b, stride, pad)
    assert out.shape == expected.shape
    # Same sums in another order: round-off relative to the terms' scale (outputs may cancel).
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12 * C * HH * WW)


def test_max_pool_hand_example():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    out, cache = L.max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    np.testing.assert_array_equal(out, [[[[5, 7], [13, 15]]]])
    dx = L.max_pool_backward_naive(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    expected = np.zeros((4, 4))
    expected[1, 1], expected[1, 3], expected[3, 1], expected[3, 3] = 1, 2, 3, 4
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_max_pool_ties_send_gradient_to_first_max_in_row_major_order():
    x = np.array([[0.0, 3.0], [3.0, 1.0]]).reshape(1, 1, 2, 2)
    _, cache = L.max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    np.testing.assert_array_equal(
        L.max_pool_backward_naive(np.ones((1, 1, 1, 1)), cache)[0, 0], [[0, 1], [0, 0]]
    )
    x = np.ones((1, 1, 2, 3))
    _, cache = L.max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 3, "stride": 1})
    np.testing.assert_array_equal(
        L.max_pool_backward_naive(np.ones((1, 1, 1, 1)), cache)[0, 0], [[1, 0, 0], [0, 0, 0]]
    )


def test_max_pool_overlapping_windows_accumulate():
    x = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [1.0, 3.0, 1.0]]).reshape(1, 1, 3, 3)
    out, cache = L.max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 2, "stride": 1})
    np.testing.assert_array_equal(out[0, 0], [[2, 2], [3, 3]])
    dx = L.max_pool_backward_naive(np.ones((1, 1, 2, 2)), cache)
    np.testing.assert_array_equal(dx[0, 0], [[0, 2, 0], [0, 0, 0], [0, 2, 0]])


def test_max_pool_stride_larger_than_window_and_floor_rule():
    x = randn(2, 3, 5, 7)
    out, cache = L.max_pool_forward_naive(x, {"pool_height": 1, "pool_width": 1, "stride": 3})
    np.testing.assert_array_equal(out, x[:, :, ::3, ::3])  # 1 + (5 - 1) // 3 = 2, 1 + 6 // 3 = 3
    dx = L.max_pool_backward_naive(np.ones(out.shape), cache)
    expected = np.zeros_like(x)
    expected[:, :, ::3, ::3] = 1
    np.testing.assert_array_equal(dx, expected)
    out, _ = L.max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    assert out.shape == (2, 3, 2, 3)


def test_max_pool_propagates_nan():
    x = np.array([[1.0, np.nan], [5.0, 2.0]]).reshape(1, 1, 2, 2)
    out, _ = L.max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    assert np.isnan(out).all()


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------


def test_svm_loss_hand_example():
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    y = np.array([0, 2])
    loss, dx = L.svm_loss(x, y)
    # row 0: margins 2 - 1 + 1 = 2 and 3 - 1 + 1 = 3; row 1: 1 and 1. Mean over N = 2.
    assert loss == pytest.approx((5 + 2) / 2, rel=1e-15)
    np.testing.assert_allclose(dx, np.array([[-2, 1, 1], [1, 1, -2]]) / 2, rtol=1e-15)


def test_svm_loss_margin_exactly_met_contributes_nothing():
    loss, dx = L.svm_loss(np.array([[2.0, 1.0, 1.5]]), np.array([0]))
    assert loss == pytest.approx(0.5)  # class 1 sits exactly on the margin, class 2 inside it
    np.testing.assert_array_equal(dx, [[-1, 0, 1]])


def test_softmax_loss_hand_example():
    x = np.log(np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 2.0]]))  # probs (1, 2, 3)/6, (1, 1, 2)/4
    loss, dx = L.softmax_loss(x, np.array([2, 0]))
    assert loss == pytest.approx((-np.log(0.5) - np.log(0.25)) / 2, rel=1e-14)
    np.testing.assert_allclose(
        dx, np.array([[1 / 6, 2 / 6, 3 / 6 - 1], [1 / 4 - 1, 1 / 4, 2 / 4]]) / 2, rtol=1e-13
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_losses_are_finite_for_huge_logits(dtype):
    x = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]], dtype=dtype)
    y = np.array([1, 2])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, dx = L.softmax_loss(x, y)
    assert np.isfinite(loss) and np.isfinite(dx).all()
    assert loss.dtype == dtype and dx.dtype == dtype
    # row 0: -log softmax = 1e4; row 1: uniform, log 3
    assert float(loss) == pytest.approx((1e4 + np.log(3)) / 2, rel=1e-6)
    np.testing.assert_allclose(dx, np.array([[1, -1, 0], [1 / 3, 1 / 3, -2 / 3]]) / 2, atol=1e-7)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, dx = L.svm_loss(x, y)
    assert float(loss) == pytest.approx((1e4 + 1 + 2) / 2, rel=1e-6)
    assert loss.dtype == dtype and dx.dtype == dtype


def test_sigmoid_is_finite_for_huge_inputs():
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out, _ = L.sigmoid_forward(x)
    np.testing.assert_allclose(out, [0.0, 1 / (1 + np.exp(50.0)), 0.5, 1.0, 1.0], atol=1e-30)


def test_losses_do_not_modify_inputs():
    x, y = randn(4, 6), np.array([0, 5, 2, 2])
    x0, y0 = x.copy(), y.copy()
    for loss_fn in (L.svm_loss, L.softmax_loss):
        _, dx = loss_fn(x, y)
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(y, y0)
        assert not np.shares_memory(dx, x)
