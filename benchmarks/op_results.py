"""Timing the cases and turning the times into rows: ratios to the builtin, GFLOP/s and
their fraction of the matmul rate, target verdicts, the CNN's conv total; the table and the
summary."""

from __future__ import annotations

from benchmarks import _common as common
from benchmarks.op_case import CONV_TOTAL_TARGETS, BenchmarkCase


def _error_row(case: BenchmarkCase, backend: str, error: str) -> dict:
    """The row of a backend that could not be timed: no time, and why."""
    return {
        "bench": case.bench,
        "case": case.case,
        "backend": backend,
        "ms": None,
        "ratio_to_builtin": None,
        "group": case.group,
        "error": error,
    }


def time_case(case: BenchmarkCase, backends, warmup, repeats, min_time) -> list[dict]:
    """One row per backend: the median forward+backward time of ``case`` (interleaved rounds,
    ``common.time_interleaved``), its spread and GFLOP/s; an error row for a backend that
    cannot build or run the case. Ratios and verdicts come later (``add_ratios_and_verdicts``)."""
    closures, rows = {}, []
    for b in backends:
        if case.bench == "matmul" and b == "torch":
            continue  # torch_impl's GEMM is torch's: the builtin row measures it
        try:
            closures[b] = case.make(b)
        except (ImportError, AttributeError) as e:
            rows.append(_error_row(case, b, f"unavailable: {e}"))
    stats, errors = common.time_interleaved(closures, warmup, repeats, min_time)
    rows += [_error_row(case, b, err) for b, err in errors.items()]
    for b, s in stats.items():
        row = {
            "bench": case.bench,
            "case": case.case,
            "backend": b,
            "ms": common.round_sig(s["median"] * 1e3),
            "ratio_to_builtin": None,
            "group": case.group,
            "ms_min": common.round_sig(s["min"] * 1e3),
            "ms_max": common.round_sig(s["max"] * 1e3),
            "samples_ms": [common.round_sig(x * 1e3) for x in s["samples"]],
            "calls_per_sample": s["inner"],
        }
        if case.flops:
            row["gflops"] = common.round_sig(case.flops / s["median"] / 1e9)
        if case.count != 1:
            row["count_in_model"] = case.count
        rows.append(row)
    order = {b: i for i, b in enumerate(common.BACKENDS)}
    rows.sort(key=lambda r: order[r["backend"]])
    return rows


def _judge(row: dict, target: float | None) -> None:
    """Add the target and whether the row's ratio to the builtin meets it."""
    if target is not None and row["ratio_to_builtin"] is not None:
        row["target"], row["meets_target"] = target, row["ratio_to_builtin"] <= target


def _matmul_rates(rows: list[dict]) -> dict:
    """backend -> the float32 GEMM rate of its library (GFLOP/s). A peak: taken from the
    fastest matmul sample, not the median (also written to the matmul rows)."""
    rate = {}
    for r in rows:
        if r["bench"] == "matmul" and r.get("ms"):
            r["gflops_peak"] = common.round_sig(r["gflops"] * r["ms"] / r["ms_min"])
            rate[r["backend"]] = r["gflops_peak"]
    rate["torch"] = rate.get("builtin")  # torch_impl's products are torch's
    return rate


