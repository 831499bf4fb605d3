"""Convolution as a ``torch.autograd.Function`` (see ``torch_impl.functions`` for the conventions).

Three algorithms compute the same cross-correlation; ``Conv2dFunction`` picks one by shape
(``choose_conv_algorithm``), and the parity suite runs each on every case
(``algorithm='im2col' | 'shifted' | 'gathered'``).

im2col (the course's): copy every window into a column of one matrix and do ONE product,
    cols (C*HH*WW, N*H'*W'),   out = W2 @ cols,   W2 = w.reshape(F, C*HH*WW).
    The copy is HH*WW times the input, which is what makes it slow on large maps.

shifted (no window matrix of the whole input): lay the zero-padded input out channels last on
    a flat ``canvas`` (positions, C), image after image, row after row (``_Canvas``: neighbouring
    rows and images share their zero padding). The window of the output at canvas position O
    starts at O, and its tap (k, l) sits at O + k*Wc + l, so for every tap the whole output reads
    a SHIFTED VIEW of the same canvas (a slice of rows, no copy):
        out[O, :] = sum_{k,l} canvas[O + k*Wc + l, :] @ w[:, :, k, l]^T.
    Positions whose window crosses a row or image edge are computed too and then dropped (a
    small waste on large maps: 8x8 positions for a 7x7 output, 32x32 for 31x31).
    The positions are processed in blocks of rows. In float32/float64 each block accumulates the
    HH*WW products of its shifted slices (K = C each) while the block of the output is in cache.
    With lower-precision products (bfloat16 under autocast) the HH*WW slices of a block are
    stacked into one (block, HH*WW*C) matrix, an im2col of that block only, and multiplied once
    (inner dimension HH*WW*C), so each output is rounded once; so are the few channels of an RGB
    stem (a product per tap would have an inner dimension of 3), stacked from a channel-first
    copy of the canvas so that every stacked row is one contiguous run. The positions are the
    rows of every product, the channels its columns: (positions, K) @ (K, F) is the orientation
    in which the BLAS runs these long, thin products fastest (BENCHMARKS.md). Backward is the
    same with the products transposed:
        dw[:, :, k, l]^T = sum_O canvas[O + k*Wc + l, :]^T dcanvas[O, :],
        dx_canvas[q, :] = sum_{k,l} dcanvas[q - k*Wc - l, :] @ w[:, :, k, l],
    where dcanvas is dout placed at the output positions with zeros elsewhere: dx is the forward
    run on dcanvas with the taps mirrored. Output and dx take the input's memory format: a
    channels-last input (``torch.channels_last``) is placed on the canvas and read back with
    contiguous copies instead of transposes.

gathered (shifted's canvas, no wasted positions): for a block of a few hundred OUTPUT positions
    at a time, copy their windows from the canvas (one strided view: the taps of position
    (n, i, j) start at its anchor) side by side into a (block, HH*WW*C) matrix, an im2col of
    that block only, and multiply once; the products write the output's channels-last rows
    directly, bias included. Backward gathers the same windows for dw (against dout's rows, no
    zero grid) and dcanvas's windows at the image positions for dx. The copy costs HH*WW times
    the block; on small maps and strided grids that is less than shifted's wasted anchors.

The transposed convolution (DCGAN, Radford et al. 2016; ``ConvTranspose2dFunction``) is the
gradient of a convolution with respect to its input, used as a layer: its forward is the conv's
dx ("col2im" of W^T x), its backward the conv's forward and weight gradient.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

import twin_checks as _checks
from torch_impl._utils import memory_format_of, products_dtype, require_like
from twin_checks import check_conv_transpose_args

__all__ = ["Conv2dFunction", "ConvTranspose2dFunction", "CONV_ALGORITHMS", "choose_conv_algorithm"]

CONV_ALGORITHMS = ("auto", "im2col", "shifted", "gathered")

# Largest canvas positions per output for which 'auto' picks the shifted algorithm: on an RGB
# stem (above it im2col), and with 8+ channels (above it gathered).
_MAX_WASTE = 2.0
_MAX_SHIFTED_WASTE = 1.2


def choose_conv_algorithm(
    C: int,
    H: int,
    W: int,
    HH: int,
    WW: int,
    stride: int,
    pad: int,
    channels_last: bool,
    need_x: bool,
) -> str:
    """The fastest algorithm for the shape, as measured on the CNN's shapes (BENCHMARKS.md).

    The shifted algorithm computes one anchor per canvas position, (H + z)*(W + z) for H'*W'
    outputs (``_Canvas``), with stride s s*s times too many. Its products are views (no copy),
    so it is the fastest while that waste is small (stride 1, maps of 15x15 and up: 1.07-1.14);
    on smaller maps (7x7: 1.31, 3x3: 1.78) and strided channels-last grids copying only the
    output positions' windows ('gathered') costs less than the wasted products. On an RGB stem
    (C < 8) im2col is faster when x is contiguous (its window copy runs along image rows),
    shifted when x is channels last (im2col's copy would gather pixel by pixel, while the
    canvas takes the channels-last rows as they are) and needs no gradient: the stem's dx
    (rarely wanted: x is the image) would be products with 3 output columns.
    """
    H_out = (H + 2 * pad - HH) // stride + 1
    W_out = (W + 2 * pad - WW) // stride + 1
    cv = _Canvas(1, H, W, HH, WW, stride, pad, H_out, W_out)
    waste = (cv.Hc * cv.Wc) / (H_out * W_out)
    if C < _TAPWISE_MIN_CHANNELS:
        stem = channels_last and not need_x and stride == 1 and waste <= _MAX_WASTE
        return "shifted" if stem else "im2col"
    if stride == 1:
        return "shifted" if waste <= _MAX_SHIFTED_WASTE else "gathered"
    return "gathered" if channels_last else "im2col"


# ----------------------------------------------------------------------------------------------
# im2col: one product with the matrix of all windows
# ----------------------------------------------------------------------------------------------


def _im2col(x: Tensor, HH: int, WW: int, stride: int, pad: int, dtype: torch.dtype) -> Tensor:
    """cols (C*HH*WW, N*H'*W') in ``dtype``: column (n, i, j) is the window under output (n, i, j).

    ``unfold`` makes the windows a strided VIEW (N, C, H', W', HH, WW) of the padded input; one
    copy (converting to ``dtype`` on the way) lays it out with rows ordered (c, k, l) like
    w.reshape(F, -1) and columns (n, i, j).
    """
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad)) if pad else x
    win = xp.unfold(2, HH, stride).unfold(3, WW, stride).permute(1, 4, 5, 0, 2, 3)
    cols = torch.empty(win.shape, dtype=dtype, device=x.device)
    cols.copy_(win)
    # (N * H' * W' columns written out: with N = 0 a -1 would be ambiguous)
    return cols.view(win.shape[0] * HH * WW, math.prod(win.shape[3:]))


def _im2col_forward(
    x: Tensor, w2: Tensor, HH: int, WW: int, stride: int, pad: int, H_out: int, W_out: int
) -> tuple[Tensor, Tensor]:
    """out (F, N, H'*W') = W2 @ cols (in w2's dtype), and cols."""
    cols = _im2col(x, HH, WW, stride, pad, w2.dtype)
    return (w2 @ cols).view(w2.shape[0], x.shape[0], H_out * W_out), cols


def _add_windows(padded: Tensor, dcols: Tensor, HH: int, WW: int, stride: int) -> None:
    """col2im, im2col's adjoint, on n images: add every column of dcols (C*HH*WW, n*H'*W'),
    rows (c, k, l) and columns (n, i, j) as ``_im2col`` lays them out, back onto the window it
    was copied from in padded (C, n, H + 2p, W + 2p), overlapping windows accumulating.

    One accumulation per tap: the columns of tap (k, l) are the (C, n, H', W') block
    dcols[(c, k, l), :], and they all land at rows k + i*stride, columns l + j*stride -- one
    strided slice of ``padded``, added in a single pass. (``F.fold`` scatters the same sums
    element by element, which is several times slower: BENCHMARKS.md.)
    """
    C, n, Hp, Wp = padded.shape
    H_out, W_out = (Hp - HH) // stride + 1, (Wp - WW) // stride + 1
    taps = dcols.view(C, HH, WW, n, H_out, W_out)
    for k in range(HH):
        rows = slice(k, k + stride * (H_out - 1) + 1, stride)
        for l in range(WW):
            # (add_ on the view: ``view += t`` would also copy the view back onto itself)
            padded[:, :, rows, l : l + stride * (W_out - 1) + 1 : stride].add_(taps[:, k, l])


def _cropped(
    padded: Tensor, pad: int, memory_format: torch.memory_format = torch.contiguous_format
) -> Tensor:
    """padded (C, N, H + 2p, W + 2p) without its padding, as a new (N, C, H, W) tensor."""
    C, N, Hp, Wp = padded.shape
    H, W = Hp - 2 * pad, Wp - 2 * pad
    out = torch.empty(
        N, C, H, W, dtype=padded.dtype, device=padded.device, memory_format=memory_format
    )
    return out.copy_(padded[:, :, pad : pad + H, pad : pad + W].transpose(0, 1))


# Elements of the window-gradient matrix W^T @ dout computed at a time (8 MB in float32): a
# few images' worth, added onto the input while it is still in the cache rather than written
# out whole and read back (the 7x7 RGB stem's whole matrix is 30 MB at N=50).
_COL2IM_BLOCK_ELEMENTS = 1 << 21


def _im2col_backward(
    d2: Tensor,
    cols: Tensor,
    w2: Tensor,
    x_shape: tuple[int, ...],
    HH: int,
    WW: int,
    stride: int,
    pad: int,
    need_x: bool,
    need_w: bool,
    dtype: torch.dtype,
    memory_format: torch.memory_format,
) -> tuple[Tensor | None, Tensor | None]:
    """d2: dout as (F, N*H'*W') in the products' dtype. dW2 = d2 @ cols^T;
    dx = col2im(W2^T @ d2) (``_add_windows``), a few images at a time, accumulated in ``dtype``
    (x's), in ``memory_format``.
    """
    N, C, H, W = x_shape
    dx = dw2 = None
    if need_x:
        padded = d2.new_zeros(C, N, H + 2 * pad, W + 2 * pad, dtype=dtype)
        P = d2.shape[1] // max(N, 1)  # output positions per image
        step = max(1, _COL2IM_BLOCK_ELEMENTS // max(w2.shape[1] * P, 1))
        for n in range(0, N, step):
            m = min(step, N - n)
            _add_windows(padded[:, n : n + m], w2.T @ d2[:, n * P : (n + m) * P], HH, WW, stride)
        dx = _cropped(padded, pad, memory_format)
    if need_w:
        dw2 = d2 @ cols.T
    return dx, dw2


# ----------------------------------------------------------------------------------------------
# shifted: a sum of HH*WW products with shifted views of the padded input
# ----------------------------------------------------------------------------------------------


class _Canvas:
    """Where the shifted algorithm keeps images, channels last: a (positions, C) matrix whose
    rows are the pixels of the zero-padded images. Every image's rows are W + z pixels wide and
    every image is followed by z zero rows, one image after the other, flattened; ``lead`` zero
    pixels come first and ``tail`` zero pixels last.

    The z zero pixels at the end of a row are also the left padding of the next row (reading
    column -k of a row lands on column W + z - k of the row before), and the z zero rows after an
    image are also the top padding of the next one. So padding of p needs only z >= p zeros per
    row, not 2p: a 7x7 map with 'same' 3x3 padding takes 8x8 positions instead of 9x9.
    z also keeps every output anchor (i*stride, j*stride) inside its image's rows and columns.

    Flat positions: input (n, r, c) is at lead + (n*Hc + r)*Wc + c; output (n, i, j) is computed
    at anchor O = (n*Hc + i*stride)*Wc + j*stride, and its tap (k, l) reads the canvas at
    O + k*Wc + l (lead = p*Wc + p puts that on input (n, i*stride - p + k, j*stride - p + l)).
    """

    def __init__(
        self,
        N: int,
        H: int,
        W: int,
        HH: int,
        WW: int,
        stride: int,
        pad: int,
        H_out: int,
        W_out: int,
    ) -> None:
        z = max(pad, 2 * pad - HH + 1, 2 * pad - WW + 1, 0)
        self.N, self.HH, self.WW, self.stride = N, HH, WW, stride
        self.Hc, self.Wc = H + z, W + z
        self.lead = pad * self.Wc + pad
        self.S = (HH - 1) * self.Wc + (WW - 1)  # the largest tap shift
        self.tail = self.S + 1
        self.body = N * self.Hc * self.Wc
        self.rows = slice(0, stride * (H_out - 1) + 1, stride)
        self.cols = slice(0, stride * (W_out - 1) + 1, stride)
        # One past the last anchor that is an output: the positions that are computed.
        self.L = ((N - 1) * self.Hc + self.rows.stop - 1) * self.Wc + self.cols.stop

    def place(
        self,
        src: Tensor,
        lead: int,
        tail: int,
        rows: slice,
        cols: slice,
        dtype: torch.dtype,
        scratch: str | None = None,
    ) -> Tensor:
        """(lead + body + tail, C) zeros in ``dtype`` with src (N, C, h, w) moved channels last
        into the image area at [rows, cols] (slices of the Hc x Wc image frame). Only the positions
        outside src are zeroed: a full zero fill first would be one more pass over a large fresh
        allocation. ``scratch`` names a ``_SCRATCH`` slot for a canvas that does not outlive the
        call (None: a new tensor, e.g. one saved for backward)."""
        C = src.shape[1]
        buffer = _new_matrix(src, lead + self.body + tail, C, dtype, scratch)
        buffer[:lead].zero_()
        buffer[lead + self.body :].zero_()
        frame = buffer[lead : lead + self.body].view(self.N, self.Hc, self.Wc, C)
        if rows.step not in (None, 1) or cols.step not in (None, 1):
            frame.zero_()  # strided outputs: zeros between them
        else:
            frame[:, rows.stop :].zero_()
            frame[:, : rows.stop, cols.stop :].zero_()
        frame[:, rows, cols] = src.permute(0, 2, 3, 1)
        return buffer

    def image_area(self, canvas: Tensor, rows: slice, cols: slice) -> Tensor:
        """The (N, C, h, w) view of ``canvas`` (body, C) at [rows, cols] of every image frame."""
        frame = canvas.view(self.N, self.Hc, self.Wc, canvas.shape[1])
        return frame[:, rows, cols].permute(0, 3, 1, 2)


class _Scratch(threading.local):
    """Reusable CPU memory for the canvases that live only inside one forward or backward call
    (the output canvas, dout's grid, dx's canvas, the input canvas of a layer whose weights need
    no gradient), one flat buffer per slot and dtype, kept per
    thread. A fresh CPU tensor of tens of MB is mapped page by page on first touch, which costs
    about as much as a pass over it; the same memory reused call after call is already mapped.
    A slot's buffer grows to the largest request and stays (a few canvases' worth of memory)."""

    def __init__(self) -> None:
        self.buffers: dict[tuple[str, torch.dtype], Tensor] = {}

    def matrix(self, like: Tensor, rows: int, cols: int, dtype: torch.dtype, slot: str) -> Tensor:
        buffer = self.buffers.get((slot, dtype))
        if buffer is None or buffer.numel() < rows * cols:
            buffer = like.new_empty(rows * cols, dtype=dtype)
            self.buffers[(slot, dtype)] = buffer
        return buffer[: rows * cols].view(rows, cols)


_SCRATCH = _Scratch()


def _new_matrix(like: Tensor, rows: int, cols: int, dtype: torch.dtype, slot: str | None) -> Tensor:
    """An uninitialized (rows, cols) matrix on like's device: from the scratch ``slot`` on the
    CPU (other devices' allocators already cache their memory), else a new tensor."""
    if slot is None or like.device.type != "cpu":
        return like.new_empty(rows, cols, dtype=dtype)
    return _SCRATCH.matrix(like, rows, cols, dtype, slot)


def _block_size(row: int) -> int:
    """Anchors per block: the stacked slices (block x row) hold ~256k elements, within
    256-8192 anchors (small enough to stay in the cache between the copy and the product, large
    enough that the product runs at its full rate)."""
    return max(256, min(_TAPWISE_BLOCK, _BLOCK_ELEMENTS // max(row, 1)))


_BLOCK_ELEMENTS = 1 << 18
# Anchors per block when the taps are accumulated one product at a time: the block of the
# output (or of the weight gradient's operands) stays in the cache across the HH*WW products.
_TAPWISE_BLOCK = 8192


def _tapwise(dtype: torch.dtype, R: int) -> bool:
    """Whether products in ``dtype`` over R channels are accumulated tap by tap.

    In float32/float64 every partial sum is rounded like the sums inside one product; in
    bfloat16/float16 each of the HH*WW partial sums would be rounded to 8-11 bits, so those
    stack the taps into one product whose sums stay in float32 (``_stacked_slices``). With few
    channels (the RGB stem) a product per tap has an inner dimension of 3: stacking is faster.
    """
    return dtype in (torch.float32, torch.float64) and R >= _TAPWISE_MIN_CHANNELS


_TAPWISE_MIN_CHANNELS = 8


def _blocks(stop: int, size: int) -> list[tuple[int, int]]:
    """(start, length) of the consecutive blocks of at most ``size`` rows covering [0, stop)."""
    return [(a, min(size, stop - a)) for a in range(0, stop, size)]


def _taps(HH: int, WW: int, Wc: int) -> list[int]:
    """The canvas shift s_t = k*Wc + l of every tap t = k*WW + l."""
    return [k * Wc + l for k in range(HH) for l in range(WW)]


def _stacked_slices(
    buf: Tensor, src: Tensor, HH: int, WW: int, Wc: int, start: int, n: int
) -> Tensor:
    """buf as (n, HH*WW*R): column block t = k*WW + l is src[start + k*Wc + l : ... + n, :].
    The HH*WW shifted slices are one strided view of src (strides Wc*R, R over the taps), so
    the stacking is a single copy, whose inner runs are WW*R contiguous values."""
    R = src.shape[1]
    taps = src.as_strided((n, HH, WW, R), (R, Wc * R, R, 1), src.storage_offset() + start * R)
    cols = buf[: n * HH * WW * R].view(n, HH, WW, R)
    cols.copy_(taps)
    return cols.view(n, HH * WW * R)


def _stacked_rows(
    buf: Tensor, src_cf: Tensor, HH: int, WW: int, Wc: int, start: int, n: int
) -> Tensor:
    """buf as (R*HH*WW, n): row (r, k, l) is src_cf[r, start + k*Wc + l : ... + n], the stacked
    slices of ``_stacked_slices`` transposed, from a channel-first copy src_cf (R, positions) of
    the canvas. With few channels (the RGB stem) its runs are n contiguous values where
    ``_stacked_slices``' would be WW*R (6 for a 2x2 kernel on RGB), which a copy walks slowly."""
    R, P = src_cf.shape
    taps = src_cf.as_strided((R, HH, WW, n), (P, Wc, 1, 1), src_cf.storage_offset() + start)
    cols = buf[: R * HH * WW * n].view(R, HH, WW, n)
    cols.copy_(taps)
    return cols.view(R * HH * WW, n)


def _channel_first(src: Tensor) -> Tensor:
    """(R, positions) copy of a (positions, R) canvas with few channels, one strided gather per
    channel (3-5x faster here than a transposing copy, which walks runs of R values)."""
    return torch.stack(src.unbind(1))


def _swap_row_order(rows: Tensor, A: int, B: int) -> Tensor:
    """(A*B, F) rows ordered (a, b) -> (B*A, F) rows ordered (b, a): weights by (tap, channel)
    into (channel, tap) for ``_stacked_rows``, and back."""
    return rows.view(A, B, -1).transpose(0, 1).reshape(B * A, -1)


def _shifted_products(
    out: Tensor, weights: Tensor, src: Tensor, HH: int, WW: int, Wc: int, stop: int, offset: int
) -> None:
    """out[q] = sum_t src[q + offset + s_t] @ weights[t*R : (t+1)*R] for q in [0, stop), over
    the T = HH*WW taps, s_t = k*Wc + l, block of rows by block of rows.

    Tap by tap (float32/float64): per block, T products of a shifted slice (a view, no copy)
    with the tap's (R, F) weights, accumulated in the output block while it is in the cache.
    Stacked (lower-precision products): per block, the T slices are copied side by side into one
    (block, T*R) matrix (an im2col of that block only) and multiplied ONCE, so the inner
    dimension is T*R and each output is rounded once."""
    T, R = HH * WW, src.shape[1]
    if _tapwise(src.dtype, R):
        shifts = _taps(HH, WW, Wc)
        w_taps = weights.view(T, R, -1)
        for a, n in _blocks(stop, _TAPWISE_BLOCK):
            block = out[a : a + n]
            for t, s in enumerate(shifts):
                rows = src[a + offset + s : a + offset + s + n]
                if t == 0:
                    torch.mm(rows, w_taps[0], out=block)
                else:
                    block.addmm_(rows, w_taps[t])
        return
    B = _block_size(T * R)
    buf = src.new_empty(T * R * min(B, stop))
    if R < _TAPWISE_MIN_CHANNELS:
        src_cf, w_cf = _channel_first(src), _swap_row_order(weights, T, R)
        for a, n in _blocks(stop, B):
            cols = _stacked_rows(buf, src_cf, HH, WW, Wc, a + offset, n)
            torch.mm(cols.T, w_cf, out=out[a : a + n])
        return
    for a, n in _blocks(stop, B):
        cols = _stacked_slices(buf, src, HH, WW, Wc, a + offset, n)
        torch.mm(cols, weights, out=out[a : a + n])


def _shifted_weight_gradient(
    dw_all: Tensor, canvas: Tensor, dgrid: Tensor, HH: int, WW: int, Wc: int, stop: int
) -> None:
    """dw_all[t*C : (t+1)*C] += sum_{O < stop} canvas[O + s_t]^T dgrid[O] for every tap t
    (dw_all (T*C, F) in dout's dtype), block by block: tap by tap on views of the canvas, or
    (lower-precision products) one product with the stacked slices per block, as in
    ``_shifted_products``."""
    T, C = HH * WW, canvas.shape[1]
    if _tapwise(canvas.dtype, C):
        # The WW taps of one kernel row, canvas rows O + k*Wc + l for l < WW, are one strided
        # (WW, C, n) view: one batched product per kernel row, whose WW products run side by
        # side on the threads (a single (C, n) @ (n, F) product, with its small output, uses
        # two threads poorly).
        dw_rows = dw_all.view(HH, WW, C, -1)
        for a, n in _blocks(stop, _TAPWISE_BLOCK):
            d = dgrid[a : a + n].expand(WW, n, -1)
            for k in range(HH):
                start = canvas.storage_offset() + (a + k * Wc) * C
                dw_rows[k].baddbmm_(canvas.as_strided((WW, C, n), (C, 1, C), start), d)
        return
    B = _block_size(T * C)
    buf = canvas.new_empty(T * C * min(B, stop))
    if C < _TAPWISE_MIN_CHANNELS:
        canvas_cf, dw_cf = _channel_first(canvas), _swap_row_order(dw_all, T, C)
        for a, n in _blocks(stop, B):
            dw_cf += torch.mm(_stacked_rows(buf, canvas_cf, HH, WW, Wc, a, n), dgrid[a : a + n])
        dw_all.copy_(_swap_row_order(dw_cf, C, T))
        return
    for a, n in _blocks(stop, B):
        cols = _stacked_slices(buf, canvas, HH, WW, Wc, a, n)
        dw_all += torch.mm(cols.T, dgrid[a : a + n])


# ----------------------------------------------------------------------------------------------
# gathered: an im2col of one block of output positions at a time, from the canvas
# ----------------------------------------------------------------------------------------------


def _windows(src: Tensor, cv: _Canvas, offset: int, h: int, w: int, step: int) -> Tensor:
    """The (N, h, w, HH, WW, R) strided view of a canvas src (positions, R) whose [n, i, j, k, l]
    is src[offset + (n*Hc + i*step)*Wc + j*step + k*Wc + l]: the window of every position of an
    h x w grid (step apart) of every image, read in place."""
    R, Hc, Wc = src.shape[1], cv.Hc, cv.Wc
    return src.as_strided(
        (cv.N, h, w, cv.HH, cv.WW, R),
        (Hc * Wc * R, step * Wc * R, step * R, Wc * R, R, 1),
        src.storage_offset() + offset * R,
    )


def _window_blocks(windows: Tensor, rows: int) -> list[tuple[Tensor, int]]:
    """(block of ``windows``, its first row) covering all N*h*w positions in order, about
    ``rows`` positions per block: whole images, or rows of one image when an image has more
    (at least one row: a block has at most max(rows, w) positions)."""
    N, h, w = windows.shape[:3]
    if h * w <= rows:
        n_step = rows // (h * w)
        return [(windows[n : n + n_step], n * h * w) for n in range(0, N, n_step)]
    i_step = max(1, rows // w)
    return [
        (windows[n, i : i + i_step], (n * h + i) * w) for n in range(N) for i in range(0, h, i_step)
    ]


def _gathered_blocks(windows: Tensor) -> Iterator[tuple[Tensor, int]]:
    """(cols, first row): block by block, the windows of a few hundred positions copied side by
    side into one (block, HH*WW*R) matrix, an im2col of that block only, small enough to stay
    in the cache. The matrix's memory is reused by the next block."""
    T_R = math.prod(windows.shape[3:])
    rows = _block_size(T_R)
    buf = windows.new_empty(max(rows, windows.shape[2]) * T_R)
    for block, start in _window_blocks(windows, rows):
        cols = buf[: block.numel()].view(block.shape)
        cols.copy_(block)
        yield cols.view(-1, T_R), start


def _gathered_products(
    out: Tensor, windows: Tensor, weights: Tensor, bias: Tensor | None = None
) -> None:
    """out[m] = bias + windows[m] @ weights for the M = N*h*w positions m = (n, i, j), out (M, F),
    one product per block of gathered windows."""
    for cols, start in _gathered_blocks(windows):
        target = out[start : start + cols.shape[0]]
        if bias is None:
            torch.mm(cols, weights, out=target)
        else:
            torch.addmm(bias, cols, weights, out=target)


def _gathered_weight_gradient(dw_all: Tensor, windows: Tensor, d: Tensor) -> None:
    """dw_all (HH*WW*R, F) += sum_m windows[m]^T d[m] over the positions m, d (M, F), one
    product per block of gathered windows."""
    for cols, start in _gathered_blocks(windows):
        d_rows = d[start : start + cols.shape[0]]
        if dw_all.dtype == cols.dtype:
            dw_all.addmm_(cols.T, d_rows)
        else:
            dw_all += torch.mm(cols.T, d_rows)


def _shifted_forward(
    x: Tensor,
    w: Tensor,
    stride: int,
    pad: int,
    H_out: int,
    W_out: int,
    products: torch.dtype,
    keep_canvas: bool,
) -> tuple[Tensor, tuple[Tensor, _Canvas]]:
    """out (N, F, H', W') as a view of the output canvas (in ``products``; scratch memory,
    valid until the next conv), and (the input canvas, its geometry). ``keep_canvas``: the
    input canvas is saved for backward, so it gets memory of its own."""
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    cv = _Canvas(N, H, W, HH, WW, stride, pad, H_out, W_out)
    scratch = None if keep_canvas else "input"
    canvas = cv.place(x, cv.lead, cv.tail, slice(0, H), slice(0, W), products, scratch)
    # anchors from L on are never read
    out_canvas = _new_matrix(x, cv.body, F, products, "output")
    w_all = w.permute(2, 3, 1, 0).reshape(-1, F).to(products)  # [t*C + c, f] = w[f, c, tap t]
    _shifted_products(out_canvas, w_all, canvas, HH, WW, cv.Wc, cv.L, 0)
    return cv.image_area(out_canvas, cv.rows, cv.cols), (canvas, cv)


def _shifted_backward(
    dout: Tensor,
    canvas: Tensor,
    cv: _Canvas,
    w: Tensor,
    x_shape: tuple[int, ...],
    need_x: bool,
    need_w: bool,
    products: torch.dtype,
    memory_format: torch.memory_format,
) -> tuple[Tensor | None, Tensor | None]:
    """dx (N, C, H, W) in ``memory_format`` and dw (F, C, HH, WW), in dout's dtype (see the
    module docstring)."""
    N, C, H, W = x_shape
    F, HH, WW = dout.shape[1], cv.HH, cv.WW
    T = HH * WW
    # dgrid: dout at the output anchors, zeros elsewhere, after S = largest shift zero rows
    # (so that dgrid[O - s] below exists for every O >= 0) and before lead zero rows.
    S = cv.S
    dgrid_ext = cv.place(dout, S, cv.lead, cv.rows, cv.cols, products, "dout")
    dx = dw = None
    if need_w:
        # dw[tap t] = sum_O canvas[O + s_t]^T dgrid[O], summed in dout's dtype.
        dw_all = dout.new_zeros(T * C, F)
        _shifted_weight_gradient(dw_all, canvas, dgrid_ext[S:], HH, WW, cv.Wc, cv.L)
        dw = dw_all.view(HH, WW, C, F).permute(3, 2, 0, 1).contiguous()
    if need_x:
        # dcanvas[q] = sum_t dgrid[q - s_t] w_t^T: the forward's products with the kernel
        # mirrored (q - s_t = q + (S - s_t) - S, and S - s_t runs over the taps backwards), over
        # the image area only (the padding's gradient is never needed).
        wt_all = w.flip(2, 3).permute(2, 3, 0, 1).reshape(-1, C).to(products)
        dx_canvas = _new_matrix(dout, cv.body, C, products, "dx")
        _shifted_products(dx_canvas, wt_all, dgrid_ext, HH, WW, cv.Wc, cv.body, cv.lead)
        dx = torch.empty(
            N, C, H, W, dtype=dout.dtype, device=dout.device, memory_format=memory_format
        )
        dx.copy_(cv.image_area(dx_canvas, slice(0, H), slice(0, W)))
    return dx, dw


def _gathered_forward(
    x: Tensor,
    w: Tensor,
    b: Tensor,
    stride: int,
    pad: int,
    H_out: int,
    W_out: int,
    products: torch.dtype,
    keep_canvas: bool,
    layout: torch.memory_format,
) -> tuple[Tensor, tuple[Tensor, _Canvas]]:
    """out (N, F, H', W') in ``layout`` with the bias added, and (the input canvas, its geometry).
    Only the output positions' windows are gathered (no wasted anchors, any stride); a
    channels-last output in the products' dtype is written by the products themselves."""
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    cv = _Canvas(N, H, W, HH, WW, stride, pad, H_out, W_out)
    scratch = None if keep_canvas else "input"
    canvas = cv.place(x, cv.lead, cv.tail, slice(0, H), slice(0, W), products, scratch)
    windows = _windows(canvas, cv, 0, H_out, W_out, cv.stride)
    w_all = w.permute(2, 3, 1, 0).reshape(-1, F).to(products)  # [t*C + c, f] = w[f, c, tap t]
    out = torch.empty(N, F, H_out, W_out, dtype=x.dtype, device=x.device, memory_format=layout)
    if layout == torch.channels_last and products == x.dtype:
        _gathered_products(out.permute(0, 2, 3, 1).view(-1, F), windows, w_all, b)
    else:
        rows = _new_matrix(x, N * H_out * W_out, F, products, "output")
        _gathered_products(rows, windows, w_all)
        torch.add(rows.view(N, H_out, W_out, F).permute(0, 3, 1, 2), b.view(1, F, 1, 1), out=out)
    return out, (canvas, cv)


def _gathered_backward(
    dout: Tensor,
    canvas: Tensor,
    cv: _Canvas,
    w: Tensor,
    x_shape: tuple[int, ...],
    need_x: bool,
    need_w: bool,
    products: torch.dtype,
    memory_format: torch.memory_format,
) -> tuple[Tensor | None, Tensor | None]:
    """dx (N, C, H, W) in ``memory_format`` and dw (F, C, HH, WW), in dout's dtype: the shifted
    algorithm's gradients (module docstring) with the windows gathered at the positions where
    they are needed: the output positions for dw (against dout itself, no zero grid), the image
    positions of dcanvas for dx."""
    N, C, H, W = x_shape
    F, H_out, W_out = dout.shape[1:]
    dx = dw = None
    if need_w:
        d = dout.permute(0, 2, 3, 1)  # (N, H', W', F): rows of the output positions
        if d.dtype != products or not d.is_contiguous():
            d = torch.empty(d.shape, dtype=products, device=dout.device).copy_(d)
        dw_all = dout.new_zeros(cv.HH * cv.WW * C, F)
        windows = _windows(canvas, cv, 0, H_out, W_out, cv.stride)
        _gathered_weight_gradient(dw_all, windows, d.view(-1, F))
        dw = dw_all.view(cv.HH, cv.WW, C, F).permute(3, 2, 0, 1).contiguous()
    if need_x:
        dgrid_ext = cv.place(dout, cv.S, cv.lead, cv.rows, cv.cols, products, "dout")
        windows = _windows(dgrid_ext, cv, cv.lead, H, W, 1)
        wt_all = w.flip(2, 3).permute(2, 3, 0, 1).reshape(-1, C).to(products)
        dx = torch.empty(
            N, C, H, W, dtype=dout.dtype, device=dout.device, memory_format=memory_format
        )
        if memory_format == torch.channels_last and products == dout.dtype:
            _gathered_products(dx.permute(0, 2, 3, 1).view(-1, C), windows, wt_all)
        else:
            rows = _new_matrix(dout, N * H * W, C, products, "dx")
            _gathered_products(rows, windows, wt_all)
            dx.copy_(rows.view(N, H, W, C).permute(0, 3, 1, 2))
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
    dtype (bfloat16 on CPU), with either algorithm, and returns float32 output and gradients.
    Backward, differentiating the product:
        db = sum_{n, i, j} dout,   dW = dout (x) windows,   dx = windows^T applied to W^T dout.
    Saved: the window matrix (im2col) or the input canvas (shifted) if w needs a gradient, w if
    x needs one.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        w: Tensor,
        b: Tensor,
        stride: int = 1,
        pad: int = 0,
        algorithm: str = "auto",
    ) -> Tensor:
        _checks.require_float("x", x)
        stride, pad, H_out, W_out = _checks.check_conv_args(x, w, b, {"stride": stride, "pad": pad})
        require_like("x", x, w=w, b=b)
        if algorithm not in CONV_ALGORITHMS:
            raise ValueError(f"algorithm must be one of {CONV_ALGORITHMS}, got {algorithm!r}")
        N, C, H, W = x.shape
        F, _, HH, WW = w.shape
        products = products_dtype(x)
        if algorithm == "auto":
            channels_last = memory_format_of(x) == torch.channels_last
            algorithm = choose_conv_algorithm(
                C, H, W, HH, WW, stride, pad, channels_last, ctx.needs_input_grad[0]
            )
        if N == 0:
            algorithm = "im2col"  # an empty batch has no canvas; its products are empty
        w = w.detach()
        need_x, need_w = ctx.needs_input_grad[:2]
        canvas_geometry = None
        layout = memory_format_of(x)
        if algorithm == "gathered":  # (writes the output, bias included)
            out, (saved, canvas_geometry) = _gathered_forward(
                x, w, b, stride, pad, H_out, W_out, products, need_w, layout
            )
        else:
            if algorithm == "shifted":
                out_fn, (saved, canvas_geometry) = _shifted_forward(
                    x, w, stride, pad, H_out, W_out, products, need_w
                )
            else:
                w = w.reshape(F, -1).to(products)
                out_fn, saved = _im2col_forward(x, w, HH, WW, stride, pad, H_out, W_out)
                out_fn = out_fn.view(F, N, H_out, W_out).transpose(0, 1)
            # (N, F, H', W') from the products' layout: the copy also adds the bias.
            out = torch.empty(
                N, F, H_out, W_out, dtype=x.dtype, device=x.device, memory_format=layout
            )
            torch.add(out_fn, b.view(1, F, 1, 1), out=out)
        ctx.geometry = (algorithm, x.shape, (F, C, HH, WW), stride, pad, x.dtype, products, layout)
        ctx.canvas_geometry = canvas_geometry
        ctx.save_for_backward(saved if need_w else None, w if need_x else None)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        saved, w = ctx.saved_tensors
        algorithm, x_shape, w_shape, stride, pad, dtype, products, layout = ctx.geometry
        F, _, HH, WW = w_shape
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dx = dw = None
        if algorithm in ("shifted", "gathered") and (need_x or need_w):
            canvas_backward = _shifted_backward if algorithm == "shifted" else _gathered_backward
            dx, dw = canvas_backward(
                dout, saved, ctx.canvas_geometry, w, x_shape, need_x, need_w, products, layout
            )
        elif need_x or need_w:
            d2 = torch.empty(
                dout.shape[1], dout.shape[0], *dout.shape[2:], dtype=products, device=dout.device
            )
            d2.copy_(dout.transpose(0, 1))
            dx, dw = _im2col_backward(
                d2.view(F, math.prod(d2.shape[1:])),
                saved,
                w,
                x_shape,
                HH,
                WW,
                stride,
                pad,
                need_x,
                need_w,
                dtype,
                layout,
            )
            if dw is not None:
                dw = dw.view(w_shape).to(dtype)
        db = dout.sum(dim=(0, 2, 3)) if need_b else None
        return dx, dw, db, None, None, None


class ConvTranspose2dFunction(Function):
    """Transposed convolution (no output padding, no dilation, one group).

    apply(x, w, b, stride=1, pad=0): x (N, C, H, W); w (C, F, HH, WW); b (F,); output
    (N, F, H', W'), H' = (H - 1) * stride - 2 * pad + HH.

    Derivation. A convolution y = conv(u, w) with u (N, F, H', W') and weight w read as
    (C, F, HH, WW) (C filters over F channels), stride s, padding p, has the windows
        cols(u)[(f, k, l), (n, i, j)] = upad[n, f, i*s + k, j*s + l],    y = W2 @ cols(u),
    W2 = w.reshape(C, F*HH*WW). Its input gradient is du = col2im(W2^T @ dy): every column goes
    back onto its window, overlapping windows adding up, padding cropped. This layer is that
    map with dy := x:
        forward:  out = col2im(W2^T @ X2) + b,     X2 = x as (C, N*H*W).
    The adjoint of col2im is im2col, so differentiating ``out`` gives conv's forward and
    conv's weight gradient, both on the windows of dout:
        D = cols(dout)  (F*HH*WW, N*H*W)   (dout zero-padded by p; exactly H x W windows)
        dx = W2 @ D  (the convolution of dout with w),   dW2 = X2 @ D^T,   db = sum dout.
    col2im is ``_add_windows`` (one strided accumulation per tap, as in conv's backward), im2col a
    strided ``unfold`` view copied once. Saved: x and w, for the gradients that are needed.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor, stride: int = 1, pad: int = 0) -> Tensor:
        _checks.require_float("x", x)
        stride, pad, H_out, W_out = check_conv_transpose_args(
            x, w, b, {"stride": stride, "pad": pad}
        )
        require_like("x", x, w=w, b=b)
        N, C, H, W = x.shape
        F, HH, WW = w.shape[1:]
        x2 = x.transpose(0, 1).reshape(C, N * H * W)
        cols = w.reshape(C, F * HH * WW).T @ x2  # (F*HH*WW, N*H*W): column (n, i, j) is the
        # window at (i*s, j*s) of image n
        # (the sums in x's dtype: under autocast the products are bfloat16)
        padded = cols.new_zeros(F, N, H_out + 2 * pad, W_out + 2 * pad, dtype=x.dtype)
        _add_windows(padded, cols, HH, WW, stride)
        out = _cropped(padded, pad).add_(b.view(1, F, 1, 1))
        need_x, need_w = ctx.needs_input_grad[:2]
        ctx.geometry = (x.shape, w.shape, stride, pad)
        ctx.save_for_backward(x if need_w else None, w if need_x else None)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        x, w = ctx.saved_tensors
        (N, C, H, W), (_, F, HH, WW), stride, pad = ctx.geometry
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dx = dw = db = None
        if need_x or need_w:
            # D = cols(dout): the H x W windows of the zero-padded dout, rows (f, k, l),
            # columns (n, i, j).
            dpad = torch.nn.functional.pad(dout, (pad, pad, pad, pad)) if pad else dout
            windows = dpad.unfold(2, HH, stride).unfold(3, WW, stride)  # (N, F, H, W, HH, WW)
            D = windows.permute(1, 4, 5, 0, 2, 3).reshape(F * HH * WW, N * H * W)
            if need_x:
                dx = (w.reshape(C, F * HH * WW) @ D).view(C, N, H, W).transpose(0, 1)
                dx = dx.contiguous()
            if need_w:
                dw = (x.transpose(0, 1).reshape(C, N * H * W) @ D.T).view(C, F, HH, WW)
        if need_b:
            db = dout.sum(dim=(0, 2, 3))
        return dx, dw, db, None, None
