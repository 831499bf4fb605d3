"""simclr_training: the augmentation, the paired views, the small torch_impl encoder, a training
step, the batchnorm refresh, the linear probe (against scikit-learn) and the CLI on tiny data
written in CIFAR-10's real formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cifar_training.synthetic import write_image_folder, write_python_batches
from simclr_training import data
from simclr_training.cli import main
from simclr_training.model import Model, l2_normalize
from simclr_training.train import (
    extract_features,
    linear_probe,
    refresh_batchnorm_statistics,
    train,
)
from torch_impl import nn as tnn
from torch_impl import optim as topt
from torch_impl.simclr import simclr_loss_vectorized


def _images(n=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_train_transform_is_the_courses_and_seeded():
    from torchvision import transforms as T

    steps = data.compute_train_transform().transforms
    assert [type(s) for s in steps] == [
        T.RandomResizedCrop,
        T.RandomHorizontalFlip,
        T.RandomApply,
        T.RandomGrayscale,
        T.ToTensor,
        T.Normalize,
    ]
    assert steps[0].size == (32, 32) and steps[1].p == 0.5 and steps[2].p == 0.8
    jitter = steps[2].transforms[0]
    assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) == (
        (0.6, 1.4),
        (0.6, 1.4),
        (0.6, 1.4),
        (-0.1, 0.1),
    )
    assert steps[3].p == 0.2 and tuple(steps[5].mean) == data.CIFAR_MEAN
    img = Image.fromarray(_images(1)[0])
    a = data.compute_train_transform(seed=7)(img)
    b = data.compute_train_transform(seed=7)(img)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)  # the seed fixes the draws


def test_test_transform_normalizes_with_the_courses_constants():
    img = _images(1)[0]
    x = data.compute_test_transform()(Image.fromarray(img))
    expected = (img.transpose(2, 0, 1) / 255 - np.array(data.CIFAR_MEAN)[:, None, None]) / np.array(
        data.CIFAR_STD
    )[:, None, None]
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)


def test_pair_dataset_gives_two_views_and_the_label():
    ds = data.CIFAR10Pair(_images(), [3, 1, 4, 1, 5, 9], data.compute_train_transform())
    x_i, x_j, target = ds[2]
    assert x_i.shape == x_j.shape == (3, 32, 32) and target == 4
    assert not torch.equal(x_i, x_j)  # two independent draws
    assert len(ds) == 6
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 3, 32, 32) and batch[2].tolist() == [3, 1, 4, 1]


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: data.CIFAR10Pair(_images(), [0] * 6, None), ValueError, "needs a transform"),
        (lambda: data.CIFAR10Images(_images()[..., :2], [0] * 6), ValueError, "RGB"),
        (lambda: data.CIFAR10Images(_images().astype(np.float32), [0] * 6), TypeError, "uint8"),
        (lambda: data.CIFAR10Images(_images(), [0] * 5), ValueError, "6 labels"),
        (lambda: Model(widths=(8,) * 6), ValueError, "1 to 5"),
        (lambda: Model(feature_dim=0), ValueError, "feature_dim must be >= 1"),
    ],
)
def test_bad_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_model_outputs_and_layers():
    torch.manual_seed(0)
    model = Model(feature_dim=16, widths=(4, 8))
    h, z = model(torch.randn(5, 3, 32, 32))
    assert h.shape == (5, 8) and z.shape == (5, 16)
    torch.testing.assert_close(h.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(z.norm(dim=1), torch.ones(5))
    assert model.f(torch.randn(2, 3, 32, 32)).shape == (2, 8)
    for m in model.modules():  # every layer with math is torch_impl's
        assert isinstance(m, (nn.Sequential, Model)) or type(m).__module__ == "torch_impl.nn"
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3, 32, 32\)"):
        model(torch.randn(2, 3, 28, 28))


def test_l2_normalize_matches_torch():
    x = torch.randn(4, 6, dtype=torch.float64)
    x[1] = 0  # a zero row stays zero (eps floor), as F.normalize
    torch.testing.assert_close(l2_normalize(x), torch.nn.functional.normalize(x, dim=1))


def test_simclr_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = Model(feature_dim=8, widths=(4, 8), hidden=16)
    opt = topt.Adam(model.parameters(), learning_rate=1e-2)
    x = torch.randn(8, 3, 32, 32)
    x_i, x_j = x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)

    def loss():
        return simclr_loss_vectorized(model(x_i)[1], model(x_j)[1], 0.5, "cpu")

    before = loss().item()
    for _ in range(5):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < before - 0.05


def test_train_one_epoch_returns_the_average_loss():
    torch.manual_seed(0)
    model = Model(feature_dim=8, widths=(4,), hidden=8)
    pairs = data.CIFAR10Pair(_images(8), list(range(8)), data.compute_train_transform())
    loader = DataLoader(pairs, batch_size=4, drop_last=True)
    lines = []
    avg = train(
        model,
        loader,
        topt.Adam(model.parameters()),
        1,
        1,
        batch_size=4,
        temperature=0.5,
        device="cpu",
        log=lines.append,
    )
    assert np.isfinite(avg) and avg > 0
    assert lines[-1].startswith("Train Epoch: [1/1] batch 2/2 Loss: ")
    empty = DataLoader(pairs, batch_size=16, drop_last=True)
    with pytest.raises(ValueError, match="no batch"):
        train(model, empty, topt.Adam(model.parameters()), 1, 1, device="cpu")


def test_refresh_batchnorm_statistics_is_the_average_over_batches():
    torch.manual_seed(0)
    bn = tnn.SpatialBatchNorm(3)
    net = nn.Sequential(bn)
    xs = [torch.randn(4, 3, 2, 2) * (k + 1) + k for k in range(3)]
    loader = [(x, 0) for x in xs]
    net.eval()
    refresh_batchnorm_statistics(net, loader, "cpu")
    means = torch.stack([x.mean(dim=(0, 2, 3)) for x in xs]).mean(0)
    variances = torch.stack([x.var(dim=(0, 2, 3), correction=0) for x in xs]).mean(0)
    torch.testing.assert_close(bn.running_mean, means)
    torch.testing.assert_close(bn.running_var, variances)
    assert bn.momentum == 0.9 and not net.training  # restored


def test_extract_features_in_eval_mode():
    model = Model(widths=(4,))
    model.train()
    loader = DataLoader(TensorDataset(torch.randn(5, 3, 32, 32), torch.arange(5)), batch_size=2)
    feats, labels = extract_features(model.f, loader, "cpu")
    assert feats.shape == (5, 4) and labels.tolist() == [0, 1, 2, 3, 4]
    assert model.training  # restored


def test_linear_probe_agrees_with_scikit_learn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 6)) * 1.5
    y = rng.integers(0, 4, 600)
    x = centers[y] + rng.standard_normal((600, 6))
    tr, te = slice(0, 400), slice(400, 600)
    ours = linear_probe(
        torch.tensor(x[tr]),
        torch.tensor(y[tr]),
        torch.tensor(x[te]),
        torch.tensor(y[te]),
        num_classes=4,
        steps=300,
    )
    scaler = StandardScaler().fit(x[tr])
    ref = LogisticRegression(max_iter=1000).fit(scaler.transform(x[tr]), y[tr])
    ref_acc = ref.score(scaler.transform(x[te]), y[te])
    assert ref_acc > 0.6  # a learnable problem
    assert abs(ours["test_accuracy"] - ref_acc) <= 0.03
    with pytest.raises(ValueError, match="same D"):
        linear_probe(torch.zeros(3, 2), torch.zeros(3), torch.zeros(3, 4), torch.zeros(3))


def test_cli_on_an_image_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NN_TWINS_CACHE", str(tmp_path / "cache"))
    root, *_ = write_image_folder(tmp_path / "tree", 20, 10, size=32)
    out = tmp_path / "out"
    args = f"--data-dir {root} --out {out} --epochs 1 --train-subset 16 --batch-size 8"
    rc = main((args + " --widths 4,8 --feature-dim 8 --probe-steps 5").split())
    assert rc == 0
    text = capsys.readouterr().out
    assert "epoch 1/1: loss" in text and "linear probe test accuracy" in text
    record = json.loads((out / "results.json").read_text())
    assert len(record["epoch_losses"]) == 1
    for key in ("probe_simclr", "probe_random_init"):
        assert 0 <= record[key]["test_accuracy"] <= 1
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["f.0.w"].shape == (4, 3, 3, 3)


def test_cli_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NN_TWINS_CACHE", str(tmp_path / "cache"))
    write_python_batches(tmp_path / "raw", n_train=20, n_test=10)
    out = tmp_path / "out"
    rc = main(f"--data-dir {tmp_path / 'raw'} --out {out} --train-subset 21".split())
    assert rc == 2 and "--train-subset must be <= 20" in capsys.readouterr().err
    rc = main(f"--data-dir {tmp_path / 'raw'} --out {out} --batch-size 32".split())
    assert rc == 2 and "no full batch" in capsys.readouterr().err
    rc = main(f"--data-dir {tmp_path / 'none'} --out {out}".split())
    assert rc == 2 and "data not found" in capsys.readouterr().err
    for bad in ("--widths 4,x", "--temperature 0", "--loader-processes -1", "--epochs -1"):
        with pytest.raises(SystemExit):
            main(f"--data-dir . --out . {bad}".split())
    assert "expected a positive integer, got -1" in capsys.readouterr().err


def test_cli_resume_gives_the_uninterrupted_runs_outputs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NN_TWINS_CACHE", str(tmp_path / "cache"))
    root, *_ = write_image_folder(tmp_path / "tree", 20, 10, size=32)
    base = f"--data-dir {root} --train-subset 16 --batch-size 8 --widths 4,8 --feature-dim 8 "
    base += "--probe-steps 5 --seed 2"
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(f"{base} --out {whole} --epochs 2".split()) == 0
    assert main(f"{base} --out {parts} --epochs 1".split()) == 0
    capsys.readouterr()
    assert main(f"{base} --out {parts} --epochs 2 --resume".split()) == 0
    assert "resuming from epoch 2 of 2" in capsys.readouterr().out
    records = []
    for out in (whole, parts):
        record = json.loads((out / "results.json").read_text())
        del record["train_seconds"], record["settings"]["out"]
        records.append(record)
    assert records[0] == records[1] and len(records[0]["epoch_losses"]) == 2
    a = torch.load(whole / "model.pt", weights_only=True)
    b = torch.load(parts / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_cli_resume_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NN_TWINS_CACHE", str(tmp_path / "cache"))
    root, *_ = write_image_folder(tmp_path / "tree", 20, 10, size=32)
    out = tmp_path / "out"
    args = f"--data-dir {root} --out {out} --epochs 1 --train-subset 8 --batch-size 8 "
    args += "--widths 4 --feature-dim 4 --probe-steps 2"
    assert main(f"{args} --resume".split()) == 2
    assert "no saved state" in capsys.readouterr().err
    assert main(args.split()) == 0
    capsys.readouterr()
    assert main(args.split()) == 2  # the same --out again, without --resume
    err = capsys.readouterr().err
    assert err.startswith("error:") and "pass --resume" in err
    assert main(f"{args} --resume --widths 4,8".split()) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--widths: it was [4], the command line gives [4, 8]" in err
    assert main(f"{args} --resume --temperature 0.1".split()) == 2
    assert "--temperature: it was 0.5" in capsys.readouterr().err
    last = out / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    assert main(f"{args} --resume --epochs 2".split()) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "cannot be read" in err and "Traceback" not in err
