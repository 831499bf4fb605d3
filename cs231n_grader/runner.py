"""Run one job in a child process, with a per-call time limit, and collect its records.

The parent watches the child's ``progress`` file: a call that runs longer than the time limit
gets the child's whole process group killed. The call that hung (or was running when the child
crashed) is recorded as a failure and the child is started again, skipping it, so one hang fails
only its own test. Fault isolation, not a security sandbox: student code runs with the grader's
user rights.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from cs231n_grader import codec
from cs231n_grader.thresholds import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    MAX_OUTPUT_BYTES,
    MAX_RESTARTS,
)

# Interpreter start-up and imports before the first call are allowed this much extra time.
STARTUP_GRACE_S = 30.0


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


def _child_env() -> dict:
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"  # one thread per child: children run side by side
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ in the student's directory
    env["PYTHONHASHSEED"] = "0"
    env["MPLBACKEND"] = "Agg"
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return env


def _read_progress(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            seq, key = f.read().split("\n", 1)
        return int(seq), key
    except (OSError, ValueError):
        return None


def _kill(proc) -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)  # the child's own session: its group only
        else:  # pragma: no cover - Windows
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except (ValueError, AttributeError):
        return f"signal {-rc}"


def _run_once(job: dict, limits: Limits):
    tmp = tempfile.mkdtemp(prefix="nn-twins-grade-")
    try:
        codec.save(os.path.join(tmp, "job"), job)
        out_path = os.path.join(tmp, "output.txt")
        progress_path = os.path.join(tmp, "progress")
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cs231n_grader.child", tmp],
                cwd=tmp, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=_child_env(), start_new_session=True,
            )
            last, since, poll = None, time.monotonic(), 0.005
            killed = False
            while True:
                try:
                    proc.wait(timeout=poll)
                    break
                except subprocess.TimeoutExpired:
                    pass
                poll = min(poll * 1.5, 0.05)
                prog = _read_progress(progress_path)
                now = time.monotonic()
                if prog != last:
                    last, since = prog, now
                limit = limits.timeout + (STARTUP_GRACE_S if prog is None else 0.0)
                if now - since > limit:
                    killed = True
                    _kill(proc)
                    break
        records = {}
        for name in sorted(os.listdir(tmp)):
            if name.startswith("rec-") and name.endswith(".json"):
                entry = codec.load(os.path.join(tmp, name[:-5]))
                records.setdefault(entry["key"], entry["rec"])
        with open(out_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4000))
            output = f.read().decode("utf-8", "replace")
        done = os.path.exists(os.path.join(tmp, "done"))
        last = _read_progress(progress_path) or last  # the child may have died between polls
        key = last[1] if last else None
        failure = None
        if killed:
            failure = {"key": key, "type": "Timeout",
                       "message": f"still running after {limits.timeout:g} s (infinite loop?); "
                                  "stopped"}
        elif not done:
            rc = proc.returncode
            how = (f"was killed by {_signal_name(rc)}" if rc < 0
                   else f"exited with status {rc} in the middle of the call (os._exit?)")
            if rc == -getattr(signal, "SIGKILL", 9):
                how += " (out of memory?)"
            if key in records:  # the call finished; the crash came after it
                key = None
            failure = {"key": key, "type": "Crash", "message": f"the process {how}"}
        return records, failure, output
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# Call kinds (see drivers.py) whose remaining calls are skipped once one of them hangs.
_SKIP_ALL_AFTER_HANG = ("fwd", "bwd", "loss", "step")


def _keys(job: dict) -> list:
    """Every call key a job can produce (for skipping the rest of a function after a hang)."""
    keys = []
    for i, case in enumerate(job.get("cases") or []):
        keys += [f"fwd/{i}", f"bwd/{i}", f"loss/{i}"]
        keys += [f"step/{i}/{s}" for s in range(len(case.get("dws") or []))]
    return keys


def run_job(job: dict, limits: Limits) -> ChildResult:
    """Run ``job`` (see child.py); restart after a hang or crash, skipping the call at fault."""
    job = dict(job, memory_mb=limits.memory_mb, max_output=limits.max_output)
    exclude = list(job.get("exclude", []))
    result = ChildResult()
    outputs = []
    for _ in range(MAX_RESTARTS + 1):
        records, failure, output = _run_once(dict(job, exclude=exclude), limits)
        for k, v in records.items():
            result.records.setdefault(k, v)
        if output.strip():
            outputs.append(output)
        if failure is None:
            break
        result.failures.append(failure)
        key = failure["key"]
        if key is None or key in exclude:
            break
        result.records.setdefault(key, {"value": None, "mutated": [], "error": {
            "type": failure["type"], "message": failure["message"], "where": ""}})
        exclude.append(key)
        kind = key.split("/", 1)[0]
        if failure["type"] == "Timeout" and kind in _SKIP_ALL_AFTER_HANG:
            # A function that hung on one case would likely hang on the next: skip its other
            # cases instead of waiting out the time limit once per case.
            for k in _keys(job):
                if k.startswith(kind + "/") and k not in exclude:
                    exclude.append(k)
                    result.records.setdefault(k, {"value": None, "mutated": [], "error": {
                        "type": "NotRun", "where": "",
                        "message": "the same function already timed out on another case"}})
        if key.startswith("import:") and job["driver"] != "import":
            break
    result.output = "\n".join(outputs)[-4000:]
    return result
