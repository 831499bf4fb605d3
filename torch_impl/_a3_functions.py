"""Assignment 3's layers and losses as torch.autograd.Functions with hand-written backward.

Each Function is the line-by-line twin of a NumPy function in ``numpy_impl`` (rnn_layers,
attention, gan, simclr): same math, same order of operations, same argument checks (imported from
the pure-Python ``numpy_impl._checks`` and ``numpy_impl._checks_a3``, which import no NumPy), so
the parity suite can demand agreement to round-off in float64. They compute from tensor
primitives only (matmul, reductions, elementwise ops, indexing) and never call the PyTorch layer
they are compared against (nn.RNN, nn.LSTM, F.embedding, F.cross_entropy,
F.scaled_dot_product_attention, nn.MultiheadAttention, F.binary_cross_entropy_with_logits,
F.layer_norm, F.gelu, ...).
Everything created inside follows the inputs' device and dtype.

Backward passes are first-order only (``once_differentiable``): asking for a second derivative
raises instead of silently returning a wrong one.
"""

from __future__ import annotations

import math

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from twin_checks import (
    check_attention_args,
    check_attn_mask,
    check_cell_args,
    check_dout,
    check_embedding_args,
    check_mha_args,
    check_nonzero_norms,
    check_pair_args,
    check_same_shape,
    check_scores,
    check_sequence_args,
    check_tau,
    check_temporal_affine_args,
    check_temporal_loss_args,
    require_ndim,
    require_shape,
    shape_of,
)

__all__ = [
    "RNNStepFunction",
    "RNNFunction",
    "LSTMStepFunction",
    "LSTMFunction",
    "WordEmbeddingFunction",
    "TemporalAffineFunction",
    "TemporalSoftmaxLossFunction",
    "ScaledDotProductAttentionFunction",
    "MultiHeadAttentionFunction",
    "BCEWithLogitsFunction",
    "HalfSquaredErrorFunction",
    "CosineSimilarityMatrixFunction",
    "PositivePairSimilarityFunction",
    "SimCLRLossFunction",
    "LayerNormLastDimFunction",
    "GELUFunction",
]


def _mm(x, W):
    """x (..., D) @ W (D, M) -> (..., M) as ONE 2-D matrix product over the flattened rows.

    Same math as ``x @ W``. Measured on a busy 2-core CPU, a float32 (4, 5, 8) @ (8, 8) took
    ~15 ms through the batched-matmul dispatch and ~3 us as this single 2-D product.
    """
    return (_rows(x) @ W).reshape(*x.shape[:-1], W.shape[1])


def _rows(x):
    """x (..., D) as the 2-D matrix (prod(...), D) of its rows. Not ``reshape(-1, D)``: with a
    zero-size dimension (N, T or D = 0) the -1 is ambiguous and reshape raises."""
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])


def _sigmoid_minus(x, t):
    """sigmoid(x) - t without cancellation (see numpy_impl.gan._sigmoid_minus)."""
    e = torch.exp(-x.abs())
    small = e / (1 + e)
    return torch.where(x >= 0, (1 - t) - small, small - t)


def _weight_grads(x, h_prev, da):
    """Sum over batch and time: dWx = sum_t x_t^T da_t, dWh = sum_t h_{t-1}^T da_t, db."""
    da2 = _rows(da)
    dWx = _rows(x).T @ da2
    dWh = _rows(h_prev).T @ da2
    return dWx, dWh, da2.sum(dim=0)


# --------------------------------------------------------------------------------------------
# Vanilla RNN
# --------------------------------------------------------------------------------------------


