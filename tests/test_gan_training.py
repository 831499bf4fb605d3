"""gan_training: the GAN notebook's models on torch_impl layers, run_a_gan, the data and the CLI.

Data is synthetic and written in the real formats (MNIST's idx files, CIFAR-10 ImageFolder
trees and python batches) in tmp_path.
"""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cifar_training.synthetic import write_image_folder, write_python_batches
from cs231n_grader.call_drivers import course_network
from gan_training import data, models
from gan_training.cli import build_gan, main
from gan_training.train import run_a_gan, save_image_grid
from torch_impl import optim as topt
from torch_impl.nn import ConvTranspose2d


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------


def test_models_have_the_notebooks_shapes_and_parameter_counts():
    # The notebook's architectures written with torch.nn: the grader's reference
    refs = [
        course_network(arch, noise_dim=20)
        for arch in ("discriminator", "generator", "dc_classifier", "dc_generator")
    ]
    ours = [
        models.discriminator(),
        models.generator(20),
        models.build_dc_classifier(4),
        models.build_dc_generator(20),
    ]
    for model, ref in zip(ours, refs, strict=True):
        assert _count(model) == _count(ref)
    x, z = torch.rand(3, 1, 28, 28), models.sample_noise(3, 20)
    assert ours[0](x).shape == (3, 1) and ours[0](x.reshape(3, 784)).shape == (3, 1)
    assert ours[1](z).shape == (3, 784) and ours[1](z).abs().max() <= 1
    assert ours[2](x.reshape(3, 784)).shape == (3, 1)
    assert ours[3](z).shape == (3, 784) and ours[3](z).abs().max() <= 1


def test_the_dc_models_use_torch_impl_layers_only():
    """Every module with parameters or math is torch_impl's (torch.nn only for containers)."""
    for model in (models.build_dc_classifier(2), models.build_dc_generator()):
        for m in model.modules():
            assert isinstance(m, nn.Sequential) or type(m).__module__.startswith(
                ("torch_impl.", "gan_training.")
            ), type(m)


def test_sample_noise_range_seed_and_errors():
    z = models.sample_noise(500, 7)
    assert z.shape == (500, 7) and z.min() >= -1 and z.max() < 1
    assert z.min() < -0.9 and z.max() > 0.9  # spans the range, not [0, 1)
    torch.testing.assert_close(models.sample_noise(4, 3, seed=5), models.sample_noise(4, 3, seed=5))
    assert models.sample_noise(0, 3).shape == (0, 3)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        models.sample_noise(2, 0)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        models.sample_noise(2.5, 3)


def test_seeded_builders_are_reproducible():
    a, b = models.generator(seed=3), models.generator(seed=3)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_get_optimizer_is_adam_with_the_notebooks_settings():
    opt = models.get_optimizer(models.discriminator())
    assert isinstance(opt, topt.Adam)
    group = opt.param_groups[0]
    assert (group["lr"], group["beta1"], group["beta2"]) == (1e-3, 0.5, 0.999)


def test_initialize_weights_is_xavier_uniform():
    layer = ConvTranspose2d(8, 4, 4, stride=2, padding=1)
    models.initialize_weights(layer)
    bound = np.sqrt(6 / (4 * 16 + 8 * 16))  # Glorot: sqrt(6 / (fan_in + fan_out))
    assert layer.w.abs().max() <= bound and layer.w.abs().max() > 0.8 * bound


def test_unflatten_names_a_wrong_size():
    with pytest.raises(ValueError, match="C\\*H\\*W = 6272 values per sample"):
        models.Unflatten(128, 7, 7)(torch.zeros(2, 100))


