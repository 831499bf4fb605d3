"""Registry entries for the layers and losses of CS231n assignments 1-2.

One ``OpSpec`` per op (see ``parity_tests/registry.py`` for the conventions). Each entry names the
NumPy forward/backward pair, the torch_impl Function, the torch_impl.functional function and the
PyTorch builtin, and writes out every CS231n-vs-PyTorch conversion where it is applied (in the
builtin's lambda) and in words (``conversion``).

Input generators draw VALID random shapes with the awkward cases mixed in: batch of 1, odd and
non-square sizes, 1x1 kernels, stride larger than the kernel, padding, every group count that
divides C, zero-variance features, very large logits. Inputs stay away from kinks (relu at 0, ties
in a max-pool window, hinge margins at 0) by far more than the finite-difference steps.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from builtin_impl import functions as bf
from builtin_impl.conversions import (
    channel_vector,
    drop_probability,
    linear_weight,
    torch_momentum,
)
from numpy_impl import fast_layers as npf
from numpy_impl import layer_utils as npu
from numpy_impl import layers as npl
from parity_tests.checks import case_without_tiny_gradients
from parity_tests.registry import BadInput, Bench, BenchShape, Case, ModuleInfo, OpSpec
from torch_impl import functional as tfn
from torch_impl import functions as tf
from torch_impl import nn as tnn

# ----------------------------------------------------------------------------------------------
# Input generators
# ----------------------------------------------------------------------------------------------


def _cast(dtype, arrays: dict) -> dict:
    return {
        k: v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
        for k, v in arrays.items()
    }


def _case(dtype, inputs: dict, **consts) -> Case:
    """Case with every floating array (inputs, consts, and arrays inside param dicts) in dtype."""
    consts = {k: _cast(dtype, v) if isinstance(v, dict) else v for k, v in consts.items()}
    return Case(_cast(dtype, inputs), _cast(dtype, consts))


def _batch(rng, minimum=1) -> int:
    """Batch size: often the minimum (1 where the op allows it), otherwise 2-4."""
    return minimum if rng.random() < 0.4 else int(rng.integers(max(minimum, 2), 5))


def _away_from_zero(rng, shape, low=0.1, high=3.0) -> np.ndarray:
    """Values with |v| in [low, high]: relu/hinge kinks are >= low away."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, high, size=shape)


def _distinct(rng, shape, spacing=0.05) -> np.ndarray:
    """Distinct values at least ``spacing`` apart: no ties inside a max-pool window."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * spacing).reshape(shape)


def _affine_case(rng, dtype, N=None, dims=None, M=None) -> Case:
    """x (N, *dims), w (D, M), b (M,); a flavor may pin N, dims or M (0 for zero-size ones)."""
    N = _batch(rng) if N is None else N
    if dims is None:
        dims = tuple(int(d) for d in rng.integers(1, 4, size=rng.integers(1, 4)))
    M = int(rng.integers(1, 6)) if M is None else M
    D = int(np.prod(dims))
    x, w, b = rng.standard_normal((N, *dims)), rng.standard_normal((D, M)), rng.standard_normal(M)
    return _case(dtype, {"x": x, "w": w, "b": b})


def _elementwise_case(rng, dtype, N=None, dims=None) -> Case:
    """x (N, *dims); dims = () is a 1-D x."""
    N = _batch(rng) if N is None else N
    if dims is None:
        dims = tuple(int(d) for d in rng.integers(1, 6, size=rng.integers(1, 4)))
    shape = (N, *dims)
    return _case(dtype, {"x": _away_from_zero(rng, shape, 0.1, 3.0)})


def _norm_features(rng, M, K, dtype, zero_var=False, numerical=False) -> np.ndarray:
    """(M, K): K columns of M values, each column one group that the op normalizes.

    float64: raw draws on varied scales (0.5-3) and offsets (sd 2), so a column's sample spread
    can be tiny next to its mean -- an ill-conditioned case that float64 must still get to 1e-10.
    float32: each column's sample std is set to s in [0.5, 3] and its mean to at most s. The
    float32 round-off of x - mean grows like |mean|/std, and two correct float32 algorithms then
    differ by more than torch.testing's float32 tolerance: with |mean|/std ~ 10-45, PyTorch's own
    F.batch_norm/F.group_norm were 2-4e-5 off the float64 gradient, and torch_impl 1.4e-5 (seeds
    8 and 10, NN_TWINS_EXAMPLES=20) -- round-off, not math.
    zero_var: one column is constant (variance 0).
    numerical: the finite-difference cases are standardized as the float32 ones: a column whose
    spread is ~eps (std 0.04 next to eps = 1e-3, seen on layernorm) has third derivatives
    ~1/std^3 that the two-point rule's h^2 truncation turns into ~2e-7 relative error.
    """
    x = rng.standard_normal((M, K))
    scale = rng.uniform(0.5, 3.0, size=K)
    if (dtype == np.float32 or numerical) and M > 1:
        x = (x - x.mean(axis=0)) / x.std(axis=0) * scale + rng.uniform(-1, 1, size=K) * scale
    else:
        x = x * scale + rng.normal(0, 2, size=K)
    if zero_var and K:  # (K = 0: an empty batch of groups)
        x[:, rng.integers(K)] = rng.choice([0.0, 0.5, -2.0])
    return x


def _bn_param(rng, mode, D, momentum=None) -> dict:
    eps = float(rng.choice([1e-5, 1e-3]))
    drawn = float(rng.choice([0.9, 0.5]))  # (drawn even when pinned: the same later draws)
    return {
        "mode": mode,
        "eps": eps,
        "momentum": drawn if momentum is None else momentum,
        "running_mean": rng.standard_normal(D),
        "running_var": rng.uniform(0.5, 2.0, size=D),
    }


# Training-mode normalizations get at least 3 values per normalized group. With 2 values the
# normalized output is +-sqrt(var/(var + eps)) whatever x is, so dx = O(eps/var) is what is left
# after O(1) terms cancel: two correct float64 implementations then differ by ~1e-16 * var/eps
# relative (6e-10 seen on batchnorm, N=2, eps=1e-5), and centered differences resolve it only to
# ~1e-11 absolute -- such a case compares round-off, not math.
# The finite-difference cases (numerical=True) have no constant feature either: there the
# O(h^2/eps) truncation error is ~1e-6 relative.
# Constant features are float64-only: their gradient is scaled by 1/sqrt(eps) (~316), so the
# float32 round-off of dout - mean(dout) becomes ~2e-5 absolute -- above torch.testing's float32
# atol for ANY float32 implementation (PyTorch's own F.batch_norm is 2.2e-5 off the float64 value
# on such a case), which would make the float32 comparison test round-off, not the math.


def _zero_var(dtype, numerical) -> bool:
    return dtype == np.float64 and not numerical


def _batchnorm_case(
    rng, dtype, mode="train", numerical=False, N=None, D=None, momentum=None
) -> Case:
    # Training: N >= 3 (see above; PyTorch raises for N = 1, where the output is beta whatever x
    # is). Test mode is an affine map: batch of 1 is fine.
    # An explicit N (a flavor) is used as given: N = 0, an empty batch, keeps the running
    # statistics and returns an empty output (as F.batch_norm does).
    # Finite differences in training mode draw N >= 4: with 3 values per feature dx is confined
    # to a line (orthogonal to 1 and xhat) fixed by x, so an entry of it that is ~1e-3 of the
    # largest cannot be avoided by redrawing dout (seen: rel_error 6e-7, NN_TWINS_SEED=1).
    smallest = 4 if numerical and mode == "train" else 3 if numerical or mode == "train" else 1
    N = _batch(rng, smallest) if N is None else N
    D = D or int(rng.integers(1, 6))
    zero_var = _zero_var(dtype, numerical) and mode == "train" and D > 1
    x = _norm_features(rng, N, D, dtype, zero_var, numerical)
    gamma, beta = rng.normal(1, 0.5, size=D), rng.standard_normal(D)
    bn_param = _bn_param(rng, mode, D, momentum)
    return _case(dtype, {"x": x, "gamma": gamma, "beta": beta}, bn_param=bn_param)


def _layernorm_case(rng, dtype, numerical=False, N=None) -> Case:
    N = _batch(rng) if N is None else N
    D = int(rng.integers(3, 7))  # D >= 3 values per row (see above)
    x = _norm_features(rng, D, N, dtype, numerical=numerical).T  # each row a group
    if _zero_var(dtype, numerical) and N > 1:
        x[rng.integers(N)] = rng.choice([0.0, 1.5])
    gamma, beta = rng.normal(1, 0.5, size=D), rng.standard_normal(D)
    ln_param = {"eps": float(rng.choice([1e-5, 1e-3]))}
    return _case(dtype, {"x": x, "gamma": gamma, "beta": beta}, ln_param=ln_param)


def _dropout_mask(seed: int, shape: tuple, p: float) -> np.ndarray:
    """CS231n's seeded draw, as numpy_impl.layers.dropout_forward makes it:
    np.random.seed(seed); mask = (np.random.rand(*shape) < p) / p."""
    return (np.random.RandomState(seed).rand(*shape) < p) / p


def _dropout_case(rng, dtype, mode="train", N=None, p=None, dims=None) -> Case:
    """x (N, *dims) (dims = (): a 1-D x), keep probability p."""
    N = _batch(rng) if N is None else N
    if dims is None:
        dims = tuple(int(d) for d in rng.integers(1, 6, size=rng.integers(1, 4)))
    shape = (N, *dims)
    p = p or float(rng.choice([0.3, 0.5, 0.8]))
    seed = int(rng.integers(2**31))
    param = {"p": p, "mode": mode, "seed": seed}
    if mode == "train":
        # Both twins get this dict: numpy_impl draws its mask from 'seed' (and ignores 'mask'),
        # torch_impl uses 'mask' as given -- the same mask.
        param["mask"] = _dropout_mask(seed, shape, p)
    return _case(dtype, {"x": rng.standard_normal(shape)}, dropout_param=param)


def _conv_case(
    rng, dtype, max_hw=6, N=None, HW=None, kernel=None, stride=None, pad=None, C=None
) -> Case:
    """Random conv geometry; keyword overrides pin the awkward ones (see the entry's flavors)."""
    N = _batch(rng) if N is None else N
    C, Fn = C or int(rng.integers(1, 4)), int(rng.integers(1, 4))
    H, W = HW or (int(s) for s in rng.integers(1, max_hw + 1, size=2))
    pad = int(rng.integers(0, 3)) if pad is None else pad
    HH, WW = kernel or (
        int(rng.integers(1, min(H + 2 * pad, 4) + 1)),
        int(rng.integers(1, min(W + 2 * pad, 4) + 1)),
    )
    stride = stride or int(rng.integers(1, 4))
    inputs = {
        "x": rng.standard_normal((N, C, H, W)),
        "w": rng.standard_normal((Fn, C, HH, WW)) / np.sqrt(C * HH * WW),
        "b": rng.standard_normal(Fn),
    }
    return _case(dtype, inputs, conv_param={"stride": stride, "pad": pad})


def _pool_case(rng, dtype, N=None, HW=None, pool=None, stride=None) -> Case:
    N, C = _batch(rng) if N is None else N, int(rng.integers(1, 4))
    H, W = HW or (int(s) for s in rng.integers(1, 8, size=2))
    ph, pw = pool or (int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1)))
    stride = stride or int(rng.integers(1, 4))
    x = _distinct(rng, (N, C, H, W))
    return _case(
        dtype, {"x": x}, pool_param={"pool_height": ph, "pool_width": pw, "stride": stride}
    )


