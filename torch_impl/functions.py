"""CS231n's layers and losses as ``torch.autograd.Function``s with hand-written backward passes.

Each Function is the torch twin of a ``numpy_impl.layers`` forward/backward pair: the same math
(biased variance, eps inside the square root, CS231n's SVM scaling, keep-probability dropout, the
gradient of a max-pool window to its FIRST maximum in row-major order), computed from tensor
primitives -- matmul, ``unfold``/``as_strided`` views, reductions and elementwise ops. None calls
the PyTorch builtin that the parity suite compares it against, and no backward calls autograd:
every gradient below is derived on paper and written out.

Conventions:

- Inputs are validated by ``numpy_impl._checks`` (pure Python), so a bad input raises the same
  ``ValueError``/``TypeError`` message as the NumPy twin.
- Every tensor created here follows the input's device and dtype (CPU/CUDA, float32/float64).
- ``ctx.needs_input_grad`` decides which gradients are computed; the others are returned as None.
- Backward passes are ``once_differentiable``: they are built from primitives outside autograd,
  so asking for a second derivative raises instead of silently returning a wrong one.
"""

from __future__ import annotations

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from numpy_impl import _checks
from torch_impl._conv import Conv2dFunction
from torch_impl._utils import labels_on, require_like

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
    """

    @staticmethod
    def forward(ctx, x, w, b):
        _checks.require_float("x", x)
        N, D = _checks.check_affine_args(x, w, b)
        require_like("x", x, w=w, b=b)
        x2d = x.reshape(N, D)
        ctx.x_shape = x.shape
        ctx.save_for_backward(x2d, w)
        return torch.addmm(b, x2d, w)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        x2d, w = ctx.saved_tensors
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = (dout @ w.T).reshape(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            dw = x2d.T @ dout
        if ctx.needs_input_grad[2]:
            db = dout.sum(0)
        return dx, dw, db


class ReLUFunction(Function):
    """out = max(0, x) elementwise; dx = dout where x > 0, else 0 (0 at the kink, as PyTorch).

    The backward multiplies by sign(out), which is 1 where x > 0 and 0 elsewhere (a NaN input
    gives a NaN gradient).
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
        # out > 0 exactly where x > 0, so the output's sign is the 0/1 mask of the derivative.
        return out.sign().mul_(dout)


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
#     mean = sum(x) / M,  xmu = x - mean,  var = sum(xmu^2) / M,  std = sqrt(var + eps),
#     xhat = xmu / std,   out = gamma * xhat + beta.
# Differentiating through the mean and the variance (CS231n's batchnorm_backward_alt derivation)
# gives, with dxhat = dout * gamma and means over the same M values,
#     dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / std.
# Each Function evaluates this from per-set sums of dout and dout * xhat (the same sums give
# dbeta and dgamma) and a few elementwise passes: the formula above, regrouped.
#
# A set of values is reduced over ``inner`` dims (trailing, contiguous: summed first, which is
# the fast direction for a reduction) and then over ``outer`` dims.
# ----------------------------------------------------------------------------------------------


def _sum(t, inner, outer):
    """sum of t over inner + outer dims (keepdim)."""
    r = t.sum(dim=inner, keepdim=True) if inner else t
    return r.sum(dim=outer, keepdim=True) if outer else r


def _sum_squares(t, inner, outer):
    """sum of t**2 over inner + outer dims (keepdim); over trailing dims as a squared 2-norm,
    a single fused pass."""
    r = torch.linalg.vector_norm(t, dim=inner, keepdim=True).square_() if inner else t * t
    return r.sum(dim=outer, keepdim=True) if outer else r


def _normalize(x, inner, outer, eps):
    """Return (xhat, mean, var, std) of x normalized over inner + outer dims (keepdim shapes)."""
    mean = _sum(x, inner, outer)
    M = x.numel() // mean.numel()
    mean = mean.div_(M)
    xmu = x - mean
    var = _sum_squares(xmu, inner, outer).div_(M)
    std = (var + eps).sqrt_()
    return xmu.div_(std), mean, var, std