@pytest.mark.parametrize("kind", ["vanilla", "dc"])  # "ls": vanilla's models, other losses
def test_a_few_steps_lower_each_players_loss_on_a_fixed_batch(kind):
    """D's steps lower D's loss on fixed real/fake images; G's steps lower G's loss against a
    fixed D. (A tiny synthetic batch: the point is the gradients flow and the signs are right.)"""
    torch.manual_seed(0)
    D, G, d_loss, g_loss = build_gan(kind, 4, 8)
    real = torch.rand(4, 1, 28, 28) * 2 - 1
    z = models.sample_noise(4, 8)
    D_solver, G_solver = models.get_optimizer(D), models.get_optimizer(G)
    fake = G(z).detach()

    def d_value():
        return d_loss(D(real), D(fake.view(4, 1, 28, 28)))

    before = d_value().item()
    for _ in range(3):
        D_solver.zero_grad()
        d_value().backward()
        D_solver.step()
    assert d_value().item() < before

    def g_value():
        return g_loss(D(G(z).view(4, 1, 28, 28)))

    before = g_value().item()
    for _ in range(3):
        G_solver.zero_grad()
        g_value().backward()
        G_solver.step()
    assert g_value().item() < before


# ----------------------------------------------------------------------------------------------
# run_a_gan and the PNG grids
# ----------------------------------------------------------------------------------------------


def _tiny_loader(n=10, batch_size=4):
    x = torch.rand(n, 1, 28, 28)
    return DataLoader(TensorDataset(x, torch.zeros(n, dtype=torch.long)), batch_size=batch_size)


def test_run_a_gan_trains_and_writes_grids(tmp_path):
    torch.manual_seed(0)
    D, G = models.discriminator(), models.generator(8)
    history, lines = [], []
    images = run_a_gan(
        D,
        G,
        models.get_optimizer(D),
        models.get_optimizer(G),
        models.discriminator_loss,
        models.generator_loss,
        _tiny_loader(),
        show_every=3,
        batch_size=4,
        noise_size=8,
        num_epochs=2,
        out_dir=tmp_path,
        log=lines.append,
        history=history,
    )
    # 10 images in batches of 4: 2 full batches per epoch (the last, of 2, is skipped)
    assert [h["iteration"] for h in history] == [0, 1, 2, 3]
    assert [h["epoch"] for h in history] == [0, 0, 1, 1]
    assert all(np.isfinite(h["d_loss"]) and np.isfinite(h["g_loss"]) for h in history)
    assert len(images) == 2 and images[0].shape == (4, 784)  # iterations 0 and 3
    assert lines[0].startswith("Iter: 0, D: ")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["epoch_001.png", "epoch_002.png", "iter_000000.png", "iter_000003.png"]
    assert Image.open(tmp_path / "epoch_001.png").format == "PNG"


def test_run_a_gan_needs_a_full_batch():
    D, G = models.discriminator(), models.generator(8)
    with pytest.raises(ValueError, match="no full batch of batch_size=16"):
        run_a_gan(
            D,
            G,
            models.get_optimizer(D),
            models.get_optimizer(G),
            models.discriminator_loss,
            models.generator_loss,
            _tiny_loader(),
            batch_size=16,
            noise_size=8,
            num_epochs=1,
            log=None,
        )


