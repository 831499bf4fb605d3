"""The op registry: the project's one catalog of ops.

Every layer/loss that exists in two or three versions (``numpy_impl``, ``torch_impl``, a PyTorch
builtin) is ONE :class:`OpSpec` entry, and everything that runs an op per op reads it:

* ``parity_tests/test_ops.py`` is parametrized over :data:`REGISTRY`: every check (numerical
  gradient, numpy vs torch_impl, torch_impl vs builtin in float64/float32, gradcheck, bad inputs,
  CUDA) runs on every entry;
* ``parity_tests/test_modules.py`` checks the ``torch_impl.nn`` module of every entry that has
  one (``module``, a :class:`ModuleInfo`);
* ``benchmarks/ops.py`` times the entry's three implementations at its ``bench`` shapes
  (:class:`Bench`).

Adding an op therefore means: its NumPy forward/backward, its torch_impl Function (and module),
its builtin call in ``builtin_impl`` when PyTorch's conventions differ from CS231n's, and ONE
entry here. The CS231n-vs-PyTorch conversions live in ``builtin_impl`` (a library package: the
training backend ``builtin`` uses them as well), never in an entry's own code.

Entries are collected from the modules in :data:`OP_MODULES`, sorted by what the ops are:
``ops_layers`` (affine, conv, pooling, normalization, dropout, activations, the classifier losses
and the sandwiches), ``ops_recurrent`` (RNN, LSTM, embedding, temporal layers),
``ops_attention`` (attention, positional encoding, the transformer's layer norm and GELU),
``ops_contrastive_gan`` (GAN and SimCLR losses) and ``ops_generative`` (leaky ReLU, transposed
convolution). Each exposes ``OPS``, a list of ``OpSpec``.

Writing an entry
----------------
A :class:`Case` is one randomized input: ``case.inputs`` holds the float arrays that are
differentiated (their order is the order in which they are listed; their names are the names of
the gradients), ``case.consts`` holds everything else (labels, masks, running statistics, and
plain hyperparameters such as stride, pad, G, mode, eps), CS231n's param dicts included as dicts
(``consts['bn_param']``). The three implementations each receive the same case:

* ``numpy_forward_backward(case, dout)`` calls the NumPy forward, and, unless ``dout`` is None,
  the NumPy backward with ``dout``; it returns ``(out, grads)``: ``out`` an ndarray, or a tuple of
  ndarrays for several outputs (a scalar loss is a 0-d array), and ``grads`` a dict name -> ndarray
  for every name in :meth:`OpSpec.grad_names` (``None`` when ``dout`` is None). For a loss that
  returns ``(loss, dx)`` the entry returns ``(np.asarray(loss), {'x': dout * dx})``. It receives
  fresh copies of the consts on every call (the suite copies them), so it may pass them into
  CS231n's param dicts, which forward updates in place.
* ``torch_impl_fn(tensors, consts)`` and ``builtin_fn(tensors, consts)`` return a tensor or a
  tuple of tensors with the same structure as numpy's ``out``. ``tensors`` maps each input name to
  a leaf tensor (``requires_grad=True``) of the dtype and device under test; ``consts`` holds the
  consts with every ndarray (also inside param dicts) converted to a fresh tensor on that device
  (floating arrays to the dtype under test, integer/bool arrays keep their dtype). ``builtin_fn``
  calls ``builtin_impl.functions`` (or PyTorch directly where nothing is converted) and applies
  parameter conversions through ``builtin_impl.conversions``; ``conversion`` says it in words. An
  op built from modules can use ``torch.func.functional_call(module, {...: tensors[...]}, args)``
  so gradients reach the case's tensors (``case_helpers._builtin_module`` builds the module once
  per size).
* ``module`` (optional): a :class:`ModuleInfo` naming the ``torch_impl.nn`` class, how to build
  it from a case (``make(case)``) and call it, its functional form and the ``torch.nn`` module it
  is compared against. Every class of ``torch_impl.nn.__all__`` must be one entry's.
* ``bench`` (optional): a :class:`Bench` with the benchmark's name, a float32 case factory at a
  given shape, the row label and the fixed shapes (CS231n's sizes; the training model's own
  are read from the model by ``benchmarks/op_suite.py``).

``make_case`` draws the case (see :class:`OpSpec`); ``flavors`` pin the awkward ones (batch of 1,
stride > kernel, ...) to the first case indices so that every default run includes them.

Outputs whose dtype is not floating (e.g. indices) get no upstream gradient and are compared
exactly. Any of the three callables may be None: each check runs on the entries that have what it
compares (numpy's numerical gradient needs ``numpy_forward_backward``; gradcheck needs
``torch_impl_fn``; ...).
"""

