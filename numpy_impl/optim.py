"""First-order update rules with CS231n's interface.

Every rule is ``rule(w, dw, config=None) -> (next_w, config)``:
  w: array of parameters; dw: gradient, w's shape; config: dict of hyperparameters and state,
  defaults filled with ``config.setdefault`` (so the caller's dict keeps the state between steps).
``next_w`` and every state array are NEW arrays: w and dw are never modified in place. State
arrays follow w's dtype (float32 parameters stay float32: hyperparameters are read as Python
floats, since a NumPy float64 scalar such as a decayed learning rate would upcast).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twin_checks import check_same_shape_update, require_dict

__all__ = ["sgd", "sgd_momentum", "nesterov_momentum", "rmsprop", "adam"]


def _start(w: np.ndarray, dw: np.ndarray, config: dict[str, Any] | None) -> dict[str, Any]:
    check_same_shape_update(w, dw)
    if config is None:
        return {}
    return require_dict(config, "config")


def sgd(
    w: np.ndarray, dw: np.ndarray, config: dict[str, Any] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Vanilla stochastic gradient descent: w - learning_rate * dw.

    config: 'learning_rate' (1e-2).
    """
    config = _start(w, dw, config)
    config.setdefault("learning_rate", 1e-2)
    next_w = w - float(config["learning_rate"]) * dw
    return next_w, config


def sgd_momentum(
    w: np.ndarray, dw: np.ndarray, config: dict[str, Any] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """SGD with momentum (CS231n's form: the learning rate is inside the velocity).

        v = momentum * v - learning_rate * dw;   w = w + v

    config: 'learning_rate' (1e-2), 'momentum' (0.9), 'velocity' (zeros like w).
    PyTorch's SGD(momentum) keeps v' = momentum * v' + dw and steps w - lr * v'; with a constant
    learning rate the two give the same iterates (v = -lr * v').
    """
    config = _start(w, dw, config)
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    v = config.get("velocity")
    if v is None:
        v = np.zeros_like(w)
    v = float(config["momentum"]) * v - float(config["learning_rate"]) * dw
    next_w = w + v
    config["velocity"] = v
    return next_w, config


def nesterov_momentum(
    w: np.ndarray, dw: np.ndarray, config: dict[str, Any] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Nesterov momentum in the course notes' form (the look-ahead folded into the update).

        v_prev = v;  v = momentum * v - learning_rate * dw;  w = w - momentum * v_prev
                                                                 + (1 + momentum) * v

    config: 'learning_rate' (1e-2), 'momentum' (0.9), 'velocity' (zeros like w).
    """
    config = _start(w, dw, config)
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    mu = float(config["momentum"])
    v_prev = config.get("velocity")
    if v_prev is None:
        v_prev = np.zeros_like(w)
    v = mu * v_prev - float(config["learning_rate"]) * dw
    next_w = w - mu * v_prev + (1 + mu) * v
    config["velocity"] = v
    return next_w, config


def rmsprop(
    w: np.ndarray, dw: np.ndarray, config: dict[str, Any] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """RMSProp: per-parameter step scaled by a moving average of squared gradients.

        cache = decay_rate * cache + (1 - decay_rate) * dw**2
        w = w - learning_rate * dw / (sqrt(cache) + epsilon)

    config: 'learning_rate' (1e-2), 'decay_rate' (0.99), 'epsilon' (1e-8), 'cache' (zeros like w).
    (PyTorch's RMSprop has alpha = decay_rate and the same epsilon placement outside the sqrt.)
    """
    config = _start(w, dw, config)
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    cache = config.get("cache")
    if cache is None:
        cache = np.zeros_like(w)
    decay = float(config["decay_rate"])
    cache = decay * cache + (1 - decay) * (dw * dw)
    lr, eps = float(config["learning_rate"]), float(config["epsilon"])
    next_w = w - lr * dw / (np.sqrt(cache) + eps)
    config["cache"] = cache
    return next_w, config


def adam(
    w: np.ndarray, dw: np.ndarray, config: dict[str, Any] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Adam with bias correction.

        t = t + 1   (FIRST, so the first step divides by 1 - beta**1, not by 0)
        m = beta1 * m + (1 - beta1) * dw;        v = beta2 * v + (1 - beta2) * dw**2
        mhat = m / (1 - beta1**t);               vhat = v / (1 - beta2**t)
        w = w - learning_rate * mhat / (sqrt(vhat) + epsilon)

    config: 'learning_rate' (1e-3), 'beta1' (0.9), 'beta2' (0.999), 'epsilon' (1e-8),
    'm', 'v' (zeros like w), 't' (0).
    """
    config = _start(w, dw, config)
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("t", 0)
    m, v = config.get("m"), config.get("v")
    if m is None:
        m = np.zeros_like(w)
    if v is None:
        v = np.zeros_like(w)
    b1, b2 = float(config["beta1"]), float(config["beta2"])
    t = int(config["t"]) + 1
    m = b1 * m + (1 - b1) * dw
    v = b2 * v + (1 - b2) * (dw * dw)
    mhat = m / (1 - b1**t)
    vhat = v / (1 - b2**t)
    lr, eps = float(config["learning_rate"]), float(config["epsilon"])
    next_w = w - lr * mhat / (np.sqrt(vhat) + eps)
    config["t"], config["m"], config["v"] = t, m, v
    return next_w, config
