"""Diagnose what disagrees: name known bugs, pass accepted alternatives, and say how a wrong
gradient is wrong (a constant factor, a transpose, a wrong forward) using a numerical gradient
of the student's own forward."""

from __future__ import annotations

import numpy as np

from cs231n_grader import runner
from cs231n_grader.call_records import as_tuple
from cs231n_grader.compare import constant_factor, matches, name_factor, pattern
from cs231n_grader.context import child_job
from cs231n_grader.pool_ties import TIE_HINT, accept_pool_splits
from cs231n_grader.reference_runs import variant_records
from cs231n_grader.thresholds import NUMERICAL_STEP
from cs231n_grader.thresholds import THRESHOLDS as T
from cs231n_grader.variant_matching import accept, match_bug, records_match


def explain_gradients(grads, forward_ok, what, meta) -> str:
    """How the student's gradients are wrong, in one sentence.

    grads: list of (name, student, reference, numerical gradient of the student's own forward
    or None); ``what`` is 'forward' or 'loss'. Separates "forward right, backward wrong" (with
    a constant factor when there is one) from "forward wrong" (and then whether the backward
    is at least consistent with the student's own forward).
    """
    clauses = []
    for g, s, r, num in grads:
        c = constant_factor(s, r)
        consistent = num is not None and matches(s, num, T["numerical"])
        p = pattern(s, r, T["gradient"])
        if forward_ok:
            if c is not None:
                clauses.append(f"your {g} is off by {name_factor(c, meta)}")
            elif num is not None and not consistent:
                clauses.append(
                    f"{g} disagrees with a numerical gradient of your {what}"
                    + (f" ({p})" if p else "")
                )
            else:
                clauses.append(f"{g} is wrong" + (f" ({p})" if p else ""))
        elif consistent:
            clauses.append(
                f"{g} is consistent with it (a numerical gradient of your {what} agrees)"
            )
        elif c is not None:
            clauses.append(f"{g} is off by {name_factor(c, meta)} from the reference")
        elif num is not None:
            clauses.append(
                f"{g} matches neither the reference nor a numerical gradient of your "
                f"{what}" + (f" ({p})" if p else "")
            )
        else:
            clauses.append(f"{g} is wrong" + (f" ({p})" if p else ""))
    if forward_ok:
        head = f"your {what} is right"
        if any("numerical" in c for c in clauses):
            head += " but the backward pass is not"
    else:
        head = f"your {what} is wrong (fix it first)"
    return head + "; " + "; ".join(clauses)


def _numgrad(ctx, mod, spec, case, wrt):
    job = child_job(
        ctx,
        driver="numgrad",
        module=mod.dotted,
        cases=[case],
        spec={**spec, "wrt": wrt, "h": NUMERICAL_STEP},
    )
    res = runner.run_job(job, ctx.limits, ctx.harness, ctx.deadline)
    return {
        k[len("num/") :]: v["value"]
        for k, v in res.records.items()
        if k.startswith("num/") and v.get("value") is not None
    }


def _pick(crs):
    """The first case that failed on values only (robustness cases aside), preferring cases
    without ties."""
    cands = [c for c in crs if c.value_only and not c.meta.get("robust")]
    plain = [c for c in cands if not c.meta.get("ties")]
    return (plain or cands or [None])[0]


def _failing_grads(cr, names):
    bad = {c.key for c in cr.cmps if not c.ok}
    return [g for g in names if g in bad]


