"""Compare one student value with the reference's, and describe how a wrong gradient is wrong.

Errors are CS231n's ``rel_error`` from ``numpy_impl.gradient_check``; thresholds come from
``thresholds.THRESHOLDS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from cs231n_grader.json_npz import Unsupported
from cs231n_grader.thresholds import THRESHOLDS
from numpy_impl.gradient_check import rel_error


@dataclass
class Cmp:
    key: str  # what was compared: 'out', 'dx', "bn_param['running_mean']", "grads['W1']"
    ok: bool
    err: float | None = None  # rel_error, when the shapes allowed one
    message: str = ""  # why it failed
    kind: str = "value"  # 'value', 'shape', 'type', 'nan', 'missing'


def describe(value) -> str:
    """Short description of what a student's function returned."""
    if value is None:
        return "None"
    if isinstance(value, Unsupported):
        return f"a {value.type_name}"
    if isinstance(value, np.ndarray):
        return f"an ndarray of shape {value.shape} ({value.dtype})"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(describe(v) for v in value[:4]) + (", ..." if len(value) > 4 else "")
        return f"a {type(value).__name__} of {len(value)} ({inner})"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(value)[:8]}"
    return f"a {type(value).__name__} ({value!r})"[:120]


def _as_number(v):
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if isinstance(v, np.ndarray) and v.size == 1 and v.dtype.kind in "iuf":
        return float(v.reshape(()))
    return None


def scale_of(*values) -> float:
    """Largest finite magnitude among reference values: sets the absolute round-off floor."""
    m = 0.0
    for v in values:
        try:
            a = np.abs(np.asarray(v, dtype=np.float64))
        except (TypeError, ValueError):
            continue
        a = a[np.isfinite(a)]
        if a.size:
            m = max(m, float(a.max()))
    return m


def compare(
    key: str, student, ref, tol: float, scale: float = 0.0, atol: float | None = None
) -> Cmp:
    """Student vs reference value: type, shape, finiteness, then rel_error <= tol (exact
    equality for integer results such as labels).

    ``scale`` (the largest magnitude among the related reference results, see ``scale_of``)
    sets an absolute floor: differences below THRESHOLDS['abs_floor'] * scale are round-off
    around a value that is mathematically zero and pass even when rel_error's 1e-8 floor would
    not (e.g. the gradient of a bias that batchnorm follows). ``atol`` replaces that floor
    where a result is only as exact as float32 (e.g. the course's float32 positional table).
    """
    atol = THRESHOLDS["abs_floor"] * scale if atol is None else atol
    if ref is None:
        return Cmp(key, student is None, 0.0)
    if student is None:
        return Cmp(key, False, None, f"{key} is None (not implemented yet?)", "type")
    if isinstance(student, Unsupported):
        return Cmp(key, False, None, f"{key} is {describe(student)}", "type")
    ref_arr = np.asarray(ref)
    if ref_arr.ndim == 0 or (not isinstance(ref, np.ndarray) and np.isscalar(ref)):
        s = _as_number(student)
        if s is None:
            return Cmp(
                key, False, None, f"{key} should be a number, got {describe(student)}", "type"
            )
        r = float(ref_arr)
        if not np.isfinite(s) and np.isfinite(r):
            return Cmp(key, False, None, f"{key} is {s} (expected {r:.6g})", "nan")
        if ref_arr.dtype.kind in "iub":
            return Cmp(
                key,
                s == r,
                0.0 if s == r else 1.0,
                "" if s == r else f"{key} is {s:g}, expected {r:g}",
            )
        err = 0.0 if abs(s - r) <= atol else rel_error(s, r)
        ok = err <= tol
        return Cmp(key, ok, err, "" if ok else f"{key} = {s:.8g}, expected {r:.8g}")
    if not isinstance(student, np.ndarray):
        return Cmp(
            key,
            False,
            None,
            f"{key} should be an ndarray of shape {ref_arr.shape}, got {describe(student)}",
            "type",
        )
    if student.shape != ref_arr.shape:
        msg = f"{key} has shape {student.shape}, expected {ref_arr.shape}"
        if student.size == ref_arr.size and student.dtype.kind in "iuf":
            values = np.asarray(student, dtype=np.float64)
            if (
                values.ndim == 2
                and values.T.shape == ref_arr.shape
                and rel_error(values.T, ref_arr) <= tol
                and 1 not in ref_arr.shape
            ):
                msg += " (it is the transpose of the right answer: swap the axes, e.g. .T)"
            elif rel_error(values.reshape(ref_arr.shape), ref_arr) <= tol:
                msg += " (the values are right: reshape it)"
        return Cmp(key, False, None, msg, "shape")
    if student.dtype.kind not in "iufb":
        return Cmp(key, False, None, f"{key} has dtype {student.dtype}", "type")
    if ref_arr.dtype.kind in "iub":
        bad = int(np.sum(student != ref_arr))
        return Cmp(
            key,
            bad == 0,
            0.0 if bad == 0 else 1.0,
            "" if bad == 0 else f"{key}: {bad} of {ref_arr.size} entries differ",
        )
    s = np.asarray(student, dtype=np.float64)
    nonfinite = ~np.isfinite(s) & np.isfinite(ref_arr)
    if nonfinite.any():
        return Cmp(
            key,
            False,
            None,
            f"{key} contains NaN/inf in {int(nonfinite.sum())} of {s.size} entries",
            "nan",
        )
    if s.size == 0:
        return Cmp(key, True, 0.0)
    # Entries within the absolute floor count as equal (see above); the rest by rel_error.
    err = rel_error(np.where(np.abs(s - ref_arr) <= atol, ref_arr, s), ref_arr)
    ok = err <= tol
    return Cmp(key, ok, err, "" if ok else f"{key} differs (rel error {err:.1e})")


