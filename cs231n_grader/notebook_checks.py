"""Checks of assignment 2's PyTorch notebook code that no reference answers exactly.

A weight initializer draws random numbers, and a module builds its own random parameters: no
reference reproduces another implementation's draws, so these are judged by what every correct
answer shares (the statistics of the draw, the notebook's layer-by-layer architecture), as the
GAN notebook's ``sample_noise`` and networks are (``torch_checks.check_random``,
``torch_checks.check_architecture``). Each check takes the case's result, the student's record and
the case; the driver side is ``call_drivers.NOTEBOOK_RUNS``.
"""

from __future__ import annotations

import math

import numpy as np

from cs231n_grader.compare import describe
from cs231n_grader.thresholds import THRESHOLDS

_KAIMING_HINT = (
    "Kaiming normal initialization draws N(0, 2 / fan_in): torch.randn(shape) * "
    "sqrt(2 / fan_in), with fan_in = shape[0] for a (D, M) weight and the product of the "
    "dimensions after the first for a conv weight"
)


def _fan_in(shape: tuple) -> int:
    return shape[0] if len(shape) == 2 else math.prod(shape[1:])


def _std_ok(std: float, expected: float, n: int) -> bool:
    """A sample std within THRESHOLDS['dropout_sigmas'] standard errors (~ expected /
    sqrt(2 n) for a normal sample) of the expected one."""
    return abs(std - expected) <= THRESHOLDS["dropout_sigmas"] * expected / math.sqrt(2 * n)


def check_weight_init(cr, value, case) -> None:
    """random_weight(shape) / zero_weight(shape): a leaf tensor of the shape asked for that
    requires grad; random_weight's entries spread as N(0, 2 / fan_in), zero_weight's all 0."""
    if not isinstance(value, dict) or not isinstance(value.get("value"), np.ndarray):
        cr.fail(f"must return a torch.Tensor; it returned {describe(value)}")
        return
    shape = case["args"][0]
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    w = value["value"]
    if w.shape != shape:
        cr.fail(f"the tensor has shape {w.shape}, expected {shape}")
        return
    if not (value["requires_grad"] and value["is_leaf"]):
        cr.fail(
            "the tensor must be a leaf that requires grad (the training loop updates it with "
            "w -= learning_rate * w.grad): create it with requires_grad=True, or set "
            "w.requires_grad = True after scaling"
        )
    if case["meta"].get("init") == "zero":
        if np.any(w != 0):
            cr.fail("zero_weight must return zeros")
        return
    expected = math.sqrt(2.0 / _fan_in(shape))
    n = w.size
    if not _std_ok(float(w.std()), expected, n) or abs(float(w.mean())) > THRESHOLDS[
        "dropout_sigmas"
    ] * expected / math.sqrt(n):
        cr.fail(
            f"entries have mean {w.mean():.3g} and std {w.std():.3g}; for shape {shape} "
            f"(fan_in {_fan_in(shape)}) Kaiming normal gives mean 0 and std {expected:.3g}"
        )
        cr.diagnosis = _KAIMING_HINT


def check_notebook_module(cr, value, case) -> None:
    """TwoLayerFC / ThreeLayerConvNet: the notebook's layers (parameter shapes in order, the
    same output as the notebook's network given the student's parameters), and weights
    initialized with Kaiming normal, as the notebook asks."""
    from cs231n_grader.torch_checks import check_architecture

    if not isinstance(value, tuple) or len(value) != 5:
        cr.fail(f"the module could not be compared: {describe(value)}")
        return
    mine, want, out, expected, init = value
    mine, want = [tuple(s) for s in mine], [tuple(s) for s in want]
    check_architecture(cr, (mine, want, out, expected), case)
    if cr.status != "pass":
        if mine != want and len(mine) == len(want) and mine[:-2] == want[:-2]:
            cr.diagnosis = (
                "the last layer has the wrong size: it maps the flattened features to "
                "num_classes scores (not a hard-coded 10)"
            )
        elif cr.diagnosis:
            cr.diagnosis = (
                "the layers' shapes are right but the output is not: check the padding (2 "
                "for the 5x5 convolution, 1 for the 3x3), the ReLUs after each convolution "
                "and their order against the notebook"
            )
        return
    for k, (shape, std) in enumerate(zip(mine, init, strict=True)):
        if len(shape) < 2:  # biases: the notebook leaves their initialization open
            continue
        fan_in = shape[1] * math.prod(shape[2:])
        expected = math.sqrt(2.0 / fan_in)
        if not _std_ok(std, expected, math.prod(shape)):
            cr.fail(
                f"weight {k + 1} {shape} starts with std {std:.3g}; Kaiming normal gives "
                f"sqrt(2 / fan_in) = {expected:.3g}"
            )
            cr.diagnosis = (
                "initialize every weight with nn.init.kaiming_normal_(layer.weight), as the "
                "notebook asks"
            )


NOTEBOOK_CHECKS = {"weight_init": check_weight_init, "notebook_module": check_notebook_module}
