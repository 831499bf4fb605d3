"""The GAN notebook's training images: (N, 1, 28, 28) float in [0, 1] with a label.

- ``mnist_train(data_dir, download)``: torchvision's MNIST training set (``transforms.ToTensor()``),
  as the course loads it; ``download=True`` fetches it (needs internet).
- ``cifar10_gray(data_dir)``: CIFAR-10's training images (any layout that
  ``cifar_training.datasets.load_cifar`` reads) as 28x28 grayscale -- ITU-R 601 luma, then an
  antialiased bilinear resize from 32x32 -- for machines without MNIST. The images are shuffled
  once with ``np.random.RandomState(0)`` before the first ``num_train`` are taken: an ImageFolder
  copy is stored class by class.
- ``loader_train(dataset, batch_size, num_train)``: the course's loader, the first ``num_train``
  images in order (its ``ChunkSampler``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cifar_training.datasets import load_cifar
from twin_checks import require_int_param

__all__ = [
    "DATASETS",
    "NUM_TRAIN",
    "ChunkSampler",
    "GrayImages",
    "mnist_train",
    "cifar10_gray",
    "to_gray28",
    "load_dataset",
    "loader_train",
]

DATASETS = ("mnist", "cifar10-gray")
NUM_TRAIN = 50000  # the course's NUM_TRAIN
_CHUNK = 4096  # images converted at a time (bounds the float copy's memory)


class ChunkSampler(Sampler):
    """Indices start, start + 1, ..., start + num_samples - 1, in order (the course's)."""

    def __init__(self, num_samples: int, start: int = 0):
        self.num_samples = require_int_param("num_samples", num_samples, 0)
        self.start = require_int_param("start", start, 0)

    def __iter__(self):
        return iter(range(self.start, self.start + self.num_samples))

    def __len__(self) -> int:
        return self.num_samples


class GrayImages(Dataset):
    """images: (N, 28, 28) uint8; labels: (N,) int64. Item i: ((1, 28, 28) float in [0, 1],
    label) like ``MNIST(transform=ToTensor())``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.ndim != 3 or images.dtype != torch.uint8:
            raise ValueError(
                f"images must be (N, H, W) uint8, got {tuple(images.shape)} {images.dtype}"
            )
        if labels.shape != images.shape[:1]:
            raise ValueError(
                f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}"
            )
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i].unsqueeze(0).float() / 255, int(self.labels[i])


def to_gray28(images_uint8: np.ndarray) -> torch.Tensor:
    """(N, 3, H, W) uint8 RGB -> (N, 28, 28) uint8 gray (ITU-R 601 luma, antialiased bilinear
    resize), converted in chunks so that the float copy stays small."""
    from torchvision.transforms import functional as TF

    if images_uint8.ndim != 4 or images_uint8.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W) RGB, got shape {images_uint8.shape}")
    out = torch.empty(images_uint8.shape[0], 28, 28, dtype=torch.uint8)
    for a in range(0, images_uint8.shape[0], _CHUNK):
        rgb = torch.from_numpy(np.ascontiguousarray(images_uint8[a : a + _CHUNK])).float() / 255
        gray = TF.rgb_to_grayscale(rgb)  # 0.299 R + 0.587 G + 0.114 B
        small = TF.resize(gray, [28, 28], antialias=True)
        out[a : a + _CHUNK] = (small[:, 0] * 255).round().clamp(0, 255).to(torch.uint8)
    return out


def cifar10_gray(data_dir, num_train: int = NUM_TRAIN, log=None) -> GrayImages:
    """The first num_train of CIFAR-10's training images after a fixed shuffle (seed 0), as
    28x28 grayscale."""
    arrays = load_cifar(data_dir, log=log)
    n = arrays.x_train.shape[0]
    num_train = require_int_param("num_train", num_train, 1)
    if num_train > n:
        raise ValueError(f"num_train must be <= {n} (the training images), got {num_train}")
    order = np.random.RandomState(0).permutation(n)[:num_train]
    images = to_gray28(arrays.x_train[order])
    return GrayImages(images, torch.from_numpy(arrays.y_train[order].astype(np.int64)))


class MnistNotFoundError(FileNotFoundError):
    """MNIST is not under the data directory (and was not downloaded); the message says how."""


def mnist_train(data_dir, download: bool = False):
    """torchvision's MNIST training set under data_dir (``data_dir/MNIST/raw``), images as
    (1, 28, 28) floats in [0, 1]."""
    import torchvision.datasets as dset
    import torchvision.transforms as T

    root = Path(data_dir).expanduser()
    try:
        return dset.MNIST(str(root), train=True, download=download, transform=T.ToTensor())
    except RuntimeError as e:  # torchvision: "Dataset not found. You can use download=True ..."
        hint = "" if download else " Pass --download to fetch it (needs internet)."
        raise MnistNotFoundError(f"MNIST not found under {root} ({e}).{hint}") from e


def load_dataset(name: str, data_dir, num_train: int = NUM_TRAIN, download=False, log=None):
    """'mnist' or 'cifar10-gray' (see the module docstring)."""
    if name == "mnist":
        return mnist_train(data_dir, download=download)
    if name == "cifar10-gray":
        return cifar10_gray(data_dir, num_train=num_train, log=log)
    raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")


def loader_train(dataset, batch_size: int = 128, num_train: int = NUM_TRAIN) -> DataLoader:
    """The course's loader: batches of the first num_train images, in order."""
    batch_size = require_int_param("batch_size", batch_size, 1)
    num_train = require_int_param("num_train", num_train, 1)
    if num_train > len(dataset):
        raise ValueError(
            f"num_train must be <= {len(dataset)} (the dataset's size), got {num_train}"
        )
    return DataLoader(dataset, batch_size=batch_size, sampler=ChunkSampler(num_train, 0))
