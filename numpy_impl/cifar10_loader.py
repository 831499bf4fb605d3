"""CIFAR-10 from disk as uint8 arrays: the one reader behind the course's ``load_CIFAR10``
(``numpy_impl.data``) and the training package's data module (``cifar_training.datasets``).

Sources (``LAYOUTS`` is the text every error shows):

1. the official python batches (``cifar-10-python.tar.gz``): ``data_batch_1`` ... and
   ``test_batch``, optional ``batches.meta``;
2. an ImageFolder tree ``train/<class>/<image>`` and ``test/<class>/<image>`` (class folders
   sorted by name give the labels, as in ``torchvision.datasets.ImageFolder``; CIFAR-10's class
   names sort into its own label order);
3. a ``.tar.gz``/``.tgz``/``.tar`` archive of either, read member by member (never extracted, so
   no member can land outside a folder).

A layout may sit in the given folder or up to two levels below it. The images come back as
``CIFARImages``: uint8 ``(N, H, W, 3)`` arrays in file order (batches in their own order, an
ImageFolder tree class by class, then by file name).

The batches are Python 2 pickles (protocol 2); the format cannot be read without unpickling. They
are read with an unpickler that resolves exactly the three globals the official files name
(``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``) to NumPy's own
objects, so a tampered batch cannot run code: any other global is refused, naming it.

Decoded images (ImageFolder trees and archives) are cached as one ``.npz`` per source in
``cache_dir`` (read with ``allow_pickle=False``). The cache records a fingerprint of the source --
every image's path, size and modification time, or the archive's size and modification time --
and is decoded again and replaced when it no longer matches. A folder of python batches is read
directly (as fast as the cache would be). Every file written here is written atomically (a
temporary file in the same folder, then ``os.replace``).

Imports NumPy and the standard library only; Pillow is imported when an image is decoded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import posixpath
import shutil
import tarfile
import tempfile
import time
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

try:  # NumPy >= 2 (numpy.core is a deprecated alias there)
    from numpy._core.multiarray import _reconstruct
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import _reconstruct

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
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_BATCH_FILES = ("test_batch", "batches.meta")  # besides data_batch_<i>
_CACHE_FORMAT = 2

LAYOUTS = """accepted layouts:
  1. CIFAR-10 python batches: a directory holding data_batch_1 ... data_batch_5 and test_batch
     (the cifar-10-batches-py/ folder of cifar-10-python.tar.gz, or its parent directory);
  2. an ImageFolder tree: train/<class>/<image> and test/<class>/<image> (jpg, png, ...), every
     class folder of test/ also in train/;
  3. a .tar.gz, .tgz or .tar archive holding either of the above (read in place)."""


class DataError(ValueError):
    """CIFAR-10 data missing, unreadable or in no accepted layout. ``str()`` gives the problem,
    the path, the accepted layouts and, when set, ``hint`` (what to do about it)."""

    def __init__(self, problem: str, path, hint: str | None = None):
        super().__init__(problem)
        self.problem, self.path, self.hint = problem, str(path), hint

    def __str__(self) -> str:
        text = f"{self.problem}\n  path: {self.path}\n{LAYOUTS}"
        return f"{text}\n{self.hint}" if self.hint else text

    def __reduce__(self):
        return type(self), (self.problem, self.path, self.hint)


class DataNotFoundError(DataError, FileNotFoundError):
    """No CIFAR-10 data where it was looked for (a missing path, layout or batch file)."""


@dataclass(frozen=True)
class CIFARImages:
    """Decoded CIFAR-10. X_*: (N, H, W, 3) uint8; y_*: (N,) int64 in [0, len(classes));
    classes: label names; layout: "batches" or "folder"; source: the path read."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple
    layout: str
    source: str


def _say(log, message: str) -> None:
    if log is not None:
        log(message)


