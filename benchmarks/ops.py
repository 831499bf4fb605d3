"""Forward+backward time of every hot op: NumPy twin vs torch twin vs PyTorch's builtin.

    python benchmarks/ops.py                 # full run: the CNN's real shapes and batch
    python benchmarks/ops.py --quick --json  # < 60 s; one JSON object per line
    python benchmarks/ops.py --profile       # + profile of the slowest NumPy op, on every backend

Backends (the same float32 inputs for all three, drawn from one seed):

- ``numpy``: ``numpy_impl`` (the fast variants: ``fast_layers.conv_*_fast`` and
  ``max_pool_*_fast``, ``batchnorm_backward_alt``), called directly on NumPy arrays.
- ``torch``: ``torch_impl``'s autograd Functions (hand-written backward).
- ``builtin``: PyTorch's own kernels (``F.conv2d``, ``F.batch_norm``, ``nn.LSTM``, ...).

One sample of a torch backend is ``out = op(leaves); out.backward(dout)`` with every gradient
requested; one sample of numpy is ``backward(dout, forward(...)[1])``. The backends of a case
are timed round-robin (the order rotated each round) and the median of the rounds is reported,
so load on a shared machine hits them alike and the RATIOS stay meaningful when absolute times
do not. Conv rows also give the achieved GFLOP/s (forward + both backward GEMMs, 3 x 2*N*F*C*k*k*
H'*W') and its fraction of the float32 matmul rate of the same library (NumPy's BLAS for numpy,
torch's for torch and builtin; the fastest sample of a square GEMM measured in this run).

The conv, pool, batchnorm and ReLU shapes are read from train.py's default model (its recipe's
batch size and widths) by running it once through a recording op set, so they follow the model
when it changes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _common as common  # noqa: E402
from benchmarks.op_profile import cases_to_profile, profile_case  # noqa: E402
from benchmarks.op_results import (  # noqa: E402
    add_ratios_and_verdicts,
    print_summary,
    print_table,
    time_case,
)
from benchmarks.op_suite import build_cases  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Forward+backward time of every hot op: numpy_impl vs torch_impl vs "
        "PyTorch's builtin (float32, same inputs, interleaved, median of repeats)."
    )
    p.add_argument(
        "--quick", action="store_true", help="batch 128, fewer repeats: finishes in under a minute"
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny shapes, one repeat: checks that every path runs (seconds)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per line on stdout (the header goes to stderr)",
    )
    p.add_argument(
        "--markdown", action="store_true", help="print the table as markdown (for BENCHMARKS.md)"
    )
    p.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="off",
        help="memory format of the torch backends' 4-D inputs and upstream gradients, as "
        "train.py's flag; auto = each backend's own default, as train.py resolves it "
        "(default: off, contiguous, the layout of the earlier tables)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="batch of the CNN-shaped cases (default: train.py's recipe batch)",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per case")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls per backend first")
    p.add_argument(
        "--min-time",
        type=float,
        default=None,
        help="seconds one sample lasts at least (tiny ops repeat inside it)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for torch and NumPy's BLAS (default: the libraries' own)",
    )
    p.add_argument(
        "--backends",
        default=",".join(common.BACKENDS),
        help="comma-separated subset of numpy,torch,builtin",
    )
    p.add_argument(
        "--matmul-precision",
        choices=common.MATMUL_PRECISIONS,
        default="highest",
        help="torch.set_float32_matmul_precision (train.py --matmul-precision; see "
        "BENCHMARKS.md) (default: highest)",
    )
    p.add_argument(
        "--only",
        default=None,
        help="comma-separated substrings: keep cases whose 'bench case' matches",
    )
    p.add_argument(
        "--profile",
        nargs="?",
        const="auto",
        default=None,
        metavar="SUBSTRING",
        help="profile one case afterwards (default: the one with the largest numpy time)",
    )
    args = p.parse_args(argv)
    bad = set(args.backends.split(",")) - set(common.BACKENDS)
    if bad:
        p.error(f"--backends: unknown {sorted(bad)}; choose from {common.BACKENDS}")
    return args


def timing_settings(args) -> tuple[int, int, float]:
    """(warm-up calls, timed rounds, seconds per sample) of the run's mode, each overridable
    by its flag."""
    if args.smoke:
        warmup, repeats, min_time = 1, 1, 0.0
    elif args.quick:
        warmup, repeats, min_time = 1, 3, 0.02
    else:
        warmup, repeats, min_time = 2, 7, 0.1
    warmup = args.warmup if args.warmup is not None else warmup
    repeats = args.repeats if args.repeats is not None else repeats
    min_time = args.min_time if args.min_time is not None else min_time
    return warmup, repeats, min_time


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    common.configure_threads(args.threads)
    common.configure_allocator()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision(args.matmul_precision)
    torch.manual_seed(0)
    warmup, repeats, min_time = timing_settings(args)
    out = sys.stderr if args.json else sys.stdout

    facts = common.machine_facts()
    print(
        common.format_header(
            "nn-twins ops benchmark (forward + backward, float32)",
            facts,
            ["benchmarks/ops.py", *argv],
        ),
        file=out,
    )
    cases, src = build_cases(args)
    print(f"# shapes: {src}", file=out)
    print(
        f"# timing: {warmup} warm-up call(s), median of {repeats} round-robin round(s), "
        f"each sample >= {min_time * 1e3:.0f} ms",
        file=out,
        flush=True,
    )
    backends = [b for b in common.BACKENDS if b in args.backends.split(",")]
    rows = []
    for case in cases:
        rows += time_case(case, backends, warmup, repeats, min_time)
    rows = add_ratios_and_verdicts(rows, cases)
    print(f"# load average at end: {[round(x, 2) for x in os.getloadavg()]}", file=out)
    if args.json:
        common.emit_json(rows)
    else:
        print(file=out)
        print_table(rows, out, args.markdown)
    print_summary(rows, out)
    for case in cases_to_profile(args.profile, rows, cases):
        profile_case(case, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