def test_save_image_grid_layout_and_values(tmp_path):
    images = torch.full((5, 784), -1.0)
    images[0] = 1.0  # first image white, the rest black
    path = save_image_grid(images, tmp_path / "g.png")
    grid = np.asarray(Image.open(path).convert("L"))
    # 5 images: ceil(sqrt(5)) = 3 per row, 2 rows; 2-pixel white padding around each
    assert grid.shape == (2 * 28 + 3 * 2, 3 * 28 + 4 * 2)
    assert grid[2:30, 2:30].min() == 255 and grid[2:30, 32:60].max() == 0
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]  # no temporary file left
    with pytest.raises(ValueError, match="at least one image"):
        save_image_grid(torch.zeros(0, 784), tmp_path / "e.png")


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def _write_idx(path, array: np.ndarray) -> None:
    """MNIST's idx format: magic (0, 0, 0x08 = uint8, ndim), big-endian sizes, the bytes."""
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_mnist(root, n=12, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images, labels = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
    for prefix, k in (("train", n), ("t10k", 3)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images[:k])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels[:k])
        # torchvision also keeps the downloaded archives; their presence is harmless
        with gzip.open(raw / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write((raw / f"{prefix}-labels-idx1-ubyte").read_bytes())
    return images, labels


def test_mnist_is_read_from_torchvisions_layout(tmp_path):
    images, labels = _write_mnist(tmp_path)
    ds = data.mnist_train(tmp_path)
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    np.testing.assert_allclose(x[0].numpy(), images[3] / 255, atol=1e-6)
    assert y == labels[3]
    batch, _ = next(iter(data.loader_train(ds, batch_size=5, num_train=10)))
    np.testing.assert_allclose(batch[:, 0].numpy(), images[:5] / 255, atol=1e-6)


def test_missing_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(data.MnistNotFoundError, match="--download"):
        data.mnist_train(tmp_path / "nothing")


def test_gray28_is_luma_then_resize():
    rgb = np.zeros((2, 3, 32, 32), np.uint8)
    rgb[0] = np.array([200, 100, 50], np.uint8)[:, None, None]
    rgb[1, :, :16] = 255  # top half white
    gray = data.to_gray28(rgb)
    assert gray.shape == (2, 28, 28) and gray.dtype == torch.uint8
    expected = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    assert (gray[0].int() - expected).abs().max() <= 1
    assert gray[1, :12].min() == 255 and gray[1, 16:].max() == 0


def test_cifar10_gray_from_an_image_folder_is_shuffled_once(tmp_path):
    root, x_tr, y_tr, _, _ = write_image_folder(tmp_path / "tree", 30, 10, size=32)
    ds = data.cifar10_gray(root, num_train=20)
    assert len(ds) == 20
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and 0 <= x.min() and x.max() <= 1
    # the folder is read class by class: the fixed shuffle mixes the classes
    labels = [ds[i][1] for i in range(20)]
    assert len(set(labels)) > 3 and labels != sorted(labels)
    with pytest.raises(ValueError, match="num_train must be <= 30"):
        data.cifar10_gray(root, num_train=31)


def test_loader_train_checks_its_arguments():
    ds = TensorDataset(torch.zeros(5, 1, 28, 28), torch.zeros(5))
    with pytest.raises(ValueError, match="num_train must be <= 5"):
        data.loader_train(ds, 2, 6)
    with pytest.raises(ValueError, match="dataset must be one of"):
        data.load_dataset("cifar100", ".")


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def test_build_gan_pairs_models_and_losses():
    for kind, d_loss, g_loss in [
        ("vanilla", models.discriminator_loss, models.generator_loss),
        ("ls", models.ls_discriminator_loss, models.ls_generator_loss),
    ]:
        D, G, d, g = build_gan(kind, 4, 8)
        assert (d, g) == (d_loss, g_loss) and _count(D) == _count(models.discriminator())
    with pytest.raises(ValueError, match="gan must be one of"):
        build_gan("wgan", 4, 8)


@pytest.mark.parametrize("gan", ["vanilla", "dc"])
def test_cli_on_cifar_batches(tmp_path, gan, capsys, monkeypatch):
    monkeypatch.setenv("NN_TWINS_CACHE", str(tmp_path / "cache"))
    write_python_batches(tmp_path / "raw", n_train=20, n_test=10)
    out = tmp_path / "out"
    args = f"--dataset cifar10-gray --data-dir {tmp_path / 'raw'} --out {out} --gan {gan} "
    rc = main((args + "--epochs 2 --batch-size 4 --num-train 4 --noise-dim 8").split())
    assert rc == 0
    text = capsys.readouterr().out
    assert "Iter: 0, D:" in text and "epoch 2/2: samples written" in text
    record = json.loads((out / "losses.json").read_text())
    assert record["settings"]["gan"] == gan and len(record["iterations"]) == 2
    assert {p.name for p in out.glob("epoch_*.png")} == {"epoch_001.png", "epoch_002.png"}


def test_cli_on_mnist(tmp_path):
    _write_mnist(tmp_path / "mnist", n=12)
    args = f"--data-dir {tmp_path / 'mnist'} --out {tmp_path / 'out'} --epochs 1 --batch-size 4"
    rc = main((args + " --num-train 8 --noise-dim 4").split())
    assert rc == 0 and (tmp_path / "out" / "epoch_001.png").is_file()


def test_cli_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NN_TWINS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    rc = main(f"--dataset cifar10-gray --data-dir {tmp_path / 'none'} --out {out}".split())
    assert rc == 2 and "data not found" in capsys.readouterr().err
    write_python_batches(tmp_path / "raw", n_train=20, n_test=10)
    args = f"--dataset cifar10-gray --data-dir {tmp_path / 'raw'} --out {out}"
    rc = main((args + " --num-train 3 --batch-size 4").split())
    assert rc == 2 and "no full batch" in capsys.readouterr().err
    for bad in ("--gan wgan", "--epochs 0", "--batch-size x"):
        with pytest.raises(SystemExit):
            main(f"--data-dir . --out . {bad}".split())
    assert "--epochs: expected a positive integer, got 0" in capsys.readouterr().err


def _outputs(out):
    record = json.loads((out / "losses.json").read_text())
    del record["seconds"], record["settings"]["out"]
    pngs = {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))}
    return record, pngs


