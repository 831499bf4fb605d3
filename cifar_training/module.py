"""The LightningModule: one network, one loop; the backend only picks who does the math.

Training: smoothed softmax cross-entropy (``--label-smoothing``), the backend's optimizer with
coupled L2 weight decay on conv/affine weights, a per-step schedule (linear warmup from 0.2x to
the peak ``--lr`` over the first ``--warmup`` fraction of steps, then linear decay to 0; or
constant). Validation: plain cross-entropy and accuracy on the held-out split, which
``ModelCheckpoint`` uses to keep the best epoch. Test: accuracy without and with flip
test-time augmentation (scores averaged over the image and its mirror), optionally 6-view
flip+translate TTA (``tta_translate``), and the confusion matrix.

Metrics are reduced across DDP processes as sums of (loss * n, correct, n), so they are exact
whatever the shard sizes. A non-finite loss on any process stops every process at the same step
with ``NonFiniteLossError``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace

import lightning as L
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LambdaLR

from cifar_training.backends import get_ops
from cifar_training.models import build_net, param_groups
from cifar_training.recipes import (
    ADAM_BETAS,
    DEFAULT_RECIPE,
    RECIPE_FOR_MODEL,
    RECIPES,
    SGD_FAMILY,
    Recipe,
)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class WarmupLinearDecay:
    """LR factor at optimizer step t: 0.2 -> 1 linearly over the first warmup*T steps, then
    1 -> 0 linearly at step T (T = total steps). A class, not a lambda, so that LambdaLR's
    state_dict (hence the checkpoint) records it."""

    def __init__(self, total_steps: int, warmup: float = 0.2, start: float = 0.2):
        self.total = max(int(total_steps), 1)
        self.warm = max(int(round(warmup * self.total)), 0)
        self.start = start

    def __call__(self, step: int) -> float:
        if step < self.warm:
            return self.start + (1.0 - self.start) * step / self.warm
        return max(0.0, (self.total - step) / max(self.total - self.warm, 1))


class CifarModule(L.LightningModule):
    """The training loop of one network, its hyperparameters from a ``Recipe``.

    recipe: every hyperparameter (``cifar_training.recipes``; default: the default recipe, so
    the module cannot disagree with train.py's defaults). backend: torch | numpy | builtin.
    num_classes, image_shape (C, H, W): the data's. seed: the initial weights. classes: label
    names (for the confusion matrix). ``config``, stored in every checkpoint under "nn_twins",
    holds all of these as plain values.
    """

    def __init__(
        self,
        recipe: Recipe = DEFAULT_RECIPE,
        *,
        backend: str = "torch",
        num_classes: int = 10,
        image_shape=(3, 32, 32),
        seed: int = 0,
        classes=None,
    ):
        super().__init__()
        if not isinstance(recipe, Recipe):
            raise TypeError(
                f"recipe must be a cifar_training.recipes.Recipe, got {type(recipe).__name__}"
            )
        self.recipe = recipe
        self.config = {
            "backend": backend,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(recipe).items()},
            "num_classes": num_classes,
            "image_shape": list(image_shape),
            "seed": seed,
            "betas": list(ADAM_BETAS),
            "classes": list(classes) if classes else [str(i) for i in range(num_classes)],
        }
        self.backend = backend
        self.ops = get_ops(backend)
        self.net = build_recipe_net(recipe, num_classes, tuple(image_shape), seed)
        self.history = {"train_step": [], "train_epoch": [], "val_epoch": []}
        self.test_results: dict = {}
        self.tta_translate = recipe.tta_translate  # also score 6-view flip+translate TTA
        self._sums: dict = {}
        self.total_steps: int | None = None  # optimizer steps of the whole run, for the schedule
        self._epoch_marks, self._epoch_images = [0.0, 0.0], 0

    def forward(self, x):
        return self.net(x, self.ops)

    # -- training ------------------------------------------------------------------------------

    def training_step(self, batch, batch_idx):
        x, y = batch
        scores = self(x)
        loss = self.ops.cross_entropy(scores, y, self.recipe.label_smoothing)
        self._stop_if_not_finite(loss, batch_idx)
        self._accumulate("train", loss.detach(), scores.detach(), y)
        self.log("train/loss_step", loss.detach(), prog_bar=True)
        if self.trainer.is_global_zero:
            lr = self.trainer.optimizers[0].param_groups[0]["lr"]
            self.history["train_step"].append([int(self.global_step), float(loss.detach()), lr])
        self._epoch_images += len(y) * self.trainer.world_size
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self._epoch_marks[1] = time.perf_counter()

    def _stop_if_not_finite(self, loss, batch_idx):
        bad = not bool(torch.isfinite(loss.detach()).all())
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            lr = self.trainer.optimizers[0].param_groups[0]["lr"]
            raise NonFiniteLossError(
                f"the training loss is not finite ({float(loss.detach())} on rank "
                f"{self.trainer.global_rank}) at optimizer step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}) with --backend {self.backend}; "
                f"training stopped. The learning rate at this step was {lr:.4g}: try a lower "
                f"--lr, or check the data."
            )

    def on_train_start(self):
        # Also the start of a resumed epoch, for which on_train_epoch_start is not called.
        now = time.perf_counter()
        self._epoch_marks, self._epoch_images = [now, now], 0

    def on_train_epoch_start(self):
        self._sums.pop("train", None)
        self.on_train_start()

    def on_train_epoch_end(self):
        loss, acc = self._reduce("train")
        if loss is None:
            return
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log_dict({"train/loss": loss, "train/acc": acc}, sync_dist=False)
        if self.trainer.is_global_zero:
            self.history["train_epoch"].append([int(self.current_epoch), loss, acc, lr])
            self.print(self.epoch_summary(loss, acc, lr))

    def epoch_summary(self, loss, acc, lr) -> str:
        """One console line per epoch: train and validation loss/accuracy, the learning rate
        at the epoch's end, seconds (validation included) and training images/s."""
        start, last_batch = self._epoch_marks
        now = time.perf_counter()
        e = int(self.current_epoch)
        val = [r for r in self.history["val_epoch"] if r[0] == e]
        val_text = f" | val loss {val[-1][1]:.4f} acc {val[-1][2]:.2%}" if val else ""
        rate = self._epoch_images / max(last_batch - start, 1e-9)
        return (
            f"epoch {e + 1}/{self.trainer.max_epochs} | train loss {loss:.4f} acc {acc:.2%}"
            f"{val_text} | lr {lr:.4g} | {now - start:.1f} s | {rate:.0f} images/s"
        )

    # -- validation ----------------------------------------------------------------------------

    def validation_step(self, batch, batch_idx):
        x, y = batch
        scores = self(x)
        self._accumulate("val", self.ops.softmax_loss(scores, y), scores, y)

    def on_validation_epoch_start(self):
        self._sums.pop("val", None)

    def on_validation_epoch_end(self):
        loss, acc = self._reduce("val")
        if loss is None or self.trainer.sanity_checking:
            return
        self.log_dict({"val/loss": loss, "val/acc": acc}, prog_bar=True, sync_dist=False)
        if self.trainer.is_global_zero:
            self.history["val_epoch"].append([int(self.current_epoch), loss, acc])

    # -- test ----------------------------------------------------------------------------------

    def on_test_epoch_start(self):
        C = self.config["num_classes"]
        self._test = {
            "loss": torch.zeros((), dtype=torch.float64, device=self.device),
            "correct": torch.zeros((), dtype=torch.int64, device=self.device),
            "correct_tta": torch.zeros((), dtype=torch.int64, device=self.device),
            "n": torch.zeros((), dtype=torch.int64, device=self.device),
            "confusion": torch.zeros(C * C, dtype=torch.int64, device=self.device),
            "correct_tta6": torch.zeros((), dtype=torch.int64, device=self.device),
        }

    def test_step(self, batch, batch_idx):
        x, y = batch
        scores = self(x)
        # Flip test-time augmentation: average the scores of the image and of its mirror.
        scores_tta = 0.5 * (scores + self(x.flip(3)))
        C = self.config["num_classes"]
        t = self._test
        t["loss"] += self.ops.softmax_loss(scores, y).double() * len(y)
        t["correct"] += (scores.argmax(1) == y).sum()
        pred_tta = scores_tta.argmax(1)
        t["correct_tta"] += (pred_tta == y).sum()
        t["n"] += len(y)
        t["confusion"] += torch.bincount(y * C + pred_tta, minlength=C * C)
        if self.tta_translate:
            # Six views (airbench's level 2): the flip pair, plus the flip pairs of the image
            # moved one pixel up-left and down-right (reflect padding), weighted 1/2, 1/4, 1/4.
            p = F.pad(x, (1, 1, 1, 1), mode="reflect")
            H, W = x.shape[2:]
            moved = [p[:, :, :H, :W], p[:, :, 2:, 2:]]
            pairs = [0.5 * (self(m) + self(m.flip(3))) for m in moved]
            scores6 = 0.5 * scores_tta + 0.25 * (pairs[0] + pairs[1])
            t["correct_tta6"] += (scores6.argmax(1) == y).sum()

    def on_test_epoch_end(self):
        t = {k: self.trainer.strategy.reduce(v, reduce_op="sum") for k, v in self._test.items()}
        n = max(int(t["n"]), 1)
        C = self.config["num_classes"]
        self.test_results = {
            "test_acc": int(t["correct"]) / n,
            "test_acc_flip_tta": int(t["correct_tta"]) / n,
            "test_loss": float(t["loss"]) / n,
            "num_test": int(t["n"]),
            "confusion_flip_tta": t["confusion"].view(C, C).cpu().tolist(),
        }
        if self.tta_translate:
            self.test_results["test_acc_flip_translate_tta"] = int(t["correct_tta6"]) / n
        self.log_dict(
            {
                "test/acc": self.test_results["test_acc"],
                "test/acc_flip_tta": self.test_results["test_acc_flip_tta"],
            },
            sync_dist=False,
        )

    # -- shared --------------------------------------------------------------------------------

    def _accumulate(self, key, loss, scores, y):
        n = len(y)
        correct = (scores.argmax(1) == y).sum()
        s = self._sums.get(key)
        upd = torch.stack(
            [
                loss.double() * n,
                correct.double(),
                torch.tensor(float(n), dtype=torch.float64, device=loss.device),
            ]
        )
        self._sums[key] = upd if s is None else s.to(upd.device) + upd

    def _reduce(self, key):
        s = self._sums.pop(key, None)
        if s is None:
            return None, None
        s = self.trainer.strategy.reduce(s, reduce_op="sum")
        n = max(float(s[2]), 1.0)
        return float(s[0]) / n, float(s[1]) / n

    def configure_optimizers(self):
        recipe = self.recipe
        opt = self.ops.make_optimizer(
            recipe_param_groups(self.net, recipe),
            recipe.optimizer,
            recipe.lr,
            momentum=recipe.momentum,
            betas=ADAM_BETAS,
        )
        if recipe.schedule == "constant":
            return opt
        # total_steps from the caller when known: Lightning's estimate builds the training
        # loader before a checkpoint is restored, and a loader built then never receives its
        # saved position (a mid-epoch resume would restart the epoch).
        total = self.total_steps or self.trainer.estimated_stepping_batches
        sched = LambdaLR(opt, WarmupLinearDecay(total, recipe.warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint):
        # The running sums of the epoch's train loss/accuracy go along, so an epoch resumed
        # from a mid-epoch checkpoint reports the mean over all of its batches.
        sums = {k: v.tolist() for k, v in self._sums.items()}
        checkpoint["nn_twins"] = {"config": self.config, "history": self.history, "sums": sums}

    def on_load_checkpoint(self, checkpoint):
        saved = checkpoint.get("nn_twins", {})
        if "history" in saved:
            self.history = saved["history"]
        self._sums = {
            k: torch.tensor(v, dtype=torch.float64, device=self.device)
            for k, v in saved.get("sums", {}).items()
        }


def build_recipe_net(recipe: Recipe, num_classes=10, image_shape=(3, 32, 32), seed=0):
    """``models.build_net`` with the recipe's network fields."""
    return build_net(
        recipe.model,
        recipe.widths,
        recipe.stem,
        num_classes,
        image_shape,
        recipe.bn_momentum,
        seed,
        recipe.head_scale,
        recipe.bn_scale,
        recipe.dirac_init,
    )


def recipe_param_groups(net, recipe: Recipe) -> list[dict]:
    """``models.param_groups`` for the recipe: the head scale moves into the head's learning
    rate for SGD-family optimizers only (Adam and RMSprop normalize their step)."""
    head_scale = recipe.head_scale if recipe.optimizer in SGD_FAMILY else 1.0
    return param_groups(net, recipe.lr, recipe.weight_decay, head_scale, recipe.bn_bias_lr_scale)


def make_train_step(
    backend="torch", model="default", seed=0, dtype=torch.float32, recipe_name=None, **overrides
):
    """(net, step) for benchmarks: ``step(x, y)`` is one training step exactly as train.py
    runs it (forward, smoothed loss, backward, optimizer with weight decay and the head's
    param groups), returning the loss. x: (N, 3, 32, 32) normalized images, y: (N,) int64.
    ``recipe_name``: one of ``recipes.RECIPES`` (default: "classic" for the default model,
    whose 32/64/128 widths the benchmark tables use, and "three-layer"); ``overrides``: Recipe
    fields replacing its values (lr, momentum, optimizer, head_scale, widths, ...; a list, as
    JSON carries widths, is taken as the tuple)."""
    name = recipe_name or ("classic" if model == "default" else RECIPE_FOR_MODEL[model])
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    recipe = replace(RECIPES[name], model=model, **overrides)
    net = build_recipe_net(recipe, seed=seed).to(dtype)
    ops = get_ops(backend)
    opt = ops.make_optimizer(
        recipe_param_groups(net, recipe), recipe.optimizer, recipe.lr, momentum=recipe.momentum
    )

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = ops.cross_entropy(net(x, ops), y, recipe.label_smoothing)
        loss.backward()
        opt.step()
        return loss.detach()

    return net.train(), step
