"""Affine maps: the affine layer, its per-time-step form and the word embedding.

The word embedding is the affine map of a one-hot vector: a row lookup forward, a scatter-add
of the output gradient into the rows backward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

import twin_checks as _checks
from torch_impl._utils import as_rows, products_dtype, require_like, rowwise_mm
from twin_checks import check_dout, check_embedding_args, check_temporal_affine_args

__all__ = [
    "AffineFunction",
    "WordEmbeddingFunction",
    "TemporalAffineFunction",
]


class AffineFunction(Function):
    """out = x.reshape(N, D) @ w + b.

    x: (N, d_1, ..., d_k) with D = d_1 * ... * d_k; w: (D, M) (CS231n's layout, the transpose of
    nn.Linear's weight); b: (M,). Returns (N, M). Saved: x flattened to (N, D), w.
    Inside ``torch.autocast`` a float32 affine multiplies in autocast's dtype and returns float32
    output and gradients (``_utils.products_dtype``), as the conv does.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        _checks.require_float("x", x)
        N, D = _checks.check_affine_args(x, w, b)
        require_like("x", x, w=w, b=b)
        x2d = x.reshape(N, D)
        ctx.x_shape = x.shape
        products = products_dtype(x)
        if products != x.dtype:
            x2d, w = x2d.to(products), w.to(products)
            ctx.save_for_backward(x2d, w)
            return torch.add(b, x2d @ w)  # float32 b promotes the low-precision product
        ctx.save_for_backward(x2d, w)
        return torch.addmm(b, x2d, w)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        x2d, w = ctx.saved_tensors
        dtype = dout.dtype
        dout_p = dout.to(w.dtype)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = (dout_p @ w.T).reshape(ctx.x_shape).to(dtype)
        if ctx.needs_input_grad[1]:
            dw = (x2d.T @ dout_p).to(dtype)
        if ctx.needs_input_grad[2]:
            db = dout.sum(0)
        return dx, dw, db


class WordEmbeddingFunction(Function):
    """out = W[x]: x integer (N, T) in [0, V), W (V, D) -> (N, T, D). The gradient of a word that
    occurs several times is the sum over its occurrences (``index_add_``). x gets no gradient."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, W: Tensor) -> Tensor:
        check_embedding_args(x, W)
        ctx.save_for_backward(x)
        ctx.W_shape = tuple(W.shape)
        return W[x]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        V, D = ctx.W_shape
        check_dout(dout, tuple(x.shape) + (D,))
        dW = dout.new_zeros((V, D)).index_add_(0, x.reshape(-1), as_rows(dout))
        return None, dW


class TemporalAffineFunction(Function):
    """out = x @ w + b at every step: x (N, T, D), w (D, M), b (M,) -> (N, T, M)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        check_temporal_affine_args(x, w, b)
        ctx.save_for_backward(x, w)
        return rowwise_mm(x, w) + b

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        x, w = ctx.saved_tensors
        D, M = w.shape
        check_dout(dout, tuple(x.shape[:2]) + (M,))
        need = ctx.needs_input_grad
        return (
            rowwise_mm(dout, w.T) if need[0] else None,
            as_rows(x).T @ as_rows(dout) if need[1] else None,
            dout.sum(dim=(0, 1)) if need[2] else None,
        )
