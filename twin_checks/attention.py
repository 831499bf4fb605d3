"""Arguments of attention: scaled dot-product and multi-head attention, positional encoding."""

from __future__ import annotations

from twin_checks.common import (
    Array,
    require_int_param,
    require_ndim,
    require_shape,
    shape_of,
)


def check_attention_args(q: Array, k: Array, v: Array) -> tuple[int, int, int]:
    """q: (..., S, d); k: (..., T, d); v: (..., T, dv) with the same leading dims.

    Returns (S, T, d).
    """
    if not hasattr(q, "shape") or len(q.shape) < 2:
        got = shape_of(q) if hasattr(q, "shape") else type(q).__name__
        raise ValueError(f"q must have at least 2 dimensions (..., S, d), got {got}")
    lead, (S, d) = shape_of(q)[:-2], shape_of(q)[-2:]
    require_ndim("k", k, len(q.shape), "(..., T, d), the same number as q")
    T = int(k.shape[-2])
    require_shape("k", k, lead + (T, d), hint="same leading dims and feature size d as q")
    require_ndim("v", v, len(q.shape), "(..., T, dv), the same number as q")
    require_shape("v", v, lead + (T, None), hint="one value per key of k")
    return S, T, d


def check_attn_mask(attn_mask: Array, S: int, T: int) -> None:
    """attn_mask: (S, T), 0 = blocked. Every query must be allowed to see at least one key."""
    if attn_mask is None:
        return
    require_shape("attn_mask", attn_mask, (S, T), hint=f"S={S} queries by T={T} keys")
    if S and T and int((attn_mask != 0).sum(-1).min()) == 0:
        raise ValueError(
            "attn_mask blocks every key for some query (a row of zeros): the softmax over no "
            "keys is undefined; CS231n's mask uses 0 = blocked, 1 = may attend"
        )


def check_num_heads(embed_dim: object, num_heads: object) -> int:
    """The embedding is split into num_heads heads of equal size."""
    num_heads = require_int_param("num_heads", num_heads, 1)
    embed_dim = require_int_param("embed_dim", embed_dim, 1)
    if embed_dim % num_heads != 0:
        raise ValueError(
            f"embed_dim={embed_dim} must be divisible by num_heads={num_heads} "
            "(each head gets embed_dim // num_heads features)"
        )
    return num_heads


def check_mha_args(
    query: Array, key: Array, value: Array, weights: dict, num_heads: object
) -> tuple[int, int, int, int]:
    """query: (N, S, E); key, value: (N, T, E); weights {'Wq': (E, E), 'bq': (E,), ...}.

    Returns (N, S, T, E).
    """
    require_ndim("query", query, 3, "(N, S, E)")
    N, S, E = shape_of(query)
    require_ndim("key", key, 3, "(N, T, E)")
    T = int(key.shape[1])
    require_shape("key", key, (N, T, E), hint="same batch size and embed_dim as query")
    require_shape("value", value, (N, T, E), hint="the shape of key")
    for name, a in weights.items():
        require_shape(name, a, (E, E) if name.startswith("W") else (E,), hint=f"E={E}")
    check_num_heads(E, num_heads)
    return N, S, T, E


def check_positional_args(embed_dim: object, max_len: object) -> None:
    embed_dim = require_int_param("embed_dim", embed_dim, 1)
    require_int_param("max_len", max_len, 1)
    if embed_dim % 2 != 0:
        raise ValueError(
            f"embed_dim must be even for the sin/cos positional encoding, got {embed_dim}"
        )
