"""cifar_training's data path: the three on-disk layouts, the cache, the split, the batches.

All data is synthetic and written in the real formats in tmp_path (python batches pickled the
way CIFAR's own files are, PNG/JPEG ImageFolder trees, tarballs of both).
"""

from __future__ import annotations

import os
import pickle
import tarfile

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


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


# ----------------------------------------------------------------------------------------------
# Layouts
# ----------------------------------------------------------------------------------------------


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
        assert a.classes == list(CLASSES)
        assert a.x_train.dtype == np.uint8 and a.x_train.shape == (50, 3, 32, 32)


def test_image_folder_png_and_its_tarball(tmp_path, cache):
    root, x_tr, y_tr, x_te, y_te = write_image_folder(tmp_path / "tree", 30, 20, size=12)
    a = ds.load_cifar(root, cache)
    assert a.classes == sorted(CLASSES)  # folder names sorted = CIFAR's label order
    # Read back class by class in file order: compare as sets of (label, image) pairs.
    for xs, ys, xr, yr in ((x_tr, y_tr, a.x_train, a.y_train), (x_te, y_te, a.x_test, a.y_test)):
        assert xr.shape == xs.shape
        order = np.lexsort((np.arange(len(ys)), ys))  # stable by label = the write order
        np.testing.assert_array_equal(yr, ys[order])
        np.testing.assert_array_equal(xr, xs[order])  # PNG is lossless
    tgz = make_tarball(root, tmp_path / "tree.tar.gz", arcname="cifar10")  # nested one level
    b = ds.load_cifar(tgz, cache)
    np.testing.assert_array_equal(b.x_train, a.x_train)
    np.testing.assert_array_equal(b.y_test, a.y_test)


def test_jpeg_tree_decodes_close_to_the_source(tmp_path, cache):
    root, x_tr, *_ = write_image_folder(tmp_path / "jpg", 20, 10, size=16, ext=".jpg")
    a = ds.load_cifar(root, cache)
    assert a.x_train.shape == (20, 3, 16, 16)
    assert abs(a.x_train.astype(float).mean() - x_tr.astype(float).mean()) < 3.0


def test_archive_is_extracted_once_and_decoded_arrays_are_cached(tmp_path, cache, monkeypatch):
    write_python_batches(tmp_path / "raw", 20, 10, num_batches=2)
    tgz = make_tarball(tmp_path / "raw", tmp_path / "cifar-10-python.tar.gz")
    a = ds.load_cifar(tgz, cache)
    extracted = list(cache.glob("extracted-*"))
    assert len(extracted) == 1 and len(list(cache.glob("*.npz"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(ds, "decode_tree", boom)
    monkeypatch.setattr(ds, "extract_archive", boom)
    b = ds.load_cifar(tgz, cache)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert b.classes == a.classes
    # The cache file is plain arrays: it loads without pickle.
    with np.load(next(cache.glob("*.npz")), allow_pickle=False) as z:
        assert z["x_train"].dtype == np.uint8


def test_a_corrupt_cache_file_is_rebuilt(tmp_path, cache):
    write_python_batches(tmp_path / "raw", 20, 10, num_batches=1)
    a = ds.load_cifar(tmp_path / "raw", cache)
    npz = next(cache.glob("*.npz"))
    npz.write_bytes(b"not a zip file")
    b = ds.load_cifar(tmp_path / "raw", cache)
    np.testing.assert_array_equal(a.x_train, b.x_train)


# ----------------------------------------------------------------------------------------------
# Missing and corrupt data: a clear error naming the path and the accepted layouts
# ----------------------------------------------------------------------------------------------


def _raises_data_error(path, cache, *fragments):
    with pytest.raises(ds.DataError) as info:
        ds.load_cifar(path, cache)
    msg = str(info.value)
    assert "accepted layouts" in msg and str(path) in msg, msg
    for f in fragments:
        assert f in msg, msg
    return msg


def test_missing_path(tmp_path, cache):
    _raises_data_error(tmp_path / "nowhere", cache, "does not exist")


def test_directory_without_cifar(tmp_path, cache):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    _raises_data_error(tmp_path / "empty", cache, "test/ is missing")


def test_truncated_batch(tmp_path, cache):
    d = write_python_batches(tmp_path / "raw", 20, 10, num_batches=2)
    blob = (d / "data_batch_2").read_bytes()
    (d / "data_batch_2").write_bytes(blob[: len(blob) // 2])
    _raises_data_error(tmp_path / "raw", cache, "data_batch_2")


def test_batch_with_wrong_shape(tmp_path, cache):
    d = write_python_batches(tmp_path / "raw", 20, 10, num_batches=1)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, f, protocol=2)
    _raises_data_error(tmp_path / "raw", cache, "test_batch", "(N, 3072)")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_batch_cannot_run_code(tmp_path, cache):
    d = write_python_batches(tmp_path / "raw", 20, 10, num_batches=1)
    with open(d / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": []}, f, protocol=2)
    _raises_data_error(tmp_path / "raw", cache, "refusing to load global")


def test_corrupt_image(tmp_path, cache):
    root, *_ = write_image_folder(tmp_path / "tree", 10, 10, size=8)
    bad = sorted((root / "train").rglob("*.png"))[3]
    bad.write_bytes(b"\x89PNG garbage")
    _raises_data_error(root, cache, bad.name)


def test_images_of_different_sizes(tmp_path, cache):
    from PIL import Image

    root, *_ = write_image_folder(tmp_path / "tree", 10, 10, size=8)
    odd = sorted((root / "train").rglob("*.png"))[0]
    Image.new("RGB", (9, 8)).save(odd)
    _raises_data_error(root, cache, "one size")


def test_corrupt_and_unsafe_archives(tmp_path, cache):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(os.urandom(500))
    _raises_data_error(junk, cache, "cannot extract")
    # Members escaping the extraction folder are never extracted.
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload.txt"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../escaped.txt")
    _raises_data_error(evil, cache, "no regular files")
    assert not (cache / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    plain = tmp_path / "notes.txt"
    plain.write_text("hello")
    _raises_data_error(plain, cache, "not a .tar.gz")


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
    import torchvision.datasets

    calls = []

    class Offline:
        def __init__(self, root, train=True, download=False):
            calls.append((root, download))
            raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(ds.DataError, match="downloading CIFAR-10 failed") as info:
        ds.download_cifar10(tmp_path / "data")
    assert str(tmp_path / "data") in str(info.value)
    assert calls == [(str(tmp_path / "data"), True)]
