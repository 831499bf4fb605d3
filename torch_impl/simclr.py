"""SimCLR's contrastive loss (CS231n assignment 3, ``cs231n/simclr/contrastive_loss.py``) on
torch_impl's Functions.

- ``sim(z_i, z_j)``: cosine similarity of two vectors (D,) -> 0-d tensor.
- ``compute_sim_matrix(out)``: out (2N, D) -> (2N, 2N) cosine similarities.
- ``sim_positive_pairs(out_left, out_right)``: (N, D) each -> (N, 1).
- ``simclr_loss_naive(out_left, out_right, tau)``: the course's loop over the N pairs, built from
  ``sim`` (autograd composes the per-pair Functions; slow, kept for teaching).
- ``simclr_loss_vectorized(out_left, out_right, tau, device='cuda')``: one
  :class:`SimCLRLossFunction` call with a hand-written backward.

Rows k and k+N of [out_left; out_right] are the two views of sample k; every other row is a
negative; loss = mean over the 2N anchors of
-log(exp(s_{i,pos}/tau) / sum_{m != i} exp(s_im/tau)), computed with a log-sum-exp shift.

``device``: the course's vectorized loss takes a device for the masks it builds. Here every
tensor created inside follows the inputs' device, so the argument is accepted for API
compatibility and ignored: the default 'cuda' works on a CPU-only machine, and the loss is
computed wherever out_left and out_right live.
"""

from __future__ import annotations

import torch
from torch import Tensor

from torch_impl.functions import (
    CosineSimilarityMatrixFunction,
    PositivePairSimilarityFunction,
    SimCLRLossFunction,
)
from twin_checks import (
    check_nonzero_norms,
    check_pair_args,
    check_tau,
    require_ndim,
    require_same_shape,
)

__all__ = [
    "CosineSimilarityMatrixFunction",
    "PositivePairSimilarityFunction",
    "SimCLRLossFunction",
    "sim",
    "compute_sim_matrix",
    "sim_positive_pairs",
    "simclr_loss_naive",
    "simclr_loss_vectorized",
]


def sim(z_i: Tensor, z_j: Tensor) -> Tensor:
    """Cosine similarity of z_i, z_j: (D,) -> 0-d tensor."""
    require_ndim("z_i", z_i, 1, "(D,)")
    require_same_shape("z_j", z_j, "z_i", z_i)
    check_nonzero_norms("z_i", (z_i * z_i).sum())
    check_nonzero_norms("z_j", (z_j * z_j).sum())
    return PositivePairSimilarityFunction.apply(z_i[None], z_j[None]).reshape(())


def compute_sim_matrix(out: Tensor) -> Tensor:
    """out (2N, D) -> (2N, 2N) with entry (i, j) = cos(out[i], out[j])."""
    return CosineSimilarityMatrixFunction.apply(out)


def sim_positive_pairs(out_left: Tensor, out_right: Tensor) -> Tensor:
    """out_left, out_right (N, D) -> (N, 1) with row k = cos(out_left[k], out_right[k])."""
    return PositivePairSimilarityFunction.apply(out_left, out_right)


def simclr_loss_naive(out_left: Tensor, out_right: Tensor, tau: float) -> Tensor:
    """The course's loop (see the module docstring); out_left, out_right (N, D) -> scalar."""
    check_pair_args(out_left, out_right)
    tau = check_tau(tau)
    N = out_left.shape[0]
    out = torch.cat([out_left, out_right], dim=0)
    check_nonzero_norms("out", torch.sqrt((out * out).sum(dim=1)))
    total = out.new_zeros(())
    for i in range(2 * N):
        p = (i + N) % (2 * N)
        logits = torch.stack([sim(out[i], out[m]) for m in range(2 * N) if m != i]) / tau
        shift = logits.max().detach()  # any constant works; the max keeps exp() finite
        log_denom = shift + torch.log(torch.exp(logits - shift).sum())
        total = total + log_denom - sim(out[i], out[p]) / tau
    return total / (2 * N)


def simclr_loss_vectorized(
    out_left: Tensor, out_right: Tensor, tau: float, device: torch.device | str | None = "cuda"
) -> Tensor:
    """out_left, out_right (N, D), tau > 0 -> scalar; ``device`` is ignored (see above)."""
    del device  # everything follows the inputs' device
    return SimCLRLossFunction.apply(out_left, out_right, tau)
