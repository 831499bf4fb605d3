"""nn-twins: CS231n's building blocks written twice and proven equal.

This package holds only the distribution's one version string; the code lives in
``numpy_impl`` (the NumPy twin), ``torch_impl`` (the torch twin), ``twin_checks`` (the argument
checks both share), ``cifar_training`` (train.py) and ``cs231n_grader`` (nn-twins-grade).
pyproject.toml reads the version from here and every package re-exports it.
"""

__version__ = "0.1.0"
