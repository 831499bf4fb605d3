"""Child process that runs a student's code: ``python -s <harness>/run_child.py JOBDIR``.

The grader starts it from a private copy of the harness (see ``sandbox.py``). It seals itself
off from the reference (``seal.py``), reads ``JOBDIR/job.{json,npz}``, caps its own address space
and file sizes, puts the student's root first on ``sys.path`` (so ``from cs231n.layers import *``
resolves to the student's files, or to a stand-in the job names), imports the student's module,
runs one driver from ``call_drivers.py`` and writes one record per call to
``JOBDIR/rec-NNNNN.{json,npz}``. Before each call it writes ``JOBDIR/progress`` (sequence number
and call key), which tells the grader which call is running (for the per-call limit, and to
know which call hung or crashed). Nothing is pickled in either direction (see ``json_npz.py``).
When the job is done it writes ``JOBDIR/done`` and waits: the grader then kills it together
with every process the student's code left behind.

The harness modules import each other relatively and nothing else of the project, so they run
the same from the installed package and from the harness copy.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import types

from . import json_npz, seal
from .call_drivers import DRIVERS, describe_exception, guarded_call

# After writing ``done`` the child waits this long for the grader to end it, then exits alone.
_AWAIT_END_S = 60.0


def _limit_resources(memory_mb: int, max_output: int) -> None:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows: no caps, faults are still isolated
        return
    for limit, value in (
        (getattr(resource, "RLIMIT_AS", None), memory_mb * 1024 * 1024),
        (getattr(resource, "RLIMIT_FSIZE", None), max_output),
    ):
        if limit is None or value <= 0:
            continue
        try:
            soft, hard = resource.getrlimit(limit)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(limit, (value, hard))
        except (ValueError, OSError):  # pragma: no cover - platform refuses; run uncapped
            pass


def _install_py2_shims() -> None:
    """Old CS231n starter code does ``from past.builtins import xrange`` (the ``future``
    package); provide that one name when the package is not installed."""
    try:
        import past.builtins  # noqa: F401
    except ImportError:
        past = types.ModuleType("past")
        builtins_mod = types.ModuleType("past.builtins")
        builtins_mod.xrange = range
        builtins_mod.basestring = str
        past.builtins = builtins_mod
        sys.modules.setdefault("past", past)
        sys.modules.setdefault("past.builtins", builtins_mod)


class ChildEnv:
    make_douts = None
    make_params = None

    def __init__(self, jobdir: str, module, exclude, roots):
        self.jobdir = jobdir
        self.module = module
        self.exclude = set(exclude)
        self.roots = roots
        self.seq = 0
        self.n_records = 0

    def resolve(self, name):
        try:
            return getattr(self.module, name)
        except AttributeError:
            raise AttributeError(f"{name} is not defined in {self.module.__name__}") from None

    def skip(self, key):
        return key in self.exclude

    def progress(self, key):
        self.seq += 1
        json_npz._atomic_write(os.path.join(self.jobdir, "progress"), f"{self.seq}\n{key}".encode())

    def call(self, key, label, fn, args, kwargs, names):
        return guarded_call(
            key, fn, args, kwargs, names, self.roots, before=lambda: self.progress(key)
        )

    def emit(self, key, record):
        self.n_records += 1
        stem = os.path.join(self.jobdir, f"rec-{self.n_records:06d}")
        try:
            json_npz.save(stem, {"key": key, "rec": record})
        except Exception as exc:  # noqa: BLE001 -- an unserializable result is the student's fault
            json_npz.save(
                stem,
                {
                    "key": key,
                    "rec": {
                        "value": None,
                        "mutated": [],
                        "error": {
                            "type": "ReturnType",
                            "where": "",
                            "message": f"the result could not be read back: {exc}",
                        },
                    },
                },
            )


class PartEnv:
    """One part of a 'multi' job (several items in one child): its own module, its keys
    prefixed with the part's number; calls are seeded by the unprefixed key, as the
    reference's were."""

    make_douts = None
    make_params = None

    def __init__(self, env: ChildEnv, k: int, module):
        self.env, self.prefix, self.module = env, f"{k}|", module
        self.roots = env.roots

    def resolve(self, name):
        try:
            return getattr(self.module, name)
        except AttributeError:
            raise AttributeError(f"{name} is not defined in {self.module.__name__}") from None

    def skip(self, key):
        return self.env.skip(self.prefix + key)

    def call(self, key, label, fn, args, kwargs, names):
        return guarded_call(
            key,
            fn,
            args,
            kwargs,
            names,
            self.roots,
            before=lambda: self.env.progress(self.prefix + key),
        )

    def emit(self, key, record):
        self.env.emit(self.prefix + key, record)


