"""Assignment profiles: fixed tests and points per assignment, MISSING for what a submission
lacks, course-provided code neither graded nor able to fail the student's own code, robustness
remarks that never fail a test, and every correct answer accepted."""

import os

import numpy as np
import pytest

from cs231n_grader import engine, pool_ties, profiles, report, runner, submission

STUDENTS = os.path.join(os.path.dirname(__file__), "fixtures", "students")
_cache = {}


def grade(name, assignment="auto", only=None):
    """Grade a fixture folder once (results by test name, the notes, the profile)."""
    key = (name, assignment, tuple(only or ()))
    if key not in _cache:
        with submission.load([os.path.join(STUDENTS, name)]) as sub:
            profile, how = profiles.choose(assignment, sub.modules)
            results = engine.grade(
                sub, runner.Limits(10.0, 6144), jobs=2, only=only, profile=profile
            )
            _cache[key] = ({r.name: r for r in results}, [how, *sub.notes], profile)
    return _cache[key]


def test_profiles_name_only_gradable_tests():
    from cs231n_grader.graded_items import all_test_names

    known = set(all_test_names())
    for p in profiles.PROFILES.values():
        assert set(p.points) <= known, set(p.points) - known
        assert all(v > 0 for v in p.points.values())


def test_detection_and_bad_choice():
    assert profiles.detect(["cs231n/layers.py", "cs231n/classifiers/cnn.py"]) == "2"
    assert profiles.detect(["cs231n/rnn_layers.py"]) == "3"
    assert profiles.detect(["cs231n/classifiers/linear_svm.py", "cs231n/layers.py"]) == "1"
    assert profiles.detect(["cs231n/layers.py"]) is None  # layers.py alone: could be any
    assert profiles.detect(["cs231n/rnn_layers.py", "cs231n/fast_layers.py"]) is None
    with pytest.raises(profiles.ProfileError, match="--assignment must be one of .* got '4'"):
        profiles.choose("4", [])
    assert profiles.choose("all", ["cs231n/rnn_layers.py"])[0] is None


def test_assignment_2_course_code_cannot_fail_the_student():
    """fast_layers.py without its compiled extension, relu_backward editing dout in place,
    max-pool ties split equally: a right assignment 2 scores full marks."""
    res, notes, profile = grade(
        "a2_course", only=["relu_*", "max_pool_*", "ThreeLayerConvNet*", "adam", "affine_*"]
    )
    assert profile.assignment == "2" and "detected" in notes[0]
    assert set(res) == {
        "relu_forward",
        "relu_backward",
        "max_pool_forward_naive",
        "max_pool_backward_naive",
        "ThreeLayerConvNet.__init__",
        "ThreeLayerConvNet.loss",
        "adam",
        "affine_forward",
        "affine_backward",
    }
    for r in res.values():
        assert r.verdict == "pass", (r.name, r.hint, r.details)
        # An accepted alternative (tied maxima shared equally) reports no error against the
        # reference it does not follow.
        assert r.max_rel_error is None or r.max_rel_error <= 1e-7, r.name
    assert any("in place" in n for n in res["relu_backward"].robustness)
    assert any("tied maxima" in n for n in res["max_pool_backward_naive"].notes)
    assert any("fast_layers.py" in n and "stands in" in n for n in notes)
    scored = report.score(list(res.values()))
    assert (
        sum(s.score for s in scored)
        == sum(s.max_score for s in scored)
        == sum(profile.points[t] for t in res)
    )
    # The deduction applies to the one test with a robustness remark.
    scored = report.score(list(res.values()), robustness_deduction=0.5)
    lost = {s.result.name: s.max_score - s.score for s in scored if s.score < s.max_score}
    assert lost == {"relu_backward": profile.points["relu_backward"] * 0.5}


