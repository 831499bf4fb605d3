"""The table of gradable items: what the grader looks for in a student's code and how it calls it.

One entry per function pair, loss, optimizer rule or class (or group of PyTorch functions of
one file). Adding an item is one entry here: the helpers below (``layer``, ``loss``, ``optim``,
``model``, ``method``, ``torch_functions``) fill in the driver spec, the test names and the
student files to search. Each entry names
  - the function(s) or class, and which module file(s) of the CS231n layout hold them
    (the first file that defines them is graded);
  - the reference module (numpy_impl..., torch_impl... for PyTorch code) giving the answers;
  - an input generator from ``input_generators.py`` (several seeded shapes, including edge cases);
  - how to call it: ``layer`` runs the student's forward, then feeds the reference's upstream
    gradient to the student's backward with the student's own cache; ``loss`` compares the value
    and the gradient; ``optim`` runs several steps feeding next_w and config back; ``model``
    constructs the class with the same arguments, sets the same parameters on both sides and
    compares scores, loss and every gradient; ``method`` compares one method's output;
    ``torch`` calls PyTorch functions on float64 tensors and compares outputs and autograd
    gradients;
  - optional diagnosis helpers: known-bug variants (``reference_variants.py``) and accepted
    alternatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from cs231n_grader import input_generators as C
from cs231n_grader import reference_variants as V


@dataclass(frozen=True)
class Item:
    name: str
    kind: str  # driver: 'layer', 'loss', 'optim', 'object', 'torch' or 'torch_module'
    files: tuple  # candidate module files, relative to the student's root
    ref: str  # reference module
    cases: Callable  # numpy Generator -> list of case dicts
    spec: dict  # the driver's spec (plain data, sent to the child)
    tests: dict  # part -> test name
    requires: dict  # test name -> the function or class the student must define for it
    grads: tuple = ()  # (gradient name, index of the forward/loss argument it belongs to)
    state: tuple = ()  # layer: (param dict name, keys the forward must write); optim: state keys
    check: str | None = None  # custom comparison (see layer_checks.check_layer)
    bugs: tuple = ()  # (message, {function name: variant}) known bugs, for diagnosis
    accept: tuple = ()  # (note, {function name: variant}) accepted alternative conventions
    may_mutate: tuple = ()  # inputs that CS231n's own code modifies in place: a note, not a failure
    reg: tuple | None = None  # loss: (index of W, index of reg) for the regularization diagnosis
    notes: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def functions(self) -> set:
        return set(self.requires.values())


def _files(*names):
    return tuple(f"cs231n/{n}" for n in names)


def layer(
    forward,
    backward,
    args,
    grads,
    cases,
    file="layers.py",
    ref="layers",
    outputs=("out",),
    forward_test=True,
    name=None,
    **kw,
) -> Item:
    tests, requires = {}, {}
    if forward_test:
        tests["forward"] = forward
        requires[forward] = forward
    if backward:
        tests["backward"] = backward
        requires[backward] = backward
    spec = {
        "forward": forward,
        "backward": backward,
        "args": list(args),
        "n_out": len(outputs),
        "outputs": list(outputs),
        "repeat": kw.pop("repeat", False),
    }
    return Item(
        name or forward.replace("_forward", ""),
        "layer",
        _files(file),
        f"numpy_impl.{ref}",
        cases,
        spec,
        tests,
        requires,
        grads=tuple(grads),
        **kw,
    )


def loss(function, args, grad, cases, files, ref, reg=None, **kw) -> Item:
    spec = {"function": function, "args": list(args)}
    return Item(
        function,
        "loss",
        _files(*files),
        f"numpy_impl.{ref}",
        cases,
        spec,
        {"loss": function},
        {function: function},
        grads=(grad,),
        reg=reg,
        **kw,
    )


def optim(function, cases, state, **kw) -> Item:
    spec = {"function": function}
    return Item(
        function,
        "optim",
        _files("optim.py"),
        "numpy_impl.optim",
        cases,
        spec,
        {"step": function},
        {function: function},
        state=tuple(state),
        may_mutate=("w",),
        **kw,
    )


def model(cls, cases, files, ref, calls=("loss",), init=True, **kw) -> Item:
    tests = {"init": f"{cls}.__init__"} if init else {}
    tests.update({c: f"{cls}.{c}" for c in calls})
    return Item(
        cls,
        "object",
        _files(*files),
        f"numpy_impl.{ref}",
        cases,
        {"cls": cls},
        tests,
        {t: cls for t in tests.values()},
        **kw,
    )


def method(cls, meth, cases, files, ref, test_prefix=None, **kw) -> Item:
    test = f"{test_prefix or cls}.{meth}"
    return Item(
        f"{cls}.{meth}",
        "object",
        _files(*files),
        f"numpy_impl.{ref}",
        cases,
        {"cls": cls},
        {meth: test},
        {test: cls},
        **kw,
    )


def torch_functions(name, file, ref, functions) -> Item:
    """PyTorch functions of assignment 3 from one file, graded in one child process (importing
    torch is the slow part): output and autograd gradients vs torch_impl. ``functions``: list
    of (function, argument names, case generator, kwargs[, check[, extra spec]]); check
    'random': a function that draws random numbers, judged by the statistics of what it returns
    (``torch_checks.check_random``), as no reference reproduces another implementation's draws;
    'architecture': a function building a network the notebook specifies layer by layer
    (``call_drivers.course_network``, ``torch_checks.check_architecture``); 'composition': a
    model whose forward composes its own submodules as the notebook describes
    (``call_drivers.captioning_transformer_forward``)."""
    specs, gens = [], []
    for function, args, cases, kwargs, *check in functions:
        grads = [[f"grad of {a}", i] for i, a in enumerate(args) if a != "tau"]
        specs.append(
            {
                "function": function,
                "args": list(args),
                "kwargs": kwargs or {},
                "grads": grads,
                "check": check[0] if check else None,
                **(check[1] if len(check) > 1 else {}),
            }
        )
        gens.append(cases)

    def all_cases(rng):
        out = []
        for k, gen in enumerate(gens):
            for case in gen(rng):
                out.append({**case, "fn": k})
        return out

    # A spec's 'test' names its test when that is not the function's name (a class's method).
    tests = {f["function"]: f.get("test") or f["function"] for f in specs}
    return Item(
        name,
        "torch",
        _files(file),
        f"torch_impl.{ref}",
        all_cases,
        {"functions": specs},
        tests,
        {t: f for f, t in tests.items()},
    )


def torch_modules(name, file, ref, modules) -> Item:
    """PyTorch modules of assignment 3 from one file, graded in one child (eval mode): output
    and the gradients of inputs and parameters vs torch_impl's modules. ``modules``: list of
    (class, forward's tensor inputs, case generator, student params map, reference params map,
    float32_constants); the maps say where each named array goes in the student's (course)
    module and in the reference's; ``float32_constants``: the course's module builds
    constants in float32 (see THRESHOLDS['float32'])."""
    specs, gens = [], []
    for cls, inputs, cases, student, reference, f32 in modules:
        specs.append(
            {
                "cls": cls,
                "inputs": list(inputs),
                "float32_constants": f32,
                "params": {"student": student or {}, "reference": reference or {}},
            }
        )
        gens.append(cases)

    def all_cases(rng):
        return [{**case, "fn": k} for k, gen in enumerate(gens) for case in gen(rng)]

    tests = {m[0]: f"{m[0]}.forward" for m in modules}
    return Item(
        name,
        "torch_module",
        _files(file),
        f"torch_impl.{ref}",
        all_cases,
        {"modules": specs},
        tests,
        {t: cls for cls, t in tests.items()},
    )


# The course's MultiHeadAttention holds nn.Linear layers key, query, value, proj (weight is
# the transpose of CS231n's w); torch_impl's holds TemporalAffine layers with w and b.
_MHA = {"query": "q", "key": "k", "value": "v", "proj": "o"}
_MHA_STUDENT = {
    f"{layer}.{p}": [f"{'W' if p == 'weight' else 'b'}{x}", p == "weight"]
    for layer, x in _MHA.items()
    for p in ("weight", "bias")
}
_MHA_REFERENCE = {
    f"{layer}.{p}": [f"{'W' if p == 'w' else 'b'}{x}", False]
    for layer, x in _MHA.items()
    for p in ("w", "b")
}

# The GAN notebook's networks: (function, network, its arguments, input shape without the
# batch, noise size); the notebook's own tests build the generators with a noise size of 4.
_GAN_NETWORKS = (
    ("discriminator", "discriminator", (), (1, 28, 28), 0),
    ("generator", "generator", (4,), (4,), 4),
    ("build_dc_classifier", "dc_classifier", (3,), (784,), 0),
    ("build_dc_generator", "dc_generator", (4,), (4,), 4),
)

_X, _XWB = ("x",), ("x", "w", "b")
_DX, _DXWB = (("dx", 0),), (("dx", 0), ("dw", 1), ("db", 2))
_NORM = (("dx", 0), ("dgamma", 1), ("dbeta", 2))
_BN_STATE = (("bn_param", ("running_mean", "running_var")),)
_BN_BUGS = (
    (
        "running averages use PyTorch's convention running = (1 - momentum) * running + momentum * "
        "batch_stat; CS231n's is running = momentum * running + (1 - momentum) * batch_stat",
        {"batchnorm_forward": V.bn_pytorch_momentum},
    ),
    (
        "running_var averages the UNBIASED batch variance (ddof=1); CS231n uses the biased one "
        "(ddof=0), the same variance that normalizes x",
        {"batchnorm_forward": V.bn_unbiased_running_var},
    ),
    (
        "bn_param['running_mean'] / ['running_var'] are never updated (write the new arrays back "
        "into bn_param)",
        {"batchnorm_forward": V.bn_no_running_update},
    ),
    (
        "test mode normalizes with the batch's own mean and variance; at test time use "
        "bn_param['running_mean'] and bn_param['running_var']",
        {"batchnorm_forward": V.bn_test_batch_stats},
    ),
)
_SBN_BUGS = (
    (_BN_BUGS[0][0], {"spatial_batchnorm_forward": V.spatial_bn_pytorch_momentum}),
    (_BN_BUGS[1][0], {"spatial_batchnorm_forward": V.spatial_bn_unbiased_running_var}),
    (_BN_BUGS[3][0], {"spatial_batchnorm_forward": V.spatial_bn_test_batch_stats}),
)
_POOL = ("x", "pool_param")
_CONV = ("x", "w", "b", "conv_param")
_LSE = {
    "nan_hint": "overflow or log(0): compute log-probabilities as shifted - "
    "log(sum(exp(shifted))) with shifted = x - max(x) (the log-sum-exp trick)"
}
_TIES = "gradient routed to every tied maximum (accepted; the reference and PyTorch pick the first)"

ITEMS: tuple[Item, ...] = (
    # ---- layers.py -------------------------------------------------------------------------
    layer("affine_forward", "affine_backward", _XWB, _DXWB, C.affine),
    layer("relu_forward", "relu_backward", _X, _DX, C.elementwise),
    layer("sigmoid_forward", "sigmoid_backward", _X, _DX, C.elementwise),
    layer("tanh_forward", "tanh_backward", _X, _DX, C.elementwise),
    layer(
        "batchnorm_forward",
        "batchnorm_backward",
        ("x", "gamma", "beta", "bn_param"),
        _NORM,
        C.batchnorm,
        state=_BN_STATE,
        bugs=_BN_BUGS,
    ),
    layer(
        "batchnorm_forward",
        "batchnorm_backward_alt",
        ("x", "gamma", "beta", "bn_param"),
        _NORM,
        C.batchnorm,
        forward_test=False,
        name="batchnorm_alt",
    ),
    layer(
        "layernorm_forward",
        "layernorm_backward",
        ("x", "gamma", "beta", "ln_param"),
        _NORM,
        C.layernorm,
    ),
    layer(
        "dropout_forward",
        "dropout_backward",
        ("x", "dropout_param"),
        _DX,
        C.dropout,
        check="dropout",
        repeat=True,
    ),
    layer("conv_forward_naive", "conv_backward_naive", _CONV, _DXWB, C.conv, name="conv_naive"),
    layer(
        "max_pool_forward_naive",
        "max_pool_backward_naive",
        _POOL,
        _DX,
        C.max_pool,
        name="max_pool_naive",
        meta={"pool": True},
        accept=(
            (
                _TIES,
                {
                    "max_pool_forward_naive": V.max_pool_forward_own_cache,
                    "max_pool_backward_naive": V.max_pool_backward_all_ties,
                },
            ),
        ),
    ),
    layer(
        "spatial_batchnorm_forward",
        "spatial_batchnorm_backward",
        ("x", "gamma", "beta", "bn_param"),
        _NORM,
        C.spatial_batchnorm,
        state=_BN_STATE,
        bugs=_SBN_BUGS,
    ),
    layer(
        "spatial_groupnorm_forward",
        "spatial_groupnorm_backward",
        ("x", "gamma", "beta", "G", "gn_param"),
        _NORM,
        C.spatial_groupnorm,
    ),
    loss("svm_loss", ("x", "y"), ("dx", 0), C.svm_scores, ("layers.py",), "layers"),
    loss(
        "softmax_loss", ("x", "y"), ("dx", 0), C.softmax_scores, ("layers.py",), "layers", meta=_LSE
    ),
    # ---- fast_layers.py (the course ships these; graded when present) ------------------------
    layer(
        "conv_forward_fast",
        "conv_backward_fast",
        _CONV,
        _DXWB,
        C.conv,
        file="fast_layers.py",
        ref="fast_layers",
        name="conv_fast",
    ),
    layer(
        "max_pool_forward_fast",
        "max_pool_backward_fast",
        _POOL,
        _DX,
        C.max_pool,
        file="fast_layers.py",
        ref="fast_layers",
        name="max_pool_fast",
        meta={"pool": True},
        accept=(
            (
                _TIES,
                {
                    "max_pool_forward_fast": V.max_pool_forward_own_cache,
                    "max_pool_backward_fast": V.max_pool_backward_all_ties,
                },
            ),
        ),
    ),
    # ---- layer_utils.py ----------------------------------------------------------------------
    layer(
        "affine_relu_forward",
        "affine_relu_backward",
        _XWB,
        _DXWB,
        C.affine_relu,
        file="layer_utils.py",
        ref="layer_utils",
    ),
    layer(
        "conv_relu_forward",
        "conv_relu_backward",
        _CONV,
        _DXWB,
        C.conv_relu,
        file="layer_utils.py",
        ref="layer_utils",
    ),
    layer(
        "conv_bn_relu_forward",
        "conv_bn_relu_backward",
        ("x", "w", "b", "gamma", "beta", "conv_param", "bn_param"),
        (*_DXWB, ("dgamma", 3), ("dbeta", 4)),
        C.conv_bn_relu,
        file="layer_utils.py",
        ref="layer_utils",
    ),
    layer(
        "conv_relu_pool_forward",
        "conv_relu_pool_backward",
        ("x", "w", "b", "conv_param", "pool_param"),
        _DXWB,
        C.conv_relu_pool,
        file="layer_utils.py",
        ref="layer_utils",
    ),
    # ---- optim.py ----------------------------------------------------------------------------
    optim("sgd", C.sgd, ()),
    optim(
        "sgd_momentum",
        C.momentum,
        ("velocity",),
        bugs=(
            (
                "velocity has the opposite sign: CS231n keeps v = momentum * v - "
                "learning_rate * dw and steps w + v",
                {"sgd_momentum": V.sgd_momentum_flipped_velocity},
            ),
        ),
    ),
    optim("nesterov_momentum", C.momentum, ("velocity",)),
    optim(
        "rmsprop",
        C.rmsprop,
        ("cache",),
        bugs=(
            (
                "epsilon is inside the square root; CS231n divides by sqrt(cache) + epsilon",
                {"rmsprop": V.rmsprop_eps_inside_sqrt},
            ),
        ),
    ),
    optim(
        "adam",
        C.adam,
        ("m", "v", "t"),
        accept=(
            (
                "Adam in the paper's epsilon-hat form (bias corrections folded into the step "
                "size, as the course's assignment-3 optim.py has it): accepted, it differs "
                "from the reference by about epsilon / sqrt(v)",
                {"adam": V.adam_eps_hat},
            ),
        ),
        bugs=(
            (
                "t is incremented after the bias correction: on the first step 1 - beta**0 = 0 "
                "divides by zero. Increment t FIRST (t starts at 0)",
                {"adam": V.adam_t_late},
            ),
            (
                "no bias correction: divide m by (1 - beta1**t) and v by (1 - beta2**t)",
                {"adam": V.adam_no_bias_correction},
            ),
        ),
    ),
    # ---- classifiers (assignment 1) ---------------------------------------------------------
    loss(
        "svm_loss_naive",
        ("W", "X", "y", "reg"),
        ("dW", 0),
        C.linear_loss,
        ("classifiers/linear_svm.py",),
        "classifiers.linear_svm",
        reg=(0, 3),
    ),
    loss(
        "svm_loss_vectorized",
        ("W", "X", "y", "reg"),
        ("dW", 0),
        C.linear_loss,
        ("classifiers/linear_svm.py",),
        "classifiers.linear_svm",
        reg=(0, 3),
    ),
    loss(
        "softmax_loss_naive",
        ("W", "X", "y", "reg"),
        ("dW", 0),
        C.linear_softmax_loss,
        ("classifiers/softmax.py",),
        "classifiers.softmax",
        reg=(0, 3),
        meta=_LSE,
    ),
    loss(
        "softmax_loss_vectorized",
        ("W", "X", "y", "reg"),
        ("dW", 0),
        C.linear_softmax_loss,
        ("classifiers/softmax.py",),
        "classifiers.softmax",
        reg=(0, 3),
        meta=_LSE,
    ),
    *(
        method(
            "KNearestNeighbor",
            m,
            C.knn_distances(m),
            ("classifiers/k_nearest_neighbor.py",),
            "classifiers.k_nearest_neighbor",
        )
        for m in (
            "compute_distances_two_loops",
            "compute_distances_one_loop",
            "compute_distances_no_loops",
        )
    ),
    method(
        "KNearestNeighbor",
        "predict_labels",
        C.knn_predict_labels,
        ("classifiers/k_nearest_neighbor.py",),
        "classifiers.k_nearest_neighbor",
    ),
    method(
        "LinearSVM",
        "predict",
        C.linear_predict,
        ("classifiers/linear_classifier.py",),
        "classifiers.linear_classifier",
        test_prefix="LinearClassifier",
    ),
    method(
        "LinearSVM",
        "train",
        C.linear_train,
        ("classifiers/linear_classifier.py",),
        "classifiers.linear_classifier",
        test_prefix="LinearClassifier",
        accept=(
            (
                "minibatches drawn without replacement (accepted; the reference draws "
                "with replacement, as the notebook suggests)",
                {"LinearSVM": V.linear_svm_without_replacement},
            ),
        ),
    ),
    # ---- models (assignments 1-3) -----------------------------------------------------------
    model("TwoLayerNet", C.two_layer_net, ("classifiers/fc_net.py",), "classifiers.fc_net"),
    model("FullyConnectedNet", C.fc_net, ("classifiers/fc_net.py",), "classifiers.fc_net"),
    model("ThreeLayerConvNet", C.three_layer_convnet, ("classifiers/cnn.py",), "classifiers.cnn"),
    model(
        "CaptioningRNN",
        C.captioning_rnn,
        ("classifiers/rnn.py",),
        "classifiers.rnn",
        calls=("loss", "sample"),
    ),
    # ---- rnn_layers.py (assignment 3) -------------------------------------------------------
    layer(
        "rnn_step_forward",
        "rnn_step_backward",
        ("x", "prev_h", "Wx", "Wh", "b"),
        (("dx", 0), ("dprev_h", 1), ("dWx", 2), ("dWh", 3), ("db", 4)),
        C.rnn_step,
        file="rnn_layers.py",
        ref="rnn_layers",
        outputs=("next_h",),
    ),
    layer(
        "rnn_forward",
        "rnn_backward",
        ("x", "h0", "Wx", "Wh", "b"),
        (("dx", 0), ("dh0", 1), ("dWx", 2), ("dWh", 3), ("db", 4)),
        C.rnn_sequence(1),
        file="rnn_layers.py",
        ref="rnn_layers",
        outputs=("h",),
    ),
    layer(
        "word_embedding_forward",
        "word_embedding_backward",
        ("x", "W"),
        (("dW", 1),),
        C.word_embedding,
        file="rnn_layers.py",
        ref="rnn_layers",
    ),
    layer(
        "lstm_step_forward",
        "lstm_step_backward",
        ("x", "prev_h", "prev_c", "Wx", "Wh", "b"),
        (("dx", 0), ("dprev_h", 1), ("dprev_c", 2), ("dWx", 3), ("dWh", 4), ("db", 5)),
        C.lstm_step,
        file="rnn_layers.py",
        ref="rnn_layers",
        outputs=("next_h", "next_c"),
    ),
    layer(
        "lstm_forward",
        "lstm_backward",
        ("x", "h0", "Wx", "Wh", "b"),
        (("dx", 0), ("dh0", 1), ("dWx", 2), ("dWh", 3), ("db", 4)),
        C.rnn_sequence(4),
        file="rnn_layers.py",
        ref="rnn_layers",
        outputs=("h",),
    ),
    layer(
        "temporal_affine_forward",
        "temporal_affine_backward",
        _XWB,
        _DXWB,
        C.temporal_affine,
        file="rnn_layers.py",
        ref="rnn_layers",
    ),
    loss(
        "temporal_softmax_loss",
        ("x", "y", "mask"),
        ("dx", 0),
        C.temporal_softmax,
        ("rnn_layers.py",),
        "rnn_layers",
        meta=_LSE,
    ),
    # ---- gan_pytorch.py, simclr/contrastive_loss.py (assignment 3, PyTorch) -----------------
    torch_functions(
        "gan_losses",
        "gan_pytorch.py",
        "gan",
        [
            ("discriminator_loss", ("logits_real", "logits_fake"), C.gan_scores(2), None),
            ("generator_loss", ("logits_fake",), C.gan_scores(1), None),
            ("ls_discriminator_loss", ("scores_real", "scores_fake"), C.gan_scores(2), None),
            ("ls_generator_loss", ("scores_fake",), C.gan_scores(1), None),
            ("sample_noise", ("batch_size", "dim"), C.gan_noise, None, "random"),
            *(
                (
                    fn,
                    ("x",),
                    C.gan_network(ctor, in_shape),
                    None,
                    "architecture",
                    {"arch": arch, "ctor_args": list(ctor), "noise_dim": noise},
                )
                for fn, arch, ctor, in_shape, noise in _GAN_NETWORKS
            ),
        ],
    ),
    torch_modules(
        "transformer_layers",
        "transformer_layers.py",
        "transformer_layers",
        [
            ("PositionalEncoding", ("x",), C.positional_encoding, None, None, True),
            (
                "MultiHeadAttention",
                ("query", "key", "value"),
                C.multihead_attention,
                _MHA_STUDENT,
                _MHA_REFERENCE,
                False,
            ),
        ],
    ),
    torch_functions(
        "captioning_transformer",
        "classifiers/transformer.py",
        "transformer_layers",
        [
            (
                "CaptioningTransformer",
                ("features", "captions"),
                C.captioning_transformer,
                None,
                "composition",
                {"test": "CaptioningTransformer.forward"},
            )
        ],
    ),
    torch_functions(
        "simclr",
        "simclr/contrastive_loss.py",
        "simclr",
        [
            ("sim", ("z_i", "z_j"), C.simclr_vectors, None),
            ("compute_sim_matrix", ("out",), C.simclr_matrix, None),
            ("sim_positive_pairs", ("out_left", "out_right"), C.simclr_pairs, None),
            ("simclr_loss_naive", ("out_left", "out_right", "tau"), C.simclr_loss, None),
            (
                "simclr_loss_vectorized",
                ("out_left", "out_right", "tau"),
                C.simclr_loss,
                {"device": "cpu"},
            ),
        ],
    ),
)


# ---- PyTorch.ipynb (assignment 2), exported to PyTorch.py ------------------------------------
# The notebook's functions live in the notebook, not in a cs231n/ file: the grader reads
# PyTorch.py (or PyTorch.ipynb) at the assignment's root, keeping only its imports,
# definitions and constants (``notebooks.py``). Tests are named "PyTorch.<function>".
NOTEBOOK_FILE = "PyTorch.py"


def _notebook(function, args, cases, check=None, **extra):
    return (
        function,
        args,
        cases,
        None,
        check,
        {"notebook": True, "test": f"PyTorch.{function}", **extra},
    )


_NOTEBOOK_ITEM = replace(
    torch_functions(
        "pytorch_notebook",
        NOTEBOOK_FILE,
        "pytorch_notebook",
        [
            _notebook("flatten", ("x",), C.nb_flatten),
            _notebook("two_layer_fc", ("x", "w1", "w2"), C.nb_two_layer_fc, pack=[0, [1, 2]]),
            _notebook(
                "three_layer_convnet",
                ("x", "conv_w1", "conv_b1", "conv_w2", "conv_b2", "fc_w", "fc_b"),
                C.nb_three_layer_convnet,
                pack=[0, [1, 2, 3, 4, 5, 6]],
            ),
            _notebook("random_weight", ("shape",), C.nb_weight_shapes("kaiming"), "weight_init"),
            _notebook("zero_weight", ("shape",), C.nb_weight_shapes("zero"), "weight_init"),
            _notebook(
                "TwoLayerFC",
                ("x",),
                C.nb_module_input,
                "notebook_module",
                arch="two_layer_fc",
                ctor_args=[3 * 32 * 32, 20, 10],
            ),
            *(
                _notebook(
                    "ThreeLayerConvNet",
                    ("x",),
                    C.nb_module_input,
                    "notebook_module",
                    arch="three_layer_convnet",
                    ctor_args=ctor,
                )
                for ctor in ([3, 6, 4, 10], [3, 4, 3, 7])
            ),
        ],
    ),
    files=(NOTEBOOK_FILE,),
)
ITEMS = (*ITEMS, _NOTEBOOK_ITEM)


def all_test_names() -> list[str]:
    return [t for item in ITEMS for t in item.tests.values()]


def _check_table() -> None:
    names = all_test_names()
    dup = {n for n in names if names.count(n) > 1}
    if dup:  # pragma: no cover - a table edit gone wrong
        raise RuntimeError(f"duplicate test names in the item table: {sorted(dup)}")
    ids = [i.name for i in ITEMS]
    if len(set(ids)) != len(ids):  # pragma: no cover
        raise RuntimeError("duplicate item names in the item table")


_check_table()
