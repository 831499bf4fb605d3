"""numpy_impl.preprocessing against scikit-learn (StandardScaler, MinMaxScaler, PCA) and against
the defining properties of whitening (identity covariance, cov^(-1/2) from SciPy's sqrtm)."""

import numpy as np
import pytest
import scipy.linalg
from sklearn.decomposition import PCA as SkPCA
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from numpy_impl.preprocessing import PCA, ZCA, MinMaxScale, Standardize


def correlated(rs, N=60, D=7):
    """Gaussian data with very different variances per direction, and a non-zero mean."""
    A = rs.randn(D, D) * np.logspace(0, -2, D)[:, None]
    return rs.randn(N, D) @ A + rs.randn(D) * 5


def assert_close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("seed", [0, 1])
def test_standardize_equals_sklearn(seed):
    rs = np.random.RandomState(seed)
    X, X_new = correlated(rs), correlated(rs, N=9)
    X[:, 2] = 3.0  # a constant feature: left unscaled by both
    ours, ref = Standardize().fit(X), StandardScaler().fit(X)
    assert_close(ours.transform(X_new), ref.transform(X_new))
    assert_close(ours.mean_, ref.mean_)
    assert_close(ours.scale_, ref.scale_)
    assert_close(ours.inverse_transform(ours.transform(X_new)), X_new)


@pytest.mark.parametrize("feature_range", [(-1, 1), (0, 1), (-3.5, 10)])
def test_minmax_equals_sklearn(feature_range):
    rs = np.random.RandomState(2)
    X, X_new = correlated(rs), correlated(rs, N=9)
    X[:, 0] = -4.0
    ours = MinMaxScale(feature_range).fit(X)
    ref = MinMaxScaler(feature_range=feature_range).fit(X)
    assert_close(ours.transform(X_new), ref.transform(X_new))
    assert_close(ours.inverse_transform(X_new), ref.inverse_transform(X_new))
    Z = ours.transform(X)
    assert_close(Z[:, 1:].min(axis=0), np.full(X.shape[1] - 1, feature_range[0]))
    assert_close(Z[:, 1:].max(axis=0), np.full(X.shape[1] - 1, feature_range[1]))


def test_minmax_default_range_is_minus_one_to_one():
    Z = MinMaxScale().fit_transform(np.array([[0.0], [5.0], [10.0]]))
    np.testing.assert_array_equal(Z.ravel(), [-1.0, 0.0, 1.0])


def align_signs(ours, ref):
    """Flip each of our components (rows) to match the reference's sign."""
    return np.sign(np.sum(ours * ref, axis=1))


@pytest.mark.parametrize("N,D,K", [(60, 7, None), (60, 7, 3), (5, 9, None), (5, 9, 2)])
def test_pca_equals_sklearn(N, D, K):
    rs = np.random.RandomState(3)
    X, X_new = correlated(rs, N, D), correlated(rs, 4, D)
    ours = PCA(n_components=K).fit(X)
    ref = SkPCA(n_components=K, svd_solver="full").fit(X)
    signs = align_signs(ours.components_, ref.components_)
    assert np.all(np.abs(signs) == 1)
    assert_close(ours.components_ * signs[:, None], ref.components_)
    assert_close(ours.explained_variance_, ref.explained_variance_)
    assert_close(ours.explained_variance_ratio_, ref.explained_variance_ratio_)
    assert_close(ours.singular_values_, ref.singular_values_)
    assert_close(ours.transform(X_new) * signs, ref.transform(X_new))
    Z = rs.randn(3, ours.n_components_)
    assert_close(ours.inverse_transform(Z * signs), ref.inverse_transform(Z))


def test_pca_whiten_equals_sklearn_at_eps_0_and_is_shrunk_by_eps():
    rs = np.random.RandomState(4)
    X, X_new = correlated(rs), correlated(rs, N=5)
    ref = SkPCA(n_components=4, whiten=True, svd_solver="full").fit(X)
    for eps in (0.0, 1e-3):
        ours = PCA(n_components=4, whiten=True, eps=eps).fit(X)
        signs = align_signs(ours.components_, ref.components_)
        # eps only changes the divisor: sqrt(var) -> sqrt(var + eps).
        shrink = np.sqrt(ref.explained_variance_ / (ref.explained_variance_ + eps))
        assert_close(ours.transform(X_new) * signs, ref.transform(X_new) * shrink)
        assert_close(
            ours.inverse_transform(ours.transform(X_new)),
            ref.inverse_transform(ref.transform(X_new)),
        )
    Zw = PCA(whiten=True, eps=0.0).fit_transform(X)
    assert_close(np.cov(Zw, rowvar=False), np.eye(X.shape[1]))


