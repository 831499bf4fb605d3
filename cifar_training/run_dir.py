"""The run directory (``--out``): what marks it as holding a run, the flags a ``--resume``
must repeat, and atomic JSON writes.

``prepare_out_dir`` refuses to mix two runs in one directory: a new run needs an empty (or
run-less) ``--out`` or ``--overwrite``; ``--resume`` needs a readable ``checkpoints/last.ckpt``
and the interrupted run's flags, as recorded in ``config.json``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

from cifar_training.datasets import atomic_write_bytes
from cifar_training.run_control import CheckpointError, read_checkpoint
from cifar_training.train_errors import UsageError

# Flags that may differ between an interrupted run and its --resume: where the data and the
# outputs are, how the machine runs it, what is reported, but nothing that changes training.
RESUME_FREE_FLAGS = frozenset(
    {
        "resume",
        "overwrite",
        "stop_after_epochs",
        "data_dir",
        "download",
        "cache_dir",
        "threads",
        "progress_bar",
        "out",
        "tta_translate",
        "matmul_precision",
        # a memory layout: the same math (the torch backend's default changed to channels last
        # on 2026-12-07, so runs started before that resume with the flags they were given)
        "channels_last",
        "limit_test_batches",
        "eval_batch_size",
        "eval_only",
        "save_every_n_steps",
        "notes",
        "diagnostics",
    }
)

# What a checkpointed or finished run leaves; a directory with none of these holds no run, so
# the leftovers of a failed start (config.json, empty logs) or of a --fast-dev-run smoke test
# never block the next attempt.
CHECKPOINT_FILES = ("checkpoints/last.ckpt", "checkpoints/best.ckpt")
OUTPUT_FILES = (
    "metrics.json",
    "eval_metrics.json",
    "model.pt",
    "model.json",
    "curves.png",
    "confusion_matrix.png",
    "filters.png",
    "update_ratio.png",
    "diagnostics.png",
    "config.json",
)


def is_child_process() -> bool:
    """DDP workers started by Lightning's launcher re-run this script with LOCAL_RANK set."""
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


def run_config(args) -> dict:
    """The flags that define the run (config.json), as JSON values."""
    return {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in vars(args).items()
        if k not in RESUME_FREE_FLAGS
    }


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def finite_or_none(obj):
    """obj with every NaN/inf float replaced by None (JSON has no NaN), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(finite_or_none(obj), indent=2, allow_nan=False) + "\n")


def holds_run(out: Path) -> bool:
    if any((out / f).exists() for f in CHECKPOINT_FILES):
        return True
    try:
        return not json.loads((out / "metrics.json").read_text()).get("fast_dev_run", False)
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True  # unreadable results: leave them to the user


def prepare_out_dir(args) -> Path:
    """Create --out; refuse to mix runs; check that --resume has a usable checkpoint."""
    out = Path(args.out)
    if args.resume:
        _check_resumable(out, args)
        return out
    if is_child_process():
        return out
    if holds_run(out) and not args.overwrite:
        raise UsageError(
            f"{out} already holds a run: add --resume to continue it, "
            f"--overwrite to start over, or choose another --out"
        )
    for name in ("checkpoints", "logs", "tensorboard"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", json.dumps(run_config(args), indent=2) + "\n")
    return out


def _check_resumable(out: Path, args) -> None:
    last, config_path = out / "checkpoints" / "last.ckpt", out / "config.json"
    if not last.is_file():
        started = (
            " (the earlier attempt stopped before its first checkpoint: start it "
            "again without --resume)"
            if out.is_dir()
            else ""
        )
        raise UsageError(f"--resume: no checkpoint to resume from at {last}{started}")
    try:
        read_checkpoint(last)
    except CheckpointError as e:
        raise UsageError(f"--resume: {e}") from None
    if not config_path.is_file():
        return
    old, new = json.loads(config_path.read_text()), run_config(args)
    # (an older config.json may record a flag that is resume-free now)
    old = {k: v for k, v in old.items() if k not in RESUME_FREE_FLAGS}
    diff = {
        k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    }
    if diff:
        shown = ", ".join(f"--{k.replace('_', '-')} {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise UsageError(f"--resume needs the interrupted run's flags; these differ: {shown}")
