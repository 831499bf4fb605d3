"""Compare a layer item's forward and backward passes with the reference's, case by case
(dropout's random masks are judged by their statistics instead)."""

from __future__ import annotations

import numpy as np

from cs231n_grader.call_records import (
    as_tuple,
    fail_record,
    new_case,
    record_mutations,
    reference_failed,
)
from cs231n_grader.compare import Cmp, compare, describe, matches, scale_of
from cs231n_grader.thresholds import THRESHOLDS as T


def _check_forward(item, r, s, cr, ctx):
    if fail_record(cr, s, ctx):
        return
    outputs = item.spec["outputs"]
    if not s.get("structure", True):
        want = ", ".join([*outputs, "cache"])
        cr.fail(f"{item.spec['forward']} must return ({want}); it returned {describe(s['value'])}")
        return
    for k, name in enumerate(outputs):
        cr.add(compare(name, s["value"][k], r["value"][k], T["output"], scale_of(*r["value"])))
    for dict_name, keys in item.state:
        rs = (r.get("state") or {}).get(dict_name) or {}
        ss = (s.get("state") or {}).get(dict_name)
        ss = ss if isinstance(ss, dict) else {}
        for key in keys:
            if key not in rs:
                continue
            label = f"{dict_name}[{key!r}]"
            if key not in ss:
                cr.add(
                    Cmp(
                        label,
                        False,
                        None,
                        f"{label} was not written back: the forward must "
                        f"store the updated running averages in {dict_name}",
                        "missing",
                    )
                )
            else:
                cr.add(compare(label, ss[key], rs[key], T["output"], scale_of(rs[key])))
    record_mutations(item, s, cr)


def _check_backward(item, r, s, cr, ctx):
    if fail_record(cr, s, ctx):
        return
    names = [g for g, _ in item.grads]
    got = as_tuple(s["value"], len(names))
    if got is None:
        want = names[0] if len(names) == 1 else "(" + ", ".join(names) + ")"
        cr.fail(f"{item.spec['backward']} must return {want}; it returned {describe(s['value'])}")
        return
    ref = as_tuple(r["value"], len(names))
    scale = scale_of(*ref)
    for g, sv, rv in zip(names, got, ref, strict=True):
        cr.add(compare(g, sv, rv, T["gradient"], scale))
    record_mutations(item, s, cr)


def _check_dropout_forward(item, case, r, s, cr, ctx):
    if fail_record(cr, s, ctx):
        return
    if not s.get("structure", True):
        cr.fail(f"dropout_forward must return (out, cache); it returned {describe(s['value'])}")
        return
    x, param = case["args"][0], case["args"][1]
    out = s["value"][0]
    if param["mode"] == "test":
        cr.add(compare("out (test mode must be the identity)", out, x, T["output"], scale_of(x)))
        record_mutations(item, s, cr)
        return
    c = compare("out", out, r["value"][0], T["output"], scale_of(x))
    if c.ok or c.kind != "value":
        cr.add(c)
    else:
        # A different draw from the same seed can still be a correct dropout: judge the mask by
        # its statistics and its scale, which every correct implementation shares.
        p, k = float(param["p"]), T["dropout_sigmas"]
        ratio = np.asarray(out, dtype=np.float64) / x
        kept = np.abs(ratio) > 1e-12
        frac = float(kept.mean())
        sigma = np.sqrt(max(p * (1 - p), 1e-12) / kept.size)
        kept_ok = abs(frac - p) <= k * sigma
        scale = ratio[kept]
        if scale.size and rel_error_ok(scale, 1 / p):
            scaled = "1/p"
        elif scale.size and p < 1 and rel_error_ok(scale, 1 / (1 - p)):
            scaled = "1/(1-p)"
        elif scale.size and rel_error_ok(scale, 1.0):
            scaled = "1"
        else:
            scaled = None
        if (not kept_ok and p < 1 and abs(frac - (1 - p)) <= k * sigma) or scaled == "1/(1-p)":
            cr.fail(
                f"you treat p as the drop probability: {frac:.0%} of the units are kept with "
                f"p={p:g}"
                + (" and scaled by 1/(1-p)" if scaled == "1/(1-p)" else "")
                + "; in CS231n p is the probability of KEEPING a unit (keep with "
                "probability p, scale the kept units by 1/p)"
            )
        else:
            if not kept_ok:
                cr.fail(
                    f"{frac:.1%} of the units are kept; with keep probability p={p:g} "
                    f"expected about {p:.0%}"
                )
            if scaled == "1":
                cr.fail(
                    "kept units are not scaled: inverted dropout divides them by p at train time"
                )
            elif scaled is None:
                cr.fail("out is neither 0 nor x / p entrywise (not an inverted-dropout mask)")
        if cr.status != "pass":
            cr.err = c.err
        if cr.status == "pass":
            cr.notes.append(
                "the mask differs from CS231n's seeded draw "
                "np.random.rand(*x.shape) < p (valid dropout, but the notebook's "
                "expected numbers will differ)"
            )
    again = s.get("repeat")
    if again is not None and not matches(again[0], out, 0.0):
        cr.fail(
            "two calls with the same dropout_param['seed'] gave different outputs: seed "
            "np.random with it (np.random.seed(seed)) before drawing the mask"
        )
    record_mutations(item, s, cr)


