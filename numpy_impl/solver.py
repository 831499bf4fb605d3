"""Solver: trains a classification model with minibatch gradient descent (CS231n's API).

A model is any object with
- ``model.params``: dict name -> array of the parameters to learn;
- ``model.loss(X, y=None)``: scores (N, C) when y is None, else ``(loss, grads)`` with ``grads``
  holding the same keys as ``model.params``.

Example::

    data = {'X_train': ..., 'y_train': ..., 'X_val': ..., 'y_val': ...}
    model = TwoLayerNet(hidden_dim=100, reg=1e-3)
    solver = Solver(model, data, update_rule='sgd', optim_config={'learning_rate': 1e-3},
                    lr_decay=0.95, num_epochs=10, batch_size=100, print_every=100)
    solver.train()
    # model.params now holds the parameters with the best validation accuracy;
    # solver.loss_history, solver.train_acc_history, solver.val_acc_history hold the curves;
    # solver.update_ratio_history[name] holds ||update|| / ||w|| for every iteration (the notes'
    # babysitting ratio: about 1e-3 is healthy, much lower means the learning rate is too low,
    # much higher that it is too high).

Checkpoints (``checkpoint_name='runs/net'``) are written as ``runs/net_epoch_<e>.npz`` at every
accuracy check: one ``.npz`` (read with ``allow_pickle=False``, no pickle anywhere) holding the
parameters, the best parameters, every optimizer state array, batchnorm running statistics, the
histories, NumPy's global random state and a JSON metadata record. It is written to a temporary
file and renamed with ``os.replace``, so a crash never leaves a half-written checkpoint.
``Solver.from_checkpoint`` (or ``restore_checkpoint``) resumes training exactly: with the same
settings, the resumed run's histories and final parameters equal an uninterrupted run's.
"""

# ruff: noqa: NPY002 -- CS231n draws from NumPy's global generator on purpose: notebooks seed it
# with np.random.seed(231) and graders compare the resulting numbers.

from __future__ import annotations

import json
import numbers
import os
import zipfile

import numpy as np

from . import optim
from .data import atomic_savez

__all__ = ["Solver", "load_checkpoint"]

_FORMAT = "nn_twins.solver_checkpoint"
_VERSION = 1
_DEFAULTS = {
    "update_rule": "sgd",
    "optim_config": None,  # {} (a fresh dict per Solver)
    "lr_decay": 1.0,
    "batch_size": 100,
    "num_epochs": 10,
    "num_train_samples": 1000,
    "num_val_samples": None,
    "checkpoint_name": None,
    "print_every": 10,
    "verbose": True,
}


def _require_int(name, value, minimum, allow_none=False):
    if allow_none and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{extra}, got {value!r}")
    return int(value)