def diagnose_layer(item, cases, R, S, results, ctx, mod, module):
    fwd_crs = {c.index: c for c in results["forward"]}
    # Known bugs in the forward.
    for cr in results["forward"]:
        if cr.value_only and item.bugs:
            cr.diagnosis = match_bug(item, module, cases[cr.index], S, cr, "fwd")
    # Accepted alternatives for the backward (e.g. max-pool ties).
    for cr in results["backward"]:
        if cr.value_only and item.accept:
            for note, overrides in item.accept:
                V = variant_records(item, module, overrides, cases[cr.index], cr.index)
                alt = as_tuple((V.get("bwd/0") or {}).get("value"), len(item.grads))
                got = as_tuple(S[f"bwd/{cr.index}"]["value"], len(item.grads))
                if (
                    alt
                    and got
                    and all(matches(a, b, T["gradient"]) for a, b in zip(got, alt, strict=True))
                ):
                    accept(cr, note)
                    break
    if item.meta.get("pool"):
        accept_pool_splits(item, cases, S, results["backward"])
    cr = _pick(results["backward"])
    if cr is None:
        return
    if item.meta.get("pool") and cr.meta.get("ties"):
        cr.diagnosis = TIE_HINT  # a numerical gradient means nothing at a tie
        return
    names = [g for g, _ in item.grads]
    bad = _failing_grads(cr, names)
    case = cases[cr.index]
    fwd_cr = fwd_crs.get(cr.index)
    outputs = set(item.spec["outputs"])
    fwd_ok = (
        fwd_cr is not None
        and fwd_cr.status != "skipped"
        and all(c.ok for c in fwd_cr.cmps if c.key in outputs)
        and any(c.key in outputs for c in fwd_cr.cmps)
    )
    if item.check == "dropout":
        return
    idx = dict(item.grads)
    num = (
        _numgrad(ctx, mod, {**item.spec, "mode": "layer"}, case, [[g, idx[g]] for g in bad])
        if bad
        else {}
    )
    got = as_tuple(S[f"bwd/{cr.index}"]["value"], len(names))
    ref = as_tuple(R[f"bwd/{cr.index}"]["value"], len(names))
    cr.diagnosis = explain_gradients(
        [(g, got[names.index(g)], ref[names.index(g)], num.get(g)) for g in bad],
        fwd_ok,
        "forward",
        cr.meta,
    )


def diagnose_loss(item, cases, R, S, results, ctx, mod, module):
    cr = _pick(results["loss"])
    if cr is None:
        return
    g, gi = item.grads[0]
    case = cases[cr.index]
    got = S[f"loss/{cr.index}"]["value"]
    ref = R[f"loss/{cr.index}"]["value"]
    loss_ok = all(c.ok for c in cr.cmps if c.key == "loss")
    lines = []
    if item.reg is not None:
        W, reg = case["args"][item.reg[0]], float(case["args"][item.reg[1]])
        lines += _reg_hints(
            float(got[0]) - float(ref[0]),
            got[1] - ref[1],
            W,
            reg,
            loss_ok,
            g,
            "reg * sum(W * W)",
            1.0,
        )
    if g in _failing_grads(cr, [g]) and not lines:
        num = _numgrad(ctx, mod, {**item.spec, "mode": "loss"}, case, [[g, gi]])
        lines.append(explain_gradients([(g, got[1], ref[1], num.get(g))], loss_ok, "loss", cr.meta))
    cr.diagnosis = "; ".join(lines)


def _reg_hints(dloss, dgrad, W, reg, loss_ok, g, convention, half) -> list:
    """Explain a loss/gradient difference by the L2 term. ``half`` is the factor of the
    convention (1 for reg * sum(W*W), 0.5 for CS231n's models)."""
    if reg == 0:
        return []
    out = []
    R = half * reg * float(np.sum(W * W))
    tol = 1e-6 * max(1.0, abs(R))
    if not loss_ok:
        for c, text in (
            (-1.0, "the regularization term is missing from the loss"),
            (1.0, "the regularization term is counted twice"),
            (-0.5, "the loss has half the regularization term"),
            (0.5 / half - 1, "the loss's regularization term uses the wrong factor"),
        ):
            if c != 0 and abs(dloss - c * R) <= tol:
                out.append(f"{text} (the reference's term is {convention})")
                break
    dgrad = np.asarray(dgrad, dtype=np.float64)
    if dgrad.shape == np.shape(W) and np.any(dgrad):
        c = float(np.sum(dgrad * W) / (reg * np.sum(W * W)))
        if matches(dgrad, c * reg * W, T["factor"]):
            want = 2 * half
            out.append(
                f"{g} differs from the reference by {c:.3g} * reg * W: the gradient of "
                f"{convention} is {want:g} * reg * W"
            )
    return out


