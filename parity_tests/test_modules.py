"""torch_impl.nn modules: parameters and buffers (names, CS231n layouts), train/eval, state_dict
round trip, and equality with the functional form (exact: the same Function) and with the
builtin torch.nn module (float64 tolerances, conversions by builtin_impl.conversions).

Each module is a registry entry's ``module`` (``parity_tests/registry.py``, ``ModuleInfo``): the
checks run on the entry's own case, so the module is built for the shapes and hyperparameters the
NumPy twin and torch_impl are checked on, and its parameters must have the case's layouts.

Batchnorm's running statistics are followed step by step in test_batchnorm.py; here the module's
own bookkeeping is checked.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from parity_tests.registry import specs_with
from parity_tests.tolerances import ASSERT_CLOSE
from torch_impl import nn as tnn

# The entries with a torch_impl.nn module; each module's checks run on its entry's own case.
SPECS = specs_with("module")
IDS = [s.module.module.__name__ for s in SPECS]


def _module(spec, seed=0):
    torch.manual_seed(seed)
    return spec.module.make(spec.module_case()).double()


def _inputs(spec):
    args = tuple(torch.tensor(a) for a in spec.module.args(spec.module_case()))
    return (args[0].clone().requires_grad_(), *args[1:])


def _shapes(spec) -> tuple[dict, dict]:
    """The parameters' and buffers' expected shapes: the case's inputs other than the first
    argument (CS231n's layouts, as the NumPy twin takes them) and the entry's buffers."""
    case = spec.module_case()
    first = next(iter(case.inputs))
    params = {k: tuple(v.shape) for k, v in case.inputs.items() if k != first}
    return params, spec.module.buffers(case)


def _close(a, b, what):
    torch.testing.assert_close(a, b, **ASSERT_CLOSE["float64"], msg=lambda m: f"{what}: {m}")


def test_every_module_is_in_the_registry():
    """Every check below runs on the registry's ModuleInfos only: each torch_impl.nn module must
    be some entry's (and no two entries may claim the same one, or the ids would clash)."""
    assert sorted(IDS) == sorted(set(IDS)), "a module on two entries"
    missing = set(tnn.__all__) - set(IDS)
    assert not missing, f"torch_impl.nn modules no registry entry has: {sorted(missing)}"
    assert set(IDS) <= set(tnn.__all__)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_parameters_and_buffers(spec):
    m = _module(spec)
    want_params, want_buffers = _shapes(spec)
    params = {k: tuple(v.shape) for k, v in m.named_parameters()}
    buffers = {k: tuple(v.shape) for k, v in m.named_buffers()}
    assert params == want_params
    assert buffers == want_buffers
    assert set(m.state_dict()) == set(want_params) | set(want_buffers)
    assert all(t.dtype == torch.float64 for t in m.state_dict().values()), ".double() missed one"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_train_and_eval(spec):
    m = _module(spec)
    args = _inputs(spec)
    m.eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    out_eval = m(*args)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), f"eval() changed {k}"
    m.train()
    out_train = m(*args)
    if spec.module.modal:
        assert not torch.equal(out_train, out_eval), "train and eval mode give the same output"
    else:
        assert torch.equal(out_train, out_eval), "train and eval mode differ"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_state_dict_round_trip(spec):
    source = _module(spec, seed=0)
    args = _inputs(spec)
    source.train()
    source(*args)  # moves the running statistics away from their initial values
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.25)  # and the parameters away from a fresh module's
    target = _module(spec, seed=1)
    target.load_state_dict(source.state_dict())
    for (k, a), (_, b) in zip(
        source.state_dict().items(), target.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), f"{k} not restored"
    source.eval()
    target.eval()
    assert torch.equal(source(*args), target(*args))


@pytest.mark.parametrize(
    "spec", [s for s in SPECS if s.module.functional], ids=lambda s: s.module.module.__name__
)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_module_equals_functional(spec, mode):
    m = _module(spec)
    m.train(mode == "train")
    args = _inputs(spec)
    out_m = m(*args)
    dout = torch.randn(out_m.shape, dtype=out_m.dtype, generator=torch.Generator().manual_seed(3))
    grads_m = torch.autograd.grad(out_m, (args[0], *m.parameters()), dout)
    m2 = _module(spec)
    m2.train(mode == "train")
    args2 = _inputs(spec)
    out_f = spec.module.functional(m2, *args2)
    grads_f = torch.autograd.grad(out_f, (args2[0], *m2.parameters()), dout)
    assert torch.equal(out_m, out_f), "module and functional outputs differ"
    for i, (a, b) in enumerate(zip(grads_m, grads_f, strict=True)):
        assert torch.equal(a, b), f"gradient {i} differs"
    for (k, a), (_, b) in zip(m.named_buffers(), m2.named_buffers(), strict=True):
        assert torch.equal(a, b), f"buffer {k} differs"


def test_flatten_keeps_an_empty_batch():
    x = torch.zeros(0, 3, 4)
    assert tnn.Flatten()(x).shape == nn.Flatten()(x).shape == (0, 12)


@pytest.mark.parametrize(
    "spec", [s for s in SPECS if s.module.builtin], ids=lambda s: s.module.module.__name__
)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_module_matches_builtin(spec, mode):
    info, name = spec.module, spec.module.module.__name__
    if info.module is tnn.Dropout and mode == "train":
        pytest.skip("nn.Dropout draws its own mask; test_dropout.py checks the statistics")
    m = _module(spec)
    b = info.builtin(m)
    m.train(mode == "train")
    b.train(mode == "train")
    args = _inputs(spec)
    args_b = (args[0].detach().clone().requires_grad_(), *args[1:])
    out_m, out_b = m(*args), info.builtin_call(b, *args_b)
    _close(out_m, out_b, f"{name} output ({mode})")
    dout = torch.randn(out_m.shape, dtype=out_m.dtype, generator=torch.Generator().manual_seed(3))
    out_m.backward(dout)
    grads_m = {k: p.grad for k, p in m.named_parameters()}
    for p in m.parameters():
        p.grad = None  # a builtin sharing the tensors accumulates its own gradients there
    out_b.backward(dout)
    _close(args[0].grad, args_b[0].grad, f"{name} dx ({mode})")
    grads_b = (
        info.param_grads(b) if info.param_grads else {k: p.grad for k, p in m.named_parameters()}
    )
    assert set(grads_b) == set(grads_m)
    for k, g in grads_m.items():
        _close(g, grads_b[k], f"{name} d{k} ({mode})")
    if "running_mean" in dict(m.named_buffers()):
        _close(m.running_mean, b.running_mean, f"{name} running_mean ({mode})")
