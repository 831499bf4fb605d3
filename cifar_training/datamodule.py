"""The LightningDataModule: CIFAR-10 in memory, held-out split, whole-batch augmentation on device.

Pipeline, per batch:
  sampler (CPU)   a shuffled slice of indices plus the batch's augmentation draws (crop offsets,
                  flips), both derived from (seed, epoch, batch number) alone, so a resumed run and
                  every DDP rank see exactly the batches an uninterrupted single process sees;
  dataset (CPU)   uint8 images gathered by index (no per-image Python work, no collation);
  device          ``on_after_batch_transfer``: random translation (reflect padding) and horizontal
                  flip as one gather on the uint8 batch, then uint8 -> float normalized with the
                  training split's per-channel mean/std: batched tensor ops on whatever device
                  the model is on.

The split: the training images are shuffled once with ``np.random.RandomState(split_seed)``
(independent of ``--seed``, so every run validates on the same images) and the LAST ``val_size``
of that permutation are held out. The shuffle matters: an ImageFolder tree is read class by
class, and a first-N slice of it would hold one or two classes. The held-out images are stored
in that shuffled order (so are the test images), so a ``--limit-val-batches`` subset still
holds every class; the training images stay in index order (each epoch draws its own order).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cifar_training.datasets import CifarArrays, DataError, download_cifar10, load_cifar
from cifar_training.recipes import FLIP_MODES


def split_indices(n: int, val_size: int, split_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): a fixed shuffle of range(n); the last val_size indices are held out.

    train_idx is sorted; val_idx keeps the shuffled order, so any prefix of the validation split
    is a random sample of the classes (ImageFolder trees are read class by class)."""
    if not 0 <= val_size < n:
        raise ValueError(
            f"--val-size must lie in [0, {n - 1}] for {n} training images, got {val_size}"
        )
    perm = np.random.RandomState(split_seed).permutation(n)
    return np.sort(perm[: n - val_size]), perm[n - val_size :]


