"""CS231n layers in NumPy: forward passes returning ``(out, cache)`` and backward passes taking
``(dout, cache)`` and returning the gradients in the order of the forward's array arguments.

Conventions shared by every function here:

- Every forward validates its input through ``numpy_impl._checks`` (the torch twin raises the same
  messages); every backward checks ``dout`` against the output shape recorded in the cache.
- Inputs are never modified in place; only CS231n's param dicts are written to (batchnorm's running
  averages).
- float32 stays float32: arrays are created with the input's dtype and scalars are Python floats
  (NumPy's NEP 50 keeps ``0.9 * float32_array`` in float32).
- Where CS231n and PyTorch differ on purpose (SVM scaling, biased running variance, dropout's
  keep probability) this module follows CS231n; ``parity_tests`` states the conversion.
"""

from __future__ import annotations

import numpy as np

from numpy_impl._checks import (
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


# ----------------------------------------------------------------------------------------------
# Affine and elementwise nonlinearities
# ----------------------------------------------------------------------------------------------


def affine_forward(x, w, b):
    """Fully connected layer: out = x.reshape(N, D) @ w + b.

    x: (N, d_1, ..., d_k) with D = d_1 * ... * d_k; w: (D, M); b: (M,).
    Returns out (N, M) and cache = (x, w, b).
    """
    require_float("x", x)
    N, D = check_affine_args(x, w, b)
    out = x.reshape(N, D) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    """dout: (N, M); cache = (x, w, b) from affine_forward.

    Returns dx (x's original shape (N, d_1, ..., d_k)), dw (D, M), db (M,).
    """
    x, w, b = cache
    N = x.shape[0]
    check_dout(dout, (N, w.shape[1]))
    x2d = x.reshape(N, -1)
    dx = (dout @ w.T).reshape(x.shape)
    dw = x2d.T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def relu_forward(x):
    """out = max(0, x), elementwise. x: any shape. cache = x."""
    require_float("x", x)
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """dx = dout where x > 0, else 0 (the subgradient at the kink x == 0 is 0, as in PyTorch)."""
    x = cache
    check_dout(dout, shape_of(x))
    return dout * (x > 0)


def sigmoid_forward(x):
    """out = 1 / (1 + exp(-x)), elementwise; cache = out.

    Computed from exp(-|x|) <= 1 so that no exponential overflows for large |x|.
    """
    require_float("x", x)
    z = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1 / (1 + z), z / (1 + z))
    return out, out


def sigmoid_backward(dout, cache):
    """d sigmoid / dx = s * (1 - s), with s the cached forward output."""
    s = cache
    check_dout(dout, shape_of(s))
    return dout * s * (1 - s)


def tanh_forward(x):
    """out = tanh(x), elementwise; cache = out."""
    require_float("x", x)
    out = np.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    """d tanh / dx = 1 - tanh(x)^2, from the cached forward output."""
    t = cache
    check_dout(dout, shape_of(t))
    return dout * (1 - t * t)


# ----------------------------------------------------------------------------------------------
# Normalization
# ----------------------------------------------------------------------------------------------


def _normalize(x, axis, eps):
    """Return (xhat, xmu, var, std) normalizing x over ``axis`` with the BIASED variance."""
    mu = x.mean(axis=axis, keepdims=True)
    xmu = x - mu
    var = (xmu * xmu).mean(axis=axis, keepdims=True)
    std = np.sqrt(var + eps)
    return xmu / std, xmu, var, std


