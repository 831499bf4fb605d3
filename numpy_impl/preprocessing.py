"""Data preprocessing from the CS231n notes: mean/std standardization, min-max scaling, PCA
(optionally whitened) and ZCA whitening.

Each transform works on X of shape (N, D) (flatten images first) and has the same interface:
``fit(X) -> self`` learns the statistics (from the training split only, as the notes insist),
``transform(X)`` applies them to any split, ``fit_transform(X)`` does both, and
``inverse_transform(Z)`` maps back to the input space. Float32 input stays float32 (the statistics
are computed in float64); integer input (e.g. uint8 pixels) is converted to float64.

Conventions match scikit-learn's ``StandardScaler``, ``MinMaxScaler`` and ``PCA``, so results agree
to round-off: the standard deviation is the biased one (ddof=0) and a constant feature is left
unscaled; PCA's variances are the unbiased ones (divided by N - 1). Each principal component's sign
is fixed so that its largest-magnitude entry is positive.

Example (the notes' pipeline)::

    pca = PCA(n_components=144, whiten=True).fit(X_train)
    X_train_w, X_val_w = pca.transform(X_train), pca.transform(X_val)
"""

from __future__ import annotations

import numbers

import numpy as np

from twin_checks import require_ndim, shape_of

__all__ = ["Standardize", "MinMaxScale", "PCA", "ZCA"]


def _as_data(name, X, D=None, min_rows=1):
    """X as a float array of shape (N, D), with finite entries; errors name the argument."""
    if not hasattr(X, "shape"):
        X = np.asarray(X)
    require_ndim(name, X, 2, "(N, D)")
    X = np.asarray(X)
    if not (np.issubdtype(X.dtype, np.number) and not np.issubdtype(X.dtype, np.complexfloating)):
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    if X.shape[0] < min_rows:
        raise ValueError(
            f"{name} must have at least {min_rows} rows (N >= {min_rows}), got shape {shape_of(X)}"
        )
    if D is not None and X.shape[1] != D:
        raise ValueError(
            f"{name} must have shape (N, {D}) (D as in the data given to fit), got {shape_of(X)}"
        )
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} must be finite, got {X[i, j]} at row {i}, column {j} "
            f"({int(bad.sum())} non-finite entries)"
        )
    return X


def _require_eps(eps):
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 <= eps < np.inf:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


class _Transform:
    """Shared fit/transform plumbing; subclasses define _fit, _transform, _inverse."""

    _fitted_attr = "mean_"

    def _require_fitted(self, method):
        if getattr(self, self._fitted_attr, None) is None:
            name = type(self).__name__
            raise RuntimeError(f"this {name} is not fitted yet: call fit(X) before {method}")

    def fit(self, X):
        """Learn the statistics from X: (N, D) training data. Returns self."""
        X = _as_data("X", X, min_rows=self._min_rows)
        self.n_features_in_ = X.shape[1]
        self._fit(X.astype(np.float64, copy=False))
        return self

    def transform(self, X):
        """X: (N, D) data. Returns the transformed data, (N, D) or (N, n_components) for PCA."""
        self._require_fitted("transform(X)")
        X = _as_data("X", X, D=self.n_features_in_, min_rows=0)
        return self._transform(X.astype(np.float64, copy=False)).astype(X.dtype, copy=False)

    def fit_transform(self, X):
        """fit(X), then transform(X). X: (N, D)."""
        return self.fit(X).transform(X)

    def inverse_transform(self, X):
        """X: (N, D') transformed data. Returns (N, D) data in the original space."""
        self._require_fitted("inverse_transform(X)")
        X = _as_data("X", X, D=self._output_dim(), min_rows=0)
        return self._inverse(X.astype(np.float64, copy=False)).astype(X.dtype, copy=False)

    def _output_dim(self):
        return self.n_features_in_

    _min_rows = 1


def _nonzero_scale(scale):
    """Constant features have zero spread; dividing by 1 leaves them unchanged instead of
    producing inf/NaN (scikit-learn's rule)."""
    scale = scale.copy()
    scale[scale < 10 * np.finfo(np.float64).eps] = 1.0
    return scale


class Standardize(_Transform):
    """Zero mean and unit variance per feature: (X - mean_) / scale_.

    Attributes after fit: mean_ (D,), var_ (D,) biased variance, scale_ (D,) its square root
    (1 for a constant feature).
    """

    def __init__(self):
        self.mean_ = None

    def _fit(self, X):
        self.mean_ = X.mean(axis=0)
        self.var_ = X.var(axis=0)
        self.scale_ = _nonzero_scale(np.sqrt(self.var_))

    def _transform(self, X):
        return (X - self.mean_) / self.scale_

    def _inverse(self, X):
        return X * self.scale_ + self.mean_


class MinMaxScale(_Transform):
    """Scale each feature linearly so the training data spans ``feature_range``.

    feature_range: (low, high) with low < high; the default (-1, 1) is the notes' "[-1, 1]".
    Attributes after fit: data_min_ (D,), data_max_ (D,), scale_ (D,), min_ (D,), with
    transform(X) = X * scale_ + min_ (a constant feature maps to low).
    """

    _fitted_attr = "scale_"

    def __init__(self, feature_range=(-1, 1)):
        ok = (
            isinstance(feature_range, (tuple, list))
            and len(feature_range) == 2
            and all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)
                for v in feature_range
            )
        )
        if not ok or not feature_range[0] < feature_range[1]:
            raise ValueError(
                f"feature_range must be a pair (low, high) of finite numbers with low < high, "
                f"got {feature_range!r}"
            )
        self.feature_range = tuple(float(v) for v in feature_range)
        self.scale_ = None

    def _fit(self, X):
        low, high = self.feature_range
        self.data_min_ = X.min(axis=0)
        self.data_max_ = X.max(axis=0)
        self.scale_ = (high - low) / _nonzero_scale(self.data_max_ - self.data_min_)
        self.min_ = low - self.data_min_ * self.scale_

    def _transform(self, X):
        return X * self.scale_ + self.min_

    def _inverse(self, X):
        return (X - self.min_) / self.scale_


