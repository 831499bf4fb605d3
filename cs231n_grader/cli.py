"""The ``nn-twins-grade`` command (also ``python -m cs231n_grader``)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from cs231n_grader._version import __version__
from cs231n_grader.thresholds import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, THRESHOLDS

EPILOG = f"""\
Thresholds (CS231n's rel_error against the reference, float64): outputs
{THRESHOLDS['output']:g}, gradients {THRESHOLDS['gradient']:g}; differences below
{THRESHOLDS['abs_floor']:g} x the largest reference magnitude count as round-off.

Student code runs in child processes (one per item) with a per-call time limit and an
address-space cap: this isolates faults (exceptions, hangs, crashes, runaway memory); it is
not a security sandbox -- run untrusted submissions inside a container or VM.

Exit status: 0 when a report was produced (whatever the verdicts), 2 on bad usage or an
unreadable submission (with --format gradescope a results.json explaining it is still written).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nn-twins-grade",
        description="Grade a student's CS231n code (an assignment directory with cs231n/, or "
                    "single files such as layers.py) against the nn-twins reference.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", help="assignment directory, its cs231n/ directory, a "
                   "directory of loose files, or .py files (layers.py, fc_net.py, ...)")
    p.add_argument("--format", choices=("table", "json", "gradescope"), default="table")
    p.add_argument("-o", "--output", help="write the report here (default: stdout; "
                   "results.json for --format gradescope)")
    p.add_argument("--weights", metavar="FILE", help="JSON object: test name -> points "
                   "(optional key 'default' for tests it does not name; otherwise 0)")
    p.add_argument("--only", action="append", metavar="PATTERN", help="grade only tests or "
                   "items matching this glob (repeatable), e.g. --only 'conv_*'")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"time limit per call of student code (default {DEFAULT_TIMEOUT_S:g} s)")
    p.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB, metavar="MB",
                   help=f"address-space cap of each child process (default {DEFAULT_MEMORY_MB})")
    p.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), metavar="N",
                   help="child processes run side by side (default: min(4, CPUs))")
    p.add_argument("--seed", type=int, default=231, help="seed of the inputs (default 231)")
    p.add_argument("--visibility", default="visible",
                   choices=("visible", "hidden", "after_due_date", "after_published"),
                   help="Gradescope visibility of the tests (default visible)")
    p.add_argument("--export-vectors", metavar="DIR", help="write the reference's inputs and "
                   "outputs (.npz + index.json) to DIR; no student path needed")
    p.add_argument("--list", action="store_true", help="list the gradable tests and exit")
    p.add_argument("--version", action="version", version=f"nn-twins-grade {__version__}")
    return p


def _write(text: str, path: str | None) -> None:
    if path is None:
        sys.stdout.write(text)
        return
    from cs231n_grader.codec import _atomic_write

    _atomic_write(path, text.encode())


def _list() -> str:
    import importlib

    from cs231n_grader.items import ITEMS

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
        print(f"wrote {n} cases of {len(index['items'])} items to {args.export_vectors}"
              + (f" ({len(index['skipped'])} items skipped: reference not available)"
                 if index["skipped"] else ""), file=sys.stderr)
        if not args.paths:
            return 0
    if not args.paths:
        build_parser().error("give a student path (or --list / --export-vectors DIR)")
    if args.timeout <= 0 or args.memory_mb <= 0 or args.jobs < 1:
        build_parser().error("--timeout, --memory-mb and --jobs must be positive")

    import json

    from cs231n_grader import engine, report, runner, submission

    weights = None
    if args.weights:
        try:
            weights = report.load_weights(args.weights)
        except report.WeightsError as exc:
            print(f"nn-twins-grade: {exc}", file=sys.stderr)
            return 2
    start = time.monotonic()
    student = " ".join(args.paths)
    limits = runner.Limits(args.timeout, args.memory_mb)
    try:
        sub = submission.load(args.paths)
    except submission.SubmissionError as exc:
        print(f"nn-twins-grade: {exc}", file=sys.stderr)
        if args.format == "gradescope":
            scored = report.score([], weights)
            res = report.gradescope_results(scored, student, args.seed, 0.0,
                                            notes=[f"Could not grade the submission: {exc}"],
                                            visibility=args.visibility)
            _write(json.dumps(res, indent=2) + "\n", args.output or "results.json")
        return 2
    with sub:
        results = engine.grade(sub, limits, seed=args.seed, jobs=args.jobs, only=args.only)
        notes = list(sub.notes)
    if not results:
        notes.append("no function or class of the submission has a counterpart in the "
                     "reference (see nn-twins-grade --list)")
    scored = report.score(results, weights)
    elapsed = time.monotonic() - start
    if args.format == "table":
        _write(report.table(scored, student, args.seed, notes), args.output)
    elif args.format == "json":
        doc = report.as_json(scored, student, args.seed, limits, notes)
        _write(json.dumps(doc, indent=2, allow_nan=False) + "\n", args.output)
    else:
        res = report.gradescope_results(scored, student, args.seed, elapsed, notes,
                                        visibility=args.visibility)
        path = args.output or "results.json"
        _write(json.dumps(res, indent=2, allow_nan=False) + "\n", path)
        print(f"nn-twins-grade: wrote {path} (score {res['score']:g})", file=sys.stderr)
    return 0