def default_cache_dir() -> str:
    """$NN_TWINS_CACHE, else $XDG_CACHE_HOME/nn-twins, else ~/.cache/nn-twins."""
    if os.environ.get("NN_TWINS_CACHE"):
        return os.environ["NN_TWINS_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nn-twins")


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def read_cifar10(source, cache=True, cache_dir=None, log=None, hint=None) -> CIFARImages:
    """CIFAR-10 from ``source`` (a folder or an archive in any accepted layout) as uint8 arrays.

    Inputs:
    - source: path of a folder or a .tar.gz/.tgz/.tar archive.
    - cache: read and write the decoded-image cache (ImageFolder trees and archives).
    - cache_dir: where the cache goes; None means ``default_cache_dir()``.
    - log: a callable taking one line of text, told when slow first-time decoding starts.
    - hint: what to do about missing data, appended to the message of any DataError raised.

    Raises DataError (a ValueError; DataNotFoundError, also a FileNotFoundError, when nothing is
    there) naming the path, the problem and the accepted layouts.
    """
    shown = os.path.expanduser(os.fspath(source))
    try:
        return _read(shown, cache, cache_dir, log)
    except DataError as e:
        if e.hint is None:
            e.hint = hint
        raise


def _read(shown, cache, cache_dir, log) -> CIFARImages:
    if not os.path.exists(shown):
        raise DataNotFoundError("data not found: the path does not exist.", shown)
    if os.path.isfile(shown):
        if not shown.endswith(ARCHIVE_SUFFIXES):
            raise DataError("data path is a file but not a .tar.gz/.tgz/.tar archive.", shown)
        st = os.stat(shown)
        fingerprint = {"archive_size": st.st_size, "mtime_ns": st.st_mtime_ns}
        return _through_cache(
            shown,
            fingerprint,
            lambda: _read_tree(_ArchiveTree(shown), shown),
            cache,
            cache_dir,
            log,
        )
    tree = _DirectoryTree(shown)
    kind, where = find_layout(tree, shown)
    if kind == "batches":
        return _read_batches(tree, where, shown)
    split_items, classes = _folder_items(tree, where, shown)
    fingerprint = _files_fingerprint(tree, split_items)
    return _through_cache(
        shown,
        fingerprint,
        lambda: _decode_folder(tree, split_items, classes, shown),
        cache,
        cache_dir,
        log,
    )


def _read_tree(tree, shown) -> CIFARImages:
    kind, where = find_layout(tree, shown)
    if kind == "batches":
        return _read_batches(tree, where, shown)
    split_items, classes = _folder_items(tree, where, shown)
    return _decode_folder(tree, split_items, classes, shown)


# ----------------------------------------------------------------------------------------------
# Folders and archives, addressed alike by relative POSIX paths ("" is the top)
# ----------------------------------------------------------------------------------------------


class _DirectoryTree:
    def __init__(self, root: str):
        self.root = root

    def path(self, rel: str) -> str:
        return os.path.join(self.root, *rel.split("/")) if rel else self.root

    def listing(self, rel: str) -> tuple[list, list]:
        """(sub-folder names, file names) directly in ``rel``, each sorted."""
        try:
            with os.scandir(self.path(rel)) as it:
                entries = list(it)
        except OSError:
            return [], []
        dirs = sorted(e.name for e in entries if e.is_dir())
        return dirs, sorted(e.name for e in entries if e.is_file())

    def read(self, rel: str) -> bytes:
        with open(self.path(rel), "rb") as f:
            return f.read()

    def stat(self, rel: str):
        return os.stat(self.path(rel))


class _ArchiveTree:
    """The regular-file members of a tar archive, read in one sequential pass. Only the files a
    layout can use (batch files, images) are kept in memory; members with absolute names or
    ``..`` components, links and devices are skipped, and nothing is written to disk."""

    def __init__(self, archive: str):
        self.archive = archive
        self.files: dict[str, bytes] = {}
        self.children: dict[str, tuple[set, set]] = {"": (set(), set())}
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    name = _member_name(member.name)
                    if name is None or not (member.isfile() or member.isdir()):
                        continue
                    self._add(name, is_file=member.isfile())
                    if member.isfile() and _usable(posixpath.basename(name)):
                        self.files[name] = tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:  # zlib.error is OSError
            raise DataError(f"cannot read the archive ({type(e).__name__}: {e}).", archive) from e
        if not any(self.children[d][1] for d in self.children):
            raise DataError("the archive holds no regular files.", archive)

    def _add(self, name: str, is_file: bool) -> None:
        parent, base = posixpath.split(name)
        if parent not in self.children:
            self._add(parent, is_file=False)
        self.children[parent][1 if is_file else 0].add(base)
        if not is_file:
            self.children.setdefault(name, (set(), set()))

    def path(self, rel: str) -> str:
        return f"{self.archive}:{rel}"

    def listing(self, rel: str) -> tuple[list, list]:
        dirs, files = self.children.get(rel, ((), ()))
        return sorted(dirs), sorted(files)

    def read(self, rel: str) -> bytes:
        return self.files[rel]


