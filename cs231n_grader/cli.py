"""The ``nn-twins-grade`` command (also ``python -m cs231n_grader``)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from cs231n_grader._version import __version__
from cs231n_grader.profiles import ASSIGNMENT_CHOICES
from cs231n_grader.report import VISIBILITIES
from cs231n_grader.thresholds import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, THRESHOLDS

EPILOG = f"""\
Thresholds (CS231n's rel_error against the reference, float64): outputs
{THRESHOLDS["output"]:g}, gradients {THRESHOLDS["gradient"]:g}; differences below
{THRESHOLDS["abs_floor"]:g} x the largest reference magnitude count as round-off.

Student code runs in child processes (one per item) that cannot import the reference or
the grader, with a per-call time limit, a hard limit per item (start-up + calls x --timeout)
and an address-space cap; every process it starts is killed when its item ends. As root,
--student-user NAME runs it as that unprivileged user. This confines faults and the usual
tricks, not a determined attacker: grade untrusted submissions inside a container or VM.

Exit status: 0 when a report was produced (whatever the verdicts), 2 on bad usage or an
unreadable submission (with --format gradescope a results.json explaining it is still written).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nn-twins-grade",
        description="Grade a student's CS231n code (an assignment directory with cs231n/, or "
        "single files such as layers.py) against the nn-twins reference.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "paths",
        nargs="*",
        help="assignment directory, its cs231n/ directory, a "
        "directory of loose files, or .py files (layers.py, fc_net.py, ...)",
    )
    p.add_argument("--format", choices=("table", "json", "gradescope"), default="table")
    p.add_argument(
        "-o",
        "--output",
        help="write the report here (default: stdout; results.json for --format gradescope)",
    )
    p.add_argument(
        "--weights",
        metavar="FILE",
        help="JSON object: test name -> points, or "
        '-> {"points": N, "visibility": ..., "hide_cases": true}; tests it '
        "does not name are omitted unless it has a 'default' key",
    )
    p.add_argument(
        "--assignment",
        default="auto",
        choices=ASSIGNMENT_CHOICES,
        help="grade against this assignment's list of functions and points "
        "(missing ones score 0, other assignments' stubs and course-provided files "
        "are not graded); auto: tell from the files, else 'all' (every function "
        "with a counterpart, 1 point each)",
    )
    p.add_argument(
        "--robustness-deduction",
        type=float,
        default=0.0,
        metavar="F",
        help="fraction of a passing test's points lost for robustness remarks "
        "(inputs modified in place, overflow on huge logits); default 0: remarks "
        "only",
    )
    p.add_argument(
        "--partial-credit",
        action="store_true",
        help="a failing test earns its points times the fraction of its cases that passed",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="PATTERN",
        help="grade only tests or items matching this glob (repeatable), e.g. --only 'conv_*'",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"time limit per call of student code (default {DEFAULT_TIMEOUT_S:g} s)",
    )
    p.add_argument(
        "--memory-mb",
        type=int,
        default=DEFAULT_MEMORY_MB,
        metavar="MB",
        help=f"address-space cap of each child process (default {DEFAULT_MEMORY_MB})",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        metavar="S",
        help="seconds for the whole run; tests not finished by then time out (default: no budget)",
    )
    p.add_argument(
        "--student-user",
        metavar="NAME",
        help="run student code as this "
        "unprivileged user (the grader must run as root), e.g. nobody; every process "
        "of that user is killed at the end, so pick one that runs nothing else",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=min(4, os.cpu_count() or 1),
        metavar="N",
        help="child processes run side by side (default: min(4, CPUs))",
    )
    p.add_argument("--seed", type=int, default=231, help="seed of the inputs (default 231)")
    p.add_argument(
        "--visibility",
        default="visible",
        choices=VISIBILITIES,
        help="Gradescope visibility of the tests (default visible)",
    )
    p.add_argument(
        "--stdout-visibility",
        default="hidden",
        choices=VISIBILITIES,
        help="Gradescope visibility of what the autograder printed (default hidden)",
    )
    p.add_argument(
        "--export-vectors",
        metavar="DIR",
        help="write the reference's inputs and outputs (.npz + index.json) to DIR, with "
        "decode.py (reads them with NumPy alone) and README.md (the comparison rules); no "
        "student path needed",
    )
    p.add_argument("--list", action="store_true", help="list the gradable tests and exit")
    p.add_argument("--version", action="version", version=f"nn-twins-grade {__version__}")
    return p


def _write(text: str, path: str | None) -> None:
    if path is None:
        sys.stdout.write(text)
        return
    from cs231n_grader.json_npz import _atomic_write

    _atomic_write(path, text.encode())


