"""Compare the PyTorch items (functions and modules) with the reference's outputs and autograd
gradients, and judge the notebook code that no reference answers (random draws, network
architectures) by the student's record alone."""

from __future__ import annotations

import numpy as np

from cs231n_grader.call_records import as_tuple, fail_record, new_case, reference_failed
from cs231n_grader.compare import compare, describe, scale_of
from cs231n_grader.notebook_checks import NOTEBOOK_CHECKS
from cs231n_grader.results import CaseResult
from cs231n_grader.thresholds import THRESHOLDS as T


def check_random(cr: CaseResult, value, case) -> None:
    """sample_noise: shape (batch_size, dim), values in [-1, 1] spread like U(-1, 1) (mean 0,
    variance 1/3, within THRESHOLDS['dropout_sigmas'] standard errors), and with a seed the
    same draw twice."""
    got = as_tuple(value, 2)
    shape = tuple(case["args"])
    if got is None or not all(isinstance(g, np.ndarray) for g in got):
        cr.fail(f"must return a tensor of shape {shape}; it returned {describe(value)}")
        return
    x = np.asarray(got[0], dtype=np.float64)
    if x.shape != shape:
        cr.fail(f"the noise has shape {x.shape}, expected {shape} (batch_size, dim)")
        return
    k, n = T["dropout_sigmas"], x.size
    if x.min() < -1 or x.max() > 1:
        cr.fail(f"values range over [{x.min():.3g}, {x.max():.3g}]; the noise must lie in [-1, 1]")
    elif abs(x.mean()) > k * np.sqrt(1 / 3 / n) or abs(x.var() - 1 / 3) > k * np.sqrt(4 / 45 / n):
        cr.fail(
            f"mean {x.mean():.3g} and variance {x.var():.3g}: not uniform on [-1, 1] "
            "(mean 0, variance 1/3); e.g. 2 * torch.rand(batch_size, dim) - 1"
        )
    if case["meta"].get("seeded") and not np.array_equal(got[0], got[1]):
        cr.fail(
            "two calls with the same seed gave different noise: call torch.manual_seed(seed) "
            "when a seed is given"
        )


def check_architecture(cr: CaseResult, value, case) -> None:
    """A network the notebook specifies layer by layer: the same parameter shapes in the same
    order, then the same output as the notebook's network given the student's parameters
    (so the activations and their order are right too)."""
    got = as_tuple(value, 4)
    if got is None:
        cr.fail(f"the network could not be compared: {describe(value)}")
        return
    mine, want, out, expected = got
    mine, want = [tuple(s) for s in mine], [tuple(s) for s in want]
    if mine != want:
        k = next(
            (i for i, (a, b) in enumerate(zip(mine, want, strict=False)) if a != b),
            min(len(mine), len(want)),
        )
        have = f"{mine[k]}" if k < len(mine) else "nothing"
        need = f"{want[k]}" if k < len(want) else "nothing"
        cr.fail(
            f"{sum(int(np.prod(s)) for s in mine)} parameters in {len(mine)} tensors; the "
            f"notebook's network has {sum(int(np.prod(s)) for s in want)} in {len(want)} "
            f"(parameter tensor {k + 1}: yours {have}, expected {need})"
        )
        return
    c = cr.add(compare("output", out, expected, T["output"], scale_of(expected)))
    if not c.ok:
        cr.diagnosis = (
            "the layers' shapes are right but the output is not: check the "
            "activations (LeakyReLU(0.01), ReLU, Tanh), batchnorm and their order "
            "against the notebook"
        )


def check_composition(cr: CaseResult, value, case) -> None:
    """A model's forward vs the notebook's composition of its own submodules."""
    got = as_tuple(value, 2)
    if got is None:
        cr.fail(f"the model could not be run: {describe(value)}")
        return
    scores, expected = got
    c = cr.add(compare("scores", scores, expected, T["output"], scale_of(expected)))
    if not c.ok and c.kind == "value":
        cr.diagnosis = (
            "forward does not compose its parts as the notebook describes: embed "
            "the captions, add the positional encoding, project the features to "
            "one memory step (N, 1, W), decode with a causal mask "
            "(torch.tril(torch.ones(T, T))), then score with self.output"
        )


# Checks of PyTorch code that no reference answers; each judges the student's record alone.
SELF_CHECKS = {
    "random": check_random,
    "architecture": check_architecture,
    "composition": check_composition,
    **NOTEBOOK_CHECKS,
}


def check_torch(item, cases, R, S, ctx):
    """PyTorch functions: the output, and each argument's gradient through autograd."""
    per_test = {f["function"]: [] for f in item.spec["functions"]}
    for i, case in enumerate(cases):
        fspec = item.spec["functions"][case["fn"]]
        cr = new_case(case, i)
        per_test[fspec["function"]].append(cr)
        r, s = R.get(f"loss/{i}"), S.get(f"loss/{i}")
        if fspec.get("check") in SELF_CHECKS:
            if not fail_record(cr, s, ctx):
                SELF_CHECKS[fspec["check"]](cr, s["value"], case)
            continue
        if reference_failed(cr, r) or fail_record(cr, s, ctx):
            continue
        got = as_tuple(s["value"], 2)
        if got is None:
            cr.fail(f"{fspec['function']} returned {describe(s['value'])}")
            continue
        (rv, rgrads), (sv, sgrads) = r["value"], got
        cr.add(compare("output", sv, rv, T["output"], scale_of(rv)))
        scale = scale_of(*[g for g in rgrads if g is not None])
        for g, idx in fspec["grads"]:
            if rgrads[idx] is None:
                continue
            if sgrads[idx] is None:
                cr.fail(
                    f"no gradient reaches {fspec['args'][idx]}: compute with torch "
                    "operations only (no .item(), .numpy() or Python floats in between) "
                    "so autograd can differentiate the result"
                )
                continue
            cr.add(compare(g, sgrads[idx], rgrads[idx], T["gradient"], scale))
    return per_test


def check_torch_module(item, cases, R, S, ctx):
    """PyTorch modules: the output, the inputs' and the parameters' gradients."""
    per_test = {m["cls"]: [] for m in item.spec["modules"]}
    for i, case in enumerate(cases):
        mspec = item.spec["modules"][case["fn"]]
        cr = new_case(case, i)
        per_test[mspec["cls"]].append(cr)
        r, s = R.get(f"loss/{i}"), S.get(f"loss/{i}")
        if reference_failed(cr, r) or fail_record(cr, s, ctx):
            continue
        got = as_tuple(s["value"], 3)
        if got is None:
            cr.fail(f"{mspec['cls']}.forward returned {describe(s['value'])}")
            continue
        rv, rgrads, rpgrads = r["value"]
        sv, sgrads, spgrads = got
        # The course builds some constants (the positional table) in float32: compare those
        # outputs to float32 precision of their scale.
        atol = T["float32"] * scale_of(rv) if mspec["float32_constants"] else None
        cr.add(compare("output", sv, rv, T["output"], scale_of(rv), atol=atol))
        scale = scale_of(*[g for g in (*rgrads.values(), *rpgrads.values()) if g is not None])
        for label, ref, mine in [
            *((f"grad of {n}", g, sgrads.get(n)) for n, g in rgrads.items()),
            *((f"grad of {n}", g, spgrads.get(n)) for n, g in rpgrads.items()),
        ]:
            if ref is not None:
                cr.add(compare(label, mine, ref, T["gradient"], scale))
    return per_test
