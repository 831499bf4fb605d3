"""Reproduce each CS231n assignment's headline CIFAR-10 experiment with numpy_impl.

    python -m numpy_impl.reproduce --data-dir DIR [--quick] [--only knn,linear,...]
                                   [--cnn-train N] [--json FILE] [--plots DIR]

DIR holds CIFAR-10 in either layout ``numpy_impl.data.load_CIFAR10`` reads (the official python
batches, or an ImageFolder tree ``train/<class>/*``, ``test/<class>/*``, which is shuffled once
with ``np.random.RandomState(0)`` before the course's first-N splits). Experiments (course
notebook in brackets):

- knn     [A1 knn.ipynb]: k-NN on the first 5,000 training / 500 test images; k = 1, then the best
          k by 5-fold cross-validation, for L2 (the course's) and L1 distance (the notes' other
          one); plus the timing of the three distance implementations.
- linear  [A1 svm.ipynb, softmax.ipynb]: LinearSVM and Softmax on raw pixels (mean subtracted,
          bias column), a small learning-rate x regularization sweep selected on validation.
- twolayer[A1 two_layer_net.ipynb]: TwoLayerNet trained with the Solver.
- fcnet   [A2 FullyConnectedNets / BatchNormalization / Dropout]: FullyConnectedNet with
          batchnorm and dropout, Adam.
- cnn     [A2 ConvolutionalNetworks.ipynb]: ThreeLayerConvNet for one epoch, Adam, batch 50
          (``--cnn-train N`` limits that epoch to the first N training images, for slow machines).
- sanity  [the notes' babysitting checks]: the initial loss of a TwoLayerNet and of the linear
          Softmax classifier (softmax.ipynb's W = 1e-4 randn) is log(10) and rises with
          regularization; a FullyConnectedNet overfits 50 training images to 100%; the notes'
          initialization experiment (10 tanh layers, three weight scales) as per-layer
          activation statistics.
- search  [the notes' hyperparameter search]: random search (log-uniform learning rate and
          regularization, two coarse-to-fine rounds) for the LinearSVM and the Softmax
          classifier (12 runs of 500 iterations each) and the TwoLayerNet (10 runs of one epoch,
          then the best setting trained for 10 epochs); each search's best model is evaluated on
          the test split.

- pca     [the notes' preprocessing]: PCA of the first 2,000 training images; the share of the
          variance the top 144 of 3,072 components keep (with ``--plots``: the notes' picture of
          images, top components, reconstructions and whitened images).

- features[A1 features.ipynb]: HOG + HSV colour histogram (10 bins) features, standardized with
          the training split's statistics; LinearSVM (the notebook's 3 x 3 sweep, plus a bias
          column) and TwoLayerNet (hidden 500, SGD lr 0.3, decay 0.95, 10 epochs) on them.

``--plots DIR`` also writes the course's pictures there (PNG): k-NN accuracy against k per
metric with fold error bars, the linear classifiers' class templates, Solver histories,
update/weight ratios and first-layer weights of the networks, each search's scatter of
validation accuracy over (learning rate, regularization).

Splits are the course's: 49,000 train / 1,000 val / 1,000 test (k-NN: 5,000 / 500). It prints a
progress display on stderr and, at the end, a Markdown table of validation / test accuracy and
wall time next to the accuracy the course says to expect. ``--quick`` is a smoke run on small
subsets (seconds; its accuracies mean nothing).
"""

# ruff: noqa: NPY002 -- CS231n draws from NumPy's global generator on purpose: notebooks seed it
# with np.random.seed(231) and graders compare the resulting numbers.

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from . import vis_utils
from .classifiers import (
    FullyConnectedNet,
    KNearestNeighbor,
    LinearSVM,
    Softmax,
    ThreeLayerConvNet,
    TwoLayerNet,
    best_knn_setting,
    cross_validate_knn,
    softmax_loss_vectorized,
)
from .data import cs231n_splits, load_CIFAR10
from .diagnostics import (
    activation_statistics,
    check_initial_loss,
    overfit_small_subset,
    summarize_update_ratios,
)
from .features import color_histogram_hsv, extract_features, hog_feature
from .preprocessing import PCA, Standardize
from .search import LogUniform, random_search
from .solver import Solver

EXPERIMENTS = ("knn", "linear", "twolayer", "fcnet", "cnn", "sanity", "search", "pca", "features")

# What the course's notebooks tell students to expect (the thresholds marked in the table).
COURSE_EXPECTS = {
    "knn_k1": (0.27, "~27% test (knn.ipynb, k=1)"),
    "knn_best": (0.28, "> 28% test (knn.ipynb, best k)"),
    "knn_l1": (None, "none given (the notes: L1 38.6% vs L2 35.4% for k=1 on all 50,000)"),
    "search": (0.37, "~37%+ (svm.ipynb: ~39% val)"),
    "softmax_search": (0.35, "> 35% val (softmax.ipynb)"),
    "twolayer_search": (0.48, "> 48% val (two_layer_net.ipynb, tuned)"),
    "features_svm": (0.42, "near 44% val (features.ipynb)"),
    "features_net": (0.55, "> 55% test (features.ipynb)"),
    "svm": (0.37, "~37%+ (svm.ipynb: ~39% val)"),
    "softmax": (0.35, "~35%+ val (softmax.ipynb)"),
    "twolayer": (0.48, ">= 48% val (two_layer_net.ipynb)"),
    "fcnet": (0.50, ">= 50% val (FullyConnectedNets.ipynb)"),
    "cnn": (0.40, "> 40% train acc after 1 epoch (ConvolutionalNetworks.ipynb)"),
}

