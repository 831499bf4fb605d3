"""numpy_impl.vis_utils: the course's grids (against the course's loop), weights as images, and
the plots (files written atomically; matplotlib not imported until a plot is drawn)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from numpy_impl.preprocessing import PCA
from numpy_impl.search import LogUniform, random_search
from numpy_impl.vis_utils import (
    plot_activation_histograms,
    plot_activation_statistics,
    plot_class_templates,
    plot_first_layer_weights,
    plot_knn_cross_validation,
    plot_pca_pictures,
    plot_search_results,
    plot_solver_history,
    plot_update_ratios,
    vis_grid,
    vis_nn,
    visualize_grid,
    weights_as_images,
)


def course_visualize_grid(Xs, ubound=255.0, padding=1):
    """CS231n's visualize_grid, as published (explicit cursor loops)."""
    (N, H, W, C) = Xs.shape
    grid_size = int(np.ceil(np.sqrt(N)))
    grid_height = H * grid_size + padding * (grid_size - 1)
    grid_width = W * grid_size + padding * (grid_size - 1)
    grid = np.zeros((grid_height, grid_width, C))
    next_idx = 0
    y0, y1 = 0, H
    for _ in range(grid_size):
        x0, x1 = 0, W
        for _ in range(grid_size):
            if next_idx < N:
                img = Xs[next_idx]
                low, high = np.min(img), np.max(img)
                grid[y0:y1, x0:x1] = ubound * (img - low) / (high - low)
                next_idx += 1
            x0 += W + padding
            x1 += W + padding
        y0 += H + padding
        y1 += H + padding
    return grid


@pytest.mark.parametrize("N, padding", [(1, 1), (7, 1), (9, 0), (10, 3)])
def test_visualize_grid_equals_the_course(N, padding):
    Xs = np.random.RandomState(N).randn(N, 4, 5, 3)
    np.testing.assert_allclose(
        visualize_grid(Xs, padding=padding), course_visualize_grid(Xs, padding=padding), rtol=1e-12
    )
    np.testing.assert_allclose(
        visualize_grid(Xs, ubound=1.0, padding=padding),
        course_visualize_grid(Xs, ubound=1.0, padding=padding),
        rtol=1e-12,
    )


def test_visualize_grid_constant_image_is_zero_not_nan():
    grid = visualize_grid(np.full((2, 3, 3, 1), 7.0))
    assert np.all(grid == 0)


def test_vis_grid_and_vis_nn_layout():
    Xs = np.arange(2 * 2 * 2 * 1, dtype=float).reshape(2, 2, 2, 1)
    G = vis_grid(Xs)
    assert G.shape == (6, 6, 1) and G.min() == 0 and G.max() == 1
    np.testing.assert_allclose(G[0:2, 0:2, 0], Xs[0, :, :, 0] / 7)
    np.testing.assert_allclose(G[0:2, 3:5, 0], Xs[1, :, :, 0] / 7)
    rows = [[Xs[0], Xs[1]], [Xs[1], Xs[0]]]
    N = vis_nn(rows)
    assert N.shape == (6, 6, 1)
    np.testing.assert_allclose(N[3:5, 0:2, 0], Xs[1, :, :, 0] / 7)


def test_weights_as_images_inverts_flattening():
    rs = np.random.RandomState(0)
    images = rs.randn(10, 3, 4, 5)  # (M, C, H, W): the NCHW layout of get_CIFAR10_data
    W = images.reshape(10, -1).T  # a linear classifier's (D, C) weights
    expected = images.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(weights_as_images(W, (3, 4, 5)), expected)
    W_bias = np.vstack([W, rs.randn(1, 10)])
    np.testing.assert_array_equal(weights_as_images(W_bias, (3, 4, 5)), expected)
    hwc = expected.reshape(10, -1).T
    np.testing.assert_array_equal(weights_as_images(hwc, (4, 5, 3), channels_first=False), expected)
    np.testing.assert_array_equal(weights_as_images(images), expected)  # conv (F, C, HH, WW)


class FakeSolver:
    loss_history = [2.3, 2.0, 1.7, 1.5]
    train_acc_history = [0.1, 0.4, 0.6]
    val_acc_history = [0.1, 0.3, 0.4]


def assert_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    leftovers = [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".tmp_")]
    assert leftovers == []


