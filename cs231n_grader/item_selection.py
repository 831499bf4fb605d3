"""Which items and tests a run grades and reports: ``--only`` patterns, an assignment profile's
tests, the profile's tests a submission lacks, and what it defines that the profile ignores."""

from __future__ import annotations

from cs231n_grader.graded_items import ITEMS
from cs231n_grader.results import TestResult


def select_items(only=None) -> list:
    """Items whose test names match any of the fnmatch patterns in ``only`` (all by default)."""
    import fnmatch

    if not only:
        return list(ITEMS)
    return [
        it
        for it in ITEMS
        if any(
            fnmatch.fnmatchcase(t, pat) or fnmatch.fnmatchcase(it.name, pat)
            for t in it.tests.values()
            for pat in only
        )
    ]


def profile_items(profile, only) -> list:
    items = select_items(only)
    if profile is None:
        return items
    return [it for it in items if set(it.tests.values()) & set(profile.points)]


def not_found(profile, results, sub, only) -> list:
    """MISSING results for the profile's tests the submission does not define at all."""
    import fnmatch

    seen = {r.name for r in results}
    out = []
    for item in ITEMS:
        for test in item.tests.values():
            if test not in profile.points or test in seen or profile.is_optional(test):
                continue
            if only and not any(
                fnmatch.fnmatchcase(test, p) or fnmatch.fnmatchcase(item.name, p) for p in only
            ):
                continue
            files = " or ".join(item.files)
            out.append(
                TestResult(
                    test,
                    item.name,
                    item.files[0],
                    "missing",
                    hint=f"{item.requires[test]} is not defined (looked in {files})",
                )
            )
            seen.add(test)
    return out


def ungraded_note(profile, sub) -> str:
    """Which functions the submission defines that the profile does not grade."""
    extra = []
    for item in ITEMS:
        mod = sub.find(item.files, item.functions)
        if mod is None or mod.syntax_error:
            continue
        for test in item.tests.values():
            if (
                test not in profile.points
                and item.requires[test] in mod.defined
                and test not in extra
            ):
                extra.append(test)
    if not extra:
        return ""
    return (
        f"not graded (not part of assignment {profile.assignment}, or course-provided): "
        + ", ".join(extra)
    )


def results_to_report(results, profile, only) -> list:
    """The results to report: those ``only`` asks for, and with a profile its tests only."""
    if only:
        import fnmatch

        results = [
            r
            for r in results
            if any(fnmatch.fnmatchcase(r.name, p) or fnmatch.fnmatchcase(r.item, p) for p in only)
        ]
    if profile is not None:
        results = [r for r in results if r.name in profile.points]
        for r in results:
            r.points = float(profile.points[r.name])
    return results
