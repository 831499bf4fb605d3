"""Timing the cases and turning the times into rows: ratios to the builtin, GFLOP/s and
their fraction of the matmul rate, target verdicts, the CNN's conv total; the table and the
summary."""

from __future__ import annotations

from benchmarks import _common as common
from benchmarks.op_case import NUMPY_TARGETS, TORCH_TARGET, BenchmarkCase


def run_case(case: BenchmarkCase, backends, warmup, repeats, min_time) -> list[dict]:
    fns, rows = {}, []
    for b in backends:
        if case.bench == "matmul" and b == "torch":
            continue  # torch_impl's GEMM is torch's: the builtin row measures it
        try:
            fns[b] = case.make(b)
        except (ImportError, AttributeError) as e:
            rows.append(
                {
                    "bench": case.bench,
                    "case": case.case,
                    "backend": b,
                    "ms": None,
                    "ratio_to_builtin": None,
                    "group": case.group,
                    "error": f"unavailable: {e}",
                }
            )
    stats, errors = common.time_interleaved(fns, warmup, repeats, min_time)
    for b, err in errors.items():
        rows.append(
            {
                "bench": case.bench,
                "case": case.case,
                "backend": b,
                "ms": None,
                "ratio_to_builtin": None,
                "group": case.group,
                "error": err,
            }
        )
    for b, s in stats.items():
        row = {
            "bench": case.bench,
            "case": case.case,
            "backend": b,
            "ms": common.sig(s["median"] * 1e3),
            "ratio_to_builtin": None,
            "group": case.group,
            "ms_min": common.sig(s["min"] * 1e3),
            "ms_max": common.sig(s["max"] * 1e3),
            "calls_per_sample": s["inner"],
        }
        if case.flops:
            row["gflops"] = common.sig(case.flops / s["median"] / 1e9)
        if case.count != 1:
            row["count_in_model"] = case.count
        rows.append(row)
    order = {b: i for i, b in enumerate(common.BACKENDS)}
    rows.sort(key=lambda r: order[r["backend"]])
    return rows


def finish_rows(rows: list[dict], cases: list[BenchmarkCase]) -> list[dict]:
    """Ratios, matmul fractions, target verdicts, and the CNN-total conv rows."""
    common.add_ratios(rows)
    # The machine's GEMM rate is a peak: taken from the fastest matmul sample, not the median.
    rate = {}
    for r in rows:
        if r["bench"] == "matmul" and r.get("ms"):
            r["gflops_peak"] = common.sig(r["gflops"] * r["ms"] / r["ms_min"])
            rate[r["backend"]] = r["gflops_peak"]
    rate["torch"] = rate.get("builtin")
    targets = {(c.bench, c.case): c.targets for c in cases}
    for r in rows:
        if r["bench"] == "conv" and r.get("gflops") and rate.get(r["backend"]):
            r["matmul_fraction"] = common.sig(r["gflops"] / rate[r["backend"]])
        t = targets.get((r["bench"], r["case"]), {}).get(r["backend"])
        if t is not None and r["ratio_to_builtin"] is not None:
            r["target"], r["meets_target"] = t, r["ratio_to_builtin"] <= t
    # One step's worth of the CNN's convs: each shape's time times its count in the model.
    cnn = {(c.bench, c.case): c.count for c in cases if c.bench == "conv" and c.group == "cnn"}
    totals = {}
    for r in rows:
        if (r["bench"], r["case"]) in cnn and r.get("ms"):
            totals.setdefault(r["backend"], []).append(r["ms"] * cnn[(r["bench"], r["case"])])
    complete = {b: v for b, v in totals.items() if len(v) == len(cnn)}
    if "builtin" in complete:
        flops = sum(c.flops * c.count for c in cases if (c.bench, c.case) in cnn)
        extra = []
        for b, v in complete.items():
            ms = sum(v)
            row = {
                "bench": "conv_total",
                "case": f"all {len(cnn)} conv shapes of the CNN",
                "backend": b,
                "ms": common.sig(ms),
                "ratio_to_builtin": None,
                "group": "cnn",
                "gflops": common.sig(flops / ms / 1e6),
            }
            if rate.get(b):
                row["matmul_fraction"] = common.sig(row["gflops"] / rate[b])
            extra.append(row)
        common.add_ratios(extra)
        for r in extra:
            t = {"numpy": NUMPY_TARGETS["conv@cnn"], "torch": TORCH_TARGET}.get(r["backend"])
            if t is not None:
                r["target"], r["meets_target"] = t, r["ratio_to_builtin"] <= t
        rows += extra
    return rows


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
