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

from torch_impl._utils import as_rows, in_input_precision, rowwise_mm
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


def _softmax_weights_(scores: Tensor, scale: float, attn_mask: Tensor | None) -> Tensor:
    """The attention weights A = softmax(scores * scale, blocked = -inf) over the last dimension,
    computed IN PLACE in ``scores`` (a fresh temporary, returned): scale, block, shift by the row
    max (exp never overflows), exponentiate, normalize; no temporary of the scores' size."""
    scores.mul_(scale)
    if attn_mask is not None:
        scores.masked_fill_(attn_mask == 0, float("-inf"))  # exp(-inf) = 0: zero weight
    scores.sub_(scores.amax(dim=-1, keepdim=True)).exp_()
    return scores.div_(scores.sum(dim=-1, keepdim=True))


def _softmax_backward_(dA: Tensor, A: Tensor) -> Tensor:
    """The softmax Jacobian row by row, dscores_j = A_j (dA_j - sum_k A_k dA_k), computed IN
    PLACE in ``dA`` (a fresh temporary, returned) as A dA - A (sum_k A_k dA_k)."""
    dA.mul_(A)
    return dA.addcmul_(A, dA.sum(dim=-1, keepdim=True), value=-1)


def _attention_forward(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, drop_mask: Tensor | None
) -> tuple[Tensor, Tensor, float]:
    """(out, A, scale): out = dropout(A) v with A = softmax(q k^T scale), scale = 1/sqrt(d)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    A = _softmax_weights_(q @ k.transpose(-1, -2), scale, attn_mask)
    A_used = A if drop_mask is None else A * drop_mask
    return A_used @ v, A, scale


def _attention_backward(
    dout: Tensor, q: Tensor, k: Tensor, v: Tensor, A: Tensor, drop_mask: Tensor | None, scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    """(dq, dk, dv) of :func:`_attention_forward` from the upstream dout (..., S, dv)."""
    A_used = A if drop_mask is None else A * drop_mask
    dv = A_used.transpose(-1, -2) @ dout
    dA = dout @ v.transpose(-1, -2)
    if drop_mask is not None:
        dA.mul_(drop_mask)
    dscores = _softmax_backward_(dA, A).mul_(scale)  # gradient of q k^T (before the scale)
    return dscores @ k, dscores.transpose(-1, -2) @ q, dv


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
    @in_input_precision
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
    @in_input_precision
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, A, drop_mask = ctx.saved_tensors
        dq, dk, dv = _attention_backward(dout, q, k, v, A, drop_mask, ctx.scale)
        return dq, dk, dv, None, None


def _project(x: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """x (N, L, E) @ W (E, E) + b as ONE matrix product with the bias (``addmm``) -> (N, L, E)."""
    return torch.addmm(b, as_rows(x), W).view(x.shape)


def _heads(X: Tensor, num_heads: int) -> list[Tensor]:
    """(N, L, E) -> num_heads column blocks (N, L, E / num_heads): head j's features, as VIEWS.

    A strided (N, L, Dh) view is a valid operand (and output) of ``bmm``, so the heads are never
    copied into a (N, num_heads, L, Dh) layout and merged back."""
    return list(X.split(X.shape[2] // num_heads, dim=2))


def _first_occurrences(tensors: tuple[Tensor, ...]) -> tuple[int, ...]:
    """For each tensor, the position of its first occurrence (the same object) in ``tensors``."""
    return tuple(next(i for i, u in enumerate(tensors) if u is t) for t in tensors)


class MultiHeadAttentionFunction(Function):
    """CS231n's multi-head attention with all eight projection parameters.

    apply(query (N, S, E), key (N, T, E), value (N, T, E), Wq, bq, Wk, bk, Wv, bv, Wo, bo,
    num_heads, attn_mask=None, drop_mask=None) -> (N, S, E). W* (E, E) in CS231n layout
    (``x @ W + b``, the transpose of nn.Linear's weight); attn_mask (S, T), 0 = blocked; drop_mask
    None or (N, num_heads, S, T) with values 0 or 1/p. Twin of ``multihead_attention_forward``.

    Layout: the projections Q, K, V (N, L, E) stay as computed; head j is the column block
    j * Dh : (j + 1) * Dh (Dh = E / num_heads), used through views. The attention weights of
    all heads live in one HEAD-major buffer A (num_heads, N, S, T), so the softmax (and its
    backward) is one in-place pass over all heads, while every product is one ``bmm`` per head
    over the batch, written straight into its block. Saved: query, key, value, Wq, Wk, Wv, Wo,
    the projections Q (N, S, E), K, V (N, T, E), A, drop_mask and the merged heads Y (N, S, E)
    (the input of the output projection).
    """

    @staticmethod
    @in_input_precision
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
        Q, K, V = (
            _project(x, W, b) for x, W, b in ((query, Wq, bq), (key, Wk, bk), (value, Wv, bv))
        )
        Qh, Kh, Vh = (_heads(P, num_heads) for P in (Q, K, V))
        scores = query.new_empty((num_heads, N, S, T))
        for j in range(num_heads):
            torch.bmm(Qh[j], Kh[j].transpose(1, 2), out=scores[j])
        scale = 1.0 / math.sqrt(E // num_heads)
        A = _softmax_weights_(scores, scale, attn_mask)
        A_used = A if drop_mask is None else A * drop_mask.transpose(0, 1)
        Y = query.new_empty((N, S, E))  # the heads' outputs, merged: head j in block j
        for j, Yj in enumerate(_heads(Y, num_heads)):
            torch.bmm(A_used[j], Vh[j], out=Yj)
        ctx.save_for_backward(query, key, value, Wq, Wk, Wv, Wo, Q, K, V, A, drop_mask, Y)
        ctx.scale, ctx.num_heads = scale, num_heads
        # Which of query, key, value each input is (self-attention passes one tensor three
        # times, cross-attention key = value): an input's projections share one gradient.
        ctx.sources = _first_occurrences((query, key, value))
        return _project(Y, Wo, bo)

    @staticmethod
    @once_differentiable
    @in_input_precision
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        """Per head j (A_j the weights, with dropout's multiplier where there is one):
            dV_j = A_j^T dY_j,   dA_j = dY_j V_j^T,   dscores_j = softmax'(dA_j) * scale,
            dQ_j = dscores_j K_j,   dK_j = dscores_j^T Q_j,
        each product written into head j's block of dQ, dK, dV (N, L, E); each projection's
        gradients are then single products over the (N * L) rows. An input passed more than
        once (self-attention: query = key = value) gets its whole gradient in its first slot
        (the products of its projections accumulated into one buffer) and None in the others:
        autograd adds the slots of one tensor anyway, this way without the extra tensors."""
        query, key, value, Wq, Wk, Wv, Wo, Q, K, V, A, drop_mask, Y = ctx.saved_tensors
        num_heads = ctx.num_heads
        dWo = as_rows(Y).T @ as_rows(dout)
        dbo = dout.sum(dim=(0, 1))
        dY = rowwise_mm(dout, Wo.T)
        A_used = A if drop_mask is None else A * drop_mask.transpose(0, 1)
        dQ, dK, dV = (torch.empty_like(P) for P in (Q, K, V))
        Qh, Kh, Vh, dYh, dQh, dKh, dVh = (_heads(P, num_heads) for P in (Q, K, V, dY, dQ, dK, dV))
        dA = torch.empty_like(A)
        for j in range(num_heads):
            torch.bmm(dYh[j], Vh[j].transpose(1, 2), out=dA[j])
            torch.bmm(A_used[j].transpose(1, 2), dYh[j], out=dVh[j])
        if drop_mask is not None:
            dA.mul_(drop_mask.transpose(0, 1))
        dscores = _softmax_backward_(dA, A).mul_(ctx.scale)  # gradient of Q_j K_j^T
        for j in range(num_heads):
            torch.bmm(dscores[j], Kh[j], out=dQh[j])
            torch.bmm(dscores[j].transpose(1, 2), Qh[j], out=dKh[j])
        dinputs: list[Tensor | None] = [None, None, None]
        dW, db = [], []
        projections = zip((query, key, value), (Wq, Wk, Wv), (dQ, dK, dV), ctx.sources, strict=True)
        for x, W, dP, source in projections:
            dx = dinputs[source]
            if dx is None:
                dinputs[source] = rowwise_mm(dP, W.T)
            else:  # the same input as an earlier projection's: accumulate (no separate tensor)
                as_rows(dx).addmm_(as_rows(dP), W.T)
            dW.append(as_rows(x).T @ as_rows(dP))
            db.append(dP.sum(dim=(0, 1)))
        dq, dk, dv = dinputs
        (dWq, dWk, dWv), (dbq, dbk, dbv) = dW, db
        return dq, dk, dv, dWq, dbq, dWk, dbk, dWv, dbv, dWo, dbo, None, None, None
