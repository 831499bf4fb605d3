"""How each kind of gradable item is called: the same code runs the reference (in the grader's
process) and the student (in a child process), so both sides see identical calls.

A driver takes the item's ``spec`` (plain JSON-able dict, see ``graded_items.py``), its list of
``cases`` (inputs) and an ``env`` providing:
  env.resolve(name)  -> the function or class (AttributeError if the module lacks it)
  env.call(key, label, fn, args, kwargs, names) -> Outcome (runs one call under the guards)
  env.emit(key, record)  -> hands one result record to the grader
  env.skip(key) -> True for calls that hung or crashed in an earlier run of this child
  env.make_douts / env.make_params -> only on the reference side: draw the upstream gradients
                      and model parameters that the student's run then receives as inputs.
Records are dicts: 'value' (what the call returned, outputs only), 'error' (None or a dict with
'type', 'message', 'where'), 'mutated' (names of inputs the call modified in place), plus
driver-specific entries ('state': param dicts after the call, 'repeat': a second call's output).
"""

from __future__ import annotations

import copy
import traceback
import types
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# ----------------------------------------------------------------------------------------------
# One guarded call
# ----------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    value: object = None
    error: dict | None = None
    mutated: list = field(default_factory=list)


def call_seed(key: str) -> int:
    """The global NumPy seed set before a call; the same key gives the same seed on both sides."""
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def _same(a, b) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def describe_exception(exc: BaseException, roots: tuple) -> dict:
    """Exception type, message and the innermost frame inside one of ``roots`` (the student's
    files), so the report can point at the student's line rather than at the grader."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if any(f.filename.startswith(r) for r in roots)] or frames[-1:]
    where = ""
    if own:
        f = own[-1]
        line = (f.line or "").strip()
        where = f"{f.filename}:{f.lineno} in {f.name}" + (f": {line}" if line else "")
    message = str(exc)
    if len(message) > 600:
        message = message[:600] + "..."
    tb = "".join(traceback.format_list(own[-4:]))
    return {"type": type(exc).__name__, "message": message, "where": where, "traceback": tb}


def guarded_call(key, fn, args, kwargs, names, roots, before=None) -> Outcome:
    """Call ``fn(*args, **kwargs)`` with the global seed fixed; catch every exception; report
    top-level array arguments that came back modified."""
    snapshot = [
        (name, a, a.copy())
        for name, a in zip(names or (), args, strict=False)
        if name and isinstance(a, np.ndarray)
    ]
    if before is not None:
        before()
    np.random.seed(call_seed(key))  # noqa: NPY002 -- student code draws from the global state
    try:
        value = fn(*args, **(kwargs or {}))
    except BaseException as exc:  # noqa: BLE001 -- SystemExit from student code is a failure too
        if isinstance(exc, KeyboardInterrupt):
            raise
        return Outcome(False, error=describe_exception(exc, roots))
    mutated = [name for name, a, saved in snapshot if not _same(a, saved)]
    return Outcome(True, value=value, mutated=mutated)


def _record(o: Outcome, value=None, **extra) -> dict:
    rec = {"value": value if o.ok else None, "error": o.error, "mutated": list(o.mutated)}
    rec.update(extra)
    return rec


def _error(kind: str, message: str) -> dict:
    return {"type": kind, "message": message, "where": ""}


def _not_run(message: str) -> dict:
    return {"value": None, "error": _error("NotRun", message), "mutated": []}


def _resolve_or_not_run(env, name: str, keys: list[str]) -> tuple[bool, Any]:
    """(True, the student's ``name``), or (False, None) after recording every result in
    ``keys`` as not run, naming what is missing."""
    try:
        return True, env.resolve(name)
    except AttributeError as exc:
        for key in keys:
            env.emit(key, _not_run(str(exc)))
        return False, None


def _split_outputs(value, n_out: int):
    """A forward returns (out_1, ..., out_n, cache). Returns (outputs, cache) or None."""
    if isinstance(value, (tuple, list)) and len(value) == n_out + 1:
        return list(value[:n_out]), value[n_out]
    return None


# ----------------------------------------------------------------------------------------------
# Drivers
# ----------------------------------------------------------------------------------------------


def run_layer(spec, cases, env):
    """forward(*args) -> (out..., cache), then backward(*douts, cache) -> grads.

    All forwards run first, then all backwards, so a backward that hangs cannot take the forward's
    results with it. spec: 'forward', 'backward' (or None), 'args' (names), 'n_out', 'repeat'
    (call the forward twice to check that a seed reproduces it).
    """
    fwd_name, bwd_name, n_out = spec["forward"], spec.get("backward"), spec["n_out"]
    names = spec["args"]
    caches = {}
    found, fwd = _resolve_or_not_run(env, fwd_name, [f"fwd/{i}" for i in range(len(cases))])
    if not found:
        return
    for i, case in enumerate(cases):
        key = f"fwd/{i}"
        if env.skip(key):
            continue
        args = copy.deepcopy(case["args"])
        o = env.call(key, f"{fwd_name}: {case['label']}", fwd, args, None, names)
        state = {n: a for n, a in zip(names, args, strict=False) if isinstance(a, dict)}
        split = _split_outputs(o.value, n_out) if o.ok else None
        if o.ok and split is None:
            rec = _record(o, o.value, state=state, structure=False)
        else:
            rec = _record(o, split[0] if split else None, state=state, structure=True)
        if split is not None:
            caches[i] = split[1]
            if spec.get("repeat"):
                args2 = copy.deepcopy(case["args"])
                o2 = env.call(key, f"{fwd_name} (again): {case['label']}", fwd, args2, None, names)
                again = _split_outputs(o2.value, n_out) if o2.ok else None
                rec["repeat"] = again[0] if again else None
            if case.get("douts") is None and env.make_douts is not None:
                case["douts"] = env.make_douts(i, split[0])
        env.emit(key, rec)
    if not bwd_name:
        return
    keys = [f"bwd/{i}" for i, case in enumerate(cases) if case.get("backward", True)]
    found, bwd = _resolve_or_not_run(env, bwd_name, keys)
    if not found:
        return
    dnames = [f"d{n}" if n_out > 1 else "dout" for n in spec.get("outputs", ["out"] * n_out)]
    for i, case in enumerate(cases):
        key = f"bwd/{i}"
        if not case.get("backward", True) or env.skip(key):
            continue
        if i not in caches or case.get("douts") is None:
            env.emit(key, _not_run(f"{fwd_name} returned no cache for this case"))
            continue
        douts = copy.deepcopy(case["douts"])
        o = env.call(
            key, f"{bwd_name}: {case['label']}", bwd, [*douts, caches[i]], None, [*dnames, None]
        )
        env.emit(key, _record(o, o.value))


def run_loss(spec, cases, env):
    """fn(*args) -> (loss, grad). spec: 'function', 'args'."""
    name = spec["function"]
    found, fn = _resolve_or_not_run(env, name, [f"loss/{i}" for i in range(len(cases))])
    if not found:
        return
    for i, case in enumerate(cases):
        key = f"loss/{i}"
        if env.skip(key):
            continue
        args = copy.deepcopy(case["args"])
        o = env.call(key, f"{name}: {case['label']}", fn, args, case.get("kwargs"), spec["args"])
        env.emit(key, _record(o, o.value))


def run_optim(spec, cases, env):
    """rule(w, dw, config) -> (next_w, config) for several steps, feeding next_w and config back.

    case: 'w', 'config' (dict or None), 'dws' (one gradient per step).
    """
    name = spec["function"]
    found, rule = _resolve_or_not_run(env, name, [f"step/{i}/0" for i in range(len(cases))])
    if not found:
        return
    for i, case in enumerate(cases):
        w = np.array(case["w"])
        config = copy.deepcopy(case["config"])
        for s, dw in enumerate(case["dws"]):
            key = f"step/{i}/{s}"
            if env.skip(key):
                break
            args = [w, np.array(dw), config]
            o = env.call(
                key, f"{name}: {case['label']}, step {s + 1}", rule, args, None, ["w", "dw", None]
            )
            ok = o.ok and isinstance(o.value, (tuple, list)) and len(o.value) == 2
            if not ok:
                env.emit(key, _record(o, o.value, structure=not o.ok))
                break
            w, config = o.value
            env.emit(key, _record(o, (w, copy.deepcopy(config)), structure=True))
            if not isinstance(w, np.ndarray) or not isinstance(config, dict):
                break


def _construct(spec, case, env, i):
    """Build the object of an 'object' item; returns (obj or None, record)."""
    cls_name = spec["cls"]
    cls = env.resolve(cls_name)
    key = f"init/{i}"
    o = env.call(
        key,
        f"{cls_name}(...): {case['label']}",
        cls,
        list(case.get("ctor_args", [])),
        copy.deepcopy(case.get("ctor_kwargs", {})),
        None,
    )
    if not o.ok:
        return None, _record(o)
    obj = o.value
    params = getattr(obj, "params", None)
    value = {k: v for k, v in params.items()} if isinstance(params, dict) else None
    return obj, _record(o, copy.deepcopy(value))


def _quadratic_loss(self, X_batch, y_batch, reg):
    """Stand-in loss for grading a training loop on its own: 0.5 * mean squared distance of
    the scores to one-hot targets, plus reg * sum(W**2). (Not a loss students write.)"""
    N = X_batch.shape[0]
    targets = np.zeros((N, self.W.shape[1]))
    targets[np.arange(N), y_batch] = 1.0
    diff = X_batch.dot(self.W) - targets
    loss = 0.5 * np.sum(diff * diff) / N + reg * np.sum(self.W * self.W)
    return loss, X_batch.T.dot(diff) / N + 2 * reg * self.W


_TRAIN_LOSSES = {"quadratic": _quadratic_loss}


def _set_state(obj, case, env, i):
    if case.get("train_loss"):
        obj.loss = types.MethodType(_TRAIN_LOSSES[case["train_loss"]], obj)
    params = getattr(obj, "params", None)
    if case.get("params") is None and env.make_params is not None and isinstance(params, dict):
        case["params"] = env.make_params(i, params)
    for k, v in (case.get("params") or {}).items():
        params[k] = np.array(v)
    for k, v in (case.get("attrs") or {}).items():
        setattr(obj, k, copy.deepcopy(v))


def run_object(spec, cases, env):
    """Construct a class, set its parameters, then call methods in order.

    spec: 'cls'. case: 'ctor_args', 'ctor_kwargs', 'params' (name -> array, set after
    construction; drawn by env.make_params on the reference side when None), 'attrs' (attributes
    to set), 'train_loss' (a stand-in ``loss`` method, see ``_TRAIN_LOSSES``), 'calls' (list of
    {'method', 'args', 'kwargs'}, or {'attr'} to read an attribute).
    """
    for i, case in enumerate(cases):
        if env.skip(f"init/{i}"):
            continue
        try:
            obj, rec = _construct(spec, case, env, i)
        except AttributeError as exc:
            env.emit(f"init/{i}", _not_run(str(exc)))
            continue
        env.emit(f"init/{i}", rec)
        if obj is None:
            continue
        try:
            _set_state(obj, case, env, i)
        except Exception as exc:  # noqa: BLE001 -- e.g. the student's params is not a dict
            env.emit(
                f"call/{i}/0",
                {
                    "value": None,
                    "mutated": [],
                    "error": _error(type(exc).__name__, f"setting params: {exc}"),
                },
            )
            continue
        for j, c in enumerate(case["calls"]):
            key = f"call/{i}/{j}"
            if env.skip(key):
                break
            if "attr" in c:  # read an attribute the earlier calls set (e.g. W after train)
                env.emit(
                    key,
                    {
                        "value": copy.deepcopy(getattr(obj, c["attr"], None)),
                        "error": None,
                        "mutated": [],
                    },
                )
                continue
            fn = getattr(obj, c["method"], None)
            if fn is None:
                env.emit(
                    key,
                    {
                        "value": None,
                        "mutated": [],
                        "error": _error("Missing", f"{spec['cls']} has no method {c['method']!r}"),
                    },
                )
                break
            args = copy.deepcopy(c.get("args", []))
            o = env.call(
                key,
                f"{spec['cls']}.{c['method']}: {case['label']}",
                fn,
                args,
                copy.deepcopy(c.get("kwargs")),
                c.get("names"),
            )
            env.emit(key, _record(o, o.value))
            if not o.ok:
                break


def _to_numpy(value, name):
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must return a torch.Tensor, got {type(value).__name__}")
    return value.detach().cpu().numpy()


def course_network(arch: str, noise_dim: int):
    """The networks CS231n's GAN notebook specifies layer by layer (not a solution students
    write: the notebook gives every layer), to hold a student's network against."""
    from torch import nn

    if arch == "discriminator":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 256),
            nn.LeakyReLU(0.01),
            nn.Linear(256, 256),
            nn.LeakyReLU(0.01),
            nn.Linear(256, 1),
        )
    if arch == "generator":
        return nn.Sequential(
            nn.Linear(noise_dim, 1024),
            nn.ReLU(),
            nn.Linear(1024, 1024),
            nn.ReLU(),
            nn.Linear(1024, 784),
            nn.Tanh(),
        )
    if arch == "dc_classifier":
        return nn.Sequential(
            nn.Unflatten(1, (1, 28, 28)),
            nn.Conv2d(1, 32, 5),
            nn.LeakyReLU(0.01),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 64, 5),
            nn.LeakyReLU(0.01),
            nn.MaxPool2d(2, 2),
            nn.Flatten(),
            nn.Linear(1024, 1024),
            nn.LeakyReLU(0.01),
            nn.Linear(1024, 1),
        )
    if arch == "dc_generator":
        return nn.Sequential(
            nn.Linear(noise_dim, 1024),
            nn.ReLU(),
            nn.BatchNorm1d(1024),
            nn.Linear(1024, 7 * 7 * 128),
            nn.ReLU(),
            nn.BatchNorm1d(7 * 7 * 128),
            nn.Unflatten(1, (128, 7, 7)),
            nn.ConvTranspose2d(128, 64, 4, 2, 1),
            nn.ReLU(),
            nn.BatchNorm2d(64),
            nn.ConvTranspose2d(64, 1, 4, 2, 1),
            nn.Tanh(),
            nn.Flatten(),
        )
    raise ValueError(f"unknown network {arch!r}")


