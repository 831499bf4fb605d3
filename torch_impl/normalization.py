"""Normalization: batch, layer and group normalization.


All three normalize sets of M values with the BIASED variance, as numpy_impl does:
    mean = sum(x) / M,  xmu = x - mean,  var = sum(xmu^2) / M,  rstd = 1 / sqrt(var + eps),
    xhat = xmu * rstd,  out = gamma * xhat + beta.
Differentiating through the mean and the variance (CS231n's batchnorm_backward_alt derivation)
gives, with dxhat = dout * gamma and means over the same M values,
    dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
Each Function evaluates this from per-set sums of dout and dout * xhat (the same sums give
dbeta and dgamma) and a few elementwise passes: the formula above, regrouped.

Speed: these layers are memory-bound, so the code counts passes over the (N, ...) arrays:
every per-set or per-channel quantity is a small vector, big temporaries are reused through
``out=``, and every broadcast runs along a long contiguous axis -- a per-channel vector is
repeated H * W times into a per-column vector of the (N, C * H * W) view (_per_column) rather
than broadcast as (C, 1) over short H * W rows (3-5x slower for 3x3 maps).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

import twin_checks as _checks
from torch_impl._utils import memory_format_of, require_like

__all__ = [
    "BatchNormFunction",
    "LayerNormFunction",
    "SpatialGroupNormFunction",
]


def _per_column(v: Tensor, L: int) -> Tensor:
    """(C,) per-channel values (or any shape holding C values, such as (1, C, 1, 1)) -> (C * L,):
    each repeated for the L = H * W positions of its channel, i.e. one value per column of x
    viewed as (N, C * L)."""
    if L == 1:
        return v if v.dim() == 1 else v.reshape(-1)
    return v.reshape(-1, 1).expand(-1, L).reshape(-1)


def _channel_sum(t2: Tensor, C: int, L: int) -> Tensor:
    """(N, C * L) -> (C,): the sum of each channel's N * L values. The batch axis is summed
    first (t2.sum(0) adds whole contiguous rows: the fast direction, vectorized along the
    row; about as fast as BLAS's gemv t2^T @ ones for 256 x 1024 and 1.3-1.8x faster for the
    tall (N * H * W, C) arrays of a channels-last x), then each channel's L columns (none when
    L = 1)."""
    s = t2.sum(0)
    return s if L == 1 else s.view(C, L).sum(1)


def _bn_rows(t: Tensor, channels_last: bool) -> Tensor:
    """t (N, C, ...) as the 2-D array whose columns hold each channel's values: (N, C * L) for
    the contiguous layout (a channel's L = H * W values side by side in every row), or, for a
    channels-last t (N, C, H, W), (N * H * W, C) -- the plain (N, D) batchnorm layout with one
    row per position, a view of t's own memory (no transposing copy)."""
    N, C = t.shape[0], t.shape[1]
    if channels_last:
        rows = t.permute(0, 2, 3, 1).reshape(N * math.prod(t.shape[2:]), C)
    else:
        rows = t.reshape(N, C * math.prod(t.shape[2:]))
    # A copy only when t is laid out otherwise (say, a contiguous dout for a channels-last x):
    # a strided view can come back from reshape, and the arrays computed from it would follow
    # its strides.
    return rows.contiguous()


def _bn_unrows(t2: Tensor, shape: torch.Size, channels_last: bool) -> Tensor:
    """Inverse of _bn_rows: the 2-D array back as (N, C, ...), channels last when t was."""
    if channels_last:
        N, C, H, W = shape
        return t2.view(N, H, W, C).permute(0, 3, 1, 2)
    return t2.view(shape)


def _check_bn_apply(
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    momentum: float,
    eps: float,
    ndim: int,
    layout: str,
) -> tuple[float, float]:
    """Validation of a (spatial) batchnorm Function's arguments; returns (momentum, eps)."""
    _checks.require_float("x", x)
    C = x.shape[1] if x.ndim > 1 else None
    _checks.check_norm_args(x, gamma, beta, ndim, (C,), layout)
    for name, buf in (("running_mean", running_mean), ("running_var", running_var)):
        if buf is not None:
            _checks.require_shape(name, buf, (C,), hint="one per feature")
    require_like("x", x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    momentum = _checks.require_unit_interval("momentum", momentum)
    eps = _checks.require_nonneg_real("eps", eps)
    return momentum, eps


def _bn_forward(
    ctx: Any,
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    training: bool,
    momentum: float,
    eps: float,
) -> Tensor:
    """BatchNormFunction's forward, for x (N, D) and x (N, C, H, W) alike: the statistics of
    a feature/channel are over its M = N * H * W values, computed on the
    (N, C * L) view of x (L = H * W; 1 for (N, D)).

    Train mode normalizes with the batch statistics and updates the running buffers IN PLACE with
    CS231n's convention  running = momentum * running + (1 - momentum) * batch_stat  (a lerp
    from running towards batch_stat by 1 - momentum) and the BIASED batch variance (PyTorch:
    momentum' = 1 - momentum and the unbiased variance). Test mode normalizes with the running
    statistics.
    gamma and rstd are both per channel, so out = xmu * k + beta with k = gamma * rstd is ONE
    pass and xhat is never stored.

    Memory: the output is the ONE large array allocated. It first holds xmu^2 (for the
    variance), then xmu again and the output in place; xmu is recomputed rather than kept
    (a pass costs less than a second large array, which on CPU is paged in on first touch:
    keeping xmu was slower for 128 x 32 x 15 x 15 and no faster for 256 x 1024). It is
    recomputed as x - mean, never as x * k - mean * k, which would cancel when |mean| >> std.
    Saved: x (as x2, the _bn_rows array), mean, rstd and k (C,); ctx.training,
    ctx.channels_last.

    A channels-last x (N, C, H, W) is the (N * H * W, C) array of _bn_rows, normalized per
    column exactly as an (N, D) x (L = 1): its output, and in the backward dx, stay channels last.
    """
    N, C = x.shape[0], x.shape[1]
    M = N * math.prod(x.shape[2:])
    channels_last = memory_format_of(x) == torch.channels_last
    x2 = _bn_rows(x, channels_last)
    # The rows of x2, and the columns per channel.
    N, L = x2.shape[0], 1 if channels_last else math.prod(x.shape[2:])
    if training:
        # max(M, 1): an empty batch (M = 0) gets mean = var = 0 rather than 0 / 0, so its empty
        # output comes with zero (not NaN) dgamma and dbeta, as F.batch_norm's.
        mean = _channel_sum(x2, C, L).div_(max(M, 1))
        out = x2 - _per_column(mean, L)
        var = _channel_sum(out.mul_(out), C, L).div_(max(M, 1))
        torch.sub(x2, _per_column(mean, L), out=out)  # xmu again
        # A channel without values (an empty batch) has no statistics (0 / 0): the running
        # buffers keep their values, as F.batch_norm's do.
        if running_mean is not None and M > 0:
            running_mean.lerp_(mean, 1 - momentum)
        if running_var is not None and M > 0:
            running_var.lerp_(var, 1 - momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("test mode needs running_mean and running_var")
        # Copies: the caller may update its buffers before the backward runs.
        mean, var = running_mean.clone(), running_var
        out = x2 - _per_column(mean, L)
    rstd = torch.rsqrt(var + eps)
    k = gamma * rstd
    torch.addcmul(_per_column(beta, L), out, _per_column(k, L), out=out)
    ctx.training, ctx.x_shape, ctx.channels_last = training, x.shape, channels_last
    ctx.save_for_backward(x2, mean, rstd, k)
    return _bn_unrows(out, x.shape, channels_last)


def _bn_backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
    """Gradients of _bn_forward: (dx, dgamma, dbeta) with dgamma/dbeta of shape (C,).

        dbeta = sum(dout),   dgamma = sum(dout * xhat) = rstd * sum(dout * xmu)
    (sums over the M values of a channel). gamma is constant over a channel's values, so
    mean(dxhat) = gamma * dbeta / M and mean(dxhat * xhat) = gamma * dgamma / M, and the general
    formula becomes, with k = gamma * rstd,
        dx = k * (dout - dbeta / M - xhat * dgamma / M)
           = k * dout  +  xmu * (-k / M * rstd * dgamma)  +  (-k / M * dbeta),
    every coefficient a per-channel vector. In test mode mean and rstd are constants:
    dx = k * dout. As in the forward, dx is the one large array: it holds dout * xmu for the
    sum, then xmu (recomputed from x) and dx in place.
    """
    x2, mean, rstd, k = ctx.saved_tensors
    need_dx, need_dgamma, need_dbeta = ctx.needs_input_grad[:3]
    N, CL = x2.shape
    C, L = rstd.shape[0], 1 if ctx.channels_last else math.prod(ctx.x_shape[2:])
    dout2 = _bn_rows(dout, ctx.channels_last)  # (a copy when dout's layout differs from x's)
    dbeta = dgamma = dx = buf = None
    if need_dbeta or (need_dx and ctx.training):
        dbeta = _channel_sum(dout2, C, L)
    if need_dgamma or (need_dx and ctx.training):
        buf = x2 - _per_column(mean, L)
        dgamma = _channel_sum(buf.mul_(dout2), C, L).mul_(rstd)
    if need_dx:
        if ctx.training:
            c = k / -max(N * L, 1)  # (dx is empty when N * L = 0)
            shift, slope = c * dbeta, (c * rstd).mul_(dgamma)
            dx = torch.sub(x2, _per_column(mean, L), out=buf)  # xmu again
            torch.addcmul(_per_column(shift, L), dx, _per_column(slope, L), out=dx)
            dx.addcmul_(dout2, _per_column(k, L))
        else:
            dx = torch.mul(dout2, _per_column(k, L), out=buf)
        dx = _bn_unrows(dx, ctx.x_shape, ctx.channels_last)
    return dx, dgamma if need_dgamma else None, dbeta if need_dbeta else None


class BatchNormFunction(Function):
    """Batch normalization of x (N, D) per feature over the batch, or of x (N, C, H, W) per
    channel over (N, H, W) (CS231n's spatial batchnorm); gamma, beta (D,) or (C,).

    apply(x, gamma, beta, running_mean, running_var, training, momentum, eps): running buffers
    (D,) or (C,) updated in place when training (CS231n's momentum and biased variance, see
    _bn_forward). The layout follows x: both are the same statistics over the (N, C * L) view
    (over the (N * H * W, C) view of a channels-last x, whose output and dx stay channels last).
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        gamma: Tensor,
        beta: Tensor,
        running_mean: Tensor,
        running_var: Tensor,
        training: bool,
        momentum: float = 0.9,
        eps: float = 1e-5,
    ) -> Tensor:
        ndim, layout = (4, "(N, C, H, W)") if getattr(x, "ndim", 0) == 4 else (2, "(N, D)")
        momentum, eps = _check_bn_apply(
            x, gamma, beta, running_mean, running_var, momentum, eps, ndim, layout
        )
        return _bn_forward(
            ctx, x, gamma, beta, running_mean, running_var, bool(training), momentum, eps
        )

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        return (*_bn_backward(ctx, dout), None, None, None, None, None)


def _center_rows(x3: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """The statistics of x3 (N, G, M) over its last axis: (xmu, mean, rstd), xmu = x3 - mean
    (N, G, M) one new array, mean and rstd (N, G, 1). Every reduction and broadcast runs along
    the contiguous last axis (the fast direction); the variance is the squared 2-norm of xmu
    (one fused pass) / M."""
    M = x3.shape[2]
    mean = x3.mean(2, keepdim=True)
    xmu = x3 - mean
    var = torch.linalg.vector_norm(xmu, dim=2, keepdim=True).square_().div_(M)
    return xmu, mean, var.add_(eps).rsqrt_()


def _affine_args_ok(x: Any, gamma: Any, beta: Any, shape: tuple[int, ...], eps: Any) -> bool:
    """The common, valid call, recognized by attribute checks alone: x a float tensor, gamma
    and beta tensors of ``shape`` with x's dtype and device, eps a finite float >= 0. Any other
    call goes through the full checks, which name the argument that is wrong."""
    return (
        isinstance(x, Tensor)
        and isinstance(gamma, Tensor)
        and isinstance(beta, Tensor)
        and x.is_floating_point()
        and gamma.dtype == x.dtype
        and beta.dtype == x.dtype
        and gamma.device == x.device
        and beta.device == x.device
        and gamma.shape == shape
        and beta.shape == shape
        and type(eps) is float
        and 0.0 <= eps < math.inf
    )


class LayerNormFunction(Function):
    """Layer normalization (Ba et al. 2016): each row of x (..., D) normalized over its last D
    features; gamma, beta (D,). CS231n's layernorm takes x (N, D); the transformer applies the
    same normalization to every token of (N, T, D); a 1-D x is one row.

    No running statistics; the same in train and test mode. Saved: xhat and rstd as rows
    (R, D) and (R, 1), R the product of the leading dimensions; gamma.

    The row statistics are two passes, mean then the 2-norm of x - mean (never
    E[x^2] - E[x]^2, which cancels when |mean| >> std); torch.var_mean over the rows was
    slower on CPU. Small per-row and per-feature quantities are a handful of tensor operations
    each, so forward and backward are 22 tensor operations in all.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
        D = x.shape[-1] if isinstance(x, Tensor) and x.ndim else None
        if D is None or not _affine_args_ok(x, gamma, beta, (D,), eps):
            _checks.require_float("x", x)
            if len(_checks.shape_of(x)) == 0:
                raise ValueError("x must have at least 1 dimension (..., D), got a 0-d tensor")
            D = x.shape[-1]
            _checks.require_shape("gamma", gamma, (D,))
            _checks.require_shape("beta", beta, (D,))
            require_like("x", x, gamma=gamma, beta=beta)
            eps = _checks.require_nonneg_real("eps", eps)
        x2 = x.reshape(math.prod(x.shape[:-1]), D).contiguous()  # (not -1: x may be empty)
        xhat = x2 - x2.mean(1, keepdim=True)  # xmu, made xhat in place below
        # rstd = 1 / sqrt(|xmu|^2 / D + eps), the biased variance from one fused pass
        rstd = torch.linalg.vector_norm(xhat, dim=1, keepdim=True).square_().div_(D)
        rstd = rstd.add_(eps).rsqrt_()
        xhat.mul_(rstd)
        ctx.save_for_backward(xhat, rstd, gamma)
        return torch.addcmul(beta, xhat, gamma).view(x.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        """dgamma = sum over rows of dout * xhat, dbeta = sum of dout; per row, with
        dxhat = dout * gamma, -mean(dxhat) = -(dout @ gamma) / D and
        -mean(dxhat * xhat) = -((dout * xhat) @ gamma) / D (one GEMV each, addmm's alpha doing
        the scaling), and
        dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))."""
        xhat, rstd, gamma = ctx.saved_tensors
        need_dx, need_dgamma, need_dbeta = ctx.needs_input_grad[:3]
        R, D = xhat.shape
        x_shape = dout.shape
        dout = dout.reshape(R, D).contiguous()
        dx = dgamma = None
        # Column sums add whole contiguous rows (t.sum(0)): as fast as a GEMV with a vector of
        # ones, which would cost three more operations to set up.
        dbeta = dout.sum(0) if need_dbeta else None
        if need_dx or need_dgamma:
            dout_xhat = dout * xhat
            if need_dgamma:
                dgamma = dout_xhat.sum(0)
            if need_dx:
                g = gamma.view(D, 1)
                # (rstd is only addmm's placeholder input: beta=0 ignores it)
                shift = torch.addmm(rstd, dout, g, beta=0, alpha=-1 / D)  # -mean(dxhat)
                slope = torch.addmm(rstd, dout_xhat, g, beta=0, alpha=-1 / D)
                # rstd * (dout * gamma + shift + xhat * slope), written into dout * xhat's
                # memory (no longer needed) in three passes. Each pass broadcasts at most ONE
                # per-row operand along the rows (gamma runs along them): with two, as in
                # addcmul(shift, xhat, slope), an elementwise kernel is no longer vectorized --
                # 5x slower for 256 x 1024.
                dx = torch.addcmul(shift, dout, gamma, out=dout_xhat)
                dx = dx.addcmul_(xhat, slope).mul_(rstd).view(x_shape)
        return dx, dgamma, dbeta, None


class SpatialGroupNormFunction(Function):
    """Group normalization: the C channels of each sample split into G groups of C // G channels,
    each group normalized over its M = (C // G) * H * W values.

    x: (N, C, H, W); gamma, beta: (1, C, 1, 1) (CS231n's layout; so are dgamma, dbeta); G divides
    C. Saved: x (as (N, G, M) rows), the group means and rstd (N, G, 1), gamma.

    Memory: xhat is not stored (the backward works from x itself), so each direction allocates
    ONE (N, C, H, W) array, the output or dx. On CPU a fresh large array is paged in on first
    touch, which costs more than an elementwise pass: saving xhat and a separate dout * xhat
    temporary (three arrays) was 1.25-1.4x slower (N = 128 and 512, C = 32, 15 x 15, G = 4).
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, gamma: Tensor, beta: Tensor, G: int, eps: float = 1e-5
    ) -> Tensor:
        C = x.shape[1] if isinstance(x, Tensor) and x.ndim == 4 else None
        if (
            C is None
            or not _affine_args_ok(x, gamma, beta, (1, C, 1, 1), eps)
            or type(G) is not int
            or G < 1
            or C % G
        ):
            _checks.require_float("x", x)
            C = x.shape[1] if x.ndim > 1 else None
            _checks.check_norm_args(x, gamma, beta, 4, (1, C, 1, 1), "(N, C, H, W)")
            G = _checks.require_groups(G, C)  # type: ignore[arg-type]
            require_like("x", x, gamma=gamma, beta=beta)
            eps = _checks.require_nonneg_real("eps", eps)
        N, C, H, W = x.shape
        L = H * W
        x3 = x.reshape(N, G, C // G * L).contiguous()  # (not -1: N may be 0)
        xmu, mean, rstd = _center_rows(x3, eps)
        # out = xmu * (gamma * rstd) + beta in place, ONE pass over the (N, C, L) view: the
        # factor is one number per (sample, channel), broadcast along L; beta is repeated L
        # times per channel (_per_column) so that no second operand is broadcast along L (an
        # elementwise kernel with two such operands is no longer vectorized).
        k = (gamma.view(1, G, C // G) * rstd).view(N, C, 1)
        out = xmu.view(N, C, L)
        torch.addcmul(_per_column(beta, L).view(1, C, L), out, k, out=out)
        ctx.save_for_backward(x3, mean, rstd, gamma)
        return out.view(N, C, H, W)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        """Per (sample, channel) sums s1 = sum_hw dout and s2 = sum_hw dout * xhat give
        dbeta = sum_n s1, dgamma = sum_n s2, and per group (dxhat = dout * gamma)
            mean(dxhat) = sum_{c in group} gamma_c s1 / M,
            mean(dxhat * xhat) = sum_{c in group} gamma_c s2 / M,
        so dx = rstd * (gamma * dout - xhat * mean(dxhat * xhat) - mean(dxhat)).
        With xhat = (x - mean) * rstd both are written in terms of x itself (as PyTorch's own
        kernel does), so xhat is never materialized:
            s2 = rstd * (sum_hw dout * x - mean * s1),
            dx = dout * (gamma * rstd) + x * a + (b - mean * a),
        a = -rstd^2 * mean(dxhat * xhat) and b = -rstd * mean(dxhat) per (sample, group):
        three passes for the sums (dout * x and two reductions) and three for dx, all in the one
        (N, C, H, W) buffer."""
        x3, mean, rstd, gamma = ctx.saved_tensors
        need_dx, need_dgamma, need_dbeta = ctx.needs_input_grad[:3]
        N, G, M = x3.shape
        C = gamma.shape[1]
        Cg, L = C // G, M * G // C
        dout3 = dout.reshape(N, C, L).contiguous()  # (N may be 0: no -1 in the reshapes)
        buf = torch.mul(dout3, x3.view(N, C, L))  # becomes dx below
        s1 = dout3.sum(2).view(N, G, Cg)
        # s2 = rstd * (sum_hw dout * x - mean * s1), (N, G, C // G)
        s2 = torch.addcmul(buf.sum(2).view(N, G, Cg), mean, s1, value=-1).mul_(rstd)
        dx = dgamma = dbeta = None
        if need_dx:
            g = gamma.view(1, G, Cg)
            c = rstd / -M
            b = (s1 * g).sum(2, keepdim=True).mul_(c)
            a = (s2 * g).sum(2, keepdim=True).mul_(c).mul_(rstd)
            dx = torch.mul(x3, a, out=buf.view(N, G, M)).add_(torch.addcmul(b, mean, a, value=-1))
            dx.view(N, C, L).addcmul_(dout3, (g * rstd).view(N, C, 1))
            dx = dx.view(dout.shape)
        if need_dgamma:
            dgamma = s2.sum(0).view(1, C, 1, 1)
        if need_dbeta:
            dbeta = s1.sum(0).view(1, C, 1, 1)
        return dx, dgamma, dbeta, None, None
