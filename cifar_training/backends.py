"""The three op sets a network can run on, and the optimizer that goes with each.

The network (``cifar_training.models``) is written once against the ``Ops`` interface below; the
backend decides who computes each op:

==========  ===============================================  ===================================
backend     layers                                           optimizer
==========  ===============================================  ===================================
torch       ``torch_impl.functions`` (hand-written backward)  ``torch_impl.optim``
numpy       ``numpy_bridge`` -> ``numpy_impl`` kernels        ``numpy_bridge.NumpyOptimizer``
builtin     ``torch.nn.functional`` (PyTorch's kernels)       ``torch.optim``
==========  ===============================================  ===================================

Every op takes CS231n's arguments and conventions; the builtin op set calls
``builtin_impl.functions``, where each conversion is written once (the parity tests and the
benchmarks use the same functions):

- affine ``w`` is (D, M); ``F.linear`` wants nn.Linear's (M, D), so it gets ``w.T``.
- batchnorm ``momentum`` is CS231n's (``running = momentum * running + (1 - momentum) * batch``,
  0.9 by default); PyTorch's ``momentum`` weighs the batch statistic, so it gets
  ``1 - momentum``. PyTorch updates ``running_var`` with the UNBIASED batch variance (times
  m / (m - 1), m = N*H*W values per channel) where CS231n uses the biased one: training outputs
  and gradients are identical, the running variance (eval mode only) differs by that factor
  (2.2e-4 relative at batch 512 on the last block's 3x3 maps, less on larger maps).
- momentum SGD: CS231n keeps ``v = mu*v - lr*dw; w += v`` (the learning rate inside the
  velocity), torch.optim.SGD keeps ``buf = mu*buf + dw; w -= lr*buf`` (nesterov: ``w -= lr*(dw +
  mu*buf)``). With a constant learning rate the iterates are identical (v = -lr*buf); under a
  schedule CS231n's velocity remembers each past gradient at the learning rate of its own step
  while PyTorch rescales the whole buffer by the current one. That is the one place where the
  builtin run cannot follow the twins exactly (Adam, RMSprop and plain SGD match exactly).
- label smoothing: the twins have no smoothed loss, but cross-entropy is linear in the target,
  so ``(1 - eps) * onehot(y) + eps / C`` is computed as the same mix of the plain loss and the
  loss against each class in turn (``Ops.cross_entropy``); the builtin passes ``label_smoothing``
  to ``F.cross_entropy``, whose definition is the same.
- weight decay: torch.optim's coupled ``weight_decay`` (``dw + wd * w`` before the rule), which
  the twins' optimizers get from ``with_weight_decay`` / ``NumpyOptimizer``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cifar_training.recipes import OPTIMIZERS  # noqa: F401 - the rules make_optimizer knows


class Ops:
    """Interface of an op set. Shapes: x (N, C, H, W); conv w (F, C, k, k); affine w (D, M).

    The class attributes are the backend's rules for train.py, read without building the op
    set (``ops_class``): ``cpu_only``, ``precisions``, ``channels_last_by_default``; train.py
    asks these instead of testing the backend's name.
    """

    name = "?"
    # Computes on host memory only: train.py runs it on CPU and refuses a GPU accelerator.
    cpu_only = False
    # The Lightning --precision values it computes in (None: every one Lightning has), and
    # the same in words for messages.
    precisions: tuple[str, ...] | None = None
    precisions_in_words = "any precision Lightning has"
    # Whether --channels-last auto means on: where the backend's layers are faster on
    # channels_last tensors and keep that layout from layer to layer (PyTorch's CPU kernels;
    # torch_impl, whose conv canvas is channels last).
    channels_last_by_default = False

    @classmethod
    def supports_precision(cls, precision: str) -> bool:
        return cls.precisions is None or precision in cls.precisions

    @classmethod
    def uses_channels_last(cls, choice: str) -> bool:
        """--channels-last auto|on|off resolved: auto means the backend's own default."""
        return cls.channels_last_by_default if choice == "auto" else choice == "on"

    def conv(self, x, w, b, stride, pad):
        raise NotImplementedError

    def max_pool(self, x, size, stride):
        raise NotImplementedError

    def relu(self, x):
        raise NotImplementedError

    def affine(self, x, w, b):
        raise NotImplementedError

    def spatial_batchnorm(self, x, gamma, beta, running_mean, running_var, training, momentum, eps):
        raise NotImplementedError

    def softmax_loss(self, scores, y):
        """Mean softmax cross-entropy of scores (N, C) against int64 labels y (N,)."""
        raise NotImplementedError

    def cross_entropy(self, scores, y, label_smoothing=0.0):
        """Softmax cross-entropy against the smoothed target (1 - eps) * onehot(y) + eps / C.

        The loss is linear in the target distribution, so it equals
            (1 - eps) * L(scores, y) + (eps / C) * sum_c L(scores, c)
        with L the plain softmax loss: C + 1 calls of the twin's own loss, no new math.
        """
        loss = self.softmax_loss(scores, y)
        if not label_smoothing:
            return loss
        C = scores.shape[1]
        uniform = sum(self.softmax_loss(scores, torch.full_like(y, c)) for c in range(C))
        return (1.0 - label_smoothing) * loss + (label_smoothing / C) * uniform

    def make_optimizer(
        self, param_groups, name, lr, momentum=0.9, betas=(0.9, 0.999), eps=1e-8, decay_rate=0.99
    ):
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------


