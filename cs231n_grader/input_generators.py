"""Input generators: each takes a ``numpy.random.Generator`` and returns the list of cases one item
is graded on (several shapes, including the awkward ones: batch of 1, odd sizes, stride > 1,
padding, stride larger than the window, ties in max pooling, huge logits).

A case is a dict: 'label' (shown in reports), 'args' (positional arguments, in the order of the
function's signature) and optionally 'kwargs', 'backward' (False: the case has no backward pass,
e.g. batchnorm in test mode), 'meta' ({'N': batch size, 'ties': True, ...}, used by diagnoses).
Values are float64 and kept away from kinks (ReLU at 0, hinge margins at 0, near-ties in max
pooling) except where a case is about the kink, so a numerical gradient of the student's forward
is meaningful when the grader needs one for a diagnosis.
"""

from __future__ import annotations

import numpy as np


def away(rng, shape, lo=0.2, hi=2.0):
    """Values with |v| in [lo, hi] and random sign: no ReLU kink within a numerical step."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(lo, hi, size=shape)


def distinct(rng, shape, gap=0.05):
    """A random permutation of evenly spaced values: no two entries closer than ``gap``."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) * gap


def _case(label, args, N=None, **extra):
    case = {"label": label, "args": list(args), "meta": {"N": N}}
    case.update(extra)
    return case


# ----------------------------------------------------------------------------------------------
# layers.py
# ----------------------------------------------------------------------------------------------


def affine(rng):
    cases = []
    for N, dims, M, label in [
        (1, (3,), 4, "batch of 1"),
        (3, (2, 3), 5, "x of shape (3, 2, 3) flattened to D=6"),
        (4, (5,), 7, "odd sizes N=4, D=5, M=7"),
    ]:
        D = int(np.prod(dims))
        x = rng.standard_normal((N, *dims))
        w = rng.standard_normal((D, M)) / np.sqrt(D)
        b = rng.standard_normal(M)
        cases.append(_case(label, [x, w, b], N))
    return cases


def elementwise(rng):
    return [
        _case("batch of 1", [away(rng, (1, 5))], 1),
        _case("3-D input (3, 4, 5)", [away(rng, (3, 4, 5))], 3),
        _case("odd sizes (5, 7), wide range", [away(rng, (5, 7), 0.2, 6.0)], 5),
    ]


def batchnorm(rng):
    def data(N, D, scale=2.0):
        return rng.standard_normal((N, D)) * scale + rng.standard_normal(D) * 3

    D = 4
    rm, rv = rng.standard_normal(D), rng.uniform(0.5, 2.0, D)
    return [
        _case(
            "train, fresh bn_param (running stats default to zeros)",
            [data(5, 3), rng.uniform(0.5, 1.5, 3), rng.standard_normal(3), {"mode": "train"}],
            5,
        ),
        _case(
            "train, momentum 0.7, eps 1e-3, given running stats",
            [
                data(6, D),
                rng.uniform(0.5, 1.5, D),
                rng.standard_normal(D),
                {
                    "mode": "train",
                    "momentum": 0.7,
                    "eps": 1e-3,
                    "running_mean": rm.copy(),
                    "running_var": rv.copy(),
                },
            ],
            6,
        ),
        _case(
            "train, batch of 1 (zero variance)",
            [data(1, 3), rng.uniform(0.5, 1.5, 3), rng.standard_normal(3), {"mode": "train"}],
            1,
        ),
        _case(
            "test mode uses the running stats",
            [
                data(4, D),
                rng.uniform(0.5, 1.5, D),
                rng.standard_normal(D),
                {"mode": "test", "running_mean": rm.copy(), "running_var": rv.copy()},
            ],
            4,
            backward=False,
        ),
    ]


def layernorm(rng):
    def case(label, N, D, ln_param):
        x = rng.standard_normal((N, D)) * 2 + rng.standard_normal((N, 1)) * 3
        return _case(label, [x, rng.uniform(0.5, 1.5, D), rng.standard_normal(D), ln_param], N)

    return [
        case("batch of 1", 1, 5, {}),
        case("N=4, D=3", 4, 3, {"eps": 1e-3}),
        case("ln_param with 'mode' (ignored)", 3, 7, {"mode": "train"}),
    ]


def dropout(rng):
    def x(shape=(40, 50)):
        return away(rng, shape, 0.5, 2.0)

    return [
        _case("train, keep p=0.3, seed 7", [x(), {"mode": "train", "p": 0.3, "seed": 7}], 40),
        _case("train, keep p=0.8, seed 3", [x(), {"mode": "train", "p": 0.8, "seed": 3}], 40),
        _case(
            "train, keep p=1 (keeps everything)",
            [x((3, 5)), {"mode": "train", "p": 1.0, "seed": 1}],
            3,
        ),
        _case("test mode is the identity, batch of 1", [x((1, 6)), {"mode": "test", "p": 0.4}], 1),
    ]


