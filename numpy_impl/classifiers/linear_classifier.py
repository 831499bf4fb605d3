"""Linear classifiers trained with minibatch SGD (CS231n assignment 1, Q2 and Q3).

``LinearClassifier`` holds W (D, C) and the training loop; the subclasses only choose the loss:
``LinearSVM`` (structured SVM) and ``Softmax`` (cross-entropy). The bias is folded into W with
the "bias trick" (append a constant-1 column to X), as in the course.
"""

# ruff: noqa: NPY002 -- CS231n draws from NumPy's global generator on purpose: notebooks seed it
# with np.random.seed(231) and graders compare the resulting numbers.

from __future__ import annotations

import numbers

import numpy as np

from twin_checks import require_ndim, shape_of

from ._linear_checks import check_delta
from .linear_svm import svm_loss_vectorized
from .softmax import softmax_loss_vectorized


class LinearClassifier:
    """Base class: W (D, C), created on the first call to ``train``."""

    def __init__(self):
        self.W = None

    def train(
        self,
        X,
        y,
        learning_rate=1e-3,
        reg=1e-5,
        num_iters=100,
        batch_size=200,
        verbose=False,
    ):
        """Train this linear classifier using stochastic gradient descent.

        Inputs:
        - X: (N, D) training data; N examples of dimension D.
        - y: (N,) training labels; y[i] = c means X[i] has label 0 <= c < C.
        - learning_rate: (float) learning rate for optimization.
        - reg: (float) regularization strength.
        - num_iters: (integer) number of steps to take when optimizing.
        - batch_size: (integer) number of training examples to use at each step.
        - verbose: (boolean) if true, print progress during optimization.

        W is initialized lazily as 0.001 * randn(D, C) with C = max(y) + 1 (in X's floating dtype),
        and each minibatch is drawn with replacement by ``np.random.choice`` (the course's
        sampling, so seeded runs match). Returns loss_history: the loss at each iteration.
        """
        X = np.asarray(X)
        y = np.asarray(y)
        require_ndim("X", X, 2, "(N, D)")
        if not np.issubdtype(y.dtype, np.integer):
            raise TypeError(f"y must hold integer labels, got dtype {y.dtype}")
        num_train, dim = X.shape
        if y.shape != (num_train,):
            raise ValueError(f"y must have shape ({num_train},), got {y.shape}")
        if num_train < 1:
            raise ValueError("X must hold at least one training example")
        for name, value, minimum in (("num_iters", num_iters, 0), ("batch_size", batch_size, 1)):
            integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            if not integral or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        num_classes = int(np.max(y)) + 1  # assume y takes values 0...K-1 where K is C
        dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.dtype(np.float64)
        if self.W is None:
            # lazily initialize W
            self.W = (0.001 * np.random.randn(dim, num_classes)).astype(dtype)
        elif self.W.shape[0] != dim or self.W.shape[1] < num_classes:
            raise ValueError(
                f"existing W of shape {shape_of(self.W)} does not fit X of shape {(num_train, dim)}"
                f" with {num_classes} classes"
            )

        loss_history = []
        for it in range(num_iters):
            indices = np.random.choice(num_train, batch_size, replace=True)
            X_batch = X[indices]
            y_batch = y[indices]
            loss, grad = self.loss(X_batch, y_batch, reg)
            loss_history.append(loss)
            self.W = self.W - learning_rate * grad.astype(self.W.dtype, copy=False)
            if verbose and it % 100 == 0:
                print(f"iteration {it} / {num_iters}: loss {loss:f}")
        return loss_history

    def predict(self, X):
        """Predict labels for data points.

        Input X: (N, D). Returns y_pred: (N,) predicted classes (argmax of X @ W).
        """
        if self.W is None:
            raise ValueError("call train(X, y) before predict(X)")
        X = np.asarray(X)
        require_ndim("X", X, 2, "(N, D)")
        if X.shape[1] != self.W.shape[0]:
            raise ValueError(
                f"X must have shape (N, {self.W.shape[0]}) to match W, got {shape_of(X)}"
            )
        return np.argmax(X.dot(self.W), axis=1)

    def loss(self, X_batch, y_batch, reg):
        """Compute the loss function and its derivative; subclasses override this.

        Inputs: X_batch (N, D); y_batch (N,); reg (float).
        Returns (loss, dW) with dW shaped like self.W.
        """
        raise NotImplementedError("use a subclass (LinearSVM or Softmax) that defines loss()")


class LinearSVM(LinearClassifier):
    """A subclass that uses the multiclass SVM loss function.

    - delta: the SVM margin (default 1, the course's).
    """

    def __init__(self, delta=1.0):
        super().__init__()
        self.delta = check_delta(delta)

    def loss(self, X_batch, y_batch, reg):
        return svm_loss_vectorized(self.W, X_batch, y_batch, reg, delta=self.delta)


class Softmax(LinearClassifier):
    """A subclass that uses the softmax + cross-entropy loss function."""

    def loss(self, X_batch, y_batch, reg):
        return softmax_loss_vectorized(self.W, X_batch, y_batch, reg)
