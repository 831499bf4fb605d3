"""Recurrent, attention and transformer checks that do not fit the registry's per-op shape.

* Saturated recurrent units: with large pre-activations, 1 - tanh(a)^2 ~ 1e-8 and the 1-ulp
  difference between NumPy's and PyTorch's tanh becomes a ~1e-8 RELATIVE difference in the
  gradients, which the registry's elementwise rel_error < 1e-10 would flag although nothing is
  wrong. Here the three implementations are compared with the float64 assert_close tolerances
  (absolute + relative), which is the meaningful bound in that regime.
* The multi-head attention key bias: its gradient is exactly zero (softmax is invariant to the
  per-row constant q . bk), so it is compared in absolute terms in all three implementations.
* The Functions only the transformer layers use (LayerNorm over the last dim, GELU): builtin
  parity and gradcheck.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from numpy_impl import attention as npa
from numpy_impl import rnn_layers as npr
from parity_tests.ops_attention import _mha_builtin
from parity_tests.ops_recurrent import _lstm_builtin, _recurrent_case, _rnn_builtin
from parity_tests.tolerances import ASSERT_CLOSE, GRADCHECK
from torch_impl import functions as tf3

F64 = ASSERT_CLOSE["float64"]


def _tensors(case, dtype=torch.float64):
    return {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in case.inputs.items()}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    ("name", "forward", "backward", "fn", "builtin", "gates"),
    [
        ("rnn", npr.rnn_forward, npr.rnn_backward, tf3.RNNFunction, _rnn_builtin, 1),
        ("lstm", npr.lstm_forward, npr.lstm_backward, tf3.LSTMFunction, _lstm_builtin, 4),
    ],
)
def test_saturated_recurrence_three_way(seed, name, forward, backward, fn, builtin, gates):
    rng = np.random.default_rng([seed, gates])
    case = _recurrent_case(rng, np.float64, gates, seq=True, scale=4.0)
    h, cache = forward(*case.inputs.values())
    # The regime under test: some tanh outputs within 1e-3 of +-1 (RNN), some sigmoid gates
    # within 1e-3 of 0 or 1 (LSTM).
    acts = h if gates == 1 else cache[4][..., : 3 * (h.shape[2])]
    margin = 1 - np.abs(acts) if gates == 1 else np.minimum(acts, 1 - acts)
    assert margin.min() < 1e-3
    dh = rng.standard_normal(h.shape)
    grads_np = backward(dh, cache)
    t = _tensors(case)
    ours = fn.apply(*t.values())
    g_ours = torch.autograd.grad(ours, list(t.values()), torch.from_numpy(dh))
    t2 = _tensors(case)
    ref = builtin(t2, {})
    g_ref = torch.autograd.grad(ref, list(t2.values()), torch.from_numpy(dh))
    torch.testing.assert_close(ours, torch.from_numpy(h), **F64)
    torch.testing.assert_close(ours, ref, **F64)
    for g_n, g_o, g_r in zip(grads_np, g_ours, g_ref, strict=True):
        torch.testing.assert_close(g_o, torch.from_numpy(g_n), **F64)
        torch.testing.assert_close(g_o, g_r, **F64)


@pytest.mark.parametrize("seed", range(4))
def test_mha_key_bias_gradient_is_zero_everywhere(seed):
    rng = np.random.default_rng(seed)
    N, S, T, heads = 2, 3, 4, 2
    E = 2 * heads
    arrays = [rng.standard_normal(s) for s in [(N, S, E), (N, T, E), (N, T, E)]]
    for _ in range(4):
        arrays += [rng.standard_normal((E, E)), rng.standard_normal(E)]
    mask = np.tril(np.ones((S, T)))
    out, cache = npa.multihead_attention_forward(*arrays, heads, mask)
    dout = rng.standard_normal(out.shape)
    dbk_np = npa.multihead_attention_backward(dout, cache)[6]
    names = ["query", "key", "value", "Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo"]
    t = {n: torch.tensor(a, requires_grad=True) for n, a in zip(names, arrays, strict=True)}
    ours = tf3.MultiHeadAttentionFunction.apply(*t.values(), heads, torch.from_numpy(mask), None)
    dbk_t, dbq = torch.autograd.grad(ours, [t["bk"], t["bq"]], torch.from_numpy(dout))
    ref = _mha_builtin(t, {"num_heads": heads, "attn_mask": torch.from_numpy(mask)})
    (dbk_b,) = torch.autograd.grad(ref, t["bk"], torch.from_numpy(dout))
    zero = torch.zeros(E, dtype=torch.float64)
    for g in (torch.from_numpy(dbk_np), dbk_t, dbk_b):
        torch.testing.assert_close(g, zero, **F64)
    # The other gradients are O(1), so "zero" above is not a tolerance artefact.
    assert dbq.abs().max() > 1e-3


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 6), (1, 1, 3)])
def test_layernorm_last_dim_matches_builtin(dtype_name, shape):
    dtype = getattr(torch, dtype_name)
    g = torch.Generator().manual_seed(len(shape))
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 1).to(dtype)
    gamma = torch.randn(shape[-1], generator=g, dtype=torch.float64).to(dtype)
    beta = torch.randn(shape[-1], generator=g, dtype=torch.float64).to(dtype)
    ins = [a.clone().requires_grad_() for a in (x, gamma, beta)]
    refs = [a.clone().requires_grad_() for a in (x, gamma, beta)]
    out = tf3.LayerNormFunction.apply(*ins, 1e-5)
    ref = F.layer_norm(refs[0], shape[-1:], refs[1], refs[2], eps=1e-5)
    torch.testing.assert_close(out, ref, **ASSERT_CLOSE[dtype_name])
    dout = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    for a, b in zip(
        torch.autograd.grad(out, ins, dout), torch.autograd.grad(ref, refs, dout), strict=True
    ):
        torch.testing.assert_close(a, b, **ASSERT_CLOSE[dtype_name])
    if dtype == torch.float64:
        torch.autograd.gradcheck(
            lambda *a: tf3.LayerNormFunction.apply(*a, 1e-5), tuple(ins), **GRADCHECK
        )


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_gelu_matches_builtin(dtype_name):
    dtype = getattr(torch, dtype_name)
    x = torch.linspace(-8, 8, 101, dtype=torch.float64).to(dtype).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    out, ref = tf3.GELUFunction.apply(x), F.gelu(x2)
    torch.testing.assert_close(out, ref, **ASSERT_CLOSE[dtype_name])
    (g1,) = torch.autograd.grad(out.sum(), x)
    (g2,) = torch.autograd.grad(ref.sum(), x2)
    torch.testing.assert_close(g1, g2, **ASSERT_CLOSE[dtype_name])
    if dtype == torch.float64:
        torch.autograd.gradcheck(
            tf3.GELUFunction.apply, (x[::10].detach().requires_grad_(),), **GRADCHECK
        )


# ----------------------------------------------------------------------------------------------
# The registry checks catch wrong assignment-3 backward passes (bugs injected, then undone)
# ----------------------------------------------------------------------------------------------


def _spec(name):
    from parity_tests.registry import REGISTRY

    (spec,) = [s for s in REGISTRY if s.name == name]
    return spec


def _scaled_grad(fn, index, factor):
    def wrong(*args):
        grads = list(fn(*args))
        grads[index] = grads[index] * factor
        return tuple(grads)

    return wrong


@pytest.mark.parametrize(
    ("module", "name", "op", "index", "grad"),
    [
        (npr, "lstm_backward", "lstm", 3, "dWh"),
        (npr, "rnn_step_backward", "rnn_step", 0, "dx"),
        (npa, "multihead_attention_backward", "multihead_attention", 3, "dWq"),
    ],
)
def test_numpy_backward_off_by_1e_6_is_caught(monkeypatch, module, name, op, index, grad):
    from parity_tests import checks

    monkeypatch.setattr(module, name, _scaled_grad(getattr(module, name), index, 1 + 1e-6))
    spec = _spec(op)
    with pytest.raises(AssertionError, match=f"{grad}: numpy vs torch_impl"):
        checks.check_twin(spec, 0)


def test_embedding_without_accumulation_is_caught(monkeypatch):
    # dW[x] += dout keeps ONE of the gradients of a repeated word.
    from parity_tests import checks

    def wrong(dout, cache):
        x, W = cache
        dW = np.zeros_like(W)
        dW[x] += dout
        return dW

    monkeypatch.setattr(npr, "word_embedding_backward", wrong)
    spec = _spec("word_embedding")
    with pytest.raises(AssertionError, match="dW"):
        checks.check_numerical(spec, 0)


def test_lstm_gate_order_swap_is_caught(monkeypatch):
    # Treating CS231n's (i, f, o, g) blocks as PyTorch's (i, f, g, o) in the torch Function's
    # forward: the builtin comparison (which applies the documented conversion) catches it.
    import torch_impl.recurrent as recurrent
    from parity_tests import checks

    original = recurrent._lstm_gates

    def swapped(a, H):
        i, f, o, g = a.split(H, dim=1)
        return original(torch.cat([i, f, g, o], dim=1), H)

    monkeypatch.setattr(recurrent, "_lstm_gates", swapped)
    with pytest.raises(AssertionError, match="torch_impl vs builtin"):
        checks.check_builtin(_spec("lstm"), 0, np.float64)


def test_attention_backward_missing_scale_is_caught(monkeypatch):
    import torch_impl.attention as attention
    from parity_tests import checks

    original = attention._attention_backward

    def wrong(dout, q, k, v, A, drop_mask, scale):
        dq, dk, dv = original(dout, q, k, v, A, drop_mask, scale)
        return dq / scale, dk, dv  # the 1/sqrt(d) forgotten in dq

    monkeypatch.setattr(attention, "_attention_backward", wrong)
    spec = _spec("scaled_dot_product_attention")
    # d > 1 (a scale that is not 1) and at least one query (the S = 0 flavor has no dq)
    index = next(
        i
        for i in range(20)
        if spec.case(i).inputs["q"].shape[-1] > 1 and spec.case(i).inputs["q"].size
    )
    with pytest.raises(AssertionError, match="dq"):
        checks.check_builtin(spec, index, np.float64)
    with pytest.raises(AssertionError, match="gradcheck failed"):
        checks.check_gradcheck(spec, index)