class TorchOps(Ops):
    """torch_impl's autograd.Functions and optimizers."""

    name = "torch"
    channels_last_by_default = True

    def __init__(self):
        from torch_impl import functions as fn
        from torch_impl import optim

        self.fn, self.optim = fn, optim

    def conv(self, x, w, b, stride, pad):
        return self.fn.Conv2dFunction.apply(x, w, b, stride, pad)

    def max_pool(self, x, size, stride):
        return self.fn.MaxPool2dFunction.apply(x, size, size, stride)

    def relu(self, x):
        return self.fn.ReLUFunction.apply(x)

    def affine(self, x, w, b):
        return self.fn.AffineFunction.apply(x, w, b)

    def spatial_batchnorm(self, x, gamma, beta, running_mean, running_var, training, momentum, eps):
        return self.fn.BatchNormFunction.apply(
            x, gamma, beta, running_mean, running_var, training, momentum, eps
        )

    def softmax_loss(self, scores, y):
        return self.fn.SoftmaxLossFunction.apply(scores, y)

    def make_optimizer(
        self, param_groups, name, lr, momentum=0.9, betas=(0.9, 0.999), eps=1e-8, decay_rate=0.99
    ):
        o = self.optim
        table = {
            "sgd": (o.SGD, {}),
            "sgd_momentum": (o.SGDMomentum, {"momentum": momentum}),
            "nesterov": (o.Nesterov, {"momentum": momentum}),
            "rmsprop": (o.RMSprop, {"decay_rate": decay_rate, "epsilon": eps}),
            "adam": (o.Adam, {"beta1": betas[0], "beta2": betas[1], "epsilon": eps}),
        }
        cls, kw = table[name]
        return with_weight_decay(cls)(param_groups, learning_rate=lr, **kw)


_L2_CLASSES: dict = {}


def with_weight_decay(cls):
    """Subclass of optimizer ``cls`` that adds each group's ``weight_decay * w`` to the gradient
    before ``cls``'s own update (coupled L2, as torch.optim's ``weight_decay``)."""
    if cls in _L2_CLASSES:
        return _L2_CLASSES[cls]

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                wd = group.get("weight_decay", 0.0)
                for p in group["params"]:
                    if wd and p.grad is not None:
                        p.grad.add_(p, alpha=wd)
        cls.step(self)
        return loss

    sub = type(f"{cls.__name__}L2", (cls,), {"step": step, "__doc__": with_weight_decay.__doc__})
    _L2_CLASSES[cls] = sub
    return sub