class RNNStepFunction(Function):
    """next_h = tanh(x @ Wx + prev_h @ Wh + b). x (N, D), prev_h (N, H), Wx (D, H), Wh (H, H),
    b (H,) -> next_h (N, H). Twin of ``rnn_step_forward/backward``."""

    @staticmethod
    def forward(ctx, x, prev_h, Wx, Wh, b):
        check_cell_args(x, prev_h, Wx, Wh, b, gates=1)
        next_h = torch.tanh(x @ Wx + prev_h @ Wh + b)
        ctx.save_for_backward(x, prev_h, Wx, Wh, next_h)
        return next_h

    @staticmethod
    @once_differentiable
    def backward(ctx, dnext_h):
        x, prev_h, Wx, Wh, next_h = ctx.saved_tensors
        check_dout(dnext_h, next_h.shape)
        da = dnext_h * (1 - next_h**2)
        need = ctx.needs_input_grad
        return (
            da @ Wx.T if need[0] else None,
            da @ Wh.T if need[1] else None,
            x.T @ da if need[2] else None,
            prev_h.T @ da if need[3] else None,
            da.sum(dim=0) if need[4] else None,
        )


class RNNFunction(Function):
    """A tanh RNN over a sequence: x (N, T, D), h0 (N, H), Wx (D, H), Wh (H, H), b (H,) ->
    h (N, T, H). Twin of ``rnn_forward/backward``."""

    @staticmethod
    def forward(ctx, x, h0, Wx, Wh, b):
        N, T, D, H = check_sequence_args(x, h0, Wx, Wh, b, gates=1)
        xa = _mm(x, Wx) + b  # the input term of every step at once
        steps = []
        prev_h = h0
        for t in range(T):
            prev_h = torch.tanh(xa[:, t] + prev_h @ Wh)
            steps.append(prev_h)
        h = torch.stack(steps, dim=1)
        ctx.save_for_backward(x, h0, Wx, Wh, h)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, dh):
        x, h0, Wx, Wh, h = ctx.saved_tensors
        check_dout(dh, h.shape)
        da = torch.empty_like(h)
        dprev_h = torch.zeros_like(h0)
        for t in reversed(range(h.shape[1])):
            da[:, t] = (dh[:, t] + dprev_h) * (1 - h[:, t] ** 2)
            dprev_h = da[:, t] @ Wh.T
        h_prev = torch.cat([h0[:, None, :], h[:, :-1]], dim=1)
        dWx, dWh, db = _weight_grads(x, h_prev, da)
        need = ctx.needs_input_grad
        return _mm(da, Wx.T) if need[0] else None, dprev_h, dWx, dWh, db


# --------------------------------------------------------------------------------------------
# LSTM (gate order i, f, o, g as in CS231n)
# --------------------------------------------------------------------------------------------


def _lstm_gates(a, H: int):
    """(N, 4H) pre-activations i, f, o, g -> activated gates (sigmoid x3, tanh), computed IN
    PLACE: ``a`` must be a fresh temporary (it is returned). torch's sigmoid is numerically
    stable (as numpy_impl's exp(-|x|) form) and takes one pass with no temporaries."""
    a[:, : 3 * H].sigmoid_()
    a[:, 3 * H :].tanh_()
    return a


def _lstm_cell_backward(dnext_h, dnext_c, gates, prev_c, tanh_c):
    """Gradient w.r.t. the pre-activation a (N, 4H) and prev_c (N, H) of one LSTM cell."""
    H = prev_c.shape[1]
    i, f, o, g = (gates[:, k * H : (k + 1) * H] for k in range(4))
    dc = dnext_c + dnext_h * o * (1 - tanh_c**2)
    di, df, do, dg = dc * g, dc * prev_c, dnext_h * tanh_c, dc * i
    da = torch.cat([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g**2)], dim=1)
    return da, dc * f


