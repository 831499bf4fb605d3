"""Attention for CS231n assignment 3 in NumPy, with hand-derived backward passes.

The course writes these layers in PyTorch (``cs231n/transformer_layers.py``); this is the same
math as forward/backward pairs in the ``*_forward(...) -> (out, cache)`` /
``*_backward(dout, cache)`` convention of the other NumPy layers.

- :func:`scaled_dot_product_attention_forward`: softmax(q k^T / sqrt(d)) v over any leading
  batch/head dimensions.
- :func:`multihead_attention_forward`: CS231n's ``MultiHeadAttention``: project query/key/value,
  split the embedding into ``num_heads`` heads of size E/num_heads, attend per head, concatenate,
  project. Weights use the CS231n layout (E_in, E_out) (``x @ W + b``), i.e. the TRANSPOSE of an
  ``nn.Linear`` weight.
- :func:`positional_encoding`: sinusoidal encoding, sin on even and cos on odd embedding dims.
- :func:`gelu_forward`: the exact GELU of the transformer's feed-forward network (Hendrycks &
  Gimpel 2016), the twin of torch_impl's GELUFunction.

Mask semantics follow CS231n: ``attn_mask`` has shape (S, T) (S queries, T keys) and a ZERO entry
means "query s may NOT attend to key t" (the score is set to -inf before the softmax). PyTorch
has two other conventions: ``F.scaled_dot_product_attention`` takes a bool mask with True =
"may attend" (so ``attn_mask != 0``), while ``nn.MultiheadAttention`` takes a bool mask with
True = "blocked" (so ``attn_mask == 0``). A query row whose keys are ALL blocked has no defined
softmax and raises ValueError.

Dropout on the attention weights (as in CS231n's ``self.attn_drop``) is controlled by an optional
``dropout_param`` dict in the layers' convention: ``'p'`` is the KEEP probability, ``'mode'``
'train'/'test', optional ``'seed'``; an optional ``'mask'`` (values 0 or 1/p, the shape of the
attention weights) is used as is, which lets tests share one mask between the twins.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from numpy_impl.layers import Cache, dropout_mask
from twin_checks import (  # pure-Python argument checks, shared with torch_impl
    check_attention_args,
    check_attn_mask,
    check_dout,
    check_mha_args,
    check_positional_args,
    require_ndim,
    shape_of,
)
from twin_checks import (
    check_num_heads as check_num_heads,  # re-exported under its old home
)

# --------------------------------------------------------------------------------------------
# Dropout on attention weights / embeddings
# --------------------------------------------------------------------------------------------


def _dropout_mask(
    shape: tuple[int, ...], dtype: DTypeLike, dropout_param: dict[str, Any] | None
) -> np.ndarray | None:
    """The inverted-dropout multiplier (0 or 1/p) of layers.dropout_mask, or None when dropout is
    off (no dropout_param, or test mode)."""
    return None if dropout_param is None else dropout_mask(shape, dtype, dropout_param)


# --------------------------------------------------------------------------------------------
# GELU, the transformer feed-forward network's nonlinearity
# --------------------------------------------------------------------------------------------

_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Exact GELU (Hendrycks & Gimpel, 2016): out = x Phi(x), Phi the standard normal CDF.

    x: any shape. Returns out (x's shape and dtype) and cache = x.
    """
    cdf = 0.5 * (1.0 + _erf(np.asarray(x, dtype=np.float64) / math.sqrt(2.0)))
    return (x * cdf).astype(x.dtype, copy=False), x


