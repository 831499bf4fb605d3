"""Optimizers: numpy_impl.optim == torch_impl.optim == torch.optim, step by step, float64.

The same parameter w0 and the same gradient sequence dw_1..dw_K go through the three; after every
step the weights agree, and after the last one the states agree. The conversions to torch.optim
(constant learning rate lr) are:

* sgd: torch.optim.SGD(lr): w -= lr * dw. Same rule.
* sgd_momentum: CS231n v = mu*v - lr*dw; w += v.  torch SGD(momentum=mu): b = mu*b + dw;
  w -= lr*b.  By induction v_k = -lr * b_k (both start at 0; torch's first b = dw = mu*0 + dw),
  so the iterates are the same and velocity == -lr * momentum_buffer.
* nesterov_momentum (course notes): v' = mu*v - lr*dw; w += -mu*v + (1 + mu)*v'.
  torch SGD(momentum=mu, nesterov=True): b' = mu*b + dw; w -= lr*(dw + mu*b').
  With v = -lr*b (so v' = -lr*b'): -mu*v + (1 + mu)*v' = v' + mu*(v' - v) = (mu*v - lr*dw) +
  mu*v' - mu*v = -lr*dw + mu*v' = -lr*(dw + mu*b'). Same iterates; velocity == -lr * buffer.
* rmsprop: torch RMSprop(alpha=decay_rate, eps=epsilon): square_avg = alpha*sa + (1-alpha)*dw^2,
  w -= lr*dw/(sqrt(sa) + eps) -- eps outside the sqrt, as in CS231n. cache == square_avg.
* adam: torch Adam(betas=(beta1, beta2), eps=epsilon): w -= (lr/(1-b1^t)) * m /
  (sqrt(v)/sqrt(1-b2^t) + eps) == lr*mhat/(sqrt(vhat) + eps) up to round-off (sqrt(v/c) vs
  sqrt(v)/sqrt(c)). m == exp_avg, v == exp_avg_sq, t == step.
With a learning rate that CHANGES between steps the momentum forms differ (CS231n's velocity
keeps the old lr inside it), so the scheduler test compares numpy_impl with torch_impl only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from numpy_impl import optim as npo
from numpy_impl.gradient_check import rel_error
from parity_tests.tolerances import ASSERT_CLOSE, REL_ERROR
from torch_impl import optim as to

K = 6  # steps per run


@dataclass(frozen=True)
class OptimSpec:
    """rule: numpy_impl.optim function; twin: torch_impl.optim class; hyper: hypothesis strategy
    for CS231n's hyperparameters; builtin(params, h): the torch.optim optimizer with the converted
    hyperparameters; state(torch_state, h): torch.optim's state in CS231n's keys and form."""

    rule: str
    twin: str
    hyper: st.SearchStrategy
    builtin: Callable
    state: Callable


_lr = st.floats(1e-4, 0.3)
_mu = st.floats(0.0, 0.99)

OPTIMIZERS = {
    "sgd": OptimSpec(
        "sgd",
        "SGD",
        st.fixed_dictionaries({"learning_rate": _lr}),
        lambda p, h: torch.optim.SGD(p, lr=h["learning_rate"]),
        lambda s, h: {},
    ),
    "sgd_momentum": OptimSpec(
        "sgd_momentum",
        "SGDMomentum",
        st.fixed_dictionaries({"learning_rate": _lr, "momentum": _mu}),
        lambda p, h: torch.optim.SGD(p, lr=h["learning_rate"], momentum=h["momentum"]),
        # (torch keeps no buffer when momentum == 0; the iterates are still compared.)
        lambda s, h: (
            {"velocity": -h["learning_rate"] * s["momentum_buffer"]}
            if "momentum_buffer" in s
            else {}
        ),
    ),
    "nesterov_momentum": OptimSpec(
        "nesterov_momentum",
        "Nesterov",
        st.fixed_dictionaries({"learning_rate": _lr, "momentum": st.floats(0.01, 0.99)}),
        lambda p, h: torch.optim.SGD(
            p, lr=h["learning_rate"], momentum=h["momentum"], nesterov=True
        ),
        lambda s, h: {"velocity": -h["learning_rate"] * s["momentum_buffer"]},
    ),
    "rmsprop": OptimSpec(
        "rmsprop",
        "RMSprop",
        st.fixed_dictionaries(
            {
                "learning_rate": _lr,
                "decay_rate": st.floats(0.5, 0.999),
                "epsilon": st.sampled_from([1e-8, 1e-4, 1e-1]),
            }
        ),
        lambda p, h: torch.optim.RMSprop(
            p, lr=h["learning_rate"], alpha=h["decay_rate"], eps=h["epsilon"]
        ),
        lambda s, h: {"cache": s["square_avg"]},
    ),
    "adam": OptimSpec(
        "adam",
        "Adam",
        st.fixed_dictionaries(
            {
                "learning_rate": _lr,
                "beta1": st.floats(0.0, 0.99),
                "beta2": st.floats(0.5, 0.9999),
                "epsilon": st.sampled_from([1e-8, 1e-4, 1e-1]),
            }
        ),
        lambda p, h: torch.optim.Adam(
            p, lr=h["learning_rate"], betas=(h["beta1"], h["beta2"]), eps=h["epsilon"]
        ),
        lambda s, h: {"m": s["exp_avg"], "v": s["exp_avg_sq"], "t": s["step"]},
    ),
}


def _problem(seed: int, shape: tuple):
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(shape)
    # Gradients on varied scales, some entries exactly 0 (rmsprop/adam divide by ~eps there).
    dws = [rng.standard_normal(shape) * rng.choice([1e-3, 1.0, 10.0]) for _ in range(K)]
    dws[1][..., 0] = 0.0
    return w0, dws


def _run_numpy(rule: str, config: dict | None, w0, dws, lrs=None):
    w, ws = w0, []
    for k, dw in enumerate(dws):
        w_before, dw_before = w.copy(), dw.copy()
        if lrs is not None:
            config["learning_rate"] = lrs[k]
        nxt, config = getattr(npo, rule)(w, dw, config)
        assert np.array_equal(w, w_before) and np.array_equal(dw, dw_before), (
            f"numpy_impl.optim.{rule} modified w or dw in place"
        )
        w = nxt
        ws.append(w)
    return ws, config


def _run_torch(make, w0, dws, restart_at=None, scheduler=None):
    """Steps a torch optimizer; with restart_at, a NEW optimizer loads the state_dict there."""
    p = torch.nn.Parameter(torch.tensor(w0))
    opt = make([p])
    sched = scheduler(opt) if scheduler else None
    ws = []
    for k, dw in enumerate(dws):
        if k == restart_at:
            saved = opt.state_dict()
            opt = make([p])
            opt.load_state_dict(saved)
        p.grad = torch.tensor(dw)
        opt.step()
        if sched:
            sched.step()
        ws.append(p.detach().clone())
    return ws, opt.state[p]


def _value(v):
    return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)


def _assert_states(numpy_config: dict, twin_state, builtin_state: dict | None, name: str):
    keys = [k for k in ("velocity", "cache", "m", "v", "t") if k in numpy_config]
    for key in keys:
        a = np.asarray(numpy_config[key], dtype=np.float64)
        b = _value(twin_state[key]).astype(np.float64)
        err = rel_error(a, b)
        assert err < REL_ERROR["twin_float64"], f"{name} state {key!r}: rel_error {err:.2e}"
        if builtin_state is not None and key in builtin_state:
            torch.testing.assert_close(
                torch.as_tensor(b),
                torch.as_tensor(_value(builtin_state[key])).double(),
                **ASSERT_CLOSE["float64"],
                msg=lambda m, key=key: f"{name} state {key!r}: {m}",
            )


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@given(data=st.data())
def test_numpy_twin_and_torch_optim_agree(name, data):
    spec = OPTIMIZERS[name]
    h = data.draw(spec.hyper, label="hyperparameters")
    shape = data.draw(st.sampled_from([(1,), (3, 4), (2, 1, 3)]), label="shape")
    w0, dws = _problem(data.draw(st.integers(0, 2**32 - 1), label="seed"), shape)

    ws_np, config = _run_numpy(spec.rule, dict(h), w0, dws)
    ws_tw, st_tw = _run_torch(lambda p: getattr(to, spec.twin)(p, **h), w0, dws)
    ws_bi, st_bi = _run_torch(lambda p: spec.builtin(p, h), w0, dws)
    for k in range(K):
        err = rel_error(ws_np[k], _value(ws_tw[k]))
        assert err < REL_ERROR["twin_float64"], f"{name} step {k + 1}: numpy vs twin {err:.2e}"
        torch.testing.assert_close(
            ws_tw[k],
            ws_bi[k],
            **ASSERT_CLOSE["float64"],
            msg=lambda m, k=k: f"{name} step {k + 1}: twin vs torch: {m}",
        )
    _assert_states(config, st_tw, spec.state(st_bi, h), name)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_defaults_match_cs231n(name):
    """torch_impl.optim's defaults are numpy_impl.optim's (CS231n's): same iterates, no config."""
    spec = OPTIMIZERS[name]
    w0, dws = _problem(231, (3, 2))
    ws_np, config = _run_numpy(spec.rule, None, w0, dws)
    ws_tw, st_tw = _run_torch(lambda p: getattr(to, spec.twin)(p), w0, dws)
    for k in range(K):
        assert rel_error(ws_np[k], _value(ws_tw[k])) < REL_ERROR["twin_float64"], f"step {k + 1}"
    _assert_states(config, st_tw, None, name)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_round_trip_continues_the_same_run(name):
    """Halfway, a fresh torch_impl optimizer loads the state_dict: the run continues unchanged."""
    spec = OPTIMIZERS[name]
    h = {"learning_rate": 0.05} | ({"momentum": 0.8} if "momentum" in spec.rule else {})
    w0, dws = _problem(7, (4,))
    ws_np, config = _run_numpy(spec.rule, dict(h), w0, dws)
    ws_tw, st_tw = _run_torch(lambda p: getattr(to, spec.twin)(p, **h), w0, dws, restart_at=K // 2)
    for k in range(K):
        assert rel_error(ws_np[k], _value(ws_tw[k])) < REL_ERROR["twin_float64"], f"step {k + 1}"
    _assert_states(config, st_tw, None, name)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_lr_scheduler_drives_the_cs231n_learning_rate(name):
    """A PyTorch LR scheduler changes param_group['lr']; torch_impl uses it exactly as numpy_impl
    uses config['learning_rate'] set to the same value before each step."""
    spec = OPTIMIZERS[name]
    w0, dws = _problem(11, (2, 3))
    lr0, gamma = 0.1, 0.5
    lrs = [lr0 * gamma ** (k // 2) for k in range(K)]  # StepLR(step_size=2, gamma=0.5)
    ws_np, config = _run_numpy(spec.rule, {}, w0, dws, lrs=lrs)
    ws_tw, st_tw = _run_torch(
        lambda p: getattr(to, spec.twin)(p, learning_rate=lr0),
        w0,
        dws,
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=gamma),
    )
    for k in range(K):
        assert rel_error(ws_np[k], _value(ws_tw[k])) < REL_ERROR["twin_float64"], f"step {k + 1}"
    _assert_states(config, st_tw, None, name)
