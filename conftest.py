"""Shared pytest configuration.

Randomized tests draw from seeded generators (and hypothesis with derandomize=True), so CI is
deterministic. Set NN_TWINS_EXAMPLES=N to run N randomized examples per property instead of
the default, and NN_TWINS_SEED to pick another seed.
"""

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("NN_TWINS_EXAMPLES", "12"))
SEED = int(os.environ.get("NN_TWINS_SEED", "231"))

settings.register_profile(
    "nn-twins",
    max_examples=EXAMPLES,
    derandomize="NN_TWINS_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("nn-twins")
