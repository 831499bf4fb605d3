"""Tests for numpy_impl.data on SMALL synthetic data written in the real on-disk formats: CIFAR's
python batches (pickled dicts, as the dataset's authors ship them) and ImageFolder trees of PNG
and JPEG files."""

import hashlib
import io
import os
import pickle
import sys
import tarfile
import warnings

import numpy as np
import pytest

from numpy_impl import data as data_mod
from numpy_impl.data import (
    download_CIFAR10,
    get_CIFAR10_data,
    load_CIFAR10,
    load_CIFAR_batch,
    load_image_folder,
)

PIL = pytest.importorskip("PIL.Image")

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_batches(root, n=12, protocol=2, seed=0, bytes_keys=True):
    """Python batches like CIFAR's own: {b'batch_label', b'labels', b'data', b'filenames'}, data a
    uint8 (n, 3072) array in channel-major rows. Returns {name: (data, labels)}."""
    rs = np.random.RandomState(seed)
    os.makedirs(root, exist_ok=True)
    written = {}
    for name in BATCHES:
        data = rs.randint(0, 256, size=(n, 3072)).astype(np.uint8)
        labels = [int(v) for v in rs.randint(0, 10, size=n)]
        key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
        d = {
            key("batch_label"): b"synthetic " + name.encode(),
            key("labels"): labels,
            key("data"): data,
            key("filenames"): [b"img%d.png" % i for i in range(n)],
        }
        with open(os.path.join(root, name), "wb") as f:
            pickle.dump(d, f, protocol=protocol)
        written[name] = (data, np.array(labels))
    return written


def to_nhwc(rows):
    """The CIFAR row layout, decoded independently: value of pixel (i, j) channel c is at
    c * 1024 + i * 32 + j."""
    n = rows.shape[0]
    out = np.empty((n, 32, 32, 3))
    for c in range(3):
        out[..., c] = rows[:, c * 1024 : (c + 1) * 1024].reshape(n, 32, 32)
    return out


# ----------------------------------------------------------------------------------------------
# python batches
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol, bytes_keys", [(2, True), (pickle.HIGHEST_PROTOCOL, False)])
def test_load_cifar10_python_batches(tmp_path, protocol, bytes_keys):
    written = write_batches(tmp_path, protocol=protocol, bytes_keys=bytes_keys)
    Xtr, Ytr, Xte, Yte = load_CIFAR10(str(tmp_path))
    assert Xtr.shape == (60, 32, 32, 3) and Xtr.dtype == np.float64
    assert Xte.shape == (12, 32, 32, 3) and Yte.shape == (12,)
    exp_X = np.concatenate([to_nhwc(written[b][0]) for b in BATCHES[:5]])
    exp_y = np.concatenate([written[b][1] for b in BATCHES[:5]])
    np.testing.assert_array_equal(Xtr, exp_X)
    np.testing.assert_array_equal(Ytr, exp_y)
    np.testing.assert_array_equal(Xte, to_nhwc(written["test_batch"][0]))
    np.testing.assert_array_equal(Yte, written["test_batch"][1])


def test_load_cifar10_finds_the_batches_subdirectory_and_dtype(tmp_path):
    write_batches(tmp_path / "cifar-10-batches-py")
    Xtr, _, _, _ = load_CIFAR10(str(tmp_path), dtype=np.float32)
    assert Xtr.dtype == np.float32 and Xtr.shape == (60, 32, 32, 3)


def test_malicious_pickle_is_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "data_batch_1"
    with open(path, "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f)
    with pytest.raises(ValueError, match="data_batch_1") as info:
        load_CIFAR_batch(str(path))
    assert (
        "posix.mkdir" in str(info.value)
        or "os.mkdir" in str(info.value)
        or "mkdir" in str(info.value)
    )
    assert not marker.exists()


def test_truncated_and_malformed_batches_name_the_file(tmp_path):
    write_batches(tmp_path)
    path = tmp_path / "data_batch_3"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(ValueError, match="data_batch_3.*truncated"):
        load_CIFAR10(str(tmp_path))
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(ValueError, match=r"data_batch_3.*\(N, 3072\)"):
        load_CIFAR10(str(tmp_path))
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, f, protocol=2)
    with pytest.raises(ValueError, match="data_batch_3.*labels"):
        load_CIFAR10(str(tmp_path))
    path.write_bytes(raw)
    os.remove(tmp_path / "data_batch_4")
    with pytest.raises(FileNotFoundError, match="data_batch_4"):
        load_CIFAR10(str(tmp_path))


