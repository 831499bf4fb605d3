"""Assignment 2's PyTorch notebook answered on torch_impl (``torch_impl.pytorch_notebook``) against
the same networks written with PyTorch's builtins (F.conv2d, F.linear, F.cross_entropy, nn.Linear,
nn.Conv2d: used only here), the notebook's own sanity checks (scores of shape (64, 10), a
zero-weight network's loss log(10)), Kaiming statistics, the training loops step by step, and
the notebook's data loaders on tiny CIFAR-10 data written in the real format.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cifar_training.notebook_data import NOTEBOOK_MEAN, NOTEBOOK_STD, notebook_loaders
from cifar_training.synthetic import make_images, write_image_folder, write_python_batches
from parity_tests.tolerances import ASSERT_CLOSE, GRADCHECK
from torch_impl import functional as TF
from torch_impl import pytorch_notebook as P

F64 = torch.float64


def _close(a, b, dtype_name="float64"):
    torch.testing.assert_close(a, b, **ASSERT_CLOSE[dtype_name])


def _rand(gen, *shape, dtype=F64, grad=False):
    return torch.randn(*shape, generator=gen, dtype=dtype).requires_grad_(grad)


def _builtin_convnet(x, params):
    conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b = params
    h = F.relu(F.conv2d(x, conv_w1, conv_b1, padding=2))
    h = F.relu(F.conv2d(h, conv_w2, conv_b2, padding=1))
    return h.flatten(1) @ fc_w + fc_b


def _convnet_params(gen, C, c1, c2, H, W, classes, k1=5, k2=3, grad=False):
    def w(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=F64) * scale).requires_grad_(grad)

    H2, W2 = H + 4 - k1 + 1 + 2 - k2 + 1, W + 4 - k1 + 1 + 2 - k2 + 1
    return [
        w(c1, C, k1, k1, scale=0.3),
        w(c1),
        w(c2, c1, k2, k2, scale=0.3),
        w(c2),
        w(c2 * H2 * W2, classes, scale=0.1),
        w(classes),
    ]


# ----------------------------------------------------------------------------------------------
# Part II: barebones
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 1, 3, 2), (1, 5), (0, 3, 4, 4), (3, 1, 1, 1), (4, 0, 2)])
def test_flatten_is_the_row_reshape(shape):
    x = torch.arange(math.prod(shape), dtype=F64).reshape(shape)
    out = P.flatten(x)
    assert out.shape == (shape[0], math.prod(shape[1:]))
    _close(out, torch.flatten(x, 1) if shape[0] else x.reshape(0, math.prod(shape[1:])))
    if x.numel():
        assert out.data_ptr() == x.data_ptr()  # a view, as the notebook's x.view(N, -1)


def test_flatten_rejects_a_scalar():
    with pytest.raises(ValueError, match="batch dimension"):
        P.flatten(torch.tensor(3.0))


def test_notebook_sanity_checks_give_scores_of_shape_64_by_10():
    x = torch.zeros((64, 50))
    assert P.two_layer_fc(x, [torch.zeros((50, 42)), torch.zeros((42, 10))]).shape == (64, 10)
    params = [
        torch.zeros((6, 3, 5, 5)),
        torch.zeros((6,)),
        torch.zeros((9, 6, 3, 3)),
        torch.zeros((9,)),
        torch.zeros((9 * 32 * 32, 10)),
        torch.zeros(10),
    ]
    assert P.three_layer_convnet(torch.zeros((64, 3, 32, 32)), params).shape == (64, 10)
    assert P.TwoLayerFC(50, 42, 10)(torch.zeros((64, 50))).shape == (64, 10)
    net = P.ThreeLayerConvNet(in_channel=3, channel_1=12, channel_2=8, num_classes=10)
    assert net(torch.zeros((64, 3, 32, 32))).shape == (64, 10)


@pytest.mark.parametrize("seed", range(4))
def test_two_layer_fc_matches_the_builtin_with_gradients(seed):
    gen = torch.Generator().manual_seed(seed)
    N, dims, H, C = [(1, (5,), 3, 2), (4, (2, 3, 2), 7, 10), (0, (3,), 4, 3), (3, (1, 1), 1, 1)][
        seed
    ]
    D = math.prod(dims)
    x, w1, w2 = (
        _rand(gen, N, *dims, grad=True),
        _rand(gen, D, H, grad=True),
        _rand(gen, H, C, grad=True),
    )
    ours = P.two_layer_fc(x, [w1, w2])
    theirs = F.relu(x.reshape(N, D).mm(w1)).mm(w2)
    _close(ours, theirs)
    dout = _rand(gen, N, C)
    g_ours = torch.autograd.grad(ours, (x, w1, w2), dout)
    g_theirs = torch.autograd.grad(theirs, (x, w1, w2), dout)
    for a, b in zip(g_ours, g_theirs, strict=True):
        _close(a, b)


@pytest.mark.parametrize(
    "N, C, c1, c2, H, W, classes",
    [(2, 3, 4, 3, 6, 5, 10), (1, 3, 2, 2, 1, 1, 3), (0, 3, 2, 3, 4, 4, 5), (3, 2, 5, 1, 7, 3, 1)],
)
def test_three_layer_convnet_matches_the_builtin_with_gradients(N, C, c1, c2, H, W, classes):
    gen = torch.Generator().manual_seed(N * 100 + H)
    x = _rand(gen, N, C, H, W, grad=True)
    params = _convnet_params(gen, C, c1, c2, H, W, classes, grad=True)
    ours = P.three_layer_convnet(x, params)
    theirs = _builtin_convnet(x, params)
    assert ours.shape == (N, classes)
    _close(ours, theirs)
    dout = _rand(gen, N, classes)
    for a, b in zip(
        torch.autograd.grad(ours, [x, *params], dout),
        torch.autograd.grad(theirs, [x, *params], dout),
        strict=True,
    ):
        _close(a, b)


def test_three_layer_convnet_passes_gradcheck():
    gen = torch.Generator().manual_seed(3)
    x = _rand(gen, 1, 1, 2, 3, grad=True)
    params = _convnet_params(gen, 1, 1, 1, 2, 3, 2, grad=True)
    assert torch.autograd.gradcheck(
        lambda x, *p: P.three_layer_convnet(x, list(p)), (x, *params), **GRADCHECK
    )


def test_barebones_networks_reject_a_wrong_parameter_list():
    with pytest.raises(ValueError, match="params must hold 6 tensors, got 2"):
        P.three_layer_convnet(torch.zeros(1, 3, 4, 4), [torch.zeros(1), torch.zeros(1)])
    with pytest.raises(TypeError, match=r"params\[1\] must be a torch.Tensor"):
        P.two_layer_fc(torch.zeros(1, 3), [torch.zeros(3, 2), np.zeros((2, 2))])


def test_zero_weights_give_the_loss_log_10():
    """All-zero weights score every class 0: a uniform softmax, loss log(10) whatever the labels."""
    params = [
        P.zero_weight(s, device="cpu")
        for s in [(4, 3, 5, 5), 4, (2, 4, 3, 3), 2, (2 * 32 * 32, 10), 10]
    ]
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    scores = P.three_layer_convnet(x, params)
    assert TF.softmax_loss(scores, y).item() == pytest.approx(math.log(10), rel=1e-6)
    assert F.cross_entropy(scores, y).item() == pytest.approx(math.log(10), rel=1e-6)


@pytest.mark.parametrize(
    "shape, fan_in",
    [((3 * 32 * 32, 100), 3072), ((32, 3, 5, 5), 75), ((16, 32, 3, 3), 288), ((7,), 1)],
)
def test_random_weight_is_kaiming_normal(shape, fan_in):
    assert P.fan_in(shape) == fan_in
    torch.manual_seed(231)
    w = P.random_weight(shape, device="cpu", dtype=F64)
    assert w.shape == shape and w.dtype == F64 and w.is_leaf and w.requires_grad
    # The notebook's draw: randn(shape) scaled by sqrt(2 / fan_in), from the global generator.
    torch.manual_seed(231)
    _close(w.detach(), torch.randn(shape, dtype=F64) * math.sqrt(2.0 / fan_in))
    if w.numel() >= 1000:  # the sample std within 6 standard errors of sqrt(2 / fan_in)
        std, n = math.sqrt(2.0 / fan_in), w.numel()
        assert abs(w.detach().std().item() - std) < 6 * std / math.sqrt(2 * n)
        assert abs(w.detach().mean().item()) < 6 * std / math.sqrt(n)


def test_random_weight_defaults_and_bad_shapes():
    w = P.random_weight((3, 5))
    assert w.dtype == torch.float32 and w.device.type == P.default_device().type
    with pytest.raises(ValueError, match="fan-in 0"):
        P.random_weight((0, 4), device="cpu")
    with pytest.raises(TypeError, match="shape must be an int or a tuple of ints"):
        P.random_weight("3x5", device="cpu")
    with pytest.raises(ValueError, match="negative"):
        P.zero_weight((2, -1), device="cpu")


def test_zero_weight_takes_an_int_or_a_shape():
    b = P.zero_weight(10, device="cpu")
    assert b.shape == (10,) and b.requires_grad and b.is_leaf and not b.detach().any()
    assert P.zero_weight((2, 0), device="cpu", dtype=F64).shape == (2, 0)


# ----------------------------------------------------------------------------------------------
# Accuracy and training loops
# ----------------------------------------------------------------------------------------------


class _Split(torch.utils.data.Dataset):
    """Tensors (x, y) with the ``train`` flag the notebook's accuracy functions read."""

    def __init__(self, x, y, train):
        self.x, self.y, self.train = x, y, train

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def _loader(x, y, train=True, batch_size=4):
    return torch.utils.data.DataLoader(_Split(x, y, train), batch_size=batch_size)


