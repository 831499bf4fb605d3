"""Benchmark cases of assignment 3's sequence ops: vanilla RNN, LSTM, scaled dot-product
attention and multi-head attention."""

from __future__ import annotations

import math

from benchmarks.op_case import (
    BenchmarkCase,
    grad_leaves,
    numpy_fwd_bwd,
    random_arrays,
    speed_targets,
    torch_fwd_bwd,
)


def _recurrent_make(N, T, D, H, lstm):
    """``make`` of the RNN (``lstm`` False) or LSTM case; the builtin is nn.RNN / nn.LSTM
    with CS231n's weights copied in."""
    G = 4 * H if lstm else H

    def make(backend):
        x, h0, Wx, Wh, b, dh = random_arrays(9, (N, T, D), (N, H), (D, G), (H, G), (G,), (N, T, H))
        Wx *= 1.0 / math.sqrt(D)
        Wh *= 1.0 / math.sqrt(H)
        if backend == "numpy":
            from numpy_impl import rnn_layers as rl

            f, bwd = (
                (rl.lstm_forward, rl.lstm_backward) if lstm else (rl.rnn_forward, rl.rnn_backward)
            )
            return numpy_fwd_bwd(lambda: f(x, h0, Wx, Wh, b), bwd, dh)
        import torch

        xt, h0t = grad_leaves(x, h0)
        if backend == "torch":
            from torch_impl import rnn_layers as trl

            Wxt, Wht, bt = grad_leaves(Wx, Wh, b)
            Fn = trl.LSTMFunction if lstm else trl.RNNFunction
            return torch_fwd_bwd(
                lambda: Fn.apply(xt, h0t, Wxt, Wht, bt), (xt, h0t, Wxt, Wht, bt), torch.tensor(dh)
            )
        # nn.RNN/nn.LSTM keep (G, D) weights, a second bias, and the LSTM gates in the order
        # i, f, g, o where CS231n stacks i, f, o, g.
        perm = (
            list(range(0, 2 * H)) + list(range(3 * H, 4 * H)) + list(range(2 * H, 3 * H))
            if lstm
            else list(range(H))
        )
        mod = (torch.nn.LSTM if lstm else torch.nn.RNN)(D, H, batch_first=True)
        with torch.no_grad():
            mod.weight_ih_l0.copy_(torch.tensor(Wx[:, perm].T))
            mod.weight_hh_l0.copy_(torch.tensor(Wh[:, perm].T))
            mod.bias_ih_l0.copy_(torch.tensor(b[perm]))
            mod.bias_hh_l0.zero_()
        c0 = torch.zeros(1, N, H)  # CS231n's LSTM starts from a zero cell state
        if lstm:
            fwd = lambda: mod(xt, (h0t[None], c0))[0]
        else:
            fwd = lambda: mod(xt, h0t[None])[0]
        return torch_fwd_bwd(fwd, (xt, h0t, *mod.parameters()), torch.tensor(dh))

    return make


def rnn_case(N, T, D, H, group):
    """Vanilla RNN over x (N, T, D) with hidden size H, from h0 (N, H)."""
    return BenchmarkCase(
        "rnn",
        f"N={N} T={T} D={D} H={H}",
        group,
        _recurrent_make(N, T, D, H, False),
        targets=speed_targets("rnn", group),
    )


def lstm_case(N, T, D, H, group):
    """LSTM over x (N, T, D) with hidden size H, from h0 (N, H) and a zero cell."""
    return BenchmarkCase(
        "lstm",
        f"N={N} T={T} D={D} H={H}",
        group,
        _recurrent_make(N, T, D, H, True),
        targets=speed_targets("lstm", group),
    )


def attention_case(N, heads, S, d, group):
    """Scaled dot-product attention on (N, heads, S, d) queries, keys and values."""

    def make(backend):
        q, k, v, dout = random_arrays(10, *[(N, heads, S, d)] * 4)
        if backend == "numpy":
            from numpy_impl import attention as at

            return numpy_fwd_bwd(
                lambda: at.scaled_dot_product_attention_forward(q, k, v),
                at.scaled_dot_product_attention_backward,
                dout,
            )
        import torch
        import torch.nn.functional as tF

        qt, kt, vt = grad_leaves(q, k, v)
        if backend == "torch":
            from torch_impl.transformer_layers import ScaledDotProductAttentionFunction as Fn

            fwd = lambda: Fn.apply(qt, kt, vt)
        else:
            fwd = lambda: tF.scaled_dot_product_attention(qt, kt, vt)
        return torch_fwd_bwd(fwd, (qt, kt, vt), torch.tensor(dout))

    return BenchmarkCase(
        "attention",
        f"N={N} heads={heads} S={S} d={d}",
        group,
        make,
        flops=3 * 2 * 2.0 * N * heads * S * S * d,
        targets=speed_targets("attention", group),
    )


def mha_case(N, S, E, heads, group):
    """CS231n's MultiHeadAttention (4 projections + attention), query/key/value distinct."""

    def make(backend):
        arrs = random_arrays(11, (N, S, E), (N, S, E), (N, S, E), (N, S, E), *[(E, E), (E,)] * 4)
        query, key, value, dout = arrs[:4]
        params = arrs[4:]
        for i in range(0, 8, 2):
            params[i] *= 1.0 / math.sqrt(E)
        if backend == "numpy":
            from numpy_impl import attention as at

            return numpy_fwd_bwd(
                lambda: at.multihead_attention_forward(query, key, value, *params, heads),
                at.multihead_attention_backward,
                dout,
            )
        import torch
        import torch.nn.functional as tF

        leaves = grad_leaves(query, key, value, *params)
        qt, kt, vt, Wq, bq, Wk, bk, Wv, bv, Wo, bo = leaves
        if backend == "torch":
            from torch_impl.transformer_layers import MultiHeadAttentionFunction as Fn

            fwd = lambda: Fn.apply(qt, kt, vt, Wq, bq, Wk, bk, Wv, bv, Wo, bo, heads)
        else:

            def fwd():
                # The functional form of nn.MultiheadAttention: (L, N, E) inputs, nn.Linear
                # (out, in) weights, i.e. the transposes of CS231n's.
                out, _ = tF.multi_head_attention_forward(
                    qt.transpose(0, 1),
                    kt.transpose(0, 1),
                    vt.transpose(0, 1),
                    E,
                    heads,
                    None,
                    torch.cat([bq, bk, bv]),
                    None,
                    None,
                    False,
                    0.0,
                    Wo.t(),
                    bo,
                    training=True,
                    need_weights=False,
                    use_separate_proj_weight=True,
                    q_proj_weight=Wq.t(),
                    k_proj_weight=Wk.t(),
                    v_proj_weight=Wv.t(),
                )
                return out.transpose(0, 1)

        return torch_fwd_bwd(fwd, leaves, torch.tensor(dout))

    return BenchmarkCase(
        "multihead_attention",
        f"N={N} S={S} E={E} heads={heads}",
        group,
        make,
        targets=speed_targets("multihead_attention", group),
    )
