"""The grader's version (its own module, so submodules can import it without the package)."""

__version__ = "0.1.0"
