"""NumPy twin of CS231n's building blocks (assignments 1-3), under the course's own API.

Pure NumPy and the standard library: importing this package (or any submodule) never imports
torch, so a grader can drop a student's file beside it on a machine without PyTorch.

Submodules load on first use (``numpy_impl.layers``, ``numpy_impl.optim``, ...).
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "layers",
    "fast_layers",
    "layer_utils",
    "optim",
    "gradient_check",
    "rnn_layers",
    "attention",
    "gan",
    "simclr",
    "classifiers",
    "solver",
    "data",
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
