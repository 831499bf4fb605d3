"""The CIFAR-10 loader (numpy_impl.cifar10_loader) and the course's API over it
(numpy_impl.data), on SMALL synthetic data written in the real on-disk formats: CIFAR's python
batches pickled exactly as the official files are (Python 2, protocol 2), ImageFolder trees of
PNG and JPEG files, and .tar.gz archives of either. NumPy and Pillow only (no torch)."""

import hashlib
import io
import os
import pickle
import pickletools
import sys
import tarfile
import warnings

import numpy as np
import pytest

from cifar_training.synthetic import dump_python2
from numpy_impl import cifar10_loader as loader
from numpy_impl.data import (
    download_CIFAR10,
    get_CIFAR10_data,
    load_CIFAR10,
    load_CIFAR_batch,
    load_image_folder,
)

PIL = pytest.importorskip("PIL.Image")

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_batch(path, data, labels):
    """One batch file as CIFAR's own: {'data', 'labels', 'batch_label', 'filenames'}, Python 2
    strings, protocol 2."""
    d = {
        "data": data,
        "labels": [int(v) for v in labels],
        "batch_label": "synthetic " + os.path.basename(path),
        "filenames": ["img%d.png" % i for i in range(len(labels))],
    }
    with open(path, "wb") as f:
        dump_python2(d, f)


def write_batches(root, n=12, seed=0):
    """data_batch_1..5 and test_batch in ``root``, n uint8 rows (n, 3072) each in channel-major
    order. Returns {name: (data, labels)}."""
    rs = np.random.RandomState(seed)
    os.makedirs(root, exist_ok=True)
    written = {}
    for name in BATCHES:
        data = rs.randint(0, 256, size=(n, 3072)).astype(np.uint8)
        labels = rs.randint(0, 10, size=n)
        write_batch(os.path.join(root, name), data, labels)
        written[name] = (data, labels)
    return written


def to_nhwc(rows):
    """The CIFAR row layout, decoded independently: value of pixel (i, j) channel c is at
    c * 1024 + i * 32 + j."""
    n = rows.shape[0]
    out = np.empty((n, 32, 32, 3))
    for c in range(3):
        out[..., c] = rows[:, c * 1024 : (c + 1) * 1024].reshape(n, 32, 32)
    return out


def make_archive(path, members):
    """A .tar.gz of {name: bytes}; returns its MD5."""
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return hashlib.md5(path.read_bytes()).hexdigest()


def tar_dir(src, path, arcname):
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src, arcname=arcname)
    return path


# ----------------------------------------------------------------------------------------------
# python batches
# ----------------------------------------------------------------------------------------------


def test_the_written_batches_are_in_the_official_format(tmp_path):
    """What the tests write is what CIFAR ships: protocol 2, Python 2 strings, and exactly the
    globals numpy.core.multiarray._reconstruct, numpy.ndarray, numpy.dtype."""
    write_batches(tmp_path, n=3)
    raw = (tmp_path / "data_batch_1").read_bytes()
    assert raw.startswith(b"\x80\x02}q\x00(U\x04data")
    ops = list(pickletools.genops(raw))
    assert {arg for op, arg, _ in ops if op.name == "GLOBAL"} == {
        "numpy.core.multiarray _reconstruct",
        "numpy ndarray",
        "numpy dtype",
    }
    assert not {"BINUNICODE", "BINBYTES", "SHORT_BINBYTES"} & {op.name for op, _, _ in ops}


def test_load_cifar10_python_batches(tmp_path):
    written = write_batches(tmp_path)
    Xtr, Ytr, Xte, Yte = load_CIFAR10(str(tmp_path))
    assert Xtr.shape == (60, 32, 32, 3) and Xtr.dtype == np.float64
    assert Xte.shape == (12, 32, 32, 3) and Yte.shape == (12,) and Ytr.dtype == np.int64
    np.testing.assert_array_equal(
        Xtr, np.concatenate([to_nhwc(written[b][0]) for b in BATCHES[:5]])
    )
    np.testing.assert_array_equal(Ytr, np.concatenate([written[b][1] for b in BATCHES[:5]]))
    np.testing.assert_array_equal(Xte, to_nhwc(written["test_batch"][0]))
    np.testing.assert_array_equal(Yte, written["test_batch"][1])
    X1, Y1 = load_CIFAR_batch(str(tmp_path / "data_batch_2"))
    np.testing.assert_array_equal(X1, to_nhwc(written["data_batch_2"][0]))
    np.testing.assert_array_equal(Y1, written["data_batch_2"][1])


