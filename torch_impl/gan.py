"""GAN losses of CS231n assignment 3 (``cs231n/gan_pytorch.py``), on torch_impl's Functions.

Each returns a scalar tensor tracked by autograd; every mean runs over all elements of its input
(the course passes (N,) or (N, 1) scores).

- ``discriminator_loss(logits_real, logits_fake) = bce(logits_real, 1) + bce(logits_fake, 0)``
- ``generator_loss(logits_fake) = bce(logits_fake, 1)``
- ``ls_discriminator_loss(scores_real, scores_fake) = 0.5 mean((real - 1)^2) + 0.5 mean(fake^2)``
- ``ls_generator_loss(scores_fake) = 0.5 mean((fake - 1)^2)``

``bce`` is binary cross-entropy on logits in the stable form max(x, 0) - x t + log(1 + e^-|x|)
(:class:`BCEWithLogitsFunction`), equal to ``F.binary_cross_entropy_with_logits`` with
reduction='mean'. The NumPy twin (``numpy_impl.gan``) returns the gradients as well.
"""

from __future__ import annotations

import torch
from torch import Tensor

from torch_impl.functions import BCEWithLogitsFunction, HalfSquaredErrorFunction
from twin_checks import check_scores

__all__ = [
    "BCEWithLogitsFunction",
    "HalfSquaredErrorFunction",
    "bce_loss",
    "discriminator_loss",
    "generator_loss",
    "ls_discriminator_loss",
    "ls_generator_loss",
]


def bce_loss(input: Tensor, target: Tensor) -> Tensor:
    """Mean binary cross-entropy of sigmoid(input) against target (same shape), from logits."""
    return BCEWithLogitsFunction.apply(input, target)


def discriminator_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """logits_real, logits_fake: (N,) or (N, 1) -> scalar."""
    check_scores("logits_real", logits_real)
    check_scores("logits_fake", logits_fake)
    return bce_loss(logits_real, torch.ones_like(logits_real)) + bce_loss(
        logits_fake, torch.zeros_like(logits_fake)
    )


def generator_loss(logits_fake: Tensor) -> Tensor:
    """logits_fake: (N,) or (N, 1) -> scalar (the non-saturating loss)."""
    check_scores("logits_fake", logits_fake)
    return bce_loss(logits_fake, torch.ones_like(logits_fake))


def ls_discriminator_loss(scores_real: Tensor, scores_fake: Tensor) -> Tensor:
    """scores_real, scores_fake: (N,) or (N, 1) -> scalar."""
    check_scores("scores_real", scores_real)
    check_scores("scores_fake", scores_fake)
    return HalfSquaredErrorFunction.apply(
        scores_real, torch.ones_like(scores_real)
    ) + HalfSquaredErrorFunction.apply(scores_fake, torch.zeros_like(scores_fake))


def ls_generator_loss(scores_fake: Tensor) -> Tensor:
    """scores_fake: (N,) or (N, 1) -> scalar."""
    check_scores("scores_fake", scores_fake)
    return HalfSquaredErrorFunction.apply(scores_fake, torch.ones_like(scores_fake))