def conv(rng):
    cases = []
    for label, xs, ws, stride, pad in [
        ("batch of 1, 3x3, stride 1, pad 1", (1, 1, 4, 4), (1, 1, 3, 3), 1, 1),
        ("odd sizes, stride 2, pad 1", (2, 3, 5, 7), (2, 3, 3, 3), 2, 1),
        ("stride 3 > kernel 2, no padding", (2, 2, 8, 5), (3, 2, 2, 2), 3, 0),
        ("1x1 kernel", (2, 3, 3, 4), (4, 3, 1, 1), 1, 0),
        ("non-square kernel 3x2, pad 2", (1, 2, 4, 3), (2, 2, 3, 2), 1, 2),
    ]:
        cases.append(
            _case(
                label,
                [
                    rng.standard_normal(xs),
                    rng.standard_normal(ws) * 0.5,
                    rng.standard_normal(ws[0]),
                    {"stride": stride, "pad": pad},
                ],
                xs[0],
            )
        )
    return cases


def max_pool(rng):
    cases = []
    for label, xs, ph, pw, stride in [
        ("batch of 1, 2x2 stride 2", (1, 1, 4, 4), 2, 2, 2),
        ("odd sizes, 3x3 window, stride 2 (overlapping)", (2, 3, 5, 7), 3, 3, 2),
        ("stride 3 > window 2", (2, 2, 8, 8), 2, 2, 3),
        ("non-square window 2x3, stride 1", (1, 2, 3, 5), 2, 3, 1),
    ]:
        cases.append(
            _case(
                label,
                [distinct(rng, xs), {"pool_height": ph, "pool_width": pw, "stride": stride}],
                xs[0],
            )
        )
    ties = rng.integers(0, 2, size=(2, 2, 4, 4)).astype(np.float64)
    cases.append(
        _case(
            "ties: several equal maxima per window",
            [ties, {"pool_height": 2, "pool_width": 2, "stride": 2}],
            2,
            meta={"N": 2, "ties": True},
        )
    )
    return cases


def spatial_batchnorm(rng):
    C = 3
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2.0, C)

    def data(shape):
        return rng.standard_normal(shape) * 2 + rng.standard_normal((1, shape[1], 1, 1)) * 3

    return [
        _case(
            "train, fresh bn_param",
            [
                data((2, C, 4, 5)),
                rng.uniform(0.5, 1.5, C),
                rng.standard_normal(C),
                {"mode": "train"},
            ],
            2,
        ),
        _case(
            "train, batch of 1, momentum 0.5",
            [
                data((1, C, 3, 3)),
                rng.uniform(0.5, 1.5, C),
                rng.standard_normal(C),
                {
                    "mode": "train",
                    "momentum": 0.5,
                    "running_mean": rm.copy(),
                    "running_var": rv.copy(),
                },
            ],
            1,
        ),
        _case(
            "test mode",
            [
                data((2, C, 2, 3)),
                rng.uniform(0.5, 1.5, C),
                rng.standard_normal(C),
                {"mode": "test", "running_mean": rm.copy(), "running_var": rv.copy()},
            ],
            2,
            backward=False,
        ),
    ]


def spatial_groupnorm(rng):
    cases = []
    for label, shape, G in [
        ("G=3 groups of 2 channels", (2, 6, 3, 4), 3),
        ("batch of 1, G=1 (layernorm over C, H, W)", (1, 4, 3, 3), 1),
        ("G=C (instance norm), odd H, W", (2, 4, 3, 5), 4),
    ]:
        C = shape[1]
        x = rng.standard_normal(shape) * 2 + rng.standard_normal((shape[0], C, 1, 1))
        cases.append(
            _case(
                label,
                [x, rng.uniform(0.5, 1.5, (1, C, 1, 1)), rng.standard_normal((1, C, 1, 1)), G, {}],
                shape[0],
            )
        )
    return cases


def row_offsets(rng, N, spread=1000.0):
    """One offset per row, ``spread`` apart: rows of scores that differ by ~1000 while each row's
    own scores are close. Subtracting one max over the whole batch underflows every exp of the
    rows far below it (0 / 0 = NaN); the per-row max the course teaches handles them."""
    offsets = np.arange(N, dtype=np.float64) * spread
    return rng.permutation(offsets)[:, None]