def subset_indices(train_idx: np.ndarray, size: int | None, split_seed: int = 0) -> np.ndarray:
    """The first ``size`` of a fixed shuffle of train_idx (sorted), or all of it when size is
    None: a smaller training set that still holds every class (``--train-subset``)."""
    if size is None:
        return train_idx
    if not 1 <= size <= len(train_idx):
        raise ValueError(
            f"--train-subset must lie in [1, {len(train_idx)}] (the training "
            f"split's size), got {size}"
        )
    return np.sort(np.random.RandomState(split_seed + 1).permutation(train_idx)[:size])


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) std of uint8 images x: (N, C, H, W), in [0, 1] units."""
    C = x.shape[1]
    s = np.zeros(C)
    s2 = np.zeros(C)
    for i in range(0, len(x), chunk):
        xc = x[i : i + chunk].astype(np.float64) / 255.0
        s += xc.sum(axis=(0, 2, 3))
        s2 += (xc * xc).sum(axis=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / count
    std = np.sqrt(np.maximum(s2 / count - mean * mean, 0.0))
    return mean, np.maximum(std, 1e-3)


def batch_rng(seed: int, epoch: int, batch: int) -> np.random.Generator:
    """The augmentation draws of one global batch depend on (seed, epoch, batch) only."""
    return np.random.default_rng([seed, epoch, batch, 0x5EED])


class EpochBatches(Sampler):
    """Yields one item per batch: {"idx", "shift", "flip"} for this process's share.

    Training: each epoch a permutation of the n images (from (seed, epoch)) is cut into global
    batches of ``global_batch`` (the last partial batch is dropped when at least one full batch
    exists); process ``rank`` of ``world`` takes its contiguous slice of every global batch, so
    DDP with W processes computes the gradient of the same global batches as one process.
    Evaluation: images in order, whole batches of ``global_batch`` (per process here) dealt
    round-robin to the processes; uneven counts are fine since evaluation has no collectives.
    Lightning calls ``set_epoch`` before every epoch.
    """

    def __init__(
        self,
        n,
        global_batch,
        train,
        seed=0,
        rank=0,
        world=1,
        crop_pad=0,
        flip="none",
        flip_base=None,
    ):
        if train and global_batch % world:
            raise ValueError(
                f"--batch-size {global_batch} must be divisible by the number of "
                f"processes ({world})"
            )
        self.n, self.B, self.train, self.seed = n, global_batch, train, seed
        self.rank, self.world = rank, world
        self.crop_pad, self.flip, self.flip_base = crop_pad, flip, flip_base
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches already trained)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Start the next pass at batch ``batches_done`` of ``epoch`` (a mid-epoch resume): the
        same batches, with the same augmentation, as the uninterrupted pass yields from there."""
        self.epoch = int(epoch)
        self._resume = (int(epoch), int(batches_done))

    def _num_global_batches(self) -> int:
        if self.train:
            full = self.n // self.B
            return full if full > 0 else 1
        return -(-self.n // self.B)

    def __len__(self) -> int:
        g = self._num_global_batches()
        if self.train:
            return g
        return len(range(self.rank, g, self.world))

    def __iter__(self):
        if self.train:
            yield from self._train_batches()
        else:
            for k in range(self.rank, self._num_global_batches(), self.world):
                yield {"idx": torch.arange(k * self.B, min((k + 1) * self.B, self.n))}

    def _train_batches(self):
        perm = np.random.default_rng([self.seed, self.epoch, 0xB47C]).permutation(self.n)
        b = self.B // self.world
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start = self._resume[1]
        self._resume = None
        for k in range(start, self._num_global_batches()):
            idx = perm[k * self.B : (k + 1) * self.B]
            rng = batch_rng(self.seed, self.epoch, k)
            shift = rng.integers(0, 2 * self.crop_pad + 1, size=(len(idx), 2))
            if self.flip == "random":
                flip = rng.random(len(idx)) < 0.5
            elif self.flip == "alternating":
                # Every image is flipped in every other epoch (from a random start), which covers
                # both orientations more evenly than independent coin flips.
                flip = self.flip_base[idx] ^ bool(self.epoch % 2)
            else:
                flip = np.zeros(len(idx), dtype=bool)
            lo = self.rank * len(idx) // self.world if len(idx) < self.B else self.rank * b
            hi = (self.rank + 1) * len(idx) // self.world if len(idx) < self.B else lo + b
            yield {
                "idx": torch.from_numpy(idx[lo:hi].copy()),
                "shift": torch.from_numpy(shift[lo:hi].copy()),
                "flip": torch.from_numpy(flip[lo:hi].copy()),
            }


class ResumableLoader(DataLoader):
    """The training DataLoader, with Lightning's stateful-loader interface: the checkpoint
    records (epoch, optimizer batches done in it), and a resumed run's sampler skips those
    batches, so a run interrupted mid-epoch continues exactly where it stopped.
    ``progress()`` gives the batches finished in the current epoch (the trainer's count)."""

    def __init__(self, dataset, sampler: EpochBatches, progress):
        super().__init__(dataset, sampler=sampler, batch_size=None, num_workers=0)
        self._progress = progress

    def state_dict(self) -> dict:
        return {"epoch": int(self.sampler.epoch), "batches_done": int(self._progress())}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.resume_at(state["epoch"], state["batches_done"])


class InMemoryImages(Dataset):
    """x: (N, C, H, W) uint8 tensor, y: (N,) int64; indexed by a whole sampler item at once."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, item: dict) -> dict:
        out = {"x": self.x[item["idx"]], "y": self.y[item["idx"]]}
        for key in ("shift", "flip"):
            if key in item:
                out[key] = item[key]
        return out


def _reflect(k: torch.Tensor, n: int) -> torch.Tensor:
    """Index k in [-(n-1), 2n-2] mapped into [0, n) as F.pad(mode="reflect") does (edge not
    repeated): -1 -> 1, n -> n - 2."""
    k = k.abs()
    return torch.where(k >= n, 2 * (n - 1) - k, k)


def translate_flip(
    x: torch.Tensor, shift: torch.Tensor, flip: torch.Tensor, pad: int
) -> torch.Tensor:
    """Translate image i of x: (N, C, H, W) by shift[i] - pad pixels (shift in [0, 2*pad]),
    filling with the reflection of the image, then mirror it left-right where flip[i].

    Equals flip(crop of F.pad(x, pad, mode="reflect") at offset shift[i]), computed as ONE
    gather of precomputed source rows/columns, so it works on uint8 images (4x less memory
    traffic than floats) with no padded copy. Returns a (N, C, H, W) view in channels_last
    layout."""
    N, C, H, W = x.shape
    dev = x.device
    rows = _reflect(shift[:, 0, None] - pad + torch.arange(H, device=dev), H)  # (N, H)
    cols = _reflect(shift[:, 1, None] - pad + torch.arange(W, device=dev), W)  # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    n = torch.arange(N, device=dev)[:, None, None]
    return x.permute(0, 2, 3, 1)[n, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class CIFARDataModule(L.LightningDataModule):
    """CIFAR-10 for Lightning. ``batch_size`` is the GLOBAL batch (split over DDP processes).

    data_dir: any layout of ``cifar_training.datasets.LAYOUTS``; download: fetch the official
    batches into data_dir first (prepare_data, rank 0). After ``setup``: ``mean``/``std`` (C,)
    float64 in [0, 1] units, ``classes``, ``num_train``/``num_val``/``num_test``.
    """

    def __init__(
        self,
        data_dir,
        batch_size=512,
        eval_batch_size=None,
        val_size=5000,
        split_seed=0,
        seed=0,
        crop_pad=2,
        flip="alternating",
        download=False,
        cache_dir=None,
        channels_last=False,
        arrays: CifarArrays | None = None,
        train_subset: int | None = None,
        log=None,
    ):
        super().__init__()
        if flip not in FLIP_MODES:
            raise ValueError(f"flip must be one of {FLIP_MODES}, got {flip!r}")
        if batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
        if crop_pad < 0:
            raise ValueError(f"--crop-pad must be >= 0, got {crop_pad}")
        self.data_dir, self.download, self.cache_dir = data_dir, download, cache_dir
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_size, self.split_seed, self.seed = val_size, split_seed, seed
        self.crop_pad, self.flip, self.channels_last = crop_pad, flip, channels_last
        self._arrays, self.train_subset, self.log = arrays, train_subset, log
        self._prepared = self._ready = False

    # -- loading -------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Download (if asked), extract and decode into the cache: once per process."""
        if self._arrays is not None or self._prepared:
            return
        if self.download:
            download_cifar10(self.data_dir, log=self.log)
        load_cifar(self.data_dir, self.cache_dir, log=self.log)
        self._prepared = True

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        a = self._arrays if self._arrays is not None else load_cifar(self.data_dir, self.cache_dir)
        if a.x_train.shape[-1] < 2 * self.crop_pad + 1 or a.x_train.shape[-2] <= self.crop_pad:
            raise DataError(
                f"--crop-pad {self.crop_pad} is too large for images of shape {a.image_shape}"
            )
        train_idx, val_idx = split_indices(len(a.x_train), self.val_size, self.split_seed)
        train_idx = subset_indices(train_idx, self.train_subset, self.split_seed)
        x_tr = a.x_train[train_idx]
        self.mean, self.std = channel_stats(x_tr)
        self.classes = list(a.classes)
        self.image_shape = a.image_shape
        self.x_train = torch.from_numpy(np.ascontiguousarray(x_tr))
        self.y_train = torch.from_numpy(a.y_train[train_idx])
        self.x_val = torch.from_numpy(np.ascontiguousarray(a.x_train[val_idx]))
        self.y_val = torch.from_numpy(a.y_train[val_idx])
        # A fixed shuffle of the test set too: its accuracy does not depend on the order, but a
        # --limit-test-batches subset of a class-sorted ImageFolder tree would be one class.
        test_perm = np.random.RandomState(self.split_seed).permutation(len(a.x_test))
        self.x_test = torch.from_numpy(np.ascontiguousarray(a.x_test[test_perm]))
        self.y_test = torch.from_numpy(a.y_test[test_perm])
        self.num_train, self.num_val, self.num_test = len(train_idx), len(val_idx), len(a.x_test)
        self.flip_base = np.random.default_rng([self.seed, 0xF11B]).random(self.num_train) < 0.5
        self._ready = True

    # -- loaders -------------------------------------------------------------------------------

    def _rank_world(self) -> tuple[int, int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def _sampler(self, n, global_batch, train) -> EpochBatches:
        rank, world = self._rank_world()
        return EpochBatches(
            n,
            global_batch,
            train,
            self.seed,
            rank,
            world,
            self.crop_pad,
            self.flip,
            self.flip_base,
        )

    def _loader(self, x, y, global_batch, train) -> DataLoader:
        sampler = self._sampler(len(x), global_batch, train)
        return DataLoader(InMemoryImages(x, y), sampler=sampler, batch_size=None, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        sampler = self._sampler(len(self.x_train), self.batch_size, train=True)
        data = InMemoryImages(self.x_train, self.y_train)
        return ResumableLoader(data, sampler, self._batches_done)

    def _batches_done(self) -> int:
        t = self.trainer
        return t.fit_loop.epoch_loop.batch_progress.current.processed if t is not None else 0

    def val_dataloader(self):
        if self.num_val == 0:
            return []
        return self._loader(self.x_val, self.y_val, self.eval_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.x_test, self.y_test, self.eval_batch_size, train=False)

    # -- on device -----------------------------------------------------------------------------

    def normalize(self, x_uint8: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float, standardized with the training split's statistics:
        (x / 255 - mean) / std, as x * (1 / (255 std)) - mean / std (two fused passes)."""
        dev = x_uint8.device
        scale = torch.as_tensor(1.0 / (255.0 * self.std), dtype=dtype, device=dev)
        shift = torch.as_tensor(-self.mean / self.std, dtype=dtype, device=dev)
        x = x_uint8.to(dtype)
        return x.mul_(scale.view(1, -1, 1, 1)).add_(shift.view(1, -1, 1, 1))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        dtype = torch.float32
        if self.trainer is not None and self.trainer.lightning_module is not None:
            dtype = self.trainer.lightning_module.dtype
        x = batch["x"]
        if "shift" in batch and (self.crop_pad > 0 or self.flip != "none"):
            x = translate_flip(x, batch["shift"], batch["flip"], self.crop_pad)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return self.normalize(x.contiguous(memory_format=fmt), dtype), batch["y"]

    def whitening_sample(self, n: int = 5000, dtype=torch.float64) -> torch.Tensor:
        """n training images drawn with a fixed seed (the split is stored in index order, which
        for an ImageFolder tree is class order), normalized: what the whitening stem is fitted
        to."""
        idx = np.sort(np.random.RandomState(self.split_seed).permutation(self.num_train)[:n])
        return self.normalize(self.x_train[torch.from_numpy(idx)], dtype)
