"""Recurrent layers of CS231n assignment 3 (RNN, LSTM, word embedding, temporal affine/softmax).

Same names, signatures and return orders as the course's ``cs231n/rnn_layers.py``:
``*_forward(...) -> (out, cache)`` and ``*_backward(dout, cache)`` returning the gradients in the
order of the forward's array arguments.

Conventions (CS231n's, which differ from PyTorch's ``nn.RNN``/``nn.LSTM`` on purpose):

- Weights are stored input-major: ``Wx`` (D, H) and ``Wh`` (H, H) multiply from the right
  (``x @ Wx``); PyTorch's ``weight_ih`` is ``Wx.T``. There is ONE bias ``b``; PyTorch has two
  (``bias_ih + bias_hh``), whose sum plays the role of ``b``.
- LSTM gates are stacked in the order **i, f, o, g** (input, forget, output, candidate); PyTorch
  stacks i, f, g, o. The initial cell state is always zero.

The sequence layers loop over time (the recurrence is sequential), but every product that does
not depend on the recurrence (the input term ``x @ Wx`` and the weight gradients) is computed for
all time steps at once.

The argument checks (``check_*``) live in the pure-Python :mod:`twin_checks`, which
``torch_impl`` imports too (never this NumPy module), so both twins raise the same messages; they
stay importable from here under their old names.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from twin_checks import (  # pure-Python argument checks, shared with torch_impl
    check_cell_args,
    check_dout,
    check_embedding_args,
    check_sequence_args,
    check_temporal_affine_args,
    check_temporal_loss_args,
    require_shape,
    shape_of,
)
from twin_checks import (
    check_indices as check_indices,  # re-exported (numpy_impl.classifiers.rnn uses it)
)

if TYPE_CHECKING:
    from numpy_impl.layers import Cache, Loss

# --------------------------------------------------------------------------------------------
# Vanilla RNN
# --------------------------------------------------------------------------------------------


def rnn_step_forward(
    x: np.ndarray, prev_h: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, Cache]:
    """One time step of a tanh RNN: next_h = tanh(x @ Wx + prev_h @ Wh + b).

    x: (N, D); prev_h: (N, H); Wx: (D, H); Wh: (H, H); b: (H,).
    Returns next_h (N, H) and cache = (x, prev_h, Wx, Wh, next_h).
    """
    check_cell_args(x, prev_h, Wx, Wh, b, gates=1)
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(
    dnext_h: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`rnn_step_forward`.

    dnext_h: (N, H). Returns dx (N, D), dprev_h (N, H), dWx (D, H), dWh (H, H), db (H,).
    """
    x, prev_h, Wx, Wh, next_h = cache
    check_dout(dnext_h, next_h.shape)
    # d tanh(a) / da = 1 - tanh(a)^2, and tanh(a) is the cached output.
    da = dnext_h * (1 - next_h**2)
    return da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def rnn_forward(
    x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, Cache]:
    """A tanh RNN over a whole sequence.

    x: (N, T, D); h0: (N, H); Wx: (D, H); Wh: (H, H); b: (H,).
    Returns h (N, T, H), the hidden state at every step, and cache = (x, h0, Wx, Wh, h).
    """
    N, T, D, H = check_sequence_args(x, h0, Wx, Wh, b, gates=1)
    # The input term does not depend on the recurrence: one product for all steps.
    xa = x @ Wx + b
    h = np.empty(xa.shape, dtype=np.result_type(xa, h0, Wh))
    prev_h = h0
    for t in range(T):
        prev_h = np.tanh(xa[:, t] + prev_h @ Wh)
        h[:, t] = prev_h
    return h, (x, h0, Wx, Wh, h)


