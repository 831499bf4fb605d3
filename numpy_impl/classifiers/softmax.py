"""Softmax (cross-entropy) loss for a linear classifier (CS231n assignment 1, Q3).

For scores s = X[i] @ W:

    L = (1/N) sum_i -log( exp(s_{y_i}) / sum_j exp(s_j) )  +  reg * sum(W * W)
    dL/ds_j = p_j - [j == y_i]   with p = softmax(s)

Numerical stability: softmax(s) = softmax(s - max(s)), so every exponent is made <= 0 before
exponentiating and the log-probability is s_y - max(s) - log(sum exp(s - max(s))). Scores of
1e4 (or 1e300) therefore neither overflow nor produce NaN.
"""

from __future__ import annotations

import numpy as np

from ._linear_checks import check_linear_loss_args


def softmax_loss_naive(W, X, y, reg):
    """Softmax loss, naive implementation (with loops).

    Inputs:
    - W: (D, C) weights.
    - X: (N, D) minibatch of data.
    - y: (N,) labels; y[i] = c means X[i] has label c, 0 <= c < C.
    - reg: (float) regularization strength; the penalty is reg * sum(W * W).

    Returns (loss, dW): loss a scalar, dW (D, C) the gradient with respect to W.
    """
    N, _, C, dtype = check_linear_loss_args(W, X, y, reg)
    dW = np.zeros(W.shape, dtype=dtype)
    loss = 0.0
    for i in range(N):
        scores = X[i].dot(W)
        shifted = scores - np.max(scores)
        exp_scores = np.exp(shifted)
        sum_exp = np.sum(exp_scores)
        loss += np.log(sum_exp) - shifted[y[i]]
        for j in range(C):
            p_j = exp_scores[j] / sum_exp
            dW[:, j] += (p_j - (j == y[i])) * X[i]
    loss /= N
    dW /= N
    loss += reg * np.sum(W * W)
    dW += 2 * reg * W
    return dtype.type(loss), dW


def softmax_loss_vectorized(W, X, y, reg):
    """Softmax loss, vectorized version. Same inputs and outputs as softmax_loss_naive."""
    N, _, _, dtype = check_linear_loss_args(W, X, y, reg)
    rows = np.arange(N)
    scores = (X @ W).astype(dtype, copy=False)
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[rows, y].sum() / N + reg * np.sum(W * W)
    dscores = np.exp(log_probs)
    dscores[rows, y] -= 1
    dW = (X.T @ dscores) / N + 2 * reg * W
    return dtype.type(loss), dW.astype(dtype, copy=False)
