"""CS231n's update rules as ``torch.optim.Optimizer`` subclasses.

The same rules as ``numpy_impl.optim`` (see each class), with CS231n's hyperparameter names and
defaults, usable in any PyTorch training loop. The constructors take CS231n's ``learning_rate``;
each param group stores it under ``'lr'``, the key every ``torch.optim.lr_scheduler`` reads and
writes (StepLR, CosineAnnealingLR, OneCycleLR, ...). Per-parameter state uses CS231n's config
keys: ``velocity`` (SGDMomentum, Nesterov), ``cache`` (RMSprop), ``m``, ``v``, ``t`` (Adam; ``t``
is a Python int), so ``state_dict()``/``load_state_dict()`` round-trip and
``torch.load(weights_only=True)`` can read the result.

Differences from ``torch.optim`` that are on purpose (CS231n's forms):
- SGDMomentum keeps v = momentum * v - lr * dw and steps w + v; torch.optim.SGD keeps
  buf = momentum * buf + dw and steps w - lr * buf (the same iterates for a constant lr,
  v = -lr * buf, but a changing lr acts on the step at once in torch and through v here).
- Nesterov is the course notes' form w += -momentum * v_prev + (1 + momentum) * v.
- RMSprop's decay_rate is torch's alpha; Adam's epsilon is added outside the square root of
  the bias-corrected second moment, as in torch.optim.Adam.
Schedulers that cycle momentum (OneCycleLR, CyclicLR) drive the 'momentum' key of SGDMomentum and
Nesterov; for RMSprop/Adam (no 'momentum'/'betas' keys) pass ``cycle_momentum=False``.

Updates run under ``torch.no_grad()`` and modify the parameters in place (the Optimizer
contract); parameters whose ``grad`` is None are skipped, as torch.optim does.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.optim import Optimizer

if TYPE_CHECKING:
    from torch.optim.optimizer import ParamsT

__all__ = ["SGD", "SGDMomentum", "Nesterov", "RMSprop", "Adam"]


def _real(
    name: str, value: object, low: float, high: float | None = None, *, open_high: bool = False
) -> float:
    """A hyperparameter in [low, high] (or [low, high) with open_high), named in the error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    too_high = high is not None and (value >= high if open_high else value > high)
    if not value >= low or too_high:
        hi = "inf)" if high is None else (f"{high})" if open_high else f"{high}]")
        raise ValueError(f"{name} must lie in [{low}, {hi}, got {value}")
    return value