def _compare_architecture(fn, fspec, case):
    """Build the student's network, give the course's network the same parameters (in order),
    run both (float64, training mode) on the case's input. Returns (the student's parameter
    shapes, the course's, the student's output, the course's output or None when the
    parameters do not line up)."""
    import torch

    net = fn(*fspec.get("ctor_args", []))
    ours = course_network(fspec["arch"], fspec.get("noise_dim", 0)).double()
    net = net.double()
    mine = [tuple(p.shape) for p in net.parameters()]
    want = [tuple(p.shape) for p in ours.parameters()]
    x = torch.tensor(case["args"][0], dtype=torch.float64)
    out = _to_numpy(net(x.clone()), fspec["function"] + "(...)")
    expected = None
    if mine == want:
        with torch.no_grad():
            for p, q in zip(ours.parameters(), net.parameters(), strict=True):
                p.copy_(q)
        expected = ours(x.clone()).detach().numpy()
    return mine, want, out, expected


def captioning_transformer_forward(cls, case):
    """CaptioningTransformer.forward against the composition the notebook describes, made of
    the student's own submodules (so a bug in them does not count here): embed the captions,
    add the positional encoding, project the features into one memory step, run the decoder
    with a causal mask, score the vocabulary. Returns (the student's scores, the composition's
    scores), float64, eval mode."""
    import torch

    model = cls(*case["ctor_args"], **case["ctor_kwargs"]).double().eval()
    features = torch.tensor(case["args"][0], dtype=torch.float64)
    captions = torch.tensor(case["args"][1], dtype=torch.long)
    with torch.no_grad():
        scores = model(features, captions)
        T = captions.shape[1]
        tgt = model.positional_encoding(model.embedding(captions))
        memory = model.visual_projection(features).unsqueeze(1)
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        expected = model.output(model.transformer(tgt, memory, tgt_mask=mask))
    return _to_numpy(scores, "CaptioningTransformer.forward"), expected.numpy()


