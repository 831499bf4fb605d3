"""Default arguments: every default of every Function, functional, module and optimizer of both
twins is CS231n's.

Every caller elsewhere passes its hyperparameters, so a wrong default would pass the rest of the
suite. Here each callable runs twice on the same input: once WITHOUT the arguments and once with
CS231n's values written out (the table below); the outputs, running statistics, parameters and
optimizer state must be identical. ``test_every_default_is_checked`` makes sure a new default in
``torch_impl`` cannot escape the table.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import pkgutil
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch

from numpy_impl import generative_layers as npgl
from numpy_impl import layers as npl
from numpy_impl import optim as npo
from torch_impl import functional as tfn
from torch_impl import functions as tf
from torch_impl import nn as tnn
from torch_impl import optim as topt
from torch_impl import pytorch_notebook as tpn
from torch_impl import simclr as tsim
from torch_impl import transformer_layers as ttl

# CS231n's values (shared/cs231n-api.md: the course's starter code). Where the course has no such
# argument, the value of PyTorch's counterpart that the project documents (marked "torch").
BN = {"eps": 1e-5, "momentum": 0.9}  # bn_param; running_mean/var default to zeros
NORM_EPS = 1e-5  # ln_param, gn_param, the transformer's LayerNorm
SGD = {"learning_rate": 1e-2}
SGD_MOMENTUM = {"learning_rate": 1e-2, "momentum": 0.9}  # also nesterov_momentum's
RMSPROP = {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8}
ADAM = {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}
CONV = {"stride": 1, "pad": 0}  # torch: nn.Conv2d's stride 1, padding 0
POOL = {"pool_height": 2, "pool_width": 2, "stride": 2}  # torch: nn.MaxPool2d(2)
DROPOUT_KEEP = 0.5  # torch: nn.Dropout(0.5) (keep = drop = 0.5)
TRANSFORMER_DROPOUT = 0.1  # the course's PositionalEncoding, MultiHeadAttention, layers
MAX_LEN = 5000  # PositionalEncoding
DIM_FEEDFORWARD = 2048  # TransformerDecoderLayer / TransformerEncoderLayer
LEAKY_SLOPE = 0.01  # torch: nn.LeakyReLU's negative_slope
CONV_TRANSPOSE = {"stride": 1, "padding": 0}  # torch: nn.ConvTranspose2d's

# Defaults that are not hyperparameters: placement, optional data, an implementation choice.
NOT_HYPERPARAMETERS = {
    "device",
    "dtype",
    "generator",
    "mask",
    "attn_mask",
    "drop_mask",
    "tgt_mask",
    "src_mask",
    "algorithm",
    "print_every",  # how often a training loop reports, not part of the math
}


@dataclass(frozen=True)
class Default:
    """One callable run without its defaulted arguments (``omitted``) and with CS231n's values
    (``explicit``); both return what is compared. ``covers``: the defaulted parameters
    ("module.Qualname.param") this case checks."""

    name: str
    omitted: Callable[[], object]
    explicit: Callable[[], object]
    covers: tuple[str, ...] = ()


def _rng():
    return np.random.default_rng(231)


def _t(a):
    return torch.tensor(a, dtype=torch.float64)


def _bn_inputs(shape):
    """x of ``shape`` and per-channel gamma, beta, running_mean, running_var (C = shape[1])."""
    rng = _rng()
    C = shape[1]
    x = rng.standard_normal(shape) * 2 + 1
    stats = rng.normal(1, 0.5, C), rng.standard_normal(C), rng.standard_normal(C)
    return (x, *stats, rng.uniform(0.5, 2, C))


def _bn_function(fn, shape, **kw):
    """Two training steps and one test step of a batchnorm Function; running buffers start
    nonzero so that the momentum shows."""

    def run():
        x, g, b, rm, rv = (_t(a) for a in _bn_inputs(shape))
        outs = [
            fn.apply(x, g, b, rm, rv, True, **kw),
            fn.apply(x * 2, g, b, rm, rv, True, **kw),
            fn.apply(x, g, b, rm, rv, False, **kw),
        ]
        return outs, rm, rv

    return run


def _bn_dict(forward, shape, numpy, explicit):
    """Two training steps then one test step of a CS231n batchnorm forward (numpy_impl's, or
    torch_impl.functional's) with bn_param holding only 'mode', or also CS231n's eps, momentum
    and zero running statistics (``explicit``); the outputs and bn_param's running statistics."""

    def run():
        x, g, b, _, _ = _bn_inputs(shape)
        as_array = np.asarray if numpy else _t
        x, g, b = as_array(x), as_array(g), as_array(b)
        C = shape[1]
        p = {"mode": "train"}
        if explicit:
            p.update(BN, running_mean=as_array(np.zeros(C)), running_var=as_array(np.zeros(C)))

        def call(x):
            out = forward(x, g, b, p)
            return out[0] if numpy else out

        outs = [call(x), call(2 * x)]
        p["mode"] = "test"
        outs.append(call(x))
        return outs, p["running_mean"], p["running_var"]

    return run


def _norm_call(fn, shape, *args, numpy=False):
    """fn(x, gamma, beta, *args) with a small-variance x (where eps shows); gamma and beta are
    (1, C, 1, 1) for a 4-D x, else (D,) for the last dimension."""

    def run():
        rng = _rng()
        x = rng.standard_normal(shape) * 1e-2
        gshape = (1, shape[1], 1, 1) if len(shape) == 4 else (shape[-1],)
        g, b = rng.normal(1, 0.5, gshape), rng.standard_normal(gshape)
        return fn(*((x, g, b) if numpy else (_t(x), _t(g), _t(b))), *args)

    return run


def _module(make, shapes, seed=0):
    """A module built by ``make`` (seeded init), run in train mode on inputs of ``shapes``
    (seeded dropout), then in eval mode: outputs and the final state_dict."""

    def run():
        torch.manual_seed(seed)
        m = make().double()
        rng = _rng()
        xs = [_t(rng.standard_normal(s)) for s in shapes]
        m.train()
        torch.manual_seed(seed + 1)
        outs = [m(*xs), m(*(2 * x for x in xs))]
        m.eval()
        outs.append(m(*xs))
        return outs, dict(m.state_dict())

    return run


def _torch_optimizer(cls, kw):
    def run():
        rng = _rng()
        w = _t(rng.standard_normal((3, 2))).requires_grad_()
        opt = cls([w], **kw)
        for _ in range(3):
            w.grad = _t(rng.standard_normal((3, 2)))
            opt.step()
        return w.detach(), opt.state_dict()["state"]

    return run


def _numpy_rule(rule, config):
    def run():
        rng = _rng()
        w, cfg = rng.standard_normal((3, 2)), None if config is None else dict(config)
        for _ in range(3):
            w, cfg = rule(w, rng.standard_normal((3, 2)), cfg)
        return w, cfg

    return run


def _conv_transpose_inputs():
    rng = _rng()
    return (
        _t(rng.standard_normal((2, 3, 3, 4))),
        _t(rng.standard_normal((3, 2, 2, 2))),
        _t(rng.standard_normal(2)),
    )


def _qual(obj, method=None) -> str:
    name = f"{obj.__module__}.{obj.__qualname__}"
    return f"{name}.{method}" if method else name


def _p(obj, method, *params) -> tuple[str, ...]:
    return tuple(f"{_qual(obj, method)}.{p}" for p in params)


def _notebook_training(epochs_given: bool):
    """train_part34 (the notebook's loop) on a tiny seeded set, with or without ``epochs``."""

    def run():
        torch.manual_seed(0)
        model = tpn.TwoLayerFC(12, 5, 3).double()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
        gen = torch.Generator().manual_seed(1)
        images = torch.randn(4, 3, 2, 2, generator=gen)
        data = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(images, torch.tensor([0, 1, 2, 0])), batch_size=4
        )
        kw = {"loader_train": data, "loader_val": data, "dtype": torch.float64}
        with contextlib.redirect_stdout(io.StringIO()):
            losses = tpn.train_part34(model, optimizer, 1, **kw) if epochs_given else None
            losses = losses if epochs_given else tpn.train_part34(model, optimizer, **kw)
        return losses, dict(model.state_dict())

    return run


