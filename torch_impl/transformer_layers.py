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
``nn.Dropout``); the NumPy layers' ``dropout_param['p']`` is the KEEP probability, so a module
with ``dropout=q`` matches ``dropout_param={'p': 1 - q, ...}``.

No ``nn.Linear``, ``nn.MultiheadAttention``, ``F.scaled_dot_product_attention``,
``nn.LayerNorm``, ``nn.GELU`` or ``nn.Dropout`` inside: the math runs through the Functions of
``torch_impl._a3_functions`` and elementwise tensor operations.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from numpy_impl._checks import require_ndim, require_shape, shape_of
from numpy_impl._checks_a3 import check_mha_args, check_num_heads, check_positional_args

from ._a3_functions import (
    GELUFunction,
    LayerNormLastDimFunction,
    MultiHeadAttentionFunction,
    ScaledDotProductAttentionFunction,
)
from .rnn_layers import TemporalAffine

__all__ = [
    "ScaledDotProductAttentionFunction",
    "MultiHeadAttentionFunction",
    "Dropout",
    "positional_encoding",
    "PositionalEncoding",
    "MultiHeadAttention",
    "FeedForwardNetwork",
    "LayerNorm",
    "TransformerDecoderLayer",
    "TransformerEncoderLayer",
]


def _check_drop_prob(dropout) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
        raise TypeError(f"dropout must be a number, got {dropout!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(
            f"dropout is the DROP probability (as nn.Dropout) and must lie in [0, 1), got {dropout}"
        )
    return float(dropout)


def _drop_mask(shape, like, drop_prob: float, training: bool):
    """Inverted-dropout multiplier (0 or 1/keep) on like's device/dtype, or None when off."""
    if not training or drop_prob == 0.0:
        return None
    keep = 1.0 - drop_prob
    return (torch.rand(shape, device=like.device, dtype=like.dtype) < keep).to(like.dtype) / keep


class Dropout(nn.Module):
    """Inverted dropout with the DROP probability ``p`` (nn.Dropout's convention, used by the
    transformer layers); identity in eval mode."""

    def __init__(self, p=0.1):
        super().__init__()
        self.p = _check_drop_prob(p)

    def forward(self, x):
        mask = _drop_mask(x.shape, x, self.p, self.training)
        return x if mask is None else x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


def positional_encoding(max_len, embed_dim, dtype=torch.float32, device=None):
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

    def __init__(self, embed_dim, dropout=0.1, max_len=5000):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.register_buffer("pe", positional_encoding(max_len, embed_dim)[None])

    def _apply(self, fn, *args, **kwargs):
        # .double() / .to(dtype) would cast the float32 table and keep its float32 rounding;
        # recompute it (in float64, then cast) in whatever dtype and device the buffer now has.
        super()._apply(fn, *args, **kwargs)
        _, max_len, embed_dim = self.pe.shape
        self.pe = positional_encoding(max_len, embed_dim, self.pe.dtype, self.pe.device)[None]
        return self

    def forward(self, x):
        require_ndim("x", x, 3, "(N, S, D)")
        N, S, D = shape_of(x)
        _, max_len, embed_dim = self.pe.shape
        require_shape("x", x, (N, None, embed_dim), hint=f"embed_dim={embed_dim}")
        if S > max_len:
            raise ValueError(f"x has S={S} positions, more than max_len={max_len}")
        return self.dropout(x + self.pe[:, :S].to(x.dtype))


class MultiHeadAttention(nn.Module):
    """CS231n's MultiHeadAttention; see the module docstring for shapes and the mask."""

    def __init__(self, embed_dim, num_heads, dropout=0.1):
        super().__init__()
        check_num_heads(embed_dim, num_heads)
        self.key = TemporalAffine(embed_dim, embed_dim)
        self.query = TemporalAffine(embed_dim, embed_dim)
        self.value = TemporalAffine(embed_dim, embed_dim)
        self.proj = TemporalAffine(embed_dim, embed_dim)
        self.attn_drop = Dropout(dropout)
        # CS231n's attribute names.
        self.n_head = num_heads
        self.emd_dim = embed_dim
        self.head_dim = embed_dim // num_heads

    def forward(self, query, key, value, attn_mask=None):
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
        drop_mask = _drop_mask((N, self.n_head, S, T), query, self.attn_drop.p, self.training)
        return MultiHeadAttentionFunction.apply(
            query, key, value, *weights.values(), self.n_head, attn_mask, drop_mask
        )


class FeedForwardNetwork(nn.Module):
    """x (N, T, D) -> fc2(dropout(gelu(fc1(x)))), fc1 (D, ffn_dim), fc2 (ffn_dim, D)."""

    def __init__(self, embed_dim, ffn_dim, dropout=0.1):
        super().__init__()
        self.fc1 = TemporalAffine(embed_dim, ffn_dim)
        self.dropout = Dropout(dropout)
        self.fc2 = TemporalAffine(ffn_dim, embed_dim)

    def forward(self, x):
        return self.fc2(self.dropout(GELUFunction.apply(self.fc1(x))))


class LayerNorm(nn.Module):
    """Layer normalization over the last dim with ``gamma`` (ones) and ``beta`` (zeros)."""

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(num_features))
        self.beta = nn.Parameter(torch.zeros(num_features))
        self.eps = eps

    def forward(self, x):
        return LayerNormLastDimFunction.apply(x, self.gamma, self.beta, self.eps)


class TransformerDecoderLayer(nn.Module):
    """One post-norm decoder layer (CS231n's and nn.TransformerDecoderLayer's layout).

    forward(tgt (N, T, D), memory (N, S, D), tgt_mask (T, T) or None, 0 = blocked) -> (N, T, D).
    """

    def __init__(self, input_dim, num_heads, dim_feedforward=2048, dropout=0.1):
        super().__init__()
        self.self_attn = MultiHeadAttention(input_dim, num_heads, dropout)
        self.cross_attn = MultiHeadAttention(input_dim, num_heads, dropout)
        self.ffn = FeedForwardNetwork(input_dim, dim_feedforward, dropout)
        self.norm_self = LayerNorm(input_dim)
        self.norm_cross = LayerNorm(input_dim)
        self.norm_ffn = LayerNorm(input_dim)
        self.dropout_self = Dropout(dropout)
        self.dropout_cross = Dropout(dropout)
        self.dropout_ffn = Dropout(dropout)

    def forward(self, tgt, memory, tgt_mask=None):
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

    def __init__(self, input_dim, num_heads, dim_feedforward=2048, dropout=0.1):
        super().__init__()
        self.self_attn = MultiHeadAttention(input_dim, num_heads, dropout)
        self.ffn = FeedForwardNetwork(input_dim, dim_feedforward, dropout)
        self.norm_self = LayerNorm(input_dim)
        self.norm_ffn = LayerNorm(input_dim)
        self.dropout_self = Dropout(dropout)
        self.dropout_ffn = Dropout(dropout)

    def forward(self, src, src_mask=None):
        shortcut = src
        src = self.self_attn(query=src, key=src, value=src, attn_mask=src_mask)
        src = self.norm_self(self.dropout_self(src) + shortcut)
        shortcut = src
        src = self.ffn(src)
        return self.norm_ffn(self.dropout_ffn(src) + shortcut)