def _pack(tensors, pack):
    """The call's positional arguments from the case's flat list: ``pack`` lists an index, or
    a list of indices for an argument that is a list of tensors (the notebook's ``params``);
    None passes the flat list as it is."""
    if pack is None:
        return tensors
    return [[tensors[j] for j in p] if isinstance(p, list) else tensors[p] for p in pack]


# The notebook's globals that its functions read, as the grader sets them in the student's
# module (the reference takes them as keyword arguments): float64 on the CPU, so outputs compare
# at float64 precision.
def _notebook_globals(env) -> None:
    import torch

    if getattr(env, "reference", False) or getattr(env, "module", None) is None:
        return
    env.module.device = torch.device("cpu")
    env.module.dtype = torch.float64


def _weight_init(fn, fspec, case):
    """random_weight / zero_weight: the tensor made for the case's shape, and whether it is a
    leaf that requires grad (the notebook trains it with w -= lr * w.grad)."""
    t = fn(*copy.deepcopy(case["args"]))
    value = _to_numpy(t, fspec["function"]).astype(np.float64)
    return {"value": value, "requires_grad": bool(t.requires_grad), "is_leaf": bool(t.is_leaf)}


def notebook_network(arch: str, ctor_args):
    """The networks of CS231n's assignment-2 PyTorch notebook, layer by layer in torch.nn (to
    hold a student's module against): TwoLayerFC(input_size, hidden_size, num_classes) and
    ThreeLayerConvNet(in_channel, channel_1, channel_2, num_classes) on 32x32 images."""
    from torch import nn

    if arch == "two_layer_fc":
        d, h, c = ctor_args
        return nn.Sequential(nn.Flatten(), nn.Linear(d, h), nn.ReLU(), nn.Linear(h, c))
    if arch == "three_layer_convnet":
        c_in, c1, c2, c = ctor_args
        return nn.Sequential(
            nn.Conv2d(c_in, c1, 5, padding=2),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(c2 * 32 * 32, c),
        )
    raise ValueError(f"unknown network {arch!r}")


