"""Arguments of SimCLR's similarities and NT-Xent loss."""

from __future__ import annotations

import numbers

from twin_checks.common import (
    Array,
    require_ndim,
    require_same_shape,
    shape_of,
)


def check_tau(tau: object) -> float:
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not float(tau) > 0:
        raise ValueError(f"tau (the temperature) must be a positive number, got {tau!r}")
    return float(tau)


def check_pair_args(out_left: Array, out_right: Array) -> None:
    """out_left, out_right: (N, D), the two augmented views of N samples."""
    require_ndim("out_left", out_left, 2, "(N, D)")
    require_same_shape("out_right", out_right, "out_left", out_left)
    if int(out_left.shape[0]) < 1:
        raise ValueError(f"out_left must hold at least one sample, got shape {shape_of(out_left)}")


def check_nonzero_norms(name: str, norms: Array) -> None:
    """Cosine similarity divides by the norm of every row (norms: any shape, >= 0)."""
    if bool((norms == 0).any()):
        what = "is the zero vector" if len(norms.shape) == 0 else "has an all-zero row"
        raise ValueError(f"{name} {what}: its cosine similarity is undefined")
