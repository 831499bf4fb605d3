"""train.py end to end on tiny synthetic CIFAR written in the real formats.

Runs use tiny widths (--widths 4,8,8) and a few hundred 32x32 (or 16x16) images so each takes a
few seconds; the architecture is otherwise the real default model. Covered: every backend trains
and its loss falls; the outputs (weights loadable with weights_only=True, metrics.json, PNGs);
--resume after an interruption ends with the same weights as an uninterrupted run; a NaN loss
stops training naming the step and the backend; bad flags and bad data give clear errors; a
2-process CPU DDP run (gloo) in a subprocess, as a user would start it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar_training import cli, train_run
from cifar_training.backends import get_ops
from cifar_training.datasets import load_cifar
from cifar_training.models import load_trained
from cifar_training.synthetic import make_tarball, write_image_folder, write_python_batches

REPO = Path(__file__).resolve().parents[1]
TINY = ["--widths", "4,8,8", "--no-progress-bar", "--threads", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Python batches (32x32, as CIFAR's) and a 16x16 PNG ImageFolder tree (4x cheaper)."""
    root = tmp_path_factory.mktemp("cifar")
    write_python_batches(root / "batches", n_train=240, n_test=60, num_batches=5)
    write_image_folder(root / "tree16", n_train=240, n_test=60, size=16)
    return root


def _run(args, tmp_path, data, source="batches", cache=True):
    argv = ["--data-dir", str(data / source), *TINY, *args]
    if cache:
        argv += ["--cache-dir", str(tmp_path / "cache")]
    code = cli.main(argv)
    return code


def _metrics(out):
    return json.loads((Path(out) / "metrics.json").read_text())


