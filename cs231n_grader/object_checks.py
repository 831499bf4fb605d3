"""Compare a class item (models, the captioning RNN, training helpers) with the reference: the
initial parameters, then each method call's outputs and gradients."""

from __future__ import annotations

import numpy as np

from cs231n_grader.call_records import (
    as_tuple,
    error_message,
    error_status,
    fail_record,
    new_case,
    record_mutations,
    reference_failed,
)
from cs231n_grader.compare import compare, describe, scale_of
from cs231n_grader.thresholds import THRESHOLDS as T


def _check_init(item, r, s, cr, ctx, big: bool):
    if fail_record(cr, s, ctx):
        return
    sp, rp = s["value"], r["value"]
    if not isinstance(sp, dict):
        cr.fail(f"{item.spec['cls']} has no params dict after construction")
        return
    missing = [k for k in rp if k not in sp]
    extra = [k for k in sp if k not in rp]
    if missing:
        cr.fail(f"params is missing {missing}")
    if extra:
        cr.fail(f"params has unexpected entries {extra}")
    for k, rv in rp.items():
        if k not in sp:
            continue
        sv = sp[k]
        if not isinstance(sv, np.ndarray) or sv.shape != np.shape(rv):
            cr.fail(f"params[{k!r}] is {describe(sv)}, expected shape {np.shape(rv)}")
            continue
        if sv.dtype != np.asarray(rv).dtype:
            cr.fail(
                f"params[{k!r}] has dtype {sv.dtype}; the model was built with "
                f"dtype={np.asarray(rv).dtype}"
            )
            continue
        rv = np.asarray(rv, dtype=np.float64)
        svf = sv.astype(np.float64)
        if rv.size and np.all(rv == rv.flat[0]):
            if not np.all(svf == rv.flat[0]):
                cr.fail(f"params[{k!r}] should start at {rv.flat[0]:g} everywhere")
        elif big and rv.size >= 200:
            rs, ss = float(rv.std()), float(svf.std())
            f = T["init_std_factor"]
            if not rs / f <= ss <= rs * f:
                cr.fail(
                    f"params[{k!r}] has std {ss:.3g}; the reference's initialization gives "
                    f"{rs:.3g} (check weight_scale / the initialization formula)"
                )


def check_object(item, cases, R, S, ctx):
    per_test = {part: [] for part in item.tests}
    for i, case in enumerate(cases):
        r_init, s_init = R.get(f"init/{i}"), S.get(f"init/{i}")
        if "init" in per_test:
            cr = new_case(case, i)
            if not reference_failed(cr, r_init):
                _check_init(item, r_init, s_init, cr, ctx, bool(case["meta"].get("init_stats")))
            per_test["init"].append(cr)
        crs = {}
        for j, call in enumerate(case["calls"]):
            part = call.get("test")
            if part is None or part not in per_test:
                continue
            cr = crs.get(part)
            if cr is None:
                cr = crs[part] = new_case(case, i)
                per_test[part].append(cr)
                if (
                    not reference_failed(cr, r_init)
                    and "init" not in per_test
                    and s_init is not None
                    and s_init.get("error")
                ):
                    cr.fail(
                        f"constructing {item.spec['cls']}: {error_message(s_init['error'], ctx)}",
                        error_status(s_init["error"]),
                    )
            if cr.status != "pass":
                continue
            key = f"call/{i}/{j}"
            r, s = R.get(key), S.get(key)
            if reference_failed(cr, r):
                continue
            if s is None and s_init is not None and s_init.get("error"):
                cr.fail(f"not run: constructing {item.spec['cls']} failed", "not run")
                continue
            earlier = [S.get(f"call/{i}/{k}") for k in range(j)]
            setup_err = next((e for e in earlier if e and e.get("error")), None)
            if s is None and setup_err is not None:
                why = error_message(setup_err["error"], ctx)
                cr.fail(f"not run: an earlier call failed ({why})", "not run")
                continue
            if fail_record(cr, s, ctx):
                continue
            what = call.get("check", "output")
            v = s["value"]
            if what == "loss_grads":
                _check_loss_grads(cr, v, r["value"], item)
            elif what == "sequence":  # a list of numbers (loss_history): any sequence type
                label = f"{call['method']}(...)"
                cr.add(
                    compare(
                        label,
                        _as_float_array(v),
                        np.asarray(r["value"], dtype=float),
                        T["output"],
                        scale_of(r["value"]),
                    )
                )
            else:
                label = (
                    "scores"
                    if what == "scores"
                    else f"self.{call['attr']}"
                    if "attr" in call
                    else f"{call['method']}(...)"
                )
                if what == "scores" and j > 0:
                    label = "scores after a training-mode call"
                c = cr.add(compare(label, v, r["value"], T["output"], scale_of(r["value"])))
                if not c.ok and call.get("method") == "sample":
                    cr.diagnosis = _sample_hint(v, r["value"], case)
            record_mutations(item, s, cr)
    return per_test


def _sample_hint(got, ref, case) -> str:
    """CaptioningRNN.sample one position late: <START> written into the output."""
    start = (case.get("ctor_args") or [{}])[0].get("<START>")
    got = np.asarray(got) if isinstance(got, np.ndarray) else None
    ref = np.asarray(ref)
    if got is None or got.shape != ref.shape or got.ndim != 2 or start is None:
        return ""
    if np.all(got[:, 0] == start) and np.array_equal(got[:, 1:], ref[:, :-1]):
        return (
            "your captions are the right words shifted one step late: captions[:, 0] holds "
            "<START>. <START> is the first INPUT; the first output is the word sampled "
            "from it"
        )
    return ""


def _as_float_array(v):
    """A list or tuple of numbers as a float array (other values unchanged, for compare)."""
    if isinstance(v, (list, tuple)):
        try:
            return np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            return v
    return v


def _check_loss_grads(cr, v, rv, item):
    got = as_tuple(v, 2)
    if got is None:
        cr.fail(f"loss(X, y) must return (loss, grads); it returned {describe(v)}")
        return
    cr.add(compare("loss", got[0], rv[0], T["output"], scale_of(rv[0])))
    grads, ref = got[1], rv[1]
    if not isinstance(grads, dict):
        cr.fail(f"grads should be a dict with the keys of params, got {describe(grads)}")
        return
    missing = [k for k in ref if k not in grads]
    extra = [k for k in grads if k not in ref]
    if missing:
        cr.fail(f"grads has no entry for {missing}")
    if extra:
        cr.fail(f"grads has entries that are not parameters: {extra}")
    scale = scale_of(*ref.values())
    for k in ref:
        if k in grads:
            cr.add(compare(f"grads[{k!r}]", grads[k], ref[k], T["gradient"], scale))
