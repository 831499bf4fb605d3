"""Fast convolution and max pooling in NumPy, equal to the naive layers to float64 round-off.

Same names, arguments and return values as CS231n's ``fast_layers.py``; every function here
computes exactly what its naive twin in ``numpy_impl.layers`` computes (the tests check both
directions to < 1e-10 relative error in float64), only without Python loops over pixels.

Convolution = im2col + one matrix product
-----------------------------------------
Every output pixel of a convolution is a dot product between a filter and the input window under
it. Stacking all windows as the columns of a matrix ("im2col") turns the whole layer into ONE
matrix product that BLAS runs at full speed::

    cols[(c, k, l), p] = xpad[n, c, i*stride + k, j*stride + l]    p = output pixel (n, i, j)
    out = w.reshape(F, K) @ cols + b        cols: (K, M) = (C*HH*WW, N*H'*W');  out: (F, M)

The windows are read through a zero-copy ``np.lib.stride_tricks.as_strided`` view of the padded
input (``_windows``); one copy turns the view into the ``cols`` matrix. The backward pass is two
more products, one per gradient::

    dw = dout_mat @ cols.T              (F, K)   every window, weighted by its output's gradient
    dcols = w_mat.T @ dout_mat          (K, M)   every window's gradient ...
    dx = col2im(dcols)                           ... added back where the window came from

``col2im`` is a loop over the HH*WW kernel taps (not over pixels): tap (k, l) of every window sits
on one strided slice of the padded input whose pixels are all distinct, so each tap is ONE
vectorized add; windows that overlap (stride < kernel) simply receive several taps' adds.
``np.add.at`` (slow, unbuffered) is never needed.

What the cache keeps: the zero-padded input, not ``cols``. The backward pass rebuilds ``cols``
from it (one more copy, a few % of the layer's time) instead of holding a matrix HH*WW times the
input between the two passes, and it reuses that matrix's buffer for ``dcols``. The column
buffers are per-thread scratch reused from call to call (see ``_scratch``); nothing a caller
receives ever points into them.

Two column orders, the two variants the course ships:

- ``conv_forward_im2col`` (= ``conv_forward_fast``): columns in (H', W', N) order, the order of the
  course's Cython ``im2col``. Batch innermost makes each tap a long contiguous run (W' * N
  numbers), so the im2col copy and the col2im adds run at memory speed. The padded input is stored
  as (C, H, W, N) and the output is returned as an (N, F, H', W') view of the product's (F, H', W',
  N) memory: no extra copy, and a following fast layer finds its input already in that layout.
- ``conv_forward_strides``: columns in (N, H', W') order, the course's ``as_strided`` version, with
  a C-contiguous (N, F, H', W') output.

Max pooling
-----------
``max_pool_forward_fast`` (= ``max_pool_forward_reshape``) takes the max without copying x:
the max is separable, so a running ``np.maximum`` over strided row views of x (the same row of
every window, as whole-row runs) is followed by one over the columns of that row maximum. The
backward pass views x and dx as windows (a plain ``reshape`` when the windows tile x exactly,
a strided view otherwise) and sends each window's gradient to the FIRST maximal element in
row-major window order (``np.argmax``'s rule, the naive layer's and PyTorch's), so a window of
equal values gives its whole gradient to its first element; a NaN in a window makes the output
NaN and takes the gradient (first NaN), as with ``np.argmax``.
``max_pool_forward_im2col`` is the textbook variant: an explicit (windows, pool_height*pool_width)
matrix and its ``argmax``.

Contracts shared with the naive layers: arguments are checked by ``twin_checks`` (same
messages as the naive layers and the torch twin), PyTorch's floor rule for output sizes, inputs
never modified, float32 kept float32. Every backward here accepts the cache of any forward of the
same layer in this module, and also the naive layer's cache (the missing pieces are recomputed).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import DTypeLike

from twin_checks import check_conv_args, check_dout, check_pool_args, require_float

if TYPE_CHECKING:
    from numpy_impl.layers import Cache

__all__ = [
    "conv_forward_fast",
    "conv_backward_fast",
    "conv_forward_im2col",
    "conv_backward_im2col",
    "conv_forward_strides",
    "conv_backward_strides",
    "max_pool_forward_fast",
    "max_pool_backward_fast",
    "max_pool_forward_reshape",
    "max_pool_backward_reshape",
    "max_pool_forward_im2col",
    "max_pool_backward_im2col",
    "free_workspace",
]

# Memory orders of the padded input / column matrix, as permutations of the logical (N, C, H, W)
# axes: "hwn" stores (C, H, W, N) (batch innermost), "nhw" stores (N, C, H, W).
_MEMORY_ORDER = {"hwn": (1, 2, 3, 0), "nhw": (0, 1, 2, 3)}


# ----------------------------------------------------------------------------------------------
# Workspace: reused buffers for the big temporaries
# ----------------------------------------------------------------------------------------------

# The column matrix is HH*WW times the input (hundreds of MB at batch 256). Allocated afresh on
# every call, each of its pages is faulted in and zeroed by the kernel again (on the project's
# VM, where freed memory goes back to the host, that cost up to a second per conv layer). So the
# temporaries that never leave a call live in per-thread buffers reused from call to call. Never
# returned, never cached: every array a caller receives (out, dx, dw, db, caches) is its own.
_workspace = threading.local()


def _scratch(slot: str, shape: tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
    """A C-contiguous array of ``shape``/``dtype`` with undefined contents, backed by this
    thread's reused buffer ``slot`` (grown when too small)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    buf = getattr(_workspace, slot, None)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(nbytes, dtype=np.uint8)
        setattr(_workspace, slot, buf)
    return buf[:nbytes].view(dtype).reshape(shape)


