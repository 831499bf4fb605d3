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


class MaxPool2dFunction(Function):
    """Max pooling without padding: out[n, c, i, j] = max of the window
    x[n, c, i*stride : i*stride + pool_height, j*stride : j*stride + pool_width].

    apply(x, pool_height, pool_width, stride): x (N, C, H, W) -> (N, C, H', W') with
    H' = 1 + (H - pool_height) // stride. The gradient of each window goes to ONE position, its
    FIRST maximum in row-major order (argmax's rule; PyTorch's kernels keep the first maximum too);
    overlapping windows (stride < pool size) accumulate. Saved: for every window, the flat index
    into the (H, W) plane of its maximum (see _window_max).

    A channels-last x gives a channels-last output and dx (the windows are gathered along the
    contiguous channel axis and the gradient scattered into an (N, H * W, C) array).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, pool_height: int, pool_width: int, stride: int) -> Tensor:
        _checks.require_float("x", x)
        ph, pw, stride, H_out, W_out = _checks.check_pool_args(
            x, {"pool_height": pool_height, "pool_width": pool_width, "stride": stride}
        )
        N, C, H, W = x.shape
        channels_last = memory_format_of(x) == torch.channels_last
        out, flat = _window_max(x, ph, pw, stride, H_out, W_out, channels_last)
        ctx.x_shape, ctx.channels_last = x.shape, channels_last
        ctx.overlap = stride < ph or stride < pw
        if channels_last:  # (N, H', W', C): scattered along dim 1 of an (N, H * W, C) dx
            ctx.save_for_backward(flat.view(N, H_out * W_out, C))
            return out.permute(0, 3, 1, 2)
        ctx.save_for_backward(flat.view(N, C, H_out * W_out))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        (flat,) = ctx.saved_tensors
        N, C, H, W = ctx.x_shape
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
