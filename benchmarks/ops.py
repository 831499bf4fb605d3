"""Forward+backward time of every hot op: NumPy twin vs torch twin vs PyTorch's builtin.

    python benchmarks/ops.py                 # full run: the CNN's real shapes and batch
    python benchmarks/ops.py --quick --json  # < 60 s; one JSON object per line
    python benchmarks/ops.py --profile       # + profile of the slowest NumPy op, on every backend

Backends (the same float32 inputs for all three, drawn from one seed):

- ``numpy``: ``numpy_impl`` (the fast variants: ``fast_layers.conv_*_fast`` and
  ``max_pool_*_fast``, ``batchnorm_backward_alt``), called directly on NumPy arrays.
- ``torch``: ``torch_impl``'s autograd Functions (hand-written backward).
- ``builtin``: PyTorch's own kernels (``F.conv2d``, ``F.batch_norm``, ``nn.LSTM``, ...).

One sample of a torch backend is ``out = op(leaves); out.backward(dout)`` with every gradient
requested; one sample of numpy is ``backward(dout, forward(...)[1])``. The backends of a case
are timed round-robin (the order rotated each round) and the median of the rounds is reported,
so load on a shared machine hits them alike and the RATIOS stay meaningful when absolute times
do not. Conv rows also give the achieved GFLOP/s (forward + both backward GEMMs, 3 x 2*N*F*C*k*k*
H'*W') and its fraction of the float32 matmul rate of the same library (NumPy's BLAS for numpy,
torch's for torch and builtin; the fastest sample of a square GEMM measured in this run).

The conv, pool, batchnorm and ReLU shapes are read from train.py's default model (its recipe's
batch size and widths) by running it once through a recording op set, so they follow the model
when it changes.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _common as C  # noqa: E402

# Speed targets (ratio to the builtin, forward+backward). The numpy conv target applies at
# the CNN's shapes; every torch_impl op has the 1.5x target.
NUMPY_TARGETS = {"conv@cnn": 2.5, "max_pool": 2.0, "batchnorm": 2.0, "spatial_batchnorm": 2.0}
TORCH_TARGET = 1.5

# Shapes used when train.py's model cannot be read (a fixed list, batch 256).
FALLBACK_CNN = {
    "batch": 256,
    "conv": [
        ((3, 32, 32), 32, 3, 1, 1),
        ((32, 32, 32), 64, 3, 1, 1),
        ((64, 16, 16), 128, 3, 1, 1),
        ((128, 8, 8), 128, 3, 1, 1),
    ],
    "pool": [((32, 32, 32), 2, 2)],
    "bn": [(64, 32, 32)],
}


@dataclass
class Case:
    """One op at one shape. ``make(backend)`` returns a zero-argument fwd+bwd closure."""

    bench: str
    case: str
    group: str  # where the shape comes from: cnn | three-layer | cs231n | a3
    make: object
    flops: float | None = None
    count: int = 1  # how many times the CNN runs this op at this shape per step
    targets: dict = field(default_factory=dict)
    gemms: tuple = ()  # conv: the (m, k, n) of the three GEMMs an im2col conv does


# ----------------------------------------------------------------------------------------------
# Inputs and closures
# ----------------------------------------------------------------------------------------------


def _arrays(seed, *shapes, scale=1.0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s, dtype=np.float32) * np.float32(scale)) for s in shapes]


def _leaves(*arrays):
    import torch

    return [torch.tensor(a).requires_grad_() for a in arrays]


def _torch_step(forward, leaves, dout=None):
    """Closure: clear the leaves' grads, run forward, backpropagate dout (None: scalar loss)."""

    def run():
        for t in leaves:
            t.grad = None
        out = forward()
        out.backward(dout)

    return run


def _numpy_step(forward, backward, dout):
    return lambda: backward(dout, forward()[1])


def _targets(bench, group):
    t = {"torch": TORCH_TARGET}
    key = "conv@cnn" if (bench == "conv" and group == "cnn") else bench
    if key in NUMPY_TARGETS:
        t["numpy"] = NUMPY_TARGETS[key]
    return t


# ----------------------------------------------------------------------------------------------
# The ops
# ----------------------------------------------------------------------------------------------


