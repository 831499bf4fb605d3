"""train.py in real use: real signals to real processes, checkpoints every epoch and mid-epoch,
failed starts, damaged checkpoints, non-finite evaluations, --eval-only and predict.

Tiny synthetic CIFAR in the real on-disk formats (python batches), the real default model at
widths 4,8,8, one CPU thread, --deterministic: a resumed run must end with the very weights of
an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cifar_training import cli, train_args
from cifar_training.synthetic import write_python_batches

REPO = Path(__file__).resolve().parents[1]
COMMON = [
    "--widths",
    "4,8,8",
    "--no-progress-bar",
    "--threads",
    "1",
    "--batch-size",
    "32",
    "--deterministic",
    "--seed",
    "3",
    "--precision",
    "32-true",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_python_batches(root / "batches", n_train=240, n_test=60, num_batches=5)
    return root


def _argv(data, tmp_path, out, *extra):
    return [
        "--data-dir",
        str(data / "batches"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(out),
        *COMMON,
        *extra,
    ]


def _weights(out):
    return torch.load(Path(out) / "model.pt", weights_only=True)


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def _interrupt_after(argv, sig, epoch_line, tmp_path):
    """Start train.py as a user would, send ``sig`` once it prints ``epoch_line``; return
    (exit status, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "LOCAL_RANK"}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *argv],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(epoch_line):
            proc.send_signal(sig)
            break
        assert time.monotonic() < deadline, "".join(lines)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, "".join(lines) + out, err


@pytest.mark.parametrize(
    "sig,val_extra",
    [
        (signal.SIGINT, ["--val-size", "0"]),
        # A flat validation accuracy (lr 0): last.ckpt must still follow every epoch.
        (signal.SIGTERM, ["--val-size", "48", "--lr", "0"]),
    ],
)
def test_real_signal_saves_and_resume_ends_like_an_uninterrupted_run(
    sig, val_extra, data, tmp_path
):
    extra = ["--epochs", "10", *val_extra]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert cli.main(_argv(data, tmp_path, whole, *extra)) == 0

    code, stdout, stderr = _interrupt_after(
        _argv(data, tmp_path, part, *extra), sig, "epoch 2/10", tmp_path
    )
    assert code == 128 + sig, (code, stdout[-2000:], stderr[-3000:])
    assert "--resume" in stderr and "is saved in" in stderr, stderr[-2000:]
    assert not (part / "model.pt").exists()  # the run did not finish
    ckpt = torch.load(part / "checkpoints" / "last.ckpt", weights_only=True)
    steps_per_epoch = (240 - int(val_extra[1])) // 32
    # Two epochs were reported finished before the signal: none of them is lost.
    assert ckpt["global_step"] >= 2 * steps_per_epoch, ckpt["global_step"]
    assert ckpt["global_step"] < 10 * steps_per_epoch

    assert cli.main(_argv(data, tmp_path, part, *extra, "--resume")) == 0
    _assert_same_weights(whole, part)
    mw, mp = (json.loads((d / "metrics.json").read_text()) for d in (whole, part))
    assert mp["history"] == mw["history"] and mp["optimizer_steps"] == mw["optimizer_steps"]
    assert mp["test_acc"] == mw["test_acc"] and mp["resumed"]


