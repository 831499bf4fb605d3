"""train.py's argument parser: the recipe's flags, generated from ``Recipe``'s fields, and the
flags of the run itself (data, hardware, run control), written out below.

A recipe flag's default is None, so ``train_args.resolve_args`` can tell a value given on the
command line (which wins) from one the recipe supplies; its --help shows the chosen recipe's
value (``build_parser(recipe_name)``).
"""

from __future__ import annotations

import argparse
import dataclasses
import textwrap

from cifar_training import argtypes
from cifar_training.backends import BACKENDS
from cifar_training.datasets import LAYOUTS
from cifar_training.recipes import (
    DEFAULT_RECIPE_NAME,
    RECIPE_FOR_MODEL,
    RECIPES,
    flag_text,
)
from cifar_training.threads import MATMUL_PRECISIONS


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def chosen_recipe_name(argv) -> str:
    """The recipe that --recipe / --model pick in ``argv`` (for --help's defaults); invalid or
    missing values give the default recipe, and the full parser reports them."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe")
    pre.add_argument("--model")
    known, _ = pre.parse_known_args(argv)
    if known.recipe in RECIPES:
        return known.recipe
    return RECIPE_FOR_MODEL.get(known.model, DEFAULT_RECIPE_NAME)


def add_recipe_arguments(parser: argparse.ArgumentParser, recipe_name: str) -> None:
    """One flag per ``Recipe`` field: its parse function or choices, its documentation and
    unit as help, the value of recipe ``recipe_name`` shown as the default (the parsed default
    stays None: "not given")."""
    shown = RECIPES[recipe_name]
    group = parser.add_argument_group(
        f"recipe values (each overrides the --recipe's; the defaults shown are the "
        f"{recipe_name} recipe's)"
    )
    for f in dataclasses.fields(shown):
        meta = f.metadata
        value = flag_text(getattr(shown, f.name))
        unit = f"unit: {meta['unit']}; " if meta["unit"] else ""
        help_text = f"{meta['what']} ({unit}default: {value})"
        options: dict = {"default": None, "metavar": meta["metavar"]}
        if meta["choices"]:
            options["choices"] = meta["choices"]
        else:
            options["type"] = meta["parse"]
        if f.type in ("bool", bool):  # --flag alone means on
            options.update(nargs="?", const=True)
            help_text += "; the flag alone means on"
        group.add_argument(flag_name(f.name), help=help_text.replace("%", "%%"), **options)


def describe_recipe(name: str) -> str:
    """One paragraph of --help's epilog on recipe ``name``."""
    r = RECIPES[name]
    if r.model == "three-layer":
        return (
            f"{name}: CS231n's ThreeLayerConvNet, {r.epochs} epochs, batch "
            f"{r.batch_size}, {r.optimizer} lr {r.lr}, no augmentation, "
            f"{r.val_size} validation images, float32."
        )
    return (
        f"{name}: default model at widths {flag_text(r.widths)}, "
        f"{r.epochs} epochs, batch {r.batch_size}, {r.optimizer} momentum "
        f"{r.momentum}, lr {r.lr} (linear warmup over {r.warmup} of the steps, then "
        f"linear decay to 0), weight decay {r.weight_decay}, label smoothing "
        f"{r.label_smoothing}, head scale {r.head_scale}, translate +-{r.crop_pad} "
        f"px + {r.flip} flips, {r.val_size or 'no'} validation images, "
        f"{r.precision}"
        f"{' (float32 where bf16 is not fast)' if 'bf16' in r.precision else ''}"
        f"{', 6-view test-time augmentation' if r.tta_translate else ''}."
    )


def build_parser(recipe_name: str = DEFAULT_RECIPE_NAME) -> argparse.ArgumentParser:
    """The parser of train.py; --help shows recipe ``recipe_name``'s values as defaults."""
    recipes = "\n".join(
        textwrap.fill(describe_recipe(n), 79, subsequent_indent="  ") for n in RECIPES
    )
    parser = argparse.ArgumentParser(
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
    _add_run_arguments(parser)
    add_recipe_arguments(parser, recipe_name)
    _add_data_arguments(parser)
    _add_hardware_arguments(parser)
    _add_run_control_arguments(parser)
    return parser


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what runs")
    group.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        default=None,
        help=f"a named set of values for every recipe flag below (default: "
        f"{RECIPE_FOR_MODEL['default']}; {RECIPE_FOR_MODEL['three-layer']} with --model "
        f"three-layer)",
    )
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="who computes the layers and the update (default: torch)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="initial weights, batch order and augmentation (default: 0); the "
        "validation split is fixed (seed 0) whatever this is",
    )


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data-dir",
        default="data",
        help="CIFAR-10 in any accepted layout (below) (default: ./data)",
    )
    group.add_argument(
        "--download",
        action="store_true",
        help="download the official python batches into --data-dir first",
    )
    group.add_argument(
        "--cache-dir",
        default=None,
        help="where decoded images (ImageFolder trees, archives) are cached as .npz (default: "
        "$NN_TWINS_CACHE or ~/.cache/nn-twins)",
    )
    group.add_argument(
        "--train-subset",
        type=argtypes.positive_int,
        default=None,
        metavar="N",
        help="train on a fixed random N of the training images (short runs; the "
        "validation and test splits are unchanged)",
    )
    group.add_argument(
        "--eval-batch-size",
        type=argtypes.positive_int,
        default=None,
        help="per-process batch size for validation/test (default: --batch-size)",
    )


