"""Benchmark cases of the convolutional ops: conv, max pool, and the float32 GEMM that an
im2col conv is made of (the machine's matmul rate, which the conv rows are compared to)."""

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


def conv_case(N, C, H, W, F, k, stride, pad, group, count=1):
    """Conv of x (N, C, H, W) with F filters (F, C, k, k) and bias (F,); ``count``: how
    many convs of this shape the CNN has."""
    Ho, Wo = 1 + (H + 2 * pad - k) // stride, 1 + (W + 2 * pad - k) // stride
    fwd_flops = 2.0 * N * F * C * k * k * Ho * Wo

    def make(backend):
        x, w, b, dout = random_arrays(1, (N, C, H, W), (F, C, k, k), (F,), (N, F, Ho, Wo))
        w *= 1.0 / math.sqrt(C * k * k)
        if backend == "numpy":
            from numpy_impl import fast_layers as fl

            cp = {"stride": stride, "pad": pad}
            return numpy_fwd_bwd(
                lambda: fl.conv_forward_fast(x, w, b, cp), fl.conv_backward_fast, dout
            )
        import torch
        import torch.nn.functional as tF

        xt, wt, bt = grad_leaves(x, w, b)
        if backend == "torch":
            from torch_impl.functions import Conv2dFunction

            fwd = lambda: Conv2dFunction.apply(xt, wt, bt, stride, pad)
        else:
            fwd = lambda: tF.conv2d(xt, wt, bt, stride=stride, padding=pad)
        return torch_fwd_bwd(fwd, (xt, wt, bt), torch.tensor(dout))

    name = f"N={N} {C}->{F} {H}x{W} k{k} s{stride} p{pad}"
    K, M = C * k * k, N * Ho * Wo
    # im2col: out = W (F, K) @ cols (K, M); dW = dout (F, M) @ cols^T (M, K);
    # dcols = W^T (K, F) @ dout (F, M).
    gemms = ((F, K, M), (F, M, K), (K, F, M))
    return BenchmarkCase(
        "conv",
        name,
        group,
        make,
        flops=3 * fwd_flops,
        count=count,
        targets=speed_targets("conv", group),
        gemms=gemms,
    )


def max_pool_case(N, C, H, W, size, stride, group, count=1):
    """Max pool of x (N, C, H, W), ``size`` x ``size`` windows."""
    Ho, Wo = 1 + (H - size) // stride, 1 + (W - size) // stride

    def make(backend):
        x, dout = random_arrays(2, (N, C, H, W), (N, C, Ho, Wo))
        if backend == "numpy":
            from numpy_impl import fast_layers as fl

            pp = {"pool_height": size, "pool_width": size, "stride": stride}
            return numpy_fwd_bwd(
                lambda: fl.max_pool_forward_fast(x, pp), fl.max_pool_backward_fast, dout
            )
        import torch
        import torch.nn.functional as tF

        (xt,) = grad_leaves(x)
        if backend == "torch":
            from torch_impl.functions import MaxPool2dFunction

            fwd = lambda: MaxPool2dFunction.apply(xt, size, size, stride)
        else:
            fwd = lambda: tF.max_pool2d(xt, size, stride)
        return torch_fwd_bwd(fwd, (xt,), torch.tensor(dout))

    return BenchmarkCase(
        "max_pool",
        f"N={N} C={C} {H}x{W} {size}x{size} s{stride}",
        group,
        make,
        count=count,
        targets=speed_targets("max_pool", group),
    )


def matmul_case(n):
    """The machine's float32 GEMM rate through each library (n x n @ n x n, out= preallocated).
    torch_impl's matmuls are torch's, so 'builtin' stands for both torch backends."""

    def make(backend):
        import numpy as np

        a, b = random_arrays(12, (n, n), (n, n))
        if backend == "numpy":
            c = np.empty((n, n), np.float32)
            return lambda: np.matmul(a, b, out=c)
        import torch

        at, bt, ct = torch.tensor(a), torch.tensor(b), torch.empty(n, n)
        return lambda: torch.mm(at, bt, out=ct)

    return BenchmarkCase("matmul", f"{n}x{n} @ {n}x{n}", "machine", make, flops=2.0 * n**3)
