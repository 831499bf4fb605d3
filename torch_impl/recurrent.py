"""Recurrent layers: the vanilla RNN and the LSTM, one step and a whole sequence.

The sequence Functions loop over time (the recurrence is sequential), but every product that does
not depend on the recurrence (the input term x @ Wx and the weight gradients) is computed for all
time steps at once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from torch_impl._utils import in_input_precision
from twin_checks import check_cell_args, check_dout, check_sequence_args

__all__ = [
    "RNNStepFunction",
    "RNNFunction",
    "LSTMStepFunction",
    "LSTMFunction",
]


class RNNStepFunction(Function):
    """next_h = tanh(x @ Wx + prev_h @ Wh + b). x (N, D), prev_h (N, H), Wx (D, H), Wh (H, H),
    b (H,) -> next_h (N, H). Twin of ``rnn_step_forward/backward``."""

    @staticmethod
    @in_input_precision
    def forward(ctx: Any, x: Tensor, prev_h: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor) -> Tensor:
        check_cell_args(x, prev_h, Wx, Wh, b, gates=1)
        next_h = torch.tanh(x @ Wx + prev_h @ Wh + b)
        ctx.save_for_backward(x, prev_h, Wx, Wh, next_h)
        return next_h

    @staticmethod
    @once_differentiable
    @in_input_precision
    def backward(ctx: Any, dnext_h: Tensor) -> tuple[Tensor | None, ...]:
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
    h (N, T, H). Twin of ``rnn_forward/backward``.

    Layout, as LSTMFunction's: TIME-major. The input terms x_t @ Wx + b of all steps are one
    matrix product written straight into the hidden-state buffer (T + 1, N, H), whose slot 0 is
    h0; step t then adds h_{t-1} @ Wh into its block in place (``addmm_``) and applies tanh in
    place: one product and one elementwise kernel per step, no copies. Saved: x, Wx, Wh and the
    states (T + 1, N, H).
    """

    @staticmethod
    @in_input_precision
    def forward(ctx: Any, x: Tensor, h0: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor) -> Tensor:
        N, T, D, H = check_sequence_args(x, h0, Wx, Wh, b, gates=1)
        h = h0.new_empty((T + 1, N, H))
        h[0] = h0
        x_tm = x.transpose(0, 1).reshape(T * N, D)
        torch.addmm(b, x_tm, Wx, out=h[1:].view(T * N, H))  # the input terms, every step
        for t in range(T):
            h[t + 1].addmm_(h[t], Wh).tanh_()
        ctx.save_for_backward(x, Wx, Wh, h)
        return h[1:].transpose(0, 1).contiguous()

    @staticmethod
    @once_differentiable
    @in_input_precision
    def backward(ctx: Any, dh: Tensor) -> tuple[Tensor | None, ...]:
        """Per step, with dh_t the upstream gradient plus dprev_h from step t + 1:
            da_t = dh_t * (1 - h_t^2),   dprev_h = da_t @ Wh^T.
        The tanh derivatives 1 - h_t^2 of all steps are one array computed before the loop and
        turned into da in place, so a step is one elementwise kernel and one matrix product, which
        also adds the next upstream gradient (dh_{t-1} = dh[:, t-1] + da_t @ Wh^T, one
        ``addmm``); dx and the weight gradients are then single products over the (T * N) rows."""
        x, Wx, Wh, h = ctx.saved_tensors
        T, N, H = h.shape[0] - 1, h.shape[1], h.shape[2]
        D = x.shape[2]
        check_dout(dh, (N, T, H))
        da = torch.mul(h[1:], h[1:]).neg_().add_(1)  # 1 - h_t^2, multiplied by dh_t below
        dh_t = dh[:, T - 1] if T else dh.new_zeros((N, H))
        for t in reversed(range(T)):
            da[t].mul_(dh_t)
            dh_t = torch.addmm(dh[:, t - 1], da[t], Wh.T) if t else da[0] @ Wh.T
        da2 = da.view(T * N, H)
        need = ctx.needs_input_grad
        dx = (da2 @ Wx.T).view(T, N, D).transpose(0, 1) if need[0] else None
        dWx = x.transpose(0, 1).reshape(T * N, D).T @ da2 if need[2] else None
        dWh = h[:-1].reshape(T * N, H).T @ da2 if need[3] else None
        db = da2.new_ones(T * N) @ da2 if need[4] else None
        return dx, dh_t, dWx, dWh, db


