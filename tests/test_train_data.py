"""cifar_training's data path over the shared loader: identical arrays to the course's API in
every format, the torchvision-style dataset, errors, the split, the batches, the augmentation.
(The loader itself -- layouts, unpickler, cache, download -- is tested in tests/test_data.py.)

All data is synthetic and written in the real formats in tmp_path (python batches pickled the
way CIFAR's own files are, PNG/JPEG ImageFolder trees, tarballs of both).
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from cifar_training import datasets as ds
from cifar_training.datamodule import (
    CIFARDataModule,
    EpochBatches,
    channel_stats,
    split_indices,
    translate_flip,
)
from cifar_training.synthetic import (
    CLASSES,
    make_images,
    make_tarball,
    write_image_folder,
    write_python_batches,
)
from numpy_impl.data import load_CIFAR10


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def _sources(tmp_path):
    """Tiny CIFAR in each real format: python batches, PNG and JPEG ImageFolder trees, and a
    .tar.gz of the batches and of a tree."""
    write_python_batches(tmp_path / "batches", n_train=50, n_test=20, num_batches=5)
    write_image_folder(tmp_path / "png", 30, 20, size=12)
    write_image_folder(tmp_path / "jpg", 30, 20, size=16, ext=".jpg")
    return {
        "batches": tmp_path / "batches",
        "png": tmp_path / "png",
        "jpg": tmp_path / "jpg",
        "batches.tar.gz": make_tarball(tmp_path / "batches", tmp_path / "b.tar.gz"),
        "png.tar.gz": make_tarball(tmp_path / "png", tmp_path / "p.tar.gz", arcname="cifar10"),
    }


# ----------------------------------------------------------------------------------------------
# One loader behind both APIs
# ----------------------------------------------------------------------------------------------


def test_both_apis_give_identical_arrays_in_every_format(tmp_path, cache):
    """The course's load_CIFAR10 and the data module read the same uint8 images: equal after
    undoing the course's documented shuffle of ImageFolder trees, in every format."""
    for kind, src in _sources(tmp_path).items():
        a = ds.load_cifar(src, cache)
        Xtr, Ytr, Xte, Yte = load_CIFAR10(str(src), cache_dir=str(cache))
        if "batches" not in kind:  # ImageFolder: the course shuffles once with RandomState(0)
            ptr, pte = (np.random.RandomState(0).permutation(len(y)) for y in (Ytr, Yte))
            Xtr[ptr], Ytr[ptr], Xte[pte], Yte[pte] = Xtr.copy(), Ytr.copy(), Xte.copy(), Yte.copy()
        for course, module in ((Xtr, a.x_train), (Xte, a.x_test)):
            assert module.dtype == np.uint8 and module.flags["C_CONTIGUOUS"], kind
            np.testing.assert_array_equal(course, module.transpose(0, 2, 3, 1), err_msg=kind)
        np.testing.assert_array_equal(Ytr, a.y_train, err_msg=kind)
        np.testing.assert_array_equal(Yte, a.y_test, err_msg=kind)
        tv = ds.CIFAR10(src, train=False, cache_dir=cache)
        np.testing.assert_array_equal(tv.data, a.x_test.transpose(0, 2, 3, 1), err_msg=kind)
        assert tv.targets == a.y_test.tolist() and tv.classes == a.classes


def test_python_batches_are_read_exactly(tmp_path, cache):
    write_python_batches(tmp_path / "raw", n_train=50, n_test=20, num_batches=5)
    x_tr, y_tr = make_images(50, seed=0)
    x_te, y_te = make_images(20, seed=1)
    # Both the batches folder and its parent (torchvision's root) are accepted.
    for where in (tmp_path / "raw", tmp_path / "raw" / "cifar-10-batches-py"):
        a = ds.load_cifar(where, cache)
        np.testing.assert_array_equal(a.x_train, x_tr)
        np.testing.assert_array_equal(a.y_train, y_tr)
        np.testing.assert_array_equal(a.x_test, x_te)
        np.testing.assert_array_equal(a.y_test, y_te)
        assert a.classes == list(CLASSES) and a.image_shape == (3, 32, 32)
        assert a.x_train.dtype == np.uint8 and a.x_train.shape == (50, 3, 32, 32)


