"""The CS231n-vs-PyTorch parameter conversions, each written once.

Every function maps CS231n's value (the course's layout or convention) to PyTorch's. They work
on tensors and on plain numbers alike where that makes sense, and keep the autograd graph (a
transpose or a reshape is differentiable), so a gradient computed through PyTorch's builtin
reaches CS231n's tensor in CS231n's layout.
"""

from __future__ import annotations

import torch


def linear_weight(w: torch.Tensor) -> torch.Tensor:
    """CS231n's affine weight w (D, M) as ``nn.Linear.weight`` / ``F.linear``'s (M, D).

    CS231n computes ``x @ w``; PyTorch ``x @ weight.T``: the same matrix, transposed (a view).
    """
    return w.T


def torch_momentum(momentum: float) -> float:
    """CS231n's batchnorm momentum as PyTorch's.

    CS231n: ``running = momentum * running + (1 - momentum) * batch`` (0.9: the fraction KEPT).
    PyTorch: ``running = (1 - m) * running + m * batch`` (0.1: the fraction REPLACED), so
    ``m = 1 - momentum``. (PyTorch also averages the UNBIASED batch variance into running_var;
    outputs and gradients do not see it, ``parity_tests/test_batchnorm.py`` converts it.)
    """
    return 1.0 - momentum


def channel_vector(gamma: torch.Tensor) -> torch.Tensor:
    """CS231n's groupnorm gamma/beta (1, C, 1, 1) as ``F.group_norm``'s (C,) (a view: the
    gradient comes back in the (1, C, 1, 1) layout)."""
    return gamma.reshape(-1)


def drop_probability(p: float) -> float:
    """CS231n's dropout p (the KEEP probability) as ``F.dropout`` / ``nn.Dropout``'s (the
    probability of DROPPING a unit)."""
    return 1.0 - p


def gate_order(W: torch.Tensor, H: int) -> torch.Tensor:
    """CS231n's LSTM gate blocks (i, f, o, g along the last axis, H columns each) in PyTorch's
    order (i, f, g, o)."""
    i, f, o, g = W.split(H, dim=-1)
    return torch.cat([i, f, g, o], dim=-1)