def rnn_backward(
    dh: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`rnn_forward`.

    dh: (N, T, H), the upstream gradient of EVERY hidden state (not only the last).
    Returns dx (N, T, D), dh0 (N, H), dWx (D, H), dWh (H, H), db (H,).
    """
    x, h0, Wx, Wh, h = cache
    check_dout(dh, h.shape)
    # Backprop through time: h_t receives dh[:, t] from above plus the gradient flowing back
    # from step t+1. Only that recurrence is sequential; da (gradient of each pre-activation)
    # is stored so the weight gradients become single products over all steps afterwards.
    da = np.empty(h.shape, dtype=np.result_type(dh, h))
    dprev_h = np.zeros_like(da[:, 0])
    for t in reversed(range(h.shape[1])):
        da[:, t] = (dh[:, t] + dprev_h) * (1 - h[:, t] ** 2)
        dprev_h = da[:, t] @ Wh.T
    h_prev = np.concatenate([h0[:, None, :], h[:, :-1]], axis=1)  # the state each step read
    dx = da @ Wx.T
    dWx, dWh, db = _weight_grads(x, h_prev, da)
    return dx, dprev_h, dWx, dWh, db


def _weight_grads(
    x: np.ndarray, h_prev: np.ndarray, da: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum over batch and time: dWx = sum_t x_t^T da_t, dWh = sum_t h_{t-1}^T da_t, db."""
    da2 = _rows(da)
    dWx = _rows(x).T @ da2
    dWh = _rows(h_prev).T @ da2
    return dWx, dWh, da2.sum(axis=0)


def _rows(a: np.ndarray) -> np.ndarray:
    """a (..., D) as the 2-D matrix (prod(...), D) of its rows. Not ``reshape(-1, D)``: with a
    zero-size dimension (N, T or D = 0) the -1 is ambiguous and reshape raises."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


# --------------------------------------------------------------------------------------------
# Word embedding
# --------------------------------------------------------------------------------------------


def word_embedding_forward(x: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Look up the word vector of every index.

    x: integer (N, T) word ids in [0, V); W: (V, D). Returns out (N, T, D) and cache = (x, W).
    """
    check_embedding_args(x, W)
    return W[x], (x, W)


def word_embedding_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """Backward of :func:`word_embedding_forward`.

    dout: (N, T, D). Returns dW (V, D). A word appearing several times receives the SUM of the
    gradients of its occurrences; ``np.add.at`` accumulates repeated indices, where ``dW[x] +=
    dout`` would keep only one of them.
    """
    x, W = cache
    check_dout(dout, x.shape + W.shape[1:])
    dW = np.zeros(W.shape, dtype=np.result_type(dout, W))
    np.add.at(dW, x, dout)
    return dW


# --------------------------------------------------------------------------------------------
# LSTM
# --------------------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (no overflow of exp for large |x|)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _lstm_gates(a: np.ndarray, H: int) -> np.ndarray:
    """a: (N, 4H) pre-activations in the order i, f, o, g -> activated gates (N, 4H)."""
    gates = np.empty_like(a)
    gates[:, : 3 * H] = _sigmoid(a[:, : 3 * H])
    gates[:, 3 * H :] = np.tanh(a[:, 3 * H :])
    return gates


def _lstm_cell_backward(
    dnext_h: np.ndarray,
    dnext_c: np.ndarray,
    gates: np.ndarray,
    prev_c: np.ndarray,
    tanh_c: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of one LSTM cell w.r.t. its pre-activation a (N, 4H) and prev_c (N, H).

    next_c = f * prev_c + i * g and next_h = o * tanh(next_c); next_c also receives the
    gradient that reaches next_h through tanh.
    """
    H = prev_c.shape[1]
    i, f, o, g = (gates[:, k * H : (k + 1) * H] for k in range(4))
    dc = dnext_c + dnext_h * o * (1 - tanh_c**2)
    di, df, do, dg = dc * g, dc * prev_c, dnext_h * tanh_c, dc * i
    # sigmoid' = s (1 - s); tanh' = 1 - t^2, both from the cached activations.
    da = np.concatenate(
        [di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g**2)], axis=1
    )
    return da, dc * f


def lstm_step_forward(
    x: np.ndarray,
    prev_h: np.ndarray,
    prev_c: np.ndarray,
    Wx: np.ndarray,
    Wh: np.ndarray,
    b: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, Cache]:
    """One LSTM step, gates in CS231n's order i, f, o, g.

    x: (N, D); prev_h, prev_c: (N, H); Wx: (D, 4H); Wh: (H, 4H); b: (4H,).
    a = x @ Wx + prev_h @ Wh + b; i, f, o = sigmoid(a_i, a_f, a_o); g = tanh(a_g);
    next_c = f * prev_c + i * g; next_h = o * tanh(next_c).
    Returns next_h (N, H), next_c (N, H), cache = (x, prev_h, prev_c, Wx, Wh, gates, tanh_c)
    with gates (N, 4H) the activated i, f, o, g.
    """
    N, D, H = check_cell_args(x, prev_h, Wx, Wh, b, gates=4, prev_c=prev_c)
    gates = _lstm_gates(x @ Wx + prev_h @ Wh + b, H)
    i, f, o, g = (gates[:, k * H : (k + 1) * H] for k in range(4))
    next_c = f * prev_c + i * g
    tanh_c = np.tanh(next_c)
    next_h = o * tanh_c
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, gates, tanh_c)


def lstm_step_backward(
    dnext_h: np.ndarray, dnext_c: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`lstm_step_forward`.

    dnext_h, dnext_c: (N, H). Returns dx (N, D), dprev_h (N, H), dprev_c (N, H), dWx (D, 4H),
    dWh (H, 4H), db (4H,).
    """
    x, prev_h, prev_c, Wx, Wh, gates, tanh_c = cache
    check_dout(dnext_h, tanh_c.shape)
    require_shape("dnext_c", dnext_c, shape_of(tanh_c), hint="the shape of next_c")
    da, dprev_c = _lstm_cell_backward(dnext_h, dnext_c, gates, prev_c, tanh_c)
    return da @ Wx.T, da @ Wh.T, dprev_c, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def lstm_forward(
    x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, Cache]:
    """An LSTM over a whole sequence; the initial cell state is zero.

    x: (N, T, D); h0: (N, H); Wx: (D, 4H); Wh: (H, 4H); b: (4H,).
    Returns h (N, T, H) and cache = (x, h0, Wx, Wh, gates, c, tanh_c, h) with gates (N, T, 4H)
    the activated i, f, o, g and c, tanh_c (N, T, H) the cell states and their tanh.
    """
    N, T, D, H = check_sequence_args(x, h0, Wx, Wh, b, gates=4)
    xa = x @ Wx + b
    dtype = np.result_type(xa, h0, Wh)
    gates = np.empty((N, T, 4 * H), dtype=dtype)
    c = np.empty((N, T, H), dtype=dtype)
    tanh_c = np.empty_like(c)
    h = np.empty_like(c)
    prev_h, prev_c = h0, np.zeros((N, H), dtype=dtype)
    for t in range(T):
        gates[:, t] = _lstm_gates(xa[:, t] + prev_h @ Wh, H)
        i, f, o, g = (gates[:, t, k * H : (k + 1) * H] for k in range(4))
        prev_c = f * prev_c + i * g
        c[:, t], tanh_c[:, t] = prev_c, np.tanh(prev_c)
        prev_h = h[:, t] = o * tanh_c[:, t]
    return h, (x, h0, Wx, Wh, gates, c, tanh_c, h)


def lstm_backward(
    dh: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`lstm_forward`.

    dh: (N, T, H), upstream gradient of every hidden state.
    Returns dx (N, T, D), dh0 (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,).
    """
    x, h0, Wx, Wh, gates, c, tanh_c, h = cache
    check_dout(dh, h.shape)
    N, T, H = h.shape
    dtype = np.result_type(dh, h)
    c_prev = np.concatenate([np.zeros_like(c[:, :1]), c[:, :-1]], axis=1)  # c0 = 0
    da = np.empty((N, T, 4 * H), dtype=dtype)
    dprev_h = np.zeros((N, H), dtype=dtype)
    dprev_c = np.zeros((N, H), dtype=dtype)
    for t in reversed(range(T)):
        da[:, t], dprev_c = _lstm_cell_backward(
            dh[:, t] + dprev_h, dprev_c, gates[:, t], c_prev[:, t], tanh_c[:, t]
        )
        dprev_h = da[:, t] @ Wh.T
    h_prev = np.concatenate([h0[:, None, :], h[:, :-1]], axis=1)
    dx = da @ Wx.T
    dWx, dWh, db = _weight_grads(x, h_prev, da)
    return dx, dprev_h, dWx, dWh, db


# --------------------------------------------------------------------------------------------
# Temporal affine and temporal softmax loss
# --------------------------------------------------------------------------------------------


def temporal_affine_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, Cache]:
    """The same affine map at every time step.

    x: (N, T, D); w: (D, M); b: (M,). Returns out (N, T, M) and cache = (x, w, b, out).
    """
    check_temporal_affine_args(x, w, b)
    out = x @ w + b
    return out, (x, w, b, out)


def temporal_affine_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`temporal_affine_forward`.

    dout: (N, T, M). Returns dx (N, T, D), dw (D, M), db (M,).
    """
    x, w, b, out = cache
    check_dout(dout, out.shape)
    dx = dout @ w.T
    dw = _rows(x).T @ _rows(dout)
    db = dout.sum(axis=(0, 1))
    return dx, dw, db


def temporal_softmax_loss(
    x: np.ndarray, y: np.ndarray, mask: np.ndarray, verbose: bool = False
) -> tuple[Loss, np.ndarray]:
    """Softmax cross-entropy at every time step, summed over time and averaged over the batch.

    x: (N, T, V) scores; y: (N, T) integer targets in [0, V); mask: (N, T), 1/True where the
    position counts (CS231n uses it to ignore <NULL> padding; it multiplies each term).
    loss = -(1/N) * sum_{n,t} mask[n,t] * log softmax(x[n,t])[y[n,t]].
    Returns loss (scalar) and dx (N, T, V).
    """
    check_temporal_loss_args(x, y, mask)
    N, T, V = x.shape
    x_flat = x.reshape(N * T, V)
    y_flat = y.reshape(N * T)
    # Keep the mask in x's dtype so a float64/bool mask never upcasts float32 scores.
    mask_flat = np.asarray(mask).reshape(N * T).astype(x.dtype)

    shifted = x_flat - x_flat.max(axis=1, keepdims=True)  # log-sum-exp shift
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(N * T)
    loss = -(mask_flat * log_probs[rows, y_flat]).sum() / N

    dx_flat = np.exp(log_probs)
    dx_flat[rows, y_flat] -= 1
    dx_flat /= N
    dx_flat *= mask_flat[:, None]
    if verbose:
        print("dx_flat: ", dx_flat.shape)
    return loss, dx_flat.reshape(N, T, V)
