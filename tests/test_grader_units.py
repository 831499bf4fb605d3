"""Building blocks of the grader: the pickle-free codec, comparisons and their diagnoses, the
item table, the submission finder."""

import os

import numpy as np
import pytest

from cs231n_grader import compare, graded_items, json_npz, notebooks, submission
from cs231n_grader.json_npz import Unsupported

STUDENTS = os.path.join(os.path.dirname(__file__), "fixtures", "students")


def test_codec_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    value = {
        "x": rng.standard_normal((2, 3)).astype(np.float32),
        "labels": np.array([1, 0, 2]),
        "mask": np.array([True, False]),
        "nested": ({"mode": "train", "p": 0.5, "seed": None}, [1, 2.5, float("nan"), -np.inf]),
        "scalar": np.float64(3.25),
        "dtype": np.float64,
    }
    json_npz.save(str(tmp_path / "v"), value)
    back = json_npz.load(str(tmp_path / "v"))
    assert back["x"].dtype == np.float32 and np.array_equal(back["x"], value["x"])
    assert np.array_equal(back["labels"], value["labels"]) and back["mask"].dtype == bool
    assert isinstance(back["nested"], tuple) and back["nested"][0] == value["nested"][0]
    assert np.isnan(back["nested"][1][2]) and back["nested"][1][3] == -np.inf
    assert float(back["scalar"]) == 3.25 and back["dtype"] is np.float64
    with np.load(tmp_path / "v.npz", allow_pickle=False) as npz:
        assert len(npz.files) == 4


def test_codec_marks_what_it_cannot_carry():
    arrays = {}
    tree = json_npz.encode(
        {"gen": (i for i in range(3)), "obj": np.array([object()]), "keys": {1: 2}}, arrays
    )
    back = json_npz.decode(tree, arrays)
    assert isinstance(back["gen"], Unsupported) and back["gen"].type_name == "generator"
    assert isinstance(back["obj"], Unsupported) and isinstance(back["keys"], Unsupported)
    assert arrays == {}


def test_compare_types_shapes_and_nans():
    r = np.arange(6.0).reshape(2, 3) + 1
    assert compare.compare("out", r.copy(), r, 1e-7).ok
    c = compare.compare("out", r.T.copy(), r, 1e-7)
    assert not c.ok and c.kind == "shape" and "(3, 2), expected (2, 3)" in c.message
    c = compare.compare("db", r.reshape(1, 6), r.reshape(6), 1e-7)
    assert "values are right" in c.message
    c = compare.compare("out", r.T.copy(), r, 1e-7)
    assert "transpose of the right answer" in c.message and "reshape" not in c.message
    c = compare.compare("out", r.reshape(3, 2), r, 1e-7)  # same order, other shape
    assert "reshape it" in c.message and "transpose" not in c.message
    bad = r.copy()
    bad[0, 1] = np.nan
    c = compare.compare("dx", bad, r, 1e-7)
    assert c.kind == "nan" and "1 of 6" in c.message
    assert "None" in compare.compare("dx", None, r, 1e-7).message
    assert compare.compare("dx", r.tolist(), r, 1e-7).kind == "type"
    assert compare.compare("loss", np.float32(2.0), 2.0, 1e-7).ok
    c = compare.compare("labels", np.array([1, 2, 0]), np.array([1, 2, 2]), 0)
    assert not c.ok and "1 of 3" in c.message


def test_round_off_around_zero_is_not_an_error():
    ref = np.array([1.0, 2.0, 1e-17, -3.0])
    noisy = ref + np.array([0.0, 0.0, 4e-16, 0.0])  # rel_error alone: 4e-16 / 1e-8 = 4e-8
    assert compare.compare("g", noisy, ref, 1e-8, scale=3.0).ok
    assert not compare.compare("g", noisy, ref, 1e-8).ok
    assert not compare.compare("g", ref + [0, 0, 1e-6, 0], ref, 1e-8, scale=3.0).ok


def test_constant_factor_and_its_name():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((4, 3))
    assert compare.constant_factor(ref * 4, ref) == pytest.approx(4)
    assert compare.constant_factor(ref + 1, ref) is None
    assert compare.constant_factor(ref, ref) is None
    assert "N=4" in compare.name_factor(4.0, {"N": 4})
    assert "1/N" in compare.name_factor(0.25, {"N": 4})
    assert "sign" in compare.name_factor(-1.0, {"N": 4})
    assert compare.name_factor(2.0, {"N": 5}) == "a factor of 2"
    assert compare.name_factor(0.5, {}) == "a factor of 1/2"
    assert "all zeros" in compare.pattern(np.zeros_like(ref), ref, 1e-7)
    wrong = ref.copy()
    wrong[1, 2] += 1
    assert "1 of 12" in compare.pattern(wrong, ref, 1e-7)


def test_item_table_is_consistent():
    names = graded_items.all_test_names()
    assert len(names) == len(set(names))
    for item in graded_items.ITEMS:
        assert item.kind in ("layer", "loss", "optim", "object", "torch", "torch_module")
        # A cs231n/ file, or a notebook's staged module at the root (notebooks.py).
        assert item.files and all(
            f.startswith("cs231n/") or f in notebooks.NOTEBOOKS.values() for f in item.files
        )
        twin = "torch_impl." if item.kind.startswith("torch") else "numpy_impl."
        assert item.ref.startswith(twin), item.ref
        for part, test in item.tests.items():
            assert item.requires[test] in item.functions, (item.name, part)
        cases = item.cases(np.random.default_rng(0))
        assert len(cases) >= 2, item.name
        assert all(isinstance(c["label"], str) and c["label"] for c in cases)
        if item.kind == "layer":
            assert all(len(c["args"]) == len(item.spec["args"]) for c in cases), item.name
        if item.kind in ("layer", "loss"):
            assert any(c["meta"]["N"] == 1 for c in cases), f"{item.name}: no batch of 1"


def test_submission_layouts(tmp_path):
    correct = os.path.join(STUDENTS, "correct")
    for path in (correct, os.path.join(correct, "cs231n")):
        with submission.load([path]) as sub:
            # The folder holds the notebook's PyTorch.py, so it is graded from a staged copy;
            # every module still names the student's own file.
            layers = os.path.join(os.path.abspath(correct), "cs231n", "layers.py")
            assert sub.modules["cs231n/layers.py"].path == layers
            assert "cs231n/classifiers/fc_net.py" in sub.modules
            assert "affine_forward" in sub.modules["cs231n/layers.py"].defined
    loose = tmp_path / "upload"
    loose.mkdir()
    (loose / "layers.py").write_text("def relu_forward(x):\n    return x, x\n")
    (loose / "notes.txt").write_text("not code")
    with submission.load([str(loose)]) as sub:
        staged = sub.root
        assert set(sub.modules) == {"cs231n/layers.py"}
        assert sub.modules["cs231n/layers.py"].path == str(loose / "layers.py")
        assert not os.path.exists(os.path.join(staged, "cs231n", "optim.py"))
        assert sub.standins["cs231n.optim"] == "numpy_impl.optim"
        assert "cs231n.layers" not in sub.standins
    assert not os.path.exists(staged), "the staging directory is removed"
    with pytest.raises(submission.SubmissionError, match="two files named"):
        submission.load([str(loose / "layers.py"), os.path.join(correct, "cs231n", "layers.py")])
