"""CaptioningTransformer in both twins: the course's construction, shapes, the NumPy model's
gradients against centered differences, numpy-vs-torch parity (scores, loss, every gradient,
greedy samples), the torch model against nn.TransformerDecoderLayer with the same weights, and
bad input.

Small configurations (word vectors of 4 to 8, feed-forward width 6 to 12) keep every test fast;
the course's sizes only change the widths.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from numpy_impl.attention import gelu_backward, gelu_forward
from numpy_impl.classifiers.transformer import CaptioningTransformer as NumpyTransformer
from numpy_impl.gradient_check import rel_error
from numpy_impl.rnn_layers import temporal_softmax_loss
from parity_tests.checks import numerical_gradient_4th
from parity_tests.tolerances import ASSERT_CLOSE, GRADCHECK, REL_ERROR
from torch_impl.classifiers.transformer import CaptioningTransformer

WORDS = ["<NULL>", "<START>", "<END>", "a", "cat", "dog", "sat", "on", "mat"]
WORD_TO_IDX = {w: i for i, w in enumerate(WORDS)}
NULL, START, END = 0, 1, 2


def _captions(rng, N, T):
    """(N, T) captions '<START> words... <END> <NULL>...' of random lengths (some unpadded)."""
    captions = np.full((N, T), NULL, dtype=np.int64)
    for n in range(N):
        k = int(rng.integers(0, T - 1))  # words between <START> and <END>, <END> may be cut off
        row = [START, *rng.integers(3, len(WORDS), k), END][:T]
        captions[n, : len(row)] = row
    return captions


def _config(rng):
    """Random small sizes: (N, T, D, W, heads, layers, F)."""
    heads = int(rng.choice([1, 2]))
    W = 2 * heads * int(rng.integers(1, 3))
    return (
        int(rng.integers(1, 4)),
        int(rng.integers(2, 6)),
        int(rng.integers(1, 5)),
        W,
        heads,
        int(rng.integers(1, 3)),
        int(rng.integers(3, 8)),
    )


def _pair(rng, D, W, heads, layers, Fdim, scale=0.5):
    """A float64 torch model in eval mode with N(0, scale^2) weights (layer norm gammas near 1)
    and the NumPy twin holding the same arrays."""
    torch_model = CaptioningTransformer(
        WORD_TO_IDX, D, W, num_heads=heads, num_layers=layers, max_length=8, dim_feedforward=Fdim
    )
    torch_model = torch_model.double().eval()
    with torch.no_grad():
        for name, p in torch_model.named_parameters():
            values = scale * rng.standard_normal(tuple(p.shape))
            p.copy_(torch.from_numpy(values + (1.0 if name.endswith("gamma") else 0.0)))
    numpy_model = NumpyTransformer(
        WORD_TO_IDX, D, W, heads, layers, 8, dim_feedforward=Fdim, dtype=np.float64
    )
    assert set(numpy_model.params) == {n for n, _ in torch_model.named_parameters()}
    numpy_model.params = {n: p.detach().numpy().copy() for n, p in torch_model.named_parameters()}
    return torch_model, numpy_model


# ----------------------------------------------------------------------------------------------
# Construction
# ----------------------------------------------------------------------------------------------


def test_course_attributes_and_initialization():
    torch.manual_seed(0)
    W, V = 64, len(WORDS)
    model = CaptioningTransformer(WORD_TO_IDX, 40, W, num_heads=4, num_layers=2)
    assert (model._null, model._start, model._end, model.vocab_size) == (NULL, START, END, V)
    for name in ("visual_projection", "embedding", "positional_encoding", "transformer", "output"):
        assert hasattr(model, name), name
    assert len(model.transformer.layers) == 2
    layer = model.transformer.layers[0]
    assert layer.ffn.fc1.w.shape == (W, 2048)  # the course's fixed feed-forward width
    # dropout=0.1 (the course's drop probability) is held as torch_impl's keep probability
    assert layer.self_attn.attn_drop.p == 0.9 and model.positional_encoding.dropout.p == 0.9
    assert model.positional_encoding.pe.shape == (1, 50, W)  # max_length=50
    # Two decoder layers are independent copies, not one shared module.
    assert layer.ffn.fc1.w is not model.transformer.layers[1].ffn.fc1.w

    weights = [model.visual_projection.w, model.embedding.W]
    for block in model.transformer.layers:
        for attn in (block.self_attn, block.cross_attn):
            weights += [attn.query.w, attn.key.w, attn.value.w, attn.proj.w]
        weights += [block.ffn.fc1.w, block.ffn.fc2.w]
    values = torch.cat([w.detach().reshape(-1) for w in weights])
    assert abs(values.mean().item()) < 1e-3
    assert values.std().item() == pytest.approx(0.02, rel=0.02)
    biases = [m.b for m in model.modules() if hasattr(m, "b") and m is not model.output]
    assert all((b == 0).all() for b in biases) and len(biases) == 1 + 2 * (8 + 2)
    for block in model.transformer.layers:
        for norm in (block.norm_self, block.norm_cross, block.norm_ffn):
            assert (norm.gamma == 1).all() and (norm.beta == 0).all()
    # The output layer is created after _init_weights: the default U(-1/sqrt(W), 1/sqrt(W)).
    bound = 1 / np.sqrt(W)
    for p in (model.output.w, model.output.b):
        assert p.abs().max().item() <= bound and p.std().item() > 0.3 * bound


def test_seeded_construction_is_deterministic():
    def build(seed):
        torch.manual_seed(seed)
        return CaptioningTransformer(WORD_TO_IDX, 5, 8, num_heads=2, num_layers=2)

    a, b, c = build(3), build(3), build(4)
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(p, q), name
        if p.std() > 0:
            assert not torch.equal(p, r), name
    numpy_a = NumpyTransformer(WORD_TO_IDX, 5, 8, 2, seed=3)
    numpy_b = NumpyTransformer(WORD_TO_IDX, 5, 8, 2, seed=3)
    for k, v in numpy_a.params.items():
        np.testing.assert_array_equal(v, numpy_b.params[k])


def test_positional_table_is_exact_after_a_dtype_change():
    # .double() used to cast the float32 table, keeping its rounding (3e-8 off float64's).
    from numpy_impl.attention import positional_encoding
    from torch_impl.transformer_layers import PositionalEncoding

    pe = PositionalEncoding(8, max_len=12).double()
    np.testing.assert_array_equal(pe.pe[0].numpy(), positional_encoding(12, 8))
    assert pe.float().pe.dtype == torch.float32 and list(pe.state_dict()) == ["pe"]


# ----------------------------------------------------------------------------------------------
# Shapes
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_forward_and_sample_shapes(seed):
    rng = np.random.default_rng(seed)
    N, T, D, W, heads, layers, Fdim = _config(rng)
    N = [0, 1, N, N][seed]  # an empty batch and a batch of one among them
    torch_model, numpy_model = _pair(rng, D, W, heads, layers, Fdim)
    features = rng.standard_normal((N, D))
    captions = _captions(rng, N, T)
    scores = torch_model(torch.from_numpy(features), torch.from_numpy(captions))
    assert scores.shape == (N, T, len(WORDS)) and scores.dtype == torch.float64
    assert numpy_model.forward(features, captions).shape == (N, T, len(WORDS))
    for samples in (
        torch_model.sample(torch.from_numpy(features), max_length=5),
        numpy_model.sample(features, max_length=5),
    ):
        assert tuple(samples.shape) == (N, 5)
        assert str(samples.dtype).endswith("int64")


def test_float32_model_keeps_float32():
    torch.manual_seed(0)
    model = CaptioningTransformer(WORD_TO_IDX, 3, 4, num_heads=2, num_layers=1)
    scores = model(torch.randn(2, 3), torch.tensor([[START, 3, 4], [START, 5, END]]))
    assert scores.dtype == torch.float32
    numpy_model = NumpyTransformer(WORD_TO_IDX, 3, 4, 2, 1, dim_feedforward=6)
    out = numpy_model.forward(np.ones((2, 3), np.float32), np.array([[START, 3], [START, 4]]))
    assert out.dtype == np.float32


# ----------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------


def _forward_loss(model, features, captions):
    """The training loss from the forward pass alone (what the numerical gradient needs): the
    course's transformer loss, the masked cross-entropy averaged over all N * T positions."""
    scores = model.forward(features, captions[:, :-1])
    targets = captions[:, 1:]
    return temporal_softmax_loss(scores, targets, targets != NULL)[0] / targets.shape[1]


