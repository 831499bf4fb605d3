"""Assignment profiles: what a CS231n assignment asks students to write, and for how many points.

A profile fixes the list of graded tests and their points, so scores mean the same for every
student of an assignment:

- a test of the profile whose function the submission lacks is ``MISSING`` and scores 0 (it
  does not vanish from the report);
- functions the submission defines but the assignment does not ask for (the stubs of another
  assignment that ship in the same ``layers.py``, the sigmoid/tanh extensions) are not graded;
- course-provided modules are not graded. Those listed in ``standins`` are replaced by the
  reference in the student's processes, so a broken or uncompiled copy (``fast_layers.py`` needs
  the ``im2col_cython`` extension) cannot fail the student's own code that calls them; the
  others (``layer_utils.py``, which students often extend) run as submitted.

Points follow the weight of each part in the course's notebooks (backward passes and models
weigh more than one-line forwards); a ``--weights`` file overrides them.

Profiles follow the course's 2020-2024 editions. Tests listed in ``optional`` (assignment 3's
LSTM, attention layers, GAN losses and SimCLR, each dropped or added in some years; assignment
2's PyTorch notebook, which many hand in apart from the cs231n/ files) are graded when the
submission defines them and omitted otherwise.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Profile:
    assignment: str  # '1', '2' or '3'
    title: str
    points: dict  # test name -> points
    provided: tuple  # course-provided student files (relative paths): never graded
    standins: dict = field(default_factory=dict)  # student module -> reference module
    optional: tuple = ()  # fnmatch patterns of tests graded only when their function exists

    def is_optional(self, test: str) -> bool:
        return any(fnmatch.fnmatchcase(test, p) for p in self.optional)

    def environment_note(self) -> str:
        parts = [
            f"graded as CS231n assignment {self.assignment} ({self.title}): "
            f"{len(self.points)} tests, {sum(self.points.values()):g} points"
        ]
        provided = ", ".join(p.removeprefix("cs231n/") for p in self.provided)
        parts.append(f"course-provided code is not graded ({provided})")
        if self.standins:
            subs = ", ".join(m.removeprefix("cs231n.") + ".py" for m in self.standins)
            parts.append(
                f"the reference stands in for {subs} in your code's processes, so "
                "that file (or an uncompiled extension it needs) cannot fail your own "
                "functions"
            )
        return "; ".join(parts)


_A1 = {
    "KNearestNeighbor.compute_distances_two_loops": 2,
    "KNearestNeighbor.compute_distances_one_loop": 2,
    "KNearestNeighbor.compute_distances_no_loops": 2,
    "KNearestNeighbor.predict_labels": 2,
    "svm_loss_naive": 3,
    "svm_loss_vectorized": 3,
    "LinearClassifier.train": 2,
    "LinearClassifier.predict": 1,
    "softmax_loss_naive": 3,
    "softmax_loss_vectorized": 3,
    "affine_forward": 1,
    "affine_backward": 2,
    "relu_forward": 1,
    "relu_backward": 1,
    "svm_loss": 2,
    "softmax_loss": 2,
    "TwoLayerNet.__init__": 1,
    "TwoLayerNet.loss": 3,
}

_A2 = {
    "affine_forward": 1,
    "affine_backward": 1,
    "relu_forward": 1,
    "relu_backward": 1,
    "svm_loss": 1,
    "softmax_loss": 1,
    "FullyConnectedNet.__init__": 2,
    "FullyConnectedNet.loss": 4,
    "sgd_momentum": 2,
    "rmsprop": 2,
    "adam": 2,
    "batchnorm_forward": 3,
    "batchnorm_backward": 3,
    "batchnorm_backward_alt": 2,
    "layernorm_forward": 2,
    "layernorm_backward": 2,
    "dropout_forward": 2,
    "dropout_backward": 1,
    "conv_forward_naive": 3,
    "conv_backward_naive": 3,
    "max_pool_forward_naive": 2,
    "max_pool_backward_naive": 2,
    "ThreeLayerConvNet.__init__": 1,
    "ThreeLayerConvNet.loss": 3,
    "spatial_batchnorm_forward": 2,
    "spatial_batchnorm_backward": 2,
    "spatial_groupnorm_forward": 2,
    "spatial_groupnorm_backward": 2,
}

# PyTorch.ipynb, the last part of assignment 2 (graded when the submission holds the notebook
# or its export, PyTorch.py): students write the barebones ``three_layer_convnet`` and the
# module ``ThreeLayerConvNet``; the helpers the notebook gives (the other five) are graded too,
# one point each, since the cells students write run on the student's copies of them.
_A2_TORCH = {
    "PyTorch.flatten": 1,
    "PyTorch.two_layer_fc": 1,
    "PyTorch.three_layer_convnet": 3,
    "PyTorch.random_weight": 1,
    "PyTorch.zero_weight": 1,
    "PyTorch.TwoLayerFC": 1,
    "PyTorch.ThreeLayerConvNet": 3,
}
_A2.update(_A2_TORCH)

_A3 = {
    "rnn_step_forward": 2,
    "rnn_step_backward": 2,
    "rnn_forward": 2,
    "rnn_backward": 3,
    "word_embedding_forward": 1,
    "word_embedding_backward": 1,
    "CaptioningRNN.loss": 3,
    "CaptioningRNN.sample": 2,
    "lstm_step_forward": 2,
    "lstm_step_backward": 2,
    "lstm_forward": 2,
    "lstm_backward": 2,
    "PositionalEncoding.forward": 1,
    "MultiHeadAttention.forward": 3,
    "CaptioningTransformer.forward": 2,
    "sample_noise": 1,
    "discriminator": 1,
    "generator": 1,
    "build_dc_classifier": 1,
    "build_dc_generator": 1,
    "discriminator_loss": 1,
    "generator_loss": 1,
    "ls_discriminator_loss": 1,
    "ls_generator_loss": 1,
    "sim": 1,
    "compute_sim_matrix": 1,
    "sim_positive_pairs": 1,
    "simclr_loss_naive": 2,
    "simclr_loss_vectorized": 2,
}
_A3_TORCH = (
    "PositionalEncoding.*",
    "MultiHeadAttention.*",
    "CaptioningTransformer.*",
    "sample_noise",
    "discriminator",
    "generator",
    "build_dc_*",
    "discriminator_loss",
    "generator_loss",
    "ls_*",
    "sim",
    "compute_sim_matrix",
    "sim_positive_pairs",
    "simclr_loss_*",
)

PROFILES = {
    "1": Profile(
        "1",
        "k-NN, linear SVM and softmax, two-layer net",
        _A1,
        provided=(
            "cs231n/layer_utils.py",
            "cs231n/optim.py",
            "cs231n/solver.py",
            "cs231n/gradient_check.py",
        ),
    ),
    "2": Profile(
        "2",
        "fully connected nets, batch/layer norm, dropout, CNNs",
        _A2,
        provided=(
            "cs231n/fast_layers.py",
            "cs231n/layer_utils.py",
            "cs231n/solver.py",
            "cs231n/gradient_check.py",
        ),
        standins={"cs231n.fast_layers": "numpy_impl.fast_layers"},
        optional=("PyTorch.*",),
    ),
    "3": Profile(
        "3",
        "RNN/LSTM captioning, attention, GAN losses, SimCLR",
        _A3,
        provided=(
            "cs231n/layers.py",
            "cs231n/layer_utils.py",
            "cs231n/optim.py",
            "cs231n/captioning_solver.py",
            "cs231n/gradient_check.py",
        ),
        optional=("lstm_*", *_A3_TORCH),
    ),
}

# Files that only one assignment's starter code has: they tell the assignment of a folder.
_DISTINCTIVE = {
    "1": (
        "cs231n/classifiers/k_nearest_neighbor.py",
        "cs231n/classifiers/linear_svm.py",
        "cs231n/classifiers/softmax.py",
        "cs231n/classifiers/linear_classifier.py",
    ),
    "2": ("cs231n/classifiers/cnn.py", "cs231n/fast_layers.py", "PyTorch.py"),
    "3": (
        "cs231n/rnn_layers.py",
        "cs231n/classifiers/rnn.py",
        "cs231n/gan_pytorch.py",
        "cs231n/simclr/contrastive_loss.py",
        "cs231n/transformer_layers.py",
    ),
}
ASSIGNMENT_CHOICES = ("auto", "1", "2", "3", "all")


class ProfileError(ValueError):
    """An --assignment value the grader does not know."""


def detect(relpaths) -> str | None:
    """The assignment whose distinctive files the submission has, when exactly one matches."""
    present = set(relpaths)
    found = [a for a, files in _DISTINCTIVE.items() if present & set(files)]
    return found[0] if len(found) == 1 else None


def choose(assignment: str, relpaths) -> tuple[Profile | None, str]:
    """(profile or None for 'grade everything found', a note saying how it was chosen)."""
    if assignment not in ASSIGNMENT_CHOICES:
        raise ProfileError(
            f"--assignment must be one of {', '.join(ASSIGNMENT_CHOICES)}, got {assignment!r}"
        )
    if assignment == "all":
        return (
            None,
            "no assignment profile (--assignment all): every function with a "
            "counterpart in the reference is graded, 1 point each",
        )
    if assignment == "auto":
        found = detect(relpaths)
        if found is None:
            return None, (
                "could not tell which assignment this is (its files match none or "
                "several); every function with a counterpart in the reference is "
                "graded, 1 point each. Pass --assignment 1, 2 or 3 to grade against "
                "an assignment's list"
            )
        return PROFILES[found], f"assignment {found} detected from the files submitted"
    return PROFILES[assignment], f"assignment {assignment} (--assignment)"
