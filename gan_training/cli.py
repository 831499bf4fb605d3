"""``python -m gan_training``: train one of the GAN notebook's GANs and write its samples.

Writes into --out: ``epoch_XXX.png`` (16 samples after each epoch), ``iter_XXXXXX.png`` (every
--show-every iterations) and ``losses.json`` (the settings and every iteration's D and G loss),
each atomically; and, at the end of every epoch, ``last.pt``: the models, the optimizers, the
epoch and iteration reached, the losses so far, torch's random state and the arguments (plain
values only, read with ``torch.load(..., weights_only=True)``). ``--resume`` continues from it,
to the same outputs as an uninterrupted run; without ``--resume`` an --out holding ``last.pt``
is refused.
"""

from __future__ import annotations

import argparse
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

GANS = ("vanilla", "ls", "dc")

# The arguments that define a run: --resume must repeat them (--epochs may grow; where the data
# and outputs are, the device and how often samples are shown may change).
DEFINING_ARGS = ("dataset", "gan", "batch_size", "num_train", "noise_dim", "seed")
STATE_KEYS = ("D", "G", "D_solver", "G_solver", "epoch", "iteration", "history", "rng_state")
STATE_KEYS += ("args", "seconds")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gan_training",
        description="Train a GAN of CS231n's GAN notebook on torch_impl's layers; write sample "
        "grids (PNG) and the losses (JSON) into --out.",
    )
    p.add_argument(
        "--dataset",
        choices=("mnist", "cifar10-gray"),
        default="mnist",
        help="mnist (torchvision; --download fetches it) or cifar10-gray (CIFAR-10 "
        "in any layout the CIFAR training reads, as 28x28 grayscale)",
    )
    p.add_argument("--data-dir", required=True, help="where the dataset is (or goes)")
    p.add_argument("--download", action="store_true", help="fetch MNIST (needs internet)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument(
        "--gan",
        choices=GANS,
        default="vanilla",
        help="vanilla: fully connected, BCE losses; ls: fully connected, least-squares "
        "losses; dc: the DCGAN models, BCE losses",
    )
    p.add_argument("--epochs", type=_positive, default=10)
    p.add_argument("--batch-size", type=_positive, default=128)
    p.add_argument(
        "--num-train",
        type=_positive,
        default=50000,
        help="train on the first N images (the course's NUM_TRAIN)",
    )
    p.add_argument(
        "--show-every", type=_positive, default=250, help="log and write samples every N iterations"
    )
    p.add_argument("--noise-dim", type=_positive, default=96)
    p.add_argument("--seed", type=int, default=0, help="seeds the models' init and the noise")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last.pt (written after every epoch) up to "
        "--epochs; the arguments that define the run must be the same",
    )
    return p


def build_gan(kind: str, batch_size: int, noise_dim: int):
    """(D, G, discriminator_loss, generator_loss) of the notebook's GAN ``kind``."""
    from gan_training import models as m

    if kind == "dc":
        D, G = m.build_dc_classifier(batch_size), m.build_dc_generator(noise_dim)
        D.apply(m.initialize_weights)
        G.apply(m.initialize_weights)
        return D, G, m.discriminator_loss, m.generator_loss
    D, G = m.discriminator(), m.generator(noise_dim)
    if kind == "ls":
        return D, G, m.ls_discriminator_loss, m.ls_generator_loss
    if kind == "vanilla":
        return D, G, m.discriminator_loss, m.generator_loss
    raise ValueError(f"gan must be one of {GANS}, got {kind!r}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return report_interrupt(args.out)


def _run(args) -> int:
    import torch

    from gan_training import data
    from gan_training.models import get_optimizer
    from gan_training.train import run_a_gan

    try:
        out, saved = open_run(args, STATE_KEYS, DEFINING_ARGS, lambda state: state["epoch"])
    except StateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    try:
        dataset = data.load_dataset(
            args.dataset, args.data_dir, args.num_train, download=args.download, log=print
        )
        loader = data.loader_train(dataset, args.batch_size, min(args.num_train, len(dataset)))
    except (DataError, data.MnistNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(loader.sampler) < args.batch_size:
        print(
            f"error: --num-train {len(loader.sampler)} is below --batch-size "
            f"{args.batch_size}: no full batch to train on",
            file=sys.stderr,
        )
        return 2
    device = torch.device(args.device)
    D, G, d_loss, g_loss = build_gan(args.gan, args.batch_size, args.noise_dim)
    D, G = D.to(device), G.to(device)
    print(
        f"{args.gan} GAN on {args.dataset} ({len(loader.sampler)} images, "
        f"{len(loader.sampler) // args.batch_size} iterations per epoch) on {device}"
    )
    D_solver, G_solver = get_optimizer(D), get_optimizer(G)
    history, start_epoch, start_iteration, seconds_before = [], 0, 0, 0.0
    if saved is not None:
        D.load_state_dict(saved["D"])
        G.load_state_dict(saved["G"])
        D_solver.load_state_dict(saved["D_solver"])
        G_solver.load_state_dict(saved["G_solver"])
        history = list(saved["history"])
        start_epoch, start_iteration = saved["epoch"], saved["iteration"]
        seconds_before = float(saved["seconds"])
        torch.set_rng_state(saved["rng_state"])
        if device.type == "cuda" and "cuda_rng_state" in saved:
            torch.cuda.set_rng_state(saved["cuda_rng_state"], device)
        if start_epoch == args.epochs:
            print(
                f"resuming after epoch {args.epochs} of {args.epochs}: all trained, "
                "writing the outputs"
            )
        else:
            print(f"resuming from epoch {start_epoch + 1} of {args.epochs}")
    t0 = time.perf_counter()

    def save_state(epochs_done: int, iterations_done: int) -> None:
        state = {
            "D": D.state_dict(),
            "G": G.state_dict(),
            "D_solver": D_solver.state_dict(),
            "G_solver": G_solver.state_dict(),
            "epoch": epochs_done,  # the next epoch, counted from 0 as run_a_gan does
            "iteration": iterations_done,
            "history": history,
            "rng_state": torch.get_rng_state(),
            "args": plain_args(args),
            "seconds": seconds_before + time.perf_counter() - t0,
        }
        if device.type == "cuda":
            state["cuda_rng_state"] = torch.cuda.get_rng_state(device)
        write_state(out, state)

    run_a_gan(
        D,
        G,
        D_solver,
        G_solver,
        d_loss,
        g_loss,
        loader,
        show_every=args.show_every,
        batch_size=args.batch_size,
        noise_size=args.noise_dim,
        num_epochs=args.epochs,
        out_dir=out,
        device=device,
        history=history,
        start_epoch=start_epoch,
        start_iteration=start_iteration,
        on_epoch_end=save_state,
    )
    seconds = seconds_before + time.perf_counter() - t0
    record = {
        # --resume is how the run was carried out, not what it is: the outputs of a resumed run
        # are those of an uninterrupted one.
        "settings": {k: v for k, v in vars(args).items() if k != "resume"},
        "seconds": round(seconds, 1),
        "iterations": history,
    }
    atomic_write_bytes(out / "losses.json", json.dumps(record, indent=1).encode())
    last = history[-1]
    print(
        f"done in {seconds:.0f} s: {len(history)} iterations, last D {last['d_loss']:.4f}, "
        f"G {last['g_loss']:.4f}; wrote {out}"
    )
    return 0
