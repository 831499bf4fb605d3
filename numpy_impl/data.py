"""CIFAR-10 loading with the course's API (``load_CIFAR10``, ``get_CIFAR10_data``).

Two on-disk layouts are read:

1. The official "CIFAR-10 python version" (``cifar-10-python.tar.gz``): ``data_batch_1`` ..
   ``data_batch_5`` and ``test_batch``, directly in ``root`` or under
   ``root/cifar-10-batches-py/`` (where ``torchvision.datasets.CIFAR10(root, download=True)``
   puts them). These files are Python pickles written by the dataset's authors -- the format
   cannot be read any other way -- so they are read with a *restricted* unpickler that refuses
   every global except the few NumPy array reconstructors such a batch needs. A tampered file
   therefore cannot run code; it fails with an error naming the file.
2. An ImageFolder tree, ``root/train/<class>/*`` and ``root/test/<class>/*`` (PNG, JPEG, ...),
   read with Pillow (imported only then). Classes are the sorted sub-directory names, so
   CIFAR-10's alphabetical class names get CIFAR-10's label order. Decoded images are cached in
   an ``.npz`` file (no pickle) that is reused while the tree is unchanged, so a second load skips
   decoding.

Nothing here uses pickle for data the project writes itself: caches are ``.npz`` read with
``allow_pickle=False`` and written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tarfile
import tempfile
import urllib.request
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

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

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_TRAIN_BATCHES = tuple(f"data_batch_{b}" for b in range(1, 6))
_CACHE_NAME = ".nn_twins_cifar10_cache.npz"
_CACHE_VERSION = 1

_LAYOUTS = (
    "  (1) the official python batches data_batch_1 .. data_batch_5 and test_batch, in the\n"
    "      directory itself or in its cifar-10-batches-py/ subdirectory\n"
    "      (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, or download_CIFAR10(root));\n"
    "  (2) an ImageFolder tree: train/<class>/<image files> and test/<class>/<image files>"
)


# ----------------------------------------------------------------------------------------------
# Official python batches
# ----------------------------------------------------------------------------------------------


def _numpy_reconstructors():
    """The globals a pickled NumPy array refers to, under both NumPy 1 (numpy.core) and NumPy 2
    (numpy._core) module names, mapped to the live objects (never imported by name from the
    file)."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray, numeric
    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): __import__("codecs").encode,  # bytes pickled by protocol <= 2
    }
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):  # arrays pickled with protocol 5
            allowed[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batches: plain containers plus NumPy arrays, nothing else.

    A CIFAR batch is a dict of bytes/str keys holding a uint8 array, a list of int labels, a list
    of file names and a batch label. Any other global (the way a malicious pickle runs code) is
    refused.
    """

    _ALLOWED = None

    def find_class(self, module, name):
        if _RestrictedUnpickler._ALLOWED is None:
            _RestrictedUnpickler._ALLOWED = _numpy_reconstructors()
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: a CIFAR-10 batch holds only "
                "dicts, lists, bytes and NumPy arrays"
            ) from None


def _get(d, key):
    """CIFAR's keys are Python 2 str, i.e. bytes once loaded with encoding='bytes'."""
    if key in d:
        return d[key]
    return d[key.encode()]


def load_CIFAR_batch(filename, dtype=np.float64):
    """Load a single batch of CIFAR-10 (python version).

    Returns X: (N, 32, 32, 3) of ``dtype`` (pixel values 0..255) and Y: (N,) int64 labels.
    Raises ValueError naming the file when it is corrupted, truncated or not a CIFAR batch.
    """
    try:
        with open(filename, "rb") as f:
            datadict = _RestrictedUnpickler(f, encoding="bytes").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        UnicodeDecodeError,
    ) as e:
        raise ValueError(
            f"{filename}: not a readable CIFAR-10 python batch (corrupted or truncated?): {e}"
        ) from e
    try:
        X = np.asarray(_get(datadict, "data"))
        Y = np.asarray(_get(datadict, "labels"), dtype=np.int64)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"{filename}: a CIFAR-10 batch must be a dict with 'data' and 'labels': {e!r}"
        ) from e
    if X.dtype != np.uint8 or X.ndim != 2 or X.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{filename}: 'data' must be a uint8 array of shape (N, 3072), got {X.dtype} {X.shape}"
        )
    if Y.shape != (X.shape[0],):
        raise ValueError(
            f"{filename}: 'labels' must hold one label per row of 'data' ({X.shape[0]}), "
            f"got shape {Y.shape}"
        )
    if Y.size and (Y.min() < 0 or Y.max() > 9):
        raise ValueError(
            f"{filename}: 'labels' must lie in [0, 9], got values in [{Y.min()}, {Y.max()}]"
        )
    # Rows are stored channel-major (1024 red, 1024 green, 1024 blue values of a 32x32 image).
    X = X.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(dtype)
    return X, Y


