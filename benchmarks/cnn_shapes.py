"""The conv, pool, batchnorm and ReLU shapes of train.py's default model, read by running it
once through a recording op set (so the benchmark follows the model when it changes)."""

from __future__ import annotations

from benchmarks import _common as common

# Shapes used when train.py's model cannot be read (a fixed list, batch 256).
FALLBACK_CNN = {
    "batch": 256,
    "conv": [
        ((3, 32, 32), 32, 3, 1, 1),
        ((32, 32, 32), 64, 3, 1, 1),
        ((64, 16, 16), 128, 3, 1, 1),
        ((128, 8, 8), 128, 3, 1, 1),
    ],
    "pool": [((32, 32, 32), 2, 2)],
    "bn": [(64, 32, 32)],
}


def cnn_shapes(batch=None, smoke=False):
    """Shapes of every conv / max pool / batchnorm / ReLU of train.py's default model.

    The model (its recipe's widths and stem) runs once on a batch of 2 through an op set that
    records each call's input shape; the batch is then replaced by ``batch`` (default: the
    recipe's). Returns (batch, {op: {signature: count}}, source description).
    """
    try:
        import torch

        from cifar_training.backends import BuiltinOps
        from cifar_training.models import build_net

        recipe = common.train_recipe("default", cheap=smoke)
        widths = (4, 8, 8) if smoke else recipe["widths"]
        net = build_net("default", widths=widths, stem=recipe["stem"], seed=0)
    except Exception as e:  # noqa: BLE001 - fall back to the fixed shapes, and say so
        b = batch or FALLBACK_CNN["batch"]
        rec = {"conv": {}, "pool": {}, "bn": {}, "relu": {}}
        for (c, h, w), f, k, s, p in FALLBACK_CNN["conv"]:
            rec["conv"][(c, h, w, f, k, s, p)] = 1
        for (c, h, w), k, s in FALLBACK_CNN["pool"]:
            rec["pool"][(c, h, w, k, s)] = 1
        for c, h, w in FALLBACK_CNN["bn"]:
            rec["bn"][(c, h, w)] = 1
        return b, rec, f"fallback shapes (train.py's model unavailable: {e!r})"

    rec = {"conv": {}, "pool": {}, "bn": {}, "relu": {}}

    def bump(op, key):
        rec[op][key] = rec[op].get(key, 0) + 1

    class Recorder(BuiltinOps):
        def conv(self, x, w, b, stride, pad):
            F_, _, k, _ = w.shape
            bump("conv", (*x.shape[1:], F_, k, stride, pad))
            return super().conv(x, w, b, stride, pad)

        def max_pool(self, x, size, stride):
            bump("pool", (*x.shape[1:], size, stride))
            return super().max_pool(x, size, stride)

        def spatial_batchnorm(self, x, *args):
            bump("bn", tuple(x.shape[1:]))
            return super().spatial_batchnorm(x, *args)

        def relu(self, x):
            bump("relu", tuple(x.shape[1:]))
            return super().relu(x)

    with torch.no_grad():
        net.train()
        net(torch.zeros(2, 3, 32, 32), Recorder())
    b = batch or recipe["batch_size"]
    src = (
        f"train.py's default model (widths {tuple(widths)}, stem {recipe['stem']}, "
        f"recipe batch {recipe['batch_size']})"
    )
    return b, rec, src
