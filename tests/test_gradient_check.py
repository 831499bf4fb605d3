"""numpy_impl.gradient_check: numerical gradients of functions with known derivatives, the
perturb-and-restore contract, and CS231n's rel_error semantics."""

import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpy_impl.gradient_check import (
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    eval_numerical_gradient_blobs,
    grad_check_sparse,
    rel_error,
)
from parity_tests.tolerances import REL_ERROR


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_numerical_gradient_of_cubic(shape, seed):
    r = np.random.default_rng(seed)
    x = r.uniform(0.5, 2.0, size=shape) * r.choice([-1, 1], size=shape)
    x0 = x.copy()
    grad = eval_numerical_gradient(lambda z: np.sum(z**3), x, verbose=False)
    assert rel_error(grad, 3 * x0**2) < REL_ERROR["numerical_layer"]
    np.testing.assert_array_equal(x, x0)  # restored exactly


def test_centered_difference_is_exact_for_quadratics():
    # A one-sided difference would give 2x + h; the centered one cancels the h term.
    x = np.array([1.0, -3.0])
    grad = eval_numerical_gradient(lambda z: np.sum(z**2), x, verbose=False, h=1e-2)
    np.testing.assert_allclose(grad, [2.0, -6.0], rtol=1e-12)


def test_verbose_prints_each_entry(capsys):
    eval_numerical_gradient(lambda z: float(np.sum(z)), np.zeros(3), verbose=False)
    assert capsys.readouterr().out == ""
    eval_numerical_gradient(lambda z: float(np.sum(z)), np.zeros(3), verbose=True)
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_function_may_close_over_x():
    # CS231n's models read self.params[name] on every call; the perturbation must be visible.
    params = {"W": np.array([[1.0, 2.0], [3.0, 4.0]])}
    f = lambda _: float(np.sum(params["W"] ** 2) / 2)
    grad = eval_numerical_gradient(f, params["W"], verbose=False)
    assert rel_error(grad, params["W"]) < REL_ERROR["numerical_layer"]


def test_numerical_gradient_array_is_vector_jacobian_product():
    r = np.random.default_rng(0)
    A, x, df = r.standard_normal((4, 3)), r.standard_normal(3), r.standard_normal(4)
    x0 = x.copy()
    grad = eval_numerical_gradient_array(lambda z: A @ z, x, df)
    assert rel_error(grad, A.T @ df) < REL_ERROR["numerical_layer"]
    np.testing.assert_array_equal(x, x0)
    # f returning a view of x is copied before x is perturbed again
    grad = eval_numerical_gradient_array(lambda z: z, x, df[:3])
    assert rel_error(grad, df[:3]) < REL_ERROR["numerical_layer"]


def test_numerical_gradient_blobs():
    class Blob:
        def __init__(self, vals, diffs=None):
            self.vals = vals
            self.diffs = diffs if diffs is not None else np.zeros_like(vals)

    r = np.random.default_rng(1)
    a, b = Blob(r.standard_normal((2, 3))), Blob(r.standard_normal((2, 3)))
    out = Blob(np.zeros((2, 3)), r.standard_normal((2, 3)))

    def f(a_, b_, out_):
        out_.vals = a_.vals * b_.vals

    da, db = eval_numerical_gradient_blobs(f, (a, b), out)
    assert rel_error(da, out.diffs * b.vals) < REL_ERROR["numerical_layer"]
    assert rel_error(db, out.diffs * a.vals) < REL_ERROR["numerical_layer"]


def test_grad_check_sparse_flags_wrong_gradients(capsys):
    random.seed(0)
    x = np.random.default_rng(2).uniform(0.5, 1.5, size=(5, 4))
    x0 = x.copy()
    f = lambda z: float(np.sum(np.sin(z)))
    good = grad_check_sparse(f, x, np.cos(x), num_checks=6)
    assert len(good) == 6 and max(good) < REL_ERROR["numerical_layer"]
    assert len(capsys.readouterr().out.strip().splitlines()) == 6
    bad = grad_check_sparse(f, x, 2 * np.cos(x), num_checks=4)
    assert min(bad) > 0.3  # |c - 2c| / (c + 2c) = 1/3
    np.testing.assert_array_equal(x, x0)
    with pytest.raises(ValueError, match="analytic_grad"):
        grad_check_sparse(f, x, np.zeros(3))


def test_rel_error_semantics():
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert rel_error(np.array([1.0]), np.array([3.0])) == pytest.approx(0.5)  # 2 / (1 + 3)
    # maximum over entries, not a ratio of norms
    assert rel_error(np.array([100.0, 1.0]), np.array([100.0, 3.0])) == pytest.approx(0.5)
    # entries that are both ~0 use the 1e-8 floor
    assert rel_error(np.array([0.0]), np.array([1e-9])) == pytest.approx(0.1)
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    # symmetric, sign-aware
    assert rel_error(np.array([1.0]), np.array([-1.0])) == pytest.approx(1.0)
    assert rel_error(np.array([2.0, 5.0]), np.array([1.0, 5.0])) == rel_error(
        np.array([1.0, 5.0]), np.array([2.0, 5.0])
    )
    # scalars work (a loss against its expected value)
    assert rel_error(2.0, np.float64(2.0)) == 0.0
    assert isinstance(rel_error(1.0, 2.0), float)


def test_rel_error_rejects_broadcasting_shapes():
    with pytest.raises(ValueError, match=r"\(3,\).*\(3, 1\)"):
        rel_error(np.zeros(3), np.zeros((3, 1)))
