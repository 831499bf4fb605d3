"""Reproduce each CS231n assignment's headline CIFAR-10 experiment with numpy_impl.

    python -m numpy_impl.reproduce --data-dir DIR [--quick] [--only knn,linear,...]
                                   [--cnn-train N] [--json FILE]

DIR holds CIFAR-10 in either layout ``numpy_impl.data.load_CIFAR10`` reads (the official python
batches, or an ImageFolder tree ``train/<class>/*``, ``test/<class>/*``, which is shuffled once
with ``np.random.RandomState(0)`` before the course's first-N splits). Experiments (course
notebook in brackets):

- knn     [A1 knn.ipynb]: k-NN on the first 5,000 training / 500 test images; k = 1, then the best
          k by 5-fold cross-validation; plus the timing of the three distance implementations.
- linear  [A1 svm.ipynb, softmax.ipynb]: LinearSVM and Softmax on raw pixels (mean subtracted,
          bias column), a small learning-rate x regularization sweep selected on validation.
- twolayer[A1 two_layer_net.ipynb]: TwoLayerNet trained with the Solver.
- fcnet   [A2 FullyConnectedNets / BatchNormalization / Dropout]: FullyConnectedNet with
          batchnorm and dropout, Adam.
- cnn     [A2 ConvolutionalNetworks.ipynb]: ThreeLayerConvNet for one epoch, Adam, batch 50
          (``--cnn-train N`` limits that epoch to the first N training images, for slow machines).

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

from .classifiers import (
    FullyConnectedNet,
    KNearestNeighbor,
    LinearSVM,
    Softmax,
    ThreeLayerConvNet,
    TwoLayerNet,
    cross_validate_knn,
)
from .data import cs231n_splits, load_CIFAR10
from .solver import Solver

EXPERIMENTS = ("knn", "linear", "twolayer", "fcnet", "cnn")

# What the course's notebooks tell students to expect (the thresholds marked in the table).
COURSE_EXPECTS = {
    "knn_k1": (0.27, "~27% test (knn.ipynb, k=1)"),
    "knn_best": (0.28, "> 28% test (knn.ipynb, best k)"),
    "svm": (0.37, "~37%+ (svm.ipynb: ~39% val)"),
    "softmax": (0.35, "~35%+ val (softmax.ipynb)"),
    "twolayer": (0.48, ">= 48% val (two_layer_net.ipynb)"),
    "fcnet": (0.50, ">= 50% val (FullyConnectedNets.ipynb)"),
    "cnn": (0.40, "> 40% train acc after 1 epoch (ConvolutionalNetworks.ipynb)"),
}

# Full-size settings; QUICK shrinks every budget for a smoke run.
FULL = {
    "knn_train": 5000, "knn_test": 500, "knn_folds": 5,
    "knn_k": [1, 3, 5, 8, 10, 12, 15, 20, 50, 100], "knn_timing_test": 100,
    "num_training": 49000, "num_validation": 1000, "num_test": 1000,
    "linear_lrs": [5e-7, 1e-6], "linear_regs": [1e3, 5e3], "linear_iters": 1500,
    "twolayer_epochs": 10, "fcnet_epochs": 5, "cnn_train": 49000, "cnn_epochs": 1,
}
QUICK = {
    "knn_train": 500, "knn_test": 50, "knn_folds": 5, "knn_k": [1, 3, 5], "knn_timing_test": 10,
    "num_training": 2000, "num_validation": 200, "num_test": 200,
    "linear_lrs": [5e-7], "linear_regs": [5e3], "linear_iters": 50,
    "twolayer_epochs": 1, "fcnet_epochs": 1, "cnn_train": 200, "cnn_epochs": 1,
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
        line = (f"[{self.label}] {self.count}/{self.total} "
                f"{100.0 * self.count / self.total:5.1f}%  {elapsed:6.1f}s elapsed, "
                f"eta {eta:6.1f}s  {self.info}")
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
        "experiment": name, "setting": setting, "train_acc": train, "val_acc": val,
        "test_acc": test, "seconds": seconds, "course_expects": expects,
        "meets": bool(measured >= threshold), "threshold": threshold,
    }


def run_knn(Xtr, Ytr, Xte, Yte, cfg, log):
    """A1 Q1: k-NN, k=1 and the best k by cross-validation; timing of the three distances."""
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
    variants = (("two loops", knn.compute_distances_two_loops),
                ("one loop", knn.compute_distances_one_loop),
                ("no loops", knn.compute_distances_no_loops))
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
    rows.append(_row("k-NN, k=1", f"{n_tr:,} train / {n_te} test", None, acc1,
                     time.perf_counter() - t0, "knn_k1"))

    t0 = time.perf_counter()
    log(f"[knn] {cfg['knn_folds']}-fold cross-validation over k = {cfg['knn_k']} ...")
    k_to_acc = cross_validate_knn(X_train, y_train, cfg["knn_k"], num_folds=cfg["knn_folds"])
    means = {k: float(np.mean(v)) for k, v in k_to_acc.items()}
    best_k = max(means, key=lambda k: (means[k], -k))
    acc_best = _accuracy(knn.predict_labels(dists, k=best_k), y_test)
    log(f"[knn] {cfg['knn_folds']}-fold CV mean accuracy: "
        + ", ".join(f"k={k}: {100 * m:.1f}%" for k, m in means.items()))
    rows.append(_row(f"k-NN, best k={best_k} (5-fold CV)", f"{n_tr:,} train / {n_te} test",
                     means[best_k], acc_best, time.perf_counter() - t0, "knn_best"))
    return rows, timings, n_time, n_tr


def _linear_data(splits):
    def rows(X):
        X = X.reshape(X.shape[0], -1)
        return np.hstack([X, np.ones((X.shape[0], 1), dtype=X.dtype)])  # bias trick

    return rows(splits["X_train"]), rows(splits["X_val"]), rows(splits["X_test"])


def run_linear(splits, cfg, log):
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
            clf.train(X_train, y_train, learning_rate=lr, reg=reg, num_iters=cfg["linear_iters"],
                      batch_size=200)
            tr = _accuracy(clf.predict(X_train), y_train)
            va = _accuracy(clf.predict(X_val), y_val)
            log(f"[{key}] lr {lr:.0e} reg {reg:.1e}: train {100 * tr:.1f}%, val {100 * va:.1f}%")
            if best is None or va > best[0]:
                best = (va, tr, lr, reg, clf)
            progress.update(info=f"best val {100 * best[0]:.1f}%")
        progress.close()
        va, tr, lr, reg, clf = best
        te = _accuracy(clf.predict(X_test), y_test)
        setting = (f"{len(combos)}-point sweep, best lr={lr:.0e} reg={reg:.1e}, "
                   f"{cfg['linear_iters']} iters")
        rows.append(_row(name, setting, va, te, time.perf_counter() - t0, key, train=tr,
                         measured=va))
    return rows


def _train_net(label, model, splits, solver_kwargs, log):
    t0 = time.perf_counter()
    solver = _ProgressSolver(model, splits, verbose=False, **solver_kwargs)
    solver.train_with_progress(label)
    val = float(solver.check_accuracy(splits["X_val"], splits["y_val"]))
    test = float(solver.check_accuracy(splits["X_test"], splits["y_test"]))
    train = float(solver.train_acc_history[-1])
    log(f"[{label}] val acc per epoch: "
        + ", ".join(f"{100 * a:.1f}%" for a in solver.val_acc_history))
    return train, val, test, time.perf_counter() - t0


def run_twolayer(splits, cfg, log):
    """A1 Q4: TwoLayerNet with SGD and learning-rate decay."""
    np.random.seed(231)
    hidden, reg, lr = 100, 0.1, 1e-3
    model = TwoLayerNet(hidden_dim=hidden, reg=reg)
    kwargs = {"update_rule": "sgd", "optim_config": {"learning_rate": lr}, "lr_decay": 0.95,
              "num_epochs": cfg["twolayer_epochs"], "batch_size": 200}
    train, val, test, sec = _train_net("two-layer net", model, splits, kwargs, log)
    setting = (f"hidden {hidden}, reg {reg}, SGD lr {lr:.0e} decay 0.95, "
               f"{cfg['twolayer_epochs']} epochs")
    return [_row("two-layer net", setting, val, test, sec, "twolayer", train=train, measured=val)]


def run_fcnet(splits, cfg, log):
    """A2 Q1-Q3: FullyConnectedNet with batchnorm and dropout, Adam."""
    np.random.seed(231)
    hidden, keep, reg, lr = [256, 256], 0.75, 1e-3, 1e-3
    model = FullyConnectedNet(hidden, normalization="batchnorm", dropout_keep_ratio=keep,
                              reg=reg, weight_scale=5e-2)
    kwargs = {"update_rule": "adam", "optim_config": {"learning_rate": lr}, "lr_decay": 0.9,
              "num_epochs": cfg["fcnet_epochs"], "batch_size": 200}
    train, val, test, sec = _train_net("FC net BN+dropout", model, splits, kwargs, log)
    setting = (f"hidden {hidden}, batchnorm, keep {keep}, reg {reg}, Adam lr {lr:.0e} "
               f"decay 0.9, {cfg['fcnet_epochs']} epochs")
    return [_row("FC net + batchnorm + dropout", setting, val, test, sec, "fcnet", train=train,
                 measured=val)]


def run_cnn(splits, cfg, log):
    """A2 Q4: ThreeLayerConvNet, one epoch (the notebook's settings)."""
    np.random.seed(231)
    n = min(cfg["cnn_train"], len(splits["X_train"]))
    data = dict(splits, X_train=splits["X_train"][:n], y_train=splits["y_train"][:n])
    model = ThreeLayerConvNet(weight_scale=0.001, hidden_dim=500, reg=0.001)
    kwargs = {"update_rule": "adam", "optim_config": {"learning_rate": 1e-3},
              "num_epochs": cfg["cnn_epochs"], "batch_size": 50}
    train, val, test, sec = _train_net("ThreeLayerConvNet", model, data, kwargs, log)
    setting = (f"32 7x7 filters, hidden 500, reg 1e-3, Adam 1e-3, batch 50, "
               f"{cfg['cnn_epochs']} epoch on {n:,} images")
    return [_row("ThreeLayerConvNet", setting, val, test, sec, "cnn", train=train,
                 measured=train)]


def _pct(x):
    return "—" if x is None else f"{100 * x:.1f}%"


def format_results(rows, timings=None, timing_shape=None):
    """The results as Markdown tables (accuracy table, then k-NN distance timings)."""
    out = ["| experiment | setting | train acc | val acc | test acc | wall time | course expects "
           "| meets |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        meets = {True: "yes", False: "NO", None: "—"}[r["meets"]]
        out.append(f"| {r['experiment']} | {r['setting']} | {_pct(r['train_acc'])} | "
                   f"{_pct(r['val_acc'])} | {_pct(r['test_acc'])} | {r['seconds']:.1f} s | "
                   f"{r['course_expects']} | {meets} |")
    if timings:
        n_test, n_train = timing_shape
        base = timings["two loops"]
        out += ["", f"k-NN distance matrix, {n_test} test x {n_train} train points:", "",
                "| implementation | time | speed-up vs two loops | max abs diff vs two loops |",
                "|---|---|---|---|"]
        for name in ("two loops", "one loop", "no loops"):
            t = timings[name]
            out.append(f"| {name} | {t:.3f} s | {base / t:.1f}x | "
                       f"{timings[name + ' maxdiff']:.2e} |")
    return "\n".join(out)


def run(data_dir, quick=False, only=None, log=None, cnn_train=None):
    """Run the experiments; returns (rows, timings, timing_shape, total_seconds).

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
    log(f"loaded CIFAR-10 from {data_dir}: {len(Xtr):,} train, {len(Xte):,} test images "
        f"in {time.perf_counter() - t0:.1f} s")

    rows, timings, timing_shape = [], None, None
    if "knn" in only:
        knn_rows, timings, n_time, n_tr = run_knn(Xtr, Ytr, Xte, Yte, cfg, log)
        rows += knn_rows
        timing_shape = (n_time, n_tr)
    if set(only) & {"linear", "twolayer", "fcnet", "cnn"}:
        n_val = min(cfg["num_validation"], len(Xtr) // 10)
        n_tr = min(cfg["num_training"], len(Xtr) - n_val)
        splits = cs231n_splits(Xtr, Ytr, Xte, Yte, n_tr, n_val,
                               min(cfg["num_test"], len(Xte)))
        del Xtr, Xte
        if "linear" in only:
            rows += run_linear(splits, cfg, log)
        if "twolayer" in only:
            rows += run_twolayer(splits, cfg, log)
        if "fcnet" in only:
            rows += run_fcnet(splits, cfg, log)
        if "cnn" in only:
            rows += run_cnn(splits, cfg, log)
    if quick:
        for row in rows:
            row["meets"] = None
    return rows, timings, timing_shape, time.perf_counter() - t_start


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m numpy_impl.reproduce",
        description="Run CS231n's headline CIFAR-10 experiments with numpy_impl.",
    )
    parser.add_argument("--data-dir", required=True,
                        help="CIFAR-10 directory (official python batches or ImageFolder tree)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run on small subsets (seconds; accuracies are meaningless)")
    parser.add_argument("--only", default=",".join(EXPERIMENTS),
                        help=f"comma-separated subset of {','.join(EXPERIMENTS)}")
    parser.add_argument("--cnn-train", type=int, default=None, metavar="N",
                        help="train ThreeLayerConvNet's epoch on the first N training images "
                             "(default: all 49,000, as in the course)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.data_dir):
        parser.error(f"--data-dir {args.data_dir!r} is not a directory")
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    try:
        rows, timings, shape, total = run(args.data_dir, quick=args.quick, only=only,
                                          cnn_train=args.cnn_train)
    except ValueError as e:
        parser.error(str(e))
    cmd = "python -m numpy_impl.reproduce " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\nCIFAR-10 results ({'QUICK smoke run, ' if args.quick else ''}"
          f"data: {args.data_dir}; total {total / 60:.1f} min)\nCommand: {cmd}\n")
    print(format_results(rows, timings, shape))
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"rows": rows, "knn_timings": timings, "total_seconds": total}, f, indent=2)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