def _centered_difference(model, features, captions, param, index, h=1e-5):
    old = param[index]
    param[index] = old + h
    plus = _forward_loss(model, features, captions)
    param[index] = old - h
    minus = _forward_loss(model, features, captions)
    param[index] = old
    return (plus - minus) / (2 * h)


@pytest.mark.parametrize(("layers", "per_array"), [(1, None), (2, 2)])
def test_numpy_loss_gradients_match_centered_differences(layers, per_array):
    """Every entry of every parameter for one layer; two random entries per parameter array
    for two layers (the second layer's code is the same; what changes is the gradient
    reaching the first layer through it)."""
    rng = np.random.default_rng(10 + layers)
    _, model = _pair(rng, D=3, W=4, heads=2, layers=layers, Fdim=3)
    features = rng.standard_normal((2, 3))
    captions = _captions(rng, 2, 5)
    captions[0, 1:] = [3, 4, END, NULL]  # padding and <END> both present
    loss, grads = model.loss(features, captions)
    assert loss == pytest.approx(_forward_loss(model, features, captions), rel=1e-15)
    assert set(grads) == set(model.params)
    for name, param in model.params.items():
        indices = list(np.ndindex(param.shape))
        if per_array is not None:
            indices = [indices[i] for i in rng.choice(len(indices), per_array, replace=False)]
        numerical = np.array(
            [_centered_difference(model, features, captions, param, i) for i in indices]
        )
        analytic = np.array([grads[name][i] for i in indices])
        if name.endswith("attn.key.b"):
            # q . (k + bk) shifts every score of a query by the same q . bk: the softmax, hence
            # the loss, does not depend on the key bias. Analytically its gradient is round-off;
            # numerically, differences of the loss's round-off (~1e-15 / h).
            assert np.abs(analytic).max() < 1e-14, name
            assert np.abs(numerical).max() < 1e-9, name
            continue
        assert rel_error(analytic, numerical) < REL_ERROR["numerical_model"], name
    # Cross-attention over a single memory step: the softmax is 1 whatever q and k are.
    assert not grads["transformer.layers.0.cross_attn.query.w"].any()
    # padding_idx: the <NULL> word vector is never trained.
    assert not grads["embedding.W"][NULL].any()
    assert grads["embedding.W"][START].any()


