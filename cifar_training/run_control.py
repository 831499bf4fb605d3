"""Keeping a training run recoverable: checkpoints, signals and the run directory.

- ``RunCheckpoints`` writes ``checkpoints/last.ckpt`` at the end of EVERY epoch (whatever the
  validation accuracy did) and, with ``every_n_steps``, every N optimizer steps inside an epoch.
  The best-validation checkpoint is Lightning's ``ModelCheckpoint``, kept separately.
- ``StopRequest`` turns SIGINT (Ctrl-C) and SIGTERM into a request to stop at the next batch
  boundary: the state after the last finished batch is saved to ``last.ckpt`` and the run ends
  with ``RunInterrupted`` (exit status 128 + signal number: 130, 143). The data sampler resumes
  mid-epoch (``datamodule.ResumableLoader``), so ``--resume`` ends with the weights of an
  uninterrupted run. A second signal stops at once; a signal before training starts stops at
  once too (there is nothing to save yet).
- ``AtomicCheckpointIO``: every checkpoint is written to a temporary file and renamed into place,
  so a checkpoint on disk is always complete.
- ``read_checkpoint`` checks a checkpoint before ``--resume`` uses it: loaded with
  ``weights_only=True`` (never as an arbitrary pickle), with the keys train.py writes.
"""

from __future__ import annotations

import io
import signal
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback, Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from cifar_training.datasets import atomic_write_bytes

SIGNAL_NAMES = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}


class RunInterrupted(BaseException):
    """The run stopped on a signal. ``signum``: which; a BaseException (like KeyboardInterrupt)
    so that no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch.save checkpoints, written atomically (temporary file + rename)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(Path(path), buf.getvalue())


class CheckpointError(Exception):
    """A checkpoint that cannot be used (the message says why and what to do)."""


def read_checkpoint(path: Path) -> dict:
    """The checkpoint at ``path``, loaded safely, or CheckpointError. The loader's own message
    is not repeated: for a tampered file it suggests ``weights_only=False``, which would run
    whatever code the file carries."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- truncated (OSError/RuntimeError/EOFError), tampered (Unpickling)
        raise CheckpointError(
            f"{path} cannot be read as a train.py checkpoint ({type(e).__name__}): the file is "
            f"truncated, damaged or not from train.py. It is only ever loaded as plain tensors "
            f"(weights_only=True), never as code. Start over with --overwrite, or put back an "
            f"intact copy of the file."
        ) from None
    missing = [
        k
        for k in ("state_dict", "epoch", "global_step", "nn_twins")
        if not isinstance(ckpt, dict) or k not in ckpt
    ]
    if missing:
        raise CheckpointError(
            f"{path} is not a train.py checkpoint (it lacks {missing}). "
            f"Start over with --overwrite."
        )
    return ckpt


class StopRequest:
    """SIGINT/SIGTERM handler for the duration of a run (``install`` ... ``restore``).

    While ``armed`` (training or testing), the first signal only records itself; the callbacks
    ask ``requested(trainer)`` at every batch boundary (agreed across DDP processes) and stop
    there. Unarmed, or at a second signal, it raises RunInterrupted at once.
    """

    def __init__(self, say=None):
        self.signum: int | None = None
        self.armed = False
        self._say = say or (lambda m: print(m, file=sys.stderr, flush=True))
        self._previous: dict = {}

    def install(self) -> StopRequest:
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread (e.g. a notebook worker): leave them
                pass
        return self

    def restore(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}

    def _handle(self, signum, frame):
        if not self.armed or self.signum is not None:
            self.signum = self.signum or signum
            raise RunInterrupted(signum)
        self.signum = signum
        self._say(
            f"\n{SIGNAL_NAMES.get(signum, signum)} received: stopping after the current "
            f"batch and saving a checkpoint (send it again to stop at once)"
        )

    def requested(self, trainer) -> bool:
        local = self.signum is not None
        if trainer.world_size > 1:
            return bool(trainer.strategy.reduce_boolean_decision(local, all=False))
        return local

    def stop(self):
        raise RunInterrupted(self.signum or signal.SIGINT)


class RunCheckpoints(Checkpoint):
    """``last.ckpt``: at the end of every epoch, every ``every_n_steps`` optimizer steps, and at
    a stop request (the state after the last finished batch). A ``Checkpoint`` subclass, so
    Lightning calls its epoch-end hook after the LightningModule's (whose epoch history it
    saves)."""

    def __init__(self, path: Path, stop: StopRequest, every_n_steps: int | None = None):
        self.path, self.stop, self.every = Path(path), stop, every_n_steps

    def _save(self, trainer):
        # weights_only=False: the full state (optimizer, schedule, loops), which --resume needs.
        trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if done >= trainer.num_training_batches:
            return  # the epoch's end saves it, after validation
        stop = self.stop.requested(trainer)
        if stop or (self.every and trainer.global_step % self.every == 0):
            self._save(trainer)
        if stop:
            self.stop.stop()

    def on_train_epoch_end(self, trainer, pl_module):
        self._save(trainer)
        if self.stop.requested(trainer):
            self.stop.stop()


class StopDuringTest(Callback):
    """A stop request during a test pass (after training, or --eval-only) ends it at the next
    batch."""

    def __init__(self, stop: StopRequest):
        self.stop = stop

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        # Test batches are dealt unevenly to DDP processes, so no collective here: with several
        # processes the test pass finishes (training is complete and saved by then).
        if trainer.world_size == 1 and self.stop.requested(trainer):
            self.stop.stop()


class ThroughputTimer(Callback):
    """Seconds spent in training batches (fetch, forward, backward, step) and images trained
    on, summed over epochs; updated after every batch, so a checkpoint carries them through
    --resume."""

    def __init__(self):
        self.train_time, self.images = 0.0, 0
        self._mark = None

    def on_train_start(self, trainer, pl_module):
        self._mark = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self._mark = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        self.train_time += now - self._mark
        self._mark = now
        self.images += len(batch[1]) * trainer.world_size

    def state_dict(self):
        return {"train_time": self.train_time, "images": self.images}

    def load_state_dict(self, state):
        self.train_time, self.images = state["train_time"], state["images"]


class StopAfterEpochs(Callback):
    """--stop-after-epochs N: end training after N epochs as if interrupted (tests --resume)."""

    def __init__(self, n):
        self.n, self.stopped = n, False

    def on_train_epoch_end(self, trainer, pl_module):
        if self.n is not None and trainer.current_epoch + 1 >= self.n:
            trainer.should_stop = True
            self.stopped = trainer.current_epoch + 1 < trainer.max_epochs
