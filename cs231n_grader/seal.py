"""Seal the student's process off from the reference, before any student code runs.

This module runs inside the child process (it is copied with the rest of the harness into a
directory of its own, see ``sandbox.py``) and imports nothing of the project. ``seal()``:

- installs a finder in front of ``sys.meta_path`` that refuses every module of the reference and
  of the grader (``numpy_impl``, ``torch_impl``, ``cs231n_grader``, ...), whatever ``sys.path``
  says, so ``from numpy_impl.layers import conv_backward_naive`` in a student's file fails with
  ``ModuleNotFoundError`` instead of turning a bug into a pass;
- removes the finders that an editable install of the project put on ``sys.meta_path`` (they
  map those names to the project's directories), their modules from ``sys.modules``, and every
  ``sys.path`` entry that holds one of those packages;
- serves *stand-ins*: modules of the student's package that the grader substitutes with the
  reference (course-provided files such as ``fast_layers.py``, or files a loose-file submission
  did not include). A stand-in carries the names its reference module defines; the reference
  modules it needs load from ``reference_root``, and only for imports made by reference code
  itself: student code importing them is still refused;
- makes the process a child subreaper (Linux ``prctl``), so every process the student's code
  starts, even one that calls ``setsid`` and whose parent exits, stays below this process, where
  the grader finds and kills it when the job ends.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import threading

# Top-level packages that student code must not import: the reference twins, the grader, and
# the project's other packages (which import the reference).
BLOCKED_PACKAGES = (
    "numpy_impl",
    "twin_checks",
    "nn_twins",
    "torch_impl",
    "cs231n_grader",
    "cifar_training",
    "parity_tests",
)
# The reference code a stand-in serves: the NumPy twin and the argument checks it imports.
REFERENCE_PACKAGES = ("numpy_impl", "twin_checks", "nn_twins")

_PR_SET_CHILD_SUBREAPER = 36


_granting = threading.local()  # set while the harness itself loads a stand-in's reference


def _imported_by_reference() -> bool:
    """Is the import being resolved requested by reference code (or the harness granting a
    stand-in), rather than by the student's?"""
    if getattr(_granting, "active", False):
        return True
    frame = sys._getframe(2)
    while frame is not None and (
        frame.f_code.co_filename.startswith("<frozen importlib")
        or str(frame.f_globals.get("__name__", "")).startswith("importlib")
    ):
        frame = frame.f_back  # the import machinery; the importer is further out
    if frame is None:
        return False
    return str(frame.f_globals.get("__name__", "")).partition(".")[0] in BLOCKED_PACKAGES


class SealedReference(importlib.abc.MetaPathFinder):
    """Refuses the blocked packages (see the module docstring); with a ``reference_root``,
    resolves the reference packages there for reference code serving a stand-in."""

    def __init__(self, reference_root: str | None = None):
        self.reference_root = reference_root

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top not in BLOCKED_PACKAGES:
            return None
        if self.reference_root and top in REFERENCE_PACKAGES and _imported_by_reference():
            search = path if "." in fullname and path else [self.reference_root]
            return importlib.machinery.PathFinder.find_spec(fullname, search)
        raise ModuleNotFoundError(
            f"No module named {fullname!r} (the grader's reference and the grader itself are "
            "not available to student code)",
            name=fullname,
        )


class _StandInLoader(importlib.abc.Loader):
    def __init__(self, reference: str):
        self.reference = reference

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        _granting.active = True
        try:
            ref = importlib.import_module(self.reference)
        finally:
            _granting.active = False
        module.__dict__.update(public_names(ref))
        for name in list(sys.modules):  # reachable through the stand-in's names only
            if name.partition(".")[0] in BLOCKED_PACKAGES:
                del sys.modules[name]
        module.__doc__ = f"stand-in: the grader's reference ({self.reference})"


def public_names(ref) -> dict:
    """What a stand-in exposes: the public functions and classes its reference module defines
    (not those it imports from elsewhere), and its public constants."""
    out = {}
    for name, value in vars(ref).items():
        if name.startswith("_") or isinstance(value, type(sys)):
            continue
        owner = getattr(value, "__module__", None)
        if callable(value) and owner != ref.__name__:
            continue
        out[name] = value
    return out


class StandIns(importlib.abc.MetaPathFinder):
    """Serves ``{student module name: reference module name}`` ahead of the student's files."""

    def __init__(self, table: dict):
        self.table = dict(table)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.table:
            return None
        return importlib.util.spec_from_loader(fullname, _StandInLoader(self.table[fullname]))


def _maps_blocked(finder) -> bool:
    """An editable-install finder (setuptools) keeps a MAPPING of package name -> directory in
    its module; it is installed as a class or as an instance."""
    owner = finder if isinstance(finder, type) else type(finder)
    mapping = getattr(sys.modules.get(getattr(owner, "__module__", "") or ""), "MAPPING", None)
    return isinstance(mapping, dict) and any(k in BLOCKED_PACKAGES for k in mapping)


def _holds_blocked(entry: str) -> bool:
    """A sys.path entry that exists to reach the project (its checkout, on PYTHONPATH). An
    installed environment (site-packages) stays: other packages live there, and the finder
    in front of sys.meta_path refuses the blocked names wherever they are."""
    if os.path.basename(os.path.normpath(entry or os.curdir)) in ("site-packages", "dist-packages"):
        return False
    try:
        return any(
            os.path.exists(os.path.join(entry or os.curdir, name)) for name in BLOCKED_PACKAGES
        )
    except (TypeError, ValueError):
        return False


def set_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def seal(keep_paths=(), reference_root: str | None = None, standins=None) -> None:
    """Block the reference (see the module docstring). ``keep_paths`` stay on ``sys.path``;
    ``standins`` maps student module names to the reference modules that replace them, loaded
    from ``reference_root``."""
    sys.meta_path[:] = [
        f
        for f in sys.meta_path
        if not isinstance(f, (SealedReference, StandIns)) and not _maps_blocked(f)
    ]
    sys.meta_path.insert(0, SealedReference(reference_root if standins else None))
    if standins:
        sys.meta_path.insert(0, StandIns(standins))
    sys.path[:] = [p for p in sys.path if p in keep_paths or not _holds_blocked(p)]
    for name, module in list(sys.modules.items()):
        mapping = getattr(module, "MAPPING", None)  # an editable install's finder module
        if name.partition(".")[0] in BLOCKED_PACKAGES or (
            isinstance(mapping, dict) and any(k in BLOCKED_PACKAGES for k in mapping)
        ):
            del sys.modules[name]
    importlib.invalidate_caches()