def _defaults() -> list[Default]:
    E, H = 4, 2
    mha_shapes = [(2, 3, E), (2, 3, E), (2, 3, E)]
    cases = [
        # torch_impl.functions: Function.apply
        Default(
            "BatchNormFunction",
            _bn_function(tf.BatchNormFunction, (5, 3)),
            _bn_function(tf.BatchNormFunction, (5, 3), **BN),
            _p(tf.BatchNormFunction, "forward", "momentum", "eps"),
        ),
        Default(
            "BatchNormFunction, spatial",
            _bn_function(tf.BatchNormFunction, (2, 3, 2, 2)),
            _bn_function(tf.BatchNormFunction, (2, 3, 2, 2), **BN),
            _p(tf.BatchNormFunction, "forward", "momentum", "eps"),
        ),
        Default(
            "LayerNormFunction",
            _norm_call(tf.LayerNormFunction.apply, (4, 5)),
            _norm_call(tf.LayerNormFunction.apply, (4, 5), NORM_EPS),
            _p(tf.LayerNormFunction, "forward", "eps"),
        ),
        Default(
            "SpatialGroupNormFunction",
            _norm_call(tf.SpatialGroupNormFunction.apply, (2, 4, 2, 2), 2),
            _norm_call(tf.SpatialGroupNormFunction.apply, (2, 4, 2, 2), 2, NORM_EPS),
            _p(tf.SpatialGroupNormFunction, "forward", "eps"),
        ),
        Default(
            "LayerNormFunction, tokens",
            _norm_call(tf.LayerNormFunction.apply, (2, 3, 5)),
            _norm_call(tf.LayerNormFunction.apply, (2, 3, 5), NORM_EPS),
            _p(tf.LayerNormFunction, "forward", "eps"),
        ),
        Default(
            "Conv2dFunction",
            lambda: tf.Conv2dFunction.apply(*_conv_inputs()),
            lambda: tf.Conv2dFunction.apply(*_conv_inputs(), CONV["stride"], CONV["pad"]),
            _p(tf.Conv2dFunction, "forward", "stride", "pad"),
        ),
        # CS231n's param dicts: torch_impl.functional and numpy_impl.layers
        Default(
            "functional.batchnorm",
            _bn_dict(tfn.batchnorm, (5, 3), False, False),
            _bn_dict(tfn.batchnorm, (5, 3), False, True),
        ),
        Default(
            "functional.spatial_batchnorm",
            _bn_dict(tfn.spatial_batchnorm, (2, 3, 2, 2), False, False),
            _bn_dict(tfn.spatial_batchnorm, (2, 3, 2, 2), False, True),
        ),
        Default(
            "functional.layernorm",
            _norm_call(tfn.layernorm, (4, 5), {}),
            _norm_call(tfn.layernorm, (4, 5), {"eps": NORM_EPS}),
        ),
        Default(
            "functional.spatial_groupnorm",
            _norm_call(tfn.spatial_groupnorm, (2, 4, 2, 2), 2, {}),
            _norm_call(tfn.spatial_groupnorm, (2, 4, 2, 2), 2, {"eps": NORM_EPS}),
        ),
        Default(
            "numpy batchnorm_forward",
            _bn_dict(npl.batchnorm_forward, (5, 3), True, False),
            _bn_dict(npl.batchnorm_forward, (5, 3), True, True),
        ),
        Default(
            "numpy spatial_batchnorm_forward",
            _bn_dict(npl.spatial_batchnorm_forward, (2, 3, 2, 2), True, False),
            _bn_dict(npl.spatial_batchnorm_forward, (2, 3, 2, 2), True, True),
        ),
        Default(
            "numpy layernorm_forward",
            _norm_call(npl.layernorm_forward, (4, 5), {}, numpy=True),
            _norm_call(npl.layernorm_forward, (4, 5), {"eps": NORM_EPS}, numpy=True),
        ),
        Default(
            "numpy spatial_groupnorm_forward",
            _norm_call(npl.spatial_groupnorm_forward, (2, 4, 2, 2), 2, {}, numpy=True),
            _norm_call(
                npl.spatial_groupnorm_forward, (2, 4, 2, 2), 2, {"eps": NORM_EPS}, numpy=True
            ),
        ),
        # torch_impl.nn
        Default(
            "nn.BatchNorm",
            _module(lambda: tnn.BatchNorm(3), [(5, 3)]),
            _module(lambda: tnn.BatchNorm(3, **BN), [(5, 3)]),
            _p(tnn.BatchNorm, "__init__", "eps", "momentum"),
        ),
        Default(
            "nn.SpatialBatchNorm",
            _module(lambda: tnn.SpatialBatchNorm(3), [(2, 3, 2, 2)]),
            _module(lambda: tnn.SpatialBatchNorm(3, **BN), [(2, 3, 2, 2)]),
            _p(tnn.SpatialBatchNorm, "__init__", "eps", "momentum"),
        ),
        Default(
            "nn.LayerNorm",
            _module(lambda: tnn.LayerNorm(5), [(4, 5)]),
            _module(lambda: tnn.LayerNorm(5, eps=NORM_EPS), [(4, 5)]),
            _p(tnn.LayerNorm, "__init__", "eps"),
        ),
        Default(
            "nn.SpatialGroupNorm",
            _module(lambda: tnn.SpatialGroupNorm(4, 2), [(2, 4, 2, 2)]),
            _module(lambda: tnn.SpatialGroupNorm(4, 2, eps=NORM_EPS), [(2, 4, 2, 2)]),
            _p(tnn.SpatialGroupNorm, "__init__", "eps"),
        ),
        Default(
            "nn.Dropout",
            _module(tnn.Dropout, [(6, 7)]),
            _module(lambda: tnn.Dropout(DROPOUT_KEEP), [(6, 7)]),
            _p(tnn.Dropout, "__init__", "p"),
        ),
        Default(
            "nn.Conv2d",
            _module(lambda: tnn.Conv2d(3, 4, 3), [(2, 3, 5, 5)]),
            _module(lambda: tnn.Conv2d(3, 4, 3, **CONV), [(2, 3, 5, 5)]),
            _p(tnn.Conv2d, "__init__", "stride", "pad"),
        ),
        Default(
            "nn.MaxPool2d",
            _module(tnn.MaxPool2d, [(2, 3, 6, 6)]),
            _module(lambda: tnn.MaxPool2d(**POOL), [(2, 3, 6, 6)]),
            _p(tnn.MaxPool2d, "__init__", "pool_height", "pool_width", "stride"),
        ),
        # torch_impl.transformer_layers (the course's modules)
        Default(
            "PositionalEncoding",
            _module(lambda: ttl.PositionalEncoding(E), [(2, 3, E)]),
            _module(
                lambda: ttl.PositionalEncoding(E, dropout=TRANSFORMER_DROPOUT, max_len=MAX_LEN),
                [(2, 3, E)],
            ),
            _p(ttl.PositionalEncoding, "__init__", "dropout", "max_len"),
        ),
        Default(
            "MultiHeadAttention",
            _module(lambda: ttl.MultiHeadAttention(E, H), mha_shapes),
            _module(lambda: ttl.MultiHeadAttention(E, H, dropout=TRANSFORMER_DROPOUT), mha_shapes),
            _p(ttl.MultiHeadAttention, "__init__", "dropout"),
        ),
        Default(
            "FeedForwardNetwork",
            _module(lambda: ttl.FeedForwardNetwork(E, 6), [(2, 3, E)]),
            _module(lambda: ttl.FeedForwardNetwork(E, 6, dropout=TRANSFORMER_DROPOUT), [(2, 3, E)]),
            _p(ttl.FeedForwardNetwork, "__init__", "dropout"),
        ),
        Default(
            "transformer LayerNorm",
            _module(lambda: ttl.LayerNorm(E), [(2, 3, E)]),
            _module(lambda: ttl.LayerNorm(E, eps=NORM_EPS), [(2, 3, E)]),
            _p(ttl.LayerNorm, "__init__", "eps"),
        ),
        Default(
            "TransformerDecoderLayer",
            _module(lambda: ttl.TransformerDecoderLayer(E, H), [(2, 3, E), (2, 4, E)]),
            _module(
                lambda: ttl.TransformerDecoderLayer(
                    E, H, dim_feedforward=DIM_FEEDFORWARD, dropout=TRANSFORMER_DROPOUT
                ),
                [(2, 3, E), (2, 4, E)],
            ),
            _p(ttl.TransformerDecoderLayer, "__init__", "dim_feedforward", "dropout"),
        ),
        Default(
            "TransformerEncoderLayer",
            _module(lambda: ttl.TransformerEncoderLayer(E, H), [(2, 3, E)]),
            _module(
                lambda: ttl.TransformerEncoderLayer(
                    E, H, dim_feedforward=DIM_FEEDFORWARD, dropout=TRANSFORMER_DROPOUT
                ),
                [(2, 3, E)],
            ),
            _p(ttl.TransformerEncoderLayer, "__init__", "dim_feedforward", "dropout"),
        ),
        Default(
            "PositionalEncoding buffer length",
            lambda: ttl.PositionalEncoding(E).state_dict(),
            lambda: ttl.PositionalEncoding(E, max_len=MAX_LEN).state_dict(),
        ),
        # torch_impl LeakyReLU, ConvTranspose2d (and the NumPy twin's leaky_relu_forward)
        Default(
            "LeakyReLUFunction",
            lambda: tf.LeakyReLUFunction.apply(_t(_rng().standard_normal((3, 4)))),
            lambda: tf.LeakyReLUFunction.apply(_t(_rng().standard_normal((3, 4))), LEAKY_SLOPE),
            _p(tf.LeakyReLUFunction, "forward", "negative_slope"),
        ),
        Default(
            "numpy leaky_relu_forward",
            lambda: npgl.leaky_relu_forward(_rng().standard_normal((3, 4)))[0],
            lambda: npgl.leaky_relu_forward(_rng().standard_normal((3, 4)), LEAKY_SLOPE)[0],
        ),
        Default(
            "ConvTranspose2dFunction",
            lambda: tf.ConvTranspose2dFunction.apply(*_conv_transpose_inputs()),
            lambda: tf.ConvTranspose2dFunction.apply(
                *_conv_transpose_inputs(), CONV_TRANSPOSE["stride"], CONV_TRANSPOSE["padding"]
            ),
            _p(tf.ConvTranspose2dFunction, "forward", "stride", "pad"),
        ),
        Default(
            "generative LeakyReLU",
            _module(tnn.LeakyReLU, [(6, 7)]),
            _module(lambda: tnn.LeakyReLU(LEAKY_SLOPE), [(6, 7)]),
            _p(tnn.LeakyReLU, "__init__", "negative_slope"),
        ),
        Default(
            "generative ConvTranspose2d",
            _module(lambda: tnn.ConvTranspose2d(3, 2, 3), [(2, 3, 4, 4)]),
            _module(lambda: tnn.ConvTranspose2d(3, 2, 3, **CONV_TRANSPOSE), [(2, 3, 4, 4)]),
            _p(tnn.ConvTranspose2d, "__init__", "stride", "padding"),
        ),
        Default(
            "simclr_loss_vectorized",
            lambda: tsim.simclr_loss_vectorized(*_simclr_inputs()),
            lambda: tsim.simclr_loss_vectorized(*_simclr_inputs(), device="cuda"),
            (f"{tsim.__name__}.simclr_loss_vectorized.device",),
        ),
        # The assignment-2 PyTorch notebook's reference (nn.Conv2d's padding 0; one epoch)
        Default(
            "notebook Conv2d",
            _module(lambda: tpn.Conv2d(3, 2, 3), [(2, 3, 5, 5)]),
            _module(lambda: tpn.Conv2d(3, 2, 3, padding=0), [(2, 3, 5, 5)]),
            _p(tpn.Conv2d, "__init__", "padding"),
        ),
        Default(
            "notebook train_part34",
            _notebook_training(epochs_given=False),
            _notebook_training(epochs_given=True),
            (f"{tpn.__name__}.train_part34.epochs",),
        ),
    ]
    # Optimizers: torch_impl.optim and numpy_impl.optim's rules (config=None: all defaults).
    for cls, rule, values in [
        (topt.SGD, npo.sgd, SGD),
        (topt.SGDMomentum, npo.sgd_momentum, SGD_MOMENTUM),
        (topt.Nesterov, npo.nesterov_momentum, SGD_MOMENTUM),
        (topt.RMSprop, npo.rmsprop, RMSPROP),
        (topt.Adam, npo.adam, ADAM),
    ]:
        cases.append(
            Default(
                f"optim.{cls.__name__}",
                _torch_optimizer(cls, {}),
                _torch_optimizer(cls, values),
                _p(cls, "__init__", *values),
            )
        )
        cases.append(
            Default(
                f"numpy optim.{rule.__name__}", _numpy_rule(rule, None), _numpy_rule(rule, values)
            )
        )
    return cases


