"""Sandwich layers: common chains of layers, each with a forward returning ``(out, cache)`` and a
backward taking ``(dout, cache)`` that runs the chain's backward passes in reverse order.

The convolutional sandwiches use the fast layers from ``numpy_impl.fast_layers`` (as CS231n does;
the naive ones in ``numpy_impl.layers`` have the same contracts). They import them inside the
function, so the affine sandwiches, all that FullyConnectedNet needs, do not depend on that module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numpy_impl.layers import (
    Cache,
    affine_backward,
    affine_forward,
    batchnorm_backward_alt,
    batchnorm_forward,
    dropout_backward,
    dropout_forward,
    layernorm_backward,
    layernorm_forward,
    relu_backward,
    relu_forward,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
)

__all__ = [
    "NORMALIZATIONS",
    "affine_relu_forward",
    "affine_relu_backward",
    "affine_norm_relu_forward",
    "affine_norm_relu_backward",
    "conv_relu_forward",
    "conv_relu_backward",
    "conv_bn_relu_forward",
    "conv_bn_relu_backward",
    "conv_relu_pool_forward",
    "conv_relu_pool_backward",
]

# normalization name -> (forward, backward); forward(x, gamma, beta, param) like batchnorm's.
_NORM_LAYERS = {
    "batchnorm": (batchnorm_forward, batchnorm_backward_alt),
    "layernorm": (layernorm_forward, layernorm_backward),
}
NORMALIZATIONS = (None, *_NORM_LAYERS)


def affine_relu_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Cache]:
    """affine -> ReLU. x: (N, d_1, ..., d_k); w: (D, M); b: (M,). Returns out (N, M), cache."""
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, M). Returns dx (x's shape), dw (D, M), db (M,)."""
    fc_cache, relu_cache = cache
    da = relu_backward(dout, relu_cache)
    return affine_backward(da, fc_cache)


def affine_norm_relu_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    bn_param: dict[str, Any] | None = None,
    normalization: str | None = None,
    dropout_param: dict[str, Any] | None = None,
) -> tuple[np.ndarray, Cache]:
    """affine -> [batchnorm | layernorm] -> ReLU -> [dropout]: one hidden layer of CS231n's
    FullyConnectedNet.

    x: (N, d_1, ..., d_k); w: (D, M); b: (M,).
    normalization: None, 'batchnorm' or 'layernorm'. When set, gamma, beta: (M,) and bn_param is
      the normalization's param dict (bn_param for batchnorm, with 'mode'; ln_param for layernorm).
    dropout_param: None (no dropout) or dropout_forward's dict ('p' keep probability, 'mode').
    Returns out (N, M) and cache (normalization, affine, norm, relu and dropout caches).
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    out, fc_cache = affine_forward(x, w, b)
    norm_cache = None
    if normalization is not None:
        for name, value in (("gamma", gamma), ("beta", beta), ("bn_param", bn_param)):
            if value is None:
                raise ValueError(f"normalization={normalization!r} needs {name}, got None")
        norm_forward, _ = _NORM_LAYERS[normalization]
        out, norm_cache = norm_forward(out, gamma, beta, bn_param)  # type: ignore[arg-type]
    out, relu_cache = relu_forward(out)
    drop_cache = None
    if dropout_param is not None:
        out, drop_cache = dropout_forward(out, dropout_param)
    return out, (normalization, fc_cache, norm_cache, relu_cache, drop_cache)


def affine_norm_relu_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """dout: (N, M). Returns dx (x's shape), dw (D, M), db (M,), dgamma (M,), dbeta (M,);
    dgamma and dbeta are None when the forward had no normalization."""
    normalization, fc_cache, norm_cache, relu_cache, drop_cache = cache
    if drop_cache is not None:
        dout = dropout_backward(dout, drop_cache)
    da = relu_backward(dout, relu_cache)
    dgamma = dbeta = None
    if normalization is not None:
        _, norm_backward = _NORM_LAYERS[normalization]
        da, dgamma, dbeta = norm_backward(da, norm_cache)
    dx, dw, db = affine_backward(da, fc_cache)
    return dx, dw, db, dgamma, dbeta


def conv_relu_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict[str, Any]
) -> tuple[np.ndarray, Cache]:
    """conv -> ReLU. x: (N, C, H, W); w: (F, C, HH, WW); b: (F,); conv_param: 'stride', 'pad'.
    Returns out (N, F, H', W') and cache."""
    from numpy_impl.fast_layers import conv_forward_fast

    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    out, relu_cache = relu_forward(a)
    return out, (conv_cache, relu_cache)


def conv_relu_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, F, H', W'). Returns dx (N, C, H, W), dw (F, C, HH, WW), db (F,)."""
    from numpy_impl.fast_layers import conv_backward_fast

    conv_cache, relu_cache = cache
    da = relu_backward(dout, relu_cache)
    return conv_backward_fast(da, conv_cache)


def conv_bn_relu_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    conv_param: dict[str, Any],
    bn_param: dict[str, Any],
) -> tuple[np.ndarray, Cache]:
    """conv -> spatial batchnorm -> ReLU.

    x: (N, C, H, W); w: (F, C, HH, WW); b: (F,); gamma, beta: (F,); conv_param: 'stride', 'pad';
    bn_param: as in batchnorm_forward ('mode' required). Returns out (N, F, H', W') and cache.
    """
    from numpy_impl.fast_layers import conv_forward_fast

    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    an, bn_cache = spatial_batchnorm_forward(a, gamma, beta, bn_param)
    out, relu_cache = relu_forward(an)
    return out, (conv_cache, bn_cache, relu_cache)


def conv_bn_relu_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, F, H', W'). Returns dx, dw, db, dgamma (F,), dbeta (F,)."""
    from numpy_impl.fast_layers import conv_backward_fast

    conv_cache, bn_cache, relu_cache = cache
    dan = relu_backward(dout, relu_cache)
    da, dgamma, dbeta = spatial_batchnorm_backward(dan, bn_cache)
    dx, dw, db = conv_backward_fast(da, conv_cache)
    return dx, dw, db, dgamma, dbeta


def conv_relu_pool_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    conv_param: dict[str, Any],
    pool_param: dict[str, Any],
) -> tuple[np.ndarray, Cache]:
    """conv -> ReLU -> max pool.

    x: (N, C, H, W); w: (F, C, HH, WW); b: (F,); conv_param: 'stride', 'pad';
    pool_param: 'pool_height', 'pool_width', 'stride'. Returns out (N, F, H'', W'') and cache.
    """
    from numpy_impl.fast_layers import conv_forward_fast, max_pool_forward_fast

    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    s, relu_cache = relu_forward(a)
    out, pool_cache = max_pool_forward_fast(s, pool_param)
    return out, (conv_cache, relu_cache, pool_cache)


def conv_relu_pool_backward(
    dout: np.ndarray, cache: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, F, H'', W''). Returns dx (N, C, H, W), dw (F, C, HH, WW), db (F,)."""
    from numpy_impl.fast_layers import conv_backward_fast, max_pool_backward_fast

    conv_cache, relu_cache, pool_cache = cache
    ds = max_pool_backward_fast(dout, pool_cache)
    da = relu_backward(ds, relu_cache)
    return conv_backward_fast(da, conv_cache)
