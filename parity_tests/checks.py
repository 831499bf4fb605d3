"""The checks the parity suite runs on every registry entry.

Each ``check_*`` function raises AssertionError (with the op, the case and the worst error) when
the implementations disagree, and returns None otherwise. They are plain functions rather than
tests so that ``test_meta.py`` can inject a bug and assert that the check catches it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.gradcheck import GradcheckError

from numpy_impl.gradient_check import eval_numerical_gradient_array, rel_error
from parity_tests.registry import Case, OpSpec, case_rng
from parity_tests.tolerances import ASSERT_CLOSE, GRADCHECK, REL_ERROR

TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}
DTYPE_NAME = {np.float64: "float64", np.float32: "float32"}


# ----------------------------------------------------------------------------------------------
# Running the three implementations on one case
# ----------------------------------------------------------------------------------------------


def as_tuple(out) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _is_float(a) -> bool:
    if isinstance(a, torch.Tensor):
        return a.is_floating_point()
    return np.issubdtype(np.asarray(a).dtype, np.floating)


def make_douts(rng: np.random.Generator, outs: tuple, dtype) -> tuple:
    """A random upstream gradient per floating output (None for index outputs)."""
    douts = []
    for o in outs:
        if _is_float(o):
            douts.append(rng.standard_normal(tuple(o.shape)).astype(dtype))
        else:
            douts.append(None)
    return tuple(douts)


def _pack(douts: tuple, single: bool):
    return douts[0] if single else douts


def run_numpy(spec: OpSpec, case: Case, douts: tuple | None):
    """(outs tuple, grads dict | None) from the NumPy twin; douts=None runs the forward only."""
    probe, _ = spec.numpy_forward_backward(case.fresh_consts(), None)
    single = not isinstance(probe, (tuple, list))
    if douts is None:
        return as_tuple(probe), None
    out, grads = spec.numpy_forward_backward(case.fresh_consts(), _pack(douts, single))
    return as_tuple(out), grads


def to_torch_consts(consts: dict, dtype: torch.dtype, device) -> dict:
    """Fresh tensors for every ndarray const (also inside param dicts): floating ones in ``dtype``,
    integer/bool ones keep their dtype."""
    out = {}
    for k, v in consts.items():
        if isinstance(v, dict):  # a CS231n param dict (bn_param holds the running statistics)
            out[k] = to_torch_consts(v, dtype, device)
        elif isinstance(v, np.ndarray):
            if np.issubdtype(v.dtype, np.floating):
                out[k] = torch.tensor(v, dtype=dtype, device=device)
            else:
                out[k] = torch.tensor(v, device=device)
        else:
            out[k] = v
    return out


def run_torch(fn, spec: OpSpec, case: Case, douts: tuple | None, dtype=torch.float64, device="cpu"):
    """(outs tuple of detached tensors, grads dict | None) from a torch callable of the entry."""
    names = spec.grad_names(case)
    tensors = {}
    for k, v in case.inputs.items():
        if _is_float(v):
            tensors[k] = torch.tensor(v, dtype=dtype, device=device, requires_grad=k in names)
        else:  # only a bad-input case puts a non-float array here: keep its dtype
            tensors[k] = torch.tensor(v, device=device)
    outs = as_tuple(fn(tensors, to_torch_consts(case.consts, dtype, device)))
    if douts is None:
        return tuple(o.detach() for o in outs), None
    pairs = [
        (o, torch.as_tensor(d, dtype=o.dtype, device=o.device))
        for o, d in zip(outs, douts, strict=True)
        if d is not None
    ]
    grads = torch.autograd.grad(
        [o for o, _ in pairs],
        [tensors[n] for n in names],
        [g for _, g in pairs],
        allow_unused=True,
    )
    # An input the output does not depend on gets None from autograd: its gradient is zero.
    grads = {
        n: (torch.zeros_like(tensors[n]) if g is None else g)
        for n, g in zip(names, grads, strict=True)
    }
    return tuple(o.detach() for o in outs), grads


def _where(spec: OpSpec, case: Case, what: str) -> str:
    extra = f"\n  conversion: {spec.conversion}" if spec.conversion else ""
    return f"[{spec.name}] {what}\n  case: {case.describe()}{extra}"


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def assert_rel(a, b, tol: float, where: str) -> None:
    """CS231n's rel_error(a, b) < tol, with equal shapes."""
    a, b = _np(a), _np(b)
    assert a.shape == b.shape, f"{where}: shapes differ {a.shape} vs {b.shape}"
    if not _is_float(a):
        assert np.array_equal(a, b), f"{where}: integer outputs differ"
        return
    err = rel_error(a, b) if a.size else 0.0
    assert err < tol, f"{where}: rel_error {err:.3e} >= {tol:.0e}"


