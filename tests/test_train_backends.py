"""The backends' pieces: the NumPy bridge Functions, the optimizers, the label-smoothed loss.

Each bridge Function is compared with the builtin op set (forward and backward, float64, CS231n's
rel_error at the twin tolerance) and keeps float32 in float32. NumpyOptimizer is compared with the
numpy_impl.optim rule it wraps, called by hand; the twins' optimizers (with coupled weight decay)
with torch.optim where the math is the same (constant learning rate).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cifar_training.backends import OPTIMIZERS, BuiltinOps, get_ops, with_weight_decay
from cifar_training.numpy_bridge import RULES, NumpyOptimizer, to_numpy
from numpy_impl import optim as np_optim
from numpy_impl.gradient_check import rel_error
from parity_tests.tolerances import REL_ERROR

TOL = REL_ERROR["twin_float64"]


def _run(ops, name, inputs, extra, dout_seed=99):
    """Forward the op, backprop a random upstream gradient; return (out, grads of inputs)."""
    ts = [t.clone().requires_grad_(t.is_floating_point()) for t in inputs]
    out = getattr(ops, name)(*ts, *extra)
    g = torch.Generator().manual_seed(dout_seed)
    dout = torch.randn(out.shape, generator=g, dtype=out.dtype)
    out.backward(dout)
    return out.detach(), [t.grad for t in ts if t.is_floating_point()]


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


OP_CASES = {
    "conv 3x3 pad 1": (
        "conv",
        lambda: [_rand(2, 3, 7, 6), _rand(4, 3, 3, 3, seed=1), _rand(4, seed=2)],
        (1, 1),
    ),
    "conv 2x2 stride 2": (
        "conv",
        lambda: [_rand(3, 2, 8, 8), _rand(5, 2, 2, 2, seed=1), _rand(5, seed=2)],
        (2, 0),
    ),
    "max pool 2": ("max_pool", lambda: [_rand(2, 3, 6, 7)], (2, 2)),
    "max pool 3 (global)": ("max_pool", lambda: [_rand(2, 4, 3, 3)], (3, 3)),
    "relu": ("relu", lambda: [_rand(3, 5, 2, 2)], ()),
    "affine": ("affine", lambda: [_rand(4, 2, 3, 3), _rand(18, 7, seed=1), _rand(7, seed=2)], ()),
    "spatial batchnorm train": (
        "spatial_batchnorm",
        lambda: [_rand(4, 3, 5, 5) * 3 + 1, _rand(3, seed=1), _rand(3, seed=2)],
        "train",
    ),
    "spatial batchnorm test": (
        "spatial_batchnorm",
        lambda: [_rand(4, 3, 5, 5) * 3 + 1, _rand(3, seed=1), _rand(3, seed=2)],
        "test",
    ),
}


@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_numpy_bridge_matches_builtin(case):
    name, make, extra = OP_CASES[case]
    outs = {}
    for backend in ("numpy", "builtin"):
        inputs = make()
        if name == "spatial_batchnorm":
            C = inputs[0].shape[1]
            rm, rv = _rand(C, seed=5) * 0.1, _rand(C, seed=6).abs() + 0.5
            stats = (rm.clone(), rv.clone())
            args = (*stats, extra == "train", 0.9, 1e-5)
            outs[backend] = _run(get_ops(backend), name, inputs, args) + (stats,)
        else:
            outs[backend] = _run(get_ops(backend), name, inputs, extra)
    (o_np, g_np, *rest_np), (o_bi, g_bi, *rest_bi) = outs["numpy"], outs["builtin"]
    assert rel_error(o_np.numpy(), o_bi.numpy()) < TOL
    assert len(g_np) == len(g_bi)
    for a, b in zip(g_np, g_bi, strict=True):
        assert rel_error(a.numpy(), b.numpy()) < TOL
    if rest_np:  # running mean: same convention; running var: PyTorch's is unbiased
        (rm_np, rv_np), (rm_bi, rv_bi) = rest_np[0], rest_bi[0]
        assert rel_error(rm_np.numpy(), rm_bi.numpy()) < TOL
        if extra == "test":
            assert rel_error(rv_np.numpy(), rv_bi.numpy()) == 0


def test_numpy_bridge_keeps_float32_and_writes_running_stats_in_place():
    ops = get_ops("numpy")
    x = _rand(4, 3, 6, 6, dtype=torch.float32).requires_grad_()
    w = _rand(5, 3, 3, 3, seed=1, dtype=torch.float32).requires_grad_()
    b = torch.zeros(5, requires_grad=True)
    gamma, beta = torch.ones(5, requires_grad=True), torch.zeros(5, requires_grad=True)
    rm, rv = torch.zeros(5), torch.ones(5)
    rm_ptr = rm.data_ptr()
    out = ops.spatial_batchnorm(ops.conv(x, w, b, 1, 1), gamma, beta, rm, rv, True, 0.9, 1e-5)
    scores = ops.affine(
        ops.max_pool(ops.relu(out), 2, 2),
        _rand(45, 10, seed=2, dtype=torch.float32),
        torch.zeros(10),
    )
    loss = ops.softmax_loss(scores, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert loss.dtype == scores.dtype == torch.float32
    assert x.grad.dtype == w.grad.dtype == gamma.grad.dtype == torch.float32
    assert rm.data_ptr() == rm_ptr and rm.abs().sum() > 0  # updated in the buffer's memory


def test_numpy_bridge_refuses_a_non_cpu_tensor():
    with pytest.raises(RuntimeError, match="runs on CPU only"):
        to_numpy(torch.empty(3, device="meta"))


def test_softmax_loss_chain_rule_scales_the_gradient():
    ops = get_ops("numpy")
    x = _rand(5, 4).requires_grad_()
    (3.0 * ops.softmax_loss(x, torch.tensor([0, 1, 2, 3, 0]))).backward()
    ref = _rand(5, 4).requires_grad_()
    (3.0 * torch.nn.functional.cross_entropy(ref, torch.tensor([0, 1, 2, 3, 0]))).backward()
    assert rel_error(x.grad.numpy(), ref.grad.numpy()) < TOL


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("eps", [0.0, 0.2, 1.0 - 1e-9])
def test_label_smoothing_by_mixing_plain_losses(backend, eps):
    """(1 - eps) L(y) + eps/C sum_c L(c) equals F.cross_entropy(label_smoothing=eps)."""
    x = (_rand(7, 10) * 4).requires_grad_()
    y = torch.tensor([0, 3, 9, 9, 1, 5, 2])
    loss = get_ops(backend).cross_entropy(x, y, eps)
    loss.backward()
    ref_x = (_rand(7, 10) * 4).requires_grad_()
    ref = BuiltinOps().cross_entropy(ref_x, y, eps)
    ref.backward()
    assert rel_error(loss.item(), ref.item()) < TOL
    assert rel_error(x.grad.numpy(), ref_x.grad.numpy()) < TOL


# ----------------------------------------------------------------------------------------------
# Optimizers
# ----------------------------------------------------------------------------------------------


def _params(seed=0):
    return [_rand(4, 3, seed=seed).requires_grad_(), _rand(5, seed=seed + 1).requires_grad_()]


def _grads(step):
    return [_rand(4, 3, seed=100 + step), _rand(5, seed=200 + step)]


HYPER = {
    "sgd": {},
    "sgd_momentum": {"momentum": 0.8},
    "nesterov": {"momentum": 0.85},
    "rmsprop": {"decay_rate": 0.9, "epsilon": 1e-7},
    "adam": {"beta1": 0.8, "beta2": 0.99, "epsilon": 1e-7},
}
RULE_FN = {
    "sgd": np_optim.sgd,
    "sgd_momentum": np_optim.sgd_momentum,
    "nesterov": np_optim.nesterov_momentum,
    "rmsprop": np_optim.rmsprop,
    "adam": np_optim.adam,
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_numpy_optimizer_is_the_cs231n_rule(rule):
    """Three steps with a changing learning rate and weight decay, against the rule by hand."""
    params = _params()
    opt = NumpyOptimizer(
        [{"params": params[:1], "weight_decay": 0.1}, {"params": params[1:], "weight_decay": 0.0}],
        rule=rule,
        lr=0.05,
        **HYPER[rule],
    )
    ref_w = [p.detach().numpy().copy() for p in params]
    configs = [dict(HYPER[rule]) for _ in params]
    for step in range(3):
        lr = 0.05 * (1 + step)
        for group in opt.param_groups:
            group["lr"] = lr
        for p, g in zip(params, _grads(step), strict=True):
            p.grad = g.clone()
        opt.step()
        for i, g in enumerate(_grads(step)):
            dw = g.numpy() + (0.1 * ref_w[i] if i == 0 else 0.0)
            configs[i]["learning_rate"] = lr
            ref_w[i], configs[i] = RULE_FN[rule](ref_w[i], dw, configs[i])
    for p, w in zip(params, ref_w, strict=True):
        assert rel_error(p.detach().numpy(), w) < TOL


@pytest.mark.parametrize("rule", ["nesterov", "adam"])
def test_numpy_optimizer_state_dict_round_trip(rule, tmp_path):
    def make(params):
        return NumpyOptimizer(params, rule=rule, lr=0.1)

    a_params = _params()
    a = make(a_params)
    for step in range(2):
        for p, g in zip(a_params, _grads(step), strict=True):
            p.grad = g.clone()
        a.step()
    torch.save(a.state_dict(), tmp_path / "opt.pt")
    b_params = [p.detach().clone().requires_grad_() for p in a_params]
    b = make(b_params)
    b.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    for opt, params in ((a, a_params), (b, b_params)):
        for p, g in zip(params, _grads(5), strict=True):
            p.grad = g.clone()
        opt.step()
    for pa, pb in zip(a_params, b_params, strict=True):
        assert torch.equal(pa, pb)


def test_numpy_optimizer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="rule must be one of"):
        NumpyOptimizer(_params(), rule="lion")
    with pytest.raises(TypeError, match="unknown hyperparameters"):
        NumpyOptimizer(_params(), rule="sgd", momentum=0.9)


TORCH_EQUIV = {  # twin rule -> torch.optim with the same iterates at a constant lr
    "sgd": lambda ps, wd: torch.optim.SGD(ps, lr=0.1, weight_decay=wd),
    "sgd_momentum": lambda ps, wd: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=wd),
    "nesterov": lambda ps, wd: torch.optim.SGD(
        ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=wd
    ),
    "rmsprop": lambda ps, wd: torch.optim.RMSprop(
        ps, lr=0.1, alpha=0.99, eps=1e-8, weight_decay=wd
    ),
    "adam": lambda ps, wd: torch.optim.Adam(ps, lr=0.1, weight_decay=wd),
}


@pytest.mark.parametrize("backend", ["torch", "numpy"])
@pytest.mark.parametrize("rule", OPTIMIZERS)
def test_twin_optimizers_match_torch_optim_at_constant_lr(backend, rule):
    """CS231n's momentum form v = mu v - lr dw equals torch's buf form when lr is constant; the
    coupled weight decay is torch.optim's."""
    params, ref = _params(), _params()
    opt = get_ops(backend).make_optimizer([{"params": params, "weight_decay": 0.01}], rule, 0.1)
    ref_opt = TORCH_EQUIV[rule](ref, 0.01)
    for step in range(4):
        for ps, o in ((params, opt), (ref, ref_opt)):
            for p, g in zip(ps, _grads(step), strict=True):
                p.grad = g.clone()
            o.step()
    for p, r in zip(params, ref, strict=True):
        assert rel_error(p.detach().numpy(), r.detach().numpy()) < TOL