def test_cli_resume_gives_the_uninterrupted_runs_outputs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NN_TWINS_CACHE", str(tmp_path / "cache"))
    write_python_batches(tmp_path / "raw", n_train=20, n_test=10)
    base = f"--dataset cifar10-gray --data-dir {tmp_path / 'raw'} --gan vanilla --batch-size 4 "
    base += "--num-train 4 --noise-dim 8 --show-every 1 --seed 3"
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(f"{base} --out {whole} --epochs 2".split()) == 0
    assert main(f"{base} --out {parts} --epochs 1".split()) == 0
    capsys.readouterr()
    assert main(f"{base} --out {parts} --epochs 2 --resume".split()) == 0
    assert "resuming from epoch 2 of 2" in capsys.readouterr().out
    assert _outputs(parts) == _outputs(whole)
    a = torch.load(whole / "last.pt", weights_only=True)
    b = torch.load(parts / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["iteration"] == b["iteration"] == 2
    for key in ("D", "G"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)


def test_cli_resume_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NN_TWINS_CACHE", str(tmp_path / "cache"))
    write_python_batches(tmp_path / "raw", n_train=20, n_test=10)
    out = tmp_path / "out"
    args = f"--dataset cifar10-gray --data-dir {tmp_path / 'raw'} --out {out} --batch-size 4 "
    args += "--num-train 4 --noise-dim 8 --epochs 1"
    assert main(f"{args} --resume".split()) == 2
    assert "no saved state" in capsys.readouterr().err
    assert main(args.split()) == 0
    capsys.readouterr()
    assert main(args.split()) == 2  # the same --out again, without --resume
    err = capsys.readouterr().err
    assert err.startswith("error:") and "pass --resume" in err
    assert main(f"{args} --resume --noise-dim 4".split()) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--noise-dim" in err and "8" in err and "4" in err
    assert main(f"{args} --resume --gan ls".split()) == 2
    assert "--gan: it was 'vanilla'" in capsys.readouterr().err
    last = out / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    assert main(f"{args} --resume --epochs 2".split()) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "cannot be read" in err and "Traceback" not in err


def test_ctrl_c_says_what_is_saved_and_how_to_continue(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NN_TWINS_CACHE", str(tmp_path / "cache"))
    write_python_batches(tmp_path / "raw", n_train=20, n_test=10)
    out = tmp_path / "out"
    args = f"--dataset cifar10-gray --data-dir {tmp_path / 'raw'} --out {out} --batch-size 4 "
    args += "--num-train 4 --noise-dim 8 --epochs 1"
    import gan_training.train as gan_train

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(gan_train, "run_a_gan", interrupted)
    assert main(args.split()) == 130
    assert "nothing to resume" in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.setenv("NN_TWINS_CACHE", str(tmp_path / "cache"))
    assert main(args.split()) == 0  # one epoch: last.pt written
    monkeypatch.setattr(gan_train, "run_a_gan", interrupted)
    assert main(f"{args} --epochs 2 --resume".split()) == 130
    err = capsys.readouterr().err
    assert "last.pt holds the run" in err and "--resume" in err and "Traceback" not in err
