"""Batchnorm running statistics: numpy_impl, torch_impl (Function, functional, nn) and F.batch_norm
after K training steps, then test mode with the learned statistics.

Conversions (both sides start from zero running statistics, CS231n's default):
* momentum: CS231n's running = momentum*running + (1 - momentum)*batch keeps `momentum` of the
  old value; PyTorch's running = (1 - m)*running + m*batch keeps 1 - m: m_torch = 1 - momentum.
* running_var: CS231n averages the BIASED batch variance (divide by count), PyTorch the UNBIASED
  one (divide by count - 1), count = N (batchnorm) or N*H*W (spatial). Each step's term differs
  by the factor (count - 1)/count and the recursion is linear, so from zeros
      running_var_cs231n = running_var_torch * (count - 1) / count     (exactly, up to round-off).
  (From PyTorch's default initial running_var = 1 the relation would not hold.)
* Test mode: every implementation normalizes with the running statistics it is given; fed the
  CS231n statistics, all three agree.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from numpy_impl import layers as npl
from numpy_impl.gradient_check import rel_error
from parity_tests.registry import N_CASES, case_rng
from parity_tests.tolerances import ASSERT_CLOSE, REL_ERROR
from torch_impl import functional as tfn
from torch_impl import functions as tf
from torch_impl import nn as tnn

K = 4  # training steps


def _problem(spatial: bool, index: int):
    rng = case_rng(f"bn_running_{spatial}", index)
    N = int(rng.integers(1 if spatial else 2, 5))
    D = int(rng.integers(1, 5))
    shape = (N, D, int(rng.integers(1, 4)), int(rng.integers(2, 4))) if spatial else (N, D)
    axes = (0, 2, 3) if spatial else (0,)
    feat = (1, D, 1, 1) if spatial else (1, D)
    batches = [
        rng.normal(rng.normal(0, 2, feat), rng.uniform(0.5, 3, feat), shape) for _ in range(K + 1)
    ]  # K training batches + one test batch
    gamma, beta = rng.normal(1, 0.5, D), rng.standard_normal(D)
    momentum = float(rng.choice([0.9, 0.5, 0.99]))
    eps = float(rng.choice([1e-5, 1e-3]))
    count = int(np.prod([shape[a] for a in axes]))
    return batches, gamma, beta, momentum, eps, count


def _t(a):
    return torch.tensor(a, dtype=torch.float64)


def _close(a, b, what):
    torch.testing.assert_close(
        _t(np.asarray(a)),
        _t(np.asarray(b)),
        **ASSERT_CLOSE["float64"],
        msg=lambda m: f"{what}: {m}",
    )


def _twin(a, b, what):
    err = rel_error(np.asarray(a), np.asarray(b))
    assert err < REL_ERROR["twin_float64"], f"{what}: rel_error {err:.2e}"


def _beta_away_from_zero(x, gamma, running_mean, running_var, eps):
    """A beta (D,) with |beta| >= 1 + 2 max |gamma * xhat| per channel (random signs), so that
    every test-mode output gamma * xhat + beta is at least half of |beta| away from 0."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scaled = (
        gamma.reshape(shape)
        * (x - running_mean.reshape(shape))
        / np.sqrt(running_var.reshape(shape) + eps)
    )
    axes = tuple(a for a in range(x.ndim) if a != 1)
    signs = np.where(np.arange(x.shape[1]) % 2 == 0, 1.0, -1.0)
    return signs * (1 + 2 * np.abs(scaled).max(axis=axes))


@pytest.mark.parametrize("index", range(N_CASES))
@pytest.mark.parametrize("spatial", [False, True], ids=["batchnorm", "spatial_batchnorm"])
def test_running_statistics_and_test_mode(spatial, index):
    batches, gamma, beta, momentum, eps, count = _problem(spatial, index)
    D = gamma.shape[0]
    np_forward = npl.spatial_batchnorm_forward if spatial else npl.batchnorm_forward
    t_function = tf.BatchNormFunction
    t_functional = tfn.spatial_batchnorm if spatial else tfn.batchnorm

    bn_param = {"mode": "train", "momentum": momentum, "eps": eps}  # running stats: zeros default
    bn_param_t = {"mode": "train", "momentum": momentum, "eps": eps}
    rm_f, rv_f = torch.zeros(D, dtype=torch.float64), torch.zeros(D, dtype=torch.float64)
    rm_b, rv_b = torch.zeros(D, dtype=torch.float64), torch.zeros(D, dtype=torch.float64)
    for x in batches[:K]:
        np_forward(x, gamma, beta, bn_param)
        t_function.apply(_t(x), _t(gamma), _t(beta), rm_f, rv_f, True, momentum, eps)
        t_functional(_t(x), _t(gamma), _t(beta), bn_param_t)
        F.batch_norm(
            _t(x), rm_b, rv_b, _t(gamma), _t(beta), training=True, momentum=1 - momentum, eps=eps
        )

    rm, rv = bn_param["running_mean"], bn_param["running_var"]
    _twin(rm, rm_f, "running_mean numpy vs Function")
    _twin(rv, rv_f, "running_var numpy vs Function")
    _twin(rm, bn_param_t["running_mean"].numpy(), "running_mean numpy vs functional")
    _twin(rv, bn_param_t["running_var"].numpy(), "running_var numpy vs functional")
    _close(rm_f, rm_b, "running_mean Function vs F.batch_norm")
    _close(rv_f, rv_b * (count - 1) / count, "running_var Function vs F.batch_norm * (m-1)/m")

    # Test mode with the learned (CS231n) statistics, and a beta that keeps every output away
    # from 0: an output that cancels to ~1e-6 of its terms has an elementwise relative error of
    # ~1e-10 from round-off alone (seen: 1.6e-10, spatial, NN_TWINS_SEED=1, case 22).
    x = batches[K]
    beta = _beta_away_from_zero(x, gamma, rm, rv, eps)
    out_np, _ = np_forward(x, gamma, beta, dict(bn_param, mode="test"))
    out_f = t_function.apply(_t(x), _t(gamma), _t(beta), rm_f, rv_f, False, momentum, eps)
    out_b = F.batch_norm(
        _t(x), rm_f.clone(), rv_f.clone(), _t(gamma), _t(beta), training=False, eps=eps
    )
    _twin(out_np, out_f, "test-mode output numpy vs Function")
    _close(out_f, out_b, "test-mode output Function vs F.batch_norm")
    _twin(rm, rm_f, "test mode must not update running_mean")
    _twin(rv, rv_f, "test mode must not update running_var")


