"""CS231n layers in NumPy: forward passes returning ``(out, cache)`` and backward passes taking
``(dout, cache)`` and returning the gradients in the order of the forward's array arguments.

Conventions shared by every function here:

- Every forward validates its input through ``twin_checks`` (the torch twin raises the same
  messages); every backward checks ``dout`` against the output shape recorded in the cache.
- Inputs are never modified in place; only CS231n's param dicts are written to (batchnorm's running
  averages).
- float32 stays float32: arrays are created with the input's dtype and scalars are Python floats
  (NumPy's NEP 50 keeps ``0.9 * float32_array`` in float32).
- Where CS231n and PyTorch differ on purpose (SVM scaling, biased running variance, dropout's
  keep probability) this module follows CS231n; ``parity_tests`` states the conversion.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import DTypeLike

from twin_checks import (
    check_affine_args,
    check_bn_param,
    check_conv_args,
    check_dout,
    check_norm_args,
    check_norm_param,
    check_pool_args,
    check_scores_labels,
    require_dict,
    require_float,
    require_groups,
    require_keep_prob,
    require_mode,
    require_ndim,
    require_param,
    require_shape,
    shape_of,
)

__all__ = [
    "affine_forward",
    "affine_backward",
    "relu_forward",
    "relu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "layernorm_forward",
    "layernorm_backward",
    "dropout_forward",
    "dropout_backward",
    "conv_forward_naive",
    "conv_backward_naive",
    "max_pool_forward_naive",
    "max_pool_backward_naive",
    "spatial_batchnorm_forward",
    "spatial_batchnorm_backward",
    "spatial_groupnorm_forward",
    "spatial_groupnorm_backward",
    "svm_loss",
    "softmax_loss",
]

# What a forward pass keeps for its backward pass (a tuple, a dict or an array, as each forward's
# docstring says); callers hand it back unopened.
Cache: TypeAlias = Any
# A loss value: a NumPy scalar of the scores' dtype (or a Python float).
Loss: TypeAlias = float | np.floating[Any]


# ----------------------------------------------------------------------------------------------
# Affine and elementwise nonlinearities
# ----------------------------------------------------------------------------------------------


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Fully connected layer: out = x.reshape(N, D) @ w + b.

    x: (N, d_1, ..., d_k) with D = d_1 * ... * d_k; w: (D, M); b: (M,).
    Returns out (N, M) and cache = (x, w, b).
    """
    require_float("x", x)
    N, D = check_affine_args(x, w, b)
    out = x.reshape(N, D) @ w + b
    return out, (x, w, b)


def affine_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, M); cache = (x, w, b) from affine_forward.

    Returns dx (x's original shape (N, d_1, ..., d_k)), dw (D, M), db (M,).
    """
    x, w, b = cache
    N = x.shape[0]
    check_dout(dout, (N, w.shape[1]))
    x2d = x.reshape(N, w.shape[0])  # (N, D); not -1, which is ambiguous when N = 0
    dx = (dout @ w.T).reshape(x.shape)
    dw = x2d.T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """out = max(0, x), elementwise. x: any shape. cache = x."""
    require_float("x", x)
    return np.maximum(x, 0), x


def relu_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dx = dout where x > 0, else 0 (the subgradient at the kink x == 0 is 0, as in PyTorch)."""
    x = cache
    check_dout(dout, shape_of(x))
    return dout * (x > 0)


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """out = 1 / (1 + exp(-x)), elementwise; cache = out.

    Computed from exp(-|x|) <= 1 so that no exponential overflows for large |x|.
    """
    require_float("x", x)
    z = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1 / (1 + z), z / (1 + z))
    return out, out


def sigmoid_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """d sigmoid / dx = s * (1 - s), with s the cached forward output."""
    s = cache
    check_dout(dout, shape_of(s))
    return dout * s * (1 - s)


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """out = tanh(x), elementwise; cache = out."""
    require_float("x", x)
    out = np.tanh(x)
    return out, out


def tanh_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """d tanh / dx = 1 - tanh(x)^2, from the cached forward output."""
    t = cache
    check_dout(dout, shape_of(t))
    return dout * (1 - t * t)


# ----------------------------------------------------------------------------------------------
# Normalization
# ----------------------------------------------------------------------------------------------


# Row-wise arithmetic on a matrix whose rows are one normalized group each (layernorm's samples,
# groupnorm's (sample, group) blocks). A per-row scalar or a per-column vector broadcast over
# rows shorter than the ufunc buffer (8192 values) makes NumPy copy operands through that buffer
# to run 8192-value loops; for rows of 512+ values one loop per row, on the arrays themselves, is
# 1.3-2x faster (measured on float32 (256, 1024) to (512, 1800) matrices). _row_loops turns the
# buffering off by shrinking the buffer below a row, where no operand needs a cast (a cast
# through a 16-value buffer would be slow).
_ROW_LOOP_MIN = 512
_SMALLEST_BUFSIZE = 16  # NumPy's buffer sizes are multiples of 16
_BLAS_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


