"""CS231n's models, under the course's module and class names.

Submodules: ``k_nearest_neighbor``, ``linear_classifier``, ``linear_svm``, ``softmax``, ``fc_net``,
``cnn`` (and ``rnn``, ``transformer`` for assignment 3). Every class and loss function is
exported here too.
"""

from .cnn import ThreeLayerConvNet
from .fc_net import FullyConnectedNet, TwoLayerNet
from .k_nearest_neighbor import KNearestNeighbor, best_knn_setting, cross_validate_knn
from .linear_classifier import LinearClassifier, LinearSVM, Softmax
from .linear_svm import svm_loss_naive, svm_loss_vectorized
from .rnn import CaptioningRNN
from .softmax import softmax_loss_naive, softmax_loss_vectorized
from .transformer import CaptioningTransformer

__all__ = [
    "KNearestNeighbor",
    "cross_validate_knn",
    "best_knn_setting",
    "LinearClassifier",
    "LinearSVM",
    "Softmax",
    "svm_loss_naive",
    "svm_loss_vectorized",
    "softmax_loss_naive",
    "softmax_loss_vectorized",
    "TwoLayerNet",
    "FullyConnectedNet",
    "ThreeLayerConvNet",
    "CaptioningRNN",
    "CaptioningTransformer",
]
