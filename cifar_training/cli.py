"""Command line of ``train.py``: train the CIFAR-10 CNN with Lightning on a chosen backend.

    python train.py --data-dir /tmp/cifar10-jpeg --backend torch --out runs/torch

``python train.py --help`` documents every flag. Outputs in ``--out`` (see ``write_outputs``):
``model.pt`` (state dict, ``torch.load(..., weights_only=True)``), ``model.json`` (how to rebuild
the network and normalize its input), ``metrics.json``, ``curves.png``, ``confusion_matrix.png``,
``filters.png``, ``config.json``, ``checkpoints/{best,last}.ckpt`` and ``logs/metrics.csv``
(plus ``tensorboard/`` when TensorBoard is installed).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

from cifar_training.datasets import make_readable
from cifar_training.threads import MATMUL_PRECISIONS, default_threads

_T0 = time.perf_counter()  # wall time counts from here: imports, data loading, training, test

RECIPES = {
    # airbench-style recipe for the default model; see README "Training on CIFAR-10".
    "default": {
        "epochs": 15, "batch_size": 512, "optimizer": "nesterov", "lr": 0.4, "momentum": 0.9,
        "weight_decay": 5e-4, "label_smoothing": 0.2, "schedule": "linear", "warmup": 0.2,
        "crop_pad": 2, "flip": "alternating", "head_scale": 0.125,
        "bn_scale": "trained", "bn_bias_lr_scale": 1.0, "dirac_init": False,
    },
    # CS231n's ThreeLayerConvNet setting: Adam 1e-3, no augmentation.
    "three-layer": {
        "epochs": 5, "batch_size": 128, "optimizer": "adam", "lr": 1e-3, "momentum": 0.9,
        "weight_decay": 0.0, "label_smoothing": 0.0, "schedule": "constant", "warmup": 0.0,
        "crop_pad": 0, "flip": "none", "head_scale": 1.0,
        "bn_scale": "trained", "bn_bias_lr_scale": 1.0, "dirac_init": False,
    },
}

# Flags that may differ between an interrupted run and its --resume.
_RESUME_FREE = {
    "resume", "overwrite", "stop_after_epochs", "data_dir", "download", "cache_dir", "threads",
    "progress_bar", "out", "tta_translate", "matmul_precision", "limit_test_batches",
    "eval_batch_size",
}
_GPU_ACCELERATORS = ("gpu", "cuda", "mps", "tpu")
_NUMPY_PRECISIONS = ("32", "32-true", "64", "64-true")


def _positive_int(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def _nonneg_int(s):
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def _nonneg_float(s):
    v = float(s)
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def _fraction(s):
    v = float(s)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {s}")
    return v


def _on_off(s):
    if s not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {s!r}")
    return s == "on"


def _widths(s):
    try:
        w = tuple(int(p) for p in s.split(","))
    except ValueError:
        w = ()
    if not w or min(w) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {s!r}")
    return w


def _limit(s):
    """Lightning's limit_*_batches: an int count or a float fraction."""
    try:
        v = int(s)
    except ValueError:
        v = float(s)
        if not 0 <= v <= 1:
            raise argparse.ArgumentTypeError(f"a fraction must lie in [0, 1], got {s}") from None
        return v
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def build_parser() -> argparse.ArgumentParser:
    from cifar_training.backends import BACKENDS, OPTIMIZERS
    from cifar_training.datamodule import FLIP_MODES
    from cifar_training.datasets import LAYOUTS
    from cifar_training.models import BN_SCALES, MODELS
    from cifar_training.module import SCHEDULES

    d, t = RECIPES["default"], RECIPES["three-layer"]
    p = argparse.ArgumentParser(
        prog="train.py",
        description=textwrap.fill(
            "Train a CNN on CIFAR-10 with Lightning. --backend picks who does the math: "
            "torch_impl's hand-written autograd Functions (torch), the NumPy twin through an "
            "autograd bridge (numpy, CPU only), or PyTorch's own kernels (builtin).", 79),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"data: --data-dir takes\n{LAYOUTS}\n\n" + textwrap.fill(
            f"Recipe defaults: default model {d['epochs']} epochs, batch {d['batch_size']}, "
            f"{d['optimizer']} momentum {d['momentum']}, lr {d['lr']} (linear warmup over "
            f"{d['warmup']} of the steps, then linear decay to 0), weight decay "
            f"{d['weight_decay']}, label smoothing {d['label_smoothing']}, head scale "
            f"{d['head_scale']}, translate +-{d['crop_pad']} px + {d['flip']} flips; "
            f"three-layer {t['epochs']} epochs, batch {t['batch_size']}, {t['optimizer']} lr "
            f"{t['lr']}, no augmentation.", 79) + "\n\n" + textwrap.fill(
            "Outputs in --out: model.pt (state dict, torch.load(weights_only=True)), "
            "model.json, metrics.json, curves.png, confusion_matrix.png, filters.png, "
            "config.json, checkpoints/{best,last}.ckpt, logs/metrics.csv.", 79),
    )
    g = p.add_argument_group("model and math")
    g.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="who computes the layers and the update (default: torch)")
    g.add_argument("--model", choices=MODELS, default="default",
                   help="default: airbench-style conv net; three-layer: CS231n's "
                   "ThreeLayerConvNet (default: default)")
    g.add_argument("--widths", type=_widths, default=(32, 64, 128), metavar="W1,W2,W3",
                   help="channel widths of the default model's blocks (default: 32,64,128)")
    g.add_argument("--stem", choices=("whiten", "conv"), default="whiten",
                   help="default model's first layer: fixed 2x2 patch-whitening conv fitted to "
                   "the training images, or a trained 3x3 conv + batchnorm (default: whiten)")
    g.add_argument("--bn-momentum", type=_fraction, default=0.9,
                   help="batchnorm running-average momentum, CS231n convention (PyTorch's "
                   "momentum = 1 - this) (default: 0.9)")

    g = p.add_argument_group("data")
    g.add_argument("--data-dir", default="data",
                   help="CIFAR-10 in any accepted layout (below) (default: ./data)")
    g.add_argument("--download", action="store_true",
                   help="download the official python batches into --data-dir first")
    g.add_argument("--cache-dir", default=None,
                   help="where archives are extracted and decoded arrays cached (default: "
                   "$NN_TWINS_CACHE or ~/.cache/nn-twins)")
    g.add_argument("--val-size", type=_nonneg_int, default=5000,
                   help="training images held out for validation/model selection; 0 = none, "
                   "then the last epoch is tested (default: 5000)")
    g.add_argument("--crop-pad", type=_nonneg_int, default=None,
                   help="random translation by up to this many pixels (reflect padding)")
    g.add_argument("--flip", choices=FLIP_MODES, default=None,
                   help="horizontal flips: every other epoch per image (alternating), coin "
                   "flips (random), or none")

    g = p.add_argument_group("optimization (defaults depend on --model, see below)")
    g.add_argument("--epochs", type=_positive_int, default=None,
                   help="passes over the training split (default: 15; three-layer 5)")
    g.add_argument("--batch-size", type=_positive_int, default=None,
                   help="global batch size, split over DDP processes (default: 512; "
                   "three-layer 128)")
    g.add_argument("--eval-batch-size", type=_positive_int, default=None,
                   help="per-process batch size for validation/test (default: --batch-size)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                   help="update rule (numpy_impl.optim / torch_impl.optim / torch.optim)")
    g.add_argument("--lr", type=_nonneg_float, default=None,
                   help="peak learning rate (default: 0.4; three-layer Adam 1e-3)")
    g.add_argument("--momentum", type=_fraction, default=None,
                   help="momentum of sgd_momentum/nesterov (Adam's beta1 is 0.9)")
    g.add_argument("--weight-decay", type=_nonneg_float, default=None,
                   help="L2 coefficient on conv/affine weights (added to the gradient)")
    g.add_argument("--label-smoothing", type=_fraction, default=None,
                   help="eps of the smoothed target (1 - eps) onehot + eps / C (default: 0.2; "
                   "three-layer 0)")
    g.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help="linear: warmup from 0.2x lr then linear decay to 0; constant")
    g.add_argument("--warmup", type=_fraction, default=None,
                   help="fraction of the steps spent warming up (linear schedule)")
    g.add_argument("--head-scale", type=float, default=None,
                   help="output scale of the default model's classifier, applied as a smaller "
                   "head init and head lr * scale^2 for SGD-family optimizers (default 0.125)")
    g.add_argument("--bn-scale", choices=BN_SCALES, default=None,
                   help="default model's batchnorm gamma: trained, or fixed at 1 (airbench)")
    g.add_argument("--bn-bias-lr-scale", type=_nonneg_float, default=None,
                   help="learning-rate multiplier of the batchnorm betas (airbench: 64)")
    g.add_argument("--dirac-init", type=_on_off, default=None, metavar="on|off",
                   help="start each block conv's first C_in filters as the identity (airbench)")
    g.add_argument("--seed", type=int, default=0,
                   help="initial weights, batch order and augmentation (default: 0); the "
                   "validation split is fixed (seed 0) whatever this is")

    g = p.add_argument_group("hardware (passed to Lightning)")
    g.add_argument("--accelerator", default="auto", help="cpu, gpu, auto (default: auto; "
                   "the numpy backend always runs on cpu)")
    g.add_argument("--devices", default="auto",
                   help="number of devices/processes, e.g. 2 with --strategy ddp on CPU (gloo)")
    g.add_argument("--strategy", default="auto", help="e.g. ddp (default: auto)")
    g.add_argument("--precision", default="32-true",
                   help="32-true, 64-true, bf16-mixed, 16-mixed (default: 32-true)")
    g.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS, default="highest",
                   help="torch.set_float32_matmul_precision for float32 products (torch_impl's "
                   "conv and affine are matmuls): 'medium' lets PyTorch route them to oneDNN, "
                   "which the setting allows to compute in bfloat16; on this project's AMD CPU "
                   "it measured exact float32 and ~2x faster than MKL; see README "
                   "(default: highest)")
    g.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads per process (default: available cores / processes)")
    g.add_argument("--channels-last", nargs="?", const="on", default="auto",
                   choices=("auto", "on", "off"),
                   help="channels_last memory format for images and conv weights; auto = on "
                   "for the builtin backend (1.5x faster steps with PyTorch's CPU kernels), off "
                   "for the twins (no gain measured) (default: auto)")
    g.add_argument("--deterministic", action="store_true",
                   help="torch.use_deterministic_algorithms (bit-reproducible CPU runs)")

    g = p.add_argument_group("run control")
    g.add_argument("--out", default=None,
                   help="output directory (default: runs/<model>-<backend>-seed<seed>)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from checkpoints/last.ckpt (end of the last "
                   "completed epoch); the other flags must match the interrupted run's")
    g.add_argument("--overwrite", action="store_true",
                   help="start over in an --out that already holds a run")
    g.add_argument("--fast-dev-run", action="store_true",
                   help="one batch of train/val/test, no checkpoints (smoke test)")
    g.add_argument("--limit-train-batches", type=_limit, default=None, metavar="N|FRAC",
                   help="train on N batches (or this fraction) per epoch; the schedule "
                   "shrinks to match (smoke runs, throughput checks)")
    g.add_argument("--limit-val-batches", type=_limit, default=None, metavar="N|FRAC",
                   help="validate on N batches (or this fraction); 0 skips validation")
    g.add_argument("--limit-test-batches", type=_limit, default=None, metavar="N|FRAC",
                   help="test on N batches (or this fraction)")
    g.add_argument("--stop-after-epochs", type=_positive_int, default=None, metavar="N",
                   help="stop after N epochs as if interrupted, keeping the schedule of "
                   "--epochs (to test --resume)")
    g.add_argument("--tta-translate", action="store_true",
                   help="also report 6-view test-time augmentation (flip x {none, 1 px up-left, "
                   "1 px down-right}); costs ~3x the test pass")
    g.add_argument("--no-progress-bar", dest="progress_bar", action="store_false",
                   help="no progress bar (logs only)")
    return p