def _conv_total_rows(rows: list[dict], cases: list[BenchmarkCase], rate: dict) -> list[dict]:
    """One step's worth of the CNN's convs per backend: each shape's time times its count in
    the model; none unless the builtin (the reference) timed every shape."""
    cnn = {(c.bench, c.case): c.count for c in cases if c.bench == "conv" and c.group == "cnn"}
    totals, rounds = {}, {}
    for r in rows:
        if (r["bench"], r["case"]) in cnn and r.get("ms"):
            count = cnn[(r["bench"], r["case"])]
            totals.setdefault(r["backend"], []).append(r["ms"] * count)
            rounds.setdefault(r["backend"], []).append(
                [x * count for x in r.get("samples_ms") or []]
            )
    complete = {b: v for b, v in totals.items() if len(v) == len(cnn)}
    if "builtin" not in complete:
        return []
    flops = sum(c.flops * c.count for c in cases if (c.bench, c.case) in cnn)
    extra = []
    for b, v in complete.items():
        ms = sum(v)
        row = {
            "bench": "conv_total",
            "case": f"all {len(cnn)} conv shapes of the CNN",
            "backend": b,
            "ms": common.round_sig(ms),
            "ratio_to_builtin": None,
            "group": "cnn",
            "gflops": common.round_sig(flops / ms / 1e6),
        }
        if rate.get(b):
            row["matmul_fraction"] = common.round_sig(row["gflops"] / rate[b])
        per_case = rounds[b]
        if all(per_case) and len({len(s) for s in per_case}) == 1:
            # round by round, the sum over the shapes
            row["samples_ms"] = [common.round_sig(sum(t)) for t in zip(*per_case, strict=True)]
        extra.append(row)
    common.add_ratios(extra)
    for r in extra:
        _judge(r, CONV_TOTAL_TARGETS.get(r["backend"]))
    return extra


def add_ratios_and_verdicts(rows: list[dict], cases: list[BenchmarkCase]) -> list[dict]:
    """The rows of every case, completed: ratios to the builtin, each conv's fraction of its
    library's matmul rate, target verdicts; plus the CNN-total conv rows."""
    common.add_ratios(rows)
    rate = _matmul_rates(rows)
    targets = {(c.bench, c.case): c.targets for c in cases}
    for r in rows:
        if r["bench"] == "conv" and r.get("gflops") and rate.get(r["backend"]):
            r["matmul_fraction"] = common.round_sig(r["gflops"] / rate[r["backend"]])
        _judge(r, targets.get((r["bench"], r["case"]), {}).get(r["backend"]))
    return rows + _conv_total_rows(rows, cases, rate)


COLUMNS = [
    ("bench", "bench", str),
    ("case", "case", str),
    ("backend", "backend", str),
    ("ms", "ms", common.fmt_ms),
    ("x builtin", "ratio_to_builtin", common.fmt_ratio),
    ("target", "target", lambda v: f"<={v:g}x"),
    ("met", "meets_target", lambda v: "yes" if v else "NO"),
    ("GFLOP/s", "gflops", common.fmt_num),
    ("of matmul", "matmul_fraction", lambda v: f"{100 * v:.0f}%"),
    ("min-max ms", "_spread", str),
]


def print_table(rows, stream, markdown=False):
    for r in rows:
        if r.get("ms") is not None and "ms_min" in r:
            r["_spread"] = f"{common.fmt_ms(r['ms_min'])}-{common.fmt_ms(r['ms_max'])}"
    shown = [r for r in rows if r.get("ms") is not None]
    table = common.format_markdown if markdown else common.format_table
    print(table(shown, COLUMNS, left=3), file=stream)
    for r in rows:
        r.pop("_spread", None)
    for r in rows:
        if r.get("error"):
            print(f"! {r['bench']} {r['case']} [{r['backend']}]: {r['error']}", file=stream)


def print_summary(rows, stream):
    peaks = [
        f"{'torch' if r['backend'] == 'builtin' else 'numpy'} {r['gflops_peak']:g}"
        for r in rows
        if r.get("gflops_peak")
    ]
    if peaks:
        print(
            f"\nfloat32 GEMM rate (fastest matmul sample, GFLOP/s): {', '.join(peaks)}; "
            "the 'of matmul' column divides by the rate of the backend's own library",
            file=stream,
        )
    judged = [r for r in rows if "meets_target" in r]
    missed = [r for r in judged if not r["meets_target"]]
    print(f"\ntargets met: {len(judged) - len(missed)} of {len(judged)}", file=stream)
    for r in missed:
        print(
            f"  MISSED {r['backend']:7s} {r['bench']} {r['case']}: "
            f"{r['ratio_to_builtin']:.2f}x builtin (target <= {r['target']:g}x)",
            file=stream,
        )
