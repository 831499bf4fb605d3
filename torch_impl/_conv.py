"""Convolution as a ``torch.autograd.Function`` (see ``torch_impl.functions`` for the conventions).

Two algorithms compute the same cross-correlation; ``Conv2dFunction`` picks one by shape, and the
parity suite runs both on every case (``algorithm='im2col' | 'shifted'``).

im2col (the course's): copy every window into a column of one matrix and do ONE product,
    cols (C*HH*WW, N*H'*W'),   out = W2 @ cols,   W2 = w.reshape(F, C*HH*WW).
    The copy is HH*WW times the input, which is what makes it slow on large maps.

shifted (sum of HH*WW shifted products, no window copy): lay the zero-padded input out channel
    first, ``grid`` (C, N*Hp*Wp), image after image, row after row. The window of output
    position p (a flat index on that grid) starts at grid column p, and its tap (i, j) sits at
    column p + i*Wp + j. So for every tap the whole output is one matrix product with a
    SHIFTED VIEW of the same grid (a column slice, no copy):
        out_grid[:, p] = sum_{i,j} w[:, :, i, j] @ grid[:, p + i*Wp + j].
    Positions p whose window would cross a row or image edge are computed too and then dropped
    (the grid is 1-2x the output: a small waste on large maps, a large one on tiny maps, where
    im2col is used). With stride s, the kept positions are every s-th row and column.
    Backward is the transpose of each product, tap by tap:
        dw[:, :, i, j] = dgrid @ grid[:, shift]^T,   dgrid_x[:, shift] += w[:, :, i, j]^T @ dgrid,
    where dgrid is dout placed on the output grid with zeros at the dropped positions.
    The columns are processed in blocks so that one block of the output stays in cache while
    all taps are added into it.
"""

from __future__ import annotations

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from numpy_impl import _checks
from torch_impl._utils import products_dtype, require_like

__all__ = ["Conv2dFunction", "CONV_ALGORITHMS", "choose_conv_algorithm"]

CONV_ALGORITHMS = ("auto", "im2col", "shifted")

# Columns of the grid per block in the shifted algorithm (one block of output stays in cache).
_BLOCK_COLUMNS = 32768


def choose_conv_algorithm(C, H_pad, W_pad, H_out, W_out, stride):
    """'shifted' where its products are large enough and its wasted grid positions few.

    The shifted products have an inner dimension of C (small C runs the GEMM far below its
    peak) and compute H_pad*W_pad positions for H_out*W_out outputs; both limits were
    measured on the CNN's shapes (BENCHMARKS.md): it wins clearly from ~8 channels on 15x15 maps
    and up, is a near tie on 7x7 maps (waste 1.65), and loses on 3x3 maps (waste 2.8).
    """
    waste = (H_pad * W_pad) / (H_out * W_out)
    return "shifted" if stride == 1 and C >= 8 and waste <= 2.0 else "im2col"


# ----------------------------------------------------------------------------------------------
# im2col: one product with the matrix of all windows
# ----------------------------------------------------------------------------------------------


def _im2col(x, HH, WW, stride, pad, dtype):
    """cols (C*HH*WW, N*H'*W') in ``dtype``: column (n, i, j) is the window under output (n, i, j).

    ``unfold`` makes the windows a strided VIEW (N, C, H', W', HH, WW) of the padded input; one
    copy (converting to ``dtype`` on the way) lays it out with rows ordered (c, k, l) like
    w.reshape(F, -1) and columns (n, i, j).
    """
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad)) if pad else x
    win = xp.unfold(2, HH, stride).unfold(3, WW, stride).permute(1, 4, 5, 0, 2, 3)
    cols = torch.empty(win.shape, dtype=dtype, device=x.device)
    cols.copy_(win)
    return cols.view(win.shape[0] * HH * WW, -1)


def _im2col_forward(x, w2, HH, WW, stride, pad, H_out, W_out):
    """out (F, N, H'*W') = W2 @ cols (in w2's dtype), and cols."""
    cols = _im2col(x, HH, WW, stride, pad, w2.dtype)
    return (w2 @ cols).view(w2.shape[0], x.shape[0], H_out * W_out), cols


def _im2col_backward(d2, cols, w2, x_shape, HH, WW, stride, pad, need_x, need_w, dtype):
    """d2: dout as (F, N*H'*W') in the products' dtype. dW2 = d2 @ cols^T;
    dx = col2im(W2^T @ d2), accumulated in ``dtype`` (x's).

    col2im (``F.fold``) is im2col's adjoint: it adds every column back onto the window it was
    copied from, overlapping windows accumulating, and crops the padding.
    """
    N, C, H, W = x_shape
    dx = dw2 = None
    if need_x:
        dcols = (w2.T @ d2).view(C * HH * WW, N, -1).transpose(0, 1).to(dtype)
        dx = torch.nn.functional.fold(dcols, (H, W), (HH, WW), padding=pad, stride=stride)
    if need_w:
        dw2 = d2 @ cols.T
    return dx, dw2


