"""Transformer layers of CS231n assignment 3, built on torch_impl's Functions.

Same classes, constructor arguments and attribute names as the course's
``cs231n/transformer_layers.py``:

- ``PositionalEncoding(embed_dim, dropout=0.1, max_len=5000)``: adds the sinusoidal table
  (sin on even, cos on odd dims) to x (N, S, D), then dropout.
- ``MultiHeadAttention(embed_dim, num_heads, dropout=0.1)``: ``forward(query, key, value,
  attn_mask=None)`` with query (N, S, E), key/value (N, T, E), attn_mask (S, T) where **0 means
  blocked** (CS231n's convention; ``nn.MultiheadAttention`` wants the opposite boolean,
  ``attn_mask == 0``). Projections ``query``, ``key``, ``value``, ``proj`` hold ``w`` (E, E) in
  CS231n layout (the transpose of ``nn.Linear.weight``) and ``b`` (E,).
- ``FeedForwardNetwork(embed_dim, ffn_dim, dropout=0.1)``: affine - GELU - dropout - affine.
- ``TransformerDecoderLayer(input_dim, num_heads, dim_feedforward=2048, dropout=0.1)``:
  ``forward(tgt, memory, tgt_mask=None)``: masked self-attention, cross-attention over
  ``memory``, feed-forward, each followed by dropout, a residual connection and LayerNorm
  (post-norm, the layout of ``nn.TransformerDecoderLayer(norm_first=False)``).
- ``TransformerEncoderLayer(input_dim, num_heads, dim_feedforward=2048, dropout=0.1)``:
  ``forward(src, src_mask=None)``, the same without cross-attention.

``dropout`` in these constructors is the DROP probability, as in the course (which passes it to
``nn.Dropout``); torch_impl's ``Dropout(p)`` and the NumPy layers' ``dropout_param['p']`` take
the KEEP probability, so a module with ``dropout=q`` holds ``Dropout(1 - q)`` and matches
``dropout_param={'p': 1 - q, ...}`` (``keep_probability``, the one conversion). ``Dropout`` and
``LayerNorm`` are torch_impl.nn's, re-exported here under the course's names.

No ``nn.Linear``, ``nn.MultiheadAttention``, ``F.scaled_dot_product_attention``,
``nn.LayerNorm``, ``nn.GELU`` or ``nn.Dropout`` inside: the math runs through the Functions of
``torch_impl.functions`` and elementwise tensor operations.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import Tensor, nn

from torch_impl.dropout import dropout_mask
from torch_impl.functions import (
    GELUFunction,
    MultiHeadAttentionFunction,
    ScaledDotProductAttentionFunction,
)
from torch_impl.nn import Dropout, LayerNorm
from twin_checks import (
    check_mha_args,
    check_num_heads,
    check_positional_args,
    require_ndim,
    require_shape,
    shape_of,
)

from .rnn_layers import TemporalAffine

__all__ = [
    "ScaledDotProductAttentionFunction",
    "MultiHeadAttentionFunction",
    "positional_encoding",
    "PositionalEncoding",
    "MultiHeadAttention",
    "FeedForwardNetwork",
    "LayerNorm",
    "TransformerDecoderLayer",
    "TransformerEncoderLayer",
]


def keep_probability(dropout: float) -> float:
    """The course's ``dropout`` argument (the DROP probability, as ``nn.Dropout`` takes it) as the
    KEEP probability of torch_impl's Dropout and of ``dropout_param['p']``: 1 - dropout. The one
    place where the transformer layers convert between the two conventions."""
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
        raise TypeError(f"dropout must be a number, got {dropout!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(
            f"dropout is the DROP probability (as nn.Dropout) and must lie in [0, 1), got {dropout}"
        )
    return 1.0 - float(dropout)


def positional_encoding(
    max_len: int,
    embed_dim: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """(max_len, embed_dim): pe[pos, 2i] = sin(pos 10000^(-2i/D)), pe[pos, 2i+1] = cos(...).

    Computed in float64 and cast (twin of ``numpy_impl.attention.positional_encoding``).
    """
    check_positional_args(embed_dim, max_len)
    position = torch.arange(max_len, dtype=torch.float64, device=device)[:, None]
    exponent = -torch.arange(0, embed_dim, 2, dtype=torch.float64, device=device) / embed_dim
    freq = 10000.0**exponent
    pe = torch.empty((max_len, embed_dim), dtype=torch.float64, device=device)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq)
    return pe.to(dtype)


class PositionalEncoding(nn.Module):
    """x (N, S, D) -> dropout(x + pe[:S]); buffer ``pe`` (1, max_len, D)."""

    pe: Tensor

    def __init__(self, embed_dim: int, dropout: float = 0.1, max_len: int = 5000) -> None:
        super().__init__()
        self.dropout = Dropout(keep_probability(dropout))
        self.register_buffer("pe", positional_encoding(max_len, embed_dim)[None])

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> PositionalEncoding:
        # .double() / .to(dtype) would cast the float32 table and keep its float32 rounding;
        # recompute it (in float64, then cast) in whatever dtype and device the buffer now has.
        super()._apply(fn, *args, **kwargs)
        _, max_len, embed_dim = self.pe.shape
        self.pe = positional_encoding(max_len, embed_dim, self.pe.dtype, self.pe.device)[None]
        return self

    def forward(self, x: Tensor) -> Tensor:
        require_ndim("x", x, 3, "(N, S, D)")
        N, S, D = shape_of(x)
        _, max_len, embed_dim = self.pe.shape
        require_shape("x", x, (N, None, embed_dim), hint=f"embed_dim={embed_dim}")
        if S > max_len:
            raise ValueError(f"x has S={S} positions, more than max_len={max_len}")
        return self.dropout(x + self.pe[:, :S].to(x.dtype))


class MultiHeadAttention(nn.Module):
    """CS231n's MultiHeadAttention; see the module docstring for shapes and the mask."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        check_num_heads(embed_dim, num_heads)
        self.key = TemporalAffine(embed_dim, embed_dim)
        self.query = TemporalAffine(embed_dim, embed_dim)
        self.value = TemporalAffine(embed_dim, embed_dim)
        self.proj = TemporalAffine(embed_dim, embed_dim)
        self.attn_drop = Dropout(keep_probability(dropout))
        # CS231n's attribute names.
        self.n_head = num_heads
        self.emd_dim = embed_dim
        self.head_dim = embed_dim // num_heads

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None
    ) -> Tensor:
        weights = {
            "Wq": self.query.w,
            "bq": self.query.b,
            "Wk": self.key.w,
            "bk": self.key.b,
            "Wv": self.value.w,
            "bv": self.value.b,
            "Wo": self.proj.w,
            "bo": self.proj.b,
        }
        N, S, T, E = check_mha_args(query, key, value, weights, self.n_head)
        keep = self.attn_drop.p
        drop_mask = None
        if self.training and keep < 1.0:
            drop_mask = dropout_mask((N, self.n_head, S, T), query, keep, self.attn_drop.generator)
        return MultiHeadAttentionFunction.apply(
            query, key, value, *weights.values(), self.n_head, attn_mask, drop_mask
        )


