"""Recurrent and attention layers in NumPy (assignment 3): course reference values, gradient
checks of the whole CaptioningRNN, the properties the course states in words, and bad-input errors.

Per-layer numerical gradients, float32 preservation and numpy-vs-torch-vs-builtin parity of every
layer run in the parity suite (parity_tests/ops_recurrent.py, ops_attention.py); this file covers
what does not fit a per-op registry entry.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpy_impl import attention as npa
from numpy_impl import gan as npg
from numpy_impl import rnn_layers as npr
from numpy_impl import simclr as nps
from numpy_impl.classifiers.rnn import CaptioningRNN
from numpy_impl.gradient_check import rel_error
from parity_tests.tolerances import REL_ERROR

# ----------------------------------------------------------------------------------------------
# Reference values published in the course notebooks (RNN_Captioning / LSTM_Captioning)
# ----------------------------------------------------------------------------------------------


def _lin(lo, hi, *shape):
    return np.linspace(lo, hi, num=int(np.prod(shape))).reshape(*shape)


def test_rnn_step_forward_course_values():
    N, D, H = 3, 10, 4
    next_h, _ = npr.rnn_step_forward(
        _lin(-0.4, 0.7, N, D),
        _lin(-0.2, 0.5, N, H),
        _lin(-0.1, 0.9, D, H),
        _lin(-0.3, 0.7, H, H),
        _lin(-0.2, 0.4, H),
    )
    expected = np.array(
        [
            [-0.58172089, -0.50182032, -0.41232771, -0.31410098],
            [0.66854692, 0.79562378, 0.87755553, 0.92795967],
            [0.97934501, 0.99144213, 0.99646691, 0.99854353],
        ]
    )
    assert rel_error(next_h, expected) < 1e-7


def test_rnn_forward_course_values():
    N, T, D, H = 2, 3, 4, 5
    h, _ = npr.rnn_forward(
        _lin(-0.1, 0.3, N, T, D),
        _lin(-0.3, 0.1, N, H),
        _lin(-0.2, 0.4, D, H),
        _lin(-0.4, 0.1, H, H),
        _lin(-0.7, 0.1, H),
    )
    expected = np.array(
        [
            [
                [-0.42070749, -0.27279261, -0.11074945, 0.05740409, 0.22236251],
                [-0.39525808, -0.22554661, -0.0409454, 0.14649412, 0.32397316],
                [-0.42305111, -0.24223728, -0.04287027, 0.15997045, 0.35014525],
            ],
            [
                [-0.55857474, -0.39065825, -0.19198182, 0.02378408, 0.23735671],
                [-0.27150199, -0.07088804, 0.13562939, 0.33099728, 0.50158768],
                [-0.51014825, -0.30524429, -0.06755202, 0.17806392, 0.40333043],
            ],
        ]
    )
    assert rel_error(h, expected) < 1e-6


def test_lstm_step_forward_course_values():
    N, D, H = 3, 4, 5
    next_h, _, _ = npr.lstm_step_forward(
        _lin(-0.4, 1.2, N, D),
        _lin(-0.3, 0.7, N, H),
        _lin(-0.4, 0.9, N, H),
        _lin(-2.1, 1.3, D, 4 * H),
        _lin(-0.7, 2.2, H, 4 * H),
        _lin(0.3, 0.7, 4 * H),
    )
    expected = np.array(
        [
            [0.24635157, 0.28610883, 0.32240467, 0.35525807, 0.38474904],
            [0.49223563, 0.55611431, 0.61507696, 0.66844003, 0.7159181],
            [0.56735664, 0.66310127, 0.74419266, 0.80889665, 0.858299],
        ]
    )
    assert rel_error(next_h, expected) < 1e-7


def test_lstm_forward_course_values():
    N, D, H, T = 2, 5, 4, 3
    h, _ = npr.lstm_forward(
        _lin(-0.4, 0.6, N, T, D),
        _lin(-0.4, 0.8, N, H),
        _lin(-0.2, 0.9, D, 4 * H),
        _lin(-0.3, 0.6, H, 4 * H),
        _lin(0.2, 0.7, 4 * H),
    )
    expected = np.array(
        [
            [
                [0.01764008, 0.01823233, 0.01882671, 0.0194232],
                [0.11287491, 0.12146228, 0.13018446, 0.13902939],
                [0.31358768, 0.33338627, 0.35304453, 0.37250975],
            ],
            [
                [0.45767879, 0.4761092, 0.4936887, 0.51041945],
                [0.6704845, 0.69350089, 0.71486014, 0.7346449],
                [0.81733511, 0.83677871, 0.85403753, 0.86935314],
            ],
        ]
    )
    assert rel_error(h, expected) < 1e-6


def test_word_embedding_forward_course_values():
    x = np.array([[0, 3, 1, 2], [2, 1, 0, 3]])
    out, _ = npr.word_embedding_forward(x, _lin(0, 1, 5, 3))
    expected = np.array(
        [
            [
                [0.0, 0.07142857, 0.14285714],
                [0.64285714, 0.71428571, 0.78571429],
                [0.21428571, 0.28571429, 0.35714286],
                [0.42857143, 0.5, 0.57142857],
            ],
            [
                [0.42857143, 0.5, 0.57142857],
                [0.21428571, 0.28571429, 0.35714286],
                [0.0, 0.07142857, 0.14285714],
                [0.64285714, 0.71428571, 0.78571429],
            ],
        ]
    )
    assert rel_error(out, expected) < 1e-7


@pytest.mark.parametrize(
    ("cell_type", "feature_range", "expected_loss"),
    [
        ("rnn", (-1.5, 0.3), 9.83235591003),
        ("lstm", (-0.5, 1.7), 9.82445935443),
    ],
)
def test_captioning_loss_course_values(cell_type, feature_range, expected_loss):
    # The course's fixed-parameter check; note its word_to_idx has a gap (no id 1) and an id
    # (3) >= V = 3 that the captions never use.
    N, D, W, H, T = 10, 20, 30, 40, 13
    word_to_idx = {"<NULL>": 0, "cat": 2, "dog": 3}
    model = CaptioningRNN(
        word_to_idx, input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type=cell_type, dtype=np.float64
    )
    for k, v in model.params.items():
        model.params[k] = np.linspace(-1.4, 1.3, num=v.size).reshape(*v.shape)
    features = _lin(*feature_range, N, D)
    captions = (np.arange(N * T) % len(word_to_idx)).reshape(N, T)
    loss, _ = model.loss(features, captions)
    assert abs(loss - expected_loss) < 1e-9


def test_captioning_init_matches_course_draw_order():
    # Same seed, same draws in the course's order: W_embed, W_proj, Wx, Wh, W_vocab.
    word_to_idx = {"<NULL>": 0, "<START>": 1, "<END>": 2, "a": 3}
    np.random.seed(231)  # noqa: NPY002 -- the course's seeding
    model = CaptioningRNN(
        word_to_idx, input_dim=6, wordvec_dim=5, hidden_dim=4, cell_type="lstm", dtype=np.float64
    )
    rs = np.random.RandomState(231)
    expected = {
        "W_embed": rs.randn(4, 5) / 100,
        "W_proj": rs.randn(6, 4) / np.sqrt(6),
        "Wx": rs.randn(5, 16) / np.sqrt(5),
        "Wh": rs.randn(4, 16) / 2,
        "W_vocab": rs.randn(4, 4) / 2,
    }
    for k, v in expected.items():
        np.testing.assert_array_equal(model.params[k], v)
    for k in ("b_proj", "b", "b_vocab"):
        assert not model.params[k].any()
    assert sorted(model.params) == sorted(
        ["W_embed", "W_proj", "b_proj", "Wx", "Wh", "b", "W_vocab", "b_vocab"]
    )
    assert all(v.dtype == np.float64 for v in model.params.values())


# ----------------------------------------------------------------------------------------------
# Gradient check of the whole model, both cell types
# ----------------------------------------------------------------------------------------------


def _small_model(rng, cell_type, V, D, W, H, dtype=np.float64):
    word_to_idx = {"<NULL>": 0, "<START>": 1, "<END>": 2, **{f"w{i}": i for i in range(3, V)}}
    model = CaptioningRNN(
        word_to_idx, input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type=cell_type, dtype=dtype
    )
    for k, v in model.params.items():  # nonzero biases and O(1) weights: every path is active
        model.params[k] = (rng.standard_normal(v.shape) * 0.5).astype(dtype)
    return model


def _padded_captions(rng, N, T, V):
    """<START> words... then <NULL> padding of random length (some rows unpadded)."""
    captions = rng.integers(3, V, size=(N, T))
    captions[:, 0] = 1
    for n in range(N):
        end = int(rng.integers(2, T + 1))
        captions[n, end:] = 0
    return captions


def _numerical_gradient(f, x, h=1e-3):
    """Fourth-order centered differences of a scalar f, perturbing x in place (restored):

        df/dx_i ~ (8 (f(x + h e_i) - f(x - h e_i)) - (f(x + 2h e_i) - f(x - 2h e_i))) / (12 h)

    Truncation O(h^4) (~1e-12 here) and round-off ~1e-16 |f| / h (~1e-12): ~100x more accurate
    than the course's two-point rule at h = 1e-5, whose ~1e-10 absolute error exceeds the 1e-6
    relative tolerance on the small (~1e-5) gradient entries an LSTM routinely has. The
    differences of equal values are exactly zero, so an exactly-zero gradient stays exactly 0.
    """
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        vals = []
        for step in (h, -h, 2 * h, -2 * h):
            x[i] = old + step
            vals.append(float(f(x)))
        x[i] = old
        grad[i] = (8 * (vals[0] - vals[1]) - (vals[2] - vals[3])) / (12 * h)
    return grad


@pytest.mark.parametrize("cell_type", ["rnn", "lstm"])
@given(seed=st.integers(0, 2**31 - 1))
def test_captioning_loss_numerical_gradient(cell_type, seed):
    rng = np.random.default_rng(seed)
    N, T, V = int(rng.integers(1, 4)), int(rng.integers(2, 6)), int(rng.integers(4, 8))
    D, W, H = (int(s) for s in rng.integers(1, 5, size=3))
    model = _small_model(rng, cell_type, V, D, W, H)
    features = rng.standard_normal((N, D))
    captions = _padded_captions(rng, N, T, V)
    loss, grads = model.loss(features, captions)
    assert sorted(grads) == sorted(model.params)
    for name, param in model.params.items():
        num = _numerical_gradient(lambda _: model.loss(features, captions)[0], param)
        assert grads[name].shape == param.shape
        assert rel_error(num, grads[name]) < REL_ERROR["numerical_model"], name


@pytest.mark.parametrize("cell_type", ["rnn", "lstm"])
def test_captioning_float32_stays_float32_and_inputs_untouched(cell_type):
    rng = np.random.default_rng(0)
    model = _small_model(rng, cell_type, V=6, D=3, W=4, H=5, dtype=np.float32)
    features = rng.standard_normal((2, 3)).astype(np.float32)
    captions = _padded_captions(rng, 2, 5, 6)
    before = (features.copy(), captions.copy())
    loss, grads = model.loss(features, captions)
    assert np.asarray(loss).dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    np.testing.assert_array_equal(features, before[0])
    np.testing.assert_array_equal(captions, before[1])


def test_captioning_padding_does_not_count():
    # Trailing <NULL> targets add nothing (and, the recurrence being causal, neither do the
    # steps that read them); a caption with no real target has zero loss and zero gradients.
    rng = np.random.default_rng(1)
    model = _small_model(rng, "lstm", V=6, D=3, W=4, H=5)
    features = rng.standard_normal((1, 3))
    loss, _ = model.loss(features, np.array([[1, 3, 4, 0, 0, 0]]))
    loss_short, _ = model.loss(features, np.array([[1, 3, 4]]))
    assert loss == pytest.approx(loss_short, rel=1e-12)
    empty, grads = model.loss(features, np.array([[1, 0, 0]]))
    assert empty == 0.0 and not any(g.any() for g in grads.values())


def test_sample_is_greedy_argmax_of_step_scores():
    # Independent re-derivation of one greedy step for each cell type.
    rng = np.random.default_rng(2)
    for cell_type in ("rnn", "lstm"):
        model = _small_model(rng, cell_type, V=7, D=3, W=4, H=5)
        features = rng.standard_normal((4, 3))
        out = model.sample(features, max_length=3)
        assert out.shape == (4, 3) and out.dtype == np.int32
        p = model.params
        h0 = features @ p["W_proj"] + p["b_proj"]
        a = p["W_embed"][np.full(4, 1)] @ p["Wx"] + h0 @ p["Wh"] + p["b"]
        if cell_type == "rnn":
            h1 = np.tanh(a)
        else:
            H = h0.shape[1]
            sig = 1 / (1 + np.exp(-a[:, : 3 * H]))
            c1 = sig[:, :H] * np.tanh(a[:, 3 * H :])
            h1 = sig[:, 2 * H : 3 * H] * np.tanh(c1)
        np.testing.assert_array_equal(out[:, 0], (h1 @ p["W_vocab"] + p["b_vocab"]).argmax(1))


# ----------------------------------------------------------------------------------------------
# Properties stated by the course
# ----------------------------------------------------------------------------------------------


@given(seed=st.integers(0, 2**31 - 1))
def test_temporal_softmax_loss_of_uniform_scores(seed):
    # x = 0: every word has probability 1/V, so loss = (number of counted positions)/N * log V
    # and dx = (1/V - onehot(y)) * mask / N.
    rng = np.random.default_rng(seed)
    N, T, V = (int(s) for s in rng.integers(1, 6, size=3))
    y = rng.integers(V, size=(N, T))
    mask = rng.random((N, T)) < 0.5
    loss, dx = npr.temporal_softmax_loss(np.zeros((N, T, V)), y, mask)
    assert loss == pytest.approx(mask.sum() / N * np.log(V), rel=1e-12, abs=1e-15)
    expected = (np.full((N, T, V), 1 / V) - np.eye(V)[y]) * mask[..., None] / N
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-15)


def test_temporal_softmax_loss_large_logits_finite():
    x = np.array([[[1e4, -1e4, 0.0], [-1e4, 1e4, 3e3]]])
    loss, dx = npr.temporal_softmax_loss(x, np.array([[0, 2]]), np.array([[True, True]]))
    assert np.isfinite(loss) and np.isfinite(dx).all()
    assert loss == pytest.approx(7e3)  # -log softmax(x[0, 1])[2] = 1e4 - 3e3


def test_word_embedding_backward_accumulates_repeated_words():
    x = np.array([[2, 2, 0], [2, 1, 2]])
    dout = np.arange(18, dtype=np.float64).reshape(2, 3, 3)
    _, cache = npr.word_embedding_forward(x, np.zeros((4, 3)))
    dW = npr.word_embedding_backward(dout, cache)
    np.testing.assert_array_equal(dW[2], dout[0, 0] + dout[0, 1] + dout[1, 0] + dout[1, 2])
    np.testing.assert_array_equal(dW[0], dout[0, 2])
    np.testing.assert_array_equal(dW[1], dout[1, 1])
    np.testing.assert_array_equal(dW[3], 0)


def test_lstm_forward_equals_steps_from_zero_cell():
    rng = np.random.default_rng(3)
    N, T, D, H = 2, 4, 3, 5
    x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
    Wx, Wh, b = (
        rng.standard_normal((D, 4 * H)),
        rng.standard_normal((H, 4 * H)),
        rng.standard_normal(4 * H),
    )
    h, _ = npr.lstm_forward(x, h0, Wx, Wh, b)
    prev_h, prev_c = h0, np.zeros((N, H))
    for t in range(T):
        prev_h, prev_c, _ = npr.lstm_step_forward(x[:, t], prev_h, prev_c, Wx, Wh, b)
        np.testing.assert_allclose(h[:, t], prev_h, rtol=1e-12, atol=1e-14)


def test_attention_mask_zero_blocks_keys():
    # Blocked keys get zero weight: changing their values changes nothing.
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal(s) for s in [(2, 3, 4), (2, 5, 4), (2, 5, 2)])
    mask = np.tril(np.ones((3, 5)))
    out, cache = npa.scaled_dot_product_attention_forward(q, k, v, mask)
    v2 = v.copy()
    v2[:, 3:] += 100.0  # keys 3, 4 are blocked for every query (row s sees keys <= s)
    out2, _ = npa.scaled_dot_product_attention_forward(q, k, v2, mask)
    np.testing.assert_allclose(out, out2, rtol=1e-12)
    A = cache[3]
    assert (A[..., mask == 0] == 0).all()
    np.testing.assert_allclose(A.sum(-1), 1, rtol=1e-12)


def test_mha_key_bias_gradient_is_zero_and_heads_split_embedding():
    rng = np.random.default_rng(5)
    N, S, T, E, heads = 2, 3, 4, 6, 3
    args = [rng.standard_normal(s) for s in [(N, S, E), (N, T, E), (N, T, E)]]
    for _ in range(4):
        args += [rng.standard_normal((E, E)), rng.standard_normal(E)]
    out, cache = npa.multihead_attention_forward(*args, heads)
    grads = npa.multihead_attention_backward(rng.standard_normal(out.shape), cache)
    dbk = grads[6]
    # softmax(s + c) = softmax(s) for a constant c per row, and q . bk is such a constant.
    assert np.abs(dbk).max() < 1e-12 * np.abs(grads[5]).max()
    # One head is plain scaled dot-product attention on the full embedding.
    out1, _ = npa.multihead_attention_forward(*args, 1)
    Wq, bq, Wk, bk, Wv, bv, Wo, bo = args[3:]
    y, _ = npa.scaled_dot_product_attention_forward(
        args[0] @ Wq + bq, args[1] @ Wk + bk, args[2] @ Wv + bv
    )
    np.testing.assert_allclose(out1, y @ Wo + bo, rtol=1e-12)


def test_positional_encoding_formula():
    pe = npa.positional_encoding(50, 8)
    np.testing.assert_array_equal(pe[0], [0, 1, 0, 1, 0, 1, 0, 1])
    pos, i = 7, 3  # dims 2i and 2i+1 share the frequency 10000^(-2i/D)
    freq = 10000.0 ** (-2 * i / 8)
    assert pe[pos, 2 * i] == pytest.approx(np.sin(pos * freq), abs=1e-15)
    assert pe[pos, 2 * i + 1] == pytest.approx(np.cos(pos * freq), abs=1e-15)
    np.testing.assert_allclose(pe[:, 0::2] ** 2 + pe[:, 1::2] ** 2, 1, rtol=1e-14)
    assert npa.positional_encoding(3, 4, dtype=np.float32).dtype == np.float32


def test_attention_dropout_seeded_mask_is_cs231n_draw():
    rng = np.random.default_rng(6)
    q, k, v = (rng.standard_normal(s) for s in [(1, 3, 2), (1, 4, 2), (1, 4, 2)])
    param = {"p": 0.6, "mode": "train", "seed": 17}
    out, cache = npa.scaled_dot_product_attention_forward(q, k, v, None, param)
    expected_mask = (np.random.RandomState(17).rand(1, 3, 4) < 0.6) / 0.6
    np.testing.assert_array_equal(cache[4], expected_mask)
    np.testing.assert_allclose(out, (cache[3] * expected_mask) @ v, rtol=1e-12)
    test_out, _ = npa.scaled_dot_product_attention_forward(q, k, v, None, {**param, "mode": "test"})
    np.testing.assert_allclose(test_out, cache[3] @ v, rtol=1e-12)


@pytest.mark.parametrize("big", [50.0, 800.0, 1e4])
def test_gan_losses_large_logits_stay_finite_and_exact(big):
    logits = np.array([big, -big, 0.0])
    loss, d = npg.generator_loss(logits)
    # bce(x, 1) = log(1 + exp(-x)): ~0 for +big, ~big for -big, log 2 for 0.
    assert loss == pytest.approx(
        (np.log1p(np.exp(-big)) + big + np.log1p(np.exp(-big)) + np.log(2)) / 3, rel=1e-12
    )
    assert np.isfinite(d).all()
    # d/dx bce(x, 1) = sigmoid(x) - 1, written without overflow for each sign.
    e = np.exp(-big)
    expected = np.array([-e / (1 + e), e / (1 + e) - 1, -0.5]) / 3
    np.testing.assert_allclose(d, expected, rtol=1e-12, atol=1e-300)


def test_ls_gan_losses_values():
    loss, (dr, df) = npg.ls_discriminator_loss(np.array([1.0, 3.0]), np.array([[2.0]]))
    assert loss == pytest.approx(0.5 * (0 + 4) / 2 + 0.5 * 4)
    np.testing.assert_array_equal(dr, [0.0, 1.0])
    np.testing.assert_array_equal(df, [[2.0]])
    loss, d = npg.ls_generator_loss(np.array([0.0, 2.0, 1.0]))
    assert loss == pytest.approx(0.5 * 2 / 3)
    np.testing.assert_allclose(d, np.array([-1.0, 1.0, 0.0]) / 3)


def test_simclr_loss_of_perfect_pairs_and_naive_equals_vectorized():
    # Left = right and the N samples mutually orthogonal: s_pos = 1, s_neg = 0, so
    # l(i) = -1/tau + log(exp(1/tau) + (2N - 2)).
    N, tau = 3, 0.5
    out = np.eye(N, 5) * np.array([[2.0], [0.5], [3.0]])
    loss, _ = nps.simclr_loss_vectorized(out, out.copy(), tau)
    assert loss == pytest.approx(-1 / tau + np.log(np.exp(1 / tau) + 2 * N - 2), rel=1e-12)
    rng = np.random.default_rng(7)
    left, right = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    l1, (a1, b1) = nps.simclr_loss_naive(left, right, 0.1)
    l2, (a2, b2) = nps.simclr_loss_vectorized(left, right, 0.1)
    assert l1 == pytest.approx(l2, rel=1e-12)
    assert rel_error(a1, a2) < REL_ERROR["twin_float64"]
    assert rel_error(b1, b2) < REL_ERROR["twin_float64"]


def test_simclr_small_temperature_does_not_overflow():
    rng = np.random.default_rng(8)
    left, right = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    for fn in (nps.simclr_loss_naive, nps.simclr_loss_vectorized):
        loss, (dl, dr) = fn(left.astype(np.float32), right.astype(np.float32), 1e-3)
        assert np.isfinite(loss) and np.isfinite(dl).all() and np.isfinite(dr).all()
        assert loss.dtype == np.float32 and dl.dtype == np.float32


def test_simclr_scale_invariance():
    # Cosine similarity ignores the norm of each row: so does the loss, and its gradient is
    # orthogonal to each row.
    rng = np.random.default_rng(9)
    left, right = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    loss, (dl, dr) = nps.simclr_loss_vectorized(left, right, 0.7)
    loss2, _ = nps.simclr_loss_vectorized(left * np.array([[2.0], [0.1], [7.0]]), right, 0.7)
    assert loss == pytest.approx(loss2, rel=1e-12)
    np.testing.assert_allclose((dl * left).sum(1), 0, atol=1e-14)
    np.testing.assert_allclose((dr * right).sum(1), 0, atol=1e-14)


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


def _model():
    w2i = {"<NULL>": 0, "<START>": 1, "<END>": 2, "a": 3}
    return CaptioningRNN(w2i, input_dim=3, wordvec_dim=2, hidden_dim=4, dtype=np.float64)


@pytest.mark.parametrize(
    ("captions", "exc", "match"),
    [
        (np.array([[1, 3, 4]]), ValueError, r"captions must lie in \[0, 4\).*\[1, 4\]"),
        (np.array([[1, -1, 2]]), ValueError, r"captions must lie in \[0, 4\)"),
        (np.array([[1.0, 3.0, 2.0]]), TypeError, "captions must hold integer indices"),
        (np.array([[1, 3, 2], [1, 2, 0]]), ValueError, r"captions must have shape \(1, \*\)"),
        (np.array([1, 3, 2]), ValueError, "captions must have 2 dimensions"),
        (np.array([[1]]), ValueError, "captions need at least 2 words"),
    ],
)
def test_captioning_bad_captions(captions, exc, match):
    with pytest.raises(exc, match=match):
        _model().loss(np.zeros((1, 3)), captions)


def test_captioning_bad_construction_and_features():
    with pytest.raises(ValueError, match="cell_type must be 'rnn' or 'lstm', got 'gru'"):
        CaptioningRNN({"<NULL>": 0}, cell_type="gru")
    with pytest.raises(ValueError, match="'<NULL>'"):
        CaptioningRNN({"a": 0})
    with pytest.raises(ValueError, match=r"features must have shape \(\*, 3\)"):
        _model().loss(np.zeros((1, 4)), np.array([[1, 2]]))
    with pytest.raises(ValueError, match=r"features must have shape \(\*, 3\)"):
        _model().sample(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="max_length must be >= 1"):
        _model().sample(np.zeros((2, 3)), max_length=0)


def test_bad_layer_inputs_name_the_argument():
    x, y, mask = np.zeros((2, 3, 4)), np.zeros((2, 3), dtype=np.int64), np.ones((2, 3))
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 3\).*got \(3, 2\)"):
        npr.temporal_softmax_loss(x, y, mask.T)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 4\)"):
        npr.temporal_softmax_loss(x, y + 4, mask)
    with pytest.raises(ValueError, match=r"x must lie in \[0, 5\)"):
        npr.word_embedding_forward(np.array([[5]]), np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"Wx must have shape \(3, 8\)"):
        npr.lstm_forward(
            x[..., :3], np.zeros((2, 2)), np.zeros((3, 2)), np.zeros((2, 8)), np.zeros(8)
        )
    with pytest.raises(ValueError, match="embed_dim=6 must be divisible by num_heads=4"):
        w = [np.zeros((6, 6)), np.zeros(6)] * 4
        npa.multihead_attention_forward(
            np.zeros((1, 2, 6)), np.zeros((1, 3, 6)), np.zeros((1, 3, 6)), *w, 4
        )
    with pytest.raises(ValueError, match=r"attn_mask must have shape \(2, 3\)"):
        npa.scaled_dot_product_attention_forward(
            np.zeros((2, 4)), np.zeros((3, 4)), np.zeros((3, 1)), np.ones((3, 2))
        )
    with pytest.raises(ValueError, match="embed_dim must be even"):
        npa.positional_encoding(4, 5)
    with pytest.raises(ValueError, match="tau"):
        nps.simclr_loss_vectorized(np.ones((2, 2)), np.ones((2, 2)), -1.0)
    with pytest.raises(ValueError, match="dout must have the forward output's shape"):
        _, cache = npr.rnn_forward(
            x, np.zeros((2, 5)), np.zeros((4, 5)), np.zeros((5, 5)), np.zeros(5)
        )
        npr.rnn_backward(np.zeros((2, 3, 4)), cache)


def test_numpy_twin_never_imports_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import numpy_impl.rnn_layers, numpy_impl.attention, numpy_impl.gan, numpy_impl.simclr\n"
        "import numpy_impl.classifiers.rnn\n"
        "assert 'torch' not in sys.modules, 'numpy_impl imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