class NumpyOps(Ops):
    """numpy_impl kernels through the autograd bridge (CPU only)."""

    name = "numpy"
    cpu_only = True  # NumPy arrays live in host memory
    precisions = ("32", "32-true", "64", "64-true")  # numpy_impl computes in the input's dtype
    precisions_in_words = "float32 or float64"

    def __init__(self):
        from cifar_training import numpy_bridge as nb

        self.nb = nb

    def conv(self, x, w, b, stride, pad):
        return self.nb.NumpyConv.apply(x, w, b, stride, pad)

    def max_pool(self, x, size, stride):
        return self.nb.NumpyMaxPool.apply(x, size, size, stride)

    def relu(self, x):
        return self.nb.NumpyReLU.apply(x)

    def affine(self, x, w, b):
        return self.nb.NumpyAffine.apply(x, w, b)

    def spatial_batchnorm(self, x, gamma, beta, running_mean, running_var, training, momentum, eps):
        return self.nb.NumpySpatialBatchNorm.apply(
            x, gamma, beta, running_mean, running_var, training, momentum, eps
        )

    def softmax_loss(self, scores, y):
        return self.nb.NumpySoftmaxLoss.apply(scores, y)

    def make_optimizer(
        self, param_groups, name, lr, momentum=0.9, betas=(0.9, 0.999), eps=1e-8, decay_rate=0.99
    ):
        hyper = {
            "sgd": {},
            "sgd_momentum": {"momentum": momentum},
            "nesterov": {"momentum": momentum},
            "rmsprop": {"decay_rate": decay_rate, "epsilon": eps},
            "adam": {"beta1": betas[0], "beta2": betas[1], "epsilon": eps},
        }[name]
        return self.nb.NumpyOptimizer(param_groups, rule=name, lr=lr, **hyper)


class BuiltinOps(Ops):
    """PyTorch's own kernels (torch.nn.functional) and torch.optim: the peer both twins are
    measured against. CS231n conventions are converted as the module docstring lists."""

    name = "builtin"
    channels_last_by_default = True

    def __init__(self):
        from builtin_impl import functions as bf

        self.bf = bf

    def conv(self, x, w, b, stride, pad):
        return self.bf.conv(x, w, b, stride, pad)

    def max_pool(self, x, size, stride):
        return self.bf.max_pool(x, size, size, stride)

    def relu(self, x):
        return self.bf.relu(x)

    def affine(self, x, w, b):
        return self.bf.affine(x, w, b)

    def spatial_batchnorm(self, x, gamma, beta, running_mean, running_var, training, momentum, eps):
        return self.bf.batchnorm(x, gamma, beta, running_mean, running_var, training, momentum, eps)

    def softmax_loss(self, scores, y):
        return self.bf.softmax_loss(scores, y)

    def cross_entropy(self, scores, y, label_smoothing=0.0):
        return F.cross_entropy(scores, y, label_smoothing=label_smoothing)

    def make_optimizer(
        self, param_groups, name, lr, momentum=0.9, betas=(0.9, 0.999), eps=1e-8, decay_rate=0.99
    ):
        o = torch.optim
        if name == "sgd":
            return o.SGD(param_groups, lr=lr)
        if name in ("sgd_momentum", "nesterov"):
            return o.SGD(param_groups, lr=lr, momentum=momentum, nesterov=name == "nesterov")
        if name == "rmsprop":
            return o.RMSprop(param_groups, lr=lr, alpha=decay_rate, eps=eps)
        return o.Adam(param_groups, lr=lr, betas=tuple(betas), eps=eps)


OPS_BY_BACKEND = {"torch": TorchOps, "numpy": NumpyOps, "builtin": BuiltinOps}
BACKENDS = tuple(OPS_BY_BACKEND)


def ops_class(backend: str) -> type[Ops]:
    """The op set class of ``--backend``: its rules (``cpu_only``, ...) without building it."""
    try:
        return OPS_BY_BACKEND[backend]
    except KeyError:
        raise ValueError(f"--backend must be one of {BACKENDS}, got {backend!r}") from None


def get_ops(backend: str) -> Ops:
    return ops_class(backend)()