def _conv_inputs():
    """x (2, 3, 5, 5), w (4, 3, 3, 3), b (4,)."""
    rng = _rng()
    return tuple(_t(rng.standard_normal(s)) for s in ((2, 3, 5, 5), (4, 3, 3, 3), (4,)))


def _simclr_inputs():
    rng = _rng()
    return _t(rng.standard_normal((3, 4))), _t(rng.standard_normal((3, 4))), 0.5


# ----------------------------------------------------------------------------------------------


def _named(obj, prefix="") -> list:
    """(path, leaf) for every array/tensor/number in obj (nested tuples, lists, dicts by sorted
    key)."""
    if isinstance(obj, dict):
        return [(f"{prefix}[{k!r}]{p}", x) for k in sorted(obj, key=str) for p, x in _named(obj[k])]
    if isinstance(obj, (tuple, list)):
        return [(f"{prefix}[{i}]{p}", x) for i, o in enumerate(obj) for p, x in _named(o)]
    return [(prefix, obj)]


def check_default(d: Default) -> None:
    """AssertionError unless ``d.omitted()`` and ``d.explicit()`` give identical results."""
    try:
        got = _named(d.omitted())
    except Exception as e:  # noqa: BLE001 -- a default the callable rejects is a wrong default
        raise AssertionError(
            f"{d.name}: without the arguments it raised {type(e).__name__}: {e}"
        ) from None
    want = _named(d.explicit())
    assert [p for p, _ in got] == [p for p, _ in want], f"{d.name}: different structure"
    for (path, a), (_, b) in zip(got, want, strict=True):
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        b = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
        assert a.shape == b.shape and np.array_equal(a, b), (
            f"{d.name}{path}: the default differs from CS231n's value (max |diff| "
            f"{np.max(np.abs(a - b)) if a.shape == b.shape and a.size else 'shape'})"
        )


