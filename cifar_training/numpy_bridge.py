"""The NumPy backend: autograd.Functions whose forward and backward are ``numpy_impl`` kernels.

Each Function hands NumPy views of its CPU tensors (no copy) to a CS231n forward, keeps the
returned ``cache`` on the autograd context, and calls the matching CS231n backward with it. Torch
only records the graph and moves arrays in and out (``torch.from_numpy`` shares memory); every
number of the forward, the backward and the parameter update is computed by NumPy.

``NumpyOptimizer`` is a ``torch.optim.Optimizer`` (so Lightning, LR schedulers and checkpoints
work unchanged) whose ``step`` applies a ``numpy_impl.optim`` rule to each parameter's NumPy view.

CPU only: a CUDA tensor has no NumPy view, and the first Function that meets one says so.
"""

from __future__ import annotations

import numpy as np
import torch

from numpy_impl import layers
from numpy_impl import optim as np_optim

CPU_ONLY = (
    "the numpy backend runs on CPU only (NumPy arrays live in host memory); got a tensor on "
    "{device}. Use --accelerator cpu, or --backend torch / builtin for a GPU."
)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor (shares memory; no copy)."""
    if t.device.type != "cpu":
        raise RuntimeError(CPU_ONLY.format(device=t.device))
    return t.detach().numpy()


def to_torch(a) -> torch.Tensor:
    """A tensor sharing ``a``'s memory (copied only if NumPy gave negative strides)."""
    a = np.asarray(a)
    if any(s < 0 for s in a.strides):
        a = np.ascontiguousarray(a)
    return torch.from_numpy(a)


def _fast():
    """numpy_impl.fast_layers (imported on first use)."""
    from numpy_impl import fast_layers

    return fast_layers


def _grads(ctx, *grads):
    """Return each gradient only where autograd asked for it (None elsewhere)."""
    return tuple(
        to_torch(g) if (g is not None and need) else None
        for g, need in zip(grads, ctx.needs_input_grad, strict=False)
    )


class NumpyConv(torch.autograd.Function):
    """fast_layers.conv_forward_fast / conv_backward_fast. x (N, C, H, W), w (F, C, HH, WW)."""

    @staticmethod
    def forward(ctx, x, w, b, stride, pad):
        out, ctx.cache = _fast().conv_forward_fast(
            to_numpy(x), to_numpy(w), to_numpy(b), {"stride": stride, "pad": pad}
        )
        return to_torch(out)

    @staticmethod
    def backward(ctx, dout):
        dx, dw, db = _fast().conv_backward_fast(to_numpy(dout), ctx.cache)
        ctx.cache = None
        return _grads(ctx, dx, dw, db) + (None, None)


class NumpyMaxPool(torch.autograd.Function):
    """fast_layers.max_pool_forward_fast / max_pool_backward_fast."""

    @staticmethod
    def forward(ctx, x, pool_height, pool_width, stride):
        param = {"pool_height": pool_height, "pool_width": pool_width, "stride": stride}
        out, ctx.cache = _fast().max_pool_forward_fast(to_numpy(x), param)
        return to_torch(out)

    @staticmethod
    def backward(ctx, dout):
        dx = _fast().max_pool_backward_fast(to_numpy(dout), ctx.cache)
        ctx.cache = None
        return _grads(ctx, dx) + (None, None, None)


class NumpyReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out, ctx.cache = layers.relu_forward(to_numpy(x))
        return to_torch(out)

    @staticmethod
    def backward(ctx, dout):
        dx = layers.relu_backward(to_numpy(dout), ctx.cache)
        ctx.cache = None
        return _grads(ctx, dx)


class NumpyAffine(torch.autograd.Function):
    """layers.affine_forward / affine_backward. x (N, d1..dk), w (D, M) CS231n layout, b (M,)."""

    @staticmethod
    def forward(ctx, x, w, b):
        out, ctx.cache = layers.affine_forward(to_numpy(x), to_numpy(w), to_numpy(b))
        return to_torch(out)

    @staticmethod
    def backward(ctx, dout):
        dx, dw, db = layers.affine_backward(to_numpy(dout), ctx.cache)
        ctx.cache = None
        return _grads(ctx, dx, dw, db)


