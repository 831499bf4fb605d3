"""Recipes as data: every ``Recipe`` field is a train.py flag (generated, documented with its unit,
overriding the recipe), the LightningModule's defaults are the default recipe's, no library
module imports the command line, and the CLI asks the backend for its rules."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_training import argtypes, train_args, train_parser
from cifar_training.backends import BACKENDS, NumpyOps, TorchOps, ops_class
from cifar_training.recipes import (
    DEFAULT_RECIPE,
    RECIPE_FIELDS,
    RECIPE_FOR_MODEL,
    RECIPES,
    Recipe,
    flag_text,
    hyperparameter,
)

REPO = Path(__file__).resolve().parents[1]
FIELDS = dataclasses.fields(Recipe)


def _unwrapped(text: str) -> str:
    """``text`` with argparse's line wrapping undone (it also breaks lines after hyphens)."""
    return " ".join(text.split()).replace("- ", "-")


def _help_text(recipe_name="best") -> str:
    return _unwrapped(train_parser.build_parser(recipe_name).format_help())


def _other_value(f: dataclasses.Field, value):
    """A valid value of field ``f`` different from ``value``."""
    if f.metadata["choices"]:
        return next(c for c in f.metadata["choices"] if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, tuple):
        return tuple(v + 1 for v in value)
    if isinstance(value, int):
        return value + 1
    return value / 2 if value else 0.5  # stays inside [0, 1) and > 0 where required


# ----------------------------------------------------------------------------------------------
# Recipe -> argparse
# ----------------------------------------------------------------------------------------------


def test_every_field_has_a_flag_documented_with_its_unit_and_the_recipes_value():
    for name in RECIPES:
        parser = train_parser.build_parser(name)
        help_by_flag = {s: a.help for a in parser._actions for s in a.option_strings}
        text = _help_text(name)
        for f in FIELDS:
            flag = "--" + f.name.replace("_", "-")
            assert flag in help_by_flag and f"{flag} " in text, flag
            entry = help_by_flag[flag] % {}  # as --help prints it ("%%" -> "%")
            assert _unwrapped(entry) in text  # printed
            assert f.metadata["what"] in entry, flag
            if f.metadata["unit"] is not None:
                assert f"unit: {f.metadata['unit']}" in entry, flag
            assert f"default: {flag_text(getattr(RECIPES[name], f.name))}" in entry, (name, flag)
        assert f"defaults shown are the {name} recipe's" in text


def test_numbers_have_units():
    for f in FIELDS:
        if f.metadata["parse"] not in (None, argtypes.on_off):
            assert f.metadata["unit"], f.name


def test_help_shows_the_recipe_that_model_or_recipe_picks():
    assert train_parser.chosen_recipe_name([]) == "best"
    assert train_parser.chosen_recipe_name(["--recipe", "classic"]) == "classic"
    assert train_parser.chosen_recipe_name(["--model", "three-layer"]) == "three-layer"
    assert train_parser.chosen_recipe_name(["--recipe", "nope", "--lr", "1"]) == "best"


@pytest.mark.parametrize("field_name", [n for n in RECIPE_FIELDS if n != "model"])
def test_a_flag_overrides_its_recipe_value_and_nothing_else(field_name):
    f = next(f for f in FIELDS if f.name == field_name)
    for name in ("best", "three-layer"):
        base = RECIPES[name]
        new = _other_value(f, getattr(base, field_name))
        flag = "--" + field_name.replace("_", "-")
        # --precision given explicitly is never replaced (the bf16 fallback is for the recipe's
        # own value), so give it in both runs.
        precision = [] if field_name == "precision" else ["--precision", base.precision]
        args = train_args.resolve_args(["--recipe", name, *precision, flag, flag_text(new)])
        assert train_args.recipe_of(args) == dataclasses.replace(base, **{field_name: new})


def test_model_picks_its_recipe_and_a_recipe_for_another_model_is_refused(capsys):
    for model, name in RECIPE_FOR_MODEL.items():
        args = train_args.resolve_args(["--model", model])
        assert args.recipe == name and args.model == model
    with pytest.raises(SystemExit):
        train_args.resolve_args(["--recipe", "best", "--model", "three-layer"])
    assert "is for --model default" in capsys.readouterr().err


