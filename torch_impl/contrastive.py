"""SimCLR's pieces (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
Representations"): cosine similarities and the NT-Xent loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from torch_impl._utils import in_input_precision
from twin_checks import check_nonzero_norms, check_pair_args, check_tau, require_ndim

__all__ = [
    "CosineSimilarityMatrixFunction",
    "PositivePairSimilarityFunction",
    "SimCLRLossFunction",
]


def _normalize_rows(out: Tensor, name: str = "out") -> tuple[Tensor, Tensor]:
    r = torch.sqrt((out * out).sum(dim=1, keepdim=True))
    check_nonzero_norms(name, r)
    return out / r, r


def _normalize_rows_backward(du: Tensor, u: Tensor, r: Tensor) -> Tensor:
    return (du - u * (du * u).sum(dim=1, keepdim=True)) / r


class CosineSimilarityMatrixFunction(Function):
    """out (M, D) -> (M, M) cosine similarities u u^T (u = rows of out normalized)."""

    @staticmethod
    @in_input_precision
    def forward(ctx: Any, out: Tensor) -> Tensor:
        require_ndim("out", out, 2, "(2N, D)")
        u, r = _normalize_rows(out)
        ctx.save_for_backward(u, r)
        return u @ u.T

    @staticmethod
    @once_differentiable
    @in_input_precision
    def backward(ctx: Any, dS: Tensor) -> Tensor:
        u, r = ctx.saved_tensors
        return _normalize_rows_backward((dS + dS.T) @ u, u, r)


class PositivePairSimilarityFunction(Function):
    """out_left, out_right (N, D) -> (N, 1), row k = cos(out_left[k], out_right[k])."""

    @staticmethod
    @in_input_precision
    def forward(ctx: Any, out_left: Tensor, out_right: Tensor) -> Tensor:
        check_pair_args(out_left, out_right)
        u, ru = _normalize_rows(out_left, "out_left")
        v, rv = _normalize_rows(out_right, "out_right")
        ctx.save_for_backward(u, ru, v, rv)
        return (u * v).sum(dim=1, keepdim=True)

    @staticmethod
    @once_differentiable
    @in_input_precision
    def backward(ctx: Any, dpos: Tensor) -> tuple[Tensor | None, ...]:
        u, ru, v, rv = ctx.saved_tensors
        need = ctx.needs_input_grad
        return (
            _normalize_rows_backward(dpos * v, u, ru) if need[0] else None,
            _normalize_rows_backward(dpos * u, v, rv) if need[1] else None,
        )


class SimCLRLossFunction(Function):
    """NT-Xent loss of SimCLR: out_left, out_right (N, D), tau > 0 -> scalar.

    Rows k and k+N of [out_left; out_right] are positives; every other row is a negative;
    loss = mean over the 2N anchors of -log softmax_{m != i}(s_im / tau)[positive].
    Twin of ``numpy_impl.simclr.simclr_loss_vectorized``.
    """

    @staticmethod
    @in_input_precision
    def forward(ctx: Any, out_left: Tensor, out_right: Tensor, tau: float) -> Tensor:
        check_pair_args(out_left, out_right)
        tau = check_tau(tau)
        N = out_left.shape[0]
        out = torch.cat([out_left, out_right], dim=0)
        u, r = _normalize_rows(out)
        logits = (u @ u.T) / tau
        eye = torch.eye(2 * N, dtype=torch.bool, device=out.device)
        logits = logits.masked_fill(eye, float("-inf"))
        logits = logits - logits.amax(dim=1, keepdim=True)
        log_probs = logits - torch.log(torch.exp(logits).sum(dim=1, keepdim=True))
        rows = torch.arange(2 * N, device=out.device)
        pos = (rows + N) % (2 * N)
        ctx.save_for_backward(u, r, log_probs)
        ctx.tau = tau
        return -log_probs[rows, pos].mean()

    @staticmethod
    @once_differentiable
    @in_input_precision
    def backward(ctx: Any, dloss: Tensor) -> tuple[Tensor | None, ...]:
        u, r, log_probs = ctx.saved_tensors
        M = u.shape[0]
        N = M // 2
        rows = torch.arange(M, device=u.device)
        pos = (rows + N) % M
        dS = torch.exp(log_probs)
        dS[rows, pos] -= 1
        dS = dS / (M * ctx.tau) * dloss
        dout = _normalize_rows_backward((dS + dS.T) @ u, u, r)
        return dout[:N], dout[N:], None
