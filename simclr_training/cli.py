"""``python -m simclr_training``: train SimCLR's small encoder on CIFAR-10, then compare the
linear probe on its frozen features with the same probe on the same encoder at its random
initialization.

Writes into --out (atomically): ``results.json`` (settings, the loss of every epoch, both probes'
accuracies) and ``model.pt`` (the trained model's state_dict: tensors only, read it back with
``torch.load(path, weights_only=True)``); and, at the end of every epoch, ``last.pt``: the model
(and its random initialization, the probe's baseline), the optimizer, the next epoch, the
iteration count, the epoch losses so far, torch's random states (global and the loader's) and
the arguments (plain values only, read with ``weights_only=True``). ``--resume`` continues from
it, to the same outputs as an uninterrupted run; without ``--resume`` an --out holding
``last.pt`` is refused.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import sys
import time

from cifar_training.datasets import DataError, atomic_write_bytes
from cifar_training.epoch_state import (
    StateError,
    open_run,
    plain_args,
    report_interrupt,
    write_state,
)

# The arguments that define a run: --resume must repeat them (--epochs may grow; where the data
# and outputs are, the device, the loader processes and the probe's steps may change).
DEFINING_ARGS = (
    "train_subset",
    "test_subset",
    "batch_size",
    "temperature",
    "learning_rate",
    "feature_dim",
    "widths",
    "seed",
)
STATE_KEYS = ("model", "model_at_init", "optimizer", "epoch", "iteration", "losses")
STATE_KEYS += ("rng_state", "loader_rng_state", "args", "seconds")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _nonnegative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _positive_real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated channel counts such as 32,64,128, got {text!r}"
        ) from None
    if not 1 <= len(widths) <= 5 or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected 1 to 5 positive widths, got {text!r}")
    return widths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m simclr_training",
        description="SimCLR on CIFAR-10 with torch_impl's layers and contrastive loss, evaluated "
        "by a linear probe against the same encoder at its random initialization.",
    )
    p.add_argument(
        "--data-dir",
        required=True,
        help="CIFAR-10: python batches, an ImageFolder tree train/ test/, or an archive",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch the official batches into --data-dir first (needs internet)",
    )
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--epochs", type=_positive, default=10)
    p.add_argument(
        "--train-subset",
        type=_positive,
        default=None,
        help="train (and fit the probe) on N training images drawn with --seed (default: all)",
    )
    p.add_argument(
        "--test-subset",
        type=_positive,
        default=None,
        help="evaluate the probe on N test images drawn with --seed (default: all)",
    )
    p.add_argument("--batch-size", type=_positive, default=128)
    p.add_argument("--temperature", type=_positive_real, default=0.5, help="tau of the loss")
    p.add_argument("--learning-rate", type=_positive_real, default=1e-3, help="Adam's")
    p.add_argument("--feature-dim", type=_positive, default=128, help="projection size")
    p.add_argument(
        "--widths",
        type=_widths,
        default=(32, 64, 128),
        help="channels of the encoder's conv blocks",
    )
    p.add_argument("--probe-steps", type=_positive, default=500)
    p.add_argument(
        "--loader-processes",
        type=_nonnegative,
        default=0,
        help="processes that decode and augment the images (0: the main process)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last.pt (written after every epoch) up to "
        "--epochs; the arguments that define the run must be the same",
    )
    return p


def _draw(n: int, size, seed: int, what: str):
    """A seeded random subset of range(n) (all of it, shuffled, when size is None)."""
    import numpy as np

    if size is not None and size > n:
        raise ValueError(f"--{what} must be <= {n}, got {size}")
    return np.random.RandomState(seed).permutation(n)[: n if size is None else size]


def probe(model, train_images, test_images, args, device) -> dict:
    """Linear probe of model.f (batchnorm statistics re-estimated on train_images first)."""
    from torch.utils.data import DataLoader

    from simclr_training.train import extract_features, linear_probe, refresh_batchnorm_statistics

    loader = lambda ds: DataLoader(
        ds, batch_size=256, shuffle=False, num_workers=args.loader_processes
    )
    refresh_batchnorm_statistics(model, loader(train_images), device)
    train_x, train_y = extract_features(model.f, loader(train_images), device)
    test_x, test_y = extract_features(model.f, loader(test_images), device)
    return linear_probe(train_x, train_y, test_x, test_y, steps=args.probe_steps, seed=args.seed)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return report_interrupt(args.out)


def _run(args) -> int:
    import torch
    from torch.utils.data import DataLoader

    from simclr_training import data
    from simclr_training.model import Model
    from simclr_training.train import train
    from torch_impl import optim as topt

    try:
        out, saved = open_run(args, STATE_KEYS, DEFINING_ARGS, lambda state: state["epoch"] - 1)
    except StateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        arrays = data.load_cifar10(args.data_dir, download=args.download, log=print)
        train_idx = _draw(len(arrays.y_train), args.train_subset, args.seed, "train-subset")
        test_idx = _draw(len(arrays.y_test), args.test_subset, args.seed + 1, "test-subset")
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(train_idx) < args.batch_size:
        print(
            f"error: --train-subset {len(train_idx)} is below --batch-size {args.batch_size}: "
            "no full batch to train on",
            file=sys.stderr,
        )
        return 2
    x_train = data.hwc(arrays.x_train[train_idx])
    y_train = arrays.y_train[train_idx]
    pairs = data.CIFAR10Pair(x_train, y_train, data.compute_train_transform(args.seed))
    test_transform = data.compute_test_transform()
    train_images = data.CIFAR10Images(x_train, y_train, test_transform)
    test_images = data.CIFAR10Images(
        data.hwc(arrays.x_test[test_idx]), arrays.y_test[test_idx], test_transform
    )
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = Model(args.feature_dim, args.widths).to(device)
    at_init = copy.deepcopy(model)
    optimizer = topt.Adam(model.parameters(), learning_rate=args.learning_rate)
    loader_generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(
        pairs,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.loader_processes,
        generator=loader_generator,
    )
    print(
        f"SimCLR on {len(train_idx)} CIFAR-10 training images, {len(loader)} batches of "
        f"{args.batch_size} per epoch, encoder widths {args.widths}, on {device}"
    )
    losses, start_epoch, seconds_before = [], 1, 0.0
    if saved is not None:
        model.load_state_dict(saved["model"])
        at_init.load_state_dict(saved["model_at_init"])
        optimizer.load_state_dict(saved["optimizer"])
        losses, start_epoch = list(saved["losses"]), saved["epoch"]
        seconds_before = float(saved["seconds"])
        torch.set_rng_state(saved["rng_state"])
        loader_generator.set_state(saved["loader_rng_state"])
        if device.type == "cuda" and "cuda_rng_state" in saved:
            torch.cuda.set_rng_state(saved["cuda_rng_state"], device)
        if start_epoch > args.epochs:
            print(
                f"resuming after epoch {args.epochs} of {args.epochs}: all trained, "
                "writing the outputs"
            )
        else:
            print(f"resuming from epoch {start_epoch} of {args.epochs}")
    t0 = time.perf_counter()
    for epoch in range(start_epoch, args.epochs + 1):
        loss = train(
            model,
            loader,
            optimizer,
            epoch,
            args.epochs,
            args.batch_size,
            args.temperature,
            device,
            log=print,
        )
        losses.append(loss)
        elapsed = seconds_before + time.perf_counter() - t0
        print(f"epoch {epoch}/{args.epochs}: loss {loss:.4f} ({elapsed:.0f} s)")
        state = {
            "model": model.state_dict(),
            "model_at_init": at_init.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch + 1,  # the next epoch, counted from 1 as train() does
            "iteration": epoch * len(loader),
            "losses": losses,
            "rng_state": torch.get_rng_state(),
            "loader_rng_state": loader_generator.get_state(),
            "args": plain_args(args),
            "seconds": elapsed,
        }
        if device.type == "cuda":
            state["cuda_rng_state"] = torch.cuda.get_rng_state(device)
        write_state(out, state)
    train_seconds = seconds_before + time.perf_counter() - t0
    print(f"linear probe on {len(train_idx)} training / {len(test_idx)} test images ...")
    trained = probe(model, train_images, test_images, args, device)
    random_init = probe(at_init, train_images, test_images, args, device)
    print(
        f"linear probe test accuracy: SimCLR encoder {trained['test_accuracy']:.4f}, "
        f"same encoder at random init {random_init['test_accuracy']:.4f}"
    )
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    atomic_write_bytes(out / "model.pt", buffer.getvalue())
    # --resume is how the run was carried out, not what it is: the outputs of a resumed run are
    # those of an uninterrupted one.
    settings = {k: v for k, v in plain_args(args).items() if k != "resume"}
    record = {
        "settings": settings,
        "train_seconds": round(train_seconds, 1),
        "epoch_losses": losses,
        "probe_simclr": trained,
        "probe_random_init": random_init,
    }
    atomic_write_bytes(out / "results.json", json.dumps(record, indent=1).encode())
    print(f"wrote {out / 'results.json'} and {out / 'model.pt'}")
    return 0
