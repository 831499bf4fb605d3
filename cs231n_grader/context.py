"""What one grading run knows (the submission, the limits, the seed, the harness) and the jobs
it hands to the child processes that run the student's code."""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass, field

from cs231n_grader import runner


@dataclass
class Context:
    sub: object  # submission.Submission
    limits: runner.Limits
    seed: int = 231
    import_errors: dict = field(default_factory=dict)
    harness: object = None  # sandbox.Harness the children start from
    standins: dict = field(default_factory=dict)  # course-provided modules served by the reference
    deadline: float = math.inf  # time.monotonic() at which the run's time budget ends


def reference_root() -> str:
    """The directory holding ``numpy_impl`` (children load stand-ins' reference code there)."""
    spec = importlib.util.find_spec("numpy_impl")
    return os.path.dirname(os.path.dirname(os.path.abspath(spec.origin)))


def child_job(ctx: Context, **fields) -> dict:
    """A job for a child process: ``fields`` plus where the student's code lives and which of
    its modules are stand-ins for the reference (see ``seal.py``)."""
    job = {"student_root": ctx.sub.root, **fields}
    standins = {**ctx.sub.standins, **ctx.standins}
    if standins:
        job["standins"] = standins
        job["reference_root"] = reference_root()
    return job
