"""CPU thread defaults, decided before NumPy or torch is imported.

BLAS libraries read their thread count once, when they load, so ``train.py`` calls
``configure_from_argv`` first thing. Default: the cores this process may use, divided by the
number of training processes on this machine (``--devices N`` on CPU starts N processes), so
DDP on CPU does not oversubscribe the cores. ``--threads`` overrides it; an explicit
``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS`` in the environment is respected.
Imports nothing heavy.

Also, before torch loads: ``THP_MEM_ALLOC_ENABLE=1`` (unless set) makes PyTorch's CPU allocator
back large tensors with transparent huge pages. A training step allocates and frees hundreds of
MB of activations; with 4 KiB pages each step took ~150-200k page faults (the kernel zeroing
fresh pages, up to half the step's time, measured in benchmarks/train_step.py), with 2 MiB pages
~10k. It helps every backend alike.
"""

from __future__ import annotations

import argparse
import os

_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# torch.set_float32_matmul_precision values (train.py --matmul-precision; the benchmarks, which
# import this module before torch, offer the same).
MATMUL_PRECISIONS = ("highest", "high", "medium")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def processes_per_machine(devices, accelerator: str = "auto") -> int:
    """How many training processes a CPU run with these flags starts on this machine."""
    if accelerator not in ("auto", "cpu"):
        return 1
    try:
        n = int(devices)
    except (TypeError, ValueError):
        return 1
    return available_cores() if n == -1 else max(n, 1)


def default_threads(devices="auto", accelerator="auto") -> int:
    return max(1, available_cores() // processes_per_machine(devices, accelerator))


def configure_from_argv(argv) -> int:
    """Set the BLAS/OpenMP thread variables (unless already set) from --threads/--devices."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--devices", default="auto")
    p.add_argument("--accelerator", default="auto")
    known, _ = p.parse_known_args(argv)
    n = (
        known.threads
        if known.threads and known.threads > 0
        else default_threads(known.devices, known.accelerator)
    )
    for var in _ENV_VARS:
        os.environ.setdefault(var, str(n))
    configure_allocator()
    return n


def configure_allocator() -> None:
    """Huge pages for torch's large CPU tensors (see the module docstring); call before torch."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