def test_no_data_errors_name_the_path_and_the_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere") as info:
        load_CIFAR10(str(tmp_path / "nowhere"))
    assert "data_batch_1" in str(info.value) and "train/<class>" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty") as info:
        load_CIFAR10(str(tmp_path / "empty"))
    assert "cifar-10-batches-py" in str(info.value) and "test/<class>" in str(info.value)


def test_get_cifar10_data_splits(tmp_path):
    write_batches(tmp_path)
    Xtr, Ytr, Xte, Yte = load_CIFAR10(str(tmp_path))
    d = get_CIFAR10_data(num_training=40, num_validation=15, num_test=7, cifar10_dir=str(tmp_path))
    assert sorted(d) == ["X_test", "X_train", "X_val", "y_test", "y_train", "y_val"]
    mean = Xtr[:40].mean(axis=0)
    np.testing.assert_array_equal(d["X_train"], (Xtr[:40] - mean).transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(d["X_val"], (Xtr[40:55] - mean).transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(d["X_test"], (Xte[:7] - mean).transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(d["y_train"], Ytr[:40])
    np.testing.assert_array_equal(d["y_val"], Ytr[40:55])
    np.testing.assert_array_equal(d["y_test"], Yte[:7])
    raw = get_CIFAR10_data(40, 15, 7, subtract_mean=False, cifar10_dir=str(tmp_path))
    np.testing.assert_array_equal(raw["X_train"], Xtr[:40].transpose(0, 3, 1, 2))
    assert raw["X_train"].flags["C_CONTIGUOUS"]
    with pytest.raises(ValueError, match="num_training \\+ num_validation"):
        get_CIFAR10_data(50, 15, 7, cifar10_dir=str(tmp_path))
    with pytest.raises(ValueError, match="num_test"):
        get_CIFAR10_data(40, 15, 13, cifar10_dir=str(tmp_path))


def test_get_cifar10_data_reads_env_var(tmp_path, monkeypatch):
    write_batches(tmp_path)
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path))
    d = get_CIFAR10_data(num_training=10, num_validation=5, num_test=5)
    assert d["X_train"].shape == (10, 3, 32, 32)


# ----------------------------------------------------------------------------------------------
# ImageFolder trees
# ----------------------------------------------------------------------------------------------

CLASSES = ["bird", "cat", "truck"]  # sorted, so labels are 0, 1, 2


def write_tree(root, n_train=4, n_test=2, fmt="PNG", size=(8, 6), seed=0):
    """train/<class>/NNNN.<ext> and test/<class>/NNNN.<ext>; returns the images per split in
    directory order (class, then file name)."""
    rs = np.random.RandomState(seed)
    ext = {"PNG": "png", "JPEG": "jpg"}[fmt]
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = [], []
        for label, cls in enumerate(CLASSES):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                im = rs.randint(0, 256, size=(size[1], size[0], 3)).astype(np.uint8)
                PIL.fromarray(im).save(d / f"{i:04d}.{ext}", format=fmt)
                images.append(im)
                labels.append(label)
        out[split] = (np.stack(images), np.array(labels))
    return out


def test_image_folder_png_exact_and_shuffled_once(tmp_path):
    tree = write_tree(tmp_path)
    Xtr, Ytr, Xte, Yte = load_CIFAR10(str(tmp_path))
    # The documented shuffle: RandomState(0).permutation(n), per split.
    ptr = np.random.RandomState(0).permutation(12)
    pte = np.random.RandomState(0).permutation(6)
    np.testing.assert_array_equal(Xtr, tree["train"][0][ptr].astype(np.float64))
    np.testing.assert_array_equal(Ytr, tree["train"][1][ptr])
    np.testing.assert_array_equal(Xte, tree["test"][0][pte].astype(np.float64))
    np.testing.assert_array_equal(Yte, tree["test"][1][pte])
    assert Xtr.shape == (12, 6, 8, 3) and Xtr.dtype == np.float64
    # Unshuffled, directory order: class by class.
    X, y, _, _, classes = load_image_folder(str(tmp_path))
    assert classes == CLASSES
    np.testing.assert_array_equal(y, [0] * 4 + [1] * 4 + [2] * 4)
    np.testing.assert_array_equal(X, tree["train"][0])


def test_image_folder_jpeg_decodes(tmp_path):
    write_tree(tmp_path, fmt="JPEG", size=(32, 32))
    Xtr, Ytr, Xte, Yte = load_CIFAR10(str(tmp_path))
    assert Xtr.shape == (12, 32, 32, 3) and Xte.shape == (6, 32, 32, 3)
    assert sorted(np.bincount(Ytr)) == [4, 4, 4]
    assert Xtr.min() >= 0 and Xtr.max() <= 255


def test_image_folder_cache_skips_decoding_and_tracks_changes(tmp_path, monkeypatch):
    write_tree(tmp_path)
    first = load_CIFAR10(str(tmp_path))
    assert (tmp_path / ".nn_twins_cifar10_cache.npz").is_file()

    def no_decoding(items):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(data_mod, "_decode_images", no_decoding)
    second = load_CIFAR10(str(tmp_path))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    with np.load(tmp_path / ".nn_twins_cifar10_cache.npz", allow_pickle=False) as z:
        assert z["X_train"].dtype == np.uint8
    monkeypatch.undo()

    # Changing the tree (a new image) invalidates the cache.
    PIL.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "train" / "cat" / "9999.png")
    Xtr, Ytr, _, _ = load_CIFAR10(str(tmp_path))
    assert len(Ytr) == 13


