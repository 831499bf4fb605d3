"""The models, noise and optimizer of CS231n's ``gan_pytorch.py``, built from torch_impl layers.

Goodfellow et al., "Generative Adversarial Nets" (2014) for the fully connected GAN; Mao et al.,
"Least Squares Generative Adversarial Networks" (2017) for the LS losses; Radford et al.,
"Unsupervised Representation Learning with Deep Convolutional GANs" (2016) for the DC models
(the course's variant, after the InfoGAN paper's MNIST architecture).

Images are flattened (N, 784) vectors in [-1, 1] (the generators end in tanh); the
discriminators take (N, 784) or (N, 1, 28, 28) and return (N, 1) logits. Only the containers
(nn.Sequential) come from torch.nn; every layer with math is torch_impl's.
"""

from __future__ import annotations

import torch
from torch import nn

from torch_impl import nn as tnn
from torch_impl import optim as topt
from torch_impl.gan import (
    discriminator_loss,
    generator_loss,
    ls_discriminator_loss,
    ls_generator_loss,
)
from torch_impl.nn import ConvTranspose2d, LeakyReLU
from twin_checks import require_int_param

__all__ = [
    "NOISE_DIM",
    "sample_noise",
    "discriminator",
    "generator",
    "build_dc_classifier",
    "build_dc_generator",
    "get_optimizer",
    "initialize_weights",
    "Unflatten",
    "preprocess_img",
    "deprocess_img",
    "discriminator_loss",
    "generator_loss",
    "ls_discriminator_loss",
    "ls_generator_loss",
]

NOISE_DIM = 96
IMAGE_SIZE = 28  # MNIST's side; 784 = 28 * 28 pixels


def sample_noise(batch_size, dim, seed=None, *, device=None, dtype=None):
    """(batch_size, dim) noise uniform in [-1, 1).

    seed: when given, ``torch.manual_seed(seed)`` first, as the course does (it reseeds the
    global generator). device, dtype: where the noise is created (default: torch's defaults).
    """
    batch_size = require_int_param("batch_size", batch_size, 0)
    dim = require_int_param("dim", dim, 1)
    if seed is not None:
        torch.manual_seed(seed)
    return torch.rand(batch_size, dim, device=device, dtype=dtype) * 2 - 1


def _seeded(seed) -> None:
    if seed is not None:
        torch.manual_seed(seed)


def discriminator(seed=None):
    """Fully connected discriminator: flatten, Affine(784, 256), LeakyReLU(0.01),
    Affine(256, 256), LeakyReLU(0.01), Affine(256, 1). Input (N, 784) or (N, 1, 28, 28)."""
    _seeded(seed)
    return nn.Sequential(
        tnn.Flatten(),
        tnn.Affine(IMAGE_SIZE * IMAGE_SIZE, 256),
        LeakyReLU(0.01),
        tnn.Affine(256, 256),
        LeakyReLU(0.01),
        tnn.Affine(256, 1),
    )


def generator(noise_dim=NOISE_DIM, seed=None):
    """Fully connected generator: Affine(noise_dim, 1024), ReLU, Affine(1024, 1024), ReLU,
    Affine(1024, 784), Tanh. Input (N, noise_dim); output (N, 784) in [-1, 1]."""
    noise_dim = require_int_param("noise_dim", noise_dim, 1)
    _seeded(seed)
    return nn.Sequential(
        tnn.Affine(noise_dim, 1024),
        tnn.ReLU(),
        tnn.Affine(1024, 1024),
        tnn.ReLU(),
        tnn.Affine(1024, IMAGE_SIZE * IMAGE_SIZE),
        tnn.Tanh(),
    )


