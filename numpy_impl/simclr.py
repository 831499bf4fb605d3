"""SimCLR's contrastive (NT-Xent) loss of CS231n assignment 3 in NumPy, with gradients.

The course writes these in PyTorch (``cs231n/simclr/contrastive_loss.py``); the NumPy twin keeps
the names and adds the backward passes:

- ``sim(z_i, z_j)``: cosine similarity of two vectors; ``sim_backward(dsim, z_i, z_j)``.
- ``compute_sim_matrix(out)``: (2N, 2N) cosine similarities of all rows;
  ``compute_sim_matrix_backward(dsim_matrix, out)``.
- ``sim_positive_pairs(out_left, out_right)``: (N, 1) similarity of each augmented pair;
  ``sim_positive_pairs_backward(dpos, out_left, out_right)``.
- ``simclr_loss_naive`` / ``simclr_loss_vectorized(out_left, out_right, tau)`` ->
  ``(loss, (dout_left, dout_right))``, the convention of the other NumPy losses.

These layers are cheap, so their backward functions take the forward's inputs instead of a
cache and recompute the normalized rows.

The loss: stack out = [out_left; out_right] (2N rows, row k and row k+N are the two views of
sample k), s_im = cos(z_i, z_m), and for every anchor i with positive p(i) = (i + N) mod 2N,
    l(i) = -log( exp(s_{i,p(i)}/tau) / sum_{m != i} exp(s_im/tau) ),
loss = mean over the 2N anchors. Computed with a log-sum-exp shift, so a small temperature
cannot overflow (the course's direct exp does for tau < ~0.0115 in float32).

Backward of the cosine similarity: with r = ||z|| and u = z / r, a gradient du on u becomes
dz = (du - u (u . du)) / r (the component along u does not change u).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from twin_checks import (  # pure-Python argument checks, shared with torch_impl
    check_dout,
    check_nonzero_norms,
    check_pair_args,
    check_tau,
    require_ndim,
    require_same_shape,
)

if TYPE_CHECKING:
    from numpy_impl.layers import Loss

# --------------------------------------------------------------------------------------------
# Cosine similarities
# --------------------------------------------------------------------------------------------


def _normalize_rows(out: np.ndarray, name: str = "out") -> tuple[np.ndarray, np.ndarray]:
    """out: (M, D) -> (u (M, D) unit rows, r (M, 1) norms)."""
    r = np.sqrt((out * out).sum(axis=1, keepdims=True))
    check_nonzero_norms(name, r)
    return out / r, r


def _normalize_rows_backward(du: np.ndarray, u: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Gradient through u = z / ||z||: dz = (du - u (u . du)) / r."""
    return (du - u * (du * u).sum(axis=1, keepdims=True)) / r


def sim(z_i: np.ndarray, z_j: np.ndarray) -> Loss:
    """Cosine similarity z_i . z_j / (||z_i|| ||z_j||) of two vectors z_i, z_j: (D,)."""
    require_ndim("z_i", z_i, 1, "(D,)")
    require_same_shape("z_j", z_j, "z_i", z_i)
    check_nonzero_norms("z_i", (z_i * z_i).sum())
    check_nonzero_norms("z_j", (z_j * z_j).sum())
    return sim_positive_pairs(z_i[None], z_j[None])[0, 0]


