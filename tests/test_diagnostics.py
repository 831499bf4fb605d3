"""numpy_impl.diagnostics: the notes' sanity checks and per-layer statistics."""

# ruff: noqa: NPY002 -- the models draw from NumPy's global generator (the course's convention).

import math

import numpy as np
import pytest

from numpy_impl.classifiers import FullyConnectedNet, TwoLayerNet
from numpy_impl.diagnostics import (
    activation_statistics,
    check_initial_loss,
    gradient_norms,
    overfit_small_subset,
    summarize_update_ratios,
)
from numpy_impl.gradient_check import eval_numerical_gradient


def batch(N=40, D=20, C=10, seed=0):
    rs = np.random.RandomState(seed)
    return rs.randn(N, D), rs.randint(C, size=N)


def test_initial_loss_is_log_c_and_rises_with_reg():
    X, y = batch()
    np.random.seed(0)
    r = check_initial_loss(
        lambda reg: TwoLayerNet(20, 30, 10, weight_scale=1e-3, reg=reg), X, y, reg=1e3
    )
    assert r["ok"], r["message"]
    assert r["expected"] == math.log(10)
    assert abs(r["loss"] - math.log(10)) < 1e-3
    assert r["loss_with_reg"] > r["loss"]


def test_initial_loss_check_fails_for_large_weights_and_missing_reg():
    X, y = batch()
    big = check_initial_loss(lambda reg: TwoLayerNet(20, 30, 10, weight_scale=1.0, reg=reg), X, y)
    assert not big["ok"] and "is not log(C) = 2.3026 for C=10" in big["message"]
    no_reg = check_initial_loss(lambda reg: TwoLayerNet(20, 30, 10, weight_scale=1e-3), X, y)
    assert not no_reg["ok"] and "regularization term is missing" in no_reg["message"]


def small_data(seed=1):
    X, y = batch(N=70, D=15, C=5, seed=seed)
    return {"X_train": X[:50], "y_train": y[:50], "X_val": X[50:], "y_val": y[50:]}


def test_overfit_small_subset_reaches_100_percent_and_detects_a_stalled_model():
    np.random.seed(2)
    r = overfit_small_subset(
        TwoLayerNet(15, 100, 5, weight_scale=1e-1),
        small_data(),
        num_train=20,
        update_rule="adam",
        optim_config={"learning_rate": 1e-2},
        num_epochs=30,
        batch_size=10,
    )
    assert r["ok"] and r["train_acc"] == 1.0
    assert len(r["solver"].X_train) == 20
    np.random.seed(2)
    stalled = overfit_small_subset(
        TwoLayerNet(15, 100, 5, weight_scale=1e-1),
        small_data(),
        num_train=20,
        optim_config={"learning_rate": 0.0},
        num_epochs=2,
        batch_size=10,
    )
    assert not stalled["ok"] and stalled["train_acc"] < 1.0


def test_activation_statistics_equal_a_forward_by_hand_and_find_dead_units():
    np.random.seed(3)
    model = FullyConnectedNet(
        [6, 4], input_dim=5, num_classes=3, dtype=np.float64, weight_scale=0.5
    )
    model.params["W1"][:, 2] = 0.0
    model.params["b1"][2] = -1.0  # unit 3 of layer 1 never fires: dead
    X = np.random.RandomState(4).randn(30, 5)
    h1 = np.maximum(X @ model.params["W1"] + model.params["b1"], 0)
    h2 = np.maximum(h1 @ model.params["W2"] + model.params["b2"], 0)
    stats = activation_statistics(model, X)
    assert [s["layer"] for s in stats] == [1, 2]
    for s, h in zip(stats, (h1, h2), strict=True):
        assert s["mean"] == pytest.approx(h.mean(), rel=1e-12)
        assert s["std"] == pytest.approx(h.std(), rel=1e-12)
        assert s["saturated_fraction"] == pytest.approx(np.mean(h == 0))
        assert s["dead_fraction"] == pytest.approx(np.mean(np.all(h == 0, axis=0)))
    assert stats[0]["dead_fraction"] >= 1 / 6


