"""Tests for numpy_impl.classifiers: k-NN, linear losses/classifiers, and the networks.

Every model's analytic gradient is compared with a centered-difference numerical gradient in
float64 (rel_error < REL_ERROR['numerical_model']). Two facts about the numerical oracle shape how
examples are drawn, rather than any loosening of the tolerance:

- Kinks. A ReLU input within the probe's reach of 0 makes the centered difference straddle the
  kink, so examples where some ReLU input lies within KINK_MARGIN of 0 are rejected (hypothesis
  ``assume``); biases start random (not zero) so that an all-zero layer input does not put a
  pre-activation exactly on the kink.
- Round-off. Each loss evaluation carries ~eps*|loss| of round-off, so the centered difference
  cannot resolve a gradient entry smaller than eps*|loss|/h / tolerance. Such entries (rare; e.g.
  a weight whose data gradient nearly cancels its L2 term) are not compared by relative error;
  the analytic entry must then be just as small.
"""

# ruff: noqa: NPY002 -- the models under test draw from NumPy's global generator (CS231n's
# convention), so the tests seed it with np.random.seed.

from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

import numpy_impl.layer_utils as layer_utils
from numpy_impl.classifiers import (
    FullyConnectedNet,
    KNearestNeighbor,
    LinearClassifier,
    LinearSVM,
    Softmax,
    ThreeLayerConvNet,
    TwoLayerNet,
    cross_validate_knn,
    softmax_loss_naive,
    softmax_loss_vectorized,
    svm_loss_naive,
    svm_loss_vectorized,
)
from numpy_impl.classifiers import k_nearest_neighbor as knn_module
from numpy_impl.classifiers.k_nearest_neighbor import best_knn_setting
from numpy_impl.gradient_check import eval_numerical_gradient, rel_error
from numpy_impl.solver import Solver
from parity_tests.tolerances import REL_ERROR

H = 1e-5  # centered-difference step (the course's)
KINK_MARGIN = 1e-3  # ReLU inputs at least this far from 0: a probe moves them by ~h*|x| << 1e-3
TOL = REL_ERROR["numerical_model"]
seeds = st.integers(0, 2**31 - 1)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


@contextmanager
def relu_inputs():
    """Record min |x| of every ReLU input during a forward pass (all models go through
    layer_utils' sandwich layers, which look relu_forward up at call time)."""
    seen = []
    original = layer_utils.relu_forward

    def probe(x):
        seen.append(float(np.abs(x).min()) if x.size else np.inf)
        return original(x)

    with mock.patch.object(layer_utils, "relu_forward", probe):
        yield seen


def assert_model_gradients(model, X, y, exact_zero=()):
    """Analytic vs numerical gradient of every parameter (see the module docstring).

    exact_zero: parameter names whose true gradient is identically 0 (biases feeding batchnorm:
    the batch mean removes them); the analytic gradient is compared with that exact 0.
    """
    with relu_inputs() as seen:
        loss, grads = model.loss(X, y)
    assume(min(seen, default=np.inf) > KINK_MARGIN)
    assert set(grads) == set(model.params)
    resolution = np.finfo(np.float64).eps * max(1.0, abs(float(loss))) / H / TOL
    for name in sorted(model.params):
        ana = grads[name]
        assert ana.shape == model.params[name].shape, name
        if name in exact_zero:
            assert rel_error(ana, np.zeros_like(ana)) < TOL, name
            continue
        num = eval_numerical_gradient(
            lambda _: model.loss(X, y)[0], model.params[name], verbose=False, h=H
        )
        ok = np.abs(num) >= resolution
        if ok.any():
            assert rel_error(num[ok], ana[ok]) < TOL, (name, rel_error(num[ok], ana[ok]))
        assert np.all(np.abs(ana[~ok]) < 2 * resolution), name


def randomize_biases(model, rs, scale=0.1):
    for name in model.params:
        if name[0] == "b" and name[1:].isdigit():
            model.params[name] = scale * rs.randn(*model.params[name].shape)


def away_from_zero(rs, shape, low=0.5, high=2.0):
    return rs.choice([-1.0, 1.0], size=shape) * rs.uniform(low, high, size=shape)


# ----------------------------------------------------------------------------------------------
# k-nearest neighbour
# ----------------------------------------------------------------------------------------------


def brute_force_dists(X, X_train):
    return np.sqrt(((X[:, None, :] - X_train[None, :, :]) ** 2).sum(axis=2))


@given(seeds, st.integers(1, 7), st.integers(1, 9), st.integers(1, 12))
def test_knn_distance_variants_agree(seed, num_test, num_train, D):
    rs = np.random.RandomState(seed)
    X_train, X = rs.randn(num_train, D), rs.randn(num_test, D)
    knn = KNearestNeighbor()
    knn.train(X_train, rs.randint(3, size=num_train))
    ref = brute_force_dists(X, X_train)
    two = knn.compute_distances_two_loops(X)
    one = knn.compute_distances_one_loop(X)
    none = knn.compute_distances_no_loops(X)
    assert two.shape == one.shape == none.shape == (num_test, num_train)
    for d in (two, one, none):
        assert rel_error(d, ref) < REL_ERROR["twin_float64"]