def test_weight_decay_wrapper_calls_the_closure_once():
    calls = []
    params = _params()
    from torch_impl.optim import SGD

    opt = with_weight_decay(SGD)([{"params": params, "weight_decay": 0.5}], learning_rate=0.1)

    def closure():
        calls.append(1)
        for p, g in zip(params, _grads(0), strict=True):
            p.grad = g.clone()
        return torch.tensor(1.0)

    before = [p.detach().clone() for p in params]
    assert opt.step(closure).item() == 1.0 and len(calls) == 1
    for p, b, g in zip(params, before, _grads(0), strict=True):
        expected = b - 0.1 * (g + 0.5 * b)
        assert rel_error(p.detach().numpy(), expected.numpy()) < TOL
    assert np.all(np.isfinite(params[0].detach().numpy()))


def test_head_scale_groups_equal_sgd_on_scaled_logits():
    """param_groups(head_scale=a) + a-times smaller head init == plain SGD on a * logits."""
    import copy

    from cifar_training.models import build_net, param_groups

    a, lr, wd = 0.125, 0.3, 5e-3
    x, y = _rand(6, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4, 5])
    net_a = build_net(
        "default", widths=(4, 8, 8), stem="conv", image_shape=(3, 16, 16), seed=3, head_scale=a
    ).double()
    net_b = copy.deepcopy(net_a)
    with torch.no_grad():
        net_b.head.w.div_(a)
        net_b.head.b.div_(a)
    ops = get_ops("builtin")
    opt_a = ops.make_optimizer(param_groups(net_a, lr, wd, a), "nesterov", lr)
    opt_b = ops.make_optimizer(param_groups(net_b, lr, wd, 1.0), "nesterov", lr)
    for _ in range(3):
        for net, opt, mult in ((net_a, opt_a, 1.0), (net_b, opt_b, a)):
            opt.zero_grad()
            ops.cross_entropy(mult * net(x, ops), y, 0.1).backward()
            opt.step()
    for (name, pa), pb in zip(net_a.named_parameters(), net_b.parameters(), strict=True):
        expected = a * pb if name.startswith("head.") else pb
        assert rel_error(pa.detach().numpy(), expected.detach().numpy()) < TOL, name
