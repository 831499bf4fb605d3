"""Find a student's code: an assignment directory in the CS231n layout, or loose files.

- A directory containing ``cs231n/`` (or the ``cs231n/`` directory itself) is graded in place:
  the child processes put its root first on ``sys.path``, so the student's own
  ``from cs231n.layers import *`` resolves to the student's files.
- Loose files (``layers.py``, ``fc_net.py``, ... given one by one, or a directory of them such as
  Gradescope's ``/autograder/submission``) are copied into a temporary ``cs231n/`` package at the
  places the CS231n layout puts them. Modules of the layout that were not submitted are
  *stand-ins* (``Submission.standins``): the child process serves the reference's functions
  under their names (see ``seal.py``), so a lone ``fc_net.py`` can import the layers it builds
  on. Only the submitted files are graded.

Which functions a file defines is read with ``ast`` (nothing of the student's runs in the
grader's process).
"""

from __future__ import annotations

import ast
import os
import shutil
import tempfile
from dataclasses import dataclass, field

from cs231n_grader import notebooks

# Where each file of the CS231n layout lives, and the reference module that stands in for it
# when a loose-file submission does not include it (None: nothing of the course imports it).
LAYOUT = {
    "layers.py": ("cs231n/layers.py", "numpy_impl.layers"),
    "fast_layers.py": ("cs231n/fast_layers.py", "numpy_impl.fast_layers"),
    "layer_utils.py": ("cs231n/layer_utils.py", "numpy_impl.layer_utils"),
    "optim.py": ("cs231n/optim.py", "numpy_impl.optim"),
    "rnn_layers.py": ("cs231n/rnn_layers.py", "numpy_impl.rnn_layers"),
    "gradient_check.py": ("cs231n/gradient_check.py", "numpy_impl.gradient_check"),
    "solver.py": ("cs231n/solver.py", "numpy_impl.solver"),
    "k_nearest_neighbor.py": (
        "cs231n/classifiers/k_nearest_neighbor.py",
        "numpy_impl.classifiers.k_nearest_neighbor",
    ),
    "linear_classifier.py": (
        "cs231n/classifiers/linear_classifier.py",
        "numpy_impl.classifiers.linear_classifier",
    ),
    "linear_svm.py": ("cs231n/classifiers/linear_svm.py", "numpy_impl.classifiers.linear_svm"),
    "softmax.py": ("cs231n/classifiers/softmax.py", "numpy_impl.classifiers.softmax"),
    "fc_net.py": ("cs231n/classifiers/fc_net.py", "numpy_impl.classifiers.fc_net"),
    "cnn.py": ("cs231n/classifiers/cnn.py", "numpy_impl.classifiers.cnn"),
    "rnn.py": ("cs231n/classifiers/rnn.py", "numpy_impl.classifiers.rnn"),
    "gan_pytorch.py": ("cs231n/gan_pytorch.py", None),
    "transformer_layers.py": ("cs231n/transformer_layers.py", None),
    "transformer.py": ("cs231n/classifiers/transformer.py", None),
    "contrastive_loss.py": ("cs231n/simclr/contrastive_loss.py", None),
}


# Files of the submission that student code may import (sources and compiled extensions).
_CODE_SUFFIXES = (".py", ".so", ".pyd")


class SubmissionError(ValueError):
    """The paths given do not form a submission the grader can read."""


@dataclass
class Module:
    relpath: str  # e.g. 'cs231n/layers.py'
    path: str  # absolute path of the file graded
    dotted: str  # e.g. 'cs231n.layers'
    defined: frozenset  # top-level functions and classes
    syntax_error: str | None = None


