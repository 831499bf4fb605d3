"""k-nearest-neighbour classifier with L2 or L1 distance (CS231n assignment 1, Q1).

The three distance routines compute the same (num_test, num_train) matrix
``dists[i, j] = ||X[i] - X_train[j]||`` and are kept side by side for teaching: two Python loops,
one loop over test points, and no loop at all. For L2 (the course's default) the no-loop version
uses the expansion ``||x - t||^2 = ||x||^2 + ||t||^2 - 2 x.t`` as one matrix product plus two
broadcast sums. L1 (``metric="l1"``, the notes' other distance) has no such expansion: its no-loop
version broadcasts ``|X[i] - X_train[j]|`` over tiles of test and training points sized so that
the (tile_test, tile_train, D) temporary stays under ``L1_BLOCK_BYTES``.
"""

from __future__ import annotations

import math

import numpy as np

from twin_checks import require_ndim, shape_of

METRICS = ("l2", "l1")
# Memory bound of the no-loop L1 distance's broadcast temporary (4 MiB: about a CPU's cache).
L1_BLOCK_BYTES = 4 * 2**20


def _require_metric(metric, name="metric"):
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(f"{name} must be one of {METRICS}, got {metric!r}")
    return metric


def _float_dtype(*arrays):
    """The floating dtype distances are computed in: float inputs keep theirs (float32 stays
    float32); integer images (e.g. uint8 pixels) are promoted to float64, because subtracting
    unsigned integers wraps around."""
    dt = np.result_type(*[a.dtype for a in arrays])
    return dt if np.issubdtype(dt, np.floating) else np.dtype(np.float64)


class KNearestNeighbor:
    """A kNN classifier with L2 (default, as in the course) or L1 distance.

    ``train`` only memorizes the data; ``predict`` computes the distances to every training point
    and takes a majority vote among the k closest.

    - metric: "l2" (Euclidean, sqrt(sum (x - t)^2)) or "l1" (Manhattan, sum |x - t|).
    """

    def __init__(self, metric="l2"):
        self.metric = _require_metric(metric)
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
        """dists[i, j] = distance (self.metric) between X[i] and X_train[j], with a double loop.

        Input X: (num_test, D). Returns dists: (num_test, num_train).
        """
        X, X_train = self._check_test(X)
        num_test, num_train = X.shape[0], X_train.shape[0]
        dists = np.zeros((num_test, num_train), dtype=X.dtype)
        l1 = self.metric == "l1"
        for i in range(num_test):
            for j in range(num_train):
                diff = X[i] - X_train[j]
                dists[i, j] = np.sum(np.abs(diff)) if l1 else np.sqrt(np.sum(diff**2))
        return dists

    def compute_distances_one_loop(self, X):
        """Same as compute_distances_two_loops, looping over test points only: each row is one
        broadcast subtraction of X[i] from every training point.

        Input X: (num_test, D). Returns dists: (num_test, num_train).
        """
        X, X_train = self._check_test(X)
        num_test, num_train = X.shape[0], X_train.shape[0]
        dists = np.zeros((num_test, num_train), dtype=X.dtype)
        l1 = self.metric == "l1"
        for i in range(num_test):
            diff = X_train - X[i]
            dists[i, :] = np.sum(np.abs(diff), axis=1) if l1 else np.sqrt(np.sum(diff**2, axis=1))
        return dists

    def compute_distances_no_loops(self, X):
        """Same as compute_distances_two_loops, with no Python loop over points.

        For metric "l2": ||x - t||^2 = ||x||^2 + ||t||^2 - 2 x.t: one (num_test, D) x
        (D, num_train) matrix product plus two broadcast sums of squared norms. Cancellation can
        make the expansion slightly negative for (near-)identical points, so it is clipped at 0
        before the square root (otherwise sqrt would return NaN).

        For metric "l1": |X[i] - X_train[j]| summed over D by broadcasting, a tile of test x
        training points at a time (no loop over individual points; memory bounded by
        L1_BLOCK_BYTES).

        Input X: (num_test, D). Returns dists: (num_test, num_train).
        """
        X, X_train = self._check_test(X)
        if self.metric == "l1":
            return _l1_blocked(X, X_train)
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