def test_gelu_backward_matches_centered_differences():
    rng = np.random.default_rng(0)
    # Within +-4 (beyond, the gradient is below 1e-3 and decays like exp(-x^2 / 2)); fourth-order
    # differences, as GELU' crosses zero near x = -0.75, where an entry may be small.
    x = rng.uniform(-4, 4, (4, 5))
    dout = rng.standard_normal((4, 5))
    out, cache = gelu_forward(x)
    numerical = numerical_gradient_4th(lambda v: gelu_forward(v)[0], x.copy(), dout)
    assert rel_error(gelu_backward(dout, cache), numerical) < REL_ERROR["numerical_layer"]
    np.testing.assert_allclose(out, F.gelu(torch.from_numpy(x)).numpy(), rtol=1e-14, atol=1e-15)
    x32 = x.astype(np.float32)
    assert gelu_forward(x32)[0].dtype == np.float32
    assert gelu_backward(dout.astype(np.float32), gelu_forward(x32)[1]).dtype == np.float32


def test_torch_gradcheck_through_each_kind_of_parameter():
    """torch.autograd.gradcheck of the whole torch model with respect to the features and one
    parameter of each kind (the others held fixed); captions without '<NULL>', whose word vector
    gets no gradient on purpose (padding_idx)."""
    rng = np.random.default_rng(1)
    model, _ = _pair(rng, D=3, W=4, heads=2, layers=1, Fdim=3)
    checked = [
        "visual_projection.b",
        "embedding.W",
        "transformer.layers.0.self_attn.query.w",
        "transformer.layers.0.cross_attn.value.b",
        "transformer.layers.0.ffn.fc1.w",
        "transformer.layers.0.norm_self.gamma",
        "output.b",
    ]
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in checked}
    features = torch.from_numpy(rng.standard_normal((2, 3))).requires_grad_()
    captions = torch.from_numpy(rng.integers(1, len(WORDS), (2, 4)))
    dout = torch.from_numpy(rng.standard_normal((2, 4, len(WORDS))))

    def weighted_scores(features, *params):
        weights = {**fixed, **dict(zip(checked, params, strict=True))}
        out = torch.func.functional_call(model, weights, (features, captions))
        return (out * dout).sum()

    params = [dict(model.named_parameters())[n].detach().clone().requires_grad_() for n in checked]
    assert torch.autograd.gradcheck(weighted_scores, (features, *params), **GRADCHECK)