def _scale_shift(xhat, gamma, beta):
    """gamma * xhat + beta with gamma, beta broadcast along xhat: a multiply and an in-place add
    (on CPU both are faster than one fused addcmul whose first operand is broadcast)."""
    return (xhat * gamma).add_(beta)


def _check_bn_apply(x, gamma, beta, running_mean, running_var, momentum, eps, ndim, layout):
    """Validation of a (spatial) batchnorm Function's arguments; returns (momentum, eps)."""
    _checks.require_float("x", x)
    C = x.shape[1] if x.ndim > 1 else None
    _checks.check_norm_args(x, gamma, beta, ndim, (C,), layout)
    require_like("x", x, gamma=gamma, beta=beta)
    for name, buf in (("running_mean", running_mean), ("running_var", running_var)):
        if buf is not None:
            _checks.require_shape(name, buf, (C,), hint="one per feature")
            require_like("x", x, **{name: buf})
    momentum = _checks.require_unit_interval("momentum", momentum)
    eps = _checks.require_nonneg_real("eps", eps)
    return momentum, eps


def _bn_forward(ctx, x, gamma, beta, running_mean, running_var, training, momentum, eps, inner):
    """Shared by BatchNormFunction (inner ()) and SpatialBatchNormFunction (inner (2, 3)); the
    statistics are over the batch axis 0 and ``inner``.

    Train mode normalizes with the batch statistics and updates the running buffers IN PLACE with
    CS231n's convention  running = momentum * running + (1 - momentum) * batch_stat  and the
    BIASED batch variance (PyTorch: momentum' = 1 - momentum and the unbiased variance). Test
    mode normalizes with the running statistics. Saved: xhat, std, gamma; ctx.training.
    """
    C = x.shape[1]
    shape = [1] * x.ndim
    shape[1] = C
    if training:
        xhat, mean, var, std = _normalize(x, inner, (0,), eps)
        if running_mean is not None:
            running_mean.mul_(momentum).add_(mean.reshape(C), alpha=1 - momentum)
        if running_var is not None:
            running_var.mul_(momentum).add_(var.reshape(C), alpha=1 - momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("test mode needs running_mean and running_var")
        std = (running_var + eps).sqrt_().reshape(shape)
        xhat = (x - running_mean.reshape(shape)).div_(std)
    g = gamma.reshape(shape)
    ctx.training, ctx.inner = training, inner
    ctx.save_for_backward(xhat, std, g)
    return _scale_shift(xhat, g, beta.reshape(shape))


def _bn_backward(ctx, dout):
    """Gradients of _bn_forward: (dx, dgamma, dbeta) with dgamma/dbeta of shape (C,).

        dbeta = sum(dout),   dgamma = sum(dout * xhat)        (sums over the M values of a feature)
    gamma is constant over a feature's values, so mean(dxhat) = gamma * dbeta / M and
    mean(dxhat * xhat) = gamma * dgamma / M, and the general formula becomes
        dx = (gamma / std) * (dout - dbeta / M - xhat * dgamma / M).
    In test mode mean and std are constants: dx = dout * gamma / std.
    """
    xhat, std, g = ctx.saved_tensors
    inner, outer = ctx.inner, (0,)
    need_dx, need_dgamma, need_dbeta = ctx.needs_input_grad[:3]
    C = xhat.shape[1]
    dbeta = dgamma = dx = None
    tmp = None
    if need_dbeta or (need_dx and ctx.training):
        dbeta = _sum(dout, inner, outer)
    if need_dgamma or (need_dx and ctx.training):
        tmp = dout * xhat
        dgamma = _sum(tmp, inner, outer)
    if need_dx:
        k = g / std
        dx = torch.mul(dout, k, out=tmp)  # reuses dout * xhat's memory once it is summed
        if ctx.training:
            M = xhat.numel() // C
            dx.addcmul_(xhat, k * dgamma / -M).sub_(k * dbeta / M)
    return (
        dx,
        dgamma.reshape(C) if need_dgamma else None,
        dbeta.reshape(C) if need_dbeta else None,
    )


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
            ctx, x, gamma, beta, running_mean, running_var, bool(training), momentum, eps, ()
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
            ctx, x, gamma, beta, running_mean, running_var, bool(training), momentum, eps,
            (2, 3),
        )

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        return (*_bn_backward(ctx, dout), None, None, None, None, None)