def _python_batches_dir(root):
    for d in (root, os.path.join(root, "cifar-10-batches-py")):
        if os.path.isfile(os.path.join(d, "data_batch_1")) or os.path.isfile(
            os.path.join(d, "test_batch")
        ):
            return d
    return None


def _load_python_batches(d, dtype):
    xs, ys = [], []
    for name in _TRAIN_BATCHES:
        f = os.path.join(d, name)
        if not os.path.isfile(f):
            raise FileNotFoundError(f"CIFAR-10 batch file missing: {f}")
        X, Y = load_CIFAR_batch(f, dtype=dtype)
        xs.append(X)
        ys.append(Y)
    Xtr = np.concatenate(xs)
    Ytr = np.concatenate(ys)
    del xs, ys
    test = os.path.join(d, "test_batch")
    if not os.path.isfile(test):
        raise FileNotFoundError(f"CIFAR-10 batch file missing: {test}")
    Xte, Yte = load_CIFAR_batch(test, dtype=dtype)
    return Xtr, Ytr, Xte, Yte


# ----------------------------------------------------------------------------------------------
# ImageFolder trees
# ----------------------------------------------------------------------------------------------


def _scan_split(split_dir):
    """Sorted class names and (path, "split/class/file", label, stat) items of one split."""
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    if not classes:
        raise FileNotFoundError(
            f"{split_dir} holds no class sub-directories (expected {split_dir}/<class>/<images>)"
        )
    items = []
    for label, cls in enumerate(classes):
        cls_dir = os.path.join(split_dir, cls)
        entries = sorted(
            (
                e
                for e in os.scandir(cls_dir)
                if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS)
            ),
            key=lambda e: e.name,
        )
        rel = f"{os.path.basename(os.path.normpath(split_dir))}/{cls}/"
        items.extend((e.path, rel + e.name, label, e.stat()) for e in entries)
    if not items:
        raise FileNotFoundError(
            f"{split_dir} holds no image files with extensions {', '.join(IMG_EXTENSIONS)}"
        )
    return classes, items


def _fingerprint(classes, splits):
    """Identifies the tree's content: every file's relative path, size and mtime."""
    h = hashlib.sha256()
    for items in splits:
        for _, rel, label, st in items:
            h.update(f"{rel}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {
        "version": _CACHE_VERSION,
        "classes": classes,
        "counts": [len(items) for items in splits],
        "sha256": h.hexdigest(),
    }


def _decode_images(items):
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as e:
        raise ImportError(
            "reading an ImageFolder tree needs Pillow (pip install pillow); "
            "the official CIFAR-10 python batches need only NumPy"
        ) from e

    def decode(path):
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"{path}: cannot decode image (corrupted or truncated?): {e}") from e

    paths = [item[0] for item in items]
    # Pillow releases the GIL while decoding, so threads overlap the work.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        images = list(pool.map(decode, paths))
    shape = images[0].shape
    for path, im in zip(paths, images, strict=True):
        if im.shape != shape:
            raise ValueError(
                f"{path}: image of size {im.shape[:2]} differs from the first image's "
                f"{shape[:2]} ({paths[0]}); all images must have the same size"
            )
    return np.stack(images)


def _cache_path(root, cache_dir):
    if cache_dir is not None:
        key = hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:12]
        return os.path.join(cache_dir, f"cifar10_imagefolder_{key}.npz")
    return os.path.join(root, _CACHE_NAME)


