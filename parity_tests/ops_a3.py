"""Registry entries for CS231n assignment 3: RNN/LSTM, embedding, temporal layers, attention,
positional encoding, GAN and SimCLR losses.

One ``OpSpec`` per op (conventions in ``parity_tests/registry.py``). Every CS231n-vs-PyTorch
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
* ``F.scaled_dot_product_attention``: its boolean mask means True = MAY attend, so it receives
  ``attn_mask != 0``; ``nn.MultiheadAttention``'s boolean mask means True = BLOCKED, so it
  receives ``attn_mask == 0``. ``nn.MultiheadAttention`` packs the three input projections
  into ``in_proj_weight = cat([Wq.T, Wk.T, Wv.T])`` (rows q, k, v), ``in_proj_bias =
  cat([bq, bk, bv])``, and ``out_proj.weight = Wo.T``, ``out_proj.bias = bo``.
* GAN: ``F.binary_cross_entropy_with_logits`` (mean); least squares: ``0.5 * F.mse_loss``.
* SimCLR: ``F.cosine_similarity``, and the loss as ``F.cross_entropy`` over the similarity
  logits ``normalize(out) normalize(out)^T / tau`` with the diagonal set to -inf, target of row
  i = i + N mod 2N (the standard NT-Xent formulation).

Ops with dropout (attention weights, positional encoding) share numpy's mask through the case
(CS231n's ``(rand < p) / p`` with p = KEEP probability); PyTorch's builtins draw their own masks,
so their reference is composed from builtins (``torch.softmax``, ``*``, ``@``).

The MHA key bias ``bk`` has an exactly-zero gradient (adding q . bk to every score of a row
leaves the softmax unchanged), so a RELATIVE error on it compares round-off with round-off; it is
excluded from ``grad_inputs`` and tests/test_recurrent_attention_parity.py checks that all three
implementations give ~0 (absolute).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from numpy_impl import attention as npa
from numpy_impl import gan as npg
from numpy_impl import layers as npl
from numpy_impl import rnn_layers as npr
from numpy_impl import simclr as nps
from parity_tests.checks import case_without_tiny_gradients
from parity_tests.registry import BadInput, Case, OpSpec
from torch_impl import functions as tf3
from torch_impl import gan as tgan
from torch_impl import rnn_layers as trnn
from torch_impl import simclr as tsim
from torch_impl import transformer_layers as ttl

# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _cast(dtype, arrays: dict) -> dict:
    return {
        k: v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
        for k, v in arrays.items()
    }


def _case(dtype, inputs: dict, **consts) -> Case:
    consts = {k: _cast(dtype, v) if isinstance(v, dict) else v for k, v in consts.items()}
    return Case(_cast(dtype, inputs), _cast(dtype, consts))


def _size(rng, low=1, high=5) -> int:
    """A size in [low, high], the minimum (often 1) with probability 0.3."""
    return low if rng.random() < 0.3 else int(rng.integers(low, high + 1))


def _seq_len(rng) -> int:
    """A sequence length: 1 (a degenerate softmax over one key, a one-step recurrence) with
    probability 0.15, otherwise 2..5 so that most cases exercise the interactions."""
    return 1 if rng.random() < 0.15 else int(rng.integers(2, 6))


def _grads(case: Case, grads) -> dict:
    grads = grads if isinstance(grads, tuple) else (grads,)
    return dict(zip(case.inputs, grads, strict=True))


def _live(fn):
    """fn looked up again in its module at every call, so a test can monkeypatch it (as
    parity_tests/test_meta.py and tests/test_recurrent_attention_parity.py do to prove the checks
    catch bugs)."""
    module, name = sys.modules[fn.__module__], fn.__name__
    return lambda *args: getattr(module, name)(*args)


def _pair(forward, backward, args):
    """numpy_forward_backward for a (forward -> (out..., cache), backward(dout..., cache)) pair.

    Forwards returning several outputs (lstm_step: next_h, next_c) get a tuple of douts.
    """
    forward, backward = _live(forward), _live(backward)

    def run(case: Case, dout):
        *outs, cache = forward(*args(case))
        out = outs[0] if len(outs) == 1 else tuple(outs)
        if dout is None:
            return out, None
        douts = dout if isinstance(dout, tuple) else (dout,)
        return out, _grads(case, backward(*douts, cache))

    return run


def _loss(fn, args=None):
    """numpy_forward_backward for a loss returning (loss, grad or tuple of grads)."""
    fn = _live(fn)

    def run(case: Case, dout):
        value, grads = fn(*(args(case) if args else case.inputs.values()))
        if dout is None:
            return np.asarray(value), None
        grads = grads if isinstance(grads, tuple) else (grads,)
        return np.asarray(value), _grads(case, tuple(dout * g for g in grads))

    return run


def _xs(case):
    return tuple(case.inputs.values())


def _xs_and(*keys):
    return lambda case: (*case.inputs.values(), *(case.consts[k] for k in keys))


def _set_input(name, fn):
    def mutate(case):
        case.inputs[name] = fn(case.inputs[name])

    return mutate


def _set_const(key, fn):
    def mutate(case):
        case.consts[key] = fn(case)

    return mutate


def _like(t: torch.Tensor) -> dict:
    return {"dtype": t.dtype, "device": t.device}


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


# CS231n orders the LSTM gate blocks i, f, o, g; PyTorch i, f, g, o: blocks [0, 1, 3, 2].
def _torch_gate_order(W: torch.Tensor, H: int) -> torch.Tensor:
    i, f, o, g = W.split(H, dim=-1)
    return torch.cat([i, f, g, o], dim=-1)


def _torch_rnn_params(t, H, lstm, suffix):
    """PyTorch's parameter dict from CS231n's Wx, Wh, b (see the module docstring)."""
    Wx, Wh, b = t["Wx"], t["Wh"], t["b"]
    if lstm:
        Wx, Wh, b = (_torch_gate_order(a, H) for a in (Wx, Wh, b))
    return {
        f"weight_ih{suffix}": Wx.T,
        f"weight_hh{suffix}": Wh.T,
        f"bias_ih{suffix}": b,
        f"bias_hh{suffix}": torch.zeros_like(b),  # CS231n's single bias: bias_ih + bias_hh = b
    }


def _rnn_step_builtin(t, c):
    x, h = t["x"], t["prev_h"]
    cell = nn.RNNCell(x.shape[1], h.shape[1], nonlinearity="tanh", **_like(x))
    return functional_call(cell, _torch_rnn_params(t, h.shape[1], False, ""), (x, h))


def _rnn_builtin(t, c):
    x, h0 = t["x"], t["h0"]
    rnn = nn.RNN(x.shape[2], h0.shape[1], nonlinearity="tanh", batch_first=True, **_like(x))
    out, _ = functional_call(rnn, _torch_rnn_params(t, h0.shape[1], False, "_l0"), (x, h0[None]))
    return out


def _lstm_step_builtin(t, c):
    x, h, cc = t["x"], t["prev_h"], t["prev_c"]
    cell = nn.LSTMCell(x.shape[1], h.shape[1], **_like(x))
    return functional_call(cell, _torch_rnn_params(t, h.shape[1], True, ""), (x, (h, cc)))


def _lstm_builtin(t, c):
    x, h0 = t["x"], t["h0"]
    lstm = nn.LSTM(x.shape[2], h0.shape[1], batch_first=True, **_like(x))
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


def _recurrent_entry(name, gates, seq, forward, backward, fn, functional, builtin, bad, conv):
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
    )


_RNN_CONV = "weight_ih = Wx.T, weight_hh = Wh.T, bias_ih = b, bias_hh = 0 (one bias in CS231n)"
_LSTM_CONV = (
    "gate blocks i,f,o,g -> i,f,g,o, then weight_ih = Wx'.T, weight_hh = Wh'.T, bias_ih = b', "
    "bias_hh = 0"
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
        builtin_fn=lambda t, c: F.linear(t["x"], t["w"].T, t["b"]),
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


# ----------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------


def _attn_mask(rng, S, T):
    """None, a causal-like lower-triangular mask, or a random 0/1 mask; every row keeps >= 1."""
    kind = rng.integers(3)
    if kind == 0:
        return None
    if kind == 1:
        mask = np.tril(np.ones((S, T)), k=max(T - S, 0))
    else:
        mask = (rng.random((S, T)) < 0.6).astype(np.float64)
    mask[np.arange(S), rng.integers(T, size=S)] = 1.0
    return mask


def _keep_mask(rng, shape):
    """CS231n's inverted-dropout multiplier (rand < p) / p with a random keep probability."""
    p = float(rng.choice([0.5, 0.8]))
    return (rng.random(shape) < p) / p, p