def _fix_signs(components):
    """Flip each row so that its largest-magnitude entry is positive (a deterministic sign)."""
    rows = np.arange(components.shape[0])
    signs = np.sign(components[rows, np.argmax(np.abs(components), axis=1)])
    signs[signs == 0] = 1.0
    return components * signs[:, None]


class PCA(_Transform):
    """Principal component analysis: project centred data onto the top principal directions.

    - n_components: number K of components kept, 1 <= K <= min(N, D); None keeps min(N, D).
    - whiten: if True, divide each projection by sqrt(explained_variance_ + eps), giving every
      kept direction (about) unit variance, as in the notes' whitening.
    - eps: added to the variances before the square root when whitening, so near-zero variance
      directions are not blown up into noise (the notes' 1e-5). With eps=0 the output equals
      scikit-learn's PCA(whiten=True).

    Attributes after fit: mean_ (D,), components_ (K, D) orthonormal rows sorted by decreasing
    variance, explained_variance_ (K,) (variance along each, divided by N - 1),
    explained_variance_ratio_ (K,), singular_values_ (K,).
    """

    _min_rows = 2

    def __init__(self, n_components=None, whiten=False, eps=1e-5):
        if n_components is not None and (
            isinstance(n_components, bool)
            or not isinstance(n_components, numbers.Integral)
            or n_components < 1
        ):
            raise ValueError(
                f"n_components must be a positive integer or None, got {n_components!r}"
            )
        self.n_components = n_components
        self.whiten = bool(whiten)
        self.eps = _require_eps(eps)
        self.mean_ = None

    def _fit(self, X):
        N, D = X.shape
        K = min(N, D) if self.n_components is None else int(self.n_components)
        if K > min(N, D):
            raise ValueError(
                f"n_components must be <= min(N, D) = {min(N, D)} for X of shape {(N, D)}, got {K}"
            )
        self.mean_ = X.mean(axis=0)
        # SVD of the centred data rather than an eigendecomposition of X^T X: it does not square
        # the condition number, so small variances stay accurate. With more rows than columns,
        # Xc = QR first: R (D, D) has Xc's singular values and right singular vectors, and its
        # SVD skips computing the (N, D) left factor (about twice as fast for 5,000 images).
        Xc = X - self.mean_
        if N > D:
            Xc = np.linalg.qr(Xc, mode="r")
        _, S, Vt = np.linalg.svd(Xc, full_matrices=False)
        variance = S**2 / (N - 1)
        self.components_ = _fix_signs(Vt[:K])
        self.singular_values_ = S[:K]
        self.explained_variance_ = variance[:K]
        total = variance.sum()
        self.explained_variance_ratio_ = variance[:K] / (total if total > 0 else 1.0)
        self.n_components_ = K

    def _scale(self):
        return np.sqrt(self.explained_variance_ + self.eps) if self.whiten else None

    def _transform(self, X):
        Z = (X - self.mean_) @ self.components_.T
        return Z / self._scale() if self.whiten else Z

    def _inverse(self, Z):
        if self.whiten:
            Z = Z * self._scale()
        return Z @ self.components_ + self.mean_

    def _output_dim(self):
        return self.n_components_


class ZCA(_Transform):
    """ZCA whitening: PCA whitening rotated back into the input space,

        transform(X) = (X - mean_) @ whitening_,   whitening_ = U diag(1 / sqrt(S + eps)) U^T,

    with U S U^T the (D, D) covariance of the training data (divided by N - 1, as PCA's). Of all
    whitening transforms it changes the data least, so whitened images still look like images.

    - eps: added to the eigenvalues; it keeps directions of (near) zero variance from being
      amplified without bound, and acts as a low-pass filter on images (the notes' 1e-5 suits
      pixel values in [0, 1]; larger values for [0, 255]).

    Attributes after fit: mean_ (D,), whitening_ (D, D), coloring_ (D, D) its inverse
    U diag(sqrt(S + eps)) U^T, eigenvalues_ (D,) in decreasing order.
    """

    _min_rows = 2

    def __init__(self, eps=1e-5):
        self.eps = _require_eps(eps)
        self.mean_ = None

    def _fit(self, X):
        N = X.shape[0]
        self.mean_ = X.mean(axis=0)
        Xc = X - self.mean_
        # All D eigenvectors (also when N < D), so unseen data keeps its component outside the
        # training span; eigh returns them in increasing order.
        S, U = np.linalg.eigh(Xc.T @ Xc / (N - 1))
        S, U = np.maximum(S[::-1], 0.0), U[:, ::-1]
        if self.eps == 0 and S.min() <= 0:
            raise ValueError(
                "eps=0 needs a full-rank covariance (N > D and no constant or "
                "collinear features); use eps > 0"
            )
        self.eigenvalues_ = S
        self.whitening_ = (U / np.sqrt(S + self.eps)) @ U.T
        self.coloring_ = (U * np.sqrt(S + self.eps)) @ U.T

    def _transform(self, X):
        return (X - self.mean_) @ self.whitening_

    def _inverse(self, Z):
        return Z @ self.coloring_ + self.mean_