def _add_hardware_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hardware (passed to Lightning)")
    group.add_argument(
        "--accelerator",
        default="auto",
        help="cpu, gpu, auto (default: auto; CPU-only backends such as numpy always run on cpu)",
    )
    group.add_argument(
        "--devices",
        type=argtypes.devices,
        default="auto",
        help="number of devices/processes, e.g. 2 with --strategy ddp on CPU (gloo)",
    )
    group.add_argument("--strategy", default="auto", help="e.g. ddp (default: auto)")
    group.add_argument(
        "--matmul-precision",
        choices=MATMUL_PRECISIONS,
        default="highest",
        help="torch.set_float32_matmul_precision for float32 products (torch_impl's "
        "conv and affine are matmuls): 'medium' lets PyTorch route them to oneDNN, "
        "which the setting allows to compute in bfloat16 (what it does on which CPU: "
        "BENCHMARKS.md) (default: highest)",
    )
    group.add_argument(
        "--threads",
        type=argtypes.positive_int,
        default=None,
        help="CPU threads per process (default: available cores / processes)",
    )
    group.add_argument(
        "--channels-last",
        nargs="?",
        const="on",
        default="auto",
        choices=("auto", "on", "off"),
        help="channels_last memory format for images and conv weights; auto = on "
        "for the builtin and torch backends (their convolutions are faster in it), off "
        "for numpy (default: auto)",
    )
    group.add_argument(
        "--deterministic",
        action="store_true",
        help="torch.use_deterministic_algorithms (bit-reproducible CPU runs)",
    )


def _add_run_control_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run control")
    group.add_argument(
        "--out", default=None, help="output directory (default: runs/<model>-<backend>-seed<seed>)"
    )
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from checkpoints/last.ckpt (end of the last "
        "completed epoch); the other flags must match the interrupted run's",
    )
    group.add_argument(
        "--overwrite", action="store_true", help="start over in an --out that already holds a run"
    )
    group.add_argument(
        "--eval-only",
        action="store_true",
        help="do not train: test the finished run in --out (its model.pt) on the "
        "test split, with --tta-translate if asked, and write eval_metrics.json",
    )
    group.add_argument(
        "--save-every-n-steps",
        type=argtypes.positive_int,
        default=None,
        metavar="N",
        help="also save checkpoints/last.ckpt every N optimizer steps (long epochs "
        "on slow backends); it is always saved at the end of every epoch",
    )
    group.add_argument(
        "--fast-dev-run",
        action="store_true",
        help="one batch of train/val/test, no checkpoints (smoke test)",
    )
    for split, what in (
        (
            "train",
            "train on N batches (or this fraction) per epoch; the schedule shrinks to "
            "match (smoke runs, throughput checks)",
        ),
        ("val", "validate on N batches (or this fraction); 0 skips validation"),
        ("test", "test on N batches (or this fraction)"),
    ):
        group.add_argument(
            f"--limit-{split}-batches",
            type=argtypes.limit,
            default=None,
            metavar="N|FRAC",
            help=what,
        )
    group.add_argument(
        "--stop-after-epochs",
        type=argtypes.positive_int,
        default=None,
        metavar="N",
        help="stop after N epochs as if interrupted, keeping the schedule of "
        "--epochs (to test --resume)",
    )
    group.add_argument(
        "--diagnostics",
        action="store_true",
        help="also record, every 10 steps, each layer's activation mean/std and "
        "fraction of dead ReLU units and each weight's gradient norm (logs/metrics.csv, "
        "diagnostics.png); the update/weight ratio (update_ratio.png) is always "
        "recorded",
    )
    group.add_argument(
        "--no-progress-bar",
        dest="progress_bar",
        action="store_false",
        help="no progress bar (logs only)",
    )
