"""``benchmarks/ops.py --profile``: where one case spends its time, on every backend."""

from __future__ import annotations

from benchmarks import _common as common
from benchmarks.op_case import BenchmarkCase


def gemm_breakdown(case: BenchmarkCase, stream, repeats=5) -> None:
    """Time the three GEMMs of an im2col conv alone, through NumPy (OpenBLAS) and torch (MKL):
    the part of the conv that no layout trick can remove; the rest is data movement."""
    import numpy as np
    import torch

    total = {"numpy": 0.0, "torch": 0.0}
    lines = []
    rng = np.random.default_rng(13)
    for m, k, n in case.gemms:
        a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
        at, bt = torch.tensor(a), torch.tensor(b)
        stats, _ = common.time_interleaved(
            {"numpy": lambda a=a, b=b: np.matmul(a, b), "torch": lambda a=at, b=bt: a @ b},
            1,
            repeats,
            0.02,
        )
        ms = {lib: st["median"] * 1e3 for lib, st in stats.items()}
        for lib in total:
            total[lib] += ms[lib]
        lines.append(
            f"  ({m} x {k}) @ ({k} x {n}): numpy {ms['numpy']:.2f} ms, torch {ms['torch']:.2f} ms"
        )
    print(f"### the conv's three GEMMs alone (median of {repeats})", file=stream)
    print("\n".join(lines), file=stream)
    print(f"  sum: numpy {total['numpy']:.2f} ms, torch {total['torch']:.2f} ms", file=stream)


def profile_case(case: BenchmarkCase, stream, top=15) -> None:
    """cProfile of the numpy closure; torch.profiler of the torch and builtin closures; for a
    conv, the time of its GEMMs alone."""
    import cProfile
    import io
    import pstats

    print(f"\n## profile: {case.bench} {case.case}", file=stream)
    if case.gemms:
        gemm_breakdown(case, stream)
    try:
        fn = case.make("numpy")
        fn()
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(3):
            fn()
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(top)
        print("### numpy (cProfile, 3 calls, by own time)", file=stream)
        print(s.getvalue().strip(), file=stream)
    except Exception as e:  # noqa: BLE001
        print(f"numpy: not profiled ({e!r})", file=stream)
    import torch

    for b in ("torch", "builtin"):
        try:
            fn = case.make(b)
            fn()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
                for _ in range(3):
                    fn()
            print(f"### {b} (torch.profiler, 3 calls, by self CPU time)", file=stream)
            print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=top), file=stream)
        except Exception as e:  # noqa: BLE001
            print(f"{b}: not profiled ({e!r})", file=stream)


def cases_to_profile(choice: str | None, rows: list[dict], cases: list[BenchmarkCase]) -> list:
    """The case ``--profile`` names: "auto" is the one with the largest numpy time (matmul and
    the conv total aside), otherwise the first whose 'bench case' contains ``choice``."""
    if not choice:
        return []
    measured = [
        r
        for r in rows
        if r["backend"] == "numpy" and r.get("ms") and r["bench"] not in ("matmul", "conv_total")
    ]
    if choice == "auto" and measured:
        slow = max(measured, key=lambda r: r["ms"])
        return [c for c in cases if (c.bench, c.case) == (slow["bench"], slow["case"])]
    return [c for c in cases if choice in f"{c.bench} {c.case}"][:1]