@pytest.mark.parametrize("spatial", [False, True], ids=["BatchNorm", "SpatialBatchNorm"])
def test_module_buffers_follow_numpy(spatial):
    """torch_impl.nn's modules: train() updates the buffers like numpy's bn_param, eval() uses
    them. The buffers start from numpy's values (whatever the module's own initialization)."""
    batches, gamma, beta, momentum, eps, _ = _problem(spatial, 0)
    D = gamma.shape[0]
    module = (tnn.SpatialBatchNorm if spatial else tnn.BatchNorm)(D, eps=eps, momentum=momentum)
    module = module.double()
    rng = np.random.default_rng(5)
    bn_param = {
        "mode": "train",
        "momentum": momentum,
        "eps": eps,
        "running_mean": rng.standard_normal(D),
        "running_var": rng.uniform(0.5, 2, D),
    }
    with torch.no_grad():
        module.running_mean.copy_(_t(bn_param["running_mean"]))
        module.running_var.copy_(_t(bn_param["running_var"]))
    np_forward = npl.spatial_batchnorm_forward if spatial else npl.batchnorm_forward
    ones, zeros = np.ones(D), np.zeros(D)  # the module's parameters are not set here: compare
    module.train()  # the buffers, which gamma/beta do not affect
    for x in batches[:K]:
        np_forward(x, ones, zeros, bn_param)
        module(_t(x))
    _twin(bn_param["running_mean"], module.running_mean.detach(), "module running_mean")
    _twin(bn_param["running_var"], module.running_var.detach(), "module running_var")
    module.eval()
    before = module.running_mean.clone()
    module(_t(batches[K]))
    assert torch.equal(module.running_mean, before), "eval() must not update running_mean"


@pytest.mark.parametrize(
    "shape", [(0, 3), (0, 3, 2, 2), (2, 3, 0, 2)], ids=["batchnorm-N0", "spatial-N0", "spatial-H0"]
)
def test_empty_batch_keeps_running_statistics(shape):
    """Training on a batch without values: every implementation returns an empty output and
    leaves the running statistics as they were (F.batch_norm's behaviour), instead of 0 / 0."""
    spatial = len(shape) == 4
    D = shape[1]
    rng = np.random.default_rng(0)
    mean0, var0 = rng.standard_normal(D), rng.uniform(0.5, 2, D)
    x, gamma, beta = np.zeros(shape), rng.normal(1, 0.5, D), rng.standard_normal(D)
    np_forward = npl.spatial_batchnorm_forward if spatial else npl.batchnorm_forward
    bn_param = {"mode": "train", "running_mean": mean0.copy(), "running_var": var0.copy()}
    out_np, _ = np_forward(x, gamma, beta, bn_param)
    bn_param_t = {"mode": "train", "running_mean": _t(mean0), "running_var": _t(var0)}
    out_fn = (tfn.spatial_batchnorm if spatial else tfn.batchnorm)(
        _t(x), _t(gamma), _t(beta), bn_param_t
    )
    module = (tnn.SpatialBatchNorm if spatial else tnn.BatchNorm)(D).double().train()
    with torch.no_grad():
        module.running_mean.copy_(_t(mean0))
        module.running_var.copy_(_t(var0))
    out_mod = module(_t(x))
    rm_b, rv_b = _t(mean0), _t(var0)
    out_b = F.batch_norm(_t(x), rm_b, rv_b, _t(gamma), _t(beta), training=True)

    for name, out in [
        ("numpy", out_np),
        ("functional", out_fn),
        ("module", out_mod),
        ("F.batch_norm", out_b),
    ]:
        assert tuple(out.shape) == shape, f"{name}: output shape {tuple(out.shape)}"
    for name, rm, rv in [
        ("numpy", bn_param["running_mean"], bn_param["running_var"]),
        ("functional", bn_param_t["running_mean"], bn_param_t["running_var"]),
        ("module", module.running_mean.detach(), module.running_var.detach()),
        ("F.batch_norm", rm_b, rv_b),
    ]:
        assert np.array_equal(np.asarray(rm), mean0), f"{name} changed running_mean: {rm}"
        assert np.array_equal(np.asarray(rv), var0), f"{name} changed running_var: {rv}"
