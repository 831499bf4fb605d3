"""SimCLR's network (the course's ``simclr/model.py``), scaled down for CPU training and built
from torch_impl layers.

The course's ``Model`` uses a ResNet-50 backbone ``f`` (2048 features) and a projection head
``g`` = Linear(2048, 512, bias=False), BatchNorm1d(512), ReLU, Linear(512, feature_dim). Here
``f`` is a small convolutional encoder, one block per width in ``widths``:
    Conv2d(c_in, c, 3, pad 1), SpatialBatchNorm(c), ReLU, MaxPool 2x2      (32 -> 16 -> 8 -> 4)
followed by a global max-pool over the last map and a flatten: ``widths[-1]`` features h.
``g`` = Affine(h, hidden), BatchNorm(hidden), ReLU, Affine(hidden, feature_dim) gives z.
forward returns (h / |h|, z / |z|), as the course's (the contrastive loss sees z; the linear
probe uses the unnormalized h = f(x)).
"""

from __future__ import annotations

from torch import nn

from torch_impl import nn as tnn
from twin_checks import require_int_param

__all__ = ["Model", "l2_normalize"]


def l2_normalize(x, eps: float = 1e-12):
    """Each row of x (N, D) divided by its Euclidean norm (at least eps): F.normalize's rule."""
    return x / (x * x).sum(dim=1, keepdim=True).sqrt().clamp_min(eps)


class Model(nn.Module):
    """feature_dim: size of the projection z; widths: channels of the encoder's conv blocks
    (input 32x32: each block halves the map, the last map is max-pooled to 1x1);
    hidden: width of the projection head's hidden layer. Input (N, 3, 32, 32)."""

    def __init__(self, feature_dim: int = 128, widths=(32, 64, 128), hidden: int = 256):
        super().__init__()
        feature_dim = require_int_param("feature_dim", feature_dim, 1)
        hidden = require_int_param("hidden", hidden, 1)
        widths = tuple(require_int_param("widths", w, 1) for w in widths)
        if not 1 <= len(widths) <= 5:
            raise ValueError(f"widths must list 1 to 5 block widths (32 / 2**5 = 1), got {widths}")
        layers, c_in = [], 3
        for c in widths:
            layers += [tnn.Conv2d(c_in, c, 3, pad=1), tnn.SpatialBatchNorm(c), tnn.ReLU()]
            layers.append(tnn.MaxPool2d(2))
            c_in = c
        side = 32 // 2 ** len(widths)
        if side > 1:
            layers.append(tnn.MaxPool2d(side))  # global max-pool: one value per channel
        layers.append(tnn.Flatten())
        self.f = nn.Sequential(*layers)
        self.g = nn.Sequential(
            tnn.Affine(c_in, hidden),
            tnn.BatchNorm(hidden),
            tnn.ReLU(),
            tnn.Affine(hidden, feature_dim),
        )
        self.num_features = c_in

    def forward(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, 32, 32):
            raise ValueError(f"x must have shape (N, 3, 32, 32), got {tuple(x.shape)}")
        feature = self.f(x)
        out = self.g(feature)
        return l2_normalize(feature), l2_normalize(out)
