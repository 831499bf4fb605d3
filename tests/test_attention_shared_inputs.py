"""Multi-head attention with one tensor passed as several of query, key and value.

Self-attention passes the same tensor three times and the transformer's cross-attention passes
``memory`` as key and value. ``MultiHeadAttentionFunction`` then accumulates the projections'
input gradients into one tensor; these tests compare it with PyTorch's ``nn.MultiheadAttention``
called the same way (float64, the registry's ASSERT_CLOSE tolerances) and with gradcheck, on
random shapes that include one head per feature, a single position and an empty batch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from parity_tests.ops_attention import _mha_builtin
from parity_tests.tolerances import ASSERT_CLOSE, GRADCHECK
from torch_impl import functions as tf3

F64 = ASSERT_CLOSE["float64"]
_WEIGHTS = ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo")

# Which of (query, key, value) are the tensor x and which the tensor m.
_LAYOUTS = {
    "self-attention": ("x", "x", "x"),
    "cross-attention": ("m", "x", "x"),
    "query is key": ("x", "x", "m"),
    "query is value": ("x", "m", "x"),
}


def _case(rng, N, S, E, heads):
    x, m = (torch.tensor(rng.standard_normal((N, S, E)), requires_grad=True) for _ in range(2))
    weights = {
        name: torch.tensor(
            rng.standard_normal((E, E) if name[0] == "W" else E) / np.sqrt(E), requires_grad=True
        )
        for name in _WEIGHTS
    }
    mask = torch.tensor((rng.random((S, S)) < 0.7).astype(np.float64))
    mask[:, 0] = 1  # every query attends to at least one key
    return {"x": x, "m": m}, weights, mask


def _ours(inputs, weights, layout, heads, mask):
    q, k, v = (inputs[name] for name in layout)
    return tf3.MultiHeadAttentionFunction.apply(q, k, v, *weights.values(), heads, mask)


def _builtin(inputs, weights, layout, heads, mask):
    t = dict(zip(("query", "key", "value"), (inputs[name] for name in layout), strict=True))
    return _mha_builtin({**t, **weights}, {"num_heads": heads, "attn_mask": mask})


@pytest.mark.parametrize("layout", list(_LAYOUTS))
@pytest.mark.parametrize(
    ("N", "S", "E", "heads"),
    [(3, 5, 8, 2), (2, 4, 6, 6), (1, 1, 4, 1), (0, 3, 4, 2), (4, 7, 12, 3)],
)
def test_shared_input_matches_builtin(layout, N, S, E, heads):
    rng = np.random.default_rng([N, S, E, heads, list(_LAYOUTS).index(layout)])
    inputs, weights, mask = _case(rng, N, S, E, heads)
    names = _LAYOUTS[layout]
    leaves = [inputs[n] for n in ("x", "m") if n in names] + list(weights.values())
    dout = torch.tensor(rng.standard_normal((N, S, E)))
    ours = _ours(inputs, weights, names, heads, mask)
    ref = _builtin(inputs, weights, names, heads, mask)
    torch.testing.assert_close(ours, ref, **F64)
    g_ours = torch.autograd.grad(ours, leaves, dout)
    g_ref = torch.autograd.grad(ref, leaves, dout)
    for got, want in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(got, want, **F64)
    if N and S > 1:  # (one key: the softmax is constant and a query's gradient exactly zero)
        for got in g_ours[: len(leaves) - len(weights)]:
            assert got.abs().max() > 0  # each input's gradient is really there


@pytest.mark.parametrize("layout", list(_LAYOUTS))
def test_shared_input_gradcheck(layout):
    rng = np.random.default_rng(list(_LAYOUTS).index(layout))
    inputs, weights, mask = _case(rng, 2, 3, 4, 2)
    names = _LAYOUTS[layout]
    used = [n for n in ("x", "m") if n in names]

    def fn(*tensors):
        given = dict(zip(used, tensors[: len(used)], strict=True))
        w = dict(zip(_WEIGHTS, tensors[len(used) :], strict=True))
        return _ours(given, w, names, 2, mask)

    leaves = [inputs[n] for n in used] + list(weights.values())
    assert torch.autograd.gradcheck(fn, leaves, **GRADCHECK)
