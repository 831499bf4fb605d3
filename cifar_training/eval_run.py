"""``--eval-only``: test a finished run's weights again, without training."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from cifar_training.run_control import StopDuringTest, StopRequest
from cifar_training.run_dir import write_json
from cifar_training.run_outputs import (
    accuracies_line,
    check_finite_evaluation,
    hardware_facts,
    library_versions,
    say,
    test_split_scores,
)
from cifar_training.threads import default_threads
from cifar_training.train_args import recipe_of
from cifar_training.train_errors import UsageError
from cifar_training.train_run import make_trainer, quiet_lightning


def evaluate(args, stop: StopRequest) -> int:
    """Test the finished run in --out (model.pt + model.json) on the test split; write
    eval_metrics.json. Normalization comes from model.json, as the run trained."""
    import torch

    from cifar_training.datamodule import CIFARDataModule
    from cifar_training.models import load_trained
    from cifar_training.module import CifarModule

    quiet_lightning()
    out = Path(args.out)
    if not (out / "model.pt").is_file() or not (out / "model.json").is_file():
        raise UsageError(
            f"--eval-only: {out} holds no finished run (model.pt and model.json "
            f"are written when a run ends); finish it with --resume first"
        )
    threads = args.threads or default_threads(args.devices, args.accelerator)
    torch.set_num_threads(threads)
    try:
        net, info = load_trained(out)
    except Exception as e:  # noqa: BLE001 -- reported with what to do, never swallowed
        raise UsageError(
            f"--eval-only: cannot load the run in {out} ({type(e).__name__}): "
            f"model.pt must be a state dict for model.json's network"
        ) from None
    dm = CIFARDataModule(
        args.data_dir,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        val_size=0,
        cache_dir=args.cache_dir,
        download=args.download,
        log=say,
    )
    dm.prepare_data()
    dm.setup("test")
    if list(dm.classes) != list(info["classes"]) or list(dm.image_shape) != info["image_shape"]:
        raise UsageError(
            f"--eval-only: the data's classes/image shape ({dm.classes}, "
            f"{dm.image_shape}) differ from the run's ({info['classes']}, "
            f"{info['image_shape']})"
        )
    dm.mean, dm.std = (np.asarray(info[k], dtype=np.float64) for k in ("input_mean", "input_std"))
    # The network as model.json describes it; the other values (--tta-translate, ...) are the
    # command line's.
    network = {k: info[k] for k in ("model", "stem", "bn_momentum")}
    recipe = dataclasses.replace(recipe_of(args), widths=tuple(info["widths"]), **network)
    module = CifarModule(
        recipe,
        backend=args.backend,
        num_classes=info["num_classes"],
        image_shape=info["image_shape"],
        classes=info["classes"],
    )
    module.net.load_state_dict(net.state_dict())
    trainer = make_trainer(
        args,
        out,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=args.progress_bar,
        enable_model_summary=False,
        callbacks=[StopDuringTest(stop)],
        **(
            {"limit_test_batches": args.limit_test_batches}
            if args.limit_test_batches is not None
            else {}
        ),
    )
    t0 = time.perf_counter()
    stop.armed = True
    trainer.test(module, datamodule=dm, verbose=False)
    stop.armed = False
    if trainer.is_global_zero:
        _write_eval_metrics(args, out, dm, module.test_results, trainer, threads, t0)
    return 0


def _write_eval_metrics(args, out, dm, test_results, trainer, threads, t0) -> None:
    metrics = {
        "evaluated": str(out / "model.pt"),
        "dataset": str(args.data_dir),
        "backend": args.backend,
        **test_split_scores(test_results),
        "confusion_matrix_flip_tta": test_results.get("confusion_flip_tta"),
        "classes": dm.classes,
        "seconds": time.perf_counter() - t0,
        "hardware": hardware_facts(trainer, args, threads),
        "versions": library_versions(),
    }
    write_json(out / "eval_metrics.json", metrics)
    say(
        f"test accuracy {accuracies_line(test_results, args.tta_translate)} on "
        f"{test_results.get('num_test')} test images; written to {out / 'eval_metrics.json'}"
    )
    check_finite_evaluation(test_results, out / "eval_metrics.json")
