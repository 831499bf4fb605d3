"""Run one job in a child process, under time limits the child cannot extend, and collect its
records.

Two clocks, both kept by the grader (the parent):
- **per call**: the child writes a ``progress`` file before each call; a call that runs longer
  than ``Limits.timeout`` gets the child killed, is recorded as a timeout, and the child is
  started again skipping it, so one hang fails only its own test;
- **per item (hard)**: once its calls start, a job has ``timeout x (number of calls)`` seconds
  in all, restarts included (each start of a child gets up to ``STARTUP_GRACE_S`` to import),
  and never runs past the run's overall deadline (``--time-budget``). This limit is fixed
  before the child starts: rewriting the progress file (the child's to write) cannot extend it.

Whatever way a job ends, the child and every process below it are killed (``sandbox.end_job``)
before its records are read. See ``sandbox.py`` for how the child is confined.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field

import numpy as np

from cs231n_grader import json_npz, sandbox
from cs231n_grader.thresholds import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    MAX_OUTPUT_BYTES,
    MAX_RESTARTS,
)

# Interpreter start-up and imports before the first call are allowed this much extra time.
STARTUP_GRACE_S = 30.0
# Numerical-gradient jobs of model parameters (sizes unknown before the child runs) are
# allowed this many calls.
NUMGRAD_OBJECT_CALLS = 200


@dataclass(frozen=True)
class Limits:
    timeout: float = DEFAULT_TIMEOUT_S  # seconds per call
    memory_mb: int = DEFAULT_MEMORY_MB  # address-space cap of the child
    max_output: int = MAX_OUTPUT_BYTES


@dataclass
class ChildResult:
    records: dict = field(default_factory=dict)  # key -> record
    failures: list = field(default_factory=list)  # hangs and crashes: {'key', 'type', 'message'}
    output: str = ""  # tail of what the student's code printed


def _read_progress(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            seq, key = f.read().split("\n", 1)
        return int(seq), key
    except (OSError, ValueError):
        return None


def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except (ValueError, AttributeError):
        return f"signal {-rc}"


def _why_stopped(reason: str, limits: Limits, allowance_s: float) -> str:
    if reason == "call":
        return f"still running after {limits.timeout:g} s (infinite loop?); stopped"
    if reason == "hard":
        return (
            f"the item ran past its hard limit of {allowance_s:g} s of calls "
            f"({limits.timeout:g} s per call); stopped"
        )
    return "the overall time budget of the run ran out; stopped"


def _watch(proc, tmp: str, limits: Limits, allowance: float, budget_end: float):
    """Wait for the child to finish, die, or run out of time.

    Returns (reason or None, last progress, seconds of calls used). Start-up (until the first
    progress) has its own limit; from then on the child has ``allowance`` seconds, fixed by the
    caller. The progress file only tells which call is running and when one call has run
    longer than the per-call limit: rewriting it starts the hard clock early, never late.
    """
    progress_path, done_path = os.path.join(tmp, "progress"), os.path.join(tmp, "done")
    last, since, poll = None, time.monotonic(), 0.002
    calls_start = None
    reason = None
    while proc.poll() is None and not os.path.exists(done_path):
        time.sleep(poll)
        poll = min(poll * 1.5, 0.02)
        prog = _read_progress(progress_path)
        now = time.monotonic()
        if prog is not None and calls_start is None:
            calls_start = now
        if prog != last:
            last, since = prog, now
        if now >= budget_end:
            reason = "budget"
        elif calls_start is not None and now - calls_start >= allowance:
            reason = "hard"
        elif now - since > limits.timeout + (STARTUP_GRACE_S if prog is None else 0.0):
            reason = "call"
        if reason:
            break
    used = time.monotonic() - calls_start if calls_start is not None else 0.0
    return reason, last, used


def _collect(tmp: str):
    records = {}
    for name in sorted(os.listdir(tmp)):
        stem = os.path.join(tmp, name[:-5])
        if any(os.path.islink(stem + ext) for ext in (".json", ".npz")):
            continue  # records are files the child wrote, never links to elsewhere
        if name.startswith("rec-") and name.endswith(".json"):
            try:
                entry = json_npz.load(os.path.join(tmp, name[:-5]))
                records.setdefault(entry["key"], entry["rec"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a record the child did not finish (or something else wrote)
    return records


def _tail(f) -> str:
    """The last 4000 bytes of the child's output, read through the grader's own handle (the
    path in the child's directory may have been replaced)."""
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - 4000))
    return f.read().decode("utf-8", "replace")


def _run_once(
    job: dict, limits: Limits, harness, allowance: float, allowance_total: float, budget_end: float
):
    """One child for ``job``: (records, failure or None, printed output, seconds of calls)."""
    tmp = harness.job_dir()
    token = sandbox.new_token()
    try:
        json_npz.save(os.path.join(tmp, "job"), job)
        harness.share(os.path.join(tmp, "job.json"), os.path.join(tmp, "job.npz"))
        out_path = os.path.join(tmp, "output.txt")
        with open(out_path, "w+b") as out:
            proc = harness.popen(tmp, token, out)
            try:
                reason, last, used = _watch(proc, tmp, limits, allowance, budget_end)
            finally:
                sandbox.end_job(proc, token)
            output = _tail(out)
        records = _collect(tmp)
        done = os.path.exists(os.path.join(tmp, "done"))
        last = _read_progress(os.path.join(tmp, "progress")) or last
        key = last[1] if last else None
        failure = None
        if reason is not None:
            failure = {
                "key": key,
                "type": "Timeout",
                "reason": reason,
                "message": _why_stopped(reason, limits, allowance_total),
            }
        elif not done:
            rc = proc.returncode
            how = (
                f"was killed by {_signal_name(rc)}"
                if rc < 0
                else f"exited with status {rc} in the middle of the call (os._exit?)"
            )
            if rc == -getattr(signal, "SIGKILL", 9):
                how += " (out of memory?)"
            if key in records:  # the call finished; the crash came after it
                key = None
            failure = {"key": key, "type": "Crash", "message": f"the process {how}"}
        return records, failure, output, used
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# Call kinds (see call_drivers.py) whose remaining calls are skipped once one of them hangs.
_SKIP_ALL_AFTER_HANG = ("fwd", "bwd", "loss", "step")