# ----------------------------------------------------------------------------------------------
# Twin parity and the builtin
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_twins_agree_on_scores_loss_gradients_and_samples(seed):
    rng = np.random.default_rng(100 + seed)
    N, T, D, W, heads, layers, Fdim = _config(rng)
    torch_model, numpy_model = _pair(rng, D, W, heads, layers, Fdim)
    features = rng.standard_normal((N, D))
    captions = _captions(rng, N, T + 1)
    tol = REL_ERROR["twin_float64"]

    scores = torch_model(torch.from_numpy(features), torch.from_numpy(captions[:, :-1]))
    ref = numpy_model.forward(features, captions[:, :-1])
    assert rel_error(scores.detach().numpy(), ref) < tol

    loss = torch_model.loss(torch.from_numpy(features), torch.from_numpy(captions))
    loss.backward()
    numpy_loss, grads = numpy_model.loss(features, captions)
    assert rel_error(loss.item(), numpy_loss) < tol
    for name, p in torch_model.named_parameters():
        if name.endswith("attn.key.b"):  # no influence on the loss: both are round-off
            assert np.abs(p.grad.numpy()).max() < 1e-14 and np.abs(grads[name]).max() < 1e-14
            continue
        assert rel_error(p.grad.numpy(), grads[name]) < tol, name

    np.testing.assert_array_equal(
        torch_model.sample(torch.from_numpy(features), max_length=7).numpy(),
        numpy_model.sample(features, max_length=7),
    )


def _builtin_decoder_layer(layer, W, heads, Fdim):
    """nn.TransformerDecoderLayer (post-norm, GELU, no dropout) holding layer's weights."""
    ref = nn.TransformerDecoderLayer(
        W, heads, Fdim, dropout=0.0, activation="gelu", batch_first=True, dtype=torch.float64
    )
    with torch.no_grad():
        for ours, theirs in (
            (layer.self_attn, ref.self_attn),
            (layer.cross_attn, ref.multihead_attn),
        ):
            theirs.in_proj_weight.copy_(torch.cat([ours.query.w.T, ours.key.w.T, ours.value.w.T]))
            theirs.in_proj_bias.copy_(torch.cat([ours.query.b, ours.key.b, ours.value.b]))
            theirs.out_proj.weight.copy_(ours.proj.w.T)
            theirs.out_proj.bias.copy_(ours.proj.b)
        for fc, linear in ((layer.ffn.fc1, ref.linear1), (layer.ffn.fc2, ref.linear2)):
            linear.weight.copy_(fc.w.T)
            linear.bias.copy_(fc.b)
        for norm, ln in (
            (layer.norm_self, ref.norm1),
            (layer.norm_cross, ref.norm2),
            (layer.norm_ffn, ref.norm3),
        ):
            ln.weight.copy_(norm.gamma)
            ln.bias.copy_(norm.beta)
    return ref


