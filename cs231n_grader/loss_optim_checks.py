"""Compare a loss item's value and gradient, and an update rule's steps (next_w and config fed
back), with the reference's."""

from __future__ import annotations

from cs231n_grader.call_records import (
    as_tuple,
    fail_record,
    new_case,
    record_mutations,
    reference_failed,
)
from cs231n_grader.compare import Cmp, compare, describe, scale_of
from cs231n_grader.thresholds import THRESHOLDS as T


def check_loss(item, cases, R, S, ctx):
    out = []
    g = item.grads[0][0]
    for i, case in enumerate(cases):
        cr = new_case(case, i)
        r, s = R.get(f"loss/{i}"), S.get(f"loss/{i}")
        out.append(cr)
        if reference_failed(cr, r) or fail_record(cr, s, ctx):
            continue
        got = as_tuple(s["value"], 2)
        if got is None:
            cr.fail(
                f"{item.spec['function']} must return (loss, {g}); it returned "
                f"{describe(s['value'])}"
            )
            continue
        cr.add(compare("loss", got[0], r["value"][0], T["output"], scale_of(r["value"][0])))
        cr.add(compare(g, got[1], r["value"][1], T["gradient"], scale_of(r["value"][1])))
        record_mutations(item, s, cr)
    return {"loss": out}


def check_optim(item, cases, R, S, ctx):
    out = []
    for i, case in enumerate(cases):
        cr = new_case(case, i)
        out.append(cr)
        for step in range(len(case["dws"])):
            key = f"step/{i}/{step}"
            r, s = R.get(key), S.get(key)
            if reference_failed(cr, r):
                break
            before = len(cr.messages)
            if fail_record(cr, s, ctx):
                cr.messages[-1] = f"step {step + 1}: {cr.messages[-1]}"
                break
            got = as_tuple(s["value"], 2)
            if got is None or not isinstance(got[1], dict):
                cr.fail(
                    f"step {step + 1}: {item.spec['function']} must return (next_w, config);"
                    f" it returned {describe(s['value'])}"
                )
                break
            cr.add(
                compare(
                    f"step {step + 1}: next_w",
                    got[0],
                    r["value"][0],
                    T["output"],
                    scale_of(r["value"][0]),
                )
            )
            for k in item.state:
                label = f"step {step + 1}: config[{k!r}]"
                if k not in got[1]:
                    cr.add(
                        Cmp(
                            label,
                            False,
                            None,
                            f"{label} is missing: the rule must keep its "
                            "state in config for the next step",
                            "missing",
                        )
                    )
                else:
                    cr.add(
                        compare(
                            label,
                            got[1][k],
                            r["value"][1][k],
                            T["output"],
                            scale_of(r["value"][1][k]),
                        )
                    )
            record_mutations(item, s, cr)
            if len(cr.messages) > before:
                break
    return {"step": out}
