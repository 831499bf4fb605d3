"""The networks, defined once and run by any op set (``cifar_training.backends``).

Every layer holds its parameters in CS231n's layout (conv ``w`` (F, C, k, k), affine ``w`` (D, M),
batchnorm ``gamma``/``beta`` (C,) with ``running_mean``/``running_var`` buffers) and its forward
takes the op set: ``layer(x, ops)``. So one state dict serves all three backends, and switching
the backend changes who does the math, nothing else.

Architectures (``--model``):

default  (``CifarNet``) airbench-style, from the layers both twins implement:
    stem     "whiten": 2x2 conv 3 -> 24, weights fixed to the ZCA-like whitening of 2x2 patches
             of the training images (eigenvectors / sqrt(eigenvalue) and their negatives, so
             the ReLU after it keeps both signs), bias trained; then ReLU.   32 -> 31 px
             "conv": 3x3 conv 3 -> widths[0], spatial batchnorm, ReLU.
    3 blocks conv3x3 -> maxpool 2 -> spatial batchnorm -> ReLU -> conv3x3 -> spatial batchnorm
             -> ReLU, widths (32, 64, 128) by default.                 31 -> 15 -> 7 -> 3 px
    head     max pool over the whole remaining map -> affine widths[-1] -> 10.
    (Pooling before the batchnorm normalizes a map 4x smaller; the convs feeding a batchnorm
    have no bias, which the batchnorm's mean subtraction would cancel anyway.)
three-layer  (``ThreeLayerConvNet``) CS231n's: conv 7x7 (32 filters, 'same' padding) - ReLU -
    2x2 max pool - affine 100 - ReLU - affine 10, weights N(0, 1e-3^2), biases zero.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cifar_training.recipes import BN_SCALES, MODELS, STEMS

DEFAULT_WIDTHS = (32, 64, 128)


class Conv(nn.Module):
    """Cross-correlation. w: (F, C, k, k), b: (F,) (a fixed zero buffer when bias=False)."""

    def __init__(self, c_in, c_out, k, stride=1, pad=0, bias=True):
        super().__init__()
        self.stride, self.pad = stride, pad
        self.w = nn.Parameter(torch.empty(c_out, c_in, k, k))
        if bias:
            self.b = nn.Parameter(torch.zeros(c_out))
        else:
            self.register_buffer("b", torch.zeros(c_out), persistent=False)

    def forward(self, x, ops):
        return ops.conv(x, self.w, self.b, self.stride, self.pad)


class SpatialBatchNorm(nn.Module):
    """Per-channel batchnorm over (N, H, W). gamma/beta (C,); momentum in CS231n's convention
    (running = momentum * running + (1 - momentum) * batch statistic)."""

    def __init__(self, channels, momentum=0.9, eps=1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        # Running variance starts at 1 (as PyTorch's), not CS231n's 0: an early evaluation then
        # divides by ~1 instead of by sqrt(eps).
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x, ops):
        return ops.spatial_batchnorm(
            x,
            self.gamma,
            self.beta,
            self.running_mean,
            self.running_var,
            self.training,
            self.momentum,
            self.eps,
        )


class Affine(nn.Module):
    """out = x.reshape(N, D) @ w + b with w: (D, M) (CS231n layout: nn.Linear's weight is w.T)."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.w = nn.Parameter(torch.empty(d_in, d_out))
        self.b = nn.Parameter(torch.zeros(d_out))

    def forward(self, x, ops):
        return ops.affine(x, self.w, self.b)


class ConvBlock(nn.Module):
    """conv3x3 -> maxpool 2 -> batchnorm -> ReLU -> conv3x3 -> batchnorm -> ReLU. H -> H // 2."""

    def __init__(self, c_in, c_out, bn_momentum=0.9, bn_eps=1e-5):
        super().__init__()
        self.conv1 = Conv(c_in, c_out, 3, pad=1, bias=False)
        self.bn1 = SpatialBatchNorm(c_out, bn_momentum, bn_eps)
        self.conv2 = Conv(c_out, c_out, 3, pad=1, bias=False)
        self.bn2 = SpatialBatchNorm(c_out, bn_momentum, bn_eps)

    def forward(self, x, ops):
        x = ops.max_pool(self.conv1(x, ops), 2, 2)
        x = ops.relu(self.bn1(x, ops))
        return ops.relu(self.bn2(self.conv2(x, ops), ops))


class CifarNet(nn.Module):
    """The default model (see the module docstring). forward(x (N, 3, H, W), ops) -> (N, 10)."""

    def __init__(
        self,
        widths=DEFAULT_WIDTHS,
        stem="whiten",
        num_classes=10,
        in_channels=3,
        image_size=32,
        bn_momentum=0.9,
        bn_eps=1e-5,
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 1 or min(widths) < 1:
            raise ValueError(f"--widths must be positive integers, got {widths}")
        if stem == "whiten":
            # 2x2 patches of C channels span C*4 directions; each is kept with both signs.
            self.stem_conv = Conv(in_channels, 2 * in_channels * 4, 2, pad=0)
            self.stem_conv.w.requires_grad_(False)
            c, size = 2 * in_channels * 4, image_size - 1
        elif stem == "conv":
            self.stem_conv = Conv(in_channels, widths[0], 3, pad=1, bias=False)
            self.stem_bn = SpatialBatchNorm(widths[0], bn_momentum, bn_eps)
            c, size = widths[0], image_size
        else:
            raise ValueError(f"--stem must be one of {STEMS}, got {stem!r}")
        self.stem = stem
        blocks = []
        for w in widths:
            blocks.append(ConvBlock(c, w, bn_momentum, bn_eps))
            c, size = w, size // 2
        if size < 1:
            raise ValueError(
                f"images of {image_size} px are too small for {len(widths)} pooling blocks"
            )
        self.blocks = nn.ModuleList(blocks)
        self.head_pool = size
        self.head = Affine(c, num_classes)

    def forward(self, x, ops):
        x = self.stem_conv(x, ops)
        if self.stem == "conv":
            x = self.stem_bn(x, ops)
        x = ops.relu(x)
        for block in self.blocks:
            x = block(x, ops)
        x = ops.max_pool(x, self.head_pool, self.head_pool)
        return self.head(x, ops)

    def first_layer_filters(self) -> torch.Tensor:
        return self.stem_conv.w.detach()

    def activation_layers(self) -> list:
        """[(name, module, post_relu)]: the layers whose outputs the diagnostics summarize; each
        block ends in a ReLU."""
        return [(f"block{i + 1}", b, True) for i, b in enumerate(self.blocks)]

    def trained_filters_rgb(self) -> tuple[torch.Tensor, str]:
        """(filters (F, 3, k, k), caption): the first TRAINED conv, seen in RGB.

        With the trained conv stem that is the stem itself. With the fixed whitening stem
        (filters S_j and their negatives -S_j, j < J, each followed by a ReLU) it is the first
        block conv W composed with the stem: relu(z) - relu(-z) = z, so the part of W that is
        linear in the image is G_j = (W[:, j] - W[:, J + j]) / 2 applied to S_j x, i.e. the
        4x4 RGB filter sum_j G_j * S_j (a 3x3 filter of 2x2 filters). The even part,
        (W[:, j] + W[:, J + j]) / 2 on |S_j x|, has no single image-space filter and is not shown.
        """
        if self.stem == "conv":
            return self.stem_conv.w.detach(), "first trained conv (3x3 stem)"
        S = self.stem_conv.w.detach().double()  # (2J, C, 2, 2)
        W = self.blocks[0].conv1.w.detach().double()  # (F, 2J, 3, 3)
        J = S.shape[0] // 2
        G = (W[:, :J] - W[:, J:]) / 2
        k, s = W.shape[-1], S.shape[-1]
        out = torch.zeros(W.shape[0], S.shape[1], k + s - 1, k + s - 1, dtype=torch.float64)
        for i in range(k):
            for j in range(k):
                out[:, :, i : i + s, j : j + s] += torch.einsum(
                    "fj,jcab->fcab", G[:, :, i, j], S[:J]
                )
        return out, (
            "first trained conv (block 1) in RGB: its weights composed with the fixed "
            "whitening stem (the part linear in the image, 4x4 px)"
        )


class ThreeLayerConvNet(nn.Module):
    """CS231n's ThreeLayerConvNet: conv - relu - 2x2 max pool - affine - relu - affine.

    Parameter names map to the course's: conv.w/b = W1/b1, fc1.w/b = W2/b2, fc2.w/b = W3/b3
    (``cs231n_params``), so trained weights drop into numpy_impl's ThreeLayerConvNet.
    """

    def __init__(
        self,
        input_dim=(3, 32, 32),
        num_filters=32,
        filter_size=7,
        hidden_dim=100,
        num_classes=10,
        weight_scale=1e-3,
    ):
        super().__init__()
        C, H, W = input_dim
        self.weight_scale = weight_scale
        self.conv = Conv(C, num_filters, filter_size, pad=(filter_size - 1) // 2)
        self.fc1 = Affine(num_filters * (H // 2) * (W // 2), hidden_dim)
        self.fc2 = Affine(hidden_dim, num_classes)

    def forward(self, x, ops):
        x = ops.max_pool(ops.relu(self.conv(x, ops)), 2, 2)
        x = ops.relu(self.fc1(x, ops))
        return self.fc2(x, ops)

    def first_layer_filters(self) -> torch.Tensor:
        return self.conv.w.detach()

    def trained_filters_rgb(self) -> tuple[torch.Tensor, str]:
        return self.conv.w.detach(), "first-layer filters (7x7 conv)"

    def activation_layers(self) -> list:
        """The conv and hidden affine layers; their outputs feed ReLUs (post_relu False)."""
        return [("conv", self.conv, False), ("fc1", self.fc1, False)]

    def cs231n_params(self) -> dict:
        names = {
            "W1": self.conv.w,
            "b1": self.conv.b,
            "W2": self.fc1.w,
            "b2": self.fc1.b,
            "W3": self.fc2.w,
            "b3": self.fc2.b,
        }
        return {k: v.detach().cpu().numpy().copy() for k, v in names.items()}


# ----------------------------------------------------------------------------------------------
# Construction and initialization
# ----------------------------------------------------------------------------------------------


def build_net(
    model="default",
    widths=DEFAULT_WIDTHS,
    stem="whiten",
    num_classes=10,
    image_shape=(3, 32, 32),
    bn_momentum=0.9,
    seed=0,
    head_scale=1.0,
    bn_scale="trained",
    dirac_init=False,
) -> nn.Module:
    """The network for ``--model``, initialized from ``seed`` alone (same on every backend).
    head_scale: CifarNet's head weights are drawn head_scale times smaller (see param_groups).
    bn_scale: 'trained', or 'fixed' (CifarNet's batchnorm gamma stays 1, as airbench's).
    dirac_init: CifarNet's block convs start with their first C_in filters the identity
    (``init_weights``)."""
    if bn_scale not in BN_SCALES:
        raise ValueError(f"--bn-scale must be one of {BN_SCALES}, got {bn_scale!r}")
    C, H, W = image_shape
    if model == "default":
        if H != W:
            raise ValueError(f"the default model needs square images, got {H}x{W}")
        net = CifarNet(widths, stem, num_classes, C, H, bn_momentum)
    elif model == "three-layer":
        net = ThreeLayerConvNet((C, H, W), num_classes=num_classes)
    else:
        raise ValueError(f"--model must be one of {MODELS}, got {model!r}")
    init_weights(net, seed, dirac_init)
    if isinstance(net, CifarNet):
        with torch.no_grad():
            net.head.w.mul_(head_scale)
        if bn_scale == "fixed":
            for m in net.modules():
                if isinstance(m, SpatialBatchNorm):
                    m.gamma.requires_grad_(False)
    return net


def init_weights(net: nn.Module, seed: int, dirac_init: bool = False) -> None:
    """Draw every weight from a generator seeded with ``seed``, in parameter order.

    Convs in CifarNet: He-normal (std sqrt(2 / fan_in)), as suits ReLU; the head affine
    std sqrt(1 / (3 fan_in)) (the spread of nn.Linear's default uniform init).
    ThreeLayerConvNet: CS231n's N(0, weight_scale^2). Biases stay zero.
    dirac_init (airbench's identity init): in CifarNet's blocks, filter f < C_in of every 3x3
    conv is then replaced by the identity on channel f (1 at the centre tap), so that at the
    start each block passes its input through next to the random features.
    """
    g = torch.Generator().manual_seed(int(seed))
    for name, module in net.named_modules():
        if not isinstance(module, (Conv, Affine)):
            continue
        w = module.w
        if isinstance(net, ThreeLayerConvNet):
            std = net.weight_scale
        else:
            fan_in = w.shape[0] if isinstance(module, Affine) else math.prod(w.shape[1:])
            std = math.sqrt((1.0 / 3.0 if name == "head" else 2.0) / fan_in)
        with torch.no_grad():
            w.copy_(torch.randn(w.shape, generator=g, dtype=torch.float32).to(w.dtype) * std)
            if dirac_init and name.startswith("blocks."):
                F_, C, k, _ = w.shape
                n = min(F_, C)
                w[:n] = 0
                w[torch.arange(n), torch.arange(n), k // 2, k // 2] = 1


def fit_whitening(net: nn.Module, images: torch.Tensor, eps: float = 5e-4, chunk: int = 500):
    """Set the whitening stem's filters from normalized training images (N, C, H, W).

    With p the flattened k x k patches, Sigma = E[p p^T] = V diag(lambda) V^T, the filters
    V / sqrt(lambda + eps) map patches to uncorrelated unit-variance outputs; their negatives are
    added so that the ReLU that follows loses neither sign. Computed in float64.
    """
    if getattr(net, "stem", None) != "whiten":
        return
    conv = net.stem_conv
    F_, C, k, _ = conv.w.shape
    d = C * k * k
    cov = torch.zeros(d, d, dtype=torch.float64)
    count = 0
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].to(torch.float64)
        patches = x.unfold(2, k, 1).unfold(3, k, 1)  # (n, C, H', W', k, k)
        p = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, d)
        cov += p.T @ p
        count += p.shape[0]
    cov /= max(count, 1)
    evals, evecs = torch.linalg.eigh(cov)
    filters = (evecs.T / torch.sqrt(evals.clamp_min(0) + eps)[:, None]).reshape(d, C, k, k)
    with torch.no_grad():
        conv.w.copy_(torch.cat([filters, -filters]).to(conv.w.dtype))


def param_groups(
    net: nn.Module,
    lr: float,
    weight_decay: float,
    head_scale: float = 1.0,
    bn_bias_lr_scale: float = 1.0,
) -> list[dict]:
    """Optimizer param groups, each with its own 'lr' and 'weight_decay':

    - conv/affine weights: lr, weight_decay (CS231n's reg covers weight matrices only);
    - biases, gamma: lr, no decay;
    - batchnorm beta: lr * bn_bias_lr_scale, no decay (airbench trains its batchnorm biases
      64x faster than the weights);
    - the head affine of CifarNet (``head.w``, ``head.b``) with ``head_scale`` a != 1: lr * a^2
      and weight_decay / a^2. Together with the a-times smaller initial weights (``build_net``)
      this is SGD on logits multiplied by a (the 0.125 output scale of Page's fast ResNet,
      airbench's 1/9) with no extra op: for W_eff = a W, a step on W moves W_eff by
      -lr a^2 dL/dW_eff, and the decay keeps its per-step shrink lr * weight_decay. (Exact for
      SGD, momentum and Nesterov; Adam/RMSprop normalize the step and do not need it.)
    Frozen parameters (the whitening filters) are left out.
    """
    body_w, body_b, bn_b, head_w, head_b = [], [], [], [], []
    scaled = head_scale != 1.0 and isinstance(net, CifarNet)
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        is_head = scaled and name.startswith("head.")
        weight = name.endswith(".w")
        if name.endswith(".beta"):
            bn_b.append(p)
        else:
            ((head_w if weight else head_b) if is_head else (body_w if weight else body_b)).append(
                p
            )
    a2 = head_scale**2
    groups = [
        {"params": body_w, "lr": lr, "weight_decay": weight_decay},
        {"params": body_b, "lr": lr, "weight_decay": 0.0},
        {"params": bn_b, "lr": lr * bn_bias_lr_scale, "weight_decay": 0.0},
        {"params": head_w, "lr": lr * a2, "weight_decay": weight_decay / a2},
        {"params": head_b, "lr": lr * a2, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def load_trained(out_dir, map_location="cpu"):
    """(net, info) from a train.py output directory: model.pt (loaded with weights_only=True)
    and model.json. The net is in eval mode; run it with any op set, e.g.
    ``net(x, cifar_training.backends.get_ops("builtin"))`` on x normalized as info says."""
    import json
    from pathlib import Path

    out_dir = Path(out_dir)
    info = json.loads((out_dir / "model.json").read_text())
    net = build_net(
        info["model"],
        info["widths"],
        info["stem"],
        info["num_classes"],
        tuple(info["image_shape"]),
        info["bn_momentum"],
    )
    state = torch.load(out_dir / "model.pt", map_location=map_location, weights_only=True)
    net.load_state_dict(state)
    return net.eval(), info
