"""torch_impl.nn modules: parameters and buffers (names, CS231n layouts), train/eval, state_dict
round trip, and equality with the functional form (exact: the same Function) and with the
builtin torch.nn module (float64 tolerances, conversions written out).

Batchnorm's running statistics are followed step by step in test_batchnorm.py; here the module's
own bookkeeping is checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

from parity_tests.tolerances import ASSERT_CLOSE
from torch_impl import functional as tfn
from torch_impl import nn as tnn


@dataclass(frozen=True)
class ModuleCase:
    """make(): the torch_impl module. inputs(rng): its forward's arguments (float64; the first
    one is differentiated). params/buffers: name -> shape. functional(module, *inputs): the same
    computation through torch_impl.functional with the module's tensors. builtin(module): the
    torch.nn module with the converted parameters (shared tensors where the layout agrees, so
    gradients can be compared), or None. builtin_call(builtin, *inputs): how to call it.
    modal: train and eval differ (batchnorm's statistics, dropout). param_grads(builtin): the
    builtin's parameter gradients converted to CS231n's layout, by name (None: the builtin
    shares the module's parameter tensors)."""

    name: str
    make: Callable[[], nn.Module]
    inputs: Callable[[np.random.Generator], tuple]
    params: dict = field(default_factory=dict)
    buffers: dict = field(default_factory=dict)
    functional: Callable | None = None
    builtin: Callable | None = None
    builtin_call: Callable = staticmethod(lambda m, *a: m(*a))
    modal: bool = False
    param_grads: Callable | None = None


def _x(rng, *shape):
    return torch.tensor(rng.standard_normal(shape))


def _scores(rng):
    return _x(rng, 4, 5), torch.tensor(rng.integers(5, size=4))


def _bn_param(m, mode):
    return {
        "mode": mode,
        "eps": m.eps,
        "momentum": m.momentum,
        "running_mean": m.running_mean,
        "running_var": m.running_var,
    }


def _bn_builtin(cls):
    def make(m):
        # PyTorch's momentum is the fraction REPLACED: 1 - CS231n's. Its running_var averages
        # the unbiased variance, so only running_mean is compared (test_batchnorm.py converts).
        b = cls(m.num_features, eps=m.eps, momentum=1 - m.momentum, dtype=torch.float64)
        b.weight, b.bias = m.gamma, m.beta
        with torch.no_grad():
            b.running_mean.copy_(m.running_mean)
            b.running_var.copy_(m.running_var)
        return b

    return make


def _linear(m):
    b = nn.Linear(m.in_features, m.out_features, dtype=torch.float64)
    with torch.no_grad():  # nn.Linear's weight (M, D) is CS231n's w (D, M) transposed
        b.weight.copy_(m.w.T)
        b.bias.copy_(m.b)
    return b


def _conv(m):
    b = nn.Conv2d(
        m.in_channels,
        m.out_channels,
        m.kernel_size,
        stride=m.stride,
        padding=m.pad,
        dtype=torch.float64,
    )
    b.weight, b.bias = m.w, m.b  # the same (F, C, HH, WW) layout
    return b


def _conv_transpose(m):
    b = nn.ConvTranspose2d(
        m.in_channels,
        m.out_channels,
        m.kernel_size,
        stride=m.stride,
        padding=m.padding,
        dtype=torch.float64,
    )
    b.weight, b.bias = m.w, m.b  # the same (C_in, C_out, kH, kW) layout
    return b


def _group_norm(m):
    b = nn.GroupNorm(m.G, m.num_channels, eps=m.eps, dtype=torch.float64)
    with torch.no_grad():  # CS231n's (1, C, 1, 1) gamma/beta are GroupNorm's (C,)
        b.weight.copy_(m.gamma.reshape(-1))
        b.bias.copy_(m.beta.reshape(-1))
    return b


def _layer_norm(m):
    b = nn.LayerNorm(m.num_features, eps=m.eps, dtype=torch.float64)
    b.weight, b.bias = m.gamma, m.beta
    return b


CASES = [
    ModuleCase(
        "Affine",
        lambda: tnn.Affine(6, 4),
        lambda rng: (_x(rng, 3, 2, 3),),
        {"w": (6, 4), "b": (4,)},
        functional=lambda m, x: tfn.affine(x, m.w, m.b),
        builtin=_linear,
        builtin_call=lambda b, x: b(x.reshape(len(x), -1)),
        param_grads=lambda b: {"w": b.weight.grad.T, "b": b.bias.grad},
    ),
    ModuleCase(
        "ReLU",
        tnn.ReLU,
        lambda rng: (_x(rng, 3, 4),),
        functional=lambda m, x: tfn.relu(x),
        builtin=lambda m: nn.ReLU(),
    ),
    ModuleCase(
        "Sigmoid",
        tnn.Sigmoid,
        lambda rng: (_x(rng, 3, 4),),
        functional=lambda m, x: tfn.sigmoid(x),
        builtin=lambda m: nn.Sigmoid(),
    ),
    ModuleCase(
        "Tanh",
        tnn.Tanh,
        lambda rng: (_x(rng, 3, 4),),
        functional=lambda m, x: tfn.tanh(x),
        builtin=lambda m: nn.Tanh(),
    ),
    ModuleCase(
        "BatchNorm",
        lambda: tnn.BatchNorm(3, eps=1e-3, momentum=0.8),
        lambda rng: (_x(rng, 5, 3) * 2 + 1,),
        {"gamma": (3,), "beta": (3,)},
        {"running_mean": (3,), "running_var": (3,)},
        functional=lambda m, x: tfn.batchnorm(
            x, m.gamma, m.beta, _bn_param(m, "train" if m.training else "test")
        ),
        builtin=_bn_builtin(nn.BatchNorm1d),
        modal=True,
    ),
    ModuleCase(
        "SpatialBatchNorm",
        lambda: tnn.SpatialBatchNorm(3, momentum=0.7),
        lambda rng: (_x(rng, 2, 3, 3, 2) - 1,),
        {"gamma": (3,), "beta": (3,)},
        {"running_mean": (3,), "running_var": (3,)},
        functional=lambda m, x: tfn.spatial_batchnorm(
            x, m.gamma, m.beta, _bn_param(m, "train" if m.training else "test")
        ),
        builtin=_bn_builtin(nn.BatchNorm2d),
        modal=True,
    ),
    ModuleCase(
        "LayerNorm",
        lambda: tnn.LayerNorm(5, eps=1e-3),
        lambda rng: (_x(rng, 3, 5),),
        {"gamma": (5,), "beta": (5,)},
        functional=lambda m, x: tfn.layernorm(x, m.gamma, m.beta, {"eps": m.eps}),
        builtin=_layer_norm,
    ),
    ModuleCase(
        "SpatialGroupNorm",
        lambda: tnn.SpatialGroupNorm(4, 2),
        lambda rng: (_x(rng, 2, 4, 2, 3),),
        {"gamma": (1, 4, 1, 1), "beta": (1, 4, 1, 1)},
        functional=lambda m, x: tfn.spatial_groupnorm(x, m.gamma, m.beta, m.G, {"eps": m.eps}),
        builtin=_group_norm,
        param_grads=lambda b: {
            "gamma": b.weight.grad.view(1, -1, 1, 1),
            "beta": b.bias.grad.view(1, -1, 1, 1),
        },
    ),
    ModuleCase(
        "Dropout",
        lambda: tnn.Dropout(0.7, torch.Generator().manual_seed(5)),
        lambda rng: (_x(rng, 6, 7),),
        functional=lambda m, x: tfn.dropout(
            x, {"p": m.p, "mode": "train" if m.training else "test", "seed": 5}
        ),
        builtin=lambda m: nn.Dropout(1 - m.p),
        modal=True,
    ),  # builtin: eval mode only
    ModuleCase(
        "Conv2d",
        lambda: tnn.Conv2d(3, 4, (3, 2), stride=2, pad=1),
        lambda rng: (_x(rng, 2, 3, 5, 6),),
        {"w": (4, 3, 3, 2), "b": (4,)},
        functional=lambda m, x: tfn.conv(x, m.w, m.b, {"stride": m.stride, "pad": m.pad}),
        builtin=_conv,
    ),
    ModuleCase(
        "MaxPool2d",
        lambda: tnn.MaxPool2d(2, 3, 1),
        lambda rng: (_x(rng, 2, 3, 5, 6),),
        functional=lambda m, x: tfn.max_pool(x, {"pool_height": 2, "pool_width": 3, "stride": 1}),
        builtin=lambda m: nn.MaxPool2d((2, 3), stride=1),
    ),
    ModuleCase(
        "SVMLoss",
        tnn.SVMLoss,
        _scores,
        functional=lambda m, x, y: tfn.svm_loss(x, y),
        builtin=lambda m: nn.MultiMarginLoss(),
        # CS231n sums the hinge terms over the classes: C * multi_margin_loss
        builtin_call=lambda b, x, y: x.shape[1] * b(x, y),
    ),
    ModuleCase(
        "SoftmaxLoss",
        tnn.SoftmaxLoss,
        _scores,
        functional=lambda m, x, y: tfn.softmax_loss(x, y),
        builtin=lambda m: nn.CrossEntropyLoss(),
    ),
    ModuleCase(
        "Flatten", tnn.Flatten, lambda rng: (_x(rng, 2, 3, 4),), builtin=lambda m: nn.Flatten()
    ),
    ModuleCase(
        "LeakyReLU",
        lambda: tnn.LeakyReLU(0.2),
        lambda rng: (_x(rng, 3, 4),),
        builtin=lambda m: nn.LeakyReLU(m.negative_slope),
    ),
    ModuleCase(
        "ConvTranspose2d",
        lambda: tnn.ConvTranspose2d(3, 2, 4, stride=2, padding=1),
        lambda rng: (_x(rng, 2, 3, 3, 4),),
        {"w": (3, 2, 4, 4), "b": (2,)},
        builtin=_conv_transpose,
    ),
]
IDS = [c.name for c in CASES]


def _module(case, seed=0):
    torch.manual_seed(seed)
    return case.make().double()


def _inputs(case, seed=0):
    args = case.inputs(np.random.default_rng(seed))
    return (args[0].clone().requires_grad_(), *args[1:])


def _close(a, b, what):
    torch.testing.assert_close(a, b, **ASSERT_CLOSE["float64"], msg=lambda m: f"{what}: {m}")


def test_every_module_has_a_case():
    assert set(tnn.__all__) == set(IDS)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_parameters_and_buffers(case):
    m = _module(case)
    params = {k: tuple(v.shape) for k, v in m.named_parameters()}
    buffers = {k: tuple(v.shape) for k, v in m.named_buffers()}
    assert params == case.params
    assert buffers == case.buffers
    assert set(m.state_dict()) == set(case.params) | set(case.buffers)
    assert all(t.dtype == torch.float64 for t in m.state_dict().values()), ".double() missed one"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_train_and_eval(case):
    m = _module(case)
    args = _inputs(case)
    m.eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    out_eval = m(*args)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), f"eval() changed {k}"
    m.train()
    out_train = m(*args)
    if case.modal:
        assert not torch.equal(out_train, out_eval), "train and eval mode give the same output"
    else:
        assert torch.equal(out_train, out_eval), "train and eval mode differ"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_state_dict_round_trip(case):
    source = _module(case, seed=0)
    args = _inputs(case)
    source.train()
    source(*args)  # moves the running statistics away from their initial values
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.25)  # and the parameters away from a fresh module's
    target = _module(case, seed=1)
    target.load_state_dict(source.state_dict())
    for (k, a), (_, b) in zip(
        source.state_dict().items(), target.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), f"{k} not restored"
    source.eval()
    target.eval()
    assert torch.equal(source(*args), target(*args))


