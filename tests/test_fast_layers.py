"""numpy_impl.fast_layers against the naive layers of numpy_impl.layers.

Every fast variant (conv: fast/im2col/strides; max pool: fast/reshape/im2col) must reproduce the
naive forward and backward to float64 round-off over randomized shapes, strides and paddings
(batch 1, 1x1 kernels, stride > kernel, non-square inputs and kernels, windows that do not tile),
break pooling ties exactly like the naive layer, keep float32, leave its inputs alone and reject
bad input with the naive layer's exact error.
"""

import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpy_impl import fast_layers as fl
from numpy_impl import layers as L
from numpy_impl.gradient_check import rel_error
from parity_tests.tolerances import REL_ERROR

TOL = REL_ERROR["twin_float64"]

CONV_VARIANTS = {
    "fast": (fl.conv_forward_fast, fl.conv_backward_fast),
    "im2col": (fl.conv_forward_im2col, fl.conv_backward_im2col),
    "strides": (fl.conv_forward_strides, fl.conv_backward_strides),
}
POOL_VARIANTS = {
    "fast": (fl.max_pool_forward_fast, fl.max_pool_backward_fast),
    "reshape": (fl.max_pool_forward_reshape, fl.max_pool_backward_reshape),
    "im2col": (fl.max_pool_forward_im2col, fl.max_pool_backward_im2col),
}


def _rng(seed):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------------------------


def _conv_inputs(N, C, H, W, F, HH, WW, seed=0, dtype=np.float64):
    r = _rng(seed)
    x = r.standard_normal((N, C, H, W)).astype(dtype)
    w = r.standard_normal((F, C, HH, WW)).astype(dtype)
    b = r.standard_normal(F).astype(dtype)
    return x, w, b


def _check_conv_against_naive(x, w, b, conv_param, seed=0):
    out, cache = L.conv_forward_naive(x, w, b, conv_param)
    dout = _rng(seed + 1).standard_normal(out.shape).astype(out.dtype)
    grads = L.conv_backward_naive(dout, cache)
    for name, (forward, backward) in CONV_VARIANTS.items():
        out_f, cache_f = forward(x, w, b, conv_param)
        assert out_f.shape == out.shape, name
        assert rel_error(out_f, out) < TOL, name
        for g_name, g_fast, g_naive in zip(
            ("dx", "dw", "db"), backward(dout, cache_f), grads, strict=True
        ):
            assert g_fast.shape == g_naive.shape, (name, g_name)
            assert rel_error(g_fast, g_naive) < TOL, (name, g_name)
    # The fast backward also accepts the naive forward's cache (it rebuilds the columns).
    for g_fast, g_naive in zip(fl.conv_backward_fast(dout, cache), grads, strict=True):
        assert rel_error(g_fast, g_naive) < TOL


@st.composite
def conv_shapes(draw):
    HH, WW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pad, stride = draw(st.integers(0, 2)), draw(st.integers(1, 4))
    # Any input the padded kernel fits in, including sizes the last stride cannot reach.
    H = draw(st.integers(max(1, HH - 2 * pad), 9))
    W = draw(st.integers(max(1, WW - 2 * pad), 9))
    N, C, F = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    return (N, C, H, W, F, HH, WW), {"stride": stride, "pad": pad}


@given(conv_shapes(), st.integers(0, 2**16))
def test_conv_variants_match_naive_randomized(shape, seed):
    conv_param = shape[1]
    _check_conv_against_naive(*_conv_inputs(*shape[0], seed=seed), conv_param, seed=seed)


@pytest.mark.parametrize(
    "shape, conv_param",
    [
        ((1, 3, 7, 7, 2, 3, 3), {"stride": 1, "pad": 1}),  # batch of 1
        ((2, 3, 5, 6, 4, 1, 1), {"stride": 1, "pad": 0}),  # 1x1 kernel
        ((2, 2, 9, 8, 3, 2, 2), {"stride": 3, "pad": 0}),  # stride > kernel, windows skip pixels
        ((2, 2, 8, 6, 3, 2, 2), {"stride": 2, "pad": 0}),  # stride == kernel: windows tile
        ((2, 2, 7, 10, 3, 3, 2), {"stride": 2, "pad": 1}),  # non-square input and kernel
        ((1, 1, 1, 1, 2, 3, 3), {"stride": 1, "pad": 1}),  # 1x1 image, kernel covers padding
        ((2, 2, 2, 3, 2, 1, 1), {"stride": 2, "pad": 3}),  # padding wider than the kernel
        ((3, 2, 4, 4, 2, 6, 6), {"stride": 5, "pad": 1}),  # kernel larger than the image
        ((32, 3, 5, 5, 4, 3, 3), {"stride": 1, "pad": 1}),  # batch a multiple of 16
        ((48, 2, 4, 3, 2, 2, 3), {"stride": 2, "pad": 2}),
    ],
)
def test_conv_variants_match_naive_awkward_shapes(shape, conv_param):
    _check_conv_against_naive(*_conv_inputs(*shape), conv_param)


