"""Recurrent layers of CS231n assignment 3 for PyTorch code, built on torch_impl's Functions.

Three levels, as for the other torch_impl layers:

- autograd Functions (hand-written backward): ``RNNStepFunction``, ``RNNFunction``,
  ``LSTMStepFunction``, ``LSTMFunction``, ``WordEmbeddingFunction``, ``TemporalAffineFunction``,
  ``TemporalSoftmaxLossFunction``;
- functional forms with the NumPy forwards' arguments (minus the cache), returning tracked
  tensors: ``rnn_step``, ``rnn``, ``lstm_step``, ``lstm``, ``word_embedding``,
  ``temporal_affine``, ``temporal_softmax_loss``;
- ``nn.Module``s holding CS231n-named parameters: ``RNN``, ``LSTM``, ``WordEmbedding``,
  ``TemporalAffine``, ``TemporalSoftmaxLoss``.

Layouts are CS231n's, not PyTorch's: ``Wx`` (D, H) is the transpose of ``nn.RNN.weight_ih_l0``,
there is one bias ``b`` (PyTorch's ``bias_ih + bias_hh``), and the LSTM stacks its gates
i, f, o, g (PyTorch: i, f, g, o). ``parity_tests/ops_recurrent.py`` writes out each conversion.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from torch_impl.functions import (
    LSTMFunction,
    LSTMStepFunction,
    RNNFunction,
    RNNStepFunction,
    TemporalAffineFunction,
    TemporalSoftmaxLossFunction,
    WordEmbeddingFunction,
)

__all__ = [
    "RNNStepFunction",
    "RNNFunction",
    "LSTMStepFunction",
    "LSTMFunction",
    "WordEmbeddingFunction",
    "TemporalAffineFunction",
    "TemporalSoftmaxLossFunction",
    "rnn_step",
    "rnn",
    "lstm_step",
    "lstm",
    "word_embedding",
    "temporal_affine",
    "temporal_softmax_loss",
    "RNN",
    "LSTM",
    "WordEmbedding",
    "TemporalAffine",
    "TemporalSoftmaxLoss",
]


# --------------------------------------------------------------------------------------------
# Functional forms
# --------------------------------------------------------------------------------------------


def rnn_step(x: Tensor, prev_h: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor) -> Tensor:
    """x (N, D), prev_h (N, H), Wx (D, H), Wh (H, H), b (H,) -> next_h (N, H)."""
    return RNNStepFunction.apply(x, prev_h, Wx, Wh, b)


def rnn(x: Tensor, h0: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor) -> Tensor:
    """x (N, T, D), h0 (N, H), Wx (D, H), Wh (H, H), b (H,) -> h (N, T, H)."""
    return RNNFunction.apply(x, h0, Wx, Wh, b)


def lstm_step(
    x: Tensor, prev_h: Tensor, prev_c: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor
) -> tuple[Tensor, Tensor]:
    """x (N, D), prev_h/prev_c (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,) -> (next_h, next_c)."""
    return LSTMStepFunction.apply(x, prev_h, prev_c, Wx, Wh, b)


def lstm(x: Tensor, h0: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor) -> Tensor:
    """x (N, T, D), h0 (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,) -> h (N, T, H); c0 = 0."""
    return LSTMFunction.apply(x, h0, Wx, Wh, b)


def word_embedding(x: Tensor, W: Tensor) -> Tensor:
    """x integer (N, T) in [0, V), W (V, D) -> (N, T, D)."""
    return WordEmbeddingFunction.apply(x, W)


def temporal_affine(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """x (N, T, D), w (D, M), b (M,) -> (N, T, M)."""
    return TemporalAffineFunction.apply(x, w, b)


def temporal_softmax_loss(x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """x (N, T, V), y integer (N, T), mask (N, T) -> scalar loss (sum over T, mean over N)."""
    return TemporalSoftmaxLossFunction.apply(x, y, mask)


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


class _Recurrent(nn.Module):
    gates = 1

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        G = self.gates * hidden_dim
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        # CS231n's CaptioningRNN initialization: randn / sqrt(fan_in), zero bias.
        self.Wx = nn.Parameter(torch.randn(input_dim, G, **kw) / math.sqrt(input_dim))
        self.Wh = nn.Parameter(torch.randn(hidden_dim, G, **kw) / math.sqrt(hidden_dim))
        self.b = nn.Parameter(torch.zeros(G, **kw))

    def extra_repr(self) -> str:
        return f"input_dim={self.Wx.shape[0]}, hidden_dim={self.Wh.shape[0]}"


class RNN(_Recurrent):
    """tanh RNN with parameters Wx (D, H), Wh (H, H), b (H,); forward(x (N, T, D), h0 (N, H))
    -> h (N, T, H)."""

    gates = 1

    def forward(self, x: Tensor, h0: Tensor) -> Tensor:
        return RNNFunction.apply(x, h0, self.Wx, self.Wh, self.b)


class LSTM(_Recurrent):
    """LSTM (gates i, f, o, g) with Wx (D, 4H), Wh (H, 4H), b (4H,); forward(x (N, T, D),
    h0 (N, H)) -> h (N, T, H), starting from a zero cell state."""

    gates = 4

    def forward(self, x: Tensor, h0: Tensor) -> Tensor:
        return LSTMFunction.apply(x, h0, self.Wx, self.Wh, self.b)


class WordEmbedding(nn.Module):
    """W (V, D) word vectors (initialized randn / 100 as in CS231n); forward(x int (N, T)) ->
    (N, T, D)."""

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(vocab_size, embed_dim, device=device, dtype=dtype) / 100)

    def forward(self, x: Tensor) -> Tensor:
        return WordEmbeddingFunction.apply(x, self.W)


class TemporalAffine(nn.Module):
    """w (D, M) in CS231n layout (the transpose of nn.Linear's weight), b (M,);
    forward(x (N, T, D)) -> (N, T, M). Initialized like nn.Linear: U(-1/sqrt(D), 1/sqrt(D))."""

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        bound = 1 / math.sqrt(input_dim)
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.w = nn.Parameter(torch.empty(input_dim, output_dim, **kw).uniform_(-bound, bound))
        self.b = nn.Parameter(torch.empty(output_dim, **kw).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return TemporalAffineFunction.apply(x, self.w, self.b)

    def extra_repr(self) -> str:
        return f"input_dim={self.w.shape[0]}, output_dim={self.w.shape[1]}"


class TemporalSoftmaxLoss(nn.Module):
    """forward(x (N, T, V), y int (N, T), mask (N, T)) -> scalar loss."""

    def forward(self, x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        return TemporalSoftmaxLossFunction.apply(x, y, mask)