def test_torchvision_style_dataset_matches_torchvision(tmp_path, cache, monkeypatch):
    """ds.CIFAR10 over the official-format batches equals torchvision.datasets.CIFAR10 on them
    (its checksum test, which knows only the real files' MD5s, switched off)."""
    import torchvision.datasets.cifar
    import torchvision.transforms as T

    write_python_batches(tmp_path, n_train=50, n_test=20, num_batches=5)
    monkeypatch.setattr(torchvision.datasets.cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a: True)
    for train in (True, False):
        ref = torchvision.datasets.cifar.CIFAR10(str(tmp_path), train=train, transform=T.ToTensor())
        ours = ds.CIFAR10(tmp_path, train=train, transform=T.ToTensor(), cache_dir=cache)
        np.testing.assert_array_equal(ours.data, ref.data)
        assert ours.targets == ref.targets and ours.classes == ref.classes
        assert ours.class_to_idx == ref.class_to_idx and len(ours) == len(ref)
        loader = torch.utils.data.DataLoader(ours, batch_size=7)
        x, y = next(iter(loader))
        assert torch.equal(x, torch.stack([ref[i][0] for i in range(7)]))
        assert y.tolist() == ref.targets[:7]


def test_image_folder_png_is_read_class_by_class(tmp_path, cache):
    root, x_tr, y_tr, x_te, y_te = write_image_folder(tmp_path / "tree", 30, 20, size=12)
    a = ds.load_cifar(root, cache)
    assert a.classes == sorted(CLASSES)  # folder names sorted = CIFAR's label order
    for xs, ys, xr, yr in ((x_tr, y_tr, a.x_train, a.y_train), (x_te, y_te, a.x_test, a.y_test)):
        order = np.lexsort((np.arange(len(ys)), ys))  # stable by label = the write order
        np.testing.assert_array_equal(yr, ys[order])
        np.testing.assert_array_equal(xr, xs[order])  # PNG is lossless


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_batch_cannot_run_code_through_the_data_module(tmp_path, cache):
    marker = tmp_path / "pwned"
    d = write_python_batches(tmp_path / "raw", 20, 10, num_batches=1)
    with open(d / "data_batch_1", "wb") as f:
        pickle.dump({"data": _Evil(marker), "labels": []}, f, protocol=2)
    dm = CIFARDataModule(tmp_path / "raw", batch_size=4, val_size=2, cache_dir=cache)
    with pytest.raises(ds.DataError) as info:
        dm.prepare_data()
    text = str(info.value)
    assert "refusing to load global" in text and "system" in text and "data_batch_1" in text
    assert "accepted layouts" in text and str(tmp_path / "raw") in text
    assert not marker.exists()


def test_errors_name_the_path_the_layouts_and_what_to_do(tmp_path, cache):
    for path, fragment in ((tmp_path / "nowhere", "does not exist"), (tmp_path, "no CIFAR-10")):
        with pytest.raises(ds.DataError) as info:
            ds.load_cifar(path, cache)
        msg = str(info.value)
        assert fragment in msg and str(path) in msg and "accepted layouts" in msg, msg
        assert "Use --download" in msg


