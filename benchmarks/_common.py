"""Shared pieces of the benchmark scripts: thread setup, machine facts, timing, output.

Imports nothing heavy at module level: ``configure_threads`` must run before NumPy or torch is
imported, because BLAS libraries read their thread count once, when they load.
"""

from __future__ import annotations

import ctypes
import gc
import glob
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence

from cifar_training.threads import MATMUL_PRECISIONS  # noqa: F401 - re-exported for the scripts
from cifar_training.threads import configure_allocator as _train_py_allocator_setting

BACKENDS = ("numpy", "torch", "builtin")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# ----------------------------------------------------------------------------------------------
# Threads
# ----------------------------------------------------------------------------------------------


# train.py's allocator setting (huge pages for torch's large CPU tensors), so every backend is
# timed as train.py runs it; call before importing torch.
configure_allocator = _train_py_allocator_setting


def configure_threads(n: int | None) -> None:
    """Pin every BLAS/OpenMP pool to ``n`` threads (call before importing NumPy or torch).

    None leaves the libraries' defaults (one thread per available core) and any variables the
    user exported alone.
    """
    if n is None:
        return
    for var in THREAD_VARS:
        os.environ[var] = str(n)


def _openblas_lib():
    """NumPy's bundled OpenBLAS (ctypes handle) or None; used when threadpoolctl is absent."""
    import numpy as np

    site = os.path.dirname(os.path.dirname(np.__file__))
    for path in sorted(glob.glob(os.path.join(site, "numpy.libs", "*openblas*"))):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def _openblas_call(lib, suffix: str, restype=ctypes.c_int):
    """Call the first exported ``*openblas_<suffix>*`` function (symbol names vary by build:
    scipy-openblas prefixes ``scipy_`` and suffixes ``64_``)."""
    for name in (f"scipy_openblas_{suffix}64_", f"openblas_{suffix}64_", f"openblas_{suffix}"):
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype = restype
            return fn()
    return None


def numpy_blas_info() -> dict:
    """NumPy's BLAS: library, version/config, the kernel set it picked, and its thread count."""
    import numpy as np

    info: dict = {"threads": None, "source": None}
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["name"] = cfg.get("name")
        info["version"] = cfg.get("version")
    except Exception:  # noqa: BLE001 - show_config's layout is not an API
        pass
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas" and "numpy" in pool.get("filepath", ""):
                info.update(
                    threads=pool["num_threads"],
                    source="threadpoolctl",
                    corename=pool.get("architecture"),
                )
                return info
    except ImportError:
        pass
    lib = _openblas_lib()
    if lib is not None:
        info["threads"] = _openblas_call(lib, "get_num_threads")
        core = _openblas_call(lib, "get_corename", ctypes.c_char_p)
        info["corename"] = core.decode() if core else None
        info["source"] = "OpenBLAS via ctypes"
    if info["threads"] is None:
        env = [os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")]
        info["threads"] = next((int(v) for v in env if v), None)
        info["source"] = "environment" if info["threads"] else "unknown"
    return info


# ----------------------------------------------------------------------------------------------
# Machine facts
# ----------------------------------------------------------------------------------------------

# The flags that decide which kernels the libraries can use.
_KERNEL_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
)


def cpu_facts() -> dict:
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "flags": [f for f in _KERNEL_FLAGS if f in flags],
    }


def machine_facts() -> dict:
    """Everything a reader needs to judge a timing: CPU, libraries, threads, load."""
    import numpy as np
    import torch

    facts = cpu_facts()
    blas = numpy_blas_info()
    facts.update(
        python=platform.python_version(),
        numpy=np.__version__,
        torch=torch.__version__,
        numpy_blas=f"{blas.get('name')} {blas.get('version')}"
        + (f" (kernels: {blas['corename']})" if blas.get("corename") else ""),
        numpy_blas_threads=blas["threads"],
        numpy_blas_threads_source=blas["source"],
        torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
        torch_mkldnn=torch.backends.mkldnn.is_available(),
        torch_threads=torch.get_num_threads(),
        torch_interop_threads=torch.get_num_interop_threads(),
        env={v: os.environ[v] for v in (*THREAD_VARS, "THP_MEM_ALLOC_ENABLE") if v in os.environ},
        loadavg=[round(x, 2) for x in os.getloadavg()],
    )
    return facts