# Full-size settings; QUICK shrinks every budget for a smoke run.
FULL = {
    "knn_train": 5000,
    "knn_test": 500,
    "knn_folds": 5,
    "knn_k": [1, 3, 5, 8, 10, 12, 15, 20, 50, 100],
    "knn_timing_test": 100,
    "num_training": 49000,
    "num_validation": 1000,
    "num_test": 1000,
    "linear_lrs": [5e-7, 1e-6],
    "linear_regs": [1e3, 5e3],
    "linear_iters": 1500,
    "twolayer_epochs": 10,
    "fcnet_epochs": 5,
    "cnn_train": 49000,
    "cnn_epochs": 1,
    "overfit_train": 50,
    "overfit_epochs": 20,
    "search_budget": 12,
    "search_rounds": 2,
    "search_iters": 500,
    "net_search_budget": 10,
    "net_search_rounds": 2,
    "net_search_epochs": 1,
    "pca_images": 2000,
    "pca_components": 144,
    "tanh_examples": 1000,
    "tanh_width": 500,
    "feature_lrs": [1e-9, 1e-8, 1e-7],
    "feature_regs": [5e4, 5e5, 5e6],
    "feature_iters": 1500,
    "feature_net_epochs": 10,
}
QUICK = {
    "knn_train": 500,
    "knn_test": 50,
    "knn_folds": 5,
    "knn_k": [1, 3, 5],
    "knn_timing_test": 10,
    "num_training": 2000,
    "num_validation": 200,
    "num_test": 200,
    "linear_lrs": [5e-7],
    "linear_regs": [5e3],
    "linear_iters": 50,
    "twolayer_epochs": 1,
    "fcnet_epochs": 1,
    "cnn_train": 200,
    "cnn_epochs": 1,
    "overfit_train": 20,
    "overfit_epochs": 5,
    "search_budget": 2,
    "search_rounds": 2,
    "search_iters": 20,
    "net_search_budget": 2,
    "net_search_rounds": 2,
    "net_search_epochs": 1,
    "pca_images": 100,
    "pca_components": 16,
    "tanh_examples": 50,
    "tanh_width": 50,
    "feature_lrs": [1e-7],
    "feature_regs": [5e4],
    "feature_iters": 20,
    "feature_net_epochs": 1,
}