class LSTMStepFunction(Function):
    """One LSTM step: x (N, D), prev_h (N, H), prev_c (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,)
    -> (next_h, next_c), each (N, H). Twin of ``lstm_step_forward/backward``."""

    @staticmethod
    def forward(ctx, x, prev_h, prev_c, Wx, Wh, b):
        N, D, H = check_cell_args(x, prev_h, Wx, Wh, b, gates=4, prev_c=prev_c)
        gates = _lstm_gates(x @ Wx + prev_h @ Wh + b, H)
        i, f, o, g = (gates[:, k * H : (k + 1) * H] for k in range(4))
        next_c = f * prev_c + i * g
        tanh_c = torch.tanh(next_c)
        next_h = o * tanh_c
        ctx.save_for_backward(x, prev_h, prev_c, Wx, Wh, gates, tanh_c)
        return next_h, next_c

    @staticmethod
    @once_differentiable
    def backward(ctx, dnext_h, dnext_c):
        x, prev_h, prev_c, Wx, Wh, gates, tanh_c = ctx.saved_tensors
        da, dprev_c = _lstm_cell_backward(dnext_h, dnext_c, gates, prev_c, tanh_c)
        need = ctx.needs_input_grad
        return (
            da @ Wx.T if need[0] else None,
            da @ Wh.T if need[1] else None,
            dprev_c if need[2] else None,
            x.T @ da if need[3] else None,
            prev_h.T @ da if need[4] else None,
            da.sum(dim=0) if need[5] else None,
        )


class LSTMFunction(Function):
    """An LSTM over a sequence with c0 = 0: x (N, T, D), h0 (N, H), Wx (D, 4H), Wh (H, 4H),
    b (4H,) -> h (N, T, H). Twin of ``lstm_forward/backward`` (same math; the per-step work is
    regrouped so that each time step is a handful of kernels).

    Layout: everything runs TIME-major, (T, N, ...), so a time step is one contiguous block.
    The input term x_t @ Wx + b of all steps is one matrix product; step t then adds
    prev_h @ Wh into its block in place (``addmm_``) and activates the gates in place. The
    hidden and cell states live in (T + 1, N, H) buffers whose slot 0 is h0 / c0, so
    "previous state" is the slice [:-1] and "state" the slice [1:], with no copies.
    Saved: x, Wx, Wh, the activated gates (T, N, 4H), the states (T + 1, N, H) and tanh(c).
    """

    @staticmethod
    def forward(ctx, x, h0, Wx, Wh, b):
        N, T, D, H = check_sequence_args(x, h0, Wx, Wh, b, gates=4)
        x_tm = x.transpose(0, 1).reshape(T * N, D)
        gates = torch.addmm(b, x_tm, Wx).view(T, N, 4 * H)  # the input terms, activated below
        h = h0.new_empty((T + 1, N, H))
        c = h0.new_empty((T + 1, N, H))
        tanh_c = h0.new_empty((T, N, H))
        h[0], c[0] = h0, 0
        for t in range(T):
            a = _lstm_gates(gates[t].addmm_(h[t], Wh), H)  # activated in place
            i, f, o, g = (a[:, k * H : (k + 1) * H] for k in range(4))
            torch.mul(f, c[t], out=c[t + 1]).addcmul_(i, g)  # c = f * c_prev + i * g
            torch.tanh(c[t + 1], out=tanh_c[t])
            torch.mul(o, tanh_c[t], out=h[t + 1])  # h = o * tanh(c)
        ctx.save_for_backward(x, Wx, Wh, gates, h, c, tanh_c)
        return h[1:].transpose(0, 1).contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, dh):
        """Per step, with dh_t the upstream gradient plus dprev_h from step t + 1:
            dc = dnext_c + dh_t * o * (1 - tanh(c)^2),
            da = [dc * g * i(1-i), dc * c_prev * f(1-f), dh_t * tanh(c) * o(1-o), dc * i * (1-g^2)]
            dprev_c = dc * f,   dprev_h = da @ Wh^T.
        Every factor that does not depend on the recursion (o * (1 - tanh(c)^2) and the four
        products "partner * gate derivative") is computed for ALL steps before the loop, so a
        step is five elementwise kernels and one matrix product. The weight gradients and dx
        are then single matrix products over the (T * N) rows."""
        x, Wx, Wh, gates, h, c, tanh_c = ctx.saved_tensors
        T, N, H = tanh_c.shape
        D = x.shape[2]
        check_dout(dh, (N, T, H))
        i, f, o, g = (gates[..., k * H : (k + 1) * H] for k in range(4))
        dc_from_h = o * (1 - tanh_c * tanh_c)
        partner = torch.empty_like(gates)  # da = upstream * partner, upstream dc or dh_t
        torch.mul(g, i * (1 - i), out=partner[..., :H])
        torch.mul(c[:-1], f * (1 - f), out=partner[..., H : 2 * H])
        torch.mul(tanh_c, o * (1 - o), out=partner[..., 2 * H : 3 * H])
        torch.mul(i, 1 - g * g, out=partner[..., 3 * H :])
        partner4 = partner.view(T, N, 4, H)
        da = torch.empty_like(gates)
        da4 = da.view(T, N, 4, H)
        dprev_h = dh.new_zeros((N, H))
        dc = dh.new_zeros((N, H))  # dnext_c of the last step
        for t in reversed(range(T)):
            dh_t = dprev_h.add_(dh[:, t])
            dc = torch.addcmul(dc, dh_t, dc_from_h[t])
            torch.mul(partner4[t], dc.unsqueeze(1), out=da4[t])  # i, f, g (o overwritten)
            torch.mul(partner4[t, :, 2], dh_t, out=da4[t, :, 2])
            dc.mul_(f[t])  # dprev_c
            dprev_h = da[t] @ Wh.T
        da2 = da.view(T * N, 4 * H)
        need = ctx.needs_input_grad
        dx = (da2 @ Wx.T).view(T, N, D).transpose(0, 1) if need[0] else None
        dWx = x.transpose(0, 1).reshape(T * N, D).T @ da2 if need[2] else None
        dWh = h[:-1].reshape(T * N, H).T @ da2 if need[3] else None
        db = da2.new_ones(T * N) @ da2 if need[4] else None
        return dx, dprev_h, dWx, dWh, db


