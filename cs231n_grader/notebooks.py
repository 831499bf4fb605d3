"""Notebook code as a module the grader can import: CS231n's PyTorch notebook of assignment 2.

Students write the notebook's functions in ``PyTorch.ipynb`` itself; they hand in the notebook,
or a script exported from it (``jupyter nbconvert --to script PyTorch.ipynb`` gives
``PyTorch.py``). Either runs the whole notebook when imported: it downloads CIFAR-10, trains
networks for minutes, calls ``get_ipython()`` and Colab's ``drive.mount``. The grader needs the
definitions only, so it stages a copy that keeps, at the top level,

- imports (except Colab's and IPython's, which exist only inside a notebook server),
- ``def`` and ``class`` statements (decorators included),
- assignments of constants (``print_every = 100``, ``dtype = torch.float32``, ``NUM_TRAIN =
  49000``): literals and dotted names, nothing that calls code,

and blanks every other top-level statement's lines, so line numbers in tracebacks still point
at the student's file. The globals the notebook's functions read (``device``, ``dtype``) are set
by the grader before each call (``call_drivers._notebook_globals``). From a ``.ipynb``, the code
cells are joined in order, with IPython's ``%magic`` and ``!shell`` lines commented out.
"""

from __future__ import annotations

import ast
import builtins
import json
import os

# Notebook files the grader reads, and the module each becomes (at the submission's root).
NOTEBOOKS = {"PyTorch.py": "PyTorch.py", "PyTorch.ipynb": "PyTorch.py"}
_NOTEBOOK_ONLY_MODULES = ("google.colab", "IPython")


class NotebookError(ValueError):
    """A notebook file that is not a readable notebook."""


def ipynb_source(text: str, name: str = "notebook") -> str:
    """The code cells of a notebook's JSON, in order, as one Python source (magics and shell
    escapes commented out, one blank line between cells)."""
    try:
        nb = json.loads(text)
        cells = nb["cells"]
    except (ValueError, KeyError, TypeError) as exc:
        raise NotebookError(f"{name} is not a Jupyter notebook ({exc})") from None
    parts = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else str(src)
        lines = [
            f"# {line}" if line.lstrip().startswith(("%", "!")) else line
            for line in src.splitlines()
        ]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _constant(node, bound) -> bool:
    """A literal, a dotted name whose root is ``bound``, or a tuple/list of those: nothing that
    runs code, nothing that needs a statement the staging drops."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Name):
        return node.id in bound or hasattr(builtins, node.id)
    if isinstance(node, ast.Attribute):
        return _constant(node.value, bound)
    if isinstance(node, ast.UnaryOp):
        return _constant(node.operand, bound)
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(_constant(e, bound) for e in node.elts)
    return False


def _notebook_only(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in _NOTEBOOK_ONLY_MODULES)


def _keep(node, bound: set) -> bool:
    """Whether the staging keeps the top-level statement ``node``; adds the names it binds to
    ``bound``."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        bound.add(node.name)
        return True
    if isinstance(node, ast.Import):
        if any(_notebook_only(a.name) for a in node.names):
            return False
        bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        return True
    if isinstance(node, ast.ImportFrom):
        if _notebook_only(node.module or ""):
            return False
        bound.update(a.asname or a.name for a in node.names)
        return True
    if isinstance(node, ast.Assign):
        if all(isinstance(t, ast.Name) for t in node.targets) and _constant(node.value, bound):
            bound.update(t.id for t in node.targets)
            return True
        return False
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        if node.value is None or _constant(node.value, bound):
            bound.add(node.target.id)
            return True
    return False


def definitions_only(source: str) -> str:
    """``source`` with every top-level statement but imports, definitions and constant
    assignments blanked (line numbers kept). A source that does not parse is returned as it
    is: importing it reports the syntax error at the student's line."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    lines = source.splitlines(keepends=True)
    bound: set = set()
    keep = [_keep(node, bound) for node in tree.body]
    kept_lines = set()
    for node, kept in zip(tree.body, keep, strict=True):
        if kept:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            kept_lines.update(range(first, node.end_lineno + 1))
    for node, kept in zip(tree.body, keep, strict=True):
        if kept:
            continue
        span = range(node.lineno, node.end_lineno + 1)
        if kept_lines.isdisjoint(span):  # a statement sharing a line with a kept one stays
            for n in span:
                lines[n - 1] = "\n"
    return "".join(lines)


def stage(path: str, dest_root: str) -> str:
    """Write the definitions of the notebook file ``path`` into ``dest_root`` as the module
    NOTEBOOKS names; returns that module's path relative to ``dest_root``."""
    base = os.path.basename(path)
    rel = NOTEBOOKS[base]
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    source = ipynb_source(text, base) if base.endswith(".ipynb") else text
    tmp = os.path.join(dest_root, rel + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(definitions_only(source))
    os.replace(tmp, os.path.join(dest_root, rel))
    return rel


def find(directory: str) -> str | None:
    """The notebook file at the top of ``directory`` the grader reads (the exported script
    when both it and the notebook are there), or None."""
    for name in NOTEBOOKS:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None
