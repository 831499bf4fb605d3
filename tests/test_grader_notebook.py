"""Grading assignment 2's PyTorch notebook: a student's PyTorch.py (an nbconvert export) or
PyTorch.ipynb is staged as its definitions only (no download, no training at import), each
function is compared with torch_impl.pytorch_notebook, initializers and modules are judged by
what every right answer shares; a right copy passes, bugs fail with a hint, a missing function
is MISSING.

One grading per fixture (each costs a child that imports torch)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from cs231n_grader import engine, notebooks, profiles, reference_runs, runner, submission
from cs231n_grader.graded_items import ITEMS
from cs231n_grader.notebook_checks import NOTEBOOK_CHECKS
from cs231n_grader.results import CaseResult

FIXTURE = os.path.join(
    os.path.dirname(__file__), "fixtures", "students", "a2_pytorch", "PyTorch.py"
)
TESTS = {
    "PyTorch.flatten",
    "PyTorch.two_layer_fc",
    "PyTorch.three_layer_convnet",
    "PyTorch.random_weight",
    "PyTorch.zero_weight",
    "PyTorch.TwoLayerFC",
    "PyTorch.ThreeLayerConvNet",
}


def _grade(paths):
    with submission.load(paths) as sub:
        profile, _ = profiles.choose("auto", sub.modules)
        results = engine.grade(
            sub, runner.Limits(30.0, 6144), jobs=1, only=["PyTorch.*"], profile=profile
        )
        return {r.name: r for r in results}, list(sub.notes), profile


def _fixture_source():
    with open(FIXTURE, encoding="utf-8") as f:
        return f.read()


def _replace(source, old, new):
    assert old in source, old
    return source.replace(old, new)


# ----------------------------------------------------------------------------------------------
# Staging: definitions only, line numbers kept
# ----------------------------------------------------------------------------------------------


def test_staging_keeps_definitions_and_drops_what_runs():
    src = (
        "import torch\n"
        "from google.colab import drive\n"
        "drive.mount('/content')\n"
        "dtype = torch.float32\n"
        "model = make()\n"
        "params = [model]\n"  # needs a dropped statement: dropped too
        "def f(x):\n"
        "    return x + 1\n"
        "f(2)\n"
        "@staticmethod\n"
        "def g():\n"
        "    pass\n"
        "if torch.cuda.is_available():\n"
        "    device = 'cuda'\n"
    )
    out = notebooks.definitions_only(src)
    lines = out.splitlines()
    assert len(lines) == len(src.splitlines())  # line numbers kept
    assert lines[0] == "import torch" and lines[3] == "dtype = torch.float32"
    assert lines[6:8] == ["def f(x):", "    return x + 1"]
    assert lines[9:11] == ["@staticmethod", "def g():"]
    for dropped in (1, 2, 4, 5, 8, 12, 13):
        assert lines[dropped] == "", (dropped, lines[dropped])
    assert notebooks.definitions_only("def broken(:\n") == "def broken(:\n"  # reported on import


def test_ipynb_code_cells_become_a_script_with_magics_commented_out():
    nb = {
        "cells": [
            {"cell_type": "markdown", "source": ["# Title"]},
            {"cell_type": "code", "source": ["%cd somewhere\n", "!bash get.sh\n", "x = 1"]},
            {"cell_type": "code", "source": "def f():\n    return x"},
        ]
    }
    src = notebooks.ipynb_source(json.dumps(nb))
    assert src == "# %cd somewhere\n# !bash get.sh\nx = 1\n\ndef f():\n    return x\n"
    with pytest.raises(notebooks.NotebookError, match="not a Jupyter notebook"):
        notebooks.ipynb_source("{}", "PyTorch.ipynb")


def test_the_reference_passes_its_own_self_checks():
    """random_weight, zero_weight and the modules of torch_impl.pytorch_notebook meet the checks
    a student's copy is held to (the modules: nn.Linear / nn.Conv2d layouts, Kaiming weights)."""
    item = next(i for i in ITEMS if i.name == "pytorch_notebook")
    _, cases, records = reference_runs.reference_run(item, 231)
    checked = 0
    for i, case in enumerate(cases):
        fspec = item.spec["functions"][case["fn"]]
        if fspec.get("check") in NOTEBOOK_CHECKS:
            cr = CaseResult(case["label"], i, dict(case["meta"]))
            NOTEBOOK_CHECKS[fspec["check"]](cr, records[f"loss/{i}"]["value"], case)
            assert cr.status == "pass", (fspec["function"], cr.messages)
            checked += 1
    assert checked == 8