# The finite-difference cases scale the queries' projection by this factor, hence the scores:
# a saturated softmax row (weights within ~1e-8 of 0 and 1, seen with scores ~18 apart) has
# gradient entries ~1e-8 of the largest WHATEVER the upstream gradient, which no difference
# rule resolves to rel_error 1e-7 (PyTorch's autograd and numpy_impl differ there by 1e-7).
_NUMERICAL_SCORE_SCALE = 0.3


def _sdpa_case(rng, dtype, dropout=False, S=None, numerical=False) -> Case:
    lead = tuple(_size(rng, 1, 3) for _ in range(rng.integers(1, 3)))  # (B,) or (B, heads)
    S = _size(rng) if S is None else S
    T, d, dv = _seq_len(rng), _size(rng), _size(rng)
    inputs = {
        "q": rng.standard_normal((*lead, S, d)),
        "k": rng.standard_normal((*lead, T, d)),
        "v": rng.standard_normal((*lead, T, dv)),
    }
    if numerical:
        inputs["q"] *= _NUMERICAL_SCORE_SCALE
    consts = {"attn_mask": _attn_mask(rng, S, T), "drop_mask": None, "dropout_param": None}
    if dropout:
        mask, p = _keep_mask(rng, (*lead, S, T))
        consts["drop_mask"] = mask
        consts["dropout_param"] = {"p": p, "mode": "train", "mask": mask}
    return _case(dtype, inputs, **consts)


def _sdpa_builtin(t, c):
    mask = c["attn_mask"]
    # F.scaled_dot_product_attention's bool mask: True = may attend, i.e. CS231n's mask != 0.
    return F.scaled_dot_product_attention(
        t["q"], t["k"], t["v"], attn_mask=None if mask is None else mask != 0
    )


def _softmax_attention_reference(q, k, v, mask, drop_mask):
    """softmax(q k^T / sqrt(d)) (blocked -> -inf) [* dropout multiplier] v, from builtins."""
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(mask == 0, float("-inf"))
    A = torch.softmax(scores, dim=-1)
    return (A if drop_mask is None else A * drop_mask) @ v


