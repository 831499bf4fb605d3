"""torch_impl under ``torch.autocast``: low-precision products, float32 everything else.

The conv runs its matrix products in bfloat16 inside a CPU autocast region (both algorithms) and
keeps float32 output and gradients; its error against a float64 reference must be of bfloat16's
size, like the builtin's own autocast conv, and outside the region nothing changes. Every other
op of the registry must run inside the region too, within bfloat16's error.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from parity_tests import checks
from parity_tests.registry import specs_with
from parity_tests.tolerances import ASSERT_CLOSE, MIXED_PRECISION_NORM_ERROR
from torch_impl.functions import Conv2dFunction

SHAPES = [  # (N, C, F, H, W, k, stride, pad): the CNN's kinds of layers and an awkward one
    (4, 24, 32, 15, 15, 3, 1, 1),
    (16, 64, 8, 15, 15, 3, 1, 1),  # several blocks of the shifted algorithm
    (1, 3, 8, 7, 5, 2, 1, 0),
    (3, 5, 4, 9, 8, 3, 2, 2),
]


def _norm_error(a, ref):
    return ((a.double() - ref).norm() / ref.norm()).item()


@pytest.mark.parametrize("algorithm", ["im2col", "shifted"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_conv_under_bfloat16_autocast(shape, algorithm):
    N, C, Fn, H, W, k, stride, pad = shape
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(N, C, H, W, generator=gen, requires_grad=True)
    w = (torch.randn(Fn, C, k, k, generator=gen) / (C * k * k) ** 0.5).requires_grad_()
    b = torch.randn(Fn, generator=gen, requires_grad=True)
    ref = F.conv2d(x.double(), w.double(), b.double(), stride=stride, padding=pad)
    dout = torch.randn(ref.shape, generator=gen)
    ref_grads = torch.autograd.grad(ref, (x, w, b), dout.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = Conv2dFunction.apply(x, w, b, stride, pad, algorithm)
    grads = torch.autograd.grad(out, (x, w, b), dout)
    tol = MIXED_PRECISION_NORM_ERROR["bfloat16"]
    assert out.dtype == torch.float32
    assert all(g.dtype == torch.float32 for g in grads)
    assert _norm_error(out, ref) < tol
    for name, g, r in zip("xwb", grads, ref_grads, strict=True):
        assert _norm_error(g, r) < tol, name
    # Products really ran in bfloat16: the error is far above float32's.
    assert _norm_error(out, ref) > 1e-5


def test_conv_outside_autocast_matches_builtin_float32():
    gen = torch.Generator().manual_seed(0)
    x, w, b = (
        torch.randn(2, 8, 6, 6, generator=gen),
        torch.randn(4, 8, 3, 3, generator=gen),
        torch.randn(4, generator=gen),
    )
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        out = Conv2dFunction.apply(x, w, b, 1, 1)
    torch.testing.assert_close(out, F.conv2d(x, w, b, padding=1), **ASSERT_CLOSE["float32"])


def test_affine_under_bfloat16_autocast():
    from torch_impl.functions import AffineFunction

    gen = torch.Generator().manual_seed(5)
    x = torch.randn(16, 8, 3, 3, generator=gen, requires_grad=True)
    w = (torch.randn(72, 10, generator=gen) / 72**0.5).requires_grad_()
    b = torch.randn(10, generator=gen, requires_grad=True)
    ref = x.double().reshape(16, -1) @ w.double() + b.double()
    dout = torch.randn(ref.shape, generator=gen)
    ref_grads = torch.autograd.grad(ref, (x, w, b), dout.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = AffineFunction.apply(x, w, b)
    grads = torch.autograd.grad(out, (x, w, b), dout)
    tol = MIXED_PRECISION_NORM_ERROR["bfloat16"]
    assert out.dtype == torch.float32 and all(g.dtype == torch.float32 for g in grads)
    assert 1e-5 < _norm_error(out, ref) < tol
    for name, g, r in zip("xwb", grads, ref_grads, strict=True):
        assert _norm_error(g, r) < tol, name


def _entry_outputs(fn, spec, case, dtype, autocast):
    """(outputs, gradients) of one of the entry's torch callables on ``case`` with float inputs
    in ``dtype``, optionally inside a bfloat16 CPU autocast region (the backward runs outside
    it, as a training step does); the upstream gradients are fixed random arrays."""

    def run(tensors, consts):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return fn(tensors, consts)

    outs, _ = checks.run_torch(run, spec, case, None, dtype=dtype)
    rng = np.random.default_rng(0)
    douts = tuple(rng.standard_normal(o.shape) if o.is_floating_point() else None for o in outs)
    return checks.run_torch(run, spec, case, douts, dtype=dtype)


def _errors(fn, spec, case, ref_outs, ref_grads):
    """name -> (float32 value under autocast, its relative error against the float64 result)."""
    outs, grads = _entry_outputs(fn, spec, case, torch.float32, autocast=True)
    values = {f"out{i}": (o, r) for i, (o, r) in enumerate(zip(outs, ref_outs, strict=True))}
    values |= {f"d{k}": (grads[k], ref_grads[k]) for k in ref_grads}
    return {
        name: (a, ((a.double() - r).norm() / max(r.norm(), 1e-300)).item())
        for name, (a, r) in values.items()
        if r.is_floating_point()
    }


@pytest.mark.parametrize("spec", specs_with("torch_impl_fn"), ids=lambda s: s.name)
def test_every_function_runs_under_autocast(spec):
    """Every torch_impl op inside a bfloat16 autocast region runs and gives float32 outputs and
    gradients within bfloat16's error of the float64 result: one rounding's worth, or (a
    composite of several products) no more than twice the error of PyTorch's own ops under the
    same autocast."""
    case = spec.case(0, np.float32)
    ref_outs, ref_grads = _entry_outputs(spec.torch_impl_fn, spec, case, torch.float64, False)
    ours = _errors(spec.torch_impl_fn, spec, case, ref_outs, ref_grads)
    builtin = {}
    if spec.builtin_fn is not None and any(e >= TOL for _, e in ours.values()):
        builtin = _errors(spec.builtin_fn, spec, case, ref_outs, ref_grads)
    for name, (a, err) in ours.items():
        assert a.dtype == torch.float32, name
        assert err < max(TOL, 2 * builtin.get(name, (None, 0.0))[1]), name


TOL = MIXED_PRECISION_NORM_ERROR["bfloat16"]
