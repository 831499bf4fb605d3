"""CIFAR-10 loading with the course's API (``load_CIFAR10``, ``get_CIFAR10_data``).

``ROOT`` may hold CIFAR-10 in any layout ``numpy_impl.cifar10_loader`` reads (its ``LAYOUTS``):

1. the official "CIFAR-10 python version" (``cifar-10-python.tar.gz``): ``data_batch_1`` ..
   ``data_batch_5`` and ``test_batch``, directly in ``ROOT`` or below it (e.g. in
   ``ROOT/cifar-10-batches-py/``, where ``torchvision.datasets.CIFAR10(ROOT, download=True)`` and
   ``download_CIFAR10(ROOT)`` put them). These files are Python 2 pickles, read with an
   unpickler that admits only the three NumPy globals such a batch names: a tampered file cannot
   run code, it fails with an error naming the file;
2. an ImageFolder tree, ``train/<class>/*`` and ``test/<class>/*`` (PNG, JPEG, ...), decoded with
   Pillow (imported only then); classes are the sorted sub-directory names, so CIFAR-10's
   alphabetical class names get CIFAR-10's label order;
3. a ``.tar.gz``/``.tgz``/``.tar`` archive of either (``ROOT`` is then the archive's path).

Decoded images (2, 3) are cached as ``.npz`` (no pickle, written atomically) in ``cache_dir``
(default ``$NN_TWINS_CACHE`` or ``~/.cache/nn-twins``), rebuilt when any image file (or the
archive) changes. The training package (``cifar_training.datasets``) reads through the same
loader, so both see identical uint8 arrays.
"""

from __future__ import annotations

import os

import numpy as np

from .cifar10_loader import (
    CIFAR10_CLASSES,
    CIFAR10_MD5,
    CIFAR10_URL,
    DataError,
    atomic_savez,
    batch_arrays,
    download_cifar10,
    read_cifar10,
)

__all__ = [
    "CIFAR10_CLASSES",
    "load_CIFAR_batch",
    "load_CIFAR10",
    "load_image_folder",
    "get_CIFAR10_data",
    "cs231n_splits",
    "download_CIFAR10",
    "atomic_savez",
]

DOWNLOAD_HINT = "download_CIFAR10(root) fetches the official python batches (163 MB; internet)."


def load_CIFAR_batch(filename, dtype=np.float64):
    """Load a single batch of CIFAR-10 (python version).

    Returns X: (N, 32, 32, 3) of ``dtype`` (pixel values 0..255) and Y: (N,) int64 labels.
    Raises DataError (a ValueError) naming the file when it is corrupted, truncated, not a
    CIFAR batch or a pickle that names any global beyond NumPy's array constructors.
    """
    with open(filename, "rb") as f:
        blob = f.read()
    X, Y = batch_arrays(blob, filename)
    return X.astype(dtype), Y


def load_CIFAR10(ROOT, dtype=np.float64, cache=True, cache_dir=None):
    """Load all of CIFAR-10.

    Inputs:
    - ROOT: a directory (or archive) holding any layout described in this module's docstring.
    - dtype: floating dtype of the images (the course uses float64; float32 halves memory).
    - cache, cache_dir: the decoded-image cache (ImageFolder trees and archives).

    Returns Xtr (50000, 32, 32, 3), Ytr (50000,), Xte (10000, 32, 32, 3), Yte (10000,) with
    pixel values 0..255 and int64 labels (sizes as on disk).

    The official training batches are in random order, which CS231n's "first N images" splits
    rely on. An ImageFolder tree comes sorted by class, so its images are shuffled here ONCE with
    a fixed seed -- ``np.random.RandomState(0).permutation(n)``, separately for train and test --
    making every first-N split below hold all classes in proportion, deterministically.
    """
    d = read_cifar10(ROOT, cache=cache, cache_dir=cache_dir, hint=DOWNLOAD_HINT)
    Xtr, Ytr, Xte, Yte = d.X_train, d.y_train, d.X_test, d.y_test
    if d.layout == "folder":
        ptr = np.random.RandomState(0).permutation(len(Ytr))
        pte = np.random.RandomState(0).permutation(len(Yte))
        Xtr, Ytr, Xte, Yte = Xtr[ptr], Ytr[ptr], Xte[pte], Yte[pte]
    return Xtr.astype(dtype), Ytr, Xte.astype(dtype), Yte


