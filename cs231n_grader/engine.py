"""Grade a submission: for every item of the table that the student's code defines, run the
reference (in this process) and the student's code (in a child process) on the same inputs,
compare every output and gradient, and diagnose what disagrees.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import math
import os
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from cs231n_grader import input_generators as C
from cs231n_grader import runner, sandbox
from cs231n_grader.call_drivers import DRIVERS, guarded_call
from cs231n_grader.compare import (
    Cmp,
    compare,
    constant_factor,
    describe,
    matches,
    name_factor,
    pattern,
    scale_of,
)
from cs231n_grader.graded_items import ITEMS, Item
from cs231n_grader.notebook_checks import NOTEBOOK_CHECKS
from cs231n_grader.thresholds import NUMERICAL_STEP, THRESHOLDS

T = THRESHOLDS
VERDICTS = ("pass", "fail", "error", "timeout", "crash", "not run", "missing", "skipped")
# When cases of one test fail in different ways, the test's verdict is the first of these.
_SEVERITY = ("timeout", "crash", "error", "fail", "not run", "missing")
# Reference code draws from NumPy's global random state (dropout, model initialization, as in
# CS231n); items are graded on several threads, so in-process reference runs take turns.
_REFERENCE_LOCK = threading.Lock()


@dataclass
class TestResult:
    name: str
    item: str
    file: str
    verdict: str
    max_rel_error: float | None = None
    hint: str = ""
    details: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    cases_passed: int = 0
    cases_total: int = 0
    output: str = ""  # what the student's code printed, when it errored
    # Robustness extras the code misses (an input modified in place, overflow on huge logits):
    # reported, and worth a configurable deduction, but never a failure.
    robustness: list = field(default_factory=list)
    points: float | None = None  # the assignment profile's points for this test, if any
    cases: list = field(default_factory=list)  # per case: label, status, max_rel_error, ...

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


@dataclass
class CaseResult:
    label: str
    index: int
    meta: dict
    status: str = "pass"  # 'pass', one of _SEVERITY, or 'skipped' (the reference failed)
    err: float | None = None
    messages: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    cmps: list = field(default_factory=list)
    diagnosis: str = ""
    skip_reason: str = ""
    robustness: list = field(default_factory=list)  # see TestResult.robustness

    def fail(self, message: str, status: str = "fail") -> None:
        if self.status == "pass" or (
            status in _SEVERITY
            and self.status in _SEVERITY
            and _SEVERITY.index(status) < _SEVERITY.index(self.status)
        ):
            self.status = status
        self.messages.append(message)

    def add(self, cmp: Cmp) -> Cmp:
        self.cmps.append(cmp)
        if cmp.err is not None:
            self.err = cmp.err if self.err is None else max(self.err, cmp.err)
        if not cmp.ok:
            self.fail(cmp.message)
        return cmp

    @property
    def value_only(self) -> bool:
        """Failed only because numbers differ (not an exception, a shape, a type, a NaN)."""
        bad = [c for c in self.cmps if not c.ok]
        return (
            self.status == "fail"
            and bool(bad)
            and all(c.kind == "value" for c in bad)
            and len(bad) == len(self.messages)
        )


# ----------------------------------------------------------------------------------------------
# Context and environments
# ----------------------------------------------------------------------------------------------


@dataclass
class Context:
    sub: object  # submission.Submission
    limits: runner.Limits
    seed: int = 231
    import_errors: dict = field(default_factory=dict)
    harness: object = None  # sandbox.Harness the children start from
    standins: dict = field(default_factory=dict)  # course-provided modules served by the reference
    deadline: float = math.inf  # time.monotonic() at which the run's time budget ends


def reference_root() -> str:
    """The directory holding ``numpy_impl`` (children load stand-ins' reference code there)."""
    spec = importlib.util.find_spec("numpy_impl")
    return os.path.dirname(os.path.dirname(os.path.abspath(spec.origin)))


def child_job(ctx: Context, **fields) -> dict:
    """A job for a child process: ``fields`` plus where the student's code lives and which of
    its modules are stand-ins for the reference (see ``seal.py``)."""
    job = {"student_root": ctx.sub.root, **fields}
    standins = {**ctx.sub.standins, **ctx.standins}
    if standins:
        job["standins"] = standins
        job["reference_root"] = reference_root()
    return job


def item_rng(seed: int, name: str, extra: int = 0):
    return np.random.default_rng([seed, zlib.crc32(name.encode()), extra])


class LocalEnv:
    """Runs a driver in this process on trusted code (the reference or a variant of it)."""

    reference = True  # drivers that call student and reference code differently ask

    def __init__(self, module, overrides=None, make_douts=None, make_params=None, case_index=None):
        self.module = module
        self.overrides = overrides or {}
        # A variant replays one case as case 0: seed its calls as that case's own calls were.
        self.case_index = case_index
        self.records = {}
        self.make_douts = make_douts
        self.make_params = make_params
        self.roots = (os.path.dirname(os.path.abspath(getattr(module, "__file__", ""))),)

    def resolve(self, name):
        if name in self.overrides:
            return self.overrides[name]
        return getattr(self.module, name)

    def call(self, key, label, fn, args, kwargs, names):
        if self.case_index is not None:
            kind, _, rest = key.partition("/")
            _, _, tail = rest.partition("/")
            key = "/".join(p for p in (kind, str(self.case_index), tail) if p)
        with np.errstate(all="ignore"):
            return guarded_call(key, fn, args, kwargs, names, self.roots)

    def emit(self, key, record):
        self.records[key] = record

    def skip(self, key):
        return False


def reference_run(item: Item, seed: int):
    """(module, cases, records) of the reference on the item's cases. Fills each case's
    upstream gradients and model parameters, which the student's run then receives."""
    module = importlib.import_module(item.ref)
    cases = item.cases(item_rng(seed, item.name))

    def make_douts(i, outputs):
        rng = item_rng(seed, item.name, 1000 + i)
        return [rng.standard_normal(np.shape(o)) for o in outputs]

    def make_params(i, params):
        return C.make_params(item_rng(seed, item.name, 2000 + i), params)

    env = LocalEnv(module, make_douts=make_douts, make_params=make_params)
    with _REFERENCE_LOCK:
        DRIVERS[item.kind](item.spec, cases, env)
    return module, cases, env.records


def variant_records(item: Item, module, overrides: dict, case: dict, index: int = 0) -> dict:
    """Records of a variant of the reference on one case (case ``index`` of the item), keyed
    as case 0."""
    env = LocalEnv(module, overrides, case_index=index)
    try:
        with _REFERENCE_LOCK:
            DRIVERS[item.kind](item.spec, [copy.deepcopy(case)], env)
    except Exception:  # noqa: BLE001 -- a variant that cannot run explains nothing
        return {}
    return env.records


def _pretty_where(where: str, ctx: Context) -> str:
    root = ctx.sub.root.rstrip(os.sep) + os.sep
    return where.replace(root, "") if where else ""


def error_status(err: dict) -> str:
    return {"Timeout": "timeout", "Crash": "crash", "NotRun": "not run", "Missing": "missing"}.get(
        err["type"], "error"
    )


def error_message(err: dict, ctx: Context) -> str:
    kind, msg = err["type"], err.get("message", "")
    if kind == "Timeout":
        return f"timed out: {msg}"
    if kind == "Crash":
        return f"crashed: {msg}"
    if kind == "NotRun":
        return f"not run: {msg}"
    if kind == "Missing":
        return msg
    if kind == "ReturnType":
        return msg
    where = _pretty_where(err.get("where", ""), ctx)
    text = f"raised {kind}: {msg}" if msg else f"raised {kind}"
    if kind == "MemoryError":
        text += f" (memory cap {ctx.limits.memory_mb} MiB)"
    if kind == "OSError" and "File too large" in msg:
        text += " (output size limit: printing too much?)"
    return text + (f"  [at {where}]" if where else "")


def _fail_record(cr: CaseResult, s: dict | None, ctx: Context) -> bool:
    """Record a missing or failed call on ``cr``; True if there is nothing more to compare."""
    if s is None:
        cr.fail("not run (an earlier call of this item hung or crashed)", "not run")
        return True
    if s.get("error"):
        cr.fail(error_message(s["error"], ctx), error_status(s["error"]))
        return True
    return False


def _mutations(item: Item, s: dict, cr: CaseResult) -> None:
    for name in s.get("mutated", []):
        if name in item.may_mutate:
            cr.notes.append(
                f"updates {name} in place (CS231n's starter code does; the "
                "reference returns a new array)"
            )
        else:
            cr.robustness.append(
                f"modifies its input {name} in place (callers' arrays change; "
                "compute into a new array)"
            )


def _new_case(case: dict, i: int) -> CaseResult:
    return CaseResult(case["label"], i, dict(case.get("meta") or {}))


def _ref_failed(cr: CaseResult, r: dict | None) -> bool:
    if r is None or r.get("error"):
        why = (r or {}).get("error") or {"type": "NotRun", "message": "no result"}
        cr.status = "skipped"
        cr.skip_reason = f"{why['type']}: {why.get('message', '')}"
        return True
    return False


def _as_tuple(value, n: int):
    if n == 1 and isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, (tuple, list)) and len(value) == n:
        return list(value)
    return None