def test_knn_distances_exact_on_integer_pixels():
    # Integer pixel values: every sum in the expansion is an exact float64 integer, so the three
    # variants must agree bit for bit; uint8 input must not wrap around on subtraction.
    rs = np.random.RandomState(0)
    X_train = rs.randint(0, 256, size=(20, 48)).astype(np.uint8)
    X = rs.randint(0, 256, size=(7, 48)).astype(np.uint8)
    knn = KNearestNeighbor()
    knn.train(X_train, rs.randint(10, size=20))
    ref = np.sqrt(((X[:, None].astype(np.int64) - X_train[None].astype(np.int64)) ** 2).sum(2))
    for d in (
        knn.compute_distances_two_loops(X),
        knn.compute_distances_one_loop(X),
        knn.compute_distances_no_loops(X),
    ):
        np.testing.assert_array_equal(d, ref)


def test_knn_no_loop_clips_before_sqrt_for_duplicates():
    rs = np.random.RandomState(1)
    X_train = rs.randn(30, 17) * 1e3 + 0.1
    knn = KNearestNeighbor()
    knn.train(X_train, np.arange(30))
    d = knn.compute_distances_no_loops(X_train)  # test points identical to training points
    assert np.all(np.isfinite(d)) and np.all(d >= 0)
    np.testing.assert_array_equal(np.argmin(d, axis=1), np.arange(30))
    np.testing.assert_array_equal(knn.predict(X_train, k=1), np.arange(30))


def test_knn_float32_stays_float32():
    rs = np.random.RandomState(2)
    knn = KNearestNeighbor()
    knn.train(rs.randn(6, 5).astype(np.float32), np.arange(6))
    X = rs.randn(3, 5).astype(np.float32)
    for d in (
        knn.compute_distances_two_loops(X),
        knn.compute_distances_one_loop(X),
        knn.compute_distances_no_loops(X),
    ):
        assert d.dtype == np.float32


def test_knn_predict_labels_vote_ties_go_to_smaller_label():
    knn = KNearestNeighbor()
    knn.train(np.zeros((6, 1)), np.array([3, 1, 3, 1, 7, 0]))
    dists = np.array(
        [
            [0.1, 0.2, 0.3, 0.4, 5.0, 6.0],  # k=4: two votes for 3, two for 1 -> 1
            [0.4, 0.3, 0.2, 0.1, 0.05, 9.0],  # k=2: 7 and 1 -> 1; k=1 -> 7
            [9.0, 9.0, 9.0, 9.0, 0.0, 0.0],  # k=2: 7 and 0 -> 0; k=4: 7, 0, 3, 1 -> 0
        ]
    )
    np.testing.assert_array_equal(knn.predict_labels(dists, k=4), [1, 1, 0])
    np.testing.assert_array_equal(knn.predict_labels(dists[1:], k=2), [1, 0])
    np.testing.assert_array_equal(knn.predict_labels(dists[1:2], k=1), [7])
    # k = 6 counts every point: 3 and 1 twice, 7 and 0 once -> 1.
    np.testing.assert_array_equal(knn.predict_labels(dists, k=6), [1, 1, 1])


@given(seeds, st.integers(1, 6), st.integers(1, 10), st.integers(1, 5))
def test_knn_predict_labels_matches_per_row_vote(seed, num_test, num_train, num_classes):
    rs = np.random.RandomState(seed)
    y_train = rs.randint(num_classes, size=num_train)
    dists = rs.randint(0, 4, size=(num_test, num_train)).astype(float)  # many distance ties
    knn = KNearestNeighbor()
    knn.train(np.zeros((num_train, 1)), y_train)
    for k in range(1, num_train + 1):
        expected = []
        for row in dists:
            order = sorted(range(num_train), key=lambda j: (row[j], j))  # stable
            votes = np.bincount(y_train[order[:k]], minlength=num_classes)
            expected.append(int(np.flatnonzero(votes == votes.max())[0]))
        np.testing.assert_array_equal(knn.predict_labels(dists, k=k), expected)


def test_knn_predict_uses_each_variant():
    rs = np.random.RandomState(3)
    centers = rs.randn(3, 8) * 10
    y_train = np.repeat(np.arange(3), 5)
    X_train = centers[y_train] + rs.randn(15, 8)
    X = centers[[2, 0, 1]] + rs.randn(3, 8)
    knn = KNearestNeighbor()
    knn.train(X_train, y_train)
    for loops in (0, 1, 2):
        np.testing.assert_array_equal(knn.predict(X, k=3, num_loops=loops), [2, 0, 1])


def test_cross_validate_knn_matches_manual_folds():
    rs = np.random.RandomState(4)
    X, y = rs.randn(23, 6), rs.randint(4, size=23)
    ks = [1, 3, 5]
    got = cross_validate_knn(X, y, ks, num_folds=4)
    idx = np.array_split(np.arange(23), 4)
    for k in ks:
        assert len(got[k]) == 4
        for i in range(4):
            tr = np.concatenate([idx[j] for j in range(4) if j != i])
            d = brute_force_dists(X[idx[i]], X[tr])
            pred = []
            for row in d:
                votes = np.bincount(y[tr][np.argsort(row, kind="stable")[:k]], minlength=4)
                pred.append(np.argmax(votes))
            assert got[k][i] == np.mean(np.array(pred) == y[idx[i]])


