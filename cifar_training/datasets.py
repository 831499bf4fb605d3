"""Find, decode and cache CIFAR-10 as uint8 arrays.

Three on-disk layouts are accepted (``LAYOUTS`` below is the text every error shows):

1. CIFAR-10's official python batches (``data_batch_1`` ... ``data_batch_5``, ``test_batch``,
   optional ``batches.meta``), the directory itself or one holding ``cifar-10-batches-py/``;
2. an ImageFolder tree ``train/<class>/*.jpg|png|...`` and ``test/<class>/*`` (class folders
   sorted by name give the label order, as in ``torchvision.datasets.ImageFolder``);
3. a ``.tar.gz``/``.tgz``/``.tar`` archive of either, extracted once into the cache directory.

Whatever the source, the images are decoded once into uint8 arrays ``(N, 3, H, W)`` and cached
as an ``.npz`` file (read back with ``allow_pickle=False``) keyed by the source's path, sizes
and modification times, so later runs start in a fraction of a second. The official batches are
pickles: they are read with an unpickler that accepts only the NumPy array constructors, so a
tampered batch cannot run code. Every write is atomic (temporary file + ``os.replace``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LAYOUTS = """accepted layouts:
  1. CIFAR-10 python batches: a directory holding data_batch_1 ... data_batch_5 and test_batch
     (the cifar-10-batches-py/ folder of cifar-10-python.tar.gz, or its parent directory);
  2. an ImageFolder tree: train/<class>/<image> and test/<class>/<image> (jpg, png, ...), with
     the same class folders in both;
  3. a .tar.gz, .tgz or .tar archive holding either of the above (extracted once into the
     cache directory)."""
DOWNLOAD_HINT = "Use --download to fetch the official batches with torchvision (needs internet)."
OFFLINE_HINT = (
    "Without internet, point --data-dir at a local copy in one of the accepted layouts (and "
    "leave out --download)."
)

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
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_CACHE_FORMAT = 1


class DataError(Exception):
    """The dataset is missing, unreadable or in no accepted layout (the message says which)."""


def data_error(path, problem: str, hint: str = DOWNLOAD_HINT) -> DataError:
    return DataError(f"{problem}\n  path: {path}\n{LAYOUTS}\n{hint}")


def _say(log, message: str) -> None:
    if log is not None:
        log(message)


@dataclass
class CifarArrays:
    """Decoded dataset. x_*: (N, 3, H, W) uint8; y_*: (N,) int64; classes: label names."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list
    source: str

    @property
    def image_shape(self) -> tuple:
        return tuple(int(s) for s in self.x_train.shape[1:])