def _spatial_bn_case(
    rng, dtype, mode="train", numerical=False, N=None, HW=None, momentum=None
) -> Case:
    N, C = _batch(rng) if N is None else N, int(rng.integers(1, 4))
    H, W = HW or (int(s) for s in rng.integers(1, 5, size=2))
    if mode == "train" and 0 < N * H * W < 3:
        H = 3  # at least 3 values per channel (see above); 0 values is the empty-batch flavor
    zero_var = _zero_var(dtype, numerical) and mode == "train" and C > 1
    feats = _norm_features(rng, N * H * W, C, dtype, zero_var, numerical)
    x = feats.reshape(N, H, W, C).transpose(0, 3, 1, 2).copy()
    gamma, beta = rng.normal(1, 0.5, size=C), rng.standard_normal(C)
    bn_param = _bn_param(rng, mode, C, momentum)
    return _case(dtype, {"x": x, "gamma": gamma, "beta": beta}, bn_param=bn_param)


def _groupnorm_case(rng, dtype, numerical=False, N=None, G=None, per_group=None, HW=None) -> Case:
    N, G = _batch(rng) if N is None else N, G or int(rng.integers(1, 4))
    C = G * (per_group or int(rng.integers(1, 4)))
    H, W = HW or (int(s) for s in rng.integers(1, 4, size=2))
    if C // G * H * W < 3:
        W = 3  # a group of one value would have zero variance by construction
    # Group g of sample n is channels g*C/G .. (g+1)*C/G of x[n]: contiguous in (N, G, M).
    groups = _norm_features(
        rng, C // G * H * W, N * G, dtype, _zero_var(dtype, numerical), numerical
    )
    x = groups.T.reshape(N, C, H, W)
    gamma = rng.normal(1, 0.5, size=(1, C, 1, 1))
    beta = rng.standard_normal((1, C, 1, 1))
    gn_param = {"eps": float(rng.choice([1e-5, 1e-3]))}
    return _case(dtype, {"x": x, "gamma": gamma, "beta": beta}, G=G, gn_param=gn_param)


def _affine_relu_case(rng, dtype, N=None) -> Case:
    """affine -> relu with every pre-activation at least 1e-2 away from relu's kink."""
    while True:
        case = _affine_case(rng, np.float64, N)
        x, w, b = case.inputs.values()
        if np.abs(x.reshape(x.shape[0], -1) @ w + b).min() > 1e-2:
            return _case(dtype, case.inputs)


# The normalizing sandwiches (affine_norm_relu, conv_bn_relu) draw their layer inputs so that
# every group a training-mode normalization averages over is well conditioned: a standard
# deviation s in [0.5, 3] and a mean of at most s in size (see _norm_features: with |mean|/std
# ~10-45 two correct float32 implementations already differ by more than torch.testing's
# float32 tolerance, and a spread near eps defeats the finite differences). The affine or conv
# weights are rescaled and the bias chosen to get there -- a valid input like any other. The
# normalization entries themselves keep the raw offsets of float64. Every ReLU input is then
# kept 1e-2 from the kink.
_RELU_MARGIN = 1e-2

# With a fan-in of 1 (one input feature; a kernel of which one tap ever sees data) each column
# or channel of the layer's output is w * x + b: training-mode batchnorm removes b and the size of
# w, so dw is O(eps / var) -- what is left after O(1) terms cancel, compared relatively to
# round-off (seen: a 1x3 kernel on a 1-wide input, dw ~1e-7 next to dx ~3, rel_error 1.2e-4,
# NN_TWINS_EXAMPLES=50 NN_TWINS_SEED=7). Training-mode batchnorm sandwiches draw a fan-in >= 2
# (conv: input patches of rank >= 2).
# Likewise a conv channel needs at least 3 DISTINCT values (4 for finite differences), not just
# 3 values: outputs that see only padding all equal b, and batchnorm maps {u, u, u, v} to the
# same normalized values whatever u and v are (seen: pad 2, stride 3, dx and dw ~1e-4 of dgamma,
# rel_error 1.6e-6, NN_TWINS_EXAMPLES=50 NN_TWINS_SEED=4).