def test_load_cifar10_finds_the_batches_below_root_and_dtype(tmp_path):
    write_batches(tmp_path / "cifar-10-batches-py")
    Xtr, _, _, _ = load_CIFAR10(str(tmp_path), dtype=np.float32)
    assert Xtr.dtype == np.float32 and Xtr.shape == (60, 32, 32, 3)


def test_batch_of_one_and_of_zero_images(tmp_path):
    write_batch(tmp_path / "data_batch_1", np.full((1, 3072), 7, np.uint8), [9])
    write_batch(tmp_path / "test_batch", np.zeros((0, 3072), np.uint8), [])
    d = loader.read_cifar10(tmp_path)
    assert d.X_train.shape == (1, 32, 32, 3) and d.X_test.shape == (0, 32, 32, 3)
    assert d.y_train.tolist() == [9] and (d.X_train == 7).all()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_not_run_by_both_course_entry_points(tmp_path):
    marker = tmp_path / "pwned"
    write_batches(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({"data": _Evil(marker), "labels": [0]}, f, protocol=2)
    for load in (
        lambda: load_CIFAR_batch(str(tmp_path / "data_batch_1")),
        lambda: load_CIFAR10(str(tmp_path)),
    ):
        with pytest.raises(
            ValueError, match=r"data_batch_1.*refusing to load global (posix|os)\.system"
        ):
            load()
    assert not marker.exists()


@pytest.mark.parametrize(
    "protocol, refused",
    [(2, r"_codecs\.encode"), (5, r"numpy\._?core\.numeric\._frombuffer")],
)
def test_only_the_globals_of_the_official_batches_are_admitted(tmp_path, protocol, refused):
    """The same dict pickled by Python 3 names other globals (``_codecs.encode`` for bytes under
    protocol 2, NumPy's ``_frombuffer`` under protocol 5): outside the allow-list, refused."""
    data = np.zeros((2, 3072), np.uint8)
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": data, b"labels": [0, 1]}, f, protocol=protocol)
    with pytest.raises(loader.DataError, match=f"refusing to load global {refused}:"):
        load_CIFAR_batch(str(tmp_path / "data_batch_1"))


def test_truncated_malformed_and_missing_batches_name_the_file(tmp_path):
    write_batches(tmp_path)
    path = tmp_path / "data_batch_3"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(ValueError, match="data_batch_3.*truncated"):
        load_CIFAR10(str(tmp_path))
    write_batch(path, np.zeros((2, 100), np.uint8), [0, 1])
    with pytest.raises(ValueError, match=r"data_batch_3.*\(N, 3072\)"):
        load_CIFAR10(str(tmp_path))
    write_batch(path, np.zeros((2, 3072), np.uint8), [0, 10])
    with pytest.raises(ValueError, match=r"data_batch_3.*'labels' must lie in \[0, 9\]"):
        load_CIFAR10(str(tmp_path))
    write_batch(path, np.zeros((2, 3072), np.uint8), [0])
    with pytest.raises(ValueError, match="data_batch_3: 2 images but 'labels'"):
        load_CIFAR10(str(tmp_path))
    with open(path, "wb") as f:
        dump_python2(["not", "a", "dict"], f)
    with pytest.raises(ValueError, match="this one a list"):
        load_CIFAR10(str(tmp_path))
    path.write_bytes(raw)
    os.remove(tmp_path / "data_batch_4")
    with pytest.raises(FileNotFoundError, match="data_batch_4 is missing"):
        load_CIFAR10(str(tmp_path))
    os.remove(tmp_path / "test_batch")
    os.remove(tmp_path / "data_batch_5")
    with pytest.raises(FileNotFoundError, match="test_batch is missing"):
        load_CIFAR10(str(tmp_path))


def test_no_data_errors_name_the_path_and_the_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        load_CIFAR10(str(tmp_path / "nowhere"))
    text = str(info.value)
    assert str(tmp_path / "nowhere") in text and "data_batch_1" in text and "train/<class>" in text
    assert "download_CIFAR10(root)" in text
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="test/ is missing") as info:
        load_CIFAR10(str(tmp_path / "empty"))
    assert "cifar-10-batches-py" in str(info.value) and "accepted layouts" in str(info.value)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a .tar.gz"):
        load_CIFAR10(str(tmp_path / "notes.txt"))


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
    empty = get_CIFAR10_data(0, 0, 0, subtract_mean=False, cifar10_dir=str(tmp_path))
    assert empty["X_train"].shape == (0, 3, 32, 32) and empty["y_val"].shape == (0,)
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
# ImageFolder trees and archives
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


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Every test's cache in its own folder (never the user's ~/.cache)."""
    monkeypatch.setenv("NN_TWINS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_image_folder_png_exact_and_shuffled_once(tmp_path, cache):
    tree = write_tree(tmp_path / "data")
    Xtr, Ytr, Xte, Yte = load_CIFAR10(str(tmp_path / "data"))
    # The documented shuffle: RandomState(0).permutation(n), per split.
    ptr = np.random.RandomState(0).permutation(12)
    pte = np.random.RandomState(0).permutation(6)
    np.testing.assert_array_equal(Xtr, tree["train"][0][ptr].astype(np.float64))
    np.testing.assert_array_equal(Ytr, tree["train"][1][ptr])
    np.testing.assert_array_equal(Xte, tree["test"][0][pte].astype(np.float64))
    np.testing.assert_array_equal(Yte, tree["test"][1][pte])
    assert Xtr.shape == (12, 6, 8, 3) and Xtr.dtype == np.float64
    # Unshuffled, directory order: class by class.
    X, y, _, _, classes = load_image_folder(str(tmp_path / "data"))
    assert classes == CLASSES
    np.testing.assert_array_equal(y, [0] * 4 + [1] * 4 + [2] * 4)
    np.testing.assert_array_equal(X, tree["train"][0])


def test_image_folder_jpeg_decodes_as_pillow_does(tmp_path, cache):
    write_tree(tmp_path, fmt="JPEG", size=(32, 32))
    X, y, Xte, _, _ = load_image_folder(str(tmp_path))
    assert X.shape == (12, 32, 32, 3) and Xte.shape == (6, 32, 32, 3)
    ref = np.asarray(PIL.open(tmp_path / "train" / "cat" / "0002.jpg").convert("RGB"))
    np.testing.assert_array_equal(X[4 + 2], ref)


@pytest.mark.parametrize("kind", ["batches", "png-tree"])
def test_an_archive_reads_as_its_unpacked_folder(tmp_path, cache, kind):
    if kind == "batches":
        write_batches(tmp_path / "src" / "cifar-10-batches-py", n=5)
    else:
        write_tree(tmp_path / "src")
    tgz = tar_dir(tmp_path / "src", tmp_path / "copy.tar.gz", arcname="cifar10")  # one level down
    for a, b in zip(load_CIFAR10(str(tmp_path / "src")), load_CIFAR10(str(tgz)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not (tmp_path / "cifar10").exists()  # nothing extracted, neither here ...
    assert not cache.exists() or not [p for p in cache.iterdir() if p.is_dir()]  # ... nor there


def test_unsafe_and_damaged_archives(tmp_path, cache):
    evil = tmp_path / "evil.tar.gz"
    make_archive(evil, {"../escaped.png": b"x", "/abs/data_batch_1": b"y"})
    with pytest.raises(loader.DataError, match="no regular files"):
        loader.read_cifar10(evil)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(os.urandom(500))
    with pytest.raises(loader.DataError, match="cannot read the archive"):
        loader.read_cifar10(junk)
    full = tmp_path / "full.tar.gz"
    write_batches(tmp_path / "b", n=2)
    tar_dir(tmp_path / "b", full, arcname="b")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(loader.DataError, match="cannot read the archive"):
        loader.read_cifar10(cut)
    assert not (tmp_path / "escaped.png").exists()


def test_cache_skips_decoding_and_is_rebuilt_when_the_tree_changes(tmp_path, cache, monkeypatch):
    write_tree(tmp_path / "data")
    first = load_CIFAR10(str(tmp_path / "data"))
    (npz,) = cache.glob("*.npz")
    with np.load(npz, allow_pickle=False) as z:  # plain arrays, no pickle
        assert z["X_train"].dtype == np.uint8

    def no_decoding(*args):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(loader, "decode_images", no_decoding)
    for a, b in zip(first, load_CIFAR10(str(tmp_path / "data")), strict=True):
        np.testing.assert_array_equal(a, b)
    monkeypatch.undo()
    # A new image invalidates the cache ...
    PIL.fromarray(np.zeros((6, 8, 3), np.uint8)).save(
        tmp_path / "data" / "train" / "cat" / "9999.png"
    )
    assert len(load_CIFAR10(str(tmp_path / "data"))[1]) == 13
    # ... and so does an image rewritten in place (same name, same size on disk).
    img = tmp_path / "data" / "test" / "bird" / "0000.png"
    X, *_ = load_image_folder(str(tmp_path / "data"))
    new = 255 - np.asarray(PIL.open(img))
    PIL.fromarray(new).save(img)
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _, _, Xte, _, _ = load_image_folder(str(tmp_path / "data"))
    np.testing.assert_array_equal(Xte[0], new)
    assert len(list(cache.glob("*.npz"))) == 1  # replaced, not accumulated


def test_cache_of_an_archive_is_rebuilt_when_the_archive_changes(tmp_path, cache, monkeypatch):
    write_tree(tmp_path / "a", seed=0)
    write_tree(tmp_path / "b", seed=1)
    tgz = tar_dir(tmp_path / "a", tmp_path / "data.tar.gz", arcname="data")
    first = loader.read_cifar10(tgz)

    def no_reading(*args):
        raise AssertionError("archive read again although the cache is valid")

    monkeypatch.setattr(loader, "_ArchiveTree", no_reading)
    hit = loader.read_cifar10(tgz)
    np.testing.assert_array_equal(hit.X_train, first.X_train)
    assert hit.source == first.source == str(tgz) and hit.classes == tuple(CLASSES)
    monkeypatch.undo()
    tar_dir(tmp_path / "b", tgz, arcname="data")
    st = tgz.stat()
    os.utime(tgz, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = loader.read_cifar10(tgz)
    np.testing.assert_array_equal(second.X_train, load_image_folder(str(tmp_path / "b"))[0])
    assert not np.array_equal(second.X_train, first.X_train)


def test_corrupted_cache_is_ignored_and_rewritten_and_cache_false_writes_nothing(tmp_path, cache):
    write_tree(tmp_path / "data")
    load_image_folder(str(tmp_path / "data"), cache=False)
    assert not cache.exists()
    other = tmp_path / "other-cache"
    load_image_folder(str(tmp_path / "data"), cache_dir=str(other))
    (npz,) = other.glob("*.npz")
    npz.write_bytes(b"garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        X, *_ = load_image_folder(str(tmp_path / "data"), cache_dir=str(other))
    assert any(npz.name in str(w.message) for w in caught)
    assert X.shape == (12, 6, 8, 3)
    with np.load(npz, allow_pickle=False) as z:  # rewritten, valid again
        assert z["X_train"].shape == (12, 6, 8, 3)
    assert not any(p.name.startswith(".") for p in other.iterdir())  # no temporary files left


def test_corrupted_and_truncated_images_name_the_file(tmp_path, cache):
    write_tree(tmp_path, fmt="JPEG", size=(32, 32))
    bad = tmp_path / "train" / "cat" / "0001.jpg"
    raw = bad.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="0001.jpg"):
        load_CIFAR10(str(tmp_path), cache=False)
    bad.write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match="cannot decode image .*0001.jpg"):
        load_CIFAR10(str(tmp_path), cache=False)


def test_image_folder_layout_errors(tmp_path, cache):
    write_tree(tmp_path)
    (tmp_path / "test" / "zebra").mkdir()
    with pytest.raises(ValueError, match="class folders that train/ lacks: \\['zebra'\\]"):
        load_CIFAR10(str(tmp_path))
    os.rmdir(tmp_path / "test" / "zebra")
    PIL.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "test" / "cat" / "0009.png")
    with pytest.raises(ValueError, match="one size: .*0009.png is 5x5"):
        load_CIFAR10(str(tmp_path))


def test_image_folder_without_pillow_says_what_is_missing(tmp_path, monkeypatch, cache):
    write_tree(tmp_path)
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `import PIL` raise ImportError
    with pytest.raises(ImportError, match="Pillow"):
        load_CIFAR10(str(tmp_path), cache=False)


def test_importing_the_loader_needs_numpy_and_the_standard_library_only():
    code = (
        "import sys; import numpy_impl.data, numpy_impl.cifar10_loader; "
        "bad = [m for m in ('PIL', 'torch', 'torchvision') if m in sys.modules]; "
        "assert not bad, bad"
    )
    import subprocess

    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__))
    )


# ----------------------------------------------------------------------------------------------
# download (offline: a file:// URL to a synthetic archive)
# ----------------------------------------------------------------------------------------------


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
    assert sorted(os.listdir(dest)) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    assert download_CIFAR10(str(dest), url="http://unreachable.invalid/x.tar.gz") == got  # done


def test_download_refuses_unsafe_archive_members(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    md5 = make_archive(archive, {"../escaped.txt": b"x"})
    with pytest.raises(ValueError, match="evil.tar.gz"):
        download_CIFAR10(str(tmp_path / "dest"), url=archive.as_uri(), md5=md5)
    assert not (tmp_path / "escaped.txt").exists()