def resolve_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for k, v in RECIPES[args.model].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.out is None:
        args.out = os.path.join("runs", f"{args.model}-{args.backend}-seed{args.seed}")
    if args.backend == "numpy":
        if args.accelerator.lower() in _GPU_ACCELERATORS:
            parser.error(
                f"--backend numpy runs on CPU only: NumPy arrays live in host memory, so "
                f"--accelerator {args.accelerator} has nothing to do. Use --accelerator cpu (the "
                f"default for this backend), or --backend torch / builtin to train on a GPU."
            )
        args.accelerator = "cpu"
        if args.precision not in _NUMPY_PRECISIONS:
            parser.error(f"--backend numpy computes in float32 or float64: --precision must be "
                         f"one of {_NUMPY_PRECISIONS}, got {args.precision!r}")
    if args.channels_last == "auto":
        args.channels_last = "on" if args.backend == "builtin" else "off"
    args.channels_last = args.channels_last == "on"
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite contradict each other")
    if args.devices != "auto":
        try:
            args.devices = int(args.devices)
        except ValueError:
            pass  # Lightning also takes "0,1"-style lists
    return args


def _is_child_process() -> bool:
    """DDP workers started by Lightning's launcher re-run this script with LOCAL_RANK set."""
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


def _run_config(args) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()
            if k not in _RESUME_FREE}


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        make_readable(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def prepare_out_dir(args) -> Path:
    """Create --out; refuse to mix runs; check that --resume has a run to continue."""
    out = Path(args.out)
    cfg_path, last = out / "config.json", out / "checkpoints" / "last.ckpt"
    if args.resume:
        if not last.is_file():
            raise UsageError(f"--resume: no checkpoint to resume from at {last} (a run saves it "
                             f"at the end of each epoch)")
        if cfg_path.is_file():
            old = json.loads(cfg_path.read_text())
            new = _run_config(args)
            diff = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
                    if old.get(k) != new.get(k)}
            if diff:
                shown = ", ".join(f"--{k.replace('_', '-')} {a!r} -> {b!r}"
                                  for k, (a, b) in diff.items())
                raise UsageError(f"--resume needs the interrupted run's flags; these differ: "
                                 f"{shown}")
        return out
    if _is_child_process():
        return out
    if cfg_path.exists() or last.exists():
        if not args.overwrite:
            raise UsageError(f"{out} already holds a run: add --resume to continue it, "
                             f"--overwrite to start over, or choose another --out")
        for name in ("checkpoints", "logs", "tensorboard"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("metrics.json", "model.pt", "model.json", "curves.png",
                     "confusion_matrix.png", "filters.png"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cfg_path, json.dumps(_run_config(args), indent=2) + "\n")
    return out


class UsageError(Exception):
    """A flag combination or --out state that cannot run (exit status 2)."""


# ----------------------------------------------------------------------------------------------


def _callbacks(args, out, has_val):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    class ThroughputTimer(L.Callback):
        """Seconds spent in training batches (fetch, forward, backward, step) and images trained
        on, summed over epochs; updated after every batch, so the checkpoint written at the end
        of an epoch carries them through --resume."""

        def __init__(self):
            self.train_time, self.images = 0.0, 0

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

    class StopAfterEpochs(L.Callback):
        def __init__(self, n):
            self.n, self.stopped = n, False

        def on_train_epoch_end(self, trainer, pl_module):
            if self.n is not None and trainer.current_epoch + 1 >= self.n:
                trainer.should_stop = True
                self.stopped = trainer.current_epoch + 1 < trainer.max_epochs

    class ResumeHint(L.Callback):
        def on_exception(self, trainer, pl_module, exception):
            if isinstance(exception, KeyboardInterrupt) and trainer.is_global_zero:
                print(f"\ninterrupted: rerun the same command with --resume to continue from "
                      f"{out / 'checkpoints' / 'last.ckpt'} (end of the last completed epoch)",
                      file=sys.stderr)

    ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="best", monitor="val/acc" if has_val else None,
        mode="max", save_top_k=1 if has_val else 0, save_last=True,
        auto_insert_metric_name=False, enable_version_counter=False,
    )
    return ckpt, ThroughputTimer(), StopAfterEpochs(args.stop_after_epochs), ResumeHint()