# ----------------------------------------------------------------------------------------------
# layer items: forward / backward pairs
# ----------------------------------------------------------------------------------------------


def _check_forward(item, r, s, cr, ctx):
    if _fail_record(cr, s, ctx):
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
    _mutations(item, s, cr)


def _check_backward(item, r, s, cr, ctx):
    if _fail_record(cr, s, ctx):
        return
    names = [g for g, _ in item.grads]
    got = _as_tuple(s["value"], len(names))
    if got is None:
        want = names[0] if len(names) == 1 else "(" + ", ".join(names) + ")"
        cr.fail(f"{item.spec['backward']} must return {want}; it returned {describe(s['value'])}")
        return
    ref = _as_tuple(r["value"], len(names))
    scale = scale_of(*ref)
    for g, sv, rv in zip(names, got, ref, strict=True):
        cr.add(compare(g, sv, rv, T["gradient"], scale))
    _mutations(item, s, cr)


def _check_dropout_forward(item, case, r, s, cr, ctx):
    if _fail_record(cr, s, ctx):
        return
    if not s.get("structure", True):
        cr.fail(f"dropout_forward must return (out, cache); it returned {describe(s['value'])}")
        return
    x, param = case["args"][0], case["args"][1]
    out = s["value"][0]
    if param["mode"] == "test":
        cr.add(compare("out (test mode must be the identity)", out, x, T["output"], scale_of(x)))
        _mutations(item, s, cr)
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
    _mutations(item, s, cr)