def _notebook_module(cls, fspec, case):
    """Build the student's module with the notebook's constructor arguments; record each
    parameter's initial standard deviation, then (as ``_compare_architecture``) the parameter
    shapes in order and the output of the student's module and of the notebook's network
    given the student's parameters (float64). Returns (shapes, expected shapes, output,
    expected output or None, initial stds)."""
    import torch

    net = cls(*fspec["ctor_args"])
    init = [float(p.detach().double().std()) if p.numel() > 1 else 0.0 for p in net.parameters()]
    ours = notebook_network(fspec["arch"], fspec["ctor_args"]).double()
    net = net.double()
    mine = [tuple(p.shape) for p in net.parameters()]
    want = [tuple(p.shape) for p in ours.parameters()]
    x = torch.tensor(case["args"][0], dtype=torch.float64)
    out = _to_numpy(net(x.clone()), fspec["function"] + ".forward")
    expected = None
    if mine == want:
        with torch.no_grad():
            for p, q in zip(ours.parameters(), net.parameters(), strict=True):
                p.copy_(q)
        expected = ours(x.clone()).detach().numpy()
    return mine, want, out, expected, init


# Notebook checks whose run differs from a forward and backward: check name -> run(fn, fspec,
# case), called under the case's torch seed.
NOTEBOOK_RUNS = {"weight_init": _weight_init, "notebook_module": _notebook_module}


