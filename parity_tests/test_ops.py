"""Every registry entry through every check (ids: op name - case index).

N_CASES seeded random cases per op (NN_TWINS_EXAMPLES for more, NN_TWINS_SEED for others); see
parity_tests/registry.py for the entries and parity_tests/checks.py for what each check asserts.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import sys

import numpy as np
import pytest
import torch

from parity_tests import checks
from parity_tests.registry import N_CASES, specs_with


def _params(*attrs):
    return [
        pytest.param(spec, i, id=f"{spec.name}-{i}")
        for spec in specs_with(*attrs)
        for i in range(max(N_CASES, len(spec.flavors)))  # every flavor runs by default
    ]


@pytest.mark.parametrize(("spec", "index"), _params("numpy_forward_backward"))
def test_numpy_matches_numerical_gradient(spec, index):
    checks.check_numerical(spec, index)


@pytest.mark.parametrize(("spec", "index"), _params("numpy_forward_backward"))
def test_numpy_keeps_float32(spec, index):
    checks.check_numpy_dtype(spec, index)


@pytest.mark.parametrize(("spec", "index"), _params("numpy_forward_backward"))
def test_numpy_leaves_inputs_and_returns_fresh_arrays(spec, index):
    checks.check_numpy_leaves_inputs(spec, index)


@pytest.mark.parametrize(("spec", "index"), _params("numpy_forward_backward", "torch_impl_fn"))
def test_numpy_matches_torch_impl_float64(spec, index):
    checks.check_twin(spec, index)


@pytest.mark.parametrize(("spec", "index"), _params("torch_impl_fn", "builtin_fn"))
def test_torch_impl_matches_builtin_float64(spec, index):
    checks.check_builtin(spec, index, np.float64)


@pytest.mark.parametrize(("spec", "index"), _params("torch_impl_fn", "builtin_fn", "float32"))
def test_torch_impl_matches_builtin_float32(spec, index):
    checks.check_builtin(spec, index, np.float32)


@pytest.mark.parametrize(("spec", "index"), _params("torch_impl_fn", "gradcheck"))
def test_gradcheck(spec, index):
    checks.check_gradcheck(spec, index)


@pytest.mark.parametrize(
    ("spec", "index"),
    # Which gradients a backward computes does not depend on the numbers: half the cases (the
    # first ones, flavors included) keep this check's time near the other checks'.
    [p for p in _params("torch_impl_fn") if p.values[1] < max(2, N_CASES // 2)],
)
def test_gradient_subsets(spec, index):
    checks.check_grad_subsets(spec, index)


def _torch_impl_functions() -> set[str]:
    """Names of every autograd.Function defined in the torch_impl package."""
    import torch_impl

    names = set()
    for info in pkgutil.iter_modules(torch_impl.__path__, "torch_impl."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, torch.autograd.Function)
                and obj.__module__ == info.name
            ):
                names.add(obj.__name__)
    return names


def _functions_in_graph(outs) -> set[str]:
    """Names of the custom Functions whose backward nodes the autograd graph of outs holds."""
    seen, stack, names = set(), [o.grad_fn for o in outs if o.grad_fn is not None], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        name = type(node).__name__
        if name.endswith("Backward"):
            names.add(name[: -len("Backward")])
        stack.extend(n for n, _ in node.next_functions)
    return names


def test_every_function_is_in_the_registry():
    """Every check above runs on the registry only: each torch_impl Function must be reached by
    some entry's torch_impl_fn (found in the autograd graph of its case 0)."""
    reached = set()
    for spec in specs_with("torch_impl_fn"):
        case = spec.case(0, np.float64)
        checks.run_torch(functools.partial(_keep_graph, spec, reached), spec, case, None)
    missing = _torch_impl_functions() - reached
    assert not missing, f"torch_impl Functions no registry entry runs: {sorted(missing)}"


def _keep_graph(spec, reached, tensors, consts):
    """spec.torch_impl_fn, adding the Functions in its graph to ``reached``."""
    outs = checks.as_tuple(spec.torch_impl_fn(tensors, consts))
    reached |= _functions_in_graph(outs)
    return outs


# The NumPy modules whose layers and losses the registry covers, and their public functions
# that are no op: fast_layers' scratch-buffer release.
_NUMPY_OP_MODULES = (
    "layers",
    "fast_layers",
    "layer_utils",
    "rnn_layers",
    "attention",
    "gan",
    "simclr",
)
_NUMPY_NOT_OPS = {"free_workspace"}


def _numpy_public_functions() -> dict:
    """code object -> 'module.name' of every public function of the NumPy op modules (an alias
    such as conv_forward_fast = conv_forward_im2col is one function)."""
    found = {}
    for short in _NUMPY_OP_MODULES:
        module = importlib.import_module(f"numpy_impl.{short}")
        names = getattr(module, "__all__", None) or [
            n
            for n, obj in vars(module).items()
            if inspect.isfunction(obj) and not n.startswith("_")
        ]
        for n in names:
            obj = getattr(module, n)
            if (
                inspect.isfunction(obj)
                and obj.__module__ == module.__name__
                and n not in _NUMPY_NOT_OPS
            ):
                found.setdefault(obj.__code__, f"{short}.{n}")
    return found


def test_every_numpy_function_is_in_the_registry():
    """The NumPy side of the same guarantee: every public forward, backward and loss of
    numpy_impl's op modules is called by some entry's numpy_forward_backward (forward and
    backward of its case 0)."""
    called = set()

    def record(frame, event, arg):
        if event == "call":
            called.add(frame.f_code)

    for spec in specs_with("numpy_forward_backward"):
        case = spec.case(0, np.float64)
        outs, _ = checks.run_numpy(spec, case, None)
        douts = checks.make_douts(np.random.default_rng(0), outs, np.float64)
        sys.setprofile(record)
        try:
            checks.run_numpy(spec, case, douts)
        finally:
            sys.setprofile(None)
    public = _numpy_public_functions()
    missing = sorted(name for code, name in public.items() if code not in called)
    assert not missing, f"numpy_impl functions no registry entry runs: {missing}"


@pytest.mark.parametrize(("spec", "index"), _params("torch_impl_fn", "torch_functional_fn"))
def test_functional_matches_function(spec, index):
    checks.check_functional(spec, index)


@pytest.mark.parametrize(
    ("spec", "bad"),
    [
        pytest.param(spec, bad, id=f"{spec.name}-{bad.label}")
        for spec in specs_with("numpy_forward_backward", "torch_impl_fn", "bad_inputs")
        for bad in spec.bad_inputs
    ],
)
def test_bad_input_same_error(spec, bad):
    checks.check_bad_input(spec, bad)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize(("spec", "index"), _params("torch_impl_fn"))
def test_cuda_matches_cpu(spec, index):
    checks.check_cuda(spec, index)