from __future__ import annotations

import copy
import functools
import importlib
import os
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

# Seeded cases: NN_TWINS_SEED changes the seed (as in the root conftest), NN_TWINS_EXAMPLES
# gives more cases per op; the default keeps `pytest parity_tests` quick on 2 cores.
SEED = int(os.environ.get("NN_TWINS_SEED", "231"))
DEFAULT_CASES = 4
N_CASES = int(os.environ.get("NN_TWINS_EXAMPLES", DEFAULT_CASES))


@dataclass
class Case:
    """One randomized input of an op.

    inputs: name -> floating ndarray, the arrays differentiated (forward argument order).
    consts: name -> anything else: ndarrays that are not differentiated (labels y, a dropout mask),
        plain values (stride, pad, G, eps...) and CS231n param dicts (bn_param with its
        running_mean/running_var arrays, conv_param, ...).
    """

    inputs: dict[str, np.ndarray]
    consts: dict[str, Any] = field(default_factory=dict)

    def copy(self) -> Case:
        return Case({k: v.copy() for k, v in self.inputs.items()}, copy.deepcopy(self.consts))

    def fresh_consts(self) -> Case:
        """Same input arrays (so in-place perturbation by the numerical gradient is seen), fresh
        copies of the consts (so running statistics updated by a forward never leak between
        calls)."""
        return Case(self.inputs, copy.deepcopy(self.consts))

    def describe(self) -> str:
        def show(v):
            if isinstance(v, np.ndarray):
                return f"{v.dtype}{tuple(v.shape)}"
            if isinstance(v, dict):
                return "{" + ", ".join(f"{k!r}: {show(x)}" for k, x in v.items()) + "}"
            return repr(v)

        ins = ", ".join(f"{k}={show(v)}" for k, v in self.inputs.items())
        cs = ", ".join(f"{k}={show(v)}" for k, v in self.consts.items())
        return f"inputs[{ins}] consts[{cs}]"


@dataclass(frozen=True)
class BadInput:
    """A bad input for the "same error in both twins" check.

    label: what is wrong (the test id). mutate(case): modifies a copy of a valid float64 case in
    place (replace an array, change a const). match: a substring the message must contain (the
    argument it names), so a vague message fails even if both twins agree on it.
    """

    label: str
    mutate: Callable[[Case], None]
    match: str


@dataclass(frozen=True)
class BenchShape:
    """One benchmark shape: ``group`` (where the size comes from: cs231n | three-layer | a3 | cnn),
    the shape's keywords for :attr:`Bench.make_case`, and the tiny ones ``--smoke`` runs."""

    group: str
    shape: dict
    smoke: dict


@dataclass(frozen=True)
class Bench:
    """How ``benchmarks/ops.py`` times an entry: forward + backward of the entry's own
    ``numpy_forward_backward``, ``torch_impl_fn`` and ``builtin_fn`` on one float32 case.

    name: the benchmark's row name (``bench`` in the JSON rows and BENCHMARKS.md: 'conv',
        'batchnorm', ...).
    make_case(rng, **shape) -> a float32 :class:`Case` of that shape, drawn as training draws
        them (weights scaled by 1/sqrt(fan_in), gamma around 1).
    label(**shape) -> the row's ``case`` text, e.g. 'N=256 D=1024'.
    shapes: the fixed shapes (CS231n's sizes). The training model's own shapes are read from
        the model by ``benchmarks/op_suite.py`` and handed to the same ``make_case``.
    flops(**shape) -> floating-point operations of forward + backward, or None.
    gemms(**shape) -> the (m, k, n) of the GEMMs an im2col implementation does (conv), or ().
    """

    name: str
    make_case: Callable[..., Case]
    label: Callable[..., str]
    shapes: tuple[BenchShape, ...] = ()
    flops: Callable[..., float] | None = None
    gemms: Callable[..., tuple] | None = None