_SDPA_BAD = (
    BadInput(
        "attn_mask shape != (S, T)",
        _set_const(
            "attn_mask", lambda c: np.ones((c.inputs["q"].shape[-2] + 1, c.inputs["k"].shape[-2]))
        ),
        "attn_mask must have shape",
    ),
    BadInput(
        "a query with every key blocked",
        _set_const(
            "attn_mask", lambda c: np.zeros((c.inputs["q"].shape[-2], c.inputs["k"].shape[-2]))
        ),
        "attn_mask blocks every key",
    ),
    BadInput(
        "k feature size != q's",
        _set_input("k", lambda k: np.concatenate([k, k], -1)),
        "k must have shape",
    ),
    BadInput(
        "v length != k length",
        _set_input("v", lambda v: np.concatenate([v, v], -2)),
        "v must have shape",
    ),
)


def _mha_case(rng, dtype, dropout=False, numerical=False) -> Case:
    N, S, T = _size(rng), _size(rng), _seq_len(rng)
    num_heads = int(rng.choice([1, 2, 3]))
    E = num_heads * _size(rng, 1, 3)
    inputs = {
        "query": rng.standard_normal((N, S, E)),
        "key": rng.standard_normal((N, T, E)),
        "value": rng.standard_normal((N, T, E)),
    }
    for p in "qkvo":
        inputs[f"W{p}"] = rng.standard_normal((E, E)) / np.sqrt(E)
        inputs[f"b{p}"] = rng.standard_normal(E) * 0.5
    if numerical:
        # Well-conditioned projections: an orthogonal matrix times a scale in [0.7, 1.3]. A
        # randn / sqrt(E) draw can be nearly singular (|W| ~ 0.07 for E = 1), and a product of
        # such projections makes a whole gradient ~1e-4 of the loss' scale, whose small entries
        # are then below the ~1e-13 absolute resolution of any difference rule.
        for p in "qkvo":
            q, r = np.linalg.qr(rng.standard_normal((E, E)))
            inputs[f"W{p}"] = q * np.sign(np.diag(r)) * rng.uniform(0.7, 1.3)
        # Scores scaled (see _NUMERICAL_SCORE_SCALE).
        inputs["Wq"] *= _NUMERICAL_SCORE_SCALE
        inputs["bq"] *= _NUMERICAL_SCORE_SCALE
    consts = {
        "num_heads": num_heads,
        "attn_mask": _attn_mask(rng, S, T),
        "drop_mask": None,
        "dropout_param": None,
    }
    if dropout:
        mask, p = _keep_mask(rng, (N, num_heads, S, T))
        consts["drop_mask"] = mask
        consts["dropout_param"] = {"p": p, "mode": "train", "mask": mask}
    return _case(dtype, inputs, **consts)


_MHA_WEIGHTS = ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo")
# dbk is exactly zero (softmax shift invariance): see the module docstring.
_MHA_GRADS = ("query", "key", "value", "Wq", "bq", "Wk", "Wv", "bv", "Wo", "bo")


def _mha_apply(t, c):
    return tf3.MultiHeadAttentionFunction.apply(
        t["query"],
        t["key"],
        t["value"],
        *(t[w] for w in _MHA_WEIGHTS),
        c["num_heads"],
        c["attn_mask"],
        c["drop_mask"],
    )


def _mha_builtin(t, c):
    E = t["query"].shape[2]
    mha = nn.MultiheadAttention(
        E, c["num_heads"], dropout=0.0, batch_first=True, **_like(t["query"])
    )
    params = {
        # CS231n's (E_in, E_out) weights are nn.Linear's transposed; rows of in_proj: q, k, v.
        "in_proj_weight": torch.cat([t["Wq"].T, t["Wk"].T, t["Wv"].T], dim=0),
        "in_proj_bias": torch.cat([t["bq"], t["bk"], t["bv"]]),
        "out_proj.weight": t["Wo"].T,
        "out_proj.bias": t["bo"],
    }
    mask = c["attn_mask"]
    # nn.MultiheadAttention's bool mask: True = NOT allowed, i.e. CS231n's mask == 0.
    kwargs = {"attn_mask": None if mask is None else mask == 0, "need_weights": False}
    out, _ = functional_call(mha, params, (t["query"], t["key"], t["value"]), kwargs)
    return out


def _mha_reference(t, c):
    """The dropout case: nn.MultiheadAttention draws its own mask, so compose from builtins."""

    def heads(x, W, b):
        N, L, E = x.shape
        return F.linear(x, W.T, b).reshape(N, L, c["num_heads"], -1).transpose(1, 2)

    q = heads(t["query"], t["Wq"], t["bq"])
    k = heads(t["key"], t["Wk"], t["bk"])
    v = heads(t["value"], t["Wv"], t["bv"])
    y = _softmax_attention_reference(q, k, v, c["attn_mask"], c["drop_mask"])
    N, _, S, _ = y.shape
    return F.linear(y.transpose(1, 2).reshape(N, S, -1), t["Wo"].T, t["bo"])


_MHA_BAD = (
    BadInput(
        "embed_dim not divisible by num_heads",
        _set_const("num_heads", lambda c: c.inputs["query"].shape[2] + 1),
        "must be divisible by num_heads",
    ),
    BadInput("num_heads 0", _set_const("num_heads", lambda c: 0), "num_heads must be >= 1"),
    BadInput(
        "attn_mask shape != (S, T)",
        _set_const(
            "attn_mask",
            lambda c: np.ones((c.inputs["key"].shape[1] + 1, c.inputs["query"].shape[1])),
        ),
        "attn_mask must have shape",
    ),
    BadInput(
        "value shape != key shape", _set_input("value", lambda v: v[:, :0]), "value must have shape"
    ),
    BadInput("Wq wrong shape", _set_input("Wq", lambda w: w[:, :-1]), "Wq must have shape"),
    BadInput("query 2-D", _set_input("query", lambda q: q[0]), "query must have 3 dimensions"),
)