def free_workspace() -> None:
    """Release the calling thread's reused buffers (they are re-created on the next call)."""
    _workspace.__dict__.clear()


# ----------------------------------------------------------------------------------------------
# Windows: the zero-copy im2col view shared by convolution and pooling
# ----------------------------------------------------------------------------------------------


def _windows(
    a: np.ndarray, kh: int, kw: int, stride: int, H_out: int, W_out: int, writeable: bool = False
) -> np.ndarray:
    """Zero-copy view (N, C, H', W', kh, kw) of a (N, C, H, W) array of any memory layout.

    ``view[n, c, i, j]`` is the kh x kw window under output pixel (i, j): rows
    i*stride .. i*stride+kh-1, columns j*stride .. j*stride+kw-1. PyTorch's floor rule already
    fixed H', W', so rows/columns that no window reaches are simply never read. Windows overlap
    when stride < kernel, so the view may alias itself; ``writeable=True`` is only used to write
    one tap ``view[..., k, l]`` at a time, which never aliases (its pixels are distinct).
    """
    sN, sC, sH, sW = a.strides
    return as_strided(
        a,
        shape=(a.shape[0], a.shape[1], H_out, W_out, kh, kw),
        strides=(sN, sC, sH * stride, sW * stride, sH, sW),
        writeable=writeable,
    )


def _zeros(shape: tuple[int, ...], order: str, dtype: DTypeLike) -> np.ndarray:
    """Zeros of logical shape (N, C, H, W) stored in memory ``order``; returns the NCHW view."""
    perm = _MEMORY_ORDER[order]
    mem = np.zeros(tuple(shape[a] for a in perm), dtype=dtype)
    return mem.transpose(np.argsort(perm))


def _add_windows(dst: np.ndarray, d6: np.ndarray, stride: int) -> None:
    """dst (N, C, H, W) += the windows' values d6 (N, C, H', W', kh, kw) at the pixels they cover.

    The adjoint of ``_windows`` (col2im). One vectorized add per kernel tap (k, l): tap (k, l) of
    all windows is a single strided slice of dst with distinct pixels. Windows overlap only when
    stride < kernel; the taps are added one after the other, so overlaps accumulate correctly.
    """
    H_out, W_out, kh, kw = d6.shape[2:]
    dwin = _windows(dst, kh, kw, stride, H_out, W_out, writeable=True)
    for k in range(kh):
        for l in range(kw):
            dwin[..., k, l] += d6[..., k, l]


