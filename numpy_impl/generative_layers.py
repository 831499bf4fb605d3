"""The layers of CS231n's GAN notebook that the course takes from PyTorch (``nn.LeakyReLU``,
``nn.ConvTranspose2d``), written in NumPy with CS231n's forward/backward convention: forwards
return ``(out, cache)``, backwards take ``(dout, cache)`` and return the gradients in the order
of the forward's array arguments (see ``numpy_impl.layers``).

- Leaky ReLU (Maas et al., "Rectifier Nonlinearities Improve Neural Network Acoustic Models",
  2013): out = x for x > 0, negative_slope * x otherwise.
- Transposed convolution (the "fractionally strided" convolution of DCGAN, Radford et al.,
  "Unsupervised Representation Learning with Deep Convolutional GANs", 2016): the gradient of a
  convolution with respect to its input, used as a layer. Every input pixel x[n, c, i, j] adds
  x[n, c, i, j] * w[c, :, :, :] to the output window that starts at (i * stride, j * stride);
  ``pad`` then crops that many rows and columns from each border.

The torch twin is ``torch_impl.generative_layers``; both validate through
``twin_checks`` (same messages).
"""

from __future__ import annotations

import numpy as np

from twin_checks import (
    check_conv_transpose_args,
    check_dout,
    require_float,
    require_negative_slope,
    shape_of,
)

__all__ = [
    "leaky_relu_forward",
    "leaky_relu_backward",
    "conv_transpose_forward_naive",
    "conv_transpose_backward_naive",
]


def leaky_relu_forward(x, negative_slope=0.01):
    """out = x where x > 0, else negative_slope * x, elementwise. x: any shape.

    cache = (x, negative_slope).
    """
    require_float("x", x)
    negative_slope = require_negative_slope(negative_slope)
    return np.where(x > 0, x, negative_slope * x), (x, negative_slope)


def leaky_relu_backward(dout, cache):
    """dx = dout where x > 0, else negative_slope * dout (the slope at the kink x == 0 is
    negative_slope, as in PyTorch). cache = (x, negative_slope)."""
    x, negative_slope = cache
    check_dout(dout, shape_of(x))
    return np.where(x > 0, dout, negative_slope * dout)


def conv_transpose_forward_naive(x, w, b, conv_param):
    """Transposed convolution (no output padding, no dilation, one group).

    x: (N, C, H, W); w: (C, F, HH, WW) (nn.ConvTranspose2d's layout); b: (F,);
    conv_param: 'stride', 'pad'. Output (N, F, H', W') with H' = (H - 1) * stride - 2 * pad + HH:
        full[n, :, i*stride : i*stride + HH, j*stride : j*stride + WW] += sum_c x[n, c, i, j] w[c]
        out = full[:, :, pad : pad + H', pad : pad + W'] + b.
    It is conv_backward_naive's dx with x in the role of dout: the convolution with weight w
    (read as (F_conv = C, C_conv = F, HH, WW)) maps (N, F, H', W') to (N, C, H, W), and this
    layer is its adjoint. Loops over input positions (teaching version).
    cache = (x, w, b, conv_param).
    """
    require_float("x", x)
    stride, pad, H_out, W_out = check_conv_transpose_args(x, w, b, conv_param)
    N, _, H, W = x.shape
    _, F, HH, WW = w.shape
    dtype = np.result_type(x, w, b)
    full = np.zeros((N, F, H_out + 2 * pad, W_out + 2 * pad), dtype=dtype)
    for i in range(H):
        for j in range(W):
            hs, ws = slice(i * stride, i * stride + HH), slice(j * stride, j * stride + WW)
            full[:, :, hs, ws] += np.tensordot(x[:, :, i, j], w, axes=([1], [0]))
    out = full[:, :, pad : pad + H_out, pad : pad + W_out] + b.reshape(1, F, 1, 1)
    return out, (x, w, b, conv_param)


def conv_transpose_backward_naive(dout, cache):
    """dout: (N, F, H', W'); cache = (x, w, b, conv_param).

    Place dout back on the uncropped map (zeros where the padding cropped); the input pixel
    (i, j) wrote the window dfull[:, :, i*stride : i*stride + HH, j*stride : j*stride + WW], so
        dx[:, c, i, j] = sum_{f,k,l} window[:, f, k, l] w[c, f, k, l]   (a convolution of dout)
        dw[c] += sum_n x[n, c, i, j] window[n]                          (conv's weight gradient)
        db = sum over (n, i, j) of dout.
    Returns dx (N, C, H, W), dw (C, F, HH, WW), db (F,).
    """
    x, w, b, conv_param = cache
    stride, pad, H_out, W_out = check_conv_transpose_args(x, w, b, conv_param)
    N, C, H, W = x.shape
    _, F, HH, WW = w.shape
    check_dout(dout, (N, F, H_out, W_out))
    dfull = np.zeros((N, F, H_out + 2 * pad, W_out + 2 * pad), dtype=dout.dtype)
    dfull[:, :, pad : pad + H_out, pad : pad + W_out] = dout
    dx = np.empty((N, C, H, W), dtype=np.result_type(dout, w))
    dw = np.zeros(w.shape, dtype=np.result_type(dout, x))
    for i in range(H):
        for j in range(W):
            window = dfull[:, :, i * stride : i * stride + HH, j * stride : j * stride + WW]
            dx[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3]))
            dw += np.tensordot(x[:, :, i, j], window, axes=([0], [0]))
    db = dout.sum(axis=(0, 2, 3))
    return dx, dw, db