def test_check_accuracy_part2_counts_and_prints(capsys):
    # Scores = the input itself: the prediction is the argmax of each row.
    x = torch.eye(5)[[0, 1, 2, 3, 4, 0, 1]] * 3
    y = torch.tensor([0, 1, 2, 0, 0, 0, 2])
    acc = P.check_accuracy_part2(
        _loader(x, y, train=True), lambda x, p: x * p[0], [1.0], device="cpu"
    )
    assert acc == pytest.approx(4 / 7)
    out = capsys.readouterr().out
    assert "val set" in out and "Got 4 / 7 correct (57.14%)" in out
    P.check_accuracy_part2(_loader(x, y, train=False), lambda x, p: x, [], device="cpu")
    assert "test set" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no examples"):
        P.check_accuracy_part2(_loader(x[:0], y[:0]), lambda x, p: x, [], device="cpu")


def test_train_part2_is_plain_sgd_on_the_cross_entropy(capsys):
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(10, 3, 4, 4, generator=gen), torch.randint(0, 3, (10,), generator=gen)
    loader_train, loader_val = _loader(x, y, batch_size=4), _loader(x[:4], y[:4])
    torch.manual_seed(0)
    params = [
        P.random_weight((48, 6), device="cpu", dtype=F64),
        P.random_weight((6, 3), device="cpu", dtype=F64),
    ]
    start = [p.detach().clone() for p in params]
    losses = P.train_part2(
        P.two_layer_fc, params, 0.1, loader_train=loader_train, loader_val=loader_val,
        device="cpu", dtype=F64, print_every=2,
    )  # fmt: skip
    # The same three steps written with the builtins.
    w = [s.clone().requires_grad_() for s in start]
    expected = []
    for xb, yb in loader_train:
        loss = F.cross_entropy(F.relu(xb.to(F64).flatten(1) @ w[0]) @ w[1], yb)
        grads = torch.autograd.grad(loss, w)
        with torch.no_grad():
            w = [(wi - 0.1 * g).requires_grad_() for wi, g in zip(w, grads, strict=True)]
        expected.append(loss.item())
    assert losses == pytest.approx(expected, rel=1e-12)
    for p, q in zip(params, w, strict=True):
        _close(p.detach(), q.detach())
        assert not p.grad.any()  # zeroed after each step
    out = capsys.readouterr().out
    assert out.count("Iteration") == 2 and "Iteration 2, loss" in out  # t = 0 and t = 2
    assert out.count("Checking accuracy on the val set") == 2