@pytest.mark.parametrize("seed", range(3))
def test_torch_model_matches_builtin_transformer_decoder(seed):
    rng = np.random.default_rng(200 + seed)
    N, T, D, W, heads, layers, Fdim = _config(rng)
    model, _ = _pair(rng, D, W, heads, layers, Fdim)
    features = torch.from_numpy(rng.standard_normal((N, D)))
    captions = torch.from_numpy(_captions(rng, N, T))
    builtins = [_builtin_decoder_layer(lay, W, heads, Fdim) for lay in model.transformer.layers]

    x = F.embedding(captions, model.embedding.W.detach(), padding_idx=NULL)
    position = torch.arange(T, dtype=torch.float64)[:, None]
    freq = 10000.0 ** (-torch.arange(0, W, 2, dtype=torch.float64) / W)
    pe = torch.stack([torch.sin(position * freq), torch.cos(position * freq)], -1).reshape(T, W)
    memory = F.linear(features, model.visual_projection.w.T, model.visual_projection.b)[:, None]
    blocked = ~torch.tril(torch.ones(T, T, dtype=torch.bool))  # nn's mask: True = blocked
    h = x + pe
    for ref in builtins:
        h = ref(h, memory, tgt_mask=blocked)
    expected = F.linear(h, model.output.w.T, model.output.b)
    torch.testing.assert_close(model(features, captions), expected, **ASSERT_CLOSE["float64"])


def test_padding_row_gets_no_gradient_like_nn_embedding():
    rng = np.random.default_rng(3)
    model, _ = _pair(rng, D=3, W=4, heads=2, layers=1, Fdim=3)
    captions = torch.tensor([[START, 3, NULL, NULL], [START, NULL, 4, END]])
    scores = model(torch.from_numpy(rng.standard_normal((2, 3))), captions)
    scores.backward(torch.from_numpy(rng.standard_normal(tuple(scores.shape))))
    grad = model.embedding.W.grad
    assert not grad[NULL].any() and grad[START].any() and grad[4].any()
    assert not grad[5:].any()  # words that do not occur


def test_sample_is_greedy_and_restores_training_mode():
    rng = np.random.default_rng(4)
    torch.manual_seed(4)
    model = CaptioningTransformer(WORD_TO_IDX, 3, 8, num_heads=2, num_layers=2, max_length=9)
    model.train()  # dropout 0.1 on: sampling must still be deterministic
    features = torch.from_numpy(rng.standard_normal((3, 3))).float()
    samples = model.sample(features, max_length=6)
    assert model.training
    torch.testing.assert_close(model.sample(features, max_length=6), samples, rtol=0, atol=0)
    model.eval()
    partial = torch.full((3, 1), START)
    for t in range(6):
        word = model(features, partial)[:, -1].argmax(dim=1)
        assert torch.equal(samples[:, t], word)
        partial = torch.cat([partial, word[:, None]], dim=1)


def test_dropout_acts_in_training_mode_only():
    torch.manual_seed(5)
    model = CaptioningTransformer(WORD_TO_IDX, 3, 8, num_heads=2, num_layers=1)
    features, captions = torch.randn(2, 3), torch.tensor([[START, 3, 4], [START, 5, END]])
    model.train()
    assert not torch.equal(model(features, captions), model(features, captions))
    model.eval()
    assert torch.equal(model(features, captions), model(features, captions))


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


def _models():
    torch.manual_seed(0)
    return (
        CaptioningTransformer(WORD_TO_IDX, 3, 4, num_heads=2, num_layers=1, max_length=5),
        NumpyTransformer(WORD_TO_IDX, 3, 4, 2, 1, 5, dim_feedforward=6),
    )


def _call(model, features, captions):
    if isinstance(model, nn.Module):
        return model(torch.as_tensor(features), torch.as_tensor(captions))
    return model.forward(features, captions)


GOOD_CAPTIONS = np.array([[START, 3, 4], [START, 5, END]])


