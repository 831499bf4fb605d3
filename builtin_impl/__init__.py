"""PyTorch's builtins behind CS231n's signatures: every CS231n-vs-PyTorch conversion, written once.

``numpy_impl`` and ``torch_impl`` are the twins; the third implementation every op is compared
against is PyTorch's own kernel (``F.conv2d``, ``F.batch_norm``, ``nn.Linear``, ...), which speaks
different conventions. This package is the one place those conventions are converted:

- the parameter conversions (``linear_weight``, ``torch_momentum``, ``channel_vector``,
  ``drop_probability``, ``gate_order``), which the module comparisons also use when they build a
  ``torch.nn`` module from a ``torch_impl.nn`` one;
- ``builtin_impl.functions``: one function per op, with the argument list of the matching
  ``torch_impl.functions`` Function's ``apply`` (tensors first, then plain hyperparameters), that
  calls the builtin.

The parity registry's entries call these in their ``builtin_fn``, the training backend
``builtin`` (``cifar_training.backends.BuiltinOps``) runs its network through them, and the
benchmarks time them, so a conversion fixed here is fixed everywhere.
"""

from builtin_impl.conversions import (
    channel_vector,
    drop_probability,
    gate_order,
    linear_weight,
    torch_momentum,
)

__all__ = [
    "channel_vector",
    "drop_probability",
    "gate_order",
    "linear_weight",
    "torch_momentum",
]
