"""torch_impl conv, pool and relu beyond the registry's cases: every subset of inputs that need a
gradient (a frozen layer, a first layer whose input needs none), the argument check, and
max-pool ties."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from parity_tests.tolerances import ASSERT_CLOSE
from torch_impl.conv import CONV_ALGORITHMS
from torch_impl.functions import Conv2dFunction


@pytest.mark.parametrize("algorithm", CONV_ALGORITHMS)
@pytest.mark.parametrize(
    "needs",
    list(itertools.product([False, True], repeat=3)),
    ids=lambda n: "".join("xwb"[i] if f else "-" for i, f in enumerate(n)),
)
def test_gradients_of_any_subset_of_inputs(algorithm, needs):
    gen = torch.Generator().manual_seed(3)
    tensors = [
        torch.randn(2, 9, 6, 5, generator=gen, dtype=torch.float64),
        torch.randn(4, 9, 3, 2, generator=gen, dtype=torch.float64),
        torch.randn(4, generator=gen, dtype=torch.float64),
    ]
    ours = [t.clone().requires_grad_(n) for t, n in zip(tensors, needs, strict=True)]
    ref = [t.clone().requires_grad_(n) for t, n in zip(tensors, needs, strict=True)]
    out = Conv2dFunction.apply(*ours, 1, 1, algorithm)
    expected = F.conv2d(*ref, stride=1, padding=1)
    torch.testing.assert_close(out, expected, **ASSERT_CLOSE["float64"])
    if not any(needs):
        return
    dout = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    (out * dout).sum().backward()
    (expected * dout).sum().backward()
    for a, r in zip(ours, ref, strict=True):
        assert (a.grad is None) == (r.grad is None)
        if r.grad is not None:
            torch.testing.assert_close(a.grad, r.grad, **ASSERT_CLOSE["float64"])


@pytest.mark.parametrize(
    "shape",
    [
        (16, 64, 64, 15, 15, 3, 1, 1),
        (16, 48, 48, 24, 21, 3, 2, 1),
        (16, 3, 8, 15, 15, 3, 1, 1),
        (16, 3, 24, 16, 16, 2, 1, 0),
    ],
    ids=["blocks", "blocks-stride2", "blocks-rgb", "blocks-rgb-2x2"],
)
def test_shifted_over_several_blocks(shape, monkeypatch):
    """Enough canvas positions for several blocks (the registry's random cases fit in one),
    float64, against the builtin: accumulated tap by tap, or (RGB) stacked from a channel-first
    copy of the canvas. The block is made smaller than the library's so that the test stays
    small; the stacked blocks of lower-precision products are covered by the mixed-precision
    tests."""
    import torch_impl.conv as conv

    monkeypatch.setattr(conv, "_TAPWISE_BLOCK", 1000)
    N, C, Fn, H, W, k, stride, pad = shape
    cv = conv._Canvas(
        N, H, W, k, k, stride, pad, (H + 2 * pad - k) // stride + 1, (W + 2 * pad - k) // stride + 1
    )
    assert cv.L > 2 * conv._TAPWISE_BLOCK  # >= 3 blocks in every pass, the last one partial
    assert cv.L % conv._TAPWISE_BLOCK
    _assert_like_builtin(shape, "shifted", torch.contiguous_format, seed=7)


def _assert_like_builtin(shape, algorithm, layout, seed):
    """Output and the gradients of x, w and b in float64 equal the builtin's."""
    N, C, Fn, H, W, k, stride, pad = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, H, W, generator=gen, dtype=torch.float64)
    x = x.contiguous(memory_format=layout).requires_grad_()
    w = torch.randn(Fn, C, k, k, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(Fn, generator=gen, dtype=torch.float64, requires_grad=True)
    out = Conv2dFunction.apply(x, w, b, stride, pad, algorithm)
    ref = F.conv2d(x, w, b, stride=stride, padding=pad)
    torch.testing.assert_close(out, ref, **ASSERT_CLOSE["float64"])
    dout = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    for g, r in zip(
        torch.autograd.grad(out, (x, w, b), dout),
        torch.autograd.grad(ref, (x, w, b), dout),
        strict=True,
    ):
        torch.testing.assert_close(g, r, **ASSERT_CLOSE["float64"])


@pytest.mark.parametrize(
    "shape",
    [
        (18, 8, 6, 3, 3, 3, 1, 1),
        (5, 8, 6, 11, 13, 3, 1, 1),
        (4, 6, 5, 12, 12, 3, 2, 1),
        (3, 4, 4, 5, 45, 5, 1, 2),
    ],
    ids=["whole-images", "rows-of-an-image", "stride2", "a-row-over-the-block"],
)
@pytest.mark.parametrize(
    "layout", [torch.channels_last, torch.contiguous_format], ids=["channels_last", "contiguous"]
)
def test_gathered_over_several_blocks(shape, layout, monkeypatch):
    """The gathered windows in blocks of 40 positions (the library's hold hundreds): several
    whole images per block with a partial last block, rows of one image per block, a strided
    grid, and image rows longer than a block; float64 against the builtin, with the output and
    dx written by the products (channels last) or copied out (contiguous)."""
    import torch_impl.conv as conv

    monkeypatch.setattr(conv, "_block_size", lambda row: 40)
    _assert_like_builtin(shape, "gathered", layout, seed=3)


@pytest.mark.parametrize("algorithm", CONV_ALGORITHMS)
@pytest.mark.parametrize("dout_layout", ["channels_last", "contiguous"])
def test_channels_last_input_stays_channels_last(algorithm, dout_layout):
    """A channels-last input gives a channels-last output and input gradient with the same
    values as a contiguous input (and a contiguous one contiguous ones); the upstream gradient
    may come in either layout."""
    cl = torch.channels_last
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(3, 10, 9, 8, generator=gen, dtype=torch.float64)
    w = torch.randn(6, 10, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=gen, dtype=torch.float64, requires_grad=True)
    x_cl = x.contiguous(memory_format=cl).requires_grad_()
    x = x.requires_grad_()
    out_cl = Conv2dFunction.apply(x_cl, w, b, 1, 1, algorithm)
    out = Conv2dFunction.apply(x, w, b, 1, 1, algorithm)
    assert out_cl.is_contiguous(memory_format=cl) and out.is_contiguous()
    torch.testing.assert_close(out_cl, out, **ASSERT_CLOSE["float64"])
    dout = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    if dout_layout == "channels_last":
        dout = dout.contiguous(memory_format=cl)
    grads_cl = torch.autograd.grad(out_cl, (x_cl, w, b), dout)
    grads = torch.autograd.grad(out, (x, w, b), dout)
    assert grads_cl[0].is_contiguous(memory_format=cl) and grads[0].is_contiguous()
    for g_cl, g in zip(grads_cl, grads, strict=True):
        torch.testing.assert_close(g_cl, g, **ASSERT_CLOSE["float64"])


@pytest.mark.parametrize("algorithm", ["shifted", "gathered"])
@pytest.mark.parametrize("needs_w", [True, False], ids=["w-grad", "frozen"])
def test_stacked_layers_share_no_memory(needs_w, algorithm):
    """Two canvas convs of different shapes in a row, then backward through both: the second
    conv reuses the first one's scratch canvases, so the first output, its saved state and
    every gradient must still be the builtin's (a frozen layer's input canvas is scratch too)."""
    gen = torch.Generator().manual_seed(5)

    def params(F_, C_, k):
        w = torch.randn(F_, C_, k, k, generator=gen, dtype=torch.float64)
        b = torch.randn(F_, generator=gen, dtype=torch.float64)
        return [w.requires_grad_(needs_w), b.requires_grad_()]

    x = torch.randn(3, 8, 9, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    layers = [params(10, 8, 3), params(9, 10, 2)]
    ref_layers = [[t.detach().clone().requires_grad_(t.requires_grad) for t in l] for l in layers]
    ref_x = x.detach().clone().requires_grad_()
    h1 = Conv2dFunction.apply(x, *layers[0], 1, 1, algorithm)
    h1_before = h1.detach().clone()
    out = Conv2dFunction.apply(h1, *layers[1], 1, 0, algorithm)
    torch.testing.assert_close(h1, h1_before, rtol=0, atol=0)
    r1 = F.conv2d(ref_x, *ref_layers[0], stride=1, padding=1)
    ref_out = F.conv2d(r1, *ref_layers[1], stride=1, padding=0)
    torch.testing.assert_close(out, ref_out, **ASSERT_CLOSE["float64"])
    dout = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    ours = [x, *layers[0], *layers[1]]
    refs = [ref_x, *ref_layers[0], *ref_layers[1]]
    for g, r in zip(
        torch.autograd.grad(out, [t for t in ours if t.requires_grad], dout),
        torch.autograd.grad(ref_out, [t for t in refs if t.requires_grad], dout),
        strict=True,
    ):
        torch.testing.assert_close(g, r, **ASSERT_CLOSE["float64"])


@pytest.mark.parametrize(
    ("shape", "channels_last", "need_x", "expected"),
    [
        ((24, 31, 31, 3, 1, 1), True, True, "shifted"),  # canvas waste 1.07
        ((32, 15, 15, 3, 1, 1), False, True, "shifted"),  # 1.14
        ((64, 7, 7, 3, 1, 1), True, True, "gathered"),  # 1.31
        ((128, 3, 3, 3, 1, 1), False, True, "gathered"),  # 1.78
        ((64, 16, 16, 3, 2, 1), True, True, "gathered"),  # strided, channels last
        ((64, 16, 16, 3, 2, 1), False, True, "im2col"),  # strided, contiguous
        ((3, 32, 32, 2, 1, 0), True, False, "shifted"),  # RGB stem, image needs no gradient
        ((3, 32, 32, 2, 1, 0), True, True, "im2col"),
        ((3, 32, 32, 2, 1, 0), False, False, "im2col"),
    ],
)
def test_auto_picks_the_documented_algorithm(shape, channels_last, need_x, expected):
    """'auto' follows the rule the docs state: shifted while at most 1.2 canvas positions per
    output are computed, gathered on smaller maps and channels-last strided grids, im2col for
    contiguous strided convs; an RGB stem is shifted only channels last without dx."""
    from torch_impl.conv import choose_conv_algorithm

    C, H, W, k, stride, pad = shape
    assert choose_conv_algorithm(C, H, W, k, k, stride, pad, channels_last, need_x) == expected


def test_unknown_algorithm_is_named():
    x, w, b = torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 2, 2), torch.zeros(1)
    with pytest.raises(ValueError, match="algorithm must be one of .* got 'winograd'"):
        Conv2dFunction.apply(x, w, b, 1, 0, "winograd")


# The registry draws distinct values, so ties need their own check: the gradient of a window
# goes to its FIRST maximum in row-major order, as in PyTorch's kernels.
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "ph,pw,stride", [(2, 2, 2), (3, 3, 3), (3, 2, 1), (2, 3, 2), (1, 1, 2), (3, 3, 2)]
)
def test_max_pool_ties_go_to_the_first_maximum(ph, pw, stride, dtype):
    from torch_impl.functions import MaxPool2dFunction

    g = torch.Generator().manual_seed(0)
    x = torch.randint(-1, 2, (2, 3, 7, 6), generator=g).to(dtype).requires_grad_()
    out = MaxPool2dFunction.apply(x, ph, pw, stride)
    ref = F.max_pool2d(x, (ph, pw), stride)
    d = torch.randint(-3, 4, out.shape, generator=g).to(dtype)
    assert torch.equal(out, ref)
    assert torch.equal(torch.autograd.grad(out, x, d)[0], torch.autograd.grad(ref, x, d)[0])