def _standardize_columns(rng, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a (K, F) matrix of F groups (columns): the per-column factor and offset that give
    each column a std s in [0.5, 3] and a mean u s, u in [-1, 1]: column * factor + offset."""
    F_ = a.shape[1]
    s = rng.uniform(0.5, 3.0, size=F_)
    std = a.std(axis=0) if len(a) else np.ones(F_)
    factor = s / std
    offset = -a.mean(axis=0) * factor + rng.uniform(-1, 1, size=F_) * s if len(a) else 0 * s
    return factor, offset


def _norm_param(rng, normalization, mode, M) -> dict:
    """bn_param of affine_norm_relu_forward: batchnorm's dict, or layernorm's ({'eps'})."""
    if normalization == "layernorm":
        return {"eps": float(rng.choice([1e-5, 1e-3]))}
    return _bn_param(rng, mode, M)


def _affine_norm_relu_case(
    rng,
    dtype,
    normalization="draw",
    dropout=None,
    mode="train",
    N=None,
    numerical=False,
) -> Case:
    """affine -> [batchnorm | layernorm] -> relu -> [dropout], CS231n's FullyConnectedNet layer.

    normalization: 'batchnorm', 'layernorm', None (no normalization) or 'draw' (one of them);
    dropout: whether a dropout_param is passed (None: drawn); mode: batchnorm's and dropout's.
    Batchnorm in training mode gets N >= 3 values per feature (N >= 4 for finite differences),
    layernorm rows M >= 3 (>= 4) features (see _batchnorm_case); an explicit N is kept (N = 0:
    an empty batch).
    """
    if normalization == "draw":
        normalization = [None, "batchnorm", "layernorm"][int(rng.integers(3))]
    dropout = bool(rng.random() < 0.5) if dropout is None else dropout
    fewest = 4 if numerical else 3
    if N is None:
        N = _batch(rng, fewest if normalization == "batchnorm" and mode == "train" else 1)
    while True:
        dims = tuple(int(d) for d in rng.integers(1, 4, size=rng.integers(1, 3)))
        M = int(rng.integers(fewest if normalization == "layernorm" else 1, 6))
        D = int(np.prod(dims))
        if D < 2 and normalization == "batchnorm" and mode == "train":
            continue  # a fan-in of 1 (see above)
        x, w = rng.standard_normal((N, *dims)), rng.standard_normal((D, M)) / np.sqrt(D)
        b = rng.standard_normal(M)
        inputs = {"x": x, "w": w, "b": b}
        consts = {"normalization": normalization, "bn_param": None, "dropout_param": None}
        xw = x.reshape(N, D) @ w
        if normalization == "batchnorm" and mode == "train":  # columns are the groups
            factor, b = _standardize_columns(rng, xw)
            inputs.update(w=w * factor, b=b)
        elif normalization == "layernorm":  # rows are the groups: redraw until they are fine
            rows = xw + b
            sd = rows.std(axis=1)
            if np.any(sd < 0.5) or np.any(np.abs(rows.mean(axis=1)) > sd):
                continue
        if normalization is not None:
            inputs.update(gamma=rng.normal(1, 0.5, size=M), beta=rng.standard_normal(M))
            consts["bn_param"] = _norm_param(rng, normalization, mode, M)
        if dropout:
            p, seed = float(rng.choice([0.5, 0.8])), int(rng.integers(2**31))
            consts["dropout_param"] = {"p": p, "mode": mode, "seed": seed}
            if mode == "train":  # numpy draws it from 'seed', torch_impl takes it as given
                consts["dropout_param"]["mask"] = _dropout_mask(seed, (N, M), p)
        case = _case(np.float64, inputs, **consts)
        relu_in = _affine_norm_builtin(*_torch_case(case)).numpy()
        mask = consts["dropout_param"] and consts["dropout_param"].get("mask")
        if _clear_of_kink_and_live(relu_in, None if mask is None else mask != 0, axes=(0,)):
            return _case(dtype, case.inputs, **case.consts)


def _conv_bn_relu_case(rng, dtype, mode="train", numerical=False, N=None, **conv) -> Case:
    """conv -> spatial batchnorm -> relu; keyword overrides pin the conv geometry (see
    _CONV_FLAVORS). Training mode gets at least 3 values per channel (4 for finite
    differences); an explicit N is kept (N = 0: an empty batch)."""
    fewest = 4 if numerical else 3
    while True:
        case = _conv_case(rng, np.float64, N=N, **conv)
        x, w, b = case.inputs.values()
        if mode == "train" and len(x) and _patch_rank_below_2(x, w, case.consts["conv_param"]):
            continue  # an effective fan-in of 1 (see above)
        cp = case.consts["conv_param"]
        a = F.conv2d(
            torch.from_numpy(x), torch.from_numpy(w), stride=cp["stride"], padding=cp["pad"]
        )
        Fn, count = a.shape[1], a.shape[0] * a.shape[2] * a.shape[3]
        per_channel = a.transpose(0, 1).reshape(Fn, -1).T.numpy()  # (N H' W', F)
        factor = np.ones(Fn)
        if mode == "train" and count:  # test mode normalizes with the running statistics
            distinct = min(len(np.unique(np.round(c, 9))) for c in per_channel.T)
            if distinct < fewest:
                continue  # see the note on distinct values above
            factor, b = _standardize_columns(rng, per_channel)
        inputs = {
            "x": x,
            "w": w * factor[:, None, None, None],
            "b": b,
            "gamma": rng.normal(1, 0.5, size=Fn),
            "beta": rng.standard_normal(Fn),
        }
        case = _case(np.float64, inputs, conv_param=cp, bn_param=_bn_param(rng, mode, Fn))
        t, c = _torch_case(case)
        relu_in = _bn_builtin({**t, "x": _conv_builtin(t, c)}, c).numpy()
        if _clear_of_kink_and_live(relu_in, None, axes=(0, 2, 3)):
            return _case(dtype, case.inputs, **case.consts)


def _patch_rank_below_2(x, w, conv_param) -> bool:
    """Whether the conv's input patches, centered, span fewer than 2 well-separated directions
    (second singular value < 0.1 of the first): each channel is then ~w * (one pattern) + b,
    whatever the kernel's size (taps that only ever see padding do not count)."""
    HH, WW = w.shape[2:]
    cols = F.unfold(
        torch.from_numpy(x), (HH, WW), padding=conv_param["pad"], stride=conv_param["stride"]
    )
    patches = cols.transpose(1, 2).reshape(-1, cols.shape[1]).numpy()
    sv = np.linalg.svd(patches - patches.mean(axis=0), compute_uv=False)
    return len(sv) < 2 or sv[1] < 0.1 * sv[0]


def _clear_of_kink_and_live(relu_in: np.ndarray, kept, axes) -> bool:
    """Every ReLU input at least _RELU_MARGIN from 0, and every feature (channel) with a
    positive one that dropout keeps (``kept``, or None): a feature whose units are all off has
    exactly-zero dgamma, dbeta and dw column entries, which check nothing (seen: test mode,
    batch of 1, every unit negative, so a wrong dbeta passed every check)."""
    if relu_in.size == 0:
        return True
    live = (relu_in > 0) if kept is None else (relu_in > 0) & kept
    return np.abs(relu_in).min() > _RELU_MARGIN and live.any(axis=axes).all()


def _torch_case(case: Case) -> tuple[dict, dict]:
    """float64 tensors of a case's inputs and consts (for a generator's kink test)."""
    tensors = {k: torch.from_numpy(v) for k, v in case.inputs.items()}
    consts = {}
    for k, v in copy.deepcopy(case.consts).items():
        if isinstance(v, dict):
            v = {n: torch.from_numpy(a) if isinstance(a, np.ndarray) else a for n, a in v.items()}
        consts[k] = v
    return tensors, consts


def _windows_have_clear_max(a: np.ndarray, ph: int, pw: int, stride: int, gap: float) -> bool:
    """Every pooling window of a with a positive max has it ``gap`` above its runner-up."""
    H_out, W_out = 1 + (a.shape[2] - ph) // stride, 1 + (a.shape[3] - pw) // stride
    for i in range(H_out):
        for j in range(W_out):
            win = a[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw]
            top2 = np.sort(win.reshape(*a.shape[:2], -1), axis=2)[:, :, -2:]
            if top2.shape[2] == 2 and np.any(
                (top2[..., 1] > 0) & (top2[..., 1] - top2[..., 0] < gap)
            ):
                return False
    return True


def _conv_relu_case(rng, dtype, **kw) -> Case:
    """conv -> relu with every pre-activation at least 1e-2 away from relu's kink."""
    while True:
        case = _conv_case(rng, np.float64, **kw)
        x, w, b = case.inputs.values()
        cp = case.consts["conv_param"]
        a = F.conv2d(
            torch.from_numpy(x),
            torch.from_numpy(w),
            torch.from_numpy(b),
            stride=cp["stride"],
            padding=cp["pad"],
        )
        if a.numel() == 0 or a.abs().min() > 1e-2:
            return _case(dtype, case.inputs, conv_param=cp)


def _conv_relu_pool_case(rng, dtype, N=None, same=False, gap=1e-3) -> Case:
    """conv -> relu -> max pool; pre-activations 1e-2 away from 0 and no near-ties (closer than
    ``gap``) among the positive activations of a pooling window (ties of relu's zeros carry no
    gradient). The finite-difference cases ask for gap = 2e-2: the fourth-order stencil moves an
    input by 2h = 2e-3, which moves an activation by up to ~|w| * 2e-3."""
    while True:
        if same:  # CS231n's ThreeLayerConvNet: 'same' conv, 2x2 pool
            k = int(rng.choice([1, 3]))
            case = _conv_case(rng, np.float64, N=N, HW=(4, 6), kernel=(k, k), stride=1, pad=k // 2)
        else:
            case = _conv_case(rng, np.float64, max_hw=7, N=N)
        x, w, b = case.inputs.values()
        cp = case.consts["conv_param"]
        a = F.conv2d(
            torch.from_numpy(x),
            torch.from_numpy(w),
            torch.from_numpy(b),
            stride=cp["stride"],
            padding=cp["pad"],
        ).numpy()
        H, W = a.shape[2:]
        if same:
            ph = pw = stride = 2
        else:
            ph, pw = int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1))
            stride = int(rng.integers(1, 3))
        if np.abs(a).min() > max(1e-2, gap) and _windows_have_clear_max(
            np.maximum(a, 0), ph, pw, stride, gap
        ):
            pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}
            return _case(dtype, case.inputs, conv_param=cp, pool_param=pool_param)


def _scores_case(rng, dtype, large=True, hinge=False, N=None, C=None) -> Case:
    """Scores (N, C) and labels; with ``large`` some rows are scaled to logits ~1e3.

    Without ``large`` (the finite-difference cases) scores are N(0, 1): softmax probabilities
    stay within ~e^-5 of each other, since a probability 1e-4 of the row's largest is resolved by
    centered differences only to ~1e-7 relative (seen: 1.9e-4 next to 0.77, rel_error 4e-7).
    """
    N, C = N or _batch(rng), C or int(rng.integers(2, 7))
    y = rng.integers(C, size=N)
    while True:
        x = rng.standard_normal((N, C))
        if large:
            x *= 2
            x[rng.random(N) < 0.5] *= 500
        margins = x - x[np.arange(N), y][:, None] + 1
        margins[np.arange(N), y] = 1
        if not hinge or np.abs(margins).min() > 1e-2:  # hinge kinks well away from h, eps
            break
    return _case(dtype, {"x": x}, y=y)


# ----------------------------------------------------------------------------------------------
# NumPy side: forward (and backward when dout is given) through numpy_impl
# ----------------------------------------------------------------------------------------------