# --------------------------------------------------------------------------------------------
# Word embedding, temporal affine, temporal softmax loss
# --------------------------------------------------------------------------------------------


class WordEmbeddingFunction(Function):
    """out = W[x]: x integer (N, T) in [0, V), W (V, D) -> (N, T, D). The gradient of a word that
    occurs several times is the sum over its occurrences (``index_add_``). x gets no gradient."""

    @staticmethod
    def forward(ctx, x, W):
        check_embedding_args(x, W)
        ctx.save_for_backward(x)
        ctx.W_shape = tuple(W.shape)
        return W[x]

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        V, D = ctx.W_shape
        check_dout(dout, tuple(x.shape) + (D,))
        dW = dout.new_zeros((V, D)).index_add_(0, x.reshape(-1), _rows(dout))
        return None, dW


class TemporalAffineFunction(Function):
    """out = x @ w + b at every step: x (N, T, D), w (D, M), b (M,) -> (N, T, M)."""

    @staticmethod
    def forward(ctx, x, w, b):
        check_temporal_affine_args(x, w, b)
        ctx.save_for_backward(x, w)
        return _mm(x, w) + b

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        D, M = w.shape
        check_dout(dout, tuple(x.shape[:2]) + (M,))
        need = ctx.needs_input_grad
        return (
            _mm(dout, w.T) if need[0] else None,
            _rows(x).T @ _rows(dout) if need[1] else None,
            dout.sum(dim=(0, 1)) if need[2] else None,
        )


class TemporalSoftmaxLossFunction(Function):
    """CS231n's temporal_softmax_loss: x (N, T, V) scores, y (N, T) int targets, mask (N, T)
    (1/True = counts) -> scalar -(1/N) sum mask * log softmax(x)[y]. y and mask get no
    gradient."""

    @staticmethod
    def forward(ctx, x, y, mask):
        check_temporal_loss_args(x, y, mask)
        N = x.shape[0]
        m = mask.to(x.dtype)  # a bool/float64 mask must not change x's dtype
        shifted = x - x.amax(dim=2, keepdim=True)
        log_probs = shifted - torch.log(torch.exp(shifted).sum(dim=2, keepdim=True))
        picked = log_probs.gather(2, y[..., None].long())[..., 0]
        loss = -(m * picked).sum() / N
        ctx.save_for_backward(log_probs, y, m)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, dloss):
        log_probs, y, m = ctx.saved_tensors
        N = log_probs.shape[0]
        dx = torch.exp(log_probs)
        index = y[..., None].long()
        dx.scatter_(2, index, dx.gather(2, index) - 1)
        dx = dx / N * m[..., None] * dloss
        return dx, None, None


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------