def run_torch(spec, cases, env):
    """PyTorch code (assignment 3): for each case, the function ``spec['functions'][case['fn']]``
    called with every array argument a float64 tensor that requires grad; then autograd with
    the upstream gradient (1 for a scalar output, the case's ``douts`` otherwise). Record value:
    (output, [gradient of each argument; None for non-tensors or when no gradient reached it]).

    spec: 'functions', a list of {'function', 'args' (names), 'kwargs', 'check'}. With
    check 'random' the function draws random numbers: it is called twice (the case's kwargs
    hold its seed, if any) and the record holds both outputs, (first, second), no gradients.
    """
    import torch

    for i, case in enumerate(cases):
        key = f"loss/{i}"
        fspec = spec["functions"][case["fn"]]
        name = fspec["function"]
        if env.skip(key):
            continue
        try:
            fn = env.resolve(name)
        except AttributeError as exc:
            env.emit(key, _not_run(str(exc)))
            continue
        if fspec.get("check") == "composition":

            def compose(case=case, key=key, fn=fn):
                torch.manual_seed(call_seed(key))
                return captioning_transformer_forward(fn, case)

            o = env.call(key, f"{name}: {case['label']}", compose, [], None, [])
            env.emit(key, _record(o, o.value))
            continue
        if fspec.get("check") == "architecture":

            def build_and_run(case=case, key=key, fn=fn, fspec=fspec):
                torch.manual_seed(call_seed(key))
                return _compare_architecture(fn, fspec, case)

            o = env.call(key, f"{name}: {case['label']}", build_and_run, [], None, [])
            env.emit(key, _record(o, o.value))
            continue
        if fspec.get("notebook"):
            _notebook_globals(env)
        if fspec.get("check") in NOTEBOOK_RUNS:

            def notebook_run(case=case, key=key, fn=fn, fspec=fspec):
                torch.manual_seed(call_seed(key))
                return NOTEBOOK_RUNS[fspec["check"]](fn, fspec, case)

            o = env.call(key, f"{name}: {case['label']}", notebook_run, [], None, [])
            env.emit(key, _record(o, o.value))
            continue
        if fspec.get("check") == "random":

            def twice(case=case, key=key, fn=fn, name=name):
                torch.manual_seed(call_seed(key))
                kwargs = case.get("kwargs") or {}
                return tuple(_to_numpy(fn(*case["args"], **kwargs), name) for _ in range(2))

            o = env.call(key, f"{name}: {case['label']}", twice, [], None, [])
            env.emit(key, _record(o, o.value))
            continue

        def forward_backward(i=i, case=case, key=key, fn=fn, name=name, fspec=fspec):
            tensors = [
                torch.tensor(a, dtype=torch.float64, requires_grad=True)
                if isinstance(a, np.ndarray)
                else a
                for a in copy.deepcopy(case["args"])
            ]
            torch.manual_seed(call_seed(key))
            call_args = _pack(tensors, fspec.get("pack"))
            out = fn(*call_args, **copy.deepcopy(fspec.get("kwargs") or {}))
            value = _to_numpy(out, name)
            if value.ndim == 0:
                dout = np.array(1.0)
            else:
                if case.get("douts") is None and env.make_douts is not None:
                    case["douts"] = env.make_douts(i, [value])
                dout = case["douts"][0]
            if out.requires_grad:
                out.backward(torch.as_tensor(dout, dtype=out.dtype))
            grads = [
                t.grad.detach().cpu().numpy()
                if isinstance(t, torch.Tensor) and t.grad is not None
                else None
                for t in tensors
            ]
            return value, grads

        o = env.call(key, f"{name}: {case['label']}", forward_backward, [], None, [])
        env.emit(key, _record(o, o.value))