@pytest.mark.parametrize("backend", ["torch", "numpy", "builtin"])
def test_each_backend_trains_and_the_loss_falls(backend, tmp_path, data):
    out = tmp_path / "run"
    code = _run(
        [
            "--backend",
            backend,
            "--epochs",
            "4",
            "--batch-size",
            "32",
            "--val-size",
            "48",
            "--lr",
            "0.2",
            "--head-scale",
            "1",
            "--out",
            str(out),
        ],
        tmp_path,
        data,
        source="tree16",
    )
    assert code == 0
    m = _metrics(out)
    losses = [row[1] for row in m["history"]["train_epoch"]]
    assert len(losses) == 4 and losses[-1] < 0.9 * losses[0], losses
    assert all(b < a for a, b in zip(losses[:-1], losses[1:], strict=True)), losses
    assert m["backend"] == backend and m["num_train"] == 192 and m["num_val"] == 48
    assert 0.0 <= m["test_acc"] <= 1.0 and m["num_test"] == 60
    assert m["optimizer_steps"] == 4 * (192 // 32)
    assert m["train_images"] == 4 * 192 and m["train_images_per_s"] > 0
    for key in ("test_acc_flip_tta", "wall_time_s", "seed", "versions", "best_val_acc"):
        assert m[key] is not None, key
    assert sum(map(sum, m["confusion_matrix_flip_tta"])) == 60
    # The weights: a plain state dict that loads with weights_only=True into the same net,
    # which then scores the test set as the run reported (on any op set).
    state = torch.load(out / "model.pt", weights_only=True)
    net, info = load_trained(out)
    assert net.state_dict().keys() == state.keys() and info["classes"] == m["classes"]
    a = load_cifar(data / "tree16", tmp_path / "cache")
    mean, std = (torch.tensor(info[k]).view(1, 3, 1, 1) for k in ("input_mean", "input_std"))
    x = (torch.from_numpy(a.x_test).float() / 255 - mean) / std
    with torch.no_grad():
        acc = (net(x, get_ops("builtin")).argmax(1).numpy() == a.y_test).mean()
    assert abs(acc - m["test_acc"]) < 0.02
    for name in ("curves.png", "confusion_matrix.png", "filters.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert (out / "logs" / "metrics.csv").is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file()


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, data):
    common = [
        "--backend",
        "torch",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--val-size",
        "48",
        "--seed",
        "5",
        "--deterministic",
    ]
    assert _run([*common, "--out", str(tmp_path / "whole")], tmp_path, data) == 0
    part = str(tmp_path / "part")
    assert _run([*common, "--out", part, "--stop-after-epochs", "1"], tmp_path, data) == 0
    assert not (Path(part) / "model.pt").exists()  # stopped early: no final outputs yet
    assert _run([*common, "--out", part, "--resume"], tmp_path, data) == 0
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    b = torch.load(Path(part) / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ma, mb = _metrics(tmp_path / "whole"), _metrics(part)
    assert ma["test_acc"] == mb["test_acc"] and mb["resumed"]
    assert mb["history"] == ma["history"]  # the curves survive the interruption too
    assert mb["optimizer_steps"] == ma["optimizer_steps"]
    # A resume with other flags than the interrupted run's is refused, naming the difference.
    code = _run([*common, "--out", part, "--resume", "--lr", "0.3"], tmp_path, data)
    assert code == 2


def test_nan_loss_stops_training_naming_step_and_backend(tmp_path, data, monkeypatch, capsys):
    from cifar_training import backends

    calls = []
    real = backends.TorchOps.cross_entropy

    def poisoned(self, scores, y, label_smoothing=0.0):
        calls.append(1)
        loss = real(self, scores, y, label_smoothing)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(backends.TorchOps, "cross_entropy", poisoned)
    code = _run(
        [
            "--backend",
            "torch",
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--val-size",
            "48",
            "--out",
            str(tmp_path / "nan"),
        ],
        tmp_path,
        data,
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "not finite" in err and "optimizer step 2" in err and "--backend torch" in err, err


def test_without_validation_the_last_epoch_is_tested(tmp_path, data):
    out = tmp_path / "noval"
    assert (
        _run(
            [
                "--backend",
                "builtin",
                "--epochs",
                "1",
                "--batch-size",
                "64",
                "--val-size",
                "0",
                "--tta-translate",
                "--out",
                str(out),
            ],
            tmp_path,
            data,
        )
        == 0
    )
    m = _metrics(out)
    assert 0 <= m["test_acc_flip_translate_tta"] <= 1
    assert m["tested_checkpoint"] == "last epoch" and m["best_val_acc"] is None
    assert m["num_train"] == 240 and (out / "checkpoints" / "last.ckpt").is_file()


def test_airbench_options_and_matmul_precision(tmp_path, data, monkeypatch):
    """--bn-scale fixed keeps every gamma at 1; --matmul-precision reaches torch during the run,
    is recorded, and is restored when main() returns."""
    out = tmp_path / "air"
    before = torch.get_float32_matmul_precision()
    seen = {}
    real_write = train_run.write_outputs

    def spy(*args, **kwargs):  # called at the end of the run, after training and testing
        seen["during"] = torch.get_float32_matmul_precision()
        return real_write(*args, **kwargs)

    monkeypatch.setattr(train_run, "write_outputs", spy)
    code = _run(
        [
            "--backend",
            "torch",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--val-size",
            "48",
            "--bn-scale",
            "fixed",
            "--bn-bias-lr-scale",
            "8",
            "--dirac-init",
            "on",
            "--matmul-precision",
            "medium",
            "--out",
            str(out),
        ],
        tmp_path,
        data,
    )
    assert code == 0 and seen["during"] == "medium"
    assert torch.get_float32_matmul_precision() == before
    m = _metrics(out)
    assert m["hardware"]["matmul_precision"] == "medium"
    assert m["recipe"]["bn_scale"] == "fixed" and m["recipe"]["dirac_init"] is True
    state = torch.load(out / "model.pt", weights_only=True)
    gammas = [v for k, v in state.items() if k.endswith(".gamma")]
    assert gammas and all(torch.all(g == 1) for g in gammas)


def test_fast_dev_run_three_layer(tmp_path, data):
    out = tmp_path / "fdr"
    assert (
        _run(
            [
                "--model",
                "three-layer",
                "--backend",
                "numpy",
                "--fast-dev-run",
                "--val-size",
                "48",
                "--out",
                str(out),
            ],
            tmp_path,
            data,
        )
        == 0
    )
    m = _metrics(out)
    assert m["model"] == "three-layer" and m["recipe"]["optimizer"] == "adam"
    assert m["optimizer_steps"] == 1


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["--backend", "jax"], "invalid choice: 'jax'"),
        (["--val-size", "-1"], "must be >= 0"),
        (["--batch-size", "0"], "must be a positive integer"),
        (["--widths", "8,x"], "comma-separated positive ints"),
        (["--lr", "-1"], "must be >= 0"),
        (["--label-smoothing", "1.5"], "must lie in [0, 1)"),
        (["--limit-train-batches", "1.5"], "a fraction must lie in [0, 1]"),
        (["--backend", "numpy", "--accelerator", "gpu"], "runs on CPU only"),
        (["--backend", "numpy", "--precision", "bf16-mixed"], "float32 or float64"),
        (["--resume", "--overwrite"], "contradict"),
        (["--dirac-init", "yes"], "expected on or off"),
        (["--matmul-precision", "low"], "invalid choice: 'low'"),
        (["--head-scale", "0"], "must be a positive number"),
        (["--head-scale", "-1"], "must be a positive number"),
        (["--precision", "garbage"], "invalid choice: 'garbage'"),
        (["--devices", "0"], "must be >= 1"),
        (["--devices", "x"], "expected auto, a count"),
        (["--recipe", "three-layer", "--model", "default"], "is for --model three-layer"),
        (["--tta-translate", "maybe"], "expected on or off"),
        (["--train-subset", "0"], "must be a positive integer"),
    ],
)
def test_bad_flags_are_rejected_by_the_parser(argv, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert fragment in capsys.readouterr().err


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for flag in (
        "--backend",
        "--model",
        "--data-dir",
        "--download",
        "--val-size",
        "--out",
        "--resume",
        "--fast-dev-run",
        "--limit-train-batches",
        "--epochs",
        "--batch-size",
        "--lr",
        "--seed",
        "--accelerator",
        "--devices",
        "--strategy",
        "--precision",
        "--threads",
        "accepted layouts",
    ):
        assert flag in text, flag


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    code = cli.main(
        [
            "--data-dir",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "o"),
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and str(tmp_path / "nope") in err and "accepted layouts" in err


def test_val_size_too_large_is_a_clear_error(tmp_path, data, capsys):
    assert _run(["--val-size", "240", "--out", str(tmp_path / "o")], tmp_path, data) == 2
    assert "--val-size must lie in [0, 239]" in capsys.readouterr().err


def test_out_dir_protection_and_resume_without_checkpoint(tmp_path, data, capsys):
    out = tmp_path / "o"
    assert _run(["--resume", "--out", str(out)], tmp_path, data) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err
    out.mkdir()
    (out / "metrics.json").write_text("{}")  # a finished run's results
    assert _run(["--out", str(out)], tmp_path, data) == 2
    assert "already holds a run" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Two processes on CPU (gloo), started the way a user starts them
# ----------------------------------------------------------------------------------------------


def test_ddp_two_cpu_processes(tmp_path):
    """ImageFolder tarball data, --devices 2 --strategy ddp on CPU: both processes train on
    their halves of each global batch and rank 0 writes the outputs."""
    tree, *_ = write_image_folder(tmp_path / "tree", n_train=120, n_test=40, size=16)
    tgz = make_tarball(tree, tmp_path / "tiny-cifar.tar.gz")
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LOCAL_RANK", None)
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "--data-dir",
        str(tgz),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--backend",
        "torch",
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--val-size",
        "24",
        "--widths",
        "4,8,8",
        "--no-progress-bar",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    m = _metrics(out)
    assert m["hardware"]["world_size"] == 2 and m["hardware"]["torch_threads"] == 1
    assert m["optimizer_steps"] == 2 * (96 // 16)
    assert m["train_images"] == 2 * 96
    assert m["num_test"] == 40  # every test image counted once across the two processes
    torch.load(out / "model.pt", weights_only=True)


def test_resume_ignores_the_layout_and_older_configs_recording_it(tmp_path, monkeypatch):
    """--channels-last is a memory layout, not a defining flag: a run resumes with another
    layout, also from a config.json written when the flag was still recorded; a defining flag
    that differs is still named."""
    import argparse
    import json

    from cifar_training import run_dir
    from cifar_training.train_errors import UsageError

    monkeypatch.setattr(run_dir, "read_checkpoint", lambda path: None)
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.ckpt").write_bytes(b"checkpoint")
    args = argparse.Namespace(backend="torch", lr=0.4, channels_last=True)
    old = {**run_dir.run_config(args), "channels_last": False}  # as recorded before 2026-12-07
    (out / "config.json").write_text(json.dumps(old))
    run_dir._check_resumable(out, args)  # no error
    with pytest.raises(UsageError, match=r"--lr 0\.4 -> 0\.3"):
        run_dir._check_resumable(out, argparse.Namespace(backend="torch", lr=0.3))
