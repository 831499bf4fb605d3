"""Tests for numpy_impl.features: HOG, the HSV colour histogram and extract_features.

Oracles: the course's own cs231n/features.py code (HOG via scipy.ndimage.uniform_filter, hue via
matplotlib.colors.rgb_to_hsv), Python's colorsys, and hand-derived values."""

import colorsys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpy_impl.features import (
    color_histogram_hsv,
    extract_features,
    hog_feature,
    rgb2gray,
    rgb_to_hsv,
)
from numpy_impl.gradient_check import rel_error
from parity_tests.tolerances import REL_ERROR

TWIN = REL_ERROR["twin_float64"]


def course_hog_feature(im):
    """cs231n/features.py's hog_feature, verbatim apart from names (needs SciPy)."""
    from scipy.ndimage import uniform_filter

    image = np.dot(im[..., :3], [0.299, 0.587, 0.144]) if im.ndim == 3 else np.atleast_2d(im)
    sx, sy = image.shape
    orientations = 9
    cx, cy = (8, 8)
    gx = np.zeros(image.shape)
    gy = np.zeros(image.shape)
    gx[:, :-1] = np.diff(image, n=1, axis=1)
    gy[:-1, :] = np.diff(image, n=1, axis=0)
    grad_mag = np.sqrt(gx**2 + gy**2)
    grad_ori = np.arctan2(gy, (gx + 1e-15)) * (180 / np.pi) + 90
    n_cellsx = int(np.floor(sx / cx))
    n_cellsy = int(np.floor(sy / cy))
    orientation_histogram = np.zeros((n_cellsx, n_cellsy, orientations))
    for i in range(orientations):
        temp_ori = np.where(grad_ori < 180 / orientations * (i + 1), grad_ori, 0)
        temp_ori = np.where(grad_ori >= 180 / orientations * i, temp_ori, 0)
        cond2 = temp_ori > 0
        temp_mag = np.where(cond2, grad_mag, 0)
        orientation_histogram[:, :, i] = uniform_filter(temp_mag, size=(cx, cy))[
            round(cx / 2) :: cx, round(cy / 2) :: cy
        ].T
    return orientation_histogram.ravel()


def random_image(rs, size=32):
    im = rs.randint(0, 256, size=(size, size, 3)).astype(np.float64)
    im[:6, :6] = 17.0  # a flat patch: zero gradients
    im[10:20, 3] = im[10:20, 2] + 5  # some exactly horizontal gradients
    return im