def _pe_case(rng, dtype, dropout=False, N=None) -> Case:
    N = _size(rng) if N is None else N
    S, D = _size(rng, 1, 7), 2 * _size(rng, 1, 4)
    consts = {"drop_mask": None, "dropout_param": None}
    if dropout:
        mask, p = _keep_mask(rng, (N, S, D))
        consts["drop_mask"] = mask
        consts["dropout_param"] = {"p": p, "mode": "train", "mask": mask}
    return _case(dtype, {"x": rng.standard_normal((N, S, D))}, **consts)


def _pe_torch_impl(t, c):
    x = t["x"]
    N, S, D = x.shape
    out = x + ttl.positional_encoding(S, D, dtype=x.dtype, device=x.device)
    return out if c["drop_mask"] is None else out * c["drop_mask"]


def _pe_reference(t, c):
    """The encoding written another way (the PyTorch tutorial's exp/log form)."""
    x = t["x"]
    N, S, D = x.shape
    pos = torch.arange(S, **_like(x))[:, None]
    div = torch.exp(torch.arange(0, D, 2, **_like(x)) * (-np.log(10000.0) / D))
    pe = torch.stack([torch.sin(pos * div), torch.cos(pos * div)], dim=-1).reshape(S, D)
    out = x + pe
    return out if c["drop_mask"] is None else out * c["drop_mask"]


def _pe_bad_mutate(case):
    case.inputs["x"] = case.inputs["x"][..., :-1]


_ATTENTION_OPS = [
    OpSpec(
        name="scaled_dot_product_attention",
        fourth_order=True,  # entries ~1e-5 of the largest are common (softmax weights)
        make_case=_sdpa_case,
        make_numerical_case=lambda rng, dtype, **kw: _sdpa_case(rng, dtype, numerical=True, **kw),
        flavors=({}, {"S": 0}),  # no queries: an empty output, zero dk and dv
        numpy_forward_backward=_pair(
            npa.scaled_dot_product_attention_forward,
            npa.scaled_dot_product_attention_backward,
            _xs_and("attn_mask", "dropout_param"),
        ),
        torch_impl_fn=lambda t, c: tf3.ScaledDotProductAttentionFunction.apply(
            t["q"], t["k"], t["v"], c["attn_mask"], c["drop_mask"]
        ),
        builtin_fn=_sdpa_builtin,
        bad_inputs=_SDPA_BAD,
        conversion="F.scaled_dot_product_attention(q, k, v, attn_mask=(mask != 0)): its bool "
        "mask is True = may attend; CS231n's 0 = blocked",
    ),
    OpSpec(
        name="scaled_dot_product_attention_dropout",
        fourth_order=True,  # entries ~1e-5 of the largest are common (softmax weights)
        make_case=lambda rng, dtype: _sdpa_case(rng, dtype, dropout=True),
        make_numerical_case=lambda rng, dtype: _sdpa_case(rng, dtype, True, numerical=True),
        numpy_forward_backward=_pair(
            npa.scaled_dot_product_attention_forward,
            npa.scaled_dot_product_attention_backward,
            _xs_and("attn_mask", "dropout_param"),
        ),
        torch_impl_fn=lambda t, c: tf3.ScaledDotProductAttentionFunction.apply(
            t["q"], t["k"], t["v"], c["attn_mask"], c["drop_mask"]
        ),
        builtin_fn=lambda t, c: _softmax_attention_reference(
            t["q"], t["k"], t["v"], c["attn_mask"], c["drop_mask"]
        ),
        conversion="shared dropout multiplier (rand < p) / p on the attention weights; reference "
        "composed from torch.softmax (the builtin draws its own mask)",
    ),
    OpSpec(
        name="multihead_attention",
        fourth_order=True,  # entries ~1e-5 of the largest are common (softmax weights)
        make_case=_mha_case,
        make_numerical_case=lambda rng, dtype: _mha_case(rng, dtype, numerical=True),
        numpy_forward_backward=_pair(
            npa.multihead_attention_forward,
            npa.multihead_attention_backward,
            _xs_and("num_heads", "attn_mask", "dropout_param"),
        ),
        torch_impl_fn=_mha_apply,
        builtin_fn=_mha_builtin,
        grad_inputs=_MHA_GRADS,
        bad_inputs=_MHA_BAD,
        conversion="nn.MultiheadAttention(batch_first): in_proj_weight = cat([Wq.T, Wk.T, "
        "Wv.T]), in_proj_bias = cat([bq, bk, bv]), out_proj = (Wo.T, bo), attn_mask = (mask == 0)"
        " (True = blocked); dbk excluded (exactly 0)",
    ),
    OpSpec(
        name="multihead_attention_dropout",
        fourth_order=True,  # entries ~1e-5 of the largest are common (softmax weights)
        make_case=lambda rng, dtype: _mha_case(rng, dtype, dropout=True),
        make_numerical_case=lambda rng, dtype: _mha_case(rng, dtype, True, numerical=True),
        numpy_forward_backward=_pair(
            npa.multihead_attention_forward,
            npa.multihead_attention_backward,
            _xs_and("num_heads", "attn_mask", "dropout_param"),
        ),
        torch_impl_fn=_mha_apply,
        builtin_fn=_mha_reference,
        grad_inputs=_MHA_GRADS,
        conversion="shared dropout multiplier on the (N, heads, S, T) weights; reference composed "
        "from F.linear and torch.softmax; dbk excluded (exactly 0)",
    ),
    OpSpec(
        name="positional_encoding",
        make_case=_pe_case,
        flavors=({}, {"N": 0}),
        numpy_forward_backward=_pair(
            npa.positional_encoding_forward,
            npa.positional_encoding_backward,
            _xs_and("dropout_param"),
        ),
        torch_impl_fn=_pe_torch_impl,
        builtin_fn=_pe_reference,
        bad_inputs=(BadInput("odd embed_dim", _pe_bad_mutate, "embed_dim must be even"),),
        conversion="no builtin: reference pe[:, 2i] = sin(pos exp(-2i ln(10000)/D)), "
        "pe[:, 2i+1] = cos(...)",
    ),
    OpSpec(
        name="positional_encoding_dropout",
        make_case=lambda rng, dtype: _pe_case(rng, dtype, dropout=True),
        numpy_forward_backward=_pair(
            npa.positional_encoding_forward,
            npa.positional_encoding_backward,
            _xs_and("dropout_param"),
        ),
        torch_impl_fn=_pe_torch_impl,
        builtin_fn=_pe_reference,
        conversion="shared dropout multiplier (rand < p) / p, p = KEEP probability",
    ),
]