def _l1_blocked(X, X_train):
    """L1 distances (num_test, num_train) between the rows of X (num_test, D) and X_train
    (num_train, D), broadcasting |X[i] - X_train[j]| over tiles of (test rows x train rows).

    A full broadcast of 500 x 5000 CIFAR-10 images would need 61 GB in float64; each tile's
    (tile_test, tile_train, D) temporary stays under L1_BLOCK_BYTES instead. Small (cache-sized)
    tiles are also faster than tall ones: the subtraction, abs and sum then run in cache instead
    of streaming a large temporary through memory three times.
    """
    num_test, num_train, D = X.shape[0], X_train.shape[0], X.shape[1]
    pairs = max(1, L1_BLOCK_BYTES // max(D * X.dtype.itemsize, 1))
    tile_train = min(num_train, max(1, math.isqrt(pairs)))
    tile_test = max(1, pairs // tile_train)
    dists = np.empty((num_test, num_train), dtype=X.dtype)
    for i in range(0, num_test, tile_test):
        rows = X[i : i + tile_test, None, :]
        for j in range(0, num_train, tile_train):
            diff = rows - X_train[None, j : j + tile_train, :]
            dists[i : i + tile_test, j : j + tile_train] = np.abs(diff, out=diff).sum(axis=2)
    return dists


def cross_validate_knn(X, y, k_choices, num_folds=5, num_loops=0, metric="l2"):
    """k-fold cross-validation of KNearestNeighbor (the course's ``k_to_accuracies`` loop).

    The data is split into ``num_folds`` contiguous folds with ``np.array_split`` (as in the
    course notebook); each fold in turn is the validation set and the rest is the training set.
    Distances are computed once per fold and metric and reused for every k.

    Inputs:
    - X: (N, D) points; y: (N,) integer labels.
    - k_choices: iterable of k values to try.
    - num_folds: number of folds (2 <= num_folds <= N).
    - num_loops: which distance implementation to use (0, 1 or 2).
    - metric: "l2" (the course's), "l1", or a list/tuple of them to cross-validate over k and
      metric at once.

    Returns, for a single metric, k_to_accuracies: dict mapping each k to a list of
    ``num_folds`` accuracies (the course's result). For a list of metrics, a dict mapping each
    metric to its k_to_accuracies; ``best_knn_setting`` picks the winner from either.
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
    single = isinstance(metric, str)
    metrics = [metric] if single else list(metric)
    if not metrics:
        raise ValueError(f"metric must be one of {METRICS} or a non-empty list of them, got []")
    for m in metrics:
        _require_metric(m)
    k_choices = list(k_choices)
    X_folds = np.array_split(X, num_folds)
    y_folds = np.array_split(y, num_folds)
    results = {m: {k: [] for k in k_choices} for m in metrics}
    for i in range(num_folds):
        X_tr = np.concatenate(X_folds[:i] + X_folds[i + 1 :])
        y_tr = np.concatenate(y_folds[:i] + y_folds[i + 1 :])
        for m in metrics:
            classifier = KNearestNeighbor(metric=m)
            classifier.train(X_tr, y_tr)
            dists = classifier._distances(X_folds[i], num_loops)
            for k in k_choices:
                y_pred = classifier.predict_labels(dists, k=k)
                results[m][k].append(float(np.mean(y_pred == y_folds[i])))
    return results[metrics[0]] if single else results


def best_knn_setting(accuracies):
    """The setting with the highest mean cross-validation accuracy.

    Input: cross_validate_knn's result, either k -> list of fold accuracies, or
    metric -> (k -> list of fold accuracies).
    Returns (metric, k, mean_accuracy); metric is None for the single-metric form. Ties go to the
    smaller k, then to the metric listed first (the simpler model wins a tie).
    """
    if not isinstance(accuracies, dict) or not accuracies:
        raise ValueError(
            f"accuracies must be a non-empty dict from cross_validate_knn, got {accuracies!r}"
        )
    per_metric = accuracies
    if not isinstance(next(iter(accuracies.values())), dict):
        per_metric = {None: accuracies}
    best = None
    for order, (m, k_to_acc) in enumerate(per_metric.items()):
        for k, accs in k_to_acc.items():
            key = (-float(np.mean(accs)), k, order)
            if best is None or key < best[0]:
                best = (key, m, k)
    (neg_mean, _, _), m, k = best
    return m, k, -neg_mean