@dataclass(frozen=True)
class ModuleInfo:
    """The ``torch_impl.nn`` module that computes an entry's op, and the ``torch.nn`` module it is
    compared against. ``parity_tests/test_modules.py`` runs its checks (parameters and buffers,
    train/eval, state_dict round trip, equality with the functional form and with the builtin)
    on every entry that has one, on the entry's own case (:meth:`OpSpec.module_case`).

    module: the torch_impl.nn class (every class in ``torch_impl.nn.__all__`` must be some
        entry's).
    make(case) -> an instance for the case: constructor arguments read from the case's shapes
        and hyperparameters (w's (D, M), conv_param's stride, ln_param's eps, ...).
    args(case) -> the forward's arguments, arrays (the first one is differentiated); default
        ``(case.inputs['x'],)``.
    flavor: make_case keywords of the module's case (e.g. a keep probability < 1 so that
        dropout's train and eval modes differ).
    buffers(case) -> name -> shape of the module's buffers. Its parameters are the case's other
        inputs (all but the first argument), with the case's shapes: CS231n's layouts.
    functional(module, *args): the same computation through ``torch_impl.functional`` with the
        module's tensors; it must be exactly equal (the same Function).
    builtin(module) -> the torch.nn module with the module's parameters converted by
        ``builtin_impl.conversions`` (the same tensors where the layouts agree, so gradients can
        be compared), or None. builtin_call(builtin, *args): how to call it.
    param_grads(builtin) -> the builtin's parameter gradients in CS231n's layout, by name (None:
        the builtin shares the module's tensors).
    modal: train and eval differ (batchnorm's statistics, dropout).
    """

    module: type
    make: Callable[[Case], Any]
    args: Callable[[Case], tuple] = staticmethod(lambda case: (case.inputs["x"],))
    flavor: dict = field(default_factory=dict)
    buffers: Callable[[Case], dict] = staticmethod(lambda case: {})
    functional: Callable | None = None
    builtin: Callable | None = None
    builtin_call: Callable = staticmethod(lambda m, *a: m(*a))
    param_grads: Callable | None = None
    modal: bool = False


