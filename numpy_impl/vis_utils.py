"""Pictures a CS231n learner expects: image grids (the course's ``visualize_grid``), training
curves, update/weight ratios, linear-classifier templates, k-NN cross-validation and
hyperparameter-search plots.

``visualize_grid``, ``vis_grid``, ``vis_nn`` and ``weights_as_images`` are pure NumPy and return
arrays. The ``plot_*`` functions draw with matplotlib (a project dependency), imported inside each
function so that importing this module needs NumPy only; each writes a PNG atomically (temporary
file, then rename) and returns its path.
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np

from twin_checks import require_ndim, shape_of

__all__ = [
    "CIFAR10_CLASSES",
    "visualize_grid",
    "vis_grid",
    "vis_nn",
    "weights_as_images",
    "plot_solver_history",
    "plot_update_ratios",
    "plot_class_templates",
    "plot_first_layer_weights",
    "plot_knn_cross_validation",
    "plot_search_results",
    "plot_activation_statistics",
    "plot_pca_pictures",
    "plot_activation_histograms",
]

CIFAR10_CLASSES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _require_images(Xs):
    Xs = np.asarray(Xs)
    require_ndim("Xs", Xs, 4, "(N, H, W, C)")
    if Xs.shape[0] < 1:
        raise ValueError(f"Xs must hold at least one image, got shape {shape_of(Xs)}")
    return Xs


def visualize_grid(Xs, ubound=255.0, padding=1):
    """Reshape a 4D tensor of image data to a grid for easy visualization (the course's).

    Inputs:
    - Xs: (N, H, W, C) image data.
    - ubound: output grid values are scaled to the range [0, ubound]; each image separately.
    - padding: number of blank pixels between elements of the grid.

    Returns grid: (grid_size * H + (grid_size - 1) * padding, same for W, C) with
    grid_size = ceil(sqrt(N)); cells past the last image stay 0. A constant image maps to 0.
    """
    Xs = _require_images(Xs)
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be an integer >= 0, got {padding!r}")
    N, H, W, C = Xs.shape
    grid_size = int(math.ceil(math.sqrt(N)))
    grid_height = H * grid_size + padding * (grid_size - 1)
    grid_width = W * grid_size + padding * (grid_size - 1)
    grid = np.zeros((grid_height, grid_width, C))
    for idx in range(N):
        y, x = divmod(idx, grid_size)
        y0, x0 = y * (H + padding), x * (W + padding)
        img = Xs[idx].astype(np.float64)
        low, high = img.min(), img.max()
        # The course divides by (high - low) unguarded; a constant image would give NaN.
        span = high - low if high > low else 1.0
        grid[y0 : y0 + H, x0 : x0 + W] = ubound * (img - low) / span
    return grid


def vis_grid(Xs):
    """Visualize a grid of images (the course's): Xs (N, H, W, C) laid out on a square grid with
    1-pixel padding, values rescaled to [0, 1] over the whole grid. Returns (G, G', C)."""
    Xs = _require_images(Xs)
    N, H, W, C = Xs.shape
    A = int(math.ceil(math.sqrt(N)))
    G = np.ones((A * H + A, A * W + A, C), Xs.dtype)
    G *= np.min(Xs)
    for n in range(N):
        y, x = divmod(n, A)
        G[y * H + y : (y + 1) * H + y, x * W + x : (x + 1) * W + x, :] = Xs[n]
    maxg, ming = G.max(), G.min()
    return (G - ming) / (maxg - ming if maxg > ming else 1.0)


def vis_nn(rows):
    """Visualize an array of arrays of images (the course's): rows is a list of lists of
    (H, W, C) images, all the same shape. Returns (rows * H + rows, cols * W + cols, C)."""
    if not rows or not rows[0]:
        raise ValueError("rows must be a non-empty list of non-empty lists of images")
    N, D = len(rows), len(rows[0])
    H, W, C = np.asarray(rows[0][0]).shape
    Xs = np.asarray(rows[0][0])
    G = np.ones((N * H + N, D * W + D, C), Xs.dtype)
    for y in range(N):
        if len(rows[y]) != D:
            raise ValueError(f"rows[{y}] must hold {D} images like rows[0], got {len(rows[y])}")
        for x in range(D):
            G[y * H + y : (y + 1) * H + y, x * W + x : (x + 1) * W + x, :] = rows[y][x]
    maxg, ming = G.max(), G.min()
    return (G - ming) / (maxg - ming if maxg > ming else 1.0)


def weights_as_images(W, image_shape=(3, 32, 32), channels_first=True):
    """A first-layer weight matrix as images: W (D, M) with D = prod(image_shape), one image per
    column (a linear classifier's class templates, or a fully connected net's first layer); a
    trailing bias row (D + 1 rows, the bias trick) is dropped. A conv layer's w (F, C, HH, WW) is
    accepted too. image_shape is (C, H, W) when channels_first (the layout of get_CIFAR10_data),
    else (H, W, C). Returns (M, H, W, C) for visualize_grid."""
    W = np.asarray(W)
    if W.ndim == 4:
        return W.transpose(0, 2, 3, 1)
    require_ndim("W", W, (2, 4), "(D, M) or (F, C, HH, WW)")
    D = int(np.prod(image_shape))
    if W.shape[0] == D + 1:
        W = W[:-1]
    if W.shape[0] != D:
        raise ValueError(
            f"W must have D = {D} rows (image_shape {tuple(image_shape)}), or D + 1 "
            f"with a bias row, got shape {shape_of(W)}"
        )
    images = W.T.reshape(W.shape[1], *image_shape)
    return images.transpose(0, 2, 3, 1) if channels_first else images


# ----------------------------------------------------------------------------------------------
# matplotlib plots
# ----------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    """Write fig to path as PNG atomically (temporary file in the same directory, then rename)."""
    plt = _pyplot()
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    finally:
        plt.close(fig)
    return path


def plot_solver_history(solver, path):
    """The course's training plot: loss per iteration (top) and train / val accuracy per check
    (bottom). solver: a trained Solver (loss_history, train_acc_history, val_acc_history)."""
    for attr in ("loss_history", "train_acc_history", "val_acc_history"):
        if not hasattr(solver, attr):
            raise TypeError(f"solver must be a Solver with {attr}, got {type(solver).__name__}")
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 7))
    ax1.plot(np.asarray(solver.loss_history, dtype=np.float64), "o", markersize=2)
    ax1.set(title="Training loss", xlabel="Iteration", ylabel="loss")
    ax2.plot(solver.train_acc_history, "-o", label="train")
    ax2.plot(solver.val_acc_history, "-o", label="val")
    ax2.set(
        title="Accuracy",
        xlabel="Accuracy check (after iteration 1, then each epoch)",
        ylabel="accuracy",
    )
    ax2.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_update_ratios(update_ratio_history, path, healthy=1e-3):
    """||update|| / ||w|| per iteration for every parameter (log scale), with the notes' healthy
    band (healthy / 10 to healthy * 10) shaded. update_ratio_history: dict name -> list."""
    if not isinstance(update_ratio_history, dict) or not update_ratio_history:
        raise ValueError("update_ratio_history must be a non-empty dict name -> list of ratios")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, ratios in update_ratio_history.items():
        r = np.asarray(ratios, dtype=np.float64)
        r[~(r > 0)] = np.nan  # zero / undefined ratios cannot be drawn on a log axis
        ax.plot(r, label=name, linewidth=1)
    ax.axhspan(healthy / 10, healthy * 10, color="green", alpha=0.1, label=f"healthy ~{healthy:g}")
    ax.axhline(healthy, color="green", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set(title="Update / weight ratio", xlabel="Iteration", ylabel="||update|| / ||w||")
    ax.legend(fontsize="small", ncol=2)
    return _save(fig, path)


def plot_class_templates(
    W, path, class_names=CIFAR10_CLASSES, image_shape=(3, 32, 32), channels_first=True
):
    """A linear classifier's weights as one image per class (the course's template picture).
    W: (D, C) or (D + 1, C) with a bias row; see weights_as_images for image_shape."""
    images = weights_as_images(W, image_shape, channels_first)
    if len(class_names) != images.shape[0]:
        raise ValueError(
            f"class_names must name the {images.shape[0]} columns of W, got "
            f"{len(class_names)} names"
        )
    plt = _pyplot()
    n = images.shape[0]
    fig, axes = plt.subplots(1, n, figsize=(1.5 * n, 2))
    for ax, img, name in zip(np.atleast_1d(axes), images, class_names, strict=True):
        low, high = img.min(), img.max()
        ax.imshow((img - low) / (high - low if high > low else 1.0))
        ax.set_title(name)
        ax.axis("off")
    return _save(fig, path)


def plot_first_layer_weights(W, path, image_shape=(3, 32, 32), channels_first=True, title=""):
    """First-layer weights (a FC net's W1 (D, H) or a conv net's W1 (F, C, HH, WW)) as a grid of
    images (visualize_grid)."""
    grid = visualize_grid(weights_as_images(W, image_shape, channels_first), ubound=1.0)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(grid.squeeze() if grid.shape[2] == 1 else grid)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_knn_cross_validation(accuracies, path):
    """The course's k-NN plot: accuracy of each fold (dots) and mean with standard-deviation
    error bars against k, one line per metric. accuracies: cross_validate_knn's result
    (k -> fold accuracies, or metric -> k -> fold accuracies)."""
    if not isinstance(accuracies, dict) or not accuracies:
        raise ValueError("accuracies must be a non-empty dict from cross_validate_knn")
    per_metric = accuracies
    if not isinstance(next(iter(accuracies.values())), dict):
        per_metric = {"": accuracies}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for metric, k_to_acc in per_metric.items():
        ks = sorted(k_to_acc)
        means = [np.mean(k_to_acc[k]) for k in ks]
        stds = [np.std(k_to_acc[k]) for k in ks]
        bars = ax.errorbar(ks, means, yerr=stds, capsize=3, label=metric.upper() or None)
        color = bars.lines[0].get_color()  # each fold's dots in its metric's colour
        for k in ks:
            ax.scatter([k] * len(k_to_acc[k]), k_to_acc[k], s=8, alpha=0.4, color=color)
    ax.set(title="Cross-validation on k", xlabel="k", ylabel="Cross-validation accuracy")
    if len(per_metric) > 1 or "" not in per_metric:
        ax.legend()
    return _save(fig, path)


def plot_search_results(
    results, path, x="learning_rate", y="reg", log=True, score_label="score", title=None
):
    """The course's hyperparameter scatter: each run at (x, y), coloured by its score.
    results: random_search's list (params, score); x, y: parameter names; score_label names the
    colour bar (e.g. "validation accuracy"); title: the plot's title (default: a generic one)."""
    if not results:
        raise ValueError("results must be a non-empty list from random_search")
    for name in (x, y):
        if name not in results[0]["params"]:
            raise ValueError(
                f"{name!r} is not a searched parameter (have {sorted(results[0]['params'])})"
            )
    xs = [r["params"][x] for r in results]
    ys = [r["params"][y] for r in results]
    scores = np.array([r["score"] for r in results], dtype=np.float64)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    sc = ax.scatter(xs, ys, c=scores, s=60, cmap="viridis", edgecolors="k")
    fig.colorbar(sc, ax=ax, label=score_label)
    if log:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis, values in ((ax.xaxis, xs), (ax.yaxis, ys)):
            # Over more than a decade, labelled minor ticks (2e-7, 3e-7, ...) overlap; label
            # the decades only. Under a decade the minor labels are the only ones.
            with np.errstate(divide="ignore", invalid="ignore"):  # values <= 0: no decades
                span = np.ptp(np.log10(np.asarray(values, dtype=np.float64)))
            if span >= 1:
                axis.set_minor_formatter(NullFormatter())
    ax.set(xlabel=x, ylabel=y, title=title or "Random search (best runs in yellow)")
    return _save(fig, path)


def plot_activation_statistics(stats, path):
    """Mean and std of each hidden layer's activations (diagnostics.activation_statistics), the
    notes' per-layer picture of how activations evolve with depth."""
    if not stats:
        raise ValueError("stats must be a non-empty list from activation_statistics")
    layers = [s["layer"] for s in stats]
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(layers, [s["mean"] for s in stats], "o-", label="mean")
    ax1.plot(layers, [s["std"] for s in stats], "s-", label="std")
    ax1.set(title="Activations per layer", xlabel="hidden layer")
    ax1.legend()
    ax2.plot(layers, [s["saturated_fraction"] for s in stats], "o-", label="saturated / zero")
    ax2.plot(layers, [s["dead_fraction"] for s in stats], "s-", label="dead units")
    ax2.set(title="Fractions", xlabel="hidden layer", ylim=(-0.05, 1.05))
    ax2.legend()
    return _save(fig, path)


def plot_pca_pictures(pca, X, path, image_shape=(3, 32, 32), channels_first=True, num_images=49):
    """The notes' PCA figure, four panels: images; the top principal components as images;
    the images reconstructed from those components; the whitened images (each component's
    coefficient divided by sqrt(variance + eps), projected back to pixel space).

    Inputs:
    - pca: a fitted numpy_impl.preprocessing.PCA (whitened or not; K = its n_components_).
    - X: (N, D) images flattened as image_shape, D = prod(image_shape); the first num_images
      are shown.
    - image_shape: (C, H, W) when channels_first, else (H, W, C).
    """
    if getattr(pca, "components_", None) is None:
        raise ValueError("pca must be a fitted numpy_impl.preprocessing.PCA (call fit first)")
    X = np.asarray(X, dtype=np.float64)
    require_ndim("X", X, 2, "(N, D)")
    D = int(np.prod(image_shape))
    if X.shape[1] != D or pca.components_.shape[1] != D:
        raise ValueError(
            f"X and pca must have D = {D} columns (image_shape {tuple(image_shape)})"
            f", got X {shape_of(X)} and components {shape_of(pca.components_)}"
        )
    X = X[:num_images]
    C = pca.components_
    coef = (X - pca.mean_) @ C.T
    panels = {
        "images": X,
        f"top {len(C)} components": C,
        f"reconstructed from {len(C)}": coef @ C + pca.mean_,
        "whitened": (coef / np.sqrt(pca.explained_variance_ + pca.eps)) @ C,
    }
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.5))
    for ax, (title, rows) in zip(axes, panels.items(), strict=True):
        grid = visualize_grid(weights_as_images(rows.T, image_shape, channels_first), ubound=1.0)
        ax.imshow(grid.squeeze() if grid.shape[2] == 1 else grid)
        ax.set_title(title)
        ax.axis("off")
    return _save(fig, path)


def plot_activation_histograms(activations, path, bins=30):
    """The notes' histograms of each hidden layer's activations, one row per setting.

    Inputs:
    - activations: dict label -> list of hidden-layer outputs (N, H_i) (e.g.
      ``FullyConnectedNet.hidden_activations(X)`` for several weight scales).
    - bins: number of histogram bins per panel.
    """
    if not isinstance(activations, dict) or not activations or not all(activations.values()):
        raise ValueError(
            "activations must be a non-empty dict label -> non-empty list of hidden-layer outputs"
        )
    rows, cols = len(activations), max(len(v) for v in activations.values())
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows), squeeze=False)
    for r, (label, layers) in enumerate(activations.items()):
        for c in range(cols):
            ax = axes[r, c]
            if c < len(layers):
                a = np.asarray(layers[c], dtype=np.float64).ravel()
                ax.hist(a, bins=bins)
                ax.set_title(f"layer {c + 1}, std {a.std():.2g}", fontsize=7)
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
