"""Arguments of the captioning models (CS231n's CaptioningRNN and CaptioningTransformer):
vocabularies, model dimensions, and image features with their captions."""

from __future__ import annotations

import numbers

from twin_checks.common import Array, require_float, require_int_param, require_ndim, require_shape
from twin_checks.sequence import check_indices


def check_vocab(word_to_idx: object) -> int:
    """word_to_idx: dict word -> index, a permutation of [0, V) containing '<NULL>'. Returns V."""
    if not isinstance(word_to_idx, dict):
        raise TypeError(
            f"word_to_idx must be a dict word -> index, got {type(word_to_idx).__name__}"
        )
    if "<NULL>" not in word_to_idx:
        raise ValueError("word_to_idx must contain the padding token '<NULL>'")
    V = len(word_to_idx)
    values = list(word_to_idx.values())
    if any(isinstance(i, bool) or not isinstance(i, numbers.Integral) for i in values):
        raise TypeError(f"word_to_idx must map words to integer indices, got {values[:5]}")
    if sorted(values) != list(range(V)):
        raise ValueError(
            f"word_to_idx must map its {V} words onto the indices 0..{V - 1}, each once; got "
            f"{sorted(values)[:5]}{'...' if V > 5 else ''}"
        )
    return V


def check_transformer_dims(
    input_dim: object,
    wordvec_dim: object,
    num_heads: object,
    num_layers: object,
    max_length: object,
) -> None:
    """The constructor's sizes, with wordvec_dim split evenly among num_heads and even (for the
    sin/cos pairs of the positional encoding)."""
    require_int_param("input_dim", input_dim, 1)
    wordvec_dim = require_int_param("wordvec_dim", wordvec_dim, 2)
    num_heads = require_int_param("num_heads", num_heads, 1)
    require_int_param("num_layers", num_layers, 1)
    require_int_param("max_length", max_length, 1)
    if wordvec_dim % num_heads != 0:
        raise ValueError(
            f"wordvec_dim={wordvec_dim} must be divisible by num_heads={num_heads} "
            "(each head attends over wordvec_dim // num_heads features)"
        )
    if wordvec_dim % 2 != 0:
        raise ValueError(
            f"wordvec_dim must be even (the positional encoding pairs sin and cos), got "
            f"{wordvec_dim}"
        )


def check_captioning_inputs(
    features: Array, captions: Array, input_dim: int, V: int, max_length: int
) -> tuple[int, int]:
    """features: float (N, input_dim); captions: integer (N, T) in [0, V), 1 <= T <= max_length.

    Returns (N, T).
    """
    require_ndim("features", features, 2, "(N, D)")
    require_shape("features", features, (None, input_dim), hint=f"input_dim D={input_dim}")
    require_float("features", features)
    require_ndim("captions", captions, 2, "(N, T)")
    N = int(features.shape[0])
    require_shape("captions", captions, (N, None), hint="one caption per row of features")
    check_indices("captions", captions, V)
    T = int(captions.shape[1])
    if not 1 <= T <= max_length:
        raise ValueError(f"captions must have 1 to max_length={max_length} words, got T={T}")
    return N, T