def _import(env: ChildEnv, name: str, key: str, roots):
    """Import the student's module ``name`` under the progress key ``key``; None on failure
    (recorded)."""
    env.progress(key)
    try:
        module = importlib.import_module(name)
    except BaseException as exc:  # noqa: BLE001 -- SyntaxError, SystemExit, ImportError...
        if isinstance(exc, KeyboardInterrupt):
            raise
        env.emit(key, {"value": None, "error": describe_exception(exc, roots), "mutated": []})
        return None
    env.emit(key, {"value": None, "error": None, "mutated": []})
    return module


def _preload_torch(job: dict) -> None:
    """Import torch (and torchvision, which notebooks import) before the first call's progress
    is written, so the seconds that takes count as the child's start-up, not as the student's
    import time."""
    if not any(p["driver"].startswith("torch") for p in job["parts"]):
        return
    for name in ("torch", "torchvision"):
        try:
            importlib.import_module(name)
        except ImportError:  # pragma: no cover - the student's own import reports it
            pass


def _run_parts(job: dict, env: ChildEnv, roots) -> None:
    """A 'multi' job: each part (module, driver, spec, cases) in turn, in this one process."""
    _preload_torch(job)
    for k, part in enumerate(job["parts"]):
        key = f"{k}|import:{part['module']}"
        if env.skip(key):
            continue
        module = _import(env, part["module"], key, roots)
        if module is not None:
            DRIVERS[part["driver"]](part["spec"], part["cases"], PartEnv(env, k, module))


def _await_end() -> None:
    """Wait for the grader to kill this process (and its descendants); exit if it never does
    or if the grader is gone."""
    parent = os.getppid()
    end = time.monotonic() + _AWAIT_END_S
    while time.monotonic() < end and os.getppid() == parent:
        time.sleep(0.2)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    jobdir = argv[0]
    seal.seal()
    seal.set_subreaper()
    job = json_npz.load(os.path.join(jobdir, "job"))
    _limit_resources(int(job["memory_mb"]), int(job["max_output"]))
    root = os.path.abspath(job["student_root"])
    sys.path.insert(0, root)
    seal.seal(
        keep_paths=(root,), reference_root=job.get("reference_root"), standins=job.get("standins")
    )
    sys.dont_write_bytecode = True
    _install_py2_shims()
    roots = (root + os.sep,)
    env = ChildEnv(jobdir, None, job.get("exclude", []), roots)

    if job["driver"] == "multi":
        _run_parts(job, env, roots)
    else:
        modules = job["modules"] if job["driver"] == "import" else [job["module"]]
        loaded = {}
        for name in modules:
            key = f"import:{name}"
            if not env.skip(key):
                loaded[name] = _import(env, name, key, roots)
        if job["driver"] != "import" and loaded.get(job["module"]) is not None:
            env.module = loaded[job["module"]]
            DRIVERS[job["driver"]](job["spec"], job["cases"], env)
    sys.stdout.flush()
    sys.stderr.flush()
    json_npz._atomic_write(os.path.join(jobdir, "done"), b"1")
    _await_end()
    # Skip interpreter teardown: student objects with odd __del__ methods cannot hang the exit.
    os._exit(0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
