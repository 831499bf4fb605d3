"""Grade a submission: for every item of the table that the student's code defines, run the
reference (in this process) and the student's code (in a child process) on the same inputs,
compare every output and gradient (``CHECKS``), and diagnose what disagrees (``DIAGNOSES``).
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cs231n_grader import runner, sandbox
from cs231n_grader.call_records import error_message, error_status
from cs231n_grader.context import Context, child_job
from cs231n_grader.diagnosis import diagnose_layer, diagnose_loss, diagnose_object, diagnose_optim
from cs231n_grader.graded_items import Item
from cs231n_grader.item_selection import not_found, profile_items, results_to_report, ungraded_note
from cs231n_grader.layer_checks import check_layer
from cs231n_grader.loss_optim_checks import check_loss, check_optim
from cs231n_grader.object_checks import check_object
from cs231n_grader.reference_runs import reference_run
from cs231n_grader.results import TestResult
from cs231n_grader.summary import summarize
from cs231n_grader.torch_checks import check_torch, check_torch_module

# Per item kind: compare the student's records with the reference's, case by case.
CHECKS = {
    "layer": check_layer,
    "loss": check_loss,
    "optim": check_optim,
    "object": check_object,
    "torch": check_torch,
    "torch_module": check_torch_module,
}


# Per item kind: explain the failing cases (known bugs, accepted alternatives, gradients).
DIAGNOSES = {
    "layer": diagnose_layer,
    "loss": diagnose_loss,
    "optim": diagnose_optim,
    "object": diagnose_object,
    "torch": lambda *args: None,
    "torch_module": lambda *args: None,
}


@dataclass
class _Prepared:
    """An item ready for its child: the student's module, the tests it defines, and the
    reference's cases and records."""

    item: Item
    mod: object
    present: dict
    missing: list
    module: object
    cases: list
    R: dict


def _prepare(item: Item, ctx: Context):
    """(final results, None) when the item cannot or need not run, else (None, _Prepared)."""
    mod = ctx.sub.find(item.files, item.functions)
    if mod is None:
        return [], None
    present = {
        p: t for p, t in item.tests.items() if mod.syntax_error or item.requires[t] in mod.defined
    }
    if not present:
        return [], None
    missing = [
        TestResult(
            t,
            item.name,
            mod.relpath,
            "missing",
            hint=f"{item.requires[t]} is not defined in {mod.relpath}",
        )
        for p, t in item.tests.items()
        if p not in present
    ]

    def everything(verdict, hint):
        return [
            TestResult(t, item.name, mod.relpath, verdict, hint=hint, details=[hint])
            for t in present.values()
        ] + missing, None

    if mod.syntax_error:
        return everything("error", f"{mod.relpath} does not parse: {mod.syntax_error}")
    if mod.dotted in ctx.import_errors:
        err = ctx.import_errors[mod.dotted]
        return everything(
            error_status(err), f"importing {mod.relpath} failed: {error_message(err, ctx)}"
        )
    try:
        module, cases, R = reference_run(item, ctx.seed)
    except Exception as exc:  # noqa: BLE001 -- reference not written yet, or broken
        return everything(
            "skipped", f"reference {item.ref} is not available ({type(exc).__name__}: {exc})"
        )
    return None, _Prepared(item, mod, present, missing, module, cases, R)


def _part(prep: _Prepared) -> dict:
    return {
        "driver": prep.item.kind,
        "module": prep.mod.dotted,
        "spec": prep.item.spec,
        "cases": prep.cases,
    }


def _finish(prep: _Prepared, records: dict, output: str, ctx: Context) -> list:
    """Compare the student's records with the reference's, diagnose, summarize each test."""
    item = prep.item
    results = CHECKS[item.kind](item, prep.cases, prep.R, records, ctx)
    DIAGNOSES[item.kind](item, prep.cases, prep.R, records, results, ctx, prep.mod, prep.module)
    out = [
        summarize(t, item, prep.mod.relpath, results[p], output)
        for p, t in item.tests.items()
        if p in prep.present
    ]
    return out + prep.missing


def grade_item(item: Item, ctx: Context) -> list:
    done, prep = _prepare(item, ctx)
    if prep is None:
        return done
    S = runner.run_job(child_job(ctx, **_part(prep)), ctx.limits, ctx.harness, ctx.deadline)
    return _finish(prep, S.records, S.output, ctx)


