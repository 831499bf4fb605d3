"""Known-bug variants and accepted alternatives of reference functions, for diagnosis.

Each variant has the signature of the function it replaces. When a student's result disagrees
with the reference, the grader runs the item's variants on the same inputs (in its own process:
this is trusted code) and, if one reproduces the student's result, names the bug ("matches
batchnorm with PyTorch's momentum convention") or, for an accepted alternative, passes the case
with a note. The module imports numpy_impl only inside the functions, so the table in
graded_items.py can name variants of reference modules that are not written yet.
"""

from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------------------------
# batchnorm running averages
# ----------------------------------------------------------------------------------------------


def _bn_with_running(update):
    def forward(x, gamma, beta, bn_param):
        from numpy_impl.layers import batchnorm_forward

        D = x.shape[1]
        rm = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
        rv = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))
        out, cache = batchnorm_forward(x, gamma, beta, bn_param)
        if bn_param["mode"] == "train":
            m = bn_param.get("momentum", 0.9)
            bn_param["running_mean"], bn_param["running_var"] = update(x, rm, rv, m)
        return out, cache

    return forward


bn_pytorch_momentum = _bn_with_running(
    lambda x, rm, rv, m: ((1 - m) * rm + m * x.mean(0), (1 - m) * rv + m * x.var(0))
)
bn_unbiased_running_var = _bn_with_running(
    lambda x, rm, rv, m: (
        m * rm + (1 - m) * x.mean(0),
        m * rv + (1 - m) * x.var(0, ddof=1) if len(x) > 1 else rv * np.nan,
    )
)
bn_no_running_update = _bn_with_running(lambda x, rm, rv, m: (rm, rv))


def bn_test_batch_stats(x, gamma, beta, bn_param):
    """Test mode normalizing with the batch's own statistics (train mode unchanged)."""
    from numpy_impl.layers import batchnorm_forward

    if bn_param["mode"] != "test":
        return batchnorm_forward(x, gamma, beta, bn_param)
    eps = bn_param.get("eps", 1e-5)
    return gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + beta, None


def _spatial(bn_variant):
    def forward(x, gamma, beta, bn_param):
        N, C, H, W = x.shape
        out, cache = bn_variant(x.transpose(0, 2, 3, 1).reshape(-1, C), gamma, beta, bn_param)
        return out.reshape(N, H, W, C).transpose(0, 3, 1, 2), cache

    return forward


spatial_bn_pytorch_momentum = _spatial(bn_pytorch_momentum)
spatial_bn_unbiased_running_var = _spatial(bn_unbiased_running_var)
spatial_bn_test_batch_stats = _spatial(bn_test_batch_stats)


# ----------------------------------------------------------------------------------------------
# optimizers
# ----------------------------------------------------------------------------------------------


def _adam_config(config):
    """config with CS231n's Adam defaults filled in (in place, as the course's adam does)."""
    config = {} if config is None else config
    for k, v in (
        ("learning_rate", 1e-3),
        ("beta1", 0.9),
        ("beta2", 0.999),
        ("epsilon", 1e-8),
        ("t", 0),
    ):
        config.setdefault(k, v)
    return config


def _adam(w, dw, config, late_t=False, bias_correction=True):
    config = _adam_config(config)
    m = config.get("m", np.zeros_like(w))
    v = config.get("v", np.zeros_like(w))
    b1, b2 = config["beta1"], config["beta2"]
    t = config["t"] if late_t else config["t"] + 1
    m = b1 * m + (1 - b1) * dw
    v = b2 * v + (1 - b2) * dw**2
    with np.errstate(all="ignore"):
        mhat = m / (1 - b1**t) if bias_correction else m
        vhat = v / (1 - b2**t) if bias_correction else v
        next_w = w - config["learning_rate"] * mhat / (np.sqrt(vhat) + config["epsilon"])
    config["m"], config["v"], config["t"] = m, v, config["t"] + 1
    return next_w, config


def adam_eps_hat(w, dw, config=None):
    """Adam in the paper's efficient form, as CS231n's assignment-3 optim.py ships it: the bias
    corrections fold into the step size and epsilon is added to sqrt(v) uncorrected ("epsilon
    hat"). Differs from the reference by ~epsilon / sqrt(v_hat) relative: accepted."""
    config = _adam_config(config)
    m = config.get("m", np.zeros_like(w))
    v = config.get("v", np.zeros_like(w))
    b1, b2, t = config["beta1"], config["beta2"], config["t"] + 1
    m = b1 * m + (1 - b1) * dw
    v = b2 * v + (1 - b2) * dw**2
    alpha = config["learning_rate"] * np.sqrt(1 - b2**t) / (1 - b1**t)
    next_w = w - alpha * m / (np.sqrt(v) + config["epsilon"])
    config["m"], config["v"], config["t"] = m, v, t
    return next_w, config


def adam_t_late(w, dw, config=None):
    return _adam(w, dw, config, late_t=True)


def adam_no_bias_correction(w, dw, config=None):
    return _adam(w, dw, config, bias_correction=False)


def rmsprop_eps_inside_sqrt(w, dw, config=None):
    config = {} if config is None else config
    for k, v in (("learning_rate", 1e-2), ("decay_rate", 0.99), ("epsilon", 1e-8)):
        config.setdefault(k, v)
    cache = config.get("cache", np.zeros_like(w))
    cache = config["decay_rate"] * cache + (1 - config["decay_rate"]) * dw**2
    config["cache"] = cache
    return w - config["learning_rate"] * dw / np.sqrt(cache + config["epsilon"]), config


def sgd_momentum_flipped_velocity(w, dw, config=None):
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    v = config.get("velocity", np.zeros_like(w))
    v = config["momentum"] * v + config["learning_rate"] * dw
    config["velocity"] = v
    return w - v, config


# ----------------------------------------------------------------------------------------------
# max pooling with ties: accepted alternative (every tied maximum receives the gradient)
# ----------------------------------------------------------------------------------------------


def max_pool_forward_own_cache(x, pool_param):
    from numpy_impl.layers import max_pool_forward_naive

    out, _ = max_pool_forward_naive(x, pool_param)
    return out, (x, pool_param)


def max_pool_backward_all_ties(dout, cache):
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * s : i * s + ph, j * s : j * s + pw]
            mask = window == window.max(axis=(2, 3), keepdims=True)
            dx[:, :, i * s : i * s + ph, j * s : j * s + pw] += (
                mask * dout[:, :, i : i + 1, j : j + 1]
            )
    return dx


# ----------------------------------------------------------------------------------------------
# LinearClassifier.train: minibatches drawn without replacement (accepted alternative)
# ----------------------------------------------------------------------------------------------


def linear_svm_without_replacement(*args, **kwargs):
    """A reference LinearSVM whose train draws each minibatch without replacement (the
    notebook only says replace=True is faster)."""
    from numpy_impl.classifiers.linear_classifier import LinearSVM

    class WithoutReplacement(LinearSVM):
        def train(
            self, X, y, learning_rate=1e-3, reg=1e-5, num_iters=100, batch_size=200, verbose=False
        ):
            num_train, dim = X.shape
            if self.W is None:
                self.W = 0.001 * np.random.randn(dim, int(np.max(y)) + 1)  # noqa: NPY002
            history = []
            for _ in range(num_iters):
                idx = np.random.choice(num_train, batch_size, replace=False)  # noqa: NPY002
                loss, grad = self.loss(X[idx], y[idx], reg)
                history.append(loss)
                self.W = self.W - learning_rate * grad
            return history

    return WithoutReplacement(*args, **kwargs)