def _padded(x: np.ndarray, pad: int, order: str, dtype: DTypeLike) -> np.ndarray:
    """Zero-padded copy of x (N, C, H, W) stored in memory ``order``, as an (N, C, H+2*pad,
    W+2*pad) view. The same pass converts the layout and the dtype."""
    N, C, H, W = x.shape
    xp = _zeros((N, C, H + 2 * pad, W + 2 * pad), order, dtype)
    if order == "hwn":
        _copy_batch_last(np.moveaxis(xp, 0, -1)[:, pad : pad + H, pad : pad + W], x)
    else:
        xp[:, :, pad : pad + H, pad : pad + W] = x
    return xp


def _im2col(
    xp: np.ndarray, HH: int, WW: int, stride: int, H_out: int, W_out: int, order: str
) -> np.ndarray:
    """cols (C*HH*WW, N*H'*W'): row (c, k, l); column (i, j, n) for "hwn", (n, i, j) for "nhw".

        cols[(c, k, l), p] = xp[n, c, i*stride + k, j*stride + l]   for output pixel p = (n, i, j)

    One copy of the zero-copy window view of the padded input xp, into the reused "cols" buffer.
    """
    win = _windows(xp, HH, WW, stride, H_out, W_out)  # (N, C, H', W', HH, WW)
    if order == "hwn":
        win = win.transpose(1, 4, 5, 2, 3, 0)  # (C, HH, WW, H', W', N)
    else:
        win = win.transpose(1, 4, 5, 0, 2, 3)  # (C, HH, WW, N, H', W')
    cols = _scratch("cols", win.shape, xp.dtype)
    np.copyto(cols, win)
    return cols.reshape(xp.shape[1] * HH * WW, -1)


def _col2im(
    dcols: np.ndarray,
    x_shape: tuple[int, ...],
    HH: int,
    WW: int,
    stride: int,
    pad: int,
    H_out: int,
    W_out: int,
    order: str,
) -> np.ndarray:
    """Adjoint of ``_im2col``: dx (N, C, H, W), every column's gradient added back onto the window
    it was read from; the padding's share is dropped."""
    N, C, H, W = x_shape
    if order == "hwn":
        d6 = dcols.reshape(C, HH, WW, H_out, W_out, N).transpose(5, 0, 3, 4, 1, 2)
    else:
        d6 = dcols.reshape(C, HH, WW, N, H_out, W_out).transpose(3, 0, 4, 5, 1, 2)
    dxp = _zeros((N, C, H + 2 * pad, W + 2 * pad), order, dcols.dtype)
    _add_windows(dxp, d6, stride)
    return dxp[:, :, pad : pad + H, pad : pad + W]


def _mat_to_nchw(mat: np.ndarray, N: int, H_out: int, W_out: int, order: str) -> np.ndarray:
    """(F, M) product -> (N, F, H', W') view (no copy)."""
    F = mat.shape[0]
    if order == "hwn":
        return mat.reshape(F, H_out, W_out, N).transpose(3, 0, 1, 2)
    return mat.reshape(F, N, H_out, W_out).transpose(1, 0, 2, 3)


def _nchw_to_mat(a: np.ndarray, order: str) -> np.ndarray:
    """(N, F, H', W') -> (F, M) matrix with columns in ``order`` (a copy only if a's memory is
    not already in that order)."""
    mat = a.transpose(1, 0, 2, 3) if order == "nhw" else np.moveaxis(a, 0, -1)
    if not mat.flags.c_contiguous:
        view = mat
        mat = _scratch("dmat", view.shape, a.dtype)
        if order == "hwn":
            _copy_batch_last(mat, a)
        else:
            np.copyto(mat, view)
    return mat.reshape(a.shape[1], -1)


