"""Read one call's record from the child into a ``CaseResult``: a call that raised, timed
out, crashed or never ran, inputs modified in place, cases the reference could not run."""

from __future__ import annotations

import os

import numpy as np

from cs231n_grader.context import Context
from cs231n_grader.graded_items import Item
from cs231n_grader.results import CaseResult


def _pretty_where(where: str, ctx: Context) -> str:
    root = ctx.sub.root.rstrip(os.sep) + os.sep
    return where.replace(root, "") if where else ""


def error_status(err: dict) -> str:
    return {"Timeout": "timeout", "Crash": "crash", "NotRun": "not run", "Missing": "missing"}.get(
        err["type"], "error"
    )


def error_message(err: dict, ctx: Context) -> str:
    kind, msg = err["type"], err.get("message", "")
    if kind == "Timeout":
        return f"timed out: {msg}"
    if kind == "Crash":
        return f"crashed: {msg}"
    if kind == "NotRun":
        return f"not run: {msg}"
    if kind == "Missing":
        return msg
    if kind == "ReturnType":
        return msg
    where = _pretty_where(err.get("where", ""), ctx)
    text = f"raised {kind}: {msg}" if msg else f"raised {kind}"
    if kind == "MemoryError":
        text += f" (memory cap {ctx.limits.memory_mb} MiB)"
    if kind == "OSError" and "File too large" in msg:
        text += " (output size limit: printing too much?)"
    return text + (f"  [at {where}]" if where else "")


def fail_record(cr: CaseResult, s: dict | None, ctx: Context) -> bool:
    """Record a missing or failed call on ``cr``; True if there is nothing more to compare."""
    if s is None:
        cr.fail("not run (an earlier call of this item hung or crashed)", "not run")
        return True
    if s.get("error"):
        cr.fail(error_message(s["error"], ctx), error_status(s["error"]))
        return True
    return False


def record_mutations(item: Item, s: dict, cr: CaseResult) -> None:
    for name in s.get("mutated", []):
        if name in item.may_mutate:
            cr.notes.append(
                f"updates {name} in place (CS231n's starter code does; the "
                "reference returns a new array)"
            )
        else:
            cr.robustness.append(
                f"modifies its input {name} in place (callers' arrays change; "
                "compute into a new array)"
            )


def new_case(case: dict, i: int) -> CaseResult:
    return CaseResult(case["label"], i, dict(case.get("meta") or {}))


def reference_failed(cr: CaseResult, r: dict | None) -> bool:
    if r is None or r.get("error"):
        why = (r or {}).get("error") or {"type": "NotRun", "message": "no result"}
        cr.status = "skipped"
        cr.skip_reason = f"{why['type']}: {why.get('message', '')}"
        return True
    return False


def as_tuple(value, n: int):
    if n == 1 and isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, (tuple, list)) and len(value) == n:
        return list(value)
    return None