# ----------------------------------------------------------------------------------------------
# GAN losses
# ----------------------------------------------------------------------------------------------


def _logits(rng, shape, large):
    """Logits ~N(0, 4); ``large``: some ~1e3, where exp(|x|) would overflow. Without it (the
    finite-difference cases) |x| <= 4: the vanilla GAN losses' gradient sigmoid(x) - target
    with target 0 or 1 is ~e^-|x| at large |x|, an entry the centered difference cannot
    resolve next to O(1) ones (|x| = 7: 9e-4 of the largest, rel_error ~1e-7)."""
    x = rng.standard_normal(shape) * 2
    if large:
        x[rng.random(shape) < 0.3] *= 300  # |logit| ~ 1e3: exp(|x|) would overflow
    else:
        x = _redraw_where(rng, x, lambda x: np.abs(x) > 4, lambda n: rng.standard_normal(n) * 2)
    return x


def _redraw_where(rng, x, bad, draw):
    """x with the entries where bad(x) holds redrawn by draw(count) until none holds."""
    x = x.copy()
    while (where := bad(x)).any():
        x[where] = draw(int(where.sum()))
    return x


def _gan_shape(rng):
    N = _size(rng, 1, 6)
    return (N,) if rng.random() < 0.5 else (N, 1)


def _bce_case(rng, dtype, large=True) -> Case:
    """input logits and target probabilities of one shape.

    Without ``large`` (the finite-difference cases) both gradients, (sigmoid(x) - t) / n and
    -x / n, keep every entry >= 0.05 / n: an entry where sigmoid(x) ~ t or x ~ 0 is a zero of
    the gradient, as small as the draw makes it, that the centered difference resolves only to
    ~1e-10 absolute (seen: sigmoid(x) - t = 6e-6 next to 0.05, rel_error 4.7e-7,
    NN_TWINS_EXAMPLES=50 NN_TWINS_SEED=1). The scalar loss's upstream gradient cannot move it.
    """
    shape = _gan_shape(rng)
    x, t = _logits(rng, shape, large), rng.random(shape)
    if not large:
        x = _redraw_where(rng, x, lambda x: np.abs(x) < 0.05, lambda n: rng.uniform(-4, 4, n))
        sigmoid = 1 / (1 + np.exp(-x))
        t = _redraw_where(rng, t, lambda t: np.abs(sigmoid - t) < 0.05, rng.random)
    return _case(dtype, {"input": x, "target": t})


def _two_scores_case(names, large):
    def make(rng, dtype):
        return _case(dtype, {n: _logits(rng, _gan_shape(rng), large) for n in names})

    return make


def _least_squares_case(names):
    """Scores ~N(0, 4) at least 0.05 from 0 and 1, the zeros of the least-squares losses'
    gradients (scores - target) / n: an entry closer to its zero than ~1e-4 of the largest is
    below what a centered difference resolves to rel_error 1e-7, and the scalar loss's upstream
    gradient cannot move it."""

    def make(rng, dtype):
        def near_a_target(s):
            return (np.abs(s) < 0.05) | (np.abs(s - 1) < 0.05)

        def draw(n):
            return rng.standard_normal(n) * 2

        scores = {n: _redraw_where(rng, draw(_gan_shape(rng)), near_a_target, draw) for n in names}
        return _case(dtype, scores)

    return make


def _bce_builtin(x, target):
    return F.binary_cross_entropy_with_logits(x, target)