def test_conv_hand_computed_example():
    # 1x1 input channel, 2x2 kernel, stride 1, pad 0 on a 2x3 image: two windows per row.
    x = np.arange(6, dtype=np.float64).reshape(1, 1, 2, 3)  # [[0 1 2], [3 4 5]]
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    b = np.array([0.5])
    out, cache = fl.conv_forward_fast(x, w, b, {"stride": 1, "pad": 0})
    # window 1: 0*1 + 1*2 + 3*3 + 4*4 = 27; window 2: 1*1 + 2*2 + 4*3 + 5*4 = 37
    np.testing.assert_array_equal(out, [[[[27.5, 37.5]]]])
    dx, dw, db = fl.conv_backward_fast(np.ones_like(out), cache)
    np.testing.assert_array_equal(db, [2.0])
    np.testing.assert_array_equal(dw, [[[[0 + 1, 1 + 2], [3 + 4, 4 + 5]]]])
    # each window adds w onto the pixels it covers; the middle column is covered twice
    np.testing.assert_array_equal(dx, [[[[1, 2 + 1, 2], [3, 4 + 3, 4]]]])


@pytest.mark.parametrize("variant", sorted(CONV_VARIANTS))
def test_conv_float32_stays_float32(variant):
    forward, backward = CONV_VARIANTS[variant]
    x, w, b = _conv_inputs(2, 3, 6, 5, 4, 3, 2, dtype=np.float32)
    out, cache = forward(x, w, b, {"stride": 2, "pad": 1})
    dout = _rng(1).standard_normal(out.shape).astype(np.float32)
    assert out.dtype == np.float32
    for g in backward(dout, cache):
        assert g.dtype == np.float32
    for a in cache:
        if isinstance(a, np.ndarray):
            assert a.dtype == np.float32


@pytest.mark.parametrize("variant", sorted(CONV_VARIANTS))
def test_conv_mixed_dtypes_follow_the_naive_layer(variant):
    forward, backward = CONV_VARIANTS[variant]
    x, w, b = _conv_inputs(2, 2, 5, 5, 3, 3, 3, dtype=np.float32)
    b = b.astype(np.float64)
    conv_param = {"stride": 1, "pad": 1}
    out_n, cache_n = L.conv_forward_naive(x, w, b, conv_param)
    out_f, cache_f = forward(x, w, b, conv_param)
    assert out_f.dtype == out_n.dtype
    dout = np.ones(out_n.shape, dtype=np.float32)
    for g_f, g_n in zip(backward(dout, cache_f), L.conv_backward_naive(dout, cache_n), strict=True):
        assert g_f.dtype == g_n.dtype


@pytest.mark.parametrize("variant", sorted(CONV_VARIANTS))
def test_conv_does_not_modify_inputs(variant):
    forward, backward = CONV_VARIANTS[variant]
    x, w, b = _conv_inputs(2, 3, 5, 6, 2, 3, 3)
    conv_param = {"stride": 1, "pad": 1}
    saved = copy.deepcopy((x, w, b, conv_param))
    out, cache = forward(x, w, b, conv_param)
    dout = _rng(1).standard_normal(out.shape)
    dout_saved = dout.copy()
    backward(dout, cache)
    for before, after in zip(saved, (x, w, b), strict=False):
        np.testing.assert_array_equal(before, after)
    assert conv_param == saved[3]
    np.testing.assert_array_equal(dout, dout_saved)