class NumpySpatialBatchNorm(torch.autograd.Function):
    """layers.spatial_batchnorm_forward / _backward with CS231n's bn_param conventions.

    running_mean/running_var (C,) are the module's buffers: the NumPy forward returns the updated
    averages in bn_param (``momentum * running + (1 - momentum) * batch``, biased variance) and
    they are copied back into the buffers' memory, which is what makes them part of the
    checkpoint.
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, running_mean, running_var, training, momentum, eps):
        rm, rv = to_numpy(running_mean), to_numpy(running_var)
        bn_param = {
            "mode": "train" if training else "test",
            "eps": eps,
            "momentum": momentum,
            "running_mean": rm,
            "running_var": rv,
        }
        out, ctx.cache = layers.spatial_batchnorm_forward(
            to_numpy(x), to_numpy(gamma), to_numpy(beta), bn_param
        )
        np.copyto(rm, bn_param["running_mean"])
        np.copyto(rv, bn_param["running_var"])
        return to_torch(out)

    @staticmethod
    def backward(ctx, dout):
        dx, dgamma, dbeta = layers.spatial_batchnorm_backward(to_numpy(dout), ctx.cache)
        ctx.cache = None
        return _grads(ctx, dx, dgamma, dbeta) + (None,) * 5


class NumpySoftmaxLoss(torch.autograd.Function):
    """layers.softmax_loss: scalar loss (mean over N); its dx is kept for the backward."""

    @staticmethod
    def forward(ctx, x, y):
        loss, dx = layers.softmax_loss(to_numpy(x), to_numpy(y))
        ctx.dx = dx
        return torch.tensor(loss, dtype=x.dtype)

    @staticmethod
    def backward(ctx, dloss):
        # The chain rule through a scalar: dL/dx = dloss * dx.
        dx = ctx.dx * to_numpy(dloss).item()
        ctx.dx = None
        return _grads(ctx, dx) + (None,)


# ----------------------------------------------------------------------------------------------
# Optimizer
# ----------------------------------------------------------------------------------------------

# rule name -> (numpy_impl.optim function, hyperparameters with CS231n defaults, state keys)
RULES = {
    "sgd": (np_optim.sgd, {}, ()),
    "sgd_momentum": (np_optim.sgd_momentum, {"momentum": 0.9}, ("velocity",)),
    "nesterov": (np_optim.nesterov_momentum, {"momentum": 0.9}, ("velocity",)),
    "rmsprop": (np_optim.rmsprop, {"decay_rate": 0.99, "epsilon": 1e-8}, ("cache",)),
    "adam": (np_optim.adam, {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}, ("m", "v", "t")),
}


class NumpyOptimizer(torch.optim.Optimizer):
    """Applies ``numpy_impl.optim.<rule>`` to every parameter, on NumPy views of its memory.

    params: iterable of CPU tensors or param-group dicts. rule: a key of ``RULES``.
    lr: the learning rate, kept under 'lr' in each group (so PyTorch schedulers work) and handed
    to the rule as CS231n's 'learning_rate'. weight_decay: L2 coefficient added to the gradient
    before the rule (dw + weight_decay * w, as CS231n's ``reg`` term and torch.optim's coupled
    ``weight_decay`` do). Other keyword arguments are the rule's hyperparameters.
    The rule's state ('velocity', 'cache', 'm', 'v', 't') lives in ``self.state[p]`` as tensors
    that share memory with the arrays the rule returned, so ``state_dict`` round-trips.
    """

    def __init__(self, params, rule="nesterov", lr=1e-2, weight_decay=0.0, **hyper):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
        unknown = set(hyper) - set(RULES[rule][1])
        if unknown:
            raise TypeError(f"unknown hyperparameters for {rule}: {sorted(unknown)}")
        if lr < 0 or weight_decay < 0:
            raise ValueError(f"lr and weight_decay must be >= 0, got {lr}, {weight_decay}")
        defaults = {"lr": lr, "weight_decay": weight_decay, **RULES[rule][1], **hyper}
        super().__init__(params, defaults)
        self.rule = rule

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        fn, hyper, state_keys = RULES[self.rule]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group, fn, hyper, state_keys)
        return loss

    def _update(self, p, group, fn, hyper, state_keys):
        w, dw = to_numpy(p), to_numpy(p.grad)
        if group["weight_decay"]:
            dw = dw + float(group["weight_decay"]) * w
        config = {"learning_rate": float(group["lr"])}
        config.update({k: group[k] for k in hyper})
        state = self.state[p]
        for k in state_keys:
            if k in state:
                config[k] = int(state[k]) if k == "t" else to_numpy(state[k])
        next_w, config = fn(w, dw, config)
        np.copyto(w, next_w)  # the parameter's own memory, as every torch optimizer updates it
        for k in state_keys:
            state[k] = int(config[k]) if k == "t" else to_torch(config[k])