class FeedForwardNetwork(nn.Module):
    """x (N, T, D) -> fc2(dropout(gelu(fc1(x)))), fc1 (D, ffn_dim), fc2 (ffn_dim, D)."""

    def __init__(self, embed_dim: int, ffn_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc1 = TemporalAffine(embed_dim, ffn_dim)
        self.dropout = Dropout(keep_probability(dropout))
        self.fc2 = TemporalAffine(ffn_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.dropout(GELUFunction.apply(self.fc1(x))))


class TransformerDecoderLayer(nn.Module):
    """One post-norm decoder layer (CS231n's and nn.TransformerDecoderLayer's layout).

    forward(tgt (N, T, D), memory (N, S, D), tgt_mask (T, T) or None, 0 = blocked) -> (N, T, D).
    """

    def __init__(
        self, input_dim: int, num_heads: int, dim_feedforward: int = 2048, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(input_dim, num_heads, dropout)
        self.cross_attn = MultiHeadAttention(input_dim, num_heads, dropout)
        self.ffn = FeedForwardNetwork(input_dim, dim_feedforward, dropout)
        self.norm_self = LayerNorm(input_dim)
        self.norm_cross = LayerNorm(input_dim)
        self.norm_ffn = LayerNorm(input_dim)
        self.dropout_self = Dropout(keep_probability(dropout))
        self.dropout_cross = Dropout(keep_probability(dropout))
        self.dropout_ffn = Dropout(keep_probability(dropout))

    def forward(self, tgt: Tensor, memory: Tensor, tgt_mask: Tensor | None = None) -> Tensor:
        shortcut = tgt
        tgt = self.self_attn(query=tgt, key=tgt, value=tgt, attn_mask=tgt_mask)
        tgt = self.norm_self(self.dropout_self(tgt) + shortcut)
        shortcut = tgt
        tgt = self.cross_attn(query=tgt, key=memory, value=memory)
        tgt = self.norm_cross(self.dropout_cross(tgt) + shortcut)
        shortcut = tgt
        tgt = self.ffn(tgt)
        return self.norm_ffn(self.dropout_ffn(tgt) + shortcut)


class TransformerEncoderLayer(nn.Module):
    """One post-norm encoder layer: self-attention and feed-forward, each with dropout, residual
    and LayerNorm. forward(src (N, S, D), src_mask (S, S) or None, 0 = blocked) -> (N, S, D)."""

    def __init__(
        self, input_dim: int, num_heads: int, dim_feedforward: int = 2048, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(input_dim, num_heads, dropout)
        self.ffn = FeedForwardNetwork(input_dim, dim_feedforward, dropout)
        self.norm_self = LayerNorm(input_dim)
        self.norm_ffn = LayerNorm(input_dim)
        self.dropout_self = Dropout(keep_probability(dropout))
        self.dropout_ffn = Dropout(keep_probability(dropout))

    def forward(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        shortcut = src
        src = self.self_attn(query=src, key=src, value=src, attn_mask=src_mask)
        src = self.norm_self(self.dropout_self(src) + shortcut)
        shortcut = src
        src = self.ffn(src)
        return self.norm_ffn(self.dropout_ffn(src) + shortcut)
