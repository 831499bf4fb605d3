"""ThreeLayerConvNet (CS231n assignment 2, Q4):

    conv - relu - 2x2 max pool - affine - relu - affine - softmax

The convolution has stride 1 and zero padding (filter_size - 1) // 2, which preserves the
spatial size for odd filter sizes ("same" padding). The model follows the course's contract:
``loss(X)`` returns scores, ``loss(X, y)`` returns ``(loss, grads)``; L2 regularization is
``0.5 * reg * sum(W**2)`` over W1, W2, W3.
"""

# ruff: noqa: NPY002 -- CS231n draws from NumPy's global generator on purpose: notebooks seed it
# with np.random.seed(231) and graders compare the resulting numbers.

from __future__ import annotations

import numbers

import numpy as np

from twin_checks import conv_output_shape, pool_output_shape

from ..layer_utils import (
    affine_relu_backward,
    affine_relu_forward,
    conv_relu_pool_backward,
    conv_relu_pool_forward,
)
from ..layers import affine_backward, affine_forward, softmax_loss

__all__ = ["ThreeLayerConvNet"]


class ThreeLayerConvNet:
    """A three-layer convolutional network operating on minibatches of shape (N, C, H, W).

    Parameters: W1 (F, C, filter_size, filter_size), b1 (F,), W2 (F * H2 * W2, hidden_dim),
    b2 (hidden_dim,), W3 (hidden_dim, num_classes), b3 (num_classes,), where H2 x W2 is the size
    after the conv and the 2x2 pool (H/2 x W/2 for odd filter sizes and even H, W).
    """

    def __init__(
        self,
        input_dim=(3, 32, 32),
        num_filters=32,
        filter_size=7,
        hidden_dim=100,
        num_classes=10,
        weight_scale=1e-3,
        reg=0.0,
        dtype=np.float32,
    ):
        """
        Inputs:
        - input_dim: tuple (C, H, W) giving the size of input data.
        - num_filters: number F of filters in the convolutional layer.
        - filter_size: width/height of the filters.
        - hidden_dim: number of units in the fully-connected hidden layer.
        - num_classes: number of scores from the final affine layer.
        - weight_scale: standard deviation of the Gaussian weight initialization.
        - reg: L2 regularization strength.
        - dtype: NumPy dtype of the parameters and computations.
        """
        if len(tuple(input_dim)) != 3:
            raise ValueError(f"input_dim must be (C, H, W), got {input_dim!r}")
        for name, v in (
            ("num_filters", num_filters),
            ("filter_size", filter_size),
            ("hidden_dim", hidden_dim),
            ("num_classes", num_classes),
            *(("input_dim", d) for d in input_dim),
        ):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must hold positive integers, got {v!r}")
        C, H, W = (int(d) for d in input_dim)
        self.params = {}
        self.reg = reg
        self.dtype = dtype
        self.conv_param = {"stride": 1, "pad": (filter_size - 1) // 2}
        self.pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
        Hc, Wc = conv_output_shape(H, W, filter_size, filter_size, **self.conv_param)
        Hp, Wp = pool_output_shape(Hc, Wc, **self.pool_param)

        self.params["W1"] = weight_scale * np.random.randn(num_filters, C, filter_size, filter_size)
        self.params["b1"] = np.zeros(num_filters)
        self.params["W2"] = weight_scale * np.random.randn(num_filters * Hp * Wp, hidden_dim)
        self.params["b2"] = np.zeros(hidden_dim)
        self.params["W3"] = weight_scale * np.random.randn(hidden_dim, num_classes)
        self.params["b3"] = np.zeros(num_classes)

        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)

    def loss(self, X, y=None):
        """Evaluate loss and gradient for the three-layer convolutional network.

        Inputs: X (N, C, H, W), cast to self.dtype; y (N,) labels or None.
        Returns scores (N, num_classes) if y is None, else (loss, grads).
        """
        X = X.astype(self.dtype, copy=False)
        W1, b1 = self.params["W1"], self.params["b1"]
        W2, b2 = self.params["W2"], self.params["b2"]
        W3, b3 = self.params["W3"], self.params["b3"]

        pooled, cache1 = conv_relu_pool_forward(X, W1, b1, self.conv_param, self.pool_param)
        hidden, cache2 = affine_relu_forward(pooled, W2, b2)
        scores, cache3 = affine_forward(hidden, W3, b3)
        if y is None:
            return scores

        data_loss, dscores = softmax_loss(scores, y)
        loss = data_loss + 0.5 * self.reg * (np.sum(W1 * W1) + np.sum(W2 * W2) + np.sum(W3 * W3))
        grads = {}
        dhidden, grads["W3"], grads["b3"] = affine_backward(dscores, cache3)
        dpooled, grads["W2"], grads["b2"] = affine_relu_backward(dhidden, cache2)
        _, grads["W1"], grads["b1"] = conv_relu_pool_backward(dpooled, cache1)
        grads["W1"] = grads["W1"] + self.reg * W1
        grads["W2"] = grads["W2"] + self.reg * W2
        grads["W3"] = grads["W3"] + self.reg * W3
        return loss, grads