def _lstm_gates(a: Tensor, H: int) -> Tensor:
    """(N, 4H) pre-activations i, f, o, g -> activated gates (sigmoid x3, tanh), computed IN
    PLACE: ``a`` must be a fresh temporary (it is returned). torch's sigmoid is numerically
    stable (as numpy_impl's exp(-|x|) form) and takes one pass with no temporaries."""
    a[:, : 3 * H].sigmoid_()
    a[:, 3 * H :].tanh_()
    return a


def _lstm_cell_backward(
    dnext_h: Tensor, dnext_c: Tensor, gates: Tensor, prev_c: Tensor, tanh_c: Tensor
) -> tuple[Tensor, Tensor]:
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
    @in_input_precision
    def forward(
        ctx: Any, x: Tensor, prev_h: Tensor, prev_c: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor
    ) -> tuple[Tensor, Tensor]:
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
    @in_input_precision
    def backward(ctx: Any, dnext_h: Tensor, dnext_c: Tensor) -> tuple[Tensor | None, ...]:
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
    @in_input_precision
    def forward(ctx: Any, x: Tensor, h0: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor) -> Tensor:
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
    @in_input_precision
    def backward(ctx: Any, dh: Tensor) -> tuple[Tensor | None, ...]:
        """Per step, with dh_t the upstream gradient plus dprev_h from step t + 1:
            dc = dnext_c + dh_t * o * (1 - tanh(c)^2),
            da = [dc * g * i(1-i), dc * c_prev * f(1-f), dh_t * tanh(c) * o(1-o), dc * i * (1-g^2)]
            dprev_c = dc * f,   dprev_h = da @ Wh^T.
        Every factor that does not depend on the recursion (o * (1 - tanh(c)^2) and the four
        products "partner * gate derivative") is computed for ALL steps before the loop, into
        one (T, N, 4H) buffer that the loop then turns into da in place (upstream * partner).
        A step is one matrix product, which also adds the next upstream gradient
        (dh_{t-1} = dh[:, t-1] + da_t @ Wh^T, one ``addmm``), and five elementwise kernels. The
        weight gradients and dx are then single matrix products over the (T * N) rows."""
        x, Wx, Wh, gates, h, c, tanh_c = ctx.saved_tensors
        T, N, H = tanh_c.shape
        D = x.shape[2]
        check_dout(dh, (N, T, H))
        i, f, o, g = (gates[..., k * H : (k + 1) * H] for k in range(4))
        dc_from_h = torch.mul(tanh_c, tanh_c).neg_().add_(1).mul_(o)  # o * (1 - tanh(c)^2)
        da = torch.empty_like(gates)  # the partners first, da = upstream * partner below
        sig = gates[..., : 3 * H]
        torch.neg(sig, out=da[..., : 3 * H]).add_(1).mul_(sig)  # i(1-i), f(1-f), o(1-o)
        da_i, da_f, da_o, da_g = (da[..., k * H : (k + 1) * H] for k in range(4))
        da_i.mul_(g)
        da_f.mul_(c[:-1])
        da_o.mul_(tanh_c)
        torch.mul(g, g, out=da_g).neg_().add_(1).mul_(i)  # i * (1 - g^2)
        da4 = da.view(T, N, 4, H)
        dh_t = dh[:, T - 1] if T else dh.new_zeros((N, H))
        dc = dh.new_zeros((N, H))  # dnext_c of the last step
        for t in reversed(range(T)):
            dc.addcmul_(dh_t, dc_from_h[t])
            da4[t, :, :2].mul_(dc.unsqueeze(1))  # i, f
            da4[t, :, 2].mul_(dh_t)  # o
            da4[t, :, 3].mul_(dc)  # g
            dc.mul_(f[t])  # dprev_c
            dh_t = torch.addmm(dh[:, t - 1], da[t], Wh.T) if t else da[0] @ Wh.T
        da2 = da.view(T * N, 4 * H)
        need = ctx.needs_input_grad
        dx = (da2 @ Wx.T).view(T, N, D).transpose(0, 1) if need[0] else None
        dWx = x.transpose(0, 1).reshape(T * N, D).T @ da2 if need[2] else None
        dWh = h[:-1].reshape(T * N, H).T @ da2 if need[3] else None
        db = da2.new_ones(T * N) @ da2 if need[4] else None
        return dx, dh_t, dWx, dWh, db
