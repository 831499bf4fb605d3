"""torch_impl under ``torch.autocast``: low-precision products, float32 everything else.

The conv runs its matrix products in bfloat16 inside a CPU autocast region (both algorithms) and
keeps float32 output and gradients; its error against a float64 reference must be of bfloat16's
size, like the builtin's own autocast conv, and outside the region nothing changes.
"""

import pytest
import torch
import torch.nn.functional as F

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
