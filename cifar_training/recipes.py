"""Training recipes as data: every hyperparameter of a train.py run, its unit and why it is set.

A ``Recipe`` is frozen: one instance per named recipe (``RECIPES``), and a run's own values are
``dataclasses.replace(recipe, **flags_given)``. Every field is also a command-line flag of
train.py, generated from the field itself (``cifar_training.train_parser``): its type and range
come from ``parse`` or ``choices``, its help from ``what`` and ``unit`` below, so a new field is
a new flag with no parser code. The LightningModule (``cifar_training.module.CifarModule``)
takes its hyperparameters from a Recipe, so its defaults are the default recipe's.

The recipes:

- ``best``: the best configuration found within 15 minutes on 2 CPU cores (README "Results");
  the default of ``--model default``.
- ``classic``: the earlier default (widths 32/64/128, float32, a 45,000/5,000 split), kept so
  its rows in README and BENCHMARKS.md stay reproducible; the benchmarks time its step.
- ``three-layer``: CS231n's ``ThreeLayerConvNet`` trained as the course trains it (Adam, no
  augmentation); the default of ``--model three-layer``.

Imports nothing but the standard library and ``argtypes``: the vocabulary of each choice field
(``OPTIMIZERS``, ``SCHEDULES``, ...) is defined here and imported by the modules that
implement it.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cifar_training import argtypes

# The values a choice field can name (the implementing modules import these).
MODELS = ("default", "three-layer")
STEMS = ("whiten", "conv")
BN_SCALES = ("trained", "fixed")
FLIP_MODES = ("alternating", "random", "none")
OPTIMIZERS = ("nesterov", "sgd_momentum", "sgd", "adam", "rmsprop")
SCHEDULES = ("linear", "constant")
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
# The optimizers whose step is proportional to the learning rate, for which the head scale
# moves into the head's learning rate (``models.param_groups``); Adam and RMSprop normalize
# the step, so a scaled learning rate would not scale it.
SGD_FAMILY = ("sgd", "sgd_momentum", "nesterov")
# Adam's (beta1, beta2): CS231n's defaults. No recipe changes them, so they are no field.
ADAM_BETAS = (0.9, 0.999)


def hyperparameter(
    what: str,
    unit: str | None,
    *,
    parse: Callable[[str], object] | None = None,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
):
    """A Recipe field (no default: every recipe names every value).

    what: what the value does and why it exists (the --help text); unit: what its number
    counts (also in --help; None for names and on/off switches); parse: an ``argtypes``
    validator turning the command-line text into the value (it also checks every recipe's own
    value); choices: the names a string field accepts (instead of ``parse``); metavar: the
    --help placeholder.
    """
    if (parse is None) == (choices is None):
        raise TypeError("a hyperparameter takes exactly one of parse= or choices=")
    if unit is None and parse not in (None, argtypes.on_off):
        raise TypeError(f"a number needs its unit: {what!r}")
    return field(
        metadata={
            "what": what,
            "unit": unit,
            "parse": parse,
            "choices": choices,
            "metavar": metavar,
        }
    )


@dataclass(frozen=True)
class Recipe:
    """Every hyperparameter of a training run: a field each, with its unit and why it exists
    (``hyperparameter``); "step" is one optimizer step (one global batch)."""

    # -- the network -------------------------------------------------------------------------
    model: str = hyperparameter(
        "the network: 'default' is the airbench-style conv net, 'three-layer' CS231n's "
        "ThreeLayerConvNet",
        None,
        choices=MODELS,
    )
    widths: tuple[int, ...] = hyperparameter(
        "channel widths of the default model's three blocks: wider learns more per epoch "
        "and costs more per image",
        "channels per block",
        parse=argtypes.widths,
        metavar="W1,W2,W3",
    )
    stem: str = hyperparameter(
        "the default model's first layer: a fixed 2x2 patch-whitening conv fitted to the "
        "training images (decorrelated inputs train faster), or a trained 3x3 conv + batchnorm",
        None,
        choices=STEMS,
    )
    bn_momentum: float = hyperparameter(
        "batchnorm running-average momentum, CS231n convention (running = m * running + "
        "(1 - m) * batch; PyTorch's momentum is 1 - m): how long the evaluation statistics "
        "remember",
        "fraction kept per step",
        parse=argtypes.fraction,
    )
    head_scale: float = hyperparameter(
        "output scale of the default model's classifier (Page's fast ResNet, airbench): "
        "small logits keep the early softmax from saturating; applied as a head init that "
        "much smaller and, for SGD-family optimizers, head lr * scale^2",
        "multiplier on the logits",
        parse=argtypes.positive_float,
    )
    bn_scale: str = hyperparameter(
        "the default model's batchnorm gamma: trained, or fixed at 1 (airbench: one "
        "parameter fewer per channel to learn)",
        None,
        choices=BN_SCALES,
    )
    dirac_init: bool = hyperparameter(
        "start each block conv's first C_in filters as the identity (airbench): the block "
        "begins close to passing its input through",
        None,
        parse=argtypes.on_off,
        metavar="on|off",
    )

    # -- the data ----------------------------------------------------------------------------
    val_size: int = hyperparameter(
        "training images held out for validation and model selection (the best validation "
        "epoch is tested); 0 trains on all of them and tests the last epoch",
        "images",
        parse=argtypes.nonneg_int,
    )
    crop_pad: int = hyperparameter(
        "random translation of each training image (reflect padding): augmentation against "
        "overfitting",
        "pixels, at most",
        parse=argtypes.nonneg_int,
    )
    flip: str = hyperparameter(
        "horizontal flips of the training images: every other epoch per image (alternating: "
        "each image seen both ways within two epochs), coin flips (random), or none",
        None,
        choices=FLIP_MODES,
    )

    # -- the optimization --------------------------------------------------------------------
    epochs: int = hyperparameter(
        "passes over the training split; the schedule spans all of them",
        "epochs",
        parse=argtypes.positive_int,
    )
    batch_size: int = hyperparameter(
        "global batch, split over the DDP processes: larger batches use the cores better "
        "and need a larger learning rate",
        "images per step",
        parse=argtypes.positive_int,
    )
    optimizer: str = hyperparameter(
        "update rule (numpy_impl.optim / torch_impl.optim / torch.optim, by --backend)",
        None,
        choices=OPTIMIZERS,
    )
    lr: float = hyperparameter(
        "peak learning rate, CS231n's learning_rate (the schedule scales it per step)",
        "parameter change per unit gradient",
        parse=argtypes.nonneg_float,
    )
    momentum: float = hyperparameter(
        "velocity decay of sgd_momentum and nesterov, CS231n's form (v = mu * v - lr * dw); "
        "Adam's beta1 is fixed at 0.9",
        "fraction of the velocity kept per step",
        parse=argtypes.fraction,
    )
    weight_decay: float = hyperparameter(
        "L2 coefficient on conv/affine weights, added to their gradient (CS231n's reg covers "
        "weight matrices only, so biases, gamma and beta are not decayed)",
        "gradient per unit weight",
        parse=argtypes.nonneg_float,
    )
    bn_bias_lr_scale: float = hyperparameter(
        "learning-rate multiplier of the batchnorm betas (airbench trains them 64x faster "
        "than the weights)",
        "multiplier on lr",
        parse=argtypes.nonneg_float,
    )
    label_smoothing: float = hyperparameter(
        "eps of the smoothed target (1 - eps) onehot + eps / C: keeps the network from "
        "driving its logits to extremes on the training labels",
        "probability mass spread over the classes",
        parse=argtypes.fraction,
    )
    schedule: str = hyperparameter(
        "learning-rate schedule: linear (warmup from 0.2 x lr to lr, then linear decay to 0 "
        "at the last step) or constant",
        None,
        choices=SCHEDULES,
    )
    warmup: float = hyperparameter(
        "share of the steps spent warming up (linear schedule): large steps on the random "
        "initial weights would diverge",
        "fraction of all steps",
        parse=argtypes.fraction,
    )

    # -- the arithmetic and the test ---------------------------------------------------------
    precision: str = hyperparameter(
        "Lightning's precision; a recipe's bfloat16 value falls back to 32-true, with a note "
        "at the start, where bfloat16 is not fast (on CPU that needs AVX-512) or the backend "
        "cannot compute in it; a value given as a flag is used as given",
        None,
        choices=PRECISIONS,
        metavar="PRECISION",
    )
    tta_translate: bool = hyperparameter(
        "also report 6-view test-time augmentation (flip x {none, 1 px up-left, 1 px "
        "down-right}), besides single view and flip: 6 forward passes per test image "
        "instead of 2",
        None,
        parse=argtypes.on_off,
        metavar="on|off",
    )

    def __post_init__(self):
        for f in dataclasses.fields(self):
            check_value(f, getattr(self, f.name))

    def as_flags(self) -> list[str]:
        """The recipe as train.py arguments (``--lr 0.4 ...``): what --recipe stands for."""
        return [
            arg
            for f in dataclasses.fields(self)
            for arg in (f"--{f.name.replace('_', '-')}", flag_text(getattr(self, f.name)))
        ]


def flag_text(value) -> str:
    """A field's value as it is written on the command line."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def check_value(f: dataclasses.Field, value) -> None:
    """Raise ValueError naming the field unless ``value`` is what its flag would parse to."""
    meta, flag = f.metadata, f"Recipe.{f.name} (--{f.name.replace('_', '-')})"
    if meta["choices"]:
        if not (isinstance(value, str) and value in meta["choices"]):
            raise ValueError(f"{flag} must be one of {meta['choices']}, got {value!r}")
        return
    annotation = f.type if isinstance(f.type, str) else f.type.__name__
    expected = f"{annotation} ({meta['unit']})" if meta["unit"] else annotation
    python_type = {"bool": bool, "int": int, "float": float}.get(annotation, tuple)
    if not (type(value) is python_type or (python_type is float and type(value) is int)):
        raise ValueError(f"{flag} must be {expected}, got {value!r}")
    try:
        parsed = meta["parse"](flag_text(value))
    except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
        raise ValueError(f"{flag} {e}") from None  # the validator's words: "must be >= 0, got -1"
    if parsed != value:
        raise ValueError(f"{flag} must be {expected}, got {value!r}")


RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(Recipe))


# ----------------------------------------------------------------------------------------------
# The named recipes
# ----------------------------------------------------------------------------------------------

BEST = Recipe(
    model="default",
    widths=(48, 96, 192),  # in equal wall time, wider beat more epochs (README "Results")
    stem="whiten",  # airbench's: whitened inputs reach an accuracy in fewer epochs
    bn_momentum=0.9,  # CS231n's default
    head_scale=0.125,  # Page's fast ResNet's output scale (airbench uses 1/9)
    bn_scale="trained",  # airbench's fixed gamma showed no clear gain here (README "Results")
    dirac_init=False,  # likewise
    val_size=0,  # every training image trains; the last epoch is tested
    crop_pad=2,  # airbench's translate 2
    flip="alternating",  # airbench's: each image seen both ways within two epochs
    epochs=14,  # fits 15 minutes on the 2-core AVX-512 machine (README "Results")
    batch_size=512,  # 97 steps per epoch on 50,000 images; lr 0.4 goes with it
    optimizer="nesterov",  # airbench's SGD with Nesterov momentum
    lr=0.4,  # the classic recipe's peak, kept at these widths
    momentum=0.9,
    weight_decay=5e-4,  # a common CIFAR-10 value with SGD
    bn_bias_lr_scale=1.0,  # airbench's 64 showed no clear gain here (README "Results")
    label_smoothing=0.2,  # airbench's
    schedule="linear",  # airbench's triangular schedule, warmup then decay to 0
    warmup=0.2,  # near airbench's peak at 23% of the run
    precision="bf16-mixed",  # no accuracy cost, faster where bfloat16 is fast (README "Results")
    tta_translate=True,  # airbench's level-2 TTA: the 6-view score costs ~3x one test pass
)
CLASSIC = dataclasses.replace(
    BEST,
    widths=(32, 64, 128),
    epochs=15,
    val_size=5000,  # a held-out split picks the best epoch
    precision="32-true",  # float32 everywhere, comparable on every CPU
    tta_translate=False,
)
THREE_LAYER = dataclasses.replace(
    CLASSIC,  # its widths, stem, head and batchnorm fields do not apply to this model
    model="three-layer",
    epochs=5,
    batch_size=128,
    optimizer="adam",  # the course's optimizer and learning rate for this net
    lr=1e-3,
    weight_decay=0.0,
    label_smoothing=0.0,
    schedule="constant",
    warmup=0.0,
    crop_pad=0,  # no augmentation, as in the course
    flip="none",
    head_scale=1.0,
)

RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {"best": BEST, "classic": CLASSIC, "three-layer": THREE_LAYER}
)
# The recipe a --model trains with when no --recipe is given.
RECIPE_FOR_MODEL: Mapping[str, str] = MappingProxyType(
    {"default": "best", "three-layer": "three-layer"}
)
DEFAULT_RECIPE_NAME = RECIPE_FOR_MODEL["default"]
DEFAULT_RECIPE = RECIPES[DEFAULT_RECIPE_NAME]