@pytest.mark.parametrize(
    ("features", "captions", "error", "match"),
    [
        (np.zeros((2, 4), np.float32), GOOD_CAPTIONS, ValueError, r"features must have shape"),
        (np.zeros(3, np.float32), GOOD_CAPTIONS, ValueError, r"features must have 2 dim"),
        (np.zeros((2, 3), np.float32), GOOD_CAPTIONS.astype(np.float32), TypeError, r"integer"),
        (np.zeros((2, 3), np.float32), GOOD_CAPTIONS[:1], ValueError, r"captions must have shape"),
        (np.zeros((2, 3), np.float32), GOOD_CAPTIONS + 9, ValueError, r"\[0, 9\)"),
        (np.zeros((2, 3), np.float32), np.ones((2, 6), np.int64), ValueError, r"max_length=5"),
        (np.zeros((2, 3), np.int64), GOOD_CAPTIONS, TypeError, r"features"),
    ],
)
def test_bad_inputs_raise_clear_errors_in_both_twins(features, captions, error, match):
    for model in _models():
        with pytest.raises(error, match=match):
            _call(model, features, captions)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(wordvec_dim=6, num_heads=4), r"wordvec_dim=6 must be divisible by num_heads=4"),
        (dict(wordvec_dim=5, num_heads=1), r"wordvec_dim must be even"),
        (dict(wordvec_dim=4, num_heads=0), r"num_heads"),
        (dict(wordvec_dim=4, num_heads=2, num_layers=0), r"num_layers"),
    ],
)
def test_bad_sizes_raise_clear_errors_in_both_twins(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CaptioningTransformer(WORD_TO_IDX, 3, **kwargs)
    with pytest.raises(ValueError, match=match):
        NumpyTransformer(WORD_TO_IDX, 3, **kwargs)


def test_features_of_another_dtype_are_named():
    torch_model, _ = _models()
    with pytest.raises(TypeError, match="features must have the model's dtype torch.float32"):
        torch_model(torch.zeros(2, 3, dtype=torch.float64), torch.from_numpy(GOOD_CAPTIONS))


def test_bad_vocabulary_and_sample_arguments():
    for cls in (CaptioningTransformer, NumpyTransformer):
        with pytest.raises(ValueError, match="<NULL>"):
            cls({"<START>": 0, "a": 1}, 3, 4, 2)
        with pytest.raises(ValueError, match="indices 0..2"):
            cls({"<NULL>": 0, "<START>": 1, "a": 5}, 3, 4, 2)
    torch_model, numpy_model = _models()
    with pytest.raises(ValueError, match="max_length=6 exceeds the model's max_length=5"):
        torch_model.sample(torch.zeros(1, 3), max_length=6)
    with pytest.raises(ValueError, match="max_length=6 exceeds the model's max_length=5"):
        numpy_model.sample(np.zeros((1, 3), np.float32), max_length=6)
    with pytest.raises(ValueError, match="at least 2 words"):
        torch_model.loss(torch.zeros(1, 3), torch.tensor([[START]]))
    with pytest.raises(ValueError, match="at least 2 words"):
        numpy_model.loss(np.zeros((1, 3), np.float32), np.array([[START]]))


# ----------------------------------------------------------------------------------------------
# CUDA (skipped without a device)
# ----------------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_model_on_cuda_matches_cpu():
    rng = np.random.default_rng(7)
    model, _ = _pair(rng, D=3, W=8, heads=2, layers=2, Fdim=6)
    features = torch.from_numpy(rng.standard_normal((3, 3)))
    captions = torch.from_numpy(_captions(rng, 3, 6))
    cpu_loss = model.loss(features, captions)
    cpu_loss.backward()
    cpu_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    cpu_samples = model.sample(features, max_length=6)
    model.zero_grad()
    model.cuda()
    assert model.positional_encoding.pe.device.type == "cuda"
    gpu_loss = model.loss(features.cuda(), captions.cuda())
    gpu_loss.backward()
    torch.testing.assert_close(gpu_loss.cpu(), cpu_loss.detach(), **ASSERT_CLOSE["float64"])
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad.cpu(), cpu_grads[name], **ASSERT_CLOSE["float64"])
    samples = model.sample(features.cuda(), max_length=6)
    assert samples.device.type == "cuda"
    assert torch.equal(samples.cpu(), cpu_samples)
