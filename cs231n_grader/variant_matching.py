"""Match a student's records against known-bug and accepted variants of the reference: name the
bug a variant reproduces, or pass a case an accepted alternative explains."""

from __future__ import annotations

import numpy as np

from cs231n_grader.compare import matches
from cs231n_grader.reference_runs import variant_records
from cs231n_grader.results import CaseResult
from cs231n_grader.thresholds import THRESHOLDS as T


def accept(cr: CaseResult, note: str) -> None:
    """Pass a case that an accepted alternative explains; its error against the reference
    measures nothing then."""
    cr.status, cr.messages, cr.err = "pass", [], None
    cr.notes = [*cr.notes, note]


def match_bug(item, module, case, S, cr, prefix):
    for message, overrides in item.bugs:
        V = variant_records(item, module, overrides, case, cr.index)
        if not V:
            continue
        if records_match(S, V, cr.index, prefix):
            return "looks like: " + message
    return ""


def records_match(S, V, i, prefix) -> bool:
    """Do the student's records of case i equal the variant's (case 0 of its own run)?"""
    pairs = [
        (k, f"{prefix}/0" + k[len(f"{prefix}/{i}") :])
        for k in S
        if k == f"{prefix}/{i}" or k.startswith(f"{prefix}/{i}/")
    ]
    if not pairs:
        return False
    for sk, vk in pairs:
        s, v = S[sk], V.get(vk)
        if v is None or s.get("error") or v.get("error"):
            return False
        if not _tree_match(s.get("value"), v.get("value")):
            return False
        for name, d in (v.get("state") or {}).items():
            sd = (s.get("state") or {}).get(name) or {}
            if not all(
                k in sd and _tree_match(sd[k], d[k]) for k in d if isinstance(d[k], np.ndarray)
            ):
                return False
    return True


def _tree_match(a, b) -> bool:
    if isinstance(b, dict):
        return isinstance(a, dict) and all(
            k in a and _tree_match(a[k], b[k]) for k in b if isinstance(b[k], np.ndarray)
        )
    if isinstance(b, (tuple, list)):
        return (
            isinstance(a, (tuple, list))
            and len(a) == len(b)
            and all(_tree_match(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(b, (np.ndarray, float, int, np.number)) and not isinstance(b, bool):
        return matches(a, b, T["bug_match"])
    return True
