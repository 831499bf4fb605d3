"""Every registry entry through every check (ids: op name - case index).

N_CASES seeded random cases per op (NN_TWINS_EXAMPLES for more, NN_TWINS_SEED for others); see
parity_tests/registry.py for the entries and parity_tests/checks.py for what each check asserts.
"""

from __future__ import annotations

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