def _attr_path(obj, path):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _torch_value(a, grad):
    import torch

    if not isinstance(a, np.ndarray):
        return a
    if a.dtype.kind == "f":
        return torch.tensor(a, dtype=torch.float64, requires_grad=grad)
    return torch.tensor(a)


def run_torch_module(spec, cases, env):
    """A PyTorch module of assignment 3: construct it (eval mode, float64), set its parameters
    from the case's arrays, call forward on tensors that require grad, then autograd with the
    case's upstream gradient. Record value: (output, {input name: gradient},
    {parameter name: gradient}).

    spec: 'modules', a list of {'cls', 'inputs' (names of forward's tensor arguments),
    'params': {'student': ..., 'reference': ...}}, each params map taking an attribute path of
    the module ('query.weight') to [parameter name, transposed?] (the course's nn.Linear holds
    the transpose of CS231n's w); each case's 'fn' picks its module.
    """
    import torch

    side = "reference" if getattr(env, "reference", False) else "student"
    for i, case in enumerate(cases):
        key = f"loss/{i}"
        mspec = spec["modules"][case["fn"]]
        if env.skip(key):
            continue
        try:
            cls = env.resolve(mspec["cls"])
        except AttributeError as exc:
            env.emit(key, _not_run(str(exc)))
            continue
        pmap = mspec["params"][side]

        def forward_backward(i=i, case=case, key=key, cls=cls, pmap=pmap, mspec=mspec):
            torch.manual_seed(call_seed(key))
            module = cls(*case.get("ctor_args", []), **case.get("ctor_kwargs", {}))
            module = module.double().eval()
            params = {}
            for path, (pname, transposed) in pmap.items():
                p = _attr_path(module, path)
                value = case["params"][pname]
                with torch.no_grad():
                    p.copy_(torch.as_tensor(value.T if transposed else value))
                params[pname] = (p, transposed)
            inputs = [_torch_value(a, True) for a in copy.deepcopy(case["args"])]
            kwargs = {k: _torch_value(v, False) for k, v in (case.get("kwargs") or {}).items()}
            out = module(*inputs, **kwargs)
            value = _to_numpy(out, f"{mspec['cls']}.forward")
            if case.get("douts") is None and env.make_douts is not None:
                case["douts"] = env.make_douts(i, [value])
            if out.requires_grad:
                out.backward(torch.as_tensor(case["douts"][0], dtype=out.dtype))
            grads = {
                n: (t.grad.detach().cpu().numpy() if t.grad is not None else None)
                for n, t in zip(mspec["inputs"], inputs, strict=True)
            }
            pgrads = {}
            for pname, (p, transposed) in params.items():
                g = None if p.grad is None else p.grad.detach().cpu().numpy()
                pgrads[pname] = g.T if transposed and g is not None else g
            return value, grads, pgrads

        o = env.call(key, f"{mspec['cls']}: {case['label']}", forward_backward, [], None, [])
        env.emit(key, _record(o, o.value))


