"""Classify image files with a trained run: ``python -m cifar_training.predict --run DIR img ...``
(also installed as ``nn-twins-predict``).

Each image is read with Pillow (any format it reads: JPEG, PNG, WebP, ...), converted to RGB,
resized to the run's input size (32x32 for CIFAR-10; Pillow's bicubic filter, with box
reduction first for large images, so a photo is averaged down rather than aliased), normalized
with the run's training statistics (``model.json``) and scored by the network in ``model.pt``
(loaded with ``weights_only=True``). Prints the top-k classes with their softmax probabilities,
one line per image; a file that is not a readable image is reported and skipped (exit status 2
when any was).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cifar_training import argtypes


def build_parser() -> argparse.ArgumentParser:
    from cifar_training.backends import BACKENDS

    p = argparse.ArgumentParser(
        prog="python -m cifar_training.predict",
        description="Classify image files with the network of a finished train.py run.",
    )
    p.add_argument("images", nargs="+", help="image files (any format Pillow reads)")
    p.add_argument(
        "--run",
        required=True,
        help="a train.py output directory (--out): it holds model.pt and model.json",
    )
    p.add_argument(
        "--top-k",
        type=argtypes.positive_int,
        default=3,
        help="how many classes to print per image (default: 3)",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="who computes the forward pass (default: torch)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per image instead")
    return p


def load_image(path: Path, size: tuple[int, int]):
    """(H, W, 3) uint8 array of the image at ``path`` resized to size = (H, W); ValueError with
    a readable message when it is not an image."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im = im.resize((size[1], size[0]), Image.Resampling.BICUBIC, reducing_gap=3.0)
            return np.array(im, dtype=np.uint8)  # a writable copy, as torch.from_numpy wants
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except IsADirectoryError:
        raise ValueError("is a directory, not an image file") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"not an image Pillow can read ({type(e).__name__})") from None


def predict(run_dir, images, top_k=3, backend="torch"):
    """[(path, [(class, probability), ...] or None, error or None)] for each image path."""
    import torch

    from cifar_training.backends import get_ops
    from cifar_training.models import load_trained

    net, info = load_trained(run_dir)
    ops = get_ops(backend)
    H, W = info["image_shape"][1:]
    mean = torch.tensor(info["input_mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(info["input_std"], dtype=torch.float32).view(1, -1, 1, 1)
    k = min(top_k, len(info["classes"]))
    results = []
    for path in images:
        try:
            a = load_image(Path(path), (H, W))
        except ValueError as e:
            results.append((str(path), None, str(e)))
            continue
        x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            p = torch.softmax(net((x - mean) / std, ops).double(), dim=1)[0]
        top = torch.topk(p, k)
        results.append(
            (
                str(path),
                [
                    (info["classes"][int(i)], float(v))
                    for v, i in zip(top.values, top.indices, strict=True)
                ],
                None,
            )
        )
    return results


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    run = Path(args.run)
    missing = [f for f in ("model.pt", "model.json") if not (run / f).is_file()]
    if missing:
        print(
            f"predict: error: --run {run} is not a finished train.py run (missing "
            f"{', '.join(missing)}; they are written when training ends)",
            file=sys.stderr,
        )
        return 2
    try:
        results = predict(run, args.images, args.top_k, args.backend)
    except Exception as e:  # noqa: BLE001 -- a damaged or foreign model.pt/model.json
        print(
            f"predict: error: cannot load the network in {run} ({type(e).__name__}); "
            f"model.pt must be the state dict train.py wrote",
            file=sys.stderr,
        )
        return 2
    failed = 0
    for path, top, error in results:
        if error:
            failed += 1
            print(f"predict: error: {path}: {error}; skipped", file=sys.stderr)
        elif args.json:
            print(
                json.dumps({"image": path, "top": [{"class": c, "probability": p} for c, p in top]})
            )
        else:
            print(f"{path}: " + ", ".join(f"{c} {p:.1%}" for c, p in top))
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
