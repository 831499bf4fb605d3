"""NumPy twin of CS231n's building blocks (assignments 1-3), under the course's own API.

Pure NumPy and the standard library: importing this package (or any submodule) never imports
torch, so a grader can drop a student's file beside it on a machine without PyTorch.

Submodules load on first use (``numpy_impl.layers``, ``numpy_impl.optim``, ...).
"""

import importlib

from nn_twins import __version__  # noqa: F401 -- the distribution's one version string

_SUBMODULES = (
    "layers",
    "fast_layers",
    "layer_utils",
    "optim",
    "gradient_check",
    "rnn_layers",
    "attention",
    "gan",
    "generative_layers",
    "simclr",
    "classifiers",
    "solver",
    "data",
    "cifar10_loader",
    "features",
    "preprocessing",
    "search",
    "diagnostics",
    "vis_utils",
    "coco_utils",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