def conv_case(N, Cin, H, W, F, k, stride, pad, group, count=1):
    Ho, Wo = 1 + (H + 2 * pad - k) // stride, 1 + (W + 2 * pad - k) // stride
    fwd_flops = 2.0 * N * F * Cin * k * k * Ho * Wo

    def make(backend):
        x, w, b, dout = _arrays(1, (N, Cin, H, W), (F, Cin, k, k), (F,), (N, F, Ho, Wo))
        w *= 1.0 / math.sqrt(Cin * k * k)
        if backend == "numpy":
            from numpy_impl import fast_layers as fl

            cp = {"stride": stride, "pad": pad}
            return _numpy_step(
                lambda: fl.conv_forward_fast(x, w, b, cp), fl.conv_backward_fast, dout
            )
        import torch
        import torch.nn.functional as tF

        xt, wt, bt = _leaves(x, w, b)
        if backend == "torch":
            from torch_impl.functions import Conv2dFunction

            fwd = lambda: Conv2dFunction.apply(xt, wt, bt, stride, pad)
        else:
            fwd = lambda: tF.conv2d(xt, wt, bt, stride=stride, padding=pad)
        return _torch_step(fwd, (xt, wt, bt), torch.tensor(dout))

    name = f"N={N} {Cin}->{F} {H}x{W} k{k} s{stride} p{pad}"
    K, M = Cin * k * k, N * Ho * Wo
    # im2col: out = W (F, K) @ cols (K, M); dW = dout (F, M) @ cols^T (M, K);
    # dcols = W^T (K, F) @ dout (F, M).
    gemms = ((F, K, M), (F, M, K), (K, F, M))
    return Case(
        "conv",
        name,
        group,
        make,
        flops=3 * fwd_flops,
        count=count,
        targets=_targets("conv", group),
        gemms=gemms,
    )


def max_pool_case(N, Cch, H, W, size, stride, group, count=1):
    Ho, Wo = 1 + (H - size) // stride, 1 + (W - size) // stride

    def make(backend):
        x, dout = _arrays(2, (N, Cch, H, W), (N, Cch, Ho, Wo))
        if backend == "numpy":
            from numpy_impl import fast_layers as fl

            pp = {"pool_height": size, "pool_width": size, "stride": stride}
            return _numpy_step(
                lambda: fl.max_pool_forward_fast(x, pp), fl.max_pool_backward_fast, dout
            )
        import torch
        import torch.nn.functional as tF

        (xt,) = _leaves(x)
        if backend == "torch":
            from torch_impl.functions import MaxPool2dFunction

            fwd = lambda: MaxPool2dFunction.apply(xt, size, size, stride)
        else:
            fwd = lambda: tF.max_pool2d(xt, size, stride)
        return _torch_step(fwd, (xt,), torch.tensor(dout))

    return Case(
        "max_pool",
        f"N={N} C={Cch} {H}x{W} {size}x{size} s{stride}",
        group,
        make,
        count=count,
        targets=_targets("max_pool", group),
    )


def relu_case(shape, group, count=1):
    def make(backend):
        x, dout = _arrays(3, shape, shape)
        if backend == "numpy":
            from numpy_impl import layers

            return _numpy_step(lambda: layers.relu_forward(x), layers.relu_backward, dout)
        import torch
        import torch.nn.functional as tF

        (xt,) = _leaves(x)
        if backend == "torch":
            from torch_impl.functions import ReLUFunction

            fwd = lambda: ReLUFunction.apply(xt)
        else:
            fwd = lambda: tF.relu(xt)
        return _torch_step(fwd, (xt,), torch.tensor(dout))

    return Case(
        "relu",
        "x" + "x".join(map(str, shape)),
        group,
        make,
        count=count,
        targets=_targets("relu", group),
    )


def _bn_make(shape, spatial):
    """Batchnorm in training mode: x (N, D) per column, or (N, C, H, W) per channel."""
    D = shape[1]

    def make(backend):
        x, gamma, beta, dout = _arrays(4, shape, (D,), (D,), shape)
        gamma += 1.0
        if backend == "numpy":
            import numpy as np

            from numpy_impl import layers

            def fwd():
                bn_param = {
                    "mode": "train",
                    "running_mean": np.zeros(D, np.float32),
                    "running_var": np.ones(D, np.float32),
                }
                f = layers.spatial_batchnorm_forward if spatial else layers.batchnorm_forward
                return f(x, gamma, beta, bn_param)

            bwd = layers.spatial_batchnorm_backward if spatial else layers.batchnorm_backward_alt
            return _numpy_step(fwd, bwd, dout)
        import torch
        import torch.nn.functional as tF

        xt, gt, bt = _leaves(x, gamma, beta)
        rm, rv = torch.zeros(D), torch.ones(D)
        if backend == "torch":
            from torch_impl import functions as fn

            Fn = fn.BatchNormFunction
            fwd = lambda: Fn.apply(xt, gt, bt, rm, rv, True, 0.9, 1e-5)
        else:
            # PyTorch's momentum weighs the batch statistic: CS231n's 0.9 is its 0.1.
            fwd = lambda: tF.batch_norm(xt, rm, rv, gt, bt, True, 0.1, 1e-5)
        return _torch_step(fwd, (xt, gt, bt), torch.tensor(dout))

    return make


