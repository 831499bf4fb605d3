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
from ..layers import (
    affine_backward,
    affine_forward,
    batchnorm_backward_alt,
    batchnorm_forward,
    dropout_backward,
    dropout_forward,
    layernorm_backward,
    layernorm_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax_loss,
    tanh_backward,
    tanh_forward,
)

__all__ = ["TwoLayerNet", "FullyConnectedNet"]

_NORMALIZATIONS = (None, "batchnorm", "layernorm")
_NORM_LAYERS = {
    "batchnorm": (batchnorm_forward, batchnorm_backward_alt),
    "layernorm": (layernorm_forward, layernorm_backward),
}
# ReLU goes through layer_utils' sandwich (the course's); the others through _affine_norm_act_*.
_ACTIVATIONS = {
    "relu": None,
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "tanh": (tanh_forward, tanh_backward),
}


def _affine_norm_act_forward(
    x, w, b, gamma, beta, norm_param, normalization, dropout_param, activation
):
    """affine -> [batch/layer norm] -> activation -> [dropout], one hidden layer.

    x: (N, d_1, ..., d_k); w: (D, M); b: (M,); gamma, beta: (M,) or None; activation one of
    _ACTIVATIONS. Returns out (N, M) and a cache for _affine_norm_act_backward.
    """
    if activation == "relu":
        out, cache = affine_norm_relu_forward(
            x,
            w,
            b,
            gamma,
            beta,
            norm_param,
            normalization=normalization,
            dropout_param=dropout_param,
        )
        return out, (activation, cache)
    act_forward, _ = _ACTIVATIONS[activation]
    out, fc_cache = affine_forward(x, w, b)
    norm_cache = None
    if normalization is not None:
        out, norm_cache = _NORM_LAYERS[normalization][0](out, gamma, beta, norm_param)
    out, act_cache = act_forward(out)
    drop_cache = None
    if dropout_param is not None:
        out, drop_cache = dropout_forward(out, dropout_param)
    return out, (activation, (normalization, fc_cache, norm_cache, act_cache, drop_cache))


def _affine_norm_act_backward(dout, cache):
    """dout: (N, M). Returns dx, dw (D, M), db (M,), dgamma, dbeta (None without norm)."""
    activation, cache = cache
    if activation == "relu":
        return affine_norm_relu_backward(dout, cache)
    normalization, fc_cache, norm_cache, act_cache, drop_cache = cache
    if drop_cache is not None:
        dout = dropout_backward(dout, drop_cache)
    da = _ACTIVATIONS[activation][1](dout, act_cache)
    dgamma = dbeta = None
    if normalization is not None:
        da, dgamma, dbeta = _NORM_LAYERS[normalization][1](da, norm_cache)
    dx, dw, db = affine_backward(da, fc_cache)
    return dx, dw, db, dgamma, dbeta


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

    def __init__(
        self, input_dim=3 * 32 * 32, hidden_dim=100, num_classes=10, weight_scale=1e-3, reg=0.0
    ):
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

    where normalization and dropout are optional and the {...} block repeats L - 1 times. The
    nonlinearity is ReLU as in the course, or sigmoid / tanh (``activation``; the notes compare
    them).
    Parameters: W1..WL, b1..bL, and gamma1..gamma(L-1), beta1..beta(L-1) for the hidden layers
    when normalization is used, all of ``dtype``.
    """

    def __init__(
        self,
        hidden_dims,
        input_dim=3 * 32 * 32,
        num_classes=10,
        dropout_keep_ratio=1,
        normalization=None,
        reg=0.0,
        weight_scale=1e-2,
        dtype=np.float32,
        seed=None,
        activation="relu",
    ):
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
        - activation: hidden-layer nonlinearity, "relu" (the course's), "sigmoid" or "tanh".
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
        if (
            isinstance(dropout_keep_ratio, bool)
            or not isinstance(dropout_keep_ratio, numbers.Real)
            or not 0 < dropout_keep_ratio <= 1
        ):
            raise ValueError(
                "dropout_keep_ratio is the probability of keeping a unit and must lie in (0, 1], "
                f"got {dropout_keep_ratio!r}"
            )
        if not isinstance(activation, str) or activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(_ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
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

        hidden, caches = self._hidden_forward(X)
        L = self.num_layers
        out = hidden[-1] if hidden else X
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
            dout, dW, db, dgamma, dbeta = _affine_norm_act_backward(dout, caches[i - 1])
            grads[f"W{i}"], grads[f"b{i}"] = dW, db
            if self.normalization is not None:
                grads[f"gamma{i}"], grads[f"beta{i}"] = dgamma, dbeta
        for name in weights:
            grads[name] = grads[name] + self.reg * self.params[name]
        return loss, grads

    def _hidden_forward(self, X):
        """Run the L - 1 hidden layers in the current modes. X: (N, d_1, ..., d_k) of
        self.dtype. Returns (outputs, caches): each hidden layer's output (N, H_i) and cache."""
        outputs, caches = [], []
        out = X
        for i in range(1, self.num_layers):
            out, cache = _affine_norm_act_forward(
                out,
                self.params[f"W{i}"],
                self.params[f"b{i}"],
                self.params.get(f"gamma{i}"),
                self.params.get(f"beta{i}"),
                self.bn_params[i - 1] if self.normalization else None,
                self.normalization,
                self.dropout_param if self.use_dropout else None,
                self.activation,
            )
            outputs.append(out)
            caches.append(cache)
        return outputs, caches

    def hidden_activations(self, X, mode="test"):
        """The output of every hidden layer (after the nonlinearity and dropout) for input X.

        Inputs:
        - X: (N, d_1, ..., d_k) input data.
        - mode: "test" (batchnorm uses running statistics, dropout is the identity) or "train"
          (batch statistics and dropout masks, as during training; batchnorm's running averages
          are left as they were).

        Returns a list of L - 1 arrays, the i-th of shape (N, hidden_dims[i]).
        """
        if mode not in ("train", "test"):
            raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
        saved = [
            {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in p.items()}
            for p in self.bn_params
        ]
        saved_dropout = dict(self.dropout_param)
        try:
            if self.use_dropout:
                self.dropout_param["mode"] = mode
            if self.normalization == "batchnorm":
                for bn_param in self.bn_params:
                    bn_param["mode"] = mode
            outputs, _ = self._hidden_forward(X.astype(self.dtype, copy=False))
        finally:
            # A diagnostic pass must not move batchnorm's running averages or modes.
            for bn_param, old in zip(self.bn_params, saved, strict=True):
                bn_param.clear()
                bn_param.update(old)
            self.dropout_param.clear()
            self.dropout_param.update(saved_dropout)
        return outputs
