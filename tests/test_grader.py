"""The grader on fixture students: the correct one scores full marks; each bug of the buggy ones
lands in its own test with a message that names it; the other tests of a buggy student pass."""

import os
import shutil

import pytest

from cs231n_grader import engine, report, runner, submission

STUDENTS = os.path.join(os.path.dirname(__file__), "fixtures", "students")

_cache = {}


def grade(name, timeout=10.0, memory_mb=1024, only=None, paths=None):
    """Grade a fixture student once per session (results keyed by name)."""
    key = (name, timeout, memory_mb, tuple(only or ()))
    if key not in _cache:
        paths = paths or [os.path.join(STUDENTS, name)]
        with submission.load(paths) as sub:
            results = engine.grade(
                sub, runner.Limits(timeout, memory_mb), seed=231, jobs=2, only=only
            )
        _cache[key] = {r.name: r for r in results}
    return _cache[key]


def _grade_dir(path):
    with submission.load([str(path)]) as sub:
        return {r.name: r for r in engine.grade(sub, runner.Limits(5.0, 1024))}


def test_correct_student_scores_full_marks():
    res = grade("correct", memory_mb=6144)  # its gan_pytorch.py imports torch
    from cs231n_grader.graded_items import ITEMS

    expected = {t for item in ITEMS for t in item.tests.values()}
    assert set(res) == expected, "every item of the table is found in the full CS231n layout"
    for r in res.values():
        if r.verdict == "skipped":  # only while a reference module is still being written
            assert "reference" in r.hint, r
            continue
        assert r.verdict == "pass", (r.name, r.hint, r.details)
        assert r.cases_passed == r.cases_total > 0
        assert r.max_rel_error is None or r.max_rel_error <= 1e-7
    assert sum(r.verdict == "pass" for r in res.values()) >= 50
    scored = report.score(list(res.values()))
    assert sum(s.score for s in scored) == sum(s.max_score for s in scored) > 0


def test_correct_student_notes_in_place_sgd_without_failing():
    r = grade("correct", memory_mb=6144)["sgd"]
    assert r.verdict == "pass"
    assert any("in place" in n for n in r.notes)


def test_missing_factor_in_backward_is_named():
    res = grade("backward_factor")
    sm = res["softmax_loss"]
    assert sm.verdict == "fail"
    assert "your loss is right" in sm.hint and "factor of N=5" in sm.hint
    bn = res["batchnorm_backward"]
    assert bn.verdict == "fail"
    # The 0.5 dropped inside the chain rule is not a constant factor: the diagnosis says the
    # forward is right and the backward disagrees with a numerical gradient of it.
    assert "forward is right" in bn.hint and "numerical gradient" in bn.hint
    assert "dx" in bn.hint and "dgamma" not in bn.hint  # dgamma/dbeta are right
    for ok in ("affine_forward", "affine_backward", "batchnorm_forward"):
        assert res[ok].verdict == "pass", res[ok].hint


def test_batchnorm_running_average_convention():
    res = grade("bn_momentum")
    fwd = res["batchnorm_forward"]
    assert fwd.verdict == "fail"
    assert "running_mean" in " ".join(fwd.details)
    assert "PyTorch's convention" in fwd.hint
    assert res["batchnorm_backward"].verdict == "pass"


def test_dropout_p_as_drop_probability():
    res = grade("dropout_drop_prob")
    fwd = res["dropout_forward"]
    assert fwd.verdict == "fail"
    assert "drop probability" in fwd.hint and "KEEPING" in fwd.hint
    bwd = res["dropout_backward"]
    # The backward applies its own forward's mask: right for every case but p=1, where the
    # buggy forward divided by 1 - p = 0.
    assert bwd.cases_passed == bwd.cases_total - 1


def test_adam_t_incremented_late():
    res = grade("adam_late_t")
    adam = res["adam"]
    assert adam.verdict == "fail"
    assert "t is incremented after the bias correction" in adam.hint
    assert "step 1" in " ".join(adam.details)
    assert res["sgd"].verdict == "pass"


def test_infinite_loop_fails_only_its_own_test():
    res = grade("infinite_loop", timeout=1.0)
    assert res["relu_backward"].verdict == "timeout"
    assert "still running after 1 s" in res["relu_backward"].hint
    for ok in ("relu_forward", "affine_forward", "affine_backward"):
        assert res[ok].verdict == "pass"


def test_exceptions_memory_and_crashes_are_test_failures():
    res = grade("raises", timeout=5.0, memory_mb=512)
    conv = res["conv_forward_naive"]
    assert conv.verdict == "error"
    assert "ValueError" in conv.hint and "cs231n/layers.py:" in conv.hint
    assert res["conv_backward_naive"].verdict in ("fail", "not run")
    seg = res["sigmoid_backward"]
    assert seg.verdict == "crash" and "SIG" in seg.hint
    assert res["sigmoid_forward"].verdict == "pass"
    assert res["relu_forward"].verdict == "pass" and res["relu_backward"].verdict == "pass"
    pool = res["max_pool_forward_naive"]
    assert pool.verdict == "error"
    try:
        import resource  # noqa: F401

        assert "MemoryError" in pool.hint and "memory cap 512 MiB" in pool.hint
    except ImportError:  # pragma: no cover - no address-space cap on this platform
        pass
    assert res["max_pool_backward_naive"].verdict == "not run"