def test_image_folder_cache_dir_and_corrupted_cache(tmp_path):
    root, cache = tmp_path / "data", tmp_path / "cache"
    write_tree(root)
    load_image_folder(str(root), cache_dir=str(cache))
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].endswith(".npz")
    (cache / files[0]).write_bytes(b"garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        X, y, _, _, _ = load_image_folder(str(root), cache_dir=str(cache))
    assert any(files[0] in str(w.message) for w in caught)
    assert X.shape == (12, 6, 8, 3)
    with np.load(cache / files[0], allow_pickle=False) as z:  # rewritten, valid again
        assert z["X_train"].shape == (12, 6, 8, 3)


def test_image_folder_corrupted_and_truncated_images_name_the_file(tmp_path):
    write_tree(tmp_path, fmt="JPEG", size=(32, 32))
    bad = tmp_path / "train" / "cat" / "0001.jpg"
    raw = bad.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="0001.jpg"):
        load_CIFAR10(str(tmp_path), cache=False)
    bad.write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match="0001.jpg"):
        load_CIFAR10(str(tmp_path), cache=False)


def test_image_folder_layout_errors(tmp_path):
    write_tree(tmp_path)
    (tmp_path / "test" / "zebra").mkdir()
    with pytest.raises(ValueError, match="same class directories"):
        load_CIFAR10(str(tmp_path))
    os.rmdir(tmp_path / "test" / "zebra")
    PIL.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "test" / "cat" / "0009.png")
    with pytest.raises(ValueError, match="0009.png.*same size"):
        load_CIFAR10(str(tmp_path))


def test_image_folder_without_pillow_says_what_is_missing(tmp_path, monkeypatch):
    write_tree(tmp_path)
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `import PIL` raise ImportError
    with pytest.raises(ImportError, match="Pillow"):
        load_CIFAR10(str(tmp_path), cache=False)


# ----------------------------------------------------------------------------------------------
# download (offline: a file:// URL to a synthetic archive)
# ----------------------------------------------------------------------------------------------


def make_archive(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_checks_md5_and_unpacks(tmp_path):
    src = tmp_path / "src"
    write_batches(src, n=3)
    members = {f"cifar-10-batches-py/{b}": (src / b).read_bytes() for b in BATCHES}
    archive = tmp_path / "cifar-10-python.tar.gz"
    md5 = make_archive(archive, members)
    dest = tmp_path / "dest"
    with pytest.raises(ValueError, match="MD5"):
        download_CIFAR10(str(dest), url=archive.as_uri(), md5="0" * 32)
    assert not any(n.startswith(".tmp_") for n in os.listdir(dest))
    got = download_CIFAR10(str(dest), url=archive.as_uri(), md5=md5)
    assert got == os.path.join(str(dest), "cifar-10-batches-py")
    Xtr, _, _, _ = load_CIFAR10(str(dest))
    assert Xtr.shape == (15, 32, 32, 3)


def test_download_refuses_unsafe_archive_members(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    md5 = make_archive(archive, {"../escaped.txt": b"x"})
    with pytest.raises(ValueError, match="evil.tar.gz"):
        download_CIFAR10(str(tmp_path / "dest"), url=archive.as_uri(), md5=md5)
    assert not (tmp_path / "escaped.txt").exists()