def grade_together(items, ctx: Context) -> list:
    """Grade several items in ONE child (``call_drivers`` 'multi'): for the PyTorch items, whose
    children spend most of their time importing torch. Returns one result list per item."""
    prepared = [_prepare(item, ctx) for item in items]
    parts = [prep for _, prep in prepared if prep is not None]
    if not parts:
        return [done for done, _ in prepared]
    job = child_job(ctx, driver="multi", parts=[_part(p) for p in parts])
    S = runner.run_job(job, ctx.limits, ctx.harness, ctx.deadline)
    out = []
    k = 0
    for done, prep in prepared:
        if prep is None:
            out.append(done)
            continue
        records = {
            key.partition("|")[2]: rec
            for key, rec in S.records.items()
            if key.partition("|")[0] == str(k)
        }
        err = (records.get(f"import:{prep.mod.dotted}") or {}).get("error")
        if err:  # the import check left these files out: the shared child found it
            hint = f"importing {prep.mod.relpath} failed: {error_message(err, ctx)}"
            out.append(
                [
                    TestResult(
                        t,
                        prep.item.name,
                        prep.mod.relpath,
                        error_status(err),
                        hint=hint,
                        details=[hint],
                        output=S.output,
                    )
                    for t in prep.present.values()
                ]
                + prep.missing
            )
        else:
            out.append(_finish(prep, records, S.output, ctx))
        k += 1
    return out


def preflight_imports(ctx: Context, modules) -> dict:
    """Import each student module once, in one child: syntax errors, import errors, and
    module-level code that hangs are found once instead of once per item."""
    modules = sorted(set(modules))
    if not modules:
        return {}
    job = child_job(ctx, driver="import", modules=modules)
    res = runner.run_job(job, ctx.limits, ctx.harness, ctx.deadline)
    errors = {}
    for name in modules:
        rec = res.records.get(f"import:{name}")
        if rec is None:
            errors[name] = {
                "type": "NotRun",
                "message": "the import check did not finish",
                "where": "",
            }
        elif rec.get("error"):
            errors[name] = rec["error"]
    return errors


def grade(
    sub,
    limits=None,
    seed: int = 231,
    jobs: int = 1,
    only=None,
    time_budget: float | None = None,
    student_user=None,
    profile=None,
    on_progress=None,
) -> list:
    """Grade a Submission; returns TestResults in the order of the item table.

    ``time_budget``: seconds for the whole run (items not finished by then time out);
    ``student_user``: a ``sandbox.StudentUser`` to run student code as (the grader is root);
    ``profile``: a ``profiles.Profile`` fixing the tests and their points (each result's
    ``points``); its tests the submission lacks come back MISSING. Notes about what was and
    was not graded are appended to ``sub.notes``. ``on_progress(results, done, total)`` is
    called after each item with the results so far (from worker threads, one call at a time).
    """
    start = time.monotonic()
    ctx = Context(
        sub,
        limits or runner.Limits(),
        seed,
        deadline=start + time_budget if time_budget else math.inf,
        standins=dict(profile.standins) if profile else {},
    )
    items = [
        it for it in profile_items(profile, only) if sub.find(it.files, it.functions) is not None
    ]
    # PyTorch files have one item each, whose own child finds their import errors: leaving
    # them out of the import check saves a child importing torch.
    mods = {
        m.relpath: m
        for m in (
            sub.find(it.files, it.functions) for it in items if not it.kind.startswith("torch")
        )
    }
    finished: dict = {}
    lock = threading.Lock()

    # The PyTorch items share one child (importing torch is most of a child's time).
    together = [it for it in items if it.kind.startswith("torch")]
    work = [it for it in items if not it.kind.startswith("torch")] + ([None] if together else [])

    def run(i_item):
        i, item = i_item
        if item is None:  # the PyTorch items, all in one child
            rs = [r for group in grade_together(together, ctx) for r in group]
        else:
            rs = grade_item(item, ctx)
        if on_progress is not None:
            with lock:
                finished[i] = rs
                so_far = [r for k in sorted(finished) for r in finished[k]]
                on_progress(results_to_report(so_far, profile, only), len(finished), len(work))
        return rs

    with sandbox.Harness(student_user) as ctx.harness:
        if student_user is not None:
            sub.share_with(student_user)
        ctx.import_errors = preflight_imports(
            ctx, [m.dotted for m in mods.values() if not m.syntax_error]
        )
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            per_item = list(pool.map(run, enumerate(work)))
    results = results_to_report([r for rs in per_item for r in rs], profile, only)
    if profile is not None:
        results += not_found(profile, results, sub, only)
        for r in results:
            r.points = float(profile.points[r.name])
        order = {t: i for i, t in enumerate(profile.points)}
        results.sort(key=lambda r: order[r.name])
        sub.notes.append(profile.environment_note())
        note = ungraded_note(profile, sub)
        if note:
            sub.notes.append(note)
    return results
