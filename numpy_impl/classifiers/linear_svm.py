"""Structured (multiclass) SVM loss for a linear classifier (CS231n assignment 1, Q2).

For scores s = X[i] @ W and margin Delta (``delta``, 1 by default as in the course):

    L = (1/N) sum_i sum_{j != y_i} max(0, s_j - s_{y_i} + Delta)  +  reg * sum(W * W)

The notes point out that Delta and reg trade off against each other (only their ratio matters
once W can scale freely), which is why the course fixes Delta = 1; ``delta`` lets the notes'
examples with other margins be reproduced.

Each positive margin pushes column j of W towards X[i] and column y_i away from it, which is
where dW's two updates come from. As in the course, the regularization is ``reg * sum(W*W)``
(gradient ``2 * reg * W``), not the 0.5 * reg used by the networks in assignment 2.
"""

from __future__ import annotations

import numpy as np

from ._linear_checks import check_delta, check_linear_loss_args


def svm_loss_naive(W, X, y, reg, delta=1.0):
    """Structured SVM loss, naive implementation (with loops).

    Inputs:
    - W: (D, C) weights.
    - X: (N, D) minibatch of data.
    - y: (N,) labels; y[i] = c means X[i] has label c, 0 <= c < C.
    - reg: (float) regularization strength.
    - delta: (float) the margin Delta >= 0 the correct class score must win by.

    Returns (loss, dW): loss a scalar, dW (D, C) the gradient with respect to W.
    A margin of exactly 0 contributes no gradient (the subgradient chosen at the hinge's kink,
    the same choice as svm_loss_vectorized).
    """
    N, _, C, dtype = check_linear_loss_args(W, X, y, reg)
    delta = check_delta(delta)
    dW = np.zeros(W.shape, dtype=dtype)
    loss = 0.0
    for i in range(N):
        scores = X[i].dot(W)
        correct_class_score = scores[y[i]]
        for j in range(C):
            if j == y[i]:
                continue
            margin = scores[j] - correct_class_score + delta
            if margin > 0:
                loss += margin
                dW[:, j] += X[i]
                dW[:, y[i]] -= X[i]
    loss /= N
    dW /= N
    loss += reg * np.sum(W * W)
    dW += 2 * reg * W
    return dtype.type(loss), dW


def svm_loss_vectorized(W, X, y, reg, delta=1.0):
    """Structured SVM loss, vectorized implementation. Same inputs and outputs as
    svm_loss_naive.

    dW = X^T @ G / N + 2 reg W, where G[i, j] = 1 for each positive margin j != y_i and
    G[i, y_i] = -(number of positive margins in row i).
    """
    N, _, _, dtype = check_linear_loss_args(W, X, y, reg)
    delta = check_delta(delta)
    rows = np.arange(N)
    scores = (X @ W).astype(dtype, copy=False)
    correct = scores[rows, y][:, None]
    margins = np.maximum(0, scores - correct + delta)
    margins[rows, y] = 0
    loss = margins.sum() / N + reg * np.sum(W * W)
    G = (margins > 0).astype(dtype)
    G[rows, y] = -G.sum(axis=1)
    dW = (X.T @ G) / N + 2 * reg * W
    return dtype.type(loss), dW.astype(dtype, copy=False)
