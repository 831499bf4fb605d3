"""Centered-difference numerical gradients and CS231n's relative error.

Contract (CS231n's): the ``eval_*`` functions perturb ``x`` IN PLACE, one entry at a time, call
``f`` and restore the entry before moving on, so ``f`` may close over ``x`` (a model reading
``self.params[name]`` on every call works). On return ``x`` holds its original values.

    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2h)      (error O(h^2), unlike the one-sided O(h))
"""

from __future__ import annotations

from collections.abc import Callable
from random import randrange
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "eval_numerical_gradient",
    "eval_numerical_gradient_array",
    "eval_numerical_gradient_blobs",
    "grad_check_sparse",
    "rel_error",
]


def rel_error(x: ArrayLike, y: ArrayLike) -> float:
    """CS231n's relative error: max over entries of |x - y| / max(1e-8, |x| + |y|).

    Entrywise (not a norm ratio), so one bad entry is enough to fail; the 1e-8 floor keeps entries
    that are both ~0 from dividing by zero. x, y: same shape (or one a scalar). Returns a float.
    """
    x, y = np.asarray(x), np.asarray(y)
    # A scalar against an array broadcasts; other mismatches (e.g. (N,) vs (N, 1)) would broadcast
    # into a meaningless matrix, so they are an error.
    if x.shape != y.shape and x.ndim and y.ndim:
        raise ValueError(f"rel_error needs equal shapes, got x {x.shape} and y {y.shape}")
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def eval_numerical_gradient(
    f: Callable[..., Any], x: np.ndarray, verbose: bool = True, h: float = 1e-5
) -> np.ndarray:
    """Numerical gradient of a scalar function.

    f: callable taking x and returning a scalar; x: array (perturbed in place, restored).
    Returns grad with x's shape.
    """
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index", "zerosize_ok"], op_flags=[["readwrite"]])  # type: ignore[list-item]
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        fxph = f(x)
        x[ix] = old - h
        fxmh = f(x)
        x[ix] = old
        grad[ix] = (fxph - fxmh) / (2 * h)
        if verbose:
            print(ix, grad[ix])
        it.iternext()
    return grad


def eval_numerical_gradient_array(
    f: Callable[..., Any], x: np.ndarray, df: np.ndarray, h: float = 1e-5
) -> np.ndarray:
    """Numerical gradient of sum(f(x) * df), i.e. the vector-Jacobian product df^T (df/dx).

    f: callable taking x and returning an array of df's shape; x: array (perturbed in place,
    restored); df: upstream gradient. Returns grad with x's shape.
    """
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index", "zerosize_ok"], op_flags=[["readwrite"]])  # type: ignore[list-item]
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        pos = np.array(f(x), copy=True)
        x[ix] = old - h
        neg = np.array(f(x), copy=True)
        x[ix] = old
        grad[ix] = np.sum((pos - neg) * df) / (2 * h)
        it.iternext()
    return grad


def eval_numerical_gradient_blobs(
    f: Callable[..., Any], inputs: tuple[Any, ...], output: Any, h: float = 1e-5
) -> list[np.ndarray]:
    """Numerical gradients for functions operating on blobs (CS231n's interface).

    f: called as f(*inputs), writes its result into ``output.vals``; inputs: objects with
    ``.vals`` (array) and ``.diffs``; output: object with ``.vals`` and ``.diffs`` (the upstream
    gradient). Returns a list of gradients, one per input, each with its ``.vals`` shape.
    """
    numeric_diffs = []
    for input_blob in inputs:
        diff = np.zeros_like(input_blob.diffs)
        it = np.nditer(input_blob.vals, flags=["multi_index"], op_flags=[["readwrite"]])
        while not it.finished:
            idx = it.multi_index
            orig = input_blob.vals[idx]
            input_blob.vals[idx] = orig + h
            f(*(inputs + (output,)))
            pos = np.copy(output.vals)
            input_blob.vals[idx] = orig - h
            f(*(inputs + (output,)))
            neg = np.copy(output.vals)
            input_blob.vals[idx] = orig
            diff[idx] = np.sum((pos - neg) * output.diffs) / (2.0 * h)
            it.iternext()
        numeric_diffs.append(diff)
    return numeric_diffs


def grad_check_sparse(
    f: Callable[..., Any],
    x: np.ndarray,
    analytic_grad: np.ndarray,
    num_checks: int = 10,
    h: float = 1e-5,
) -> list[float]:
    """Compare ``analytic_grad`` with the centered difference at ``num_checks`` random entries.

    f: callable taking x and returning a scalar; x: array (perturbed in place, restored);
    analytic_grad: x's shape. Entries are drawn with Python's ``random`` module (seed it with
    ``random.seed`` for reproducibility), as in CS231n. Prints one line per check and returns the
    list of relative errors (CS231n only prints).
    """
    if np.shape(analytic_grad) != np.shape(x):
        raise ValueError(
            f"analytic_grad must have x's shape {np.shape(x)}, got {np.shape(analytic_grad)}"
        )
    errors = []
    for _ in range(num_checks):
        ix = tuple(randrange(m) for m in x.shape)
        old = x[ix]
        x[ix] = old + h
        fxph = f(x)
        x[ix] = old - h
        fxmh = f(x)
        x[ix] = old
        grad_numerical = (fxph - fxmh) / (2 * h)
        grad_analytic = analytic_grad[ix]
        denom = max(1e-300, abs(grad_numerical) + abs(grad_analytic))
        err = abs(grad_numerical - grad_analytic) / denom
        errors.append(float(err))
        print(f"numerical: {grad_numerical:f} analytic: {grad_analytic:f}, relative error: {err:e}")
    return errors
