"""Which cases ``benchmarks/ops.py`` times, at which shapes: the CNN's own (from
``cnn_shapes``), and the fixed sizes of the parity registry's entries (``bench.shapes``: CS231n's
ThreeLayerConvNet and FullyConnectedNet sizes, assignment 3's captioning and transformer sizes);
``--only`` filters them.

Every op case is a registry entry's (``op_case.catalog_case``); the registry is imported here,
inside ``build_cases``, after ``ops.py`` has set the thread counts.
"""

from __future__ import annotations

import math

from benchmarks.cnn_shapes import cnn_shapes
from benchmarks.op_case import BenchmarkCase, catalog_case, matmul_case


def _entries() -> dict:
    """Benchmark name -> the registry entry it times."""
    from parity_tests.registry import specs_with

    return {spec.bench.name: spec for spec in specs_with("bench")}


def _cnn_cases(entries, N, rec, layout) -> list[BenchmarkCase]:
    """The training model's own shapes (batch N), with how often one step runs each."""
    cases = []
    for (c, h, w, f, k, s, p), n in rec["conv"].items():
        shape = {"N": N, "C": c, "H": h, "W": w, "F": f, "k": k, "stride": s, "pad": p}
        cases.append(catalog_case(entries["conv"], "cnn", shape, n, channels_last=layout))
    for (c, h, w, k, s), n in rec["pool"].items():
        shape = {"N": N, "C": c, "H": h, "W": w, "size": k, "stride": s}
        cases.append(catalog_case(entries["max_pool"], "cnn", shape, n, channels_last=layout))
    for (c, h, w), n in rec["bn"].items():
        shape = {"N": N, "C": c, "H": h, "W": w}
        cases.append(
            catalog_case(entries["spatial_batchnorm"], "cnn", shape, n, channels_last=layout)
        )
    if rec["relu"]:
        # The largest ReLU of the model (ReLU is memory-bound: one shape tells the story).
        relu = max(rec["relu"], key=lambda s: math.prod(s))
        cases.append(
            catalog_case(
                entries["relu"],
                "cnn",
                {"shape": (N, *relu)},
                rec["relu"][relu],
                channels_last=layout,
            )
        )
    if rec["bn"]:
        c, h, w = sorted(rec["bn"], key=lambda s: -math.prod(s))[0]
        shape = {"N": N, "C": c, "H": h, "W": w, "G": max(1, c // 8)}
        cases.append(catalog_case(entries["groupnorm"], "cnn", shape, channels_last=layout))
    cases.append(
        catalog_case(entries["softmax_loss"], "cnn", {"N": N, "C": 10}, channels_last=layout)
    )
    return cases


def build_cases(args) -> tuple[list[BenchmarkCase], str]:
    smoke, quick = args.smoke, args.quick
    batch = args.batch_size or (2 if smoke else (128 if quick else None))
    N, rec, src = cnn_shapes(batch, smoke)
    entries = _entries()
    cases = [matmul_case(128 if smoke else (1024 if quick else 2048))]
    cases += _cnn_cases(entries, N, rec, args.channels_last)
    for spec in entries.values():
        for fixed in spec.bench.shapes:
            shape = fixed.smoke if smoke else fixed.shape
            cases.append(catalog_case(spec, fixed.group, shape, channels_last=args.channels_last))
    if args.only:
        wanted = [s.strip() for s in args.only.split(",")]
        cases = [
            c
            for c in cases
            if c.bench == "matmul" or any(w in f"{c.bench} {c.case}" for w in wanted)
        ]
    layout = {"auto": "as train.py (channels last for torch and builtin)", "on": "channels last"}
    where = layout.get(args.channels_last, "contiguous")
    return cases, f"{src}; benchmark batch N={N}; 4-D inputs {where}"