def rel_error_ok(a, b) -> bool:
    return matches(a, np.full(np.shape(a), b), T["output"])


def _check_dropout_backward(item, case, r, s, sfwd, cr, ctx):
    if fail_record(cr, s, ctx):
        return
    got = as_tuple(s["value"], 1)
    if got is None:
        cr.fail(f"dropout_backward must return dx; it returned {describe(s['value'])}")
        return
    x, param, dout = case["args"][0], case["args"][1], case["douts"][0]
    if param["mode"] == "test":
        cr.add(compare("dx (test mode: dx = dout)", got[0], dout, T["gradient"], scale_of(dout)))
    elif (
        sfwd
        and not sfwd.get("error")
        and sfwd.get("structure", True)
        and isinstance(sfwd["value"][0], np.ndarray)
        and sfwd["value"][0].shape == x.shape
        and np.all(np.isfinite(sfwd["value"][0]))
    ):
        # Any valid mask is accepted: the backward must apply the one its own forward drew.
        mask = np.asarray(sfwd["value"][0], dtype=np.float64) / x
        cr.add(
            compare(
                "dx (dout times your forward's mask)",
                got[0],
                dout * mask,
                T["gradient"],
                scale_of(dout),
            )
        )
    else:
        cr.add(compare("dx", got[0], as_tuple(r["value"], 1)[0], T["gradient"], scale_of(dout)))
    record_mutations(item, s, cr)


def check_layer(item, cases, R, S, ctx):
    forward, backward = [], []
    for i, case in enumerate(cases):
        cr = new_case(case, i)
        r, s = R.get(f"fwd/{i}"), S.get(f"fwd/{i}")
        if not reference_failed(cr, r):
            if item.check == "dropout":
                _check_dropout_forward(item, case, r, s, cr, ctx)
            else:
                _check_forward(item, r, s, cr, ctx)
        forward.append(cr)
    if item.spec.get("backward"):
        for i, case in enumerate(cases):
            if not case.get("backward", True):
                continue
            cr = new_case(case, i)
            r, s = R.get(f"bwd/{i}"), S.get(f"bwd/{i}")
            if not reference_failed(cr, r):
                if item.check == "dropout":
                    _check_dropout_backward(item, case, r, s, S.get(f"fwd/{i}"), cr, ctx)
                else:
                    _check_backward(item, r, s, cr, ctx)
            backward.append(cr)
    return {"forward": forward, "backward": backward}