def _attention_forward(q, k, v, attn_mask, drop_mask):
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


def _attention_backward(dout, q, k, v, A, drop_mask, scale):
    A_used = A if drop_mask is None else A * drop_mask
    dv = A_used.transpose(-1, -2) @ dout
    dA = dout @ v.transpose(-1, -2)
    if drop_mask is not None:
        dA = dA * drop_mask
    dscores = A * (dA - (dA * A).sum(dim=-1, keepdim=True))
    dq = (dscores @ k) * scale
    dk = (dscores.transpose(-1, -2) @ q) * scale
    return dq, dk, dv


def _check_drop_mask(drop_mask, shape) -> None:
    if drop_mask is not None:
        require_shape("dropout mask", drop_mask, tuple(shape), hint="the attention weights")


class ScaledDotProductAttentionFunction(Function):
    """softmax(q k^T / sqrt(d), blocked = -inf) v, optionally with dropout on the weights.

    q (..., S, d), k (..., T, d), v (..., T, dv); attn_mask None or (S, T) with 0 = blocked
    (CS231n's convention); drop_mask None or (..., S, T) holding 0 or 1/p (inverted dropout's
    multiplier, p = keep probability). Returns (..., S, dv). Masks get no gradient.
    """

    @staticmethod
    def forward(ctx, q, k, v, attn_mask=None, drop_mask=None):
        S, T, d = check_attention_args(q, k, v)
        check_attn_mask(attn_mask, S, T)
        _check_drop_mask(drop_mask, shape_of(q)[:-1] + (T,))
        out, A, scale = _attention_forward(q, k, v, attn_mask, drop_mask)
        ctx.save_for_backward(q, k, v, A, drop_mask)
        ctx.scale = scale
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        q, k, v, A, drop_mask = ctx.saved_tensors
        dq, dk, dv = _attention_backward(dout, q, k, v, A, drop_mask, ctx.scale)
        return dq, dk, dv, None, None


def _split_heads(X, num_heads):
    N, L, E = X.shape
    return X.reshape(N, L, num_heads, E // num_heads).transpose(1, 2)


def _merge_heads(X):
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
        ctx,
        query,
        key,
        value,
        Wq,
        bq,
        Wk,
        bk,
        Wv,
        bv,
        Wo,
        bo,
        num_heads,
        attn_mask=None,
        drop_mask=None,
    ):
        weights = dict(Wq=Wq, bq=bq, Wk=Wk, bk=bk, Wv=Wv, bv=bv, Wo=Wo, bo=bo)
        N, S, T, E = check_mha_args(query, key, value, weights, num_heads)
        check_attn_mask(attn_mask, S, T)
        _check_drop_mask(drop_mask, (N, num_heads, S, T))
        Qh, Kh, Vh = (
            _split_heads(_mm(x, W) + b, num_heads)
            for x, W, b in ((query, Wq, bq), (key, Wk, bk), (value, Wv, bv))
        )
        Yh, A, scale = _attention_forward(Qh, Kh, Vh, attn_mask, drop_mask)
        Y = _merge_heads(Yh)
        ctx.save_for_backward(query, key, value, Wq, Wk, Wv, Wo, Qh, Kh, Vh, A, drop_mask, Y)
        ctx.scale, ctx.num_heads = scale, num_heads
        return _mm(Y, Wo) + bo

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        query, key, value, Wq, Wk, Wv, Wo, Qh, Kh, Vh, A, drop_mask, Y = ctx.saved_tensors
        dWo = _rows(Y).T @ _rows(dout)
        dbo = dout.sum(dim=(0, 1))
        dYh = _split_heads(_mm(dout, Wo.T), ctx.num_heads)
        dheads = _attention_backward(dYh, Qh, Kh, Vh, A, drop_mask, ctx.scale)
        grads = []
        for x, W, dh in zip((query, key, value), (Wq, Wk, Wv), dheads, strict=True):
            dP = _merge_heads(dh)
            grads += [_mm(dP, W.T), _rows(x).T @ _rows(dP), dP.sum(dim=(0, 1))]
        (dq, dWq, dbq), (dk, dWk, dbk), (dv, dWv, dbv) = grads[0:3], grads[3:6], grads[6:9]
        return dq, dk, dv, dWq, dbq, dWk, dbk, dWv, dbv, dWo, dbo, None, None, None


