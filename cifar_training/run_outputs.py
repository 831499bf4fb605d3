"""What a finished run writes to ``--out`` (``write_outputs``) and says on the console.

``model.pt`` (the network's state dict, ``torch.load(..., weights_only=True)``), ``model.json``
(how to rebuild the network and normalize its input), ``metrics.json`` (test scores, timings,
the recipe, hardware and library versions, the per-epoch history) and the PNGs
(``curves.png``, ``confusion_matrix.png``, ``filters.png``, ``update_ratio.png``,
``diagnostics.png``). ``--eval-only`` shares the test metrics, hardware and version records.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import platform
from pathlib import Path

from cifar_training.datasets import atomic_write_bytes
from cifar_training.run_dir import atomic_write_text, write_json
from cifar_training.train_errors import NonFiniteEvaluationError


def say(message: str) -> None:
    print(message, flush=True)


def check_finite_evaluation(test_results: dict, where: Path) -> None:
    bad = {
        k: v
        for k, v in test_results.items()
        if k.startswith("test_") and isinstance(v, float) and not math.isfinite(v)
    }
    if bad:
        shown = ", ".join(f"{k} {v}" for k, v in bad.items())
        raise NonFiniteEvaluationError(
            f"the final evaluation is not finite ({shown}); {where} records it as null. The "
            f"weights were saved, but they produce NaN or infinite scores: try a lower --lr, "
            f"float32 (--precision 32-true), or check the data."
        )


def test_split_scores(test_results: dict) -> dict:
    keys = ("test_acc", "test_acc_flip_tta", "test_acc_flip_translate_tta", "test_loss")
    return {**{k: test_results.get(k) for k in keys}, "num_test": test_results.get("num_test")}


def hardware_facts(trainer, args, threads) -> dict:
    return {
        "accelerator": type(trainer.accelerator).__name__,
        "world_size": trainer.world_size,
        "precision": args.precision,
        "matmul_precision": args.matmul_precision,
        "torch_threads": threads,
        "cpu_cores_available": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor(),
    }


def library_versions() -> dict:
    import lightning
    import numpy
    import torch
    import torchvision

    import cifar_training

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "numpy": numpy.__version__,
        "torchvision": torchvision.__version__,
        "nn_twins": cifar_training.__version__,
    }


def accuracies_line(test_results: dict, tta_translate: bool) -> str:
    six = (
        f", 6-view TTA {_percent(test_results.get('test_acc_flip_translate_tta'))}"
        if tta_translate
        else ""
    )
    return (
        f"{_percent(test_results.get('test_acc'))} "
        f"(flip TTA {_percent(test_results.get('test_acc_flip_tta'))}{six})"
    )


def _percent(v) -> str:
    return f"{v:.2%}" if isinstance(v, float) and math.isfinite(v) else str(v)


def write_outputs(
    out, args, dm, module, trainer, timer, tested, wall, threads, steps_per_epoch, diagnostics=None
):
    """Write a finished run's files (module docstring) and print its one-line summary.

    dm: the data module (classes, sizes, normalization); module: the trained CifarModule, its
    test pass done; timer: the ``ThroughputTimer``; tested: the checkpoint path tested (None:
    the last epoch); wall: seconds since start; diagnostics: ``TrainingDiagnostics.history``.
    """
    _write_model(out, module, dm)
    metrics = _run_metrics(args, dm, module, trainer, timer, tested, wall, threads)
    write_json(out / "metrics.json", metrics)
    _write_plots(out, args, dm, module, steps_per_epoch, diagnostics)
    say(
        f"test accuracy {accuracies_line(module.test_results, args.tta_translate)}; "
        f"{metrics['train_images_per_s'] or 0:.0f} training images/s; wall {wall:.1f} s; "
        f"outputs in {out}"
    )


def _write_model(out, module, dm) -> None:
    """model.pt (the state dict) and model.json (how to rebuild and feed the network)."""
    import torch

    net_state = {k: v.detach().cpu() for k, v in module.net.state_dict().items()}
    buf = io.BytesIO()
    torch.save(net_state, buf)
    atomic_write_bytes(out / "model.pt", buf.getvalue())
    config = module.config
    model_info = {
        **{k: config[k] for k in ("model", "widths", "stem", "num_classes", "image_shape")},
        "bn_momentum": config["bn_momentum"],
        "classes": dm.classes,
        "input_mean": [float(v) for v in dm.mean],
        "input_std": [float(v) for v in dm.std],
        "input_note": "x = (uint8 image (N, 3, H, W) / 255 - input_mean) / input_std",
    }
    atomic_write_text(out / "model.json", json.dumps(model_info, indent=2) + "\n")


def _run_metrics(args, dm, module, trainer, timer, tested, wall, threads) -> dict:
    test_results = module.test_results
    val = list(module.history.get("val_epoch", []))
    best_val = max(val, key=lambda row: row[2]) if val else None
    recipe = dataclasses.asdict(module.recipe)
    return {
        "dataset": str(args.data_dir),
        "note": "accuracy on the test split",
        **test_split_scores(test_results),
        "tested_checkpoint": "best validation epoch" if tested else "last epoch",
        "best_val_acc": best_val[2] if best_val else None,
        "best_val_epoch": best_val[0] + 1 if best_val else None,
        "num_train": dm.num_train,
        "num_val": dm.num_val,
        "epochs": args.epochs,
        "epochs_completed": trainer.current_epoch,
        "optimizer_steps": trainer.global_step,
        "wall_time_s": wall,
        "train_time_s": timer.train_time,
        "train_images": timer.images,
        "train_images_per_s": timer.images / timer.train_time if timer.train_time else None,
        "backend": args.backend,
        "model": args.model,
        "seed": args.seed,
        "recipe_name": args.recipe,
        "recipe": {k: v for k, v in recipe.items() if k != "model"},
        "resumed": args.resume,
        "fast_dev_run": args.fast_dev_run,
        "hardware": hardware_facts(trainer, args, threads),
        "versions": library_versions(),
        "confusion_matrix_flip_tta": test_results.get("confusion_flip_tta"),
        "classes": dm.classes,
        "history": {  # [epoch, loss, acc(, lr)] per epoch, as plotted in curves.png
            "train_epoch": module.history.get("train_epoch", []),
            "val_epoch": module.history.get("val_epoch", []),
        },
    }


def _write_plots(out, args, dm, module, steps_per_epoch, diagnostics) -> None:
    from cifar_training import plots

    title = f"{args.model} on {args.backend}"
    plots.plot_curves(module.history, out / "curves.png", steps_per_epoch, title)
    confusion = module.test_results.get("confusion_flip_tta")
    if confusion:
        plots.plot_confusion(
            confusion,
            dm.classes,
            out / "confusion_matrix.png",
            f"test confusion (flip TTA), {title}",
        )
    if diagnostics and diagnostics["update_ratio"]:
        plots.plot_update_ratio(
            diagnostics["update_ratio"], out / "update_ratio.png", steps_per_epoch, title
        )
    if diagnostics and diagnostics["activations"]:
        plots.plot_diagnostics(diagnostics, out / "diagnostics.png", steps_per_epoch, title)
    filters, what = module.net.trained_filters_rgb()
    plots.plot_filters(filters.float().cpu().numpy(), out / "filters.png", f"{what}, {title}")
