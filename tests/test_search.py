"""numpy_impl.search: log-uniform sampling, random search, coarse-to-fine refinement."""

import math

import numpy as np
import pytest
from scipy import stats

from numpy_impl.search import Choice, LogUniform, Uniform, random_search, refine_space


def test_log_uniform_is_uniform_in_log_space():
    x = LogUniform(1e-6, 1e-1).sample(np.random.default_rng(0), 4000)
    assert x.min() >= 1e-6 and x.max() <= 1e-1
    assert stats.kstest(np.log10(x), stats.uniform(loc=-6, scale=5).cdf).pvalue > 1e-3
    # Every decade equally likely: about 1/5 of the draws below 1e-5 (a linear-scale uniform
    # would put 0.01% there).
    assert abs(np.mean(x < 1e-5) - 0.2) < 0.03
    u = Uniform(-1, 3).sample(np.random.default_rng(0), 4000)
    assert stats.kstest(u, stats.uniform(loc=-1, scale=4).cdf).pvalue > 1e-3


def bowl(learning_rate, reg, hidden):
    """Peak score 0 at learning_rate 1e-3, reg 1e2, hidden 64; decreases with log distance."""
    return -((math.log10(learning_rate) + 3) ** 2) - (math.log10(reg) - 2) ** 2 - (hidden != 64)


SPACE = {
    "learning_rate": LogUniform(1e-6, 1e0),
    "reg": LogUniform(1e-2, 1e5),
    "hidden": Choice([16, 64, 256]),
}


def test_random_search_plain_returns_sorted_results_within_the_space():
    calls = []

    def train(**params):
        calls.append(params)
        return bowl(**params)

    results = random_search(SPACE, train, budget=12, seed=1)
    assert len(results) == len(calls) == 12
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(r["round"] == 0 for r in results)
    for r in results:
        assert r["score"] == bowl(**r["params"]) == r["result"]
        assert 1e-6 <= r["params"]["learning_rate"] <= 1 and r["params"]["hidden"] in (16, 64, 256)
        assert type(r["params"]["learning_rate"]) is float
    assert random_search(SPACE, bowl, budget=12, seed=1) == results  # seeded: reproducible


def test_coarse_to_fine_narrows_around_the_optimum_and_improves():
    results = random_search(SPACE, bowl, budget=60, rounds=3, seed=2)
    assert [sum(r["round"] == i for r in results) for i in range(3)] == [20, 20, 20]
    lrs = {i: [r["params"]["learning_rate"] for r in results if r["round"] == i] for i in range(3)}
    spans = [np.ptp(np.log10(lrs[i])) for i in range(3)]
    assert spans[2] < spans[0] / 2
    assert min(lrs[2]) < 1e-3 * 10**0.5 and max(lrs[2]) > 1e-3 / 10**0.5
    mean_score = [np.mean([r["score"] for r in results if r["round"] == i]) for i in range(3)]
    assert mean_score[2] > mean_score[0] + 2
    # The best run is within ~0.45 decades of the continuous optimum (a hidden size other than
    # 64 may have been narrowed away after round 0: Choice keeps only values seen at the top).
    best = results[0]["params"]
    assert (math.log10(best["learning_rate"]) + 3) ** 2 + (math.log10(best["reg"]) - 2) ** 2 < 0.2


def test_refine_space_spans_the_best_results_in_log_space():
    space = {"lr": LogUniform(1e-6, 1e0), "p": Uniform(0, 1), "h": Choice([1, 2, 3])}
    results = [
        {"params": {"lr": 1e-4, "p": 0.5, "h": 2}, "score": 0.9},
        {"params": {"lr": 1e-3, "p": 0.6, "h": 3}, "score": 0.8},
        {"params": {"lr": 1e-1, "p": 0.1, "h": 1}, "score": 0.1},
        {"params": {"lr": 1e-2, "p": 0.9, "h": 1}, "score": float("nan")},
    ]
    new = refine_space(space, results, keep=0.5)  # the two best finite results
    # Margin: 10% of the old log-range (6 decades) = 0.6 decades each side.
    assert new["lr"].low == pytest.approx(10**-4.6)
    assert new["lr"].high == pytest.approx(10**-2.4)
    assert new["p"].low == pytest.approx(0.4) and new["p"].high == pytest.approx(0.7)
    assert new["h"].values == [2, 3]
    assert refine_space(space, results[3:])["lr"] is space["lr"]  # no finite score: unchanged


def test_diverged_runs_rank_last_and_dict_results_are_kept():
    def train(x):
        return {"score": float("nan") if x > 0.5 else x, "note": x}

    results = random_search({"x": Uniform(0, 1)}, train, budget=20, seed=3)
    finite = [r for r in results if math.isfinite(r["score"])]
    assert results[: len(finite)] == finite and len(finite) < 20
    assert all(r["result"]["note"] == r["params"]["x"] for r in results)


def test_bad_input():
    with pytest.raises(ValueError, match=r"LogUniform needs 0 < low < high, got low=0"):
        LogUniform(0, 1)
    with pytest.raises(ValueError, match=r"Uniform needs low < high, got low=2, high=1"):
        Uniform(2, 1)
    with pytest.raises(ValueError, match=r"high must be a finite number, got inf"):
        LogUniform(1, float("inf"))
    with pytest.raises(ValueError, match=r"Choice needs at least one value"):
        Choice([])
    with pytest.raises(ValueError, match=r"space must be a non-empty dict"):
        random_search({}, bowl, budget=3)
    with pytest.raises(
        TypeError,
        match=r"space\['lr'\] must be a LogUniform, Uniform or Choice, "
        r"got \(1e-06, 1\)",
    ):
        random_search({"lr": (1e-6, 1)}, bowl, budget=3)
    with pytest.raises(ValueError, match=r"budget must be an integer >= 1, got 0"):
        random_search(SPACE, bowl, budget=0)
    with pytest.raises(ValueError, match=r"rounds must be <= budget .*rounds=4, budget=3"):
        random_search(SPACE, bowl, budget=3, rounds=4)
    with pytest.raises(TypeError, match=r"train_fn must be callable"):
        random_search(SPACE, None, budget=3)
    with pytest.raises(TypeError, match=r"train_fn must return a number .*got 'good'"):
        random_search({"x": Uniform(0, 1)}, lambda x: "good", budget=1)
    with pytest.raises(ValueError, match=r"keep must be a number in \(0, 1\], got 0"):
        refine_space(SPACE, [], keep=0)
