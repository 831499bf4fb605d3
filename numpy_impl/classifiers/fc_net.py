"""Fully-connected networks (CS231n assignment 1 Q4 / assignment 2 Q1-Q3).

Both models follow the course's model contract:
- ``self.params``: dict of parameter arrays, read on every ``loss`` call (the numerical gradient
  check perturbs those arrays in place);
- ``loss(X, y=None)``: with ``y=None`` a test-time forward pass returning scores (N, C);
  otherwise a training forward and backward pass returning ``(loss, grads)``, ``grads`` with
  exactly the keys of ``self.params``.

L2 regularization is ``0.5 * reg * sum(W**2)`` over the weight matrices only (not biases, not
gamma/beta), so its gradient is ``reg * W``.
"""

# ruff: noqa: NPY002 -- CS231n draws from NumPy's global generator on purpose: notebooks seed it
# with np.random.seed(231) and graders compare the resulting numbers.

from __future__ import annotations

import numbers

import numpy as np

from ..layer_utils import (
    affine_norm_relu_backward,
    affine_norm_relu_forward,
    affine_relu_backward,
    affine_relu_forward,
)
from ..layers import affine_backward, affine_forward, softmax_loss

__all__ = ["TwoLayerNet", "FullyConnectedNet"]

_NORMALIZATIONS = (None, "batchnorm", "layernorm")


