"""Benchmark cases of the normalizations: batchnorm (per column and spatial), layernorm and
spatial groupnorm, all in training mode."""

from __future__ import annotations

from benchmarks.op_case import (
    BenchmarkCase,
    grad_leaves,
    numpy_fwd_bwd,
    random_arrays,
    speed_targets,
    torch_fwd_bwd,
)


def _bn_make(shape, spatial):
    """Batchnorm in training mode: x (N, D) per column, or (N, C, H, W) per channel."""
    D = shape[1]

    def make(backend):
        x, gamma, beta, dout = random_arrays(4, shape, (D,), (D,), shape)
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
            return numpy_fwd_bwd(fwd, bwd, dout)
        import torch
        import torch.nn.functional as tF

        xt, gt, bt = grad_leaves(x, gamma, beta)
        rm, rv = torch.zeros(D), torch.ones(D)
        if backend == "torch":
            from torch_impl import functions as fn

            Fn = fn.BatchNormFunction
            fwd = lambda: Fn.apply(xt, gt, bt, rm, rv, True, 0.9, 1e-5)
        else:
            # PyTorch's momentum weighs the batch statistic: CS231n's 0.9 is its 0.1.
            fwd = lambda: tF.batch_norm(xt, rm, rv, gt, bt, True, 0.1, 1e-5)
        return torch_fwd_bwd(fwd, (xt, gt, bt), torch.tensor(dout))

    return make


def batchnorm_case(N, D, group):
    """Batchnorm of x (N, D), per column (``batchnorm_backward_alt`` for numpy)."""
    return BenchmarkCase(
        "batchnorm",
        f"N={N} D={D}",
        group,
        _bn_make((N, D), False),
        targets=speed_targets("batchnorm", group),
    )


def spatial_batchnorm_case(N, C, H, W, group, count=1):
    """Spatial batchnorm of x (N, C, H, W), per channel."""
    return BenchmarkCase(
        "spatial_batchnorm",
        f"N={N} C={C} {H}x{W}",
        group,
        _bn_make((N, C, H, W), True),
        count=count,
        targets=speed_targets("spatial_batchnorm", group),
    )


def layernorm_case(N, D, group):
    """Layernorm of x (N, D), per row."""

    def make(backend):
        x, gamma, beta, dout = random_arrays(5, (N, D), (D,), (D,), (N, D))
        gamma += 1.0
        if backend == "numpy":
            from numpy_impl import layers

            return numpy_fwd_bwd(
                lambda: layers.layernorm_forward(x, gamma, beta, {}),
                layers.layernorm_backward,
                dout,
            )
        import torch
        import torch.nn.functional as tF

        xt, gt, bt = grad_leaves(x, gamma, beta)
        if backend == "torch":
            from torch_impl.functions import LayerNormFunction

            fwd = lambda: LayerNormFunction.apply(xt, gt, bt, 1e-5)
        else:
            fwd = lambda: tF.layer_norm(xt, (D,), gt, bt, 1e-5)
        return torch_fwd_bwd(fwd, (xt, gt, bt), torch.tensor(dout))

    return BenchmarkCase(
        "layernorm", f"N={N} D={D}", group, make, targets=speed_targets("layernorm", group)
    )


def groupnorm_case(N, C, H, W, G, group):
    """Spatial groupnorm of x (N, C, H, W) in G groups of C/G channels."""

    def make(backend):
        x, gamma, beta, dout = random_arrays(
            6, (N, C, H, W), (1, C, 1, 1), (1, C, 1, 1), (N, C, H, W)
        )
        gamma += 1.0
        if backend == "numpy":
            from numpy_impl import layers

            return numpy_fwd_bwd(
                lambda: layers.spatial_groupnorm_forward(x, gamma, beta, G, {}),
                layers.spatial_groupnorm_backward,
                dout,
            )
        import torch
        import torch.nn.functional as tF

        if backend == "torch":
            from torch_impl.functions import SpatialGroupNormFunction

            xt, gt, bt = grad_leaves(x, gamma, beta)
            fwd = lambda: SpatialGroupNormFunction.apply(xt, gt, bt, G, 1e-5)
        else:
            # F.group_norm takes (C,)-shaped weight and bias; same values.
            xt, gt, bt = grad_leaves(x, gamma.reshape(C), beta.reshape(C))
            fwd = lambda: tF.group_norm(xt, G, gt, bt, 1e-5)
        return torch_fwd_bwd(fwd, (xt, gt, bt), torch.tensor(dout))

    return BenchmarkCase(
        "groupnorm",
        f"N={N} C={C} {H}x{W} G={G}",
        group,
        make,
        targets=speed_targets("groupnorm", group),
    )