# --------------------------------------------------------------------------------------------
# GAN losses
# --------------------------------------------------------------------------------------------


class BCEWithLogitsFunction(Function):
    """mean(max(x, 0) - x t + log(1 + exp(-|x|))): input x and target t of the same shape.

    d/dx = (sigmoid(x) - t) / n and d/dt = -x / n. Twin of ``numpy_impl.gan.bce_loss``.
    """

    @staticmethod
    def forward(ctx, input, target):
        check_scores("input", input)
        check_same_shape("target", target, "input", input)
        x, t = input, target.to(input.dtype)
        ctx.save_for_backward(x, t)
        return (x.clamp(min=0) - x * t + torch.log1p(torch.exp(-x.abs()))).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx, dloss):
        x, t = ctx.saved_tensors
        n = x.numel()
        need = ctx.needs_input_grad
        dx = _sigmoid_minus(x, t) / n * dloss if need[0] else None
        dt = -x / n * dloss if need[1] else None
        return dx, dt


class HalfSquaredErrorFunction(Function):
    """0.5 * mean((scores - target)^2) for the least-squares GAN losses; target has scores'
    shape. d/dscores = (scores - target) / n; d/dtarget = its negative."""

    @staticmethod
    def forward(ctx, scores, target):
        check_scores("scores", scores)
        check_same_shape("target", target, "scores", scores)
        diff = scores - target.to(scores.dtype)
        ctx.save_for_backward(diff)
        return 0.5 * (diff**2).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx, dloss):
        (diff,) = ctx.saved_tensors
        g = diff / diff.numel() * dloss
        need = ctx.needs_input_grad
        return g if need[0] else None, -g if need[1] else None


# --------------------------------------------------------------------------------------------
# SimCLR
# --------------------------------------------------------------------------------------------


def _normalize_rows(out, name="out"):
    r = torch.sqrt((out * out).sum(dim=1, keepdim=True))
    check_nonzero_norms(name, r)
    return out / r, r


def _normalize_rows_backward(du, u, r):
    return (du - u * (du * u).sum(dim=1, keepdim=True)) / r


class CosineSimilarityMatrixFunction(Function):
    """out (M, D) -> (M, M) cosine similarities u u^T (u = rows of out normalized)."""

    @staticmethod
    def forward(ctx, out):
        require_ndim("out", out, 2, "(2N, D)")
        u, r = _normalize_rows(out)
        ctx.save_for_backward(u, r)
        return u @ u.T

    @staticmethod
    @once_differentiable
    def backward(ctx, dS):
        u, r = ctx.saved_tensors
        return _normalize_rows_backward((dS + dS.T) @ u, u, r)


class PositivePairSimilarityFunction(Function):
    """out_left, out_right (N, D) -> (N, 1), row k = cos(out_left[k], out_right[k])."""

    @staticmethod
    def forward(ctx, out_left, out_right):
        check_pair_args(out_left, out_right)
        u, ru = _normalize_rows(out_left, "out_left")
        v, rv = _normalize_rows(out_right, "out_right")
        ctx.save_for_backward(u, ru, v, rv)
        return (u * v).sum(dim=1, keepdim=True)

    @staticmethod
    @once_differentiable
    def backward(ctx, dpos):
        u, ru, v, rv = ctx.saved_tensors
        need = ctx.needs_input_grad
        return (
            _normalize_rows_backward(dpos * v, u, ru) if need[0] else None,
            _normalize_rows_backward(dpos * u, v, rv) if need[1] else None,
        )


