"""Attention: scaled dot-product attention and multi-head attention (Vaswani et al. 2017,
"Attention Is All You Need"), as in the course's transformer.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from torch_impl._utils import as_rows, rowwise_mm
from twin_checks import (
    check_attention_args,
    check_attn_mask,
    check_mha_args,
    require_shape,
    shape_of,
)

__all__ = [
    "ScaledDotProductAttentionFunction",
    "MultiHeadAttentionFunction",
]


def _attention_forward(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, drop_mask: Tensor | None
) -> tuple[Tensor, Tensor, float]:
    """(out, A, scale): the shared forward math of the attention Functions (see numpy twin)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q @ k.transpose(-1, -2)) * scale
    if attn_mask is not None:
        scores = scores.masked_fill(attn_mask == 0, float("-inf"))
    scores = scores - scores.amax(dim=-1, keepdim=True)
    e = torch.exp(scores)
    A = e / e.sum(dim=-1, keepdim=True)
    A_used = A if drop_mask is None else A * drop_mask
    return A_used @ v, A, scale


def _attention_backward(
    dout: Tensor, q: Tensor, k: Tensor, v: Tensor, A: Tensor, drop_mask: Tensor | None, scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    A_used = A if drop_mask is None else A * drop_mask
    dv = A_used.transpose(-1, -2) @ dout
    dA = dout @ v.transpose(-1, -2)
    if drop_mask is not None:
        dA = dA * drop_mask
    dscores = A * (dA - (dA * A).sum(dim=-1, keepdim=True))
    dq = (dscores @ k) * scale
    dk = (dscores.transpose(-1, -2) @ q) * scale
    return dq, dk, dv


def _check_drop_mask(drop_mask: Tensor | None, shape: tuple[int, ...]) -> None:
    if drop_mask is not None:
        require_shape("dropout mask", drop_mask, tuple(shape), hint="the attention weights")


class ScaledDotProductAttentionFunction(Function):
    """softmax(q k^T / sqrt(d), blocked = -inf) v, optionally with dropout on the weights.

    q (..., S, d), k (..., T, d), v (..., T, dv); attn_mask None or (S, T) with 0 = blocked
    (CS231n's convention); drop_mask None or (..., S, T) holding 0 or 1/p (inverted dropout's
    multiplier, p = keep probability). Returns (..., S, dv). Masks get no gradient.
    """

    @staticmethod
    def forward(
        ctx: Any,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        attn_mask: Tensor | None = None,
        drop_mask: Tensor | None = None,
    ) -> Tensor:
        S, T, d = check_attention_args(q, k, v)
        check_attn_mask(attn_mask, S, T)
        _check_drop_mask(drop_mask, shape_of(q)[:-1] + (T,))
        out, A, scale = _attention_forward(q, k, v, attn_mask, drop_mask)
        ctx.save_for_backward(q, k, v, A, drop_mask)
        ctx.scale = scale
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, A, drop_mask = ctx.saved_tensors
        dq, dk, dv = _attention_backward(dout, q, k, v, A, drop_mask, ctx.scale)
        return dq, dk, dv, None, None


def _split_heads(X: Tensor, num_heads: int) -> Tensor:
    N, L, E = X.shape
    return X.reshape(N, L, num_heads, E // num_heads).transpose(1, 2)


def _merge_heads(X: Tensor) -> Tensor:
    N, Hh, L, Dh = X.shape
    return X.transpose(1, 2).reshape(N, L, Hh * Dh)


class MultiHeadAttentionFunction(Function):
    """CS231n's multi-head attention with all eight projection parameters.

    apply(query (N, S, E), key (N, T, E), value (N, T, E), Wq, bq, Wk, bk, Wv, bv, Wo, bo,
    num_heads, attn_mask=None, drop_mask=None) -> (N, S, E). W* (E, E) in CS231n layout
    (``x @ W + b``, the transpose of nn.Linear's weight); attn_mask (S, T), 0 = blocked; drop_mask
    None or (N, num_heads, S, T) with values 0 or 1/p. Twin of ``multihead_attention_forward``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        Wq: Tensor,
        bq: Tensor,
        Wk: Tensor,
        bk: Tensor,
        Wv: Tensor,
        bv: Tensor,
        Wo: Tensor,
        bo: Tensor,
        num_heads: int,
        attn_mask: Tensor | None = None,
        drop_mask: Tensor | None = None,
    ) -> Tensor:
        weights = dict(Wq=Wq, bq=bq, Wk=Wk, bk=bk, Wv=Wv, bv=bv, Wo=Wo, bo=bo)
        N, S, T, E = check_mha_args(query, key, value, weights, num_heads)
        check_attn_mask(attn_mask, S, T)
        _check_drop_mask(drop_mask, (N, num_heads, S, T))
        Qh, Kh, Vh = (
            _split_heads(rowwise_mm(x, W) + b, num_heads)
            for x, W, b in ((query, Wq, bq), (key, Wk, bk), (value, Wv, bv))
        )
        Yh, A, scale = _attention_forward(Qh, Kh, Vh, attn_mask, drop_mask)
        Y = _merge_heads(Yh)
        ctx.save_for_backward(query, key, value, Wq, Wk, Wv, Wo, Qh, Kh, Vh, A, drop_mask, Y)
        ctx.scale, ctx.num_heads = scale, num_heads
        return rowwise_mm(Y, Wo) + bo

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        query, key, value, Wq, Wk, Wv, Wo, Qh, Kh, Vh, A, drop_mask, Y = ctx.saved_tensors
        dWo = as_rows(Y).T @ as_rows(dout)
        dbo = dout.sum(dim=(0, 1))
        dYh = _split_heads(rowwise_mm(dout, Wo.T), ctx.num_heads)
        dheads = _attention_backward(dYh, Qh, Kh, Vh, A, drop_mask, ctx.scale)
        grads = []
        for x, W, dh in zip((query, key, value), (Wq, Wk, Wv), dheads, strict=True):
            dP = _merge_heads(dh)
            grads += [rowwise_mm(dP, W.T), as_rows(x).T @ as_rows(dP), dP.sum(dim=(0, 1))]
        (dq, dWq, dbq), (dk, dWk, dbk), (dv, dWv, dbv) = grads[0:3], grads[3:6], grads[6:9]
        return dq, dk, dv, dWq, dbq, dWk, dbk, dWv, dbv, dWo, dbo, None, None, None