def _copy_batch_last(dst: np.ndarray, src: np.ndarray) -> None:
    """dst[..., n] = src[n, ...] for src (N, *S) and dst (*S, N), dst possibly a strided view.

    Moving the batch axis innermost transposes an (N, prod(S)) matrix. Done in one copy, each run
    of N destination numbers gathers values prod(S) apart in memory (a cache line and a page
    each); moving blocks of 16 batch entries first makes both copies cache-friendly (2-9x faster
    at the CNN's shapes in our measurements, the smaller the image the larger the gain).
    """
    N = src.shape[0]
    if N % 16 or not src.flags.c_contiguous:
        dst[...] = np.moveaxis(src, 0, -1)
        return
    blocks = _scratch("blocks", (N // 16, *src.shape[1:], 16), src.dtype)
    np.copyto(blocks, np.moveaxis(src.reshape(N // 16, 16, *src.shape[1:]), 1, -1))
    split = dst.view()
    split.shape = (*dst.shape[:-1], N // 16, 16)  # a view, never a copy
    split[...] = np.moveaxis(blocks, 0, -2)  # 16-number runs


# ----------------------------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------------------------


def _conv_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict[str, Any], order: str
) -> tuple[np.ndarray, Cache]:
    require_float("x", x)
    stride, pad, H_out, W_out = check_conv_args(x, w, b, conv_param)
    F, _, HH, WW = w.shape
    dtype = np.result_type(x, w, b)
    xp = _padded(x, pad, order, dtype)
    cols = _im2col(xp, HH, WW, stride, H_out, W_out, order)
    out = w.reshape(F, -1).astype(dtype, copy=False) @ cols  # (F, M): the one GEMM
    out += b[:, None]
    return _mat_to_nchw(out, x.shape[0], H_out, W_out, order), (x, w, b, conv_param, xp, order)


def _require_unchanged(dict_name: str, cached: tuple[int, ...], now: tuple[int, ...]) -> None:
    """The backward pass re-reads the param dict; it must still describe the forward pass."""
    if tuple(cached) != tuple(now):
        raise ValueError(
            f"{dict_name} changed between forward and backward: the cache was built for sizes "
            f"{tuple(cached)}, the dict now gives {tuple(now)}"
        )


def _unpack_conv_cache(cache: Cache) -> tuple[Any, ...]:
    if isinstance(cache, tuple) and len(cache) == 6 and cache[5] in _MEMORY_ORDER:
        return cache
    if isinstance(cache, tuple) and len(cache) == 4:  # conv_forward_naive's cache
        return (*cache, None, "hwn")
    raise TypeError(
        "cache must be the cache returned by conv_forward_fast/_im2col/_strides or "
        f"conv_forward_naive, got {type(cache).__name__}"
        + (f" of length {len(cache)}" if isinstance(cache, tuple) else "")
    )


def _conv_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, w, b, conv_param, xp, order = _unpack_conv_cache(cache)
    stride, pad, H_out, W_out = check_conv_args(x, w, b, conv_param)
    N = x.shape[0]
    F, _, HH, WW = w.shape
    if xp is not None:
        padded_now = (x.shape[2] + 2 * pad, x.shape[3] + 2 * pad)
        _require_unchanged("conv_param", xp.shape[2:], padded_now)
    check_dout(dout, (N, F, H_out, W_out))
    if xp is None:
        xp = _padded(x, pad, order, np.result_type(x, w, b))
    cols = _im2col(xp, HH, WW, stride, H_out, W_out, order)
    dmat = _nchw_to_mat(dout, order)  # (F, M)
    db = dmat.sum(axis=1)
    # out = w_mat @ cols + b, so dw_mat = dout_mat @ cols^T and dcols = w_mat^T @ dout_mat.
    dw = (dmat @ cols.T).reshape(w.shape).astype(np.result_type(dout, x), copy=False)
    # cols is not needed any more: its buffer receives dcols (same shape) when dtypes agree.
    same = cols.dtype == np.result_type(w, dmat)
    dcols = np.matmul(w.reshape(F, -1).T, dmat, out=cols if same else None)
    dx = _col2im(dcols, x.shape, HH, WW, stride, pad, H_out, W_out, order)
    return dx, dw, db


def conv_forward_im2col(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict[str, Any]
) -> tuple[np.ndarray, Cache]:
    """Convolution (cross-correlation) as im2col + one matrix product; columns in (H', W', N) order.

    x: (N, C, H, W); w: (F, C, HH, WW); b: (F,); conv_param: 'stride', 'pad' (symmetric zeros).
    Returns out (N, F, H', W') with H' = 1 + (H + 2*pad - HH) // stride (PyTorch's floor rule), as
    a view of the product's (F, H', W', N) memory (batch innermost, like the course's
    ``conv_forward_im2col``), and cache = (x, w, b, conv_param, xpad, "hwn") where xpad is the
    zero-padded input (N, C, H+2*pad, W+2*pad), stored as (C, H, W, N), from which the backward
    pass rebuilds the columns. dtype: np.result_type(x, w, b) (float32 in, float32 out).
    """
    return _conv_forward(x, w, b, conv_param, "hwn")


def conv_backward_im2col(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, F, H', W'); cache from any conv forward here (or conv_forward_naive's).

    Returns dx (N, C, H, W), dw (F, C, HH, WW), db (F,), with dout_mat = dout as (F, M):
        db = dout summed over (N, H', W');  dw = dout_mat @ cols^T;
        dx = col2im(w_mat^T @ dout_mat)  (dx is a view of the padded gradient's interior).
    """
    return _conv_backward(dout, cache)


def conv_forward_strides(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict[str, Any]
) -> tuple[np.ndarray, Cache]:
    """Same as ``conv_forward_im2col`` with the course's ``as_strided`` column order (N, H', W').

    Returns a C-contiguous out (N, F, H', W') and cache = (x, w, b, conv_param, xpad, "nhw") with
    xpad the C-contiguous zero-padded input (N, C, H+2*pad, W+2*pad).
    """
    out, cache = _conv_forward(x, w, b, conv_param, "nhw")
    return np.ascontiguousarray(out), cache


def conv_backward_strides(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, F, H', W'); returns dx, dw, db (see ``conv_backward_im2col``)."""
    return _conv_backward(dout, cache)


# The fast pair is the (H', W', N) column order: its im2col/col2im copies are long contiguous
# runs, so it is the faster one at every CNN shape measured (see the module docstring).
conv_forward_fast = conv_forward_im2col
conv_backward_fast = conv_backward_im2col


# ----------------------------------------------------------------------------------------------
# Max pooling
# ----------------------------------------------------------------------------------------------


def _pool_windows(
    x: np.ndarray, ph: int, pw: int, stride: int, H_out: int, W_out: int, writeable: bool = False
) -> np.ndarray:
    """(N, C, H', W', ph, pw) view of x's pooling windows, without copying."""
    N, C, H, W = x.shape
    if stride == ph == pw and H == H_out * ph and W == W_out * pw and x.flags.c_contiguous:
        # The reshape trick: the windows tile x exactly, so splitting H into (H', ph) and W into
        # (W', pw) IS the window view.
        return x.reshape(N, C, H_out, ph, W_out, pw).transpose(0, 1, 2, 4, 3, 5)
    return _windows(x, ph, pw, stride, H_out, W_out, writeable)


def max_pool_forward_reshape(x: np.ndarray, pool_param: dict[str, Any]) -> tuple[np.ndarray, Cache]:
    """Max pooling without copying x: the maximum over each window's rows, then its columns.

    x: (N, C, H, W); pool_param: 'pool_height', 'pool_width', 'stride'.
    Returns out (N, C, H', W') with H' = 1 + (H - pool_height) // stride, and
    cache = (x, pool_param, out_copy, "max") (a private copy of out: a caller may modify out).
    NaN in a window propagates to its output.
    """
    require_float("x", x)
    ph, pw, stride, H_out, W_out = check_pool_args(x, pool_param)
    if W_out == 1:
        # Windows in one column: each tap of all windows is one strided run over (N, C, H').
        win = _pool_windows(x, ph, pw, stride, H_out, W_out)
        out = _maximum_of([win[..., k, l] for k in range(ph) for l in range(pw)])
    else:
        # Separable: the max over each window's rows (ph - 1 maxima of whole-row runs, which
        # NumPy vectorizes), then over its columns (pw - 1 strided maxima), instead of
        # ph * pw - 1 strided maxima of single taps.
        reach = (W_out - 1) * stride + pw  # the columns some window reads
        rows = [x[:, :, k : k + (H_out - 1) * stride + 1 : stride, :reach] for k in range(ph)]
        row_max = rows[0] if ph == 1 else _maximum_of(rows)
        out = _maximum_of(
            [row_max[..., l : l + (W_out - 1) * stride + 1 : stride] for l in range(pw)]
        )
    return out, (x, pool_param, out.copy(order="K"), "max")


def _maximum_of(arrays: list[np.ndarray]) -> np.ndarray:
    """Elementwise maximum of equally shaped arrays (NaN propagates), as a new array in their
    memory layout: the first maximum allocates it, the others update it in place."""
    if len(arrays) == 1:
        return arrays[0].copy(order="K")
    out = np.maximum(arrays[0], arrays[1])
    for a in arrays[2:]:
        np.maximum(out, a, out=out)
    return out


def _max_pool_backward_max(
    dout: np.ndarray, x: np.ndarray, pool_param: dict[str, Any], out: np.ndarray
) -> np.ndarray:
    """Route each window's gradient to its FIRST maximal tap in row-major window order.

    Walk the taps in that order; ``free`` marks windows whose maximum has not been met yet, so a
    tap equal to the max takes the gradient only if no earlier tap did (ties go to the first).
    A window whose max is NaN sends its gradient to its first NaN (np.argmax's rule). Every
    window's max is one of its taps, so the last tap takes exactly the windows still free
    (no comparison needed).
    Tap (k, l) of all windows is one strided slice of dx with distinct pixels: windows that do
    not overlap (stride >= pool size) just write their slice, overlapping ones add tap by tap.
    """
    ph, pw, stride, H_out, W_out = check_pool_args(x, pool_param)
    _require_unchanged("pool_param", out.shape[2:], (H_out, W_out))
    check_dout(dout, out.shape)
    overlap = stride < ph or stride < pw
    dx = np.empty_like(x, dtype=np.result_type(dout, x))
    if stride == ph == pw:
        # The windows tile the top-left H' * ph x W' * pw block, whose every pixel is written
        # once below; only the rows and columns past it (PyTorch's floor rule) stay 0.
        dx[:, :, H_out * ph :] = 0
        dx[:, :, :, W_out * pw :] = 0
    else:
        dx[...] = 0  # gaps between windows stay 0; overlapping windows add onto 0
    xwin = _pool_windows(x, ph, pw, stride, H_out, W_out)
    dwin = _pool_windows(dx, ph, pw, stride, H_out, W_out, writeable=True)
    has_nan = bool(np.isnan(out).any())
    # dout * hit is the fast mask (a 0/1 multiply; a masked-out entry may come out as -0.0, equal
    # to 0.0). With an inf/NaN in dout it would turn masked-out zeros into NaN: np.where then.
    finite = bool(np.isfinite(dout).all())
    free = np.ones_like(out, dtype=bool)  # *_like: out's memory layout
    hit = np.empty_like(out, dtype=bool)
    share = np.empty_like(out, dtype=dx.dtype) if overlap else None
    taps = [(k, l) for k in range(ph) for l in range(pw)]
    for k, l in taps:
        tap, dtap = xwin[..., k, l], dwin[..., k, l]
        last = (k, l) == taps[-1]
        if last:
            hit = free  # the windows whose maximum no earlier tap held
        else:
            np.equal(tap, out, out=hit)
            if has_nan:
                hit |= np.isnan(tap)
            if k or l:
                hit &= free
        if finite:
            np.multiply(dout, hit, out=share if overlap else dtap)
        elif overlap:
            share[...] = np.where(hit, dout, 0)  # type: ignore[index]
        else:
            dtap[...] = np.where(hit, dout, 0)
        if overlap:
            dtap += share
        if not last:
            np.logical_xor(free, hit, out=free)  # hit is a subset of free
    return dx


def _unpack_pool_cache(cache: Cache) -> tuple[Any, ...]:
    if isinstance(cache, tuple) and len(cache) == 4 and cache[3] in ("max", "argmax"):
        return cache
    if isinstance(cache, tuple) and len(cache) == 2:  # max_pool_forward_naive's cache
        x, pool_param = cache
        return (x, pool_param, max_pool_forward_reshape(x, pool_param)[0], "max")
    raise TypeError(
        "cache must be the cache returned by max_pool_forward_fast/_reshape/_im2col or "
        f"max_pool_forward_naive, got {type(cache).__name__}"
        + (f" of length {len(cache)}" if isinstance(cache, tuple) else "")
    )


def _max_pool_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    x, pool_param, saved, kind = _unpack_pool_cache(cache)
    if kind == "max":
        return _max_pool_backward_max(dout, x, pool_param, saved)
    ph, pw, stride, H_out, W_out = check_pool_args(x, pool_param)
    _require_unchanged("pool_param", saved.shape[2:], (H_out, W_out))
    check_dout(dout, saved.shape)
    # The gradient of max over a window's column is a one-hot at its argmax: build the (windows,
    # taps) gradient matrix, then add it back onto the windows (col2im).
    dcols = np.zeros((*saved.shape, ph * pw), dtype=np.result_type(dout, x))
    np.put_along_axis(dcols, saved[..., None], dout[..., None], axis=-1)
    dx = np.zeros(x.shape, dtype=dcols.dtype)
    _add_windows(dx, dcols.reshape(*saved.shape, ph, pw), stride)
    return dx


def max_pool_backward_reshape(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dout: (N, C, H', W'); cache from any max pool forward here (or the naive one's).

    Returns dx (N, C, H, W): each window's gradient goes to the first maximum of the window in
    row-major order; overlapping windows (stride < pool size) accumulate.
    """
    return _max_pool_backward(dout, cache)


def max_pool_forward_im2col(x: np.ndarray, pool_param: dict[str, Any]) -> tuple[np.ndarray, Cache]:
    """Max pooling as an explicit (windows, taps) matrix and its argmax (textbook variant).

    x: (N, C, H, W); returns out (N, C, H', W') and cache = (x, pool_param, argmax, "argmax") with
    argmax (N, C, H', W') the row-major index of each window's first maximum (np.argmax's rule).
    """
    require_float("x", x)
    ph, pw, stride, H_out, W_out = check_pool_args(x, pool_param)
    cols = _windows(x, ph, pw, stride, H_out, W_out).reshape(*x.shape[:2], H_out, W_out, ph * pw)
    argmax = cols.argmax(axis=-1)
    out = np.take_along_axis(cols, argmax[..., None], axis=-1)[..., 0]
    return out, (x, pool_param, argmax, "argmax")


def max_pool_backward_im2col(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dout: (N, C, H', W'); returns dx (N, C, H, W) (see ``max_pool_backward_reshape``)."""
    return _max_pool_backward(dout, cache)


max_pool_forward_fast = max_pool_forward_reshape
max_pool_backward_fast = max_pool_backward_reshape