@contextlib.contextmanager
def _row_loops(m: int, *arrays: np.ndarray) -> Iterator[None]:
    """Within the block, ufuncs over rows of m values run row by row without buffering, if the
    arrays share one float32/float64 dtype; otherwise NumPy's defaults apply."""
    dtype = arrays[0].dtype
    if m < _ROW_LOOP_MIN or dtype not in _BLAS_FLOATS or any(a.dtype != dtype for a in arrays):
        yield
        return
    previous = np.setbufsize(_SMALLEST_BUFSIZE)
    try:
        yield
    finally:
        np.setbufsize(previous)


# Longest rows whose dot product goes to BLAS one row at a time: OpenBLAS runs the dot of a
# longer vector on its thread pool, whose wake-up would cost more than the dot itself.
_BLAS_DOT_MAX = 8192


def _row_sums(a2: np.ndarray) -> np.ndarray:
    """sum(a2, axis=1) of a C-contiguous (rows, m) matrix: einsum's vectorized sum in float32 and
    float64 (2-3x faster than np.sum's pairwise one), np.sum (float32 accumulation) for narrower
    floats."""
    if a2.dtype.itemsize >= 4:
        return np.einsum("ij->i", a2)
    return a2.sum(axis=1, dtype=np.float32).astype(a2.dtype)


