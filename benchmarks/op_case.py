"""What one benchmarked op is (``BenchmarkCase``), its speed targets, and the pieces every
case factory builds its closures from: seeded float32 inputs, torch leaves, and the
forward+backward closures of the torch and NumPy backends.

Imports neither NumPy nor torch at module level (the thread settings come first).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Speed targets (ratio to the builtin, forward+backward). The numpy conv target applies at
# the CNN's shapes; every torch_impl op has the 1.5x target.
NUMPY_TARGETS = {"conv@cnn": 2.5, "max_pool": 2.0, "batchnorm": 2.0, "spatial_batchnorm": 2.0}
TORCH_TARGET = 1.5


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


def random_arrays(seed, *shapes, scale=1.0):
    """Standard-normal float32 arrays of the given shapes (times ``scale``), from one seed, so
    every backend of a case gets the same inputs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s, dtype=np.float32) * np.float32(scale)) for s in shapes]


def grad_leaves(*arrays):
    """The arrays as torch leaf tensors that require grad (the same values, copied)."""
    import torch

    return [torch.tensor(a).requires_grad_() for a in arrays]


def torch_fwd_bwd(forward, leaves, dout=None):
    """Closure: clear the leaves' grads, run forward, backpropagate dout (None: scalar loss)."""

    def run():
        for t in leaves:
            t.grad = None
        out = forward()
        out.backward(dout)

    return run


def numpy_fwd_bwd(forward, backward, dout):
    """Closure: ``backward(dout, cache)`` on the cache of a fresh ``forward()`` (CS231n's
    ``(out, cache)`` convention)."""
    return lambda: backward(dout, forward()[1])


def speed_targets(bench, group):
    """backend -> the largest allowed ratio to the builtin for this op and shape group."""
    t = {"torch": TORCH_TARGET}
    key = "conv@cnn" if (bench == "conv" and group == "cnn") else bench
    if key in NUMPY_TARGETS:
        t["numpy"] = NUMPY_TARGETS[key]
    return t