def batchnorm_case(N, D, group):
    return Case(
        "batchnorm",
        f"N={N} D={D}",
        group,
        _bn_make((N, D), False),
        targets=_targets("batchnorm", group),
    )


def spatial_batchnorm_case(N, Cch, H, W, group, count=1):
    return Case(
        "spatial_batchnorm",
        f"N={N} C={Cch} {H}x{W}",
        group,
        _bn_make((N, Cch, H, W), True),
        count=count,
        targets=_targets("spatial_batchnorm", group),
    )


def layernorm_case(N, D, group):
    def make(backend):
        x, gamma, beta, dout = _arrays(5, (N, D), (D,), (D,), (N, D))
        gamma += 1.0
        if backend == "numpy":
            from numpy_impl import layers

            return _numpy_step(
                lambda: layers.layernorm_forward(x, gamma, beta, {}),
                layers.layernorm_backward,
                dout,
            )
        import torch
        import torch.nn.functional as tF

        xt, gt, bt = _leaves(x, gamma, beta)
        if backend == "torch":
            from torch_impl.functions import LayerNormFunction

            fwd = lambda: LayerNormFunction.apply(xt, gt, bt, 1e-5)
        else:
            fwd = lambda: tF.layer_norm(xt, (D,), gt, bt, 1e-5)
        return _torch_step(fwd, (xt, gt, bt), torch.tensor(dout))

    return Case("layernorm", f"N={N} D={D}", group, make, targets=_targets("layernorm", group))


def groupnorm_case(N, Cch, H, W, G, group):
    def make(backend):
        x, gamma, beta, dout = _arrays(
            6, (N, Cch, H, W), (1, Cch, 1, 1), (1, Cch, 1, 1), (N, Cch, H, W)
        )
        gamma += 1.0
        if backend == "numpy":
            from numpy_impl import layers

            return _numpy_step(
                lambda: layers.spatial_groupnorm_forward(x, gamma, beta, G, {}),
                layers.spatial_groupnorm_backward,
                dout,
            )
        import torch
        import torch.nn.functional as tF

        if backend == "torch":
            from torch_impl.functions import SpatialGroupNormFunction

            xt, gt, bt = _leaves(x, gamma, beta)
            fwd = lambda: SpatialGroupNormFunction.apply(xt, gt, bt, G, 1e-5)
        else:
            # F.group_norm takes (C,)-shaped weight and bias; same values.
            xt, gt, bt = _leaves(x, gamma.reshape(Cch), beta.reshape(Cch))
            fwd = lambda: tF.group_norm(xt, G, gt, bt, 1e-5)
        return _torch_step(fwd, (xt, gt, bt), torch.tensor(dout))

    return Case(
        "groupnorm",
        f"N={N} C={Cch} {H}x{W} G={G}",
        group,
        make,
        targets=_targets("groupnorm", group),
    )


def affine_case(N, D, M, group):
    def make(backend):
        x, w, b, dout = _arrays(7, (N, D), (D, M), (M,), (N, M))
        w *= 1.0 / math.sqrt(D)
        if backend == "numpy":
            from numpy_impl import layers

            return _numpy_step(lambda: layers.affine_forward(x, w, b), layers.affine_backward, dout)
        import torch
        import torch.nn.functional as tF

        xt, wt, bt = _leaves(x, w, b)
        if backend == "torch":
            from torch_impl.functions import AffineFunction

            fwd = lambda: AffineFunction.apply(xt, wt, bt)
        else:
            # w is CS231n's (D, M); nn.Linear's weight is its transpose.
            fwd = lambda: tF.linear(xt, wt.t(), bt)
        return _torch_step(fwd, (xt, wt, bt), torch.tensor(dout))

    return Case(
        "affine",
        f"N={N} {D}->{M}",
        group,
        make,
        flops=3 * 2.0 * N * D * M,
        targets=_targets("affine", group),
    )


def softmax_loss_case(N, Ccls, group):
    def make(backend):
        import numpy as np

        (x,) = _arrays(8, (N, Ccls), scale=3.0)
        y = np.random.default_rng(8).integers(0, Ccls, N)
        if backend == "numpy":
            from numpy_impl import layers

            return lambda: layers.softmax_loss(x, y)  # returns (loss, dx): fwd+bwd in one
        import torch
        import torch.nn.functional as tF

        (xt,) = _leaves(x)
        yt = torch.tensor(y)
        if backend == "torch":
            from torch_impl.functions import SoftmaxLossFunction

            fwd = lambda: SoftmaxLossFunction.apply(xt, yt)
        else:
            fwd = lambda: tF.cross_entropy(xt, yt)
        return _torch_step(fwd, (xt,))

    return Case(
        "softmax_loss", f"N={N} C={Ccls}", group, make, targets=_targets("softmax_loss", group)
    )


