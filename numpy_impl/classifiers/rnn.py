"""CS231n's CaptioningRNN: image features -> caption, with a vanilla RNN or an LSTM.

The model (assignment 3): an affine projection of the image feature vector gives the initial
hidden state h0; each caption word is embedded, fed to the recurrent cell, and an affine layer
turns every hidden state into scores over the vocabulary. Training (``loss``) uses teacher
forcing: the input captions are ``captions[:, :-1]`` and the targets are ``captions[:, 1:]``;
positions whose target is ``<NULL>`` (padding) do not count. ``sample`` runs greedily, feeding
back the highest-scoring word.

Parameter names, shapes, initialization (and its order of random draws, so a seeded
construction reproduces the course's weights) follow the starter code exactly:
W_embed (V, W), W_proj (D, H), b_proj (H,), Wx (W, H or 4H), Wh (H, H or 4H), b (H or 4H,),
W_vocab (H, V), b_vocab (V,). There is no regularization in the course's captioning model.
"""

from __future__ import annotations

import numpy as np

from twin_checks import require_int_param, require_ndim, require_shape

from ..rnn_layers import (
    check_indices,
    lstm_backward,
    lstm_forward,
    lstm_step_forward,
    rnn_backward,
    rnn_forward,
    rnn_step_forward,
    temporal_affine_backward,
    temporal_affine_forward,
    temporal_softmax_loss,
    word_embedding_backward,
    word_embedding_forward,
)


class CaptioningRNN:
    """Image captioning with a recurrent network.

    word_to_idx: dict word -> index in [0, V) containing '<NULL>' (and '<START>' for sampling);
    input_dim D: image feature size; wordvec_dim W; hidden_dim H; cell_type 'rnn' or 'lstm';
    dtype: numpy float type of the parameters (float64 for gradient checks).
    """

    def __init__(
        self,
        word_to_idx,
        input_dim=512,
        wordvec_dim=128,
        hidden_dim=128,
        cell_type="rnn",
        dtype=np.float32,
    ):
        if cell_type not in {"rnn", "lstm"}:
            raise ValueError(f"cell_type must be 'rnn' or 'lstm', got {cell_type!r}")
        if "<NULL>" not in word_to_idx:
            raise ValueError("word_to_idx must contain the padding token '<NULL>'")
        # As in the course, V = len(word_to_idx); captions are checked against [0, V) when used.
        vocab_size = len(word_to_idx)

        self.cell_type = cell_type
        self.dtype = dtype
        self.word_to_idx = word_to_idx
        self.idx_to_word = {i: w for w, i in word_to_idx.items()}
        self.params = {}

        self._null = word_to_idx["<NULL>"]
        self._start = word_to_idx.get("<START>", None)
        self._end = word_to_idx.get("<END>", None)

        # CS231n draws from NumPy's global generator, in this order; keep both so a seeded
        # construction (np.random.seed(231) in the notebooks) gives the course's weights.
        randn = np.random.randn  # noqa: NPY002
        dim_mul = {"lstm": 4, "rnn": 1}[cell_type]
        self.params["W_embed"] = randn(vocab_size, wordvec_dim) / 100
        self.params["W_proj"] = randn(input_dim, hidden_dim) / np.sqrt(input_dim)
        self.params["b_proj"] = np.zeros(hidden_dim)
        self.params["Wx"] = randn(wordvec_dim, dim_mul * hidden_dim) / np.sqrt(wordvec_dim)
        self.params["Wh"] = randn(hidden_dim, dim_mul * hidden_dim) / np.sqrt(hidden_dim)
        self.params["b"] = np.zeros(dim_mul * hidden_dim)
        self.params["W_vocab"] = randn(hidden_dim, vocab_size) / np.sqrt(hidden_dim)
        self.params["b_vocab"] = np.zeros(vocab_size)

        for k, v in self.params.items():
            self.params[k] = v.astype(self.dtype)

    def _check_features(self, features) -> int:
        require_ndim("features", features, 2, "(N, D)")
        D = self.params["W_proj"].shape[0]
        require_shape("features", features, (None, D), hint=f"input_dim D={D}")
        return int(features.shape[0])

    def loss(self, features, captions):
        """Teacher-forced training loss.

        features: (N, D) image features; captions: integer (N, T) word ids in [0, V), each
        starting with <START>. Returns (loss, grads) with grads holding a gradient for every
        key of self.params.
        """
        N = self._check_features(features)
        require_ndim("captions", captions, 2, "(N, T)")
        require_shape("captions", captions, (N, None), hint="one caption per row of features")
        check_indices("captions", captions, self.params["W_embed"].shape[0])
        if captions.shape[1] < 2:
            raise ValueError(
                f"captions need at least 2 words (an input and a target), got shape "
                f"{tuple(captions.shape)}"
            )
        captions_in = captions[:, :-1]
        captions_out = captions[:, 1:]
        mask = captions_out != self._null

        p = self.params
        h0 = features @ p["W_proj"] + p["b_proj"]
        x, cache_embed = word_embedding_forward(captions_in, p["W_embed"])
        recurrent_forward = rnn_forward if self.cell_type == "rnn" else lstm_forward
        h, cache_rnn = recurrent_forward(x, h0, p["Wx"], p["Wh"], p["b"])
        scores, cache_vocab = temporal_affine_forward(h, p["W_vocab"], p["b_vocab"])
        loss, dscores = temporal_softmax_loss(scores, captions_out, mask)

        grads = {}
        dh, grads["W_vocab"], grads["b_vocab"] = temporal_affine_backward(dscores, cache_vocab)
        recurrent_backward = rnn_backward if self.cell_type == "rnn" else lstm_backward
        dx, dh0, grads["Wx"], grads["Wh"], grads["b"] = recurrent_backward(dh, cache_rnn)
        grads["W_embed"] = word_embedding_backward(dx, cache_embed)
        grads["W_proj"] = features.T @ dh0
        grads["b_proj"] = dh0.sum(axis=0)
        return loss, grads

    def sample(self, features, max_length=30):
        """Greedy decoding.

        features: (N, D). Starting from h0 = features @ W_proj + b_proj and the <START> word,
        each step feeds the previous word's embedding to the cell and takes the arg-max word.
        Returns captions: int32 (N, max_length), the sampled word ids (as in the course,
        every step is filled; words after <END> are not meaningful).
        """
        N = self._check_features(features)
        max_length = require_int_param("max_length", max_length, 1)
        if self._start is None:
            raise ValueError("sample needs a '<START>' token in word_to_idx")
        p = self.params
        captions = self._null * np.ones((N, max_length), dtype=np.int32)
        h = features @ p["W_proj"] + p["b_proj"]
        c = np.zeros_like(h)
        word = np.full(N, self._start, dtype=np.int64)
        for t in range(max_length):
            x = p["W_embed"][word]
            if self.cell_type == "rnn":
                h, _ = rnn_step_forward(x, h, p["Wx"], p["Wh"], p["b"])
            else:
                h, c, _ = lstm_step_forward(x, h, c, p["Wx"], p["Wh"], p["b"])
            scores = h @ p["W_vocab"] + p["b_vocab"]
            word = scores.argmax(axis=1)
            captions[:, t] = word
        return captions
