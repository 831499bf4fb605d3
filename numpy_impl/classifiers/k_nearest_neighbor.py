"""k-nearest-neighbour classifier with L2 distance (CS231n assignment 1, Q1).

The three distance routines compute the same (num_test, num_train) matrix
``dists[i, j] = ||X[i] - X_train[j]||_2`` and are kept side by side for teaching: two Python loops,
one loop over test points, and no loop at all (the expansion
``||x - t||^2 = ||x||^2 + ||t||^2 - 2 x.t`` as one matrix product plus two broadcast sums).
"""

from __future__ import annotations

import numpy as np

from .._checks import require_ndim, shape_of


def _float_dtype(*arrays):
    """The floating dtype distances are computed in: float inputs keep theirs (float32 stays
    float32); integer images (e.g. uint8 pixels) are promoted to float64, because subtracting
    unsigned integers wraps around."""
    dt = np.result_type(*[a.dtype for a in arrays])
    return dt if np.issubdtype(dt, np.floating) else np.dtype(np.float64)


class KNearestNeighbor:
    """A kNN classifier with L2 distance.

    ``train`` only memorizes the data; ``predict`` computes the distances to every training point
    and takes a majority vote among the k closest.
    """

    def __init__(self):
        self.X_train = None
        self.y_train = None

    def train(self, X, y):
        """Memorize the training data.

        Inputs:
        - X: (num_train, D) training points (flatten images first).
        - y: (num_train,) non-negative integer labels; y[i] is the label of X[i].
        """
        X = np.asarray(X)
        y = np.asarray(y)
        require_ndim("X", X, 2, "(num_train, D)")
        if not np.issubdtype(y.dtype, np.integer):
            raise TypeError(f"y must hold integer labels, got dtype {y.dtype}")
        if y.shape != (X.shape[0],):
            raise ValueError(
                f"y must have shape ({X.shape[0]},) (one label per row of X), got {y.shape}"
            )
        if X.shape[0] == 0:
            raise ValueError("X must hold at least one training point, got shape (0, D)")
        if y.min() < 0:
            raise ValueError(f"y must hold non-negative class labels, got min {int(y.min())}")
        self.X_train = X
        self.y_train = y

    def predict(self, X, k=1, num_loops=0):
        """Predict labels for test data.

        Inputs:
        - X: (num_test, D) test points.
        - k: number of nearest neighbours that vote.
        - num_loops: 0, 1 or 2, which distance implementation to use.

        Returns y_pred: (num_test,) predicted labels.
        """
        return self.predict_labels(self._distances(X, num_loops), k=k)

    def _distances(self, X, num_loops):
        if num_loops == 0:
            return self.compute_distances_no_loops(X)
        if num_loops == 1:
            return self.compute_distances_one_loop(X)
        if num_loops == 2:
            return self.compute_distances_two_loops(X)
        raise ValueError(f"Invalid value {num_loops!r} for num_loops (expected 0, 1 or 2)")

    def _check_test(self, X):
        if self.X_train is None:
            raise ValueError("call train(X, y) before computing distances")
        X = np.asarray(X)
        require_ndim("X", X, 2, "(num_test, D)")
        D = self.X_train.shape[1]
        if X.shape[1] != D:
            raise ValueError(
                f"X must have shape (num_test, {D}) to match the training data, got {shape_of(X)}"
            )
        dtype = _float_dtype(X, self.X_train)
        return X.astype(dtype, copy=False), self.X_train.astype(dtype, copy=False)

    def compute_distances_two_loops(self, X):
        """dists[i, j] = L2 distance between X[i] and X_train[j], with a double loop.

        Input X: (num_test, D). Returns dists: (num_test, num_train).
        """
        X, X_train = self._check_test(X)
        num_test, num_train = X.shape[0], X_train.shape[0]
        dists = np.zeros((num_test, num_train), dtype=X.dtype)
        for i in range(num_test):
            for j in range(num_train):
                dists[i, j] = np.sqrt(np.sum((X[i] - X_train[j]) ** 2))
        return dists

    def compute_distances_one_loop(self, X):
        """Same as compute_distances_two_loops, looping over test points only: each row is one
        broadcast subtraction of X[i] from every training point.

        Input X: (num_test, D). Returns dists: (num_test, num_train).
        """
        X, X_train = self._check_test(X)
        num_test, num_train = X.shape[0], X_train.shape[0]
        dists = np.zeros((num_test, num_train), dtype=X.dtype)
        for i in range(num_test):
            dists[i, :] = np.sqrt(np.sum((X_train - X[i]) ** 2, axis=1))
        return dists

    def compute_distances_no_loops(self, X):
        """Same as compute_distances_two_loops, with no Python loop.

        ||x - t||^2 = ||x||^2 + ||t||^2 - 2 x.t: one (num_test, D) x (D, num_train) matrix product
        plus two broadcast sums of squared norms. Cancellation can make the expansion slightly
        negative for (near-)identical points, so it is clipped at 0 before the square root
        (otherwise sqrt would return NaN).

        Input X: (num_test, D). Returns dists: (num_test, num_train).
        """
        X, X_train = self._check_test(X)
        test_sq = np.sum(X * X, axis=1)[:, None]  # (num_test, 1)
        train_sq = np.sum(X_train * X_train, axis=1)[None, :]  # (1, num_train)
        sq = test_sq + train_sq - 2.0 * (X @ X_train.T)
        return np.sqrt(np.maximum(sq, 0))

    def predict_labels(self, dists, k=1):
        """Majority vote among the k nearest training points.

        Inputs:
        - dists: (num_test, num_train); dists[i, j] is the distance from test point i to training
          point j.
        - k: how many neighbours vote (1 <= k <= num_train).

        Returns y_pred: (num_test,). Neighbours at equal distance are taken in training order (a
        stable sort), and a tie in the vote goes to the smaller label, as in the course.
        """
        if self.y_train is None:
            raise ValueError("call train(X, y) before predicting")
        dists = np.asarray(dists)
        num_train = self.y_train.shape[0]
        require_ndim("dists", dists, 2, "(num_test, num_train)")
        if dists.shape[1] != num_train:
            raise ValueError(
                f"dists must have shape (num_test, {num_train}), got {shape_of(dists)}"
            )
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= num_train:
            raise ValueError(f"k must be an integer in [1, {num_train}], got {k!r}")
        num_test = dists.shape[0]
        nearest = np.argsort(dists, axis=1, kind="stable")[:, :k]
        closest_y = self.y_train[nearest]  # (num_test, k)
        num_classes = int(self.y_train.max()) + 1
        # One bincount for all rows: row i's labels are offset into bins [i*C, (i+1)*C).
        offsets = np.arange(num_test)[:, None] * num_classes
        votes = np.bincount(
            (closest_y + offsets).ravel(), minlength=num_test * num_classes
        ).reshape(num_test, num_classes)
        # argmax returns the first maximum, i.e. the smallest label among tied votes.
        return np.argmax(votes, axis=1)