def _member_name(name: str):
    name = name.replace("\\", "/")
    if name.startswith("/") or ".." in name.split("/"):
        return None
    name = posixpath.normpath(name)
    return None if name in (".", "") else name


def _usable(base: str) -> bool:
    return (
        base.startswith("data_batch_")
        or base in _BATCH_FILES
        or base.lower().endswith(IMAGE_EXTENSIONS)
    )


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _layout_at(tree, d: str):
    dirs, files = tree.listing(d)
    if "data_batch_1" in files or "test_batch" in files:
        return "batches"
    if "train" in dirs and "test" in dirs:
        return "folder"
    return None


def find_layout(tree, shown=None) -> tuple[str, str]:
    """("batches" | "folder", relative folder): the first layout found at the top of ``tree`` (a
    folder's path, or a tree of this module) or up to two levels below it (breadth first, sorted
    names). Raises DataNotFoundError naming ``shown`` (default: the folder) if there is none."""
    if not hasattr(tree, "listing"):
        shown = tree if shown is None else shown
        tree = _DirectoryTree(os.fspath(tree))
    level = [""]
    for depth in range(3):
        for d in level:
            kind = _layout_at(tree, d)
            if kind:
                return kind, d
        if depth < 2:
            level = [_join(d, c) for d in level for c in tree.listing(d)[0]]
    missing = " (train/ exists but test/ is missing)" if "train" in tree.listing("")[0] else ""
    raise DataNotFoundError(
        f"no CIFAR-10 data found: neither python batches nor train/ + test/{missing}.", shown
    )


# ----------------------------------------------------------------------------------------------
# Official python batches
# ----------------------------------------------------------------------------------------------