def test_knn_bad_input():
    knn = KNearestNeighbor()
    with pytest.raises(ValueError, match="train"):
        knn.predict(np.zeros((2, 3)))
    knn.train(np.zeros((4, 3)), np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"\(num_test, 3\)"):
        knn.compute_distances_no_loops(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="num_loops"):
        knn.predict(np.zeros((2, 3)), num_loops=3)
    with pytest.raises(ValueError, match="k must"):
        knn.predict(np.zeros((2, 3)), k=5)
    with pytest.raises(ValueError, match="y must have shape"):
        knn.train(np.zeros((4, 3)), np.array([0, 1]))
    with pytest.raises(TypeError, match="integer"):
        knn.train(np.zeros((2, 3)), np.array([0.5, 1.0]))


@pytest.mark.parametrize("metric, scipy_name", [("l1", "cityblock"), ("l2", "euclidean")])
@pytest.mark.parametrize("dtype", [np.float64, np.uint8])
def test_knn_distances_equal_scipy_cdist(metric, scipy_name, dtype):
    rs = np.random.RandomState(10)
    X_train = (rs.rand(13, 20) * 255).astype(dtype)
    X = (rs.rand(6, 20) * 255).astype(dtype)
    knn = KNearestNeighbor(metric=metric)
    knn.train(X_train, rs.randint(3, size=13))
    ref = cdist(X.astype(np.float64), X_train.astype(np.float64), scipy_name)
    for d in (
        knn.compute_distances_two_loops(X),
        knn.compute_distances_one_loop(X),
        knn.compute_distances_no_loops(X),
    ):
        assert d.shape == (6, 13)
        np.testing.assert_allclose(d, ref, rtol=1e-12)


def test_knn_l1_no_loop_blocks_bound_memory(monkeypatch):
    # A budget of 6 (test, train) pairs' worth of the (tile_test, tile_train, D) temporary: the
    # result must not depend on the tiling, including ragged last tiles in both directions.
    rs = np.random.RandomState(11)
    X_train, X = rs.randn(9, 4), rs.randn(10, 4)
    monkeypatch.setattr(knn_module, "L1_BLOCK_BYTES", 6 * 4 * 8)
    seen = []
    real_abs = np.abs

    def spy(a, *args, **kwargs):
        if a.ndim == 3:
            seen.append(a.shape)
        return real_abs(a, *args, **kwargs)

    monkeypatch.setattr(knn_module.np, "abs", spy)
    knn = KNearestNeighbor("l1")
    knn.train(X_train, np.zeros(9, dtype=int))
    d = knn.compute_distances_no_loops(X)
    monkeypatch.undo()
    np.testing.assert_allclose(d, cdist(X, X_train, "cityblock"), rtol=1e-12)
    assert all(t * n <= 6 and D == 4 for t, n, D in seen)
    assert sum(t * n for t, n, _ in seen) == 10 * 9  # every pair exactly once


def test_knn_l1_and_l2_can_disagree_on_the_nearest_point():
    # x = 0 is L2-closer to (2, 2) (2.83 < 3) but L1-closer to (3, 0) (3 < 4).
    knn_l1, knn_l2 = KNearestNeighbor("l1"), KNearestNeighbor()
    for knn in (knn_l1, knn_l2):
        knn.train(np.array([[2.0, 2.0], [3.0, 0.0]]), np.array([0, 1]))
    for loops in (0, 1, 2):
        assert knn_l1.predict(np.zeros((1, 2)), num_loops=loops)[0] == 1
        assert knn_l2.predict(np.zeros((1, 2)), num_loops=loops)[0] == 0


def test_cross_validate_knn_over_metrics_and_best_setting():
    rs = np.random.RandomState(12)
    X, y = rs.randn(30, 5), rs.randint(3, size=30)
    both = cross_validate_knn(X, y, [1, 5], num_folds=3, metric=["l1", "l2"])
    assert set(both) == {"l1", "l2"}
    assert both["l2"] == cross_validate_knn(X, y, [1, 5], num_folds=3)
    # The L1 results equal a manual cross-validation with SciPy's cityblock distances.
    idx = np.array_split(np.arange(30), 3)
    for i in range(3):
        tr = np.concatenate([idx[j] for j in range(3) if j != i])
        order = np.argsort(cdist(X[idx[i]], X[tr], "cityblock"), axis=1, kind="stable")
        pred = [np.argmax(np.bincount(y[tr][o[:5]], minlength=3)) for o in order]
        assert both["l1"][5][i] == np.mean(np.array(pred) == y[idx[i]])
    # Ties on the mean go to the smaller k, then to the metric listed first.
    table = {"l2": {1: [0.5, 0.5], 3: [0.5, 1.0]}, "l1": {1: [0.75, 0.75], 3: [1.0, 0.5]}}
    assert best_knn_setting(table) == ("l1", 1, 0.75)
    assert best_knn_setting({"l2": {3: [0.75]}, "l1": {3: [0.75], 1: [0.5]}}) == ("l2", 3, 0.75)
    assert best_knn_setting({1: [0.2], 3: [0.4], 5: [0.4]}) == (None, 3, pytest.approx(0.4))


