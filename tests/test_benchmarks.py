"""The benchmark scripts run end to end (tiny shapes) and print well-formed JSON lines.

Nothing here asserts a time: speed is measured by the scripts themselves (``BENCHMARKS.md``);
this only keeps them from rotting. Each script runs once per test run, in a subprocess, exactly as
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


def test_conv_total_ratios_and_verdicts_from_rows():
    # Hand-made rows of two CNN convs (one used twice per step) and the GEMM rate; the totals,
    # ratios, fractions and verdicts below are worked out by hand.
    from benchmarks.op_case import BenchmarkCase, speed_targets
    from benchmarks.op_results import add_ratios_and_verdicts

    def conv(name, flops, count):
        targets = speed_targets("conv", "cnn")
        return BenchmarkCase("conv", name, "cnn", None, flops=flops, count=count, targets=targets)

    cases = [
        BenchmarkCase("matmul", "m", "machine", None, flops=1.0),
        conv("a", 1e9, 2),
        conv("b", 2e9, 1),
    ]
    rows = [
        {"bench": "matmul", "case": "m", "backend": "numpy", "ms": 2.0, "ms_min": 2.0},
        {"bench": "matmul", "case": "m", "backend": "builtin", "ms": 1.0, "ms_min": 0.5},
    ]
    rows[0]["gflops"], rows[1]["gflops"] = 50.0, 100.0
    for name, ms in (
        ("a", {"numpy": 2.0, "torch": 3.0, "builtin": 1.0}),
        ("b", dict.fromkeys(("numpy", "torch", "builtin"), 4.0)),
    ):
        for backend, t in ms.items():
            rows.append({"bench": "conv", "case": name, "backend": backend, "ms": t})
    out = add_ratios_and_verdicts(rows, cases)
    by = {(r["bench"], r["case"], r["backend"]): r for r in out}
    assert by[("matmul", "m", "builtin")]["gflops_peak"] == 200.0  # the fastest sample's rate
    assert by[("conv", "a", "numpy")]["ratio_to_builtin"] == 2.0
    assert by[("conv", "a", "numpy")]["meets_target"] is True  # numpy conv@cnn: <= 2.5x
    assert by[("conv", "a", "torch")]["meets_target"] is False  # torch: <= 1.5x
    total = {b: r for (bench, _, b), r in by.items() if bench == "conv_total"}
    assert set(total) == {"numpy", "torch", "builtin"}
    assert [total[b]["ms"] for b in ("builtin", "numpy", "torch")] == [6.0, 8.0, 10.0]
    assert total["numpy"]["ratio_to_builtin"] == pytest.approx(8 / 6, rel=1e-3)
    assert total["numpy"]["meets_target"] and not total["torch"]["meets_target"]
    assert total["builtin"]["gflops"] == pytest.approx(4e9 / 6e-3 / 1e9, rel=1e-3)
    assert total["builtin"]["matmul_fraction"] == pytest.approx(4e9 / 6e-3 / 1e9 / 200, rel=1e-3)


def test_ratios_are_taken_round_by_round():
    # Three rounds, the builtin's third one slowed down by the machine: torch_impl took 1.5x the
    # builtin's time in two of the three rounds, so the ratio is 1.5, where the ratio of the
    # medians (2.0 / 2.0) would be 1.0. Without per-round samples (or with a round missing) the
    # ratio is the medians'.
    from benchmarks._common import add_ratios

    def row(backend, ms, samples=None):
        r = {"bench": "conv", "case": "c", "backend": backend, "ms": ms}
        return r if samples is None else {**r, "samples_ms": samples}

    rows = [
        row("builtin", 2.0, [1.0, 2.0, 10.0]),
        row("torch", 2.0, [1.5, 3.0, 2.0]),
        row("numpy", 8.0),  # no samples
        row("torch", 4.0, [1.5]),  # rounds missing
    ]
    add_ratios(rows)
    assert [r["ratio_to_builtin"] for r in rows] == [1.0, 1.5, 4.0, 2.0]


def test_conv_total_is_summed_round_by_round():
    # Per-round samples of two CNN convs (one used twice per step): the total's samples are the
    # rounds' sums, and its ratio is taken round by round.
    from benchmarks.op_case import BenchmarkCase, speed_targets
    from benchmarks.op_results import add_ratios_and_verdicts

    targets = speed_targets("conv", "cnn")
    cases = [
        BenchmarkCase("conv", "a", "cnn", None, flops=1e9, count=2, targets=targets),
        BenchmarkCase("conv", "b", "cnn", None, flops=1e9, count=1, targets=targets),
    ]
    samples = {
        ("a", "builtin"): [1.0, 2.0, 3.0],
        ("a", "torch"): [1.0, 4.0, 3.0],
        ("b", "builtin"): [2.0, 2.0, 10.0],
        ("b", "torch"): [2.0, 4.0, 20.0],
    }
    rows = [
        {"bench": "conv", "case": c, "backend": b, "ms": sorted(s)[1], "samples_ms": s}
        for (c, b), s in samples.items()
    ]
    out = add_ratios_and_verdicts(rows, cases)
    total = {r["backend"]: r for r in out if r["bench"] == "conv_total"}
    assert total["builtin"]["samples_ms"] == [4.0, 6.0, 16.0]
    assert total["torch"]["samples_ms"] == [4.0, 12.0, 26.0]
    # round ratios 1.0, 2.0, 1.625: the median is 1.625
    assert total["torch"]["ratio_to_builtin"] == 1.625