def test_train_part2_requires_leaf_parameters():
    x, y = torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)
    w = torch.zeros(3, 2, requires_grad=True) * 2  # not a leaf
    with pytest.raises(ValueError, match=r"params\[0\] must be a leaf tensor"):
        P.train_part2(
            P.two_layer_fc,
            [w, w],
            0.1,
            loader_train=_loader(x, y),
            loader_val=_loader(x, y),
            device="cpu",
        )
    with pytest.raises(ValueError, match="print_every must be an int >= 1, got 0"):
        P.train_part2(P.two_layer_fc, [], 0.1, loader_train=[], loader_val=[], print_every=0)


# ----------------------------------------------------------------------------------------------
# Part III and IV: modules
# ----------------------------------------------------------------------------------------------


def _builtin_three_layer(c_in, c1, c2, classes):
    return nn.Sequential(
        nn.Conv2d(c_in, c1, 5, padding=2),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(c2 * 32 * 32, classes),
    )


def _load_in_order(theirs: nn.Module, ours: nn.Module) -> None:
    """Copy parameters in order; the shapes must agree (nn.Linear / nn.Conv2d layouts)."""
    mine, other = list(ours.parameters()), list(theirs.parameters())
    assert [p.shape for p in mine] == [p.shape for p in other]
    with torch.no_grad():
        for p, q in zip(other, mine, strict=True):
            p.copy_(q)


