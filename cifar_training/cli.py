"""Command line of ``train.py``: train the CIFAR-10 CNN with Lightning on a chosen backend.

    python train.py --data-dir PATH --backend torch --out runs/torch

``python train.py --help`` documents every flag. The pieces, by what they are:

- ``recipes``: the hyperparameters as data (``Recipe``, ``RECIPES``);
- ``train_parser``: the flags (a recipe's generated from its fields); ``train_args``: the
  command line resolved against the recipe, the backend's rules and the hardware;
- ``train_run``: one training run; ``eval_run``: ``--eval-only``;
- ``run_dir``: ``--out`` (run protection, ``--resume`` checks); ``run_outputs``: what a
  finished run writes (``model.pt``, ``model.json``, ``metrics.json``, the PNGs).

``main`` maps the outcome to an exit status: 0, 1 (non-finite loss or evaluation), 2 (usage or
data error), 128 + signal (interrupted, checkpoint saved).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

_T0 = time.perf_counter()  # wall time counts from here: imports, data loading, training, test

from cifar_training.run_control import (  # noqa: E402 - after _T0, which counts the imports
    SIGNAL_NAMES,
    CheckpointError,
    RunInterrupted,
    StopRequest,
    read_checkpoint,
)
from cifar_training.run_dir import is_child_process  # noqa: E402
from cifar_training.train_args import resolve_args  # noqa: E402
from cifar_training.train_errors import NonFiniteEvaluationError, UsageError  # noqa: E402


def interrupted_message(e: RunInterrupted, args) -> str:
    last = Path(args.out) / "checkpoints" / "last.ckpt"
    what = SIGNAL_NAMES.get(e.signum, f"signal {e.signum}")
    if args.eval_only:
        return f"interrupted by {what} during --eval-only; nothing was written"
    if last.is_file():
        try:
            ckpt = read_checkpoint(last)
            where = f"in epoch {ckpt['epoch'] + 1}, after {ckpt['global_step']} optimizer steps"
        except CheckpointError:
            where = "its last save"
        return (
            f"interrupted by {what}: the run is saved in {last} ({where}); rerun the same "
            f"command with --resume to continue"
        )
    return f"interrupted by {what} before the first checkpoint: nothing to resume, start again"


def main(argv=None) -> int:
    import torch
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from cifar_training.datasets import DataError
    from cifar_training.eval_run import evaluate
    from cifar_training.module import NonFiniteLossError
    from cifar_training.train_run import run

    args = resolve_args(argv)
    threads_before = torch.get_num_threads()
    matmul_precision_before = torch.get_float32_matmul_precision()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    stop = StopRequest().install()
    try:
        return evaluate(args, stop) if args.eval_only else run(args, stop, started_at=_T0)
    except (DataError, UsageError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, NonFiniteEvaluationError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 1
    except RunInterrupted as e:
        if not is_child_process():
            print(f"train.py: {interrupted_message(e, args)}", file=sys.stderr, flush=True)
        return e.exit_code
    except SIGTERMException:  # Lightning's own SIGTERM stop, when it acts before ours
        e = RunInterrupted(signal.SIGTERM)
        if not is_child_process():
            print(f"train.py: {interrupted_message(e, args)}", file=sys.stderr, flush=True)
        return e.exit_code
    finally:  # main() called in-process (tests, notebooks) leaves torch's globals as they were
        stop.restore()
        torch.set_num_threads(threads_before)
        torch.set_float32_matmul_precision(matmul_precision_before)
        torch.use_deterministic_algorithms(deterministic_before)