def _normalize_backward(dxhat, xhat, std, axis):
    """Gradient through xhat = (x - mean(x)) / sqrt(var(x) + eps), reduction over ``axis``.

    With m elements per group, differentiating the mean and the variance gives
        dx = (1 / std) * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
    the simplified formula that batchnorm_backward_alt derives.
    """
    mean_dxhat = dxhat.mean(axis=axis, keepdims=True)
    mean_dxhat_xhat = (dxhat * xhat).mean(axis=axis, keepdims=True)
    return (dxhat - mean_dxhat - xhat * mean_dxhat_xhat) / std


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalization over the batch axis.

    x: (N, D); gamma, beta: (D,).
    bn_param: 'mode' ('train' or 'test', required); 'eps' (1e-5); 'momentum' (0.9);
      'running_mean', 'running_var' (D,), created as zeros of x's dtype on first use.
    Train mode normalizes with the batch mean and BIASED batch variance and updates (CS231n's
    convention, not PyTorch's ``1 - momentum`` and unbiased variance)
        running = momentum * running + (1 - momentum) * batch_stat
    by writing new arrays into bn_param. Test mode normalizes with the running statistics.
    Returns out (N, D) and a cache dict with keys 'mode', 'x', 'xhat', 'xmu', 'var', 'std',
    'gamma', 'eps' (train) or 'mode', 'xhat', 'std', 'gamma' (test).
    """
    require_float("x", x)
    require_ndim("x", x, 2, "(N, D)")
    D = x.shape[1]
    check_norm_args(x, gamma, beta, 2, (D,), "(N, D)")
    mode, eps, momentum = check_bn_param(bn_param, D)
    running_mean = bn_param.get("running_mean")
    running_var = bn_param.get("running_var")
    if running_mean is None:
        running_mean = np.zeros(D, dtype=x.dtype)
    if running_var is None:
        running_var = np.zeros(D, dtype=x.dtype)

    if mode == "train":
        xhat, xmu, var, std = _normalize(x, 0, eps)
        out = gamma * xhat + beta
        mean = x.mean(axis=0)
        running_mean = momentum * running_mean + (1 - momentum) * mean
        running_var = momentum * running_var + (1 - momentum) * var[0]
        cache = {"mode": mode, "x": x, "xhat": xhat, "xmu": xmu, "var": var, "std": std,
                 "gamma": gamma, "eps": eps}
    else:
        std = np.sqrt(running_var + eps)
        xhat = (x - running_mean) / std
        out = gamma * xhat + beta
        cache = {"mode": mode, "xhat": xhat, "std": std, "gamma": gamma}

    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def _batchnorm_test_backward(dout, cache):
    """Test mode is an affine map per feature: out = gamma * (x - mean_run) / std_run + beta."""
    dx = dout * (cache["gamma"] / cache["std"])
    return dx, (dout * cache["xhat"]).sum(axis=0), dout.sum(axis=0)


def batchnorm_backward(dout, cache):
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
    # var = mean(sq) spreads dvar evenly over the N samples.
    dsq = np.broadcast_to(dvar / N, dout.shape)
    # sq = xmu**2: the second path into xmu.
    dxmu = dxmu + 2 * xmu * dsq
    # xmu = x - mu: x gets dxmu directly; mu gets -sum(dxmu).
    dmu = -dxmu.sum(axis=0, keepdims=True)
    # mu = mean(x) spreads dmu evenly over the N samples.
    dx = dxmu + dmu / N
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    """Backward pass of batchnorm_forward with the simplified closed form (same cache).

    Collapsing the graph of batchnorm_backward on paper gives
        dx = (1 / (N * std)) * (N * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)),
    with dxhat = dout * gamma and the sums over the batch axis.
    dout: (N, D). Returns dx (N, D), dgamma (D,), dbeta (D,).
    """
    check_dout(dout, shape_of(cache["xhat"]))
    if cache["mode"] == "test":
        return _batchnorm_test_backward(dout, cache)
    xhat, std, gamma = cache["xhat"], cache["std"], cache["gamma"]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = _normalize_backward(dout * gamma, xhat, std, 0)
    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta, ln_param):
    """Layer normalization: each sample (row) normalized over its D features.

    x: (N, D); gamma, beta: (D,). ln_param: 'eps' (1e-5); 'mode' accepted and ignored (layernorm
    behaves the same in train and test mode and keeps no running statistics).
    Returns out (N, D) and cache dict with keys 'xhat', 'std', 'gamma'.
    """
    require_float("x", x)
    require_ndim("x", x, 2, "(N, D)")
    check_norm_args(x, gamma, beta, 2, (x.shape[1],), "(N, D)")
    eps = check_norm_param(ln_param, "ln_param")
    xhat, _, _, std = _normalize(x, 1, eps)
    out = gamma * xhat + beta
    return out, {"xhat": xhat, "std": std, "gamma": gamma}


def layernorm_backward(dout, cache):
    """dout: (N, D). Returns dx (N, D), dgamma (D,), dbeta (D,).

    The same closed form as batchnorm_backward_alt with the reduction over the feature axis.
    """
    xhat, std, gamma = cache["xhat"], cache["std"], cache["gamma"]
    check_dout(dout, shape_of(xhat))
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = _normalize_backward(dout * gamma, xhat, std, 1)
    return dx, dgamma, dbeta


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Batchnorm per channel over (N, H, W).

    x: (N, C, H, W); gamma, beta: (C,); bn_param as in batchnorm_forward (running stats (C,)).
    Moving C last and flattening gives the (N*H*W, C) matrix that vanilla batchnorm normalizes
    per column. Returns out (N, C, H, W) and cache = (batchnorm cache, x's shape).
    """
    require_float("x", x)
    require_ndim("x", x, 4, "(N, C, H, W)")
    N, C, H, W = x.shape
    check_norm_args(x, gamma, beta, 4, (C,), "(N, C, H, W)")
    x2d = x.transpose(0, 2, 3, 1).reshape(-1, C)
    out2d, bn_cache = batchnorm_forward(x2d, gamma, beta, bn_param)
    out = out2d.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return out, (bn_cache, (N, C, H, W))