def _list() -> str:
    import importlib

    from cs231n_grader.graded_items import ITEMS

    lines = [f"{'test':<46} {'student file':<38} reference"]
    for item in ITEMS:
        try:
            importlib.import_module(item.ref)
            ref = item.ref
        except Exception as exc:  # noqa: BLE001
            ref = f"{item.ref} (not available: {type(exc).__name__})"
        for t in item.tests.values():
            lines.append(f"{t:<46} {' or '.join(item.files):<38} {ref}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        _write(_list(), args.output)
        return 0
    if args.export_vectors:
        from cs231n_grader.export import export_vectors

        index = export_vectors(args.export_vectors, seed=args.seed, only=args.only)
        n = sum(len(e["cases"]) for e in index["items"])
        print(
            f"wrote {n} cases of {len(index['items'])} items to {args.export_vectors}"
            + (
                f" ({len(index['skipped'])} items skipped: reference not available)"
                if index["skipped"]
                else ""
            ),
            file=sys.stderr,
        )
        if not args.paths:
            return 0
    if not args.paths:
        build_parser().error("give a student path (or --list / --export-vectors DIR)")
    if args.timeout <= 0 or args.memory_mb <= 0 or args.jobs < 1:
        build_parser().error("--timeout, --memory-mb and --jobs must be positive")
    if not 0.0 <= args.robustness_deduction <= 1.0:
        build_parser().error(
            f"--robustness-deduction must be a fraction in [0, 1], got "
            f"{args.robustness_deduction:g}"
        )
    if args.time_budget is not None and not args.time_budget > 0:
        build_parser().error(
            f"--time-budget must be a positive number of seconds, got {args.time_budget:g}"
        )

    import json

    from cs231n_grader import engine, profiles, report, runner, sandbox, submission

    try:
        user = sandbox.student_user(args.student_user)
    except sandbox.StudentUserError as exc:
        print(f"nn-twins-grade: {exc}", file=sys.stderr)
        return 2

    weights, options = None, {}
    if args.weights:
        try:
            weights, options = report.load_weights(args.weights)
        except report.WeightsError as exc:
            print(f"nn-twins-grade: {exc}", file=sys.stderr)
            return 2
    start = time.monotonic()
    student = " ".join(args.paths)
    limits = runner.Limits(args.timeout, args.memory_mb)

    def render(results, notes) -> tuple[str, float]:
        scored = report.score(results, weights, args.robustness_deduction, args.partial_credit)
        if args.format == "table":
            return report.table(scored, student, args.seed, notes), 0.0
        if args.format == "json":
            doc = report.as_json(scored, student, args.seed, limits, notes)
        else:
            doc = report.gradescope_results(
                scored,
                student,
                args.seed,
                time.monotonic() - start,
                notes,
                visibility=args.visibility,
                options=options,
                stdout_visibility=args.stdout_visibility,
            )
        return json.dumps(doc, indent=2, allow_nan=False) + "\n", doc["score"]

    path = args.output or ("results.json" if args.format == "gradescope" else None)
    try:
        sub = submission.load(args.paths)
    except submission.SubmissionError as exc:
        print(f"nn-twins-grade: {exc}", file=sys.stderr)
        if args.format == "gradescope":
            _write(render([], [f"Could not grade the submission: {exc}"])[0], path)
        return 2

    def progress(results, done, total):
        # A report on disk from the first finished item on: a run stopped from outside still
        # leaves the scores of the tests it finished.
        note = (
            f"INCOMPLETE: {done} of {total} items graded when this was written (the run "
            "was still going, or was stopped)"
        )
        _write(render(results, [note, *sub.notes])[0], path)

    with sub:
        profile, how = profiles.choose(args.assignment, sub.modules)
        sub.notes.append(how)
        results = engine.grade(
            sub,
            limits,
            seed=args.seed,
            jobs=args.jobs,
            only=args.only,
            time_budget=args.time_budget,
            student_user=user,
            profile=profile,
            on_progress=progress if path and args.format != "table" else None,
        )
        notes = list(sub.notes)
    if not results:
        notes.append(
            "no function or class of the submission has a counterpart in the "
            "reference (see nn-twins-grade --list)"
        )
    # Every process of the student's code is gone by now (engine.grade ends them all): this
    # write is the last word on the results.
    text, total = render(results, notes)
    _write(text, path)
    if args.format == "gradescope":
        print(f"nn-twins-grade: wrote {path} (score {total:g})", file=sys.stderr)
    return 0
