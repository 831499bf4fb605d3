"""The grader's version (its own module, so submodules can import it without the package)."""

from nn_twins import __version__  # noqa: F401 -- the distribution's one version string