def _loggers(out):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = [CSVLogger(save_dir=str(out), name="", version="logs")]
    try:
        import tensorboard  # noqa: F401

        loggers.append(TensorBoardLogger(save_dir=str(out), name="", version="tensorboard"))
    except ImportError:
        pass
    return loggers


def _versions() -> dict:
    import lightning
    import numpy
    import torch
    import torchvision

    import cifar_training

    return {
        "python": platform.python_version(), "torch": torch.__version__,
        "lightning": lightning.__version__, "numpy": numpy.__version__,
        "torchvision": torchvision.__version__, "nn_twins": cifar_training.__version__,
    }


def run(args) -> int:
    t_start = min(_T0, time.perf_counter())
    import lightning as L
    import torch

    from cifar_training.datamodule import CIFARDataModule
    from cifar_training.models import fit_whitening
    from cifar_training.module import CifarModule

    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning-internal deprecation
    warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
    warnings.filterwarnings("ignore", message=".*Experiment logs directory.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
    threads = args.threads or default_threads(args.devices, args.accelerator)
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(args.matmul_precision)

    out = prepare_out_dir(args)
    L.seed_everything(args.seed, workers=True, verbose=False)
    dm = CIFARDataModule(
        args.data_dir, batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
        val_size=args.val_size, seed=args.seed, crop_pad=args.crop_pad, flip=args.flip,
        download=args.download, cache_dir=args.cache_dir, channels_last=args.channels_last,
    )
    dm.prepare_data()
    try:  # flags that only the data can judge (--val-size, --widths vs the image size)
        dm.setup("fit")
        module = CifarModule(
            backend=args.backend, model=args.model, widths=args.widths, stem=args.stem,
            num_classes=len(dm.classes), image_shape=dm.image_shape,
            bn_momentum=args.bn_momentum, seed=args.seed, optimizer=args.optimizer, lr=args.lr,
            momentum=args.momentum, weight_decay=args.weight_decay,
            label_smoothing=args.label_smoothing, schedule=args.schedule, warmup=args.warmup,
            head_scale=args.head_scale, bn_scale=args.bn_scale,
            bn_bias_lr_scale=args.bn_bias_lr_scale, dirac_init=args.dirac_init,
            classes=dm.classes,
        )
    except ValueError as e:
        raise UsageError(str(e)) from e
    fit_whitening(module.net, dm.whitening_sample())
    module.tta_translate = args.tta_translate
    if args.channels_last:
        module = module.to(memory_format=torch.channels_last)

    has_val = dm.num_val > 0 and args.limit_val_batches != 0 and not args.fast_dev_run
    ckpt, timer, stopper, hint = _callbacks(args, out, has_val)
    steps_per_epoch = max(dm.num_train // args.batch_size, 1)
    ltb = args.limit_train_batches
    log_every = min(50, steps_per_epoch, ltb if isinstance(ltb, int) and ltb > 0 else 50)
    limits = {k: getattr(args, k) for k in ("limit_train_batches", "limit_val_batches",
                                            "limit_test_batches") if getattr(args, k) is not None}
    if dm.num_val == 0 and not args.fast_dev_run:
        limits["limit_val_batches"] = 0
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=args.devices, strategy=args.strategy,
        precision=args.precision, max_epochs=args.epochs, default_root_dir=str(out),
        logger=False if args.fast_dev_run else _loggers(out),
        callbacks=[timer, stopper, hint] + ([] if args.fast_dev_run else [ckpt]),
        enable_checkpointing=not args.fast_dev_run, fast_dev_run=args.fast_dev_run,
        enable_progress_bar=args.progress_bar, deterministic=args.deterministic or None,
        use_distributed_sampler=False, num_sanity_val_steps=0,
        log_every_n_steps=log_every, enable_model_summary=False, **limits,
    )
    if args.batch_size % trainer.world_size:
        raise UsageError(f"--batch-size {args.batch_size} is the global batch and must be "
                         f"divisible by the {trainer.world_size} processes")
    if trainer.is_global_zero:
        if args.backend == "numpy" and torch.cuda.is_available():
            print("note: --backend numpy runs on CPU only (NumPy arrays live in host memory); "
                  "the GPU stays idle. Use --backend torch or builtin to train on it.",
                  flush=True)
        n_params = sum(p.numel() for p in module.net.parameters() if p.requires_grad)
        print(f"nn-twins train: backend={args.backend} model={args.model} ({n_params} trained "
              f"parameters) data={dm.num_train}/{dm.num_val}/{dm.num_test} train/val/test from "
              f"{args.data_dir}; {threads} CPU thread(s) per process; out={out}", flush=True)
    last = out / "checkpoints" / "last.ckpt"
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if args.resume else None,
                weights_only=True)
    if stopper.stopped:
        if trainer.is_global_zero:
            print(f"stopped after epoch {trainer.current_epoch} as asked (--stop-after-epochs); "
                  f"continue with --resume", flush=True)
        return 0

    # Testing the best checkpoint restores its (earlier) history and timer state: keep ours.
    history = {k: list(v) for k, v in module.history.items()}
    timing = timer.state_dict()
    tested = "best" if has_val and ckpt.best_model_path else None
    trainer.test(module, datamodule=dm, ckpt_path=tested, weights_only=True, verbose=False)
    module.history = history
    timer.load_state_dict(timing)
    if trainer.is_global_zero:
        write_outputs(out, args, dm, module, trainer, ckpt, timer, tested,
                      time.perf_counter() - t_start, threads, steps_per_epoch)
    return 0


