"""CS231n's CaptioningTransformer in NumPy: forward, hand-derived backward and greedy sampling.

The twin of ``torch_impl.classifiers.transformer.CaptioningTransformer`` (the course writes this
model in PyTorch, ``cs231n/classifiers/transformer.py``), from "Attention Is All You Need"
(Vaswani et al., 2017): word embedding + sinusoidal positional encoding; the image features
projected to one memory step; ``num_layers`` post-norm decoder layers (masked self-attention,
cross-attention over the memory, a GELU feed-forward network, each followed by a residual
connection and layer normalization); an affine layer scoring the vocabulary.

``params`` uses the torch model's parameter names, so ``{name: p.detach().numpy() for name, p
in model.named_parameters()}`` loads a torch model's weights here and back:
``visual_projection.w`` (D, W), ``visual_projection.b`` (W,), ``embedding.W`` (V, W),
``transformer.layers.{i}.{self_attn,cross_attn}.{query,key,value,proj}.{w,b}`` (W, W) / (W,),
``transformer.layers.{i}.ffn.fc1.{w,b}`` (W, F) / (F,), ``...ffn.fc2.{w,b}`` (F, W) / (W,),
``transformer.layers.{i}.{norm_self,norm_cross,norm_ffn}.{gamma,beta}`` (W,),
``output.w`` (W, V), ``output.b`` (V,). Weights in CS231n's layout (``x @ w + b``).

This twin has no dropout: it is the torch model in eval mode (or built with ``dropout=0``).
``loss`` returns ``(loss, grads)`` like ``CaptioningRNN.loss`` (teacher forcing with input
``captions[:, :-1]``, targets ``captions[:, 1:]``, ``<NULL>`` targets masked out) but with the
loss of the course's CaptioningSolverTransformer: averaged over every position, not summed over
time. The ``<NULL>`` word vector gets no gradient (``nn.Embedding(padding_idx=<NULL>)`` in the
course).
"""

from __future__ import annotations

import math

import numpy as np

from twin_checks import (
    check_captioning_inputs,
    check_transformer_dims,
    check_vocab,
    require_int_param,
    require_ndim,
    require_shape,
)

from ..attention import (
    gelu_backward,
    gelu_forward,
    multihead_attention_backward,
    multihead_attention_forward,
    positional_encoding_backward,
    positional_encoding_forward,
)
from ..layers import affine_backward, affine_forward, layernorm_backward, layernorm_forward
from ..rnn_layers import (
    temporal_affine_backward,
    temporal_affine_forward,
    temporal_softmax_loss,
    word_embedding_backward,
    word_embedding_forward,
)

INIT_STD = 0.02  # the course's _init_weights: normal(0, 0.02)
LAYER_NORM_EPS = 1e-5

_ATTENTION_PROJECTIONS = ("query", "key", "value", "proj")
_NORMS = ("norm_self", "norm_cross", "norm_ffn")

# --------------------------------------------------------------------------------------------
# Layer normalization of every token
# --------------------------------------------------------------------------------------------


def token_layernorm_forward(x, gamma, beta):
    """CS231n's layernorm applied to every token: x (N, T, D), gamma, beta (D,).

    Returns out (N, T, D) and cache = (layernorm's cache, x's shape).
    """
    N, T, D = x.shape
    out, cache = layernorm_forward(x.reshape(N * T, D), gamma, beta, {"eps": LAYER_NORM_EPS})
    return out.reshape(N, T, D), (cache, x.shape)


def token_layernorm_backward(dout, cache):
    """dout (N, T, D) -> dx (N, T, D), dgamma (D,), dbeta (D,)."""
    ln_cache, shape = cache
    dx, dgamma, dbeta = layernorm_backward(dout.reshape(-1, shape[-1]), ln_cache)
    return dx.reshape(shape), dgamma, dbeta


# --------------------------------------------------------------------------------------------
# One decoder layer
# --------------------------------------------------------------------------------------------