# ----------------------------------------------------------------------------------------------
# shifted: a sum of HH*WW products with shifted views of the padded input
# ----------------------------------------------------------------------------------------------


def _place(src, H_grid, W_grid, top, left, rows, cols):
    """(C, N, H_grid, W_grid) zeros with src (N, C, h, w) transposed into [top + rows, left + cols].

    Only the positions outside src are zeroed (a full zero fill first would be one more pass over
    a large fresh allocation, and the page faults that come with it).
    """
    N, C = src.shape[:2]
    grid = src.new_empty(C, N, H_grid, W_grid)
    if rows.step != 1 or cols.step != 1:
        grid.zero_()
    else:
        bottom, right = top + (rows.stop - rows.start), left + (cols.stop - cols.start)
        grid[:, :, :top].zero_()
        grid[:, :, bottom:].zero_()
        grid[:, :, top:bottom, :left].zero_()
        grid[:, :, top:bottom, right:].zero_()
    grid[:, :, top + rows.start:top + rows.stop:rows.step,
         left + cols.start:left + cols.stop:cols.step] = src.transpose(0, 1)
    return grid


def _to_grid(x, pad):
    """x (N, C, H, W) -> grid (C, N*Hp*Wp): zero-padded, channel first, one copy."""
    H, W = x.shape[2:]
    grid = _place(x, H + 2 * pad, W + 2 * pad, pad, pad, slice(0, H), slice(0, W))
    return grid.view(x.shape[1], -1)


def _taps(HH, WW, W_pad):
    """Column shift of every kernel tap (i, j), row-major."""
    return [i * W_pad + j for i in range(HH) for j in range(WW)]


def _blocks(L):
    return [(a, min(a + _BLOCK_COLUMNS, L)) for a in range(0, L, _BLOCK_COLUMNS)]


def _kept(H_out, W_out, stride):
    """The output positions among the grid's rows and columns."""
    return (slice(0, stride * (H_out - 1) + 1, stride), slice(0, stride * (W_out - 1) + 1, stride))


def _shifted_forward(x, w, stride, pad, H_out, W_out):
    """out (F, N, H', W') as a view of the output grid, and the input grid (C, M)."""
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    Hp, Wp = H + 2 * pad, W + 2 * pad
    grid = _to_grid(x, pad)
    M = grid.shape[1]
    L = M - (HH - 1) * Wp - (WW - 1)  # one past the last position whose window fits
    w_taps = w.permute(2, 3, 0, 1).reshape(HH * WW, F, C)
    shifts = _taps(HH, WW, Wp)
    out_grid = x.new_empty(F, M)
    out_grid[:, L:].zero_()
    for a, b in _blocks(L):
        block = out_grid[:, a:b]
        torch.mm(w_taps[0], grid[:, a:b], out=block)
        for t in range(1, len(shifts)):
            block.addmm_(w_taps[t], grid[:, a + shifts[t]:b + shifts[t]])
    rows, cols = _kept(H_out, W_out, stride)
    return out_grid.view(F, N, Hp, Wp)[:, :, rows, cols], grid


def _shifted_backward(dout, grid, w, x_shape, w_shape, stride, pad, need_x, need_w):
    """dx (N, C, H, W) and dw (F, C, HH, WW), tap by tap (see the module docstring)."""
    N, C, H, W = x_shape
    F, _, HH, WW = w_shape
    H_out, W_out = dout.shape[2:]
    Hp, Wp = H + 2 * pad, W + 2 * pad
    M = N * Hp * Wp
    L = M - (HH - 1) * Wp - (WW - 1)
    rows, cols = _kept(H_out, W_out, stride)
    dgrid = _place(dout, Hp, Wp, 0, 0, rows, cols).view(F, M)
    shifts = _taps(HH, WW, Wp)
    dx = dw_taps = dx_grid = wt_taps = None
    if need_w:
        dw_taps = dout.new_zeros(HH * WW, F, C)
    if need_x:
        dx_grid = dout.new_zeros(C, M)
        wt_taps = w.permute(2, 3, 1, 0).reshape(HH * WW, C, F)
    for a, b in _blocks(L):
        d = dgrid[:, a:b]
        for t, s in enumerate(shifts):
            if need_w:
                dw_taps[t].addmm_(d, grid[:, a + s:b + s].T)
            if need_x:
                dx_grid[:, a + s:b + s].addmm_(wt_taps[t], d)
    if need_x:
        dx = dx_grid.view(C, N, Hp, Wp)[:, :, pad:pad + H, pad:pad + W].transpose(0, 1)
        dx = dx.contiguous()
    dw = dw_taps.view(HH, WW, F, C).permute(2, 3, 0, 1).contiguous() if need_w else None
    return dx, dw


