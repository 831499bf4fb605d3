"""Fold a test's case results into one ``TestResult``: its verdict (the most severe failure),
the hint and details shown, notes and robustness remarks, and the per-case records."""

from __future__ import annotations

import math

from cs231n_grader.graded_items import Item
from cs231n_grader.results import SEVERITY, CaseResult, TestResult


def _robustness_only(c: CaseResult, item: Item) -> None:
    """A robustness case (e.g. huge logits) that fails on values or raises becomes a robustness
    remark on an otherwise passing case."""
    if c.meta.get("robust") and c.status in ("fail", "error"):
        why = c.messages[0] if c.messages else c.status
        if item.meta.get("nan_hint") and any(m.kind == "nan" for m in c.cmps):
            why += f" ({item.meta['nan_hint']})"
        c.robustness.append(f"case '{c.label}': {why}")
        c.status, c.messages, c.diagnosis = "pass", [], ""


def _case_record(c: CaseResult) -> dict:
    """One case of a test, as plain JSON data."""
    err = c.err if c.err is not None and math.isfinite(c.err) else None
    return {
        "label": c.label,
        "status": c.status,
        "max_rel_error": err,
        "messages": list(c.messages),
        "diagnosis": c.diagnosis,
        "robustness": list(c.robustness),
        "notes": list(c.notes),
    }


def summarize(name, item, file, crs, output="") -> TestResult:
    for c in crs:
        _robustness_only(c, item)
    counted = [c for c in crs if c.status != "skipped"]
    notes, robustness = [], []
    for c in crs:
        for n in c.notes:
            if n not in notes:
                notes.append(n)
        for n in c.robustness:
            if n not in robustness:
                robustness.append(n)
    errs = [c.err for c in counted if c.err is not None]
    res = TestResult(
        name,
        item.name,
        file,
        "pass",
        max(errs) if errs else None,
        notes=notes,
        cases_passed=sum(c.status == "pass" for c in counted),
        cases_total=len(counted),
        robustness=robustness,
        cases=[_case_record(c) for c in crs],
    )
    reasons = []
    for c in crs:
        if c.skip_reason and c.skip_reason not in reasons:
            reasons.append(c.skip_reason)
    if not counted:
        res.verdict = "skipped"
        res.hint = "the reference could not run: " + "; ".join(reasons[:2])
        res.details = [res.hint]
        return res
    if reasons:
        n = len(crs) - len(counted)
        res.notes.append(
            f"{n} case(s) not graded: the reference failed on them ({'; '.join(reasons[:2])})"
        )
    failing = [c for c in counted if c.status != "pass"]
    if not failing:
        return res
    res.verdict = min((c.status for c in failing), key=SEVERITY.index)
    first = next(c for c in failing if c.status == res.verdict)
    diag = next((c.diagnosis for c in failing if c.diagnosis), "")
    nan_hint = item.meta.get("nan_hint")
    if nan_hint and any(m.kind == "nan" for c in failing for m in c.cmps):
        for c in failing:
            if any(m.kind == "nan" for m in c.cmps) and not c.diagnosis:
                c.diagnosis = nan_hint
    res.hint = diag or f"{first.messages[0]} (case '{first.label}')"
    shown = set()
    for c in failing:
        for m in c.messages:
            res.details.append(f"case '{c.label}': {m}")
        if c.diagnosis and c.diagnosis not in shown:
            shown.add(c.diagnosis)
            res.details.append(f"case '{c.label}': diagnosis: {c.diagnosis}")
    if res.verdict in ("error", "timeout", "crash"):
        res.output = output
    return res
