"""Command line of ``train.py``: train the CIFAR-10 CNN with Lightning on a chosen backend.

    python train.py --data-dir /tmp/cifar10-jpeg --backend torch --out runs/torch

``python train.py --help`` documents every flag. Outputs in ``--out`` (see ``write_outputs``):
``model.pt`` (state dict, ``torch.load(..., weights_only=True)``), ``model.json`` (how to rebuild
the network and normalize its input), ``metrics.json``, ``curves.png``, ``confusion_matrix.png``,
``filters.png``, ``config.json``, ``checkpoints/{best,last}.ckpt`` and ``logs/metrics.csv``
(plus ``tensorboard/`` when TensorBoard is installed).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import shutil
import signal
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np

from cifar_training import argtypes
from cifar_training.datasets import atomic_write_bytes
from cifar_training.run_control import (
    SIGNAL_NAMES,
    AtomicCheckpointIO,
    CheckpointError,
    RunCheckpoints,
    RunInterrupted,
    StopAfterEpochs,
    StopDuringTest,
    StopRequest,
    ThroughputTimer,
    read_checkpoint,
)
from cifar_training.threads import MATMUL_PRECISIONS, default_threads

_T0 = time.perf_counter()  # wall time counts from here: imports, data loading, training, test

# The training recipes, as data: every value is also a flag, and a flag given on the command
# line wins. "best" is the measured best within 15 minutes on 2 CPU cores (README "Results");
# "classic" is the earlier default (widths 32/64/128, float32, 45,000/5,000 split), kept so its
# rows stay reproducible; "three-layer" is CS231n's ThreeLayerConvNet setting.
_AIRBENCH = {
    "batch_size": 512,
    "optimizer": "nesterov",
    "lr": 0.4,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "label_smoothing": 0.2,
    "schedule": "linear",
    "warmup": 0.2,
    "crop_pad": 2,
    "flip": "alternating",
    "head_scale": 0.125,
    "bn_scale": "trained",
    "bn_bias_lr_scale": 1.0,
    "dirac_init": False,
}
RECIPES = {
    "best": {
        "model": "default",
        "widths": (48, 96, 192),
        "epochs": 14,
        "val_size": 0,
        "precision": "bf16-mixed",
        "tta_translate": True,
        **_AIRBENCH,
    },
    "classic": {
        "model": "default",
        "widths": (32, 64, 128),
        "epochs": 15,
        "val_size": 5000,
        "precision": "32-true",
        "tta_translate": False,
        **_AIRBENCH,
    },
    "three-layer": {
        "model": "three-layer",
        "widths": (32, 64, 128),
        "epochs": 5,
        "val_size": 5000,
        "precision": "32-true",
        "tta_translate": False,
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 1e-3,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "label_smoothing": 0.0,
        "schedule": "constant",
        "warmup": 0.0,
        "crop_pad": 0,
        "flip": "none",
        "head_scale": 1.0,
        "bn_scale": "trained",
        "bn_bias_lr_scale": 1.0,
        "dirac_init": False,
    },
}
DEFAULT_RECIPE = {"default": "best", "three-layer": "three-layer"}  # per --model
# The optimization keys of a recipe (what make_train_step and the benchmarks take).
TRAIN_KEYS = tuple(_AIRBENCH)

# Flags that may differ between an interrupted run and its --resume.
_RESUME_FREE = {
    "resume",
    "overwrite",
    "stop_after_epochs",
    "data_dir",
    "download",
    "cache_dir",
    "threads",
    "progress_bar",
    "out",
    "tta_translate",
    "matmul_precision",
    "limit_test_batches",
    "eval_batch_size",
    "eval_only",
    "save_every_n_steps",
    "notes",
    "diagnostics",
}
# Lightning's --precision values (what Trainer(precision=...) accepts).
PRECISIONS = (
    "32-true",
    "32",
    "64-true",
    "64",
    "bf16-mixed",
    "bf16",
    "16-mixed",
    "16",
    "bf16-true",
    "16-true",
)
_GPU_ACCELERATORS = ("gpu", "cuda", "mps", "tpu")
_NUMPY_PRECISIONS = ("32", "32-true", "64", "64-true")


def _describe(name: str) -> str:
    r = RECIPES[name]
    if r["model"] == "three-layer":
        return (
            f"{name}: CS231n's ThreeLayerConvNet, {r['epochs']} epochs, batch "
            f"{r['batch_size']}, {r['optimizer']} lr {r['lr']}, no augmentation, "
            f"{r['val_size']} validation images, float32."
        )
    return (
        f"{name}: default model at widths {','.join(map(str, r['widths']))}, "
        f"{r['epochs']} epochs, batch {r['batch_size']}, {r['optimizer']} momentum "
        f"{r['momentum']}, lr {r['lr']} (linear warmup over {r['warmup']} of the steps, then "
        f"linear decay to 0), weight decay {r['weight_decay']}, label smoothing "
        f"{r['label_smoothing']}, head scale {r['head_scale']}, translate +-{r['crop_pad']} "
        f"px + {r['flip']} flips, {r['val_size'] or 'no'} validation images, "
        f"{r['precision']}"
        f"{' (float32 where bf16 is not fast)' if 'bf16' in r['precision'] else ''}"
        f"{', 6-view test-time augmentation' if r['tta_translate'] else ''}."
    )


def build_parser() -> argparse.ArgumentParser:
    from cifar_training.backends import BACKENDS, OPTIMIZERS
    from cifar_training.datamodule import FLIP_MODES
    from cifar_training.datasets import LAYOUTS
    from cifar_training.models import BN_SCALES, MODELS
    from cifar_training.module import SCHEDULES

    recipes = "\n".join(textwrap.fill(_describe(n), 79, subsequent_indent="  ") for n in RECIPES)
    p = argparse.ArgumentParser(
        prog="train.py",
        description=textwrap.fill(
            "Train a CNN on CIFAR-10 with Lightning. --backend picks who does the math: "
            "torch_impl's hand-written autograd Functions (torch), the NumPy twin through an "
            "autograd bridge (numpy, CPU only), or PyTorch's own kernels (builtin). With no "
            "flags it runs the 'best' recipe below. --eval-only tests a finished run's weights "
            "again; python -m cifar_training.predict classifies image files.",
            79,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"data: --data-dir takes\n{LAYOUTS}\n\nrecipes (--recipe; every value is a flag "
        f"that overrides it):\n{recipes}\n\n"
        + textwrap.fill(
            "Outputs in --out: model.pt (state dict, torch.load(weights_only=True)), "
            "model.json, metrics.json, curves.png, confusion_matrix.png, filters.png, "
            "config.json, checkpoints/{best,last}.ckpt, logs/metrics.csv. Ctrl-C or SIGTERM "
            "saves a checkpoint at the current batch and exits 130 / 143; --resume continues.",
            79,
        ),
    )
    g = p.add_argument_group("model and math")
    g.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        default=None,
        help="a named set of defaults for every flag below (default: best; "
        "three-layer with --model three-layer)",
    )
    g.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="who computes the layers and the update (default: torch)",
    )
    g.add_argument(
        "--model",
        choices=MODELS,
        default=None,
        help="default: airbench-style conv net; three-layer: CS231n's "
        "ThreeLayerConvNet (default: the recipe's)",
    )
    g.add_argument(
        "--widths",
        type=argtypes.widths,
        default=None,
        metavar="W1,W2,W3",
        help="channel widths of the default model's blocks (default: the recipe's, 48,96,192)",
    )
    g.add_argument(
        "--stem",
        choices=("whiten", "conv"),
        default="whiten",
        help="default model's first layer: fixed 2x2 patch-whitening conv fitted to "
        "the training images, or a trained 3x3 conv + batchnorm (default: whiten)",
    )
    g.add_argument(
        "--bn-momentum",
        type=argtypes.fraction,
        default=0.9,
        help="batchnorm running-average momentum, CS231n convention (PyTorch's "
        "momentum = 1 - this) (default: 0.9)",
    )

    g = p.add_argument_group("data")
    g.add_argument(
        "--data-dir",
        default="data",
        help="CIFAR-10 in any accepted layout (below) (default: ./data)",
    )
    g.add_argument(
        "--download",
        action="store_true",
        help="download the official python batches into --data-dir first",
    )
    g.add_argument(
        "--cache-dir",
        default=None,
        help="where archives are extracted and decoded arrays cached (default: "
        "$NN_TWINS_CACHE or ~/.cache/nn-twins)",
    )
    g.add_argument(
        "--val-size",
        type=argtypes.nonneg_int,
        default=None,
        help="training images held out for validation/model selection; 0 = none, "
        "then the last epoch is tested (default: the recipe's; best 0, classic 5000)",
    )
    g.add_argument(
        "--train-subset",
        type=argtypes.positive_int,
        default=None,
        metavar="N",
        help="train on a fixed random N of the training images (short runs; the "
        "validation and test splits are unchanged)",
    )
    g.add_argument(
        "--crop-pad",
        type=argtypes.nonneg_int,
        default=None,
        help="random translation by up to this many pixels (reflect padding)",
    )
    g.add_argument(
        "--flip",
        choices=FLIP_MODES,
        default=None,
        help="horizontal flips: every other epoch per image (alternating), coin "
        "flips (random), or none",
    )

    g = p.add_argument_group("optimization (defaults depend on --model, see below)")
    g.add_argument(
        "--epochs",
        type=argtypes.positive_int,
        default=None,
        help="passes over the training split (default: the recipe's)",
    )
    g.add_argument(
        "--batch-size",
        type=argtypes.positive_int,
        default=None,
        help="global batch size, split over DDP processes (default: the recipe's)",
    )
    g.add_argument(
        "--eval-batch-size",
        type=argtypes.positive_int,
        default=None,
        help="per-process batch size for validation/test (default: --batch-size)",
    )
    g.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=None,
        help="update rule (numpy_impl.optim / torch_impl.optim / torch.optim)",
    )
    g.add_argument(
        "--lr",
        type=argtypes.nonneg_float,
        default=None,
        help="peak learning rate (default: 0.4; three-layer Adam 1e-3)",
    )
    g.add_argument(
        "--momentum",
        type=argtypes.fraction,
        default=None,
        help="momentum of sgd_momentum/nesterov (Adam's beta1 is 0.9)",
    )
    g.add_argument(
        "--weight-decay",
        type=argtypes.nonneg_float,
        default=None,
        help="L2 coefficient on conv/affine weights (added to the gradient)",
    )
    g.add_argument(
        "--label-smoothing",
        type=argtypes.fraction,
        default=None,
        help="eps of the smoothed target (1 - eps) onehot + eps / C (default: 0.2; three-layer 0)",
    )
    g.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=None,
        help="linear: warmup from 0.2x lr then linear decay to 0; constant",
    )
    g.add_argument(
        "--warmup",
        type=argtypes.fraction,
        default=None,
        help="fraction of the steps spent warming up (linear schedule)",
    )
    g.add_argument(
        "--head-scale",
        type=argtypes.positive_float,
        default=None,
        help="output scale of the default model's classifier, applied as a smaller "
        "head init and head lr * scale^2 for SGD-family optimizers (default 0.125)",
    )
    g.add_argument(
        "--bn-scale",
        choices=BN_SCALES,
        default=None,
        help="default model's batchnorm gamma: trained, or fixed at 1 (airbench)",
    )
    g.add_argument(
        "--bn-bias-lr-scale",
        type=argtypes.nonneg_float,
        default=None,
        help="learning-rate multiplier of the batchnorm betas (airbench: 64)",
    )
    g.add_argument(
        "--dirac-init",
        type=argtypes.on_off,
        default=None,
        metavar="on|off",
        help="start each block conv's first C_in filters as the identity (airbench)",
    )
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="initial weights, batch order and augmentation (default: 0); the "
        "validation split is fixed (seed 0) whatever this is",
    )

    g = p.add_argument_group("hardware (passed to Lightning)")
    g.add_argument(
        "--accelerator",
        default="auto",
        help="cpu, gpu, auto (default: auto; the numpy backend always runs on cpu)",
    )
    g.add_argument(
        "--devices",
        type=argtypes.devices,
        default="auto",
        help="number of devices/processes, e.g. 2 with --strategy ddp on CPU (gloo)",
    )
    g.add_argument("--strategy", default="auto", help="e.g. ddp (default: auto)")
    g.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        metavar="PRECISION",
        help="Lightning's precision: 32-true, 64-true, bf16-mixed, 16-mixed, ... "
        "(default: the recipe's; best: bf16-mixed where the hardware has it, else "
        "32-true, saying so)",
    )
    g.add_argument(
        "--matmul-precision",
        choices=MATMUL_PRECISIONS,
        default="highest",
        help="torch.set_float32_matmul_precision for float32 products (torch_impl's "
        "conv and affine are matmuls): 'medium' lets PyTorch route them to oneDNN, "
        "which the setting allows to compute in bfloat16 (what it does on which CPU: "
        "BENCHMARKS.md) (default: highest)",
    )
    g.add_argument(
        "--threads",
        type=argtypes.positive_int,
        default=None,
        help="CPU threads per process (default: available cores / processes)",
    )
    g.add_argument(
        "--channels-last",
        nargs="?",
        const="on",
        default="auto",
        choices=("auto", "on", "off"),
        help="channels_last memory format for images and conv weights; auto = on "
        "for the builtin backend (faster with PyTorch's CPU kernels), off for the "
        "twins (default: auto)",
    )
    g.add_argument(
        "--deterministic",
        action="store_true",
        help="torch.use_deterministic_algorithms (bit-reproducible CPU runs)",
    )

    g = p.add_argument_group("run control")
    g.add_argument(
        "--out", default=None, help="output directory (default: runs/<model>-<backend>-seed<seed>)"
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from checkpoints/last.ckpt (end of the last "
        "completed epoch); the other flags must match the interrupted run's",
    )
    g.add_argument(
        "--overwrite", action="store_true", help="start over in an --out that already holds a run"
    )
    g.add_argument(
        "--eval-only",
        action="store_true",
        help="do not train: test the finished run in --out (its model.pt) on the "
        "test split, with --tta-translate if asked, and write eval_metrics.json",
    )
    g.add_argument(
        "--save-every-n-steps",
        type=argtypes.positive_int,
        default=None,
        metavar="N",
        help="also save checkpoints/last.ckpt every N optimizer steps (long epochs "
        "on slow backends); it is always saved at the end of every epoch",
    )
    g.add_argument(
        "--fast-dev-run",
        action="store_true",
        help="one batch of train/val/test, no checkpoints (smoke test)",
    )
    g.add_argument(
        "--limit-train-batches",
        type=argtypes.limit,
        default=None,
        metavar="N|FRAC",
        help="train on N batches (or this fraction) per epoch; the schedule "
        "shrinks to match (smoke runs, throughput checks)",
    )
    g.add_argument(
        "--limit-val-batches",
        type=argtypes.limit,
        default=None,
        metavar="N|FRAC",
        help="validate on N batches (or this fraction); 0 skips validation",
    )
    g.add_argument(
        "--limit-test-batches",
        type=argtypes.limit,
        default=None,
        metavar="N|FRAC",
        help="test on N batches (or this fraction)",
    )
    g.add_argument(
        "--stop-after-epochs",
        type=argtypes.positive_int,
        default=None,
        metavar="N",
        help="stop after N epochs as if interrupted, keeping the schedule of "
        "--epochs (to test --resume)",
    )
    g.add_argument(
        "--tta-translate",
        nargs="?",
        const="on",
        default=None,
        type=argtypes.on_off,
        metavar="on|off",
        help="also report 6-view test-time augmentation (flip x {none, 1 px up-left, "
        "1 px down-right}); costs ~3x the test pass (default: the recipe's; on for "
        "best)",
    )
    g.add_argument(
        "--diagnostics",
        action="store_true",
        help="also record, every 10 steps, each layer's activation mean/std and "
        "fraction of dead ReLU units and each weight's gradient norm (logs/metrics.csv, "
        "diagnostics.png); the update/weight ratio (update_ratio.png) is always "
        "recorded",
    )
    g.add_argument(
        "--no-progress-bar",
        dest="progress_bar",
        action="store_false",
        help="no progress bar (logs only)",
    )
    return p


def resolve_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.notes = []  # said once at the start of the run
    if args.recipe is None:
        args.recipe = DEFAULT_RECIPE[args.model or "default"]
    recipe = RECIPES[args.recipe]
    if args.model is not None and args.model != recipe["model"]:
        parser.error(
            f"--recipe {args.recipe} is for --model {recipe['model']}, got --model "
            f"{args.model}; the recipes for {args.model}: "
            f"{', '.join(n for n, r in RECIPES.items() if r['model'] == args.model)}"
        )
    precision_given = args.precision is not None
    for k, v in recipe.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if not precision_given and "bf16" in args.precision:
        why = None
        if args.backend == "numpy":
            why = "the numpy backend computes in float32"
        elif not bf16_available(args.accelerator):
            why = "this hardware has no fast bfloat16 (on CPU that needs AVX-512)"
        if why:
            args.notes.append(
                f"the {args.recipe} recipe trains in {args.precision}, but {why}: "
                f"training in float32 (32-true) instead"
            )
            args.precision = "32-true"
    if args.out is None:
        args.out = os.path.join("runs", f"{args.model}-{args.backend}-seed{args.seed}")
    if args.backend == "numpy":
        if args.accelerator.lower() in _GPU_ACCELERATORS:
            parser.error(
                f"--backend numpy runs on CPU only: NumPy arrays live in host memory, so "
                f"--accelerator {args.accelerator} has nothing to do. Use --accelerator cpu (the "
                f"default for this backend), or --backend torch / builtin to train on a GPU."
            )
        args.accelerator = "cpu"
        if args.precision not in _NUMPY_PRECISIONS:
            parser.error(
                f"--backend numpy computes in float32 or float64: --precision must be "
                f"one of {_NUMPY_PRECISIONS}, got {args.precision!r}"
            )
    if args.channels_last == "auto":
        args.channels_last = "on" if args.backend == "builtin" else "off"
    args.channels_last = args.channels_last == "on"
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite contradict each other")
    if args.devices != "auto":
        try:
            args.devices = int(args.devices)
        except ValueError:
            pass  # Lightning also takes "0,1"-style lists
    return args


def bf16_available(accelerator: str) -> bool:
    """Whether this hardware computes bf16-mixed fast: on CPU, oneDNN's bfloat16 kernels need
    AVX-512 (BW/VL/DQ, or AVX512_BF16/AMX); without them PyTorch still runs bfloat16 but
    through slow reference loops, far slower than float32 (BENCHMARKS.md, the AVX2 machine).
    CUDA needs a GPU with bfloat16 (Ampere or newer). Other accelerators are not assumed to."""
    import torch

    acc = str(accelerator).lower()
    if acc in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    if acc in ("auto", "cpu"):
        mps = getattr(torch.backends, "mps", None)
        if acc == "auto" and mps is not None and mps.is_available():
            return False
        return cpu_has_fast_bf16()
    return False


def cpu_has_fast_bf16() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def _is_child_process() -> bool:
    """DDP workers started by Lightning's launcher re-run this script with LOCAL_RANK set."""
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


