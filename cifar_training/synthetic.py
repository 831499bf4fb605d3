"""Tiny CIFAR-like datasets written in the real on-disk formats (for tests and smoke runs).

Images of class k have a class-specific mean colour and a class-specific stripe, plus noise, so
a small network learns them within a few steps. ``write_python_batches`` writes the official
python-batch layout byte for byte as CIFAR's own files are (``dump_python2``: dicts of Python 2
strings holding uint8 rows of 3072, pickled with protocol 2 the way Python 2's cPickle did);
``write_image_folder`` writes train/<class>/NNNN.png|jpg and test/<class>/...; ``make_tarball``
packs either into a .tar.gz.
"""

from __future__ import annotations

import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

try:  # NumPy >= 2 (numpy.core is a deprecated alias there)
    from numpy._core.multiarray import _reconstruct
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import _reconstruct

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def make_images(n: int, num_classes: int = 10, size: int = 32, seed: int = 0):
    """x: (n, 3, size, size) uint8; labels y: (n,) int64, balanced over the classes (n // C or
    n // C + 1 each) and shuffled, so any n >= num_classes holds every class."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % num_classes
    rng.shuffle(y)
    palette = np.random.default_rng(1234).integers(40, 216, size=(num_classes, 3))
    x = rng.normal(0, 25, size=(n, 3, size, size)) + palette[y][:, :, None, None]
    rows = (np.arange(size)[None, :] + 3 * y[:, None]) % num_classes < 2  # stripes by class
    x[:, :, :, :] += 60 * rows[:, None, :, None]
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def write_python_batches(
    root, n_train: int = 100, n_test: int = 40, num_batches: int = 5, seed: int = 0
) -> Path:
    """root/cifar-10-batches-py/{data_batch_1..num_batches, test_batch, batches.meta}, holding
    make_images(n_train, seed=seed) and make_images(n_test, seed=seed + 1)."""
    d = Path(root) / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    x, y = make_images(n_train, seed=seed)
    splits = np.array_split(np.arange(n_train), num_batches)
    for i, idx in enumerate(splits, 1):
        _dump(d / f"data_batch_{i}", x[idx], y[idx], f"training batch {i} of {num_batches}")
    x_te, y_te = make_images(n_test, seed=seed + 1)
    _dump(d / "test_batch", x_te, y_te, "testing batch 1 of 1")
    with open(d / "batches.meta", "wb") as f:
        dump_python2(
            {"label_names": list(CLASSES), "num_cases_per_batch": 10000, "num_vis": 3072}, f
        )
    return d


def _dump(path, x, y, label):
    batch = {  # in the official files' key order
        "data": np.ascontiguousarray(x.reshape(len(x), -1)),
        "labels": [int(v) for v in y],
        "batch_label": label,
        "filenames": [f"img_{i}.png" for i in range(len(x))],
    }
    with open(path, "wb") as f:
        dump_python2(batch, f)


class _Python2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2's cPickle wrote it for CIFAR's batches: every str and bytes object
    is a Python 2 ``str`` (BINSTRING opcodes, no ``_codecs.encode`` call), and NumPy's array
    reconstructor is named ``numpy.core.multiarray._reconstruct`` (NumPy 1's module, whatever
    NumPy writes). The pure-Python pickler is used because its opcode table can be changed."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_python2_str
    dispatch[bytes] = save_python2_str

    def save_global(self, obj, name=None):
        if obj is _reconstruct:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def dump_python2(obj, f) -> None:
    """Pickle ``obj`` (dicts, lists, str, int, NumPy arrays) to the binary file ``f`` exactly as
    the official CIFAR-10 python batches are pickled (Python 2, protocol 2)."""
    _Python2Pickler(f, protocol=2).dump(obj)


def write_image_folder(
    root, n_train: int = 100, n_test: int = 40, size: int = 32, ext: str = ".png", seed: int = 0
):
    """root/train/<class>/NNNN<ext> and root/test/<class>/...; returns (root, x_train, y_train,
    x_test, y_test) with the arrays in the order written (image i of the split)."""
    from PIL import Image

    root = Path(root)
    parts = {
        "train": make_images(n_train, size=size, seed=seed),
        "test": make_images(n_test, size=size, seed=seed + 1),
    }
    for split, (xs, ys) in parts.items():
        for i, (img, label) in enumerate(zip(xs, ys, strict=True)):
            d = root / split / CLASSES[label]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.transpose(1, 2, 0)).save(d / f"{i:04d}{ext}")
    return root, parts["train"][0], parts["train"][1], parts["test"][0], parts["test"][1]


def make_tarball(src_dir, tar_path, arcname: str | None = None) -> Path:
    """Pack src_dir into tar_path (.tar.gz), under ``arcname`` (default: its contents at the root
    of the archive)."""
    src_dir, tar_path = Path(src_dir), Path(tar_path)
    with tarfile.open(tar_path, "w:gz") as tar:
        if arcname:
            tar.add(src_dir, arcname=arcname)
        else:
            for p in sorted(src_dir.iterdir()):
                tar.add(p, arcname=p.name)
    return tar_path
