"""``<out>/last.pt``: the end-of-epoch state that lets ``python -m gan_training`` and
``python -m simclr_training`` continue an interrupted run with ``--resume``.

The state is a dict of plain values that ``torch.load(..., weights_only=True)`` reads back
(tensors, dicts, lists, ints, floats, strings): a tampered file is refused, never executed. It is
written atomically (temporary file, then os.replace), so the file on disk is always complete.
No Lightning import here: the two command lines train without it.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import torch

from cifar_training.datasets import atomic_write_bytes

__all__ = [
    "LAST_STATE",
    "StateError",
    "prepare_out",
    "read_state",
    "write_state",
    "check_run_args",
    "plain_args",
    "report_interrupt",
    "open_run",
]

LAST_STATE = "last.pt"


class StateError(Exception):
    """``--out`` or its ``last.pt`` cannot be used as asked (the message says why and what to
    do); the command lines print it as an ``error:`` line and exit with status 2."""


def plain_args(args) -> dict:
    """vars(args) as plain values (tuples become lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}


def write_state(out: Path, state: dict) -> Path:
    """Write state to ``out/last.pt`` atomically; returns the path."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = Path(out) / LAST_STATE
    atomic_write_bytes(path, buffer.getvalue())
    return path


def read_state(path: Path, keys) -> dict:
    """The state at ``path``, loaded with weights_only=True, holding every one of ``keys``, or
    StateError. The loader's own message is not repeated: for a tampered file it suggests
    ``weights_only=False``, which would run whatever code the file carries."""
    path = Path(path)
    if not path.is_file():
        raise StateError(
            f"--resume: no saved state at {path} (a run writes it at the end of each epoch): "
            f"start the run without --resume"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- truncated (RuntimeError/EOFError), tampered (Unpickling)
        raise StateError(
            f"--resume: {path} cannot be read ({type(e).__name__}): the file is truncated, "
            f"damaged or not written by this command. It is only ever loaded as plain tensors "
            f"(weights_only=True), never as code. Delete it to start over, or put back an "
            f"intact copy."
        ) from None
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise StateError(
            f"--resume: {path} is not a saved state of this command (it lacks {missing}). "
            f"Delete it to start over."
        )
    return state


def check_run_args(saved: dict, current: dict, defining) -> None:
    """StateError naming the first of ``defining`` whose saved and current values differ."""
    for key in defining:
        old, new = saved.get(key), current.get(key)
        if old != new:
            flag = "--" + key.replace("_", "-")
            raise StateError(
                f"--resume needs the interrupted run's {flag}: it was {old!r}, the command line "
                f"gives {new!r} (repeat {flag} {old!r}, or choose another --out)"
            )


def prepare_out(out, resume: bool) -> Path:
    """Create --out. Without resume, refuse an --out that already holds ``last.pt`` (so a run is
    never overwritten silently)."""
    out = Path(out)
    if not resume and (out / LAST_STATE).exists():
        raise StateError(
            f"{out} already holds a run ({out / LAST_STATE}): pass --resume to continue it, "
            f"or choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def open_run(args, keys, defining, epochs_done) -> tuple[Path, dict | None]:
    """(out, saved state or None) for a command line with ``--out`` and ``--resume``: prepare_out,
    then with --resume the saved state, its arguments checked against ``defining`` and its
    trained epochs (``epochs_done(state)``) against ``--epochs``. StateError says what is wrong."""
    out = prepare_out(args.out, args.resume)
    if not args.resume:
        return out, None
    state = read_state(out / LAST_STATE, keys)
    check_run_args(state["args"], plain_args(args), defining)
    done = epochs_done(state)
    if done > args.epochs:
        raise StateError(
            f"--resume: the run in {out} already trained {done} epochs, more than "
            f"--epochs {args.epochs}"
        )
    return out, state


def report_interrupt(out) -> int:
    """After Ctrl-C (SIGINT): say what is saved and how to continue; the exit status 130."""
    state = Path(out) / LAST_STATE
    if state.exists():
        print(
            f"interrupted: {state} holds the run up to its last finished epoch; run the same "
            "command with --resume to continue it",
            file=sys.stderr,
        )
    else:
        print(
            f"interrupted before the first epoch ended: nothing to resume in {out}", file=sys.stderr
        )
    return 130