@dataclass
class Submission:
    root: str  # goes first on sys.path in the child processes
    display: str  # what the user gave, for reports
    modules: dict  # relpath -> Module (only the student's files)
    notes: list = field(default_factory=list)
    _tmp: str | None = None
    # student module name -> reference module that stands in for it in the child processes
    standins: dict = field(default_factory=dict)

    def find(self, files, names) -> Module | None:
        """The first of ``files`` that defines any of ``names``; a file with a syntax error
        counts (its items then fail with that error)."""
        for rel in files:
            mod = self.modules.get(rel)
            if mod is not None and (mod.syntax_error or mod.defined & set(names)):
                return mod
        return None

    def share_with(self, user) -> None:
        """Give ``user`` (the unprivileged user student code runs as) a readable copy of the
        submission's code: its Python files and compiled extensions under ``cs231n/``, in a
        directory that user can read but not write. Data files are not copied."""
        tmp = tempfile.mkdtemp(prefix="nn-twins-shared-")
        src = os.path.join(self.root, "cs231n")
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
            dest = os.path.join(tmp, os.path.relpath(dirpath, self.root))
            os.makedirs(dest, exist_ok=True)
            os.chmod(dest, 0o755)
            for fn in filenames:
                if fn.endswith(_CODE_SUFFIXES):
                    shutil.copyfile(os.path.join(dirpath, fn), os.path.join(dest, fn))
                    os.chmod(os.path.join(dest, fn), 0o644)
        for rel in self.modules:
            if "/" not in rel:  # a staged notebook module (PyTorch.py) at the root
                shutil.copyfile(os.path.join(self.root, rel), os.path.join(tmp, rel))
                os.chmod(os.path.join(tmp, rel), 0o644)
        os.chmod(tmp, 0o755)
        self.cleanup()
        self.root, self._tmp = tmp, tmp

    def cleanup(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


def defined_names(path: str) -> tuple[frozenset, str | None]:
    """Top-level def/class names of a Python file (also those inside top-level if/try)."""
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), filename=path)
    except SyntaxError as exc:
        return frozenset(), f"SyntaxError: {exc.msg} ({os.path.basename(path)}, line {exc.lineno})"
    except (OSError, ValueError) as exc:
        return frozenset(), f"cannot read {path}: {exc}"
    names = set()
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.If, ast.Try)):
            stack.extend(node.body)
            stack.extend(getattr(node, "orelse", []))
            stack.extend(getattr(node, "finalbody", []))
            for h in getattr(node, "handlers", []):
                stack.extend(h.body)
    return frozenset(names), None


def _module(root: str, rel: str) -> Module:
    path = os.path.join(root, rel)
    defined, err = defined_names(path)
    dotted = rel[:-3].replace("/", ".")
    return Module(rel, path, dotted, defined, err)


def _from_tree(root: str, display: str) -> Submission:
    pkg = os.path.join(root, "cs231n")
    modules = {}
    for dirpath, dirnames, filenames in os.walk(pkg):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
        for fn in sorted(filenames):
            if fn.endswith(".py") and not fn.startswith("."):
                rel = os.path.relpath(os.path.join(dirpath, fn), root).replace(os.sep, "/")
                modules[rel] = _module(root, rel)
    return Submission(os.path.abspath(root), display, modules)


_NOTEBOOK_NOTE = (
    "{}: graded on its imports, definitions and constants (its other top-level code, such as "
    "downloads and training runs, is not run)"
)


def _copy_code(src_root: str, dest_root: str) -> None:
    """The Python files and compiled extensions of ``src_root/cs231n`` into ``dest_root``."""
    src = os.path.join(src_root, "cs231n")
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        dest = os.path.join(dest_root, os.path.relpath(dirpath, src_root))
        os.makedirs(dest, exist_ok=True)
        for fn in filenames:
            if fn.endswith(_CODE_SUFFIXES):
                shutil.copyfile(os.path.join(dirpath, fn), os.path.join(dest, fn))


def _notebook_module(root: str, path: str) -> Module:
    """Stage the notebook file ``path`` at ``root`` (its definitions only, see notebooks.py)."""
    rel = notebooks.stage(path, root)
    mod = _module(root, rel)
    mod.path = os.path.abspath(path)
    return mod


