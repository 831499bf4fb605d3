#!/usr/bin/env python
"""Train a CNN on CIFAR-10 with Lightning; ``--backend torch|numpy|builtin`` picks who does the
math (torch_impl's autograd Functions, the NumPy twin, or PyTorch's kernels).

    python train.py --data-dir /path/to/cifar10 --backend torch --out runs/torch
    python train.py --help

The command line lives in ``cifar_training.cli``; this file only sets the CPU thread defaults
before NumPy and torch load (BLAS libraries read them once, at import).
"""

import sys

from cifar_training.threads import configure_from_argv

configure_from_argv(sys.argv[1:])

from cifar_training.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
