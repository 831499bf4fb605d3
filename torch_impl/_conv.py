"""Convolution as a ``torch.autograd.Function`` (see ``torch_impl.functions`` for the conventions).

Kept in its own module because it holds two algorithms for the same product (chosen by shape)."""

from __future__ import annotations

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from numpy_impl import _checks
from torch_impl._utils import require_like

__all__ = ["Conv2dFunction"]


def _pad_hw(x, pad):
    """Symmetric zero padding of the last two axes, on x's device and dtype."""
    return torch.nn.functional.pad(x, (pad, pad, pad, pad)) if pad else x


def _im2col(xp, HH, WW, stride):
    """cols (N, C*HH*WW, H'*W'): column (i, j) holds the window under output position (i, j).

    ``unfold`` makes the windows a strided VIEW (N, C, H', W', HH, WW) of the padded input; the
    reshape is the one copy (the 'im2col' matrix), rows ordered (c, k, l) like w.reshape(F, -1).
    """
    N, C = xp.shape[:2]
    win = xp.unfold(2, HH, stride).unfold(3, WW, stride)
    H_out, W_out = win.shape[2], win.shape[3]
    return win.permute(0, 1, 4, 5, 2, 3).reshape(N, C * HH * WW, H_out * W_out)


# Upper bound on the (images, F, C*HH*WW) temporary of the weight gradient (elements).
_DW_BLOCK_ELEMENTS = 1 << 25


def _weight_grad(d2, cols):
    """dW2 = sum_n dout[n] @ cols[n]^T, (F, C*HH*WW).

    A batched matmul gives one (F, C*HH*WW) product per image, summed afterwards; the images are
    taken in blocks so that the stack of per-image products stays small next to cols.
    """
    N, F, _ = d2.shape
    K = cols.shape[1]
    block = max(1, _DW_BLOCK_ELEMENTS // (F * K))
    dw2 = torch.bmm(d2[:block], cols[:block].transpose(1, 2)).sum(0)
    for n0 in range(block, N, block):
        dw2 += torch.bmm(d2[n0:n0 + block], cols[n0:n0 + block].transpose(1, 2)).sum(0)
    return dw2


class Conv2dFunction(Function):
    """Convolution (cross-correlation, no kernel flip) as im2col + one batched matmul.

    apply(x, w, b, stride, pad): x (N, C, H, W); w (F, C, HH, WW); b (F,); symmetric zero padding;
    output (N, F, H', W') with H' = 1 + (H + 2*pad - HH) // stride (PyTorch's floor rule).
        out[n] = W2 @ cols[n] + b,   W2 = w.reshape(F, C*HH*WW),   cols from _im2col
    Backward, differentiating that product:
        db = sum_{n, i, j} dout,   dW2 = sum_n dout[n] @ cols[n]^T,   dcols[n] = W2^T @ dout[n],
    and dx = fold(dcols): the adjoint of im2col adds every column back onto the window it was
    copied from (``F.fold``, col2im), overlapping windows accumulating; the padding is cropped.
    Saved: cols (if w needs a gradient), W2 (if x needs one).
    """

    @staticmethod
    def forward(ctx, x, w, b, stride=1, pad=0):
        _checks.require_float("x", x)
        stride, pad, H_out, W_out = _checks.check_conv_args(
            x, w, b, {"stride": stride, "pad": pad}
        )
        require_like("x", x, w=w, b=b)
        N, _, H, W = x.shape
        F, _, HH, WW = w.shape
        cols = _im2col(_pad_hw(x, pad), HH, WW, stride)
        w2 = w.detach().reshape(F, -1)
        # One (F, C*HH*WW) @ (C*HH*WW, H'*W') product per image (bmm with w2 broadcast).
        out = torch.bmm(w2.expand(N, -1, -1), cols)
        out += b.view(1, F, 1)
        ctx.geometry = (H, W, HH, WW, stride, pad, H_out, W_out)
        need_x, need_w = ctx.needs_input_grad[:2]
        ctx.save_for_backward(cols if need_w else None, w2 if need_x else None)
        return out.view(N, F, H_out, W_out)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        cols, w2 = ctx.saved_tensors
        H, W, HH, WW, stride, pad, H_out, W_out = ctx.geometry
        N, F = dout.shape[:2]
        d2 = dout.reshape(N, F, H_out * W_out)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dcols = torch.bmm(w2.T.expand(N, -1, -1), d2)
            dx = torch.nn.functional.fold(
                dcols, (H, W), (HH, WW), padding=pad, stride=stride
            )
        if ctx.needs_input_grad[1]:
            dw = _weight_grad(d2, cols).view(F, -1, HH, WW)
        if ctx.needs_input_grad[2]:
            db = d2.sum(dim=(0, 2))
        return dx, dw, db, None, None