def format_header(title: str, facts: dict, argv: Sequence[str]) -> str:
    f = facts
    lines = [
        f"# {title}",
        f"# command: {' '.join(['python', *argv])}",
        f"# date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"# load average (1, 5, 15 min) at start: {f['loadavg']}",
        f"# cpu: {f['cpu']}; {f['usable_cpus']} usable of {f['logical_cpus']} logical CPUs; "
        f"flags: {' '.join(f['flags'])}",
        f"# python {f['python']}, numpy {f['numpy']}, torch {f['torch']} "
        f"(CPU capability {f['torch_cpu_capability']}, mkldnn {f['torch_mkldnn']})",
        f"# numpy BLAS: {f['numpy_blas']}",
        f"# threads: torch {f['torch_threads']} (interop {f['torch_interop_threads']}), "
        f"numpy BLAS {f['numpy_blas_threads']} ({f['numpy_blas_threads_source']}); "
        f"env {f['env'] or '{}'}",
    ]
    if f["loadavg"][0] > (f["usable_cpus"] or 1):
        lines.append(
            f"# WARNING: the 1-minute load ({f['loadavg'][0]}) exceeds the "
            f"{f['usable_cpus']} usable CPUs: other processes compete for the cores. "
            "Absolute times are inflated, and multi-threaded kernels (torch's OpenMP "
            "regions, OpenBLAS) also stall at their barriers whenever one of their "
            "threads is descheduled, which biases the ratios against them: compare "
            "with --threads 1 under load."
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# train.py's recipe
# ----------------------------------------------------------------------------------------------

RECIPE_KEYS = (
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "label_smoothing",
    "widths",
    "stem",
    "bn_momentum",
    "seed",
)


def train_recipe(model: str, cheap: bool = False) -> dict:
    """train.py's recipe for ``--model`` as the benchmark tables use it: batch size, optimizer,
    widths, ... ("classic", widths 32/64/128, for the default model; "three-layer").

    The truth is ``cifar_training.train_args.resolve_args`` (the recipe with train.py's other
    defaults, such as --seed), which imports torch (seconds). ``cheap=True`` (the smoke runs)
    reads the recipe itself (``cifar_training.recipes``) and seed 0 instead.
    """
    import dataclasses

    from cifar_training.recipes import RECIPE_FOR_MODEL, RECIPES

    name = "classic" if model == "default" else RECIPE_FOR_MODEL[model]
    if not cheap:
        from cifar_training.train_args import resolve_args

        args = vars(resolve_args(["--model", model, "--recipe", name]))
        return {k: args[k] for k in RECIPE_KEYS}
    values = {**dataclasses.asdict(RECIPES[name]), "seed": 0}
    return {k: values[k] for k in RECIPE_KEYS}


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------


def _time_once(fn: Callable[[], object], inner: int) -> float:
    """Seconds per call of ``fn``, over ``inner`` back-to-back calls (GC paused, as timeit)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        return (time.perf_counter() - t0) / inner
    finally:
        if was_enabled:
            gc.enable()


def time_interleaved(fns: dict, warmup: int, repeats: int, min_time: float):
    """Median seconds per call of each function, measured round-robin.

    fns: key -> zero-argument callable. Each is first called ``max(warmup, 1)`` times (a
    function that raises there is dropped and its error returned); the last of those calls picks
    how many calls (``inner``) make one sample last at least ``min_time`` seconds (tiny ops would
    otherwise be timer noise). Then ``repeats`` rounds: every round times every function once,
    in an order rotated by one each round, so a burst of load on a shared machine hits all
    backends alike rather than one of them. Returns (stats, errors): key -> {"median", "min",
    "max", "samples", "inner"} (seconds per call), and key -> "ExceptionType: message".
    """
    inner, errors = {}, {}
    for k, fn in fns.items():
        try:
            for _ in range(max(warmup, 1)):
                t = _time_once(fn, 1)
        except Exception as e:  # noqa: BLE001 - report a broken backend, time the others
            errors[k] = f"{type(e).__name__}: {e}"
            continue
        inner[k] = max(1, int(min_time / max(t, 1e-9)) + (t < min_time))
    keys = list(inner)
    samples: dict = {k: [] for k in keys}
    for r in range(repeats):
        shift = r % max(len(keys), 1)
        for k in keys[shift:] + keys[:shift]:
            samples[k].append(_time_once(fns[k], inner[k]))
    stats = {
        k: {
            "median": statistics.median(s),
            "min": min(s),
            "max": max(s),
            "samples": s,
            "inner": inner[k],
        }
        for k, s in samples.items()
        if s
    }
    return stats, errors


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports ru_maxrss in KiB,
    macOS in bytes)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------


def round_sig(x: float, digits: int = 4) -> float:
    """x rounded to ``digits`` significant digits (JSON stays short, tiny values stay > 0)."""
    return float(f"{x:.{digits}g}")


def add_ratios(rows: list[dict]) -> None:
    """Set ``ratio_to_builtin`` of every row against the builtin's row of the same bench and
    case: the median over the timed rounds of (this row's sample / the builtin's sample of the
    same round) when both rows carry their samples in round order (``samples_ms``, as many
    each), else ms / the builtin's ms. The backends of a round are timed one after the other,
    so a machine that speeds up or slows down between rounds changes both samples of a round
    alike and cancels in its ratio, where it would move the two medians apart."""
    base = {(r["bench"], r["case"]): r for r in rows if r["backend"] == "builtin" and r.get("ms")}
    for r in rows:
        b = base.get((r["bench"], r["case"]))
        if not (b and r.get("ms")):
            r["ratio_to_builtin"] = None
            continue
        mine, theirs = r.get("samples_ms") or [], b.get("samples_ms") or []
        if mine and len(mine) == len(theirs) and all(theirs):
            ratio = statistics.median(x / y for x, y in zip(mine, theirs, strict=True))
        else:
            ratio = r["ms"] / b["ms"]
        r["ratio_to_builtin"] = round_sig(ratio)


def emit_json(rows: Iterable[dict], stream=None) -> None:
    stream = stream or sys.stdout
    for r in rows:
        stream.write(json.dumps(r, sort_keys=False) + "\n")
    stream.flush()


def format_table(
    rows: list[dict], columns: Sequence[tuple[str, str, Callable]], left: int = 2
) -> str:
    """Plain-text table. columns: (header, key, formatter(value) -> str); the first ``left``
    columns are left-aligned, the rest (numbers) right-aligned."""
    cells = [[h for h, _, _ in columns]]
    for r in rows:
        cells.append(
            [fmt(r.get(key)) if r.get(key) is not None else "-" for _, key, fmt in columns]
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for j, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i < left else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(
    rows: list[dict], columns: Sequence[tuple[str, str, Callable]], left: int = 2
) -> str:
    """The same table as ``format_table``, as GitHub markdown (for BENCHMARKS.md)."""
    head = [h for h, _, _ in columns]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(":---" if i < left else "---:" for i in range(len(head))) + "|",
    ]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(
                fmt(r.get(key)) if r.get(key) is not None else "-" for _, key, fmt in columns
            )
            + " |"
        )
    return "\n".join(lines)


def fmt_ms(v) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def fmt_ratio(v) -> str:
    return f"{v:.2f}x"


def fmt_num(v) -> str:
    return f"{v:.1f}" if isinstance(v, float) else str(v)