def test_three_layer_convnet_module_matches_the_builtin_network():
    torch.manual_seed(1)
    ours = P.ThreeLayerConvNet(3, 4, 3, 7).double()
    theirs = _builtin_three_layer(3, 4, 3, 7).double()
    _load_in_order(theirs, ours)
    x = torch.randn(2, 3, 32, 32, dtype=F64, requires_grad=True)
    out_ours, out_theirs = ours(x), theirs(x)
    _close(out_ours, out_theirs)
    dout = torch.randn(2, 7, dtype=F64)
    for a, b in zip(
        torch.autograd.grad(out_ours, [x, *ours.parameters()], dout),
        torch.autograd.grad(out_theirs, [x, *theirs.parameters()], dout),
        strict=True,
    ):
        _close(a, b)
    # nn.Conv2d / nn.Linear names and layouts: the builtin's state_dict loads as it is.
    ours.load_state_dict(dict(zip(ours.state_dict(), theirs.state_dict().values(), strict=True)))
    assert list(ours.state_dict()) == [
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias",
    ]  # fmt: skip


def test_module_initialization_is_kaiming_normal():
    torch.manual_seed(2)
    net = P.ThreeLayerConvNet(3, 32, 16, 10)
    for layer, fan_in in ((net.conv1, 75), (net.conv2, 288), (net.fc, 16 * 32 * 32)):
        w = layer.weight.detach()
        std = math.sqrt(2.0 / fan_in)
        assert abs(w.std().item() - std) < 6 * std / math.sqrt(2 * w.numel())
        assert not layer.bias.detach().any()
    fc = P.TwoLayerFC(3072, 4000, 10)
    w = fc.fc1.weight.detach()
    assert w.shape == (4000, 3072)  # nn.Linear's layout (out, in)
    assert abs(w.std().item() - math.sqrt(2 / 3072)) < 6 * math.sqrt(2 / 3072) / math.sqrt(
        2 * w.numel()
    )
    # The bias keeps PyTorch's default: uniform in +-1/sqrt(fan_in).
    assert fc.fc1.bias.abs().max().item() <= 1 / math.sqrt(3072)


def test_two_layer_fc_module_and_sequentials_match_the_builtins():
    torch.manual_seed(3)
    x = torch.randn(3, 2, 4, 4, dtype=F64)
    ours = P.TwoLayerFC(32, 5, 4).double()
    theirs = nn.Sequential(nn.Flatten(), nn.Linear(32, 5), nn.ReLU(), nn.Linear(5, 4)).double()
    _load_in_order(theirs, ours)
    _close(ours(x), theirs(x))
    seq = P.two_layer_fc_sequential(32, 5, 4).double()
    _load_in_order(theirs, seq)
    _close(seq(x), theirs(x))
    conv_seq = P.three_layer_convnet_sequential(3, 2, 3, 10).double()
    conv_theirs = _builtin_three_layer(3, 2, 3, 10).double()
    _load_in_order(conv_theirs, conv_seq)
    xi = torch.randn(2, 3, 32, 32, dtype=F64)
    _close(conv_seq(xi), conv_theirs(xi))


