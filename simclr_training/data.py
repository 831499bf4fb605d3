"""SimCLR's augmentation and the paired-view dataset (the course's ``simclr/data_utils.py``).

Images are (N, 32, 32, 3) uint8 arrays, torchvision's ``CIFAR10.data`` layout; the CIFAR
training's data layer (``cifar_training.datasets.load_cifar``) reads them from any accepted
layout (python batches, an ImageFolder tree, an archive), and ``download_cifar10`` fetches the
official batches with torchvision.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset

from cifar_training.datasets import CifarArrays, download_cifar10, load_cifar

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "compute_train_transform",
    "compute_test_transform",
    "CIFAR10Pair",
    "CIFAR10Images",
    "load_cifar10",
    "hwc",
]

# The course's normalization constants (its Normalize(mean, std) for CIFAR-10).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


def compute_train_transform(seed=123456):
    """The course's augmentation of one PIL image: RandomResizedCrop(32), horizontal flip
    (p = 0.5), color jitter (brightness, contrast, saturation 0.4, hue 0.1) with p = 0.8,
    grayscale with p = 0.2, ToTensor, Normalize(CIFAR_MEAN, CIFAR_STD).

    seed: seeds Python's ``random`` and torch's global generator first, as the course does
    (torchvision's random transforms draw from torch's generator)."""
    from torchvision import transforms

    random.seed(seed)
    torch.random.manual_seed(seed)
    color_jitter = transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(32),
            transforms.RandomHorizontalFlip(p=0.5),
            transforms.RandomApply([color_jitter], p=0.8),
            transforms.RandomGrayscale(p=0.2),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR_MEAN, CIFAR_STD),
        ]
    )


def compute_test_transform():
    """ToTensor and Normalize(CIFAR_MEAN, CIFAR_STD): no augmentation."""
    from torchvision import transforms

    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)])


def _check_images(data, targets) -> None:
    if not isinstance(data, np.ndarray) or data.ndim != 4 or data.shape[3] != 3:
        shape = getattr(data, "shape", type(data).__name__)
        raise ValueError(f"data must be an (N, H, W, 3) array of RGB images, got {shape}")
    if data.dtype != np.uint8:
        raise TypeError(f"data must be uint8 pixels, got dtype {data.dtype}")
    if len(targets) != data.shape[0]:
        raise ValueError(f"targets must hold {data.shape[0]} labels, got {len(targets)}")


class CIFAR10Images(Dataset):
    """data: (N, H, W, 3) uint8; targets: N class indices. Item i: (transform(PIL image), label)."""

    def __init__(self, data, targets, transform=None, target_transform=None):
        _check_images(data, targets)
        self.data, self.targets = data, [int(t) for t in targets]
        self.transform, self.target_transform = transform, target_transform

    def __len__(self) -> int:
        return self.data.shape[0]

    def _image(self, index):
        from PIL import Image

        return Image.fromarray(self.data[index])

    def _target(self, index):
        target = self.targets[index]
        return target if self.target_transform is None else self.target_transform(target)

    def __getitem__(self, index):
        img = self._image(index)
        if self.transform is not None:
            img = self.transform(img)
        return img, self._target(index)


class CIFAR10Pair(CIFAR10Images):
    """Item i: (x_i, x_j, target), two independent draws of ``transform`` on image i (the positive
    pair SimCLR pulls together). ``transform`` is required."""

    def __init__(self, data, targets, transform, target_transform=None):
        if transform is None:
            raise ValueError("CIFAR10Pair needs a transform (two views of one image)")
        super().__init__(data, targets, transform, target_transform)

    def __getitem__(self, index):
        img = self._image(index)
        return self.transform(img), self.transform(img), self._target(index)


def hwc(images_nchw: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) -> (N, H, W, 3), contiguous (PIL's and torchvision's CIFAR10.data layout)."""
    return np.ascontiguousarray(images_nchw.transpose(0, 2, 3, 1))


def load_cifar10(data_dir, download: bool = False, log=None) -> CifarArrays:
    """CIFAR-10 from data_dir (any layout the CIFAR training accepts); ``download`` first
    fetches the official batches there with torchvision (needs internet)."""
    if download:
        data_dir = download_cifar10(data_dir, log=log)
    return load_cifar(data_dir, log=log)