def matches(student, expected, tol) -> bool:
    """Loose match for diagnoses: same shape and rel_error <= tol, NaN matching NaN."""
    try:
        s = np.asarray(student, dtype=np.float64)
        e = np.asarray(expected, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    if s.shape != e.shape:
        return False
    both_nan = np.isnan(s) & np.isnan(e)
    if not np.array_equal(np.isfinite(s), np.isfinite(e)):
        return False
    fin = np.isfinite(s)
    if not np.array_equal(s[~fin & ~both_nan], e[~fin & ~both_nan]):
        return False
    return not fin.any() or rel_error(s[fin], e[fin]) <= tol


def constant_factor(student, ref) -> float | None:
    """c != 1 such that student == c * ref (within THRESHOLDS['factor']), else None."""
    s = np.asarray(student, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if s.shape != r.shape or not np.all(np.isfinite(s)):
        return None
    rr = float(np.sum(r * r))
    if rr == 0.0:
        return None
    c = float(np.sum(s * r)) / rr
    if c == 0.0 or abs(c - 1) < 1e-9:
        return None
    if rel_error(s, c * r) <= THRESHOLDS["factor"]:
        return c
    return None


def name_factor(c: float, meta: dict) -> str:
    """'a factor of 2', 'a factor of 1/N (N=5)', 'a factor of -1 (the sign is flipped)'..."""
    N = (meta or {}).get("N")
    if abs(c + 1) < 1e-6:
        return "a factor of -1 (the sign is flipped)"
    if N and N > 1:
        if abs(c - N) < 1e-6 * N:
            return f"a factor of N={N} (the batch size: a missing division by N?)"
        if abs(c * N - 1) < 1e-6:
            return f"a factor of 1/N = 1/{N} (divided by the batch size once too often?)"
    frac = Fraction(c).limit_denominator(16)
    if abs(float(frac) - c) < 1e-6 * max(1.0, abs(c)):
        return f"a factor of {frac}"
    return f"a factor of {c:.6g}"


def pattern(student, ref, tol) -> str:
    """How a wrong array differs from the reference, when there is a simple description."""
    s = np.asarray(student, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if s.shape != r.shape:
        return ""
    if not np.any(s) and np.any(r):
        return "it is all zeros"
    if s.ndim == 2 and s.shape[0] == s.shape[1] and rel_error(s.T, r) <= tol:
        return "it is the transpose of the right answer"
    per_entry = np.abs(s - r) / np.maximum(1e-8, np.abs(s) + np.abs(r))
    bad = int(np.sum(per_entry > tol))
    if 0 < bad < s.size:
        return f"wrong in {bad} of {s.size} entries"
    return ""
