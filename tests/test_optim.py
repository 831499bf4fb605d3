"""numpy_impl.optim: every rule against its formula unrolled by hand over a few steps, CS231n's
defaults and state keys, Adam's step counter, no in-place updates, dtype and shape checks."""

import numpy as np
import pytest

from numpy_impl import optim

RULES = ["sgd", "sgd_momentum", "nesterov_momentum", "rmsprop", "adam"]

DEFAULTS = {
    "sgd": {"learning_rate": 1e-2},
    "sgd_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
    "nesterov_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
    "rmsprop": {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8},
    "adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
}

STATE_KEYS = {
    "sgd": set(),
    "sgd_momentum": {"velocity"},
    "nesterov_momentum": {"velocity"},
    "rmsprop": {"cache"},
    "adam": {"m", "v", "t"},
}


def _problem(seed=0, shape=(3, 4), steps=3):
    r = np.random.default_rng(seed)
    w = r.standard_normal(shape)
    grads = [r.standard_normal(shape) for _ in range(steps)]
    return w, grads


def _run(rule, w, grads, config=None):
    for dw in grads:
        w, config = getattr(optim, rule)(w, dw, config)
    return w, config


def test_sgd_unrolled():
    w, grads = _problem()
    out, config = _run("sgd", w, grads, {"learning_rate": 0.3})
    np.testing.assert_allclose(out, w - 0.3 * (grads[0] + grads[1] + grads[2]), rtol=1e-14)


def test_sgd_momentum_unrolled():
    w, (g1, g2, g3) = _problem()
    lr, mu = 0.1, 0.8
    out, config = _run("sgd_momentum", w, [g1, g2, g3], {"learning_rate": lr, "momentum": mu})
    v1 = -lr * g1
    v2 = mu * v1 - lr * g2
    v3 = mu * v2 - lr * g3
    np.testing.assert_allclose(config["velocity"], v3, rtol=1e-14)
    np.testing.assert_allclose(out, w + v1 + v2 + v3, rtol=1e-13)


def test_nesterov_momentum_unrolled():
    w, (g1, g2, g3) = _problem()
    lr, mu = 0.1, 0.8
    out, config = _run("nesterov_momentum", w, [g1, g2, g3], {"learning_rate": lr, "momentum": mu})
    v0 = np.zeros_like(w)
    v1 = mu * v0 - lr * g1
    v2 = mu * v1 - lr * g2
    v3 = mu * v2 - lr * g3
    expected = w
    for v_prev, v in ((v0, v1), (v1, v2), (v2, v3)):
        expected = expected - mu * v_prev + (1 + mu) * v
    np.testing.assert_allclose(config["velocity"], v3, rtol=1e-14)
    np.testing.assert_allclose(out, expected, rtol=1e-13)
    # first step from zero velocity: w - (1 + mu) * lr * dw
    first, _ = optim.nesterov_momentum(w, g1, {"learning_rate": lr, "momentum": mu})
    np.testing.assert_allclose(first, w - (1 + mu) * lr * g1, rtol=1e-14)


def test_rmsprop_unrolled():
    w, (g1, g2, g3) = _problem()
    lr, d, eps = 0.05, 0.9, 1e-6
    out, config = _run(
        "rmsprop", w, [g1, g2, g3], {"learning_rate": lr, "decay_rate": d, "epsilon": eps}
    )
    c, expected = 0.0, w
    for g in (g1, g2, g3):
        c = d * c + (1 - d) * g**2
        expected = expected - lr * g / (np.sqrt(c) + eps)
    np.testing.assert_allclose(config["cache"], c, rtol=1e-14)
    np.testing.assert_allclose(out, expected, rtol=1e-13)


