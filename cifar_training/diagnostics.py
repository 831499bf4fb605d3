"""Watching training as the CS231n notes teach ("babysitting the learning process").

``TrainingDiagnostics`` is a Lightning callback that, every ``every`` optimizer steps, records

- the update/weight ratio ``||w_after - w_before|| / ||w_before||`` of every trained weight
  (conv and affine filters; the notes: about 1e-3 is healthy, much lower means the learning
  rate is too low, much higher too high), always;
- with ``activations=True`` (``train.py --diagnostics``): per layer, the mean and standard
  deviation of its activations and the fraction of dead ReLU units (channels that output 0 for
  the whole batch; the notes' activation histograms, summarized), and the gradient norm of
  every trained weight.

Each value is logged (``logs/metrics.csv`` columns ``update_ratio/<weight>``,
``activation_std/<layer>``, ``dead_relu/<layer>``, ``grad_norm/<weight>``) and kept in
``history`` (saved in checkpoints, so a resumed run keeps its curves), which
``plots.plot_update_ratio`` and ``plots.plot_diagnostics`` draw.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import Callback


def trained_weights(net) -> dict:
    """name -> parameter for the trained conv/affine weights (2-D or 4-D, requiring grad)."""
    return {n: p for n, p in net.named_parameters() if p.requires_grad and p.dim() >= 2}


def activation_stats(out: torch.Tensor, post_relu: bool) -> list:
    """[mean, std, dead fraction] of one layer's output (N, C, ...): dead units are the channels
    (units) that stay at 0 for every example and position of the batch, the notes' "dead
    ReLUs" that never fire. post_relu: the output is a ReLU's; else it is the input of the ReLU
    that follows (a unit is dead when all of it is <= 0)."""
    a = out.detach().float()
    per_unit = a.transpose(0, 1).reshape(a.shape[1], -1).amax(dim=1) if a.dim() > 1 else a
    dead = per_unit <= 0
    return [float(a.mean()), float(a.std()) if a.numel() > 1 else 0.0, float(dead.float().mean())]


class TrainingDiagnostics(Callback):
    def __init__(self, every: int = 10, activations: bool = False):
        self.every, self.activations = max(int(every), 1), activations
        self.history = {"update_ratio": [], "activations": [], "grad_norm": []}
        self._due, self._before, self._acts, self._hooks = False, None, {}, []

    # -- hooks -------------------------------------------------------------------------------

    def on_train_start(self, trainer, pl_module):
        if self.activations and not self._hooks:
            for name, module, post_relu in pl_module.net.activation_layers():
                self._hooks.append(module.register_forward_hook(self._hook(name, post_relu)))

    def on_train_end(self, trainer, pl_module):
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def _hook(self, name, post_relu):
        def record(module, inputs, output):
            if self._due and module.training:
                self._acts[name] = activation_stats(output, post_relu)

        return record

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._due = trainer.global_step % self.every == 0
        self._acts = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if not self._due:
            return
        weights = trained_weights(pl_module.net)
        self._before = {n: p.detach().clone() for n, p in weights.items()}
        if self.activations:
            self._grads = {
                n: float(p.grad.detach().float().norm())
                for n, p in weights.items()
                if p.grad is not None
            }

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not self._due or self._before is None:
            return
        step = int(trainer.global_step) - 1  # the step just taken
        ratios = {}
        for n, p in trained_weights(pl_module.net).items():
            w0 = self._before[n]
            ratios[n] = float((p.detach() - w0).float().norm() / w0.float().norm().clamp_min(1e-12))
        self._before = None
        logged = {f"update_ratio/{n}": r for n, r in ratios.items()}
        if trainer.is_global_zero:
            self.history["update_ratio"].append([step, ratios])
        if self.activations:
            if trainer.is_global_zero:
                self.history["activations"].append([step, dict(self._acts)])
                self.history["grad_norm"].append([step, dict(self._grads)])
            logged.update({f"activation_std/{n}": v[1] for n, v in self._acts.items()})
            logged.update({f"dead_relu/{n}": v[2] for n, v in self._acts.items()})
            logged.update({f"grad_norm/{n}": v for n, v in self._grads.items()})
        pl_module.log_dict(logged, on_step=True, on_epoch=False, sync_dist=False)

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self):
        return {"history": self.history}

    def load_state_dict(self, state):
        self.history = state.get("history", self.history)