def test_a_recipe_as_flags_is_the_recipe():
    for name, recipe in RECIPES.items():
        base = RECIPE_FOR_MODEL[recipe.model]  # another recipe for the same model, if any
        args = train_args.resolve_args(["--recipe", base, *recipe.as_flags()])
        assert train_args.recipe_of(args) == recipe, name


def test_on_off_flags_alone_mean_on():
    on_off = [f.name for f in FIELDS if f.metadata["parse"] is argtypes.on_off]
    assert on_off
    for name in on_off:
        args = train_args.resolve_args(["--recipe", "classic", "--" + name.replace("_", "-")])
        assert getattr(args, name) is True, name


def test_a_new_field_becomes_a_flag_without_parser_code(monkeypatch):
    extended = dataclasses.make_dataclass(
        "ExtendedRecipe",
        [
            (
                "ema_decay",
                float,
                hyperparameter(
                    "decay of an average of the weights",
                    "fraction per step",
                    parse=argtypes.fraction,
                ),
            )
        ],
        bases=(Recipe,),
        frozen=True,
    )
    recipe = extended(**dataclasses.asdict(DEFAULT_RECIPE), ema_decay=0.99)
    monkeypatch.setattr(train_parser, "RECIPES", {"best": recipe})
    parser = train_parser.build_parser("best")
    text = " ".join(parser.format_help().split())
    assert "--ema-decay EMA_DECAY decay of an average of the weights" in text
    assert "unit: fraction per step; default: 0.99" in text
    assert parser.parse_args(["--ema-decay", "0.5"]).ema_decay == 0.5
    assert parser.parse_args([]).ema_decay is None  # "not given": the recipe's value applies
    with pytest.raises(SystemExit):
        parser.parse_args(["--ema-decay", "1.5"])


# ----------------------------------------------------------------------------------------------
# The recipe's own checks
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change,fragment",
    [
        ({"lr": -1.0}, "Recipe.lr (--lr) must be >= 0, got -1.0"),
        ({"optimizer": "adamw"}, "Recipe.optimizer (--optimizer) must be one of"),
        ({"widths": [32, 64, 128]}, "Recipe.widths (--widths) must be tuple[int, ...]"),
        ({"widths": (32, 0, 128)}, "expected comma-separated positive ints"),
        ({"epochs": 2.5}, "Recipe.epochs (--epochs) must be int (epochs), got 2.5"),
        ({"epochs": True}, "must be int (epochs), got True"),
        ({"dirac_init": 1}, "Recipe.dirac_init (--dirac-init) must be bool, got 1"),
        ({"momentum": 1.0}, "must lie in [0, 1), got 1.0"),
        ({"head_scale": 0.0}, "Recipe.head_scale (--head-scale) must be a positive number"),
        ({"precision": "bf17"}, "Recipe.precision (--precision) must be one of"),
    ],
)
def test_a_recipe_refuses_a_value_its_flag_would_refuse(change, fragment):
    with pytest.raises(ValueError) as info:
        dataclasses.replace(DEFAULT_RECIPE, **change)
    assert fragment in str(info.value)


def test_recipes_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RECIPES["best"].lr = 1.0
    with pytest.raises(TypeError):
        RECIPES["mine"] = DEFAULT_RECIPE
    assert DEFAULT_RECIPE is RECIPES[RECIPE_FOR_MODEL["default"]]
    assert all(RECIPES[name].model == model for model, name in RECIPE_FOR_MODEL.items())


def test_an_int_is_a_float_fields_value():
    assert dataclasses.replace(DEFAULT_RECIPE, lr=1).lr == 1


# ----------------------------------------------------------------------------------------------
# The LightningModule takes the recipe
# ----------------------------------------------------------------------------------------------


def test_module_defaults_are_the_default_recipe():
    import inspect

    import torch

    from cifar_training.models import build_net
    from cifar_training.module import CifarModule

    params = set(inspect.signature(CifarModule.__init__).parameters)
    assert not params & set(RECIPE_FIELDS), "a hyperparameter with its own default"
    module = CifarModule()
    assert module.recipe == DEFAULT_RECIPE and module.tta_translate == DEFAULT_RECIPE.tta_translate
    for k, v in dataclasses.asdict(DEFAULT_RECIPE).items():
        assert module.config[k] == (list(v) if isinstance(v, tuple) else v), k
    # The network is the recipe's: its widths, and a head head_scale times smaller than the
    # unscaled one from the same seed.
    plain = build_net("default", DEFAULT_RECIPE.widths, seed=0, head_scale=1.0)
    assert module.net.head.w.shape == plain.head.w.shape
    torch.testing.assert_close(module.net.head.w, DEFAULT_RECIPE.head_scale * plain.head.w)
    # The optimizer's groups: the head learns at lr * head_scale^2 (SGD family); "initial_lr"
    # is the schedule's peak, before its warmup factor.
    module.total_steps = 10
    groups = module.configure_optimizers()["optimizer"].param_groups
    lrs = sorted({g["initial_lr"] for g in groups})
    assert lrs == pytest.approx(sorted({DEFAULT_RECIPE.lr, DEFAULT_RECIPE.lr * 0.125**2}))


