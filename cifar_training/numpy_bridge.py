"""The NumPy backend: autograd.Functions whose forward and backward are ``numpy_impl`` kernels.

One adapter, ``numpy_function``, makes each of them from a CS231n (forward, backward) pair: it
hands NumPy views of its CPU tensors (no copy) to the forward, keeps the returned ``cache`` on
the autograd context, and calls the matching CS231n backward with it. Torch
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


def _grads(ctx, *grads):
    """Return each gradient only where autograd asked for it (None elsewhere)."""
    return tuple(
        to_torch(g) if (g is not None and need) else None
        for g, need in zip(grads, ctx.needs_input_grad, strict=False)
    )


def numpy_function(name, forward, backward, n_inputs, params=None, update=None, doc=""):
    """An autograd.Function whose forward and backward are a CS231n (forward, backward) pair.

    ``Function.apply(*tensors, *rest)``: the first ``n_inputs`` arguments are the tensors the
    backward returns gradients for (x, w, b, gamma, beta, ...); the others are handed to
    ``params``, NumPy views for tensors (running statistics, labels) and plain values as given,
    which builds the course's trailing arguments (conv_param, bn_param, ...; default: the rest
    as they are).

    forward(*arrays, *course_args) -> (out, cache); backward(dout, cache) -> one gradient or a
    tuple of them, of the n_inputs arrays in order. (A loss returning (loss, dx) is such a pair
    with the cache dx and a backward that scales it by the scalar dloss.)
    update(course_args, rest): called after the forward to write state that CS231n's forward
    returns in its param dict back into the tensors' memory (batchnorm's running statistics).

    The output shares the array's memory (``to_torch``); the cache lives on the autograd
    context until the backward has used it; a gradient is returned only where autograd asked
    for it.
    """

    def fwd(ctx, *args):
        arrays = [to_numpy(t) for t in args[:n_inputs]]
        rest = [to_numpy(a) if isinstance(a, torch.Tensor) else a for a in args[n_inputs:]]
        course_args = params(*rest) if params else tuple(rest)
        out, ctx.cache = forward(*arrays, *course_args)
        if update is not None:
            update(course_args, rest)
        return to_torch(out)

    def bwd(ctx, dout):
        grads = backward(to_numpy(dout), ctx.cache)
        ctx.cache = None
        grads = grads if isinstance(grads, tuple) else (grads,)
        return _grads(ctx, *grads) + (None,) * (len(ctx.needs_input_grad) - n_inputs)

    return type(
        name,
        (torch.autograd.Function,),
        {"forward": staticmethod(fwd), "backward": staticmethod(bwd), "__doc__": doc},
    )


def _fast(name):
    """numpy_impl.fast_layers' ``name``, imported on first use (it builds its workspace)."""

    def call(*args):
        from numpy_impl import fast_layers

        return getattr(fast_layers, name)(*args)

    return call


def _bn_param(running_mean, running_var, training, momentum, eps) -> tuple[dict]:
    mode = "train" if training else "test"
    bn_param = {"mode": mode, "eps": eps, "momentum": momentum}
    return ({**bn_param, "running_mean": running_mean, "running_var": running_var},)


def _write_running_stats(course_args, rest) -> None:
    """The NumPy forward returns the updated averages in bn_param (``momentum * running +
    (1 - momentum) * batch``, biased variance); copied into the buffers' memory, which is
    what makes them part of the checkpoint."""
    (bn_param,) = course_args
    np.copyto(rest[0], bn_param["running_mean"])
    np.copyto(rest[1], bn_param["running_var"])


def _loss_backward(dloss, dx):
    # The chain rule through a scalar: dL/dx = dloss * dx.
    return dx * dloss.item()


NumpyConv = numpy_function(
    "NumpyConv",
    _fast("conv_forward_fast"),
    _fast("conv_backward_fast"),
    3,
    params=lambda stride, pad: ({"stride": stride, "pad": pad},),
    doc="fast_layers.conv_forward_fast / conv_backward_fast: apply(x, w, b, stride, pad).",
)
NumpyMaxPool = numpy_function(
    "NumpyMaxPool",
    _fast("max_pool_forward_fast"),
    _fast("max_pool_backward_fast"),
    1,
    params=lambda ph, pw, stride: ({"pool_height": ph, "pool_width": pw, "stride": stride},),
    doc="fast_layers.max_pool_forward_fast / _backward_fast: apply(x, pool_height, pool_width, "
    "stride).",
)
NumpyReLU = numpy_function(
    "NumpyReLU", layers.relu_forward, layers.relu_backward, 1, doc="layers.relu: apply(x)."
)
NumpyAffine = numpy_function(
    "NumpyAffine",
    layers.affine_forward,
    layers.affine_backward,
    3,
    doc="layers.affine_forward / affine_backward: apply(x, w, b), w (D, M) CS231n's layout.",
)
NumpySpatialBatchNorm = numpy_function(
    "NumpySpatialBatchNorm",
    layers.spatial_batchnorm_forward,
    layers.spatial_batchnorm_backward,
    3,
    params=_bn_param,
    update=_write_running_stats,
    doc="layers.spatial_batchnorm_forward / _backward with CS231n's bn_param: apply(x, gamma, "
    "beta, running_mean, running_var, training, momentum, eps); running_mean/running_var (C,) "
    "are the module's buffers, updated in place.",
)
NumpySoftmaxLoss = numpy_function(
    "NumpySoftmaxLoss",
    layers.softmax_loss,
    _loss_backward,
    1,
    doc="layers.softmax_loss: apply(x, y), the scalar loss (mean over N); its dx is the cache.",
)


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