def test_activation_statistics_show_the_notes_tanh_collapse_and_saturation():
    # The notes' experiment: 10 tanh layers of 500 units. With weight_scale 0.01 the activations
    # shrink towards 0 layer after layer; with weight_scale 1.0 nearly all units saturate.
    X = np.random.RandomState(5).randn(200, 500)
    np.random.seed(6)
    tiny = FullyConnectedNet([500] * 10, input_dim=500, activation="tanh", weight_scale=0.01)
    stds = [s["std"] for s in activation_statistics(tiny, X)]
    assert all(b < a for a, b in zip(stds, stds[1:], strict=False))
    assert stds[-1] < 1e-3 * stds[0]
    np.random.seed(6)
    big = FullyConnectedNet([500] * 10, input_dim=500, activation="tanh", weight_scale=1.0)
    assert min(s["saturated_fraction"] for s in activation_statistics(big, X)) > 0.8


def test_gradient_norms_equal_numerical_gradients():
    np.random.seed(7)
    model = TwoLayerNet(4, 5, 3, weight_scale=0.3, reg=0.1)
    X, y = batch(N=6, D=4, C=3, seed=8)
    norms = gradient_norms(model, X, y)
    assert set(norms) == {"W1", "b1", "W2", "b2"}
    for name in norms:
        num = eval_numerical_gradient(
            lambda _: model.loss(X, y)[0], model.params[name], verbose=False
        )
        assert norms[name] == pytest.approx(np.linalg.norm(num), rel=1e-6)


def test_summarize_update_ratios():
    history = {
        "W1": [1e-3, 2e-3, 5e-4],
        "W2": [1e-6] * 3,
        "W3": [0.5, 0.2, 1.0],
        "b1": [float("nan"), 2e-3, 4e-3],
        "b2": [float("nan")],
    }
    s = summarize_update_ratios(history)
    assert s["W1"] == {"median": 1e-3, "verdict": "ok"}
    assert s["W2"]["verdict"] == "too low"
    assert s["W3"]["verdict"] == "too high"
    assert s["b1"]["median"] == pytest.approx(3e-3)
    assert s["b2"]["verdict"] == "undefined"
    assert summarize_update_ratios({"W": [1.0, 1e-3]}, last=1)["W"]["verdict"] == "ok"


def test_bad_input():
    X, y = batch()
    make = lambda reg: TwoLayerNet(20, 5, 10, reg=reg)
    with pytest.raises(ValueError, match=r"reg must be a finite number > 0, got 0"):
        check_initial_loss(make, X, y, reg=0)
    with pytest.raises(ValueError, match=r"y must have shape \(40,\) .*got \(39,\)"):
        check_initial_loss(make, X, y[:39])
    with pytest.raises(TypeError, match=r"y must hold integer labels, got dtype float64"):
        gradient_norms(make(0.0), X, y.astype(float))
    with pytest.raises(ValueError, match=r"num_train must be an integer in \[1, 50\], got 51"):
        overfit_small_subset(make(0.0), small_data(), num_train=51)
    with pytest.raises(ValueError, match=r"data must be Solver's dict"):
        overfit_small_subset(make(0.0), {"X": X})
    with pytest.raises(TypeError, match=r"model must be a FullyConnectedNet .*got TwoLayerNet"):
        activation_statistics(make(0.0), X)
    with pytest.raises(ValueError, match=r"X must have shape \(N, d_1, ..., d_k\) .*got \(20,\)"):
        activation_statistics(FullyConnectedNet([3], input_dim=20), X[0])
    with pytest.raises(ValueError, match=r"last must be a positive integer or None, got 0"):
        summarize_update_ratios({"W": [1.0]}, last=0)
    with pytest.raises(TypeError, match=r"update_ratio_history must be a dict"):
        summarize_update_ratios([1.0])
