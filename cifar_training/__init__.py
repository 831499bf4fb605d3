"""Train a CNN on CIFAR-10 with Lightning, the math done by either twin or by PyTorch itself.

``python train.py --backend torch|numpy|builtin`` (see ``cifar_training.cli``). The package:

- ``datasets``: CIFAR-10 (the python batches, an ImageFolder tree or a tarball of either) as
  uint8 arrays and a torchvision-style dataset, read through ``numpy_impl.cifar10_loader`` (the
  loader behind the course's ``load_CIFAR10`` too).
- ``datamodule``: the LightningDataModule (held-out split, whole-batch augmentation on device).
- ``backends``: the three op sets (``torch_impl``, the NumPy bridge, PyTorch builtins) and their
  optimizers; ``numpy_bridge`` holds the autograd.Functions that call ``numpy_impl``.
- ``models``: the one network definition, written against an op set.
- ``recipes``: every training hyperparameter as data (``Recipe``, the named ``RECIPES``).
- ``module``: the LightningModule (and ``make_train_step`` for benchmarks); ``plots``: the PNGs.
- ``cli``: the command line's entry (``train_entry``: its console script), built from
  ``train_parser`` (the flags, a recipe's generated from its fields), ``train_args`` (the
  command line resolved), ``train_run`` / ``eval_run`` (a training run, ``--eval-only``),
  ``run_dir`` (``--out`` and ``--resume`` checks) and ``run_outputs`` (what a run writes).
- ``run_control``: checkpoints, signals and resumption; ``epoch_state``: the ``last.pt`` that
  ``python -m gan_training`` and ``python -m simclr_training`` resume from; ``predict``:
  classify image files with a finished run; ``threads``: CPU thread defaults; ``synthetic``:
  tiny CIFAR-like datasets in the real on-disk formats (tests, smoke runs).

Submodules load on first use, so importing the package stays cheap.
"""

import importlib

from nn_twins import __version__  # noqa: F401 -- the distribution's one version string

_SUBMODULES = (
    "argtypes",
    "backends",
    "cli",
    "datamodule",
    "datasets",
    "diagnostics",
    "eval_run",
    "models",
    "module",
    "numpy_bridge",
    "plots",
    "predict",
    "recipes",
    "run_control",
    "run_dir",
    "run_outputs",
    "synthetic",
    "threads",
    "train_args",
    "train_errors",
    "train_parser",
    "train_run",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