def rel_error_ok(a, b) -> bool:
    return matches(a, np.full(np.shape(a), b), T["output"])


def _check_dropout_backward(item, case, r, s, sfwd, cr, ctx):
    if _fail_record(cr, s, ctx):
        return
    got = _as_tuple(s["value"], 1)
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
        cr.add(compare("dx", got[0], _as_tuple(r["value"], 1)[0], T["gradient"], scale_of(dout)))
    _mutations(item, s, cr)


def check_layer(item, cases, R, S, ctx):
    forward, backward = [], []
    for i, case in enumerate(cases):
        cr = _new_case(case, i)
        r, s = R.get(f"fwd/{i}"), S.get(f"fwd/{i}")
        if not _ref_failed(cr, r):
            if item.check == "dropout":
                _check_dropout_forward(item, case, r, s, cr, ctx)
            else:
                _check_forward(item, r, s, cr, ctx)
        forward.append(cr)
    if item.spec.get("backward"):
        for i, case in enumerate(cases):
            if not case.get("backward", True):
                continue
            cr = _new_case(case, i)
            r, s = R.get(f"bwd/{i}"), S.get(f"bwd/{i}")
            if not _ref_failed(cr, r):
                if item.check == "dropout":
                    _check_dropout_backward(item, case, r, s, S.get(f"fwd/{i}"), cr, ctx)
                else:
                    _check_backward(item, r, s, cr, ctx)
            backward.append(cr)
    return {"forward": forward, "backward": backward}


# ----------------------------------------------------------------------------------------------
# loss items, optimizers, objects
# ----------------------------------------------------------------------------------------------


def check_loss(item, cases, R, S, ctx):
    out = []
    g = item.grads[0][0]
    for i, case in enumerate(cases):
        cr = _new_case(case, i)
        r, s = R.get(f"loss/{i}"), S.get(f"loss/{i}")
        out.append(cr)
        if _ref_failed(cr, r) or _fail_record(cr, s, ctx):
            continue
        got = _as_tuple(s["value"], 2)
        if got is None:
            cr.fail(
                f"{item.spec['function']} must return (loss, {g}); it returned "
                f"{describe(s['value'])}"
            )
            continue
        cr.add(compare("loss", got[0], r["value"][0], T["output"], scale_of(r["value"][0])))
        cr.add(compare(g, got[1], r["value"][1], T["gradient"], scale_of(r["value"][1])))
        _mutations(item, s, cr)
    return {"loss": out}


def check_optim(item, cases, R, S, ctx):
    out = []
    for i, case in enumerate(cases):
        cr = _new_case(case, i)
        out.append(cr)
        for step in range(len(case["dws"])):
            key = f"step/{i}/{step}"
            r, s = R.get(key), S.get(key)
            if _ref_failed(cr, r):
                break
            before = len(cr.messages)
            if _fail_record(cr, s, ctx):
                cr.messages[-1] = f"step {step + 1}: {cr.messages[-1]}"
                break
            got = _as_tuple(s["value"], 2)
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
            _mutations(item, s, cr)
            if len(cr.messages) > before:
                break
    return {"step": out}