def test_plots_write_png_files(tmp_path):
    rs = np.random.RandomState(1)
    results = random_search(
        {"learning_rate": LogUniform(1e-6, 1e-2), "reg": LogUniform(1, 1e4)},
        lambda learning_rate, reg: -abs(np.log10(learning_rate) + 4),
        budget=6,
        seed=0,
    )
    stats = [
        {
            "layer": i,
            "mean": 0.1,
            "std": 0.5 / i,
            "dead_fraction": 0.0,
            "saturated_fraction": 0.1 * i,
        }
        for i in range(1, 4)
    ]
    paths = [
        plot_solver_history(FakeSolver(), str(tmp_path / "history.png")),
        plot_update_ratios(
            {"W1": [1e-3, 2e-3, np.nan], "b1": [np.nan, 0.0, 1e-2]}, str(tmp_path / "ratios.png")
        ),
        plot_class_templates(rs.randn(3 * 32 * 32 + 1, 10), str(tmp_path / "templates.png")),
        plot_first_layer_weights(rs.randn(32, 3, 7, 7), str(tmp_path / "sub" / "conv.png")),
        plot_knn_cross_validation(
            {"l1": {1: [0.2, 0.3], 5: [0.3, 0.3]}, "l2": {1: [0.25, 0.2], 5: [0.2, 0.3]}},
            str(tmp_path / "knn.png"),
        ),
        plot_search_results(results, str(tmp_path / "search.png")),
        plot_search_results(
            results,
            str(tmp_path / "search_val.png"),
            score_label="validation accuracy",
            title="softmax: random search",
        ),
        plot_activation_statistics(stats, str(tmp_path / "act.png")),
        plot_activation_histograms(
            {
                "small": [rs.randn(20, 5) * 0.1, rs.randn(20, 5) * 0.01],
                "large": [np.tanh(rs.randn(20, 5) * 9)],
            },
            str(tmp_path / "hist.png"),
        ),
        plot_pca_pictures(
            PCA(n_components=9).fit(rs.rand(30, 48)),
            rs.rand(12, 48),
            str(tmp_path / "pca.png"),
            image_shape=(4, 4, 3),
            channels_first=False,
        ),
    ]
    for p in paths:
        assert_png(p)


def test_plot_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"class_names must name the 10 columns of W, got 3"):
        plot_class_templates(
            np.zeros((3072, 10)), str(tmp_path / "t.png"), class_names=["a", "b", "c"]
        )
    with pytest.raises(ValueError, match=r"W must have D = 3072 rows .*got shape \(100, 10\)"):
        weights_as_images(np.zeros((100, 10)))
    with pytest.raises(ValueError, match=r"'momentum' is not a searched parameter"):
        plot_search_results(
            [{"params": {"learning_rate": 1, "reg": 1}, "score": 0}],
            str(tmp_path / "s.png"),
            x="momentum",
        )
    with pytest.raises(TypeError, match=r"solver must be a Solver with loss_history"):
        plot_solver_history(object(), str(tmp_path / "h.png"))
    with pytest.raises(ValueError, match=r"Xs must have 4 dimensions \(N, H, W, C\)"):
        visualize_grid(np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match=r"padding must be an integer >= 0, got -1"):
        visualize_grid(np.zeros((3, 4, 4, 1)), padding=-1)
    with pytest.raises(ValueError, match=r"activations must be a non-empty dict"):
        plot_activation_histograms({"a": []}, str(tmp_path / "h.png"))
    with pytest.raises(ValueError, match=r"pca must be a fitted"):
        plot_pca_pictures(PCA(), np.zeros((2, 48)), str(tmp_path / "p.png"), (4, 4, 3))
    with pytest.raises(ValueError, match=r"X and pca must have D = 48 columns .*got X \(2, 40\)"):
        plot_pca_pictures(
            PCA().fit(np.eye(5, 48)), np.zeros((2, 40)), str(tmp_path / "p.png"), (4, 4, 3)
        )
    assert not list(tmp_path.iterdir())


def test_modules_do_not_import_matplotlib():
    code = (
        "import sys; import numpy_impl.vis_utils, numpy_impl.preprocessing, "
        "numpy_impl.search, numpy_impl.diagnostics; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('matplotlib', 'torch', 'scipy', 'sklearn')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert out.stdout.strip() == "[]"