@pytest.mark.parametrize("case", [c for c in CASES if c.functional], ids=lambda c: c.name)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_module_equals_functional(case, mode):
    m = _module(case)
    m.train(mode == "train")
    args = _inputs(case)
    out_m = m(*args)
    dout = torch.randn(out_m.shape, dtype=out_m.dtype, generator=torch.Generator().manual_seed(3))
    grads_m = torch.autograd.grad(out_m, (args[0], *m.parameters()), dout)
    m2 = _module(case)
    m2.train(mode == "train")
    args2 = _inputs(case)
    out_f = case.functional(m2, *args2)
    grads_f = torch.autograd.grad(out_f, (args2[0], *m2.parameters()), dout)
    assert torch.equal(out_m, out_f), "module and functional outputs differ"
    for i, (a, b) in enumerate(zip(grads_m, grads_f, strict=True)):
        assert torch.equal(a, b), f"gradient {i} differs"
    for (k, a), (_, b) in zip(m.named_buffers(), m2.named_buffers(), strict=True):
        assert torch.equal(a, b), f"buffer {k} differs"


def test_flatten_keeps_an_empty_batch():
    x = torch.zeros(0, 3, 4)
    assert tnn.Flatten()(x).shape == nn.Flatten()(x).shape == (0, 12)


