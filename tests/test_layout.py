"""The two contracts, read from the source: what each package may import.

- ``twin_checks`` (the argument checks both twins share) imports neither NumPy nor torch.
- ``numpy_impl`` imports, at module level, only NumPy, the standard library, ``twin_checks`` and
  itself (plotting and image decoding are imported lazily inside the functions that need them).
- ``torch_impl`` never imports ``numpy_impl`` or NumPy: the torch path has no NumPy in it.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def _imports(path: pathlib.Path, top_level_only: bool) -> set[str]:
    """Top-level package names imported by ``path``: everywhere, or (top_level_only) outside
    function and class bodies, including under a module-level `if`/`try` (TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    statements = [s for s in tree.body if not _in_def(s)] if top_level_only else [tree]
    nodes = [n for stmt in statements for n in ast.walk(stmt)]
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _in_def(stmt) -> bool:
    return isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))


def _files(package: str):
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _files("numpy_impl"), ids=lambda p: p.name)
def test_numpy_twin_imports_numpy_stdlib_and_the_checks_only(path):
    allowed = STDLIB | {"numpy", "twin_checks", "numpy_impl", "nn_twins"}
    extra = _imports(path, top_level_only=True) - allowed
    assert not extra, f"{path.relative_to(ROOT)} imports {sorted(extra)} at module level"


@pytest.mark.parametrize("path", _files("torch_impl"), ids=lambda p: p.name)
def test_torch_twin_never_imports_numpy(path):
    bad = _imports(path, top_level_only=False) & {"numpy", "numpy_impl"}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_checks_import_neither_numpy_nor_torch():
    code = (
        "import sys\n"
        "import twin_checks\n"
        "bad = [m for m in ('numpy', 'torch') if m in sys.modules]\n"
        "assert not bad, f'twin_checks imported {bad}'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("path", _files("twin_checks"), ids=lambda p: p.name)
def test_checks_import_the_standard_library_only(path):
    extra = _imports(path, top_level_only=False) - STDLIB - {"twin_checks"}
    assert not extra, f"{path.relative_to(ROOT)} imports {sorted(extra)}"


def test_one_version_string():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    import cifar_training
    import cs231n_grader
    import nn_twins
    import numpy_impl
    import torch_impl

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "nn_twins.__version__"
    for package in (numpy_impl, torch_impl, cifar_training, cs231n_grader):
        assert package.__version__ is nn_twins.__version__, package.__name__
    literal = [
        p.relative_to(ROOT)
        for p in ROOT.rglob("*.py")
        if "__version__ = " in p.read_text()
        and "fixtures" not in p.parts
        and "tests" not in p.parts
    ]
    assert literal == [pathlib.Path("nn_twins/__init__.py")], literal


PACKAGES = (
    "nn_twins",
    "twin_checks",
    "numpy_impl",
    "torch_impl",
    "builtin_impl",
    "cifar_training",
    "cs231n_grader",
    "gan_training",
    "simclr_training",
)


def test_every_module_imports():
    # A module importing a name that moved fails here, not in the one test that happens to load
    # it (ruff does not resolve imports).
    import importlib
    import pkgutil

    failed = {}
    for name in PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), name + "."):
            if info.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(info.name)
            except Exception as e:  # noqa: BLE001 -- every failure is reported, by module
                failed[info.name] = repr(e)
    assert not failed, failed