def _with_notebook(sub: Submission, directory: str) -> Submission:
    """An assignment directory with the notebook's code at its top (PyTorch.py or .ipynb): graded
    from a copy of its code plus the staged notebook module, so the student's folder is not
    written to."""
    path = notebooks.find(directory)
    if path is None:
        return sub
    tmp = tempfile.mkdtemp(prefix="nn-twins-student-")
    _copy_code(sub.root, tmp)
    mod = _notebook_module(tmp, path)
    modules = {rel: _module(tmp, rel) for rel in sub.modules}
    for rel, m in modules.items():
        m.path = sub.modules[rel].path
    modules[mod.relpath] = mod
    out = Submission(tmp, sub.display, modules, list(sub.notes), _tmp=tmp, standins=sub.standins)
    out.notes.append(_NOTEBOOK_NOTE.format(os.path.basename(path)))
    return out


def _staged(files: list, display: str) -> Submission:
    by_name = {}
    notebook = None
    for f in [f for f in files if os.path.basename(f) in notebooks.NOTEBOOKS]:
        if notebook is None or f.endswith(".py"):  # the exported script over the notebook
            notebook = f
    files = [f for f in files if os.path.basename(f) not in notebooks.NOTEBOOKS]
    for f in files:
        base = os.path.basename(f)
        if base not in LAYOUT:
            known = ", ".join(sorted([*LAYOUT, *notebooks.NOTEBOOKS]))
            raise SubmissionError(
                f"don't know where {f!r} goes in the cs231n layout (known files: {known})"
            )
        if base in by_name:
            raise SubmissionError(f"two files named {base}: {by_name[base]!r} and {f!r}")
        by_name[base] = f
    tmp = tempfile.mkdtemp(prefix="nn-twins-student-")
    for pkg in sorted({os.path.dirname(rel) for rel, _ in LAYOUT.values()}):
        os.makedirs(os.path.join(tmp, pkg), exist_ok=True)
        open(os.path.join(tmp, pkg, "__init__.py"), "w").close()
    modules, filled, standins = {}, [], {}
    for base, (rel, ref) in LAYOUT.items():
        if base in by_name:
            shutil.copyfile(by_name[base], os.path.join(tmp, rel))
            mod = _module(tmp, rel)
            mod.path = os.path.abspath(by_name[base])
            modules[rel] = mod
        elif ref is not None:
            standins[rel[:-3].replace("/", ".")] = ref
            filled.append(base)
    if notebook is not None:
        mod = _notebook_module(tmp, notebook)
        modules[mod.relpath] = mod
    sub = Submission(tmp, display, modules, _tmp=tmp, standins=standins)
    if notebook is not None:
        sub.notes.append(_NOTEBOOK_NOTE.format(os.path.basename(notebook)))
    sub.notes.append(
        "loose files: graded inside a temporary cs231n/ package; the modules not submitted ("
        + ", ".join(filled)
        + ") are the reference's"
    )
    return sub


def load(paths) -> Submission:
    """Build a Submission from the command line's paths (see the module docstring)."""
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise SubmissionError("no student path given")
    for p in paths:
        if not os.path.exists(p):
            raise SubmissionError(f"no such file or directory: {p!r}")
    display = " ".join(paths)
    if len(paths) == 1 and os.path.isdir(paths[0]):
        d = os.path.abspath(paths[0])
        if os.path.isdir(os.path.join(d, "cs231n")):
            return _with_notebook(_from_tree(d, display), d)
        if os.path.basename(d) == "cs231n":
            return _with_notebook(_from_tree(os.path.dirname(d), display), os.path.dirname(d))
        loose = sorted(
            os.path.join(d, f) for f in os.listdir(d) if f in LAYOUT or f in notebooks.NOTEBOOKS
        )
        if not loose:
            raise SubmissionError(
                f"{paths[0]!r} has no cs231n/ package and none of the files of the CS231n "
                f"layout ({', '.join(sorted([*LAYOUT, *notebooks.NOTEBOOKS]))})"
            )
        return _staged(loose, display)
    if any(os.path.isdir(p) for p in paths):
        raise SubmissionError("give one assignment directory, or any number of .py files")
    return _staged(paths, display)