class _CS231nOptimizer(Optimizer):
    """Shared step loop: ``_update(p, grad, state, group)`` applies one rule to one parameter."""

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        super().__init__(params, defaults)

    def _update(
        self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter that has a gradient; returns closure()'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                self._update(p, p.grad, self.state[p], group)
        return loss


class SGD(_CS231nOptimizer):
    """Vanilla SGD: w = w - learning_rate * dw. Group keys: 'lr'."""

    def __init__(self, params: ParamsT, learning_rate: float = 1e-2) -> None:
        lr = _real("learning_rate", learning_rate, 0.0)
        super().__init__(params, {"lr": lr})

    def _update(
        self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        p.sub_(group["lr"] * grad)


class SGDMomentum(_CS231nOptimizer):
    """SGD with momentum, CS231n's form (the learning rate inside the velocity):
        v = momentum * v - learning_rate * dw;   w = w + v
    State: 'velocity' (zeros like w at the first step). Group keys: 'lr', 'momentum'.
    """

    def __init__(self, params: ParamsT, learning_rate: float = 1e-2, momentum: float = 0.9) -> None:
        lr = _real("learning_rate", learning_rate, 0.0)
        mu = _real("momentum", momentum, 0.0, 1.0, open_high=True)
        super().__init__(params, {"lr": lr, "momentum": mu})

    def _update(
        self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        if "velocity" not in state:
            state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        v = state["velocity"]
        v.mul_(group["momentum"]).sub_(group["lr"] * grad)
        p.add_(v)


class Nesterov(_CS231nOptimizer):
    """Nesterov momentum in the course notes' form (the look-ahead folded into the update):
        v_prev = v;  v = momentum * v - learning_rate * dw;
        w = w - momentum * v_prev + (1 + momentum) * v
    State: 'velocity'. Group keys: 'lr', 'momentum'.
    """

    def __init__(self, params: ParamsT, learning_rate: float = 1e-2, momentum: float = 0.9) -> None:
        lr = _real("learning_rate", learning_rate, 0.0)
        mu = _real("momentum", momentum, 0.0, 1.0, open_high=True)
        super().__init__(params, {"lr": lr, "momentum": mu})

    def _update(
        self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        if "velocity" not in state:
            state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        mu = group["momentum"]
        v = state["velocity"]
        mu_v_prev = mu * v  # taken before v changes
        v.mul_(mu).sub_(group["lr"] * grad)
        p.sub_(mu_v_prev).add_((1 + mu) * v)


class RMSprop(_CS231nOptimizer):
    """RMSProp: a per-parameter step scaled by a moving average of squared gradients:
        cache = decay_rate * cache + (1 - decay_rate) * dw**2
        w = w - learning_rate * dw / (sqrt(cache) + epsilon)
    State: 'cache'. Group keys: 'lr', 'decay_rate', 'epsilon'.
    """

    def __init__(
        self,
        params: ParamsT,
        learning_rate: float = 1e-2,
        decay_rate: float = 0.99,
        epsilon: float = 1e-8,
    ) -> None:
        lr = _real("learning_rate", learning_rate, 0.0)
        decay = _real("decay_rate", decay_rate, 0.0, 1.0)
        eps = _real("epsilon", epsilon, 0.0)
        super().__init__(params, {"lr": lr, "decay_rate": decay, "epsilon": eps})

    def _update(
        self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        if "cache" not in state:
            state["cache"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        decay = group["decay_rate"]
        cache = state["cache"]
        cache.mul_(decay).add_((1 - decay) * (grad * grad))
        p.sub_(group["lr"] * grad / (cache.sqrt() + group["epsilon"]))


class Adam(_CS231nOptimizer):
    """Adam with bias correction:
        t = t + 1   (FIRST, so the first step divides by 1 - beta**1, not by 0)
        m = beta1 * m + (1 - beta1) * dw;     v = beta2 * v + (1 - beta2) * dw**2
        mhat = m / (1 - beta1**t);            vhat = v / (1 - beta2**t)
        w = w - learning_rate * mhat / (sqrt(vhat) + epsilon)
    State: 'm', 'v' (zeros like w), 't' (a Python int, 0 before the first step).
    Group keys: 'lr', 'beta1', 'beta2', 'epsilon'.
    """

    def __init__(
        self,
        params: ParamsT,
        learning_rate: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
    ) -> None:
        lr = _real("learning_rate", learning_rate, 0.0)
        b1 = _real("beta1", beta1, 0.0, 1.0, open_high=True)
        b2 = _real("beta2", beta2, 0.0, 1.0, open_high=True)
        eps = _real("epsilon", epsilon, 0.0)
        super().__init__(params, {"lr": lr, "beta1": b1, "beta2": b2, "epsilon": eps})

    def _update(
        self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        if "t" not in state:
            state["t"] = 0
            state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        b1, b2 = group["beta1"], group["beta2"]
        # A state_dict written elsewhere may hold t as a tensor; the rule needs the integer.
        t = int(state["t"]) + 1
        state["t"] = t
        m, v = state["m"], state["v"]
        m.mul_(b1).add_((1 - b1) * grad)
        v.mul_(b2).add_((1 - b2) * (grad * grad))
        mhat = m / (1 - b1**t)
        vhat = v / (1 - b2**t)
        p.sub_(group["lr"] * mhat / (vhat.sqrt_() + group["epsilon"]))
