"""GAN losses of CS231n assignment 3 in NumPy, each returning its gradient.

Convention (like ``layers.softmax_loss(x, y) -> (loss, dx)``): every function returns
``(loss, grads)`` where ``loss`` is a scalar and ``grads`` is the gradient of ``loss`` with
respect to the input when the function takes one array, or a tuple of gradients in argument
order when it takes two. Gradients have the inputs' shapes and dtypes.

- Vanilla GAN (Goodfellow et al.): binary cross-entropy on the discriminator's LOGITS, computed
  in the numerically stable form max(x, 0) - x*t + log(1 + exp(-|x|)), which never exponentiates
  a large positive number; it equals PyTorch's ``F.binary_cross_entropy_with_logits`` (mean).
  ``discriminator_loss = bce(real, 1) + bce(fake, 0)``, ``generator_loss = bce(fake, 1)``.
- Least-squares GAN (Mao et al.): ``ls_discriminator_loss = 0.5 mean((real - 1)^2) +
  0.5 mean(fake^2)``, ``ls_generator_loss = 0.5 mean((fake - 1)^2)``.

Every mean runs over all elements of its input (the course passes (N,) or (N, 1) score arrays).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from twin_checks import check_same_shape, check_scores  # pure Python, shared with torch_impl

if TYPE_CHECKING:
    from numpy_impl.layers import Loss


def _sigmoid_minus(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """sigmoid(x) - t without cancellation: with e = exp(-|x|), sigmoid(x) = 1 - e/(1+e) for
    x >= 0 and e/(1+e) for x < 0, so the tiny e/(1+e) is never added to 1 and lost (the
    gradient of bce(50, 1) is -1.9e-22, not 0)."""
    e = np.exp(-np.abs(x))
    small = e / (1 + e)
    return np.where(x >= 0, (1 - t) - small, small - t)


def bce_loss(input: np.ndarray, target: np.ndarray) -> tuple[Loss, tuple[np.ndarray, np.ndarray]]:
    """Mean binary cross-entropy between sigmoid(input) and target, from logits.

    input: any shape, float logits; target: same shape, values in [0, 1].
    loss = mean(max(x, 0) - x t + log(1 + exp(-|x|))).
    Returns (loss, (dinput, dtarget)): dinput = (sigmoid(x) - t) / n, dtarget = -x / n.
    """
    check_scores("input", input)
    check_same_shape("target", target, "input", input)
    n = input.size
    x, t = input, np.asarray(target, dtype=input.dtype)
    loss = (np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))).mean()
    return loss, (_sigmoid_minus(x, t) / n, -x / n)


def discriminator_loss(
    logits_real: np.ndarray, logits_fake: np.ndarray
) -> tuple[Loss, tuple[np.ndarray, np.ndarray]]:
    """Vanilla GAN discriminator loss: bce(logits_real, 1) + bce(logits_fake, 0).

    logits_real: (N,) or (N, 1) scores on real data; logits_fake: scores on generated data
    (any shapes, each averaged over its own elements).
    Returns (loss, (dlogits_real, dlogits_fake)).
    """
    check_scores("logits_real", logits_real)
    check_scores("logits_fake", logits_fake)
    loss_real, (d_real, _) = bce_loss(logits_real, np.ones_like(logits_real))
    loss_fake, (d_fake, _) = bce_loss(logits_fake, np.zeros_like(logits_fake))
    return loss_real + loss_fake, (d_real, d_fake)


def generator_loss(logits_fake: np.ndarray) -> tuple[Loss, np.ndarray]:
    """Vanilla (non-saturating) GAN generator loss: bce(logits_fake, 1).

    logits_fake: (N,) or (N, 1). Returns (loss, dlogits_fake).
    """
    check_scores("logits_fake", logits_fake)
    loss, (d_fake, _) = bce_loss(logits_fake, np.ones_like(logits_fake))
    return loss, d_fake


def _half_mse(scores: np.ndarray, target: float) -> tuple[Loss, np.ndarray]:
    """0.5 * mean((scores - target)^2) and its gradient (scores - target) / n."""
    diff = scores - np.asarray(target, dtype=scores.dtype)
    return 0.5 * (diff**2).mean(), diff / scores.size


def ls_discriminator_loss(
    scores_real: np.ndarray, scores_fake: np.ndarray
) -> tuple[Loss, tuple[np.ndarray, np.ndarray]]:
    """Least-squares GAN discriminator loss 0.5 mean((real - 1)^2) + 0.5 mean(fake^2).

    scores_real, scores_fake: (N,) or (N, 1). Returns (loss, (dscores_real, dscores_fake)).
    """
    check_scores("scores_real", scores_real)
    check_scores("scores_fake", scores_fake)
    loss_real, d_real = _half_mse(scores_real, 1.0)
    loss_fake, d_fake = _half_mse(scores_fake, 0.0)
    return loss_real + loss_fake, (d_real, d_fake)


def ls_generator_loss(scores_fake: np.ndarray) -> tuple[Loss, np.ndarray]:
    """Least-squares GAN generator loss 0.5 mean((fake - 1)^2).

    scores_fake: (N,) or (N, 1). Returns (loss, dscores_fake).
    """
    check_scores("scores_fake", scores_fake)
    return _half_mse(scores_fake, 1.0)