class Unflatten(nn.Module):
    """(N, C*H*W) -- or any (N, ...) with C*H*W values per sample -- to (N, C, H, W).

    The course's ``Unflatten(N=-1, C=128, H=7, W=7)``; the batch size is read from the input."""

    def __init__(self, C: int = 128, H: int = 7, W: int = 7):
        super().__init__()
        self.C = require_int_param("C", C, 1)
        self.H = require_int_param("H", H, 1)
        self.W = require_int_param("W", W, 1)

    def forward(self, x):
        per_sample = x[0].numel() if x.shape[0] else self.C * self.H * self.W
        if per_sample != self.C * self.H * self.W:
            raise ValueError(
                f"x must hold C*H*W = {self.C * self.H * self.W} values per sample to unflatten "
                f"to ({self.C}, {self.H}, {self.W}), got shape {tuple(x.shape)}"
            )
        return x.reshape(x.shape[0], self.C, self.H, self.W)

    def extra_repr(self) -> str:
        return f"C={self.C}, H={self.H}, W={self.W}"


def build_dc_classifier(batch_size):
    """The DCGAN discriminator: unflatten to (N, 1, 28, 28); Conv2d(1, 32, 5), LeakyReLU(0.01),
    MaxPool 2x2; Conv2d(32, 64, 5), LeakyReLU(0.01), MaxPool 2x2; flatten (64*4*4 = 1024);
    Affine(1024, 1024), LeakyReLU(0.01); Affine(1024, 1).

    batch_size: the course's signature (its Unflatten took N from it); validated, and the model
    accepts any batch size.
    """
    require_int_param("batch_size", batch_size, 1)
    return nn.Sequential(
        Unflatten(1, IMAGE_SIZE, IMAGE_SIZE),
        tnn.Conv2d(1, 32, 5),
        LeakyReLU(0.01),
        tnn.MaxPool2d(2, 2, 2),
        tnn.Conv2d(32, 64, 5),
        LeakyReLU(0.01),
        tnn.MaxPool2d(2, 2, 2),
        tnn.Flatten(),
        tnn.Affine(4 * 4 * 64, 4 * 4 * 64),
        LeakyReLU(0.01),
        tnn.Affine(4 * 4 * 64, 1),
    )


def build_dc_generator(noise_dim=NOISE_DIM):
    """The DCGAN generator: Affine(noise_dim, 1024), ReLU, BatchNorm(1024); Affine(1024, 7*7*128),
    ReLU, BatchNorm(6272); unflatten to (128, 7, 7); ConvTranspose2d(128, 64, 4, stride 2,
    padding 1) -> 14x14, ReLU, SpatialBatchNorm(64); ConvTranspose2d(64, 1, 4, 2, 1) -> 28x28,
    Tanh; flatten to (N, 784)."""
    noise_dim = require_int_param("noise_dim", noise_dim, 1)
    return nn.Sequential(
        tnn.Affine(noise_dim, 1024),
        tnn.ReLU(),
        tnn.BatchNorm(1024),
        tnn.Affine(1024, 7 * 7 * 128),
        tnn.ReLU(),
        tnn.BatchNorm(7 * 7 * 128),
        Unflatten(128, 7, 7),
        ConvTranspose2d(128, 64, 4, stride=2, padding=1),
        tnn.ReLU(),
        tnn.SpatialBatchNorm(64),
        ConvTranspose2d(64, 1, 4, stride=2, padding=1),
        tnn.Tanh(),
        tnn.Flatten(),
    )


def initialize_weights(m) -> None:
    """The course's ``model.apply(initialize_weights)``: Xavier-uniform weights for the affine
    and transposed-convolution layers (Glorot & Bengio, 2010); biases keep their init."""
    if isinstance(m, (tnn.Affine, ConvTranspose2d)):
        nn.init.xavier_uniform_(m.w.data)


def get_optimizer(model):
    """Adam with learning rate 1e-3, beta1 = 0.5, beta2 = 0.999 (the course's), over
    ``model.parameters()``: torch_impl.optim.Adam, the same update rule as torch.optim.Adam
    with betas=(0.5, 0.999)."""
    return topt.Adam(model.parameters(), learning_rate=1e-3, beta1=0.5, beta2=0.999)


def preprocess_img(x):
    """[0, 1] pixels -> [-1, 1] (the generator's tanh range)."""
    return 2 * x - 1.0


def deprocess_img(x):
    """[-1, 1] -> [0, 1]."""
    return (x + 1.0) / 2.0