def default_cache_dir() -> Path:
    """$NN_TWINS_CACHE, else $XDG_CACHE_HOME/nn-twins, else ~/.cache/nn-twins."""
    if os.environ.get("NN_TWINS_CACHE"):
        return Path(os.environ["NN_TWINS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nn-twins"


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def load_cifar(data_dir, cache_dir=None, use_cache: bool = True, log=None) -> CifarArrays:
    """Decoded CIFAR-10 from ``data_dir`` (any accepted layout), through the decoded-array cache.

    ``log``: a callable taking one line of text (e.g. ``print``), told when the slow first-time
    work starts (extracting an archive, decoding the images), which can take half a minute.
    Raises DataError naming the path and the accepted layouts when nothing usable is found.
    """
    src = Path(data_dir).expanduser()
    if not src.exists():
        raise data_error(src, "data not found: the path does not exist.")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _source_key(src)
    npz_path = cache / f"cifar-decoded-{key}.npz"
    if use_cache and npz_path.is_file():
        arrays = _read_npz(npz_path)
        if arrays is not None:
            return arrays
    root = src
    if src.is_file():
        if not src.name.endswith(ARCHIVE_SUFFIXES):
            raise data_error(src, "data path is a file but not a .tar.gz/.tgz/.tar archive.")
        if not (cache / f"extracted-{key}").is_dir():
            _say(log, f"extracting {src} into {cache} (once; later runs reuse it) ...")
        root = extract_archive(src, cache, key)
    _say(log, f"decoding the images of {src} into arrays (once; cached in {cache}) ...")
    t0 = time.perf_counter()
    arrays = decode_tree(root, shown_path=src)
    _say(
        log,
        f"decoded {len(arrays.x_train)} training and {len(arrays.x_test)} test images in "
        f"{time.perf_counter() - t0:.1f} s",
    )
    if use_cache:
        _write_npz(npz_path, arrays)
    return arrays


def holds_cifar(data_dir) -> bool:
    """Whether ``data_dir`` already holds data in an accepted layout (an archive file counts;
    nothing is decoded)."""
    src = Path(data_dir).expanduser()
    if src.is_file():
        return src.name.endswith(ARCHIVE_SUFFIXES)
    if not src.is_dir():
        return False
    try:
        find_layout(src)
    except DataError:
        return False
    return True


def decode_tree(root: Path, shown_path=None) -> CifarArrays:
    """Decode whichever layout ``root`` (or a folder up to two levels below it) holds."""
    shown = shown_path or root
    kind, where = find_layout(root, shown)
    if kind == "batches":
        return read_python_batches(where, shown)
    return read_image_folder(where, shown)


def _layout_at(d: Path):
    if (d / "data_batch_1").is_file() or (d / "test_batch").is_file():
        return "batches"
    if (d / "train").is_dir() and (d / "test").is_dir():
        return "folder"
    return None


def find_layout(root: Path, shown_path=None) -> tuple[str, Path]:
    """("batches", dir) or ("folder", dir): the first layout at root or up to 2 levels below."""
    shown = shown_path or root
    if not root.is_dir():
        raise data_error(shown, "data path is not a directory or archive.")
    level = [root]
    for depth in range(3):
        for d in level:
            kind = _layout_at(d)
            if kind:
                return kind, d
        if depth < 2:
            try:
                level = [c for d in level for c in sorted(d.iterdir()) if c.is_dir()]
            except OSError as e:
                raise data_error(shown, f"cannot list the data directory ({e}).") from e
    hint = ""
    if (root / "train").is_dir():
        hint = " (train/ exists but test/ is missing)"
    raise data_error(
        shown, f"no CIFAR-10 data found: neither python batches nor train/ + test/{hint}."
    )


# ----------------------------------------------------------------------------------------------
# Official python batches
# ----------------------------------------------------------------------------------------------


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR's batches: NumPy's array reconstruction and nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _unpickle_batch(path: Path, shown) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _BatchUnpickler(f, encoding="latin1").load()
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        ImportError,
        IndexError,
        KeyError,
    ) as e:
        raise data_error(shown, f"cannot read CIFAR batch {path.name}: {e}") from e
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        raise data_error(shown, f"CIFAR batch {path.name} holds a {kind}, not a dict.")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _batch_arrays(path: Path, shown) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle_batch(path, shown)
    labels = d.get("labels", d.get("fine_labels"))
    data = d.get("data")
    if data is None or labels is None:
        raise data_error(
            shown, f"CIFAR batch {path.name} lacks 'data' or 'labels' (has {sorted(d)})."
        )
    data = np.asarray(data)
    y = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise data_error(
            shown,
            f"CIFAR batch {path.name}: 'data' must be uint8 (N, 3072), got "
            f"{data.dtype} {data.shape}.",
        )
    if y.shape != (data.shape[0],):
        raise data_error(
            shown, f"CIFAR batch {path.name}: {data.shape[0]} images but {y.shape[0]} labels."
        )
    return data.reshape(-1, 3, 32, 32), y


def read_python_batches(d: Path, shown=None) -> CifarArrays:
    """Official layout: rows of 3072 bytes (1024 red, 1024 green, 1024 blue, row-major)."""
    shown = shown or d
    train_files = []
    i = 1
    while (d / f"data_batch_{i}").is_file():
        train_files.append(d / f"data_batch_{i}")
        i += 1
    if not train_files or not (d / "test_batch").is_file():
        missing = "data_batch_1" if not train_files else "test_batch"
        raise data_error(shown, f"python-batch layout is incomplete: {missing} is missing in {d}.")
    parts = [_batch_arrays(p, shown) for p in train_files]
    x_test, y_test = _batch_arrays(d / "test_batch", shown)
    classes = list(CIFAR10_CLASSES)
    if (d / "batches.meta").is_file():
        meta = _unpickle_batch(d / "batches.meta", shown)
        names = meta.get("label_names")
        if names:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    arrays = CifarArrays(
        x_train=np.ascontiguousarray(np.concatenate([p[0] for p in parts])),
        y_train=np.concatenate([p[1] for p in parts]),
        x_test=np.ascontiguousarray(x_test),
        y_test=y_test,
        classes=classes,
        source=str(shown),
    )
    _check_labels(arrays, shown)
    return arrays


# ----------------------------------------------------------------------------------------------
# ImageFolder tree
# ----------------------------------------------------------------------------------------------


def _class_dirs(split_dir: Path) -> list[Path]:
    return sorted((p for p in split_dir.iterdir() if p.is_dir()), key=lambda p: p.name)


def _image_files(class_dir: Path) -> list[Path]:
    return sorted(
        p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _decode_split(split_dir: Path, classes: list, shown) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    files, labels = [], []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        found = _image_files(class_dir) if class_dir.is_dir() else []
        files.extend(found)
        labels.extend([label] * len(found))
    if not files:
        raise data_error(shown, f"no images found under {split_dir}/<class>/.")
    x = None
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                a = np.asarray(im.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise data_error(shown, f"cannot decode image {f}: {e}") from e
        if x is None:
            x = np.empty((len(files),) + a.shape, dtype=np.uint8)
        if a.shape != x.shape[1:]:
            raise data_error(
                shown,
                f"images must all have one size: {f} is {a.shape[1]}x{a.shape[0]}, "
                f"{files[0]} is {x.shape[2]}x{x.shape[1]}.",
            )
        x[i] = a
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x, np.asarray(labels, dtype=np.int64)


def read_image_folder(root: Path, shown=None) -> CifarArrays:
    """train/<class>/* and test/<class>/*; labels follow the sorted class-folder names.

    Files are read in sorted order, so the arrays come grouped by class: callers must shuffle
    before taking any first-N split (the data module does, with a fixed seed).
    """
    shown = shown or root
    classes = [p.name for p in _class_dirs(root / "train")]
    if not classes:
        raise data_error(shown, f"{root / 'train'} has no class folders.")
    test_classes = [p.name for p in _class_dirs(root / "test")]
    extra = sorted(set(test_classes) - set(classes))
    if extra:
        raise data_error(shown, f"test/ has class folders that train/ lacks: {extra}.")
    x_train, y_train = _decode_split(root / "train", classes, shown)
    x_test, y_test = _decode_split(root / "test", classes, shown)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise data_error(
            shown, f"train images are {x_train.shape[1:]} but test images are {x_test.shape[1:]}."
        )
    return CifarArrays(x_train, y_train, x_test, y_test, classes, str(shown))


def _check_labels(arrays: CifarArrays, shown) -> None:
    C = len(arrays.classes)
    for name, y in (("train", arrays.y_train), ("test", arrays.y_test)):
        if y.size and (y.min() < 0 or y.max() >= C):
            raise data_error(
                shown, f"{name} labels must lie in [0, {C}), got [{y.min()}, {y.max()}]."
            )


# ----------------------------------------------------------------------------------------------
# Archives and the cache
# ----------------------------------------------------------------------------------------------


def _source_key(src: Path) -> str:
    """Hash of the source's path plus the sizes/mtimes that change when its content does.

    For a folder: every subfolder's mtime (which changes when files are added, removed or
    renamed in it) and the batch files' sizes and mtimes. Images edited in place keep their
    folder's mtime: delete the cache directory after doing that.
    """
    src = src.resolve()
    parts = [str(_CACHE_FORMAT), str(src)]
    try:
        if src.is_file():
            st = src.stat()
            parts += [str(st.st_size), str(st.st_mtime_ns)]
        else:
            parts += _folder_signature(src, src)
    except OSError as e:
        raise data_error(src, f"cannot read the data path ({e}).") from e
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def _folder_signature(d: Path, top: Path) -> list:
    st = d.stat()
    parts = [str(d.relative_to(top)), str(st.st_mtime_ns)]
    with os.scandir(d) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if e.is_dir():
            parts += _folder_signature(Path(e.path), top)
        elif e.name.startswith("data_batch") or e.name in ("test_batch", "batches.meta"):
            est = e.stat()
            parts += [e.name, str(est.st_size), str(est.st_mtime_ns)]
    return parts


def _member_is_safe(member: tarfile.TarInfo) -> bool:
    name = member.name
    if name.startswith(("/", "\\")) or ".." in Path(name).parts:
        return False
    return member.isfile() or member.isdir()


def extract_archive(path: Path, cache: Path, key: str) -> Path:
    """Extract ``path`` once into ``cache/extracted-<key>``; return that directory.

    Only regular files and folders with relative names are extracted (no links, no ``..``).
    Extraction goes to a temporary folder that is renamed into place when complete, so an
    interrupted extraction is never mistaken for a finished one.
    """
    dest = cache / f"extracted-{key}"
    if dest.is_dir():
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache))
    try:
        with tarfile.open(path, "r:*") as tar:
            members = [m for m in tar.getmembers() if _member_is_safe(m)]
            if not any(m.isfile() for m in members):
                raise data_error(path, "the archive holds no regular files.")
            for m in members:
                tar.extract(m, tmp, set_attrs=False, **_extract_filter())
        try:
            os.replace(tmp, dest)
        except OSError:
            if not dest.is_dir():  # another process finished first: use its copy
                raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise data_error(path, f"cannot extract the archive ({type(e).__name__}: {e}).") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _extract_filter() -> dict:
    # Python >= 3.12 (and patched 3.10/3.11) take a filter; "data" refuses anything unsafe.
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def atomic_write_bytes(path, data) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, flushed to disk
    and renamed into place: a reader sees the old file or the whole new one, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        make_readable(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def make_readable(path) -> None:
    """mkstemp creates files 0600; give the final file the usual 0644 (minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _write_npz(path: Path, a: CifarArrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(
        buf,
        x_train=a.x_train,
        y_train=a.y_train,
        x_test=a.x_test,
        y_test=a.y_test,
        meta=np.frombuffer(
            json.dumps({"classes": a.classes, "source": a.source}).encode(), dtype=np.uint8
        ),
    )
    atomic_write_bytes(path, buf.getbuffer())


def _read_npz(path: Path):
    """The cached arrays, or None (then the caller decodes again) if the file is unusable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            a = CifarArrays(
                z["x_train"],
                z["y_train"],
                z["x_test"],
                z["y_test"],
                list(meta["classes"]),
                str(meta["source"]),
            )
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    ok = (
        a.x_train.dtype == np.uint8
        and a.x_train.ndim == 4
        and a.x_test.ndim == 4
        and a.y_train.shape == (a.x_train.shape[0],)
        and a.y_test.shape == (a.x_test.shape[0],)
    )
    return a if ok else None


def download_cifar10(root, log=None) -> Path:
    """Fetch the official python batches into the folder ``root`` with torchvision; return the
    folder that holds them. Data already at ``root`` (any accepted layout, or an archive file)
    is used as it is: nothing is downloaded."""
    root = Path(root).expanduser()
    if holds_cifar(root):
        _say(log, f"--download: {root} already holds CIFAR-10; using it (nothing downloaded)")
        return root
    if root.name.endswith(ARCHIVE_SUFFIXES) or root.is_file():
        raise data_error(
            root,
            "--download saves the official batches into a folder, but "
            "--data-dir names a file (or an archive that does not exist).",
            hint="Give --download a folder, e.g. --data-dir data, or point "
            "--data-dir at an existing copy without --download.",
        )
    from torchvision.datasets import CIFAR10

    _say(log, f"--download: fetching CIFAR-10's python batches (163 MB) into {root} ...")
    try:
        root.mkdir(parents=True, exist_ok=True)
        CIFAR10(str(root), train=True, download=True)
    except Exception as e:  # network errors come in many types; say what happened and where
        raise data_error(
            root, f"downloading CIFAR-10 failed ({type(e).__name__}: {e}).", hint=OFFLINE_HINT
        ) from e
    return root / "cifar-10-batches-py"