def test_archive_is_decoded_once_and_cached(tmp_path, cache, monkeypatch):
    from numpy_impl import cifar10_loader

    write_python_batches(tmp_path / "raw", 20, 10, num_batches=2)
    tgz = make_tarball(tmp_path / "raw", tmp_path / "cifar-10-python.tar.gz")
    a = ds.load_cifar(tgz, cache)
    assert len(list(cache.glob("*.npz"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("read again despite the cache")

    monkeypatch.setattr(cifar10_loader, "_ArchiveTree", boom)
    b = ds.load_cifar(tgz, cache)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert b.classes == a.classes


# ----------------------------------------------------------------------------------------------
# Split, statistics, batches, augmentation
# ----------------------------------------------------------------------------------------------


def test_split_is_fixed_disjoint_and_complete():
    tr, va = split_indices(100, 20, split_seed=0)
    tr2, va2 = split_indices(100, 20, split_seed=0)
    np.testing.assert_array_equal(va, va2)
    assert len(va) == 20 and len(tr) == 80
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(100))
    # Shuffled before splitting: the held-out part is not the tail of a class-sorted list.
    assert va.max() - va.min() > 50
    with pytest.raises(ValueError, match="--val-size"):
        split_indices(100, 100)


def test_channel_stats_match_numpy():
    x, _ = make_images(37, size=9)
    mean, std = channel_stats(x, chunk=10)
    xf = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, xf.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, xf.std(axis=(0, 2, 3)), rtol=1e-9)


def _items(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("n,B", [(103, 16), (10, 16), (64, 8)])
def test_ddp_shards_see_the_single_process_batches(n, B):
    single = _items(EpochBatches(n, B, True, seed=3, crop_pad=2, flip="random"), epoch=1)
    shards = [
        _items(
            EpochBatches(n, B, True, seed=3, rank=r, world=2, crop_pad=2, flip="random"), epoch=1
        )
        for r in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == len(single)
    for k, whole in enumerate(single):
        for key in ("idx", "shift", "flip"):
            joined = torch.cat([shards[0][k][key], shards[1][k][key]])
            assert torch.equal(joined, whole[key]), (k, key)
    seen = torch.cat([b["idx"] for b in single])
    assert len(set(seen.tolist())) == len(seen)  # no image twice in an epoch
    assert len(seen) == (n // B) * B if n >= B else n


def test_batches_depend_on_seed_and_epoch_only():
    a = _items(EpochBatches(50, 8, True, seed=1, crop_pad=1, flip="random"), 2)
    b = _items(EpochBatches(50, 8, True, seed=1, crop_pad=1, flip="random"), 2)
    c = _items(EpochBatches(50, 8, True, seed=1, crop_pad=1, flip="random"), 3)
    assert all(
        torch.equal(x["idx"], y["idx"]) and torch.equal(x["shift"], y["shift"])
        for x, y in zip(a, b, strict=True)
    )
    assert not torch.equal(a[0]["idx"], c[0]["idx"])
    assert int(torch.cat([x["shift"] for x in a]).max()) == 2


def test_alternating_flip_covers_both_orientations():
    base = np.random.default_rng(0).random(40) < 0.5
    flips = []
    for epoch in (0, 1):
        s = EpochBatches(40, 40, True, seed=0, flip="alternating", flip_base=base)
        (item,) = _items(s, epoch)
        f = torch.zeros(40, dtype=torch.bool)
        f[item["idx"]] = item["flip"]
        flips.append(f)
    assert torch.equal(flips[0], ~flips[1])


def test_eval_batches_cover_everything_once_across_processes():
    parts = [list(EpochBatches(23, 4, False, rank=r, world=2)) for r in range(2)]
    idx = torch.cat([b["idx"] for p in parts for b in p])
    assert sorted(idx.tolist()) == list(range(23))
    assert all("shift" not in b for p in parts for b in p)


@pytest.mark.parametrize("pad", [1, 2, 4])
def test_translate_flip_is_a_flipped_crop_of_the_reflect_padded_image(pad):
    x = torch.randint(0, 256, (7, 3, 9, 8), dtype=torch.uint8)
    g = torch.Generator().manual_seed(pad)
    shift = torch.randint(0, 2 * pad + 1, (7, 2), generator=g)
    shift[0] = pad  # no translation
    flip = torch.tensor([False, True, False, True, True, False, True])
    out = translate_flip(x, shift, flip, pad)
    padded = torch.nn.functional.pad(x.double(), (pad,) * 4, mode="reflect")
    for i, (dy, dx) in enumerate(shift.tolist()):
        crop = padded[i, :, dy : dy + 9, dx : dx + 8]
        expected = crop.flip(2) if flip[i] else crop
        assert torch.equal(out[i].double(), expected), i
    assert out.dtype == torch.uint8
    assert torch.equal(translate_flip(x, shift, torch.zeros(7, dtype=torch.bool), pad)[0], x[0])


def test_datamodule_end_to_end_batches(tmp_path):
    write_python_batches(tmp_path / "raw", 60, 20, num_batches=3)
    dm = CIFARDataModule(
        tmp_path / "raw", batch_size=16, val_size=12, crop_pad=2, cache_dir=tmp_path / "cache"
    )
    dm.prepare_data()
    dm.setup("fit")
    assert (dm.num_train, dm.num_val, dm.num_test) == (48, 12, 20)
    loader = dm.train_dataloader()
    assert len(loader) == 3
    batch = next(iter(loader))
    x, y = dm.on_after_batch_transfer(batch, 0)
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    # Normalized with the TRAINING split's statistics.
    full = dm.normalize(dm.x_train).double()
    assert full.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    assert (full.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-2
    xv, _ = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert torch.equal(xv, dm.normalize(dm.x_val[:16]))  # no augmentation at evaluation


def test_download_failure_names_the_path(tmp_path, monkeypatch):
    from numpy_impl import cifar10_loader

    calls = []

    def offline(url, f):
        calls.append(url)
        raise OSError("network is unreachable")

    monkeypatch.setattr(cifar10_loader, "_fetch", offline)
    with pytest.raises(ds.DataError, match="downloading CIFAR-10 failed") as info:
        ds.download_cifar10(tmp_path / "data")
    assert str(tmp_path / "data") in str(info.value) and "local copy" in str(info.value)
    assert calls == [cifar10_loader.CIFAR10_URL]
    assert os.listdir(tmp_path / "data") == []  # no partial download left behind
