"""CS231n's CaptioningTransformer (assignment 3), built on torch_impl's layers.

The model of "Attention Is All You Need" (Vaswani et al., 2017) used as a captioning decoder:
the caption's words are embedded and given the sinusoidal positional encoding; the image feature
vector is projected to the word-vector size and serves as a one-step ``memory``; a stack of
post-norm decoder layers attends causally over the caption (a lower-triangular mask) and across
to the memory; an affine layer scores the vocabulary at every position.

Same class, constructor arguments, attribute names and initialization as the course's
``cs231n/classifiers/transformer.py``:

- ``visual_projection``: ``torch_impl.nn.Affine`` (input_dim, wordvec_dim), features (N, D) ->
  (N, W); used as memory (N, 1, W).
- ``embedding``: :class:`PaddedWordEmbedding` (V, W), ``nn.Embedding(padding_idx=<NULL>)``'s
  behaviour: the ``<NULL>`` row is looked up like any other but never receives a gradient.
- ``positional_encoding``: ``PositionalEncoding(wordvec_dim, max_len=max_length)``.
- ``transformer``: :class:`TransformerDecoder`, ``num_layers`` copies of
  ``TransformerDecoderLayer(wordvec_dim, num_heads)`` (dim_feedforward 2048, dropout 0.1).
- ``output``: ``TemporalAffine`` (W, V).

Initialization (the course's ``_init_weights``, applied with ``self.apply`` BEFORE ``output`` is
created): every affine weight and the embedding ~ N(0, 0.02^2), affine biases 0, layer norms
gamma 1 / beta 0; ``output`` keeps the default affine initialization U(+-1/sqrt(W)) (as the
course's ``nn.Linear`` does, being created after ``apply``). With ``torch.manual_seed`` the
construction is deterministic. Weights use CS231n's layout (``x @ w + b``), the transpose of
``nn.Linear.weight``.

Keyword-only extensions (defaults = the course's fixed values): ``dim_feedforward`` and
``dropout`` of the decoder layers and positional encoding.

Differences from the course, on purpose: ``sample`` returns a torch int64 tensor (the course
returns a NumPy int32 array; the torch twin stays NumPy-free) and samples with dropout off,
restoring the module's mode afterwards (the course samples in whatever mode the model is in).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from twin_checks import (
    check_captioning_inputs,
    check_transformer_dims,
    check_vocab,
    require_int_param,
    require_ndim,
)

from ..nn import Affine
from ..rnn_layers import (
    TemporalAffine,
    WordEmbedding,
    WordEmbeddingFunction,
    temporal_softmax_loss,
)
from ..transformer_layers import LayerNorm, PositionalEncoding, TransformerDecoderLayer

__all__ = ["CaptioningTransformer", "PaddedWordEmbedding", "TransformerDecoder"]

INIT_STD = 0.02  # the course's _init_weights: normal(0, 0.02)


class PaddedWordEmbedding(WordEmbedding):
    """Word vectors W (V, D) whose ``padding_idx`` row gets no gradient (nn.Embedding's
    ``padding_idx``); forward(x int (N, T)) -> (N, T, D)."""

    def __init__(self, vocab_size, embed_dim, padding_idx, device=None, dtype=None):
        super().__init__(vocab_size, embed_dim, device=device, dtype=dtype)
        self.padding_idx = int(padding_idx)

    def forward(self, x):
        W = self.W
        frozen = torch.arange(W.shape[0], device=W.device) == self.padding_idx
        # The padding row enters the lookup detached, so its gradient is zero.
        W = torch.where(frozen[:, None], W.detach(), W)
        return WordEmbeddingFunction.apply(x, W)

    def extra_repr(self) -> str:
        V, D = self.W.shape
        return f"vocab_size={V}, embed_dim={D}, padding_idx={self.padding_idx}"


class TransformerDecoder(nn.Module):
    """``num_layers`` independent copies of ``decoder_layer`` applied in turn (the course's
    TransformerDecoder); forward(tgt (N, T, D), memory (N, S, D), tgt_mask (T, T) or None)."""

    def __init__(self, decoder_layer, num_layers):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(decoder_layer) for _ in range(num_layers))
        self.num_layers = num_layers

    def forward(self, tgt, memory, tgt_mask=None):
        for layer in self.layers:
            tgt = layer(tgt, memory, tgt_mask=tgt_mask)
        return tgt


class CaptioningTransformer(nn.Module):
    """Image captioning with a Transformer decoder (see the module docstring).

    word_to_idx: dict of the V words -> [0, V) with '<NULL>' (and '<START>' for sampling);
    input_dim D: image feature size; wordvec_dim W: word-vector and model width (even, divisible
    by num_heads); num_layers decoder layers; max_length: the longest caption the positional
    encoding covers.
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
        dropout=0.1,
    ):
        super().__init__()
        vocab_size = check_vocab(word_to_idx)
        check_transformer_dims(input_dim, wordvec_dim, num_heads, num_layers, max_length)
        self.vocab_size = vocab_size
        self.input_dim = input_dim
        self.max_length = max_length
        self.word_to_idx = word_to_idx
        self.idx_to_word = {i: w for w, i in word_to_idx.items()}
        self._null = word_to_idx["<NULL>"]
        self._start = word_to_idx.get("<START>", None)
        self._end = word_to_idx.get("<END>", None)

        self.visual_projection = Affine(input_dim, wordvec_dim)
        self.embedding = PaddedWordEmbedding(vocab_size, wordvec_dim, padding_idx=self._null)
        self.positional_encoding = PositionalEncoding(
            wordvec_dim, dropout=dropout, max_len=max_length
        )
        decoder_layer = TransformerDecoderLayer(
            input_dim=wordvec_dim,
            num_heads=num_heads,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
        )
        self.transformer = TransformerDecoder(decoder_layer, num_layers=num_layers)
        self.apply(self._init_weights)
        # Created after apply, as in the course: keeps the default affine initialization.
        self.output = TemporalAffine(wordvec_dim, vocab_size)

    @staticmethod
    def _init_weights(module):
        """The course's initialization: affine weights and word vectors ~ N(0, 0.02^2), affine
        biases 0, layer norm gamma 1 and beta 0."""
        with torch.no_grad():
            if isinstance(module, (Affine, TemporalAffine)):
                module.w.normal_(mean=0.0, std=INIT_STD)
                module.b.zero_()
            elif isinstance(module, WordEmbedding):
                module.W.normal_(mean=0.0, std=INIT_STD)
            elif isinstance(module, LayerNorm):
                module.gamma.fill_(1.0)
                module.beta.zero_()

    def forward(self, features, captions):
        """Scores of the next word at every position, each seeing only the words up to it.

        features: float (N, D) image features; captions: integer (N, T) word ids in [0, V),
        T <= max_length. Returns scores (N, T, V).
        """
        N, T = check_captioning_inputs(
            features, captions, self.input_dim, self.vocab_size, self.max_length
        )
        w = self.visual_projection.w
        if features.dtype != w.dtype or features.device != w.device:
            raise TypeError(
                f"features must have the model's dtype {w.dtype} on {w.device}, got "
                f"{features.dtype} on {features.device}"
            )
        tgt = self.positional_encoding(self.embedding(captions))
        memory = self.visual_projection(features).unsqueeze(1)
        # Position t may attend to positions 0..t (CS231n's mask: nonzero = may attend).
        tgt_mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=tgt.device))
        return self.output(self.transformer(tgt, memory, tgt_mask=tgt_mask))

    def loss(self, features, captions):
        """Teacher-forced training loss, as the course's CaptioningSolverTransformer computes it.

        features: float (N, D); captions: integer (N, T), 2 <= T <= max_length + 1, each
        starting with '<START>'. The input is captions[:, :-1], the targets captions[:, 1:].
        Returns the scalar ``transformer_temporal_softmax_loss``: the cross-entropy of every
        position, '<NULL>' targets counted as 0, AVERAGED over all N * (T - 1) positions (the
        RNN's temporal_softmax_loss sums over time and averages over N: T - 1 times larger).
        """
        require_ndim("captions", captions, 2, "(N, T)")
        if captions.shape[1] < 2:
            raise ValueError(
                f"captions need at least 2 words (an input and a target), got shape "
                f"{tuple(captions.shape)}"
            )
        captions_in, captions_out = captions[:, :-1], captions[:, 1:]
        scores = self.forward(features, captions_in)
        mask = captions_out != self._null
        return temporal_softmax_loss(scores, captions_out, mask) / captions_out.shape[1]

    def sample(self, features, max_length=30):
        """Greedy decoding, dropout off (the module's mode is restored afterwards).

        features: (N, D) float tensor or array-like (converted to the parameters' dtype and
        device). Starting from '<START>', each step runs the decoder over the partial caption
        and appends the arg-max word at the last position. Returns captions: int64 tensor
        (N, max_length) of the sampled word ids (every step is filled, as in the course; words
        after '<END>' are not meaningful).
        """
        max_length = require_int_param("max_length", max_length, 1)
        if max_length > self.max_length:
            raise ValueError(
                f"max_length={max_length} exceeds the model's max_length={self.max_length} "
                "(the positional encoding's length)"
            )
        if self._start is None:
            raise ValueError("sample needs a '<START>' token in word_to_idx")
        w = self.visual_projection.w
        features = torch.as_tensor(features, dtype=w.dtype, device=w.device)
        require_ndim("features", features, 2, "(N, D)")
        N = int(features.shape[0])
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                partial = torch.full((N, 1), self._start, dtype=torch.long, device=w.device)
                for _ in range(max_length):
                    scores = self.forward(features, partial)[:, -1, :]
                    word = scores.argmax(dim=1)
                    partial = torch.cat([partial, word[:, None]], dim=1)
        finally:
            self.train(was_training)
        return partial[:, 1:]