def test_conv_chain_with_non_contiguous_inputs():
    # The fast conv returns a view of its (F, H', W', N) memory; feeding it (and a transposed
    # dout) to the next layers must still match the naive chain.
    x, w, b = _conv_inputs(16, 2, 6, 6, 3, 3, 3)
    w2 = _rng(5).standard_normal((2, 3, 2, 2))
    b2 = _rng(6).standard_normal(2)
    cp1, cp2 = {"stride": 1, "pad": 1}, {"stride": 1, "pad": 0}
    pp = {"pool_height": 2, "pool_width": 2, "stride": 2}
    h_f, c1_f = fl.conv_forward_fast(x, w, b, cp1)
    p_f, cp_f = fl.max_pool_forward_fast(h_f, pp)
    o_f, c2_f = fl.conv_forward_fast(p_f, w2, b2, cp2)
    h_n, c1_n = L.conv_forward_naive(x, w, b, cp1)
    p_n, cp_n = L.max_pool_forward_naive(h_n, pp)
    o_n, c2_n = L.conv_forward_naive(p_n, w2, b2, cp2)
    assert not h_f.flags.c_contiguous  # the layout this test is about
    assert rel_error(o_f, o_n) < TOL
    dout = np.asfortranarray(_rng(7).standard_normal(o_n.shape))  # another memory layout
    dp_f, dw2_f, db2_f = fl.conv_backward_fast(dout, c2_f)
    dp_n, dw2_n, db2_n = L.conv_backward_naive(dout, c2_n)
    dh_f = fl.max_pool_backward_fast(dp_f, cp_f)
    dh_n = L.max_pool_backward_naive(dp_n, cp_n)
    grads_f = fl.conv_backward_fast(dh_f, c1_f)
    grads_n = L.conv_backward_naive(dh_n, c1_n)
    for g_f, g_n in zip(
        (dw2_f, db2_f, dh_f, *grads_f), (dw2_n, db2_n, dh_n, *grads_n), strict=True
    ):
        assert rel_error(g_f, g_n) < TOL


@pytest.mark.parametrize("variant", sorted(CONV_VARIANTS))
def test_conv_results_do_not_share_the_reused_buffers(variant):
    # Two layers of the same shapes, forward A, forward B, backward B, backward A (a network's
    # order), then another call: every array handed out earlier must keep its value.
    forward, backward = CONV_VARIANTS[variant]
    conv_param = {"stride": 1, "pad": 1}
    xa, wa, ba = _conv_inputs(16, 2, 5, 5, 3, 3, 3, seed=1)
    xb, wb, bb = _conv_inputs(16, 2, 5, 5, 3, 3, 3, seed=2)
    dout = _rng(3).standard_normal((16, 3, 5, 5))
    out_a, cache_a = forward(xa, wa, ba, conv_param)
    out_b, cache_b = forward(xb, wb, bb, conv_param)
    saved = [out_a.copy(), out_b.copy()]
    grads_b = backward(dout, cache_b)
    grads_a = backward(dout, cache_a)
    saved += [g.copy() for g in grads_b + grads_a]
    backward(2 * dout, cache_a)  # a cache can be used twice
    forward(xb + 1, wb, bb, conv_param)
    for before, now in zip(saved, [out_a, out_b, *grads_b, *grads_a], strict=True):
        np.testing.assert_array_equal(before, now)
    ref_a = L.conv_backward_naive(dout, L.conv_forward_naive(xa, wa, ba, conv_param)[1])
    for g, g_ref in zip(grads_a, ref_a, strict=True):
        assert rel_error(g, g_ref) < TOL
    assert rel_error(out_b, L.conv_forward_naive(xb, wb, bb, conv_param)[0]) < TOL


def test_conv_threads_use_separate_buffers():
    from concurrent.futures import ThreadPoolExecutor

    conv_param = {"stride": 1, "pad": 1}

    def run(seed):
        x, w, b = _conv_inputs(16, 3, 8, 8, 4, 3, 3, seed=seed)
        out, cache = fl.conv_forward_fast(x, w, b, conv_param)
        grads = fl.conv_backward_fast(np.ones_like(out), cache)
        out_n, cache_n = L.conv_forward_naive(x, w, b, conv_param)
        grads_n = L.conv_backward_naive(np.ones_like(out_n), cache_n)
        return max(rel_error(a, c) for a, c in zip((out, *grads), (out_n, *grads_n), strict=True))

    with ThreadPoolExecutor(max_workers=4) as pool:
        errors = list(pool.map(run, range(8)))
    assert max(errors) < TOL
    fl.free_workspace()
    assert run(9) < TOL


def _raises_same(naive_call, fast_call):
    with pytest.raises((ValueError, TypeError)) as naive_err:
        naive_call()
    with pytest.raises(naive_err.type) as fast_err:
        fast_call()
    assert str(fast_err.value) == str(naive_err.value)