def sim_backward(dsim: float, z_i: np.ndarray, z_j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of ``dsim * sim(z_i, z_j)``: returns (dz_i (D,), dz_j (D,))."""
    require_ndim("z_i", z_i, 1, "(D,)")
    require_same_shape("z_j", z_j, "z_i", z_i)
    dpos = np.full((1, 1), dsim, dtype=np.result_type(z_i, z_j))
    dz_i, dz_j = sim_positive_pairs_backward(dpos, z_i[None], z_j[None])
    return dz_i[0], dz_j[0]


def compute_sim_matrix(out: np.ndarray) -> np.ndarray:
    """out: (M, D) (M = 2N) -> (M, M) matrix of pairwise cosine similarities u u^T."""
    require_ndim("out", out, 2, "(2N, D)")
    u, _ = _normalize_rows(out)
    return u @ u.T


def compute_sim_matrix_backward(dsim_matrix: np.ndarray, out: np.ndarray) -> np.ndarray:
    """dsim_matrix: (M, M) upstream gradient; out: (M, D). Returns dout (M, D).

    S = u u^T, so du = (dS + dS^T) u.
    """
    require_ndim("out", out, 2, "(2N, D)")
    check_dout(dsim_matrix, (out.shape[0], out.shape[0]))
    u, r = _normalize_rows(out)
    return _normalize_rows_backward((dsim_matrix + dsim_matrix.T) @ u, u, r)


def sim_positive_pairs(out_left: np.ndarray, out_right: np.ndarray) -> np.ndarray:
    """out_left, out_right: (N, D) -> (N, 1) with row k = cos(out_left[k], out_right[k])."""
    check_pair_args(out_left, out_right)
    u, _ = _normalize_rows(out_left, "out_left")
    v, _ = _normalize_rows(out_right, "out_right")
    return (u * v).sum(axis=1, keepdims=True)


def sim_positive_pairs_backward(
    dpos: np.ndarray, out_left: np.ndarray, out_right: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """dpos: (N, 1). Returns (dout_left (N, D), dout_right (N, D))."""
    check_pair_args(out_left, out_right)
    check_dout(dpos, (out_left.shape[0], 1))
    u, ru = _normalize_rows(out_left, "out_left")
    v, rv = _normalize_rows(out_right, "out_right")
    return _normalize_rows_backward(dpos * v, u, ru), _normalize_rows_backward(dpos * u, v, rv)


# --------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------


def simclr_loss_naive(
    out_left: np.ndarray, out_right: np.ndarray, tau: float
) -> tuple[Loss, tuple[np.ndarray, np.ndarray]]:
    """Reference loop over the 2N anchors (teaching version; see the module docstring).

    out_left, out_right: (N, D); tau: temperature > 0.
    Returns (loss, (dout_left, dout_right)).
    """
    check_pair_args(out_left, out_right)
    tau = check_tau(tau)
    N = out_left.shape[0]
    out = np.concatenate([out_left, out_right], axis=0)
    _normalize_rows(out)  # the same zero-row check as the vectorized loss
    dout = np.zeros_like(out)
    total = 0.0
    for i in range(2 * N):
        p = (i + N) % (2 * N)
        others = [m for m in range(2 * N) if m != i]
        logits = np.array([sim(out[i], out[m]) for m in others]) / tau
        shift = logits.max()
        log_denom = shift + np.log(np.exp(logits - shift).sum())
        total += log_denom - sim(out[i], out[p]) / tau
        # d l(i) / d s_im = (softmax over m != i of s_im/tau - [m == p]) / tau
        weights = np.exp(logits - log_denom)
        for m, w in zip(others, weights, strict=True):
            dsim = (w - (m == p)) / tau / (2 * N)
            dz_i, dz_m = sim_backward(dsim, out[i], out[m])
            dout[i] += dz_i
            dout[m] += dz_m
    loss = np.asarray(total / (2 * N), dtype=out.dtype)[()]
    return loss, (dout[:N], dout[N:])  # type: ignore[return-value]  # [()] gives a scalar


def simclr_loss_vectorized(
    out_left: np.ndarray, out_right: np.ndarray, tau: float
) -> tuple[Loss, tuple[np.ndarray, np.ndarray]]:
    """Vectorized NT-Xent loss.

    out_left, out_right: (N, D); tau: temperature > 0.
    Returns (loss, (dout_left, dout_right)).
    """
    check_pair_args(out_left, out_right)
    tau = check_tau(tau)
    N = out_left.shape[0]
    out = np.concatenate([out_left, out_right], axis=0)
    u, r = _normalize_rows(out)
    logits = (u @ u.T) / tau
    np.fill_diagonal(logits, -np.inf)  # an anchor is never its own negative
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    rows = np.arange(2 * N)
    pos = (rows + N) % (2 * N)
    loss = -log_probs[rows, pos].mean()
    # dL/dS = (softmax - onehot(positive)) / (2N tau); then back through S = u u^T.
    dS = np.exp(log_probs)
    dS[rows, pos] -= 1
    dS /= 2 * N * tau
    dout = _normalize_rows_backward((dS + dS.T) @ u, u, r)
    return loss, (dout[:N], dout[N:])
