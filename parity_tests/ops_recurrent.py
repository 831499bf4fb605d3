"""Registry entries of the recurrent layers: RNN and LSTM (step and sequence), word embedding,
temporal affine and the temporal softmax loss.

One ``OpSpec`` per op (conventions in ``parity_tests/registry.py``); every CS231n-vs-PyTorch
conversion is written out in the builtin's function and summarized in ``conversion``:

* ``nn.RNN``/``nn.RNNCell`` (tanh): ``weight_ih = Wx.T``, ``weight_hh = Wh.T``; CS231n's one bias
  ``b`` is PyTorch's ``bias_ih + bias_hh``, so ``bias_ih = b`` and ``bias_hh = 0``.
* ``nn.LSTM``/``nn.LSTMCell``: PyTorch stacks the gates i, f, g, o, CS231n i, f, o, g, so the
  column blocks of ``Wx``, ``Wh``, ``b`` are permuted ([0, 1, 3, 2] in units of H) before the
  transpose; one bias as above; CS231n's c0 = 0.
* ``nn.Embedding``/``F.embedding(x, W)``: same table layout (V, D).
* temporal softmax loss: ``F.cross_entropy(x.reshape(N*T, V), y', ignore_index=-100,
  reduction='sum') / N`` with ``y' = where(mask, y, -100)`` (CS231n sums over time and divides by
  the batch size only).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from builtin_impl.conversions import gate_order, linear_weight
from numpy_impl import rnn_layers as npr
from parity_tests.case_helpers import (
    _builtin_module,
    _case,
    _like,
    _loss,
    _pair,
    _seq_len,
    _set_const,
    _set_input,
    _size,
    _xs,
)
from parity_tests.checks import case_without_tiny_gradients
from parity_tests.registry import BadInput, Bench, BenchShape, Case, OpSpec
from torch_impl import functions as tf3
from torch_impl import rnn_layers as trnn

# ----------------------------------------------------------------------------------------------
# RNN / LSTM
# ----------------------------------------------------------------------------------------------


def _recurrent_case(rng, dtype, gates, seq, scale=1.0, N=None, D=None) -> Case:
    """x (N, T, D) or (N, D), h0/prev_h (N, H) [, prev_c], Wx (D, gH), Wh (H, gH), b (gH,).

    Weights ~ randn / sqrt(fan_in) * scale (CS231n's init at scale 1). Strongly saturated units
    (scale 3) make 1 - tanh(a)^2 ~ 1e-8, where the 1-ulp difference between NumPy's and
    PyTorch's tanh becomes a 1e-8 relative difference: tests/test_recurrent_attention_parity.py
    covers that regime with absolute tolerances instead of the registry's elementwise relative
    error.
    """
    N, D = (_size(rng) if v is None else v for v in (N, D))  # a flavor may pin them
    H, T = _size(rng), _seq_len(rng)
    x = rng.standard_normal((N, T, D) if seq else (N, D))
    inputs = {"x": x, "h0" if seq else "prev_h": rng.standard_normal((N, H))}
    if gates == 4 and not seq:
        inputs["prev_c"] = rng.standard_normal((N, H))
    inputs["Wx"] = rng.standard_normal((D, gates * H)) * scale / np.sqrt(D)
    inputs["Wh"] = rng.standard_normal((H, gates * H)) * scale / np.sqrt(H)
    inputs["b"] = rng.standard_normal(gates * H) * 0.5
    return _case(dtype, inputs)


def _torch_rnn_params(t, H, lstm, suffix):
    """PyTorch's parameter dict from CS231n's Wx, Wh, b (see the module docstring)."""
    Wx, Wh, b = t["Wx"], t["Wh"], t["b"]
    if lstm:
        Wx, Wh, b = (gate_order(a, H) for a in (Wx, Wh, b))
    return {
        f"weight_ih{suffix}": linear_weight(Wx),
        f"weight_hh{suffix}": linear_weight(Wh),
        f"bias_ih{suffix}": b,
        f"bias_hh{suffix}": torch.zeros_like(b),  # CS231n's single bias: bias_ih + bias_hh = b
    }


def _rnn_step_builtin(t, c):
    x, h = t["x"], t["prev_h"]
    cell = _builtin_module(nn.RNNCell, x.shape[1], h.shape[1], nonlinearity="tanh", **_like(x))
    return functional_call(cell, _torch_rnn_params(t, h.shape[1], False, ""), (x, h))


def _rnn_builtin(t, c):
    x, h0 = t["x"], t["h0"]
    rnn = _builtin_module(
        nn.RNN, x.shape[2], h0.shape[1], nonlinearity="tanh", batch_first=True, **_like(x)
    )
    out, _ = functional_call(rnn, _torch_rnn_params(t, h0.shape[1], False, "_l0"), (x, h0[None]))
    return out


def _lstm_step_builtin(t, c):
    x, h, cc = t["x"], t["prev_h"], t["prev_c"]
    cell = _builtin_module(nn.LSTMCell, x.shape[1], h.shape[1], **_like(x))
    return functional_call(cell, _torch_rnn_params(t, h.shape[1], True, ""), (x, (h, cc)))


def _lstm_builtin(t, c):
    x, h0 = t["x"], t["h0"]
    lstm = _builtin_module(nn.LSTM, x.shape[2], h0.shape[1], batch_first=True, **_like(x))
    c0 = torch.zeros_like(h0)  # CS231n's lstm_forward starts from a zero cell state
    params = _torch_rnn_params(t, h0.shape[1], True, "_l0")
    out, _ = functional_call(lstm, params, (x, (h0[None], c0[None])))
    return out


_RNN_BAD = (
    BadInput("Wx rows != D", _set_input("Wx", lambda w: np.vstack([w, w[:1]])), "Wx must have"),
    BadInput("Wh not square", _set_input("Wh", lambda w: w[:, :-1]), "Wh must have"),
    BadInput("b wrong length", _set_input("b", lambda b: np.append(b, 0.0)), "b must have"),
    BadInput("h0 batch != x batch", _set_input("h0", lambda h: np.vstack([h, h])), "h0 must have"),
    BadInput("x 2-D", _set_input("x", lambda x: x[:, 0]), "x must have 3 dimensions"),
)

_RNN_STEP_BAD = (
    BadInput("Wx rows != D", _set_input("Wx", lambda w: np.vstack([w, w[:1]])), "Wx must have"),
    BadInput(
        "prev_h batch != x batch",
        _set_input("prev_h", lambda h: np.vstack([h, h])),
        "prev_h must have",
    ),
    BadInput("x 3-D", _set_input("x", lambda x: x[:, None]), "x must have 2 dimensions"),
)

_LSTM_STEP_BAD = _RNN_STEP_BAD + (
    BadInput("prev_c wrong shape", _set_input("prev_c", lambda c: c[:, :0]), "prev_c must have"),
    BadInput(
        "Wx with H columns instead of 4H",
        _set_input("Wx", lambda w: w[:, : w.shape[1] // 4]),
        "Wx must have",
    ),
)

_LSTM_BAD = _RNN_BAD + (
    BadInput(
        "b with H entries instead of 4H",
        _set_input("b", lambda b: b[: b.shape[0] // 4]),
        "b must have",
    ),
)


def _recurrent_entry(
    name, gates, seq, forward, backward, fn, functional, builtin, bad, conv, bench=None
):
    return OpSpec(
        name=name,
        make_case=lambda rng, dtype, **kw: _recurrent_case(rng, dtype, gates, seq, **kw),
        # An empty batch; no input features (only the recurrence: nn.RNNCell/nn.LSTMCell
        # accept it, nn.RNN/nn.LSTM do not, nor T = 0).
        flavors=({}, {"N": 0}) if seq else ({}, {"N": 0}, {"D": 0}),
        # Saturated gates make gradient entries ~1e-5 of the largest (as in the captioning
        # test): fourth-order differences resolve them. Products of several such factors
        # (a gate near 0 or 1, tanh' ~1e-3, a weight ~1e-2) reach ~1e-7 whatever the upstream
        # gradient, below what any difference rule resolves (seen: lstm_step, dWh 1.9e-7 next
        # to 0.74; rnn, dx 1.6e-6 next to 0.94; NN_TWINS_EXAMPLES=50, seeds 1 and 4): the
        # finite-difference cases are drawn where the builtin's gradient has no such entry.
        fourth_order=True,
        make_numerical_case=lambda rng, dtype, **kw: case_without_tiny_gradients(
            lambda: _recurrent_case(rng, dtype, gates, seq, **kw), builtin, rng
        ),
        numpy_forward_backward=_pair(forward, backward, _xs),
        torch_impl_fn=lambda t, c: fn.apply(*t.values()),
        torch_functional_fn=lambda t, c: functional(*t.values()),
        builtin_fn=builtin,
        bad_inputs=bad,
        conversion=conv,
        bench=bench,
    )


_RNN_CONV = "weight_ih = Wx.T, weight_hh = Wh.T, bias_ih = b, bias_hh = 0 (one bias in CS231n)"
_LSTM_CONV = (
    "gate blocks i,f,o,g -> i,f,g,o, then weight_ih = Wx'.T, weight_hh = Wh'.T, bias_ih = b', "
    "bias_hh = 0"
)

# CS231n's captioning batch and sizes (assignment 3)
_CAPTIONING = BenchShape(
    "a3", {"N": 25, "T": 16, "D": 256, "H": 512}, {"N": 2, "T": 3, "D": 4, "H": 5}
)


def _bench_recurrent(gates):
    def make(rng, N, T, D, H) -> Case:
        shapes = (N, T, D), (N, H), (D, gates * H), (H, gates * H), (gates * H,)
        x, h0, Wx, Wh, b = (rng.standard_normal(s, dtype=np.float32) for s in shapes)
        inputs = {"x": x, "h0": h0, "Wx": Wx / np.sqrt(D), "Wh": Wh / np.sqrt(H), "b": b}
        return Case({k: v.astype(np.float32) for k, v in inputs.items()})

    return make


def _recurrent_bench(name, gates):
    return Bench(
        name,
        _bench_recurrent(gates),
        lambda N, T, D, H: f"N={N} T={T} D={D} H={H}",
        shapes=(_CAPTIONING,),
    )


_RECURRENT_OPS = [
    _recurrent_entry(
        "rnn_step",
        1,
        False,
        npr.rnn_step_forward,
        npr.rnn_step_backward,
        tf3.RNNStepFunction,
        trnn.rnn_step,
        _rnn_step_builtin,
        _RNN_STEP_BAD,
        "nn.RNNCell(tanh): " + _RNN_CONV,
    ),
    _recurrent_entry(
        "rnn",
        1,
        True,
        npr.rnn_forward,
        npr.rnn_backward,
        tf3.RNNFunction,
        trnn.rnn,
        _rnn_builtin,
        _RNN_BAD,
        "nn.RNN(tanh, batch_first), h0[None]: " + _RNN_CONV,
        _recurrent_bench("rnn", 1),
    ),
    _recurrent_entry(
        "lstm_step",
        4,
        False,
        npr.lstm_step_forward,
        npr.lstm_step_backward,
        tf3.LSTMStepFunction,
        trnn.lstm_step,
        _lstm_step_builtin,
        _LSTM_STEP_BAD,
        "nn.LSTMCell: " + _LSTM_CONV,
    ),
    _recurrent_entry(
        "lstm",
        4,
        True,
        npr.lstm_forward,
        npr.lstm_backward,
        tf3.LSTMFunction,
        trnn.lstm,
        _lstm_builtin,
        _LSTM_BAD,
        "nn.LSTM(batch_first), (h0[None], zeros): " + _LSTM_CONV,
        _recurrent_bench("lstm", 4),
    ),
]


# ----------------------------------------------------------------------------------------------
# Word embedding, temporal affine, temporal softmax loss
# ----------------------------------------------------------------------------------------------


def _embedding_case(rng, dtype, N=None, T=None) -> Case:
    V, D = _size(rng, 1, 6), _size(rng)
    N, T = (_size(rng) if v is None else v for v in (N, T))
    # Few words and several positions: repeated indices (whose gradients must accumulate) are
    # the rule; one case in three uses V = 1 (every position is the same word).
    x = rng.integers(V, size=(N, T))
    return _case(dtype, {"W": rng.standard_normal((V, D))}, x=x)


_EMBED_BAD = (
    BadInput(
        "index >= V",
        _set_const("x", lambda c: c.consts["x"] + c.inputs["W"].shape[0]),
        "x must lie in",
    ),
    BadInput(
        "negative index",
        _set_const("x", lambda c: c.consts["x"] - c.inputs["W"].shape[0]),
        "x must lie in",
    ),
    BadInput(
        "float indices",
        _set_const("x", lambda c: c.consts["x"].astype(np.float64)),
        "integer indices",
    ),
    BadInput("W 1-D", _set_input("W", lambda w: w.ravel()), "W must have 2 dimensions"),
)


def _temporal_affine_case(rng, dtype, N=None, T=None, D=None) -> Case:
    """Random sizes; a flavor may pin N, T or D (0 for the zero-size cases)."""
    N, T, D = (_size(rng) if v is None else v for v in (N, T, D))
    M = _size(rng)
    inputs = {
        "x": rng.standard_normal((N, T, D)),
        "w": rng.standard_normal((D, M)),
        "b": rng.standard_normal(M),
    }
    return _case(dtype, inputs)


_TEMPORAL_AFFINE_BAD = (
    BadInput("w rows != D", _set_input("w", lambda w: np.vstack([w, w[:1]])), "w must have"),
    BadInput("b wrong length", _set_input("b", lambda b: np.append(b, 0.0)), "b must have"),
    BadInput("x 2-D", _set_input("x", lambda x: x[:, 0]), "x must have 3 dimensions"),
)


def _temporal_loss_case(rng, dtype, large=True) -> Case:
    N, T, V = _size(rng), _size(rng), _size(rng, 2, 7)
    # The finite-difference cases keep logits ~N(0, 1): a softmax probability of ~1e-5 has a
    # gradient the centered difference (h = 1e-5) resolves only to ~1e-11 absolute.
    x = rng.standard_normal((N, T, V)) * (2 if large else 1)
    if large:
        x[rng.random((N, T)) < 0.3] *= 500  # logits ~1e3: the log-sum-exp shift matters
    y = rng.integers(V, size=(N, T))
    mask = rng.random((N, T)) < 0.7
    mask.flat[rng.integers(mask.size)] = True  # at least one position counts
    return _case(dtype, {"x": x}, y=y, mask=mask)


def _temporal_loss_builtin(t, c):
    x, y, mask = t["x"], c["y"], c["mask"]
    N, T, V = x.shape
    # CS231n: sum over the unmasked positions, divide by N (not by the number of positions).
    target = torch.where(mask, y, torch.full_like(y, -100))
    return (
        F.cross_entropy(
            x.reshape(N * T, V), target.reshape(N * T), ignore_index=-100, reduction="sum"
        )
        / N
    )


_TEMPORAL_LOSS_BAD = (
    BadInput(
        "y >= V", _set_const("y", lambda c: c.consts["y"] + c.inputs["x"].shape[2]), "y must lie in"
    ),
    BadInput(
        "y shape != (N, T)", _set_const("y", lambda c: c.consts["y"][:, :0]), "y must have shape"
    ),
    BadInput(
        "mask shape != (N, T)",
        _set_const("mask", lambda c: c.consts["mask"].T[None]),
        "mask must have shape",
    ),
    BadInput("x 2-D", _set_input("x", lambda x: x[:, 0]), "x must have 3 dimensions"),
)

_TEMPORAL_OPS = [
    OpSpec(
        name="word_embedding",
        make_case=_embedding_case,
        flavors=({}, {"N": 0}, {"T": 0}),  # no words: dW = 0
        numpy_forward_backward=_pair(
            npr.word_embedding_forward,
            npr.word_embedding_backward,
            lambda c: (c.consts["x"], c.inputs["W"]),
        ),
        torch_impl_fn=lambda t, c: tf3.WordEmbeddingFunction.apply(c["x"], t["W"]),
        torch_functional_fn=lambda t, c: trnn.word_embedding(c["x"], t["W"]),
        builtin_fn=lambda t, c: F.embedding(c["x"], t["W"]),
        bad_inputs=_EMBED_BAD,
        conversion="F.embedding(x, W): same (V, D) table",
    ),
    OpSpec(
        name="temporal_affine",
        make_case=_temporal_affine_case,
        # Zero-size dimensions: no features (out = b everywhere), no steps, no sequences. (Case
        # 0 draws freely: the bad-input check mutates it.)
        flavors=({}, {"D": 0}, {"T": 0}, {"N": 0}),
        numpy_forward_backward=_pair(
            npr.temporal_affine_forward, npr.temporal_affine_backward, _xs
        ),
        torch_impl_fn=lambda t, c: tf3.TemporalAffineFunction.apply(t["x"], t["w"], t["b"]),
        torch_functional_fn=lambda t, c: trnn.temporal_affine(t["x"], t["w"], t["b"]),
        builtin_fn=lambda t, c: F.linear(t["x"], linear_weight(t["w"]), t["b"]),
        bad_inputs=_TEMPORAL_AFFINE_BAD,
        conversion="F.linear(x, w.T, b): CS231n's w is (D, M)",
    ),
    OpSpec(
        name="temporal_softmax_loss",
        make_case=_temporal_loss_case,
        make_numerical_case=lambda rng, dtype: _temporal_loss_case(rng, dtype, large=False),
        numpy_forward_backward=_loss(
            npr.temporal_softmax_loss, lambda c: (c.inputs["x"], c.consts["y"], c.consts["mask"])
        ),
        torch_impl_fn=lambda t, c: tf3.TemporalSoftmaxLossFunction.apply(t["x"], c["y"], c["mask"]),
        torch_functional_fn=lambda t, c: trnn.temporal_softmax_loss(t["x"], c["y"], c["mask"]),
        builtin_fn=_temporal_loss_builtin,
        bad_inputs=_TEMPORAL_LOSS_BAD,
        conversion="F.cross_entropy(x.reshape(N*T, V), where(mask, y, -100), ignore_index=-100, "
        "reduction='sum') / N",
    ),
]


OPS = _RECURRENT_OPS + _TEMPORAL_OPS
