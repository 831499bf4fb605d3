"""Every ``torch.autograd.Function`` of the torch twin, in one namespace.

Each Function is the torch twin of a ``numpy_impl`` forward/backward pair: the same math
(biased variance, eps inside the square root, CS231n's SVM scaling, keep-probability dropout, the
gradient of a max-pool window to its FIRST maximum in row-major order), computed from tensor
primitives -- matmul, ``unfold``/``as_strided`` views, reductions and elementwise ops. None calls
the PyTorch builtin that the parity suite compares it against, and no backward calls autograd:
every gradient is derived on paper and written out.

The code is sorted by what it is: ``linear`` (affine, temporal affine, word embedding),
``activations``, ``conv``, ``pooling``, ``normalization``, ``dropout``, ``losses``,
``recurrent`` (RNN, LSTM), ``attention`` and ``contrastive`` (SimCLR).

Conventions:

- Inputs are validated by ``twin_checks`` (pure Python), so a bad input raises the same
  ``ValueError``/``TypeError`` message as the NumPy twin.
- Every tensor created follows the input's device and dtype (CPU/CUDA, float32/float64).
- ``ctx.needs_input_grad`` decides which gradients are computed; the others are returned as None.
- Backward passes are ``once_differentiable``: they are built from primitives outside autograd,
  so asking for a second derivative raises instead of silently returning a wrong one.
"""

from __future__ import annotations

from torch_impl.activations import (
    GELUFunction,
    LeakyReLUFunction,
    ReLUFunction,
    SigmoidFunction,
    TanhFunction,
)
from torch_impl.attention import (
    MultiHeadAttentionFunction,
    ScaledDotProductAttentionFunction,
)
from torch_impl.contrastive import (
    CosineSimilarityMatrixFunction,
    PositivePairSimilarityFunction,
    SimCLRLossFunction,
)
from torch_impl.conv import (
    Conv2dFunction,
    ConvTranspose2dFunction,
)
from torch_impl.dropout import (
    DropoutFunction,
)
from torch_impl.linear import (
    AffineFunction,
    TemporalAffineFunction,
    WordEmbeddingFunction,
)
from torch_impl.losses import (
    BCEWithLogitsFunction,
    HalfSquaredErrorFunction,
    SoftmaxLossFunction,
    SVMLossFunction,
    TemporalSoftmaxLossFunction,
)
from torch_impl.normalization import (
    BatchNormFunction,
    LayerNormFunction,
    SpatialGroupNormFunction,
)
from torch_impl.pooling import (
    MaxPool2dFunction,
)
from torch_impl.recurrent import (
    LSTMFunction,
    LSTMStepFunction,
    RNNFunction,
    RNNStepFunction,
)

__all__ = [
    "AffineFunction",
    "WordEmbeddingFunction",
    "TemporalAffineFunction",
    "ReLUFunction",
    "SigmoidFunction",
    "TanhFunction",
    "GELUFunction",
    "LeakyReLUFunction",
    "Conv2dFunction",
    "ConvTranspose2dFunction",
    "MaxPool2dFunction",
    "BatchNormFunction",
    "LayerNormFunction",
    "SpatialGroupNormFunction",
    "DropoutFunction",
    "SVMLossFunction",
    "SoftmaxLossFunction",
    "TemporalSoftmaxLossFunction",
    "BCEWithLogitsFunction",
    "HalfSquaredErrorFunction",
    "RNNStepFunction",
    "RNNFunction",
    "LSTMStepFunction",
    "LSTMFunction",
    "ScaledDotProductAttentionFunction",
    "MultiHeadAttentionFunction",
    "CosineSimilarityMatrixFunction",
    "PositivePairSimilarityFunction",
    "SimCLRLossFunction",
]