def _numpy_pair(module, forward, backward, args):
    """numpy_forward_backward for a CS231n (forward -> (out, cache), backward(dout, cache)) pair.

    The functions are looked up on ``module`` at call time (so a test can monkeypatch them);
    ``args(case)`` builds the forward's argument list; the backward's results are the gradients
    of ``case.inputs`` in order.
    """

    def run(case: Case, dout):
        out, cache = getattr(module, forward)(*args(case))
        if dout is None:
            return out, None
        grads = getattr(module, backward)(dout, cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        return out, dict(zip(case.inputs, grads, strict=True))

    return run


def _numpy_loss(loss):
    """numpy_forward_backward for a loss ``(x, y) -> (loss, dx)``: dx is scaled by dout."""

    def run(case: Case, dout):
        value, dx = getattr(npl, loss)(case.inputs["x"], case.consts["y"])
        out = np.asarray(value)
        return out, (None if dout is None else {"x": dout * dx})

    return run


def _xs(case):
    return tuple(case.inputs.values())


def _xs_and(*keys):
    return lambda case: (*case.inputs.values(), *(case.consts[k] for k in keys))


# ----------------------------------------------------------------------------------------------
# torch_impl side (Function.apply with CS231n's param dicts unpacked) and builtins
# ----------------------------------------------------------------------------------------------


def _bn_apply(fn):
    def run(t, c):
        bp = c["bn_param"]
        return fn.apply(
            t["x"],
            t["gamma"],
            t["beta"],
            bp["running_mean"],
            bp["running_var"],
            bp["mode"] == "train",
            bp["momentum"],
            bp["eps"],
        )

    return run


def _bn_builtin(t, c):
    bp = c["bn_param"]
    # (Outputs and gradients do not see PyTorch's unbiased running variance; test_batchnorm.py
    # checks the running statistics with the biased/unbiased conversion.)
    return bf.batchnorm(
        t["x"],
        t["gamma"],
        t["beta"],
        bp["running_mean"],
        bp["running_var"],
        bp["mode"] == "train",
        bp["momentum"],
        bp["eps"],
    )


def _conv_builtin(t, c):
    cp = c["conv_param"]
    return bf.conv(t["x"], t["w"], t["b"], cp["stride"], cp["pad"])


def _conv_apply(t, c, algorithm="auto"):
    cp = c["conv_param"]
    return tf.Conv2dFunction.apply(t["x"], t["w"], t["b"], cp["stride"], cp["pad"], algorithm)


def _pool_builtin(t, c):
    pp = c["pool_param"]
    return bf.max_pool(t["x"], pp["pool_height"], pp["pool_width"], pp["stride"])


def _pool_apply(t, c):
    pp = c["pool_param"]
    return tf.MaxPool2dFunction.apply(t["x"], pp["pool_height"], pp["pool_width"], pp["stride"])


def _groupnorm_builtin(t, c):
    # The reshape of gamma/beta to F.group_norm's (C,) is part of the autograd graph, so the
    # builtin's dgamma comes back as (1, C, 1, 1) too.
    return bf.spatial_groupnorm(t["x"], t["gamma"], t["beta"], c["G"], c["gn_param"]["eps"])


def _svm_builtin(t, c):
    return bf.svm_loss(t["x"], c["y"])


def _dropout_apply(t, c):
    dp = c["dropout_param"]
    return tf.DropoutFunction.apply(t["x"], dp["p"], dp["mode"] == "train", dp.get("mask"))


def _dropout_builtin(t, c):
    # F.dropout takes the DROP probability (1 - p) and draws its own mask, so no builtin call can
    # reproduce a given mask; what F.dropout computes once its mask is drawn is x * mask, with
    # mask in {0, 1/p}. test_dropout.py checks that claim against F.dropout itself (mask read
    # back from its output) and the keep rate/scaling statistically.
    dp = c["dropout_param"]
    if dp["mode"] != "train":
        return F.dropout(t["x"], drop_probability(dp["p"]), training=False)
    return t["x"] * dp["mask"]


def _affine_norm_builtin(t, c):
    """affine -> [batchnorm | layernorm] from builtins: the ReLU's input."""
    a = bf.affine(t["x"], t["w"], t["b"])
    if c["normalization"] == "batchnorm":
        return _bn_builtin({**t, "x": a}, c)
    if c["normalization"] == "layernorm":
        return bf.layernorm(a, t["gamma"], t["beta"], c["bn_param"]["eps"])
    return a


def _affine_norm_relu_builtin(t, c):
    out = bf.relu(_affine_norm_builtin(t, c))
    dp = c["dropout_param"]
    return out if dp is None else _dropout_builtin({"x": out}, c)


def _affine_norm_relu_apply(t, c):
    a = tf.AffineFunction.apply(t["x"], t["w"], t["b"])
    if c["normalization"] == "batchnorm":
        a = _bn_apply(tf.BatchNormFunction)({**t, "x": a}, c)
    elif c["normalization"] == "layernorm":
        a = tf.LayerNormFunction.apply(a, t["gamma"], t["beta"], c["bn_param"]["eps"])
    out = tf.ReLUFunction.apply(a)
    return out if c["dropout_param"] is None else _dropout_apply({"x": out}, c)


def _grads_but_bias_before_batchnorm(case: Case) -> tuple[str, ...]:
    """Every input but the bias b when a training-mode batchnorm follows it: the batch mean
    removes b, so db is exactly zero, its computed value round-off (test_sandwich_bias.py
    checks it is ~0 in absolute terms in all three implementations)."""
    bn_param = case.consts["bn_param"]
    train_bn = (
        case.consts.get("normalization", "batchnorm") == "batchnorm"
        and bn_param is not None
        and bn_param["mode"] == "train"
    )
    return tuple(n for n in case.inputs if not (train_bn and n == "b"))


def _affine_norm_relu_numpy(case: Case, dout):
    """numpy_impl.layer_utils' affine_norm_relu pair; the backward's dgamma, dbeta are None
    without a normalization (and then not among the case's inputs)."""
    ins, c = case.inputs, case.consts
    out, cache = npu.affine_norm_relu_forward(
        ins["x"],
        ins["w"],
        ins["b"],
        ins.get("gamma"),
        ins.get("beta"),
        c["bn_param"],
        c["normalization"],
        c["dropout_param"],
    )
    if dout is None:
        return out, None
    grads = npu.affine_norm_relu_backward(dout, cache)
    return out, dict(zip(ins, grads, strict=False))  # (x, w, b[, gamma, beta])


def _conv_bn_relu_apply(t, c):
    a = _conv_apply(t, c)
    return tf.ReLUFunction.apply(_bn_apply(tf.BatchNormFunction)({**t, "x": a}, c))


def _conv_bn_relu_builtin(t, c):
    return bf.relu(_bn_builtin({**t, "x": _conv_builtin(t, c)}, c))


# ----------------------------------------------------------------------------------------------
# torch_impl.nn modules and the torch.nn modules they are compared against (parameters
# converted by builtin_impl.conversions)
# ----------------------------------------------------------------------------------------------


def _bn_module_param(m) -> dict:
    """A module's bn_param for torch_impl.functional (mode from its training flag)."""
    return {
        "mode": "train" if m.training else "test",
        "eps": m.eps,
        "momentum": m.momentum,
        "running_mean": m.running_mean,
        "running_var": m.running_var,
    }


def _bn_module_builtin(cls):
    def make(m):
        b = cls(m.num_features, eps=m.eps, momentum=torch_momentum(m.momentum), **_like(m.gamma))
        b.weight, b.bias = m.gamma, m.beta
        with torch.no_grad():
            b.running_mean.copy_(m.running_mean)
            b.running_var.copy_(m.running_var)
        return b

    return make


def _bn_module(cls, builtin_cls, functional):
    """(Spatial)BatchNorm: its builtin's running_var averages the unbiased variance, so only
    running_mean is compared there (test_batchnorm.py converts)."""
    return ModuleInfo(
        cls,
        lambda case: cls(
            case.inputs["gamma"].shape[0],
            eps=case.consts["bn_param"]["eps"],
            momentum=case.consts["bn_param"]["momentum"],
        ),
        # a momentum other than 0.5, where CS231n's and PyTorch's conventions coincide
        flavor={"momentum": 0.8},
        buffers=lambda case: {k: (case.inputs["gamma"].shape[0],) for k in _RUNNING},
        functional=lambda m, x: functional(x, m.gamma, m.beta, _bn_module_param(m)),
        builtin=_bn_module_builtin(builtin_cls),
        modal=True,
    )


_RUNNING = ("running_mean", "running_var")


def _like(t: torch.Tensor) -> dict:
    return {"dtype": t.dtype, "device": t.device}


def _linear_module(m):
    b = nn.Linear(m.in_features, m.out_features, **_like(m.w))
    with torch.no_grad():
        b.weight.copy_(linear_weight(m.w))
        b.bias.copy_(m.b)
    return b


def _conv_module(m):
    b = nn.Conv2d(
        m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.pad, **_like(m.w)
    )
    b.weight, b.bias = m.w, m.b  # the same (F, C, HH, WW) layout
    return b


def _group_norm_module(m):
    b = nn.GroupNorm(m.G, m.num_channels, eps=m.eps, **_like(m.gamma))
    with torch.no_grad():
        b.weight.copy_(channel_vector(m.gamma))
        b.bias.copy_(channel_vector(m.beta))
    return b


def _layer_norm_module(m):
    b = nn.LayerNorm(m.num_features, eps=m.eps, **_like(m.gamma))
    b.weight, b.bias = m.gamma, m.beta
    return b


def _scores_args(case):
    return case.inputs["x"], case.consts["y"]


def _elementwise_module(cls, builtin_cls, functional):
    return ModuleInfo(
        cls,
        lambda case: cls(),
        functional=lambda m, x: functional(x),
        builtin=lambda m: builtin_cls(),
    )


_AFFINE_MODULE = ModuleInfo(
    tnn.Affine,
    lambda case: tnn.Affine(*case.inputs["w"].shape),
    flavor={"N": 3, "M": 4},
    functional=lambda m, x: tfn.affine(x, m.w, m.b),
    builtin=_linear_module,
    builtin_call=lambda b, x: b(x.reshape(x.shape[0], b.in_features)),
    param_grads=lambda b: {"w": linear_weight(b.weight.grad), "b": b.bias.grad},
)
_LAYERNORM_MODULE = ModuleInfo(
    tnn.LayerNorm,
    lambda case: tnn.LayerNorm(case.inputs["gamma"].shape[0], eps=case.consts["ln_param"]["eps"]),
    functional=lambda m, x: tfn.layernorm(x, m.gamma, m.beta, {"eps": m.eps}),
    builtin=_layer_norm_module,
)
_GROUPNORM_MODULE = ModuleInfo(
    tnn.SpatialGroupNorm,
    lambda case: tnn.SpatialGroupNorm(
        case.inputs["x"].shape[1], case.consts["G"], eps=case.consts["gn_param"]["eps"]
    ),
    functional=lambda m, x: tfn.spatial_groupnorm(x, m.gamma, m.beta, m.G, {"eps": m.eps}),
    builtin=_group_norm_module,
    param_grads=lambda b: {
        "gamma": b.weight.grad.view(1, -1, 1, 1),
        "beta": b.bias.grad.view(1, -1, 1, 1),
    },
)
_DROPOUT_SEED = 5
_DROPOUT_MODULE = ModuleInfo(
    tnn.Dropout,
    lambda case: tnn.Dropout(
        case.consts["dropout_param"]["p"], torch.Generator().manual_seed(_DROPOUT_SEED)
    ),
    # keep probability 0.7 < 1 on a 6 x 7 x: train and eval differ
    flavor={"N": 6, "p": 0.7, "dims": (7,)},
    functional=lambda m, x: tfn.dropout(
        x, {"p": m.p, "mode": "train" if m.training else "test", "seed": _DROPOUT_SEED}
    ),
    # builtin: eval mode only (nn.Dropout draws its own mask; test_dropout.py checks it)
    builtin=lambda m: nn.Dropout(drop_probability(m.p)),
    modal=True,
)
_CONV_MODULE = ModuleInfo(
    tnn.Conv2d,
    lambda case: tnn.Conv2d(
        case.inputs["w"].shape[1],
        case.inputs["w"].shape[0],
        case.inputs["w"].shape[2:],
        stride=case.consts["conv_param"]["stride"],
        pad=case.consts["conv_param"]["pad"],
    ),
    flavor={"N": 2, "HW": (5, 6)},
    functional=lambda m, x: tfn.conv(x, m.w, m.b, {"stride": m.stride, "pad": m.pad}),
    builtin=_conv_module,
)
_POOL_MODULE = ModuleInfo(
    tnn.MaxPool2d,
    lambda case: tnn.MaxPool2d(
        case.consts["pool_param"]["pool_height"],
        case.consts["pool_param"]["pool_width"],
        case.consts["pool_param"]["stride"],
    ),
    flavor={"N": 2, "HW": (5, 6)},
    functional=lambda m, x: tfn.max_pool(
        x, {"pool_height": m.pool_height, "pool_width": m.pool_width, "stride": m.stride}
    ),
    builtin=lambda m: nn.MaxPool2d((m.pool_height, m.pool_width), stride=m.stride),
)
_SVM_MODULE = ModuleInfo(
    tnn.SVMLoss,
    lambda case: tnn.SVMLoss(),
    args=_scores_args,
    flavor={"N": 4, "C": 5},
    functional=lambda m, x, y: tfn.svm_loss(x, y),
    builtin=lambda m: nn.MultiMarginLoss(),
    # CS231n sums the hinge terms over the classes: C * multi_margin_loss (builtin_impl.svm_loss)
    builtin_call=lambda b, x, y: x.shape[1] * b(x, y),
)
_SOFTMAX_MODULE = ModuleInfo(
    tnn.SoftmaxLoss,
    lambda case: tnn.SoftmaxLoss(),
    args=_scores_args,
    flavor={"N": 4, "C": 5},
    functional=lambda m, x, y: tfn.softmax_loss(x, y),
    builtin=lambda m: nn.CrossEntropyLoss(),
)
_FLATTEN_MODULE = ModuleInfo(
    tnn.Flatten, lambda case: tnn.Flatten(), builtin=lambda m: nn.Flatten()
)


# ----------------------------------------------------------------------------------------------
# Bad inputs (the same error from both twins)
# ----------------------------------------------------------------------------------------------


def _set_input(name, fn):
    def mutate(case):
        case.inputs[name] = fn(case.inputs[name])

    return mutate


def _set_param(dict_name, key, value):
    def mutate(case):
        case.consts[dict_name][key] = value

    return mutate


def _del_param(dict_name, key):
    def mutate(case):
        del case.consts[dict_name][key]

    return mutate


def _set_const(key, fn):
    def mutate(case):
        case.consts[key] = fn(case)

    return mutate


_X_INT = BadInput(
    "x integer dtype", _set_input("x", lambda x: np.ones(x.shape, np.int64)), "floating-point"
)

_AFFINE_BAD = (
    BadInput(
        "w rows != prod(x.shape[1:])",
        _set_input("w", lambda w: np.vstack([w, w[:1]])),
        "w must have shape",
    ),
    BadInput("b wrong length", _set_input("b", lambda b: np.append(b, 0.0)), "b must have shape"),
    BadInput("w 1-D", _set_input("w", lambda w: w.ravel()), "w must have 2 dimensions"),
)

_BN_BAD = (
    _X_INT,
    BadInput("gamma wrong shape", _set_input("gamma", lambda g: np.append(g, 1.0)), "gamma"),
    BadInput("beta 2-D", _set_input("beta", lambda b: b[None]), "beta"),
    BadInput("x 3-D", _set_input("x", lambda x: x[:, :, None]), "x must have 2 dimensions"),
    BadInput("mode missing", _del_param("bn_param", "mode"), "mode"),
    BadInput("mode unknown", _set_param("bn_param", "mode", "eval"), "mode"),
    BadInput(
        "running_mean wrong shape",
        _set_param("bn_param", "running_mean", np.zeros(7)),
        "running_mean",
    ),
)

_SPATIAL_BN_BAD = (
    _X_INT,
    BadInput("gamma (1, C, 1, 1)", _set_input("gamma", lambda g: g.reshape(1, -1, 1, 1)), "gamma"),
    BadInput(
        "x 2-D", _set_input("x", lambda x: x.reshape(x.shape[0], -1)), "x must have 4 dimensions"
    ),
    BadInput("mode missing", _del_param("bn_param", "mode"), "mode"),
)

_LAYERNORM_BAD = (
    BadInput("beta wrong shape", _set_input("beta", lambda b: np.append(b, 0.0)), "beta"),
    BadInput("x 1-D", _set_input("x", lambda x: x[0]), "x must have 2 dimensions"),
    BadInput("eps negative", _set_param("ln_param", "eps", -1.0), "eps"),
)

_GROUPNORM_BAD = (
    BadInput("G does not divide C", _set_const("G", lambda c: c.inputs["x"].shape[1] + 1), "G="),
    BadInput("G zero", _set_const("G", lambda c: 0), "G must be >= 1"),
    BadInput("gamma (C,)", _set_input("gamma", lambda g: g.ravel()), "gamma"),
)

_DROPOUT_BAD = (
    BadInput("p = 0 (keep prob)", _set_param("dropout_param", "p", 0.0), "keep probability"),
    BadInput("p > 1", _set_param("dropout_param", "p", 1.5), "keep probability"),
    BadInput("mode missing", _del_param("dropout_param", "mode"), "mode"),
)

_CONV_BAD = (
    _X_INT,
    BadInput(
        "channels of w != C",
        _set_input("w", lambda w: np.concatenate([w, w], axis=1)),
        "input channels",
    ),
    BadInput("b wrong length", _set_input("b", lambda b: np.append(b, 0.0)), "b must have shape"),
    BadInput(
        "filter larger than padded input",
        _set_input("w", lambda w: np.zeros((*w.shape[:2], 20, 1))),
        "larger than the padded",
    ),
    BadInput("stride 0", _set_param("conv_param", "stride", 0), "stride"),
    BadInput("pad -1", _set_param("conv_param", "pad", -1), "pad"),
    BadInput("stride float", _set_param("conv_param", "stride", 1.5), "stride"),
    BadInput("stride missing", _del_param("conv_param", "stride"), "stride"),
)

_POOL_BAD = (
    _X_INT,
    BadInput(
        "window larger than input",
        _set_param("pool_param", "pool_height", 50),
        "larger than the input",
    ),
    BadInput("stride 0", _set_param("pool_param", "stride", 0), "stride"),
    BadInput("pool_width missing", _del_param("pool_param", "pool_width"), "pool_width"),
    BadInput("x 3-D", _set_input("x", lambda x: x[0]), "x must have 4 dimensions"),
)

_LOSS_BAD = (
    BadInput(
        "y out of range",
        _set_const("y", lambda c: c.consts["y"] + c.inputs["x"].shape[1]),
        "y must lie in",
    ),
    BadInput(
        "y negative",
        _set_const("y", lambda c: c.consts["y"] - c.inputs["x"].shape[1]),
        "y must lie in",
    ),
    BadInput(
        "y wrong length",
        _set_const("y", lambda c: np.append(c.consts["y"], 0)),
        "y must have shape",
    ),
    BadInput(
        "y float",
        _set_const("y", lambda c: c.consts["y"].astype(np.float64)),
        "integer class indices",
    ),
    BadInput("x 1-D", _set_input("x", lambda x: x[0]), "x must have 2 dimensions"),
)


# ----------------------------------------------------------------------------------------------
# The entries
# ----------------------------------------------------------------------------------------------


def _conv_relu_pool_apply(t, c):
    cp, pp = c["conv_param"], c["pool_param"]
    a = tf.Conv2dFunction.apply(t["x"], t["w"], t["b"], cp["stride"], cp["pad"])
    return tf.MaxPool2dFunction.apply(
        tf.ReLUFunction.apply(a), pp["pool_height"], pp["pool_width"], pp["stride"]
    )


def _conv_relu_pool_builtin(t, c):
    return _pool_builtin({"x": bf.relu(_conv_builtin(t, c))}, c)


_CONV_FLAVORS = (
    # batch of 1, non-square input, stride 3 > a 1x2 kernel (rows/columns skipped)
    {"N": 1, "HW": (5, 7), "kernel": (1, 2), "stride": 3, "pad": 0},
    # 1x1 kernel with padding (the output's border sees only zeros and the bias)
    {"kernel": (1, 1), "pad": 2},
    # kernel = the whole padded input: a 1x1 output
    {"HW": (3, 4), "kernel": (5, 6), "pad": 1, "stride": 2},
    # 1x1 maps: a 1x1 kernel, one input channel; a 3x3 kernel = the padded 1x1 map
    {"HW": (1, 1), "kernel": (1, 1), "pad": 0, "C": 1},
    {"HW": (1, 1), "kernel": (3, 3), "pad": 1},
    # an empty batch
    {"N": 0},
)
_POOL_FLAVORS = (
    {"HW": (4, 6), "pool": (2, 2), "stride": 2},  # windows tile the input (the reshape path)
    {"N": 1, "HW": (7, 5), "pool": (2, 1), "stride": 3},  # stride > window: gaps, leftovers
    {"HW": (5, 5), "pool": (3, 3), "stride": 1},  # overlapping windows accumulate
    {"HW": (1, 1), "pool": (1, 1), "stride": 1},  # a 1x1 map
    {"HW": (3, 4), "pool": (3, 4), "stride": 5},  # one window = the whole map
    {"N": 0, "HW": (4, 4), "pool": (2, 2), "stride": 2},  # an empty batch
)


def _conv_spec(
    name,
    module,
    forward,
    backward,
    *,
    make_case=None,
    flavors=_CONV_FLAVORS,
    gradcheck=False,
    conversion="F.conv2d(x, w, b, stride, padding=pad)",
    algorithm="auto",
    nn_module=None,
    bench=None,
):
    """A numpy conv variant against the torch Function run with one of its algorithms
    (each algorithm gradchecked once)."""
    return OpSpec(
        name=name,
        make_case=make_case or (lambda rng, dtype, **kw: _conv_case(rng, dtype, max_hw=9, **kw)),
        flavors=flavors,
        numpy_forward_backward=_numpy_pair(module, forward, backward, _xs_and("conv_param")),
        torch_impl_fn=lambda t, c: _conv_apply(t, c, algorithm),
        torch_functional_fn=lambda t, c: tfn.conv(t["x"], t["w"], t["b"], c["conv_param"]),
        builtin_fn=_conv_builtin,
        bad_inputs=_CONV_BAD,
        conversion=conversion,
        gradcheck=gradcheck,
        module=nn_module,
        bench=bench,
    )


def _pool_spec(
    name,
    module,
    forward,
    backward,
    *,
    gradcheck=False,
    conversion="F.max_pool2d(x, (pool_height, pool_width), stride)",
    nn_module=None,
    bench=None,
):
    """A numpy max-pool variant against the one torch Function (gradchecked on max_pool_naive)."""
    return OpSpec(
        name=name,
        make_case=_pool_case,
        flavors=_POOL_FLAVORS,
        numpy_forward_backward=_numpy_pair(module, forward, backward, _xs_and("pool_param")),
        torch_impl_fn=_pool_apply,
        torch_functional_fn=lambda t, c: tfn.max_pool(t["x"], c["pool_param"]),
        builtin_fn=_pool_builtin,
        bad_inputs=_POOL_BAD,
        conversion=conversion,
        gradcheck=gradcheck,
        module=nn_module,
        bench=bench,
    )


def _bn_entry(name, backward, mode, spatial, flavors, module=None, bench=None):
    make = _spatial_bn_case if spatial else _batchnorm_case
    np_forward = "spatial_batchnorm_forward" if spatial else "batchnorm_forward"
    fn = tf.BatchNormFunction
    func = tfn.spatial_batchnorm if spatial else tfn.batchnorm
    return OpSpec(
        name=name,
        make_case=lambda rng, dtype, **kw: make(rng, dtype, mode, **kw),
        make_numerical_case=lambda rng, dtype, **kw: make(rng, dtype, mode, numerical=True, **kw),
        flavors=flavors,
        numpy_forward_backward=_numpy_pair(npl, np_forward, backward, _xs_and("bn_param")),
        torch_impl_fn=_bn_apply(fn),
        torch_functional_fn=lambda t, c: func(t["x"], t["gamma"], t["beta"], c["bn_param"]),
        builtin_fn=_bn_builtin,
        bad_inputs=_SPATIAL_BN_BAD if spatial else _BN_BAD,
        conversion="F.batch_norm(momentum = 1 - CS231n momentum); outputs/gradients identical "
        "(running_var conversion checked in test_batchnorm.py)",
        module=module,
        bench=bench,
    )


def _elementwise_entry(name, function, builtin, module, bench=None):
    return OpSpec(
        name=name,
        make_case=_elementwise_case,
        flavors=({"N": 1}, {"N": 0}, {"dims": ()}),
        numpy_forward_backward=_numpy_pair(npl, f"{name}_forward", f"{name}_backward", _xs),
        torch_impl_fn=lambda t, c: getattr(tf, function).apply(t["x"]),
        torch_functional_fn=lambda t, c: getattr(tfn, name)(t["x"]),
        builtin_fn=builtin,
        module=module,
        bench=bench,
    )


# ----------------------------------------------------------------------------------------------
# Benchmark shapes (benchmarks/ops.py): float32 cases drawn as training draws them
# ----------------------------------------------------------------------------------------------


def _f32(rng, *shapes, scale=1.0) -> list[np.ndarray]:
    return [rng.standard_normal(s, dtype=np.float32) * np.float32(scale) for s in shapes]


def _bench_conv(rng, N, C, H, W, F, k, stride, pad) -> Case:
    x, w, b = _f32(rng, (N, C, H, W), (F, C, k, k), (F,))
    w /= np.sqrt(C * k * k)
    return Case({"x": x, "w": w, "b": b}, {"conv_param": {"stride": stride, "pad": pad}})


def _conv_out(H, W, k, stride, pad) -> tuple[int, int]:
    return 1 + (H + 2 * pad - k) // stride, 1 + (W + 2 * pad - k) // stride


def _conv_flops(N, C, H, W, F, k, stride, pad) -> float:
    """Forward + both backward GEMMs: 3 x 2*N*F*C*k*k*H'*W'."""
    Ho, Wo = _conv_out(H, W, k, stride, pad)
    return 3 * 2.0 * N * F * C * k * k * Ho * Wo


def _conv_gemms(N, C, H, W, F, k, stride, pad) -> tuple:
    """im2col: out = W (F, K) @ cols (K, M); dW = dout (F, M) @ cols^T (M, K);
    dcols = W^T (K, F) @ dout (F, M)."""
    Ho, Wo = _conv_out(H, W, k, stride, pad)
    K, M = C * k * k, N * Ho * Wo
    return ((F, K, M), (F, M, K), (K, F, M))


_CONV_BENCH = Bench(
    "conv",
    _bench_conv,
    lambda N, C, H, W, F, k, stride, pad: f"N={N} {C}->{F} {H}x{W} k{k} s{stride} p{pad}",
    # CS231n's ThreeLayerConvNet conv (the notebook's batch 50); the CNN's own are read from
    # the training model
    shapes=(
        BenchShape(
            "three-layer",
            {"N": 50, "C": 3, "H": 32, "W": 32, "F": 32, "k": 7, "stride": 1, "pad": 3},
            {"N": 2, "C": 3, "H": 32, "W": 32, "F": 4, "k": 7, "stride": 1, "pad": 3},
        ),
    ),
    flops=_conv_flops,
    gemms=_conv_gemms,
)


def _bench_pool(rng, N, C, H, W, size, stride) -> Case:
    (x,) = _f32(rng, (N, C, H, W))
    pool_param = {"pool_height": size, "pool_width": size, "stride": stride}
    return Case({"x": x}, {"pool_param": pool_param})


_POOL_BENCH = Bench(
    "max_pool",
    _bench_pool,
    lambda N, C, H, W, size, stride: f"N={N} C={C} {H}x{W} {size}x{size} s{stride}",
    shapes=(
        BenchShape(
            "three-layer",
            {"N": 50, "C": 32, "H": 32, "W": 32, "size": 2, "stride": 2},
            {"N": 2, "C": 4, "H": 32, "W": 32, "size": 2, "stride": 2},
        ),
    ),
)


def _bench_bn(rng, shape) -> Case:
    """Training-mode batchnorm of x of ``shape``: per column of (N, D), per channel of
    (N, C, H, W); CS231n's default momentum and eps."""
    C = shape[1]
    x, gamma, beta = _f32(rng, shape, (C,), (C,))
    bn_param = {
        "mode": "train",
        "eps": 1e-5,
        "momentum": 0.9,
        "running_mean": np.zeros(C, np.float32),
        "running_var": np.ones(C, np.float32),
    }
    return Case({"x": x, "gamma": gamma + 1, "beta": beta}, {"bn_param": bn_param})


_FC_SIZES = BenchShape("cs231n", {"N": 256, "D": 1024}, {"N": 4, "D": 16})
_BATCHNORM_BENCH = Bench(
    "batchnorm",
    lambda rng, N, D: _bench_bn(rng, (N, D)),
    lambda N, D: f"N={N} D={D}",
    shapes=(_FC_SIZES,),
)
_SPATIAL_BN_BENCH = Bench(
    "spatial_batchnorm",
    lambda rng, N, C, H, W: _bench_bn(rng, (N, C, H, W)),
    lambda N, C, H, W: f"N={N} C={C} {H}x{W}",
)


def _bench_layernorm(rng, N, D) -> Case:
    x, gamma, beta = _f32(rng, (N, D), (D,), (D,))
    return Case({"x": x, "gamma": gamma + 1, "beta": beta}, {"ln_param": {"eps": 1e-5}})


_LAYERNORM_BENCH = Bench(
    "layernorm", _bench_layernorm, lambda N, D: f"N={N} D={D}", shapes=(_FC_SIZES,)
)


def _bench_groupnorm(rng, N, C, H, W, G) -> Case:
    x, gamma, beta = _f32(rng, (N, C, H, W), (1, C, 1, 1), (1, C, 1, 1))
    inputs = {"x": x, "gamma": gamma + 1, "beta": beta}
    return Case(inputs, {"G": G, "gn_param": {"eps": 1e-5}})


_GROUPNORM_BENCH = Bench(
    "groupnorm", _bench_groupnorm, lambda N, C, H, W, G: f"N={N} C={C} {H}x{W} G={G}"
)
_RELU_BENCH = Bench(
    "relu",
    lambda rng, shape: Case({"x": _f32(rng, shape)[0]}),
    lambda shape: "x" + "x".join(map(str, shape)),
)


def _bench_affine(rng, N, D, M) -> Case:
    x, w, b = _f32(rng, (N, D), (D, M), (M,))
    w /= np.sqrt(D)
    return Case({"x": x, "w": w, "b": b})


_AFFINE_BENCH = Bench(
    "affine",
    _bench_affine,
    lambda N, D, M: f"N={N} {D}->{M}",
    shapes=(
        # ThreeLayerConvNet's first affine (32 filters of 16x16 after the pool -> 100)
        BenchShape(
            "three-layer",
            {"N": 50, "D": 32 * 16 * 16, "M": 100},
            {"N": 2, "D": 4 * 16 * 16, "M": 4},
        ),
        BenchShape("cs231n", {"N": 256, "D": 3072, "M": 512}, {"N": 4, "D": 16, "M": 8}),
    ),
    flops=lambda N, D, M: 3 * 2.0 * N * D * M,
)


def _bench_scores(rng, N, C) -> Case:
    (x,) = _f32(rng, (N, C), scale=3.0)
    return Case({"x": x}, {"y": rng.integers(0, C, N)})


_SOFTMAX_BENCH = Bench(
    "softmax_loss",
    _bench_scores,
    lambda N, C: f"N={N} C={C}",
    shapes=(BenchShape("cs231n", {"N": 256, "C": 1000}, {"N": 4, "C": 20}),),
)


OPS = [
    OpSpec(
        name="affine",
        make_case=_affine_case,
        # batch of 1; zero-size batch, features (x (N, 0): out = b) and outputs
        flavors=({"N": 1}, {"N": 0}, {"dims": (0,)}, {"M": 0}),
        numpy_forward_backward=_numpy_pair(npl, "affine_forward", "affine_backward", _xs),
        torch_impl_fn=lambda t, c: tf.AffineFunction.apply(t["x"], t["w"], t["b"]),
        torch_functional_fn=lambda t, c: tfn.affine(t["x"], t["w"], t["b"]),
        builtin_fn=lambda t, c: bf.affine(t["x"], t["w"], t["b"]),
        bad_inputs=_AFFINE_BAD,
        conversion="F.linear(x.reshape(N, D), w.T, b)",
        module=_AFFINE_MODULE,
        bench=_AFFINE_BENCH,
    ),
    _elementwise_entry(
        "relu",
        "ReLUFunction",
        lambda t, c: bf.relu(t["x"]),
        _elementwise_module(tnn.ReLU, nn.ReLU, tfn.relu),
        _RELU_BENCH,
    ),
    _elementwise_entry(
        "sigmoid",
        "SigmoidFunction",
        lambda t, c: torch.sigmoid(t["x"]),
        _elementwise_module(tnn.Sigmoid, nn.Sigmoid, tfn.sigmoid),
    ),
    _elementwise_entry(
        "tanh",
        "TanhFunction",
        lambda t, c: torch.tanh(t["x"]),
        _elementwise_module(tnn.Tanh, nn.Tanh, tfn.tanh),
    ),
    OpSpec(
        name="flatten",
        make_case=_elementwise_case,
        # a batch of 1; an empty batch keeps its (0, D) shape
        flavors=({"N": 1}, {"N": 0}),
        torch_impl_fn=lambda t, c: tnn.Flatten()(t["x"]),
        builtin_fn=lambda t, c: torch.flatten(t["x"], 1),
        conversion="torch.flatten(x, 1): x (N, d1..dk) -> (N, d1*...*dk), as affine flattens",
        module=_FLATTEN_MODULE,
    ),
    # N = 0: an empty batch (empty output, zero dgamma/dbeta, running statistics unchanged).
    _bn_entry(
        "batchnorm",
        "batchnorm_backward",
        "train",
        False,
        ({"N": 3}, {"D": 1}, {"N": 0}),
        _bn_module(tnn.BatchNorm, nn.BatchNorm1d, tfn.batchnorm),
    ),
    _bn_entry(
        "batchnorm_alt",
        "batchnorm_backward_alt",
        "train",
        False,
        ({"N": 3}, {"D": 1}, {"N": 0}),
        bench=_BATCHNORM_BENCH,
    ),
    _bn_entry("batchnorm_test", "batchnorm_backward", "test", False, ({"N": 1}, {"N": 0})),
    # 1x1 maps: each channel's statistics are over the batch alone; 0 x 2 maps: no values.
    _bn_entry(
        "spatial_batchnorm",
        "spatial_batchnorm_backward",
        "train",
        True,
        ({"N": 1}, {"N": 0}, {"N": 3, "HW": (1, 1)}, {"N": 2, "HW": (0, 2)}),
        _bn_module(tnn.SpatialBatchNorm, nn.BatchNorm2d, tfn.spatial_batchnorm),
        _SPATIAL_BN_BENCH,
    ),
    _bn_entry(
        "spatial_batchnorm_test",
        "spatial_batchnorm_backward",
        "test",
        True,
        ({"N": 1}, {"N": 0}, {"HW": (1, 1)}),
    ),
    OpSpec(
        name="layernorm",
        make_case=_layernorm_case,
        make_numerical_case=lambda rng, dtype, **kw: _layernorm_case(rng, dtype, True, **kw),
        flavors=({"N": 1}, {"N": 0}),
        numpy_forward_backward=_numpy_pair(
            npl, "layernorm_forward", "layernorm_backward", _xs_and("ln_param")
        ),
        torch_impl_fn=lambda t, c: tf.LayerNormFunction.apply(
            t["x"], t["gamma"], t["beta"], c["ln_param"]["eps"]
        ),
        torch_functional_fn=lambda t, c: tfn.layernorm(
            t["x"], t["gamma"], t["beta"], c["ln_param"]
        ),
        builtin_fn=lambda t, c: bf.layernorm(t["x"], t["gamma"], t["beta"], c["ln_param"]["eps"]),
        bad_inputs=_LAYERNORM_BAD,
        module=_LAYERNORM_MODULE,
        bench=_LAYERNORM_BENCH,
    ),
    OpSpec(
        name="spatial_groupnorm",
        make_case=_groupnorm_case,
        make_numerical_case=lambda rng, dtype, **kw: _groupnorm_case(rng, dtype, True, **kw),
        # G = 1 (layernorm over C, H, W); one channel per group (G = C, instance norm), batch
        # of 1; 1x1 maps (a group is its channels alone); an empty batch (empty output, as
        # F.group_norm).
        flavors=({"G": 1}, {"per_group": 1, "N": 1}, {"HW": (1, 1), "per_group": 3}, {"N": 0}),
        numpy_forward_backward=_numpy_pair(
            npl, "spatial_groupnorm_forward", "spatial_groupnorm_backward", _xs_and("G", "gn_param")
        ),
        torch_impl_fn=lambda t, c: tf.SpatialGroupNormFunction.apply(
            t["x"], t["gamma"], t["beta"], c["G"], c["gn_param"]["eps"]
        ),
        torch_functional_fn=lambda t, c: tfn.spatial_groupnorm(
            t["x"], t["gamma"], t["beta"], c["G"], c["gn_param"]
        ),
        builtin_fn=_groupnorm_builtin,
        bad_inputs=_GROUPNORM_BAD,
        conversion="F.group_norm(x, G, gamma.reshape(C), beta.reshape(C), eps)",
        module=_GROUPNORM_MODULE,
        bench=_GROUPNORM_BENCH,
    ),
    OpSpec(
        name="dropout",
        make_case=_dropout_case,
        flavors=({"N": 1, "p": 1.0}, {"N": 0}, {"dims": ()}),
        numpy_forward_backward=_numpy_pair(
            npl, "dropout_forward", "dropout_backward", _xs_and("dropout_param")
        ),
        torch_impl_fn=_dropout_apply,
        torch_functional_fn=lambda t, c: tfn.dropout(t["x"], c["dropout_param"]),
        builtin_fn=_dropout_builtin,
        bad_inputs=_DROPOUT_BAD,
        module=_DROPOUT_MODULE,
        conversion="shared mask = CS231n's seeded draw (rand < p) / p, p = KEEP probability; "
        "F.dropout's drop probability is 1 - p",
    ),
    OpSpec(
        name="dropout_test",
        make_case=lambda rng, dtype, **kw: _dropout_case(rng, dtype, "test", **kw),
        flavors=({}, {"N": 0}, {"dims": ()}),
        numpy_forward_backward=_numpy_pair(
            npl, "dropout_forward", "dropout_backward", _xs_and("dropout_param")
        ),
        torch_impl_fn=_dropout_apply,
        torch_functional_fn=lambda t, c: tfn.dropout(t["x"], c["dropout_param"]),
        builtin_fn=_dropout_builtin,
        conversion="test mode is the identity in both",
    ),
    # torch_impl's three conv algorithms (im2col, shifted products, gathered windows), each on
    # every random case.
    _conv_spec(
        "conv_naive",
        npl,
        "conv_forward_naive",
        "conv_backward_naive",
        make_case=_conv_case,
        gradcheck=True,
        algorithm="im2col",
        conversion="F.conv2d(x, w, b, stride, padding=pad): both cross-correlate, floor rule",
        nn_module=_CONV_MODULE,
    ),
    _conv_spec(
        "conv_shifted",
        npl,
        "conv_forward_naive",
        "conv_backward_naive",
        make_case=_conv_case,
        gradcheck=True,
        algorithm="shifted",
    ),
    _conv_spec(
        "conv_gathered",
        npl,
        "conv_forward_naive",
        "conv_backward_naive",
        make_case=_conv_case,
        gradcheck=True,
        algorithm="gathered",
    ),
    _conv_spec(
        "conv_fast",
        npf,
        "conv_forward_fast",
        "conv_backward_fast",
        flavors=({"HW": (8, 8), "kernel": (3, 3), "stride": 1, "pad": 1}, *_CONV_FLAVORS),
        bench=_CONV_BENCH,
    ),
    _pool_spec(
        "max_pool_naive",
        npl,
        "max_pool_forward_naive",
        "max_pool_backward_naive",
        gradcheck=True,
        conversion="F.max_pool2d(x, (pool_height, pool_width), stride): no padding, floor rule",
        nn_module=_POOL_MODULE,
    ),
    _pool_spec(
        "max_pool_fast",
        npf,
        "max_pool_forward_fast",
        "max_pool_backward_fast",
        bench=_POOL_BENCH,
    ),
    # The other variants of numpy_impl.fast_layers (the course's names): same torch Functions.
    _conv_spec("conv_strides", npf, "conv_forward_strides", "conv_backward_strides"),
    _pool_spec("max_pool_im2col", npf, "max_pool_forward_im2col", "max_pool_backward_im2col"),
    # Sandwich layers of numpy_impl.layer_utils against the same chain of torch_impl Functions
    # and of builtins.
    OpSpec(
        name="affine_relu",
        make_case=_affine_relu_case,
        flavors=({"N": 1},),
        numpy_forward_backward=_numpy_pair(npu, "affine_relu_forward", "affine_relu_backward", _xs),
        torch_impl_fn=lambda t, c: tf.ReLUFunction.apply(
            tf.AffineFunction.apply(t["x"], t["w"], t["b"])
        ),
        builtin_fn=lambda t, c: bf.relu(bf.affine(t["x"], t["w"], t["b"])),
        conversion="F.relu(F.linear(x.reshape(N, -1), w.T, b))",
        gradcheck=False,  # a chain of Functions gradchecked one by one above
    ),
    OpSpec(
        name="conv_relu",
        make_case=_conv_relu_case,
        flavors=_CONV_FLAVORS,
        numpy_forward_backward=_numpy_pair(
            npu, "conv_relu_forward", "conv_relu_backward", _xs_and("conv_param")
        ),
        torch_impl_fn=lambda t, c: tf.ReLUFunction.apply(_conv_apply(t, c)),
        builtin_fn=lambda t, c: bf.relu(_conv_builtin(t, c)),
        conversion="F.relu(F.conv2d(x, w, b, stride, padding=pad))",
        gradcheck=False,  # a chain of Functions gradchecked one by one above
    ),
    OpSpec(
        name="conv_relu_pool",
        make_case=_conv_relu_pool_case,
        make_numerical_case=lambda rng, dtype, **kw: _conv_relu_pool_case(
            rng, dtype, gap=2e-2, **kw
        ),
        # Piecewise linear: between kinks (kept > 2h away) the stencil is exact up to round-off,
        # ~1e-13 absolute at h = 1e-3, which resolves the entries ~1e-5 of the largest that a
        # small weight makes (two-point rule at h = 1e-5: ~1e-11).
        fourth_order=True,
        flavors=({"same": True, "N": 1}, {"same": True}),
        numpy_forward_backward=_numpy_pair(
            npu,
            "conv_relu_pool_forward",
            "conv_relu_pool_backward",
            _xs_and("conv_param", "pool_param"),
        ),
        torch_impl_fn=_conv_relu_pool_apply,
        builtin_fn=_conv_relu_pool_builtin,
        conversion="F.max_pool2d(F.relu(F.conv2d(x, w, b, stride, pad)), window, stride)",
        gradcheck=False,  # a chain of Functions gradchecked one by one above
    ),
    OpSpec(
        name="affine_norm_relu",
        make_case=_affine_norm_relu_case,
        # the finite-difference cases where the builtin's gradient has no tiny entry whatever
        # the upstream gradient (a small weight, a feature nearly off): see
        # checks.case_without_tiny_gradients
        make_numerical_case=lambda rng, dtype, **kw: case_without_tiny_gradients(
            lambda: _affine_norm_relu_case(rng, dtype, numerical=True, **kw),
            _affine_norm_relu_builtin,
            rng,
        ),
        # each normalization; dropout without one; test mode (running statistics, dropout the
        # identity) with a batch of 1; an empty batch
        flavors=(
            {"normalization": "batchnorm", "dropout": False},
            {"normalization": "layernorm", "dropout": True},
            {"normalization": None, "dropout": True},
            {"normalization": "batchnorm", "dropout": True, "mode": "test", "N": 1},
            {"normalization": "layernorm", "N": 0},
        ),
        numpy_forward_backward=_affine_norm_relu_numpy,
        torch_impl_fn=_affine_norm_relu_apply,
        builtin_fn=_affine_norm_relu_builtin,
        grad_inputs=_grads_but_bias_before_batchnorm,
        conversion="F.relu(F.batch_norm | F.layer_norm (F.linear(x.reshape(N, D), w.T, b))) "
        "* dropout mask (shared); batchnorm's momentum = 1 - CS231n's",
        gradcheck=False,  # a chain of Functions gradchecked one by one above
    ),
    OpSpec(
        name="conv_bn_relu",
        make_case=_conv_bn_relu_case,
        # (seen: a 1x1 filter with one weight ~1e-3 of the others: a whole channel of dx tiny,
        # rel_error 4.8e-7, NN_TWINS_EXAMPLES=50 NN_TWINS_SEED=0)
        make_numerical_case=lambda rng, dtype, **kw: case_without_tiny_gradients(
            lambda: _conv_bn_relu_case(rng, dtype, numerical=True, **kw),
            _conv_bn_relu_builtin,
            rng,
        ),
        # a 'same' 3x3 conv on one image (CS231n's), stride > kernel, 1x1 maps, test mode with
        # a batch of 1, an empty batch
        flavors=(
            {"N": 1, "HW": (4, 6), "kernel": (3, 3), "stride": 1, "pad": 1},
            {"HW": (5, 7), "kernel": (1, 2), "stride": 3, "pad": 0},
            {"N": 4, "HW": (1, 1), "kernel": (1, 1), "pad": 0},
            {"mode": "test", "N": 1},
            {"N": 0},
        ),
        numpy_forward_backward=_numpy_pair(
            npu, "conv_bn_relu_forward", "conv_bn_relu_backward", _xs_and("conv_param", "bn_param")
        ),
        torch_impl_fn=_conv_bn_relu_apply,
        builtin_fn=_conv_bn_relu_builtin,
        grad_inputs=_grads_but_bias_before_batchnorm,
        conversion="F.relu(F.batch_norm(F.conv2d(x, w, b, stride, pad), momentum = 1 - CS231n's))",
        gradcheck=False,  # a chain of Functions gradchecked one by one above
    ),
    OpSpec(
        name="svm_loss",
        make_case=lambda rng, dtype, **kw: _scores_case(rng, dtype, True, True, **kw),
        make_numerical_case=lambda rng, dtype, **kw: _scores_case(rng, dtype, False, True, **kw),
        flavors=({"N": 1, "C": 2}, {"C": 1}),  # one class: loss and gradient 0
        numpy_forward_backward=_numpy_loss("svm_loss"),
        torch_impl_fn=lambda t, c: tf.SVMLossFunction.apply(t["x"], c["y"]),
        torch_functional_fn=lambda t, c: tfn.svm_loss(t["x"], c["y"]),
        builtin_fn=_svm_builtin,
        bad_inputs=_LOSS_BAD,
        conversion="CS231n loss = C * F.multi_margin_loss(x, y, p=1, margin=1)",
        module=_SVM_MODULE,
    ),
    OpSpec(
        name="softmax_loss",
        make_case=lambda rng, dtype, **kw: _scores_case(rng, dtype, True, **kw),
        # Finite differences of a loss of ~1e3 lose ~1e-8 absolute to round-off: moderate logits.
        make_numerical_case=lambda rng, dtype, **kw: _scores_case(rng, dtype, False, **kw),
        flavors=({"N": 1, "C": 2}, {"C": 1}),  # one class: loss and gradient 0
        numpy_forward_backward=_numpy_loss("softmax_loss"),
        torch_impl_fn=lambda t, c: tf.SoftmaxLossFunction.apply(t["x"], c["y"]),
        torch_functional_fn=lambda t, c: tfn.softmax_loss(t["x"], c["y"]),
        builtin_fn=lambda t, c: bf.softmax_loss(t["x"], c["y"]),
        bad_inputs=_LOSS_BAD,
        conversion="F.cross_entropy(x, y) (mean over N): identical definition",
        module=_SOFTMAX_MODULE,
        bench=_SOFTMAX_BENCH,
    ),
]