def test_contract_violations():
    res = grade("contract_violations")
    ab = res["affine_backward"]
    assert ab.verdict == "fail"
    assert "db has shape (1, 4), expected (4,)" in ab.hint and "reshape" in ab.hint
    assert res["affine_forward"].verdict == "pass"
    relu = res["relu_forward"]  # values right, the caller's x changed: a robustness remark
    assert relu.verdict == "pass"
    assert any("modifies its input x in place" in n for n in relu.robustness)
    sig = res["sigmoid_forward"]
    assert sig.verdict == "fail" and "must return (out, cache)" in sig.hint
    assert res["sigmoid_backward"].verdict == "not run"
    tanh = res["tanh_forward"]
    assert tanh.verdict == "fail" and "not implemented yet" in tanh.hint


def test_max_pool_ties_to_every_maximum_is_accepted():
    res = grade("ties_all")
    bwd = res["max_pool_backward_naive"]
    assert bwd.verdict == "pass"
    assert any("tied maximum" in n for n in bwd.notes)


def test_model_l2_without_the_half():
    res = grade("l2_no_half", paths=[os.path.join(STUDENTS, "l2_no_half", "fc_net.py")])
    fc = res["FullyConnectedNet.loss"]
    assert fc.verdict == "fail"
    assert "0.5 factor" in fc.hint and "reg * W" in fc.hint
    # Cases without regularization pass: only the L2 term is wrong.
    assert fc.cases_passed == 3
    assert res["FullyConnectedNet.__init__"].verdict == "pass"
    assert res["TwoLayerNet.loss"].verdict == "pass"


def test_loose_file_is_graded_with_reference_siblings():
    path = os.path.join(STUDENTS, "correct", "cs231n", "classifiers", "fc_net.py")
    with submission.load([path]) as sub:
        assert set(sub.modules) == {"cs231n/classifiers/fc_net.py"}
        assert any("reference's" in n for n in sub.notes)
        results = engine.grade(sub, runner.Limits(10.0, 1024), jobs=2, only=["TwoLayerNet*"])
    assert [r.verdict for r in results] == ["pass", "pass"]


def test_syntax_error_fails_every_test_of_the_file(tmp_path):
    src = os.path.join(STUDENTS, "adam_late_t", "cs231n", "optim.py")
    bad = tmp_path / "optim.py"
    text = open(src).read().replace("    b1, b2, t =", "    print 'hi'\n    b1, b2, t =")
    bad.write_text(text)
    res = _grade_dir(tmp_path)
    assert set(res) == {"sgd", "sgd_momentum", "nesterov_momentum", "rmsprop", "adam"}
    for r in res.values():
        assert r.verdict == "error" and "does not parse" in r.hint and "line" in r.hint


def test_import_error_is_reported_per_test(tmp_path):
    pkg = tmp_path / "cs231n"
    pkg.mkdir()
    shutil.copy(os.path.join(STUDENTS, "adam_late_t", "cs231n", "optim.py"), pkg / "optim.py")
    with open(pkg / "optim.py", "a") as f:
        f.write("\nfrom cs231n.im2col_cython import col2im_cython\n")
    res = _grade_dir(tmp_path)
    assert res["adam"].verdict == "error"
    assert "importing cs231n/optim.py failed" in res["adam"].hint
    assert "ModuleNotFoundError" in res["adam"].hint


def test_function_missing_from_a_graded_file(tmp_path):
    pkg = tmp_path / "cs231n"
    pkg.mkdir()
    src = open(os.path.join(STUDENTS, "infinite_loop", "cs231n", "layers.py")).read()
    (pkg / "layers.py").write_text(src.split("def relu_forward")[0])
    res = _grade_dir(tmp_path)
    # relu is absent altogether: not listed. affine is complete: graded.
    assert set(res) == {"affine_forward", "affine_backward"}
    (pkg / "layers.py").write_text(src.split("def affine_backward")[0])
    res = _grade_dir(tmp_path)
    assert res["affine_forward"].verdict == "pass"
    assert res["affine_backward"].verdict == "missing"
    assert "not defined in cs231n/layers.py" in res["affine_backward"].hint


def test_reference_module_unavailable_is_skipped_not_failed(monkeypatch):
    from cs231n_grader import graded_items, item_selection

    item = next(i for i in graded_items.ITEMS if i.name == "affine")
    fake = graded_items.Item(**{**item.__dict__, "ref": "numpy_impl.not_written_yet"})
    monkeypatch.setattr(item_selection, "ITEMS", (fake,))
    with submission.load([os.path.join(STUDENTS, "correct")]) as sub:
        results = engine.grade(sub, runner.Limits(5.0, 1024))
    assert [r.verdict for r in results] == ["skipped", "skipped"]
    assert "numpy_impl.not_written_yet" in results[0].hint
    assert all(s.max_score == 0 for s in report.score(results))


def test_submission_errors():
    with pytest.raises(submission.SubmissionError, match="no such file"):
        submission.load(["/nonexistent/student"])
    with pytest.raises(submission.SubmissionError, match="don't know where"):
        submission.load([__file__])