def test_checkpoint_every_n_steps_resumes_mid_epoch_exactly(data, tmp_path):
    """--save-every-n-steps: a run stopped right after a mid-epoch save resumes from it."""
    extra = ["--epochs", "3", "--val-size", "48", "--save-every-n-steps", "4"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert cli.main(_argv(data, tmp_path, whole, *extra)) == 0
    saved = {}

    class Stop(Exception):
        pass

    from cifar_training import run_control

    real_save = run_control.RunCheckpoints._save

    def save_then_die(self, trainer):
        real_save(self, trainer)
        if trainer.global_step == 8:  # epoch 2, batch 2 of 6: mid-epoch
            saved["step"] = trainer.global_step
            raise Stop

    run_control.RunCheckpoints._save = save_then_die
    try:
        with pytest.raises(Stop):
            cli.main(_argv(data, tmp_path, part, *extra))
    finally:
        run_control.RunCheckpoints._save = real_save
    ckpt = torch.load(part / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["step"] == ckpt["global_step"] == 8 and ckpt["epoch"] == 1
    assert cli.main(_argv(data, tmp_path, part, *extra, "--resume")) == 0
    _assert_same_weights(whole, part)
    mw, mp = (json.loads((d / "metrics.json").read_text()) for d in (whole, part))
    assert mp["history"] == mw["history"]  # the resumed epoch's mean loss covers all batches


def test_a_failed_start_does_not_block_the_next(data, tmp_path, capsys):
    out = tmp_path / "o"
    # Bad data: the attempt fails after creating --out.
    code = cli.main(
        [
            "--data-dir",
            str(tmp_path / "missing"),
            "--out",
            str(out),
            *COMMON,
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 2
    code = cli.main(_argv(data, tmp_path, out, "--resume", "--epochs", "1"))
    err = capsys.readouterr().err
    assert code == 2 and "stopped before its first checkpoint" in err, err
    # A smoke run writes no checkpoint either: it is not a run to protect.
    assert cli.main(_argv(data, tmp_path, out, "--fast-dev-run", "--val-size", "48")) == 0
    assert cli.main(_argv(data, tmp_path, out, "--epochs", "1", "--val-size", "0")) == 0
    assert (out / "checkpoints" / "last.ckpt").is_file()
    # Now it holds a run.
    assert cli.main(_argv(data, tmp_path, out, "--epochs", "1", "--val-size", "0")) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncate", "tamper"])
def test_damaged_checkpoint_on_resume_is_a_clear_error(damage, data, tmp_path, capsys):
    out = tmp_path / "o"
    extra = ["--epochs", "2", "--val-size", "0"]
    assert cli.main(_argv(data, tmp_path, out, *extra, "--stop-after-epochs", "1")) == 0
    last = out / "checkpoints" / "last.ckpt"
    if damage == "truncate":
        last.write_bytes(last.read_bytes()[:1000])
    else:  # a pickle that would run code if loaded with weights_only=False
        import pickle

        class Evil:
            def __reduce__(self):
                return (os.system, ("echo owned",))

        last.write_bytes(pickle.dumps({"state_dict": Evil()}))
    code = cli.main(_argv(data, tmp_path, out, *extra, "--resume"))
    err = capsys.readouterr().err
    assert code == 2 and "train.py: error: --resume:" in err and str(last) in err, err
    assert "--overwrite" in err and "weights_only=False" not in err, err
    assert "Traceback" not in err


def test_non_finite_evaluation_is_an_error_with_valid_json(data, tmp_path, monkeypatch, capsys):
    from cifar_training.module import CifarModule

    real_val, real_test = CifarModule.validation_step, CifarModule.test_step

    def nan_val(self, batch, batch_idx):  # the validation and test losses become NaN
        real_val(self, batch, batch_idx)
        self._sums["val"][0] = float("nan")

    def nan_test(self, batch, batch_idx):
        real_test(self, batch, batch_idx)
        self._test["loss"] += float("nan")

    monkeypatch.setattr(CifarModule, "validation_step", nan_val)
    monkeypatch.setattr(CifarModule, "test_step", nan_test)
    out = tmp_path / "o"
    code = cli.main(_argv(data, tmp_path, out, "--epochs", "1", "--val-size", "48"))
    err = capsys.readouterr().err
    assert code == 1 and "not finite" in err and "test_loss" in err, err
    text = (out / "metrics.json").read_text()
    m = json.loads(text)  # strict JSON: no NaN tokens
    assert "NaN" not in text and m["test_loss"] is None
    assert m["history"]["val_epoch"][0][1] is None
    assert (out / "model.pt").is_file()  # the weights are kept


def test_eval_only_and_predict(data, tmp_path, capsys):
    out = tmp_path / "o"
    assert (
        cli.main(
            _argv(data, tmp_path, out, "--epochs", "2", "--val-size", "0", "--tta-translate", "off")
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_acc_flip_translate_tta"] is None
    capsys.readouterr()
    assert cli.main(_argv(data, tmp_path, out, "--eval-only", "--tta-translate")) == 0
    e = json.loads((out / "eval_metrics.json").read_text())
    # The same weights on the same test split give the run's own numbers.
    assert e["test_acc"] == m["test_acc"] and e["test_acc_flip_tta"] == m["test_acc_flip_tta"]
    assert 0 <= e["test_acc_flip_translate_tta"] <= 1 and e["num_test"] == 60
    assert "eval_metrics.json" in capsys.readouterr().out
    # --eval-only on a directory without a finished run
    assert cli.main(_argv(data, tmp_path, tmp_path / "none", "--eval-only")) == 2
    assert "holds no finished run" in capsys.readouterr().err

    from PIL import Image

    from cifar_training import predict
    from cifar_training.datasets import load_cifar

    a = load_cifar(data / "batches", tmp_path / "cache")
    img = tmp_path / "big.png"
    Image.fromarray(a.x_test[0].transpose(1, 2, 0)).resize((97, 61)).save(img)
    small = tmp_path / "small.jpg"
    Image.fromarray(a.x_test[1].transpose(1, 2, 0)).save(small, quality=95)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    code = predict.main(["--run", str(out), "--top-k", "2", str(img), str(small), str(text)])
    cap = capsys.readouterr()
    assert code == 2
    lines = cap.out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(img)), cap.out
    probs = [float(p.rstrip("%")) for p in lines[0].split(": ")[1].replace(",", "").split()[1::2]]
    assert len(probs) == 2 and probs[0] >= probs[1] and 0 < sum(probs) <= 100.0001
    assert f"{text}: not an image" in cap.err
    # The 32x32 image is scored exactly as the test pass scores it (same normalization).
    res = predict.predict(out, [small], top_k=10, backend="builtin")
    assert res[0][2] is None and abs(sum(p for _, p in res[0][1]) - 1) < 1e-6
    assert predict.main(["--run", str(tmp_path / "none"), str(img)]) == 2
    assert "not a finished train.py run" in capsys.readouterr().err


def test_recipes_and_bf16_fallback(monkeypatch):
    args = train_args.resolve_args([])
    assert args.recipe == "best" and args.widths == (48, 96, 192) and args.epochs == 14
    assert args.val_size == 0 and args.tta_translate is True
    monkeypatch.setattr(train_args, "cpu_has_fast_bf16", lambda: False)
    args = train_args.resolve_args(["--accelerator", "cpu"])
    assert args.precision == "32-true" and "no fast bfloat16" in args.notes[0]
    monkeypatch.setattr(train_args, "cpu_has_fast_bf16", lambda: True)
    assert train_args.resolve_args(["--accelerator", "cpu"]).precision == "bf16-mixed"
    args = train_args.resolve_args(["--backend", "numpy"])
    assert args.precision == "32-true" and "numpy backend" in args.notes[0]
    # An explicit --precision is taken as given (no silent fallback).
    assert train_args.resolve_args(["--precision", "bf16-mixed"]).precision == "bf16-mixed"
    classic = train_args.resolve_args(["--recipe", "classic"])
    assert classic.widths == (32, 64, 128) and classic.val_size == 5000
    assert classic.precision == "32-true" and classic.tta_translate is False
    three = train_args.resolve_args(["--model", "three-layer"])
    assert three.recipe == "three-layer" and three.optimizer == "adam"
    # A flag overrides its recipe value.
    assert train_args.resolve_args(["--recipe", "classic", "--epochs", "3"]).epochs == 3


def test_first_trained_filters_are_the_linear_part_of_stem_and_block_conv():
    """filters.png of the default model: block 1's conv composed with the whitening stem is,
    for any image patch x, the odd part (f(x) - f(-x)) / 2 of stem -> ReLU -> conv."""
    from cifar_training.backends import get_ops
    from cifar_training.models import build_net

    net = build_net("default", (6, 8, 8), seed=1).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        s = torch.randn(12, 3, 2, 2, generator=g, dtype=torch.float64)
        net.stem_conv.w.copy_(torch.cat([s, -s]))
    filters, caption = net.trained_filters_rgb()
    assert filters.shape == (6, 3, 4, 4) and "whitening stem" in caption
    ops = get_ops("builtin")
    x = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)

    def f(x):
        z = ops.relu(net.stem_conv(x, ops))
        return ops.conv(z, net.blocks[0].conv1.w, net.blocks[0].conv1.b, 1, 0)[:, :, 0, 0]

    odd = (f(x) - f(-x)) / 2
    expected = torch.einsum("nchw,fchw->nf", x, filters)
    torch.testing.assert_close(odd, expected, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# The validation split, --train-subset, --download, bad flags, console, plots
# ----------------------------------------------------------------------------------------------


def test_validation_split_is_stored_shuffled_so_a_prefix_holds_every_class(tmp_path):
    """An ImageFolder tree is read class by class; --limit-val-batches 1 must still see the
    classes in proportion, as the full validation split does."""
    import numpy as np

    from cifar_training.datamodule import CIFARDataModule, split_indices
    from cifar_training.synthetic import write_image_folder

    tr, va = split_indices(1000, 200)
    assert np.all(np.diff(tr) > 0) and not np.all(np.diff(va) > 0)  # train sorted, val not
    root, *_ = write_image_folder(tmp_path / "tree", n_train=400, n_test=40, size=8)
    dm = CIFARDataModule(
        root, batch_size=50, val_size=100, crop_pad=0, flip="none", cache_dir=tmp_path / "cache"
    )
    dm.prepare_data()
    dm.setup("fit")
    first_batch = dm.y_val[:50].numpy()
    assert len(np.unique(first_batch)) == 10, np.bincount(first_batch)


def test_train_subset_is_a_fixed_sample_of_every_class(data, tmp_path, capsys):
    out = tmp_path / "o"
    assert (
        cli.main(
            _argv(data, tmp_path, out, "--epochs", "1", "--val-size", "48", "--train-subset", "64")
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_train"] == 64 and m["num_val"] == 48 and m["optimizer_steps"] == 2
    assert (
        cli.main(
            _argv(
                data,
                tmp_path,
                tmp_path / "o2",
                "--epochs",
                "1",
                "--val-size",
                "48",
                "--train-subset",
                "500",
            )
        )
        == 2
    )
    assert "--train-subset must lie in [1, 192]" in capsys.readouterr().err


def test_download_uses_data_that_is_there_and_says_what_to_do_offline(
    data, tmp_path, monkeypatch, capsys
):
    from cifar_training.datasets import DataError, download_cifar10
    from cifar_training.synthetic import make_tarball
    from numpy_impl import cifar10_loader

    calls = []

    def offline(*a, **k):
        calls.append(a)
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(cifar10_loader, "_fetch", offline)
    # Data already there (a folder, or an archive): no network.
    assert download_cifar10(data / "batches") == data / "batches"
    tgz = make_tarball(data / "batches", tmp_path / "copy.tar.gz")
    assert download_cifar10(tgz) == tgz and calls == []
    out = tmp_path / "o"
    assert (
        cli.main(
            [
                "--data-dir",
                str(tgz),
                "--download",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--out",
                str(out),
                *COMMON,
                "--epochs",
                "1",
                "--val-size",
                "0",
            ]
        )
        == 0
    )
    assert calls == [] and "already holds CIFAR-10" in capsys.readouterr().out
    # Offline, with nothing there: the hint points to a local copy, not to --download.
    with pytest.raises(DataError) as info:
        download_cifar10(tmp_path / "empty")
    text = str(info.value)
    assert "downloading CIFAR-10 failed" in text and "local copy" in text
    assert "Use --download" not in text and len(calls) == 1
    # An archive path that does not exist cannot be downloaded into.
    with pytest.raises(DataError, match="names a file"):
        download_cifar10(tmp_path / "missing.tar.gz")


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["--strategy", "garbage"], "--strategy garbage"),
        (["--accelerator", "gpu"], "--accelerator gpu"),
    ],
)
def test_hardware_lightning_refuses_is_a_clear_error(argv, fragment, data, tmp_path, capsys):
    if "gpu" in argv and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code = cli.main(_argv(data, tmp_path, tmp_path / "o", "--epochs", "1", *argv))
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("train.py: error:") and fragment in err, err
    assert "Traceback" not in err


def test_console_lines_and_lr_log_without_progress_bar(data, tmp_path, capsys):
    from cifar_training.synthetic import make_tarball

    tgz = make_tarball(data / "batches", tmp_path / "c.tar.gz")
    out = tmp_path / "o"
    argv = [
        "--data-dir",
        str(tgz),
        "--cache-dir",
        str(tmp_path / "fresh-cache"),
        "--out",
        str(out),
        *COMMON,
        "--epochs",
        "2",
        "--val-size",
        "48",
    ]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "reading" in text and "decoding the images" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("epoch ")]
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2 | train loss ")
    for part in ("val loss", "acc", "lr ", " s |", "images/s"):
        assert part in lines[0], lines[0]
    import csv

    rows = list(csv.DictReader((out / "logs" / "metrics.csv").open()))
    lr_cols = [c for c in rows[0] if c.startswith("lr-")]
    assert lr_cols, rows[0].keys()
    steps = [r for r in rows if r.get("train/loss_step")]
    assert len(steps) >= 2  # logged more often than every 50 steps (12 steps here)


def test_curves_put_steps_at_their_epoch_under_limit_train_batches(data, tmp_path, monkeypatch):
    from cifar_training import plots

    figs = []
    real_save = plots._save

    def keep(fig, path):
        figs.append((Path(path).name, [ax for ax in fig.axes]))
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    out = tmp_path / "o"
    assert (
        cli.main(
            _argv(
                data,
                tmp_path,
                out,
                "--epochs",
                "3",
                "--val-size",
                "48",
                "--limit-train-batches",
                "2",
            )
        )
        == 0
    )
    axes = dict(figs)["curves.png"]
    ax_loss, _, ax_lr = axes[:3]
    step_line = ax_loss.lines[0]
    x = step_line.get_xdata()
    assert len(x) == 6 and abs(x[-1] - 3.0) < 1e-9 and abs(x[0] - 0.5) < 1e-9
    assert ax_loss.get_yscale() == "linear" and ax_lr.lines  # the learning rate is drawn
    lr = ax_lr.lines[0].get_ydata()
    assert lr[-1] < lr[len(lr) // 2]  # decays


def test_loss_range_ignores_an_early_spike():
    from cifar_training.plots import _loss_ylim

    lo, hi = _loss_ylim([40.0] + [2.3 - 0.01 * i for i in range(100)])
    assert lo == 0 and 2.3 < hi < 3


# ----------------------------------------------------------------------------------------------
# Diagnostics: update/weight ratio, activations, dead units
# ----------------------------------------------------------------------------------------------


def test_update_ratio_is_the_norm_of_the_step_over_the_norm_of_the_weight():
    from types import SimpleNamespace

    from cifar_training.diagnostics import TrainingDiagnostics
    from cifar_training.models import build_net

    net = build_net("default", (4, 8, 8), seed=0)
    logged = {}
    module = SimpleNamespace(net=net, log_dict=lambda d, **k: logged.update(d))
    trainer = SimpleNamespace(global_step=20, is_global_zero=True)
    cb = TrainingDiagnostics(every=10)
    cb.on_train_batch_start(trainer, module, None, 0)
    w = net.blocks[0].conv1.w
    w.grad = torch.ones_like(w)
    w0 = w.detach().clone()
    cb.on_before_optimizer_step(trainer, module, None)
    with torch.no_grad():
        w -= 0.01 * w.grad  # the "optimizer": only this weight moves
    trainer.global_step = 21
    cb.on_train_batch_end(trainer, module, None, None, 0)
    step, ratios = cb.history["update_ratio"][0]
    assert step == 20
    expected = 0.01 * w.grad.norm() / w0.norm()
    assert abs(ratios["blocks.0.conv1.w"] - float(expected)) < 1e-6 * float(expected)
    assert ratios["head.w"] == 0.0 and "stem_conv.w" not in ratios  # fixed stem: not trained
    assert logged["update_ratio/blocks.0.conv1.w"] == ratios["blocks.0.conv1.w"]
    trainer.global_step = 21  # not a multiple of every: nothing recorded
    cb.on_train_batch_start(trainer, module, None, 1)
    cb.on_before_optimizer_step(trainer, module, None)
    cb.on_train_batch_end(trainer, module, None, None, 1)
    assert len(cb.history["update_ratio"]) == 1


def test_activation_stats_count_units_dead_for_the_whole_batch():
    from cifar_training.diagnostics import activation_stats

    a = torch.rand(5, 4, 3, 3) + 0.1
    a[:, 1] = 0  # unit 1 never fires
    a[0, 2] = 0  # unit 2 fires for the other examples: alive
    mean, std, dead = activation_stats(a, post_relu=True)
    assert dead == 0.25 and abs(mean - float(a.mean())) < 1e-6 and std > 0
    pre = torch.randn(6, 8)
    pre[:, 3] = -torch.rand(6)  # always <= 0 before the ReLU: dead
    assert activation_stats(pre, post_relu=False)[2] >= 1 / 8


def test_diagnostics_flag_logs_and_plots(data, tmp_path):
    import csv

    out = tmp_path / "o"
    assert (
        cli.main(_argv(data, tmp_path, out, "--epochs", "2", "--val-size", "48", "--diagnostics"))
        == 0
    )
    for name in ("update_ratio.png", "diagnostics.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    rows = list(csv.DictReader((out / "logs" / "metrics.csv").open()))
    cols = rows[0].keys()
    for prefix in ("update_ratio/", "activation_std/block", "dead_relu/block", "grad_norm/"):
        assert any(c.startswith(prefix) for c in cols), prefix
    ratios = [float(r["update_ratio/head.w"]) for r in rows if r.get("update_ratio/head.w")]
    assert len(ratios) == 2 and all(0 < r < 1 for r in ratios)  # steps 0 and 10 of 12