# ----------------------------------------------------------------------------------------------
# Diagnosis: numerical gradients of the STUDENT's forward (only run when a gradient disagrees)
# ----------------------------------------------------------------------------------------------


def _numerical(f, x, h):
    """Centered differences of the scalar ``f()`` with respect to ``x`` (perturbed in place and
    restored). Written out here because the child may not import the reference."""
    grad = np.zeros(np.shape(x), dtype=np.float64)
    for ix in np.ndindex(*np.shape(x)):
        old = x[ix]
        x[ix] = old + h
        fxph = f()
        x[ix] = old - h
        fxmh = f()
        x[ix] = old
        grad[ix] = (fxph - fxmh) / (2 * h)
    return grad


class _Abort(Exception):
    pass


def _scalar_caller(env, key, label, fn, make_args, reduce):
    def f():
        args, kwargs = make_args()
        o = env.call(key, label, fn, args, kwargs, None)
        if not o.ok:
            raise _Abort(o.error)
        try:
            return float(reduce(o.value))
        except Exception as exc:  # noqa: BLE001
            raise _Abort(_error(type(exc).__name__, str(exc))) from exc

    return f


def run_numgrad(spec, cases, env):
    """Centered differences of the student's own forward, for the case ``cases[0]``.

    spec: 'mode' ('layer', 'loss' or 'object'), 'wrt' (list of [name, index or param name]),
    'h', and the entries of the item's own spec. Emits 'num/<name>' records.
    """
    case, mode, h = cases[0], spec["mode"], spec["h"]
    if mode == "layer":
        fwd = env.resolve(spec["forward"])
        n_out, douts = spec["n_out"], case["douts"]
        base = case["args"]

        def reduce(value):
            outs = _split_outputs(value, n_out)[0]
            return sum(
                np.sum(np.asarray(o, dtype=np.float64) * d)
                for o, d in zip(outs, douts, strict=True)
            )

        def make_args():
            return copy.deepcopy(base), None

        targets = [(name, base[idx]) for name, idx in spec["wrt"]]
        fn = fwd
    elif mode == "loss":
        fn = env.resolve(spec["function"])
        base = case["args"]

        def reduce(value):
            return value[0]

        def make_args():
            return copy.deepcopy(base), case.get("kwargs")

        targets = [(name, base[idx]) for name, idx in spec["wrt"]]
    else:
        obj, _ = _construct(spec, case, env, 0)
        if obj is None:
            return
        _set_state(obj, case, env, 0)
        call = case["calls"][spec["call"]]
        fn = getattr(obj, call["method"])

        def reduce(value):
            return value[0]

        def make_args():
            return copy.deepcopy(call.get("args", [])), copy.deepcopy(call.get("kwargs"))

        targets = [(name, obj.params[pname]) for name, pname in spec["wrt"]]
    for name, x in targets:
        key = f"num/{name}"
        f = _scalar_caller(env, key, f"numerical gradient {name}", fn, make_args, reduce)
        try:
            grad = _numerical(f, x, h)
        except _Abort as exc:
            env.emit(key, {"value": None, "error": exc.args[0], "mutated": []})
            return
        env.emit(key, {"value": grad, "error": None, "mutated": []})


DRIVERS = {
    "layer": run_layer,
    "loss": run_loss,
    "optim": run_optim,
    "object": run_object,
    "numgrad": run_numgrad,
    "torch": run_torch,
    "torch_module": run_torch_module,
}