# The globals the official batches name (pickled by Python 2's cPickle, protocol 2), mapped to the
# live objects: nothing is ever imported by a name read from a file.
_BATCH_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class BatchUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR's batches: dicts, lists, strings, numbers, and NumPy arrays through the
    three globals of ``_BATCH_GLOBALS``; any other global (how a pickle runs code) is refused."""

    def find_class(self, module, name):
        try:
            return _BATCH_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in _BATCH_GLOBALS)
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: a CIFAR-10 batch names only {allowed}"
            ) from None


def unpickle_batch(blob: bytes, shown) -> dict:
    """The dict pickled in ``blob`` (a batch file's bytes), keys as str. ``shown``: the file, for
    errors. Python 2 strings are decoded as latin-1 (NumPy's rule for Python 2 array pickles)."""
    try:
        obj = BatchUnpickler(io.BytesIO(blob), encoding="latin1").load()
    except Exception as e:  # a malformed pickle can fail in many ways; all mean "unreadable"
        raise DataError(
            f"cannot read CIFAR batch {os.path.basename(str(shown))} (corrupted or truncated, or "
            f"not a CIFAR-10 batch): {type(e).__name__}: {e}",
            shown,
        ) from e
    if not isinstance(obj, dict):
        raise DataError(f"a CIFAR batch holds a dict, this one a {type(obj).__name__}.", shown)
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def batch_arrays(blob: bytes, shown, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """One batch file's images (N, 32, 32, 3) uint8 and labels (N,) int64.

    A row of 'data' holds 1024 red, then 1024 green, then 1024 blue values, each a 32x32 image
    in row-major order. Raises DataError naming ``shown`` for anything else."""
    d = unpickle_batch(blob, shown)
    name = os.path.basename(str(shown))
    if "data" not in d or "labels" not in d:
        raise DataError(f"CIFAR batch {name} lacks 'data' or 'labels' (has {sorted(d)}).", shown)
    X = d["data"]
    try:
        y = np.asarray(d["labels"], dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"CIFAR batch {name}: 'labels' must be integers ({e}).", shown) from e
    if not isinstance(X, np.ndarray) or X.dtype != np.uint8 or X.ndim != 2 or X.shape[1] != 3072:
        got = f"{X.dtype} {X.shape}" if isinstance(X, np.ndarray) else type(X).__name__
        raise DataError(f"CIFAR batch {name}: 'data' must be uint8 (N, 3072), got {got}.", shown)
    if y.shape != (X.shape[0],):
        raise DataError(
            f"CIFAR batch {name}: {X.shape[0]} images but 'labels' of shape {y.shape}.", shown
        )
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(
            f"CIFAR batch {name}: 'labels' must lie in [0, {num_classes - 1}], got values in "
            f"[{y.min()}, {y.max()}].",
            shown,
        )
    return X.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y


def _read_batches(tree, d: str, shown) -> CIFARImages:
    _, files = tree.listing(d)
    n = 0
    while f"data_batch_{n + 1}" in files:
        n += 1
    later = [
        f for f in files if f[:11] == "data_batch_" and f[11:].isdigit() and int(f[11:]) > n + 1
    ]
    missing = None
    if n == 0:
        missing = "data_batch_1"
    elif later:
        missing = f"data_batch_{n + 1}"
    elif "test_batch" not in files:
        missing = "test_batch"
    if missing:
        raise DataNotFoundError(
            f"python-batch layout is incomplete: {missing} is missing in {tree.path(d)}.", shown
        )
    classes = CIFAR10_CLASSES
    if "batches.meta" in files:
        meta = unpickle_batch(
            tree.read(_join(d, "batches.meta")), tree.path(_join(d, "batches.meta"))
        )
        names = meta.get("label_names")
        if names:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    parts = [
        batch_arrays(tree.read(_join(d, f)), tree.path(_join(d, f)), len(classes))
        for f in [f"data_batch_{i}" for i in range(1, n + 1)] + ["test_batch"]
    ]
    return CIFARImages(
        X_train=np.concatenate([p[0] for p in parts[:-1]]),
        y_train=np.concatenate([p[1] for p in parts[:-1]]),
        X_test=np.ascontiguousarray(parts[-1][0]),
        y_test=parts[-1][1],
        classes=classes,
        layout="batches",
        source=str(shown),
    )


# ----------------------------------------------------------------------------------------------
# ImageFolder trees
# ----------------------------------------------------------------------------------------------


def _folder_items(tree, d: str, shown) -> tuple[dict, tuple]:
    """{"train": [(relative path, label)], "test": [...]} in file order, and the class names."""
    classes = tuple(tree.listing(_join(d, "train"))[0])
    if not classes:
        raise DataNotFoundError(f"{tree.path(_join(d, 'train'))} has no class folders.", shown)
    extra = sorted(set(tree.listing(_join(d, "test"))[0]) - set(classes))
    if extra:
        raise DataError(f"test/ has class folders that train/ lacks: {extra}.", shown)
    items = {}
    for split in ("train", "test"):
        items[split] = [
            (_join(d, split, cls, f), label)
            for label, cls in enumerate(classes)
            for f in tree.listing(_join(d, split, cls))[1]
            if f.lower().endswith(IMAGE_EXTENSIONS)
        ]
        if not items[split]:
            raise DataNotFoundError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under "
                f"{tree.path(_join(d, split))}/<class>/.",
                shown,
            )
    return items, classes


def _files_fingerprint(tree: _DirectoryTree, split_items: dict) -> dict:
    """Every image's relative path, label, size and modification time, hashed."""
    h = hashlib.sha256()
    for split in ("train", "test"):
        for rel, label in split_items[split]:
            st = tree.stat(rel)
            h.update(f"{rel}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"images": {s: len(v) for s, v in split_items.items()}, "sha256": h.hexdigest()}


def _pillow():
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError(
            "decoding an ImageFolder tree needs Pillow (pip install pillow); the official "
            "CIFAR-10 python batches need NumPy only"
        ) from e
    return Image


def decode_images(tree, rels: list, shown) -> np.ndarray:
    """The images at ``rels`` in ``tree`` as one uint8 array (N, H, W, 3) (RGB). Raises
    DataError naming the file for an undecodable image or one whose size differs from the
    first's."""
    Image = _pillow()

    def decode(rel):
        try:
            with Image.open(io.BytesIO(tree.read(rel))) as im:
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except Exception as e:  # Pillow reports bad data with many exception types
            raise DataError(
                f"cannot decode image {tree.path(rel)} (corrupted or truncated?): {e}", shown
            ) from e

    first = decode(rels[0])
    X = np.empty((len(rels),) + first.shape, dtype=np.uint8)
    X[0] = first

    def put(i):
        image = decode(rels[i])
        if image.shape != first.shape:
            raise DataError(
                f"images must all have one size: {tree.path(rels[i])} is "
                f"{image.shape[1]}x{image.shape[0]}, {tree.path(rels[0])} is "
                f"{first.shape[1]}x{first.shape[0]}.",
                shown,
            )
        X[i] = image

    # Pillow releases the GIL while decoding, so threads overlap the work.
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        for _ in pool.map(put, range(1, len(rels)), chunksize=256):
            pass
    finally:  # after a bad image, stop rather than decode the rest
        pool.shutdown(cancel_futures=True)
    return X


def _decode_folder(tree, split_items: dict, classes: tuple, shown) -> CIFARImages:
    X = {s: decode_images(tree, [rel for rel, _ in split_items[s]], shown) for s in split_items}
    y = {s: np.array([lab for _, lab in split_items[s]], dtype=np.int64) for s in split_items}
    if X["train"].shape[1:] != X["test"].shape[1:]:
        raise DataError(
            f"train images are {X['train'].shape[1:]} but test images are {X['test'].shape[1:]}.",
            shown,
        )
    return CIFARImages(X["train"], y["train"], X["test"], y["test"], classes, "folder", str(shown))


# ----------------------------------------------------------------------------------------------
# The decoded-image cache
# ----------------------------------------------------------------------------------------------


def cache_file(source, cache_dir=None) -> str:
    """Where the decoded images of ``source`` are cached: one file per source path."""
    key = hashlib.sha256(os.path.abspath(os.fspath(source)).encode()).hexdigest()[:16]
    return os.path.join(cache_dir or default_cache_dir(), f"cifar10-{key}.npz")


def _through_cache(shown, fingerprint, decode, cache, cache_dir, log) -> CIFARImages:
    """The cached images of ``shown`` if the cache matches ``fingerprint``, else ``decode()``'s,
    which then replace the cache file."""
    path = cache_file(shown, cache_dir)
    meta = {"format": _CACHE_FORMAT, "source": os.path.abspath(shown), "fingerprint": fingerprint}
    images = _read_cache(path, meta, shown) if cache else None
    if images is not None:
        return images
    what = f"reading {shown} and decoding" if os.path.isfile(shown) else "decoding"
    later = f"later runs read {os.path.dirname(path)}" if cache else "not cached"
    _say(log, f"{what} the images into arrays (once; {later}) ...")
    t0 = time.perf_counter()
    images = decode()
    _say(
        log,
        f"decoded {len(images.y_train)} training and {len(images.y_test)} test images in "
        f"{time.perf_counter() - t0:.1f} s",
    )
    if not cache:
        return images
    meta.update(classes=list(images.classes), layout=images.layout)
    try:
        atomic_savez(
            path,
            X_train=images.X_train,
            y_train=images.y_train,
            X_test=images.X_test,
            y_test=images.y_test,
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        )
    except OSError as e:
        warnings.warn(f"could not write the cache {path}: {e}", stacklevel=3)
    return images


def _read_cache(path, meta, shown) -> CIFARImages | None:
    """The cached images if ``path`` holds those of this exact source, else None."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = json.loads(z["meta"].tobytes().decode())
            if {k: stored.get(k) for k in meta} != meta:
                return None  # the source changed: decode again, then replace this file
            X_train, y_train, X_test, y_test = (
                z[k] for k in ("X_train", "y_train", "X_test", "y_test")
            )
            classes, layout = tuple(stored["classes"]), str(stored["layout"])
    except Exception as e:  # noqa: BLE001 -- a damaged cache file is rebuilt, never trusted
        warnings.warn(f"ignoring unreadable cache {path} ({e}); decoding again", stacklevel=4)
        return None
    ok = (
        X_train.dtype == X_test.dtype == np.uint8
        and X_train.ndim == X_test.ndim == 4
        and y_train.shape == (len(X_train),)
        and y_test.shape == (len(X_test),)
    )
    return (
        CIFARImages(X_train, y_train, X_test, y_test, classes, layout, str(shown)) if ok else None
    )


# ----------------------------------------------------------------------------------------------
# Atomic writes
# ----------------------------------------------------------------------------------------------


def make_readable(path) -> None:
    """mkstemp creates files 0600; give the final file the usual 0666 minus the umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write(path, write) -> None:
    """Call ``write(f)`` on a temporary file in ``path``'s folder, flush it to disk and rename it
    to ``path``: a reader sees the old file or the whole new one, never a part."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{os.path.basename(path)}-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        make_readable(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path, data) -> None:
    """Write ``data`` (bytes-like) to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data))


def atomic_savez(path, **arrays) -> None:
    """``np.savez(path, **arrays)``, atomically."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


# ----------------------------------------------------------------------------------------------
# Download
# ----------------------------------------------------------------------------------------------


def _fetch(url: str, f) -> None:
    with urllib.request.urlopen(url, timeout=60) as response:
        shutil.copyfileobj(response, f, 1 << 20)


def _md5(path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_cifar10(root, url=CIFAR10_URL, md5=CIFAR10_MD5, log=None) -> str:
    """Download the official python batches into ``root/cifar-10-batches-py``; return that folder.

    The archive (163 MB) goes to a temporary file, is checked against its MD5 sum and renamed to
    ``root/<archive name>``; it is then unpacked into a temporary folder with tarfile's "data"
    filter (no absolute paths, links or members outside it), whose ``cifar-10-batches-py`` is
    renamed into place. Work already done (the folder, a verified archive) is not repeated.
    Raises DataError for a wrong checksum or a damaged archive; network errors pass through.
    """
    root = os.fspath(root)
    target = os.path.join(root, "cifar-10-batches-py")
    if os.path.isfile(os.path.join(target, "test_batch")):
        return target
    os.makedirs(root, exist_ok=True)
    archive = os.path.join(root, posixpath.basename(url) or "cifar-10-python.tar.gz")
    if not (os.path.isfile(archive) and (md5 is None or _md5(archive) == md5)):
        _say(log, f"downloading {url} into {root} ...")
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp_", suffix=".tar.gz")
        try:
            with os.fdopen(fd, "wb") as f:
                _fetch(url, f)
            got = _md5(tmp)
            if md5 is not None and got != md5:
                raise DataError(f"{url}: MD5 {got} does not match the expected {md5}.", archive)
            make_readable(tmp)
            os.replace(tmp, archive)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    unpacked = tempfile.mkdtemp(dir=root, prefix=".tmp_")
    try:
        _extract(archive, unpacked)
        if not os.path.isfile(os.path.join(unpacked, "cifar-10-batches-py", "test_batch")):
            raise DataError("the archive holds no cifar-10-batches-py/test_batch.", archive)
        if os.path.isdir(target):  # an incomplete earlier copy
            shutil.rmtree(target)
        os.replace(os.path.join(unpacked, "cifar-10-batches-py"), target)
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
    return target


def _extract(archive: str, dest: str) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # Python without extraction filters: check every member ourselves
                for m in tar.getmembers():
                    if _member_name(m.name) is None or not (m.isfile() or m.isdir()):
                        raise DataError(f"unsafe archive member {m.name!r}.", archive)
                tar.extractall(dest)  # noqa: S202 - every member checked above
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"corrupted, truncated or unsafe archive: {e}", archive) from e