def _run_config(args) -> dict:
    return {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in vars(args).items()
        if k not in _RESUME_FREE
    }


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def finite_or_none(obj):
    """obj with every NaN/inf float replaced by None (JSON has no NaN), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(finite_or_none(obj), indent=2, allow_nan=False) + "\n")


# What a checkpointed or finished run leaves; a directory with none of these holds no run, so
# the leftovers of a failed start (config.json, empty logs) or of a --fast-dev-run smoke test
# never block the next attempt.
_CHECKPOINTS = ("checkpoints/last.ckpt", "checkpoints/best.ckpt")
_OUTPUTS = (
    "metrics.json",
    "eval_metrics.json",
    "model.pt",
    "model.json",
    "curves.png",
    "confusion_matrix.png",
    "filters.png",
    "update_ratio.png",
    "diagnostics.png",
    "config.json",
)


def holds_run(out: Path) -> bool:
    if any((out / f).exists() for f in _CHECKPOINTS):
        return True
    try:
        return not json.loads((out / "metrics.json").read_text()).get("fast_dev_run", False)
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True  # unreadable results: leave them to the user


def prepare_out_dir(args) -> Path:
    """Create --out; refuse to mix runs; check that --resume has a usable checkpoint."""
    out = Path(args.out)
    cfg_path, last = out / "config.json", out / "checkpoints" / "last.ckpt"
    if args.resume:
        if not last.is_file():
            started = (
                " (the earlier attempt stopped before its first checkpoint: start it "
                "again without --resume)"
                if out.is_dir()
                else ""
            )
            raise UsageError(f"--resume: no checkpoint to resume from at {last}{started}")
        try:
            read_checkpoint(last)
        except CheckpointError as e:
            raise UsageError(f"--resume: {e}") from None
        if cfg_path.is_file():
            old = json.loads(cfg_path.read_text())
            new = _run_config(args)
            diff = {
                k: (old.get(k), new.get(k))
                for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)
            }
            if diff:
                shown = ", ".join(
                    f"--{k.replace('_', '-')} {a!r} -> {b!r}" for k, (a, b) in diff.items()
                )
                raise UsageError(
                    f"--resume needs the interrupted run's flags; these differ: {shown}"
                )
        return out
    if _is_child_process():
        return out
    if holds_run(out) and not args.overwrite:
        raise UsageError(
            f"{out} already holds a run: add --resume to continue it, "
            f"--overwrite to start over, or choose another --out"
        )
    for name in ("checkpoints", "logs", "tensorboard"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in _OUTPUTS:
        (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cfg_path, json.dumps(_run_config(args), indent=2) + "\n")
    return out


class UsageError(Exception):
    """A flag combination or --out state that cannot run (exit status 2)."""


class NonFiniteEvaluationError(Exception):
    """The final test evaluation is NaN or infinite (exit status 1)."""


# ----------------------------------------------------------------------------------------------


def _callbacks(args, out, has_val, stop, with_logger):
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from cifar_training.diagnostics import TrainingDiagnostics

    callbacks = {
        "timer": ThroughputTimer(),
        "stopper": StopAfterEpochs(args.stop_after_epochs),
        "diagnostics": TrainingDiagnostics(every=10, activations=args.diagnostics),
        "last": RunCheckpoints(out / "checkpoints" / "last.ckpt", stop, args.save_every_n_steps),
    }
    if has_val:
        callbacks["best"] = ModelCheckpoint(
            dirpath=out / "checkpoints",
            filename="best",
            monitor="val/acc",
            mode="max",
            save_top_k=1,
            save_last=False,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        )
    if with_logger:
        callbacks["lr"] = LearningRateMonitor(logging_interval="step")
    return callbacks


def _loggers(out):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = [CSVLogger(save_dir=str(out), name="", version="logs")]
    try:
        import tensorboard  # noqa: F401

        loggers.append(TensorBoardLogger(save_dir=str(out), name="", version="tensorboard"))
    except ImportError:
        pass
    return loggers


def _versions() -> dict:
    import lightning
    import numpy
    import torch
    import torchvision

    import cifar_training

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "numpy": numpy.__version__,
        "torchvision": torchvision.__version__,
        "nn_twins": cifar_training.__version__,
    }


def _quiet_lightning():
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning-internal deprecation
    warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
    warnings.filterwarnings("ignore", message=".*Experiment logs directory.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")


def _say(message: str) -> None:
    print(message, flush=True)


def make_trainer(args, out, **kwargs):
    """L.Trainer from the hardware flags; what Lightning refuses (an unknown --strategy, a GPU
    that is not there, too many devices) becomes a UsageError naming the flags."""
    import lightning as L

    try:
        return L.Trainer(
            accelerator=args.accelerator,
            devices=args.devices,
            strategy=args.strategy,
            precision=args.precision,
            default_root_dir=str(out),
            **kwargs,
        )
    except Exception as e:  # MisconfigurationException, ValueError, RuntimeError, ...
        raise UsageError(
            f"Lightning cannot run --accelerator {args.accelerator} --devices {args.devices} "
            f"--strategy {args.strategy} --precision {args.precision} here: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None


def run(args, stop: StopRequest) -> int:
    t_start = min(_T0, time.perf_counter())
    import lightning as L
    import torch

    from cifar_training.datamodule import CIFARDataModule
    from cifar_training.models import fit_whitening
    from cifar_training.module import CifarModule

    _quiet_lightning()
    threads = args.threads or default_threads(args.devices, args.accelerator)
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(args.matmul_precision)

    out = prepare_out_dir(args)
    primary = not _is_child_process()
    for note in args.notes if primary else ():
        _say(f"note: {note}")
    L.seed_everything(args.seed, workers=True, verbose=False)
    dm = CIFARDataModule(
        args.data_dir,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        val_size=args.val_size,
        seed=args.seed,
        crop_pad=args.crop_pad,
        flip=args.flip,
        download=args.download,
        cache_dir=args.cache_dir,
        channels_last=args.channels_last,
        train_subset=args.train_subset,
        log=_say if primary else None,
    )
    dm.prepare_data()
    try:  # flags that only the data can judge (--val-size, --widths vs the image size)
        dm.setup("fit")
        module = CifarModule(
            backend=args.backend,
            model=args.model,
            widths=args.widths,
            stem=args.stem,
            num_classes=len(dm.classes),
            image_shape=dm.image_shape,
            bn_momentum=args.bn_momentum,
            seed=args.seed,
            optimizer=args.optimizer,
            lr=args.lr,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            label_smoothing=args.label_smoothing,
            schedule=args.schedule,
            warmup=args.warmup,
            head_scale=args.head_scale,
            bn_scale=args.bn_scale,
            bn_bias_lr_scale=args.bn_bias_lr_scale,
            dirac_init=args.dirac_init,
            classes=dm.classes,
        )
    except ValueError as e:
        raise UsageError(str(e)) from e
    fit_whitening(module.net, dm.whitening_sample())
    module.tta_translate = args.tta_translate
    if args.channels_last:
        module = module.to(memory_format=torch.channels_last)

    has_val = dm.num_val > 0 and args.limit_val_batches != 0 and not args.fast_dev_run
    with_logger = not args.fast_dev_run
    cb = _callbacks(args, out, has_val, stop, with_logger)
    limits = {
        k: getattr(args, k)
        for k in ("limit_train_batches", "limit_val_batches", "limit_test_batches")
        if getattr(args, k) is not None
    }
    if dm.num_val == 0 and not args.fast_dev_run:
        limits["limit_val_batches"] = 0
    steps = max(dm.num_train // args.batch_size, 1)
    ltb = args.limit_train_batches
    if ltb is not None:
        steps = min(steps, ltb) if isinstance(ltb, int) else max(int(steps * ltb), 1)
    module.total_steps = None if args.fast_dev_run else args.epochs * steps
    callbacks = [cb["timer"], cb["stopper"], cb["diagnostics"], StopDuringTest(stop)]
    if not args.fast_dev_run:
        callbacks += [cb[k] for k in ("best", "last", "lr") if k in cb]
    trainer = make_trainer(
        args,
        out,
        max_epochs=args.epochs,
        logger=_loggers(out) if with_logger else False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=not args.fast_dev_run,
        fast_dev_run=args.fast_dev_run,
        enable_progress_bar=args.progress_bar,
        deterministic=args.deterministic or None,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(min(10, steps), 1),
        enable_model_summary=False,
        **limits,
    )
    if args.batch_size % trainer.world_size:
        raise UsageError(
            f"--batch-size {args.batch_size} is the global batch and must be "
            f"divisible by the {trainer.world_size} processes"
        )
    if trainer.is_global_zero:
        if args.backend == "numpy" and torch.cuda.is_available():
            _say(
                "note: --backend numpy runs on CPU only (NumPy arrays live in host memory); "
                "the GPU stays idle. Use --backend torch or builtin to train on it."
            )
        n_params = sum(p.numel() for p in module.net.parameters() if p.requires_grad)
        _say(
            f"nn-twins train: recipe={args.recipe} backend={args.backend} model={args.model} "
            f"({n_params} trained parameters) epochs={args.epochs} precision={args.precision} "
            f"data={dm.num_train}/{dm.num_val}/{dm.num_test} train/val/test from "
            f"{args.data_dir}; {threads} CPU thread(s) per process; out={out}"
        )
    last = out / "checkpoints" / "last.ckpt"
    stop.armed = True
    trainer.fit(
        module, datamodule=dm, ckpt_path=str(last) if args.resume else None, weights_only=True
    )
    if cb["stopper"].stopped:
        if trainer.is_global_zero:
            _say(
                f"stopped after epoch {trainer.current_epoch} as asked (--stop-after-epochs); "
                f"continue with --resume"
            )
        return 0

    # Testing the best checkpoint restores its (earlier) history and timer state: keep ours.
    history = {k: list(v) for k, v in module.history.items()}
    timing = cb["timer"].state_dict()
    diagnostics = {k: list(v) for k, v in cb["diagnostics"].history.items()}
    best = cb.get("best")
    tested = best.best_model_path if best is not None and best.best_model_path else None
    if trainer.is_global_zero:
        views = "6-view" if args.tta_translate else "flip"
        _say(
            f"testing {'the best validation epoch' if tested else 'the last epoch'} on the "
            f"test split (single view and {views} test-time augmentation) ..."
        )
    trainer.test(module, datamodule=dm, ckpt_path=tested, weights_only=True, verbose=False)
    stop.armed = False
    module.history = history
    cb["timer"].load_state_dict(timing)
    cb["diagnostics"].history = diagnostics
    if trainer.is_global_zero:
        write_outputs(
            out,
            args,
            dm,
            module,
            trainer,
            cb["timer"],
            tested,
            time.perf_counter() - t_start,
            threads,
            trainer.num_training_batches,
            cb["diagnostics"].history,
        )
        check_finite_evaluation(module.test_results, out / "metrics.json")
    return 0


def check_finite_evaluation(res: dict, where: Path) -> None:
    bad = {
        k: v
        for k, v in res.items()
        if k.startswith("test_") and isinstance(v, float) and not math.isfinite(v)
    }
    if bad:
        shown = ", ".join(f"{k} {v}" for k, v in bad.items())
        raise NonFiniteEvaluationError(
            f"the final evaluation is not finite ({shown}); {where} records it as null. The "
            f"weights were saved, but they produce NaN or infinite scores: try a lower --lr, "
            f"float32 (--precision 32-true), or check the data."
        )


def _test_metrics(res: dict) -> dict:
    return {
        "test_acc": res.get("test_acc"),
        "test_acc_flip_tta": res.get("test_acc_flip_tta"),
        "test_acc_flip_translate_tta": res.get("test_acc_flip_translate_tta"),
        "test_loss": res.get("test_loss"),
        "num_test": res.get("num_test"),
    }


def _hardware(trainer, args, threads) -> dict:
    return {
        "accelerator": type(trainer.accelerator).__name__,
        "world_size": trainer.world_size,
        "precision": args.precision,
        "matmul_precision": args.matmul_precision,
        "torch_threads": threads,
        "cpu_cores_available": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor(),
    }


def write_outputs(
    out, args, dm, module, trainer, timer, tested, wall, threads, steps_per_epoch, diagnostics=None
):
    import torch

    from cifar_training import plots

    res = module.test_results
    net_state = {k: v.detach().cpu() for k, v in module.net.state_dict().items()}
    buf = io.BytesIO()
    torch.save(net_state, buf)
    atomic_write_bytes(out / "model.pt", buf.getvalue())
    c = module.config
    model_info = {
        "model": c["model"],
        "widths": c["widths"],
        "stem": c["stem"],
        "num_classes": c["num_classes"],
        "image_shape": c["image_shape"],
        "bn_momentum": c["bn_momentum"],
        "classes": dm.classes,
        "input_mean": [float(v) for v in dm.mean],
        "input_std": [float(v) for v in dm.std],
        "input_note": "x = (uint8 image (N, 3, H, W) / 255 - input_mean) / input_std",
    }
    atomic_write_text(out / "model.json", json.dumps(model_info, indent=2) + "\n")
    val = [v for v in module.history.get("val_epoch", [])]
    best_val = max(val, key=lambda r: r[2]) if val else None
    metrics = {
        "dataset": str(args.data_dir),
        "note": "accuracy on the test split",
        **_test_metrics(res),
        "tested_checkpoint": "best validation epoch" if tested else "last epoch",
        "best_val_acc": best_val[2] if best_val else None,
        "best_val_epoch": best_val[0] + 1 if best_val else None,
        "num_train": dm.num_train,
        "num_val": dm.num_val,
        "epochs": args.epochs,
        "epochs_completed": trainer.current_epoch,
        "optimizer_steps": trainer.global_step,
        "wall_time_s": wall,
        "train_time_s": timer.train_time,
        "train_images": timer.images,
        "train_images_per_s": timer.images / timer.train_time if timer.train_time else None,
        "backend": args.backend,
        "model": args.model,
        "seed": args.seed,
        "recipe_name": args.recipe,
        "recipe": {k: getattr(args, k) for k in RECIPES["best"] if k != "model"},
        "resumed": args.resume,
        "fast_dev_run": args.fast_dev_run,
        "hardware": _hardware(trainer, args, threads),
        "versions": _versions(),
        "confusion_matrix_flip_tta": res.get("confusion_flip_tta"),
        "classes": dm.classes,
        "history": {  # [epoch, loss, acc(, lr)] per epoch, as plotted in curves.png
            "train_epoch": module.history.get("train_epoch", []),
            "val_epoch": module.history.get("val_epoch", []),
        },
    }
    write_json(out / "metrics.json", metrics)
    title = f"{args.model} on {args.backend}"
    plots.plot_curves(module.history, out / "curves.png", steps_per_epoch, title)
    if res.get("confusion_flip_tta"):
        plots.plot_confusion(
            res["confusion_flip_tta"],
            dm.classes,
            out / "confusion_matrix.png",
            f"test confusion (flip TTA), {title}",
        )
    if diagnostics and diagnostics["update_ratio"]:
        plots.plot_update_ratio(
            diagnostics["update_ratio"], out / "update_ratio.png", steps_per_epoch, title
        )
    if diagnostics and diagnostics["activations"]:
        plots.plot_diagnostics(diagnostics, out / "diagnostics.png", steps_per_epoch, title)
    filters, what = module.net.trained_filters_rgb()
    plots.plot_filters(filters.float().cpu().numpy(), out / "filters.png", f"{what}, {title}")
    _say(
        f"test accuracy {_accuracies(res, args.tta_translate)}; "
        f"{metrics['train_images_per_s'] or 0:.0f} training images/s; wall {wall:.1f} s; "
        f"outputs in {out}"
    )


def _accuracies(res: dict, tta_translate: bool) -> str:
    six = f", 6-view TTA {_pct(res.get('test_acc_flip_translate_tta'))}" if tta_translate else ""
    return f"{_pct(res.get('test_acc'))} (flip TTA {_pct(res.get('test_acc_flip_tta'))}{six})"


def _pct(v) -> str:
    return f"{v:.2%}" if isinstance(v, float) and math.isfinite(v) else str(v)


# ----------------------------------------------------------------------------------------------
# --eval-only
# ----------------------------------------------------------------------------------------------


def evaluate(args, stop: StopRequest) -> int:
    """Test the finished run in --out (model.pt + model.json) on the test split; write
    eval_metrics.json. Normalization comes from model.json, as the run trained."""
    import torch

    from cifar_training.datamodule import CIFARDataModule
    from cifar_training.models import load_trained
    from cifar_training.module import CifarModule

    _quiet_lightning()
    out = Path(args.out)
    if not (out / "model.pt").is_file() or not (out / "model.json").is_file():
        raise UsageError(
            f"--eval-only: {out} holds no finished run (model.pt and model.json "
            f"are written when a run ends); finish it with --resume first"
        )
    threads = args.threads or default_threads(args.devices, args.accelerator)
    torch.set_num_threads(threads)
    try:
        net, info = load_trained(out)
    except Exception as e:
        raise UsageError(
            f"--eval-only: cannot load the run in {out} ({type(e).__name__}): "
            f"model.pt must be a state dict for model.json's network"
        ) from None
    dm = CIFARDataModule(
        args.data_dir,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        val_size=0,
        cache_dir=args.cache_dir,
        download=args.download,
        log=_say,
    )
    dm.prepare_data()
    dm.setup("test")
    if list(dm.classes) != list(info["classes"]) or list(dm.image_shape) != info["image_shape"]:
        raise UsageError(
            f"--eval-only: the data's classes/image shape ({dm.classes}, "
            f"{dm.image_shape}) differ from the run's ({info['classes']}, "
            f"{info['image_shape']})"
        )
    dm.mean, dm.std = (np.asarray(info[k], dtype=np.float64) for k in ("input_mean", "input_std"))
    module = CifarModule(
        backend=args.backend,
        model=info["model"],
        widths=info["widths"],
        stem=info["stem"],
        num_classes=info["num_classes"],
        image_shape=info["image_shape"],
        bn_momentum=info["bn_momentum"],
        classes=info["classes"],
    )
    module.net.load_state_dict(net.state_dict())
    module.tta_translate = args.tta_translate
    trainer = make_trainer(
        args,
        out,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=args.progress_bar,
        enable_model_summary=False,
        callbacks=[StopDuringTest(stop)],
        **(
            {"limit_test_batches": args.limit_test_batches}
            if args.limit_test_batches is not None
            else {}
        ),
    )
    t0 = time.perf_counter()
    stop.armed = True
    trainer.test(module, datamodule=dm, verbose=False)
    stop.armed = False
    res = module.test_results
    if trainer.is_global_zero:
        metrics = {
            "evaluated": str(out / "model.pt"),
            "dataset": str(args.data_dir),
            "backend": args.backend,
            **_test_metrics(res),
            "confusion_matrix_flip_tta": res.get("confusion_flip_tta"),
            "classes": dm.classes,
            "seconds": time.perf_counter() - t0,
            "hardware": _hardware(trainer, args, threads),
            "versions": _versions(),
        }
        write_json(out / "eval_metrics.json", metrics)
        _say(
            f"test accuracy {_accuracies(res, args.tta_translate)} on {res.get('num_test')} "
            f"test images; written to {out / 'eval_metrics.json'}"
        )
        check_finite_evaluation(res, out / "eval_metrics.json")
    return 0


# ----------------------------------------------------------------------------------------------


def _interrupted_message(e: RunInterrupted, args) -> str:
    last = Path(args.out) / "checkpoints" / "last.ckpt"
    what = SIGNAL_NAMES.get(e.signum, f"signal {e.signum}")
    if args.eval_only:
        return f"interrupted by {what} during --eval-only; nothing was written"
    if last.is_file():
        try:
            ckpt = read_checkpoint(last)
            where = f"in epoch {ckpt['epoch'] + 1}, after {ckpt['global_step']} optimizer steps"
        except CheckpointError:
            where = "its last save"
        return (
            f"interrupted by {what}: the run is saved in {last} ({where}); rerun the same "
            f"command with --resume to continue"
        )
    return f"interrupted by {what} before the first checkpoint: nothing to resume, start again"


def main(argv=None) -> int:
    import torch
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from cifar_training.datasets import DataError
    from cifar_training.module import NonFiniteLossError

    args = resolve_args(argv)
    threads_before = torch.get_num_threads()
    matmul_precision_before = torch.get_float32_matmul_precision()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    stop = StopRequest().install()
    try:
        return evaluate(args, stop) if args.eval_only else run(args, stop)
    except (DataError, UsageError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, NonFiniteEvaluationError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 1
    except RunInterrupted as e:
        if not _is_child_process():
            print(f"train.py: {_interrupted_message(e, args)}", file=sys.stderr, flush=True)
        return e.exit_code
    except SIGTERMException:  # Lightning's own SIGTERM stop, when it acts before ours
        e = RunInterrupted(signal.SIGTERM)
        if not _is_child_process():
            print(f"train.py: {_interrupted_message(e, args)}", file=sys.stderr, flush=True)
        return e.exit_code
    finally:  # main() called in-process (tests, notebooks) leaves torch's globals as they were
        stop.restore()
        torch.set_num_threads(threads_before)
        torch.set_float32_matmul_precision(matmul_precision_before)
        torch.use_deterministic_algorithms(deterministic_before)