def _bad_conv_inputs():
    x, w, b = _conv_inputs(2, 3, 5, 5, 4, 3, 3)
    ok = {"stride": 1, "pad": 1}
    return [
        (x[0], w, b, ok),  # x not 4-D
        (x, w[:, :2], b, ok),  # channel mismatch
        (x, w, b[:3], ok),  # one bias per filter
        (x, w, b, {"stride": 1, "pad": -1}),
        (x, w, b, {"stride": 0, "pad": 1}),
        (x, w, b, {"stride": 1.5, "pad": 1}),
        (x, w, b, {"pad": 1}),  # missing stride
        (x, w, b, [1, 1]),  # not a dict
        (x[:, :, :2, :2], w, b, {"stride": 1, "pad": 0}),  # kernel larger than padded input
        (x.astype(np.int64), w, b, ok),  # integer x
    ]


@pytest.mark.parametrize("variant", sorted(CONV_VARIANTS))
@pytest.mark.parametrize("case", range(len(_bad_conv_inputs())))
def test_conv_bad_input_raises_like_naive(variant, case):
    forward, _ = CONV_VARIANTS[variant]
    args = _bad_conv_inputs()[case]
    _raises_same(lambda: L.conv_forward_naive(*args), lambda: forward(*args))


@pytest.mark.parametrize("variant", sorted(CONV_VARIANTS))
def test_conv_backward_bad_dout_raises_like_naive(variant):
    forward, backward = CONV_VARIANTS[variant]
    x, w, b = _conv_inputs(2, 3, 5, 5, 4, 3, 3)
    conv_param = {"stride": 1, "pad": 1}
    _, cache_n = L.conv_forward_naive(x, w, b, conv_param)
    _, cache_f = forward(x, w, b, conv_param)
    dout = np.ones((2, 4, 5, 4))
    _raises_same(lambda: L.conv_backward_naive(dout, cache_n), lambda: backward(dout, cache_f))


def test_backward_rejects_a_param_dict_changed_after_forward():
    x, w, b = _conv_inputs(2, 3, 5, 5, 4, 3, 3)
    conv_param = {"stride": 1, "pad": 1}
    out, cache = fl.conv_forward_fast(x, w, b, conv_param)
    conv_param["pad"] = 2
    with pytest.raises(ValueError, match="conv_param changed between forward and backward"):
        fl.conv_backward_fast(np.ones_like(out), cache)
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    for forward, backward in POOL_VARIANTS.values():
        out, cache = forward(x, pool_param)
        changed = dict(pool_param, stride=1)
        with pytest.raises(ValueError, match="pool_param changed between forward and backward"):
            backward(np.ones_like(out), (cache[0], changed, *cache[2:]))


def test_conv_backward_rejects_foreign_cache():
    with pytest.raises(TypeError, match="cache must be"):
        fl.conv_backward_fast(np.ones((1, 1, 1, 1)), ("not", "a", "conv", "cache", "at all"))


# ----------------------------------------------------------------------------------------------
# Max pooling
# ----------------------------------------------------------------------------------------------


def _check_pool_against_naive(x, pool_param, seed=0):
    out, cache = L.max_pool_forward_naive(x, pool_param)
    dout = _rng(seed + 1).standard_normal(out.shape).astype(out.dtype)
    dx = L.max_pool_backward_naive(dout, cache)
    for name, (forward, backward) in POOL_VARIANTS.items():
        out_f, cache_f = forward(x, pool_param)
        assert out_f.shape == out.shape, name
        # A max picks one of the inputs: no round-off, the outputs are identical.
        np.testing.assert_array_equal(out_f, out, err_msg=name)
        dx_f = backward(dout, cache_f)
        assert dx_f.shape == dx.shape, name
        assert rel_error(dx_f, dx) < TOL, name
    assert rel_error(fl.max_pool_backward_fast(dout, cache), dx) < TOL  # naive cache


@st.composite
def pool_cases(draw):
    ph, pw, stride = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    H, W = draw(st.integers(ph, 9)), draw(st.integers(pw, 9))
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    r = _rng(draw(st.integers(0, 2**16)))
    if draw(st.booleans()):
        # Small integers: many windows hold several equal maxima (ties).
        x = r.integers(-2, 3, size=(N, C, H, W)).astype(np.float64)
    else:
        x = r.standard_normal((N, C, H, W))
    return x, {"pool_height": ph, "pool_width": pw, "stride": stride}


@given(pool_cases())
def test_pool_variants_match_naive_randomized(case):
    _check_pool_against_naive(*case)


