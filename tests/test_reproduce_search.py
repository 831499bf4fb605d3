"""The reproduction run's random searches (LinearSVM, Softmax, TwoLayerNet) and the linear
Softmax classifier's initial-loss check, on small synthetic splits."""

# ruff: noqa: NPY002 -- the classifiers draw from NumPy's global generator (CS231n's convention).

import math

import numpy as np
import pytest
from scipy.special import log_softmax
from sklearn.metrics import log_loss

from numpy_impl import reproduce
from numpy_impl.classifiers import Softmax, TwoLayerNet
from numpy_impl.diagnostics import check_initial_loss
from numpy_impl.search import LogUniform
from numpy_impl.solver import Solver

CFG = dict(
    reproduce.QUICK,
    search_budget=4,
    search_rounds=2,
    search_iters=15,
    net_search_budget=3,
    net_search_rounds=2,
    twolayer_epochs=2,
)


def synthetic_splits(seed, n_train=60, n_val=30, n_test=20, num_classes=10):
    """(N, 3, 32, 32) images whose class shifts the mean of one block of pixels, so that a
    linear model learns something; mean-subtracted like the course's splits."""
    rs = np.random.RandomState(seed)
    out = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        y = rs.randint(0, num_classes, size=n)
        X = rs.randn(n, 3 * 32 * 32) * 20.0
        for c in range(num_classes):
            X[y == c, c * 300 : (c + 1) * 300] += 30.0
        out[f"X_{split}"] = X.reshape(n, 3, 32, 32).astype(np.float32)
        out[f"y_{split}"] = y
    mean = out["X_train"].mean(axis=0)
    for split in ("train", "val", "test"):
        out[f"X_{split}"] -= mean
    return out


def quiet(msg):
    pass


def test_linear_search_reports_its_best_run_and_that_run_reproduces():
    splits = synthetic_splits(0)
    space = {"learning_rate": LogUniform(1e-7, 5e-6), "reg": LogUniform(1, 1e3)}
    row = reproduce._search_linear(Softmax, "softmax", "softmax", space, splits, CFG, quiet, None)
    runs = row["search_runs"]
    assert len(runs) == 4 and [r["round"] for r in runs].count(1) == 2
    assert row["val_acc"] == max(r["score"] for r in runs) == runs[0]["score"]
    for r in runs:
        assert 1e-7 <= r["params"]["learning_rate"] <= 5e-6 and 1 <= r["params"]["reg"] <= 1e3
    # The reported best run, retrained from the same seed, gives the row's val and test accuracy.
    X_train, X_val, X_test = reproduce._linear_data(splits)
    np.random.seed(231)
    clf = Softmax()
    clf.train(X_train, splits["y_train"], num_iters=15, batch_size=200, **runs[0]["params"])
    assert np.mean(clf.predict(X_val) == splits["y_val"]) == row["val_acc"]
    assert np.mean(clf.predict(X_test) == splits["y_test"]) == row["test_acc"]
    assert row["experiment"] == "softmax, random search" and row["threshold"] == 0.35
    assert "4 runs x 15 iters in 2 coarse-to-fine rounds" in row["setting"]


def test_two_layer_search_trains_the_best_short_run_setting_for_the_full_epochs():
    splits = synthetic_splits(1)
    row = reproduce._search_twolayer(splits, CFG, quiet, None)
    runs = row["search_runs"]
    assert len(runs) == 3 and runs[0]["score"] == max(r["score"] for r in runs)
    for r in runs:
        assert 1e-4 <= r["params"]["learning_rate"] <= 5e-3 and 1e-3 <= r["params"]["reg"] <= 1
    best = runs[0]["params"]
    # The best setting's short run, repeated, scores what the search recorded ...
    np.random.seed(231)
    solver = Solver(
        TwoLayerNet(hidden_dim=100, reg=best["reg"]),
        splits,
        update_rule="sgd",
        optim_config={"learning_rate": best["learning_rate"]},
        lr_decay=0.95,
        num_epochs=CFG["net_search_epochs"],
        batch_size=200,
        verbose=False,
    )
    solver.train()
    assert solver.best_val_acc == runs[0]["score"]
    # ... and the row is that setting trained for twolayer_epochs.
    np.random.seed(231)
    model = TwoLayerNet(hidden_dim=100, reg=best["reg"])
    solver = Solver(
        model,
        splits,
        update_rule="sgd",
        optim_config={"learning_rate": best["learning_rate"]},
        lr_decay=0.95,
        num_epochs=2,
        batch_size=200,
        verbose=False,
    )
    solver.train()
    assert solver.check_accuracy(splits["X_val"], splits["y_val"]) == row["val_acc"]
    assert solver.check_accuracy(splits["X_test"], splits["y_test"]) == row["test_acc"]
    assert row["experiment"] == "two-layer net, random search" and row["threshold"] == 0.48
    assert f"trained {CFG['twolayer_epochs']} epochs" in row["setting"]


@pytest.mark.parametrize("reg", [0.0, 10.0])
def test_linear_softmax_model_loss_equals_scipy_and_sklearn(reg):
    rs = np.random.RandomState(reg == 0)
    N, D, C = int(rs.randint(1, 40)), int(rs.randint(2, 30)), 10
    X, y = rs.randn(N, D), rs.randint(0, C, size=N)
    np.random.seed(3)
    model = reproduce._LinearSoftmaxModel(D, reg)
    W = model.W
    assert W.shape == (D, C) and 0 < np.abs(W).max() < 1e-3  # softmax.ipynb's 1e-4 * randn
    scores = model.loss(X)
    np.testing.assert_allclose(scores, X @ W, rtol=1e-12)
    loss, dW = model.loss(X, y)
    expected = -log_softmax(X @ W, axis=1)[np.arange(N), y].mean() + reg * np.sum(W * W)
    np.testing.assert_allclose(loss, expected, rtol=1e-10)
    probs = np.exp(log_softmax(X @ W, axis=1))
    sk = log_loss(y, probs, labels=np.arange(C))
    np.testing.assert_allclose(loss - reg * np.sum(W * W), sk, rtol=1e-10)
    assert dW.shape == W.shape


def test_linear_softmax_initial_loss_is_log_c_and_a_large_init_fails_the_check():
    splits = synthetic_splits(2, n_train=200)
    X = reproduce._linear_data(splits)[0]
    y = splits["y_train"]
    np.random.seed(0)
    r = check_initial_loss(lambda reg: reproduce._LinearSoftmaxModel(X.shape[1], reg), X, y, 1e3)
    assert r["ok"], r["message"]
    assert abs(r["loss"] - math.log(10)) < 0.05 * math.log(10)
    assert r["loss_with_reg"] > r["loss"]

    class LargeInit(reproduce._LinearSoftmaxModel):
        def __init__(self, D, reg):
            super().__init__(D, reg)
            self.W *= 1e3

    r = check_initial_loss(lambda reg: LargeInit(X.shape[1], reg), X, y, 1e3)
    assert not r["ok"] and "is not log(C)" in r["message"]


def test_search_budget_smaller_than_its_rounds_is_refused():
    splits = synthetic_splits(3)
    with pytest.raises(ValueError, match=r"rounds must be <= budget .*rounds=2, budget=1"):
        reproduce._search_twolayer(splits, dict(CFG, net_search_budget=1), quiet, None)