def test_assignment_2_buggy_student_scores_lower_with_missing_tests():
    only = ["batchnorm_*", "conv_*_naive", "spatial_groupnorm_*"]
    res, _, profile = grade("a2_buggy", only=only)
    assert res["batchnorm_forward"].verdict == "fail"
    assert "PyTorch's convention" in res["batchnorm_forward"].hint
    assert res["conv_backward_naive"].verdict == "fail"
    assert "factor of 2" in res["conv_backward_naive"].hint
    assert res["spatial_groupnorm_backward"].verdict == "missing"
    assert res["conv_forward_naive"].verdict == "pass"
    scored = report.score(list(res.values()))
    top = sum(s.max_score for s in scored)
    assert top == sum(profile.points[t] for t in res)  # MISSING keeps its points in the total
    got = sum(s.score for s in scored)
    assert got == top - sum(
        profile.points[t]
        for t in ("batchnorm_forward", "conv_backward_naive", "spatial_groupnorm_backward")
    )
    partial = sum(s.score for s in report.score(list(res.values()), partial_credit=True))
    assert got < partial < top  # failing tests earn the share of their cases that passed


def test_assignment_1_stubs_of_assignment_2_are_not_graded():
    res, notes, profile = grade("a1_course")
    assert profile.assignment == "1"
    assert set(res) == set(profile.points), "every test of the profile is reported"
    assert res["KNearestNeighbor.compute_distances_one_loop"].verdict == "missing"
    assert "batchnorm_forward" not in res and "FullyConnectedNet.loss" not in res
    ungraded = next(n for n in notes if n.startswith("not graded"))
    assert "batchnorm_forward" in ungraded and "FullyConnectedNet.loss" in ungraded
    # log of probabilities: right, overflows only on |x| ~ 1000 -> a robustness remark.
    sm = res["softmax_loss"]
    assert sm.verdict == "pass" and any("huge logits" in n for n in sm.robustness)
    for name, r in res.items():
        if name != "KNearestNeighbor.compute_distances_one_loop":
            assert r.verdict == "pass", (name, r.hint, r.details)


def test_assignment_3_course_optim_is_not_graded():
    # The GAN and SimCLR functions are graded in test_grader.py's full-marks test (each file of
    # PyTorch code costs a child that imports torch).
    res, notes, profile = grade(
        "a3_course", only=["rnn_*", "word_*", "lstm_*", "CaptioningRNN*", "MultiHeadAttention*"]
    )
    assert profile.assignment == "3"
    assert "adam" not in res and "temporal_softmax_loss" not in res
    assert "lstm_forward" in res  # optional tests are graded when defined
    assert "MultiHeadAttention.forward" in res  # PyTorch, vs torch_impl's module
    for r in res.values():
        assert r.verdict == "pass", (r.name, r.hint, r.details)


def test_global_max_softmax_fails_and_per_row_max_passes(tmp_path):
    """Rows of scores ~1000 apart: one max over the whole batch gives NaN (a failure); the
    per-row max passes. Both pass every other case."""
    src = open(os.path.join(STUDENTS, "correct", "cs231n", "classifiers", "softmax.py")).read()
    bad = src.replace("scores -= scores.max(axis=1, keepdims=True)", "scores -= scores.max()")
    assert bad != src
    (tmp_path / "softmax.py").write_text(bad)
    with submission.load([str(tmp_path / "softmax.py")]) as sub:
        res = {
            r.name: r
            for r in engine.grade(sub, runner.Limits(10.0, 1024), only=["softmax_loss_vectorized"])
        }
    r = res["softmax_loss_vectorized"]
    assert r.verdict == "fail" and "offset by ~1000" in " ".join(r.details)
    assert r.cases_passed == r.cases_total - 1


def test_pool_split_validity():
    x = np.array([[[[1.0, 1.0], [0.0, 1.0]]]])
    p = {"pool_height": 2, "pool_width": 2, "stride": 2}
    dout = np.array([[[[3.0]]]])
    assert pool_ties.pool_split_ok(x, p, dout, np.array([[[[3.0, 0], [0, 0]]]]))
    assert pool_ties.pool_split_ok(x, p, dout, np.array([[[[1.0, 1.0], [0, 1.0]]]]))
    assert not pool_ties.pool_split_ok(x, p, dout, np.array([[[[3.0, 3.0], [0, 3.0]]]]))
    assert not pool_ties.pool_split_ok(x, p, dout, np.array([[[[2.0, 0], [1.0, 0]]]]))
    assert not pool_ties.pool_split_ok(x, p, dout, np.array([[[[4.0, -1.0], [0, 0]]]]))
