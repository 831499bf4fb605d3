"""Shared pieces of the recurrent, attention and contrastive/GAN registry entries: input casting,
case construction, the NumPy forward/backward adapters and bad-input mutations."""

from __future__ import annotations

import functools
import sys

import numpy as np
import torch

from parity_tests.registry import Case

# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _cast(dtype, arrays: dict) -> dict:
    return {
        k: v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
        for k, v in arrays.items()
    }


def _case(dtype, inputs: dict, **consts) -> Case:
    consts = {k: _cast(dtype, v) if isinstance(v, dict) else v for k, v in consts.items()}
    return Case(_cast(dtype, inputs), _cast(dtype, consts))


def _size(rng, low=1, high=5) -> int:
    """A size in [low, high], the minimum (often 1) with probability 0.3."""
    return low if rng.random() < 0.3 else int(rng.integers(low, high + 1))


def _seq_len(rng) -> int:
    """A sequence length: 1 (a degenerate softmax over one key, a one-step recurrence) with
    probability 0.15, otherwise 2..5 so that most cases exercise the interactions."""
    return 1 if rng.random() < 0.15 else int(rng.integers(2, 6))


def _grads(case: Case, grads) -> dict:
    grads = grads if isinstance(grads, tuple) else (grads,)
    return dict(zip(case.inputs, grads, strict=True))


def _live(fn):
    """fn looked up again in its module at every call, so a test can monkeypatch it (as
    parity_tests/test_meta.py and tests/test_recurrent_attention_parity.py do to prove the checks
    catch bugs)."""
    module, name = sys.modules[fn.__module__], fn.__name__
    return lambda *args: getattr(module, name)(*args)


def _pair(forward, backward, args):
    """numpy_forward_backward for a (forward -> (out..., cache), backward(dout..., cache)) pair.

    Forwards returning several outputs (lstm_step: next_h, next_c) get a tuple of douts.
    """
    forward, backward = _live(forward), _live(backward)

    def run(case: Case, dout):
        *outs, cache = forward(*args(case))
        out = outs[0] if len(outs) == 1 else tuple(outs)
        if dout is None:
            return out, None
        douts = dout if isinstance(dout, tuple) else (dout,)
        return out, _grads(case, backward(*douts, cache))

    return run


def _loss(fn, args=None):
    """numpy_forward_backward for a loss returning (loss, grad or tuple of grads)."""
    fn = _live(fn)

    def run(case: Case, dout):
        value, grads = fn(*(args(case) if args else case.inputs.values()))
        if dout is None:
            return np.asarray(value), None
        grads = grads if isinstance(grads, tuple) else (grads,)
        return np.asarray(value), _grads(case, tuple(dout * g for g in grads))

    return run


def _xs(case):
    return tuple(case.inputs.values())


def _xs_and(*keys):
    return lambda case: (*case.inputs.values(), *(case.consts[k] for k in keys))


def _set_input(name, fn):
    def mutate(case):
        case.inputs[name] = fn(case.inputs[name])

    return mutate


def _set_const(key, fn):
    def mutate(case):
        case.consts[key] = fn(case)

    return mutate


def _like(t: torch.Tensor) -> dict:
    return {"dtype": t.dtype, "device": t.device}


@functools.lru_cache(maxsize=None)
def _builtin_module(cls, *args, dtype=None, device=None, **kw) -> torch.nn.Module:
    """The torch.nn module a builtin_fn runs through ``functional_call`` with the case's
    converted tensors: built once per (class, sizes, dtype, device), so that a benchmark of the
    builtin times its kernels, not its construction (a random initialization of every weight)."""
    return cls(*args, dtype=dtype, device=device, **kw)