def _scores_cases(rng, large):
    cases = [
        _case("batch of 1, 3 classes", [rng.standard_normal((1, 3)) * 2, rng.integers(0, 3, 1)], 1),
        _case("N=5, C=10", [rng.standard_normal((5, 10)) * 2, rng.integers(0, 10, 5)], 5),
    ]
    if large:
        cases.append(
            _case(
                "rows offset by ~1000 from each other",
                [rng.standard_normal((3, 5)) * 2 + row_offsets(rng, 3), rng.integers(0, 5, 3)],
                3,
            )
        )
        # Robustness only: within a row, scores 1000 apart underflow exp(x - max) to 0 for the
        # lower ones, and log(0) = -inf for a softmax that takes log of probabilities (the course
        # notes' max shift alone, a correct answer on every realistic input).
        cases.append(
            _case(
                "huge logits (|x| ~ 1000)",
                [rng.standard_normal((4, 6)) * 1000, rng.integers(0, 6, 4)],
                4,
                meta={"N": 4, "robust": True},
            )
        )
    return cases


def svm_scores(rng):
    return _scores_cases(rng, large=False)


def softmax_scores(rng):
    return _scores_cases(rng, large=True)


# ----------------------------------------------------------------------------------------------
# layer_utils.py
# ----------------------------------------------------------------------------------------------


