"""Reports: a readable table, JSON for other tools, and Gradescope's results.json.

Gradescope's autograder reads ``/autograder/results/results.json`` with this structure
(https://gradescope-autograders.readthedocs.io/en/latest/specs/): a top-level object with
"tests" (a list of objects with "name", "score", "max_score", "status", "output",
"visibility"), "score" (the total), "execution_time", "output", "visibility" and
"stdout_visibility". ``gradescope_results`` builds exactly that.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import textwrap

from cs231n_grader._version import __version__
from cs231n_grader.engine import TestResult
from cs231n_grader.items import all_test_names
from cs231n_grader.thresholds import THRESHOLDS

LABELS = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "timeout": "TIMEOUT",
          "crash": "CRASH", "not run": "NOT RUN", "missing": "MISSING", "skipped": "SKIPPED"}


class WeightsError(ValueError):
    """The --weights file is not a JSON object of known test names to points."""


def load_weights(path: str) -> dict:
    """JSON object: test name -> points (a number >= 0); the optional key "default" gives the
    points of graded tests the file does not name (0 when absent)."""
    try:
        with open(path, encoding="utf-8") as f:
            weights = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read weights file {path!r}: {exc}") from exc
    if not isinstance(weights, dict):
        raise WeightsError(f"{path}: expected a JSON object of test name -> points")
    known = set(all_test_names())
    unknown = sorted(k for k in weights if k not in known and k != "default")
    if unknown:
        raise WeightsError(f"{path}: unknown test names {unknown} (see nn-twins-grade --list)")
    for k, v in weights.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise WeightsError(f"{path}: points for {k!r} must be a number >= 0, got {v!r}")
    return weights


@dataclasses.dataclass
class Scored:
    result: TestResult
    score: float
    max_score: float


def score(results: list, weights: dict | None = None) -> list:
    """Points per test: 1 each without weights; with weights, the listed points (tests the
    weights name but the submission lacks are added as MISSING with 0 points)."""
    out = []
    seen = set()
    for r in results:
        seen.add(r.name)
        if r.verdict == "skipped":
            pts = 0.0  # the grader's problem (reference unavailable), not the student's
        elif weights is None:
            pts = 1.0
        else:
            pts = float(weights.get(r.name, weights.get("default", 0.0)))
        out.append(Scored(r, pts if r.passed else 0.0, pts))
    for name in (weights or {}):
        if name != "default" and name not in seen:
            r = TestResult(name, "", "", "missing",
                           hint="not found in the submission (no file defines it)")
            out.append(Scored(r, 0.0, float(weights[name])))
    return out


def _finite(r: TestResult):
    e = r.max_rel_error
    return e if e is not None and math.isfinite(e) else None


def _err(e) -> str:
    return "-" if e is None else f"{e:.1e}"


def _cases(r: TestResult) -> str:
    return f"{r.cases_passed}/{r.cases_total}" if r.cases_total else "-"


def _pts(x: float) -> str:
    return f"{x:g}"


def table(scored: list, student: str, seed: int, notes=(), width: int | None = None) -> str:
    width = width or max(120, shutil.get_terminal_size((120, 20)).columns)
    rows = [(s.result.name, LABELS[s.result.verdict], _err(s.result.max_rel_error),
             _cases(s.result), s.result.hint) for s in scored]
    w0 = max([len("test")] + [len(r[0]) for r in rows])
    head = f"{'test':<{w0}}  {'verdict':<8} {'max rel err':>11}  {'cases':>5}  hint"
    lines = [f"nn-twins-grade {__version__}: {student} (seed {seed})", "", head,
             "-" * min(width, len(head) + 40)]
    room = max(20, width - len(head) + 4)
    for name, verdict, err, cases, hint in rows:
        if len(hint) > room:
            hint = hint[:room - 3] + "..."
        lines.append(f"{name:<{w0}}  {verdict:<8} {err:>11}  {cases:>5}  {hint}".rstrip())
    total = sum(s.score for s in scored)
    top = sum(s.max_score for s in scored)
    passed = sum(s.result.passed for s in scored)
    lines += ["", f"Score: {_pts(total)}/{_pts(top)}  ({passed} of {len(scored)} tests passed)"]
    failing = [s.result for s in scored if not s.result.passed]
    if failing:
        lines += ["", "Details:"]
        for r in failing:
            lines.append(f"  {r.name}" + (f"  ({r.file})" if r.file else "") + f": "
                         f"{LABELS[r.verdict]}")
            for d in (r.details or [r.hint])[:8]:
                lines += textwrap.wrap(d, width - 6, initial_indent="    ",
                                       subsequent_indent="      ")
            if len(r.details) > 8:
                lines.append(f"    ... and {len(r.details) - 8} more")
            if r.output.strip():
                lines.append("    your code printed (last lines):")
                lines += ["      " + ln for ln in r.output.strip().splitlines()[-5:]]
    all_notes = list(notes)
    for s in scored:
        all_notes += [f"{s.result.name}: {n}" for n in s.result.notes]
    if all_notes:
        lines += ["", "Notes:"]
        for n in all_notes:
            lines += textwrap.wrap(n, width - 4, initial_indent="  - ", subsequent_indent="    ")
    return "\n".join(lines) + "\n"


def _test_text(r: TestResult) -> str:
    parts = [f"{LABELS[r.verdict]}" + (f" ({r.file})" if r.file else "")]
    if r.cases_total:
        parts.append(f"cases passed: {r.cases_passed}/{r.cases_total}; max rel error: "
                     f"{_err(r.max_rel_error)}")
    if not r.passed:
        parts += r.details or [r.hint]
    parts += [f"note: {n}" for n in r.notes]
    if r.output.strip():
        parts += ["your code printed (last lines):", r.output.strip()[-1500:]]
    return "\n".join(parts)


def as_json(scored: list, student: str, seed: int, limits, notes=()) -> dict:
    return {
        "tool": "nn-twins-grade", "version": __version__, "student": student, "seed": seed,
        "thresholds": dict(THRESHOLDS),
        "limits": {"timeout_s": limits.timeout, "memory_mb": limits.memory_mb},
        "score": sum(s.score for s in scored), "max_score": sum(s.max_score for s in scored),
        "notes": list(notes),
        "tests": [{**dataclasses.asdict(s.result), "max_rel_error": _finite(s.result),
                   "passed": s.result.passed, "score": s.score, "max_score": s.max_score}
                  for s in scored],
    }


def gradescope_results(scored: list, student: str, seed: int, execution_time: float,
                       notes=(), visibility: str = "visible") -> dict:
    """Gradescope's results.json (see the module docstring)."""
    passed = sum(s.result.passed for s in scored)
    summary = [f"nn-twins-grade {__version__}: {passed} of {len(scored)} tests passed "
               f"(seed {seed})."]
    summary += list(notes)
    return {
        "score": sum(s.score for s in scored),
        "execution_time": round(float(execution_time), 3),
        "output": "\n".join(summary),
        "visibility": visibility,
        "stdout_visibility": "hidden",
        "tests": [{
            "name": s.result.name,
            "score": s.score,
            "max_score": s.max_score,
            "status": "passed" if s.result.passed else "failed",
            "output": _test_text(s.result),
            "visibility": visibility,
        } for s in scored],
    }
