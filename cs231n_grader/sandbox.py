"""How the grader starts, confines and ends the processes that run student code.

- **Sealed harness.** The child runs a copy of the few harness modules (``child.py``,
  ``call_drivers.py``, ``json_npz.py``, ``seal.py``: no reference code) from a private directory,
  with ``python -s`` (no user site-packages), a fresh working directory, and an environment built
  from an allow-list (no ``PYTHONPATH``, no path of the project). Before the student's module is
  imported, ``seal.seal()`` blocks every import of the reference and of the grader (see there).
  Reference answers are computed in the grader's own process, where student code never runs.
- **Every descendant dies with its job.** The child makes itself a subreaper, so processes the
  student's code starts stay below it even after ``setsid`` and a double fork; when a job ends
  the grader kills the child's whole process tree (``/proc``), its process group, and every
  process whose environment carries the job's random token.
- **Optional unprivileged user.** Run as root with ``--student-user NAME`` (e.g. ``nobody``), the
  children run as that user: they cannot write the grader's files or results, and at the end of
  the run every process of that user is killed. Use a user that runs nothing else.

This is as far as a process can confine its children without a container: student code can
still read any file its user may read. Grade untrusted submissions in a container or VM that
holds nothing else of value.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

HARNESS_PACKAGE = "nn_twins_harness"
HARNESS_MODULES = ("child.py", "call_drivers.py", "json_npz.py", "seal.py")
TOKEN_VAR = "NN_TWINS_GRADE_TOKEN"
# Environment variables the child inherits; everything else (PYTHONPATH included) is dropped.
_ENV_KEEP = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "LD_LIBRARY_PATH",
    "SYSTEMROOT",
    "CUDA_VISIBLE_DEVICES",
)
_RUNNER = f"""\
import sys
from {HARNESS_PACKAGE}.child import main
sys.exit(main())
"""


class StudentUserError(ValueError):
    """The --student-user cannot be used (unknown, or the grader is not root)."""


@dataclass(frozen=True)
class StudentUser:
    name: str
    uid: int
    gid: int


def student_user(name: str | None) -> StudentUser | None:
    """Look up ``name`` for running student code; None when no user is asked for."""
    if not name:
        return None
    try:
        import pwd
    except ImportError as exc:  # pragma: no cover - Windows
        raise StudentUserError("--student-user needs a POSIX system") from exc
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise StudentUserError(f"--student-user: no user named {name!r}") from None
    if os.geteuid() != 0:
        raise StudentUserError(
            f"--student-user {name!r} needs the grader to run as root "
            f"(it runs as uid {os.geteuid()})"
        )
    if entry.pw_uid == 0:
        raise StudentUserError(f"--student-user {name!r} is root: give an unprivileged user")
    user = StudentUser(name, entry.pw_uid, entry.pw_gid)
    _check_interpreter(user)
    return user


def _check_interpreter(user: StudentUser) -> None:
    """The student's user must be able to run this Python and import NumPy with it."""
    try:
        proc = subprocess.run(
            [sys.executable, "-s", "-c", "import numpy"],
            user=user.uid,
            group=user.gid,
            extra_groups=[],
            env={"PATH": os.defpath},
            cwd="/",
            capture_output=True,
            timeout=60,
            check=False,
        )
        ok, why = proc.returncode == 0, proc.stderr.decode(errors="replace").strip()[-300:]
    except (OSError, subprocess.SubprocessError) as exc:
        ok, why = False, str(exc)
    if not ok:
        raise StudentUserError(
            f"--student-user {user.name!r}: that user cannot run {sys.executable} with NumPy "
            f"({why or 'failed'}); install Python where that user may read and run it"
        )