@pytest.mark.parametrize(
    "shape, ph, pw, stride",
    [
        ((1, 1, 4, 4), 2, 2, 2),  # batch 1, windows tile (the reshape path)
        ((2, 3, 6, 8), 2, 2, 2),
        ((2, 3, 6, 9), 3, 3, 3),  # tiles in H only: W has a leftover column
        ((2, 2, 7, 7), 2, 2, 2),  # floor rule: last row/column unused
        ((2, 2, 9, 7), 2, 3, 3),  # non-square window, stride > pool height
        ((2, 2, 7, 7), 3, 3, 1),  # heavily overlapping windows
        ((2, 2, 8, 8), 1, 1, 3),  # 1x1 windows with stride 3
        ((2, 2, 3, 5), 3, 5, 1),  # one window covering the whole image
        ((32, 2, 4, 4), 2, 2, 2),
    ],
)
@pytest.mark.parametrize("ties", [False, True])
def test_pool_variants_match_naive_awkward_shapes(shape, ph, pw, stride, ties):
    r = _rng(3)
    x = r.integers(-1, 2, size=shape).astype(np.float64) if ties else r.standard_normal(shape)
    _check_pool_against_naive(x, {"pool_height": ph, "pool_width": pw, "stride": stride})


@pytest.mark.parametrize("variant", sorted(POOL_VARIANTS))
def test_pool_ties_send_the_gradient_to_the_first_maximum(variant):
    forward, backward = POOL_VARIANTS[variant]
    # A 2x2 window of equal values: everything goes to its first (top-left) element.
    x = np.full((1, 1, 2, 2), 7.0)
    out, cache = forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    np.testing.assert_array_equal(out, [[[[7.0]]]])
    np.testing.assert_array_equal(
        backward(np.full((1, 1, 1, 1), 3.0), cache), [[[[3.0, 0.0], [0.0, 0.0]]]]
    )
    # Overlapping 1x2 windows over [5, 5, 5]: window 0 -> pixel 0, window 1 -> pixel 1.
    x = np.full((1, 1, 1, 3), 5.0)
    out, cache = forward(x, {"pool_height": 1, "pool_width": 2, "stride": 1})
    dx = backward(np.array([[[[2.0, 10.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[2.0, 10.0, 0.0]]]])
    # Second row holds the max of a 2x2 window at both columns: the first in row-major order wins.
    x = np.array([[[[0.0, 1.0], [4.0, 4.0]]]])
    out, cache = forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    np.testing.assert_array_equal(
        backward(np.ones((1, 1, 1, 1)), cache), [[[[0.0, 0.0], [1.0, 0.0]]]]
    )


@pytest.mark.parametrize("variant", sorted(POOL_VARIANTS))
def test_pool_nan_propagates_like_naive(variant):
    forward, backward = POOL_VARIANTS[variant]
    x = _rng(4).standard_normal((2, 2, 6, 6))
    x[0, 0, 1, 1] = x[0, 0, 0, 1] = x[1, 1, 4, 5] = np.nan
    for pool_param in (
        {"pool_height": 2, "pool_width": 2, "stride": 2},
        {"pool_height": 3, "pool_width": 2, "stride": 1},
    ):
        out_n, cache_n = L.max_pool_forward_naive(x, pool_param)
        out_f, cache_f = forward(x, pool_param)
        np.testing.assert_array_equal(out_f, out_n)  # NaN == NaN here
        assert np.isnan(out_f).any()
        dout = _rng(5).standard_normal(out_n.shape)
        dx_f, dx_n = backward(dout, cache_f), L.max_pool_backward_naive(dout, cache_n)
        assert np.isfinite(dx_f).all()
        assert rel_error(dx_f, dx_n) < TOL  # overlapping windows add in another order


@pytest.mark.parametrize("variant", sorted(POOL_VARIANTS))
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_pool_inf_in_dout_stays_where_naive_puts_it(variant, stride):
    forward, backward = POOL_VARIANTS[variant]
    x = _rng(6).integers(-1, 2, size=(1, 2, 5, 5)).astype(float)
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": stride}
    out, cache_n = L.max_pool_forward_naive(x, pool_param)
    _, cache_f = forward(x, pool_param)
    dout = np.ones(out.shape)
    dout[0, 1, 1, 0] = np.inf
    dout[0, 0, 0, 1] = -np.inf
    np.testing.assert_array_equal(backward(dout, cache_f), L.max_pool_backward_naive(dout, cache_n))


@pytest.mark.parametrize("variant", sorted(POOL_VARIANTS))
@pytest.mark.parametrize("stride", [1, 2])
def test_pool_float32_stays_float32(variant, stride):
    forward, backward = POOL_VARIANTS[variant]
    x = _rng(7).standard_normal((2, 3, 6, 6)).astype(np.float32)
    out, cache = forward(x, {"pool_height": 2, "pool_width": 2, "stride": stride})
    assert out.dtype == np.float32
    assert backward(np.ones_like(out), cache).dtype == np.float32


@pytest.mark.parametrize("variant", sorted(POOL_VARIANTS))
def test_pool_non_contiguous_input(variant):
    forward, backward = POOL_VARIANTS[variant]
    x = np.ascontiguousarray(_rng(8).integers(-1, 2, size=(6, 6, 3, 2)).astype(float))
    x = x.transpose(3, 2, 1, 0)  # (2, 3, 6, 6), not C-contiguous
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    _check_pool_against_naive(x, pool_param)
    out_n, cache_n = L.max_pool_forward_naive(x, pool_param)
    out_f, cache_f = forward(x, pool_param)
    dout = _rng(9).standard_normal(out_n.shape)
    assert rel_error(backward(dout, cache_f), L.max_pool_backward_naive(dout, cache_n)) < TOL


@pytest.mark.parametrize("variant", sorted(POOL_VARIANTS))
@pytest.mark.parametrize("stride", [1, 2])
def test_pool_does_not_modify_inputs(variant, stride):
    forward, backward = POOL_VARIANTS[variant]
    x = _rng(10).integers(-1, 2, size=(2, 2, 5, 5)).astype(float)
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": stride}
    saved = copy.deepcopy((x, pool_param))
    out, cache = forward(x, pool_param)
    dout = _rng(11).standard_normal(out.shape)
    dout_saved = dout.copy()
    backward(dout, cache)
    np.testing.assert_array_equal(x, saved[0])
    assert pool_param == saved[1]
    np.testing.assert_array_equal(dout, dout_saved)


@pytest.mark.parametrize("variant", sorted(POOL_VARIANTS))
def test_pool_backward_survives_the_caller_modifying_out(variant):
    forward, backward = POOL_VARIANTS[variant]
    x = _rng(14).standard_normal((2, 2, 4, 4))
    out, cache = forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    dout = _rng(15).standard_normal(out.shape)
    expected = backward(dout, cache)
    out *= -1.0  # e.g. an in-place activation downstream
    np.testing.assert_array_equal(backward(dout, cache), expected)


def _bad_pool_inputs():
    x = _rng(12).standard_normal((2, 3, 4, 4))
    ok = {"pool_height": 2, "pool_width": 2, "stride": 2}
    return [
        (x[0], ok),
        (x, {"pool_height": 5, "pool_width": 2, "stride": 2}),  # window taller than input
        (x, {"pool_height": 2, "pool_width": 0, "stride": 2}),
        (x, {"pool_height": 2, "pool_width": 2, "stride": 0}),
        (x, {"pool_height": 2, "pool_width": 2}),
        (x, {"pool_height": 2.0, "pool_width": 2, "stride": 2}),
        (x.astype(np.int32), ok),
    ]


@pytest.mark.parametrize("variant", sorted(POOL_VARIANTS))
@pytest.mark.parametrize("case", range(len(_bad_pool_inputs())))
def test_pool_bad_input_raises_like_naive(variant, case):
    forward, _ = POOL_VARIANTS[variant]
    args = _bad_pool_inputs()[case]
    _raises_same(lambda: L.max_pool_forward_naive(*args), lambda: forward(*args))


@pytest.mark.parametrize("variant", sorted(POOL_VARIANTS))
def test_pool_backward_bad_dout_raises_like_naive(variant):
    forward, backward = POOL_VARIANTS[variant]
    x = _rng(13).standard_normal((2, 3, 4, 4))
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    _, cache_n = L.max_pool_forward_naive(x, pool_param)
    _, cache_f = forward(x, pool_param)
    dout = np.ones((2, 3, 2, 3))
    _raises_same(lambda: L.max_pool_backward_naive(dout, cache_n), lambda: backward(dout, cache_f))


def test_pool_backward_rejects_foreign_cache():
    with pytest.raises(TypeError, match="cache must be"):
        fl.max_pool_backward_fast(np.ones((1, 1, 1, 1)), (1, 2, 3))
