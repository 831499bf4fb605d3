"""One training run: data, module, Lightning Trainer, fit, then test and write the outputs
(``run``); ``make_trainer`` and ``quiet_lightning`` are shared with ``--eval-only``."""

from __future__ import annotations

import time
import warnings

from cifar_training.backends import BACKENDS, ops_class
from cifar_training.run_control import (
    AtomicCheckpointIO,
    RunCheckpoints,
    StopAfterEpochs,
    StopDuringTest,
    StopRequest,
    ThroughputTimer,
)
from cifar_training.run_dir import is_child_process, prepare_out_dir
from cifar_training.run_outputs import check_finite_evaluation, say, write_outputs
from cifar_training.threads import default_threads
from cifar_training.train_args import recipe_of
from cifar_training.train_errors import UsageError


def quiet_lightning():
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning-internal deprecation
    warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
    warnings.filterwarnings("ignore", message=".*Experiment logs directory.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")


def make_trainer(args, out, **kwargs):
    """L.Trainer from the hardware flags; what Lightning refuses (an unknown --strategy, a GPU
    that is not there, too many devices) becomes a UsageError naming the flags."""
    import lightning as L

    try:
        return L.Trainer(
            accelerator=args.accelerator,
            devices=args.devices,
            strategy=args.strategy,
            precision=args.precision,
            default_root_dir=str(out),
            **kwargs,
        )
    except Exception as e:  # noqa: BLE001 -- MisconfigurationException, ValueError, RuntimeError, ...
        raise UsageError(
            f"Lightning cannot run --accelerator {args.accelerator} --devices {args.devices} "
            f"--strategy {args.strategy} --precision {args.precision} here: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None


def _callbacks_by_name(args, out, has_val, stop, with_logger) -> dict:
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from cifar_training.diagnostics import TrainingDiagnostics

    callbacks = {
        "timer": ThroughputTimer(),
        "stopper": StopAfterEpochs(args.stop_after_epochs),
        "diagnostics": TrainingDiagnostics(every=10, activations=args.diagnostics),
        "last": RunCheckpoints(out / "checkpoints" / "last.ckpt", stop, args.save_every_n_steps),
    }
    if has_val:
        callbacks["best"] = ModelCheckpoint(
            dirpath=out / "checkpoints",
            filename="best",
            monitor="val/acc",
            mode="max",
            save_top_k=1,
            save_last=False,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        )
    if with_logger:
        callbacks["lr"] = LearningRateMonitor(logging_interval="step")
    return callbacks


def _loggers(out):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = [CSVLogger(save_dir=str(out), name="", version="logs")]
    try:
        import tensorboard  # noqa: F401

        loggers.append(TensorBoardLogger(save_dir=str(out), name="", version="tensorboard"))
    except ImportError:
        pass
    return loggers


def _data_and_module(args, log):
    """The data module (set up for fitting) and the CifarModule on it; flags that only the
    data can judge (--val-size, --widths against the image size) become UsageErrors."""
    import torch

    from cifar_training.datamodule import CIFARDataModule
    from cifar_training.models import fit_whitening
    from cifar_training.module import CifarModule

    dm = CIFARDataModule(
        args.data_dir,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        val_size=args.val_size,
        seed=args.seed,
        crop_pad=args.crop_pad,
        flip=args.flip,
        download=args.download,
        cache_dir=args.cache_dir,
        channels_last=args.channels_last,
        train_subset=args.train_subset,
        log=log,
    )
    dm.prepare_data()
    try:
        dm.setup("fit")
        module = CifarModule(
            recipe_of(args),
            backend=args.backend,
            num_classes=len(dm.classes),
            image_shape=dm.image_shape,
            seed=args.seed,
            classes=dm.classes,
        )
    except ValueError as e:
        raise UsageError(str(e)) from e
    fit_whitening(module.net, dm.whitening_sample())
    if args.channels_last:
        module = module.to(memory_format=torch.channels_last)
    return dm, module


def _batch_limits(args, dm) -> dict:
    """Lightning's limit_*_batches from the flags; no validation loop without a val split."""
    limits = {
        k: getattr(args, k)
        for k in ("limit_train_batches", "limit_val_batches", "limit_test_batches")
        if getattr(args, k) is not None
    }
    if dm.num_val == 0 and not args.fast_dev_run:
        limits["limit_val_batches"] = 0
    return limits


def _steps_per_epoch(args, dm) -> int:
    steps = max(dm.num_train // args.batch_size, 1)
    limit = args.limit_train_batches
    if limit is not None:
        steps = min(steps, limit) if isinstance(limit, int) else max(int(steps * limit), 1)
    return steps


def run(args, stop: StopRequest, started_at: float) -> int:
    """Train, test the best (or last) epoch and write the outputs; ``started_at``: the
    ``time.perf_counter()`` the wall time counts from."""
    t_start = min(started_at, time.perf_counter())
    import lightning as L
    import torch

    quiet_lightning()
    threads = args.threads or default_threads(args.devices, args.accelerator)
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(args.matmul_precision)

    out = prepare_out_dir(args)
    primary = not is_child_process()
    for note in args.notes if primary else ():
        say(f"note: {note}")
    L.seed_everything(args.seed, workers=True, verbose=False)
    dm, module = _data_and_module(args, say if primary else None)

    has_val = dm.num_val > 0 and args.limit_val_batches != 0 and not args.fast_dev_run
    with_logger = not args.fast_dev_run
    callbacks_by_name = _callbacks_by_name(args, out, has_val, stop, with_logger)
    steps = _steps_per_epoch(args, dm)
    module.total_steps = None if args.fast_dev_run else args.epochs * steps
    callbacks = [callbacks_by_name[k] for k in ("timer", "stopper", "diagnostics")] + [
        StopDuringTest(stop)
    ]
    if not args.fast_dev_run:
        callbacks += [
            callbacks_by_name[k] for k in ("best", "last", "lr") if k in callbacks_by_name
        ]
    trainer = make_trainer(
        args,
        out,
        max_epochs=args.epochs,
        logger=_loggers(out) if with_logger else False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=not args.fast_dev_run,
        fast_dev_run=args.fast_dev_run,
        enable_progress_bar=args.progress_bar,
        deterministic=args.deterministic or None,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(min(10, steps), 1),
        enable_model_summary=False,
        **_batch_limits(args, dm),
    )
    if args.batch_size % trainer.world_size:
        raise UsageError(
            f"--batch-size {args.batch_size} is the global batch and must be "
            f"divisible by the {trainer.world_size} processes"
        )
    if trainer.is_global_zero:
        _announce(args, dm, module, out, threads)
    last = out / "checkpoints" / "last.ckpt"
    stop.armed = True
    trainer.fit(
        module, datamodule=dm, ckpt_path=str(last) if args.resume else None, weights_only=True
    )
    if callbacks_by_name["stopper"].stopped:
        if trainer.is_global_zero:
            say(
                f"stopped after epoch {trainer.current_epoch} as asked (--stop-after-epochs); "
                f"continue with --resume"
            )
        return 0
    _test_and_write(args, out, dm, module, trainer, callbacks_by_name, stop, t_start, threads)
    return 0


def _announce(args, dm, module, out, threads) -> None:
    import torch

    if ops_class(args.backend).cpu_only and torch.cuda.is_available():
        on_gpu = " or ".join(b for b in BACKENDS if not ops_class(b).cpu_only)
        say(
            f"note: --backend {args.backend} runs on CPU only; the GPU stays idle. Use "
            f"--backend {on_gpu} to train on it."
        )
    n_params = sum(p.numel() for p in module.net.parameters() if p.requires_grad)
    say(
        f"nn-twins train: recipe={args.recipe} backend={args.backend} model={args.model} "
        f"({n_params} trained parameters) epochs={args.epochs} precision={args.precision} "
        f"data={dm.num_train}/{dm.num_val}/{dm.num_test} train/val/test from "
        f"{args.data_dir}; {threads} CPU thread(s) per process; out={out}"
    )


def _test_and_write(args, out, dm, module, trainer, callbacks_by_name, stop, t_start, threads):
    """Test the best validation epoch (or the last) and write the outputs."""
    # Testing the best checkpoint restores its (earlier) history and timer state: keep ours.
    history = {k: list(v) for k, v in module.history.items()}
    timer, diagnostics = callbacks_by_name["timer"], callbacks_by_name["diagnostics"]
    timing = timer.state_dict()
    diagnostics_history = {k: list(v) for k, v in diagnostics.history.items()}
    best = callbacks_by_name.get("best")
    tested = best.best_model_path if best is not None and best.best_model_path else None
    if trainer.is_global_zero:
        views = "6-view" if args.tta_translate else "flip"
        say(
            f"testing {'the best validation epoch' if tested else 'the last epoch'} on the "
            f"test split (single view and {views} test-time augmentation) ..."
        )
    trainer.test(module, datamodule=dm, ckpt_path=tested, weights_only=True, verbose=False)
    stop.armed = False
    module.history = history
    timer.load_state_dict(timing)
    diagnostics.history = diagnostics_history
    if trainer.is_global_zero:
        write_outputs(
            out,
            args,
            dm,
            module,
            trainer,
            timer,
            tested,
            time.perf_counter() - t_start,
            threads,
            trainer.num_training_batches,
            diagnostics.history,
        )
        check_finite_evaluation(module.test_results, out / "metrics.json")