def _read_cache(path, fingerprint):
    """The cached arrays if ``path`` holds a cache of this exact tree, else None."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode("utf-8"))
            if meta != fingerprint:
                return None
            return tuple(z[k] for k in ("X_train", "y_train", "X_test", "y_test"))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        warnings.warn(
            f"ignoring unreadable cache {path} ({e}); decoding the images again", stacklevel=3
        )
        return None


def atomic_savez(path, **arrays):
    """np.savez to a temporary file in the same directory, then os.replace (atomic)."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_", suffix=".npz")
    try:
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_image_folder(root, cache=True, cache_dir=None):
    """Decode an ImageFolder tree ``root/train/<class>/*`` and ``root/test/<class>/*``.

    Inputs:
    - root: directory holding ``train/`` and ``test/``.
    - cache: reuse/write an ``.npz`` cache of the decoded arrays. The cache records every file's
      path, size and modification time and is rebuilt when any of them changes.
    - cache_dir: where the cache goes; None means ``root`` itself (file
      ``.nn_twins_cifar10_cache.npz``, which ImageFolder readers ignore since it is not a
      directory), falling back to ``~/.cache/nn_twins`` when ``root`` is not writable.

    Returns (X_train, y_train, X_test, y_test, classes): uint8 (N, H, W, 3) images in directory
    order (sorted by class, then by file name), int64 labels and the class names. Raises
    ValueError naming the file for an image that cannot be decoded.
    """
    train_dir, test_dir = os.path.join(root, "train"), os.path.join(root, "test")
    classes, train_items = _scan_split(train_dir)
    test_classes, test_items = _scan_split(test_dir)
    if test_classes != classes:
        raise ValueError(
            f"{test_dir} must have the same class directories as {train_dir}: "
            f"{test_classes} vs {classes}"
        )
    fingerprint = _fingerprint(classes, (train_items, test_items))
    path = None
    if cache:
        if cache_dir is None and not os.access(root, os.W_OK):
            cache_dir = os.path.join(os.path.expanduser("~"), ".cache", "nn_twins")
        path = _cache_path(root, cache_dir)
        cached = _read_cache(path, fingerprint)
        if cached is not None:
            return (*cached, classes)
    X_train = _decode_images(train_items)
    X_test = _decode_images(test_items)
    y_train = np.array([item[2] for item in train_items], dtype=np.int64)
    y_test = np.array([item[2] for item in test_items], dtype=np.int64)
    if cache:
        meta = np.frombuffer(json.dumps(fingerprint).encode("utf-8"), dtype=np.uint8)
        try:
            atomic_savez(
                path, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test, meta=meta
            )
        except OSError as e:
            warnings.warn(f"could not write the cache {path}: {e}", stacklevel=2)
    return X_train, y_train, X_test, y_test, classes


# ----------------------------------------------------------------------------------------------
# The course's entry points
# ----------------------------------------------------------------------------------------------


def load_CIFAR10(ROOT, dtype=np.float64, cache=True, cache_dir=None):
    """Load all of CIFAR-10.

    Inputs:
    - ROOT: a directory holding either layout described in this module's docstring.
    - dtype: floating dtype of the images (the course uses float64; float32 halves memory).
    - cache, cache_dir: ImageFolder decode cache, see ``load_image_folder``.

    Returns Xtr (50000, 32, 32, 3), Ytr (50000,), Xte (10000, 32, 32, 3), Yte (10000,) with
    pixel values 0..255 and int64 labels (sizes as on disk).

    The official training batches are in random order, which CS231n's "first N images" splits
    rely on. An ImageFolder tree comes sorted by class, so its images are shuffled here ONCE with
    a fixed seed -- ``np.random.RandomState(0).permutation(n)``, separately for train and test --
    making every first-N split below hold all classes in proportion, deterministically.
    """
    if not os.path.isdir(ROOT):
        raise FileNotFoundError(
            f"CIFAR-10 directory not found: {ROOT!r}. Point to a directory holding one of:\n"
            + _LAYOUTS
        )
    batches = _python_batches_dir(ROOT)
    if batches is not None:
        return _load_python_batches(batches, dtype)
    if os.path.isdir(os.path.join(ROOT, "train")) and os.path.isdir(os.path.join(ROOT, "test")):
        Xtr, Ytr, Xte, Yte, _ = load_image_folder(ROOT, cache=cache, cache_dir=cache_dir)
        ptr = np.random.RandomState(0).permutation(len(Ytr))
        pte = np.random.RandomState(0).permutation(len(Yte))
        return Xtr[ptr].astype(dtype), Ytr[ptr], Xte[pte].astype(dtype), Yte[pte]
    raise FileNotFoundError(f"no CIFAR-10 data found in {ROOT!r}. Expected one of:\n" + _LAYOUTS)


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
    target = os.path.join(root, "cifar-10-batches-py")
    if os.path.isfile(os.path.join(target, "test_batch")):
        return target
    os.makedirs(root, exist_ok=True)
    archive = os.path.join(root, os.path.basename(url) or "cifar-10-python.tar.gz")
    if not os.path.isfile(archive) or _md5(archive) != md5:
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp_", suffix=".tar.gz")
        try:
            with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url) as response:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
            got = _md5(tmp)
            if md5 is not None and got != md5:
                raise ValueError(f"{url}: MD5 {got} does not match the expected {md5}")
            os.replace(tmp, archive)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, filter="data")
            else:  # Python without extraction filters: refuse unsafe member paths ourselves
                base = os.path.realpath(root)
                for m in tar.getmembers():
                    dest = os.path.realpath(os.path.join(root, m.name))
                    if not (m.isfile() or m.isdir()) or os.path.commonpath([base, dest]) != base:
                        raise ValueError(f"{archive}: unsafe member {m.name!r}")
                tar.extractall(root)  # noqa: S202 - members checked above
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"{archive}: corrupted or truncated archive: {e}") from e
    return target


def _md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