def test_knn_bad_metric():
    with pytest.raises(ValueError, match=r"metric must be one of \('l2', 'l1'\), got 'cosine'"):
        KNearestNeighbor(metric="cosine")
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"metric must be one of .*got 'L1'"):
        cross_validate_knn(X, y, [1], num_folds=2, metric=["l2", "L1"])
    with pytest.raises(ValueError, match=r"non-empty list of them, got \[\]"):
        cross_validate_knn(X, y, [1], num_folds=2, metric=[])
    with pytest.raises(ValueError, match=r"accuracies must be a non-empty dict"):
        best_knn_setting({})


# ----------------------------------------------------------------------------------------------
# Linear losses and classifiers
# ----------------------------------------------------------------------------------------------

LOSSES = [(svm_loss_naive, svm_loss_vectorized), (softmax_loss_naive, softmax_loss_vectorized)]


@pytest.mark.parametrize("naive, vectorized", LOSSES)
@given(
    seed=seeds,
    N=st.integers(1, 9),
    D=st.integers(1, 11),
    C=st.integers(2, 6),
    reg=st.sampled_from([0.0, 0.1, 2.5]),
)
def test_linear_loss_naive_equals_vectorized(naive, vectorized, seed, N, D, C, reg):
    rs = np.random.RandomState(seed)
    W, X, y = rs.randn(D, C), rs.randn(N, D), rs.randint(C, size=N)
    loss_n, dW_n = naive(W, X, y, reg)
    loss_v, dW_v = vectorized(W, X, y, reg)
    assert rel_error(loss_n, loss_v) < REL_ERROR["twin_float64"]
    assert rel_error(dW_n, dW_v) < REL_ERROR["twin_float64"]
    assert dW_v.shape == W.shape


@pytest.mark.parametrize("naive, vectorized", LOSSES)
@given(
    seed=seeds,
    N=st.integers(1, 6),
    D=st.integers(1, 7),
    C=st.integers(2, 5),
    reg=st.sampled_from([0.0, 0.7]),
)
def test_linear_loss_numerical_gradient(naive, vectorized, seed, N, D, C, reg):
    rs = np.random.RandomState(seed)
    W, X, y = rs.randn(D, C), rs.randn(N, D), rs.randint(C, size=N)
    if vectorized is svm_loss_vectorized:  # keep every hinge away from its kink
        s = X @ W
        margins = s - s[np.arange(N), y][:, None] + 1
        margins[np.arange(N), y] = np.inf
        assume(np.abs(margins).min() > KINK_MARGIN)
    for fn in (naive, vectorized):
        _, dW = fn(W, X, y, reg)
        num = eval_numerical_gradient(
            lambda w, fn=fn: fn(w, X, y, reg)[0], W.copy(), verbose=False, h=H
        )
        assert rel_error(num, dW) < TOL


@pytest.mark.parametrize("fn", [svm_loss_naive, svm_loss_vectorized])
@given(seed=seeds, delta=st.sampled_from([0.0, 0.5, 1.0, 3.0]))
def test_svm_margin_delta(fn, seed, delta):
    rs = np.random.RandomState(seed)
    N, D, C = 6, 4, 5
    W, X, y = rs.randn(D, C), rs.randn(N, D), rs.randint(C, size=N)
    S = X @ W
    hinge = np.maximum(0, S - S[np.arange(N), y][:, None] + delta)
    expected = (hinge.sum() - N * delta) / N + 0.3 * np.sum(W * W)  # j = y_i terms give delta
    loss, dW = fn(W, X, y, 0.3, delta=delta)
    assert rel_error(loss, expected) < REL_ERROR["twin_float64"]
    num = eval_numerical_gradient(
        lambda w: fn(w, X, y, 0.3, delta=delta)[0], W.copy(), verbose=False, h=H
    )
    assume(np.all(np.abs(np.abs(S - S[np.arange(N), y][:, None]) - delta) > 1e-3))
    assert rel_error(num, dW) < TOL
    if delta > 0:
        # Only delta / ||W|| matters without regularization: L(W; delta) = delta * L(W/delta; 1).
        loss1, dW1 = fn(W / delta, X, y, 0.0)
        assert rel_error(fn(W, X, y, 0.0, delta=delta)[0], delta * loss1) < 1e-12
        assert rel_error(fn(W, X, y, 0.0, delta=delta)[1], dW1) < 1e-12
    assert fn(W, X, y, 0.3)[0] == fn(W, X, y, 0.3, delta=1.0)[0]


def test_svm_delta_bad_input_and_linear_svm_passes_it():
    W, X, y = np.ones((2, 3)), np.ones((4, 2)), np.zeros(4, dtype=int)
    for fn in (svm_loss_naive, svm_loss_vectorized):
        for bad in (-1.0, float("inf"), True, "1"):
            with pytest.raises(ValueError, match=r"delta must be a finite number >= 0, got"):
                fn(W, X, y, 0.0, delta=bad)
    with pytest.raises(ValueError, match=r"delta must be a finite number >= 0, got -2"):
        LinearSVM(delta=-2)
    svm = LinearSVM(delta=5.0)
    svm.W = np.zeros((2, 3))
    # At W = 0 every wrong class violates the margin by exactly delta: loss = (C - 1) * delta.
    assert svm.loss(X, y, 0.0)[0] == pytest.approx(10.0)
    assert LinearSVM().delta == 1.0


