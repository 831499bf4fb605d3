"""The bias before a training-mode batchnorm in the sandwich layers (affine_norm_relu with
batchnorm, conv_bn_relu): the batch mean removes any bias, so its gradient is exactly zero and
the registry leaves it out of the relative comparisons (``grad_inputs``, where the computed
value is round-off on both sides). Here all three implementations must give ~0 in absolute
terms (float64 assert_close), next to an O(1) dw that shows the zero is no tolerance artefact.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from parity_tests import checks
from parity_tests.registry import case_rng, specs_with
from parity_tests.tolerances import ASSERT_CLOSE


def _spec(name):
    (spec,) = [s for s in specs_with("numpy_forward_backward") if s.name == name]
    return spec


def _torch_grads(fn, case, douts) -> dict:
    """Every input's gradient through a torch callable of the entry, float64."""
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in case.inputs.items()}
    consts = checks.to_torch_consts(case.consts, torch.float64, "cpu")
    outs = checks.as_tuple(fn(tensors, consts))
    grads = torch.autograd.grad(outs, list(tensors.values()), [torch.from_numpy(d) for d in douts])
    return dict(zip(tensors, grads, strict=True))


# case indices whose flavors are training-mode batchnorm (see the entries' flavors)
@pytest.mark.parametrize(("name", "index"), [("affine_norm_relu", 0), ("conv_bn_relu", 0)])
def test_bias_before_training_batchnorm_gets_zero_gradient(name, index):
    spec = _spec(name)
    case = spec.case(index)
    assert "b" not in spec.grad_names(case), "the flavor is no longer training-mode batchnorm"
    outs, _ = checks.run_numpy(spec, case, None)
    douts = checks.make_douts(case_rng(name, index, "dout"), outs, np.float64)
    _, grads_np = checks.run_numpy(spec, case, douts)
    grads = {
        "numpy_impl": {k: torch.from_numpy(v) for k, v in grads_np.items()},
        "torch_impl": _torch_grads(spec.torch_impl_fn, case, douts),
        "builtin": _torch_grads(spec.builtin_fn, case, douts),
    }
    zero = torch.zeros(case.inputs["b"].shape, dtype=torch.float64)
    for who, g in grads.items():
        torch.testing.assert_close(
            g["b"], zero, **ASSERT_CLOSE["float64"], msg=lambda m, who=who: f"{who} db: {m}"
        )
        assert g["w"].abs().max() > 1e-3, f"{who}: dw ~0 too, the case proves nothing"