def affine_relu(rng):
    return [
        _case(
            "batch of 1",
            [rng.standard_normal((1, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)],
            1,
        ),
        _case(
            "x of shape (3, 2, 3)",
            [
                rng.standard_normal((3, 2, 3)),
                rng.standard_normal((6, 7)) / 2,
                rng.standard_normal(7),
            ],
            3,
        ),
    ]


def conv_relu(rng):
    return [
        _case(
            "stride 1, pad 1",
            [
                rng.standard_normal((2, 3, 4, 4)),
                rng.standard_normal((3, 3, 3, 3)) * 0.5,
                rng.standard_normal(3),
                {"stride": 1, "pad": 1},
            ],
            2,
        ),
        _case(
            "batch of 1, stride 2",
            [
                rng.standard_normal((1, 2, 5, 5)),
                rng.standard_normal((2, 2, 3, 3)) * 0.5,
                rng.standard_normal(2),
                {"stride": 2, "pad": 0},
            ],
            1,
        ),
    ]


def conv_bn_relu(rng):
    cases = []
    for base in conv_relu(rng):
        x, w, b, cp = base["args"]
        F = w.shape[0]
        gamma, beta = rng.uniform(0.5, 1.5, F), rng.standard_normal(F)
        cases.append(
            _case(base["label"], [x, w, b, gamma, beta, cp, {"mode": "train"}], x.shape[0])
        )
    return cases


def conv_relu_pool(rng):
    return [
        _case(
            "pad 1, 2x2 pool",
            [
                rng.standard_normal((2, 3, 4, 4)),
                rng.standard_normal((3, 3, 3, 3)) * 0.5,
                rng.standard_normal(3),
                {"stride": 1, "pad": 1},
                {"pool_height": 2, "pool_width": 2, "stride": 2},
            ],
            2,
        ),
        _case(
            "batch of 1, odd size",
            [
                rng.standard_normal((1, 2, 7, 7)),
                rng.standard_normal((2, 2, 3, 3)) * 0.5,
                rng.standard_normal(2),
                {"stride": 1, "pad": 0},
                {"pool_height": 3, "pool_width": 3, "stride": 2},
            ],
            1,
        ),
    ]


# ----------------------------------------------------------------------------------------------
# optim.py
# ----------------------------------------------------------------------------------------------


def _optim_cases(rng, state):
    """state(w) -> the optimizer's state entries for a mid-training config."""
    w1 = rng.standard_normal((4, 5))
    w2 = rng.standard_normal((3, 6))
    w3 = rng.standard_normal(7)
    return [
        {
            "label": "config=None (defaults), 3 steps",
            "w": w1,
            "config": None,
            "dws": [rng.standard_normal(w1.shape) for _ in range(3)],
            "meta": {},
        },
        {
            "label": "given learning_rate and state, 3 steps",
            "w": w2,
            "config": {"learning_rate": 3e-2, **state(w2)},
            "dws": [rng.standard_normal(w2.shape) for _ in range(3)],
            "meta": {},
        },
        {
            "label": "1-D w, 4 steps",
            "w": w3,
            "config": {"learning_rate": 5e-2},
            "dws": [rng.standard_normal(w3.shape) for _ in range(4)],
            "meta": {},
        },
    ]


def sgd(rng):
    return _optim_cases(rng, lambda w: {})


def momentum(rng):
    return _optim_cases(
        rng, lambda w: {"momentum": 0.8, "velocity": rng.standard_normal(w.shape) * 0.1}
    )


def rmsprop(rng):
    return _optim_cases(rng, lambda w: {"decay_rate": 0.9, "cache": rng.uniform(0.1, 1.0, w.shape)})


def adam(rng):
    return _optim_cases(
        rng,
        lambda w: {
            "beta1": 0.8,
            "m": rng.standard_normal(w.shape) * 0.1,
            "v": rng.uniform(0.1, 1.0, w.shape),
            "t": 5,
        },
    )


# ----------------------------------------------------------------------------------------------
# classifiers: linear losses, k-NN, models
# ----------------------------------------------------------------------------------------------


def linear_loss(rng):
    cases = []
    for label, D, C, N, reg, scale in [
        ("batch of 1, no regularization", 5, 3, 1, 0.0, 1.0),
        ("N=9, C=10, reg 0.1", 7, 10, 9, 0.1, 1.0),
        ("reg 2.5, large weights", 4, 4, 6, 2.5, 5.0),
    ]:
        W = rng.standard_normal((D, C)) * scale
        X = rng.standard_normal((N, D))
        cases.append(_case(label, [W, X, rng.integers(0, C, N), reg], N))
    return cases


def linear_softmax_loss(rng):
    """The linear cases, plus scores X @ W whose rows sit ~1000 apart: X's first column holds
    each row's offset and W's first row is constant, so every class of a row gets the same
    shift (the loss does not change, a global max shift gives NaN)."""
    cases = linear_loss(rng)
    N, D, C = 4, 5, 6
    W = rng.standard_normal((D, C))
    W[0] = 2.0
    X = rng.standard_normal((N, D))
    X[:, 0] = row_offsets(rng, N, 500.0)[:, 0]
    cases.append(
        _case(
            "rows of scores offset by ~1000 from each other, reg 0.05",
            [W, X, rng.integers(0, C, N), 0.05],
            N,
        )
    )
    return cases


def _train_call(X, y, iters, batch):
    return [
        {
            "method": "train",
            "args": [X, y],
            "kwargs": {"learning_rate": 0.1, "reg": 0.01, "num_iters": iters, "batch_size": batch},
            "test": "train",
            "check": "sequence",
            "names": ["X", "y"],
        },
        {"attr": "W", "test": "train", "check": "output"},
    ]


def linear_train(rng):
    """LinearClassifier.train with a quadratic stand-in loss (``case['train_loss']``), so the
    training loop is graded on its own, whatever the student's SVM loss does. Minibatches drawn
    by np.random.choice(num_train, batch_size) under the grader's seed match the reference."""
    cases = []
    for label, N, D, C, iters, batch, given_w in [
        ("W given, 4 steps of batch 5 from N=8", 8, 4, 3, 4, 5, True),
        ("W created by train (0.001 * randn), 3 steps of batch 3 from N=6", 6, 5, 4, 3, 3, False),
    ]:
        X = rng.standard_normal((N, D))
        y = rng.integers(0, C, N)
        y[0] = C - 1  # the number of classes is max(y) + 1
        case = {
            "label": label,
            "ctor_args": [],
            "ctor_kwargs": {},
            "meta": {"N": N},
            "train_loss": "quadratic",
            "calls": _train_call(X, y, iters, batch),
        }
        if given_w:
            case["attrs"] = {"W": rng.standard_normal((D, C)) * 0.1}
        cases.append(case)
    # Every example the same: any way of drawing minibatches gives the same steps.
    X = np.tile(rng.standard_normal((1, 4)), (6, 1))
    cases.append(
        {
            "label": "identical examples (any sampling gives the same steps), 3 steps",
            "ctor_args": [],
            "ctor_kwargs": {},
            "meta": {"N": 6},
            "train_loss": "quadratic",
            "attrs": {"W": rng.standard_normal((4, 3)) * 0.1},
            "calls": _train_call(X, np.full(6, 2), 3, 4),
        }
    )
    return cases


def knn_distances(method):
    def gen(rng):
        cases = []
        for label, ntr, nte, D in [("one test point", 6, 1, 4), ("odd sizes", 9, 5, 3)]:
            Xtr, Xte = rng.standard_normal((ntr, D)), rng.standard_normal((nte, D))
            cases.append(
                {
                    "label": label,
                    "ctor_args": [],
                    "ctor_kwargs": {},
                    "meta": {"N": nte},
                    "calls": [
                        {"method": "train", "args": [Xtr, rng.integers(0, 3, ntr)], "test": None},
                        {
                            "method": method,
                            "args": [Xte],
                            "test": method,
                            "check": "output",
                            "names": ["X"],
                        },
                    ],
                }
            )
        return cases

    return gen


def knn_predict_labels(rng):
    y_train = np.array([2, 0, 1, 0, 2, 1])
    dists = distinct(rng, (4, 6), 0.1) + 5
    # Row 0: the two nearest carry labels 2 and 0 (a tie for k=2 -> the smaller label, 0).
    dists[0] = [0.1, 0.2, 3.0, 4.0, 5.0, 6.0]
    cases = []
    for k in (1, 2, 3):
        cases.append(
            {
                "label": f"k={k}" + (" (tied vote -> smaller label)" if k == 2 else ""),
                "ctor_args": [],
                "ctor_kwargs": {},
                "meta": {},
                "calls": [
                    {
                        "method": "train",
                        "args": [rng.standard_normal((6, 3)), y_train],
                        "test": None,
                    },
                    {
                        "method": "predict_labels",
                        "args": [dists],
                        "kwargs": {"k": k},
                        "test": "predict_labels",
                        "check": "output",
                        "names": ["dists"],
                    },
                ],
            }
        )
    return cases


def linear_predict(rng):
    cases = []
    for label, N, D, C in [("batch of 1", 1, 4, 3), ("N=7, C=5", 7, 6, 5)]:
        cases.append(
            {
                "label": label,
                "ctor_args": [],
                "ctor_kwargs": {},
                "meta": {"N": N},
                "attrs": {"W": rng.standard_normal((D, C))},
                "calls": [
                    {
                        "method": "predict",
                        "args": [rng.standard_normal((N, D))],
                        "test": "predict",
                        "check": "output",
                        "names": ["X"],
                    }
                ],
            }
        )
    return cases


def _model_calls(X, y):
    """Scores (test mode), loss and grads (train mode), scores again (test mode after a training
    call: batchnorm's running statistics must have moved)."""
    return [
        {"method": "loss", "args": [X], "test": "loss", "check": "scores", "names": ["X"]},
        {
            "method": "loss",
            "args": [X, y],
            "test": "loss",
            "check": "loss_grads",
            "names": ["X", "y"],
        },
        {"method": "loss", "args": [X], "test": "loss", "check": "scores", "names": ["X"]},
    ]


def _model_case(label, rng, N, in_shape, C, ctor_kwargs, dtype=True):
    X = rng.standard_normal((N, *in_shape))
    y = rng.integers(0, C, N)
    if dtype:  # float64 parameters (TwoLayerNet has no dtype argument: always float64)
        ctor_kwargs = {**ctor_kwargs, "dtype": np.float64}
    return {
        "label": label,
        "ctor_args": [],
        "ctor_kwargs": ctor_kwargs,
        "params": None,
        "calls": _model_calls(X, y),
        # Big enough layers to compare the spread of the random initial weights.
        "meta": {"N": N, "init_stats": label.startswith("init statistics")},
    }


def two_layer_net(rng):
    return [
        _model_case(
            "D=6, H=5, C=3, reg 0",
            rng,
            4,
            (6,),
            3,
            {"input_dim": 6, "hidden_dim": 5, "num_classes": 3},
            dtype=False,
        ),
        _model_case(
            "batch of 1, X of shape (1, 2, 3), reg 0.7",
            rng,
            1,
            (2, 3),
            4,
            {"input_dim": 6, "hidden_dim": 7, "num_classes": 4, "reg": 0.7},
            dtype=False,
        ),
        _model_case(
            "init statistics (D=40, H=30)",
            rng,
            3,
            (40,),
            10,
            {"input_dim": 40, "hidden_dim": 30, "num_classes": 10, "weight_scale": 1e-2},
            dtype=False,
        ),
    ]


def fc_net(rng):
    return [
        _model_case(
            "one hidden layer, no normalization",
            rng,
            3,
            (5,),
            3,
            {"hidden_dims": [4], "input_dim": 5, "num_classes": 3},
        ),
        _model_case(
            "two hidden layers, reg 0.7",
            rng,
            4,
            (2, 3),
            4,
            {"hidden_dims": [5, 4], "input_dim": 6, "num_classes": 4, "reg": 0.7},
        ),
        _model_case(
            "batchnorm, reg 0.1",
            rng,
            5,
            (5,),
            3,
            {
                "hidden_dims": [4, 3],
                "input_dim": 5,
                "num_classes": 3,
                "reg": 0.1,
                "normalization": "batchnorm",
            },
        ),
        _model_case(
            "layernorm, batch of 1",
            rng,
            1,
            (4,),
            3,
            {"hidden_dims": [5], "input_dim": 4, "num_classes": 3, "normalization": "layernorm"},
        ),
        _model_case(
            "init statistics (batchnorm, D=40, H=30, 20)",
            rng,
            3,
            (40,),
            10,
            {
                "hidden_dims": [30, 20],
                "input_dim": 40,
                "num_classes": 10,
                "normalization": "batchnorm",
                "weight_scale": 5e-2,
            },
        ),
    ]


def three_layer_convnet(rng):
    return [
        _model_case(
            "3 filters 3x3 on (2, 6, 6), reg 0.1",
            rng,
            2,
            (2, 6, 6),
            4,
            {
                "input_dim": (2, 6, 6),
                "num_filters": 3,
                "filter_size": 3,
                "hidden_dim": 5,
                "num_classes": 4,
                "reg": 0.1,
            },
        ),
        _model_case(
            "batch of 1, 5x5 filters on (3, 4, 4)",
            rng,
            1,
            (3, 4, 4),
            3,
            {
                "input_dim": (3, 4, 4),
                "num_filters": 2,
                "filter_size": 5,
                "hidden_dim": 4,
                "num_classes": 3,
            },
        ),
    ]


_WORDS = ["<NULL>", "<START>", "<END>", "a", "cat", "sat", "on", "mat"]


def captioning_rnn(rng):
    word_to_idx = {w: i for i, w in enumerate(_WORDS)}
    V = len(_WORDS)
    cases = []
    for cell in ("rnn", "lstm"):
        N, T, D = 3, 6, 5
        captions = rng.integers(3, V, (N, T))
        captions[:, 0] = 1
        captions[0, 4:] = 0  # padding: these targets are masked out of the loss
        captions[1, 5] = 2
        features = rng.standard_normal((N, D))
        cases.append(
            {
                "label": f"cell_type={cell!r}, N=3, T=6 with padding",
                "ctor_args": [word_to_idx],
                "ctor_kwargs": {
                    "input_dim": D,
                    "wordvec_dim": 4,
                    "hidden_dim": 3,
                    "cell_type": cell,
                    "dtype": np.float64,
                },
                "params": None,
                "meta": {"N": N},
                "calls": [
                    {
                        "method": "loss",
                        "args": [features, captions],
                        "test": "loss",
                        "check": "loss_grads",
                        "names": ["features", "captions"],
                    },
                    {
                        "method": "sample",
                        "args": [features],
                        "kwargs": {"max_length": 5},
                        "test": "sample",
                        "check": "output",
                        "names": ["features"],
                    },
                ],
            }
        )
    return cases


def make_params(rng, params: dict) -> dict:
    """Parameters the grader sets on both models after construction: O(1) activations (weights
    scaled by 1/sqrt(fan_in)), gamma near 1, so scores are far from ReLU kinks and the
    numerical gradient the diagnosis may take is accurate."""
    out = {}
    for name, p in params.items():
        shape = np.shape(p)
        if name.startswith("gamma"):
            out[name] = 1 + 0.1 * rng.standard_normal(shape)
        elif name.startswith("beta") or len(shape) <= 1:
            out[name] = 0.1 * rng.standard_normal(shape)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else int(shape[0])
            out[name] = rng.standard_normal(shape) / np.sqrt(max(fan_in, 1))
    return out


# ----------------------------------------------------------------------------------------------
# rnn_layers.py
# ----------------------------------------------------------------------------------------------


def _rnn_weights(rng, D, H, gates):
    return (
        rng.standard_normal((D, gates * H)) / np.sqrt(D),
        rng.standard_normal((H, gates * H)) / np.sqrt(H),
        rng.standard_normal(gates * H) * 0.1,
    )


def rnn_step(rng):
    cases = []
    for label, N, D, H in [("batch of 1", 1, 3, 4), ("N=3, D=5, H=2", 3, 5, 2)]:
        cases.append(
            _case(
                label,
                [
                    rng.standard_normal((N, D)),
                    rng.standard_normal((N, H)),
                    *_rnn_weights(rng, D, H, 1),
                ],
                N,
            )
        )
    return cases


def rnn_sequence(gates):
    def gen(rng):
        cases = []
        for label, N, T, D, H in [
            ("batch of 1, T=1", 1, 1, 3, 4),
            ("N=2, T=5, D=3, H=4", 2, 5, 3, 4),
            ("odd sizes N=3, T=3, D=5, H=3", 3, 3, 5, 3),
        ]:
            cases.append(
                _case(
                    label,
                    [
                        rng.standard_normal((N, T, D)),
                        rng.standard_normal((N, H)),
                        *_rnn_weights(rng, D, H, gates),
                    ],
                    N,
                )
            )
        return cases

    return gen


def lstm_step(rng):
    cases = []
    for label, N, D, H in [("batch of 1", 1, 3, 4), ("N=3, D=5, H=2", 3, 5, 2)]:
        cases.append(
            _case(
                label,
                [
                    rng.standard_normal((N, D)),
                    rng.standard_normal((N, H)),
                    rng.standard_normal((N, H)),
                    *_rnn_weights(rng, D, H, 4),
                ],
                N,
            )
        )
    return cases


def word_embedding(rng):
    return [
        _case(
            "N=2, T=4, V=5 (repeated words)",
            [rng.integers(0, 5, (2, 4)), rng.standard_normal((5, 3))],
            2,
        ),
        _case("batch of 1, T=1", [np.array([[3]]), rng.standard_normal((6, 2))], 1),
    ]


def temporal_affine(rng):
    return [
        _case(
            "N=2, T=3, D=4, M=5",
            [rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)],
            2,
        ),
        _case(
            "batch of 1, T=1",
            [rng.standard_normal((1, 1, 3)), rng.standard_normal((3, 2)), rng.standard_normal(2)],
            1,
        ),
    ]


