"""Argument checks of assignment 3 (rnn_layers, attention, gan, simclr), shared by both twins.

Pure Python like :mod:`numpy_impl._checks`: it only reads ``.shape``/``.dtype`` and calls methods
that NumPy arrays and torch tensors both have (``.min()``, ``.max()``, ``.sum()``, ``.any()``,
comparisons), and imports neither library. ``torch_impl`` imports these checks from here (never
from the NumPy layer modules, which import NumPy), so the same bad input raises the same message
in each twin. The NumPy modules re-export them under their old names.
"""

from __future__ import annotations

import numbers

from ._checks import (
    dtype_name,
    require_int_param,
    require_ndim,
    require_same_shape,
    require_shape,
    shape_of,
)

__all__ = [
    # rnn_layers
    "check_indices",
    "check_cell_args",
    "check_sequence_args",
    "check_embedding_args",
    "check_temporal_affine_args",
    "check_temporal_loss_args",
    # attention
    "check_attention_args",
    "check_attn_mask",
    "check_num_heads",
    "check_mha_args",
    "check_positional_args",
    # simclr
    "check_tau",
    "check_pair_args",
    "check_nonzero_norms",
    # gan
    "check_scores",
    "check_same_shape",
]


def _numel(a) -> int:
    n = 1
    for s in a.shape:
        n *= int(s)
    return n


# --------------------------------------------------------------------------------------------
# Recurrent layers (numpy_impl.rnn_layers / torch_impl.rnn_layers)
# --------------------------------------------------------------------------------------------


def check_indices(name: str, idx, V: int) -> None:
    """idx: integer array of indices that must lie in [0, V) (e.g. word ids for a vocabulary)."""
    if not hasattr(idx, "shape"):
        raise TypeError(f"{name} must be an integer array, got {type(idx).__name__}")
    kind = dtype_name(idx)
    if "int" not in kind:
        raise TypeError(f"{name} must hold integer indices, got dtype {kind}")
    if _numel(idx) and (int(idx.min()) < 0 or int(idx.max()) >= V):
        raise ValueError(
            f"{name} must lie in [0, {V}) (vocabulary size V={V}), "
            f"got values in [{int(idx.min())}, {int(idx.max())}]"
        )


def check_cell_args(x, prev_h, Wx, Wh, b, gates: int, prev_c=None) -> tuple[int, int, int]:
    """One step of a recurrent cell with ``gates`` stacked blocks (RNN 1, LSTM 4).

    x: (N, D); prev_h: (N, H); prev_c: (N, H) or None; Wx: (D, gates*H); Wh: (H, gates*H);
    b: (gates*H,). Returns (N, D, H).
    """
    require_ndim("x", x, 2, "(N, D)")
    require_ndim("prev_h", prev_h, 2, "(N, H)")
    N, D = shape_of(x)
    H = int(prev_h.shape[1])
    require_shape("prev_h", prev_h, (N, H), hint="one hidden state per row of x")
    if prev_c is not None:
        require_shape("prev_c", prev_c, (N, H), hint="same shape as prev_h")
    _check_weights(Wx, Wh, b, D, H, gates)
    return N, D, H


def check_sequence_args(x, h0, Wx, Wh, b, gates: int) -> tuple[int, int, int, int]:
    """A whole sequence: x (N, T, D), h0 (N, H), weights as in :func:`check_cell_args`.

    Returns (N, T, D, H).
    """
    require_ndim("x", x, 3, "(N, T, D)")
    require_ndim("h0", h0, 2, "(N, H)")
    N, T, D = shape_of(x)
    H = int(h0.shape[1])
    if T < 1:
        raise ValueError(f"x must have at least one time step, got shape {shape_of(x)}")
    require_shape("h0", h0, (N, H), hint="one initial hidden state per sequence of x")
    _check_weights(Wx, Wh, b, D, H, gates)
    return N, T, D, H


def _check_weights(Wx, Wh, b, D: int, H: int, gates: int) -> None:
    hint = "" if gates == 1 else f"{gates} gates i, f, o, g of size H={H} side by side"
    require_shape("Wx", Wx, (D, gates * H), hint=hint or f"D={D} inputs, H={H} hidden units")
    require_shape("Wh", Wh, (H, gates * H), hint=hint or f"H={H} hidden units")
    require_shape("b", b, (gates * H,), hint=hint or f"H={H} hidden units")


def check_embedding_args(x, W) -> None:
    """x: integer array (N, T) of word ids; W: (V, D) word vectors."""
    require_ndim("W", W, 2, "(V, D)")
    check_indices("x", x, int(W.shape[0]))


