"""Registry entries of the GAN losses (vanilla and least squares) and of SimCLR's cosine
similarities and NT-Xent loss.

One ``OpSpec`` per op (conventions in ``parity_tests/registry.py``); conversions:

* GAN: ``F.binary_cross_entropy_with_logits`` (mean); least squares: ``0.5 * F.mse_loss``.
* SimCLR: ``F.cosine_similarity``, and the loss as ``F.cross_entropy`` over the similarity
  logits ``normalize(out) normalize(out)^T / tau`` with the diagonal set to -inf, target of row
  i = i + N mod 2N (the standard NT-Xent formulation).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from numpy_impl import gan as npg
from numpy_impl import simclr as nps
from parity_tests.case_helpers import (
    _case,
    _grads,
    _live,
    _loss,
    _set_const,
    _set_input,
    _size,
    _xs_and,
)
from parity_tests.checks import case_without_tiny_gradients
from parity_tests.registry import BadInput, Case, OpSpec
from torch_impl import functions as tf3
from torch_impl import gan as tgan
from torch_impl import simclr as tsim

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


OPS = _GAN_OPS + _SIMCLR_OPS