def test_train_part34_matches_builtin_training_and_checks_accuracy(capsys):
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(9, 2, 4, 4, generator=gen), torch.randint(0, 4, (9,), generator=gen)
    loader_train, loader_val = _loader(x, y, batch_size=4), _loader(x, y, batch_size=5)
    torch.manual_seed(0)
    ours = P.two_layer_fc_sequential(32, 6, 4).double()
    theirs = nn.Sequential(nn.Flatten(), nn.Linear(32, 6), nn.ReLU(), nn.Linear(6, 4)).double()
    _load_in_order(theirs, ours)
    losses = P.train_part34(
        ours, P.sequential_optimizer(ours, 0.05), epochs=2, loader_train=loader_train,
        loader_val=loader_val, device="cpu", dtype=F64, print_every=100,
    )  # fmt: skip
    opt = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    expected = []
    for _ in range(2):
        for xb, yb in loader_train:
            loss = F.cross_entropy(theirs(xb.to(F64)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            expected.append(loss.item())
    assert losses == pytest.approx(expected, rel=1e-10)
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        _close(p.detach(), q.detach())
    assert capsys.readouterr().out.count("Checking accuracy on validation set") == 2
    with torch.no_grad():
        right = (theirs(x.to(F64)).argmax(1) == y).sum().item()
    assert P.check_accuracy_part34(loader_val, ours, device="cpu", dtype=F64) == right / 9
    assert not ours.training  # evaluation mode, as the notebook leaves it


# ----------------------------------------------------------------------------------------------
# The notebook's loaders
# ----------------------------------------------------------------------------------------------


def test_notebook_loaders_on_python_batches(tmp_path):
    write_python_batches(tmp_path / "raw", n_train=60, n_test=20)
    loaders = notebook_loaders(
        tmp_path / "raw", num_train=50, batch_size=16, cache_dir=tmp_path / "c"
    )
    assert loaders.train.dataset.train and loaders.val.dataset.train
    assert not loaders.test.dataset.train
    assert sorted(loaders.train.sampler.indices) == list(range(50))  # the first num_train
    assert list(loaders.val.sampler.indices) == list(range(50, 60))
    x_raw, y_raw = make_images(60, seed=0)
    xb, yb = next(iter(loaders.test))
    assert xb.shape == (16, 3, 32, 32) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    x_te, y_te = make_images(20, seed=1)
    mean = torch.tensor(NOTEBOOK_MEAN).view(3, 1, 1)
    std = torch.tensor(NOTEBOOK_STD).view(3, 1, 1)
    _close(xb, (torch.from_numpy(x_te[:16]).float() / 255 - mean) / std, "float32")
    assert yb.tolist() == y_te[:16].tolist()
    seen = torch.cat([y for _, y in loaders.train])
    assert sorted(seen.tolist()) == sorted(y_raw[:50].tolist())


def test_notebook_loaders_shuffle_a_class_sorted_copy_and_check_arguments(tmp_path):
    root, *_ = write_image_folder(tmp_path / "tree", 40, 10, size=8)
    loaders = notebook_loaders(root, num_train=30, cache_dir=tmp_path / "c")
    val_labels = {loaders.val.dataset.labels[i].item() for i in loaders.val.sampler.indices}
    assert len(val_labels) > 2  # not the last classes only, as a first-N split would give
    with pytest.raises(ValueError, match=r"num_train must be an int in \[1, 39\]"):
        notebook_loaders(root, num_train=40, cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        notebook_loaders(root, batch_size=0, cache_dir=tmp_path / "c")


def test_barebones_convnet_learns_tiny_cifar(tmp_path):
    """The notebook's Part II run, scaled down: three_layer_convnet with random_weight /
    zero_weight parameters, train_part2 for one epoch on tiny CIFAR-10 data."""
    write_python_batches(tmp_path / "raw", n_train=200, n_test=20)
    loaders = notebook_loaders(
        tmp_path / "raw", num_train=180, batch_size=20, cache_dir=tmp_path / "c"
    )
    torch.manual_seed(0)
    c1, c2 = 4, 2
    params = [
        P.random_weight((c1, 3, 5, 5), device="cpu"),
        P.zero_weight(c1, device="cpu"),
        P.random_weight((c2, c1, 3, 3), device="cpu"),
        P.zero_weight(c2, device="cpu"),
        P.random_weight((c2 * 32 * 32, 10), device="cpu"),
        P.zero_weight(10, device="cpu"),
    ]
    losses = P.train_part2(
        P.three_layer_convnet, params, 3e-3, loader_train=loaders.train, loader_val=loaders.val,
        device="cpu", print_every=100,
    )  # fmt: skip
    assert len(losses) == 9
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_notebook_functions_follow_the_device():
    """The notebook's default device (CUDA when available): weights, networks and scores there."""
    w = P.random_weight((8, 3, 5, 5))
    assert w.device.type == "cuda"
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 5, generator=gen, dtype=F64)
    params = _convnet_params(gen, 3, 4, 3, 6, 5, 10)
    cpu = P.three_layer_convnet(x, params)
    gpu = P.three_layer_convnet(x.cuda(), [p.cuda() for p in params])
    _close(gpu.cpu(), cpu)
    net = P.ThreeLayerConvNet(3, 4, 3, 10).cuda()
    assert net(torch.zeros(2, 3, 32, 32, device="cuda")).shape == (2, 10)