def test_relu_of_nan_and_the_kink():
    """NaN in, NaN out; 0 gradient at the kink. At a NaN the twins follow CS231n's relu_backward,
    dout * (x > 0) = 0, where PyTorch's threshold_backward (0 only where x <= 0) passes dout."""
    import numpy as np

    from numpy_impl.layers import relu_backward, relu_forward
    from torch_impl.functions import ReLUFunction

    x = torch.tensor([float("nan"), -1.0, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    dout = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    ours = ReLUFunction.apply(x)
    (dx,) = torch.autograd.grad(ours, x, dout)
    ref = torch.relu(x)
    (ref_dx,) = torch.autograd.grad(ref, x, dout)
    out_np, cache = relu_forward(x.detach().numpy())
    dx_np = relu_backward(dout.numpy(), cache)
    torch.testing.assert_close(ours, ref, equal_nan=True)
    assert dx.tolist() == [0.0, 0.0, 0.0, 4.0] and ref_dx.tolist() == [1.0, 0.0, 0.0, 4.0]
    assert np.isnan(out_np[0]) and dx_np.tolist() == [0.0, 0.0, 0.0, 4.0]


@pytest.mark.parametrize(
    "shape",
    [(7, 3, 4, 6, 5, 3, 1, 1), (5, 4, 3, 9, 8, 3, 2, 2), (1, 2, 3, 4, 4, 4, 3, 0)],
    ids=["stride1-pad1", "stride2-pad2", "stride-over-kernel"],
)
@pytest.mark.parametrize(
    "layout", [torch.channels_last, torch.contiguous_format], ids=["channels_last", "contiguous"]
)
def test_im2col_input_gradient_over_several_blocks(shape, layout, monkeypatch):
    """im2col's col2im a few images at a time: with blocks of two images (the library's hold
    millions of elements) the images split into whole blocks and a partial last one, each added
    onto its own images only; float64 against the builtin."""
    import torch_impl.conv as conv

    N, C, Fn, H, W, k, stride, pad = shape
    H_out, W_out = (H + 2 * pad - k) // stride + 1, (W + 2 * pad - k) // stride + 1
    monkeypatch.setattr(conv, "_COL2IM_BLOCK_ELEMENTS", 2 * C * k * k * H_out * W_out)
    _assert_like_builtin(shape, "im2col", layout, seed=5)