def _recurrent_make(N, T, D, H, lstm):
    G = 4 * H if lstm else H

    def make(backend):
        x, h0, Wx, Wh, b, dh = _arrays(9, (N, T, D), (N, H), (D, G), (H, G), (G,), (N, T, H))
        Wx *= 1.0 / math.sqrt(D)
        Wh *= 1.0 / math.sqrt(H)
        if backend == "numpy":
            from numpy_impl import rnn_layers as rl

            f, bwd = (
                (rl.lstm_forward, rl.lstm_backward) if lstm else (rl.rnn_forward, rl.rnn_backward)
            )
            return _numpy_step(lambda: f(x, h0, Wx, Wh, b), bwd, dh)
        import torch

        xt, h0t = _leaves(x, h0)
        if backend == "torch":
            from torch_impl import rnn_layers as trl

            Wxt, Wht, bt = _leaves(Wx, Wh, b)
            Fn = trl.LSTMFunction if lstm else trl.RNNFunction
            return _torch_step(
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
        return _torch_step(fwd, (xt, h0t, *mod.parameters()), torch.tensor(dh))

    return make


def rnn_case(N, T, D, H, group):
    return Case(
        "rnn",
        f"N={N} T={T} D={D} H={H}",
        group,
        _recurrent_make(N, T, D, H, False),
        targets=_targets("rnn", group),
    )


def lstm_case(N, T, D, H, group):
    return Case(
        "lstm",
        f"N={N} T={T} D={D} H={H}",
        group,
        _recurrent_make(N, T, D, H, True),
        targets=_targets("lstm", group),
    )


def attention_case(N, heads, S, d, group):
    """Scaled dot-product attention on (N, heads, S, d) queries, keys and values."""

    def make(backend):
        q, k, v, dout = _arrays(10, *[(N, heads, S, d)] * 4)
        if backend == "numpy":
            from numpy_impl import attention as at

            return _numpy_step(
                lambda: at.scaled_dot_product_attention_forward(q, k, v),
                at.scaled_dot_product_attention_backward,
                dout,
            )
        import torch
        import torch.nn.functional as tF

        qt, kt, vt = _leaves(q, k, v)
        if backend == "torch":
            from torch_impl.transformer_layers import ScaledDotProductAttentionFunction as Fn

            fwd = lambda: Fn.apply(qt, kt, vt)
        else:
            fwd = lambda: tF.scaled_dot_product_attention(qt, kt, vt)
        return _torch_step(fwd, (qt, kt, vt), torch.tensor(dout))

    return Case(
        "attention",
        f"N={N} heads={heads} S={S} d={d}",
        group,
        make,
        flops=3 * 2 * 2.0 * N * heads * S * S * d,
        targets=_targets("attention", group),
    )


def mha_case(N, S, E, heads, group):
    """CS231n's MultiHeadAttention (4 projections + attention), query/key/value distinct."""

    def make(backend):
        arrs = _arrays(11, (N, S, E), (N, S, E), (N, S, E), (N, S, E), *[(E, E), (E,)] * 4)
        query, key, value, dout = arrs[:4]
        params = arrs[4:]
        for i in range(0, 8, 2):
            params[i] *= 1.0 / math.sqrt(E)
        if backend == "numpy":
            from numpy_impl import attention as at

            return _numpy_step(
                lambda: at.multihead_attention_forward(query, key, value, *params, heads),
                at.multihead_attention_backward,
                dout,
            )
        import torch
        import torch.nn.functional as tF

        leaves = _leaves(query, key, value, *params)
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

        return _torch_step(fwd, leaves, torch.tensor(dout))

    return Case(
        "multihead_attention",
        f"N={N} S={S} E={E} heads={heads}",
        group,
        make,
        targets=_targets("multihead_attention", group),
    )


def matmul_case(n):
    """The machine's float32 GEMM rate through each library (n x n @ n x n, out= preallocated).
    torch_impl's matmuls are torch's, so 'builtin' stands for both torch backends."""

    def make(backend):
        import numpy as np

        a, b = _arrays(12, (n, n), (n, n))
        if backend == "numpy":
            c = np.empty((n, n), np.float32)
            return lambda: np.matmul(a, b, out=c)
        import torch

        at, bt, ct = torch.tensor(a), torch.tensor(b), torch.empty(n, n)
        return lambda: torch.mm(at, bt, out=ct)

    return Case("matmul", f"{n}x{n} @ {n}x{n}", "machine", make, flops=2.0 * n**3)


# ----------------------------------------------------------------------------------------------
# The CNN's shapes
# ----------------------------------------------------------------------------------------------


def cnn_shapes(batch=None, smoke=False):
    """Shapes of every conv / max pool / batchnorm / ReLU of train.py's default model.

    The model (its recipe's widths and stem) runs once on a batch of 2 through an op set that
    records each call's input shape; the batch is then replaced by ``batch`` (default: the
    recipe's). Returns (batch, {op: {signature: count}}, source description).
    """
    try:
        import torch

        from cifar_training.backends import BuiltinOps
        from cifar_training.models import build_net

        recipe = C.train_recipe("default", cheap=smoke)
        widths = (4, 8, 8) if smoke else recipe["widths"]
        net = build_net("default", widths=widths, stem=recipe["stem"], seed=0)
    except Exception as e:  # noqa: BLE001 - fall back to the fixed shapes, and say so
        b = batch or FALLBACK_CNN["batch"]
        rec = {"conv": {}, "pool": {}, "bn": {}, "relu": {}}
        for (c, h, w), f, k, s, p in FALLBACK_CNN["conv"]:
            rec["conv"][(c, h, w, f, k, s, p)] = 1
        for (c, h, w), k, s in FALLBACK_CNN["pool"]:
            rec["pool"][(c, h, w, k, s)] = 1
        for c, h, w in FALLBACK_CNN["bn"]:
            rec["bn"][(c, h, w)] = 1
        return b, rec, f"fallback shapes (train.py's model unavailable: {e!r})"

    rec = {"conv": {}, "pool": {}, "bn": {}, "relu": {}}

    def bump(op, key):
        rec[op][key] = rec[op].get(key, 0) + 1

    class Recorder(BuiltinOps):
        def conv(self, x, w, b, stride, pad):
            F_, _, k, _ = w.shape
            bump("conv", (*x.shape[1:], F_, k, stride, pad))
            return super().conv(x, w, b, stride, pad)

        def max_pool(self, x, size, stride):
            bump("pool", (*x.shape[1:], size, stride))
            return super().max_pool(x, size, stride)

        def spatial_batchnorm(self, x, *args):
            bump("bn", tuple(x.shape[1:]))
            return super().spatial_batchnorm(x, *args)

        def relu(self, x):
            bump("relu", tuple(x.shape[1:]))
            return super().relu(x)

    with torch.no_grad():
        net.train()
        net(torch.zeros(2, 3, 32, 32), Recorder())
    b = batch or recipe["batch_size"]
    src = (
        f"train.py's default model (widths {tuple(widths)}, stem {recipe['stem']}, "
        f"recipe batch {recipe['batch_size']})"
    )
    return b, rec, src


def build_cases(args) -> tuple[list[Case], str]:
    smoke, quick = args.smoke, args.quick
    batch = args.batch_size or (2 if smoke else (128 if quick else None))
    N, rec, src = cnn_shapes(batch, smoke)
    cases = [matmul_case(128 if smoke else (1024 if quick else 2048))]
    for (c, h, w, f, k, s, p), n in rec["conv"].items():
        cases.append(conv_case(N, c, h, w, f, k, s, p, "cnn", n))
    # CS231n's ThreeLayerConvNet conv (notebook batch 50), and its pool and first affine.
    n3 = 2 if smoke else 50
    f3 = 4 if smoke else 32
    cases.append(conv_case(n3, 3, 32, 32, f3, 7, 1, 3, "three-layer"))
    for (c, h, w, k, s), n in rec["pool"].items():
        cases.append(max_pool_case(N, c, h, w, k, s, "cnn", n))
    cases.append(max_pool_case(n3, f3, 32, 32, 2, 2, "three-layer"))
    for (c, h, w), n in rec["bn"].items():
        cases.append(spatial_batchnorm_case(N, c, h, w, "cnn", n))
    if rec["relu"]:
        # The largest ReLU of the model (ReLU is memory-bound: one shape tells the story).
        shape = max(rec["relu"], key=lambda s: math.prod(s))
        cases.append(relu_case((N, *shape), "cnn", rec["relu"][shape]))
    # (N, D) layers at CS231n FullyConnectedNet-like sizes.
    nd = (4, 16) if smoke else (256, 1024)
    cases.append(batchnorm_case(*nd, "cs231n"))
    cases.append(layernorm_case(*nd, "cs231n"))
    if rec["bn"]:
        c, h, w = sorted(rec["bn"], key=lambda s: -math.prod(s))[0]
        cases.append(groupnorm_case(N, c, h, w, max(1, c // 8), "cnn"))
    cases.append(affine_case(n3, f3 * 16 * 16, 4 if smoke else 100, "three-layer"))
    cases.append(affine_case(*((4, 16, 8) if smoke else (256, 3072, 512)), "cs231n"))
    cases.append(softmax_loss_case(N, 10, "cnn"))
    cases.append(softmax_loss_case(*((4, 20) if smoke else (256, 1000)), "cs231n"))
    # Assignment 3 (captioning-sized).
    r = (2, 3, 4, 5) if smoke else (25, 16, 256, 512)  # CS231n's captioning batch and sizes
    cases.append(rnn_case(*r, "a3"))
    cases.append(lstm_case(*r, "a3"))
    cases.append(attention_case(*((2, 2, 4, 4) if smoke else (32, 4, 64, 64)), "a3"))
    cases.append(mha_case(*((2, 4, 8, 2) if smoke else (32, 64, 256, 4)), "a3"))
    if args.only:
        wanted = [s.strip() for s in args.only.split(",")]
        cases = [
            c
            for c in cases
            if c.bench == "matmul" or any(w in f"{c.bench} {c.case}" for w in wanted)
        ]
    return cases, f"{src}; benchmark batch N={N}"


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------


def run_case(case: Case, backends, warmup, repeats, min_time) -> list[dict]:
    fns, rows = {}, []
    for b in backends:
        if case.bench == "matmul" and b == "torch":
            continue  # torch_impl's GEMM is torch's: the builtin row measures it
        try:
            fns[b] = case.make(b)
        except (ImportError, AttributeError) as e:
            rows.append(
                {
                    "bench": case.bench,
                    "case": case.case,
                    "backend": b,
                    "ms": None,
                    "ratio_to_builtin": None,
                    "group": case.group,
                    "error": f"unavailable: {e}",
                }
            )
    stats, errors = C.time_interleaved(fns, warmup, repeats, min_time)
    for b, err in errors.items():
        rows.append(
            {
                "bench": case.bench,
                "case": case.case,
                "backend": b,
                "ms": None,
                "ratio_to_builtin": None,
                "group": case.group,
                "error": err,
            }
        )
    for b, s in stats.items():
        row = {
            "bench": case.bench,
            "case": case.case,
            "backend": b,
            "ms": C.sig(s["median"] * 1e3),
            "ratio_to_builtin": None,
            "group": case.group,
            "ms_min": C.sig(s["min"] * 1e3),
            "ms_max": C.sig(s["max"] * 1e3),
            "calls_per_sample": s["inner"],
        }
        if case.flops:
            row["gflops"] = C.sig(case.flops / s["median"] / 1e9)
        if case.count != 1:
            row["count_in_model"] = case.count
        rows.append(row)
    order = {b: i for i, b in enumerate(C.BACKENDS)}
    rows.sort(key=lambda r: order[r["backend"]])
    return rows


def finish_rows(rows: list[dict], cases: list[Case]) -> list[dict]:
    """Ratios, matmul fractions, target verdicts, and the CNN-total conv rows."""
    C.add_ratios(rows)
    # The machine's GEMM rate is a peak: taken from the fastest matmul sample, not the median.
    rate = {}
    for r in rows:
        if r["bench"] == "matmul" and r.get("ms"):
            r["gflops_peak"] = C.sig(r["gflops"] * r["ms"] / r["ms_min"])
            rate[r["backend"]] = r["gflops_peak"]
    rate["torch"] = rate.get("builtin")
    targets = {(c.bench, c.case): c.targets for c in cases}
    for r in rows:
        if r["bench"] == "conv" and r.get("gflops") and rate.get(r["backend"]):
            r["matmul_fraction"] = C.sig(r["gflops"] / rate[r["backend"]])
        t = targets.get((r["bench"], r["case"]), {}).get(r["backend"])
        if t is not None and r["ratio_to_builtin"] is not None:
            r["target"], r["meets_target"] = t, r["ratio_to_builtin"] <= t
    # One step's worth of the CNN's convs: each shape's time times its count in the model.
    cnn = {(c.bench, c.case): c.count for c in cases if c.bench == "conv" and c.group == "cnn"}
    totals = {}
    for r in rows:
        if (r["bench"], r["case"]) in cnn and r.get("ms"):
            totals.setdefault(r["backend"], []).append(r["ms"] * cnn[(r["bench"], r["case"])])
    complete = {b: v for b, v in totals.items() if len(v) == len(cnn)}
    if "builtin" in complete:
        flops = sum(c.flops * c.count for c in cases if (c.bench, c.case) in cnn)
        extra = []
        for b, v in complete.items():
            ms = sum(v)
            row = {
                "bench": "conv_total",
                "case": f"all {len(cnn)} conv shapes of the CNN",
                "backend": b,
                "ms": C.sig(ms),
                "ratio_to_builtin": None,
                "group": "cnn",
                "gflops": C.sig(flops / ms / 1e6),
            }
            if rate.get(b):
                row["matmul_fraction"] = C.sig(row["gflops"] / rate[b])
            extra.append(row)
        C.add_ratios(extra)
        for r in extra:
            t = {"numpy": NUMPY_TARGETS["conv@cnn"], "torch": TORCH_TARGET}.get(r["backend"])
            if t is not None:
                r["target"], r["meets_target"] = t, r["ratio_to_builtin"] <= t
        rows += extra
    return rows


COLUMNS = [
    ("bench", "bench", str),
    ("case", "case", str),
    ("backend", "backend", str),
    ("ms", "ms", C.fmt_ms),
    ("x builtin", "ratio_to_builtin", C.fmt_ratio),
    ("target", "target", lambda v: f"<={v:g}x"),
    ("met", "meets_target", lambda v: "yes" if v else "NO"),
    ("GFLOP/s", "gflops", C.fmt_num),
    ("of matmul", "matmul_fraction", lambda v: f"{100 * v:.0f}%"),
    ("min-max ms", "_spread", str),
]


def print_table(rows, stream, markdown=False):
    for r in rows:
        if r.get("ms") is not None and "ms_min" in r:
            r["_spread"] = f"{C.fmt_ms(r['ms_min'])}-{C.fmt_ms(r['ms_max'])}"
    shown = [r for r in rows if r.get("ms") is not None]
    table = C.format_markdown if markdown else C.format_table
    print(table(shown, COLUMNS, left=3), file=stream)
    for r in rows:
        r.pop("_spread", None)
    for r in rows:
        if r.get("error"):
            print(f"! {r['bench']} {r['case']} [{r['backend']}]: {r['error']}", file=stream)


def print_summary(rows, stream):
    peaks = [
        f"{'torch' if r['backend'] == 'builtin' else 'numpy'} {r['gflops_peak']:g}"
        for r in rows
        if r.get("gflops_peak")
    ]
    if peaks:
        print(
            f"\nfloat32 GEMM rate (fastest matmul sample, GFLOP/s): {', '.join(peaks)}; "
            "the 'of matmul' column divides by the rate of the backend's own library",
            file=stream,
        )
    judged = [r for r in rows if "meets_target" in r]
    missed = [r for r in judged if not r["meets_target"]]
    print(f"\ntargets met: {len(judged) - len(missed)} of {len(judged)}", file=stream)
    for r in missed:
        print(
            f"  MISSED {r['backend']:7s} {r['bench']} {r['case']}: "
            f"{r['ratio_to_builtin']:.2f}x builtin (target <= {r['target']:g}x)",
            file=stream,
        )


def gemm_breakdown(case: Case, stream, repeats=5) -> None:
    """Time the three GEMMs of an im2col conv alone, through NumPy (OpenBLAS) and torch (MKL):
    the part of the conv that no layout trick can remove; the rest is data movement."""
    import numpy as np
    import torch

    total = {"numpy": 0.0, "torch": 0.0}
    lines = []
    for m, k, n in case.gemms:
        a, b = _arrays(13, (m, k), (k, n))
        at, bt = torch.tensor(a), torch.tensor(b)
        stats, _ = C.time_interleaved(
            {"numpy": lambda a=a, b=b: np.matmul(a, b), "torch": lambda a=at, b=bt: a @ b},
            1,
            repeats,
            0.02,
        )
        ms = {lib: st["median"] * 1e3 for lib, st in stats.items()}
        for lib in total:
            total[lib] += ms[lib]
        lines.append(
            f"  ({m} x {k}) @ ({k} x {n}): numpy {ms['numpy']:.2f} ms, torch {ms['torch']:.2f} ms"
        )
    print(f"### the conv's three GEMMs alone (median of {repeats})", file=stream)
    print("\n".join(lines), file=stream)
    print(f"  sum: numpy {total['numpy']:.2f} ms, torch {total['torch']:.2f} ms", file=stream)


def profile_case(case: Case, stream, top=15) -> None:
    """cProfile of the numpy closure; torch.profiler of the torch and builtin closures; for a
    conv, the time of its GEMMs alone."""
    import cProfile
    import io
    import pstats

    print(f"\n## profile: {case.bench} {case.case}", file=stream)
    if case.gemms:
        gemm_breakdown(case, stream)
    try:
        fn = case.make("numpy")
        fn()
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(3):
            fn()
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(top)
        print("### numpy (cProfile, 3 calls, by own time)", file=stream)
        print(s.getvalue().strip(), file=stream)
    except Exception as e:  # noqa: BLE001
        print(f"numpy: not profiled ({e!r})", file=stream)
    import torch

    for b in ("torch", "builtin"):
        try:
            fn = case.make(b)
            fn()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
                for _ in range(3):
                    fn()
            print(f"### {b} (torch.profiler, 3 calls, by self CPU time)", file=stream)
            print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=top), file=stream)
        except Exception as e:  # noqa: BLE001
            print(f"{b}: not profiled ({e!r})", file=stream)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Forward+backward time of every hot op: numpy_impl vs torch_impl vs "
        "PyTorch's builtin (float32, same inputs, interleaved, median of repeats)."
    )
    p.add_argument(
        "--quick", action="store_true", help="batch 128, fewer repeats: finishes in under a minute"
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny shapes, one repeat: checks that every path runs (seconds)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per line on stdout (the header goes to stderr)",
    )
    p.add_argument(
        "--markdown", action="store_true", help="print the table as markdown (for BENCHMARKS.md)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="batch of the CNN-shaped cases (default: train.py's recipe batch)",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per case")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls per backend first")
    p.add_argument(
        "--min-time",
        type=float,
        default=None,
        help="seconds one sample lasts at least (tiny ops repeat inside it)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for torch and NumPy's BLAS (default: the libraries' own)",
    )
    p.add_argument(
        "--backends",
        default=",".join(C.BACKENDS),
        help="comma-separated subset of numpy,torch,builtin",
    )
    p.add_argument(
        "--matmul-precision",
        choices=C.MATMUL_PRECISIONS,
        default="highest",
        help="torch.set_float32_matmul_precision (train.py --matmul-precision; see "
        "BENCHMARKS.md) (default: highest)",
    )
    p.add_argument(
        "--only",
        default=None,
        help="comma-separated substrings: keep cases whose 'bench case' matches",
    )
    p.add_argument(
        "--profile",
        nargs="?",
        const="auto",
        default=None,
        metavar="SUBSTRING",
        help="profile one case afterwards (default: the one with the largest numpy time)",
    )
    args = p.parse_args(argv)
    bad = set(args.backends.split(",")) - set(C.BACKENDS)
    if bad:
        p.error(f"--backends: unknown {sorted(bad)}; choose from {C.BACKENDS}")
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    C.configure_threads(args.threads)
    C.configure_allocator()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision(args.matmul_precision)
    torch.manual_seed(0)
    if args.smoke:
        warmup, repeats, min_time = 1, 1, 0.0
    elif args.quick:
        warmup, repeats, min_time = 1, 3, 0.02
    else:
        warmup, repeats, min_time = 2, 7, 0.1
    warmup = args.warmup if args.warmup is not None else warmup
    repeats = args.repeats if args.repeats is not None else repeats
    min_time = args.min_time if args.min_time is not None else min_time
    out = sys.stderr if args.json else sys.stdout

    facts = C.machine_facts()
    print(
        C.format_header(
            "nn-twins ops benchmark (forward + backward, float32)",
            facts,
            ["benchmarks/ops.py", *argv],
        ),
        file=out,
    )
    cases, src = build_cases(args)
    print(f"# shapes: {src}", file=out)
    print(
        f"# timing: {warmup} warm-up call(s), median of {repeats} round-robin round(s), "
        f"each sample >= {min_time * 1e3:.0f} ms",
        file=out,
        flush=True,
    )
    backends = [b for b in C.BACKENDS if b in args.backends.split(",")]
    rows = []
    for case in cases:
        rows += run_case(case, backends, warmup, repeats, min_time)
    rows = finish_rows(rows, cases)
    print(f"# load average at end: {[round(x, 2) for x in os.getloadavg()]}", file=out)
    if args.json:
        C.emit_json(rows)
    else:
        print(file=out)
        print_table(rows, out, args.markdown)
    print_summary(rows, out)
    if args.profile:
        measured = [
            r
            for r in rows
            if r["backend"] == "numpy"
            and r.get("ms")
            and r["bench"] not in ("matmul", "conv_total")
        ]
        if args.profile == "auto" and measured:
            slow = max(measured, key=lambda r: r["ms"])
            pick = [c for c in cases if (c.bench, c.case) == (slow["bench"], slow["case"])]
        else:
            pick = [c for c in cases if args.profile in f"{c.bench} {c.case}"][:1]
        for c in pick:
            profile_case(c, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