_GAN_OPS = [
    OpSpec(
        name="bce_loss",
        make_case=_bce_case,
        make_numerical_case=lambda rng, dtype: _bce_case(rng, dtype, large=False),
        numpy_forward_backward=_loss(npg.bce_loss),
        torch_impl_fn=lambda t, c: tf3.BCEWithLogitsFunction.apply(t["input"], t["target"]),
        torch_functional_fn=lambda t, c: tgan.bce_loss(t["input"], t["target"]),
        builtin_fn=lambda t, c: _bce_builtin(t["input"], t["target"]),
        bad_inputs=(
            BadInput(
                "target shape != input shape",
                _set_input("target", lambda t: np.append(t, 0.5)),
                "target must have the same shape as input",
            ),
        ),
        conversion="F.binary_cross_entropy_with_logits(input, target), reduction='mean'",
    ),
    OpSpec(
        name="discriminator_loss",
        make_case=_two_scores_case(("logits_real", "logits_fake"), True),
        make_numerical_case=_two_scores_case(("logits_real", "logits_fake"), False),
        numpy_forward_backward=_loss(npg.discriminator_loss),
        torch_impl_fn=lambda t, c: tgan.discriminator_loss(t["logits_real"], t["logits_fake"]),
        builtin_fn=lambda t, c: (
            _bce_builtin(t["logits_real"], torch.ones_like(t["logits_real"]))
            + _bce_builtin(t["logits_fake"], torch.zeros_like(t["logits_fake"]))
        ),
        bad_inputs=(
            BadInput(
                "empty logits_real",
                _set_input("logits_real", lambda x: x[:0]),
                "logits_real must not be empty",
            ),
        ),
        conversion="bce_with_logits(real, 1) + bce_with_logits(fake, 0)",
    ),
    OpSpec(
        name="generator_loss",
        make_case=_two_scores_case(("logits_fake",), True),
        make_numerical_case=_two_scores_case(("logits_fake",), False),
        numpy_forward_backward=_loss(npg.generator_loss),
        torch_impl_fn=lambda t, c: tgan.generator_loss(t["logits_fake"]),
        builtin_fn=lambda t, c: _bce_builtin(t["logits_fake"], torch.ones_like(t["logits_fake"])),
        conversion="bce_with_logits(fake, 1)",
    ),
    OpSpec(
        name="ls_discriminator_loss",
        make_case=_least_squares_case(("scores_real", "scores_fake")),
        numpy_forward_backward=_loss(npg.ls_discriminator_loss),
        torch_impl_fn=lambda t, c: tgan.ls_discriminator_loss(t["scores_real"], t["scores_fake"]),
        builtin_fn=lambda t, c: (
            0.5 * F.mse_loss(t["scores_real"], torch.ones_like(t["scores_real"]))
            + 0.5 * F.mse_loss(t["scores_fake"], torch.zeros_like(t["scores_fake"]))
        ),
        conversion="0.5 * F.mse_loss(real, 1) + 0.5 * F.mse_loss(fake, 0)",
    ),
    OpSpec(
        name="ls_generator_loss",
        make_case=_least_squares_case(("scores_fake",)),
        numpy_forward_backward=_loss(npg.ls_generator_loss),
        torch_impl_fn=lambda t, c: tgan.ls_generator_loss(t["scores_fake"]),
        builtin_fn=lambda t, c: (
            0.5 * F.mse_loss(t["scores_fake"], torch.ones_like(t["scores_fake"]))
        ),
        conversion="0.5 * F.mse_loss(fake, 1)",
    ),
]


# ----------------------------------------------------------------------------------------------
# SimCLR
# ----------------------------------------------------------------------------------------------


def _rows(rng, shape, numerical=False):
    """Rows of varied norms (0.3 to 5, or _NUMERICAL_SMALLEST_NORM to 5), never near zero."""
    x = rng.standard_normal(shape)
    smallest = _NUMERICAL_SMALLEST_NORM if numerical else 0.3
    norms = rng.uniform(smallest, 5, (*shape[:-1], 1))
    return x / np.linalg.norm(x, axis=-1, keepdims=True) * norms


# The finite-difference cases of the cosine similarities draw rows of norm >= 1. A row of norm
# r makes the k-th derivative of z / ||z|| ~ k! / r^k, so the truncation error of a difference
# rule grows like (h / r)^2 (two-point) or (h / r)^4 (fourth-order) of the gradient's scale: at
# r = 0.3 both reach ~1e-10 of it and fail rel_error 1e-7 on entries ~1e-3 of the largest
# (seen: simclr_sim_positive_pairs, 1.5e-3 next to 0.038, NN_TWINS_EXAMPLES=50
# NN_TWINS_SEED=3, two-point; 1.6e-7 with fourth-order differences at seed 8). Rows down to 0.3
# stay in the twin and builtin cases.
_NUMERICAL_SMALLEST_NORM = 1.0


def _simclr_case(rng, dtype, numerical=False) -> Case:
    N, D = _size(rng, 1, 4), _size(rng, 2, 5)
    tau = float(rng.choice([0.05, 0.5, 1.0, 2.0]))
    inputs = {"out_left": _rows(rng, (N, D), numerical), "out_right": _rows(rng, (N, D), numerical)}
    return _case(dtype, inputs, tau=tau)


