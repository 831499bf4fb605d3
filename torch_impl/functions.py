"""CS231n's layers and losses as ``torch.autograd.Function``s with hand-written backward passes.

Each Function is the torch twin of a ``numpy_impl.layers`` forward/backward pair: the same math
(biased variance, eps inside the square root, CS231n's SVM scaling, keep-probability dropout, the
gradient of a max-pool window to its FIRST maximum in row-major order), computed from tensor
primitives -- matmul, ``unfold``/``as_strided`` views, reductions and elementwise ops. None calls
the PyTorch builtin that the parity suite compares it against, and no backward calls autograd:
every gradient below is derived on paper and written out.

Conventions:

- Inputs are validated by ``twin_checks`` (pure Python), so a bad input raises the same
  ``ValueError``/``TypeError`` message as the NumPy twin.
- Every tensor created here follows the input's device and dtype (CPU/CUDA, float32/float64).
- ``ctx.needs_input_grad`` decides which gradients are computed; the others are returned as None.
- Backward passes are ``once_differentiable``: they are built from primitives outside autograd,
  so asking for a second derivative raises instead of silently returning a wrong one.
"""

from __future__ import annotations

import math

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

import twin_checks as _checks
from torch_impl._conv import Conv2dFunction
from torch_impl._utils import labels_on, products_dtype, require_like

__all__ = [
    "AffineFunction",
    "ReLUFunction",
    "SigmoidFunction",
    "TanhFunction",
    "BatchNormFunction",
    "LayerNormFunction",
    "DropoutFunction",
    "Conv2dFunction",
    "MaxPool2dFunction",
    "SpatialBatchNormFunction",
    "SpatialGroupNormFunction",
    "SVMLossFunction",
    "SoftmaxLossFunction",
]


# ----------------------------------------------------------------------------------------------
# Affine and elementwise nonlinearities
# ----------------------------------------------------------------------------------------------


class AffineFunction(Function):
    """out = x.reshape(N, D) @ w + b.

    x: (N, d_1, ..., d_k) with D = d_1 * ... * d_k; w: (D, M) (CS231n's layout, the transpose of
    nn.Linear's weight); b: (M,). Returns (N, M). Saved: x flattened to (N, D), w.
    Inside ``torch.autocast`` a float32 affine multiplies in autocast's dtype and returns float32
    output and gradients (``_utils.products_dtype``), as the conv does.
    """

    @staticmethod
    def forward(ctx, x, w, b):
        _checks.require_float("x", x)
        N, D = _checks.check_affine_args(x, w, b)
        require_like("x", x, w=w, b=b)
        x2d = x.reshape(N, D)
        ctx.x_shape = x.shape
        products = products_dtype(x)
        if products != x.dtype:
            x2d, w = x2d.to(products), w.to(products)
            ctx.save_for_backward(x2d, w)
            return torch.add(b, x2d @ w)  # float32 b promotes the low-precision product
        ctx.save_for_backward(x2d, w)
        return torch.addmm(b, x2d, w)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        x2d, w = ctx.saved_tensors
        dtype = dout.dtype
        dout_p = dout.to(w.dtype)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = (dout_p @ w.T).reshape(ctx.x_shape).to(dtype)
        if ctx.needs_input_grad[1]:
            dw = (x2d.T @ dout_p).to(dtype)
        if ctx.needs_input_grad[2]:
            db = dout.sum(0)
        return dx, dw, db