def test_linear_losses_known_values_at_zero_weights():
    # W = 0: every score is 0. SVM: each of the C-1 wrong classes has margin 1 -> loss C-1.
    # Softmax: uniform probabilities -> loss log(C). Both plus reg * sum(W*W) = 0.
    rs = np.random.RandomState(5)
    N, D, C = 7, 4, 5
    X, y, W = rs.randn(N, D), rs.randint(C, size=N), np.zeros((D, C))
    for fn in (svm_loss_naive, svm_loss_vectorized):
        assert rel_error(fn(W, X, y, 3.0)[0], C - 1) < REL_ERROR["twin_float64"]
    for fn in (softmax_loss_naive, softmax_loss_vectorized):
        assert rel_error(fn(W, X, y, 3.0)[0], np.log(C)) < REL_ERROR["twin_float64"]
    # Regularization term: reg * sum(W*W), gradient 2 * reg * W (the course's A1 convention).
    W = np.full((D, C), 0.5)
    X0 = np.zeros((N, D))
    loss, dW = softmax_loss_vectorized(W, X0, y, 2.0)
    assert rel_error(loss, np.log(C) + 2.0 * 0.25 * D * C) < REL_ERROR["twin_float64"]
    assert rel_error(dW, 2 * 2.0 * W) < REL_ERROR["twin_float64"]


@pytest.mark.parametrize("fn", [softmax_loss_naive, softmax_loss_vectorized])
def test_softmax_loss_stable_for_huge_logits(fn):
    W = np.zeros((3, 4))
    W[0, 0] = W[1, 2] = 1.0
    # Scores: row 0 [1e4, 0, 0, 0] (y=0), row 1 the same (y=1), row 2 [0, 0, 1e300, 0] (y=2).
    X = np.array([[1e4, 0, 0], [1e4, 0, 0], [0, 1e300, 0]])
    y = np.array([0, 1, 2])
    loss, dW = fn(W, X, y, 0.0)
    # Row 0: correct class wins by 1e4 -> loss 0; row 1: a wrong class wins by 1e4 -> 1e4;
    # row 2: correct class wins by 1e300 -> 0. Mean = 1e4 / 3.
    assert np.isfinite(loss) and np.all(np.isfinite(dW))
    assert rel_error(loss, 1e4 / 3) < REL_ERROR["twin_float64"]
    # dscores: row 1 has p = e_0, so its contribution is x_1 (e_0 - e_1) / 3.
    expected = np.zeros((3, 4))
    expected[0, 0], expected[0, 1] = 1e4 / 3, -1e4 / 3
    assert rel_error(dW, expected) < REL_ERROR["twin_float64"]


@pytest.mark.parametrize(
    "fn", [svm_loss_naive, svm_loss_vectorized, softmax_loss_naive, softmax_loss_vectorized]
)
def test_linear_losses_keep_float32(fn):
    rs = np.random.RandomState(6)
    W = rs.randn(5, 3).astype(np.float32)
    X = rs.randn(4, 5).astype(np.float32)
    loss, dW = fn(W, X, rs.randint(3, size=4), 0.1)
    assert dW.dtype == np.float32 and np.asarray(loss).dtype == np.float32


@pytest.mark.parametrize(
    "fn", [svm_loss_naive, svm_loss_vectorized, softmax_loss_naive, softmax_loss_vectorized]
)
def test_linear_losses_bad_input(fn):
    W, X = np.zeros((5, 3)), np.zeros((4, 5))
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\)"):
        fn(W, X, np.array([0, 1, 2, 3]), 0.0)
    with pytest.raises(ValueError, match=r"X must have shape \(N, 5\)"):
        fn(W, np.zeros((4, 6)), np.array([0, 1, 2, 0]), 0.0)
    with pytest.raises(ValueError, match="y must have shape"):
        fn(W, X, np.array([0, 1]), 0.0)
    with pytest.raises(ValueError, match="reg"):
        fn(W, X, np.array([0, 1, 2, 0]), -1.0)


def blobs(rs, n_per_class=20, C=3, D=5, sep=8.0):
    centers = rs.randn(C, D) * sep
    y = np.repeat(np.arange(C), n_per_class)
    X = centers[y] + rs.randn(len(y), D)
    return np.hstack([X, np.ones((len(y), 1))]), y  # bias trick


@pytest.mark.parametrize("cls", [LinearSVM, Softmax])
def test_linear_classifier_trains_to_separate_blobs(cls):
    rs = np.random.RandomState(7)
    X, y = blobs(rs)
    np.random.seed(231)
    clf = cls()
    history = clf.train(X, y, learning_rate=1e-2, reg=1e-4, num_iters=300, batch_size=30)
    assert len(history) == 300 and history[-1] < history[0]
    assert clf.W.shape == (6, 3)
    np.testing.assert_array_equal(clf.predict(X), y)