class Harness:
    """A private directory with the harness modules, the one place children import from."""

    def __init__(self, user: StudentUser | None = None):
        self.user = user
        self.dir = tempfile.mkdtemp(prefix="nn-twins-harness-")
        pkg = os.path.join(self.dir, HARNESS_PACKAGE)
        os.makedirs(pkg)
        here = os.path.dirname(os.path.abspath(__file__))
        for name in HARNESS_MODULES:
            shutil.copyfile(os.path.join(here, name), os.path.join(pkg, name))
        open(os.path.join(pkg, "__init__.py"), "w").close()
        self.runner = os.path.join(self.dir, "run_child.py")
        with open(self.runner, "w") as f:
            f.write(_RUNNER)
        for path in (self.dir, pkg):  # readable by the student's user, writable by nobody else
            os.chmod(path, 0o755)
        for root, _, files in os.walk(self.dir):
            for fn in files:
                os.chmod(os.path.join(root, fn), 0o644)

    def job_dir(self) -> str:
        """A fresh working directory for one child (owned by the student's user, if any)."""
        d = tempfile.mkdtemp(prefix="nn-twins-job-")
        if self.user is not None:
            os.chown(d, self.user.uid, self.user.gid)
        return d

    def share(self, *paths: str) -> None:
        """Let the student's user read files the grader wrote for the child (the job's inputs:
        no reference answers)."""
        if self.user is not None:
            for path in paths:
                os.chmod(path, 0o644)

    def popen(self, jobdir: str, token: str, stdout) -> subprocess.Popen:
        kw = {}
        if self.user is not None:
            kw = {"user": self.user.uid, "group": self.user.gid, "extra_groups": []}
        return subprocess.Popen(
            [sys.executable, "-s", self.runner, jobdir],
            cwd=jobdir,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            env=child_env(jobdir, token),
            start_new_session=True,
            **kw,
        )

    def close(self) -> None:
        if self.user is not None:
            kill_user_processes(self.user)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def new_token() -> str:
    return secrets.token_hex(16)


def child_env(jobdir: str, token: str) -> dict:
    """The child's whole environment (see the module docstring)."""
    env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
    env.setdefault("PATH", os.defpath)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"  # one thread per child: children run side by side
    env.update(
        {
            "HOME": jobdir,
            "TMPDIR": jobdir,
            "MPLCONFIGDIR": jobdir,
            "MPLBACKEND": "Agg",
            "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in the student's directory
            "PYTHONHASHSEED": "0",
            "PYTHONNOUSERSITE": "1",
            TOKEN_VAR: token,
        }
    )
    return env


# ----------------------------------------------------------------------------------------------
# Finding and killing processes (Linux /proc; elsewhere only the process group)
# ----------------------------------------------------------------------------------------------


def _parents() -> dict:
    """pid -> parent pid of every live (not zombie) process visible in /proc."""
    out = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            state, ppid = stat[stat.rindex(b")") + 2 :].split()[:2]
        except (OSError, ValueError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            out[int(name)] = int(ppid)
    return out


def descendants(pid: int) -> set:
    """Every live process below ``pid`` in the process tree (zombies skipped)."""
    children: dict = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found, stack = set(), [pid]
    while stack:
        for c in children.get(stack.pop(), ()):
            if c not in found:
                found.add(c)
                stack.append(c)
    return found


def carrying_token(token: str) -> set:
    """Processes whose environment carries ``token`` (started below one job's child)."""
    needle = f"{TOKEN_VAR}={token}".encode()
    found = set()
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        found.add(int(name))
            except OSError:
                continue
    return found


def _kill(pids) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def end_job(proc: subprocess.Popen, token: str) -> None:
    """Kill the child, its process group, its whole process tree and everything carrying its
    token; returns once the child is reaped. Descendants are killed first, while the child (a
    subreaper) still holds them, and again until a walk of the tree finds none."""
    for _ in range(20):
        # Once the child is reaped its pid may be reused: then only the token finds its orphans.
        tree = descendants(proc.pid) if proc.returncode is None else set()
        below = tree | (carrying_token(token) - {proc.pid})
        if not below:
            break
        _kill(below)
    if hasattr(os, "killpg"):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.kill()
    except OSError:
        pass
    proc.wait()
    _kill(carrying_token(token))


def kill_user_processes(user: StudentUser) -> None:
    """Kill every process of ``user`` (kill(-1) run as that user, which spares only itself)."""
    try:
        subprocess.run(
            [
                sys.executable,
                "-S",
                "-c",
                "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\n"
                "except OSError:\n    pass\n",
            ],
            user=user.uid,
            group=user.gid,
            extra_groups=[],
            env={},
            cwd="/",
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        pass
