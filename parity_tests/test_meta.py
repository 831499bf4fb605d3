"""The suite can fail: inject a bug (monkeypatched, undone after each test) and require the parity
checks to report it. A check that passes on a wrong implementation proves nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from numpy_impl import attention as npa
from numpy_impl import layer_utils as npu
from numpy_impl import layers as npl
from numpy_impl import optim as npo
from parity_tests import checks
from parity_tests import test_defaults as defaults_tests
from parity_tests import test_modules as modules_tests
from parity_tests import test_ops as ops_tests
from parity_tests import test_optim as optim_tests
from parity_tests.registry import specs_with
from torch_impl import functional as tfn
from torch_impl import functions as tf
from torch_impl import functions as tf3
from torch_impl import nn as tnn


def _spec(name):
    (spec,) = [s for s in specs_with("torch_impl_fn") if s.name == name]
    return spec


def _scaled(fn, index, factor):
    """fn with its index-th returned gradient multiplied by factor."""

    def wrong(*args):
        grads = list(fn(*args))
        grads[index] = grads[index] * factor
        return tuple(grads)

    return wrong


@pytest.mark.parametrize("factor", [0.5, 1 + 1e-6], ids=["missing-half", "off-by-1e-6"])
def test_wrong_numpy_backward_is_caught(monkeypatch, factor):
    # A backward whose dw is off by `factor` (a missing 1/2, or a 1e-6 relative slip).
    monkeypatch.setattr(npl, "affine_backward", _scaled(npl.affine_backward, 1, factor))
    spec = _spec("affine")
    with pytest.raises(AssertionError, match="dw"):
        checks.check_numerical(spec, 0)
    with pytest.raises(AssertionError, match="dw: numpy vs torch_impl"):
        checks.check_twin(spec, 0)


def test_missing_one_over_n_in_batchnorm_backward_is_caught(monkeypatch):
    # The classic slip: dx = (N*dxhat - sum(dxhat) - xhat*sum(dxhat*xhat)) / std, the 1/N lost.
    original = npl.batchnorm_backward_alt

    def wrong(dout, cache):
        dx, dgamma, dbeta = original(dout, cache)
        return dx * dout.shape[0], dgamma, dbeta

    monkeypatch.setattr(npl, "batchnorm_backward_alt", wrong)
    spec = _spec("batchnorm_alt")
    with pytest.raises(AssertionError, match="dx"):
        checks.check_numerical(spec, 0)
    with pytest.raises(AssertionError, match="dx: numpy vs torch_impl"):
        checks.check_twin(spec, 0)


def test_wrong_numpy_forward_is_caught(monkeypatch):
    original = npl.softmax_loss
    # The loss off by 1e-6 (absolute: case 0's loss is ~0, its logits are ~1e3 apart).
    monkeypatch.setattr(
        npl, "softmax_loss", lambda x, y: (original(x, y)[0] + 1e-6, original(x, y)[1])
    )
    with pytest.raises(AssertionError, match="output 0: numpy vs torch_impl"):
        checks.check_twin(_spec("softmax_loss"), 0)


@pytest.mark.parametrize("factor", [2.0, 1 + 1e-6], ids=["doubled", "off-by-1e-6"])
def test_wrong_torch_backward_is_caught(monkeypatch, factor):
    original = tf.ReLUFunction.backward

    def wrong(ctx, dout):
        return original(ctx, dout) * factor

    monkeypatch.setattr(tf.ReLUFunction, "backward", staticmethod(wrong))
    spec = _spec("relu")
    with pytest.raises(AssertionError, match="dx: numpy vs torch_impl"):
        checks.check_twin(spec, 0)
    with pytest.raises(AssertionError, match="dx: torch_impl vs builtin, float64"):
        checks.check_builtin(spec, 0, np.float64)
    if factor == 2.0:  # float32 and gradcheck resolve only gross errors
        with pytest.raises(AssertionError, match="float32"):
            checks.check_builtin(spec, 0, np.float32)
        with pytest.raises(AssertionError, match="gradcheck failed"):
            checks.check_gradcheck(spec, 0)


def test_different_error_message_is_caught(monkeypatch):
    def vague(x, w, b, conv_param):
        raise ValueError("bad input")

    monkeypatch.setattr(tfn, "conv", vague)
    spec = _spec("conv_naive")
    with pytest.raises(AssertionError, match="different errors"):
        checks.check_bad_input(spec, spec.bad_inputs[0])


def test_silently_accepted_bad_input_is_caught(monkeypatch):
    def lenient(x, w, b):  # uses the first D rows of w whatever its shape
        x2 = x.reshape(x.shape[0], -1)
        return x2 @ w[: x2.shape[1]] + b, None

    monkeypatch.setattr(npl, "affine_forward", lenient)
    spec = _spec("affine")
    with pytest.raises(AssertionError, match="accepted it"):
        checks.check_bad_input(spec, spec.bad_inputs[0])


def test_wrong_optimizer_rule_is_caught(monkeypatch):
    # rmsprop with epsilon INSIDE the square root (a real variant, not CS231n's/PyTorch's rule).
    def eps_inside(w, dw, config=None):
        config = {} if config is None else config
        for k, v in (("learning_rate", 1e-2), ("decay_rate", 0.99), ("epsilon", 1e-8)):
            config.setdefault(k, v)
        d = config["decay_rate"]
        cache = d * config.get("cache", np.zeros_like(w)) + (1 - d) * dw * dw
        config["cache"] = cache
        return w - config["learning_rate"] * dw / np.sqrt(cache + config["epsilon"]), config

    monkeypatch.setattr(npo, "rmsprop", eps_inside)
    with pytest.raises(AssertionError):
        optim_tests.test_defaults_match_cs231n("rmsprop")


@pytest.mark.parametrize("name", ["conv_naive", "batchnorm", "softmax_loss"])
def test_cuda_check_code_path_runs_on_cpu(name):
    # The CUDA test is skipped on machines without a GPU; running its check with device="cpu"
    # keeps the code path exercised (device placement asserts, builtin comparison) everywhere.
    checks.check_cuda(_spec(name), 0, device="cpu")


def test_gradient_guarded_by_the_wrong_flag_is_caught(monkeypatch):
    # LSTMStepFunction's dx computed only when prev_h (input 1) needs a gradient instead of x
    # (input 0): every other check requests all gradients at once and passes.
    original = tf3.LSTMStepFunction.backward

    def wrong(ctx, dnext_h, dnext_c):
        grads = list(original(ctx, dnext_h, dnext_c))
        if not ctx.needs_input_grad[1]:
            grads[0] = None
        return tuple(grads)

    monkeypatch.setattr(tf3.LSTMStepFunction, "backward", staticmethod(wrong))
    spec = _spec("lstm_step")
    checks.check_twin(spec, 0)  # the hole: the full backward is right
    checks.check_builtin(spec, 0, np.float64)
    with pytest.raises(AssertionError, match=r"dx with only \['x'\] requiring grad"):
        checks.check_grad_subsets(spec, 0)


def test_unregistered_function_is_caught(monkeypatch):
    class UnregisteredFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, dout):
            return dout

    UnregisteredFunction.__module__ = tf3.__name__
    monkeypatch.setattr(tf3, "UnregisteredFunction", UnregisteredFunction, raising=False)
    with pytest.raises(AssertionError, match="UnregisteredFunction"):
        ops_tests.test_every_function_is_in_the_registry()


def test_unregistered_numpy_function_is_caught(monkeypatch):
    def conv_tanh_forward(x, w, b, conv_param):  # a new public sandwich, in no entry
        raise NotImplementedError

    monkeypatch.setattr(npu, "conv_tanh_forward", conv_tanh_forward, raising=False)
    monkeypatch.setattr(npu, "__all__", [*npu.__all__, "conv_tanh_forward"])
    conv_tanh_forward.__module__ = npu.__name__
    with pytest.raises(AssertionError, match="layer_utils.conv_tanh_forward"):
        ops_tests.test_every_numpy_function_is_in_the_registry()


def test_wrong_sandwich_backward_is_caught(monkeypatch):
    # affine_norm_relu that forgets dropout's mask on the way back (flavor 1: layernorm with
    # dropout); conv_bn_relu whose ReLU lets every gradient through.
    original = npu.affine_norm_relu_backward

    def no_dropout_backward(dout, cache):
        return original(dout, (*cache[:4], None))

    monkeypatch.setattr(npu, "affine_norm_relu_backward", no_dropout_backward)
    for check in (checks.check_numerical, checks.check_twin):
        with pytest.raises(AssertionError, match="affine_norm_relu"):
            check(_spec("affine_norm_relu"), 1)
    monkeypatch.undo()
    spec = _spec("conv_bn_relu")

    def has_units_off(case):
        return (checks.run_numpy(spec, case, None)[0][0] == 0).any()

    # a case (and its finite-difference case) with some ReLU inputs negative
    index = next(
        i
        for i in range(20)
        if has_units_off(spec.case(i)) and has_units_off(spec.numerical_case(i))
    )
    monkeypatch.setattr(npu, "relu_backward", lambda dout, cache: dout)
    for check in (checks.check_numerical, checks.check_twin):
        with pytest.raises(AssertionError, match="conv_bn_relu"):
            check(spec, index)


def _default(name):
    (d,) = [d for d in defaults_tests.DEFAULTS if d.name == name]
    return d


@pytest.mark.parametrize("momentum", [1.8, 0.5])
def test_changed_default_is_caught(monkeypatch, momentum):
    # BatchNormFunction.forward's momentum default changed: every other test passes it.
    forward = tf.BatchNormFunction.forward
    monkeypatch.setattr(forward, "__defaults__", (momentum, 1e-5))
    with pytest.raises(AssertionError, match="BatchNormFunction"):
        defaults_tests.check_default(_default("BatchNormFunction"))


def test_changed_dict_default_is_caught(monkeypatch):
    # numpy_impl's bn_param eps default (read by the shared argument check) set to 1e-3.
    import twin_checks as _checks

    original = _checks.check_bn_param

    def wrong(bn_param, D):
        mode, eps, momentum = original(bn_param, D)
        return mode, (1e-3 if "eps" not in bn_param else eps), momentum

    monkeypatch.setattr(npl, "check_bn_param", wrong)
    with pytest.raises(AssertionError, match="numpy batchnorm_forward"):
        defaults_tests.check_default(_default("numpy batchnorm_forward"))


def test_unchecked_default_is_caught(monkeypatch):
    # A new defaulted hyperparameter in a torch_impl module must get a row in the table.
    def init(self, num_features, eps=1e-5, device=None, dtype=None, affine_scale=1.0):
        original(self, num_features, eps, device, dtype)

    original = tnn.LayerNorm.__init__
    monkeypatch.setattr(tnn.LayerNorm, "__init__", init)
    with pytest.raises(AssertionError, match="LayerNorm.__init__.affine_scale"):
        defaults_tests.test_every_default_is_checked()


def test_fourth_order_check_catches_a_small_slip(monkeypatch):
    # multihead attention's dquery off by 1e-6 relative: the fourth-order finite differences
    # (which the attention entries use) still resolve it.
    monkeypatch.setattr(
        npa, "multihead_attention_backward", _scaled(npa.multihead_attention_backward, 0, 1 + 1e-6)
    )
    spec = _spec("multihead_attention")
    assert spec.fourth_order

    # A case where every query sees several keys: over one key (one key, or a mask blocking the
    # others) the softmax is constant and dquery is exactly 0, which no scaling changes.
    def sees_several_keys(case):
        mask = case.consts["attn_mask"]
        if mask is None:
            return case.inputs["key"].shape[1] > 1
        return int((np.asarray(mask) != 0).sum(1).min()) > 1

    index = next(i for i in range(20) if sees_several_keys(spec.numerical_case(i)))
    with pytest.raises(AssertionError, match="dquery vs numerical gradient"):
        checks.check_numerical(spec, index)


def test_module_with_pytorch_momentum_is_caught(monkeypatch):
    # A BatchNorm module that hands the Function PyTorch's momentum (1 - CS231n's).
    def forward(self, x):
        return tnn.BatchNormFunction.apply(
            x,
            self.gamma,
            self.beta,
            self.running_mean,
            self.running_var,
            self.training,
            1 - self.momentum,
            self.eps,
        )

    monkeypatch.setattr(tnn._BatchNormBase, "forward", forward)
    (spec,) = [s for s in modules_tests.SPECS if s.module.module is tnn.BatchNorm]
    with pytest.raises(AssertionError, match="running_mean"):
        modules_tests.test_module_equals_functional(spec, "train")
    with pytest.raises(AssertionError, match="running_mean"):
        modules_tests.test_module_matches_builtin(spec, "train")


def test_numpy_backward_handing_back_dout_is_caught(monkeypatch):
    # A relu_backward that zeroes dout in place and returns it: the caller's upstream gradient is
    # changed, and dx is the same memory as dout.
    def aliasing(dout, cache):
        dout[cache <= 0] = 0  # writes into the caller's upstream gradient, and returns it
        return dout

    monkeypatch.setattr(npl, "relu_backward", aliasing)
    (spec,) = [s for s in specs_with("numpy_forward_backward") if s.name == "relu"]
    with pytest.raises(AssertionError, match="dout changed|shares memory"):
        checks.check_numpy_leaves_inputs(spec, 0)


def test_numpy_forward_writing_into_its_input_is_caught(monkeypatch):
    def in_place(x):
        np.maximum(x, 0, out=x)
        return x.copy(), x.copy()

    monkeypatch.setattr(npl, "relu_forward", in_place)
    (spec,) = [s for s in specs_with("numpy_forward_backward") if s.name == "relu"]
    with pytest.raises(AssertionError, match="x changed"):
        checks.check_numpy_leaves_inputs(spec, 0)