def _check_init(item, r, s, cr, ctx, big: bool):
    if _fail_record(cr, s, ctx):
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
            cr = _new_case(case, i)
            if not _ref_failed(cr, r_init):
                _check_init(item, r_init, s_init, cr, ctx, bool(case["meta"].get("init_stats")))
            per_test["init"].append(cr)
        crs = {}
        for j, call in enumerate(case["calls"]):
            part = call.get("test")
            if part is None or part not in per_test:
                continue
            cr = crs.get(part)
            if cr is None:
                cr = crs[part] = _new_case(case, i)
                per_test[part].append(cr)
                if (
                    not _ref_failed(cr, r_init)
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
            if _ref_failed(cr, r):
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
            if _fail_record(cr, s, ctx):
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
            _mutations(item, s, cr)
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
    got = _as_tuple(v, 2)
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


def check_random(cr: CaseResult, value, case) -> None:
    """sample_noise: shape (batch_size, dim), values in [-1, 1] spread like U(-1, 1) (mean 0,
    variance 1/3, within THRESHOLDS['dropout_sigmas'] standard errors), and with a seed the
    same draw twice."""
    got = _as_tuple(value, 2)
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
    got = _as_tuple(value, 4)
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
    got = _as_tuple(value, 2)
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
_SELF_CHECKS = {
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
        cr = _new_case(case, i)
        per_test[fspec["function"]].append(cr)
        r, s = R.get(f"loss/{i}"), S.get(f"loss/{i}")
        if fspec.get("check") in _SELF_CHECKS:
            if not _fail_record(cr, s, ctx):
                _SELF_CHECKS[fspec["check"]](cr, s["value"], case)
            continue
        if _ref_failed(cr, r) or _fail_record(cr, s, ctx):
            continue
        got = _as_tuple(s["value"], 2)
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
        cr = _new_case(case, i)
        per_test[mspec["cls"]].append(cr)
        r, s = R.get(f"loss/{i}"), S.get(f"loss/{i}")
        if _ref_failed(cr, r) or _fail_record(cr, s, ctx):
            continue
        got = _as_tuple(s["value"], 3)
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


CHECKS = {
    "layer": check_layer,
    "loss": check_loss,
    "optim": check_optim,
    "object": check_object,
    "torch": check_torch,
    "torch_module": check_torch_module,
}


# ----------------------------------------------------------------------------------------------
# Diagnosis
# ----------------------------------------------------------------------------------------------


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
            cr.diagnosis = _match_bug(item, module, cases[cr.index], S, cr, "fwd")
    # Accepted alternatives for the backward (e.g. max-pool ties).
    for cr in results["backward"]:
        if cr.value_only and item.accept:
            for note, overrides in item.accept:
                V = variant_records(item, module, overrides, cases[cr.index], cr.index)
                alt = _as_tuple((V.get("bwd/0") or {}).get("value"), len(item.grads))
                got = _as_tuple(S[f"bwd/{cr.index}"]["value"], len(item.grads))
                if (
                    alt
                    and got
                    and all(matches(a, b, T["gradient"]) for a, b in zip(got, alt, strict=True))
                ):
                    _accept(cr, note)
                    break
    if item.meta.get("pool"):
        _accept_pool_splits(item, cases, S, results["backward"])
    cr = _pick(results["backward"])
    if cr is None:
        return
    if item.meta.get("pool") and cr.meta.get("ties"):
        cr.diagnosis = _TIE_HINT  # a numerical gradient means nothing at a tie
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
    got = _as_tuple(S[f"bwd/{cr.index}"]["value"], len(names))
    ref = _as_tuple(R[f"bwd/{cr.index}"]["value"], len(names))
    cr.diagnosis = explain_gradients(
        [(g, got[names.index(g)], ref[names.index(g)], num.get(g)) for g in bad],
        fwd_ok,
        "forward",
        cr.meta,
    )


_TIE_HINT = (
    "where a window has several equal maxima your dx is not a valid split of dout: "
    "each window's dout must go to its maxima only and sum to dout (all of it to the "
    "first maximum, as the reference and PyTorch do, or shared among them)"
)


def pool_split_ok(x, pool_param, dout, dx, tol=None) -> bool:
    """Is ``dx`` a valid subgradient of max pooling (non-overlapping windows): in each window,
    zero off the maxima, and on them a split of dout (same sign, parts adding up to dout)?"""
    tol = T["gradient"] if tol is None else tol
    ph, pw, st = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    x, dout = np.asarray(x, dtype=np.float64), np.asarray(dout, dtype=np.float64)
    try:
        dx = np.asarray(dx, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    if dx.shape != x.shape or st < max(ph, pw) or not np.all(np.isfinite(dx)):
        return False
    covered = np.zeros(x.shape, dtype=bool)
    scale = max(float(np.abs(dout).max(initial=0.0)), 1e-300)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            win = (slice(None), slice(None), slice(i * st, i * st + ph), slice(j * st, j * st + pw))
            covered[win] = True
            xw, gw, d = x[win], dx[win], dout[:, :, i : i + 1, j : j + 1]
            is_max = xw == xw.max(axis=(2, 3), keepdims=True)
            if np.abs(np.where(is_max, 0.0, gw)).max(initial=0.0) > tol * scale:
                return False  # gradient off the maxima
            share = np.where(is_max, gw, 0.0)
            if np.abs(share.sum(axis=(2, 3), keepdims=True) - d).max() > tol * scale:
                return False  # the parts do not add up to dout
            if np.any(share * d < -tol * scale * scale):
                return False  # a part of the wrong sign
    return bool(np.abs(dx[~covered]).max(initial=0.0) <= tol * scale)


def _accept(cr: CaseResult, note: str) -> None:
    """Pass a case that an accepted alternative explains; its error against the reference
    measures nothing then."""
    cr.status, cr.messages, cr.err = "pass", [], None
    cr.notes = [*cr.notes, note]


def _accept_pool_splits(item, cases, S, crs) -> None:
    for cr in crs:
        if not cr.value_only:
            continue
        case = cases[cr.index]
        got = _as_tuple(S[f"bwd/{cr.index}"]["value"], 1)
        if got and pool_split_ok(case["args"][0], case["args"][1], case["douts"][0], got[0]):
            _accept(
                cr,
                "tied maxima share the gradient differently from the reference "
                "(accepted: any split among tied maxima is a valid gradient)",
            )


def _match_bug(item, module, case, S, cr, prefix):
    for message, overrides in item.bugs:
        V = variant_records(item, module, overrides, case, cr.index)
        if not V:
            continue
        if _records_match(S, V, cr.index, prefix):
            return "looks like: " + message
    return ""


def _records_match(S, V, i, prefix) -> bool:
    """Do the student's records of case i equal the variant's (case 0 of its own run)?"""
    pairs = [
        (k, f"{prefix}/0" + k[len(f"{prefix}/{i}") :])
        for k in S
        if k == f"{prefix}/{i}" or k.startswith(f"{prefix}/{i}/")
    ]
    if not pairs:
        return False
    for sk, vk in pairs:
        s, v = S[sk], V.get(vk)
        if v is None or s.get("error") or v.get("error"):
            return False
        if not _tree_match(s.get("value"), v.get("value")):
            return False
        for name, d in (v.get("state") or {}).items():
            sd = (s.get("state") or {}).get(name) or {}
            if not all(
                k in sd and _tree_match(sd[k], d[k]) for k in d if isinstance(d[k], np.ndarray)
            ):
                return False
    return True


def _tree_match(a, b) -> bool:
    if isinstance(b, dict):
        return isinstance(a, dict) and all(
            k in a and _tree_match(a[k], b[k]) for k in b if isinstance(b[k], np.ndarray)
        )
    if isinstance(b, (tuple, list)):
        return (
            isinstance(a, (tuple, list))
            and len(a) == len(b)
            and all(_tree_match(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(b, (np.ndarray, float, int, np.number)) and not isinstance(b, bool):
        return matches(a, b, T["bug_match"])
    return True


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
                if V and _records_match(S, V, cr.index, "step"):
                    _accept(cr, note)
                    break
        if cr.status == "fail" and item.bugs:
            cr.diagnosis = _match_bug(item, module, cases[cr.index], S, cr, "step")


def _accept_object_alternatives(item, module, cases, S, results) -> None:
    """Pass object cases that an accepted alternative reproduces (e.g. minibatches drawn
    without replacement), with the alternative's note."""
    for crs in results.values():
        for cr in crs:
            if not (cr.value_only and item.accept):
                continue
            for note, overrides in item.accept:
                V = variant_records(item, module, overrides, cases[cr.index], cr.index)
                if V and _records_match(S, V, cr.index, "call"):
                    _accept(cr, note)
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


DIAGNOSES = {
    "layer": diagnose_layer,
    "loss": diagnose_loss,
    "optim": diagnose_optim,
    "object": diagnose_object,
    "torch": lambda *args: None,
    "torch_module": lambda *args: None,
}


# ----------------------------------------------------------------------------------------------
# Summaries and the item loop
# ----------------------------------------------------------------------------------------------


def _robustness_only(c: CaseResult, item: Item) -> None:
    """A robustness case (e.g. huge logits) that fails on values or raises becomes a robustness
    remark on an otherwise passing case."""
    if c.meta.get("robust") and c.status in ("fail", "error"):
        why = c.messages[0] if c.messages else c.status
        if item.meta.get("nan_hint") and any(m.kind == "nan" for m in c.cmps):
            why += f" ({item.meta['nan_hint']})"
        c.robustness.append(f"case '{c.label}': {why}")
        c.status, c.messages, c.diagnosis = "pass", [], ""


def _case_record(c: CaseResult) -> dict:
    """One case of a test, as plain JSON data."""
    err = c.err if c.err is not None and math.isfinite(c.err) else None
    return {
        "label": c.label,
        "status": c.status,
        "max_rel_error": err,
        "messages": list(c.messages),
        "diagnosis": c.diagnosis,
        "robustness": list(c.robustness),
        "notes": list(c.notes),
    }


def summarize(name, item, file, crs, output="") -> TestResult:
    for c in crs:
        _robustness_only(c, item)
    counted = [c for c in crs if c.status != "skipped"]
    notes, robustness = [], []
    for c in crs:
        for n in c.notes:
            if n not in notes:
                notes.append(n)
        for n in c.robustness:
            if n not in robustness:
                robustness.append(n)
    errs = [c.err for c in counted if c.err is not None]
    res = TestResult(
        name,
        item.name,
        file,
        "pass",
        max(errs) if errs else None,
        notes=notes,
        cases_passed=sum(c.status == "pass" for c in counted),
        cases_total=len(counted),
        robustness=robustness,
        cases=[_case_record(c) for c in crs],
    )
    reasons = []
    for c in crs:
        if c.skip_reason and c.skip_reason not in reasons:
            reasons.append(c.skip_reason)
    if not counted:
        res.verdict = "skipped"
        res.hint = "the reference could not run: " + "; ".join(reasons[:2])
        res.details = [res.hint]
        return res
    if reasons:
        n = len(crs) - len(counted)
        res.notes.append(
            f"{n} case(s) not graded: the reference failed on them ({'; '.join(reasons[:2])})"
        )
    failing = [c for c in counted if c.status != "pass"]
    if not failing:
        return res
    res.verdict = min((c.status for c in failing), key=_SEVERITY.index)
    first = next(c for c in failing if c.status == res.verdict)
    diag = next((c.diagnosis for c in failing if c.diagnosis), "")
    nan_hint = item.meta.get("nan_hint")
    if nan_hint and any(m.kind == "nan" for c in failing for m in c.cmps):
        for c in failing:
            if any(m.kind == "nan" for m in c.cmps) and not c.diagnosis:
                c.diagnosis = nan_hint
    res.hint = diag or f"{first.messages[0]} (case '{first.label}')"
    shown = set()
    for c in failing:
        for m in c.messages:
            res.details.append(f"case '{c.label}': {m}")
        if c.diagnosis and c.diagnosis not in shown:
            shown.add(c.diagnosis)
            res.details.append(f"case '{c.label}': diagnosis: {c.diagnosis}")
    if res.verdict in ("error", "timeout", "crash"):
        res.output = output
    return res


@dataclass
class _Prepared:
    """An item ready for its child: the student's module, the tests it defines, and the
    reference's cases and records."""

    item: Item
    mod: object
    present: dict
    missing: list
    module: object
    cases: list
    R: dict


def _prepare(item: Item, ctx: Context):
    """(final results, None) when the item cannot or need not run, else (None, _Prepared)."""
    mod = ctx.sub.find(item.files, item.functions)
    if mod is None:
        return [], None
    present = {
        p: t for p, t in item.tests.items() if mod.syntax_error or item.requires[t] in mod.defined
    }
    if not present:
        return [], None
    missing = [
        TestResult(
            t,
            item.name,
            mod.relpath,
            "missing",
            hint=f"{item.requires[t]} is not defined in {mod.relpath}",
        )
        for p, t in item.tests.items()
        if p not in present
    ]

    def everything(verdict, hint):
        return [
            TestResult(t, item.name, mod.relpath, verdict, hint=hint, details=[hint])
            for t in present.values()
        ] + missing, None

    if mod.syntax_error:
        return everything("error", f"{mod.relpath} does not parse: {mod.syntax_error}")
    if mod.dotted in ctx.import_errors:
        err = ctx.import_errors[mod.dotted]
        return everything(
            error_status(err), f"importing {mod.relpath} failed: {error_message(err, ctx)}"
        )
    try:
        module, cases, R = reference_run(item, ctx.seed)
    except Exception as exc:  # noqa: BLE001 -- reference not written yet, or broken
        return everything(
            "skipped", f"reference {item.ref} is not available ({type(exc).__name__}: {exc})"
        )
    return None, _Prepared(item, mod, present, missing, module, cases, R)


def _part(prep: _Prepared) -> dict:
    return {
        "driver": prep.item.kind,
        "module": prep.mod.dotted,
        "spec": prep.item.spec,
        "cases": prep.cases,
    }


def _finish(prep: _Prepared, records: dict, output: str, ctx: Context) -> list:
    """Compare the student's records with the reference's, diagnose, summarize each test."""
    item = prep.item
    results = CHECKS[item.kind](item, prep.cases, prep.R, records, ctx)
    DIAGNOSES[item.kind](item, prep.cases, prep.R, records, results, ctx, prep.mod, prep.module)
    out = [
        summarize(t, item, prep.mod.relpath, results[p], output)
        for p, t in item.tests.items()
        if p in prep.present
    ]
    return out + prep.missing


def grade_item(item: Item, ctx: Context) -> list:
    done, prep = _prepare(item, ctx)
    if prep is None:
        return done
    S = runner.run_job(child_job(ctx, **_part(prep)), ctx.limits, ctx.harness, ctx.deadline)
    return _finish(prep, S.records, S.output, ctx)


def grade_together(items, ctx: Context) -> list:
    """Grade several items in ONE child (``call_drivers`` 'multi'): for the PyTorch items, whose
    children spend most of their time importing torch. Returns one result list per item."""
    prepared = [_prepare(item, ctx) for item in items]
    parts = [prep for _, prep in prepared if prep is not None]
    if not parts:
        return [done for done, _ in prepared]
    job = child_job(ctx, driver="multi", parts=[_part(p) for p in parts])
    S = runner.run_job(job, ctx.limits, ctx.harness, ctx.deadline)
    out = []
    k = 0
    for done, prep in prepared:
        if prep is None:
            out.append(done)
            continue
        records = {
            key.partition("|")[2]: rec
            for key, rec in S.records.items()
            if key.partition("|")[0] == str(k)
        }
        err = (records.get(f"import:{prep.mod.dotted}") or {}).get("error")
        if err:  # the import check left these files out: the shared child found it
            hint = f"importing {prep.mod.relpath} failed: {error_message(err, ctx)}"
            out.append(
                [
                    TestResult(
                        t,
                        prep.item.name,
                        prep.mod.relpath,
                        error_status(err),
                        hint=hint,
                        details=[hint],
                        output=S.output,
                    )
                    for t in prep.present.values()
                ]
                + prep.missing
            )
        else:
            out.append(_finish(prep, records, S.output, ctx))
        k += 1
    return out


def preflight_imports(ctx: Context, modules) -> dict:
    """Import each student module once, in one child: syntax errors, import errors, and
    module-level code that hangs are found once instead of once per item."""
    modules = sorted(set(modules))
    if not modules:
        return {}
    job = child_job(ctx, driver="import", modules=modules)
    res = runner.run_job(job, ctx.limits, ctx.harness, ctx.deadline)
    errors = {}
    for name in modules:
        rec = res.records.get(f"import:{name}")
        if rec is None:
            errors[name] = {
                "type": "NotRun",
                "message": "the import check did not finish",
                "where": "",
            }
        elif rec.get("error"):
            errors[name] = rec["error"]
    return errors


def select_items(only=None) -> list:
    """Items whose test names match any of the fnmatch patterns in ``only`` (all by default)."""
    import fnmatch

    if not only:
        return list(ITEMS)
    return [
        it
        for it in ITEMS
        if any(
            fnmatch.fnmatchcase(t, pat) or fnmatch.fnmatchcase(it.name, pat)
            for t in it.tests.values()
            for pat in only
        )
    ]


def _profile_items(profile, only) -> list:
    items = select_items(only)
    if profile is None:
        return items
    return [it for it in items if set(it.tests.values()) & set(profile.points)]


def _not_found(profile, results, sub, only) -> list:
    """MISSING results for the profile's tests the submission does not define at all."""
    import fnmatch

    seen = {r.name for r in results}
    out = []
    for item in ITEMS:
        for test in item.tests.values():
            if test not in profile.points or test in seen or profile.is_optional(test):
                continue
            if only and not any(
                fnmatch.fnmatchcase(test, p) or fnmatch.fnmatchcase(item.name, p) for p in only
            ):
                continue
            files = " or ".join(item.files)
            out.append(
                TestResult(
                    test,
                    item.name,
                    item.files[0],
                    "missing",
                    hint=f"{item.requires[test]} is not defined (looked in {files})",
                )
            )
            seen.add(test)
    return out


def _ungraded_note(profile, sub) -> str:
    """Which functions the submission defines that the profile does not grade."""
    extra = []
    for item in ITEMS:
        mod = sub.find(item.files, item.functions)
        if mod is None or mod.syntax_error:
            continue
        for test in item.tests.values():
            if (
                test not in profile.points
                and item.requires[test] in mod.defined
                and test not in extra
            ):
                extra.append(test)
    if not extra:
        return ""
    return (
        f"not graded (not part of assignment {profile.assignment}, or course-provided): "
        + ", ".join(extra)
    )


def _keep(results, profile, only) -> list:
    """The results to report: those ``only`` asks for, and with a profile its tests only."""
    if only:
        import fnmatch

        results = [
            r
            for r in results
            if any(fnmatch.fnmatchcase(r.name, p) or fnmatch.fnmatchcase(r.item, p) for p in only)
        ]
    if profile is not None:
        results = [r for r in results if r.name in profile.points]
        for r in results:
            r.points = float(profile.points[r.name])
    return results


def grade(
    sub,
    limits=None,
    seed: int = 231,
    jobs: int = 1,
    only=None,
    time_budget: float | None = None,
    student_user=None,
    profile=None,
    on_progress=None,
) -> list:
    """Grade a Submission; returns TestResults in the order of the item table.

    ``time_budget``: seconds for the whole run (items not finished by then time out);
    ``student_user``: a ``sandbox.StudentUser`` to run student code as (the grader is root);
    ``profile``: a ``profiles.Profile`` fixing the tests and their points (each result's
    ``points``); its tests the submission lacks come back MISSING. Notes about what was and
    was not graded are appended to ``sub.notes``. ``on_progress(results, done, total)`` is
    called after each item with the results so far (from worker threads, one call at a time).
    """
    start = time.monotonic()
    ctx = Context(
        sub,
        limits or runner.Limits(),
        seed,
        deadline=start + time_budget if time_budget else math.inf,
        standins=dict(profile.standins) if profile else {},
    )
    items = [
        it for it in _profile_items(profile, only) if sub.find(it.files, it.functions) is not None
    ]
    # PyTorch files have one item each, whose own child finds their import errors: leaving
    # them out of the import check saves a child importing torch.
    mods = {
        m.relpath: m
        for m in (
            sub.find(it.files, it.functions) for it in items if not it.kind.startswith("torch")
        )
    }
    finished: dict = {}
    lock = threading.Lock()

    # The PyTorch items share one child (importing torch is most of a child's time).
    together = [it for it in items if it.kind.startswith("torch")]
    work = [it for it in items if not it.kind.startswith("torch")] + ([None] if together else [])

    def run(i_item):
        i, item = i_item
        if item is None:  # the PyTorch items, all in one child
            rs = [r for group in grade_together(together, ctx) for r in group]
        else:
            rs = grade_item(item, ctx)
        if on_progress is not None:
            with lock:
                finished[i] = rs
                so_far = [r for k in sorted(finished) for r in finished[k]]
                on_progress(_keep(so_far, profile, only), len(finished), len(work))
        return rs

    with sandbox.Harness(student_user) as ctx.harness:
        if student_user is not None:
            sub.share_with(student_user)
        ctx.import_errors = preflight_imports(
            ctx, [m.dotted for m in mods.values() if not m.syntax_error]
        )
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            per_item = list(pool.map(run, enumerate(work)))
    results = _keep([r for rs in per_item for r in rs], profile, only)
    if profile is not None:
        results += _not_found(profile, results, sub, only)
        for r in results:
            r.points = float(profile.points[r.name])
        order = {t: i for i, t in enumerate(profile.points)}
        results.sort(key=lambda r: order[r.name])
        sub.notes.append(profile.environment_note())
        note = _ungraded_note(profile, sub)
        if note:
            sub.notes.append(note)
    return results