class SimCLRLossFunction(Function):
    """NT-Xent loss of SimCLR: out_left, out_right (N, D), tau > 0 -> scalar.

    Rows k and k+N of [out_left; out_right] are positives; every other row is a negative;
    loss = mean over the 2N anchors of -log softmax_{m != i}(s_im / tau)[positive].
    Twin of ``numpy_impl.simclr.simclr_loss_vectorized``.
    """

    @staticmethod
    def forward(ctx, out_left, out_right, tau):
        check_pair_args(out_left, out_right)
        tau = check_tau(tau)
        N = out_left.shape[0]
        out = torch.cat([out_left, out_right], dim=0)
        u, r = _normalize_rows(out)
        logits = (u @ u.T) / tau
        eye = torch.eye(2 * N, dtype=torch.bool, device=out.device)
        logits = logits.masked_fill(eye, float("-inf"))
        logits = logits - logits.amax(dim=1, keepdim=True)
        log_probs = logits - torch.log(torch.exp(logits).sum(dim=1, keepdim=True))
        rows = torch.arange(2 * N, device=out.device)
        pos = (rows + N) % (2 * N)
        ctx.save_for_backward(u, r, log_probs)
        ctx.tau = tau
        return -log_probs[rows, pos].mean()

    @staticmethod
    @once_differentiable
    def backward(ctx, dloss):
        u, r, log_probs = ctx.saved_tensors
        M = u.shape[0]
        N = M // 2
        rows = torch.arange(M, device=u.device)
        pos = (rows + N) % M
        dS = torch.exp(log_probs)
        dS[rows, pos] -= 1
        dS = dS / (M * ctx.tau) * dloss
        dout = _normalize_rows_backward((dS + dS.T) @ u, u, r)
        return dout[:N], dout[N:], None


# --------------------------------------------------------------------------------------------
# Pieces of the transformer decoder layer
# --------------------------------------------------------------------------------------------


class LayerNormLastDimFunction(Function):
    """Layer normalization over the last dimension: x (..., D), gamma (D,), beta (D,), eps.

    mu, var = mean and BIASED variance over D; out = gamma * (x - mu) / sqrt(var + eps) + beta
    (CS231n's layernorm applied to every token).
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, eps=1e-5):
        D = int(x.shape[-1])
        # The messages of numpy_impl's layernorm, which normalizes the same rows.
        require_shape("gamma", gamma, (D,))
        require_shape("beta", beta, (D,))
        mu = x.mean(dim=-1, keepdim=True)
        xc = x - mu
        inv_std = 1 / torch.sqrt((xc * xc).mean(dim=-1, keepdim=True) + eps)
        xhat = xc * inv_std
        ctx.save_for_backward(xhat, inv_std, gamma)
        return gamma * xhat + beta

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        xhat, inv_std, gamma = ctx.saved_tensors
        dxhat = dout * gamma
        # dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / std, the compact form.
        dx = inv_std * (
            dxhat
            - dxhat.mean(dim=-1, keepdim=True)
            - xhat * (dxhat * xhat).mean(dim=-1, keepdim=True)
        )
        # Sums over every leading dimension, as sums over the rows of the (rows, D) matrix: a
        # 1-D x has no leading dimension, and Tensor.sum(dim=()) would sum over ALL of them.
        return dx, _rows(dout * xhat).sum(0), _rows(dout).sum(0), None


class GELUFunction(Function):
    """Exact GELU x * Phi(x), Phi the standard normal CDF (PyTorch's default approximate='none').

    d/dx = Phi(x) + x * phi(x), phi the standard normal density.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * 0.5 * (1 + torch.erf(x / math.sqrt(2.0)))

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2.0)))
        pdf = torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return dout * (cdf + x * pdf)
