"""The benchmark scripts run end to end (tiny shapes) and print well-formed JSON lines.

Nothing here asserts a time: speed is measured by the scripts themselves (``BENCHMARKS.md``);
this only keeps them from rotting. Each script runs once per session in a subprocess, exactly as
a user types it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {"numpy", "torch", "builtin"}
KEYS = {"bench", "case", "backend", "ms", "ratio_to_builtin"}


def _run(script: str, *args: str) -> tuple[list[dict], str]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--smoke", "--json", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"no JSON lines on stdout; stderr:\n{proc.stderr[-3000:]}"
    rows = [json.loads(line) for line in lines]  # every stdout line is one JSON object
    # The human-readable header (machine, threads, load) goes to stderr in --json mode.
    assert "load average" in proc.stderr and "threads: torch" in proc.stderr
    return rows, proc.stderr


@pytest.fixture(scope="module")
def ops_run():
    return _run("ops.py")


@pytest.fixture(scope="module")
def ops_rows(ops_run):
    return ops_run[0]


@pytest.fixture(scope="module")
def train_rows():
    return _run("train_step.py")[0]


def _check_common(rows):
    for r in rows:
        assert KEYS <= set(r), r
        assert r["backend"] in BACKENDS, r
        assert isinstance(r["bench"], str) and isinstance(r["case"], str) and r["case"]
        # A backend that could not run writes an error row instead of a time: for the twins
        # that is a broken implementation, and for the builtin a broken reference.
        assert r["ms"] is not None and not r.get("error"), (
            f"{r['bench']} {r['case']} [{r['backend']}] did not run: {r.get('error')}"
        )
        assert isinstance(r["ms"], float | int) and math.isfinite(r["ms"]) and r["ms"] > 0, r
        ratio = r["ratio_to_builtin"]
        if r["backend"] == "builtin":
            assert ratio == 1.0, r
        elif ratio is not None:
            assert ratio > 0, r
    # Exactly one row per (bench, case, backend).
    keys = [(r["bench"], r["case"], r["backend"]) for r in rows]
    assert len(keys) == len(set(keys))


def test_ops_json_lines(ops_rows):
    _check_common(ops_rows)
    benches = {r["bench"] for r in ops_rows}
    for b in (
        "matmul",
        "conv",
        "max_pool",
        "batchnorm",
        "spatial_batchnorm",
        "layernorm",
        "groupnorm",
        "affine",
        "softmax_loss",
    ):
        assert b in benches, b
    # The builtin runs every op, so every case has its reference time.
    cases = {(r["bench"], r["case"]) for r in ops_rows if r["bench"] != "conv_total"}
    timed_builtin = {
        (r["bench"], r["case"])
        for r in ops_rows
        if r["backend"] == "builtin" and r["ms"] and r["bench"] != "conv_total"
    }
    assert cases == timed_builtin


def test_ops_gflops_and_matmul_fraction(ops_rows):
    for r in ops_rows:
        if r["bench"] in ("matmul", "conv") and r["ms"]:
            assert r["gflops"] > 0, r
        if r["bench"] == "conv" and r["ms"]:
            assert r["matmul_fraction"] > 0, r
    assert {r["backend"] for r in ops_rows if r["bench"] == "matmul"} == {"numpy", "builtin"}


def test_ops_targets_follow_ratios(ops_rows):
    for r in ops_rows:
        if "meets_target" in r:
            assert r["meets_target"] == (r["ratio_to_builtin"] <= r["target"]), r


def test_ops_cases_come_from_the_training_model(ops_run):
    # The CNN-shaped cases are read from train.py's default model, not from the fallback list.
    rows, stderr = ops_run
    assert "shapes: train.py's default model" in stderr, stderr[-2000:]
    assert any(r["bench"] == "conv_total" for r in rows)


def test_train_step_json_lines(train_rows):
    _check_common(train_rows)
    assert {r["bench"] for r in train_rows} == {"train_step"}
    assert {r["case"].split()[0] for r in train_rows} == {"default", "three-layer"}
    assert {r["backend"] for r in train_rows} == BACKENDS
    for r in train_rows:
        n = int(r["case"].split("N=")[1])
        assert r["images_per_s"] == pytest.approx(n / (r["ms"] / 1e3), rel=1e-2)
        assert r["peak_rss_mb"] >= r["baseline_rss_mb"] > 0
        assert math.isfinite(r["last_loss"])


@pytest.mark.parametrize("backend", ["numpy", "torch", "builtin"])
def test_error_row_fails_the_check(backend):
    # What the scripts write when a backend raises: the check must not accept it.
    ok = {"bench": "conv", "case": "c", "backend": "builtin", "ms": 1.0, "ratio_to_builtin": 1.0}
    broken = {
        "bench": "conv",
        "case": "c",
        "backend": backend,
        "ms": None,
        "ratio_to_builtin": None,
        "error": "RuntimeError: broken",
    }
    rows = [broken] if backend == "builtin" else [ok, broken]
    with pytest.raises(AssertionError, match=f"\\[{backend}\\] did not run: RuntimeError"):
        _check_common(rows)


def test_bad_flags_are_rejected():
    for script in ("ops.py", "train_step.py"):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / script), "--backends", "cuda"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2 and "--backends" in proc.stderr