def _mha_weights(p, block):
    """The eight projection arrays of attention ``block`` in multihead_attention_forward's order
    (Wq, bq, Wk, bk, Wv, bv, Wo, bo)."""
    return [p[f"{block}.{proj}.{k}"] for proj in _ATTENTION_PROJECTIONS for k in ("w", "b")]


def _mha_grads(block, grads):
    """multihead_attention_backward's (dWq, dbq, dWk, dbk, dWv, dbv, dWo, dbo) -> named dict."""
    names = [f"{block}.{proj}.{k}" for proj in _ATTENTION_PROJECTIONS for k in ("w", "b")]
    return dict(zip(names, grads, strict=True))


def decoder_layer_forward(tgt, memory, p, num_heads, tgt_mask):
    """Post-norm Transformer decoder layer (the course's TransformerDecoderLayer, dropout off).

    tgt: (N, T, W) caption tokens; memory: (N, S, W); p: this layer's parameters named as in the
    module docstring without the ``transformer.layers.{i}.`` prefix; tgt_mask: (T, T), 0 =
    blocked. Computes
        x1 = LN(x + SelfAttn(x)),  x2 = LN(x1 + CrossAttn(x1, memory)),
        out = LN(x2 + fc2(GELU(fc1(x2)))).
    Returns out (N, T, W) and cache, the tuple of the sub-layers' caches.
    """
    a, c_self = multihead_attention_forward(
        tgt, tgt, tgt, *_mha_weights(p, "self_attn"), num_heads, tgt_mask
    )
    x1, c_norm_self = token_layernorm_forward(a + tgt, p["norm_self.gamma"], p["norm_self.beta"])
    c, c_cross = multihead_attention_forward(
        x1, memory, memory, *_mha_weights(p, "cross_attn"), num_heads
    )
    x2, c_norm_cross = token_layernorm_forward(c + x1, p["norm_cross.gamma"], p["norm_cross.beta"])
    h, c_fc1 = temporal_affine_forward(x2, p["ffn.fc1.w"], p["ffn.fc1.b"])
    g, c_gelu = gelu_forward(h)
    f, c_fc2 = temporal_affine_forward(g, p["ffn.fc2.w"], p["ffn.fc2.b"])
    out, c_norm_ffn = token_layernorm_forward(f + x2, p["norm_ffn.gamma"], p["norm_ffn.beta"])
    return out, (c_self, c_norm_self, c_cross, c_norm_cross, c_fc1, c_gelu, c_fc2, c_norm_ffn)


def decoder_layer_backward(dout, cache):
    """Backward of :func:`decoder_layer_forward`.

    dout: (N, T, W). Returns dtgt (N, T, W), dmemory (N, S, W) and a dict of this layer's
    parameter gradients (the keys of p).
    """
    c_self, c_norm_self, c_cross, c_norm_cross, c_fc1, c_gelu, c_fc2, c_norm_ffn = cache
    grads = {}
    # out = LN(f + x2): the residual sends the same gradient to f and to x2.
    ds, grads["norm_ffn.gamma"], grads["norm_ffn.beta"] = token_layernorm_backward(dout, c_norm_ffn)
    dg, grads["ffn.fc2.w"], grads["ffn.fc2.b"] = temporal_affine_backward(ds, c_fc2)
    dh = gelu_backward(dg, c_gelu)
    dx2, grads["ffn.fc1.w"], grads["ffn.fc1.b"] = temporal_affine_backward(dh, c_fc1)
    dx2 = dx2 + ds
    # x2 = LN(c + x1), c = CrossAttn(query=x1, key=value=memory).
    ds, grads["norm_cross.gamma"], grads["norm_cross.beta"] = token_layernorm_backward(
        dx2, c_norm_cross
    )
    dq, dk, dv, *dw = multihead_attention_backward(ds, c_cross)
    grads.update(_mha_grads("cross_attn", dw))
    dx1, dmemory = dq + ds, dk + dv
    # x1 = LN(a + x), a = SelfAttn(x, x, x): x receives the query, key and value gradients.
    ds, grads["norm_self.gamma"], grads["norm_self.beta"] = token_layernorm_backward(
        dx1, c_norm_self
    )
    dq, dk, dv, *dw = multihead_attention_backward(ds, c_self)
    grads.update(_mha_grads("self_attn", dw))
    return ds + dq + dk + dv, dmemory, grads


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


