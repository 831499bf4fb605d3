"""Babysitting the learning process: the checks and statistics the CS231n notes recommend.

- ``check_initial_loss``: with small random weights and no regularization, a softmax classifier's
  first loss is about log(C) (every class equally likely); adding regularization must raise it.
- ``overfit_small_subset``: a model that cannot reach 100% training accuracy on a few dozen
  examples has a bug (or a learning rate that is far off).
- ``activation_statistics``: mean, std and the fraction of dead (ReLU) or saturated
  (sigmoid/tanh) units per hidden layer of a ``FullyConnectedNet`` (the notes' per-layer
  activation histograms, as numbers).
- ``gradient_norms``: ||dL/dp|| per parameter, to spot vanishing or exploding gradients.

The ratio of update to weight magnitudes is recorded by ``Solver`` itself
(``solver.update_ratio_history``); ``summarize_update_ratios`` reduces it to one number per
parameter and flags values far from the healthy ~1e-3.
"""

# ruff: noqa: NPY002 -- models draw their initial weights from NumPy's global generator (the
# course's convention); check_initial_loss restores its state to build two identical models.

from __future__ import annotations

import math
import numbers

import numpy as np

from twin_checks import require_ndim

from .solver import Solver

__all__ = [
    "check_initial_loss",
    "overfit_small_subset",
    "activation_statistics",
    "gradient_norms",
    "summarize_update_ratios",
]

# Outputs within this distance of an activation's bounds count as saturated (gradient < ~1%).
SATURATION_MARGIN = 0.01
# The notes' rule of thumb for ||update|| / ||w||, and how far off counts as "far".
HEALTHY_UPDATE_RATIO = 1e-3
RATIO_TOLERANCE = 10.0


def _require_labels(y, N):
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must hold integer labels, got dtype {y.dtype}")
    if y.shape != (N,):
        raise ValueError(f"y must have shape ({N},) (one label per example of X), got {y.shape}")
    return y


def _require_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < np.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_initial_loss(make_model, X, y, reg=1.0, rtol=0.05):
    """The notes' first sanity check: at initialization the loss is about log(C).

    Inputs:
    - make_model: callable reg -> model (e.g. ``lambda reg: TwoLayerNet(reg=reg)``); called
      twice from the same global random state, so both models start with the same weights.
    - X: (N, d_1, ..., d_k) a batch of data; y: (N,) its labels.
    - reg: the regularization strength (> 0) that must raise the loss.
    - rtol: allowed relative distance of the unregularized loss from log(C).

    Returns a dict: loss (reg 0), expected (log C), loss_with_reg, ok (both checks pass) and
    message (what failed, and the usual cause).
    """
    reg = _require_positive("reg", reg)
    rtol = _require_positive("rtol", rtol)
    X = np.asarray(X)
    if X.ndim < 2:
        raise ValueError(f"X must have shape (N, d_1, ..., d_k), got shape {X.shape}")
    y = _require_labels(y, X.shape[0])
    state = np.random.get_state()
    model = make_model(0.0)
    np.random.set_state(state)
    model_reg = make_model(reg)
    num_classes = model.loss(X).shape[1]
    loss, _ = model.loss(X, y)
    loss_reg, _ = model_reg.loss(X, y)
    expected = math.log(num_classes)
    problems = []
    if not abs(float(loss) - expected) <= rtol * expected:
        problems.append(
            f"initial loss {float(loss):.4f} is not log(C) = {expected:.4f} for "
            f"C={num_classes} (weights too large, or a bug in the loss)"
        )
    if not float(loss_reg) > float(loss):
        problems.append(
            f"loss with reg={reg:g} ({float(loss_reg):.4f}) is not above the loss "
            f"without ({float(loss):.4f}): the regularization term is missing"
        )
    return {
        "loss": float(loss),
        "expected": expected,
        "loss_with_reg": float(loss_reg),
        "ok": not problems,
        "message": "; ".join(problems) or "ok",
    }


def overfit_small_subset(model, data, num_train=50, **solver_kwargs):
    """The notes' second sanity check: train on a tiny subset until training accuracy is 100%.

    Inputs:
    - model: a model for ``Solver`` (``params`` and ``loss``), freshly initialized, with no
      regularization for a clean test.
    - data: Solver's data dict; the first ``num_train`` training examples are used, the
      validation split as given.
    - num_train: size of the subset (1 <= num_train <= N_train).
    - solver_kwargs: passed to ``Solver`` (e.g. ``update_rule``, ``optim_config``,
      ``num_epochs``); ``verbose`` defaults to False here.

    Returns a dict: train_acc (of the final weights, on the whole subset), ok (train_acc == 1),
    solver (its histories show how fast the loss fell).
    """
    if not isinstance(data, dict) or "X_train" not in data or "y_train" not in data:
        raise ValueError("data must be Solver's dict with 'X_train', 'y_train', 'X_val', 'y_val'")
    n = len(data["X_train"])
    if (
        isinstance(num_train, bool)
        or not isinstance(num_train, numbers.Integral)
        or not (1 <= num_train <= n)
    ):
        raise ValueError(f"num_train must be an integer in [1, {n}], got {num_train!r}")
    small = dict(data, X_train=data["X_train"][:num_train], y_train=data["y_train"][:num_train])
    solver_kwargs.setdefault("verbose", False)
    solver_kwargs.setdefault("num_train_samples", None)
    solver = Solver(model, small, **solver_kwargs)
    solver.train()
    # The accuracy of the final weights (checked on the whole subset after the last iteration):
    # Solver swaps the best-validation weights into the model at the end, which on a tiny subset
    # are often those of an early iteration.
    train_acc = float(solver.train_acc_history[-1])
    return {"train_acc": train_acc, "ok": train_acc == 1.0, "solver": solver}


