"""Benchmark cases of the fully connected net's other ops: ReLU, affine, softmax loss."""

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


def relu_case(shape, group, count=1):
    """ReLU of x of any ``shape``."""

    def make(backend):
        x, dout = random_arrays(3, shape, shape)
        if backend == "numpy":
            from numpy_impl import layers

            return numpy_fwd_bwd(lambda: layers.relu_forward(x), layers.relu_backward, dout)
        import torch
        import torch.nn.functional as tF

        (xt,) = grad_leaves(x)
        if backend == "torch":
            from torch_impl.functions import ReLUFunction

            fwd = lambda: ReLUFunction.apply(xt)
        else:
            fwd = lambda: tF.relu(xt)
        return torch_fwd_bwd(fwd, (xt,), torch.tensor(dout))

    return BenchmarkCase(
        "relu",
        "x" + "x".join(map(str, shape)),
        group,
        make,
        count=count,
        targets=speed_targets("relu", group),
    )


def affine_case(N, D, M, group):
    """Affine layer: x (N, D) @ w (D, M) + b (M,)."""

    def make(backend):
        x, w, b, dout = random_arrays(7, (N, D), (D, M), (M,), (N, M))
        w *= 1.0 / math.sqrt(D)
        if backend == "numpy":
            from numpy_impl import layers

            return numpy_fwd_bwd(
                lambda: layers.affine_forward(x, w, b), layers.affine_backward, dout
            )
        import torch
        import torch.nn.functional as tF

        xt, wt, bt = grad_leaves(x, w, b)
        if backend == "torch":
            from torch_impl.functions import AffineFunction

            fwd = lambda: AffineFunction.apply(xt, wt, bt)
        else:
            # w is CS231n's (D, M); nn.Linear's weight is its transpose.
            fwd = lambda: tF.linear(xt, wt.t(), bt)
        return torch_fwd_bwd(fwd, (xt, wt, bt), torch.tensor(dout))

    return BenchmarkCase(
        "affine",
        f"N={N} {D}->{M}",
        group,
        make,
        flops=3 * 2.0 * N * D * M,
        targets=speed_targets("affine", group),
    )


def softmax_loss_case(N, C, group):
    """Softmax loss of scores (N, C) and labels (N,) (loss and dx in one call)."""

    def make(backend):
        import numpy as np

        (x,) = random_arrays(8, (N, C), scale=3.0)
        y = np.random.default_rng(8).integers(0, C, N)
        if backend == "numpy":
            from numpy_impl import layers

            return lambda: layers.softmax_loss(x, y)  # returns (loss, dx): fwd+bwd in one
        import torch
        import torch.nn.functional as tF

        (xt,) = grad_leaves(x)
        yt = torch.tensor(y)
        if backend == "torch":
            from torch_impl.functions import SoftmaxLossFunction

            fwd = lambda: SoftmaxLossFunction.apply(xt, yt)
        else:
            fwd = lambda: tF.cross_entropy(xt, yt)
        return torch_fwd_bwd(fwd, (xt,))

    return BenchmarkCase(
        "softmax_loss", f"N={N} C={C}", group, make, targets=speed_targets("softmax_loss", group)
    )