def _keys(job: dict) -> list:
    """Every call key a job can produce (for skipping the rest of a function after a hang, and
    for marking what a stopped job never ran); a 'multi' job's keys carry their part's number
    ("2|loss/0")."""
    if job.get("driver") == "multi":
        return [f"{k}|{key}" for k, part in enumerate(job["parts"]) for key in _keys(part)]
    keys = [f"import:{m}" for m in (job.get("modules") or [job.get("module")]) if m]
    driver = job.get("driver")
    for i, case in enumerate(job.get("cases") or []):
        if driver == "object":
            keys += [f"init/{i}"] + [f"call/{i}/{j}" for j in range(len(case.get("calls", [])))]
        elif driver == "layer":
            keys += [f"fwd/{i}"] + (
                [f"bwd/{i}"]
                if (job.get("spec") or {}).get("backward") and case.get("backward", True)
                else []
            )
        elif driver in ("loss", "torch", "torch_module"):
            keys.append(f"loss/{i}")
        elif driver == "optim":
            keys += [f"step/{i}/{s}" for s in range(len(case.get("dws") or []))]
    return keys


def call_count(job: dict) -> int:
    """How many calls of student code ``job`` makes at most: its hard limit is this many times
    the per-call limit (plus start-up)."""
    if job.get("driver") == "multi":
        return max(1, sum(call_count(part) for part in job["parts"]))
    if job.get("driver") == "numgrad":
        spec, case = job["spec"], job["cases"][0]
        if spec["mode"] == "object":
            return NUMGRAD_OBJECT_CALLS
        return 2 + 2 * sum(int(np.size(case["args"][idx])) for _, idx in spec["wrt"])
    n = len(_keys(job))
    if (job.get("spec") or {}).get("repeat"):
        n += len(job.get("cases") or [])  # the forward runs twice to check its seed
    return max(n, 1)


def hard_limit(job: dict, limits: Limits) -> float:
    """Seconds of calls a job may use in all, restarts included, fixed before it starts
    (each start of a child has up to ``STARTUP_GRACE_S`` more for the interpreter)."""
    return limits.timeout * call_count(job)


def _stopped(result: ChildResult, job: dict, failure: dict) -> None:
    """A job stopped by its hard limit or the time budget: every call it did not run fails
    with that reason."""
    for k in _keys(job):
        result.records.setdefault(
            k,
            {
                "value": None,
                "mutated": [],
                "error": {"type": "Timeout", "message": failure["message"], "where": ""},
            },
        )


def run_job(job: dict, limits: Limits, harness=None, deadline: float = math.inf) -> ChildResult:
    """Run ``job`` (see child.py); restart after a hang or crash, skipping the call at fault.

    ``harness``: the ``sandbox.Harness`` children start from (a temporary one when None);
    ``deadline``: ``time.monotonic()`` at which the whole run's time budget ends.
    """
    if harness is None:
        with sandbox.Harness() as own:
            return run_job(job, limits, own, deadline)
    job = dict(job, memory_mb=limits.memory_mb, max_output=limits.max_output)
    exclude = list(job.get("exclude", []))
    result = ChildResult()
    if time.monotonic() >= deadline:
        _stopped(result, job, {"message": _why_stopped("budget", limits, 0.0)})
        return result
    total = hard_limit(job, limits)
    allowance = total
    outputs = []
    for _ in range(MAX_RESTARTS + 1):
        records, failure, output, used = _run_once(
            dict(job, exclude=exclude), limits, harness, allowance, total, deadline
        )
        allowance = max(0.0, allowance - used)
        for k, v in records.items():
            result.records.setdefault(k, v)
        if output.strip():
            outputs.append(output)
        if failure is None:
            break
        result.failures.append(failure)
        key = failure["key"]
        if failure.get("reason") in ("hard", "budget"):
            if key is not None and failure["reason"] == "hard":
                result.records.setdefault(
                    key,
                    {
                        "value": None,
                        "mutated": [],
                        "error": {"type": "Timeout", "message": failure["message"], "where": ""},
                    },
                )
            _stopped(result, job, failure)
            break
        if key is None or key in exclude:
            break
        result.records.setdefault(
            key,
            {
                "value": None,
                "mutated": [],
                "error": {"type": failure["type"], "message": failure["message"], "where": ""},
            },
        )
        exclude.append(key)
        part, _, bare = key.rpartition("|")  # a 'multi' job's part number, if any
        kind = bare.split("/", 1)[0]
        prefix = f"{part}|{kind}/" if part else f"{kind}/"
        if failure["type"] == "Timeout" and kind in _SKIP_ALL_AFTER_HANG:
            # A function that hung on one case would likely hang on the next: skip its other
            # cases instead of waiting out the time limit once per case.
            for k in _keys(job):
                if k.startswith(prefix) and k not in exclude:
                    exclude.append(k)
                    result.records.setdefault(
                        k,
                        {
                            "value": None,
                            "mutated": [],
                            "error": {
                                "type": "NotRun",
                                "where": "",
                                "message": "the same function already timed out on another case",
                            },
                        },
                    )
        if key.startswith("import:") and job["driver"] != "import":
            break
    result.output = "\n".join(outputs)[-4000:]
    return result