DEFAULTS = _defaults()


@pytest.mark.parametrize("d", DEFAULTS, ids=[d.name for d in DEFAULTS])
def test_default_is_cs231n(d):
    check_default(d)


def _torch_impl_defaults() -> set[str]:
    """'module.Qualname.method.param' for every defaulted parameter of torch_impl's Functions
    (forward), modules and optimizers (__init__) and public functions."""
    import torch_impl

    found = set()
    for info in pkgutil.iter_modules(torch_impl.__path__, "torch_impl."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != info.name:
                continue
            if inspect.isclass(obj) and issubclass(obj, torch.autograd.Function):
                fns = {"forward": obj.forward}
            elif inspect.isclass(obj) and issubclass(obj, (torch.nn.Module, torch.optim.Optimizer)):
                fns = {"__init__": obj.__init__}
            elif inspect.isfunction(obj):
                fns = {None: obj}
            else:
                continue
            for method, fn in fns.items():
                for p in inspect.signature(fn).parameters.values():
                    if p.default is not inspect.Parameter.empty:
                        found.add(f"{_qual(obj, method)}.{p.name}")
    return found


def test_every_default_is_checked():
    covered = {c for d in DEFAULTS for c in d.covers}
    missing = {
        q
        for q in _torch_impl_defaults() - covered
        if q.rsplit(".", 1)[1] not in NOT_HYPERPARAMETERS
    }
    assert not missing, f"defaults without a CS231n check in test_defaults.py: {sorted(missing)}"