def assert_close(a: torch.Tensor, b: torch.Tensor, dtype_name: str, where: str) -> None:
    torch.testing.assert_close(a, b, **ASSERT_CLOSE[dtype_name], msg=lambda m: f"{where}: {m}")


# ----------------------------------------------------------------------------------------------
# The checks
# ----------------------------------------------------------------------------------------------


def _tiny_entries(grads: dict, names) -> bool:
    """Whether some gradient entry is nonzero but < 1e-3 of its array's largest entry."""
    for n in names:
        g = np.abs(grads[n])
        top = g.max(initial=0.0)
        if top > 0 and np.any((g > 0) & (g < 1e-3 * top)):
            return True
    return False


def numerical_gradient_4th(f, x: np.ndarray, df: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Fourth-order centered differences of sum(f(x) * df), perturbing x in place (restored):

        d/dx_i ~ (8 (F(x + h e_i) - F(x - h e_i)) - (F(x + 2h e_i) - F(x - 2h e_i))) / (12 h).

    Truncation O(h^4) (~1e-12 at h = 1e-3) and round-off ~1e-16 |F| / h: ~100x more accurate
    than the two-point rule at h = 1e-5. Differences of equal values are exactly zero, so an
    exactly-zero gradient stays exactly zero.
    """
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        vals = []
        for step in (h, -h, 2 * h, -2 * h):
            x[i] = old + step
            vals.append(np.sum(np.asarray(f(x)) * df))
        x[i] = old
        grad[i] = (8 * (vals[0] - vals[1]) - (vals[2] - vals[3])) / (12 * h)
    return grad


def case_without_tiny_gradients(draw, reference_fn, rng: np.random.Generator, tries: int = 20):
    """The first of up to ``tries`` cases ``draw()`` makes on which the gradients of
    ``reference_fn`` (a registry entry's builtin, float64), under an upstream gradient drawn from
    ``rng``, have no entry nonzero but below 1e-3 of its array's largest; the last draw if none.

    For the finite-difference and twin checks, a tiny entry that no upstream gradient can move
    (a scalar loss; a saturated gate or softmax; a product with an input near 0) is a bad test
    point like a kink: see :func:`_resolvable_douts`. The builtin, not a twin, chooses the
    point, and only chooses it: every check then runs on the case whatever it gives.
    """
    for _ in range(tries):
        case = draw()
        tensors = {
            k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
            for k, v in case.inputs.items()
            if _is_float(v)
        }
        consts = to_torch_consts(case.consts, torch.float64, "cpu")
        outs = as_tuple(reference_fn(tensors, consts))
        pairs = [
            (o, torch.as_tensor(d))
            for o, d in zip(outs, make_douts(rng, outs, np.float64), strict=True)
            if d is not None
        ]
        grads = torch.autograd.grad(
            [o for o, _ in pairs], list(tensors.values()), [d for _, d in pairs], allow_unused=True
        )
        arrays = {k: g.numpy() for k, g in zip(tensors, grads, strict=True) if g is not None}
        if not _tiny_entries(arrays, arrays):
            break
    return case


def _resolvable_douts(spec: OpSpec, case: Case, index: int, outs: tuple):
    """(douts, numpy grads): an upstream gradient under which no gradient entry is nonzero but
    below 1e-3 of its array's largest (redrawn up to 20 times).

    Such an entry is a near-cancellation of terms ~1e3 times larger: centered differences
    (h = 1e-5) resolve a gradient only to ~1e-10 of its scale, and two float64 implementations
    that sum in different orders agree only to ~1e-16 of it, so an entry ~1e-4 (differences) or
    ~1e-6 (twins) of the largest fails an ELEMENTWISE relative error through no fault of either
    backward (seen: batchnorm, 6.5e-5 next to 0.22, NN_TWINS_EXAMPLES=12; multihead attention,
    a dkey entry 3.7e-7 next to 0.58 whose twins differed by 8e-17, NN_TWINS_EXAMPLES=50
    NN_TWINS_SEED=1). Like a kink, that is a bad test point. This only chooses WHERE to test:
    the last draw is checked whatever it gives, so a backward cannot pass by being tiny
    everywhere. (A scalar loss's upstream gradient only scales its gradient: its entry gets
    cases without such entries from its generator.)
    """
    rng = case_rng(spec.name, index, "dout")
    for _ in range(20):
        douts = make_douts(rng, outs, np.float64)
        _, grads = run_numpy(spec, case, douts)
        if not _tiny_entries(grads, spec.grad_names(case)):
            break
    return douts, grads


def check_numerical(spec: OpSpec, index: int) -> None:
    """numpy_impl backward vs the centered-difference gradient of numpy_impl's forward, float64,
    under an upstream gradient chosen by :func:`_resolvable_douts`."""
    case = spec.numerical_case(index)
    outs, _ = run_numpy(spec, case, None)
    douts, grads = _resolvable_douts(spec, case, index, outs)
    flat_dout = np.concatenate([d.ravel() for d in douts if d is not None])

    def forward(_):
        outs, _ = run_numpy(spec, case, None)
        return np.concatenate(
            [o.ravel() for o, d in zip(outs, douts, strict=True) if d is not None]
        )

    for name in spec.grad_names(case):
        x = case.inputs[name]
        if spec.fourth_order:
            num = numerical_gradient_4th(forward, x, flat_dout)
        else:
            num = eval_numerical_gradient_array(forward, x, flat_dout)
        where = _where(spec, case, f"numpy d{name} vs numerical gradient")
        assert grads[name].shape == x.shape, f"{where}: shape {grads[name].shape} != {x.shape}"
        assert_rel(grads[name], num, REL_ERROR["numerical_layer"], where)


def check_twin(spec: OpSpec, index: int) -> None:
    """numpy_impl vs torch_impl in float64: every output and every input gradient, under an
    upstream gradient chosen by :func:`_resolvable_douts`."""
    case = spec.case(index, np.float64)
    before = case.copy()
    outs_np, _ = run_numpy(spec, case, None)
    douts, grads_np = _resolvable_douts(spec, case, index, outs_np)
    for k, v in case.inputs.items():
        assert np.array_equal(v, before.inputs[k]), _where(spec, case, f"numpy modified {k}")
    outs_t, grads_t = run_torch(spec.torch_impl_fn, spec, case, douts)
    for k, v in case.inputs.items():
        assert np.array_equal(v, before.inputs[k]), _where(spec, case, f"torch modified {k}")

    assert len(outs_np) == len(outs_t), _where(spec, case, "numbers of outputs differ")
    tol = REL_ERROR["twin_float64"]
    for i, (a, b) in enumerate(zip(outs_np, outs_t, strict=True)):
        assert_rel(a, b, tol, _where(spec, case, f"output {i}: numpy vs torch_impl"))
    for name in spec.grad_names(case):
        g_np, g_t = grads_np[name], grads_t[name]
        where = _where(spec, case, f"d{name}: numpy vs torch_impl")
        assert g_np.dtype == np.float64, f"{where}: numpy gradient dtype {g_np.dtype}"
        assert_rel(g_np, g_t, tol, where)


def check_builtin(spec: OpSpec, index: int, dtype) -> None:
    """torch_impl vs the PyTorch builtin (with the entry's conversion), forward and backward."""
    case = spec.case(index, dtype)
    tdtype, dname = TORCH_DTYPE[dtype], DTYPE_NAME[dtype]
    outs, _ = run_torch(spec.torch_impl_fn, spec, case, None, tdtype)
    douts = make_douts(case_rng(spec.name, index, "dout"), outs, dtype)
    outs_t, grads_t = run_torch(spec.torch_impl_fn, spec, case, douts, tdtype)
    outs_b, grads_b = run_torch(spec.builtin_fn, spec, case, douts, tdtype)
    assert len(outs_t) == len(outs_b), _where(spec, case, "numbers of outputs differ")
    for i, (a, b) in enumerate(zip(outs_t, outs_b, strict=True)):
        where = _where(spec, case, f"output {i}: torch_impl vs builtin, {dname}")
        if a.is_floating_point():
            assert a.dtype == tdtype, f"{where}: torch_impl output dtype {a.dtype}"
        assert_close(a, b, dname, where)
    for name in spec.grad_names(case):
        where = _where(spec, case, f"d{name}: torch_impl vs builtin, {dname}")
        assert grads_t[name].dtype == tdtype, f"{where}: gradient dtype {grads_t[name].dtype}"
        assert_close(grads_t[name], grads_b[name], dname, where)


def check_numpy_dtype(spec: OpSpec, index: int) -> None:
    """numpy_impl keeps float32 inputs float32 in forward and backward (no silent upcast)."""
    case = spec.case(index, np.float32)
    outs, _ = run_numpy(spec, case, None)
    douts = make_douts(case_rng(spec.name, index, "dout"), outs, np.float32)
    outs, grads = run_numpy(spec, case, douts)
    for i, o in enumerate(outs):
        if _is_float(o):
            dt = np.asarray(o).dtype
            assert dt == np.float32, _where(spec, case, f"output {i} dtype {dt}")
    for name in spec.grad_names(case):
        g = grads[name]
        assert g.dtype == np.float32, _where(spec, case, f"d{name} dtype {g.dtype}")


def check_numpy_leaves_inputs(spec: OpSpec, index: int) -> None:
    """numpy_impl's forward and backward leave the input arrays and the upstream gradient as they
    were, and return fresh arrays: no output or gradient shares memory with an input or dout (a
    caller writing into one would otherwise corrupt the other). Param dicts are not covered: the
    course's forwards update running statistics in them on purpose."""
    case = spec.case(index, np.float64)
    before = {k: v.copy() for k, v in case.inputs.items()}
    outs, _ = run_numpy(spec, case, None)
    douts = make_douts(case_rng(spec.name, index, "dout"), outs, np.float64)
    douts_before = [None if d is None else d.copy() for d in douts]
    outs, grads = run_numpy(spec, case, douts)
    for name, a in case.inputs.items():
        np.testing.assert_array_equal(
            a, before[name], err_msg=_where(spec, case, f"{name} changed")
        )
    for d, d0 in zip(douts, douts_before, strict=True):
        if d is not None:
            np.testing.assert_array_equal(d, d0, err_msg=_where(spec, case, "dout changed"))
    given = [*case.inputs.values(), *(d for d in douts if d is not None)]
    returned = [("output", np.asarray(o)) for o in outs if _is_float(o)]
    returned += [(f"d{k}", g) for k, g in (grads or {}).items() if g is not None]
    for what, r in returned:
        for a in given:
            assert not np.shares_memory(r, a), _where(
                spec, case, f"{what} shares memory with an input"
            )


def check_gradcheck(spec: OpSpec, index: int) -> None:
    """torch.autograd.gradcheck (float64) on torch_impl's Function."""
    case = spec.case(index, np.float64)
    names = spec.grad_names(case)
    fixed = {
        k: torch.tensor(v, dtype=torch.float64) for k, v in case.inputs.items() if k not in names
    }
    # torch.empty(...).copy_: an empty array becomes a tensor with C-order strides, which
    # gradcheck requires (torch.tensor gives a zero-size one all-zero strides).
    leaves = tuple(
        torch.empty(case.inputs[n].shape, dtype=torch.float64)
        .copy_(torch.from_numpy(case.inputs[n]))
        .requires_grad_()
        for n in names
    )

    def f(*ts):
        tensors = {**fixed, **dict(zip(names, ts, strict=True))}
        return spec.torch_impl_fn(tensors, to_torch_consts(case.consts, torch.float64, "cpu"))

    try:
        torch.autograd.gradcheck(f, leaves, **GRADCHECK)
    except GradcheckError as e:
        raise AssertionError(_where(spec, case, f"gradcheck failed: {e}")) from None


def _grad_subsets(names: tuple) -> list[tuple]:
    """The proper non-empty subsets of ``names`` that check_grad_subsets tries: all of them for
    up to 3 names; beyond that each name alone and all but one (a backward that guards gradient
    i by the flag of input j != i fails with i alone; one that skips i unless j is also wanted
    fails with all but j)."""
    k = len(names)
    if k <= 3:
        masks = range(1, 2**k - 1)
        return [tuple(n for b, n in enumerate(names) if m >> b & 1) for m in masks]
    alone = [(n,) for n in names]
    all_but = [tuple(m for m in names if m != n) for n in names]
    return alone + all_but


def _leaf_grads(spec: OpSpec, case: Case, douts: tuple, wanted: tuple) -> dict:
    """The ``.grad`` of every floating input after backward, with exactly ``wanted`` requiring
    a gradient (the others are plain tensors)."""
    tensors = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=k in wanted)
        if _is_float(v)
        else torch.tensor(v)
        for k, v in case.inputs.items()
    }
    outs = as_tuple(spec.torch_impl_fn(tensors, to_torch_consts(case.consts, torch.float64, "cpu")))
    pairs = [
        (o, torch.as_tensor(d, dtype=o.dtype))
        for o, d in zip(outs, douts, strict=True)
        if d is not None and o.requires_grad
    ]
    if pairs:
        torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
    return {k: t.grad for k, t in tensors.items() if _is_float(t)}


def check_grad_subsets(spec: OpSpec, index: int) -> None:
    """Which gradients a backward computes (``ctx.needs_input_grad``): for subsets of the
    floating inputs requiring grad, each of them gets the gradient it gets when ALL of them
    require grad (None counts as zero: an output that does not depend on an input), and the
    others get none."""
    case = spec.case(index, np.float64)
    names = tuple(k for k, v in case.inputs.items() if _is_float(v))
    outs, _ = run_torch(spec.torch_impl_fn, spec, case, None)
    douts = make_douts(case_rng(spec.name, index, "dout"), outs, np.float64)
    full = _leaf_grads(spec, case, douts, names)
    for wanted in _grad_subsets(names):
        grads = _leaf_grads(spec, case, douts, wanted)
        for n in names:
            where = _where(spec, case, f"d{n} with only {list(wanted)} requiring grad")
            if n not in wanted:
                assert grads[n] is None, f"{where}: got a gradient"
                continue
            zero = torch.zeros(case.inputs[n].shape, dtype=torch.float64)
            ref, got = (zero if g is None else g for g in (full[n], grads[n]))
            assert grads[n] is not None or not ref.any(), (
                f"{where}: no gradient (None), the full backward gives a nonzero one"
            )
            assert_close(got, ref, "float64", where)


def check_functional(spec: OpSpec, index: int) -> None:
    """torch_impl.functional (CS231n param dicts) == torch_impl.functions (Function.apply)."""
    case = spec.case(index, np.float64)
    outs, _ = run_torch(spec.torch_impl_fn, spec, case, None)
    douts = make_douts(case_rng(spec.name, index, "dout"), outs, np.float64)
    outs_f, grads_f = run_torch(spec.torch_functional_fn, spec, case, douts)
    outs_t, grads_t = run_torch(spec.torch_impl_fn, spec, case, douts)
    for i, (a, b) in enumerate(zip(outs_f, outs_t, strict=True)):
        assert_close(a, b, "float64", _where(spec, case, f"output {i}: functional vs Function"))
    for name in spec.grad_names(case):
        where = _where(spec, case, f"d{name}: functional vs Function")
        assert_close(grads_f[name], grads_t[name], "float64", where)


def _raised(fn) -> BaseException | None:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 -- the exception itself is what is compared
        return e
    return None


def check_bad_input(spec: OpSpec, bad) -> None:
    """The same bad input raises the same exception type and message in numpy and torch_impl."""
    case = spec.case(0, np.float64)
    bad.mutate(case)
    where = _where(spec, case, f"bad input '{bad.label}'")
    torch_fn = spec.torch_functional_fn or spec.torch_impl_fn
    np_exc = _raised(lambda: run_numpy(spec, case, None))
    t_exc = _raised(lambda: run_torch(torch_fn, spec, case, None))
    assert np_exc is not None, f"{where}: numpy_impl accepted it"
    assert t_exc is not None, f"{where}: torch_impl accepted it"
    assert type(np_exc) in (ValueError, TypeError), (
        f"{where}: numpy_impl raised {type(np_exc).__name__}: {np_exc}"
    )
    assert (type(t_exc), str(t_exc)) == (type(np_exc), str(np_exc)), (
        f"{where}: different errors\n  numpy_impl: {type(np_exc).__name__}: {np_exc}"
        f"\n  torch_impl: {type(t_exc).__name__}: {t_exc}"
    )
    assert bad.match in str(np_exc), f"{where}: message does not name {bad.match!r}: {np_exc}"


def check_cuda(spec: OpSpec, index: int, device: str = "cuda") -> None:
    """torch_impl on CUDA (float64) == torch_impl on CPU, outputs and gradients on the device;
    and == the builtin on the device. (``device`` exists so the check itself can be exercised
    on a machine without a GPU.)"""
    case = spec.case(index, np.float64)
    outs, _ = run_torch(spec.torch_impl_fn, spec, case, None)
    douts = make_douts(case_rng(spec.name, index, "dout"), outs, np.float64)
    outs_c, grads_c = run_torch(spec.torch_impl_fn, spec, case, douts)
    outs_g, grads_g = run_torch(spec.torch_impl_fn, spec, case, douts, device=device)
    for i, (a, b) in enumerate(zip(outs_g, outs_c, strict=True)):
        where = _where(spec, case, f"output {i}: {device} vs cpu")
        assert a.device.type == device, f"{where}: output on {a.device}"
        assert_close(a.cpu(), b, "float64", where)
    for name in spec.grad_names(case):
        where = _where(spec, case, f"d{name}: {device} vs cpu")
        assert grads_g[name].device.type == device, f"{where}: gradient on {grads_g[name].device}"
        assert_close(grads_g[name].cpu(), grads_c[name], "float64", where)
    if spec.builtin_fn is not None:
        outs_b, grads_b = run_torch(spec.builtin_fn, spec, case, douts, device=device)
        for i, (a, b) in enumerate(zip(outs_g, outs_b, strict=True)):
            where = _where(spec, case, f"output {i}: vs builtin on {device}")
            assert_close(a, b, "float64", where)
        for name in spec.grad_names(case):
            where = _where(spec, case, f"d{name}: vs builtin on {device}")
            assert_close(grads_g[name], grads_b[name], "float64", where)