# ----------------------------------------------------------------------------------------------
# Grading
# ----------------------------------------------------------------------------------------------


def test_a_right_export_passes_without_running_the_notebook():
    """The fixture's top-level cells would mount a drive, download CIFAR-10 and call an undefined
    train_part2: none of it runs, every test passes, and assignment 2 is told from PyTorch.py."""
    res, notes, profile = _grade([FIXTURE])
    assert profile.assignment == "2"
    assert set(res) == TESTS
    for r in res.values():
        assert r.verdict == "pass", (r.name, r.hint, r.details)
        assert r.points == profile.points[r.name]
    assert any("PyTorch.py: graded on its imports, definitions and constants" in n for n in notes)


def test_buggy_notebook_in_an_assignment_folder_fails_with_hints(tmp_path):
    """An assignment folder with PyTorch.ipynb: the folder is not written to; a missing ReLU,
    a hard-coded 10 classes, default (not Kaiming) initialization, weights that do not require
    grad, and no zero_weight at all."""
    src = _fixture_source()
    src = _replace(
        src,
        "    x = F.relu(F.conv2d(x, conv_w2, conv_b2, padding=1))\n    scores",
        "    x = F.conv2d(x, conv_w2, conv_b2, padding=1)\n    scores",
    )
    src = _replace(src, "channel_2 * 32 * 32, num_classes)", "channel_2 * 32 * 32, 10)")
    src = _replace(src, "        nn.init.kaiming_normal_(self.fc1.weight)\n", "")
    src = _replace(src, "    w.requires_grad = True\n", "")
    src = _replace(
        src,
        "def zero_weight(shape):\n    return torch.zeros(shape, device=device, dtype=dtype, "
        "requires_grad=True)\n",
        "",
    )
    cells = [c for c in src.split("# In[") if c.strip()]
    nb = {
        "cells": [
            {"cell_type": "code", "source": "# In[" + c, "metadata": {}, "outputs": []}
            for c in cells
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    folder = tmp_path / "assignment2"
    shutil.copytree(
        os.path.join(os.path.dirname(FIXTURE), "..", "a2_course", "cs231n"), folder / "cs231n"
    )
    (folder / "PyTorch.ipynb").write_text(json.dumps(nb))
    before = sorted(os.listdir(folder))
    res, notes, _ = _grade([str(folder)])
    assert sorted(os.listdir(folder)) == before  # nothing staged into the student's folder
    assert any(n.startswith("PyTorch.ipynb: graded on its imports") for n in notes)

    assert res["PyTorch.flatten"].verdict == "pass"
    assert res["PyTorch.two_layer_fc"].verdict == "pass"
    assert res["PyTorch.three_layer_convnet"].verdict == "fail"
    assert "output" in res["PyTorch.three_layer_convnet"].hint
    assert res["PyTorch.zero_weight"].verdict == "missing"
    assert "zero_weight is not defined in PyTorch.py" in res["PyTorch.zero_weight"].hint
    rw = res["PyTorch.random_weight"]
    assert rw.verdict == "fail" and "requires grad" in rw.hint
    fc = res["PyTorch.TwoLayerFC"]
    assert fc.verdict == "fail" and "kaiming_normal_" in fc.hint
    conv = res["PyTorch.ThreeLayerConvNet"]
    assert conv.verdict == "fail" and "num_classes" in conv.hint
    assert conv.cases_passed == 1 and conv.cases_total == 2  # the 10-class case is right


def test_exported_vectors_hold_the_functions_answers_only(tmp_path):
    """--export-vectors: the barebones networks' outputs are the reference's on the case's
    inputs (params given flat after x); initializers and modules carry inputs only."""
    import torch

    from cs231n_grader.export import export_vectors, load_vectors
    from torch_impl import pytorch_notebook as P

    export_vectors(str(tmp_path), only=["PyTorch.*"])
    cases = load_vectors(str(tmp_path))["pytorch_notebook"]
    by_function = {}
    for case in cases:
        by_function.setdefault(case["outputs"].get("function"), []).append(case)
    assert len(by_function[None]) == 8  # 3 + 2 initializer shapes, 1 + 2 module cases
    for case in by_function["three_layer_convnet"]:
        x, *params = (torch.from_numpy(a) for a in case["inputs"]["args"])
        expected = P.three_layer_convnet(x, params).numpy()
        np.testing.assert_allclose(case["outputs"]["output"], expected, rtol=1e-12)
        assert case["outputs"]["grad of conv_w1"].shape == params[0].shape