def test_adam_unrolled():
    w, grads = _problem()
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-7
    out, config = _run(
        "adam", w, grads, {"learning_rate": lr, "beta1": b1, "beta2": b2, "epsilon": eps}
    )
    m = v = 0.0
    expected = w
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        expected = expected - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    assert config["t"] == 3
    np.testing.assert_allclose(config["m"], m, rtol=1e-14)
    np.testing.assert_allclose(config["v"], v, rtol=1e-14)
    np.testing.assert_allclose(out, expected, rtol=1e-13)


def test_adam_increments_t_before_bias_correction():
    # With t = 1 on the first step, mhat = dw and vhat = dw**2, so each entry moves by
    # lr * dw / (|dw| + eps) ~ lr * sign(dw). Using t = 0 would divide by zero.
    w, (g, *_) = _problem()
    out, config = optim.adam(w, g)
    assert config["t"] == 1
    np.testing.assert_allclose(out, w - 1e-3 * g / (np.abs(g) + 1e-8), rtol=1e-14)
    # resuming from a stored t uses t + 1
    cfg = {"t": 4, "m": np.ones_like(w), "v": np.ones_like(w)}
    out, cfg = optim.adam(w, np.zeros_like(w), cfg)
    m, v = 0.9, 0.999
    step = 1e-3 * (m / (1 - 0.9**5)) / (np.sqrt(v / (1 - 0.999**5)) + 1e-8)
    assert cfg["t"] == 5
    np.testing.assert_allclose(out, w - step, rtol=1e-13)


@pytest.mark.parametrize("rule", RULES)
def test_defaults_and_state_keys(rule):
    w, (g, *_) = _problem()
    _, config = getattr(optim, rule)(w, g)
    for key, value in DEFAULTS[rule].items():
        assert config[key] == value, key
    assert set(config) == set(DEFAULTS[rule]) | STATE_KEYS[rule]


@pytest.mark.parametrize("rule", RULES)
def test_user_config_is_kept_and_returned(rule):
    w, (g, *_) = _problem()
    config = {"learning_rate": 0.5}
    _, returned = getattr(optim, rule)(w, g, config)
    assert returned is config
    assert config["learning_rate"] == 0.5  # setdefault never overwrites


@pytest.mark.parametrize("rule", RULES)
def test_w_dw_and_state_not_modified_in_place(rule):
    w, grads = _problem()
    _, config = _run(rule, w, grads[:1])
    state_before = {k: np.copy(v) for k, v in config.items() if isinstance(v, np.ndarray)}
    state_objects = {k: v for k, v in config.items() if isinstance(v, np.ndarray)}
    w0, dw0 = w.copy(), grads[1].copy()
    next_w, config = getattr(optim, rule)(w, grads[1], config)
    np.testing.assert_array_equal(w, w0)
    np.testing.assert_array_equal(grads[1], dw0)
    assert next_w is not w and not np.shares_memory(next_w, w)
    for key, old in state_objects.items():
        np.testing.assert_array_equal(old, state_before[key])  # old state arrays untouched
        assert config[key] is not old


@pytest.mark.parametrize("rule", RULES)
def test_float32_stays_float32(rule):
    w, grads = _problem()
    w32, grads32 = w.astype(np.float32), [g.astype(np.float32) for g in grads]
    # a NumPy float64 learning rate (e.g. after lr decay) must not upcast either
    out, config = _run(rule, w32, grads32, {"learning_rate": np.float64(1e-2)})
    assert out.dtype == np.float32
    for key, value in config.items():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32, key
    ref, _ = _run(rule, w, grads, {"learning_rate": 1e-2})
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule", RULES)
def test_shape_mismatch_names_both(rule):
    with pytest.raises(ValueError) as info:
        getattr(optim, rule)(np.zeros((3, 4)), np.zeros((4, 3)))
    message = str(info.value)
    assert "dw" in message and "w" in message
    assert "(3, 4)" in message and "(4, 3)" in message


@pytest.mark.parametrize("rule", RULES)
def test_config_must_be_a_dict(rule):
    with pytest.raises(TypeError, match="config"):
        getattr(optim, rule)(np.zeros(2), np.zeros(2), [("learning_rate", 1.0)])