def load_image_folder(root, cache=True, cache_dir=None):
    """Decode an ImageFolder tree ``root/train/<class>/*`` and ``root/test/<class>/*`` (or an
    archive of one), through the decoded-image cache.

    Returns (X_train, y_train, X_test, y_test, classes): uint8 (N, H, W, 3) images in directory
    order (sorted by class, then by file name), int64 labels and the class names. Raises
    DataError naming the file for an image that cannot be decoded.
    """
    d = read_cifar10(root, cache=cache, cache_dir=cache_dir)
    if d.layout != "folder":
        raise DataError("expected an ImageFolder tree, found python batches.", root)
    return d.X_train, d.y_train, d.X_test, d.y_test, list(d.classes)


def get_CIFAR10_data(
    num_training=49000,
    num_validation=1000,
    num_test=1000,
    subtract_mean=True,
    cifar10_dir=None,
    dtype=np.float64,
):
    """Load CIFAR-10 and prepare it for the classifiers, as in the course.

    Inputs:
    - num_training, num_validation, num_test: split sizes.
    - subtract_mean: subtract the mean image of the training split from every split.
    - cifar10_dir (extension): data directory; None means $CIFAR10_DIR, else ``data`` (where
      torchvision's CIFAR10(root='data', download=True) puts cifar-10-batches-py/).
    - dtype (extension): floating dtype of the images (course: float64).

    Splits (CS231n's): validation = training images [num_training, num_training +
    num_validation), training = the first num_training, test = the first num_test test images.
    "First N" is a random sample because the official batches are in random order, and an
    ImageFolder tree (sorted by class on disk) was shuffled once with RandomState(0) by
    load_CIFAR10.

    Returns a dict with 'X_train', 'y_train', 'X_val', 'y_val', 'X_test', 'y_test'; images are
    (N, 3, 32, 32) (channels first).
    """
    if cifar10_dir is None:
        cifar10_dir = os.environ.get("CIFAR10_DIR", "data")
    X_train, y_train, X_test, y_test = load_CIFAR10(cifar10_dir, dtype=dtype)
    return cs231n_splits(
        X_train, y_train, X_test, y_test, num_training, num_validation, num_test, subtract_mean
    )


def cs231n_splits(
    X_train,
    y_train,
    X_test,
    y_test,
    num_training=49000,
    num_validation=1000,
    num_test=1000,
    subtract_mean=True,
    channels_first=True,
):
    """The splits of get_CIFAR10_data, from arrays already loaded by load_CIFAR10.

    X_train: (N_train, H, W, C); X_test: (N_test, H, W, C). Validation = training images
    [num_training, num_training + num_validation), training = the first num_training, test =
    the first num_test test images; the mean image of the training split is subtracted from
    every split when subtract_mean. Returns the dict of get_CIFAR10_data (NCHW images when
    channels_first, else NHWC).
    """
    for name, value in (
        ("num_training", num_training),
        ("num_validation", num_validation),
        ("num_test", num_test),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if num_training + num_validation > len(X_train):
        raise ValueError(
            f"num_training + num_validation = {num_training + num_validation} exceeds the "
            f"{len(X_train)} training images"
        )
    if num_test > len(X_test):
        raise ValueError(f"num_test = {num_test} exceeds the {len(X_test)} test images")

    # Subsample the data (the course's splits: validation right after the training slice).
    X_val = X_train[num_training : num_training + num_validation]
    y_val = y_train[num_training : num_training + num_validation]
    X_tr = X_train[:num_training]
    y_tr = y_train[:num_training]
    X_te = X_test[:num_test]
    y_te = y_test[:num_test]

    if subtract_mean:
        mean_image = np.mean(X_tr, axis=0)
        X_tr = X_tr - mean_image
        X_val = X_val - mean_image
        X_te = X_te - mean_image

    # Transpose so that channels come first.
    order = (0, 3, 1, 2) if channels_first else (0, 1, 2, 3)
    return {
        "X_train": X_tr.transpose(order).copy(),
        "y_train": y_tr.copy(),
        "X_val": X_val.transpose(order).copy(),
        "y_val": y_val.copy(),
        "X_test": X_te.transpose(order).copy(),
        "y_test": y_te.copy(),
    }


def download_CIFAR10(root, url=CIFAR10_URL, md5=CIFAR10_MD5):
    """Download and unpack the official python version into ``root/cifar-10-batches-py``.

    The archive (163 MB) is written to a temporary file, checked against its MD5 sum, moved
    into place atomically, and unpacked with tarfile's 'data' filter (no absolute paths, links
    or files outside ``root``). Returns the batches directory; skips work already done.
    """
    return download_cifar10(root, url=url, md5=md5)
