"""What one benchmarked op is (``BenchmarkCase``), its speed targets, and ``catalog_case``: the
benchmark of a parity-registry entry at one shape, whose three backends are the entry's own
NumPy, torch_impl and builtin implementations (forward + backward closures on one float32 case).

Imports neither NumPy nor torch at module level (the thread settings come first).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Speed targets (ratio to the builtin, forward+backward). The numpy conv target applies to each
# of the CNN's conv layers; every torch_impl op has the 1.5x target; the CNN's convs together
# (the conv_total rows) have their own, tighter targets.
NUMPY_TARGETS = {
    "conv@cnn": 2.5,
    "max_pool": 2.0,
    "batchnorm": 2.0,
    "spatial_batchnorm": 2.0,
    "layernorm": 2.0,
    "groupnorm": 2.0,
}
TORCH_TARGET = 1.5
CONV_TOTAL_TARGETS = {"numpy": 1.5, "torch": 1.2}


@dataclass
class BenchmarkCase:
    """One op at one shape. ``make(backend)`` returns a zero-argument fwd+bwd closure."""

    bench: str
    case: str
    group: str  # where the shape comes from: cnn | three-layer | cs231n | a3
    make: object
    flops: float | None = None
    count: int = 1  # how many times the CNN runs this op at this shape per step
    targets: dict = field(default_factory=dict)
    gemms: tuple = ()  # conv: the (m, k, n) of the three GEMMs an im2col conv does


def catalog_case(spec, group, shape, count=1, channels_last="off") -> BenchmarkCase:
    """The benchmark of registry entry ``spec`` (``parity_tests/registry.py``) at ``shape``
    (keywords of ``spec.bench.make_case``): each backend runs the entry's own implementation,
    ``numpy_forward_backward`` (numpy), ``torch_impl_fn`` (torch) or ``builtin_fn`` (builtin),
    on the same float32 case, so the CS231n-vs-PyTorch conversion is the one the parity tests
    check (``builtin_impl``). ``channels_last``: 'on', 'off', or 'auto' (train.py's rule: the
    backend's own default), the memory format of the torch backends' 4-D inputs and upstream
    gradient."""
    bench = spec.bench

    def make(backend):
        import numpy as np

        case = bench.make_case(np.random.default_rng(_seed(bench.name)), **shape)
        if backend == "numpy":
            return _numpy_closure(spec, case)
        from cifar_training.backends import ops_class

        fn = spec.torch_impl_fn if backend == "torch" else spec.builtin_fn
        return _torch_closure(fn, case, ops_class(backend).uses_channels_last(channels_last))

    return BenchmarkCase(
        bench.name,
        bench.label(**shape),
        group,
        make,
        flops=bench.flops(**shape) if bench.flops else None,
        count=count,
        targets=speed_targets(bench.name, group),
        gemms=bench.gemms(**shape) if bench.gemms else (),
    )


def _seed(name: str) -> int:
    """One seed per benchmark, so every backend of a case gets the same inputs."""
    import zlib

    return zlib.crc32(name.encode())


def _upstream(out, rng):
    """A float32 upstream gradient like ``out`` (None for a scalar loss: backward() seeds 1)."""
    import numpy as np

    if out.ndim == 0:
        return None
    return rng.standard_normal(out.shape, dtype=np.float32)


def _numpy_closure(spec, case):
    """Closure: the entry's NumPy forward and backward (CS231n's ``(out, cache)`` pair)."""
    import numpy as np

    out, _ = spec.numpy_forward_backward(case, None)
    dout = _upstream(np.asarray(out), np.random.default_rng(0))
    dout = np.float32(1.0) if dout is None else dout
    return lambda: spec.numpy_forward_backward(case, dout)


def _torch_closure(fn, case, channels_last=False):
    """Closure: clear the leaves' grads, run ``fn(tensors, consts)``, backpropagate dout.
    With ``channels_last`` the 4-D inputs and the upstream gradient are channels last."""
    import numpy as np
    import torch

    from parity_tests.checks import to_torch_consts

    def layout(t):
        if channels_last and t.dim() == 4:
            return t.contiguous(memory_format=torch.channels_last)
        return t

    leaves = {k: layout(torch.tensor(v)).requires_grad_() for k, v in case.inputs.items()}
    consts = to_torch_consts(case.consts, torch.float32, "cpu")
    dout = _upstream(fn(leaves, consts).detach(), np.random.default_rng(0))
    dout = None if dout is None else layout(torch.from_numpy(dout))

    def run():
        for t in leaves.values():
            t.grad = None
        fn(leaves, consts).backward(dout)

    return run


def matmul_case(n):
    """The machine's float32 GEMM rate through each library (n x n @ n x n, out= preallocated).
    torch_impl's matmuls are torch's, so 'builtin' stands for both torch backends."""

    def make(backend):
        import numpy as np

        rng = np.random.default_rng(12)
        a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        if backend == "numpy":
            c = np.empty((n, n), np.float32)
            return lambda: np.matmul(a, b, out=c)
        import torch

        at, bt, ct = torch.tensor(a), torch.tensor(b), torch.empty(n, n)
        return lambda: torch.mm(at, bt, out=ct)

    return BenchmarkCase("matmul", f"{n}x{n} @ {n}x{n}", "machine", make, flops=2.0 * n**3)


def speed_targets(bench, group):
    """backend -> the largest allowed ratio to the builtin for this op and shape group."""
    t = {"torch": TORCH_TARGET}
    key = "conv@cnn" if (bench == "conv" and group == "cnn") else bench
    if key in NUMPY_TARGETS:
        t["numpy"] = NUMPY_TARGETS[key]
    return t