def _layer_param_shapes(W: int, F: int) -> dict:
    """Shapes of one decoder layer's parameters (names without the layer prefix)."""
    shapes = {}
    for block in ("self_attn", "cross_attn"):
        for proj in _ATTENTION_PROJECTIONS:
            shapes[f"{block}.{proj}.w"] = (W, W)
            shapes[f"{block}.{proj}.b"] = (W,)
    shapes.update({"ffn.fc1.w": (W, F), "ffn.fc1.b": (F,), "ffn.fc2.w": (F, W), "ffn.fc2.b": (W,)})
    for norm in _NORMS:
        shapes[f"{norm}.gamma"] = (W,)
        shapes[f"{norm}.beta"] = (W,)
    return shapes


def _initial_value(name: str, shape: tuple, rng):
    """The course's _init_weights: affine weights and word vectors ~ N(0, 0.02^2), biases and
    layer norm betas 0, gammas 1."""
    if name.endswith(".gamma"):
        return np.ones(shape)
    if name.endswith(".b") or name.endswith(".beta"):
        return np.zeros(shape)
    return rng.normal(0.0, INIT_STD, size=shape)


class CaptioningTransformer:
    """Image captioning with a Transformer decoder, NumPy twin (see the module docstring).

    word_to_idx: dict of the V words -> [0, V) with '<NULL>' (and '<START>' for sampling);
    input_dim D; wordvec_dim W (even, divisible by num_heads); num_layers; max_length: the
    longest caption. Keyword-only: dim_feedforward F (the course's 2048); dtype of the
    parameters (float64 for gradient checks); seed of the initialization (NumPy Generator).
    """

    def __init__(
        self,
        word_to_idx,
        input_dim,
        wordvec_dim,
        num_heads=4,
        num_layers=2,
        max_length=50,
        *,
        dim_feedforward=2048,
        dtype=np.float32,
        seed=None,
    ):
        V = check_vocab(word_to_idx)
        check_transformer_dims(input_dim, wordvec_dim, num_heads, num_layers, max_length)
        F = require_int_param("dim_feedforward", dim_feedforward, 1)
        self.word_to_idx = word_to_idx
        self.idx_to_word = {i: w for w, i in word_to_idx.items()}
        self.vocab_size = V
        self.input_dim = input_dim
        self.num_heads = num_heads
        self.num_layers = num_layers
        self.max_length = max_length
        self.dtype = dtype
        self._null = word_to_idx["<NULL>"]
        self._start = word_to_idx.get("<START>", None)
        self._end = word_to_idx.get("<END>", None)

        rng = np.random.default_rng(seed)
        W = wordvec_dim
        shapes = {"visual_projection.w": (input_dim, W), "visual_projection.b": (W,)}
        shapes["embedding.W"] = (V, W)
        for i in range(num_layers):
            for name, shape in _layer_param_shapes(W, F).items():
                shapes[f"transformer.layers.{i}.{name}"] = shape
        self.params = {name: _initial_value(name, shape, rng) for name, shape in shapes.items()}
        # The output layer keeps the default affine initialization U(+-1/sqrt(W)) (the course
        # creates it after applying _init_weights).
        bound = 1.0 / math.sqrt(W)
        self.params["output.w"] = rng.uniform(-bound, bound, size=(W, V))
        self.params["output.b"] = rng.uniform(-bound, bound, size=(V,))
        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)

    def _layer_params(self, i: int) -> dict:
        prefix = f"transformer.layers.{i}."
        return {k[len(prefix) :]: v for k, v in self.params.items() if k.startswith(prefix)}

    def _forward(self, features, captions):
        """scores (N, T, V) and the caches of every layer."""
        N, T = check_captioning_inputs(
            features, captions, self.input_dim, self.vocab_size, self.max_length
        )
        p = self.params
        x, c_embed = word_embedding_forward(captions, p["embedding.W"])
        tgt, c_pe = positional_encoding_forward(x)
        memory, c_proj = affine_forward(
            features, p["visual_projection.w"], p["visual_projection.b"]
        )
        memory = memory[:, None, :]  # one memory step per image
        tgt_mask = np.tril(np.ones((T, T), dtype=bool))  # position t sees positions 0..t
        c_layers = []
        for i in range(self.num_layers):
            tgt, c = decoder_layer_forward(
                tgt, memory, self._layer_params(i), self.num_heads, tgt_mask
            )
            c_layers.append(c)
        scores, c_out = temporal_affine_forward(tgt, p["output.w"], p["output.b"])
        return scores, (c_embed, c_pe, c_proj, c_layers, c_out)

    def forward(self, features, captions):
        """features: float (N, D); captions: integer (N, T) in [0, V), T <= max_length.

        Returns scores (N, T, V), position t seeing captions[:, :t+1] only.
        """
        return self._forward(features, captions)[0]

    def loss(self, features, captions):
        """Teacher-forced training loss and the gradient of every parameter.

        features: float (N, D); captions: integer (N, T) with 2 <= T <= max_length + 1, each
        starting with <START>. The loss is the course's ``transformer_temporal_softmax_loss``:
        the cross-entropy of every position, <NULL> targets counted as 0, averaged over all
        N * (T - 1) positions (temporal_softmax_loss / (T - 1)). Returns (loss, grads), grads
        holding the keys of self.params.
        """
        require_ndim("captions", captions, 2, "(N, T)")
        if captions.shape[1] < 2:
            raise ValueError(
                f"captions need at least 2 words (an input and a target), got shape "
                f"{tuple(captions.shape)}"
            )
        captions_in, captions_out = captions[:, :-1], captions[:, 1:]
        scores, (c_embed, c_pe, c_proj, c_layers, c_out) = self._forward(features, captions_in)
        loss, dscores = temporal_softmax_loss(scores, captions_out, captions_out != self._null)
        positions = captions_out.shape[1]  # the mean over time the course's solver takes
        loss, dscores = loss / positions, dscores / positions

        grads = {}
        dtgt, grads["output.w"], grads["output.b"] = temporal_affine_backward(dscores, c_out)
        dmemory = 0.0
        for i in reversed(range(self.num_layers)):
            dtgt, dmem, layer_grads = decoder_layer_backward(dtgt, c_layers[i])
            dmemory = dmemory + dmem  # every layer attends to the same memory
            grads.update({f"transformer.layers.{i}.{k}": g for k, g in layer_grads.items()})
        _, grads["visual_projection.w"], grads["visual_projection.b"] = affine_backward(
            dmemory[:, 0, :], c_proj
        )
        dW = word_embedding_backward(positional_encoding_backward(dtgt, c_pe), c_embed)
        dW[self._null] = 0  # padding_idx: the <NULL> word vector is not trained
        grads["embedding.W"] = dW
        return loss, grads

    def sample(self, features, max_length=30):
        """Greedy decoding: from '<START>', append the arg-max word of the last position.

        features: float (N, D). Returns captions: int64 (N, max_length) (every step is filled;
        words after '<END>' are not meaningful).
        """
        max_length = require_int_param("max_length", max_length, 1)
        if max_length > self.max_length:
            raise ValueError(
                f"max_length={max_length} exceeds the model's max_length={self.max_length} "
                "(the positional encoding's length)"
            )
        if self._start is None:
            raise ValueError("sample needs a '<START>' token in word_to_idx")
        require_ndim("features", features, 2, "(N, D)")
        require_shape("features", features, (None, self.input_dim))
        partial = np.full((features.shape[0], 1), self._start, dtype=np.int64)
        for _ in range(max_length):
            word = self.forward(features, partial)[:, -1, :].argmax(axis=1)
            partial = np.concatenate([partial, word[:, None]], axis=1)
        return partial[:, 1:]