def check_temporal_affine_args(x, w, b) -> None:
    """x: (N, T, D); w: (D, M); b: (M,)."""
    require_ndim("x", x, 3, "(N, T, D)")
    require_ndim("w", w, 2, "(D, M)")
    D = int(x.shape[2])
    require_shape("w", w, (D, None), hint=f"D={D} = x.shape[2]")
    require_shape("b", b, (int(w.shape[1]),), hint="one bias per column of w")


def check_temporal_loss_args(x, y, mask) -> None:
    """x: (N, T, V) scores; y: (N, T) integer targets in [0, V); mask: (N, T)."""
    require_ndim("x", x, 3, "(N, T, V)")
    N, T, V = shape_of(x)
    require_shape("y", y, (N, T), hint="one target word per position of x")
    check_indices("y", y, V)
    require_shape("mask", mask, (N, T), hint="one flag per position of x")


# --------------------------------------------------------------------------------------------
# Attention (numpy_impl.attention / torch_impl.transformer_layers)
# --------------------------------------------------------------------------------------------


def check_attention_args(q, k, v) -> tuple[int, int, int]:
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


def check_attn_mask(attn_mask, S: int, T: int) -> None:
    """attn_mask: (S, T), 0 = blocked. Every query must be allowed to see at least one key."""
    if attn_mask is None:
        return
    require_shape("attn_mask", attn_mask, (S, T), hint=f"S={S} queries by T={T} keys")
    if S and T and int((attn_mask != 0).sum(-1).min()) == 0:
        raise ValueError(
            "attn_mask blocks every key for some query (a row of zeros): the softmax over no "
            "keys is undefined; CS231n's mask uses 0 = blocked, 1 = may attend"
        )


def check_num_heads(embed_dim, num_heads) -> int:
    """The embedding is split into num_heads heads of equal size."""
    num_heads = require_int_param("num_heads", num_heads, 1)
    embed_dim = require_int_param("embed_dim", embed_dim, 1)
    if embed_dim % num_heads != 0:
        raise ValueError(
            f"embed_dim={embed_dim} must be divisible by num_heads={num_heads} "
            "(each head gets embed_dim // num_heads features)"
        )
    return num_heads


def check_mha_args(query, key, value, weights: dict, num_heads) -> tuple[int, int, int, int]:
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


def check_positional_args(embed_dim, max_len) -> None:
    embed_dim = require_int_param("embed_dim", embed_dim, 1)
    require_int_param("max_len", max_len, 1)
    if embed_dim % 2 != 0:
        raise ValueError(
            f"embed_dim must be even for the sin/cos positional encoding, got {embed_dim}"
        )


# --------------------------------------------------------------------------------------------
# SimCLR (numpy_impl.simclr / torch_impl.simclr)
# --------------------------------------------------------------------------------------------


def check_tau(tau) -> float:
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not float(tau) > 0:
        raise ValueError(f"tau (the temperature) must be a positive number, got {tau!r}")
    return float(tau)


def check_pair_args(out_left, out_right) -> None:
    """out_left, out_right: (N, D), the two augmented views of N samples."""
    require_ndim("out_left", out_left, 2, "(N, D)")
    require_same_shape("out_right", out_right, "out_left", out_left)
    if int(out_left.shape[0]) < 1:
        raise ValueError(f"out_left must hold at least one sample, got shape {shape_of(out_left)}")


def check_nonzero_norms(name: str, norms) -> None:
    """Cosine similarity divides by the norm of every row (norms: any shape, >= 0)."""
    if bool((norms == 0).any()):
        what = "is the zero vector" if len(norms.shape) == 0 else "has an all-zero row"
        raise ValueError(f"{name} {what}: its cosine similarity is undefined")


# --------------------------------------------------------------------------------------------
# GAN losses (numpy_impl.gan / torch_impl.gan)
# --------------------------------------------------------------------------------------------


def check_scores(name: str, a) -> None:
    """Scores/logits: a non-empty floating array."""
    if not hasattr(a, "shape"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    kind = dtype_name(a)
    if "float" not in kind:
        raise TypeError(f"{name} must be a floating-point array, got dtype {kind}")
    if any(int(s) == 0 for s in a.shape):
        raise ValueError(f"{name} must not be empty (the mean over no scores is undefined)")


def check_same_shape(name: str, a, ref_name: str, ref) -> None:
    if not hasattr(a, "shape"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    require_same_shape(name, a, ref_name, ref)
