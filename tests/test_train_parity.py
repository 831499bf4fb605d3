"""The three backends on the REAL models: same seed and weights -> same first-batch loss,
gradients, batchnorm statistics and optimizer steps (float64).

How "same" is measured: for the loss, CS231n's rel_error. For a whole gradient (or weight) tensor,
the largest entrywise difference relative to the tensor's largest entry,
max|a - b| / max(max|a|, max|b|). Entrywise rel_error is the wrong yardstick for a deep net's
gradients: some entries of a conv's gradient are 1e-7 of the tensor's scale (cancellation across
the batch), and the last-bit round-off of summing in another order, ~1e-17 in absolute terms,
is then 1e-9 of such an entry whichever implementation is right. The scale-relative error puts
the same twin_float64 bound on every entry's absolute error, relative to the tensor's magnitude.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from cifar_training.backends import BACKENDS, get_ops
from cifar_training.datamodule import CIFARDataModule
from cifar_training.models import SpatialBatchNorm, build_net, fit_whitening, param_groups
from cifar_training.synthetic import write_python_batches
from numpy_impl.gradient_check import rel_error
from parity_tests.tolerances import REL_ERROR

TOL = REL_ERROR["twin_float64"]


def scaled_error(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = max(a.abs().max().item(), b.abs().max().item(), 1e-300)
    return (a - b).abs().max().item() / scale


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """A real training batch: synthetic python batches through the data module (normalized,
    translated, flipped), in float64."""
    root = tmp_path_factory.mktemp("parity")
    write_python_batches(root / "raw", 64, 10, num_batches=2)
    dm = CIFARDataModule(
        root / "raw", batch_size=6, val_size=0, crop_pad=2, flip="random", cache_dir=root / "cache"
    )
    dm.setup("fit")
    x, y = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    return x.double(), y, dm.whitening_sample()


def _bn_sizes(net, x, ops):
    """M = N*H*W values per channel seen by each batchnorm (for PyTorch's unbiased variance)."""
    sizes, hooks = {}, []
    for name, m in net.named_modules():
        if isinstance(m, SpatialBatchNorm):

            def hook(mod, inputs, out, name=name):
                s = inputs[0].shape
                sizes[name] = s[0] * s[2] * s[3]

            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        net(x, ops)
    for h in hooks:
        h.remove()
    return sizes


def _train_two_steps(
    net0, backend, x, y, label_smoothing, optimizer, lr, wd, head_scale, bn_bias_lr_scale=1.0
):
    """Loss and gradients of the first batch, then the weights after two optimizer steps."""
    net = copy.deepcopy(net0).train()
    ops = get_ops(backend)
    groups = param_groups(net, lr, wd, head_scale, bn_bias_lr_scale)
    opt = ops.make_optimizer(groups, optimizer, lr, momentum=0.9)
    losses, grads = [], None
    for step in range(2):
        opt.zero_grad()
        loss = ops.cross_entropy(net(x, ops), y, label_smoothing)
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
            buffers = {n: b.clone() for n, b in net.named_buffers()}
        opt.step()
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    return losses, grads, buffers, weights


def _check_all_backends(
    net, x, y, label_smoothing, optimizer, lr, wd, head_scale=1.0, bn_bias_lr_scale=1.0
):
    out = {
        b: _train_two_steps(
            net, b, x, y, label_smoothing, optimizer, lr, wd, head_scale, bn_bias_lr_scale
        )
        for b in BACKENDS
    }
    ref_losses, ref_grads, _, ref_w = out["builtin"]
    assert len(ref_grads) == sum(p.requires_grad for p in net.parameters())
    for b in ("torch", "numpy"):
        losses, grads, _, weights = out[b]
        for step in range(2):
            assert rel_error(losses[step], ref_losses[step]) < TOL, (b, step, losses)
        assert grads.keys() == ref_grads.keys()
        for name in ref_grads:
            err = scaled_error(grads[name], ref_grads[name])
            assert err < TOL, f"{b} gradient of {name}: scaled error {err:.2e}"
        for name in ref_w:
            err = scaled_error(weights[name], ref_w[name])
            assert err < TOL, f"{b} weight {name} after 2 steps: scaled error {err:.2e}"
    return out


def test_default_model_first_batch_parity(batch):
    """The real default model (widths 32/64/128, whitening stem), float64, batch of 6."""
    x, y, sample = batch
    net = build_net("default", seed=0, head_scale=0.125).double()
    fit_whitening(net, sample)
    out = _check_all_backends(
        net, x, y, label_smoothing=0.2, optimizer="nesterov", lr=0.4, wd=5e-4, head_scale=0.125
    )
    # Batchnorm running statistics after the first batch: the twins agree with each other
    # exactly (CS231n: biased variance); PyTorch's running_var used the unbiased variance.
    sizes = _bn_sizes(net, x, get_ops("builtin"))
    assert len(sizes) == 6
    m = net.blocks[0].bn1.momentum
    for name, M in sizes.items():
        ref = out["builtin"][2]
        for b in ("torch", "numpy"):
            buf = out[b][2]
            assert scaled_error(buf[f"{name}.running_mean"], ref[f"{name}.running_mean"]) < TOL
            rv0 = torch.ones_like(buf[f"{name}.running_var"])  # the initial running variance
            expected = m * rv0 + (ref[f"{name}.running_var"] - m * rv0) * (M - 1) / M
            assert scaled_error(buf[f"{name}.running_var"], expected) < TOL, (b, name)
            assert scaled_error(buf[f"{name}.running_var"], ref[f"{name}.running_var"]) > TOL


def test_default_model_airbench_options_parity(batch):
    """Fixed batchnorm gamma, 64x beta learning rate and identity-initialized block convs:
    the same on every backend; gamma gets no gradient and stays 1."""
    x, y, sample = batch
    net = build_net("default", seed=3, head_scale=0.125, bn_scale="fixed", dirac_init=True).double()
    fit_whitening(net, sample)
    conv = net.blocks[1].conv1.w  # 32 -> 64: filters 0..31 are the identity, 32.. random
    centre = torch.zeros(3, 3, dtype=conv.dtype)
    centre[1, 1] = 1
    assert torch.equal(conv[5, 5], centre) and not conv[5, 4].any()
    assert conv[40].abs().sum() > 0
    out = _check_all_backends(
        net,
        x,
        y,
        label_smoothing=0.2,
        optimizer="nesterov",
        lr=0.4,
        wd=5e-4,
        head_scale=0.125,
        bn_bias_lr_scale=64.0,
    )
    for b in BACKENDS:
        grads, weights = out[b][1], out[b][3]
        assert not any(n.endswith(".gamma") for n in grads), b
        assert all(torch.all(w == 1) for n, w in weights.items() if n.endswith(".gamma")), b
    groups = param_groups(net, 0.4, 5e-4, 0.125, 64.0)
    beta_group = [g for g in groups if any(p is net.blocks[0].bn1.beta for p in g["params"])]
    assert beta_group[0]["lr"] == pytest.approx(0.4 * 64) and beta_group[0]["weight_decay"] == 0


def test_default_model_conv_stem_with_adam(batch):
    x, y, _ = batch
    net = build_net("default", widths=(8, 16, 16), stem="conv", seed=1).double()
    _check_all_backends(net, x, y, label_smoothing=0.0, optimizer="adam", lr=1e-3, wd=1e-3)


def test_three_layer_convnet_parity(batch):
    x, y, _ = batch
    net = build_net("three-layer", seed=2).double()
    _check_all_backends(net, x, y, label_smoothing=0.1, optimizer="sgd_momentum", lr=0.05, wd=0.0)


def test_eval_mode_scores_agree(batch):
    """Evaluation normalizes with the running statistics: after one training batch the twins'
    eval-mode scores agree (PyTorch's differ slightly: its running variance is unbiased)."""
    x, y, sample = batch
    net = build_net("default", seed=0).double()
    fit_whitening(net, sample)
    scores = {}
    for b in ("torch", "numpy"):
        n = copy.deepcopy(net)
        ops = get_ops(b)
        with torch.no_grad():
            n.train()(x, ops)
            scores[b] = n.eval()(x, ops)
    assert scaled_error(scores["torch"], scores["numpy"]) < TOL
    assert np.isfinite(scores["torch"].numpy()).all()


@pytest.mark.parametrize("model", ["default", "three-layer"])
def test_benchmark_train_step_is_the_same_step_on_every_backend(batch, model):
    """module.make_train_step (what benchmarks/train_step.py times): three steps, equal losses."""
    from cifar_training.module import make_train_step

    x, y, _ = batch
    losses = {}
    for b in BACKENDS:
        _, step = make_train_step(b, model=model, dtype=torch.float64)
        losses[b] = [float(step(x, y)) for _ in range(3)]
    assert losses["builtin"][2] < losses["builtin"][0]
    for b in ("torch", "numpy"):
        for got, ref in zip(losses[b], losses["builtin"], strict=True):
            assert rel_error(got, ref) < TOL, (b, losses)