def diagnose_optim(item, cases, R, S, results, ctx, mod, module):
    for cr in results["step"]:
        if cr.value_only and item.accept:
            for note, overrides in item.accept:
                V = variant_records(item, module, overrides, cases[cr.index], cr.index)
                if V and records_match(S, V, cr.index, "step"):
                    accept(cr, note)
                    break
        if cr.status == "fail" and item.bugs:
            cr.diagnosis = match_bug(item, module, cases[cr.index], S, cr, "step")


def _accept_object_alternatives(item, module, cases, S, results) -> None:
    """Pass object cases that an accepted alternative reproduces (e.g. minibatches drawn
    without replacement), with the alternative's note."""
    for crs in results.values():
        for cr in crs:
            if not (cr.value_only and item.accept):
                continue
            for note, overrides in item.accept:
                V = variant_records(item, module, overrides, cases[cr.index], cr.index)
                if V and records_match(S, V, cr.index, "call"):
                    accept(cr, note)
                    break


def diagnose_object(item, cases, R, S, results, ctx, mod, module):
    _accept_object_alternatives(item, module, cases, S, results)
    if "loss" not in results:
        return
    cr = _pick(results["loss"])
    if cr is None:
        return
    case = cases[cr.index]
    j = next(
        (
            j
            for j, c in enumerate(case["calls"])
            if c.get("check") == "loss_grads"
            and any(not m.ok and m.key.startswith("grads[") for m in cr.cmps)
        ),
        None,
    )
    if j is None:
        return
    got_loss, got = S[f"call/{cr.index}/{j}"]["value"]
    ref_loss, ref = R[f"call/{cr.index}/{j}"]["value"]
    loss_ok = all(c.ok for c in cr.cmps if c.key == "loss")
    bad = [k for k in ref if f"grads[{k!r}]" in {c.key for c in cr.cmps if not c.ok}]
    lines = []
    reg = float(case.get("ctor_kwargs", {}).get("reg", 0.0))
    params = case["params"]
    weights = [k for k in params if k.startswith("W") and np.ndim(params[k]) >= 2]
    if reg:
        R2 = 0.5 * reg * sum(float(np.sum(params[k] ** 2)) for k in weights)
        dloss = float(got_loss) - float(ref_loss)
        if not loss_ok:
            for c, text in (
                (-1.0, "the L2 term is missing from the loss"),
                (
                    1.0,
                    "the L2 term lacks CS231n's 0.5 factor (the loss uses 0.5 * reg * sum(W**2))",
                ),
            ):
                if abs(dloss - c * R2) <= 1e-6 * max(1.0, R2):
                    lines.append(text)
        by_factor, not_weights = {}, []
        for k in bad:
            d = np.asarray(got[k], dtype=np.float64) - ref[k]
            p = params[k]
            if np.any(d) and np.shape(d) == np.shape(p) and np.any(p):
                c = float(np.sum(d * p) / (reg * np.sum(p * p)))
                if matches(d, c * reg * p, T["factor"]):
                    if k in weights:
                        by_factor.setdefault(f"{c:.3g}", []).append(k)
                    else:
                        not_weights.append(k)
        for c, ks in by_factor.items():
            which = ", ".join(f"grads[{k!r}]" for k in ks)
            lines.append(
                f"{which} differ{'s' if len(ks) == 1 else ''} from the reference by "
                f"{c} * reg * W: the gradient of the L2 term 0.5 * reg * sum(W**2) "
                "is reg * W"
            )
        if not_weights:
            lines.append(
                ", ".join(f"grads[{k!r}]" for k in not_weights) + " include an L2 "
                "term: CS231n regularizes the weight matrices only (not biases, gamma "
                "or beta)"
            )
    if not lines:
        wrt = [[f"grads[{k!r}]", k] for k in bad[:3]]
        spec = {**item.spec, "mode": "object", "call": j}
        num = _numgrad(ctx, mod, spec, case, wrt)
        lines.append(
            explain_gradients(
                [(f"grads[{k!r}]", got[k], ref[k], num.get(f"grads[{k!r}]")) for k in bad[:3]],
                loss_ok,
                "loss",
                cr.meta,
            )
        )
    cr.diagnosis = "; ".join(lines)