def _layer_stats(a, activation):
    """Statistics of one hidden layer's output a: (N, H)."""
    if activation == "relu":
        saturated = a <= 0
    elif activation == "sigmoid":
        saturated = (a < SATURATION_MARGIN) | (a > 1 - SATURATION_MARGIN)
    else:  # tanh
        saturated = np.abs(a) > 1 - SATURATION_MARGIN
    return {
        "mean": float(a.mean()),
        "std": float(a.std()),
        # A unit that is zero for every example passes no gradient back: a dead ReLU.
        "dead_fraction": float(np.mean(np.all(a == 0, axis=0))),
        # Entries where the nonlinearity's local gradient is (near) zero.
        "saturated_fraction": float(np.mean(saturated)),
    }


def activation_statistics(model, X, mode="train"):
    """Per-layer statistics of a FullyConnectedNet's hidden activations for the batch X.

    Inputs:
    - model: a ``FullyConnectedNet`` (anything with ``hidden_activations(X, mode)`` and
      ``activation``).
    - X: (N, d_1, ..., d_k) batch of data.
    - mode: "train" (batch statistics and dropout, as the network sees data while training) or
      "test"; batchnorm's running averages are not changed either way.

    Returns a list with one dict per hidden layer: layer (1-based), mean, std, dead_fraction
    (units that are 0 for every example of X), saturated_fraction (entries where the
    nonlinearity's gradient is ~0: ReLU outputs <= 0, sigmoid/tanh outputs within
    SATURATION_MARGIN of their bounds).
    """
    if not callable(getattr(model, "hidden_activations", None)):
        raise TypeError(
            f"model must be a FullyConnectedNet (with hidden_activations), got "
            f"{type(model).__name__}"
        )
    X = np.asarray(X)
    if X.ndim < 2 or X.shape[0] < 1:
        raise ValueError(f"X must have shape (N, d_1, ..., d_k) with N >= 1, got {X.shape}")
    activation = getattr(model, "activation", "relu")
    stats = []
    for i, a in enumerate(model.hidden_activations(X, mode=mode), start=1):
        stats.append({"layer": i, **_layer_stats(np.asarray(a, dtype=np.float64), activation)})
    return stats


def gradient_norms(model, X, y):
    """||dL/dp|| for every parameter p of a model on one batch.

    Inputs: model (``params``, ``loss(X, y)``); X: (N, d_1, ..., d_k); y: (N,) labels.
    Returns dict parameter name -> L2 norm of its gradient (float).
    """
    X = np.asarray(X)
    require_ndim("X", X, tuple(range(2, 8)), "(N, d_1, ..., d_k)")
    y = _require_labels(y, X.shape[0])
    _, grads = model.loss(X, y)
    return {name: float(np.linalg.norm(g)) for name, g in grads.items()}


def summarize_update_ratios(update_ratio_history, last=None):
    """One number per parameter from ``Solver.update_ratio_history``, with a verdict.

    Inputs:
    - update_ratio_history: dict name -> list of ||update|| / ||w|| per iteration.
    - last: use only the last ``last`` iterations (None: all).

    Returns dict name -> {"median": float (NaN entries ignored), "verdict": "ok", "too low"
    (< HEALTHY_UPDATE_RATIO / RATIO_TOLERANCE: learning rate probably too low), "too high"
    (> HEALTHY_UPDATE_RATIO * RATIO_TOLERANCE) or "undefined" (no finite ratio)}.
    """
    if not isinstance(update_ratio_history, dict):
        raise TypeError(
            f"update_ratio_history must be a dict name -> list of ratios, got "
            f"{type(update_ratio_history).__name__}"
        )
    if last is not None and (
        isinstance(last, bool) or not isinstance(last, numbers.Integral) or last < 1
    ):
        raise ValueError(f"last must be a positive integer or None, got {last!r}")
    out = {}
    for name, ratios in update_ratio_history.items():
        r = np.asarray(ratios, dtype=np.float64)
        if last is not None:
            r = r[-last:]
        r = r[np.isfinite(r)]
        if r.size == 0:
            out[name] = {"median": float("nan"), "verdict": "undefined"}
            continue
        med = float(np.median(r))
        verdict = "ok"
        if med < HEALTHY_UPDATE_RATIO / RATIO_TOLERANCE:
            verdict = "too low"
        elif med > HEALTHY_UPDATE_RATIO * RATIO_TOLERANCE:
            verdict = "too high"
        out[name] = {"median": med, "verdict": verdict}
    return out