def _require_dim(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _l2(params, names):
    """0.5 * sum of squared entries over the named weight matrices."""
    return 0.5 * sum(np.sum(params[n] * params[n]) for n in names)


class TwoLayerNet:
    """A two-layer fully-connected network with ReLU and softmax loss:

        affine - relu - affine - softmax

    Inputs have dimension D (images are flattened), the hidden layer H units, and there are C
    classes. Parameters: W1 (D, H), b1 (H,), W2 (H, C), b2 (C,), float64 as in the course.
    """

    def __init__(self, input_dim=3 * 32 * 32, hidden_dim=100, num_classes=10, weight_scale=1e-3,
                 reg=0.0):
        """
        Inputs:
        - input_dim: size D of the input.
        - hidden_dim: size H of the hidden layer.
        - num_classes: number C of classes.
        - weight_scale: standard deviation of the Gaussian weight initialization (biases start
          at zero).
        - reg: L2 regularization strength.
        """
        input_dim = _require_dim("input_dim", input_dim)
        hidden_dim = _require_dim("hidden_dim", hidden_dim)
        num_classes = _require_dim("num_classes", num_classes)
        self.params = {}
        self.reg = reg
        self.params["W1"] = weight_scale * np.random.randn(input_dim, hidden_dim)
        self.params["b1"] = np.zeros(hidden_dim)
        self.params["W2"] = weight_scale * np.random.randn(hidden_dim, num_classes)
        self.params["b2"] = np.zeros(num_classes)

    def loss(self, X, y=None):
        """Compute loss and gradient for a minibatch of data.

        Inputs:
        - X: (N, d_1, ..., d_k) input data with d_1 * ... * d_k = D.
        - y: (N,) labels; y[i] gives the label for X[i], or None.

        Returns scores (N, C) if y is None, else (loss, grads) with grads[k] the gradient of
        the loss with respect to self.params[k].
        """
        W1, b1 = self.params["W1"], self.params["b1"]
        W2, b2 = self.params["W2"], self.params["b2"]
        h, cache1 = affine_relu_forward(X, W1, b1)
        scores, cache2 = affine_forward(h, W2, b2)
        if y is None:
            return scores

        data_loss, dscores = softmax_loss(scores, y)
        loss = data_loss + self.reg * _l2(self.params, ("W1", "W2"))
        grads = {}
        dh, grads["W2"], grads["b2"] = affine_backward(dscores, cache2)
        _, grads["W1"], grads["b1"] = affine_relu_backward(dh, cache1)
        grads["W1"] = grads["W1"] + self.reg * W1
        grads["W2"] = grads["W2"] + self.reg * W2
        return loss, grads


class FullyConnectedNet:
    """A fully-connected network with any number of hidden layers:

        {affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax

    where normalization and dropout are optional and the {...} block repeats L - 1 times.
    Parameters: W1..WL, b1..bL, and gamma1..gamma(L-1), beta1..beta(L-1) for the hidden layers
    when normalization is used, all of ``dtype``.
    """

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout_keep_ratio=1,
                 normalization=None, reg=0.0, weight_scale=1e-2, dtype=np.float32, seed=None):
        """
        Inputs:
        - hidden_dims: list of integers, the size of each hidden layer.
        - input_dim: size D of the input.
        - num_classes: number C of classes.
        - dropout_keep_ratio: probability of KEEPING a unit in dropout (CS231n's convention;
          PyTorch's Dropout(p) takes the drop probability 1 - p). 1 means no dropout.
        - normalization: None, "batchnorm" or "layernorm".
        - reg: L2 regularization strength.
        - weight_scale: standard deviation of the Gaussian weight initialization.
        - dtype: NumPy dtype of all parameters and computations; float32 is faster, float64 is
          needed for numeric gradient checking.
        - seed: if not None, passed to the dropout layers, which then draw the same mask on every
          call (makes the model deterministic for gradient checks).
        """
        hidden_dims = list(hidden_dims)
        for i, h in enumerate(hidden_dims):
            _require_dim(f"hidden_dims[{i}]", h)
        input_dim = _require_dim("input_dim", input_dim)
        num_classes = _require_dim("num_classes", num_classes)
        if normalization not in _NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}"
            )
        if (isinstance(dropout_keep_ratio, bool) or not isinstance(dropout_keep_ratio, numbers.Real)
                or not 0 < dropout_keep_ratio <= 1):
            raise ValueError(
                "dropout_keep_ratio is the probability of keeping a unit and must lie in (0, 1], "
                f"got {dropout_keep_ratio!r}"
            )
        self.normalization = normalization
        self.use_dropout = dropout_keep_ratio != 1
        self.reg = reg
        self.num_layers = 1 + len(hidden_dims)
        self.dtype = dtype
        self.params = {}

        dims = [input_dim, *hidden_dims, num_classes]
        for i in range(self.num_layers):
            self.params[f"W{i + 1}"] = weight_scale * np.random.randn(dims[i], dims[i + 1])
            self.params[f"b{i + 1}"] = np.zeros(dims[i + 1])
            if normalization is not None and i < self.num_layers - 1:
                self.params[f"gamma{i + 1}"] = np.ones(dims[i + 1])
                self.params[f"beta{i + 1}"] = np.zeros(dims[i + 1])

        # When using dropout we need to pass a dropout_param dictionary to each dropout layer so
        # that the layer knows the dropout probability and the mode (train / test). The same
        # dictionary is passed to every dropout layer.
        self.dropout_param = {}
        if self.use_dropout:
            self.dropout_param = {"mode": "train", "p": dropout_keep_ratio}
            if seed is not None:
                self.dropout_param["seed"] = seed

        # Batchnorm keeps running means and variances, so each layer needs its own param dict;
        # layernorm needs one for eps only.
        self.bn_params = []
        if self.normalization == "batchnorm":
            self.bn_params = [{"mode": "train"} for _ in range(self.num_layers - 1)]
        if self.normalization == "layernorm":
            self.bn_params = [{} for _ in range(self.num_layers - 1)]

        # Cast all parameters to the correct datatype.
        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)

    def loss(self, X, y=None):
        """Compute loss and gradient for the fully-connected net.

        Inputs:
        - X: (N, d_1, ..., d_k) input data, cast to self.dtype.
        - y: (N,) labels, or None for test mode (batchnorm uses running statistics, dropout is
          the identity).

        Returns scores (N, C) if y is None, else (loss, grads).
        """
        X = X.astype(self.dtype, copy=False)
        mode = "test" if y is None else "train"

        # Set train/test mode for batchnorm params and dropout param since they behave
        # differently during training and testing.
        if self.use_dropout:
            self.dropout_param["mode"] = mode
        if self.normalization == "batchnorm":
            for bn_param in self.bn_params:
                bn_param["mode"] = mode

        caches = []
        out = X
        for i in range(1, self.num_layers):
            gamma = self.params.get(f"gamma{i}")
            beta = self.params.get(f"beta{i}")
            bn_param = self.bn_params[i - 1] if self.normalization else None
            out, cache = affine_norm_relu_forward(
                out, self.params[f"W{i}"], self.params[f"b{i}"], gamma, beta, bn_param,
                normalization=self.normalization,
                dropout_param=self.dropout_param if self.use_dropout else None,
            )
            caches.append(cache)
        L = self.num_layers
        scores, last_cache = affine_forward(out, self.params[f"W{L}"], self.params[f"b{L}"])

        # If test mode return early.
        if mode == "test":
            return scores

        weights = [f"W{i}" for i in range(1, L + 1)]
        data_loss, dscores = softmax_loss(scores, y)
        loss = data_loss + self.reg * _l2(self.params, weights)

        grads = {}
        dout, grads[f"W{L}"], grads[f"b{L}"] = affine_backward(dscores, last_cache)
        for i in range(L - 1, 0, -1):
            dout, dW, db, dgamma, dbeta = affine_norm_relu_backward(dout, caches[i - 1])
            grads[f"W{i}"], grads[f"b{i}"] = dW, db
            if self.normalization is not None:
                grads[f"gamma{i}"], grads[f"beta{i}"] = dgamma, dbeta
        for name in weights:
            grads[name] = grads[name] + self.reg * self.params[name]
        return loss, grads
