"""Arguments of the recurrent layers.

RNN and LSTM cells and sequences, word embedding, temporal affine and temporal loss.
"""

from __future__ import annotations

from twin_checks.common import (
    Array,
    dtype_name,
    numel,
    require_ndim,
    require_shape,
    shape_of,
)


def check_indices(name: str, idx: Array, V: int) -> None:
    """idx: integer array of indices that must lie in [0, V) (e.g. word ids for a vocabulary)."""
    if not hasattr(idx, "shape"):
        raise TypeError(f"{name} must be an integer array, got {type(idx).__name__}")
    kind = dtype_name(idx)
    if "int" not in kind:
        raise TypeError(f"{name} must hold integer indices, got dtype {kind}")
    if numel(idx) and (int(idx.min()) < 0 or int(idx.max()) >= V):
        raise ValueError(
            f"{name} must lie in [0, {V}) (vocabulary size V={V}), "
            f"got values in [{int(idx.min())}, {int(idx.max())}]"
        )


def check_cell_args(
    x: Array, prev_h: Array, Wx: Array, Wh: Array, b: Array, gates: int, prev_c: Array | None = None
) -> tuple[int, int, int]:
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


def check_sequence_args(
    x: Array, h0: Array, Wx: Array, Wh: Array, b: Array, gates: int
) -> tuple[int, int, int, int]:
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


def _check_weights(Wx: Array, Wh: Array, b: Array, D: int, H: int, gates: int) -> None:
    hint = "" if gates == 1 else f"{gates} gates i, f, o, g of size H={H} side by side"
    require_shape("Wx", Wx, (D, gates * H), hint=hint or f"D={D} inputs, H={H} hidden units")
    require_shape("Wh", Wh, (H, gates * H), hint=hint or f"H={H} hidden units")
    require_shape("b", b, (gates * H,), hint=hint or f"H={H} hidden units")


def check_embedding_args(x: Array, W: Array) -> None:
    """x: integer array (N, T) of word ids; W: (V, D) word vectors."""
    require_ndim("W", W, 2, "(V, D)")
    check_indices("x", x, int(W.shape[0]))


def check_temporal_affine_args(x: Array, w: Array, b: Array) -> None:
    """x: (N, T, D); w: (D, M); b: (M,)."""
    require_ndim("x", x, 3, "(N, T, D)")
    require_ndim("w", w, 2, "(D, M)")
    D = int(x.shape[2])
    require_shape("w", w, (D, None), hint=f"D={D} = x.shape[2]")
    require_shape("b", b, (int(w.shape[1]),), hint="one bias per column of w")


def check_temporal_loss_args(x: Array, y: Array, mask: Array) -> None:
    """x: (N, T, V) scores; y: (N, T) integer targets in [0, V); mask: (N, T)."""
    require_ndim("x", x, 3, "(N, T, V)")
    N, T, V = shape_of(x)
    require_shape("y", y, (N, T), hint="one target word per position of x")
    check_indices("y", y, V)
    require_shape("mask", mask, (N, T), hint="one flag per position of x")