@dataclass(frozen=True)
class OpSpec:
    """One op of the registry; see the module docstring for the calling conventions.

    name: test id (unique), e.g. 'conv_fast'.
    make_case(rng, dtype) -> Case: a VALID random input (randomized shapes, awkward sizes) with
        floating arrays of ``dtype`` (np.float64 or np.float32); draw values in float64 and cast at
        the end (the float32 case then holds the same numbers rounded), unless float32 needs
        better-conditioned values (say why).
    numpy_forward_backward(case, dout) -> (out, grads | None), or None.
    torch_impl_fn(tensors, consts) -> tensor(s) through torch_impl (a Function's ``apply``), or
        None.
    builtin_fn(tensors, consts) -> tensor(s) through PyTorch's builtin, or None when PyTorch has
        none.
    torch_functional_fn(tensors, consts): optional, the same op through ``torch_impl.functional``
        (CS231n's param dicts). Checked equal to ``torch_impl_fn``; it is also what the bad-input
        check calls, since it takes the same arguments as the NumPy forward.
    make_numerical_case(rng, dtype): optional generator for the finite-difference check when
        ``make_case`` draws inputs on which finite differences are ill-conditioned (huge logits).
        Every case must stay away from kinks (ties in a max, relu/hinge at 0) by much more than the
        step h=1e-5 used by the numerical gradient and eps=1e-6 used by gradcheck.
    grad_inputs: names of the inputs with a gradient (default: all of ``case.inputs``), or a
        function of the case giving them (when a gradient is exactly zero on some cases only).
        An input left out is one whose gradient is exactly zero in exact arithmetic (the MHA
        key bias, a bias followed by training-mode batchnorm): a relative error would compare
        round-off with round-off, so it is checked in absolute terms elsewhere.
    bad_inputs: BadInput table for the error check (run against numpy and torch_impl).
    conversion: the CS231n-vs-PyTorch conversion applied in ``builtin_fn``, in words.
    flavors: keyword overrides for the first len(flavors) case indices, passed to make_case (and
        make_numerical_case) as ``make_case(rng, dtype, **flavors[i])``: the awkward cases that
        must run on every default run (batch of 1, stride > kernel, tiling pool windows, ...).
        Later indices draw freely. Leave empty if make_case takes no keywords.
    float32: False to skip the float32 builtin comparison (state why in ``conversion``).
    gradcheck: False to skip torch.autograd.gradcheck (state why).
    fourth_order: True to check numpy's backward against fourth-order centered differences
        (h = 1e-3, error ~1e-12 of the gradient's scale) instead of CS231n's two-point rule
        (h = 1e-5, ~1e-10): for smooth ops whose gradients routinely hold entries ~1e-5 of their
        largest one, which the two-point rule cannot resolve to rel_error 1e-7; or for
        piecewise-linear ones whose numerical cases keep every kink more than 2h = 2e-3 away.
    module: the torch_impl.nn module computing the op and the torch.nn module it is compared
        against (:class:`ModuleInfo`), or None.
    bench: the benchmark shapes of the op (:class:`Bench`), or None: ``benchmarks/ops.py``
        times the entry's own three implementations at them.
    """

    name: str
    make_case: Callable[[np.random.Generator, type], Case]
    numpy_forward_backward: Callable | None = None
    torch_impl_fn: Callable | None = None
    builtin_fn: Callable | None = None
    torch_functional_fn: Callable | None = None
    make_numerical_case: Callable | None = None
    grad_inputs: tuple[str, ...] | Callable[[Case], tuple[str, ...]] | None = None
    bad_inputs: tuple[BadInput, ...] = ()
    conversion: str = ""
    flavors: tuple[dict, ...] = ()
    float32: bool = True
    gradcheck: bool = True
    fourth_order: bool = False
    module: ModuleInfo | None = None
    bench: Bench | None = None

    def grad_names(self, case: Case) -> tuple[str, ...]:
        if callable(self.grad_inputs):
            return tuple(self.grad_inputs(case))
        return tuple(case.inputs) if self.grad_inputs is None else self.grad_inputs

    def _flavor(self, index: int) -> dict:
        return self.flavors[index] if index < len(self.flavors) else {}

    def case(self, index: int, dtype=np.float64) -> Case:
        """The index-th seeded case (same numbers for every check and for both dtypes)."""
        return self.make_case(case_rng(self.name, index), dtype, **self._flavor(index))

    def numerical_case(self, index: int) -> Case:
        make = self.make_numerical_case or self.make_case
        return make(case_rng(self.name, index, "numerical"), np.float64, **self._flavor(index))

    def module_case(self) -> Case:
        """The float64 case the module checks run on (``module.flavor`` pins it)."""
        assert self.module is not None, f"{self.name} has no module"
        return self.make_case(case_rng(self.name, 0, "module"), np.float64, **self.module.flavor)


def case_rng(name: str, index: int, purpose: str = "") -> np.random.Generator:
    """A generator seeded by (SEED, op name, case index, purpose): deterministic per test."""
    key = [SEED, zlib.crc32(name.encode()), index]
    if purpose:
        key.append(zlib.crc32(purpose.encode()))
    return np.random.default_rng(key)


# The modules holding the entries, by what the ops are.
OP_MODULES = (
    "ops_layers",
    "ops_recurrent",
    "ops_attention",
    "ops_contrastive_gan",
    "ops_generative",
)


@functools.lru_cache(maxsize=None)
def _collect() -> tuple[OpSpec, ...]:
    specs = []
    for module in OP_MODULES:
        specs += list(importlib.import_module(f"parity_tests.{module}").OPS)
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate op names in the parity registry: {sorted(dup)}")
    return tuple(specs)


def __getattr__(name):
    # REGISTRY is built on first access, so the op modules can import OpSpec from this module
    # (in any import order) without a circular import.
    if name == "REGISTRY":
        return list(_collect())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def specs_with(*attrs: str) -> list[OpSpec]:
    """The registry entries having every attribute in ``attrs`` set (not None / not False)."""
    return [s for s in _collect() if all(getattr(s, a) for a in attrs)]