def spatial_batchnorm_backward(dout, cache):
    """dout: (N, C, H, W). Returns dx (N, C, H, W), dgamma (C,), dbeta (C,)."""
    bn_cache, (N, C, H, W) = cache
    check_dout(dout, (N, C, H, W))
    dout2d = dout.transpose(0, 2, 3, 1).reshape(-1, C)
    dx2d, dgamma, dbeta = batchnorm_backward_alt(dout2d, bn_cache)
    dx = dx2d.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return dx, dgamma, dbeta


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
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
    xhat, _, _, std = _normalize(x.reshape(N, G, -1), 2, eps)
    out = gamma * xhat.reshape(N, C, H, W) + beta
    return out, {"xhat": xhat, "std": std, "gamma": gamma, "G": G, "shape": (N, C, H, W)}


def spatial_groupnorm_backward(dout, cache):
    """dout: (N, C, H, W). Returns dx (N, C, H, W), dgamma (1, C, 1, 1), dbeta (1, C, 1, 1)."""
    xhat, std, gamma, G, (N, C, H, W) = (
        cache["xhat"], cache["std"], cache["gamma"], cache["G"], cache["shape"]
    )
    check_dout(dout, (N, C, H, W))
    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)
    dgamma = (dout * xhat.reshape(N, C, H, W)).sum(axis=(0, 2, 3), keepdims=True)
    dxhat = (dout * gamma).reshape(N, G, -1)
    dx = _normalize_backward(dxhat, xhat, std, 2).reshape(N, C, H, W)
    return dx, dgamma, dbeta


# ----------------------------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------------------------


def dropout_forward(x, dropout_param):
    """Inverted dropout.

    x: any shape. dropout_param: 'p' the KEEP probability in (0, 1] (PyTorch's F.dropout takes the
    drop probability 1 - p); 'mode' 'train'/'test' (required); optional 'seed' (every call with
    the same seed draws the same mask).
    Train: mask = (rand(*x.shape) < p) / p (CS231n's draw, so seeded outputs match the course's),
    out = x * mask, so E[out] = x and test mode needs no rescaling. Test: out = x (identity).
    cache = (dropout_param, mask); mask has x's dtype and is None in test mode.
    """
    require_float("x", x)
    require_dict(dropout_param, "dropout_param")
    p = require_keep_prob(require_param(dropout_param, "dropout_param", "p"))
    mode = require_mode(dropout_param, "dropout_param", required=True)
    seed = dropout_param.get("seed")
    if seed is not None:
        np.random.seed(seed)  # noqa: NPY002 -- CS231n's global-state draw, for matching masks

    mask = None
    if mode == "train":
        keep = np.random.rand(*x.shape) < p  # noqa: NPY002 -- CS231n's exact draw
        mask = (keep / p).astype(x.dtype, copy=False)
        out = x * mask
    else:
        out = x.copy()
    return out, (dropout_param, mask)


def dropout_backward(dout, cache):
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


def _pad_hw(x, pad):
    """Symmetric zero padding of the two spatial axes of (N, C, H, W); keeps x's dtype."""
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")


def conv_forward_naive(x, w, b, conv_param):
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
            window = xpad[:, :, i * stride:i * stride + HH, j * stride:j * stride + WW]
            out[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout, cache):
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
    dx = dxpad[:, :, pad:pad + H, pad:pad + W]
    return dx, dw, db


def max_pool_forward_naive(x, pool_param):
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
            window = x[:, :, i * stride:i * stride + ph, j * stride:j * stride + pw]
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out, (x, pool_param)


def max_pool_backward_naive(dout, cache):
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
            window = x[:, :, i * stride:i * stride + ph, j * stride:j * stride + pw]
            k = window.reshape(N, C, ph * pw).argmax(axis=2)
            r, c = np.divmod(k, pw)
            # (n, c) pairs are distinct, so this fancy-indexed += touches each entry once.
            dx[n_idx, c_idx, i * stride + r, j * stride + c] += dout[:, :, i, j]
    return dx


# ----------------------------------------------------------------------------------------------
# Losses on class scores
# ----------------------------------------------------------------------------------------------


def svm_loss(x, y):
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


def softmax_loss(x, y):
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

