"""Small helpers shared by the torch twin (argument checks that are torch-specific).

The checks that both twins share (shapes, labels, hyperparameters) live in the pure-Python
``twin_checks``, so the same bad input raises the same message in each twin; what is here
only concerns torch itself (mixed devices or dtypes, which NumPy has no notion of).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import torch


def require_tensor(name: str, t) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def require_like(ref_name: str, ref: torch.Tensor, **others) -> None:
    """Every tensor in ``others`` must be on ``ref``'s device with ``ref``'s dtype.

    PyTorch would raise too, but deep inside a matmul and without naming the argument.
    """
    for name, t in others.items():
        if t is None:
            continue
        require_tensor(name, t)
        if t.device != ref.device:
            raise ValueError(f"{name} must be on {ref_name}'s device {ref.device}, got {t.device}")
        if t.dtype != ref.dtype:
            raise TypeError(f"{name} must have {ref_name}'s dtype {ref.dtype}, got {t.dtype}")


def labels_on(y, x: torch.Tensor) -> torch.Tensor:
    """Class labels as an int64 tensor on x's device (gather/scatter need int64)."""
    y = require_tensor("y", y)
    return y.to(device=x.device, dtype=torch.int64)


def as_buffer(value, like: torch.Tensor, size: int) -> torch.Tensor:
    """A running-statistics buffer of ``size`` on like's device/dtype: zeros when ``value`` is None
    (CS231n's default), else ``value`` itself when it already matches (so in-place updates reach
    the caller's tensor), else a converted copy."""
    if value is None:
        return like.new_zeros(size)
    if isinstance(value, torch.Tensor):
        if value.device == like.device and value.dtype == like.dtype:
            return value
        return value.to(device=like.device, dtype=like.dtype)
    return torch.as_tensor(value, device=like.device, dtype=like.dtype).clone()


_Method = TypeVar("_Method", bound=Callable[..., Any])


def in_input_precision(method: _Method) -> _Method:
    """A Function's forward or backward run with ``torch.autocast`` off on its tensors' device,
    so that inside an autocast region the op computes in its inputs' dtype. (Left on, autocast
    would cast the operands of some of the op's products to bfloat16 and not those of its
    in-place and ``out=`` products, which then meet tensors of two dtypes.) The conv and the
    affine layer instead choose lower-precision products themselves (``products_dtype``)."""

    @functools.wraps(method)
    def run(ctx: Any, *args: Any) -> Any:
        device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device, enabled=False):
            return method(ctx, *args)

    return cast(_Method, run)


def products_dtype(x):
    """The dtype of the matrix products: x's, or autocast's lower precision (bfloat16/float16)
    when a ``torch.autocast`` region is active for x's device and x is float32. Everything
    else (the im2col copy's source, col2im's sums, the output, the gradients) stays in x's dtype.
    """
    device = x.device.type
    if x.dtype == torch.float32 and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def rowwise_mm(x, W):
    """x (..., D) @ W (D, M) -> (..., M) as ONE 2-D matrix product over the flattened rows.

    Same math as ``x @ W``, without the batched-matmul dispatch, whose overhead dwarfs the
    product itself for the small operands of the recurrent and attention layers.
    """
    return (as_rows(x) @ W).reshape(*x.shape[:-1], W.shape[1])


def as_rows(x):
    """x (..., D) as the 2-D matrix (prod(...), D) of its rows. Not ``reshape(-1, D)``: with a
    zero-size dimension (N, T or D = 0) the -1 is ambiguous and reshape raises."""
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])


def memory_format_of(x):
    """torch.channels_last when x (N, C, H, W) is laid out channels last (and not also plainly
    contiguous, as with C = 1 or 1x1 maps), else torch.contiguous_format: the layout a layer's
    output and input gradient take, so that a network fed channels-last tensors stays channels
    last from layer to layer (as PyTorch's own layers do) and no layer transposes."""
    if (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    ):
        return torch.channels_last
    return torch.contiguous_format
