"""train.py's command line, resolved: the recipe with the flags given on top, and the rules of
the chosen backend and hardware applied (``resolve_args``).

The result is a plain ``argparse.Namespace`` holding every flag, the recipe's fields included
(``recipe_of`` gives them back as a ``Recipe``), plus ``notes``: what the resolution changed,
said once when the run starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from cifar_training.backends import BACKENDS, ops_class
from cifar_training.recipes import RECIPE_FIELDS, RECIPE_FOR_MODEL, RECIPES, Recipe
from cifar_training.train_parser import build_parser, chosen_recipe_name

# --accelerator values that name a device other than the CPU.
GPU_ACCELERATORS = ("gpu", "cuda", "mps", "tpu")


def resolve_args(argv=None) -> argparse.Namespace:
    """Parse ``argv`` (default: sys.argv[1:]); usage errors exit 2 with argparse's message."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(chosen_recipe_name(argv))
    args = parser.parse_args(argv)
    args.notes = []  # said once at the start of the run
    given = {k: getattr(args, k) for k in RECIPE_FIELDS if getattr(args, k) is not None}
    if args.recipe is None:
        args.recipe = RECIPE_FOR_MODEL[given.get("model", "default")]
    recipe = RECIPES[args.recipe]
    if given.get("model", recipe.model) != recipe.model:
        parser.error(
            f"--recipe {args.recipe} is for --model {recipe.model}, got --model "
            f"{given['model']}; the recipes for {given['model']}: "
            f"{', '.join(n for n, r in RECIPES.items() if r.model == given['model'])}"
        )
    recipe = dataclasses.replace(recipe, **given)
    if "precision" not in given:
        recipe = _precision_this_machine_runs(recipe, args)
    vars(args).update(dataclasses.asdict(recipe))
    if args.out is None:
        args.out = os.path.join("runs", f"{args.model}-{args.backend}-seed{args.seed}")
    _apply_backend_rules(args, parser)
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite contradict each other")
    if args.devices != "auto":
        try:
            args.devices = int(args.devices)
        except ValueError:
            pass  # Lightning also takes "0,1"-style lists
    return args


def recipe_of(args: argparse.Namespace) -> Recipe:
    """The Recipe a resolved command line trains with."""
    return Recipe(**{k: getattr(args, k) for k in RECIPE_FIELDS})


def _precision_this_machine_runs(recipe: Recipe, args) -> Recipe:
    """The recipe's precision, or 32-true (with a note) where the backend cannot compute in it
    or it is bfloat16 and this hardware has no fast bfloat16."""
    ops = ops_class(args.backend)
    why = None
    if not ops.supports_precision(recipe.precision):
        why = f"the {ops.name} backend computes in {ops.precisions_in_words}"
    elif "bf16" in recipe.precision and not bf16_available(args.accelerator):
        why = "this hardware has no fast bfloat16 (on CPU that needs AVX-512)"
    if why is None:
        return recipe
    args.notes.append(
        f"the {args.recipe} recipe trains in {recipe.precision}, but {why}: "
        f"training in float32 (32-true) instead"
    )
    return dataclasses.replace(recipe, precision="32-true")


def _apply_backend_rules(args, parser: argparse.ArgumentParser) -> None:
    """The backend's rules (``backends.Ops``): where it runs, what it computes in, and the
    memory format it prefers."""
    ops = ops_class(args.backend)
    if ops.cpu_only:
        if args.accelerator.lower() in GPU_ACCELERATORS:
            on_gpu = " / ".join(b for b in BACKENDS if not ops_class(b).cpu_only)
            parser.error(
                f"--backend {args.backend} runs on CPU only, so --accelerator "
                f"{args.accelerator} has nothing to do. Use --accelerator cpu (the default for "
                f"this backend), or --backend {on_gpu} to train on a GPU."
            )
        args.accelerator = "cpu"
    if not ops.supports_precision(args.precision):
        parser.error(
            f"--backend {args.backend} computes in {ops.precisions_in_words}: --precision "
            f"must be one of {ops.precisions}, got {args.precision!r}"
        )
    args.channels_last = ops.uses_channels_last(args.channels_last)


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