def write_outputs(out, args, dm, module, trainer, ckpt, timer, tested, wall, threads,
                  steps_per_epoch):
    import torch

    from cifar_training import plots

    res = module.test_results
    net_state = {k: v.detach().cpu() for k, v in module.net.state_dict().items()}
    buf = io.BytesIO()
    torch.save(net_state, buf)
    atomic_write_bytes(out / "model.pt", buf.getvalue())
    c = module.config
    model_info = {
        "model": c["model"], "widths": c["widths"], "stem": c["stem"],
        "num_classes": c["num_classes"], "image_shape": c["image_shape"],
        "bn_momentum": c["bn_momentum"], "classes": dm.classes,
        "input_mean": [float(v) for v in dm.mean], "input_std": [float(v) for v in dm.std],
        "input_note": "x = (uint8 image (N, 3, H, W) / 255 - input_mean) / input_std",
    }
    atomic_write_text(out / "model.json", json.dumps(model_info, indent=2) + "\n")
    val = [v for v in module.history.get("val_epoch", [])]
    best_val = max(val, key=lambda r: r[2]) if val else None
    metrics = {
        "dataset": str(args.data_dir), "note": "accuracy on the test split",
        "test_acc": res.get("test_acc"), "test_acc_flip_tta": res.get("test_acc_flip_tta"),
        "test_acc_flip_translate_tta": res.get("test_acc_flip_translate_tta"),
        "test_loss": res.get("test_loss"), "num_test": res.get("num_test"),
        "tested_checkpoint": "best validation epoch" if tested else "last epoch",
        "best_val_acc": best_val[2] if best_val else None,
        "best_val_epoch": best_val[0] + 1 if best_val else None,
        "num_train": dm.num_train, "num_val": dm.num_val,
        "epochs": args.epochs, "epochs_completed": trainer.current_epoch,
        "optimizer_steps": trainer.global_step,
        "wall_time_s": wall, "train_time_s": timer.train_time, "train_images": timer.images,
        "train_images_per_s": timer.images / timer.train_time if timer.train_time else None,
        "backend": args.backend, "model": args.model, "seed": args.seed,
        "recipe": {k: getattr(args, k) for k in RECIPES["default"]},
        "resumed": args.resume,
        "hardware": {
            "accelerator": type(trainer.accelerator).__name__, "world_size": trainer.world_size,
            "precision": args.precision, "matmul_precision": args.matmul_precision,
            "torch_threads": threads,
            "cpu_cores_available": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "platform": platform.platform(), "processor": platform.processor(),
        },
        "versions": _versions(),
        "confusion_matrix_flip_tta": res.get("confusion_flip_tta"),
        "classes": dm.classes,
        "history": {  # [epoch, loss, acc(, lr)] per epoch, as plotted in curves.png
            "train_epoch": module.history.get("train_epoch", []),
            "val_epoch": module.history.get("val_epoch", []),
        },
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    title = f"{args.model} on {args.backend}"
    plots.plot_curves(module.history, out / "curves.png", steps_per_epoch, title)
    if res.get("confusion_flip_tta"):
        plots.plot_confusion(res["confusion_flip_tta"], dm.classes, out / "confusion_matrix.png",
                             f"test confusion (flip TTA), {title}")
    plots.plot_filters(module.net.first_layer_filters().float().cpu().numpy(),
                       out / "filters.png", f"first-layer filters, {title}")
    print(f"test accuracy {res.get('test_acc', float('nan')):.4f} "
          f"(flip TTA {res.get('test_acc_flip_tta', float('nan')):.4f}); "
          f"{metrics['train_images_per_s'] or 0:.0f} training images/s; wall {wall:.1f} s; "
          f"outputs in {out}", flush=True)


def main(argv=None) -> int:
    import torch

    from cifar_training.datasets import DataError
    from cifar_training.module import NonFiniteLossError

    args = resolve_args(argv)
    threads_before = torch.get_num_threads()
    matmul_precision_before = torch.get_float32_matmul_precision()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    try:
        return run(args)
    except (DataError, UsageError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 1
    finally:  # main() called in-process (tests, notebooks) leaves torch's globals as they were
        torch.set_num_threads(threads_before)
        torch.set_float32_matmul_precision(matmul_precision_before)
        torch.use_deterministic_algorithms(deterministic_before)
