"""Torch twin of CS231n's building blocks: torch.autograd.Functions with hand-written backward.

The math is computed from tensor primitives (matmul, unfold/as_strided, reductions, elementwise
ops), never by calling the PyTorch builtin that the parity suite compares it against. Every tensor
created inside follows the input's device and dtype.
"""

from nn_twins import __version__  # noqa: F401 -- the distribution's one version string
