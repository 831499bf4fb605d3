"""PNG plots of a run: loss/accuracy curves, test confusion matrix, first-layer filters.

Matplotlib's Agg backend (no display needed). Each figure is written to a temporary file and
renamed into place, so a plot on disk is always complete.
"""

from __future__ import annotations

import math
import os
import tempfile
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".plot-", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _loss_ylim(values: list) -> tuple[float, float] | None:
    """A linear y range that shows the training curves: from 0 to a little above the largest
    finite value once the first 5% of the points are set aside (an early spike, or a validation
    loss of tens while the running statistics settle, would flatten everything else)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if not len(v):
        return None
    top = np.quantile(v, 0.95) if len(v) >= 20 else v.max()
    return 0.0, 1.15 * max(float(top), 1e-6)


def plot_curves(history: dict, path, steps_per_epoch: float | None = None, title: str = ""):
    """history: {"train_step": [[step, loss(, lr)]], "train_epoch": [[epoch, loss, acc, lr]],
    "val_epoch": [[epoch, loss, acc]]} (``CifarModule.history``). ``steps_per_epoch``: the
    optimizer steps an epoch actually took (the trainer's count, which ``--limit-train-batches``
    shrinks), so step s is drawn at epoch s / steps_per_epoch.

    Three panels: loss (linear, clipped to the range of the curves; points above it are marked
    at the top edge), accuracy, and the learning rate per step."""
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(15, 4))
    spe = float(steps_per_epoch or 1.0)
    s = np.asarray(history.get("train_step") or np.zeros((0, 2)), dtype=float)
    te = np.asarray(history.get("train_epoch") or np.zeros((0, 4)), dtype=float)
    ve = np.asarray(history.get("val_epoch") or np.zeros((0, 3)), dtype=float)
    # Step s is the (s+1)-th optimizer step: it ends at epoch (s + 1) / spe.
    if len(s):
        ax_loss.plot(
            (s[:, 0] + 1) / spe,
            s[:, 1],
            color="0.7",
            lw=0.8,
            label="train, per step (loss as optimized)",
        )
        if s.shape[1] > 2:
            ax_lr.plot((s[:, 0] + 1) / spe, s[:, 2], color="tab:green")
    # Epoch e's metrics describe the state at its end: plot them at x = e + 1.
    if len(te):
        ax_loss.plot(te[:, 0] + 1, te[:, 1], "o-", label="train, epoch mean (as optimized)")
        ax_acc.plot(te[:, 0] + 1, te[:, 2], "o-", label="train")
    if len(ve):
        ax_loss.plot(ve[:, 0] + 1, ve[:, 1], "s-", label="validation (plain cross-entropy)")
        ax_acc.plot(ve[:, 0] + 1, ve[:, 2], "s-", label="validation")
    lim = _loss_ylim(list(s[:, 1]) if len(s) else list(te[:, 1]) + list(ve[:, 1]))
    if lim is not None:
        ax_loss.set_ylim(*lim)
        above = [
            (x, y)
            for line in ax_loss.lines
            for x, y in zip(*line.get_data(), strict=True)
            if np.isfinite(y) and y > lim[1]
        ]
        if above:
            ax_loss.plot(
                [x for x, _ in above],
                [lim[1]] * len(above),
                "^",
                color="tab:red",
                ms=4,
                clip_on=False,
                label="above the range shown",
            )
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="learning rate (per step)")
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.grid(alpha=0.3)
        ax.set_xlim(left=0)
        if ax.lines and ax is not ax_lr:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, y=1.03)
    return _save(fig, path)


def plot_confusion(confusion, classes, path, title="test confusion matrix"):
    """confusion: (C, C) counts, rows = true class, columns = predicted class."""
    cm = np.asarray(confusion, dtype=float)
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    C = len(cm)
    fig, ax = plt.subplots(figsize=(0.6 * C + 2.5, 0.6 * C + 2))
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(C), classes, rotation=45, ha="right")
    ax.set_yticks(range(C), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for i in range(C):
        for j in range(C):
            ax.text(
                j,
                i,
                f"{rows[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rows[i, j] > 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    return _save(fig, path)


def plot_filters(w, path, title="first-layer filters"):
    """w: (F, C, k, k) array; each filter shown as an RGB tile (C = 3) or gray (else),
    contrast-stretched to its own range (so a tile shows the filter's pattern, not its size)."""
    w = np.asarray(w, dtype=float)
    F_ = w.shape[0]
    cols = int(math.ceil(math.sqrt(F_)))
    rows = int(math.ceil(F_ / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9 + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= F_:
            continue
        f = w[i]
        f = (f - f.min()) / max(f.max() - f.min(), 1e-12)
        if f.shape[0] == 3:
            ax.imshow(f.transpose(1, 2, 0), interpolation="nearest")
        else:
            ax.imshow(f.mean(axis=0), cmap="gray", interpolation="nearest")
    fig.suptitle(textwrap.fill(title, max(40, 11 * cols)), fontsize=9)
    return _save(fig, path)


def _series(rows: list) -> dict:
    """[[step, {name: value}]] -> {name: (steps, values)}."""
    out: dict = {}
    for step, values in rows:
        for name, v in values.items():
            out.setdefault(name, ([], []))
            out[name][0].append(step)
            out[name][1].append(v)
    return out


def plot_update_ratio(rows: list, path, steps_per_epoch: float | None = None, title: str = ""):
    """rows: [[step, {weight name: ||dw|| / ||w||}]] (``TrainingDiagnostics.history``). Log
    scale, one line per weight, the notes' healthy value 1e-3 drawn as a line in a band
    (3e-4 to 3e-3)."""
    spe = float(steps_per_epoch or 1.0)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.axhspan(3e-4, 3e-3, color="tab:green", alpha=0.12, label="~1e-3: healthy (CS231n notes)")
    ax.axhline(1e-3, color="tab:green", lw=1)
    for name, (steps, values) in _series(rows).items():
        v = np.asarray(values, dtype=float)
        ax.plot((np.asarray(steps) + 1) / spe, np.where(v > 0, v, np.nan), lw=1, label=name)
    ax.set_yscale("log")
    ax.set(
        xlabel="epoch",
        ylabel="||update|| / ||weight||",
        title="update/weight ratio per layer" + (f", {title}" if title else ""),
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_diagnostics(history: dict, path, steps_per_epoch: float | None = None, title: str = ""):
    """Per layer over training: activation std, fraction of dead ReLUs, and per weight the
    gradient norm (``TrainingDiagnostics.history`` with activations)."""
    spe = float(steps_per_epoch or 1.0)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    acts = _series([[s, {n: v[1] for n, v in d.items()}] for s, d in history["activations"]])
    dead = _series([[s, {n: v[2] for n, v in d.items()}] for s, d in history["activations"]])
    grads = _series(history["grad_norm"])
    panels = [
        (acts, "activation std", "linear"),
        (dead, "dead ReLU units (0 for the whole batch)", "linear"),
        (grads, "gradient norm", "log"),
    ]
    for ax, (series, label, scale) in zip(axes, panels, strict=True):
        for name, (steps, values) in series.items():
            ax.plot((np.asarray(steps) + 1) / spe, values, lw=1, label=name)
        ax.set(xlabel="epoch", ylabel=label, title=label, yscale=scale)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, y=1.03)
    return _save(fig, path)