def test_pca_full_rank_round_trip_and_components_sign_rule():
    rs = np.random.RandomState(5)
    X = correlated(rs)
    pca = PCA().fit(X)
    assert_close(pca.inverse_transform(pca.transform(X)), X)
    C = pca.components_
    assert_close(C @ C.T, np.eye(C.shape[0]))
    assert np.all(C[np.arange(len(C)), np.argmax(np.abs(C), axis=1)] > 0)


@pytest.mark.parametrize("N", [200, 6])
def test_zca_is_inverse_square_root_of_covariance(N):
    rs = np.random.RandomState(6)
    X = correlated(rs, N=N, D=5)
    eps = 1e-5
    zca = ZCA(eps=eps).fit(X)
    cov = np.cov(X, rowvar=False)
    expected = np.real(scipy.linalg.inv(scipy.linalg.sqrtm(cov + eps * np.eye(5))))
    np.testing.assert_allclose(zca.whitening_, expected, rtol=1e-6, atol=1e-8)
    assert_close(zca.inverse_transform(zca.transform(X)), X)


def test_zca_whitened_covariance_is_identity_and_symmetric():
    rs = np.random.RandomState(7)
    X = correlated(rs, N=300, D=6)
    zca = ZCA(eps=0.0).fit(X)
    assert_close(np.cov(zca.transform(X), rowvar=False), np.eye(6))
    assert_close(zca.whitening_, zca.whitening_.T)


def test_dtypes_float32_kept_integers_promoted():
    rs = np.random.RandomState(8)
    X = rs.randint(0, 256, size=(20, 4)).astype(np.uint8)
    for t in (Standardize(), MinMaxScale(), PCA(), ZCA()):
        assert t.fit_transform(X).dtype == np.float64
        assert t.fit_transform(X.astype(np.float32)).dtype == np.float32
    # uint8 differences would wrap around if not promoted first.
    assert_close(Standardize().fit(X).mean_, X.astype(np.float64).mean(axis=0))


ALL = [Standardize, MinMaxScale, PCA, ZCA]


@pytest.mark.parametrize("cls", ALL)
def test_bad_input(cls):
    X = np.random.RandomState(9).randn(10, 3)
    with pytest.raises(RuntimeError, match=r"not fitted yet: call fit\(X\) before transform"):
        cls().transform(X)
    with pytest.raises(RuntimeError, match=r"before inverse_transform"):
        cls().inverse_transform(X)
    with pytest.raises(ValueError, match=r"X must have 2 dimensions \(N, D\), got shape \(10,\)"):
        cls().fit(X[:, 0])
    bad = X.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"X must be finite, got nan at row 4, column 1"):
        cls().fit(bad)
    bad[4, 1] = np.inf
    with pytest.raises(ValueError, match=r"X must be finite, got inf at row 4, column 1"):
        cls().fit(X).transform(bad)
    fitted = cls().fit(X)
    with pytest.raises(ValueError, match=r"X must have shape \(N, 3\) .*got \(2, 4\)"):
        fitted.transform(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"X must have at least"):
        cls().fit(np.ones((0, 3)))
    with pytest.raises(TypeError, match=r"X must hold real numbers, got dtype <U1"):
        cls().fit(np.array([["a", "b"]]))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"feature_range must be a pair .*got \(1, 1\)"):
        MinMaxScale((1, 1))
    with pytest.raises(ValueError, match=r"feature_range .*got \(0, nan\)"):
        MinMaxScale((0, float("nan")))
    with pytest.raises(ValueError, match=r"n_components must be a positive integer or None, got 0"):
        PCA(n_components=0)
    with pytest.raises(ValueError, match=r"n_components must be <= min\(N, D\) = 3 .*got 4"):
        PCA(n_components=4).fit(np.random.RandomState(0).randn(10, 3))
    with pytest.raises(ValueError, match=r"eps must be a finite number >= 0, got -1"):
        PCA(eps=-1)
    with pytest.raises(ValueError, match=r"eps must be a finite number >= 0, got True"):
        ZCA(eps=True)
    with pytest.raises(ValueError, match=r"at least 2 rows"):
        PCA().fit(np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"eps=0 needs a full-rank covariance"):
        ZCA(eps=0).fit(np.random.RandomState(0).randn(3, 5))
    pca = PCA(n_components=2).fit(np.random.RandomState(0).randn(10, 3))
    with pytest.raises(ValueError, match=r"X must have shape \(N, 2\) .*got \(4, 3\)"):
        pca.inverse_transform(np.ones((4, 3)))