class Progress:
    """A one-line progress display on stderr: label, count/total, elapsed and ETA.

    On a terminal the line is redrawn in place (at most 10 times a second); otherwise (a log
    file) a line is printed at most every 15 s, so logs stay readable.
    """

    def __init__(self, label, total, stream=None):
        self.label, self.total, self.count = label, max(int(total), 1), 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = self.last = time.perf_counter()
        self.info = ""

    def update(self, n=1, info=""):
        self.count += n
        if info:
            self.info = info
        now = time.perf_counter()
        if now - self.last >= (0.1 if self.tty else 15.0) or self.count >= self.total:
            self.last = now
            self._draw(now)

    def _draw(self, now):
        elapsed = now - self.start
        eta = elapsed / self.count * (self.total - self.count) if self.count else 0.0
        line = (
            f"[{self.label}] {self.count}/{self.total} "
            f"{100.0 * self.count / self.total:5.1f}%  {elapsed:6.1f}s elapsed, "
            f"eta {eta:6.1f}s  {self.info}"
        )
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class _ProgressSolver(Solver):
    """The course's Solver with a progress display ticking once per iteration."""

    def train_with_progress(self, label):
        iters = self.num_epochs * max(self.X_train.shape[0] // self.batch_size, 1)
        self._progress = Progress(label, iters)
        try:
            self.train()
        finally:
            self._progress.close()

    def _step(self):
        super()._step()
        self._progress.update(info=f"loss {float(self.loss_history[-1]):.3f}")


def _accuracy(y_pred, y):
    return float(np.mean(y_pred == y))


def _row(name, setting, val, test, seconds, key, train=None, measured=None):
    """One table row; 'meets' compares ``measured`` (default: test accuracy) with the course's
    threshold (left None by quick runs, which judge nothing)."""
    threshold, expects = COURSE_EXPECTS[key]
    measured = test if measured is None else measured
    return {
        "experiment": name,
        "setting": setting,
        "train_acc": train,
        "val_acc": val,
        "test_acc": test,
        "seconds": seconds,
        "course_expects": expects,
        "meets": None if threshold is None else bool(measured >= threshold),
        "threshold": threshold,
    }


def run_knn(Xtr, Ytr, Xte, Yte, cfg, log, plots=None):
    """A1 Q1: k-NN, k=1 and the best k by cross-validation for L2 and L1; timing of the three
    distances."""
    n_tr, n_te = min(cfg["knn_train"], len(Xtr)), min(cfg["knn_test"], len(Xte))
    # Raw pixels in float64, as in the course (pixel values are integers, so even the no-loop
    # expansion is exact here).
    X_train = Xtr[:n_tr].reshape(n_tr, -1).astype(np.float64)
    X_test = Xte[:n_te].reshape(n_te, -1).astype(np.float64)
    y_train, y_test = Ytr[:n_tr], Yte[:n_te]
    rows = []

    knn = KNearestNeighbor()
    knn.train(X_train, y_train)
    # Timing: the same test subset through each implementation.
    n_time = min(cfg["knn_timing_test"], n_te)
    timings = {}
    ref = None
    variants = (
        ("two loops", knn.compute_distances_two_loops),
        ("one loop", knn.compute_distances_one_loop),
        ("no loops", knn.compute_distances_no_loops),
    )
    for name, distances in variants:
        t0 = time.perf_counter()
        d = distances(X_test[:n_time])
        timings[name] = time.perf_counter() - t0
        if ref is None:
            ref = d
        timings[name + " maxdiff"] = float(np.max(np.abs(d - ref)))
        log(f"[knn] {name}: {timings[name]:.2f} s for {n_time} x {n_tr} distances")

    t0 = time.perf_counter()
    dists = knn.compute_distances_no_loops(X_test)
    acc1 = _accuracy(knn.predict_labels(dists, k=1), y_test)
    rows.append(
        _row(
            "k-NN, k=1",
            f"{n_tr:,} train / {n_te} test",
            None,
            acc1,
            time.perf_counter() - t0,
            "knn_k1",
        )
    )

    # L1 in float32: the pixels are integers <= 255, so every |difference| and every sum of
    # 3072 of them (<= 783,360 < 2**24) is exact in float32, and it runs about twice as fast.
    data = {"l2": (X_train, X_test), "l1": (X_train.astype(np.float32), X_test.astype(np.float32))}
    cv = {}
    for metric in ("l2", "l1"):
        t0 = time.perf_counter()
        log(
            f"[knn] {metric.upper()}: {cfg['knn_folds']}-fold cross-validation over "
            f"k = {cfg['knn_k']} ..."
        )
        cv[metric] = cross_validate_knn(
            data[metric][0], y_train, cfg["knn_k"], num_folds=cfg["knn_folds"], metric=metric
        )
        _, best_k, best_cv = best_knn_setting(cv[metric])
        log(
            f"[knn] {metric.upper()} {cfg['knn_folds']}-fold CV mean accuracy: "
            + ", ".join(f"k={k}: {100 * np.mean(v):.1f}%" for k, v in cv[metric].items())
        )
        if metric == "l2":
            acc_best = _accuracy(knn.predict_labels(dists, k=best_k), y_test)
            rows.append(
                _row(
                    f"k-NN, best k={best_k} (5-fold CV)",
                    f"{n_tr:,} train / {n_te} test",
                    best_cv,
                    acc_best,
                    time.perf_counter() - t0,
                    "knn_best",
                )
            )
        else:
            knn_l1 = KNearestNeighbor(metric="l1")
            knn_l1.train(data["l1"][0], y_train)
            acc_l1 = _accuracy(knn_l1.predict(data["l1"][1], k=best_k), y_test)
            rows.append(
                _row(
                    f"k-NN, L1 distance, best k={best_k} (5-fold CV)",
                    f"{n_tr:,} train / {n_te} test",
                    best_cv,
                    acc_l1,
                    time.perf_counter() - t0,
                    "knn_l1",
                )
            )
    metric, k, mean = best_knn_setting({"l2": cv["l2"], "l1": cv["l1"]})
    log(f"[knn] best over k and metric: {metric.upper()}, k={k} ({100 * mean:.1f}% CV)")
    if plots:
        _plot(log, vis_utils.plot_knn_cross_validation, cv, os.path.join(plots, "knn_cv.png"))
    return rows, timings, n_time, n_tr


def _plot(log, fn, *args, **kwargs):
    """Draw one picture; a plotting failure is logged, not fatal (the numbers matter more)."""
    try:
        path = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 -- any matplotlib failure: the run goes on
        log(f"[plots] {fn.__name__} failed: {type(e).__name__}: {e}")
        return
    log(f"[plots] wrote {path}")


def _linear_data(splits):
    def rows(X):
        X = X.reshape(X.shape[0], -1)
        return np.hstack([X, np.ones((X.shape[0], 1), dtype=X.dtype)])  # bias trick

    return rows(splits["X_train"]), rows(splits["X_val"]), rows(splits["X_test"])


def run_linear(splits, cfg, log, plots=None):
    """A1 Q2/Q3: LinearSVM and Softmax, sweep selected on validation accuracy."""
    X_train, X_val, X_test = _linear_data(splits)
    y_train, y_val, y_test = splits["y_train"], splits["y_val"], splits["y_test"]
    rows = []
    for cls, key, name in ((LinearSVM, "svm", "linear SVM"), (Softmax, "softmax", "softmax")):
        t0 = time.perf_counter()
        combos = [(lr, reg) for lr in cfg["linear_lrs"] for reg in cfg["linear_regs"]]
        progress = Progress(f"{name} sweep", len(combos))
        best = None
        for lr, reg in combos:
            np.random.seed(231)
            clf = cls()
            clf.train(
                X_train,
                y_train,
                learning_rate=lr,
                reg=reg,
                num_iters=cfg["linear_iters"],
                batch_size=200,
            )
            tr = _accuracy(clf.predict(X_train), y_train)
            va = _accuracy(clf.predict(X_val), y_val)
            log(f"[{key}] lr {lr:.0e} reg {reg:.1e}: train {100 * tr:.1f}%, val {100 * va:.1f}%")
            if best is None or va > best[0]:
                best = (va, tr, lr, reg, clf)
            progress.update(info=f"best val {100 * best[0]:.1f}%")
        progress.close()
        va, tr, lr, reg, clf = best
        te = _accuracy(clf.predict(X_test), y_test)
        setting = (
            f"{len(combos)}-point sweep, best lr={lr:.0e} reg={reg:.1e}, "
            f"{cfg['linear_iters']} iters"
        )
        rows.append(
            _row(name, setting, va, te, time.perf_counter() - t0, key, train=tr, measured=va)
        )
        if plots:
            _plot(
                log,
                vis_utils.plot_class_templates,
                clf.W,
                os.path.join(plots, f"{key}_templates.png"),
                image_shape=splits["X_train"].shape[1:],
            )
    return rows


def _train_net(label, model, splits, solver_kwargs, log, plots=None):
    t0 = time.perf_counter()
    solver = _ProgressSolver(model, splits, verbose=False, **solver_kwargs)
    solver.train_with_progress(label)
    val = float(solver.check_accuracy(splits["X_val"], splits["y_val"]))
    test = float(solver.check_accuracy(splits["X_test"], splits["y_test"]))
    train = float(solver.train_acc_history[-1])
    seconds = time.perf_counter() - t0
    log(
        f"[{label}] val acc per epoch: "
        + ", ".join(f"{100 * a:.1f}%" for a in solver.val_acc_history)
    )
    weights = {k: v for k, v in solver.update_ratio_history.items() if k.startswith("W")}
    log(
        f"[{label}] update/weight ratio (median, last epoch; ~1e-3 is healthy): "
        + ", ".join(
            f"{k} {v['median']:.1e} ({v['verdict']})"
            for k, v in summarize_update_ratios(weights, last=_iters_per_epoch(solver)).items()
        )
    )
    if plots:
        stem = os.path.join(plots, _slug(label))
        _plot(log, vis_utils.plot_solver_history, solver, stem + "_history.png")
        _plot(log, vis_utils.plot_update_ratios, weights, stem + "_update_ratio.png")
        _plot(
            log,
            vis_utils.plot_first_layer_weights,
            model.params["W1"],
            stem + "_W1.png",
            image_shape=splits["X_train"].shape[1:],
            title=label,
        )
    return train, val, test, seconds


def _slug(label):
    """'FC net BN+dropout' -> 'fc_net_bn_dropout' (a file name stem)."""
    return "_".join("".join(c if c.isalnum() else " " for c in label.lower()).split())


def _iters_per_epoch(solver):
    return max(solver.X_train.shape[0] // solver.batch_size, 1)


def run_twolayer(splits, cfg, log, plots=None):
    """A1 Q4: TwoLayerNet with SGD and learning-rate decay."""
    np.random.seed(231)
    hidden, reg, lr = 100, 0.1, 1e-3
    model = TwoLayerNet(hidden_dim=hidden, reg=reg)
    kwargs = {
        "update_rule": "sgd",
        "optim_config": {"learning_rate": lr},
        "lr_decay": 0.95,
        "num_epochs": cfg["twolayer_epochs"],
        "batch_size": 200,
    }
    train, val, test, sec = _train_net("two-layer net", model, splits, kwargs, log, plots)
    setting = (
        f"hidden {hidden}, reg {reg}, SGD lr {lr:.0e} decay 0.95, {cfg['twolayer_epochs']} epochs"
    )
    return [_row("two-layer net", setting, val, test, sec, "twolayer", train=train, measured=val)]


def run_fcnet(splits, cfg, log, plots=None):
    """A2 Q1-Q3: FullyConnectedNet with batchnorm and dropout, Adam."""
    np.random.seed(231)
    hidden, keep, reg, lr = [256, 256], 0.75, 1e-3, 1e-3
    model = FullyConnectedNet(
        hidden, normalization="batchnorm", dropout_keep_ratio=keep, reg=reg, weight_scale=5e-2
    )
    kwargs = {
        "update_rule": "adam",
        "optim_config": {"learning_rate": lr},
        "lr_decay": 0.9,
        "num_epochs": cfg["fcnet_epochs"],
        "batch_size": 200,
    }
    train, val, test, sec = _train_net("FC net BN+dropout", model, splits, kwargs, log, plots)
    setting = (
        f"hidden {hidden}, batchnorm, keep {keep}, reg {reg}, Adam lr {lr:.0e} "
        f"decay 0.9, {cfg['fcnet_epochs']} epochs"
    )
    return [
        _row(
            "FC net + batchnorm + dropout",
            setting,
            val,
            test,
            sec,
            "fcnet",
            train=train,
            measured=val,
        )
    ]


def run_cnn(splits, cfg, log, plots=None):
    """A2 Q4: ThreeLayerConvNet, one epoch (the notebook's settings)."""
    np.random.seed(231)
    n = min(cfg["cnn_train"], len(splits["X_train"]))
    data = dict(splits, X_train=splits["X_train"][:n], y_train=splits["y_train"][:n])
    model = ThreeLayerConvNet(weight_scale=0.001, hidden_dim=500, reg=0.001)
    kwargs = {
        "update_rule": "adam",
        "optim_config": {"learning_rate": 1e-3},
        "num_epochs": cfg["cnn_epochs"],
        "batch_size": 50,
    }
    train, val, test, sec = _train_net("ThreeLayerConvNet", model, data, kwargs, log, plots)
    setting = (
        f"32 7x7 filters, hidden 500, reg 1e-3, Adam 1e-3, batch 50, "
        f"{cfg['cnn_epochs']} epoch on {n:,} images"
    )
    return [_row("ThreeLayerConvNet", setting, val, test, sec, "cnn", train=train, measured=train)]


def _sanity_row(check, setting, measured, expected, ok, seconds):
    return {
        "kind": "sanity",
        "experiment": check,
        "setting": setting,
        "measured": measured,
        "course_expects": expected,
        "meets": bool(ok),
        "seconds": seconds,
        "train_acc": None,
        "val_acc": None,
        "test_acc": None,
        "threshold": None,
    }


class _LinearSoftmaxModel:
    """The linear Softmax classifier as ``check_initial_loss`` sees a model (``loss(X)`` gives
    scores, ``loss(X, y)`` gives (loss, dW)), with softmax.ipynb's initial W = 1e-4 * randn.

    D: input dimension (bias column included); reg: regularization strength; C: classes.
    """

    def __init__(self, D, reg, C=10):
        self.W = 1e-4 * np.random.randn(D, C)
        self.reg = reg

    def loss(self, X, y=None):
        if y is None:
            return X @ self.W
        return softmax_loss_vectorized(self.W, X, y, self.reg)


def run_sanity(splits, cfg, log, plots=None):
    """The notes' sanity checks before training: initial loss, then overfitting a tiny subset."""
    rows = []
    t0 = time.perf_counter()
    n = min(500, len(splits["X_train"]))
    np.random.seed(231)
    reg = 1e3
    r = check_initial_loss(
        lambda reg: TwoLayerNet(hidden_dim=50, reg=reg),
        splits["X_train"][:n],
        splits["y_train"][:n],
        reg=reg,
    )
    log(
        f"[sanity] initial loss {r['loss']:.4f} (log 10 = {r['expected']:.4f}), "
        f"{r['loss_with_reg']:.4f} with reg {reg:g}: {r['message']}"
    )
    rows.append(
        _sanity_row(
            "initial loss = log(C), rises with reg",
            f"TwoLayerNet, {n} training images",
            f"{r['loss']:.4f} at reg 0, {r['loss_with_reg']:.4f} at reg {reg:g}",
            f"log(10) = {r['expected']:.4f}, higher with reg",
            r["ok"],
            time.perf_counter() - t0,
        )
    )

    # softmax.ipynb's version: the linear Softmax classifier on 500 images with the bias column.
    t0 = time.perf_counter()
    X_dev = _linear_data({k: splits[k][:n] for k in ("X_train", "X_val", "X_test")})[0]
    np.random.seed(231)
    r = check_initial_loss(
        lambda reg: _LinearSoftmaxModel(X_dev.shape[1], reg), X_dev, splits["y_train"][:n], reg=reg
    )
    log(
        f"[sanity] Softmax classifier initial loss {r['loss']:.4f} (log 10 = "
        f"{r['expected']:.4f}), {r['loss_with_reg']:.4f} with reg {reg:g}: {r['message']}"
    )
    rows.append(
        _sanity_row(
            "initial loss = log(C), rises with reg",
            f"Softmax classifier, W = 1e-4 randn, {n} training images + bias",
            f"{r['loss']:.4f} at reg 0, {r['loss_with_reg']:.4f} at reg {reg:g}",
            f"log(10) = {r['expected']:.4f}, higher with reg",
            r["ok"],
            time.perf_counter() - t0,
        )
    )

    t0 = time.perf_counter()
    np.random.seed(231)
    n = min(cfg["overfit_train"], len(splits["X_train"]))
    model = FullyConnectedNet([100, 100], weight_scale=5e-2)
    r = overfit_small_subset(
        model,
        splits,
        num_train=n,
        update_rule="adam",
        optim_config={"learning_rate": 1e-3},
        num_epochs=cfg["overfit_epochs"],
        batch_size=25,
    )
    log(
        f"[sanity] overfit {n} images: train acc {100 * r['train_acc']:.1f}% after "
        f"{cfg['overfit_epochs']} epochs"
    )
    rows.append(
        _sanity_row(
            f"overfit {n} images",
            f"FC net [100, 100], Adam 1e-3, {cfg['overfit_epochs']} epochs",
            f"train acc {100 * r['train_acc']:.1f}%",
            "100% train acc",
            r["ok"],
            time.perf_counter() - t0,
        )
    )
    _activation_experiment(cfg["tanh_examples"], cfg["tanh_width"], log, plots)
    return rows


def _activation_experiment(num_examples, width, log, plots):
    """The notes' initialization experiment: unit-Gaussian data through 10 tanh layers of
    ``width`` (500 in the notes) units; per-layer activation statistics for three weight
    scales."""
    X = np.random.RandomState(0).randn(num_examples, width)
    histograms = {}
    for label, scale in (("0.01", 0.01), (f"1/sqrt({width})", 1 / np.sqrt(width)), ("1.0", 1.0)):
        np.random.seed(231)
        net = FullyConnectedNet(
            [width] * 10, input_dim=width, activation="tanh", weight_scale=scale
        )
        stats = activation_statistics(net, X)
        log(
            f"[sanity] tanh x10, weight_scale {label}: activation std per layer "
            + " ".join(f"{s['std']:.2g}" for s in stats)
            + f"; saturated {100 * stats[-1]['saturated_fraction']:.0f}% in the last layer"
        )
        histograms[f"w ~ {label}"] = net.hidden_activations(X, mode="train")
    if plots:
        _plot(
            log,
            vis_utils.plot_activation_histograms,
            histograms,
            os.path.join(plots, "tanh_activations.png"),
        )


def _search_table(results):
    """random_search's results without the trained models: what the JSON output keeps."""
    return [{"params": r["params"], "score": r["score"], "round": r["round"]} for r in results]


def _plot_search(results, name, key, log, plots):
    if plots:
        _plot(
            log,
            vis_utils.plot_search_results,
            _search_table(results),
            os.path.join(plots, f"{key}_search.png"),
            score_label="validation accuracy",
            title=f"{name}: random search (best runs in yellow)",
        )


def _search_linear(cls, key, name, space, splits, cfg, log, plots):
    """Random search over a linear classifier's learning rate and regularization; each run is
    cfg["search_iters"] SGD iterations from the same seed. The best run's model is evaluated on
    the test split."""
    X_train, X_val, X_test = _linear_data(splits)
    y_train, y_val, y_test = splits["y_train"], splits["y_val"], splits["y_test"]
    t0 = time.perf_counter()
    progress = Progress(f"{name} random search", cfg["search_budget"])

    def train(learning_rate, reg):
        np.random.seed(231)
        clf = cls()
        with np.errstate(over="ignore", invalid="ignore"):  # too-large rates diverge: low score
            clf.train(
                X_train,
                y_train,
                learning_rate=learning_rate,
                reg=reg,
                num_iters=cfg["search_iters"],
                batch_size=200,
            )
            va = _accuracy(clf.predict(X_val), y_val)
        progress.update(info=f"lr {learning_rate:.1e} reg {reg:.1e}: val {100 * va:.1f}%")
        return {"score": va, "model": clf}

    results = random_search(
        space, train, cfg["search_budget"], rounds=cfg["search_rounds"], seed=231
    )
    progress.close()
    best = results[0]
    model = best["result"]["model"]
    tr, te = _accuracy(model.predict(X_train), y_train), _accuracy(model.predict(X_test), y_test)
    lr, reg = best["params"]["learning_rate"], best["params"]["reg"]
    log(
        f"[search] {name}, best of {len(results)}: lr {lr:.2e}, reg {reg:.2e}, "
        f"val {100 * best['score']:.1f}%, test {100 * te:.1f}%"
    )
    _plot_search(results, name, key, log, plots)
    setting = (
        f"random search, {len(results)} runs x {cfg['search_iters']} iters in "
        f"{cfg['search_rounds']} coarse-to-fine rounds; best lr={lr:.1e} reg={reg:.1e}"
    )
    row = _row(
        f"{name}, random search",
        setting,
        best["score"],
        te,
        time.perf_counter() - t0,
        "search" if key == "svm" else f"{key}_search",
        train=tr,
        measured=best["score"],
    )
    row["search_runs"] = _search_table(results)
    return row


def _search_twolayer(splits, cfg, log, plots):
    """Random search over the TwoLayerNet's SGD learning rate and regularization with short
    runs (cfg["net_search_epochs"] epochs each), then the best setting trained for the full
    cfg["twolayer_epochs"] epochs (the notes' coarse stage with few epochs, then longer runs)."""
    t0 = time.perf_counter()
    hidden = 100
    # From a decade below the notebook's SGD rate 1e-3 to 5x above it (1e-2 diverges on raw
    # pixels), and three decades of regularization around its 0.1.
    space = {"learning_rate": LogUniform(1e-4, 5e-3), "reg": LogUniform(1e-3, 1.0)}
    progress = Progress("two-layer net random search", cfg["net_search_budget"])

    def solver_kwargs(learning_rate, epochs):
        return {
            "update_rule": "sgd",
            "optim_config": {"learning_rate": learning_rate},
            "lr_decay": 0.95,
            "num_epochs": epochs,
            "batch_size": 200,
        }

    def train(learning_rate, reg):
        np.random.seed(231)
        model = TwoLayerNet(hidden_dim=hidden, reg=reg)
        solver = Solver(
            model, splits, verbose=False, **solver_kwargs(learning_rate, cfg["net_search_epochs"])
        )
        with np.errstate(over="ignore", invalid="ignore"):  # too-large rates diverge: low score
            solver.train()
        va = float(solver.best_val_acc)
        progress.update(info=f"lr {learning_rate:.1e} reg {reg:.1e}: val {100 * va:.1f}%")
        return va

    results = random_search(
        space, train, cfg["net_search_budget"], rounds=cfg["net_search_rounds"], seed=231
    )
    progress.close()
    best = results[0]
    lr, reg = best["params"]["learning_rate"], best["params"]["reg"]
    log(
        f"[search] two-layer net, best of {len(results)} {cfg['net_search_epochs']}-epoch runs: "
        f"lr {lr:.2e}, reg {reg:.2e}, val {100 * best['score']:.1f}%; training it for "
        f"{cfg['twolayer_epochs']} epochs"
    )
    _plot_search(results, "two-layer net", "two_layer_net", log, plots)
    np.random.seed(231)
    model = TwoLayerNet(hidden_dim=hidden, reg=reg)
    kwargs = solver_kwargs(lr, cfg["twolayer_epochs"])
    train_acc, val, test, _ = _train_net(
        "two-layer net (searched)", model, splits, kwargs, log, plots
    )
    setting = (
        f"random search, {len(results)} runs x {cfg['net_search_epochs']} epoch in "
        f"{cfg['net_search_rounds']} coarse-to-fine rounds (best short-run val "
        f"{100 * best['score']:.1f}%); best lr={lr:.1e} reg={reg:.1e} trained "
        f"{cfg['twolayer_epochs']} epochs, hidden {hidden}, SGD decay 0.95"
    )
    row = _row(
        "two-layer net, random search",
        setting,
        val,
        test,
        time.perf_counter() - t0,
        "twolayer_search",
        train=train_acc,
        measured=val,
    )
    row["search_runs"] = _search_table(results)
    return row


def run_search(splits, cfg, log, plots=None):
    """The notes' random search (log-uniform, coarse-to-fine) for the LinearSVM, the Softmax
    classifier and the TwoLayerNet; each search's best model is evaluated on the test split."""
    # Linear classifiers: coarse ranges of about 1.5 and 3 decades around the course's
    # suggestions (the same for both losses, whose scales are alike on raw pixels).
    space = {"learning_rate": LogUniform(1e-7, 5e-6), "reg": LogUniform(1e2, 1e5)}
    return [
        _search_linear(LinearSVM, "svm", "linear SVM", space, splits, cfg, log, plots),
        _search_linear(Softmax, "softmax", "softmax", space, splits, cfg, log, plots),
        _search_twolayer(splits, cfg, log, plots),
    ]


def run_pca(Xtr, cfg, log, plots=None):
    """The notes' PCA on raw pixels: variance kept by the top components, and the picture."""
    t0 = time.perf_counter()
    n = min(cfg["pca_images"], len(Xtr))
    X = Xtr[:n].reshape(n, -1).astype(np.float64)
    K = min(cfg["pca_components"], n, X.shape[1])
    pca = PCA(n_components=K).fit(X)
    kept = float(pca.explained_variance_ratio_.sum())
    log(
        f"[pca] top {K} of {X.shape[1]} components of {n:,} images keep {100 * kept:.1f}% of "
        f"the variance ({time.perf_counter() - t0:.1f} s)"
    )
    if plots:
        _plot(
            log,
            vis_utils.plot_pca_pictures,
            pca,
            X,
            os.path.join(plots, "pca.png"),
            image_shape=Xtr.shape[1:],
            channels_first=False,
        )


def image_features(Xtr, Ytr, Xte, Yte, n_tr, n_val, n_te, log):
    """HOG + colour-histogram features of the course's splits (raw NHWC pixels), standardized
    with the training split's mean and std. Returns dict X_train/X_val/X_test (N, 154) and
    labels."""
    t0 = time.perf_counter()
    fns = [hog_feature, lambda im: color_histogram_hsv(im, nbin=10)]
    images = np.concatenate([Xtr[: n_tr + n_val], Xte[:n_te]])
    F = extract_features(images, fns)
    scaler = Standardize().fit(F[:n_tr])
    F = scaler.transform(F).astype(np.float64)
    log(
        f"[features] {F.shape[1]} HOG + colour-histogram features of {len(F):,} images in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    return {
        "X_train": F[:n_tr],
        "X_val": F[n_tr : n_tr + n_val],
        "X_test": F[n_tr + n_val :],
        "y_train": Ytr[:n_tr],
        "y_val": Ytr[n_tr : n_tr + n_val],
        "y_test": Yte[:n_te],
        "seconds": time.perf_counter() - t0,
    }


def run_features(feats, cfg, log, plots=None):
    """A1 Q5: a LinearSVM and a TwoLayerNet on image features."""

    def bias(X):
        return np.hstack([X, np.ones((len(X), 1))])

    rows = []
    t0 = time.perf_counter()
    best = None
    for lr in cfg["feature_lrs"]:
        for reg in cfg["feature_regs"]:
            np.random.seed(231)
            svm = LinearSVM()
            with np.errstate(over="ignore", invalid="ignore"):  # large lr * reg diverges
                svm.train(
                    bias(feats["X_train"]),
                    feats["y_train"],
                    learning_rate=lr,
                    reg=reg,
                    num_iters=cfg["feature_iters"],
                )
                va = _accuracy(svm.predict(bias(feats["X_val"])), feats["y_val"])
            log(f"[features] SVM lr {lr:.0e} reg {reg:.0e}: val {100 * va:.1f}%")
            if best is None or va > best[0]:
                best = (va, lr, reg, svm)
    va, lr, reg, svm = best
    tr = _accuracy(svm.predict(bias(feats["X_train"])), feats["y_train"])
    te = _accuracy(svm.predict(bias(feats["X_test"])), feats["y_test"])
    n = len(cfg["feature_lrs"]) * len(cfg["feature_regs"])
    rows.append(
        _row(
            "linear SVM on HOG + colour features",
            f"{n}-point sweep, best lr={lr:.0e} reg={reg:.0e}, {cfg['feature_iters']} iters",
            va,
            te,
            feats["seconds"] + time.perf_counter() - t0,
            "features_svm",
            train=tr,
            measured=va,
        )
    )

    np.random.seed(231)
    dim = feats["X_train"].shape[1]
    model = TwoLayerNet(input_dim=dim, hidden_dim=500, weight_scale=1e-2, reg=1e-3)
    kwargs = {
        "update_rule": "sgd",
        "optim_config": {"learning_rate": 0.3},
        "lr_decay": 0.95,
        "num_epochs": cfg["feature_net_epochs"],
        "batch_size": 200,
    }
    data = {k: feats[k] for k in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")}
    train, val, test, sec = _train_net("features net", model, data, kwargs, log)
    rows.append(
        _row(
            "two-layer net on HOG + colour features",
            f"hidden 500, reg 1e-3, SGD lr 0.3 decay 0.95, {cfg['feature_net_epochs']} epochs",
            val,
            test,
            sec,
            "features_net",
            train=train,
        )
    )
    return rows


def _pct(x):
    return "—" if x is None else f"{100 * x:.1f}%"


def format_results(rows, timings=None, timing_shape=None):
    """The results as Markdown tables (accuracy table, sanity checks, then k-NN distance
    timings); a table with no rows is left out."""
    sanity = [r for r in rows if r.get("kind") == "sanity"]
    accuracy = [r for r in rows if r.get("kind") != "sanity"]
    out = []
    if accuracy:
        out += [
            "| experiment | setting | train acc | val acc | test acc | wall time | "
            "course expects | meets |",
            "|---|---|---|---|---|---|---|---|",
        ]
    for r in accuracy:
        meets = {True: "yes", False: "NO", None: "—"}[r["meets"]]
        out.append(
            f"| {r['experiment']} | {r['setting']} | {_pct(r['train_acc'])} | "
            f"{_pct(r['val_acc'])} | {_pct(r['test_acc'])} | {r['seconds']:.1f} s | "
            f"{r['course_expects']} | {meets} |"
        )
    if sanity:
        out += [
            "" if out else None,
            "Sanity checks (the notes' babysitting):",
            "",
            "| check | setting | measured | expected | wall time | passes |",
            "|---|---|---|---|---|---|",
        ]
        for r in sanity:
            meets = {True: "yes", False: "NO", None: "—"}[r["meets"]]
            out.append(
                f"| {r['experiment']} | {r['setting']} | {r['measured']} | "
                f"{r['course_expects']} | {r['seconds']:.1f} s | {meets} |"
            )
    out = [line for line in out if line is not None]
    if timings:
        n_test, n_train = timing_shape
        base = timings["two loops"]
        out += [
            "",
            f"k-NN distance matrix, {n_test} test x {n_train} train points:",
            "",
            "| implementation | time | speed-up vs two loops | max abs diff vs two loops |",
            "|---|---|---|---|",
        ]
        for name in ("two loops", "one loop", "no loops"):
            t = timings[name]
            out.append(
                f"| {name} | {t:.3f} s | {base / t:.1f}x | {timings[name + ' maxdiff']:.2e} |"
            )
    return "\n".join(out)


def run(data_dir, quick=False, only=None, log=None, cnn_train=None, plots=None):
    """Run the experiments; returns (rows, timings, timing_shape, total_seconds).

    plots: a directory to write the pictures to (None: no pictures). Sanity-check rows carry
    ``kind: "sanity"``.

    cnn_train: train ThreeLayerConvNet's one epoch on the first cnn_train training images
    instead of all 49,000 (the course's setting; about 1,000 iterations).
    """
    if log is None:

        def log(msg):
            print(msg, file=sys.stderr, flush=True)

    cfg = dict(QUICK if quick else FULL)
    if cnn_train is not None:
        cfg["cnn_train"] = int(cnn_train)
    only = list(EXPERIMENTS) if only is None else list(only)
    unknown = sorted(set(only) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"unknown experiments {unknown}; choose from {', '.join(EXPERIMENTS)}")
    t_start = time.perf_counter()
    t0 = time.perf_counter()
    Xtr, Ytr, Xte, Yte = load_CIFAR10(data_dir, dtype=np.float32)
    log(
        f"loaded CIFAR-10 from {data_dir}: {len(Xtr):,} train, {len(Xte):,} test images "
        f"in {time.perf_counter() - t0:.1f} s"
    )

    rows, timings, timing_shape = [], None, None
    if "knn" in only:
        knn_rows, timings, n_time, n_tr = run_knn(Xtr, Ytr, Xte, Yte, cfg, log, plots)
        rows += knn_rows
        timing_shape = (n_time, n_tr)
    if "pca" in only:
        run_pca(Xtr, cfg, log, plots)
    if set(only) & {"linear", "twolayer", "fcnet", "cnn", "sanity", "search", "features"}:
        n_val = min(cfg["num_validation"], len(Xtr) // 10)
        n_tr = min(cfg["num_training"], len(Xtr) - n_val)
        n_te = min(cfg["num_test"], len(Xte))
        feats = None
        if "features" in only:  # from the raw pixels, before they are mean-subtracted
            feats = image_features(Xtr, Ytr, Xte, Yte, n_tr, n_val, n_te, log)
        splits = cs231n_splits(Xtr, Ytr, Xte, Yte, n_tr, n_val, n_te)
        del Xtr, Xte
        if "sanity" in only:
            rows += run_sanity(splits, cfg, log, plots)
        if "linear" in only:
            rows += run_linear(splits, cfg, log, plots)
        if "search" in only:
            rows += run_search(splits, cfg, log, plots)
        if "twolayer" in only:
            rows += run_twolayer(splits, cfg, log, plots)
        if "fcnet" in only:
            rows += run_fcnet(splits, cfg, log, plots)
        if "cnn" in only:
            rows += run_cnn(splits, cfg, log, plots)
        if feats is not None:
            rows += run_features(feats, cfg, log, plots)
    if quick:
        for row in rows:
            row["meets"] = None
    return rows, timings, timing_shape, time.perf_counter() - t_start


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m numpy_impl.reproduce",
        description="Run CS231n's headline CIFAR-10 experiments with numpy_impl.",
    )
    parser.add_argument(
        "--data-dir",
        required=True,
        help="CIFAR-10 directory (official python batches or ImageFolder tree)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run on small subsets (seconds; accuracies are meaningless)",
    )
    parser.add_argument(
        "--only",
        default=",".join(EXPERIMENTS),
        help=f"comma-separated subset of {','.join(EXPERIMENTS)}",
    )
    parser.add_argument(
        "--cnn-train",
        type=int,
        default=None,
        metavar="N",
        help="train ThreeLayerConvNet's epoch on the first N training images "
        "(default: all 49,000, as in the course)",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument(
        "--plots", metavar="DIR", help="also write the course's pictures (PNG) to this directory"
    )
    args = parser.parse_args(argv)
    if not os.path.isdir(args.data_dir):
        parser.error(f"--data-dir {args.data_dir!r} is not a directory")
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    try:
        rows, timings, shape, total = run(
            args.data_dir, quick=args.quick, only=only, cnn_train=args.cnn_train, plots=args.plots
        )
    except ValueError as e:
        parser.error(str(e))
    cmd = "python -m numpy_impl.reproduce " + " ".join(argv if argv is not None else sys.argv[1:])
    print(
        f"\nCIFAR-10 results ({'QUICK smoke run, ' if args.quick else ''}"
        f"data: {args.data_dir}; total {total / 60:.1f} min)\nCommand: {cmd}\n"
    )
    print(format_results(rows, timings, shape))
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"rows": rows, "knn_timings": timings, "total_seconds": total}, f, indent=2)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