class LayerNormFunction(Function):
    """Layer normalization: each row of x (N, D) normalized over its D features; gamma, beta (D,).

    No running statistics; the same in train and test mode. Saved: xhat, std (N, 1), gamma.
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, eps=1e-5):
        _checks.require_float("x", x)
        _checks.check_norm_args(x, gamma, beta, 2, (x.shape[-1] if x.ndim else None,), "(N, D)")
        require_like("x", x, gamma=gamma, beta=beta)
        eps = _checks.require_nonneg_real("eps", eps)
        xhat, _, _, std = _normalize(x, (1,), (), eps)
        ctx.save_for_backward(xhat, std, gamma)
        return _scale_shift(xhat, gamma, beta)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        """dgamma = sum_n dout * xhat, dbeta = sum_n dout; per row, with dxhat = dout * gamma,
        mean(dxhat) = (dout @ gamma) / D and mean(dxhat * xhat) = ((dout * xhat) @ gamma) / D,
        and dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / std."""
        xhat, std, gamma = ctx.saved_tensors
        need_dx, need_dgamma, need_dbeta = ctx.needs_input_grad[:3]
        D = xhat.shape[1]
        dx = dgamma = dbeta = None
        dout_xhat = dout * xhat if (need_dx or need_dgamma) else None
        if need_dgamma:
            dgamma = dout_xhat.sum(0)
        if need_dx:
            mean_dxhat = (dout @ gamma).unsqueeze(1) / D
            mean_dxhat_xhat = (dout_xhat @ gamma).unsqueeze(1) / -D
            dxhat = torch.mul(dout, gamma, out=dout_xhat)  # dout * xhat is no longer needed
            dx = dxhat.addcmul_(xhat, mean_dxhat_xhat).sub_(mean_dxhat).div_(std)
        if need_dbeta:
            dbeta = dout.sum(0)
        return dx, dgamma, dbeta, None


class SpatialGroupNormFunction(Function):
    """Group normalization: the C channels of each sample split into G groups of C // G channels,
    each group normalized over its M = (C // G) * H * W values.

    x: (N, C, H, W); gamma, beta: (1, C, 1, 1) (CS231n's layout; so are dgamma, dbeta); G divides
    C. Saved: xhat (N, C, H, W), std (N, G, 1), gamma; ctx.G.
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
        xhat, _, _, std = _normalize(x.reshape(N, G, -1), (2,), (), eps)
        xhat = xhat.view(N, C, H, W)
        ctx.G = G
        ctx.save_for_backward(xhat, std, gamma)
        return _scale_shift(xhat, gamma, beta)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        """Per (sample, channel) sums s1 = sum_hw dout and s2 = sum_hw dout * xhat give
        dbeta = sum_n s1, dgamma = sum_n s2, and per group (dxhat = dout * gamma)
            mean(dxhat) = sum_{c in group} gamma_c s1 / M,
            mean(dxhat * xhat) = sum_{c in group} gamma_c s2 / M,
        so dx = (gamma / std) * dout - xhat * mean(dxhat * xhat) / std - mean(dxhat) / std."""
        xhat, std, gamma = ctx.saved_tensors
        need_dx, need_dgamma, need_dbeta = ctx.needs_input_grad[:3]
        N, C, H, W = xhat.shape
        G = ctx.G
        s1 = dout.sum(dim=(2, 3))
        tmp = dout * xhat
        s2 = tmp.sum(dim=(2, 3))
        dx = dgamma = dbeta = None
        if need_dx:
            g = gamma.view(1, G, C // G)
            M = (C // G) * H * W
            inv_std = 1 / std  # (N, G, 1)
            mean_dxhat = (s1.view(N, G, -1) * g).sum(2, keepdim=True) / M
            mean_dxhat_xhat = (s2.view(N, G, -1) * g).sum(2, keepdim=True) / M
            shift = (mean_dxhat * inv_std).expand(N, G, C // G).reshape(N, C, 1, 1)
            slope = (mean_dxhat_xhat * -inv_std).expand(N, G, C // G).reshape(N, C, 1, 1)
            dx = torch.mul(dout, (g * inv_std).view(N, C, 1, 1), out=tmp)  # reuse dout * xhat
            dx.addcmul_(xhat, slope).sub_(shift)
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


class MaxPool2dFunction(Function):
    """Max pooling without padding: out[n, c, i, j] = max of the window
    x[n, c, i*stride : i*stride + pool_height, j*stride : j*stride + pool_width].

    apply(x, pool_height, pool_width, stride): x (N, C, H, W) -> (N, C, H', W') with
    H' = 1 + (H - pool_height) // stride. The gradient of each window goes to ONE position, its
    FIRST maximum in row-major order (argmax's rule; PyTorch's kernels keep the first maximum too);
    overlapping windows (stride < pool size) accumulate. Saved: for every window, the flat index
    into the (H, W) plane of its maximum.
    """

    @staticmethod
    def forward(ctx, x, pool_height, pool_width, stride):
        _checks.require_float("x", x)
        ph, pw, stride, H_out, W_out = _checks.check_pool_args(
            x, {"pool_height": pool_height, "pool_width": pool_width, "stride": stride}
        )
        N, C, H, W = x.shape
        # The windows as a strided view (N, C, H', W', ph, pw); one copy flattens each window
        # (row-major) so that max() returns the first maximum's window-local index k.
        windows = x.unfold(2, ph, stride).unfold(3, pw, stride)
        out, k = windows.reshape(N, C, H_out, W_out, ph * pw).max(dim=4)
        # The same windows over the plane's flat indices translate k into a position of x.
        plane = torch.arange(H * W, device=x.device).view(H, W)
        where = plane.unfold(0, ph, stride).unfold(1, pw, stride).reshape(H_out, W_out, ph * pw)
        flat = where.expand(N, C, -1, -1, -1).gather(4, k.unsqueeze(4))
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
        src = dout.reshape(N, C, -1)
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


class SoftmaxLossFunction(Function):
    """Softmax cross-entropy loss averaged over the batch.

    apply(x, y): x (N, C) scores; y (N,) integer labels in [0, C). Returns a 0-d tensor:
        loss = -(1/N) sum_i log softmax(x_i)[y_i],   dx = (softmax(x) - onehot(y)) / N.
    Each row's maximum is subtracted first (the softmax is unchanged, every exponent is <= 0, so
    logits of 1e4 cannot overflow); with Z_i = sum_j exp(shifted_ij) the log-probability of the
    label is shifted_{i,y_i} - log Z_i (the log-sum-exp). Saved: the probabilities, y.
    """

    @staticmethod
    def forward(ctx, x, y):
        N, _ = _checks.check_scores_labels(x, y)
        y = labels_on(y, x).view(N, 1)
        shifted = x - x.amax(dim=1, keepdim=True)
        exp = shifted.exp()
        Z = exp.sum(dim=1, keepdim=True)
        loss = (Z.log() - shifted.gather(1, y)).sum() / N
        ctx.save_for_backward(exp.div_(Z), y)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, dloss):
        probs, y = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None
        N = probs.shape[0]
        scale = dloss / N
        dx = probs * scale
        dx.scatter_add_(1, y, (-scale).expand(N, 1))
        return dx, None