def temporal_softmax(rng):
    cases = []
    for label, N, T, V, scale in [
        ("N=3, T=4, V=5", 3, 4, 5, 1.0),
        ("batch of 1, scores of scale 10", 1, 3, 6, 10.0),
    ]:
        mask = rng.random((N, T)) > 0.3
        mask[0, 0] = True
        cases.append(
            _case(
                label, [rng.standard_normal((N, T, V)) * scale, rng.integers(0, V, (N, T)), mask], N
            )
        )
    return cases


# ----------------------------------------------------------------------------------------------
# assignment 3, PyTorch: GAN losses and SimCLR (inputs become float64 tensors)
# ----------------------------------------------------------------------------------------------


def gan_scores(n_inputs):
    """Scores of shape (N,) and (N, 1), as the course's discriminators give them."""

    def gen(rng):
        return [
            _case(label, [rng.standard_normal(shape) * 2 for _ in range(n_inputs)], shape[0])
            for label, shape in [
                ("batch of 1", (1,)),
                ("N=6, scores of shape (N,)", (6,)),
                ("N=4, scores of shape (N, 1)", (4, 1)),
            ]
        ]

    return gen


def gan_noise(rng):
    """sample_noise(batch_size, dim, seed=None): uniform noise in [-1, 1]."""
    return [
        {
            "label": "batch_size=128, dim=96, seed=231",
            "args": [128, 96],
            "kwargs": {"seed": 231},
            "meta": {"N": 128, "seeded": True},
        },
        {
            "label": "batch_size=64, dim=10, no seed",
            "args": [64, 10],
            "kwargs": {},
            "meta": {"N": 64, "seeded": False},
        },
    ]


