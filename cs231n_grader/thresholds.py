"""The grader's one table of thresholds and limits.

The grader is installed code that runs without the test suite, so its numbers live here (not in
``parity_tests/tolerances.py``). Every comparison in the grader reads them from this module.

Errors are CS231n's ``rel_error(x, y) = max(|x - y| / max(1e-8, |x| + |y|))`` (imported from
``numpy_impl.gradient_check``), taken between the student's and the reference's float64 results
on the same inputs. Two correct float64 implementations differ only by summation order
(~1e-15 relative); the bugs the grader exists to catch give errors of 1e-3 and more. The bounds
below sit far from both, so a student whose code is right in a different but valid way (another
summation order, ``np.var`` vs ``mean(x**2) - mean(x)**2``) passes, and no bug does.
"""

THRESHOLDS = {
    # Forward outputs, losses, scores, running statistics and optimizer steps vs the reference.
    "output": 1e-7,
    # Analytic gradients (backward passes, loss gradients, model grads) vs the reference's.
    "gradient": 1e-7,
    # Absolute floor, relative to the largest magnitude among the related reference results:
    # entries closer than abs_floor * scale are equal. Catches round-off around values that are
    # mathematically zero (the gradient of a bias followed by batchnorm is ~1e-16), where
    # rel_error's 1e-8 floor would turn 1e-15 of noise into an error of 1e-7.
    "abs_floor": 1e-10,
    # Diagnosis only: the student's analytic gradient vs a centered difference (step NUMERICAL_STEP)
    # of the student's own forward. Looser: the difference quotient carries O(h^2) truncation.
    "numerical": 1e-5,
    # Diagnosis only: "off by a constant factor c" when rel_error(student, c * reference) is below.
    "factor": 1e-6,
    # Diagnosis only: a known-bug variant of the reference explains the student's result.
    "bug_match": 1e-6,
    # Outputs built from constants the course computes in float32 (the positional-encoding
    # table): entries within this times the largest reference magnitude count as equal
    # (float32's epsilon is 1.2e-7; a few roundings add up).
    "float32": 1e-6,
    # Dropout: the kept fraction must lie within this many binomial standard deviations of p.
    "dropout_sigmas": 6.0,
    # Model __init__: each random weight's std must lie within this factor of the reference's.
    "init_std_factor": 1.6,
}

# Step of the centered differences the diagnosis takes on the student's forward.
NUMERICAL_STEP = 1e-5

# Default per-call wall-clock limit (seconds) and address-space cap (MiB) of a child process.
# The cap is on virtual address space, not resident memory: Python + NumPy reserve ~0.1 GiB,
# a student module that imports torch ~3.2 GiB, so the default leaves room for that.
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 6144
# A child writing more than this to stdout/stderr/files is stopped (RLIMIT_FSIZE).
MAX_OUTPUT_BYTES = 64 * 1024 * 1024
# How many times one item's child is restarted after a hang or a crash (each restart skips the
# calls that hung or crashed, so one bad call fails only its own test).
MAX_RESTARTS = 4
