"""Hyperparameter random search with coarse-to-fine refinement, as the CS231n notes advise.

The notes' recipe: prefer random search to grid search (it tries more distinct values of the
hyperparameters that matter); sample scale parameters such as the learning rate and the
regularization strength uniformly in log space (``10 ** uniform(-6, -1)``); start with a coarse
range and a few short runs, then narrow the range around the best results and search again.

Example::

    space = {"learning_rate": LogUniform(1e-7, 1e-5), "reg": LogUniform(1e2, 1e5)}

    def train(learning_rate, reg):
        svm = LinearSVM()
        svm.train(X_train, y_train, learning_rate=learning_rate, reg=reg, num_iters=300)
        return np.mean(svm.predict(X_val) == y_val)     # higher is better

    results = random_search(space, train, budget=20, rounds=2, seed=0)
    best = results[0]    # {"params": {...}, "score": ..., "round": ..., "result": ...}
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["LogUniform", "Uniform", "Choice", "random_search", "refine_space"]

# When a range is narrowed around the best results it is widened on each side by this fraction
# of the old range (in log space for LogUniform), so the optimum is not cut off at the edge.
REFINE_MARGIN = 0.1


def _require_real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class Uniform:
    """Uniform on [low, high] (for hyperparameters on a linear scale, e.g. a dropout ratio)."""

    def __init__(self, low, high):
        self.low, self.high = _require_real("low", low), _require_real("high", high)
        if not self.low < self.high:
            raise ValueError(
                f"{type(self).__name__} needs low < high, got low={low!r}, high={high!r}"
            )

    def _to_unit(self, v):
        return np.asarray(v, dtype=np.float64)

    def _from_unit(self, u):
        return u

    def sample(self, rng, n):
        """n draws, (n,) floats; rng a numpy.random.Generator."""
        lo, hi = self._to_unit(self.low), self._to_unit(self.high)
        return self._from_unit(rng.uniform(lo, hi, size=n))

    def narrowed(self, values):
        """A range of the same kind spanning ``values`` plus REFINE_MARGIN of this range on each
        side, clipped to this range."""
        lo, hi = self._to_unit(self.low), self._to_unit(self.high)
        v = self._to_unit(np.asarray(values, dtype=np.float64))
        margin = REFINE_MARGIN * (hi - lo)
        new_lo, new_hi = max(lo, v.min() - margin), min(hi, v.max() + margin)
        if not new_lo < new_hi:  # values outside this range: nothing to narrow to
            return self
        return type(self)(float(self._from_unit(new_lo)), float(self._from_unit(new_hi)))

    def __repr__(self):
        return f"{type(self).__name__}({self.low:g}, {self.high:g})"


class LogUniform(Uniform):
    """log10 of the value is uniform on [log10(low), log10(high)]: every decade is equally
    likely (the notes' way to sample learning rates and regularization strengths)."""

    def __init__(self, low, high):
        super().__init__(low, high)
        if self.low <= 0:
            raise ValueError(f"LogUniform needs 0 < low < high, got low={low!r}")

    def _to_unit(self, v):
        return np.log10(np.asarray(v, dtype=np.float64))

    def _from_unit(self, u):
        return 10.0**u


class Choice:
    """One of a list of values, each equally likely (e.g. hidden sizes, update rules)."""

    def __init__(self, values):
        values = list(values)
        if not values:
            raise ValueError("Choice needs at least one value, got []")
        self.values = values

    def sample(self, rng, n):
        """n draws (a list); rng a numpy.random.Generator."""
        return [self.values[i] for i in rng.integers(len(self.values), size=n)]

    def narrowed(self, values):
        """The values that occur in ``values``, in this Choice's order."""
        return Choice([v for v in self.values if any(v == w for w in values)])

    def __repr__(self):
        return f"Choice({self.values!r})"


def _check_space(space):
    if not isinstance(space, dict) or not space:
        raise ValueError(
            f"space must be a non-empty dict name -> LogUniform/Uniform/Choice, got {space!r}"
        )
    for name, spec in space.items():
        if not isinstance(spec, (Uniform, Choice)):
            raise TypeError(
                f"space[{name!r}] must be a LogUniform, Uniform or Choice, got {spec!r}"
            )


def _score_of(result):
    """train_fn's result -> float score (NaN and +-inf rank last: a diverged run)."""
    score = result.get("score") if isinstance(result, dict) else result
    if isinstance(score, bool) or not isinstance(score, numbers.Real):
        raise TypeError(
            f"train_fn must return a number (higher is better) or a dict with a "
            f"numeric 'score', got {result!r}"
        )
    return float(score)


def _rank_key(entry):
    s = entry["score"]
    return -s if math.isfinite(s) else math.inf


def refine_space(space, results, keep=0.25):
    """Coarse-to-fine: narrow every range of ``space`` to the best results.

    Inputs:
    - space: dict name -> LogUniform / Uniform / Choice.
    - results: list of random_search entries ({"params": ..., "score": ...}).
    - keep: fraction (0, 1] of the results (at least one, finite scores only) whose values the
      new ranges must span.

    Returns a new space; it is ``space`` unchanged if no result has a finite score.
    """
    _check_space(space)
    if isinstance(keep, bool) or not isinstance(keep, numbers.Real) or not 0 < keep <= 1:
        raise ValueError(f"keep must be a number in (0, 1], got {keep!r}")
    finite = sorted((r for r in results if math.isfinite(r["score"])), key=_rank_key)
    if not finite:
        return dict(space)
    best = finite[: max(1, math.ceil(keep * len(finite)))]
    return {name: spec.narrowed([r["params"][name] for r in best]) for name, spec in space.items()}


def _split_budget(budget, rounds):
    base, extra = divmod(budget, rounds)
    return [base + (1 if i < extra else 0) for i in range(rounds)]


def random_search(space, train_fn, budget, rounds=1, keep=0.25, seed=None):
    """Random search over ``space``, optionally refined coarse-to-fine.

    Inputs:
    - space: dict name -> LogUniform(low, high) / Uniform(low, high) / Choice(values).
    - train_fn: called as ``train_fn(**params)``; returns a score, higher is better (e.g.
      validation accuracy), or a dict with a 'score' key and anything else to keep. NaN or
      infinite scores (diverged runs) rank last.
    - budget: total number of train_fn calls (>= rounds), split evenly over the rounds.
    - rounds: 1 for plain random search; with more, each round after the first samples from the
      space narrowed (refine_space) to the best ``keep`` fraction of all results so far.
    - keep: see refine_space.
    - seed: seed of the numpy.random.Generator that draws the samples (None: fresh entropy).

    Returns the list of all budget results, best first: dicts with params (name -> value),
    score (float), round (0-based) and result (what train_fn returned).
    """
    _check_space(space)
    if not callable(train_fn):
        raise TypeError(f"train_fn must be callable, got {type(train_fn).__name__}")
    for name, value, minimum in (("budget", budget, 1), ("rounds", rounds, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if rounds > budget:
        raise ValueError(
            f"rounds must be <= budget (one run per round at least), got "
            f"rounds={rounds}, budget={budget}"
        )
    rng = np.random.default_rng(seed)
    results = []
    current = dict(space)
    for round_index, n in enumerate(_split_budget(int(budget), int(rounds))):
        if round_index > 0:
            current = refine_space(current, results, keep)
        draws = {name: spec.sample(rng, n) for name, spec in current.items()}
        for i in range(n):
            params = {name: _plain(draws[name][i]) for name in current}
            result = train_fn(**params)
            results.append(
                {
                    "params": params,
                    "score": _score_of(result),
                    "round": round_index,
                    "result": result,
                }
            )
    return sorted(results, key=_rank_key)


def _plain(v):
    """NumPy scalars as Python numbers, so results print and serialize cleanly."""
    return v.item() if isinstance(v, np.generic) else v