def _positive_probabilities(case: Case) -> np.ndarray:
    """(2N,) softmax probability of each anchor's positive among its 2N - 1 others."""
    out = np.concatenate([case.inputs["out_left"], case.inputs["out_right"]]).astype(np.float64)
    u = out / np.linalg.norm(out, axis=1, keepdims=True)
    logits = u @ u.T / case.consts["tau"]
    np.fill_diagonal(logits, -np.inf)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    M = len(out)
    return probs[np.arange(M), (np.arange(M) + M // 2) % M]


def _simclr_loss_case(rng, dtype, numerical=False) -> Case:
    """A SimCLR loss case away from saturation: every anchor's positive has probability
    <= 1 - 1e-3, and the builtin's gradients have no entry below 1e-3 of their largest.

    With tau = 0.05, sim / tau spans 40, so a positive can take all but ~e^-20 of an anchor's
    probability: the gradient is then a cancellation (softmax - 1, projections of nearly
    parallel vectors) ~1e-9 of the terms it is computed from, and two float64 implementations
    agree on it only to ~1e-7 relative (seen: the whole gradient ~6e-9, twins 2e-7 apart,
    NN_TWINS_EXAMPLES=50 NN_TWINS_SEED=4); less extreme draws leave single entries ~1e-6 of
    the largest, below what the twin and finite-difference checks resolve elementwise (seeds 3,
    same count). The loss's upstream gradient is a scalar, so only the case can avoid them.
    """

    def draw():
        while True:
            case = _simclr_case(rng, dtype, numerical)
            # N = 1: an anchor's one other row is its positive, loss and gradient exactly 0
            one_pair = len(case.inputs["out_left"]) == 1
            if one_pair or _positive_probabilities(case).max() <= 1 - 1e-3:
                return case

    return case_without_tiny_gradients(draw, _simclr_builtin, rng)


def _sim_matrix_case(rng, dtype, numerical=False) -> Case:
    shape = (2 * _size(rng, 1, 4), _size(rng, 1, 5))
    return _case(dtype, {"out": _rows(rng, shape, numerical)})


def _sim_case(rng, dtype, numerical=False) -> Case:
    D = _size(rng, 1, 6)
    return _case(dtype, {"z_i": _rows(rng, (D,), numerical), "z_j": _rows(rng, (D,), numerical)})


def _sim_numpy(case, dout):
    z_i, z_j = case.inputs["z_i"], case.inputs["z_j"]
    out = np.asarray(nps.sim(z_i, z_j))
    if dout is None:
        return out, None
    return out, _grads(case, nps.sim_backward(dout, z_i, z_j))


def _backward_from_inputs(forward, backward):
    """numpy_forward_backward for SimCLR's forward(inputs) / backward(dout, *inputs) pairs."""
    forward, backward = _live(forward), _live(backward)

    def run(case, dout):
        out = forward(*case.inputs.values())
        if dout is None:
            return out, None
        return out, _grads(case, backward(dout, *case.inputs.values()))

    return run


def _simclr_builtin(t, c):
    left, right, tau = t["out_left"], t["out_right"], c["tau"]
    N = left.shape[0]
    z = F.normalize(torch.cat([left, right]), dim=1)
    logits = (z @ z.T / tau).masked_fill(
        torch.eye(2 * N, dtype=torch.bool, device=z.device), float("-inf")
    )
    target = (torch.arange(2 * N, device=z.device) + N) % (2 * N)  # row i's positive
    return F.cross_entropy(logits, target)


_SIMCLR_BAD = (
    BadInput(
        "out_right shape != out_left shape",
        _set_input("out_right", lambda r: r[:, :-1]),
        "out_right must have the same shape",
    ),
    BadInput("tau <= 0", _set_const("tau", lambda c: 0.0), "tau (the temperature)"),
    BadInput("all-zero row", _set_input("out_left", lambda x: np.zeros_like(x)), "all-zero row"),
)


def _pos_pairs_builtin(t, c):
    return F.cosine_similarity(t["out_left"], t["out_right"], dim=1)[:, None]


_SIMCLR_OPS = [
    OpSpec(
        name="simclr_sim",
        fourth_order=True,  # see _NUMERICAL_SMALLEST_NORM
        make_case=_sim_case,
        make_numerical_case=lambda rng, dtype: _sim_case(rng, dtype, numerical=True),
        numpy_forward_backward=_sim_numpy,
        torch_impl_fn=lambda t, c: tsim.sim(t["z_i"], t["z_j"]),
        builtin_fn=lambda t, c: F.cosine_similarity(t["z_i"], t["z_j"], dim=0),
        conversion="F.cosine_similarity(z_i, z_j, dim=0)",
    ),
    OpSpec(
        name="simclr_sim_positive_pairs",
        fourth_order=True,  # see _NUMERICAL_SMALLEST_NORM
        make_case=lambda rng, dtype: Case(_simclr_case(rng, dtype).inputs),
        make_numerical_case=lambda rng, dtype: Case(_simclr_case(rng, dtype, True).inputs),
        numpy_forward_backward=_backward_from_inputs(
            nps.sim_positive_pairs, nps.sim_positive_pairs_backward
        ),
        torch_impl_fn=lambda t, c: tf3.PositivePairSimilarityFunction.apply(
            t["out_left"], t["out_right"]
        ),
        torch_functional_fn=lambda t, c: tsim.sim_positive_pairs(t["out_left"], t["out_right"]),
        builtin_fn=_pos_pairs_builtin,
        bad_inputs=_SIMCLR_BAD[:1] + _SIMCLR_BAD[2:],
        conversion="F.cosine_similarity(out_left, out_right, dim=1)[:, None]",
    ),
    OpSpec(
        name="simclr_sim_matrix",
        fourth_order=True,  # see _NUMERICAL_SMALLEST_NORM
        make_case=_sim_matrix_case,
        make_numerical_case=lambda rng, dtype: _sim_matrix_case(rng, dtype, numerical=True),
        numpy_forward_backward=_backward_from_inputs(
            nps.compute_sim_matrix, nps.compute_sim_matrix_backward
        ),
        torch_impl_fn=lambda t, c: tf3.CosineSimilarityMatrixFunction.apply(t["out"]),
        torch_functional_fn=lambda t, c: tsim.compute_sim_matrix(t["out"]),
        builtin_fn=lambda t, c: F.cosine_similarity(t["out"][:, None], t["out"][None], dim=-1),
        conversion="F.cosine_similarity(out[:, None], out[None], dim=-1)",
    ),
    OpSpec(
        name="simclr_loss_vectorized",
        fourth_order=True,  # exp(sim / tau) with tau = 0.05 spreads the gradient over decades
        make_case=_simclr_loss_case,
        make_numerical_case=lambda rng, dtype: _simclr_loss_case(rng, dtype, numerical=True),
        numpy_forward_backward=_loss(nps.simclr_loss_vectorized, _xs_and("tau")),
        torch_impl_fn=lambda t, c: tf3.SimCLRLossFunction.apply(
            t["out_left"], t["out_right"], c["tau"]
        ),
        torch_functional_fn=lambda t, c: tsim.simclr_loss_vectorized(
            t["out_left"], t["out_right"], c["tau"]
        ),
        builtin_fn=_simclr_builtin,
        bad_inputs=_SIMCLR_BAD,
        conversion="F.cross_entropy(normalize(out) normalize(out)^T / tau with -inf diagonal, "
        "target (i + N) mod 2N)",
    ),
    OpSpec(
        name="simclr_loss_naive",
        fourth_order=True,  # exp(sim / tau) with tau = 0.05 spreads the gradient over decades
        make_case=_simclr_loss_case,
        make_numerical_case=lambda rng, dtype: _simclr_loss_case(rng, dtype, numerical=True),
        numpy_forward_backward=_loss(nps.simclr_loss_naive, _xs_and("tau")),
        torch_impl_fn=lambda t, c: tsim.simclr_loss_naive(t["out_left"], t["out_right"], c["tau"]),
        builtin_fn=_simclr_builtin,
        bad_inputs=_SIMCLR_BAD,
        conversion="as simclr_loss_vectorized; the naive loops compose per-pair Functions",
    ),
]


# ----------------------------------------------------------------------------------------------
# Pieces of the transformer layers: layer norm over the last dimension, GELU
# ----------------------------------------------------------------------------------------------


def _last_dim_norm_case(rng, dtype, lead=None, numerical=False) -> Case:
    """x (*lead, D) with D >= 3 values per normalized row (see ops_layers: with 2 the output is
    +-1 whatever x is); lead () is a 1-D x, a single row. The finite-difference cases have
    D >= 4 and rows of standard deviation >= 0.5 (see ops_layers._norm_features and
    _batchnorm_case: a row's spread near eps, or dx confined to a line, defeat the rule)."""
    if lead is None:
        lead = tuple(_size(rng, 1, 3) for _ in range(rng.integers(1, 3)))
    D = _size(rng, 4 if numerical else 3, 6)
    x = rng.standard_normal((*lead, D)) * rng.uniform(0.5, 3) + rng.normal(0, 2)
    if numerical and x.size:
        spread = x.std(axis=-1, keepdims=True)
        x = (x - x.mean(axis=-1, keepdims=True)) / np.where(spread > 0, spread, 1) * rng.uniform(
            0.5, 3
        ) + rng.normal(0, 1)
    inputs = {"x": x, "gamma": rng.normal(1, 0.5, D), "beta": rng.standard_normal(D)}
    return _case(dtype, inputs, eps=float(rng.choice([1e-5, 1e-3])))


def _last_dim_norm_numpy(case: Case, dout):
    """numpy_impl's layernorm (rows of an (N, D) matrix) on x's rows: the same math per token."""
    x, gamma, beta = case.inputs.values()
    D = x.shape[-1]
    rows = x.reshape(int(np.prod(x.shape[:-1])), D)
    out, cache = npl.layernorm_forward(rows, gamma, beta, {"eps": case.consts["eps"]})
    if dout is None:
        return out.reshape(x.shape), None
    dx, dgamma, dbeta = npl.layernorm_backward(dout.reshape(rows.shape), cache)
    return out.reshape(x.shape), {"x": dx.reshape(x.shape), "gamma": dgamma, "beta": dbeta}


def _gelu_case(rng, dtype, shape=None) -> Case:
    if shape is None:
        shape = tuple(_size(rng, 1, 4) for _ in range(rng.integers(1, 4)))
    return _case(dtype, {"x": rng.standard_normal(shape) * 2})


def _gelu_numpy(case, dout):
    out, cache = npa.gelu_forward(case.inputs["x"])
    return out, None if dout is None else {"x": npa.gelu_backward(dout, cache)}


_TRANSFORMER_OPS = [
    OpSpec(
        name="transformer_layernorm",
        make_case=_last_dim_norm_case,
        make_numerical_case=lambda rng, dtype, **kw: _last_dim_norm_case(
            rng, dtype, numerical=True, **kw
        ),
        # a 1-D x: one row, no leading dimension to sum over; no rows at all
        flavors=({}, {"lead": ()}, {"lead": (0, 2)}),
        numpy_forward_backward=_last_dim_norm_numpy,
        torch_impl_fn=lambda t, c: tf3.LayerNormFunction.apply(
            t["x"], t["gamma"], t["beta"], c["eps"]
        ),
        torch_functional_fn=lambda t, c: functional_call(
            ttl.LayerNorm(t["x"].shape[-1], eps=c["eps"]),
            {"gamma": t["gamma"], "beta": t["beta"]},
            (t["x"],),
        ),
        builtin_fn=lambda t, c: F.layer_norm(
            t["x"], t["x"].shape[-1:], t["gamma"], t["beta"], eps=c["eps"]
        ),
        bad_inputs=(
            BadInput(
                "gamma wrong length", _set_input("gamma", lambda g: g[:-1]), "gamma must have shape"
            ),
        ),
        conversion="F.layer_norm(x, x.shape[-1:], gamma, beta, eps); numpy: layernorm_forward "
        "on x.reshape(-1, D)",
    ),
    OpSpec(
        name="gelu",
        make_case=_gelu_case,
        flavors=({}, {"shape": (0, 3)}),
        numpy_forward_backward=_gelu_numpy,
        torch_impl_fn=lambda t, c: tf3.GELUFunction.apply(t["x"]),
        builtin_fn=lambda t, c: F.gelu(t["x"]),
        conversion="F.gelu(x) (approximate='none', the exact x * Phi(x))",
    ),
]


OPS = _RECURRENT_OPS + _TEMPORAL_OPS + _ATTENTION_OPS + _GAN_OPS + _SIMCLR_OPS + _TRANSFORMER_OPS