class ReLUFunction(Function):
    """out = max(0, x) elementwise; dx = dout where x > 0, else 0 (0 at the kink, as PyTorch).

    A NaN input gives a NaN output and a zero gradient, as CS231n's ``dout * (x > 0)`` (PyTorch's
    threshold_backward zeroes only where x <= 0, so it passes dout at a NaN).
    """

    @staticmethod
    def forward(ctx, x):
        _checks.require_float("x", x)
        out = x.clamp_min(0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        (out,) = ctx.saved_tensors
        # out > 0 exactly where x > 0 (and is False for NaN), the 0/1 mask of the derivative.
        return dout * (out > 0)


class SigmoidFunction(Function):
    """out = 1 / (1 + exp(-x)); d out / dx = out * (1 - out).

    Computed from z = exp(-|x|) <= 1 (as numpy_impl does), so no exponential overflows:
    out = 1 / (1 + z) for x >= 0 and z / (1 + z) for x < 0, i.e. exp(min(x, 0)) / (1 + z).
    """

    @staticmethod
    def forward(ctx, x):
        _checks.require_float("x", x)
        out = torch.exp(x.clamp_max(0)).div_(torch.exp(-x.abs()).add_(1))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        (s,) = ctx.saved_tensors
        return dout * s * (1 - s)


class TanhFunction(Function):
    """out = tanh(x) = sign(x) * (1 - exp(-2|x|)) / (1 + exp(-2|x|)); d out / dx = 1 - out^2.

    With e = expm1(-2|x|) (in (-1, 0]) the ratio is -e / (2 + e): expm1 keeps full relative
    precision for tiny |x|, where 1 - exp(-2|x|) would cancel, and nothing overflows.
    """

    @staticmethod
    def forward(ctx, x):
        _checks.require_float("x", x)
        e = torch.expm1(-2 * x.abs())
        out = torch.copysign(-e / (2 + e), x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        (t,) = ctx.saved_tensors
        return dout * (1 - t * t)


# ----------------------------------------------------------------------------------------------
# Normalization
#
# All three normalize sets of M values with the BIASED variance, as numpy_impl does:
#     mean = sum(x) / M,  xmu = x - mean,  var = sum(xmu^2) / M,  rstd = 1 / sqrt(var + eps),
#     xhat = xmu * rstd,  out = gamma * xhat + beta.
# Differentiating through the mean and the variance (CS231n's batchnorm_backward_alt derivation)
# gives, with dxhat = dout * gamma and means over the same M values,
#     dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
# Each Function evaluates this from per-set sums of dout and dout * xhat (the same sums give
# dbeta and dgamma) and a few elementwise passes: the formula above, regrouped.
#
# Speed: these layers are memory-bound, so the code counts passes over the (N, ...) arrays:
# every per-set or per-channel quantity is a small vector, big temporaries are reused through
# ``out=``, and every broadcast runs along a long contiguous axis -- a per-channel vector is
# repeated H * W times into a per-column vector of the (N, C * H * W) view (_per_column) rather
# than broadcast as (C, 1) over short H * W rows (3-5x slower for 3x3 maps).
# ----------------------------------------------------------------------------------------------


def _per_column(v, L):
    """(C,) per-channel values (or any shape holding C values, such as (1, C, 1, 1)) -> (C * L,):
    each repeated for the L = H * W positions of its channel, i.e. one value per column of x
    viewed as (N, C * L)."""
    return v.reshape(-1) if L == 1 else v.reshape(-1, 1).expand(-1, L).reshape(-1)


def _channel_sum(t2, C, L):
    """(N, C * L) -> (C,): the sum of each channel's N * L values. The batch axis is summed
    first (adding whole contiguous rows: the fast direction), then each channel's L columns
    (none when L = 0: zero)."""
    s = t2.sum(0)
    return s if L == 1 else s.view(C, L).sum(1)


def _check_bn_apply(x, gamma, beta, running_mean, running_var, momentum, eps, ndim, layout):
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


def _bn_forward(ctx, x, gamma, beta, running_mean, running_var, training, momentum, eps):
    """Shared by BatchNormFunction (x (N, D)) and SpatialBatchNormFunction (x (N, C, H, W)):
    the statistics of a feature/channel are over its M = N * H * W values, computed on the
    (N, C * L) view of x (L = H * W; 1 for (N, D)).

    Train mode normalizes with the batch statistics and updates the running buffers IN PLACE with
    CS231n's convention  running = momentum * running + (1 - momentum) * batch_stat  (a lerp
    from running towards batch_stat by 1 - momentum) and the BIASED batch variance (PyTorch:
    momentum' = 1 - momentum and the unbiased variance). Test mode normalizes with the running
    statistics.
    gamma and rstd are both per channel, so out = xmu * k + beta with k = gamma * rstd is ONE
    pass and xhat is never stored. Saved: xmu (N, C * L), rstd and k (C,); ctx.training.
    """
    N, C = x.shape[0], x.shape[1]
    L = math.prod(x.shape[2:])
    x2 = x.reshape(N, C * L).contiguous()  # (the .view()s below need a contiguous layout)
    if training:
        M = N * L
        # max(M, 1): an empty batch (M = 0) gets mean = var = 0 rather than 0 / 0, so its empty
        # output comes with zero (not NaN) dgamma and dbeta, as F.batch_norm's.
        mean = _channel_sum(x2, C, L).div_(max(M, 1))
        xmu = x2 - _per_column(mean, L)
        sq = torch.mul(xmu, xmu)  # its memory is reused for the output below
        var = _channel_sum(sq, C, L).div_(max(M, 1))
        # A channel without values (an empty batch) has no statistics (0 / 0): the running
        # buffers keep their values, as F.batch_norm's do.
        if running_mean is not None and M > 0:
            running_mean.lerp_(mean, 1 - momentum)
        if running_var is not None and M > 0:
            running_var.lerp_(var, 1 - momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("test mode needs running_mean and running_var")
        xmu = x2 - _per_column(running_mean, L)
        sq, var = None, running_var
    rstd = torch.rsqrt(var + eps)
    k = gamma * rstd
    out = torch.addcmul(_per_column(beta, L), xmu, _per_column(k, L), out=sq)
    ctx.training, ctx.x_shape = training, x.shape
    ctx.save_for_backward(xmu, rstd, k)
    return out.view(x.shape)


def _bn_backward(ctx, dout):
    """Gradients of _bn_forward: (dx, dgamma, dbeta) with dgamma/dbeta of shape (C,).

        dbeta = sum(dout),   dgamma = sum(dout * xhat) = rstd * sum(dout * xmu)
    (sums over the M values of a channel). gamma is constant over a channel's values, so
    mean(dxhat) = gamma * dbeta / M and mean(dxhat * xhat) = gamma * dgamma / M, and the general
    formula becomes, with k = gamma * rstd,
        dx = k * (dout - dbeta / M - xhat * dgamma / M)
           = k * dout  +  xmu * (-k / M * rstd * dgamma)  +  (-k / M * dbeta),
    every coefficient a per-channel vector: two passes. In test mode mean and rstd are constants:
    dx = k * dout.
    """
    xmu, rstd, k = ctx.saved_tensors
    need_dx, need_dgamma, need_dbeta = ctx.needs_input_grad[:3]
    N, CL = xmu.shape
    C, L = rstd.shape[0], math.prod(ctx.x_shape[2:])
    dout2 = dout.reshape(N, CL).contiguous()
    dbeta = dgamma = dx = tmp = None
    if need_dbeta or (need_dx and ctx.training):
        dbeta = _channel_sum(dout2, C, L)
    if need_dgamma or (need_dx and ctx.training):
        tmp = dout2 * xmu
        dgamma = _channel_sum(tmp, C, L).mul_(rstd)
    if need_dx:
        if ctx.training:
            c = k / -max(N * L, 1)  # (dx is empty when N * L = 0)
            shift, slope = c * dbeta, (c * rstd).mul_(dgamma)
            # Written into dout * xmu's memory once it is summed.
            dx = torch.addcmul(_per_column(shift, L), xmu, _per_column(slope, L), out=tmp)
            dx.addcmul_(dout2, _per_column(k, L))
        else:
            dx = torch.mul(dout2, _per_column(k, L), out=tmp)
        dx = dx.view(ctx.x_shape)
    return dx, dgamma if need_dgamma else None, dbeta if need_dbeta else None


class BatchNormFunction(Function):
    """Batch normalization of x (N, D) over the batch axis; gamma, beta (D,).

    apply(x, gamma, beta, running_mean, running_var, training, momentum, eps): running buffers
    (D,) updated in place when training (CS231n's momentum and biased variance, see _bn_forward).
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, running_mean, running_var, training, momentum=0.9, eps=1e-5):
        momentum, eps = _check_bn_apply(
            x, gamma, beta, running_mean, running_var, momentum, eps, 2, "(N, D)"
        )
        return _bn_forward(
            ctx, x, gamma, beta, running_mean, running_var, bool(training), momentum, eps
        )

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        return (*_bn_backward(ctx, dout), None, None, None, None, None)


class SpatialBatchNormFunction(Function):
    """Batch normalization of x (N, C, H, W) per channel over (N, H, W); gamma, beta (C,).

    Same arguments and running-statistics convention as BatchNormFunction, buffers (C,).
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, running_mean, running_var, training, momentum=0.9, eps=1e-5):
        momentum, eps = _check_bn_apply(
            x, gamma, beta, running_mean, running_var, momentum, eps, 4, "(N, C, H, W)"
        )
        return _bn_forward(
            ctx, x, gamma, beta, running_mean, running_var, bool(training), momentum, eps
        )

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        return (*_bn_backward(ctx, dout), None, None, None, None, None)


def _normalize_rows(x3, eps):
    """x3 (N, G, M) normalized over its last axis: (xhat, mean, rstd), mean and rstd (N, G, 1).
    Every reduction and broadcast runs along the contiguous last axis (the fast direction); the
    variance is the squared 2-norm of xmu (one fused pass) / M; xhat is one new array."""
    M = x3.shape[2]
    mean = x3.mean(2, keepdim=True)
    xmu = x3 - mean
    var = torch.linalg.vector_norm(xmu, dim=2, keepdim=True).square_().div_(M)
    rstd = var.add_(eps).rsqrt_()
    return xmu.mul_(rstd), mean, rstd


class LayerNormFunction(Function):
    """Layer normalization: each row of x (N, D) normalized over its D features; gamma, beta (D,).

    No running statistics; the same in train and test mode. Saved: xhat, rstd (N, 1), gamma.
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, eps=1e-5):
        _checks.require_float("x", x)
        _checks.check_norm_args(x, gamma, beta, 2, (x.shape[-1] if x.ndim else None,), "(N, D)")
        require_like("x", x, gamma=gamma, beta=beta)
        eps = _checks.require_nonneg_real("eps", eps)
        N, D = x.shape
        xhat, _, rstd = _normalize_rows(x.reshape(N, 1, D).contiguous(), eps)
        xhat, rstd = xhat.view(N, D), rstd.view(N, 1)
        ctx.save_for_backward(xhat, rstd, gamma)
        return torch.addcmul(beta, xhat, gamma)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        """dgamma = sum_n dout * xhat, dbeta = sum_n dout; per row, with dxhat = dout * gamma,
        -mean(dxhat) = dout @ (gamma / -D) and -mean(dxhat * xhat) = (dout * xhat) @ (gamma / -D),
        and dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))."""
        xhat, rstd, gamma = ctx.saved_tensors
        need_dx, need_dgamma, need_dbeta = ctx.needs_input_grad[:3]
        dx = dgamma = dbeta = None
        dout_xhat = dout * xhat if (need_dx or need_dgamma) else None
        if need_dgamma:
            dgamma = dout_xhat.sum(0)
        if need_dbeta:
            dbeta = dout.sum(0)
        if need_dx:
            g = gamma / -xhat.shape[1]
            shift = torch.mv(dout, g).unsqueeze(1)  # -mean(dxhat)
            slope = torch.mv(dout_xhat, g).unsqueeze(1)  # -mean(dxhat * xhat)
            dxhat = torch.mul(dout, gamma, out=dout_xhat)  # dout * xhat is no longer needed
            dx = dxhat.addcmul_(xhat, slope).add_(shift).mul_(rstd)
        return dx, dgamma, dbeta, None


class SpatialGroupNormFunction(Function):
    """Group normalization: the C channels of each sample split into G groups of C // G channels,
    each group normalized over its M = (C // G) * H * W values.

    x: (N, C, H, W); gamma, beta: (1, C, 1, 1) (CS231n's layout; so are dgamma, dbeta); G divides
    C. Saved: x, the group means and rstd (N, G, 1), gamma; ctx.G.

    Memory: xhat is not stored (the backward works from x itself), so each direction allocates
    ONE (N, C, H, W) array, the output or dx. On CPU a fresh large array is paged in on first
    touch, which costs more than an elementwise pass: saving xhat and a separate dout * xhat
    temporary (three arrays) was 1.25-1.4x slower (N = 128 and 512, C = 32, 15 x 15, G = 4).
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, G, eps=1e-5):
        _checks.require_float("x", x)
        C = x.shape[1] if x.ndim > 1 else None
        _checks.check_norm_args(x, gamma, beta, 4, (1, C, 1, 1), "(N, C, H, W)")
        G = _checks.require_groups(G, C)
        require_like("x", x, gamma=gamma, beta=beta)
        eps = _checks.require_nonneg_real("eps", eps)
        N, C, H, W = x.shape
        L = H * W
        x3 = x.reshape(N, G, C // G * L).contiguous()  # (not -1: N may be 0)
        xhat, mean, rstd = _normalize_rows(x3, eps)
        out = xhat.view(N, C * L)  # gamma * xhat + beta, in place:
        torch.addcmul(_per_column(beta, L), out, _per_column(gamma, L), out=out)
        ctx.G = G
        ctx.save_for_backward(x3, mean, rstd, gamma)
        return out.view(N, C, H, W)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
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
        two passes for the sums and three for dx, all in the one (N, C, H, W) buffer."""
        x3, mean, rstd, gamma = ctx.saved_tensors
        need_dx, need_dgamma, need_dbeta = ctx.needs_input_grad[:3]
        N, G, M = x3.shape
        C = gamma.numel()
        L = M * G // C
        dout3 = dout.reshape(N, C, L).contiguous()  # (N may be 0: no -1 in the reshapes)
        buf = torch.mul(dout3, x3.view(N, C, L))  # becomes dx below
        s1 = dout3.sum(2)
        s2 = buf.sum(2).sub_(s1 * mean.expand(N, G, C // G).reshape(N, C))
        s2 = s2.view(N, G, C // G).mul_(rstd).view(N, C)
        dx = dgamma = dbeta = None
        if need_dx:
            g = gamma.view(1, G, -1)
            b = (s1.view(N, G, C // G) * g).sum(2, keepdim=True).mul_(rstd).div_(-M)
            a = (s2.view(N, G, C // G) * g).sum(2, keepdim=True).mul_(rstd * rstd).div_(-M)
            dx = torch.mul(x3, a, out=buf.view(N, G, M)).add_(b.sub_(mean * a))
            dx.view(N, C, L).addcmul_(dout3, (g * rstd).view(N, C, 1))
            dx = dx.view(dout.shape)
        if need_dgamma:
            dgamma = s2.sum(0).view(1, C, 1, 1)
        if need_dbeta:
            dbeta = s1.sum(0).view(1, C, 1, 1)
        return dx, dgamma, dbeta, None, None


# ----------------------------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------------------------


class DropoutFunction(Function):
    """Inverted dropout with CS231n's KEEP probability p (PyTorch's F.dropout takes 1 - p).

    apply(x, p, training, mask=None, generator=None). Train: out = x * mask with mask in {0, 1/p}
    (E[out] = x, so test mode needs no rescaling); ``mask`` (x's shape, CS231n's cached mask) is
    used as given, otherwise drawn as (rand(x.shape, generator) < p) / p on x's device and dtype.
    Test: out = x. Saved: the mask.
    """

    @staticmethod
    def forward(ctx, x, p, training, mask=None, generator=None):
        _checks.require_float("x", x)
        p = _checks.require_keep_prob(p)
        ctx.training = bool(training)
        if not training:
            return x.clone()
        if mask is None:
            u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            mask = (u < p).to(x.dtype).div_(p)
        else:
            _checks.require_same_shape("mask", mask, "x", x)
            mask = torch.as_tensor(mask, device=x.device, dtype=x.dtype)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        if not ctx.training:
            return dout, None, None, None, None
        (mask,) = ctx.saved_tensors
        return dout * mask, None, None, None, None


# ----------------------------------------------------------------------------------------------
# Max pooling (the convolution lives in torch_impl._conv)
# ----------------------------------------------------------------------------------------------


def _window_max(x, ph, pw, stride, H_out, W_out):
    """Max of every pooling window of x (N, C, H, W) and where it is.

    Returns (out, flat): out (N, C, H', W') the window maxima, flat (N, C, H', W') int64 the
    index into x's (H, W) plane of each window's FIRST maximum in row-major order.

    ``unfold`` views the windows as (N, C, H', W', ph, pw); one copy lays them out as
    (ph * pw, N, C, H', W'), so that windows[k] -- the element at offset (di, dj) =
    divmod(k, pw) of EVERY window -- is one contiguous block (elementwise ops on it are
    vectorized; on the strided view they were 2-4x slower). The offsets are visited in row-major
    order with a running maximum; a later offset takes over a window only where it is STRICTLY
    greater, so ties keep the earliest position (argmax's rule). The winning offset di * W + dj
    grows along the visit order, so "take the new offset where greater" is the running maximum
    of offset * greater (three cheap int32 passes; torch.where/masked_fill were 10x slower).
    """
    W = x.shape[3]
    windows = x.unfold(2, ph, stride).unfold(3, pw, stride).permute(4, 5, 0, 1, 2, 3)
    windows = windows.reshape(ph * pw, *windows.shape[2:])  # one copy: (ph * pw, N, C, H', W')
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
    return out, offset.to(torch.int64).add_(corner)


class MaxPool2dFunction(Function):
    """Max pooling without padding: out[n, c, i, j] = max of the window
    x[n, c, i*stride : i*stride + pool_height, j*stride : j*stride + pool_width].

    apply(x, pool_height, pool_width, stride): x (N, C, H, W) -> (N, C, H', W') with
    H' = 1 + (H - pool_height) // stride. The gradient of each window goes to ONE position, its
    FIRST maximum in row-major order (argmax's rule; PyTorch's kernels keep the first maximum too);
    overlapping windows (stride < pool size) accumulate. Saved: for every window, the flat index
    into the (H, W) plane of its maximum (see _window_max).
    """

    @staticmethod
    def forward(ctx, x, pool_height, pool_width, stride):
        _checks.require_float("x", x)
        ph, pw, stride, H_out, W_out = _checks.check_pool_args(
            x, {"pool_height": pool_height, "pool_width": pool_width, "stride": stride}
        )
        N, C, H, W = x.shape
        out, flat = _window_max(x, ph, pw, stride, H_out, W_out)
        ctx.x_shape = x.shape
        ctx.overlap = stride < ph or stride < pw
        ctx.save_for_backward(flat.view(N, C, H_out * W_out))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        (flat,) = ctx.saved_tensors
        N, C, H, W = ctx.x_shape
        dx = dout.new_zeros(N, C, H * W)
        src = dout.reshape(flat.shape)  # (N, C, H' * W'); N may be 0
        if ctx.overlap:
            # One x position can be the maximum of several windows: accumulate.
            dx.scatter_add_(2, flat, src)
        else:
            dx.scatter_(2, flat, src)
        return dx.view(N, C, H, W), None, None, None


# ----------------------------------------------------------------------------------------------
# Losses on class scores
# ----------------------------------------------------------------------------------------------


class SVMLossFunction(Function):
    """Multiclass SVM (hinge) loss, margin 1, averaged over the batch (CS231n's scaling: summed
    over the classes, where F.multi_margin_loss also divides by C).

    apply(x, y): x (N, C) scores; y (N,) integer labels in [0, C). Returns a 0-d tensor:
        loss = (1/N) sum_i sum_{j != y_i} max(0, x_ij - x_{i,y_i} + 1).
    Each positive margin adds +1 to dx_ij and -1 to dx_{i,y_i}. Saved: margins.
    """

    @staticmethod
    def forward(ctx, x, y):
        N, _ = _checks.check_scores_labels(x, y)
        y = labels_on(y, x).view(N, 1)
        margins = (x - x.gather(1, y) + 1).clamp_min_(0)
        margins.scatter_(1, y, 0)
        ctx.save_for_backward(margins, y)
        return margins.sum() / N

    @staticmethod
    @once_differentiable
    def backward(ctx, dloss):
        margins, y = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None
        N = margins.shape[0]
        positive = (margins > 0).to(margins.dtype)
        dx = positive.scatter_(1, y, -positive.sum(1, keepdim=True))
        return dx.div_(N).mul_(dloss), None


_LOG2_E = 1.0 / math.log(2.0)  # exp(t) = 2 ** (t * log2(e))


class SoftmaxLossFunction(Function):
    """Softmax cross-entropy loss averaged over the batch.

    apply(x, y): x (N, C) scores; y (N,) integer labels in [0, C). Returns a 0-d tensor:
        loss = -(1/N) sum_i log softmax(x_i)[y_i],   dx = (softmax(x) - onehot(y)) / N.
    Each row's maximum m_i is subtracted first (the softmax is unchanged, every exponent is <= 0,
    so logits of 1e4 cannot overflow); with e_ij = exp(x_ij - m_i) and Z_i = sum_j e_ij, the
    log-probability of the label is (x_{i,y_i} - m_i) - log Z_i (the log-sum-exp).
    Saved: e - Z * onehot(y) and Z, so the backward is one pass: dx = that * dloss / (N Z).

    exp(t) is computed as 2^(t * log2(e)): the same function (relative error ~1e-6 in float32,
    ~1e-14 in float64 at the bottom of the range), and torch.exp2 is about 4x faster than
    torch.exp on CPU (measured, float32, 2 threads: 19 vs 79 us for 256 x 1000) -- the exponential
    is most of this loss's time.
    """

    @staticmethod
    def forward(ctx, x, y):
        N, _ = _checks.check_scores_labels(x, y)
        y = labels_on(y, x).view(N, 1)
        m = x.amax(dim=1, keepdim=True)
        e = torch.sub(x, m).mul_(_LOG2_E).exp2_()  # one buffer, three in-place passes
        Z = e.sum(dim=1, keepdim=True)
        # x_y - m first: it is exact-ish whatever the logits' scale (log Z + m would round at |m|).
        loss = (Z.log() - (x.gather(1, y) - m)).mean()
        ctx.save_for_backward(e.scatter_add_(1, y, -Z), Z)  # softmax - onehot, times Z
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, dloss):
        e_minus_onehot, Z = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None
        return e_minus_onehot * (dloss / (Z * Z.shape[0])), None