def loop_hog_feature(gray):
    """The same definition with explicit loops over cells and pixels (exact sums)."""
    sx, sy = gray.shape
    gx, gy = np.zeros((sx, sy)), np.zeros((sx, sy))
    out = np.zeros((sy // 8, sx // 8, 9))
    for i in range(sx):
        for j in range(sy):
            if j + 1 < sy:
                gx[i, j] = gray[i, j + 1] - gray[i, j]
            if i + 1 < sx:
                gy[i, j] = gray[i + 1, j] - gray[i, j]
    for ci in range(sx // 8):
        for cj in range(sy // 8):
            for i in range(8 * ci, 8 * ci + 8):
                for j in range(8 * cj, 8 * cj + 8):
                    ori = np.arctan2(gy[i, j], gx[i, j] + 1e-15) * (180 / np.pi) + 90
                    if 0 < ori < 180:
                        out[cj, ci, int(ori // 20)] += np.hypot(gx[i, j], gy[i, j]) / 64
    return out.ravel()


@given(st.integers(0, 2**31 - 1), st.sampled_from([16, 32, 36]))
def test_hog_matches_loops_and_the_course_implementation(seed, size):
    rs = np.random.RandomState(seed)
    im = random_image(rs, size)
    feat = hog_feature(im)
    assert feat.shape == ((size // 8) ** 2 * 9,)
    gray = rgb2gray(im)
    assert rel_error(feat, loop_hog_feature(gray)) < TWIN
    np.testing.assert_array_equal(hog_feature(gray), feat)
    pytest.importorskip("scipy")
    # uniform_filter's running sums leave ~1e-16 residues in cells whose true value is 0, so the
    # course's output is compared relative to the feature scale rather than entry by entry.
    course = course_hog_feature(im)
    assert np.max(np.abs(feat - course)) <= TWIN * np.max(np.abs(course))


def test_hog_of_a_horizontal_ramp():
    # Gray image with I[i, j] = 3 j: gx = 3 everywhere but the last column (0), gy = 0. The
    # orientation arctan2(0, 3) + 90 = 90 degrees falls in bin 4 ([80, 100)). Each cell's bin-4
    # value is the mean magnitude over its 64 pixels: 3, except the last cell column, whose
    # last pixel column has magnitude 0: 3 * 7/8. All other bins are 0.
    im = np.tile(3.0 * np.arange(16), (24, 1))  # 24 rows x 16 columns: 3 x 2 cells
    feat = hog_feature(im).reshape(2, 3, 9)  # (cell column, cell row, bin)
    expected = np.zeros((2, 3, 9))
    expected[0, :, 4] = 3.0
    expected[1, :, 4] = 3.0 * 7 / 8
    assert rel_error(feat, expected) < TWIN


def test_hog_bad_input():
    with pytest.raises(ValueError, match="at least 8x8"):
        hog_feature(np.zeros((7, 30)))
    with pytest.raises(ValueError, match="im must have 2 or 3 dimensions"):
        hog_feature(np.zeros((2, 8, 8, 3)))


def test_rgb2gray_uses_the_course_weights():
    np.testing.assert_array_equal(
        rgb2gray(np.array([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]])), [[0.299, 0.587, 0.144]]
    )


@given(st.integers(0, 2**31 - 1))
def test_rgb_to_hsv_matches_colorsys(seed):
    rs = np.random.RandomState(seed)
    rgb = rs.rand(40, 3)
    rgb[::4, 1] = rgb[::4, 0]  # ties for the maximum
    rgb[::5, 2] = rgb[::5, 1]
    rgb[::7] = rgb[::7, :1]  # grays: hue and saturation 0
    rgb[3] = 0.0  # black
    rgb[5] = [1.0, 1.0, 0.0]
    hsv = rgb_to_hsv(rgb)
    expected = np.array([colorsys.rgb_to_hsv(*px) for px in rgb])
    # colorsys puts hue 1.0 - tiny at 0.0 - tiny; both represent the same angle.
    d = np.abs(hsv - expected)
    d[:, 0] = np.minimum(d[:, 0], 1 - d[:, 0])
    assert np.max(d / np.maximum(1e-8, np.abs(hsv) + np.abs(expected))) < TWIN


def test_rgb_to_hsv_matches_matplotlib():
    colors = pytest.importorskip("matplotlib.colors")
    rs = np.random.RandomState(0)
    rgb = rs.rand(6, 5, 3)
    rgb[0, :, 2] = rgb[0, :, 0]
    rgb[1] = 0.5
    for dtype in (np.float64, np.float32):
        np.testing.assert_array_equal(
            rgb_to_hsv(rgb.astype(dtype)), colors.rgb_to_hsv(rgb.astype(dtype))
        )
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rgb_to_hsv(rgb * 255)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        rgb_to_hsv(np.zeros((4, 4)))


def test_color_histogram_of_solid_colors():
    # Pure red: hue 0 -> bin 0. Pure green: hue 1/3 -> 85 on [0, 255] -> bin 3 of width 25.5.
    red = np.zeros((4, 4, 3))
    red[..., 0] = 255
    green = np.zeros((4, 4, 3))
    green[..., 1] = 255
    np.testing.assert_array_equal(color_histogram_hsv(red), np.eye(10)[0])
    np.testing.assert_array_equal(color_histogram_hsv(green), np.eye(10)[3])
    # Half red, half green; normalized=False gives count * bin width (the course's formula).
    mixed = np.concatenate([red[:2], green[:2]])
    np.testing.assert_array_equal(color_histogram_hsv(mixed), 0.5 * (np.eye(10)[0] + np.eye(10)[3]))
    unnorm = color_histogram_hsv(mixed, normalized=False)
    assert rel_error(unnorm, 8 * 25.5 * (np.eye(10)[0] + np.eye(10)[3])) < TWIN


def test_color_histogram_matches_the_course_implementation():
    colors = pytest.importorskip("matplotlib.colors")
    rs = np.random.RandomState(1)
    im = rs.randint(0, 256, size=(32, 32, 3)).astype(np.float64)
    for nbin in (10, 25):
        bins = np.linspace(0, 255, nbin + 1)
        hsv = colors.rgb_to_hsv(im / 255) * 255
        imhist, edges = np.histogram(hsv[:, :, 0], bins=bins, density=True)
        assert rel_error(color_histogram_hsv(im, nbin=nbin), imhist * np.diff(edges)) < TWIN


def test_extract_features_concatenates_in_order():
    rs = np.random.RandomState(2)
    imgs = rs.randint(0, 256, size=(5, 16, 16, 3)).astype(np.float64)
    feats = extract_features(imgs, [hog_feature, lambda im: color_histogram_hsv(im, nbin=4)])
    assert feats.shape == (5, 4 * 9 + 4) and feats.dtype == np.float64
    for i in range(5):
        np.testing.assert_array_equal(
            feats[i], np.concatenate([hog_feature(imgs[i]), color_histogram_hsv(imgs[i], nbin=4)])
        )
    assert extract_features(imgs[:0], [hog_feature]).size == 0


def test_extract_features_verbose_and_errors(capsys):
    imgs = np.zeros((1001, 8, 8, 3))
    extract_features(imgs, [lambda im: im.mean(axis=(0, 1))], verbose=True)
    assert "Done extracting features for 1000 / 1001 images" in capsys.readouterr().out
    with pytest.raises(ValueError, match="1-D"):
        extract_features(imgs[:2], [lambda im: im])
    with pytest.raises(ValueError, match="at least one"):
        extract_features(imgs[:2], [])