def test_linear_classifier_contract():
    clf = LinearClassifier()
    with pytest.raises(ValueError, match="train"):
        clf.predict(np.zeros((2, 3)))
    with pytest.raises(NotImplementedError):
        clf.train(np.zeros((4, 3)), np.array([0, 1, 0, 1]), num_iters=1)
    svm = LinearSVM()
    with pytest.raises(ValueError, match="batch_size"):
        svm.train(np.zeros((4, 3)), np.array([0, 1, 0, 1]), batch_size=0)
    X32 = np.random.RandomState(8).randn(10, 4).astype(np.float32)
    svm.train(X32, np.arange(10) % 2, num_iters=3)
    assert svm.W.dtype == np.float32


# ----------------------------------------------------------------------------------------------
# TwoLayerNet
# ----------------------------------------------------------------------------------------------


def test_two_layer_net_course_values():
    # The course's FullyConnectedNets.ipynb check (expected values printed in the notebook).
    N, D, H_, C = 3, 5, 50, 7
    model = TwoLayerNet(input_dim=D, hidden_dim=H_, num_classes=C, weight_scale=1e-3)
    assert model.params["W1"].shape == (D, H_) and model.params["b2"].shape == (C,)
    assert np.all(model.params["b1"] == 0) and np.all(model.params["b2"] == 0)
    model.params["W1"] = np.linspace(-0.7, 0.3, num=D * H_).reshape(D, H_)
    model.params["b1"] = np.linspace(-0.1, 0.9, num=H_)
    model.params["W2"] = np.linspace(-0.3, 0.4, num=H_ * C).reshape(H_, C)
    model.params["b2"] = np.linspace(-0.9, 0.1, num=C)
    X = np.linspace(-5.5, 4.5, num=N * D).reshape(D, N).T
    correct_scores = np.asarray(
        [
            [
                11.53165108,
                12.2917344,
                13.05181771,
                13.81190102,
                14.57198434,
                15.33206765,
                16.09215096,
            ],
            [
                12.05769098,
                12.74614105,
                13.43459113,
                14.1230412,
                14.81149128,
                15.49994135,
                16.18839143,
            ],
            [
                12.58373087,
                13.20054771,
                13.81736455,
                14.43418138,
                15.05099822,
                15.66781506,
                16.2846319,
            ],
        ]
    )
    # The notebook prints 8 decimals: compare at that precision.
    np.testing.assert_array_equal(np.round(model.loss(X), 8), correct_scores)
    y = np.asarray([0, 5, 1])
    assert round(float(model.loss(X, y)[0]), 10) == 3.4702243556
    model.reg = 1.0
    assert round(float(model.loss(X, y)[0]), 10) == 26.5948426952


@given(seeds, st.sampled_from([0.0, 0.7]))
def test_two_layer_net_gradients(seed, reg):
    rs = np.random.RandomState(seed)
    np.random.seed(seed)
    N, D, H_, C = 4, 6, 8, 5
    model = TwoLayerNet(input_dim=D, hidden_dim=H_, num_classes=C, weight_scale=0.5, reg=reg)
    randomize_biases(model, rs)
    assert_model_gradients(model, away_from_zero(rs, (N, D)), rs.randint(C, size=N))


# ----------------------------------------------------------------------------------------------
# FullyConnectedNet
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalization", [None, "batchnorm", "layernorm"])
@pytest.mark.parametrize("keep", [1, 0.6])
@given(seed=seeds, reg=st.sampled_from([0.0, 0.7]), hidden=st.sampled_from([[7], [7, 9]]))
def test_fc_net_gradients(normalization, keep, seed, reg, hidden):
    rs = np.random.RandomState(seed)
    np.random.seed(seed)
    N, D, C = 6, 5, 4
    model = FullyConnectedNet(
        hidden,
        input_dim=D,
        num_classes=C,
        reg=reg,
        weight_scale=0.5,
        dtype=np.float64,
        normalization=normalization,
        dropout_keep_ratio=keep,
        seed=seed,
    )
    randomize_biases(model, rs)
    L = model.num_layers
    exact_zero = [f"b{i}" for i in range(1, L)] if normalization == "batchnorm" else []
    assert_model_gradients(
        model, away_from_zero(rs, (N, D)), rs.randint(C, size=N), exact_zero=exact_zero
    )


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("normalization, keep", [(None, 1), ("batchnorm", 0.6), ("layernorm", 1)])
@settings(max_examples=3)
@given(seed=seeds)
def test_fc_net_smooth_activation_gradients(activation, normalization, keep, seed):
    rs = np.random.RandomState(seed)
    np.random.seed(seed)
    N, D, C = 6, 5, 4
    model = FullyConnectedNet(
        [7, 6],
        input_dim=D,
        num_classes=C,
        reg=0.3,
        weight_scale=0.5,
        dtype=np.float64,
        normalization=normalization,
        dropout_keep_ratio=keep,
        seed=3,
        activation=activation,
    )
    randomize_biases(model, rs)
    exact_zero = ["b1", "b2"] if normalization == "batchnorm" else []
    assert_model_gradients(model, rs.randn(N, D), rs.randint(C, size=N), exact_zero=exact_zero)


