"""Gradescope/otter conventions: per-test visibility and hidden cases from the weights file,
tests outside a weights file omitted, partial credit, per-case JSON, stdout visibility, and a
results file on disk while the run goes (a killed run still leaves one)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from cs231n_grader import report, sandbox
from cs231n_grader.cli import main
from tests.test_grader_cli import validate_gradescope

STUDENTS = os.path.join(os.path.dirname(__file__), "fixtures", "students")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_weights_file_options(tmp_path):
    weights = tmp_path / "weights.json"
    weights.write_text(
        json.dumps(
            {
                "batchnorm_forward": {"points": 3, "visibility": "hidden", "hide_cases": True},
                "batchnorm_backward": 2,
            }
        )
    )
    out = tmp_path / "results.json"
    assert (
        main(
            [
                os.path.join(STUDENTS, "bn_momentum"),
                "--format",
                "gradescope",
                "--weights",
                str(weights),
                "-o",
                str(out),
                "--stdout-visibility",
                "visible",
                "--partial-credit",
                "--jobs",
                "2",
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    validate_gradescope(doc)
    assert doc["stdout_visibility"] == "visible"
    tests = {t["name"]: t for t in doc["tests"]}
    assert set(tests) == {"batchnorm_forward", "batchnorm_backward"}, "others are omitted"
    fwd = tests["batchnorm_forward"]
    assert fwd["visibility"] == "hidden" and tests["batchnorm_backward"]["visibility"] == "visible"
    assert "hidden" in fwd["output"] and "running_mean" not in fwd["output"]
    # Partial credit: the test-mode case of the buggy forward passes (1 of 4 cases).
    assert 0 < fwd["score"] < fwd["max_score"] == 3
    assert "INCOMPLETE" not in doc["output"]


def test_bad_weights_options_are_named(tmp_path):
    bad = tmp_path / "w.json"
    bad.write_text(json.dumps({"adam": {"points": 1, "visibility": "secret"}}))
    with pytest.raises(report.WeightsError, match="visibility of 'adam' must be one of .*'secret'"):
        report.load_weights(str(bad))
    bad.write_text(json.dumps({"adam": {"pts": 1}}))
    with pytest.raises(report.WeightsError, match="'adam' must be a number or an object"):
        report.load_weights(str(bad))
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(report.WeightsError, match="got list"):
        report.load_weights(str(bad))


def test_json_has_per_case_results(tmp_path):
    out = tmp_path / "r.json"
    assert (
        main(
            [
                os.path.join(STUDENTS, "backward_factor"),
                "--format",
                "json",
                "-o",
                str(out),
                "--only",
                "softmax_loss",
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    (sm,) = doc["tests"]
    labels = [c["label"] for c in sm["cases"]]
    assert "N=5, C=10" in labels and len(labels) == sm["cases_total"]
    bad = next(c for c in sm["cases"] if c["label"] == "N=5, C=10")
    assert bad["status"] == "fail" and "factor of N=5" in bad["diagnosis"]


def _temp_dirs_of(pids) -> set:
    """The harness and job directories named on the command lines of ``pids``."""
    dirs = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        for arg in args:
            for marker in ("nn-twins-harness-", "nn-twins-job-"):
                if marker in arg:
                    head, _, tail = arg.partition(marker)
                    dirs.add(head + marker + tail.split(os.sep)[0])
    return dirs


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process tree via /proc")
def test_killed_run_leaves_results(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    grader = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cs231n_grader",
            os.path.join(STUDENTS, "infinite_loop"),
            "--format",
            "gradescope",
            "-o",
            "results.json",
            "--timeout",
            "60",
            "--jobs",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out = tmp_path / "results.json"
    try:
        for _ in range(600):  # relu_backward hangs; the affine item finishes in seconds
            if out.exists() and "affine_forward" in out.read_text():
                break
            time.sleep(0.1)
    finally:
        below = sandbox.descendants(grader.pid)
        leftovers = _temp_dirs_of(below)
        grader.send_signal(signal.SIGKILL)
        grader.wait()
        for pid in below:  # the children the killed grader can no longer end
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for path in leftovers:  # nor remove their directories
            shutil.rmtree(path, ignore_errors=True)
    doc = json.loads(out.read_text())
    validate_gradescope(doc)
    assert "INCOMPLETE" in doc["output"]
    assert {t["name"]: t["status"] for t in doc["tests"]}["affine_forward"] == "passed"


def test_exported_vectors_come_with_a_decoder_and_rules(tmp_path):
    import importlib.util

    import numpy as np

    from cs231n_grader.export import load_vectors

    d = tmp_path / "vectors"
    assert main(["--export-vectors", str(d), "--only", "max_pool_naive"]) == 0
    assert "Comparison rules" in (d / "README.md").read_text()
    spec = importlib.util.spec_from_file_location("decode_vectors", d / "decode.py")
    decode = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(decode)
    ours, theirs = load_vectors(str(d)), decode.load_vectors(str(d))
    assert set(ours) == set(theirs) == {"max_pool_naive"}
    for a, b in zip(ours["max_pool_naive"], theirs["max_pool_naive"], strict=True):
        assert a["label"] == b["label"] and a["meta"] == b["meta"]
        np.testing.assert_array_equal(
            a["outputs"]["backward"]["dx"], b["outputs"]["backward"]["dx"]
        )
    assert any(c["meta"].get("ties") for c in theirs["max_pool_naive"])
    assert decode.rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0


def test_hidden_cases_by_label(tmp_path):
    from cs231n_grader.results import TestResult

    r = TestResult(
        "softmax_loss",
        "softmax_loss",
        "cs231n/layers.py",
        "fail",
        hint="loss differs (case 'N=5')",
        details=[
            "case 'N=5': loss differs",
            "case 'secret rows': dx differs",
            "case 'secret rows': diagnosis: off by 2",
        ],
        robustness=["case 'secret huge': loss is inf"],
        cases_passed=1,
        cases_total=4,
    )
    text = report._test_text(r, ["secret*"])
    assert "case 'N=5': loss differs" in text and "secret" not in text
    assert "details of hidden cases are not shown" in text and "cases passed: 1/4" in text
    assert "secret rows" in report._test_text(r, [])
    bad = tmp_path / "w.json"
    bad.write_text(json.dumps({"softmax_loss": {"points": 1, "hide_cases": "secret*"}}))
    with pytest.raises(report.WeightsError, match="hide_cases of 'softmax_loss' must be"):
        report.load_weights(str(bad))
    bad.write_text(json.dumps({"softmax_loss": {"points": 1, "hide_cases": ["secret*"]}}))
    assert report.load_weights(str(bad))[1]["softmax_loss"].hide_cases == ["secret*"]


def test_gradescope_with_a_profile_keeps_missing_tests(tmp_path):
    out = tmp_path / "results.json"
    assert (
        main(
            [
                os.path.join(STUDENTS, "a2_buggy"),
                "--format",
                "gradescope",
                "-o",
                str(out),
                "--only",
                "spatial_groupnorm_*",
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    validate_gradescope(doc)
    tests = {t["name"]: t for t in doc["tests"]}
    assert tests["spatial_groupnorm_backward"]["status"] == "failed"
    assert tests["spatial_groupnorm_backward"]["max_score"] == 2  # assignment 2's points
    assert "MISSING" in tests["spatial_groupnorm_backward"]["output"]
    assert tests["spatial_groupnorm_forward"]["score"] == 2
    assert "assignment 2 detected" in doc["output"]