def gelu_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """d/dx x Phi(x) = Phi(x) + x phi(x), phi the standard normal density. Returns dx."""
    x = cache
    x64 = np.asarray(x, dtype=np.float64)
    cdf = 0.5 * (1.0 + _erf(x64 / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * x64 * x64) / math.sqrt(2.0 * math.pi)
    return (dout * (cdf + x64 * pdf)).astype(np.result_type(dout, x), copy=False)


# --------------------------------------------------------------------------------------------
# Scaled dot-product attention
# --------------------------------------------------------------------------------------------


def scaled_dot_product_attention_forward(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    attn_mask: np.ndarray | None = None,
    dropout_param: dict[str, Any] | None = None,
) -> tuple[np.ndarray, Cache]:
    """out = dropout(softmax(q k^T / sqrt(d) with blocked scores = -inf)) v.

    q: (..., S, d) queries; k: (..., T, d) keys; v: (..., T, dv) values (same leading dims);
    attn_mask: None or (S, T), 0 = blocked (broadcast over the leading dims);
    dropout_param: None or the dropout dict described in the module docstring.
    Returns out (..., S, dv) and cache = (q, k, v, A, drop_mask, scale) with A (..., S, T) the
    attention weights before dropout and drop_mask None or the (0, 1/p) multiplier.
    """
    S, T, d = check_attention_args(q, k, v)
    check_attn_mask(attn_mask, S, T)
    scale = 1.0 / math.sqrt(d)
    scores = (q @ np.swapaxes(k, -1, -2)) * scale
    if attn_mask is not None:
        # exp(-inf) = 0: blocked keys get exactly zero weight (and zero gradient).
        scores = np.where(np.asarray(attn_mask) == 0, -np.inf, scores)
    scores = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(scores)
    A = e / e.sum(axis=-1, keepdims=True)
    drop_mask = _dropout_mask(A.shape, A.dtype, dropout_param)
    A_used = A if drop_mask is None else A * drop_mask
    return A_used @ v, (q, k, v, A, drop_mask, scale)


def scaled_dot_product_attention_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`scaled_dot_product_attention_forward`.

    dout: (..., S, dv). Returns dq (..., S, d), dk (..., T, d), dv (..., T, dv).
    """
    q, k, v, A, drop_mask, scale = cache
    check_dout(dout, shape_of(q)[:-1] + shape_of(v)[-1:])
    A_used = A if drop_mask is None else A * drop_mask
    dv = np.swapaxes(A_used, -1, -2) @ dout
    dA = dout @ np.swapaxes(v, -1, -2)
    if drop_mask is not None:
        dA = dA * drop_mask
    # Softmax Jacobian row by row: dscore_j = A_j (dA_j - sum_k A_k dA_k).
    dscores = A * (dA - (dA * A).sum(axis=-1, keepdims=True))
    dq = (dscores @ k) * scale
    dk = (np.swapaxes(dscores, -1, -2) @ q) * scale
    return dq, dk, dv


# --------------------------------------------------------------------------------------------
# Multi-head attention
# --------------------------------------------------------------------------------------------


def _split_heads(X: np.ndarray, num_heads: int) -> np.ndarray:
    """(N, L, E) -> (N, num_heads, L, E // num_heads): head h owns features h*Dh:(h+1)*Dh."""
    N, L, E = X.shape
    return X.reshape(N, L, num_heads, E // num_heads).transpose(0, 2, 1, 3)


def _merge_heads(X: np.ndarray) -> np.ndarray:
    """(N, num_heads, L, Dh) -> (N, L, num_heads * Dh), the inverse of :func:`_split_heads`."""
    N, Hh, L, Dh = X.shape
    return X.transpose(0, 2, 1, 3).reshape(N, L, Hh * Dh)


def multihead_attention_forward(
    query: np.ndarray,
    key: np.ndarray,
    value: np.ndarray,
    Wq: np.ndarray,
    bq: np.ndarray,
    Wk: np.ndarray,
    bk: np.ndarray,
    Wv: np.ndarray,
    bv: np.ndarray,
    Wo: np.ndarray,
    bo: np.ndarray,
    num_heads: int,
    attn_mask: np.ndarray | None = None,
    dropout_param: dict[str, Any] | None = None,
) -> tuple[np.ndarray, Cache]:
    """CS231n's MultiHeadAttention forward.

    query: (N, S, E); key, value: (N, T, E); Wq, Wk, Wv, Wo: (E, E) in CS231n layout;
    bq, bk, bv, bo: (E,); num_heads divides E; attn_mask: None or (S, T), 0 = blocked;
    dropout_param: None or the dropout dict (applied to the attention weights (N, heads, S, T)).
    Q = query @ Wq + bq (likewise K, V); per head: softmax(Q_h K_h^T / sqrt(E/heads)) V_h;
    heads concatenated back to (N, S, E); out = concat @ Wo + bo.
    Returns out (N, S, E) and cache = (query, key, value, Wq, Wk, Wv, Wo, num_heads, Y, sdpa)
    with Y (N, S, E) the concatenated heads and sdpa the attention cache.
    """
    weights = dict(Wq=Wq, bq=bq, Wk=Wk, bk=bk, Wv=Wv, bv=bv, Wo=Wo, bo=bo)
    N, S, T, E = check_mha_args(query, key, value, weights, num_heads)
    heads = [
        _split_heads(x @ W + b, num_heads)
        for x, W, b in ((query, Wq, bq), (key, Wk, bk), (value, Wv, bv))
    ]
    Yh, sdpa_cache = scaled_dot_product_attention_forward(*heads, attn_mask, dropout_param)  # type: ignore[call-arg, arg-type]
    Y = _merge_heads(Yh)
    out = Y @ Wo + bo
    return out, (query, key, value, Wq, Wk, Wv, Wo, num_heads, Y, sdpa_cache)


def multihead_attention_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, ...]:
    """Backward of :func:`multihead_attention_forward`.

    dout: (N, S, E). Returns dquery (N, S, E), dkey (N, T, E), dvalue (N, T, E), dWq, dbq, dWk,
    dbk, dWv, dbv, dWo, dbo (the forward's array arguments, in order). For self-attention
    (query is key is value) the caller sums dquery + dkey + dvalue.
    """
    query, key, value, Wq, Wk, Wv, Wo, num_heads, Y, sdpa_cache = cache
    check_dout(dout, Y.shape)
    E = Y.shape[2]
    dWo = Y.reshape(-1, E).T @ dout.reshape(-1, E)
    dbo = dout.sum(axis=(0, 1))
    dYh = _split_heads(dout @ Wo.T, num_heads)
    dheads = scaled_dot_product_attention_backward(dYh, sdpa_cache)
    grads = []
    for x, W, dh in zip((query, key, value), (Wq, Wk, Wv), dheads, strict=True):
        dP = _merge_heads(dh)  # gradient of the projection x @ W + b
        grads += [dP @ W.T, x.reshape(-1, E).T @ dP.reshape(-1, E), dP.sum(axis=(0, 1))]
    (dq, dWq, dbq), (dk, dWk, dbk), (dv, dWv, dbv) = grads[0:3], grads[3:6], grads[6:9]
    return dq, dk, dv, dWq, dbq, dWk, dbk, dWv, dbv, dWo, dbo


# --------------------------------------------------------------------------------------------
# Sinusoidal positional encoding
# --------------------------------------------------------------------------------------------


def positional_encoding(max_len: int, embed_dim: int, dtype: DTypeLike = np.float64) -> np.ndarray:
    """The (max_len, embed_dim) table: pe[pos, 2i] = sin(pos * 10000^(-2i/D)),
    pe[pos, 2i+1] = cos(pos * 10000^(-2i/D)).

    Computed in float64 and cast to ``dtype``. embed_dim must be even (as in CS231n).
    """
    check_positional_args(embed_dim, max_len)
    position = np.arange(max_len, dtype=np.float64)[:, None]
    freq = 10000.0 ** (-np.arange(0, embed_dim, 2, dtype=np.float64) / embed_dim)
    pe = np.empty((max_len, embed_dim), dtype=np.float64)
    pe[:, 0::2] = np.sin(position * freq)
    pe[:, 1::2] = np.cos(position * freq)
    return pe.astype(dtype)


def positional_encoding_forward(
    x: np.ndarray, dropout_param: dict[str, Any] | None = None
) -> tuple[np.ndarray, Cache]:
    """out = dropout(x + pe[:S]), CS231n's PositionalEncoding.forward.

    x: (N, S, D) embeddings, D even; dropout_param: None or the dropout dict.
    Returns out (N, S, D) and cache = (drop_mask, shape) (the encoding is a constant).
    """
    require_ndim("x", x, 3, "(N, S, D)")
    N, S, D = shape_of(x)
    out = x + positional_encoding(S, D, dtype=x.dtype)
    drop_mask = _dropout_mask(out.shape, out.dtype, dropout_param)
    if drop_mask is not None:
        out = out * drop_mask
    return out, (drop_mask, out.shape)


def positional_encoding_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """Backward of :func:`positional_encoding_forward`: dout: (N, S, D) -> dx (N, S, D)."""
    drop_mask, shape = cache
    check_dout(dout, shape)
    return dout.copy() if drop_mask is None else dout * drop_mask