# ----------------------------------------------------------------------------------------------
# The Function
# ----------------------------------------------------------------------------------------------


class Conv2dFunction(Function):
    """Convolution (cross-correlation, no kernel flip).

    apply(x, w, b, stride, pad, algorithm='auto'): x (N, C, H, W); w (F, C, HH, WW); b (F,);
    symmetric zero padding; output (N, F, H', W') with H' = 1 + (H + 2*pad - HH) // stride
    (PyTorch's floor rule):
        out[n, f, i, j] = b[f] + sum_{c,k,l} w[f, c, k, l] * xpad[n, c, i*stride+k, j*stride+l].
    ``algorithm`` is 'im2col', 'shifted' (see the module docstring) or 'auto'
    (``choose_conv_algorithm``); all give the same result up to rounding.
    Mixed precision: inside ``torch.autocast`` a float32 conv runs its products in autocast's
    dtype (bfloat16 on CPU) with im2col, and returns float32 output and gradients, as x.
    Backward, differentiating the product:
        db = sum_{n, i, j} dout,   dW = dout (x) windows,   dx = windows^T applied to W^T dout.
    Saved: the window matrix (im2col) or the padded input grid (shifted) if w needs a gradient,
    w if x needs one.
    """

    @staticmethod
    def forward(ctx, x, w, b, stride=1, pad=0, algorithm="auto"):
        _checks.require_float("x", x)
        stride, pad, H_out, W_out = _checks.check_conv_args(
            x, w, b, {"stride": stride, "pad": pad}
        )
        require_like("x", x, w=w, b=b)
        if algorithm not in CONV_ALGORITHMS:
            raise ValueError(f"algorithm must be one of {CONV_ALGORITHMS}, got {algorithm!r}")
        N, C, H, W = x.shape
        F, _, HH, WW = w.shape
        products = products_dtype(x)
        if algorithm == "auto":
            algorithm = choose_conv_algorithm(C, H + 2 * pad, W + 2 * pad, H_out, W_out, stride)
        if products != x.dtype:
            # One product per pass, so the low-precision operands are summed once, in the
            # GEMM's float32 accumulator (the shifted sum would round after every tap).
            algorithm = "im2col"
        w = w.detach()
        need_x, need_w = ctx.needs_input_grad[:2]
        if algorithm == "shifted":
            out_fn, saved = _shifted_forward(x, w, stride, pad, H_out, W_out)
        else:
            w = w.reshape(F, -1).to(products)
            out_fn, saved = _im2col_forward(x, w, HH, WW, stride, pad, H_out, W_out)
            out_fn = out_fn.view(F, N, H_out, W_out)
        # (F, N, H', W') -> (N, F, H', W'): the transposing copy also adds the bias.
        out = x.new_empty(N, F, H_out, W_out)
        torch.add(out_fn.transpose(0, 1), b.view(1, F, 1, 1), out=out)
        ctx.geometry = (algorithm, x.shape, (F, C, HH, WW), stride, pad, x.dtype, products)
        ctx.save_for_backward(saved if need_w else None, w if need_x else None)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        saved, w = ctx.saved_tensors
        algorithm, x_shape, w_shape, stride, pad, dtype, products = ctx.geometry
        F, _, HH, WW = w_shape
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dx = dw = None
        if algorithm == "shifted" and (need_x or need_w):
            dx, dw = _shifted_backward(dout, saved, w, x_shape, w_shape, stride, pad,
                                       need_x, need_w)
        elif need_x or need_w:
            d2 = torch.empty(dout.shape[1], dout.shape[0], *dout.shape[2:], dtype=products,
                             device=dout.device)
            d2.copy_(dout.transpose(0, 1))
            dx, dw = _im2col_backward(d2.view(F, -1), saved, w, x_shape, HH, WW, stride, pad,
                                      need_x, need_w, dtype)
            if dw is not None:
                dw = dw.view(F, -1, HH, WW).to(dtype)
        db = dout.sum(dim=(0, 2, 3)) if need_b else None
        return dx, dw, db, None, None, None
