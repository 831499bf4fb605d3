"""Which cases ``benchmarks/ops.py`` times, at which shapes: the CNN's own (from
``cnn_shapes``), CS231n's ThreeLayerConvNet and FullyConnectedNet sizes, and assignment 3's
captioning and transformer sizes; ``--only`` filters them."""

from __future__ import annotations

import math

from benchmarks.cases_conv import conv_case, matmul_case, max_pool_case
from benchmarks.cases_dense import affine_case, relu_case, softmax_loss_case
from benchmarks.cases_norm import (
    batchnorm_case,
    groupnorm_case,
    layernorm_case,
    spatial_batchnorm_case,
)
from benchmarks.cases_sequence import attention_case, lstm_case, mha_case, rnn_case
from benchmarks.cnn_shapes import cnn_shapes
from benchmarks.op_case import BenchmarkCase


def build_cases(args) -> tuple[list[BenchmarkCase], str]:
    smoke, quick = args.smoke, args.quick
    batch = args.batch_size or (2 if smoke else (128 if quick else None))
    N, rec, src = cnn_shapes(batch, smoke)
    cases = [matmul_case(128 if smoke else (1024 if quick else 2048))]
    for (c, h, w, f, k, s, p), n in rec["conv"].items():
        cases.append(conv_case(N, c, h, w, f, k, s, p, "cnn", n))
    # CS231n's ThreeLayerConvNet conv (notebook batch 50), and its pool and first affine.
    n3 = 2 if smoke else 50
    f3 = 4 if smoke else 32
    cases.append(conv_case(n3, 3, 32, 32, f3, 7, 1, 3, "three-layer"))
    for (c, h, w, k, s), n in rec["pool"].items():
        cases.append(max_pool_case(N, c, h, w, k, s, "cnn", n))
    cases.append(max_pool_case(n3, f3, 32, 32, 2, 2, "three-layer"))
    for (c, h, w), n in rec["bn"].items():
        cases.append(spatial_batchnorm_case(N, c, h, w, "cnn", n))
    if rec["relu"]:
        # The largest ReLU of the model (ReLU is memory-bound: one shape tells the story).
        shape = max(rec["relu"], key=lambda s: math.prod(s))
        cases.append(relu_case((N, *shape), "cnn", rec["relu"][shape]))
    # (N, D) layers at CS231n FullyConnectedNet-like sizes.
    nd = (4, 16) if smoke else (256, 1024)
    cases.append(batchnorm_case(*nd, "cs231n"))
    cases.append(layernorm_case(*nd, "cs231n"))
    if rec["bn"]:
        c, h, w = sorted(rec["bn"], key=lambda s: -math.prod(s))[0]
        cases.append(groupnorm_case(N, c, h, w, max(1, c // 8), "cnn"))
    cases.append(affine_case(n3, f3 * 16 * 16, 4 if smoke else 100, "three-layer"))
    cases.append(affine_case(*((4, 16, 8) if smoke else (256, 3072, 512)), "cs231n"))
    cases.append(softmax_loss_case(N, 10, "cnn"))
    cases.append(softmax_loss_case(*((4, 20) if smoke else (256, 1000)), "cs231n"))
    # Assignment 3 (captioning-sized).
    r = (2, 3, 4, 5) if smoke else (25, 16, 256, 512)  # CS231n's captioning batch and sizes
    cases.append(rnn_case(*r, "a3"))
    cases.append(lstm_case(*r, "a3"))
    cases.append(attention_case(*((2, 2, 4, 4) if smoke else (32, 4, 64, 64)), "a3"))
    cases.append(mha_case(*((2, 4, 8, 2) if smoke else (32, 64, 256, 4)), "a3"))
    if args.only:
        wanted = [s.strip() for s in args.only.split(",")]
        cases = [
            c
            for c in cases
            if c.bench == "matmul" or any(w in f"{c.bench} {c.case}" for w in wanted)
        ]
    return cases, f"{src}; benchmark batch N={N}"