@pytest.mark.parametrize(
    "activation, fn",
    [
        ("sigmoid", lambda a: 1 / (1 + np.exp(-a))),
        ("tanh", np.tanh),
        ("relu", lambda a: a * (a > 0)),
    ],
)
def test_fc_net_activation_forward_values(activation, fn):
    rs = np.random.RandomState(21)
    model = FullyConnectedNet(
        [5, 3], input_dim=4, num_classes=2, dtype=np.float64, activation=activation
    )
    randomize_biases(model, rs)
    X = rs.randn(7, 4)
    p = model.params
    h1 = fn(X @ p["W1"] + p["b1"])
    h2 = fn(h1 @ p["W2"] + p["b2"])
    np.testing.assert_allclose(model.loss(X), h2 @ p["W3"] + p["b3"], rtol=1e-12)
    hidden = model.hidden_activations(X)
    np.testing.assert_allclose(hidden[0], h1, rtol=1e-12)
    np.testing.assert_allclose(hidden[1], h2, rtol=1e-12)


def test_fc_net_default_activation_is_relu_and_unchanged():
    np.random.seed(22)
    default = FullyConnectedNet([6], input_dim=4, num_classes=3, dtype=np.float64)
    np.random.seed(22)
    relu = FullyConnectedNet([6], input_dim=4, num_classes=3, dtype=np.float64, activation="relu")
    assert default.activation == "relu"
    X, y = np.random.RandomState(0).randn(5, 4), np.array([0, 1, 2, 0, 1])
    with relu_inputs() as seen:  # still the course's affine-relu sandwich
        loss, grads = default.loss(X, y)
    assert len(seen) == 1
    loss2, grads2 = relu.loss(X, y)
    assert loss == loss2 and all(np.array_equal(grads[k], grads2[k]) for k in grads)


def test_fc_net_bad_activation_and_hidden_activations_keep_running_stats():
    with pytest.raises(
        ValueError,
        match=r"activation must be one of \('relu', 'sigmoid', "
        r"'tanh'\), got 'gelu'",
    ):
        FullyConnectedNet([3], activation="gelu")
    model = FullyConnectedNet(
        [3],
        input_dim=2,
        num_classes=2,
        normalization="batchnorm",
        dropout_keep_ratio=0.5,
        dtype=np.float64,
    )
    X = np.random.RandomState(1).randn(8, 2)
    model.loss(X, np.zeros(8, dtype=int))
    before = {k: v.copy() for k, v in model.bn_params[0].items() if isinstance(v, np.ndarray)}
    out = model.hidden_activations(X, mode="train")
    assert out[0].shape == (8, 3)
    for k, v in before.items():
        np.testing.assert_array_equal(model.bn_params[0][k], v)
    assert model.bn_params[0]["mode"] == "train" and model.dropout_param["mode"] == "train"
    with pytest.raises(ValueError, match=r"mode must be 'train' or 'test', got 'eval'"):
        model.hidden_activations(X, mode="eval")


def test_fc_net_params_and_dtype():
    np.random.seed(0)
    model = FullyConnectedNet([4, 3], input_dim=6, num_classes=2, normalization="batchnorm")
    assert sorted(model.params) == sorted(
        ["W1", "b1", "W2", "b2", "W3", "b3", "gamma1", "beta1", "gamma2", "beta2"]
    )
    assert all(v.dtype == np.float32 for v in model.params.values())
    assert model.params["W1"].shape == (6, 4) and model.params["gamma2"].shape == (3,)
    X = np.random.randn(5, 2, 3)  # float64 input, (N, d1, d2) -> flattened to D = 6
    scores = model.loss(X)
    assert scores.shape == (5, 2) and scores.dtype == np.float32
    loss, grads = model.loss(X, np.array([0, 1, 1, 0, 1]))
    assert all(grads[k].dtype == np.float32 for k in grads)
    assert model.bn_params[0]["running_mean"].shape == (4,)
    # Dropout param: keep ratio and seed go into the dropout param dict.
    m = FullyConnectedNet([4], input_dim=6, num_classes=2, dropout_keep_ratio=0.25, seed=7)
    assert m.dropout_param == {"mode": "train", "p": 0.25, "seed": 7}
    assert FullyConnectedNet([4], input_dim=6, num_classes=2).dropout_param == {}


def test_fc_net_reg_excludes_biases_and_gamma_beta():
    np.random.seed(1)
    model = FullyConnectedNet(
        [5], input_dim=4, num_classes=3, reg=0.0, dtype=np.float64, normalization="layernorm"
    )
    X, y = np.random.randn(3, 4), np.array([0, 2, 1])
    for k in model.params:  # make the non-weight parameters large: they must not count
        if not k.startswith("W"):
            model.params[k] = model.params[k] + 10.0
    loss0, grads0 = model.loss(X, y)
    model.reg = 0.3
    loss1, grads1 = model.loss(X, y)
    l2 = 0.5 * 0.3 * sum(np.sum(model.params[k] ** 2) for k in ("W1", "W2"))
    assert rel_error(loss1 - loss0, l2) < REL_ERROR["twin_float64"]
    for k in model.params:
        expected = grads0[k] + (0.3 * model.params[k] if k.startswith("W") else 0)
        assert rel_error(grads1[k], expected) < REL_ERROR["twin_float64"], k


