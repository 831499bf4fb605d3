"""CIFAR-10 loaders as CS231n's PyTorch notebook (assignment 2, ``PyTorch.ipynb``) builds them.

The notebook normalizes each channel with fixed constants (the ``T.ToTensor()`` scaling to
[0, 1], then ``T.Normalize`` with the means and standard deviations below), batches 64 images,
and splits the 50,000 training images into the first ``num_train`` = 49,000 for training
(sampled in random order every epoch) and the rest for validation, with the test set
separate. The datasets carry the ``train`` flag its ``check_accuracy`` functions read to name
the split ('val' for the training images, 'test' otherwise).

Images come from ``cifar_training.datasets`` (any accepted layout: the official python batches,
an ImageFolder tree, or an archive of either; decoded once and cached). A first-N split needs
the official batches' random order; an ImageFolder copy is read class by class, so when the
training labels come sorted by class the images are shuffled once with a fixed seed
(``np.random.RandomState(0)``) before the split (``shuffle_split=None``, the default, decides
this from the labels; True or False forces it).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, SubsetRandomSampler

from cifar_training.datasets import download_cifar10, load_cifar

# The notebook's normalization constants, per RGB channel, in [0, 1] units.
NOTEBOOK_MEAN = (0.4914, 0.4822, 0.4465)
NOTEBOOK_STD = (0.2023, 0.1994, 0.2010)
NUM_TRAIN = 49000
BATCH_SIZE = 64


class NotebookCIFAR10(Dataset):
    """Images (N, 3, H, W) uint8 and labels (N,) as the notebook's dataset yields them:
    (x float32 (3, H, W) normalized with NOTEBOOK_MEAN / NOTEBOOK_STD, y int). ``train``: whether
    these are training images (the notebook's validation split is drawn from them)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, train: bool):
        if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 of shape (N, 3, H, W), got {images.dtype} {images.shape}"
            )
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.train = bool(train)
        self._mean = torch.tensor(NOTEBOOK_MEAN, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(NOTEBOOK_STD, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i):
        x = self.images[i].to(torch.float32) / 255.0
        return (x - self._mean) / self._std, int(self.labels[i])


class NotebookLoaders(NamedTuple):
    train: DataLoader  # the notebook's loader_train
    val: DataLoader  # loader_val
    test: DataLoader  # loader_test


def _sorted_by_class(labels: np.ndarray) -> bool:
    return labels.size > 1 and bool(np.all(np.diff(labels) >= 0))


def notebook_loaders(
    data_dir,
    *,
    num_train: int = NUM_TRAIN,
    batch_size: int = BATCH_SIZE,
    shuffle_split: bool | None = None,
    download: bool = False,
    cache_dir=None,
    log=None,
) -> NotebookLoaders:
    """(loader_train, loader_val, loader_test) over the CIFAR-10 copy at ``data_dir``.

    num_train: training images in the training split (the rest of the training set is the
    validation split; 0 < num_train < number of training images). loader_train and loader_val
    visit their split in a new random order each pass (``SubsetRandomSampler``, torch's global
    generator, as in the notebook); loader_test in file order. ``download``: fetch the official
    batches into ``data_dir`` first when it holds none (torchvision; needs internet).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if download:
        data_dir = download_cifar10(data_dir, log=log)
    arrays = load_cifar(data_dir, cache_dir=cache_dir, log=log)
    n = len(arrays.y_train)
    if isinstance(num_train, bool) or not isinstance(num_train, int) or not 0 < num_train < n:
        raise ValueError(
            f"num_train must be an int in [1, {n - 1}] for {n} training images (the rest is "
            f"the validation split), got {num_train!r}"
        )
    x, y = arrays.x_train, arrays.y_train
    if shuffle_split if shuffle_split is not None else _sorted_by_class(y):
        order = np.random.RandomState(0).permutation(n)
        x, y = x[order], y[order]
    train_set = NotebookCIFAR10(x, y, train=True)
    test_set = NotebookCIFAR10(arrays.x_test, arrays.y_test, train=False)
    return NotebookLoaders(
        DataLoader(train_set, batch_size=batch_size, sampler=SubsetRandomSampler(range(num_train))),
        DataLoader(
            train_set, batch_size=batch_size, sampler=SubsetRandomSampler(range(num_train, n))
        ),
        DataLoader(test_set, batch_size=batch_size),
    )