class Solver:
    """Encapsulates the logic for training classification models (CS231n's Solver).

    Required arguments:
    - model: an object with ``params`` and ``loss(X, y=None)`` as described in the module doc.
    - data: dict with 'X_train' (N_train, d_1, ..., d_k), 'y_train' (N_train,), 'X_val'
      (N_val, d_1, ..., d_k), 'y_val' (N_val,).

    Optional keyword arguments (anything else raises ValueError):
    - update_rule: name of a rule in ``numpy_impl.optim`` ('sgd', 'sgd_momentum',
      'nesterov_momentum', 'rmsprop', 'adam'). Default 'sgd'.
    - optim_config: dict of hyperparameters for the update rule, copied for every parameter.
    - lr_decay: the learning rate is multiplied by this after each epoch. Default 1.0.
    - batch_size: minibatch size. Default 100.
    - num_epochs: epochs to run. Default 10.
    - num_train_samples: training examples used to check training accuracy (None = all).
      Default 1000.
    - num_val_samples: validation examples used to check validation accuracy (None = all).
    - checkpoint_name: if not None, save a checkpoint at every accuracy check, to
      ``f"{checkpoint_name}_epoch_{epoch}.npz"``.
    - print_every: print the training loss every this many iterations. Default 10.
    - verbose: print progress. Default True.

    Histories: ``loss_history`` (per iteration), ``train_acc_history`` and ``val_acc_history``
    (per accuracy check), and ``update_ratio_history``: dict parameter name -> list of
    ||update|| / ||w|| per iteration (NaN while ||w|| = 0), the notes' check of the learning
    rate (about 1e-3 is healthy).

    Randomness comes from NumPy's global generator (``np.random.choice``), as in the course, so
    ``np.random.seed(...)`` before building and training makes a run reproducible.
    """

    def __init__(self, model, data, **kwargs):
        if not hasattr(model, "params") or not callable(getattr(model, "loss", None)):
            raise TypeError("model must have a 'params' dict and a loss(X, y=None) method")
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        missing = [k for k in ("X_train", "y_train", "X_val", "y_val") if k not in data]
        if missing:
            raise ValueError(f"data is missing required keys {missing} (has {sorted(data)})")
        self.model = model
        self.X_train = data["X_train"]
        self.y_train = data["y_train"]
        self.X_val = data["X_val"]
        self.y_val = data["y_val"]
        for X, y, split in ((self.X_train, self.y_train, "train"), (self.X_val, self.y_val, "val")):
            if len(X) != len(y):
                raise ValueError(
                    f"data['X_{split}'] has {len(X)} examples but data['y_{split}'] has {len(y)}"
                )
        if len(self.X_train) == 0:
            raise ValueError("data['X_train'] holds no examples")

        unknown = sorted(set(kwargs) - set(_DEFAULTS))
        if unknown:
            extra = ", ".join(f'"{k}"' for k in unknown)
            raise ValueError(f"Unrecognized arguments {extra} (accepted: {', '.join(_DEFAULTS)})")
        opts = {k: kwargs.get(k, v) for k, v in _DEFAULTS.items()}
        optim_config = opts["optim_config"]
        if optim_config is None:
            optim_config = {}
        if not isinstance(optim_config, dict):
            raise TypeError(f"optim_config must be a dict, got {type(optim_config).__name__}")
        self.optim_config = optim_config
        self.lr_decay = opts["lr_decay"]
        if isinstance(self.lr_decay, bool) or not isinstance(self.lr_decay, numbers.Real):
            raise ValueError(f"lr_decay must be a number, got {self.lr_decay!r}")
        self.batch_size = _require_int("batch_size", opts["batch_size"], 1)
        self.num_epochs = _require_int("num_epochs", opts["num_epochs"], 0)
        self.num_train_samples = _require_int(
            "num_train_samples", opts["num_train_samples"], 1, allow_none=True
        )
        self.num_val_samples = _require_int(
            "num_val_samples", opts["num_val_samples"], 1, allow_none=True
        )
        self.checkpoint_name = opts["checkpoint_name"]
        self.print_every = _require_int("print_every", opts["print_every"], 1)
        self.verbose = bool(opts["verbose"])

        # Make sure the update rule exists, then replace the string name with the function.
        rule = opts["update_rule"]
        if not isinstance(rule, str) or rule not in optim.__all__:
            raise ValueError(
                f'Invalid update_rule "{rule}" (available: {", ".join(optim.__all__)})'
            )
        self.update_rule_name = rule
        self.update_rule = getattr(optim, rule)
        self._start_t = 0
        self._reset()

    def _reset(self):
        """Set up some book-keeping variables for optimization. Don't call this manually."""
        self.epoch = 0
        self.best_val_acc = 0
        self.best_params = {}
        self.loss_history = []
        self.train_acc_history = []
        self.val_acc_history = []
        self.update_ratio_history = {p: [] for p in self.model.params}
        # Make a deep copy of the optim_config for each parameter.
        self.optim_configs = {}
        for p in self.model.params:
            self.optim_configs[p] = dict(self.optim_config)

    def _step(self):
        """Make a single gradient update. Called by train(); don't call it manually."""
        num_train = self.X_train.shape[0]
        batch_mask = np.random.choice(num_train, self.batch_size)
        X_batch = self.X_train[batch_mask]
        y_batch = self.y_train[batch_mask]

        loss, grads = self.model.loss(X_batch, y_batch)
        self.loss_history.append(loss)

        for p, w in self.model.params.items():
            dw = grads[p]
            config = self.optim_configs[p]
            w_norm = float(np.linalg.norm(w))
            next_w, next_config = self.update_rule(w, dw, config)
            self.update_ratio_history[p].append(_update_ratio(next_w, w, w_norm))
            self.model.params[p] = next_w
            self.optim_configs[p] = next_config

    def check_accuracy(self, X, y, num_samples=None, batch_size=100):
        """Check accuracy of the model on the provided data.

        Inputs:
        - X: (N, d_1, ..., d_k) data; y: (N,) labels.
        - num_samples: if not None and N > num_samples, evaluate on num_samples examples drawn
          with replacement (``np.random.choice``, the course's subsampling).
        - batch_size: split X into batches of this size to avoid using too much memory.

        Returns acc: the fraction of correctly classified examples.
        """
        N = X.shape[0]
        if num_samples is not None and N > num_samples:
            mask = np.random.choice(N, num_samples)
            N = num_samples
            X = X[mask]
            y = y[mask]
        if N == 0:
            raise ValueError("check_accuracy needs at least one example, got X of length 0")

        num_batches = N // batch_size
        if N % batch_size != 0:
            num_batches += 1
        y_pred = []
        for i in range(num_batches):
            start = i * batch_size
            end = (i + 1) * batch_size
            scores = self.model.loss(X[start:end])
            y_pred.append(np.argmax(scores, axis=1))
        y_pred = np.hstack(y_pred)
        return np.mean(y_pred == y)

    def train(self):
        """Run optimization to train the model.

        One epoch is max(N_train // batch_size, 1) iterations. Accuracies are checked (and a
        checkpoint saved) after the first iteration, at the end of every epoch and after the last
        iteration. At the end, the parameters with the best validation accuracy are swapped into
        the model.
        """
        num_train = self.X_train.shape[0]
        iterations_per_epoch = max(num_train // self.batch_size, 1)
        num_iterations = self.num_epochs * iterations_per_epoch
        start, self._start_t = self._start_t, 0

        for t in range(start, num_iterations):
            self._step()

            if self.verbose and t % self.print_every == 0:
                print(f"(Iteration {t + 1} / {num_iterations}) loss: {self.loss_history[-1]:f}")

            # At the end of every epoch, increment the epoch counter and decay the learning rate.
            epoch_end = (t + 1) % iterations_per_epoch == 0
            if epoch_end:
                self.epoch += 1
                for k in self.optim_configs:
                    self.optim_configs[k]["learning_rate"] *= self.lr_decay

            # Check train and val accuracy on the first iteration, the last iteration, and at the
            # end of each epoch.
            first_it = t == 0
            last_it = t == num_iterations - 1
            if first_it or last_it or epoch_end:
                train_acc = self.check_accuracy(
                    self.X_train, self.y_train, num_samples=self.num_train_samples
                )
                val_acc = self.check_accuracy(
                    self.X_val, self.y_val, num_samples=self.num_val_samples
                )
                self.train_acc_history.append(train_acc)
                self.val_acc_history.append(val_acc)

                if self.verbose:
                    print(
                        f"(Epoch {self.epoch} / {self.num_epochs}) train acc: {train_acc:f}; "
                        f"val_acc: {val_acc:f}"
                    )

                # Keep track of the best model.
                if val_acc > self.best_val_acc:
                    self.best_val_acc = val_acc
                    self.best_params = {}
                    for k, v in self.model.params.items():
                        self.best_params[k] = v.copy()

                # Saved after the best-model update so a resumed run knows the current best.
                self._save_checkpoint(t + 1)

        # At the end of training swap the best params into the model (unless no check ever
        # improved on 0 accuracy, in which case the course's code would empty the model).
        if self.best_params:
            self.model.params = self.best_params

    # ------------------------------------------------------------------------------------------
    # Checkpoints
    # ------------------------------------------------------------------------------------------

    def _save_checkpoint(self, iterations_done):
        if self.checkpoint_name is None:
            return
        filename = f"{self.checkpoint_name}_epoch_{self.epoch}.npz"
        self.save_checkpoint(filename, iterations_done)

    def save_checkpoint(self, filename, iterations_done=None):
        """Write the full training state to ``filename`` (.npz, atomically).

        iterations_done: how many iterations train() has completed (the checkpoints written by
        train() record it; for a manual save it defaults to the epoch count times the
        iterations per epoch).
        """
        if iterations_done is None:
            iterations_done = self.epoch * max(self.X_train.shape[0] // self.batch_size, 1)
        arrays = {}
        names = list(self.model.params)
        for i, name in enumerate(names):
            arrays[f"param/{i}"] = np.asarray(self.model.params[name])
        best_names = list(self.best_params)
        for i, name in enumerate(best_names):
            arrays[f"best/{i}"] = np.asarray(self.best_params[name])

        # Optimizer state: arrays go in the npz; Python scalars (learning rate, Adam's t) go in
        # the JSON record, which keeps int vs float exactly. NumPy scalars are saved as 0-d arrays.
        optim_meta = []
        for i, name in enumerate(names):
            entry = {"arrays": [], "scalars": {}}
            for key, value in self.optim_configs[name].items():
                if isinstance(value, (bool, int, float)) and not isinstance(value, np.generic):
                    entry["scalars"][key] = value
                elif isinstance(value, (np.ndarray, np.generic)):
                    arrays[f"optim/{i}/{len(entry['arrays'])}"] = np.asarray(value)
                    entry["arrays"].append([key, isinstance(value, np.generic)])
                else:
                    raise TypeError(
                        f"cannot checkpoint optim_configs[{name!r}][{key!r}] of type "
                        f"{type(value).__name__} (numbers and arrays only)"
                    )
            optim_meta.append(entry)

        # Batchnorm running statistics live outside model.params (in model.bn_params).
        bn_meta = []
        for i, bn_param in enumerate(getattr(self.model, "bn_params", None) or []):
            keys = [k for k, v in bn_param.items() if isinstance(v, np.ndarray)]
            for j, key in enumerate(keys):
                arrays[f"bn/{i}/{j}"] = bn_param[key]
            bn_meta.append(keys)

        arrays["loss_history"] = np.asarray(self.loss_history, dtype=np.float64)
        for i, name in enumerate(names):
            arrays[f"ratio/{i}"] = np.asarray(
                self.update_ratio_history.get(name, []), dtype=np.float64
            )
        arrays["train_acc_history"] = np.asarray(self.train_acc_history, dtype=np.float64)
        arrays["val_acc_history"] = np.asarray(self.val_acc_history, dtype=np.float64)
        kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
        arrays["rng_keys"] = np.asarray(keys, dtype=np.uint32)

        meta = {
            "format": _FORMAT,
            "version": _VERSION,
            "update_rule": self.update_rule_name,
            "optim_config": _jsonable(self.optim_config),
            "lr_decay": float(self.lr_decay),
            "batch_size": self.batch_size,
            "num_epochs": self.num_epochs,
            "num_train_samples": self.num_train_samples,
            "num_val_samples": self.num_val_samples,
            "epoch": self.epoch,
            "iterations_done": int(iterations_done),
            "best_val_acc": float(self.best_val_acc),
            "params": names,
            "best_params": best_names,
            "optim_configs": optim_meta,
            "bn_params": bn_meta,
            "rng": {
                "kind": kind,
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached_gaussian),
            },
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        atomic_savez(filename, **arrays)

    def restore_checkpoint(self, filename):
        """Load a checkpoint written by this class and continue from it on the next train().

        Restores the model's parameters (and batchnorm running statistics), the optimizer
        states, histories, epoch, best parameters and NumPy's global random state. The
        update rule, batch size and parameter names/shapes/dtypes must match this Solver's
        (ValueError otherwise); other settings (e.g. num_epochs) are this Solver's own.
        """
        arrays, meta = load_checkpoint(filename)
        if meta["update_rule"] != self.update_rule_name:
            raise ValueError(
                f"{filename}: saved with update_rule {meta['update_rule']!r}, "
                f"this Solver uses {self.update_rule_name!r}"
            )
        if meta["batch_size"] != self.batch_size:
            raise ValueError(
                f"{filename}: saved with batch_size {meta['batch_size']}, "
                f"this Solver uses {self.batch_size}"
            )
        names = meta["params"]
        if sorted(names) != sorted(self.model.params):
            raise ValueError(
                f"{filename}: parameters {sorted(names)} do not match the model's "
                f"{sorted(self.model.params)}"
            )
        for i, name in enumerate(names):
            old, new = np.asarray(self.model.params[name]), arrays[f"param/{i}"]
            if old.shape != new.shape or old.dtype != new.dtype:
                raise ValueError(
                    f"{filename}: parameter {name!r} is {new.dtype} {new.shape} in the "
                    f"checkpoint but {old.dtype} {old.shape} in the model"
                )
        bn_params = getattr(self.model, "bn_params", None) or []
        if len(meta["bn_params"]) != len(bn_params):
            raise ValueError(
                f"{filename}: holds {len(meta['bn_params'])} batchnorm param dicts, "
                f"the model has {len(bn_params)}"
            )

        for i, name in enumerate(names):
            self.model.params[name] = arrays[f"param/{i}"]
        self.best_params = {name: arrays[f"best/{i}"] for i, name in enumerate(meta["best_params"])}
        self.optim_configs = {}
        for i, (name, entry) in enumerate(zip(names, meta["optim_configs"], strict=True)):
            config = dict(entry["scalars"])
            for j, (key, was_scalar) in enumerate(entry["arrays"]):
                a = arrays[f"optim/{i}/{j}"]
                config[key] = a[()] if was_scalar else a
            self.optim_configs[name] = config
        for i, keys in enumerate(meta["bn_params"]):
            for j, key in enumerate(keys):
                bn_params[i][key] = arrays[f"bn/{i}/{j}"]
        self.loss_history = list(arrays["loss_history"])
        # Checkpoints written before update ratios were recorded have none: start those empty.
        self.update_ratio_history = {
            name: [float(r) for r in arrays.get(f"ratio/{i}", ())] for i, name in enumerate(names)
        }
        self.train_acc_history = list(arrays["train_acc_history"])
        self.val_acc_history = list(arrays["val_acc_history"])
        self.epoch = meta["epoch"]
        self.best_val_acc = meta["best_val_acc"]
        rng = meta["rng"]
        np.random.set_state(
            (rng["kind"], arrays["rng_keys"], rng["pos"], rng["has_gauss"], rng["cached_gaussian"])
        )
        self._start_t = meta["iterations_done"]

    @classmethod
    def from_checkpoint(cls, filename, model, data, **kwargs):
        """Build a Solver with the settings saved in ``filename`` (overridden by ``kwargs``,
        e.g. ``num_epochs`` to train longer) and restore its state; call ``train()`` to go on.
        """
        _, meta = load_checkpoint(filename)
        settings = {
            k: meta[k]
            for k in (
                "update_rule",
                "optim_config",
                "lr_decay",
                "batch_size",
                "num_epochs",
                "num_train_samples",
                "num_val_samples",
            )
        }
        settings.update(kwargs)
        solver = cls(model, data, **settings)
        solver.restore_checkpoint(filename)
        return solver


def _update_ratio(next_w, w, w_norm):
    """||next_w - w|| / ||w||; NaN when ||w|| = 0 (e.g. biases at their zero initialization),
    where the ratio says nothing about the learning rate."""
    if w_norm == 0:
        return float("nan")
    return float(np.linalg.norm(np.asarray(next_w, dtype=np.float64) - w)) / w_norm


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def load_checkpoint(filename):
    """Read a Solver checkpoint. Returns (arrays, meta): a dict of every array in the file and
    the decoded JSON metadata. Raises FileNotFoundError if it does not exist and ValueError
    naming the file if it is corrupted, truncated or not a Solver checkpoint."""
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"checkpoint not found: {filename}")
    try:
        with np.load(filename, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(bytes(arrays.pop("meta")).decode("utf-8"))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{filename}: corrupted or truncated checkpoint ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"{filename}: not a Solver checkpoint (no {_FORMAT!r} record)")
    if meta.get("version") != _VERSION:
        raise ValueError(
            f"{filename}: checkpoint version {meta.get('version')} is not supported "
            f"(expected {_VERSION})"
        )
    fields = (
        "update_rule",
        "optim_config",
        "lr_decay",
        "batch_size",
        "num_epochs",
        "num_train_samples",
        "num_val_samples",
        "epoch",
        "iterations_done",
        "best_val_acc",
        "params",
        "best_params",
        "optim_configs",
        "bn_params",
        "rng",
    )
    absent = [k for k in fields if k not in meta]
    if absent:
        raise ValueError(f"{filename}: corrupted checkpoint, metadata lacks {absent}")
    needed = [f"param/{i}" for i in range(len(meta["params"]))]
    needed += [f"best/{i}" for i in range(len(meta["best_params"]))]
    needed += ["loss_history", "train_acc_history", "val_acc_history", "rng_keys"]
    if len(meta["optim_configs"]) != len(meta["params"]):
        raise ValueError(f"{filename}: corrupted checkpoint, optimizer states do not match params")
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise ValueError(f"{filename}: corrupted checkpoint, missing arrays {missing}")
    if arrays["rng_keys"].shape != (624,):
        raise ValueError(f"{filename}: corrupted checkpoint, bad random state")
    return arrays, meta
