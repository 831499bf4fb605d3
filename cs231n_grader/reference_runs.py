"""Run trusted code in the grader's own process: the reference on an item's cases (which also
draws the upstream gradients and parameters the student's run receives), and known-bug or
accepted variants of it on one case, for diagnosis."""

from __future__ import annotations

import copy
import importlib
import os
import threading
import zlib

import numpy as np

from cs231n_grader import input_generators as C
from cs231n_grader.call_drivers import DRIVERS, guarded_call
from cs231n_grader.graded_items import Item

# Reference code draws from NumPy's global random state (dropout, model initialization, as in
# CS231n); items are graded on several threads, so in-process reference runs take turns.
_REFERENCE_LOCK = threading.Lock()


def item_rng(seed: int, name: str, extra: int = 0):
    return np.random.default_rng([seed, zlib.crc32(name.encode()), extra])


class LocalEnv:
    """Runs a driver in this process on trusted code (the reference or a variant of it)."""

    reference = True  # drivers that call student and reference code differently ask

    def __init__(self, module, overrides=None, make_douts=None, make_params=None, case_index=None):
        self.module = module
        self.overrides = overrides or {}
        # A variant replays one case as case 0: seed its calls as that case's own calls were.
        self.case_index = case_index
        self.records = {}
        self.make_douts = make_douts
        self.make_params = make_params
        self.roots = (os.path.dirname(os.path.abspath(getattr(module, "__file__", ""))),)

    def resolve(self, name):
        if name in self.overrides:
            return self.overrides[name]
        return getattr(self.module, name)

    def call(self, key, label, fn, args, kwargs, names):
        if self.case_index is not None:
            kind, _, rest = key.partition("/")
            _, _, tail = rest.partition("/")
            key = "/".join(p for p in (kind, str(self.case_index), tail) if p)
        with np.errstate(all="ignore"):
            return guarded_call(key, fn, args, kwargs, names, self.roots)

    def emit(self, key, record):
        self.records[key] = record

    def skip(self, key):
        return False


def reference_run(item: Item, seed: int):
    """(module, cases, records) of the reference on the item's cases. Fills each case's
    upstream gradients and model parameters, which the student's run then receives."""
    module = importlib.import_module(item.ref)
    cases = item.cases(item_rng(seed, item.name))

    def make_douts(i, outputs):
        rng = item_rng(seed, item.name, 1000 + i)
        return [rng.standard_normal(np.shape(o)) for o in outputs]

    def make_params(i, params):
        return C.make_params(item_rng(seed, item.name, 2000 + i), params)

    env = LocalEnv(module, make_douts=make_douts, make_params=make_params)
    with _REFERENCE_LOCK:
        DRIVERS[item.kind](item.spec, cases, env)
    return module, cases, env.records


def variant_records(item: Item, module, overrides: dict, case: dict, index: int = 0) -> dict:
    """Records of a variant of the reference on one case (case ``index`` of the item), keyed
    as case 0."""
    env = LocalEnv(module, overrides, case_index=index)
    try:
        with _REFERENCE_LOCK:
            DRIVERS[item.kind](item.spec, [copy.deepcopy(case)], env)
    except Exception:  # noqa: BLE001 -- a variant that cannot run explains nothing
        return {}
    return env.records
