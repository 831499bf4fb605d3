"""CIFAR-10 for the training package, over the one loader ``numpy_impl.cifar10_loader``.

That loader finds, reads, decodes and caches CIFAR-10 in any accepted layout (``LAYOUTS``: the
official python batches, an ImageFolder tree, or a ``.tar.gz``/``.tgz``/``.tar`` of either) as
uint8 ``(N, H, W, 3)`` arrays; the course's ``numpy_impl.data.load_CIFAR10`` reads through it
too, so both see identical images. Here they become

- ``CifarArrays``: channels-first ``(N, 3, H, W)`` uint8 arrays, what the data module turns into
  tensors (``load_cifar``);
- ``CIFAR10``: ``torchvision.datasets.CIFAR10``'s interface (``data``, ``targets``, ``classes``,
  PIL images through ``transform``) over the same arrays, for code written against torchvision.

Errors are ``DataError`` naming the path and the accepted layouts, with what to do on the command
line (``--download``, or a local copy when offline).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numpy_impl import cifar10_loader as loader
from numpy_impl.cifar10_loader import (  # noqa: F401 - the package's names for these
    ARCHIVE_SUFFIXES,
    CIFAR10_CLASSES,
    IMAGE_EXTENSIONS,
    LAYOUTS,
    DataError,
    DataNotFoundError,
    atomic_write_bytes,
    make_readable,
)

DOWNLOAD_HINT = "Use --download to fetch the official batches (163 MB, needs internet)."
OFFLINE_HINT = (
    "Without internet, point --data-dir at a local copy in one of the accepted layouts (and "
    "leave out --download)."
)


def data_error(path, problem: str, hint: str = DOWNLOAD_HINT) -> DataError:
    return DataError(problem, path, hint)


def _say(log, message: str) -> None:
    if log is not None:
        log(message)


def default_cache_dir() -> Path:
    """$NN_TWINS_CACHE, else $XDG_CACHE_HOME/nn-twins, else ~/.cache/nn-twins."""
    return Path(loader.default_cache_dir())


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


def load_cifar(data_dir, cache_dir=None, use_cache: bool = True, log=None) -> CifarArrays:
    """Decoded CIFAR-10 from ``data_dir`` (any accepted layout), through the decoded-image cache.

    ``log``: a callable taking one line of text (e.g. ``print``), told when the slow first-time
    decoding starts. Raises DataError naming the path and the accepted layouts when nothing
    usable is found.
    """
    d = loader.read_cifar10(
        data_dir, cache=use_cache, cache_dir=cache_dir, log=log, hint=DOWNLOAD_HINT
    )
    return CifarArrays(
        x_train=np.ascontiguousarray(d.X_train.transpose(0, 3, 1, 2)),
        y_train=d.y_train,
        x_test=np.ascontiguousarray(d.X_test.transpose(0, 3, 1, 2)),
        y_test=d.y_test,
        classes=list(d.classes),
        source=d.source,
    )


def holds_cifar(data_dir) -> bool:
    """Whether ``data_dir`` already holds data in an accepted layout (an archive file counts;
    nothing is decoded)."""
    src = Path(data_dir).expanduser()
    if src.is_file():
        return src.name.endswith(ARCHIVE_SUFFIXES)
    if not src.is_dir():
        return False
    try:
        loader.find_layout(src)
    except DataError:
        return False
    return True


def download_cifar10(root, log=None) -> Path:
    """Fetch the official python batches into the folder ``root``; return the folder that holds
    them. Data already at ``root`` (any accepted layout, or an archive file) is used as it is:
    nothing is downloaded."""
    root = Path(root).expanduser()
    if holds_cifar(root):
        _say(log, f"--download: {root} already holds CIFAR-10; using it (nothing downloaded)")
        return root
    if root.name.endswith(ARCHIVE_SUFFIXES) or root.is_file():
        raise DataError(
            "--download saves the official batches into a folder, but --data-dir names a file "
            "(or an archive that does not exist).",
            root,
            hint="Give --download a folder, e.g. --data-dir data, or point --data-dir at an "
            "existing copy without --download.",
        )
    _say(log, f"--download: fetching CIFAR-10's python batches (163 MB) into {root} ...")
    try:
        return Path(loader.download_cifar10(root))
    except Exception as e:  # network errors come in many types; say what happened and where
        raise DataError(
            f"downloading CIFAR-10 failed ({type(e).__name__}: {e}).", root, hint=OFFLINE_HINT
        ) from e


class CIFAR10:
    """``torchvision.datasets.CIFAR10``'s interface over any accepted layout (the official
    batches, the JPEG ImageFolder copy, an archive), read through the shared loader.

    ``data``: (N, H, W, 3) uint8; ``targets``: list of int; ``classes``, ``class_to_idx``; item i
    is ``(transform(PIL image), target_transform(label))``. ``download`` fetches the official
    batches into ``root`` first unless it holds data; ``cache_dir``: the decoded-image cache.
    Works with ``torch.utils.data.DataLoader`` like any map-style dataset.
    """

    def __init__(
        self,
        root,
        train=True,
        transform=None,
        target_transform=None,
        download=False,
        cache_dir=None,
    ):
        if download:
            root = download_cifar10(root)
        d = loader.read_cifar10(root, cache_dir=cache_dir, hint=DOWNLOAD_HINT)
        self.root, self.train = str(root), bool(train)
        self.transform, self.target_transform = transform, target_transform
        self.data = d.X_train if train else d.X_test
        self.targets = (d.y_train if train else d.y_test).tolist()
        self.classes = list(d.classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        from PIL import Image

        img, target = Image.fromarray(self.data[index]), self.targets[index]
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target
