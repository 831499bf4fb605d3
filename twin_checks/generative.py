"""Arguments of the GAN losses."""

from __future__ import annotations

from twin_checks.common import (
    Array,
    dtype_name,
)


def check_scores(name: str, a: Array) -> None:
    """Scores/logits: a non-empty floating array."""
    if not hasattr(a, "shape"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    kind = dtype_name(a)
    if "float" not in kind:
        raise TypeError(f"{name} must be a floating-point array, got dtype {kind}")
    if any(int(s) == 0 for s in a.shape):
        raise ValueError(f"{name} must not be empty (the mean over no scores is undefined)")