def test_module_takes_any_recipe():
    from cifar_training.module import CifarModule

    three = RECIPES["three-layer"]
    module = CifarModule(three, backend="builtin", image_shape=(3, 16, 16), seed=1)
    assert module.recipe is three and type(module.net).__name__ == "ThreeLayerConvNet"
    assert module.configure_optimizers().param_groups[0]["lr"] == three.lr  # constant: no sched
    with pytest.raises(TypeError, match="recipe must be a cifar_training.recipes.Recipe, got dict"):
        CifarModule({"lr": 0.1})


# ----------------------------------------------------------------------------------------------
# Library modules do not import the command line
# ----------------------------------------------------------------------------------------------

ENTRY_POINTS = {"cifar_training/cli.py", "cifar_training/train_entry.py", "train.py"}


def _imported_modules(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def test_no_library_module_imports_the_cli():
    offenders = []
    for path in sorted(REPO.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(("tests/", ".")) or rel in ENTRY_POINTS or "/." in rel:
            continue
        imported = set(_imported_modules(ast.parse(path.read_text(), rel)))
        if "cifar_training.cli" in imported:
            offenders.append(rel)
    assert not offenders, offenders


def test_recipes_and_the_benchmarks_recipe_load_neither_torch_nor_the_cli():
    """The benchmarks read a recipe before they import torch (thread settings come first)."""
    code = (
        "import sys\n"
        "import benchmarks._common as C\n"
        "assert C.train_recipe('default', cheap=True)['widths'] == (32, 64, 128)\n"
        "loaded = {'torch', 'cifar_training.cli'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


# ----------------------------------------------------------------------------------------------
# Backend rules live on the backend
# ----------------------------------------------------------------------------------------------


def _refused(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        train_args.resolve_args(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backends_rules_decide_accelerator_precision_and_memory_format(backend, capsys):
    ops = ops_class(backend)
    args = train_args.resolve_args(["--backend", backend, "--precision", "32-true"])
    assert args.channels_last is ops.channels_last_by_default
    assert (args.accelerator == "cpu") if ops.cpu_only else (args.accelerator == "auto")
    gpu = ["--backend", backend, "--accelerator", "gpu", "--precision", "32-true"]
    if ops.cpu_only:
        assert f"--backend {backend} runs on CPU only" in _refused(gpu, capsys)
    else:
        assert train_args.resolve_args(gpu).accelerator == "gpu"
    for precision in ("64-true", "bf16-mixed", "16-mixed"):
        argv = ["--backend", backend, "--precision", precision]
        if ops.supports_precision(precision):
            assert train_args.resolve_args(argv).precision == precision
        else:
            err = _refused(argv, capsys)
            assert ops.precisions_in_words in err and repr(precision) in err


def test_the_cli_asks_the_backend_not_its_name(monkeypatch, capsys):
    """Give the torch op set the numpy op set's rules: train.py treats it as CPU-only."""
    for rule in ("cpu_only", "precisions", "precisions_in_words", "channels_last_by_default"):
        monkeypatch.setattr(TorchOps, rule, getattr(NumpyOps, rule))
    monkeypatch.setattr(NumpyOps, "cpu_only", False)
    monkeypatch.setattr(NumpyOps, "precisions", None)
    err = _refused(["--backend", "torch", "--accelerator", "gpu"], capsys)
    assert "--backend torch runs on CPU only" in err and "--backend numpy" in err
    args = train_args.resolve_args(["--backend", "torch"])
    assert args.accelerator == "cpu" and args.precision == "32-true"
    assert "the torch backend computes in float32 or float64" in args.notes[0]
    assert train_args.resolve_args(["--backend", "numpy", "--accelerator", "gpu"]).accelerator


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match=r"--backend must be one of \('torch', 'numpy'"):
        ops_class("jax")