def test_fc_net_test_mode_is_deterministic_and_uses_running_stats():
    np.random.seed(2)
    model = FullyConnectedNet(
        [6, 6],
        input_dim=4,
        num_classes=3,
        dropout_keep_ratio=0.5,
        normalization="batchnorm",
        dtype=np.float64,
    )
    X = np.random.randn(8, 4)
    model.loss(X, np.zeros(8, dtype=int))  # one training pass updates running stats
    s1, s2 = model.loss(X), model.loss(X)
    np.testing.assert_array_equal(s1, s2)
    assert model.dropout_param["mode"] == "test" and model.bn_params[0]["mode"] == "test"
    # Test-mode scores of one example do not depend on the rest of the batch.
    assert rel_error(model.loss(X[:1]), s1[:1]) < REL_ERROR["twin_float64"]


def test_fc_net_bad_arguments():
    with pytest.raises(ValueError, match="normalization"):
        FullyConnectedNet([3], normalization="groupnorm")
    with pytest.raises(ValueError, match="dropout_keep_ratio"):
        FullyConnectedNet([3], dropout_keep_ratio=0)
    with pytest.raises(ValueError, match="hidden_dims"):
        FullyConnectedNet([3, 0])


# ----------------------------------------------------------------------------------------------
# ThreeLayerConvNet
# ----------------------------------------------------------------------------------------------


@given(seeds, st.sampled_from([0.0, 0.7]))
def test_three_layer_convnet_gradients(seed, reg):
    rs = np.random.RandomState(seed)
    np.random.seed(seed)
    N, input_dim, C = 2, (2, 6, 6), 4
    model = ThreeLayerConvNet(
        input_dim=input_dim,
        num_filters=3,
        filter_size=3,
        hidden_dim=5,
        num_classes=C,
        weight_scale=0.4,
        reg=reg,
        dtype=np.float64,
    )
    randomize_biases(model, rs)
    assert_model_gradients(model, away_from_zero(rs, (N, *input_dim)), rs.randint(C, size=N))


def test_three_layer_convnet_shapes_and_dtype():
    np.random.seed(3)
    model = ThreeLayerConvNet()
    expected = {
        "W1": (32, 3, 7, 7),
        "b1": (32,),
        "W2": (32 * 16 * 16, 100),
        "b2": (100,),
        "W3": (100, 10),
        "b3": (10,),
    }
    assert {k: v.shape for k, v in model.params.items()} == expected
    assert all(v.dtype == np.float32 for v in model.params.values())
    small = ThreeLayerConvNet(input_dim=(1, 9, 7), num_filters=2, filter_size=5, hidden_dim=3)
    assert small.params["W2"].shape == (2 * 4 * 3, 3)  # same padding, then 2x2 floor pooling
    scores = small.loss(np.random.randn(2, 1, 9, 7))
    assert scores.shape == (2, 10) and scores.dtype == np.float32
    # With W3 = 0 every score is 0: the loss is exactly log(C) (the course's sanity check).
    np.random.seed(4)
    m = ThreeLayerConvNet(input_dim=(3, 8, 8), dtype=np.float64)
    m.params["W3"] = np.zeros_like(m.params["W3"])
    loss, grads = m.loss(np.random.randn(5, 3, 8, 8), np.random.randint(10, size=5))
    assert rel_error(loss, np.log(10)) < REL_ERROR["twin_float64"]
    assert not grads["W1"].any()  # no gradient flows back through W3 = 0


# ----------------------------------------------------------------------------------------------
# Overfitting small data (the course's sanity check)
# ----------------------------------------------------------------------------------------------


def small_data(num=50, shape=(3, 8, 8), C=10, seed=0):
    rs = np.random.RandomState(seed)
    X = rs.randn(num, *shape)
    y = rs.randint(C, size=num)
    return {"X_train": X, "y_train": y, "X_val": X[:10], "y_val": y[:10]}


@pytest.mark.parametrize(
    "make_model",
    [
        lambda: TwoLayerNet(input_dim=192, hidden_dim=100, weight_scale=1e-2),
        lambda: FullyConnectedNet([100, 100], input_dim=192, weight_scale=5e-2),
        lambda: FullyConnectedNet(
            [50, 50, 50, 50], input_dim=192, weight_scale=5e-2, normalization="batchnorm"
        ),
        lambda: ThreeLayerConvNet(
            input_dim=(3, 8, 8), num_filters=16, filter_size=3, hidden_dim=100, weight_scale=1e-1
        ),
    ],
    ids=["two_layer", "fc3", "fc5_batchnorm", "convnet"],
)
def test_small_net_overfits_50_examples(make_model):
    # 50 examples with random labels: only memorization fits them, so 100% training accuracy
    # shows the whole forward/backward/update loop works (the course's overfitting check).
    np.random.seed(231)
    data = small_data()
    model = make_model()
    lr = 5e-3 if isinstance(model, ThreeLayerConvNet) else 1e-2
    solver = Solver(
        model,
        data,
        update_rule="adam",
        optim_config={"learning_rate": lr},
        num_epochs=20,
        batch_size=25,
        num_train_samples=None,
        verbose=False,
    )
    solver.train()
    assert solver.train_acc_history[-1] == 1.0
    assert solver.loss_history[-1] < solver.loss_history[0]
