"""torch_impl.optim: the update rules written out by hand, state_dict round-trips, LR schedulers,
and the torch.optim-equivalent cases.

The expected values are computed here from the CS231n formulas in plain Python floats (one
scalar parameter) or from torch.optim, never from torch_impl's own output.
"""

from __future__ import annotations

import io
import math

import pytest
import torch

from torch_impl import optim

GRADS = [0.5, -1.25, 2.0, 0.125, -0.75]


def _run_scalar(opt_cls, w0, grads, **kw):
    """Run the optimizer on one float64 scalar parameter with the given gradient sequence."""
    p = torch.nn.Parameter(torch.tensor([w0], dtype=torch.float64))
    opt = opt_cls([p], **kw)
    out = []
    for g in grads:
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        out.append(p.item())
    return out, opt, p


def _expected(rule, w, grads, **hp):
    """The CS231n rules in plain Python floats."""
    state = {"v": 0.0, "cache": 0.0, "m": 0.0, "vv": 0.0, "t": 0}
    out = []
    for dw in grads:
        if rule == "sgd":
            w = w - hp["lr"] * dw
        elif rule == "momentum":
            state["v"] = hp["mu"] * state["v"] - hp["lr"] * dw
            w = w + state["v"]
        elif rule == "nesterov":
            v_prev = state["v"]
            state["v"] = hp["mu"] * v_prev - hp["lr"] * dw
            w = w - hp["mu"] * v_prev + (1 + hp["mu"]) * state["v"]
        elif rule == "rmsprop":
            state["cache"] = hp["decay"] * state["cache"] + (1 - hp["decay"]) * dw * dw
            w = w - hp["lr"] * dw / (math.sqrt(state["cache"]) + hp["eps"])
        elif rule == "adam":
            state["t"] += 1
            t = state["t"]
            state["m"] = hp["b1"] * state["m"] + (1 - hp["b1"]) * dw
            state["vv"] = hp["b2"] * state["vv"] + (1 - hp["b2"]) * dw * dw
            mhat = state["m"] / (1 - hp["b1"] ** t)
            vhat = state["vv"] / (1 - hp["b2"] ** t)
            w = w - hp["lr"] * mhat / (math.sqrt(vhat) + hp["eps"])
        out.append(w)
    return out


CASES = [
    (optim.SGD, {"learning_rate": 0.1}, "sgd", {"lr": 0.1}),
    (
        optim.SGDMomentum,
        {"learning_rate": 0.1, "momentum": 0.8},
        "momentum",
        {"lr": 0.1, "mu": 0.8},
    ),
    (optim.Nesterov, {"learning_rate": 0.05, "momentum": 0.9}, "nesterov", {"lr": 0.05, "mu": 0.9}),
    (
        optim.RMSprop,
        {"learning_rate": 0.01, "decay_rate": 0.9, "epsilon": 1e-6},
        "rmsprop",
        {"lr": 0.01, "decay": 0.9, "eps": 1e-6},
    ),
    (
        optim.Adam,
        {"learning_rate": 0.02, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-7},
        "adam",
        {"lr": 0.02, "b1": 0.8, "b2": 0.99, "eps": 1e-7},
    ),
]


@pytest.mark.parametrize("opt_cls, kw, rule, hp", CASES, ids=[c[2] for c in CASES])
def test_rules_match_the_formulas(opt_cls, kw, rule, hp):
    got, _, _ = _run_scalar(opt_cls, 1.5, GRADS, **kw)
    want = _expected(rule, 1.5, GRADS, **hp)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-14)


def test_defaults_are_cs231n():
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert optim.SGD(p).defaults == {"lr": 1e-2}
    assert optim.SGDMomentum(p).defaults == {"lr": 1e-2, "momentum": 0.9}
    assert optim.Nesterov(p).defaults == {"lr": 1e-2, "momentum": 0.9}
    assert optim.RMSprop(p).defaults == {"lr": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8}
    assert optim.Adam(p).defaults == {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}


def test_state_keys():
    _, opt, p = _run_scalar(optim.SGDMomentum, 0.0, GRADS[:1])
    assert set(opt.state[p]) == {"velocity"}
    _, opt, p = _run_scalar(optim.Nesterov, 0.0, GRADS[:1])
    assert set(opt.state[p]) == {"velocity"}
    _, opt, p = _run_scalar(optim.RMSprop, 0.0, GRADS[:1])
    assert set(opt.state[p]) == {"cache"}
    _, opt, p = _run_scalar(optim.Adam, 0.0, GRADS[:2])
    assert set(opt.state[p]) == {"m", "v", "t"}
    assert opt.state[p]["t"] == 2


