"""Reports: a readable table, JSON for other tools, and Gradescope's results.json.

Gradescope's autograder reads ``/autograder/results/results.json`` with this structure
(https://gradescope-autograders.readthedocs.io/en/latest/specs/): a top-level object with
"tests" (a list of objects with "name", "score", "max_score", "status", "output",
"visibility"), "score" (the total), "execution_time", "output", "visibility" and
"stdout_visibility". ``gradescope_results`` builds exactly that.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import re
import shutil
import textwrap

from cs231n_grader._version import __version__
from cs231n_grader.graded_items import all_test_names
from cs231n_grader.results import TestResult
from cs231n_grader.thresholds import THRESHOLDS

LABELS = {
    "pass": "PASS",
    "fail": "FAIL",
    "error": "ERROR",
    "timeout": "TIMEOUT",
    "crash": "CRASH",
    "not run": "NOT RUN",
    "missing": "MISSING",
    "skipped": "SKIPPED",
}


class WeightsError(ValueError):
    """The --weights file is not a JSON object of known test names to points."""


VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")


@dataclasses.dataclass
class TestOptions:
    """Per-test settings of a weights file besides the points."""

    visibility: str | None = None  # Gradescope visibility of this test (else the run's)
    # True: show pass/fail counts only, not what any case fed or got; a list of label patterns
    # (fnmatch): hide those cases only.
    hide_cases: bool | list = False


def load_weights(path: str) -> tuple[dict, dict]:
    """Read a weights file: a JSON object of test name -> points (a number >= 0) or
    {"points": N, "visibility": "hidden", "hide_cases": true or ["label pattern", ...]}; the
    optional key "default" gives the points of graded tests it does not name (without it those
    tests are omitted).
    Returns (test name -> points, test name -> TestOptions)."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read weights file {path!r}: {exc}") from exc
    if not isinstance(raw, dict):
        raise WeightsError(
            f"{path}: expected a JSON object of test name -> points, got {type(raw).__name__}"
        )
    known = set(all_test_names())
    unknown = sorted(k for k in raw if k not in known and k != "default")
    if unknown:
        raise WeightsError(f"{path}: unknown test names {unknown} (see nn-twins-grade --list)")
    weights, options = {}, {}
    for k, v in raw.items():
        if isinstance(v, dict):
            extra = sorted(set(v) - {"points", "visibility", "hide_cases"})
            if extra or "points" not in v:
                raise WeightsError(
                    f"{path}: {k!r} must be a number or an object with "
                    f"'points' (and optional 'visibility', 'hide_cases'), got "
                    f"keys {sorted(v)}"
                )
            vis = v.get("visibility")
            if vis is not None and vis not in VISIBILITIES:
                raise WeightsError(
                    f"{path}: visibility of {k!r} must be one of "
                    f"{', '.join(VISIBILITIES)}, got {vis!r}"
                )
            hide = v.get("hide_cases", False)
            if not isinstance(hide, bool) and not (
                isinstance(hide, list) and all(isinstance(h, str) for h in hide)
            ):
                raise WeightsError(
                    f"{path}: hide_cases of {k!r} must be true, false or a list of case-label "
                    f"patterns, got {hide!r}"
                )
            options[k] = TestOptions(vis, hide)
            v = v["points"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise WeightsError(f"{path}: points for {k!r} must be a number >= 0, got {v!r}")
        weights[k] = float(v)
    return weights, options


@dataclasses.dataclass
class Scored:
    result: TestResult
    score: float
    max_score: float


def score(
    results: list,
    weights: dict | None = None,
    robustness_deduction: float = 0.0,
    partial_credit: bool = False,
) -> list:
    """Points per test.

    A test is worth its ``weights`` entry (a weights file without a "default" key grades only
    the tests it names: the others are omitted), else its assignment profile's points, else 1.
    A passing test with robustness remarks (see ``TestResult.robustness``) loses
    ``robustness_deduction`` (a fraction) of its points. With ``partial_credit`` a test earns
    its points times the fraction of its cases that passed. Tests the weights name but the
    submission lacks are added as MISSING with 0 points.
    """
    out = []
    seen = set()
    for r in results:
        seen.add(r.name)
        if weights is not None and r.name not in weights and "default" not in weights:
            continue
        if r.verdict == "skipped":
            pts = 0.0  # the grader's problem (reference unavailable), not the student's
        elif weights is not None:
            pts = float(weights.get(r.name, weights.get("default", 0.0)))
        elif r.points is not None:
            pts = float(r.points)
        else:
            pts = 1.0
        out.append(Scored(r, _earned(r, pts, robustness_deduction, partial_credit), pts))
    for name in weights or {}:
        if name != "default" and name not in seen:
            r = TestResult(
                name, "", "", "missing", hint="not found in the submission (no file defines it)"
            )
            out.append(Scored(r, 0.0, float(weights[name])))
    return out


def _earned(r: TestResult, pts: float, deduction: float, partial: bool) -> float:
    if r.passed:
        earned = pts
    elif partial and r.cases_total and r.verdict not in ("missing", "skipped"):
        earned = pts * r.cases_passed / r.cases_total
    else:
        return 0.0
    if r.robustness:
        earned *= 1.0 - deduction
    return earned


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
    rows = [
        (
            s.result.name,
            LABELS[s.result.verdict],
            _err(s.result.max_rel_error),
            _cases(s.result),
            s.result.hint,
        )
        for s in scored
    ]
    w0 = max([len("test")] + [len(r[0]) for r in rows])
    head = f"{'test':<{w0}}  {'verdict':<8} {'max rel err':>11}  {'cases':>5}  hint"
    lines = [
        f"nn-twins-grade {__version__}: {student} (seed {seed})",
        "",
        head,
        "-" * min(width, len(head) + 40),
    ]
    room = max(20, width - len(head) + 4)
    for name, verdict, err, cases, hint in rows:
        if len(hint) > room:
            hint = hint[: room - 3] + "..."
        lines.append(f"{name:<{w0}}  {verdict:<8} {err:>11}  {cases:>5}  {hint}".rstrip())
    total = sum(s.score for s in scored)
    top = sum(s.max_score for s in scored)
    passed = sum(s.result.passed for s in scored)
    lines += ["", f"Score: {_pts(total)}/{_pts(top)}  ({passed} of {len(scored)} tests passed)"]
    failing = [s.result for s in scored if not s.result.passed]
    if failing:
        lines += ["", "Details:"]
        for r in failing:
            lines.append(
                f"  {r.name}" + (f"  ({r.file})" if r.file else "") + f": {LABELS[r.verdict]}"
            )
            for d in (r.details or [r.hint])[:8]:
                lines += textwrap.wrap(
                    d, width - 6, initial_indent="    ", subsequent_indent="      "
                )
            if len(r.details) > 8:
                lines.append(f"    ... and {len(r.details) - 8} more")
            if r.output.strip():
                lines.append("    your code printed (last lines):")
                lines += ["      " + ln for ln in r.output.strip().splitlines()[-5:]]
    all_notes = list(notes)
    for s in scored:
        all_notes += [f"{s.result.name}: {n}" for n in s.result.notes]
        all_notes += [f"{s.result.name}: robustness: {n}" for n in s.result.robustness]
    if all_notes:
        lines += ["", "Notes:"]
        for n in all_notes:
            lines += textwrap.wrap(n, width - 4, initial_indent="  - ", subsequent_indent="    ")
    return "\n".join(lines) + "\n"


def _names_hidden_case(line: str, patterns) -> bool:
    """Does a detail line ("case 'label': ..." or "... (case 'label')") name a hidden case?"""
    labels = re.findall(r"case '([^']*)'", line)
    return any(fnmatch.fnmatchcase(label, p) for label in labels for p in patterns)


def _test_text(r: TestResult, hide_cases: bool | list = False) -> str:
    parts = [f"{LABELS[r.verdict]}" + (f" ({r.file})" if r.file else "")]
    if r.cases_total:
        parts.append(
            f"cases passed: {r.cases_passed}/{r.cases_total}; max rel error: "
            f"{_err(r.max_rel_error)}"
        )
    if hide_cases is True:
        if not r.passed:
            parts.append("the cases of this test are hidden")
        return "\n".join(parts)
    patterns = hide_cases or []
    lines = []
    if not r.passed:
        lines += r.details or [r.hint]
    lines += [f"note: {n}" for n in r.notes]
    lines += [f"robustness: {n}" for n in r.robustness]
    shown = [ln for ln in lines if not _names_hidden_case(ln, patterns)]
    parts += shown
    if len(shown) < len(lines):
        parts.append("(details of hidden cases are not shown)")
    if r.output.strip():
        parts += ["your code printed (last lines):", r.output.strip()[-1500:]]
    return "\n".join(parts)


def as_json(scored: list, student: str, seed: int, limits, notes=()) -> dict:
    """The report for other tools: every test with its verdict, points and cases."""
    return {
        "tool": "nn-twins-grade",
        "version": __version__,
        "student": student,
        "seed": seed,
        "thresholds": dict(THRESHOLDS),
        "limits": {"timeout_s": limits.timeout, "memory_mb": limits.memory_mb},
        "score": sum(s.score for s in scored),
        "max_score": sum(s.max_score for s in scored),
        "notes": list(notes),
        "tests": [
            {
                **dataclasses.asdict(s.result),
                "max_rel_error": _finite(s.result),
                "passed": s.result.passed,
                "score": s.score,
                "max_score": s.max_score,
            }
            for s in scored
        ],
    }


def gradescope_results(
    scored: list,
    student: str,
    seed: int,
    execution_time: float,
    notes=(),
    visibility: str = "visible",
    options=None,
    stdout_visibility: str = "hidden",
) -> dict:
    """Gradescope's results.json (see the module docstring). ``options``: test name ->
    TestOptions (per-test visibility, hidden cases)."""
    options = options or {}
    passed = sum(s.result.passed for s in scored)
    summary = [
        f"nn-twins-grade {__version__}: {passed} of {len(scored)} tests passed (seed {seed})."
    ]
    summary += list(notes)
    tests = []
    for s in scored:
        opt = options.get(s.result.name, TestOptions())
        tests.append(
            {
                "name": s.result.name,
                "score": s.score,
                "max_score": s.max_score,
                "status": "passed" if s.result.passed else "failed",
                "output": _test_text(s.result, opt.hide_cases),
                "visibility": opt.visibility or visibility,
            }
        )
    return {
        "score": sum(s.score for s in scored),
        "execution_time": round(float(execution_time), 3),
        "output": "\n".join(summary),
        "visibility": visibility,
        "stdout_visibility": stdout_visibility,
        "tests": tests,
    }
