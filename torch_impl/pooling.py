"""Max pooling."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

import twin_checks as _checks
from torch_impl._utils import memory_format_of

__all__ = [
    "MaxPool2dFunction",
]


def _window_max(
    x: Tensor, ph: int, pw: int, stride: int, H_out: int, W_out: int, channels_last: bool
) -> tuple[Tensor, Tensor]:
    """Max of every pooling window of x (N, C, H, W) and where it is.

    Returns (out, flat): out the window maxima, flat int64 the index into x's (H, W) plane of
    each window's FIRST maximum in row-major order; both (N, C, H', W'), or, when
    ``channels_last``, both (N, H', W', C) (the channels-last memory order of (N, C, H', W')).

    ``unfold`` views the windows as (N, C, H', W', ph, pw); one copy lays them out as
    (ph * pw, N, C, H', W') (or (ph * pw, N, H', W', C): read along x's contiguous channel axis),
    so that windows[k] -- the element at offset (di, dj) = divmod(k, pw) of EVERY window -- is
    one contiguous block (elementwise ops on it are vectorized; on the strided view they were
    2-4x slower). The offsets are visited in row-major order with a running maximum; a later
    offset takes over a window only where it is STRICTLY greater, so ties keep the earliest
    position (argmax's rule). The winning offset di * W + dj grows along the visit order, so
    "take the new offset where greater" is the running maximum of offset * greater (three cheap
    int32 passes; torch.where/masked_fill were 10x slower).
    """
    W = x.shape[3]
    order = (4, 5, 0, 2, 3, 1) if channels_last else (4, 5, 0, 1, 2, 3)
    windows = x.unfold(2, ph, stride).unfold(3, pw, stride).permute(order)
    windows = windows.reshape(ph * pw, *windows.shape[2:])  # the one copy
    out, offset = windows[0], None  # offset (di, dj) = (0, 0) so far
    for k in range(1, ph * pw):
        v = windows[k]
        greater = v > out
        # The first update allocates the output (out is still a view of windows).
        out = torch.maximum(out, v, out=None if offset is None else out)
        won = greater.to(torch.int32).mul_((k // pw) * W + k % pw)
        offset = won if offset is None else torch.maximum(offset, won, out=offset)
    if offset is None:  # a 1 x 1 window
        out, offset = out.clone(), torch.zeros(out.shape, dtype=torch.int32, device=x.device)
    # + the flat index of each window's top-left corner (i * stride, j * stride).
    corner = torch.arange(0, H_out * stride, stride, device=x.device).mul_(W).unsqueeze(1)
    corner = corner + torch.arange(0, W_out * stride, stride, device=x.device)
    if channels_last:
        corner = corner.unsqueeze(2)  # (H', W', 1), broadcast over the channels
    return out, offset.to(torch.int64).add_(corner)


def _fresh(t: Tensor) -> Tensor:
    """An uninitialized contiguous array of t's shape, dtype and device."""
    return torch.empty(t.shape, dtype=t.dtype, device=t.device)


def _max_of(candidates: list[Tensor]) -> Tensor:
    """The elementwise maximum of same-shaped arrays, as a fresh contiguous array."""
    if len(candidates) == 1:
        return candidates[0].clone(memory_format=torch.contiguous_format)
    best = torch.maximum(candidates[0], candidates[1], out=_fresh(candidates[0]))
    for v in candidates[2:]:
        torch.maximum(best, v, out=best)
    return best


def _route_to_first_max(d: Tensor, wins: list[Tensor], grads: list[Tensor]) -> None:
    """Backward of a running maximum over candidates 0, 1, ..., K - 1 (same-shaped arrays)
    where a later candidate takes over only where it is STRICTLY greater than the maximum of
    the earlier ones (so ties keep the earliest: argmax's rule). wins[i - 1] (0/1, d's dtype)
    marks where candidate i took over; candidate i is the winner where wins[i - 1] = 1 and no
    later win is 1. The upstream gradient d goes to the winner, written into ``grads`` (one
    array or view per candidate): walking back from the last candidate, candidate i takes
    what is left where it took over, and the first candidate keeps the rest.

    wins may be grads[1:] themselves (0/1 values written there beforehand): each is read
    before it is overwritten. grads[0] holds what is left as the walk goes, so nothing else is
    allocated."""
    if not wins:
        grads[0].copy_(d)
        return
    K = len(grads)
    torch.mul(d, wins[K - 2], out=grads[K - 1])
    torch.sub(d, grads[K - 1], out=grads[0])
    for i in range(K - 2, 0, -1):
        torch.mul(grads[0], wins[i - 1], out=grads[i])
        grads[0].sub_(grads[i])


def _windows_nhwc(t: Tensor, ph: int, pw: int, stride: int, H_out: int, W_out: int) -> Tensor:
    """The pooling windows of t, an (N, H, W, C) array in memory order (a channels-last
    (N, C, H, W) tensor permuted), as the strided VIEW (N, H', ph, W', pw, C): element
    [n, i, di, j, dj, c] = t[n, i * stride + di, j * stride + dj, c]. No copy; the channel axis
    stays the contiguous one."""
    sN, sH, sW, sC = t.stride()
    N, C = t.shape[0], t.shape[3]
    return t.as_strided(
        (N, H_out, ph, W_out, pw, C), (sN, stride * sH, sH, stride * sW, sW, sC), t.storage_offset()
    )


def _pool_nhwc_forward(
    x: Tensor, ph: int, pw: int, stride: int, H_out: int, W_out: int
) -> tuple[Tensor, list[Tensor]]:
    """Max pooling of a channels-last x (N, C, H, W) with windows that do not overlap
    (stride >= ph and stride >= pw), without any copy of x: the windows are a strided view
    (N, H', ph, W', pw, C) of x's memory (_windows_nhwc), reduced by elementwise maxima along
    the contiguous channel axis, columns first:
        row_max[di] (N, H', W', C) = maximum over the pw columns of window row di,
        out = running maximum over the ph row maxima, row di taking over where STRICTLY
              greater than the rows before it (row_wins[di - 1] = 1 there, else 0).
    Columns first: the first maximum of a window in row-major order is the first maximum of
    the first row whose maximum is the window's.

    Returns (out, row_wins): out (N, H', W', C) in memory order and the ph - 1 arrays
    row_wins (N, H', W', C), which with x route the gradient back (_pool_nhwc_backward). Each
    row maximum's array is reused: maximum(best, row_max, out=row_max) becomes the new best
    and greater(new best, old best) -- where this row took over -- is written into the old
    best's memory, so the forward allocates ph arrays of out's size and nothing else.
    """
    windows = _windows_nhwc(x.permute(0, 2, 3, 1), ph, pw, stride, H_out, W_out)
    best, row_wins = _max_of([windows[:, :, 0, :, dj] for dj in range(pw)]), []
    for di in range(1, ph):
        row_max = _max_of([windows[:, :, di, :, dj] for dj in range(pw)])
        torch.maximum(best, row_max, out=row_max)  # the new best
        row_wins.append(torch.gt(row_max, best, out=best))  # where row di took over
        best = row_max
    return best, row_wins


def _pool_nhwc_backward(
    dout: Tensor, x: Tensor, row_wins: list[Tensor], ph: int, pw: int, stride: int
) -> Tensor:
    """dx of _pool_nhwc_forward, channels last, written through the windows view of dx
    (N, H', ph, W', pw, C) with no other array allocated: dout (N, C, H', W') first goes to
    each window's winning row (into the column-0 slots, _route_to_first_max with row_wins),
    then within each window row to its winning column. The column wins are recomputed from
    x into the slots of columns 1.. (column dj takes over where STRICTLY greater than the
    columns before it) and _route_to_first_max overwrites them with the gradient. Positions
    in no window (the last rows/columns the floor rule drops, the gaps when stride > pool
    size) get 0."""
    N, C, H, W = x.shape
    _, _, H_out, W_out = dout.shape
    d = dout.permute(0, 2, 3, 1)  # (N, H', W', C), the memory order when dout is channels last
    dx = d.new_empty(N, H, W, C)
    if stride == ph and stride == pw:  # windows tile x but for the dropped last rows/columns
        dx[:, H_out * ph :].zero_()
        dx[:, :, W_out * pw :].zero_()
    else:
        dx.zero_()
    dx_windows = _windows_nhwc(dx, ph, pw, stride, H_out, W_out)
    x_windows = _windows_nhwc(x.permute(0, 2, 3, 1), ph, pw, stride, H_out, W_out)
    cols = [dx_windows[:, :, :, :, dj] for dj in range(pw)]  # (N, H', ph, W', C) each
    _route_to_first_max(d, row_wins, [cols[0][:, :, di] for di in range(ph)])
    x_cols = [x_windows[:, :, :, :, dj] for dj in range(pw)]
    for dj in range(1, pw):
        earlier = x_cols[0] if dj == 1 else _max_of(x_cols[:dj])
        torch.gt(x_cols[dj], earlier, out=cols[dj])  # where column dj took over
    if pw > 1:
        _route_to_first_max(cols[0], cols[1:], cols)
    return dx.permute(0, 3, 1, 2)


class MaxPool2dFunction(Function):
    """Max pooling without padding: out[n, c, i, j] = max of the window
    x[n, c, i*stride : i*stride + pool_height, j*stride : j*stride + pool_width].

    apply(x, pool_height, pool_width, stride): x (N, C, H, W) -> (N, C, H', W') with
    H' = 1 + (H - pool_height) // stride. The gradient of each window goes to ONE position, its
    FIRST maximum in row-major order (argmax's rule; PyTorch's kernels keep the first maximum too);
    overlapping windows (stride < pool size) accumulate.

    Two paths:
    - a channels-last x with windows that do not overlap (stride >= pool size: the CNN's 2x2
      stride 2 and 3x3 stride 3): the windows are a strided view of x, reduced in two sweeps
      of elementwise maxima (_pool_nhwc_forward). Saved: x and the row sweep's
      pool_height - 1 0/1 "took over" arrays (N, H', W', C); the column sweep's are recomputed
      from x in backward, and dx is written through the same view of a channels-last dx.
    - otherwise: one copy of the windows, a running maximum over the window offsets and the
      flat index into the (H, W) plane of every window's maximum, saved and scattered into dx
      (_window_max); a channels-last x gathers along its channel axis and scatters into an
      (N, H * W, C) array. Output and dx keep x's memory format either way.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, pool_height: int, pool_width: int, stride: int) -> Tensor:
        _checks.require_float("x", x)
        ph, pw, stride, H_out, W_out = _checks.check_pool_args(
            x, {"pool_height": pool_height, "pool_width": pool_width, "stride": stride}
        )
        N, C, H, W = x.shape
        channels_last = memory_format_of(x) == torch.channels_last
        ctx.x_shape, ctx.channels_last = x.shape, channels_last
        ctx.overlap = stride < ph or stride < pw
        ctx.pool = (ph, pw, stride)
        if channels_last and not ctx.overlap:
            out, row_wins = _pool_nhwc_forward(x, ph, pw, stride, H_out, W_out)
            ctx.save_for_backward(x, *row_wins)
            return out.permute(0, 3, 1, 2)
        out, flat = _window_max(x, ph, pw, stride, H_out, W_out, channels_last)
        if channels_last:  # (N, H', W', C): scattered along dim 1 of an (N, H * W, C) dx
            ctx.save_for_backward(flat.view(N, H_out * W_out, C))
            return out.permute(0, 3, 1, 2)
        ctx.save_for_backward(flat.view(N, C, H_out * W_out))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        N, C, H, W = ctx.x_shape
        if ctx.channels_last and not ctx.overlap:
            ph, pw, stride = ctx.pool
            x, *row_wins = ctx.saved_tensors
            dx = _pool_nhwc_backward(dout, x, row_wins, ph, pw, stride)
            return dx, None, None, None
        (flat,) = ctx.saved_tensors
        if ctx.channels_last:
            dim, dx = 1, dout.new_zeros(N, H * W, C)
            src = dout.permute(0, 2, 3, 1).reshape(flat.shape)  # (N, H' * W', C)
        else:
            dim, dx = 2, dout.new_zeros(N, C, H * W)
            src = dout.reshape(flat.shape)  # (N, C, H' * W'); N may be 0
        if ctx.overlap:
            # One x position can be the maximum of several windows: accumulate.
            dx.scatter_add_(dim, flat, src)
        else:
            dx.scatter_(dim, flat, src)
        if ctx.channels_last:
            return dx.view(N, H, W, C).permute(0, 3, 1, 2), None, None, None
        return dx.view(N, C, H, W), None, None, None