def gan_network(ctor_args, in_shape, N=3):
    """One input batch of shape (N, *in_shape) for a network of the GAN notebook built by
    fn(*ctor_args) (the discriminator reads images (N, 1, 28, 28), as in the notebook)."""

    def gen(rng):
        shape = (N, *in_shape)
        return [
            {
                "label": f"built with {tuple(ctor_args)}, input of shape {shape}",
                "args": [rng.standard_normal(shape)],
                "meta": {"N": N},
            }
        ]

    return gen


def simclr_vectors(rng):
    return [
        _case(f"D={D}", [rng.standard_normal(D) * s, rng.standard_normal(D)], None)
        for D, s in ((3, 1.0), (8, 5.0))
    ]


def simclr_matrix(rng):
    return [
        _case(f"2N={M}, D={D}", [rng.standard_normal((M, D))], M // 2) for M, D in ((2, 3), (6, 5))
    ]


def simclr_pairs(rng):
    return [
        _case(f"N={N}, D={D}", [rng.standard_normal((N, D)), rng.standard_normal((N, D))], N)
        for N, D in ((1, 4), (3, 5))
    ]


def simclr_loss(rng):
    return [
        _case(
            f"N={N}, D={D}, tau={tau:g}",
            [rng.standard_normal((N, D)), rng.standard_normal((N, D)), tau],
            N,
        )
        for N, D, tau in ((1, 3, 0.5), (3, 4, 0.5), (4, 6, 0.1))
    ]


def positional_encoding(rng):
    return [
        {
            "label": label,
            "ctor_args": [D],
            "ctor_kwargs": {"dropout": 0.0, "max_len": L},
            "params": {},
            "args": [rng.standard_normal((N, S, D))],
            "meta": {"N": N},
        }
        for label, N, S, D, L in [
            ("N=2, S=3, D=4, max_len 10", 2, 3, 4, 10),
            ("batch of 1, S = max_len = 5, D=6", 1, 5, 6, 5),
        ]
    ]


def multihead_attention(rng):
    """Query (N, S, E), key/value (N, T, E); attn_mask (S, T) with 0 = blocked (the course's
    convention); weights in CS231n layout (E, E)."""
    cases = []
    for label, N, S, T, E, H, mask in [
        ("self-attention, N=1, S=T=3, E=4, 2 heads", 1, 3, 3, 4, 2, None),
        ("cross-attention, N=2, S=2, T=4, E=6, 3 heads", 2, 2, 4, 6, 3, None),
        ("causal mask (0 = blocked), N=2, S=T=4, E=4, 2 heads", 2, 4, 4, 4, 2, "causal"),
    ]:
        q = rng.standard_normal((N, S, E))
        kv = q if S == T else rng.standard_normal((N, T, E))  # S == T: self-attention
        params = {}
        for w in ("q", "k", "v", "o"):
            params[f"W{w}"] = rng.standard_normal((E, E)) / np.sqrt(E)
            params[f"b{w}"] = rng.standard_normal(E) * 0.1
        kwargs = {"attn_mask": np.tril(np.ones((S, T), dtype=bool))} if mask else {}
        cases.append(
            {
                "label": label,
                "ctor_args": [E, H],
                "ctor_kwargs": {"dropout": 0.0},
                "params": params,
                "args": [q, kv.copy(), kv.copy()],
                "kwargs": kwargs,
                "meta": {"N": N},
            }
        )
    return cases


def captioning_transformer(rng):
    """CaptioningTransformer(word_to_idx, input_dim, wordvec_dim, num_heads, num_layers,
    max_length) on features (N, input_dim) and captions (N, T) starting with <START>."""
    word_to_idx = {w: i for i, w in enumerate(_WORDS)}
    cases = []
    for label, N, T, D, W, H, L in [
        ("N=2, T=5, 2 heads, 2 layers", 2, 5, 6, 8, 2, 2),
        ("batch of 1, T=3, 4 heads, 1 layer", 1, 3, 5, 8, 4, 1),
    ]:
        captions = rng.integers(3, len(_WORDS), (N, T))
        captions[:, 0] = word_to_idx["<START>"]
        cases.append(
            {
                "label": label,
                "ctor_args": [word_to_idx, D, W],
                "ctor_kwargs": {"num_heads": H, "num_layers": L, "max_length": 10},
                "args": [rng.standard_normal((N, D)), captions],
                "meta": {"N": N},
            }
        )
    return cases


# ----------------------------------------------------------------------------------------------
# assignment 2, PyTorch.ipynb (inputs become float64 tensors)
# ----------------------------------------------------------------------------------------------


def nb_flatten(rng):
    return [
        _case(f"x of shape {shape}", [rng.standard_normal(shape)], shape[0])
        for shape in [(2, 1, 3, 2), (1, 5), (3, 2, 1, 1)]
    ]


def nb_two_layer_fc(rng):
    """x (N, d_1, ..., d_k) and the weights w1 (D, H), w2 (H, C), passed as params = [w1, w2]."""
    cases = []
    for label, N, dims, H, C in [
        ("batch of 1, x of shape (1, 5)", 1, (5,), 4, 3),
        ("images (3, 2, 2, 3), H=7, C=10", 3, (2, 2, 3), 7, 10),
    ]:
        D = int(np.prod(dims))
        x = away(rng, (N, *dims))
        w1 = rng.standard_normal((D, H)) / np.sqrt(D)
        cases.append(_case(label, [x, w1, rng.standard_normal((H, C)) / np.sqrt(H)], N))
    return cases


def nb_three_layer_convnet(rng):
    """x (N, 3, H, W) and params = [conv_w1, conv_b1, conv_w2, conv_b2, fc_w, fc_b], the
    notebook's 5x5 (pad 2) and 3x3 (pad 1) filters, which keep H and W."""
    cases = []
    for label, N, H, W, c1, c2, C in [
        ("batch of 1, 32x32 images, 3 and 2 channels", 1, 32, 32, 3, 2, 10),
        ("N=2, 6x5 images, 4 and 3 channels, 7 classes", 2, 6, 5, 4, 3, 7),
    ]:
        D = c2 * H * W
        cases.append(
            _case(
                label,
                [
                    rng.standard_normal((N, 3, H, W)),
                    rng.standard_normal((c1, 3, 5, 5)) / np.sqrt(75),
                    0.1 * rng.standard_normal(c1),
                    rng.standard_normal((c2, c1, 3, 3)) / np.sqrt(9 * c1),
                    0.1 * rng.standard_normal(c2),
                    rng.standard_normal((D, C)) / np.sqrt(D),
                    0.1 * rng.standard_normal(C),
                ],
                N,
            )
        )
    return cases


def nb_weight_shapes(init):
    """Shapes to initialize: an affine weight (D, M), conv weights (F, C, HH, WW), and for
    zero_weight an int (the notebook makes its biases with zero_weight(channel_1))."""

    def gen(rng):
        shapes = [(3072, 100), (32, 3, 5, 5), (16, 32, 3, 3)] if init == "kaiming" else [10, (4, 5)]
        return [
            {"label": f"shape {s}", "args": [s], "meta": {"N": None, "init": init}} for s in shapes
        ]

    return gen


def nb_module_input(rng, N=2, C=3):
    """Images (N, C, 32, 32): the notebook's modules read 32x32 CIFAR-10 images."""
    return [_case(f"images of shape {(N, C, 32, 32)}", [rng.standard_normal((N, C, 32, 32))], N)]
