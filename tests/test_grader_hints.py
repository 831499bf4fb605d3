"""Hints that name a mistake instead of a generic mismatch: sampling one step late, batchnorm's
test mode on batch statistics, noise that is not U(-1, 1) or ignores its seed."""

import os

from cs231n_grader import engine, runner, submission

CORRECT = os.path.join(os.path.dirname(__file__), "fixtures", "students", "correct", "cs231n")


def _grade_edited(tmp_path, rel, edits, only, memory_mb=1024):
    text = open(os.path.join(CORRECT, rel)).read()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / os.path.basename(rel)
    path.write_text(text)
    with submission.load([str(path)]) as sub:
        return {r.name: r for r in engine.grade(sub, runner.Limits(10.0, memory_mb), only=only)}


def test_sample_shifted_by_one(tmp_path):
    res = _grade_edited(
        tmp_path,
        "classifiers/rnn.py",
        [
            (
                "        for t in range(max_length):\n",
                "        captions[:, 0] = self._start\n        for t in range(max_length - 1):\n",
            ),
            ("            captions[:, t] = word", "            captions[:, t + 1] = word"),
        ],
        only=["CaptioningRNN.sample"],
    )
    r = res["CaptioningRNN.sample"]
    assert r.verdict == "fail" and "shifted one step late" in r.hint


def test_batchnorm_test_mode_on_batch_statistics(tmp_path):
    res = _grade_edited(
        tmp_path,
        "layers.py",
        [
            (
                "        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta",
                "        out = gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + beta",
            ),
        ],
        only=["batchnorm_forward"],
    )
    r = res["batchnorm_forward"]
    assert r.verdict == "fail" and "running_mean" in r.hint and "test mode" in r.hint
    assert r.cases_passed == r.cases_total - 1


def test_sample_noise_is_judged_by_its_statistics(tmp_path):
    """No reference reproduces another implementation's draws: shape, range, spread, seed."""
    res = _grade_edited(
        tmp_path,
        "gan_pytorch.py",
        [
            (
                "    if seed is not None:\n        torch.manual_seed(seed)\n"
                "    return 2 * torch.rand(batch_size, dim) - 1",
                "    return torch.rand(batch_size, dim)",
            ),
        ],
        only=["sample_noise", "generator_loss"],
        memory_mb=6144,
    )
    r = res["sample_noise"]
    assert r.verdict == "fail"
    text = " ".join(r.details)
    assert "not uniform on [-1, 1]" in text and "same seed gave different noise" in text
    assert res["generator_loss"].verdict == "pass"