def cross_validate_knn(X, y, k_choices, num_folds=5, num_loops=0):
    """k-fold cross-validation of KNearestNeighbor (the course's ``k_to_accuracies`` loop).

    The data is split into ``num_folds`` contiguous folds with ``np.array_split`` (as in the
    course notebook); each fold in turn is the validation set and the rest is the training set.
    Distances are computed once per fold and reused for every k.

    Inputs:
    - X: (N, D) points; y: (N,) integer labels.
    - k_choices: iterable of k values to try.
    - num_folds: number of folds (2 <= num_folds <= N).
    - num_loops: which distance implementation to use (0, 1 or 2).

    Returns k_to_accuracies: dict mapping each k to a list of ``num_folds`` accuracies.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    require_ndim("X", X, 2, "(N, D)")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}")
    if isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer)):
        raise TypeError(f"num_folds must be an integer, got {num_folds!r}")
    if not 2 <= num_folds <= X.shape[0]:
        raise ValueError(f"num_folds must lie in [2, N={X.shape[0]}], got {num_folds}")
    k_choices = list(k_choices)
    X_folds = np.array_split(X, num_folds)
    y_folds = np.array_split(y, num_folds)
    k_to_accuracies = {k: [] for k in k_choices}
    for i in range(num_folds):
        X_tr = np.concatenate(X_folds[:i] + X_folds[i + 1:])
        y_tr = np.concatenate(y_folds[:i] + y_folds[i + 1:])
        classifier = KNearestNeighbor()
        classifier.train(X_tr, y_tr)
        dists = classifier._distances(X_folds[i], num_loops)
        for k in k_choices:
            y_pred = classifier.predict_labels(dists, k=k)
            k_to_accuracies[k].append(float(np.mean(y_pred == y_folds[i])))
    return k_to_accuracies
