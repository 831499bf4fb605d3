"""nn-twins-grade's command line: table, JSON, Gradescope's results.json (validated against its
documented structure), --weights, --export-vectors, python -m."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cs231n_grader.cli import main

STUDENTS = os.path.join(os.path.dirname(__file__), "fixtures", "students")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Gradescope autograder results.json, as documented at
# https://gradescope-autograders.readthedocs.io/en/latest/specs/#output-format
_TOP_KEYS = {
    "score",
    "execution_time",
    "output",
    "output_format",
    "test_output_format",
    "test_name_format",
    "visibility",
    "stdout_visibility",
    "extra_data",
    "tests",
    "leaderboard",
}
_TEST_KEYS = {
    "score",
    "max_score",
    "status",
    "name",
    "name_format",
    "number",
    "output",
    "output_format",
    "tags",
    "visibility",
    "extra_data",
}
_VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def validate_gradescope(doc) -> None:
    """Raise AssertionError unless ``doc`` has the structure Gradescope documents."""
    assert isinstance(doc, dict), "results.json must be a JSON object"
    assert set(doc) <= _TOP_KEYS, f"unknown top-level keys {set(doc) - _TOP_KEYS}"
    assert "score" in doc or "tests" in doc, "either a total score or per-test scores"
    if "score" in doc:
        assert _number(doc["score"])
    if "execution_time" in doc:
        assert _number(doc["execution_time"]) and doc["execution_time"] >= 0
    for key in ("visibility", "stdout_visibility"):
        if key in doc:
            assert doc[key] in _VISIBILITY, f"{key}={doc[key]!r}"
    if "output" in doc:
        assert isinstance(doc["output"], str)
    tests = doc.get("tests", [])
    assert isinstance(tests, list)
    for t in tests:
        assert isinstance(t, dict) and set(t) <= _TEST_KEYS, f"unknown test keys {set(t)}"
        assert isinstance(t.get("name"), str) and t["name"]
        if "score" in t:
            assert _number(t["score"])
        if "max_score" in t:
            assert _number(t["max_score"]) and t["max_score"] >= 0
            assert 0 <= t["score"] <= t["max_score"]
        if "status" in t:
            assert t["status"] in ("passed", "failed")
        if "output" in t:
            assert isinstance(t["output"], str)
        if "visibility" in t:
            assert t["visibility"] in _VISIBILITY
    if "score" in doc and tests and all("score" in t for t in tests):
        assert abs(doc["score"] - sum(t["score"] for t in tests)) < 1e-9


def test_validator_rejects_malformed_documents():
    with pytest.raises(AssertionError):
        validate_gradescope({"tests": [{"name": "x", "score": 2, "max_score": 1}]})
    with pytest.raises(AssertionError):
        validate_gradescope({"score": 1, "tests": [{"name": "x", "score": 1, "points": 1}]})
    with pytest.raises(AssertionError):
        validate_gradescope({"score": 3, "tests": [{"name": "x", "score": 1}]})
    validate_gradescope({"score": 1, "tests": [{"name": "x", "score": 1, "max_score": 1}]})


def test_gradescope_results_with_weights(tmp_path):
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"batchnorm_forward": 3, "batchnorm_backward": 2, "adam": 4}))
    out = tmp_path / "results.json"
    rc = main(
        [
            os.path.join(STUDENTS, "bn_momentum"),
            "--format",
            "gradescope",
            "--weights",
            str(weights),
            "-o",
            str(out),
            "--jobs",
            "2",
        ]
    )
    assert rc == 0
    doc = json.loads(out.read_text())
    validate_gradescope(doc)
    tests = {t["name"]: t for t in doc["tests"]}
    assert tests["batchnorm_forward"]["status"] == "failed"
    assert tests["batchnorm_forward"]["max_score"] == 3 and tests["batchnorm_forward"]["score"] == 0
    assert "PyTorch's convention" in tests["batchnorm_forward"]["output"]
    assert tests["batchnorm_backward"]["score"] == 2 == tests["batchnorm_backward"]["max_score"]
    assert tests["adam"]["status"] == "failed" and "not found" in tests["adam"]["output"]
    assert doc["score"] == 2


def test_gradescope_full_marks_for_the_correct_student(tmp_path):
    out = tmp_path / "results.json"
    assert (
        main(
            [
                os.path.join(STUDENTS, "correct", "cs231n"),
                "--format",
                "gradescope",
                "-o",
                str(out),
                "--only",
                "*norm*",
                "--jobs",
                "2",
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    validate_gradescope(doc)
    assert len(doc["tests"]) >= 9  # batchnorm (3), layernorm, spatial batch- and groupnorm
    assert doc["score"] == sum(t["max_score"] for t in doc["tests"]) > 0


def test_gradescope_when_the_submission_cannot_be_read(tmp_path):
    empty = tmp_path / "submission"
    empty.mkdir()
    (empty / "README.txt").write_text("forgot the code")
    out = tmp_path / "results.json"
    assert main([str(empty), "--format", "gradescope", "-o", str(out)]) == 2
    doc = json.loads(out.read_text())
    validate_gradescope(doc)
    assert doc["score"] == 0 and "Could not grade" in doc["output"]


def test_unknown_weight_names_are_rejected(tmp_path, capsys):
    weights = tmp_path / "w.json"
    weights.write_text(json.dumps({"affine_froward": 1}))
    assert main([os.path.join(STUDENTS, "bn_momentum"), "--weights", str(weights)]) == 2
    assert "affine_froward" in capsys.readouterr().err


def test_json_format(tmp_path):
    out = tmp_path / "report.json"
    assert main([os.path.join(STUDENTS, "adam_late_t"), "--format", "json", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["tool"] == "nn-twins-grade" and doc["thresholds"]["gradient"] > 0
    tests = {t["name"]: t for t in doc["tests"]}
    assert set(tests) == {"sgd", "adam"}
    assert tests["sgd"]["passed"] and tests["sgd"]["score"] == 1
    assert not tests["adam"]["passed"] and tests["adam"]["verdict"] == "fail"
    assert any("diagnosis" in d for d in tests["adam"]["details"])
    assert doc["score"] == 1 and doc["max_score"] == 2


def test_table_format(capsys):
    assert main([os.path.join(STUDENTS, "contract_violations"), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "affine_backward" in out and "FAIL" in out and "NOT RUN" in out
    # affine_forward and relu_backward are right; relu_forward is right but edits its input
    # in place (a robustness remark, no deduction by default).
    assert "Score: 3/8" in out
    assert "robustness: modifies its input x in place" in out
    assert "db has shape (1, 4)" in out


def test_export_vectors_match_the_reference(tmp_path):
    from cs231n_grader.export import load_vectors
    from numpy_impl.layers import affine_backward, affine_forward

    d = tmp_path / "vectors"
    assert (
        main(
            [
                "--export-vectors",
                str(d),
                "--only",
                "affine_*",
                "--only",
                "sgd_momentum",
                "--only",
                "softmax_loss",
            ]
        )
        == 0
    )
    index = json.loads((d / "index.json").read_text())
    assert {e["item"] for e in index["items"]} >= {"affine", "sgd_momentum", "softmax_loss"}
    for e in index["items"]:
        with np.load(d / e["arrays"], allow_pickle=False) as npz:
            assert len(npz.files) > 0
    vec = load_vectors(str(d))
    for case in vec["affine"]:
        x, w, b = case["inputs"]["args"]
        out, cache = affine_forward(x, w, b)
        np.testing.assert_array_equal(case["outputs"]["forward"]["out"], out)
        dx, dw, db = affine_backward(case["inputs"]["douts"][0], cache)
        np.testing.assert_array_equal(case["outputs"]["backward"]["dw"], dw)
    mom = vec["sgd_momentum"][1]
    w, config = mom["inputs"]["w"], dict(mom["inputs"]["config"])
    for dw, step in zip(mom["inputs"]["dws"], mom["outputs"]["steps"], strict=True):
        v = config["momentum"] * config["velocity"] - config["learning_rate"] * dw
        w, config["velocity"] = w + v, v
        np.testing.assert_allclose(step["next_w"], w, rtol=1e-12)


def test_python_m_and_list():
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "cs231n_grader", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "affine_forward" in proc.stdout and "FullyConnectedNet.loss" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "cs231n_grader"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2 and "student path" in proc.stderr