def _row_dots(a2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """sum(a2 * b2, axis=1) of two (rows, m) matrices without the product's temporary: one BLAS
    dot per row where both are float32/float64 of one dtype (about 1.6x faster than einsum's),
    einsum otherwise."""
    m = a2.shape[1]
    if _ROW_LOOP_MIN <= m <= _BLAS_DOT_MAX and a2.dtype == b2.dtype and a2.dtype in _BLAS_FLOATS:
        return np.matmul(a2[:, None, :], b2[:, :, None]).reshape(a2.shape[0])
    return np.einsum("ij,ij->i", a2, b2)


def _sum_over_batch(a: np.ndarray) -> np.ndarray:
    """a.sum(axis=0) in a's dtype, accumulated in float32 at least (a float16 sum of many
    terms would lose most of its digits)."""
    return a.sum(axis=0, dtype=np.promote_types(a.dtype, np.float32)).astype(a.dtype, copy=False)


def _normalize_rows(x2: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Return (xhat, std): every row of x2 (rows, m) normalized with the BIASED variance,
    xhat = (x - mean) / std, std = sqrt(var + eps) of shape (rows, 1).

    Two passes for the statistics (the mean, then the mean squared deviation: E[x^2] - mean^2
    would lose every digit of a small variance under a large mean), the sums without
    temporaries (_row_sums, _row_dots), and xhat built in one array in place. Callers run it
    inside _row_loops.
    """
    m = x2.shape[1]
    if m == 0:  # no values per row: NumPy's mean of an empty row (NaN, with its warning)
        xhat = x2 - x2.mean(axis=1, keepdims=True)
        return xhat, np.sqrt((xhat * xhat).mean(axis=1, keepdims=True) + eps)
    xhat = x2 - (_row_sums(x2) / m)[:, None]
    std = np.sqrt(_row_dots(xhat, xhat) / m + eps)[:, None]
    xhat *= 1 / std  # (a product is cheaper than a quotient)
    return xhat, std


def _normalize_rows_backward(
    dxhat: np.ndarray,
    xhat: np.ndarray,
    std: np.ndarray,
    mean_dxhat: np.ndarray | None = None,
    mean_dxhat_xhat: np.ndarray | None = None,
) -> np.ndarray:
    """Gradient through xhat = (x - mean(x)) / sqrt(var(x) + eps) along the rows of (rows, m)
    matrices; std (rows, 1). dxhat is a temporary of the caller's and is overwritten.

    With m values per row, differentiating the mean and the variance gives
        dx = (1 / std) * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
    the simplified formula that batchnorm_backward_alt derives. The two row means (rows,) are
    taken from dxhat unless the caller has them; dx is built term by term in one array (each
    line one pass over memory). Callers run it inside _row_loops.
    """
    m = xhat.shape[1]
    if m == 0:  # rows of no values have an empty gradient
        return np.zeros(np.broadcast_shapes(dxhat.shape, xhat.shape), np.result_type(dxhat, std))
    if mean_dxhat is None:
        mean_dxhat = _row_sums(dxhat) / m
    if mean_dxhat_xhat is None:
        mean_dxhat_xhat = _row_dots(dxhat, xhat) / m
    dxhat -= mean_dxhat[:, None]  # dxhat - mean(dxhat)
    dx = xhat * -mean_dxhat_xhat[:, None]  # - xhat * mean(dxhat * xhat)
    dx += dxhat
    dx *= 1 / std
    return dx


# Batchnorm's statistics are per feature (vanilla) or per channel (spatial); both variants share
# one implementation that works on x's memory as it lies, through _Channels. Compared with the
# classic transpose to (N*H*W, C) and back, spatial batchnorm saves the transposed copies of x,
# out, dout and dx, and every pass streams through contiguous memory.

# Values per row of _Channels' matrix view: NumPy's broadcasting loops run about 1.5x faster
# over rows of 8192+ values than over, e.g., a (256, 1024) batch's 1024-value rows.
_ROW_MIN = 8192
_R_MAX = 64


class _Channels:
    """Per-channel arithmetic on an (N, C, *spatial) array, viewed as a matrix without copying.

    In C order each sample stores channel c's hw = prod(spatial) values contiguously (hw = 1 for
    vanilla batchnorm's (N, D)). So with R consecutive samples per row (R divides N), the array
    is a (N // R, R*C*hw) matrix in which a per-channel statistic is a sum down the rows followed
    by a sum over the row's R*hw columns of each channel, and a per-channel vector acts on the
    matrix once spread over those columns.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        N, self.C, self.hw = shape[0], shape[1], math.prod(shape[2:])
        K = self.C * self.hw
        # R: the power of two dividing N that first makes rows of _ROW_MIN values (1 for odd N),
        # at most _R_MAX: summing down the matrix adds one row at a time, so in float32 the
        # number of rows summed per column (N // R, then R) bounds the round-off.
        self.R = 1
        while self.R * K < _ROW_MIN and N % (2 * self.R) == 0 and 2 * self.R <= min(N, _R_MAX):
            self.R *= 2
        self.rows, self.cols = N // self.R, self.R * K
        self.m = N * self.hw  # values per channel

    def view(self, a: np.ndarray) -> np.ndarray:
        """The (N // R, R*C*hw) matrix of an array of this shape (a copy only if a is not
        C-contiguous)."""
        return a.reshape(self.rows, self.cols)

    def spread(self, v: np.ndarray) -> np.ndarray:
        """A per-channel vector (C,) laid along a row: each value over its channel's columns."""
        if self.R == 1 and self.hw == 1:
            return v
        row = np.empty((self.R, self.C * self.hw), v.dtype)
        row[...] = v if self.hw == 1 else np.repeat(v, self.hw)
        return row.reshape(-1)

    def sum(self, a2: np.ndarray, b2: np.ndarray | None = None) -> np.ndarray:
        """Per-channel sum over the batch and the spatial positions of the matrix a2, or of
        a2 * b2.

        float32/float64 sum in the input's dtype, and einsum forms a sum of products without a
        temporary. (Not ``ones @ a2``: BLAS would wake its thread pool for a memory-bound sum,
        which costs more than the sum itself on a busy machine.) Narrower floats accumulate in
        float32, as np.mean does for them.
        """
        if self.hw == 0:  # no spatial positions: each channel sums no values
            return np.zeros(self.C, a2.dtype if b2 is None else np.result_type(a2, b2))
        if a2.dtype.itemsize >= 4 and (b2 is None or b2.dtype.itemsize >= 4):
            cols = np.add.reduce(a2, axis=0) if b2 is None else np.einsum("nk,nk->k", a2, b2)
            dtype = cols.dtype
        else:
            prod = a2 if b2 is None else a2 * b2
            cols, dtype = prod.sum(axis=0, dtype=np.float32), prod.dtype
        # One axis at a time: a two-axis sum over the short hw axis is several times slower.
        if self.R > 1:
            cols = np.add.reduce(cols.reshape(self.R, -1), axis=0)
        if self.hw > 1:
            cols = np.add.reduce(cols.reshape(self.C, self.hw), axis=1)
        return cols.astype(dtype, copy=False)


def _scale_shift(a2: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """a2 * scale + shift (NumPy's dtype promotion) with the addition done in place."""
    out = np.multiply(a2, scale, dtype=np.result_type(a2, scale, shift))
    out += shift
    return out


def _bn_train_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Normalize x per channel with the batch mean and the BIASED batch variance.

    x: (N, D) or (N, C, H, W); gamma, beta: (C,). Returns out, xhat, xmu (x's shape) and the
    per-channel mean, var, std (C,).
    """
    ch = _Channels(x.shape)
    x2 = ch.view(x)
    # max(m, 1): an empty batch (m = 0) gets mean = var = 0 rather than 0 / 0 (NaN and a
    # warning); its output is empty and its dgamma, dbeta are zero, as with F.batch_norm.
    m = max(ch.m, 1)
    mean = ch.sum(x2) / m
    # xmu and xhat live as long as the cache: one allocation holds both. A single large block
    # is cheaper to obtain from the OS than two (fewer page faults: NumPy asks for huge pages
    # from 4 MiB on), which matters as much as the arithmetic for memory-bound layers.
    xmu, xhat = np.empty((2, *x2.shape), x2.dtype)
    np.subtract(x2, ch.spread(mean), out=xmu)
    # Two passes (the mean, then the mean squared deviation): E[x^2] - mean^2 would lose every
    # digit of a small variance under a large mean, in float32 above all.
    var = ch.sum(xmu, xmu) / m
    std = np.sqrt(var + eps)
    np.multiply(xmu, ch.spread(1 / std), out=xhat)
    out = _scale_shift(xhat, ch.spread(gamma), ch.spread(beta))
    return (out.reshape(x.shape), xhat.reshape(x.shape), xmu.reshape(x.shape), mean, var, std)


def _bn_train_backward(
    dout: np.ndarray, xhat: np.ndarray, std: np.ndarray, gamma: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx, dgamma, dbeta of out = gamma * xhat + beta, xhat = (x - mean) / std per channel.

    With m values per channel and dxhat = gamma * dout, batchnorm_backward_alt's closed form
        dx = (1 / std) * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    needs only the two sums the parameter gradients are made of, because gamma and std are
    constant over a channel: mean(dxhat) = gamma * dbeta / m and mean(dxhat * xhat) =
    gamma * dgamma / m, so
        dx = (gamma / std) * (dout - dbeta / m - xhat * dgamma / m).
    dout, xhat: (N, D) or (N, C, H, W); std: the channel statistic in any shape; gamma: (C,).
    """
    ch = _Channels(dout.shape)
    d2, xhat2 = ch.view(dout), ch.view(xhat)
    dbeta = ch.sum(d2)  # sum(dout)
    dgamma = ch.sum(d2, xhat2)  # sum(dout * xhat)
    std = std.reshape(-1)
    m = max(ch.m, 1)  # (dx is empty when m = 0)
    # dx built on one array, term by term in place (each line is one pass over memory).
    dx = np.multiply(
        xhat2,
        ch.spread(-dgamma / m),  # -xhat * dgamma / m
        dtype=np.result_type(d2, xhat2, std, gamma),
    )
    dx += d2  # + dout
    dx -= ch.spread(dbeta / m)  # - dbeta / m
    dx *= ch.spread(gamma / std)  # all times gamma / std
    return dx.reshape(dout.shape), dgamma, dbeta


def _batchnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, bn_param: dict[str, Any]
) -> tuple[np.ndarray, Cache]:
    """batchnorm_forward's body, statistics per column of x (N, D) or channel of x (N, C, H, W);
    the arguments are already checked except bn_param."""
    C = x.shape[1]
    mode, eps, momentum = check_bn_param(bn_param, C)
    running_mean = bn_param.get("running_mean")
    running_var = bn_param.get("running_var")
    if running_mean is None:
        running_mean = np.zeros(C, dtype=x.dtype)
    if running_var is None:
        running_var = np.zeros(C, dtype=x.dtype)

    if mode == "train":
        out, xhat, xmu, mean, var, std = _bn_train_forward(x, gamma, beta, eps)
        # A channel without values (an empty batch) has no statistics: the running ones keep
        # their values, as F.batch_norm's do.
        if x.size:
            running_mean = momentum * running_mean + (1 - momentum) * mean
            running_var = momentum * running_var + (1 - momentum) * var
        # The statistics are cached in the shape that broadcasts against x: (1, D) or
        # (1, C, 1, 1).
        stat_shape = (1, C) + (1,) * (x.ndim - 2)
        cache = {
            "mode": mode,
            "x": x,
            "xhat": xhat,
            "xmu": xmu,
            "var": var.reshape(stat_shape),
            "std": std.reshape(stat_shape),
            "gamma": gamma,
            "eps": eps,
        }
    else:
        ch = _Channels(x.shape)
        std = np.sqrt(running_var + eps)
        xhat = (ch.view(x) - ch.spread(running_mean)) / ch.spread(std)
        out = _scale_shift(xhat, ch.spread(gamma), ch.spread(beta)).reshape(x.shape)
        cache = {"mode": mode, "xhat": xhat.reshape(x.shape), "std": std, "gamma": gamma}

    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def _batchnorm_test_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Test mode is an affine map per feature: out = gamma * (x - mean_run) / std_run + beta."""
    ch = _Channels(dout.shape)
    d2 = ch.view(dout)
    dx = d2 * ch.spread(cache["gamma"] / cache["std"])
    return dx.reshape(dout.shape), ch.sum(d2, ch.view(cache["xhat"])), ch.sum(d2)


def _batchnorm_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The closed-form backward of _batchnorm_forward, either mode, either layout."""
    if cache["mode"] == "test":
        return _batchnorm_test_backward(dout, cache)
    return _bn_train_backward(dout, cache["xhat"], cache["std"], cache["gamma"])


def batchnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, bn_param: dict[str, Any]
) -> tuple[np.ndarray, Cache]:
    """Batch normalization over the batch axis.

    x: (N, D); gamma, beta: (D,).
    bn_param: 'mode' ('train' or 'test', required); 'eps' (1e-5); 'momentum' (0.9);
      'running_mean', 'running_var' (D,), created as zeros of x's dtype on first use.
    Train mode normalizes with the batch mean and BIASED batch variance and updates (CS231n's
    convention, not PyTorch's ``1 - momentum`` and unbiased variance)
        running = momentum * running + (1 - momentum) * batch_stat
    by writing new arrays into bn_param. Test mode normalizes with the running statistics.
    Returns out (N, D) and a cache dict with keys 'mode', 'x', 'xhat', 'xmu' (N, D), 'var',
    'std' (1, D), 'gamma', 'eps' (train) or 'mode', 'xhat', 'std' (D,), 'gamma' (test).
    """
    require_float("x", x)
    require_ndim("x", x, 2, "(N, D)")
    D = x.shape[1]
    check_norm_args(x, gamma, beta, 2, (D,), "(N, D)")
    return _batchnorm_forward(x, gamma, beta, bn_param)


def batchnorm_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of batchnorm_forward, node by node through the computation graph.

    The forward graph (train mode), per feature over N samples:
        mu = mean(x);  xmu = x - mu;  sq = xmu**2;  var = mean(sq);  std = sqrt(var + eps)
        istd = 1 / std;  xhat = xmu * istd;  out = gamma * xhat + beta
    dout: (N, D). Returns dx (N, D), dgamma (D,), dbeta (D,).
    """
    check_dout(dout, shape_of(cache["xhat"]))
    if cache["mode"] == "test":
        return _batchnorm_test_backward(dout, cache)
    xhat, xmu, std, gamma = cache["xhat"], cache["xmu"], cache["std"], cache["gamma"]
    N = dout.shape[0]
    istd = 1 / std

    # out = gamma * xhat + beta
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    # xhat = xmu * istd: xmu feeds xhat directly and through the variance.
    distd = (dxhat * xmu).sum(axis=0, keepdims=True)
    dxmu = dxhat * istd
    # istd = 1 / std
    dstd = -distd / (std * std)
    # std = sqrt(var + eps)
    dvar = 0.5 * dstd / std
    # var = mean(sq) spreads dvar evenly over the N samples (none when N = 0: no 0 / 0).
    dsq = np.broadcast_to(dvar / max(N, 1), dout.shape)
    # sq = xmu**2: the second path into xmu.
    dxmu = dxmu + 2 * xmu * dsq
    # xmu = x - mu: x gets dxmu directly; mu gets -sum(dxmu).
    dmu = -dxmu.sum(axis=0, keepdims=True)
    # mu = mean(x) spreads dmu evenly over the N samples.
    dx = dxmu + dmu / max(N, 1)
    return dx, dgamma, dbeta


def batchnorm_backward_alt(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of batchnorm_forward with the simplified closed form (same cache).

    Collapsing the graph of batchnorm_backward on paper gives
        dx = (1 / (N * std)) * (N * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)),
    with dxhat = dout * gamma and the sums over the batch axis; _bn_train_backward evaluates it
    from the two sums dgamma and dbeta.
    dout: (N, D). Returns dx (N, D), dgamma (D,), dbeta (D,).
    """
    check_dout(dout, shape_of(cache["xhat"]))
    return _batchnorm_backward(dout, cache)


def layernorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, ln_param: dict[str, Any]
) -> tuple[np.ndarray, Cache]:
    """Layer normalization: each sample (row) normalized over its D features.

    x: (N, D); gamma, beta: (D,). ln_param: 'eps' (1e-5); 'mode' accepted and ignored (layernorm
    behaves the same in train and test mode and keeps no running statistics).
    Returns out (N, D) and cache dict with keys 'xhat', 'std', 'gamma'.
    """
    require_float("x", x)
    require_ndim("x", x, 2, "(N, D)")
    check_norm_args(x, gamma, beta, 2, (x.shape[1],), "(N, D)")
    eps = check_norm_param(ln_param, "ln_param")
    with _row_loops(x.shape[1], x, gamma, beta):
        xhat, std = _normalize_rows(x, eps)
        out = _scale_shift(xhat, gamma, beta)
    return out, {"xhat": xhat, "std": std, "gamma": gamma}


def layernorm_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, D). Returns dx (N, D), dgamma (D,), dbeta (D,).

    The same closed form as batchnorm_backward_alt with the reduction over the feature axis.
    """
    xhat, std, gamma = cache["xhat"], cache["std"], cache["gamma"]
    check_dout(dout, shape_of(xhat))
    features = _Channels(xhat.shape)  # sums down the batch, feature by feature
    d2 = features.view(dout)
    dbeta = features.sum(d2)
    dgamma = features.sum(d2, features.view(xhat))
    with _row_loops(xhat.shape[1], dout, xhat, gamma):
        dx = _normalize_rows_backward(dout * gamma, xhat, std)
    return dx, dgamma, dbeta


def spatial_batchnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, bn_param: dict[str, Any]
) -> tuple[np.ndarray, Cache]:
    """Batchnorm per channel over (N, H, W).

    x: (N, C, H, W); gamma, beta: (C,); bn_param as in batchnorm_forward (running stats (C,)).
    The classic derivation moves C last and normalizes the (N*H*W, C) matrix per column; the
    statistics here are the same per-channel sums, taken on x's own memory without the
    transposes (see _Channels). Returns out (N, C, H, W) and cache = (batchnorm cache,
    x's shape), the batchnorm cache holding batchnorm_forward's keys with 'x', 'xhat', 'xmu'
    (N, C, H, W) and 'var', 'std' (1, C, 1, 1) (train) or 'std' (C,) (test).
    """
    require_float("x", x)
    require_ndim("x", x, 4, "(N, C, H, W)")
    N, C, H, W = x.shape
    check_norm_args(x, gamma, beta, 4, (C,), "(N, C, H, W)")
    out, bn_cache = _batchnorm_forward(x, gamma, beta, bn_param)
    return out, (bn_cache, (N, C, H, W))


def spatial_batchnorm_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, C, H, W). Returns dx (N, C, H, W), dgamma (C,), dbeta (C,).

    The closed form of batchnorm_backward_alt with every sum over (N, H, W).
    """
    bn_cache, (N, C, H, W) = cache
    check_dout(dout, (N, C, H, W))
    return _batchnorm_backward(dout, bn_cache)


def spatial_groupnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, G: int, gn_param: dict[str, Any]
) -> tuple[np.ndarray, Cache]:
    """Group normalization: each sample's C channels split into G groups of C // G channels, each
    group normalized over its (C // G) * H * W values.

    x: (N, C, H, W); gamma, beta: (1, C, 1, 1) (CS231n's layout); G divides C.
    gn_param: 'eps' (1e-5); 'mode' accepted and ignored.
    Returns out (N, C, H, W) and cache dict with keys 'xhat' (N, G, C//G*H*W), 'std' (N, G, 1),
    'gamma', 'G', 'shape'.
    """
    require_float("x", x)
    require_ndim("x", x, 4, "(N, C, H, W)")
    N, C, H, W = x.shape
    check_norm_args(x, gamma, beta, 4, (1, C, 1, 1), "(N, C, H, W)")
    G = require_groups(G, C)
    eps = check_norm_param(gn_param, "gn_param")
    m = C // G * H * W
    # gamma and beta act per channel: spread along _Channels' rows, they broadcast over long
    # contiguous runs instead of (1, C, 1, 1) over every H*W block.
    channels = _Channels((N, C, H, W))
    scale, shift = channels.spread(gamma.reshape(C)), channels.spread(beta.reshape(C))
    with _row_loops(m, x, gamma, beta):
        xhat, std = _normalize_rows(x.reshape(N * G, m), eps)  # (N may be 0)
        out = _scale_shift(channels.view(xhat), scale, shift).reshape(N, C, H, W)
    xhat, std = xhat.reshape(N, G, m), std.reshape(N, G, 1)
    return out, {"xhat": xhat, "std": std, "gamma": gamma, "G": G, "shape": (N, C, H, W)}


def spatial_groupnorm_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, C, H, W). Returns dx (N, C, H, W), dgamma (1, C, 1, 1), dbeta (1, C, 1, 1).

    Every sum the gradient needs is made of two per-(sample, channel) sums over H*W,
    s[n, c] = sum(dout) and p[n, c] = sum(dout * xhat): dbeta and dgamma sum them over the batch,
    and with dxhat = gamma * dout the group means of the closed form (see
    _normalize_rows_backward) are sum(gamma * s) and sum(gamma * p) over the group's channels,
    divided by its m = C // G * H * W values. One pass over dout and xhat gives all four.
    """
    xhat, std, gamma, G, (N, C, H, W) = (
        cache["xhat"],
        cache["std"],
        cache["gamma"],
        cache["G"],
        cache["shape"],
    )
    check_dout(dout, (N, C, H, W))
    hw, m = H * W, C // G * H * W
    dout = np.ascontiguousarray(dout)
    per_channel = (dout.reshape(N * C, hw), xhat.reshape(N * C, hw))
    s = _row_sums(per_channel[0]).reshape(N, C)  # sum(dout) over H, W
    p = _row_dots(*per_channel).reshape(N, C)  # sum(dout * xhat) over H, W
    dbeta, dgamma = _sum_over_batch(s), _sum_over_batch(p)
    g = gamma.reshape(C)
    mean_dxhat = (s * g).reshape(N * G, C // G).sum(axis=1) / max(m, 1)
    mean_dxhat_xhat = (p * g).reshape(N * G, C // G).sum(axis=1) / max(m, 1)
    # dxhat = gamma * dout, with gamma spread along _Channels' long rows.
    channels = _Channels((N, C, H, W))
    with _row_loops(m, dout, xhat, gamma):
        dxhat = (channels.view(dout) * channels.spread(g)).reshape(N * G, m)
        dx = _normalize_rows_backward(
            dxhat, xhat.reshape(N * G, m), std.reshape(N * G, 1), mean_dxhat, mean_dxhat_xhat
        )
    return dx.reshape(N, C, H, W), dgamma.reshape(1, C, 1, 1), dbeta.reshape(1, C, 1, 1)


# ----------------------------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------------------------


def dropout_mask(
    shape: tuple[int, ...], dtype: DTypeLike, dropout_param: dict[str, Any]
) -> np.ndarray | None:
    """The inverted-dropout multiplier (entries 0 or 1/p) of ``dropout_param``, or None in test
    mode: the one mask of the NumPy twin (dropout_forward and the attention layers use it).

    dropout_param: 'p' the KEEP probability in (0, 1]; 'mode' 'train'/'test' (required);
    optional 'seed', with which ``np.random.seed`` is called first, in either mode, as CS231n's
    dropout_forward does (so the global random state after a call matches the course's);
    optional 'mask' (``shape``), used as given instead of a draw (lets tests share one mask
    between the twins). Otherwise the draw is CS231n's: (np.random.rand(*shape) < p) / p.
    """
    require_dict(dropout_param, "dropout_param")
    p = require_keep_prob(require_param(dropout_param, "dropout_param", "p"))
    mode = require_mode(dropout_param, "dropout_param", required=True)
    seed = dropout_param.get("seed")
    if seed is not None:
        np.random.seed(seed)  # noqa: NPY002 -- CS231n's global-state draw, for matching masks
    if mode == "test":
        return None
    if dropout_param.get("mask") is not None:
        mask = np.asarray(dropout_param["mask"])
        require_shape("dropout_param['mask']", mask, tuple(shape))
        return mask.astype(dtype, copy=False)
    keep = np.random.rand(*shape) < p  # noqa: NPY002 -- CS231n's exact draw
    return (keep / p).astype(dtype, copy=False)


def dropout_forward(x: np.ndarray, dropout_param: dict[str, Any]) -> tuple[np.ndarray, Cache]:
    """Inverted dropout.

    x: any shape. dropout_param: 'p' the KEEP probability in (0, 1] (PyTorch's F.dropout takes the
    drop probability 1 - p); 'mode' 'train'/'test' (required); optional 'seed' (every call with
    the same seed draws the same mask); optional 'mask' (see dropout_mask).
    Train: mask = (rand(*x.shape) < p) / p (CS231n's draw, so seeded outputs match the course's),
    out = x * mask, so E[out] = x and test mode needs no rescaling. Test: out = x (identity).
    cache = (dropout_param, mask); mask has x's dtype and is None in test mode.
    """
    require_float("x", x)
    mask = dropout_mask(x.shape, x.dtype, dropout_param)
    out = x.copy() if mask is None else x * mask
    return out, (dropout_param, mask)


def dropout_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dout: x's shape. Train: dx = dout * mask. Test: dx = dout (its shape cannot be checked
    against a mask; test mode caches none)."""
    _, mask = cache
    # The mask, not dropout_param['mode'], decides: the dict may be flipped to 'test' in between.
    if mask is not None:
        check_dout(dout, shape_of(mask))
        return dout * mask
    return dout.copy()


# ----------------------------------------------------------------------------------------------
# Convolution and max pooling (naive teaching versions; numpy_impl.fast_layers is the fast twin)
# ----------------------------------------------------------------------------------------------


def _pad_hw(x: np.ndarray, pad: int) -> np.ndarray:
    """Symmetric zero padding of the two spatial axes of (N, C, H, W); keeps x's dtype."""
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")


def conv_forward_naive(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict[str, Any]
) -> tuple[np.ndarray, Cache]:
    """Convolution (cross-correlation, no kernel flip, as in CS231n and PyTorch).

    x: (N, C, H, W); w: (F, C, HH, WW); b: (F,); conv_param: 'stride', 'pad' (symmetric zeros).
    Output (N, F, H', W') with PyTorch's floor rule H' = 1 + (H + 2*pad - HH) // stride (rows or
    columns the last window cannot reach are ignored).
        out[n, f, i, j] = b[f] + sum_{c,k,l} xpad[n, c, i*stride + k, j*stride + l] * w[f, c, k, l]
    Loops over output positions (teaching version); each position contracts the window with every
    filter at once. cache = (x, w, b, conv_param).
    """
    require_float("x", x)
    stride, pad, H_out, W_out = check_conv_args(x, w, b, conv_param)
    N = x.shape[0]
    F, _, HH, WW = w.shape
    xpad = _pad_hw(x, pad)
    out = np.empty((N, F, H_out, W_out), dtype=np.result_type(x, w, b))
    for i in range(H_out):
        for j in range(W_out):
            window = xpad[:, :, i * stride : i * stride + HH, j * stride : j * stride + WW]
            out[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, b, conv_param)


def conv_backward_naive(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, F, H', W'); cache = (x, w, b, conv_param).

    Each output position (i, j) used the window xpad[:, :, i*s : i*s+HH, j*s : j*s+WW] and every
    filter, so it sends dout[:, :, i, j] back to both: dw += dout_ij^T . window and
    dxpad[window] += dout_ij . w. The padding's gradient is dropped at the end.
    Returns dx (N, C, H, W), dw (F, C, HH, WW), db (F,).
    """
    x, w, b, conv_param = cache
    stride, pad, H_out, W_out = check_conv_args(x, w, b, conv_param)
    N, _, H, W = x.shape
    F, _, HH, WW = w.shape
    check_dout(dout, (N, F, H_out, W_out))
    xpad = _pad_hw(x, pad)
    dxpad = np.zeros(xpad.shape, dtype=np.result_type(dout, w))
    dw = np.zeros(w.shape, dtype=np.result_type(dout, x))
    db = dout.sum(axis=(0, 2, 3))
    for i in range(H_out):
        for j in range(W_out):
            hs, ws = slice(i * stride, i * stride + HH), slice(j * stride, j * stride + WW)
            d_ij = dout[:, :, i, j]  # (N, F)
            dw += np.tensordot(d_ij, xpad[:, :, hs, ws], axes=([0], [0]))
            dxpad[:, :, hs, ws] += np.tensordot(d_ij, w, axes=([1], [0]))
    dx = dxpad[:, :, pad : pad + H, pad : pad + W]
    return dx, dw, db


def max_pool_forward_naive(x: np.ndarray, pool_param: dict[str, Any]) -> tuple[np.ndarray, Cache]:
    """Max pooling without padding.

    x: (N, C, H, W); pool_param: 'pool_height', 'pool_width', 'stride'.
    Output (N, C, H', W') with PyTorch's floor rule H' = 1 + (H - pool_height) // stride.
    A NaN in a window propagates to the output (as in PyTorch). cache = (x, pool_param).
    """
    require_float("x", x)
    ph, pw, stride, H_out, W_out = check_pool_args(x, pool_param)
    N, C = x.shape[:2]
    out = np.empty((N, C, H_out, W_out), dtype=x.dtype)
    for i in range(H_out):
        for j in range(W_out):
            window = x[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw]
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out, (x, pool_param)


def max_pool_backward_naive(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dout: (N, C, H', W'); cache = (x, pool_param). Returns dx (N, C, H, W).

    Each window's gradient goes to ONE position: the FIRST maximum in row-major order within the
    window (np.argmax's rule; PyTorch's CPU and CUDA kernels keep the first maximum too, replacing
    it only on a strictly greater value or a NaN). Overlapping windows (stride < pool size)
    accumulate into the same dx entry.
    """
    x, pool_param = cache
    ph, pw, stride, H_out, W_out = check_pool_args(x, pool_param)
    N, C = x.shape[:2]
    check_dout(dout, (N, C, H_out, W_out))
    dx = np.zeros(x.shape, dtype=np.result_type(dout, x))
    n_idx, c_idx = np.ogrid[:N, :C]
    for i in range(H_out):
        for j in range(W_out):
            window = x[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw]
            k = window.reshape(N, C, ph * pw).argmax(axis=2)
            r, c = np.divmod(k, pw)
            # (n, c) pairs are distinct, so this fancy-indexed += touches each entry once.
            dx[n_idx, c_idx, i * stride + r, j * stride + c] += dout[:, :, i, j]
    return dx


# ----------------------------------------------------------------------------------------------
# Losses on class scores
# ----------------------------------------------------------------------------------------------


def svm_loss(x: np.ndarray, y: np.ndarray) -> tuple[Loss, np.ndarray]:
    """Multiclass SVM (hinge) loss with margin 1, averaged over the batch (CS231n's scaling:
    summed over classes, unlike PyTorch's multi_margin_loss, which also divides by C).

    x: (N, C) scores; y: (N,) integer labels in [0, C).
        loss = (1/N) sum_i sum_{j != y_i} max(0, x_ij - x_{i,y_i} + 1)
    Returns loss (a scalar of x's dtype) and dx (N, C).
    """
    N, _ = check_scores_labels(x, y)
    rows = np.arange(N)
    correct = x[rows, y][:, None]
    margins = np.maximum(x - correct + 1, 0)
    margins[rows, y] = 0
    loss = margins.sum() / N
    positive = (margins > 0).astype(x.dtype)
    dx = positive
    dx[rows, y] -= positive.sum(axis=1)
    dx /= N
    return loss, dx


def softmax_loss(x: np.ndarray, y: np.ndarray) -> tuple[Loss, np.ndarray]:
    """Softmax cross-entropy loss averaged over the batch.

    x: (N, C) scores; y: (N,) integer labels in [0, C).
    Subtracting each row's maximum leaves the softmax unchanged and makes every exponent <= 0,
    so even scores of 1e4 cannot overflow; log-probabilities come from the log-sum-exp.
        loss = -(1/N) sum_i log softmax(x_i)[y_i];   dx = (softmax(x) - onehot(y)) / N
    Returns loss (a scalar of x's dtype) and dx (N, C).
    """
    N, _ = check_scores_labels(x, y)
    rows = np.arange(N)
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[rows, y].sum() / N
    dx = np.exp(log_probs)
    dx[rows, y] -= 1
    dx /= N
    return loss, dx
