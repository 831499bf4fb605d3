"""Benchmarks of the twins against PyTorch's builtins (see BENCHMARKS.md).

Run as scripts from the repository root: ``python benchmarks/ops.py`` and
``python benchmarks/train_step.py`` (``--help`` for the flags).
"""
