"""Argument checks shared by the linear losses (svm_loss_*, softmax_loss_*)."""

from __future__ import annotations

import numbers

import numpy as np

from twin_checks import require_float, require_labels, require_ndim, shape_of


def check_linear_loss_args(W, X, y, reg):
    """W: (D, C) weights; X: (N, D) data; y: (N,) labels in [0, C); reg >= 0.

    Returns (N, D, C, dtype) where dtype is the common floating dtype of W and X.
    """
    require_ndim("W", W, 2, "(D, C)")
    require_ndim("X", X, 2, "(N, D)")
    require_float("W", W)
    D, C = shape_of(W)
    N = int(X.shape[0])
    if int(X.shape[1]) != D:
        raise ValueError(
            f"X must have shape (N, {D}) to match W of shape {shape_of(W)}, got {shape_of(X)}"
        )
    if N < 1:
        raise ValueError(f"X must hold at least one example, got shape {shape_of(X)}")
    require_labels(y, N, C)
    if isinstance(reg, bool) or not isinstance(reg, numbers.Real) or reg < 0:
        raise ValueError(f"reg must be a non-negative number, got {reg!r}")
    dtype = np.result_type(W.dtype, X.dtype)
    if not np.issubdtype(dtype, np.floating):
        dtype = W.dtype
    return N, D, C, dtype


def check_delta(delta):
    """The SVM margin: a finite real number >= 0."""
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not 0 <= delta < np.inf:
        raise ValueError(f"delta must be a finite number >= 0, got {delta!r}")
    return float(delta)
