"""Generic argument checks: shapes, dtypes, numbers and parameter dicts."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any, TypeAlias

# An ndarray or a tensor: the checks read only what both have (.shape, .ndim, .dtype, .min(),
# comparisons), and accept anything else to reject it with a clear message.
Array: TypeAlias = Any


def shape_of(a: Array) -> tuple[int, ...]:
    return tuple(int(s) for s in a.shape)


def dtype_name(a: Array) -> str:
    """'float32', 'int64', ... for an ndarray or a tensor alike: one wording in both twins."""
    return str(a.dtype).removeprefix("torch.")


def numel(a: Array) -> int:
    n = 1
    for s in a.shape:
        n *= int(s)
    return n


def require_ndim(name: str, a: Array, ndim: int | Iterable[int], what: str = "") -> None:
    """Raise ValueError unless ``a.ndim`` is ``ndim`` (an int or a tuple of allowed ints)."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if not hasattr(a, "shape"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    if len(a.shape) not in allowed:
        want = " or ".join(str(n) for n in allowed)
        extra = f" {what}" if what else ""
        raise ValueError(f"{name} must have {want} dimensions{extra}, got shape {shape_of(a)}")


def require_shape(name: str, a: Array, expected: tuple, hint: str = "") -> None:
    """Raise ValueError unless ``a.shape`` matches ``expected`` (``None`` matches any size)."""
    if not hasattr(a, "shape"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    got = shape_of(a)
    ok = len(got) == len(expected) and all(
        e is None or e == g for e, g in zip(expected, got, strict=True)
    )
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        if len(expected) == 1:
            want = want[:-1] + ",)"
        extra = f" ({hint})" if hint else ""
        raise ValueError(f"{name} must have shape {want}{extra}, got {got}")


def require_same_shape(name: str, a: Array, ref_name: str, ref: Array) -> None:
    if shape_of(a) != shape_of(ref):
        raise ValueError(
            f"{name} must have the same shape as {ref_name} {shape_of(ref)}, got {shape_of(a)}"
        )


def require_float(name: str, a: Array) -> None:
    if not hasattr(a, "dtype"):
        raise TypeError(f"{name} must be a floating-point array, got {type(a).__name__}")
    kind = dtype_name(a)
    if "float" not in kind:
        raise TypeError(f"{name} must be a floating-point array, got dtype {kind}")


def require_int_param(name: str, value: object, minimum: int) -> int:
    """A hyperparameter that must be an integer >= minimum (e.g. stride >= 1, pad >= 0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def require_param(params: dict, dict_name: str, key: str) -> Any:
    if not isinstance(params, dict):
        raise TypeError(f"{dict_name} must be a dict, got {type(params).__name__}")
    if key not in params:
        raise ValueError(f"{dict_name} is missing required key {key!r} (has {sorted(params)})")
    return params[key]


def require_dict(params: object, dict_name: str) -> dict:
    if not isinstance(params, dict):
        raise TypeError(f"{dict_name} must be a dict, got {type(params).__name__}")
    return params


def require_nonneg_real(name: str, value: object) -> float:
    """A real hyperparameter that must be finite and >= 0 (e.g. eps)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    if not 0.0 <= float(value) < float("inf"):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return float(value)


def require_unit_interval(name: str, value: object) -> float:
    """A real hyperparameter that must lie in [0, 1] (e.g. batchnorm momentum, decay rates)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return float(value)


def check_dout(dout: Array, expected_shape: tuple) -> None:
    """Upstream gradient must match the forward output recorded in the cache."""
    got = shape_of(dout)
    if got != tuple(expected_shape):
        raise ValueError(
            f"dout must have the forward output's shape {tuple(expected_shape)}, got {got}"
        )


def check_same_shape(name: str, a: Array, ref_name: str, ref: Array) -> None:
    if not hasattr(a, "shape"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    require_same_shape(name, a, ref_name, ref)


def check_same_shape_update(w: Array, dw: Array) -> None:
    """Optimizers: the gradient dw must have w's shape."""
    for name, a in (("w", w), ("dw", dw)):
        if not hasattr(a, "shape"):
            raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    if shape_of(dw) != shape_of(w):
        raise ValueError(f"dw must have the same shape as w {shape_of(w)}, got {shape_of(dw)}")
