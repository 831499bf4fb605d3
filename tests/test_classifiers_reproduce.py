"""The reproduction command: a --quick smoke run on tiny synthetic CIFAR batches (default suite),
and the real run on CIFAR-10 (slow; needs CIFAR10_DIR)."""

import json
import os

import pytest

from numpy_impl import reproduce
from tests.test_data import write_batches


def test_quick_run_on_synthetic_batches(tmp_path, capsys):
    write_batches(tmp_path / "cifar", n=20)
    out_json = tmp_path / "results.json"
    rc = reproduce.main(["--data-dir", str(tmp_path / "cifar"), "--quick", "--json", str(out_json)])
    assert rc == 0
    captured = capsys.readouterr()
    table = captured.out
    for name in (
        "k-NN, k=1",
        "k-NN, best k=",
        "linear SVM",
        "softmax",
        "two-layer net",
        "FC net + batchnorm + dropout",
        "ThreeLayerConvNet",
        "two loops",
        "one loop",
        "no loops",
        "course expects",
        "k-NN, L1 distance, best k=",
        "linear SVM, random search",
        "softmax, random search",
        "two-layer net, random search",
        "Sanity checks",
        "initial loss = log(C)",
        "overfit 20 images",
        "linear SVM on HOG + colour features",
        "two-layer net on HOG + colour features",
    ):
        assert name in table, name
    assert "[two-layer net]" in captured.err  # progress display
    assert "[pca] top 16 of 3072 components of 100 images keep" in captured.err
    assert "[sanity] tanh x10, weight_scale 1.0: activation std per layer" in captured.err
    results = json.loads(out_json.read_text())
    assert len(results["rows"]) == 16
    assert sum(row.get("kind") == "sanity" for row in results["rows"]) == 3
    assert "Softmax classifier, W = 1e-4 randn" in table
    searches = [row for row in results["rows"] if "search_runs" in row]
    assert [row["experiment"] for row in searches] == [
        "linear SVM, random search",
        "softmax, random search",
        "two-layer net, random search",
    ]
    for row in searches:  # QUICK budgets: 2 runs in 2 rounds, best first
        assert [run["round"] for run in sorted(row["search_runs"], key=lambda r: r["round"])] == [
            0,
            1,
        ]
        scores = [run["score"] for run in row["search_runs"]]
        assert scores == sorted(scores, reverse=True)
    for row in results["rows"]:
        assert row["test_acc"] is None or 0.0 <= row["test_acc"] <= 1.0
    # k-NN runs on raw integer pixel values in float64, where even the no-loop expansion is
    # exact: the three distance implementations must agree exactly.
    assert results["knn_timings"]["one loop maxdiff"] == 0.0
    assert results["knn_timings"]["no loops maxdiff"] == 0.0
    assert all(row["meets"] is None for row in results["rows"])  # quick runs judge nothing


def test_plots_written_for_the_chosen_experiments(tmp_path, capsys):
    write_batches(tmp_path / "cifar", n=20)
    plots = tmp_path / "plots"
    rc = reproduce.main(
        [
            "--data-dir",
            str(tmp_path / "cifar"),
            "--quick",
            "--only",
            "knn,search",
            "--plots",
            str(plots),
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert "update/weight ratio" in err
    for name in ("linear SVM", "softmax"):
        assert f"[search] {name}, best of 2: lr " in err
    assert "[search] two-layer net, best of 2 1-epoch runs: lr " in err
    # One scatter per searched model; the searched two-layer net's pictures as any network's.
    assert sorted(os.listdir(plots)) == [
        "knn_cv.png",
        "softmax_search.png",
        "svm_search.png",
        "two_layer_net_search.png",
        "two_layer_net_searched_W1.png",
        "two_layer_net_searched_history.png",
        "two_layer_net_searched_update_ratio.png",
    ]
    for name in os.listdir(plots):
        assert (plots / name).read_bytes()[:4] == b"\x89PNG"


def test_only_and_bad_arguments(tmp_path, capsys):
    write_batches(tmp_path / "cifar", n=20)
    rc = reproduce.main(["--data-dir", str(tmp_path / "cifar"), "--quick", "--only", "knn"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "k-NN, k=1" in out and "softmax" not in out
    with pytest.raises(SystemExit):
        reproduce.main(["--data-dir", str(tmp_path / "cifar"), "--only", "gan"])
    with pytest.raises(SystemExit):
        reproduce.main(["--data-dir", str(tmp_path / "missing")])


@pytest.mark.slow
def test_real_cifar10_reaches_the_course_ranges():
    """The full reproduction on real CIFAR-10 (over half an hour on two shared cores; see the
    README for measured times). Point CIFAR10_DIR at the official python batches or an
    ImageFolder copy."""
    data_dir = os.environ.get("CIFAR10_DIR")
    if not data_dir or not os.path.isdir(data_dir):
        pytest.skip("set CIFAR10_DIR to a CIFAR-10 directory to run the real reproduction")
    rows, timings, _, _ = reproduce.run(data_dir, cnn_train=10000)
    print(reproduce.format_results(rows, timings, (100, 5000)))
    failed = [r["experiment"] for r in rows if r["meets"] is False]
    assert not failed, f"below the course's range: {failed}"


def test_format_results_leaves_out_empty_tables():
    sanity = reproduce._sanity_row("initial loss", "TwoLayerNet", "2.30", "log(10)", False, 0.5)
    only_sanity = reproduce.format_results([sanity])
    assert only_sanity.startswith("Sanity checks") and "| experiment |" not in only_sanity
    assert "| initial loss | TwoLayerNet | 2.30 | log(10) | 0.5 s | NO |" in only_sanity
    row = reproduce._row("k-NN, k=1", "5,000 train", None, 0.29, 1.0, "knn_k1")
    both = reproduce.format_results([row, sanity]).splitlines()
    assert both[0].startswith("| experiment |") and "| k-NN, k=1 |" in both[2]
    assert both[3] == "" and both[4].startswith("Sanity checks")