@pytest.mark.parametrize("opt_cls, kw, rule, hp", CASES, ids=[c[2] for c in CASES])
def test_state_dict_round_trip(opt_cls, kw, rule, hp):
    """Train 2 steps, save, reload (weights_only) into a fresh optimizer on a copy of the
    parameter, and continue both: they must stay identical to the uninterrupted run."""
    torch.manual_seed(0)
    w0 = torch.randn(3, 4, dtype=torch.float64)
    grads = [torch.randn(3, 4, dtype=torch.float64) for _ in range(5)]

    p = torch.nn.Parameter(w0.clone())
    opt = opt_cls([p], **kw)
    for g in grads[:2]:
        p.grad = g.clone()
        opt.step()
    buf = io.BytesIO()
    torch.save({"w": p.detach().clone(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    q = torch.nn.Parameter(saved["w"])
    opt2 = opt_cls([q], **kw)
    opt2.load_state_dict(saved["opt"])
    for g in grads[2:]:
        p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        opt2.step()
    assert torch.equal(p, q)
    for key, value in opt.state[p].items():
        other = opt2.state[q][key]
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(other)), key


def test_adam_accepts_tensor_t_from_a_foreign_state_dict():
    p = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = optim.Adam([p], learning_rate=0.1)
    p.grad = torch.ones(2, dtype=torch.float64)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["t"] = torch.tensor(1.0)
    opt.load_state_dict(sd)
    opt.step()
    assert opt.state[p]["t"] == 2


def test_step_lr_scheduler_drives_the_update():
    """StepLR halves group['lr'] every step; SGD's update must use the scheduled value."""
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = optim.SGD([p], learning_rate=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = torch.ones(1, dtype=torch.float64)
        opt.step()
        sched.step()
    assert p.item() == pytest.approx(-(1.0 + 0.5 + 0.25))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.125)


def test_one_cycle_scheduler_cycles_momentum():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = optim.SGDMomentum([p], learning_rate=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10)
    seen_lr, seen_mu = set(), set()
    for _ in range(10):
        p.grad = torch.ones(2)
        opt.step()
        sched.step()
        seen_lr.add(round(opt.param_groups[0]["lr"], 6))
        seen_mu.add(round(opt.param_groups[0]["momentum"], 6))
    assert len(seen_lr) > 5 and len(seen_mu) > 5
    for cls in (optim.RMSprop, optim.Adam):
        opt = cls([p])
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=0.1, total_steps=5, cycle_momentum=False
        )
        opt.step()
        sched.step()
        assert opt.param_groups[0]["lr"] != pytest.approx(0.1 / 25)  # moved off initial_lr


def test_params_without_grad_are_skipped():
    a = torch.nn.Parameter(torch.ones(2))
    b = torch.nn.Parameter(torch.ones(2))
    opt = optim.Adam([a, b], learning_rate=0.1)
    a.grad = torch.ones(2)
    opt.step()
    assert torch.equal(b, torch.ones(2)) and b not in opt.state
    assert not torch.equal(a, torch.ones(2))


def test_param_groups_have_their_own_lr():
    a = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], learning_rate=0.1)
    a.grad = torch.ones(1, dtype=torch.float64)
    b.grad = torch.ones(1, dtype=torch.float64)
    opt.step()
    assert (a.item(), b.item()) == (pytest.approx(-0.1), pytest.approx(-0.5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sgd_momentum_equals_torch_sgd_with_conversion(dtype):
    """CS231n's v = mu*v - lr*dw equals torch's buf = mu*buf + dw (w -= lr*buf) with a constant
    lr (v = -lr * buf); RMSprop equals torch's with alpha = decay_rate; plain SGD equals SGD."""
    torch.manual_seed(1)
    w0 = torch.randn(5, dtype=dtype)
    grads = [torch.randn(5, dtype=dtype) for _ in range(6)]
    pairs = [
        (optim.SGD, {"learning_rate": 0.1}, torch.optim.SGD, {"lr": 0.1}),
        (
            optim.SGDMomentum,
            {"learning_rate": 0.1, "momentum": 0.9},
            torch.optim.SGD,
            {"lr": 0.1, "momentum": 0.9},
        ),
        (
            optim.RMSprop,
            {"learning_rate": 0.01, "decay_rate": 0.9},
            torch.optim.RMSprop,
            {"lr": 0.01, "alpha": 0.9, "eps": 1e-8},
        ),
        (
            optim.Adam,
            {"learning_rate": 0.01},
            torch.optim.Adam,
            {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8},
        ),
    ]
    tol = {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {}
    for ours, kw, theirs, tkw in pairs:
        p = torch.nn.Parameter(w0.clone())
        q = torch.nn.Parameter(w0.clone())
        o1, o2 = ours([p], **kw), theirs([q], **tkw)
        for g in grads:
            p.grad, q.grad = g.clone(), g.clone()
            o1.step()
            o2.step()
        torch.testing.assert_close(p.detach(), q.detach(), **tol, msg=ours.__name__)


def test_float32_stays_float32():
    p = torch.nn.Parameter(torch.ones(3))
    opt = optim.Adam([p])
    p.grad = torch.ones(3)
    opt.step()
    assert p.dtype == torch.float32
    assert opt.state[p]["m"].dtype == torch.float32 and opt.state[p]["v"].dtype == torch.float32


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: optim.SGD(p, learning_rate=-1.0), "learning_rate"),
        (lambda p: optim.SGDMomentum(p, momentum=1.0), "momentum"),
        (lambda p: optim.RMSprop(p, decay_rate=1.5), "decay_rate"),
        (lambda p: optim.Adam(p, beta2=-0.1), "beta2"),
        (lambda p: optim.Adam(p, epsilon=-1e-8), "epsilon"),
    ],
)
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(TypeError, match="learning_rate"):
        optim.SGD([torch.nn.Parameter(torch.zeros(1))], learning_rate="0.1")
