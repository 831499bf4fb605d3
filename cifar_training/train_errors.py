"""The errors train.py turns into exit statuses (``cli.main``)."""


class UsageError(Exception):
    """A flag combination or --out state that cannot run (exit status 2)."""


class NonFiniteEvaluationError(Exception):
    """The final test evaluation is NaN or infinite (exit status 1)."""