@pytest.mark.parametrize("case", [c for c in CASES if c.builtin], ids=lambda c: c.name)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_module_matches_builtin(case, mode):
    if case.name == "Dropout" and mode == "train":
        pytest.skip("nn.Dropout draws its own mask; test_dropout.py checks the statistics")
    m = _module(case)
    b = case.builtin(m)
    m.train(mode == "train")
    b.train(mode == "train")
    args = _inputs(case)
    args_b = (args[0].detach().clone().requires_grad_(), *args[1:])
    out_m, out_b = m(*args), case.builtin_call(b, *args_b)
    _close(out_m, out_b, f"{case.name} output ({mode})")
    dout = torch.randn(out_m.shape, dtype=out_m.dtype, generator=torch.Generator().manual_seed(3))
    out_m.backward(dout)
    grads_m = {k: p.grad for k, p in m.named_parameters()}
    for p in m.parameters():
        p.grad = None  # a builtin sharing the tensors accumulates its own gradients there
    out_b.backward(dout)
    _close(args[0].grad, args_b[0].grad, f"{case.name} dx ({mode})")
    grads_b = (
        case.param_grads(b) if case.param_grads else {k: p.grad for k, p in m.named_parameters()}
    )
    assert set(grads_b) == set(grads_m)
    for k, g in grads_m.items():
        _close(g, grads_b[k], f"{case.name} d{k} ({mode})")
    if "running_mean" in case.buffers:
        _close(m.running_mean, b.running_mean, f"{case.name} running_mean ({mode})")
