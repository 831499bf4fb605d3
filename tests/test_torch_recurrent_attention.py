"""torch_impl's recurrent, attention and generative modules: transformer layers against
PyTorch's (weights copied with the layout conversion written out), positional encoding, dropout
behaviour, the recurrent modules, GAN/SimCLR wrappers, device/dtype handling and bad input.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from numpy_impl import attention as npa
from parity_tests.tolerances import ASSERT_CLOSE
from torch_impl import gan as tgan
from torch_impl import rnn_layers as trnn
from torch_impl import simclr as tsim
from torch_impl import transformer_layers as ttl
from torch_impl.functions import MultiHeadAttentionFunction, RNNFunction

DTYPES = {"float64": torch.float64, "float32": torch.float32}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _close(a, b, dtype_name):
    torch.testing.assert_close(a, b, **ASSERT_CLOSE[dtype_name])


def _causal(S, T=None):
    """CS231n's mask: 1 = may attend (lower triangle), 0 = blocked."""
    return torch.tril(torch.ones(S, S if T is None else T))


# ----------------------------------------------------------------------------------------------
# Copying weights into PyTorch's modules (the conversion, written once)
# ----------------------------------------------------------------------------------------------


def _load_mha(theirs: nn.MultiheadAttention, ours: ttl.MultiHeadAttention) -> None:
    """nn.MultiheadAttention stacks the q, k, v projections as rows of in_proj_weight in
    nn.Linear layout (out, in); CS231n's w is (in, out), hence the transposes."""
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.query.w.T, ours.key.w.T, ours.value.w.T]))
        theirs.in_proj_bias.copy_(torch.cat([ours.query.b, ours.key.b, ours.value.b]))
        theirs.out_proj.weight.copy_(ours.proj.w.T)
        theirs.out_proj.bias.copy_(ours.proj.b)


def _load_linear(theirs: nn.Linear, ours: trnn.TemporalAffine) -> None:
    with torch.no_grad():
        theirs.weight.copy_(ours.w.T)
        theirs.bias.copy_(ours.b)


def _load_norm(theirs: nn.LayerNorm, ours: ttl.LayerNorm) -> None:
    with torch.no_grad():
        theirs.weight.copy_(ours.gamma)
        theirs.bias.copy_(ours.beta)


def _randomize(module: nn.Module, seed: int) -> None:
    """Non-trivial values everywhere (LayerNorm starts at gamma = 1, beta = 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype) * 0.5
            p.copy_(noise + (1.0 if name.endswith("gamma") else 0.0))


# ----------------------------------------------------------------------------------------------
# Multi-head attention
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
@pytest.mark.parametrize(
    ("N", "S", "T", "E", "heads", "masked"),
    [(2, 3, 5, 8, 2, True), (1, 1, 1, 3, 3, False), (3, 4, 4, 6, 1, True), (2, 5, 2, 4, 4, False)],
)
def test_mha_matches_nn_multiheadattention(dtype_name, N, S, T, E, heads, masked):
    dtype = DTYPES[dtype_name]
    torch.manual_seed(0)
    ours = ttl.MultiHeadAttention(E, heads, dropout=0.0).to(dtype)
    theirs = nn.MultiheadAttention(E, heads, dropout=0.0, batch_first=True, dtype=dtype)
    _load_mha(theirs, ours)
    q, k, v = (torch.randn(N, L, E, dtype=dtype, requires_grad=True) for L in (S, T, T))
    mask = _causal(S, T) if masked else None
    if masked:
        mask[:, 0] = 1  # no query with every key blocked
    out = ours(q, k, v, attn_mask=mask)
    # nn.MultiheadAttention's bool mask is True = blocked: CS231n's mask == 0.
    ref, _ = theirs(q, k, v, attn_mask=None if mask is None else mask == 0, need_weights=False)
    _close(out, ref, dtype_name)
    dout = torch.randn_like(out)
    g_ours = torch.autograd.grad(out, [q, k, v, ours.query.w, ours.value.b, ours.proj.w], dout)
    g_theirs = torch.autograd.grad(
        ref, [q, k, v, theirs.in_proj_weight, theirs.in_proj_bias, theirs.out_proj.weight], dout
    )
    for a, b in zip(g_ours[:3], g_theirs[:3], strict=True):
        _close(a, b, dtype_name)
    _close(g_ours[3], g_theirs[3][:E].T, dtype_name)  # rows 0:E of in_proj are the query's
    _close(g_ours[4], g_theirs[4][2 * E :], dtype_name)  # rows 2E:3E are the value's
    _close(g_ours[5], g_theirs[5].T, dtype_name)


def test_mha_self_attention_gradients_sum_over_roles():
    # query = key = value = x: autograd sums the three input gradients, as in CS231n's decoder.
    torch.manual_seed(1)
    ours = ttl.MultiHeadAttention(6, 3, dropout=0.0).double()
    theirs = nn.MultiheadAttention(6, 3, batch_first=True, dtype=torch.float64)
    _load_mha(theirs, ours)
    x = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    mask = _causal(4)
    (g1,) = torch.autograd.grad(ours(x, x, x, mask).square().sum(), x)
    (g2,) = torch.autograd.grad(theirs(x, x, x, attn_mask=mask == 0)[0].square().sum(), x)
    _close(g1, g2, "float64")


def test_mha_attention_dropout_train_and_eval():
    torch.manual_seed(2)
    mha = ttl.MultiHeadAttention(8, 2, dropout=0.5).double()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    mha.eval()
    ref = mha(x, x, x)
    mha.train()
    torch.manual_seed(5)
    a = mha(x, x, x)
    torch.manual_seed(5)
    b = mha(x, x, x)
    assert torch.equal(a, b)  # reproducible under the same seed
    assert not torch.allclose(a, ref)  # and actually dropping weights
    no_drop = ttl.MultiHeadAttention(8, 2, dropout=0.0).double()
    no_drop.load_state_dict(mha.state_dict())
    _close(no_drop.train()(x, x, x), ref, "float64")


def test_mha_dropout_mask_statistics():
    # Inverted dropout on the attention weights: E[mask] = 1, so the mean output over many draws
    # approaches the eval output (keep 0.75, 4000 draws of a 2x3 output: tolerance ~5 sigma).
    torch.manual_seed(3)
    mha = ttl.MultiHeadAttention(4, 2, dropout=0.25).double()
    x = torch.randn(1, 2, 4, dtype=torch.float64)
    with torch.no_grad():
        ref = mha.eval()(x, x, x)
        mha.train()
        xs = x.expand(4000, 2, 4)
        mean = mha(xs, xs, xs).mean(0, keepdim=True)
    assert (mean - ref).abs().max() < 0.05 * ref.abs().max() + 0.05


def test_mha_bad_input():
    with pytest.raises(ValueError, match="embed_dim=6 must be divisible by num_heads=4"):
        ttl.MultiHeadAttention(6, 4)
    mha = ttl.MultiHeadAttention(4, 2)
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"attn_mask must have shape \(3, 5\)"):
        mha(x, torch.randn(2, 5, 4), torch.randn(2, 5, 4), attn_mask=torch.ones(5, 3))
    with pytest.raises(ValueError, match="blocks every key"):
        mha(x, x, x, attn_mask=torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"value must have shape \(2, 5, 4\)"):
        mha(x, torch.randn(2, 5, 4), torch.randn(2, 4, 4))
    with pytest.raises(ValueError, match="dropout is the DROP probability"):
        ttl.MultiHeadAttention(4, 2, dropout=1.0)


# ----------------------------------------------------------------------------------------------
# Positional encoding
# ----------------------------------------------------------------------------------------------


def test_positional_encoding_eval_adds_the_table():
    pe = ttl.PositionalEncoding(6, dropout=0.1, max_len=20).eval()
    assert pe.pe.shape == (1, 20, 6) and pe.pe.dtype == torch.float32
    x = torch.randn(2, 7, 6, dtype=torch.float64)
    out = pe(x)
    assert out.dtype == torch.float64
    expected = x + torch.from_numpy(npa.positional_encoding(20, 6)[:7]).float().double()
    _close(out, expected, "float64")
    torch.testing.assert_close(
        ttl.positional_encoding(20, 6, dtype=torch.float64),
        torch.from_numpy(npa.positional_encoding(20, 6)),
        rtol=0,
        atol=1e-15,
    )


def test_positional_encoding_dropout_scales_kept_entries():
    torch.manual_seed(4)
    pe = ttl.PositionalEncoding(8, dropout=0.25).train()
    x = torch.rand(50, 40, 8, dtype=torch.float64) + 1.0  # x + pe never 0
    base = x + pe.pe[:, :40].double()
    ratio = pe(x) / base
    kept = ratio != 0
    torch.testing.assert_close(ratio[kept], torch.full_like(ratio[kept], 1 / 0.75))
    assert abs(kept.double().mean().item() - 0.75) < 0.01  # 16000 draws: ~5 sigma


def test_positional_encoding_bad_input():
    with pytest.raises(ValueError, match="embed_dim must be even"):
        ttl.PositionalEncoding(5)
    pe = ttl.PositionalEncoding(4, max_len=3)
    with pytest.raises(ValueError, match="more than max_len=3"):
        pe(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match=r"x must have shape \(1, \*, 4\)"):
        pe(torch.zeros(1, 2, 6))


# ----------------------------------------------------------------------------------------------
# Transformer layers vs nn.TransformerDecoderLayer / nn.TransformerEncoderLayer
# ----------------------------------------------------------------------------------------------


def _copy_common(theirs, ours, cross: bool):
    _load_mha(theirs.self_attn, ours.self_attn)
    _load_linear(theirs.linear1, ours.ffn.fc1)
    _load_linear(theirs.linear2, ours.ffn.fc2)
    _load_norm(theirs.norm1, ours.norm_self)
    if cross:
        _load_mha(theirs.multihead_attn, ours.cross_attn)
        _load_norm(theirs.norm2, ours.norm_cross)
        _load_norm(theirs.norm3, ours.norm_ffn)
    else:
        _load_norm(theirs.norm2, ours.norm_ffn)


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_decoder_layer_matches_pytorch(dtype_name):
    dtype = DTYPES[dtype_name]
    torch.manual_seed(6)
    D, heads, ffn = 8, 2, 16
    ours = ttl.TransformerDecoderLayer(D, heads, dim_feedforward=ffn, dropout=0.1).to(dtype)
    _randomize(ours, 7)
    # Same post-norm layout as CS231n's layer; GELU; dropout off (eval) for a deterministic match.
    theirs = nn.TransformerDecoderLayer(
        D,
        heads,
        dim_feedforward=ffn,
        dropout=0.1,
        activation="gelu",
        batch_first=True,
        norm_first=False,
        dtype=dtype,
    )
    _copy_common(theirs, ours, cross=True)
    ours.eval()
    theirs.eval()
    tgt = torch.randn(3, 5, D, dtype=dtype, requires_grad=True)
    memory = torch.randn(3, 4, D, dtype=dtype, requires_grad=True)
    mask = _causal(5)
    out = ours(tgt, memory, tgt_mask=mask)
    ref = theirs(tgt, memory, tgt_mask=mask == 0)
    _close(out, ref, dtype_name)
    dout = torch.randn_like(out)
    g1 = torch.autograd.grad(out, [tgt, memory, ours.ffn.fc1.w, ours.norm_cross.gamma], dout)
    g2 = torch.autograd.grad(ref, [tgt, memory, theirs.linear1.weight, theirs.norm2.weight], dout)
    _close(g1[0], g2[0], dtype_name)
    _close(g1[1], g2[1], dtype_name)
    _close(g1[2], g2[2].T, dtype_name)
    _close(g1[3], g2[3], dtype_name)


def test_encoder_layer_matches_pytorch():
    torch.manual_seed(8)
    D, heads, ffn = 6, 3, 10
    ours = ttl.TransformerEncoderLayer(D, heads, dim_feedforward=ffn, dropout=0.0).double()
    _randomize(ours, 9)
    theirs = nn.TransformerEncoderLayer(
        D,
        heads,
        dim_feedforward=ffn,
        dropout=0.0,
        activation="gelu",
        batch_first=True,
        dtype=torch.float64,
    )
    _copy_common(theirs, ours, cross=False)
    src = torch.randn(2, 4, D, dtype=torch.float64, requires_grad=True)
    out, ref = ours(src), theirs(src)
    _close(out, ref, "float64")
    (g1,) = torch.autograd.grad(out.square().sum(), src)
    (g2,) = torch.autograd.grad(ref.square().sum(), src)
    _close(g1, g2, "float64")


def test_decoder_layer_trains():
    # Gradient descent on a fixed target reduces the loss, and every parameter gets a gradient.
    torch.manual_seed(10)
    layer = ttl.TransformerDecoderLayer(8, 2, dim_feedforward=16, dropout=0.0).double()
    tgt, memory, target = (torch.randn(4, n, 8, dtype=torch.float64) for n in (5, 3, 5))
    params = list(layer.parameters())
    losses = []
    for _ in range(15):
        loss = (layer(tgt, memory, _causal(5)) - target).square().mean()
        grads = torch.autograd.grad(loss, params)
        assert all(g.abs().sum() > 0 for g in grads)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p -= 0.2 * g
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


# ----------------------------------------------------------------------------------------------
# Recurrent modules, GAN and SimCLR wrappers
# ----------------------------------------------------------------------------------------------


def test_recurrent_modules_shapes_and_functional_equivalence():
    torch.manual_seed(11)
    N, T, D, H, V = 2, 4, 3, 5, 7
    x, h0 = torch.randn(N, T, D), torch.randn(N, H)
    for module, fn, G in ((trnn.RNN(D, H), trnn.rnn, H), (trnn.LSTM(D, H), trnn.lstm, 4 * H)):
        assert module.Wx.shape == (D, G) and module.Wh.shape == (H, G) and module.b.shape == (G,)
        torch.testing.assert_close(module(x, h0), fn(x, h0, module.Wx, module.Wh, module.b))
    emb = trnn.WordEmbedding(V, D)
    words = torch.randint(V, (N, T))
    torch.testing.assert_close(emb(words), emb.W[words])
    aff = trnn.TemporalAffine(D, V)
    scores = aff(x)
    assert scores.shape == (N, T, V)
    loss = trnn.TemporalSoftmaxLoss()(scores, words, words != 0)
    assert loss.ndim == 0 and loss.dtype == torch.float32
    loss.backward()
    assert aff.w.grad.shape == (D, V)


def test_word_embedding_function_accumulates_and_rejects_out_of_vocabulary():
    W = torch.zeros(4, 2, dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[1, 1, 3], [1, 0, 1]])
    out = trnn.word_embedding(x, W)
    dout = torch.arange(12, dtype=torch.float64).reshape(2, 3, 2)
    out.backward(dout)
    torch.testing.assert_close(W.grad[1], dout[0, 0] + dout[0, 1] + dout[1, 0] + dout[1, 2])
    assert not W.grad[2].any()
    with pytest.raises(ValueError, match=r"x must lie in \[0, 4\)"):
        trnn.word_embedding(x + 3, W)


def test_temporal_softmax_loss_float32_mask_does_not_upcast():
    x = torch.randn(2, 3, 4, requires_grad=True)
    loss = trnn.temporal_softmax_loss(
        x, torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.float64)
    )
    assert loss.dtype == torch.float32
    loss.backward()
    assert x.grad.dtype == torch.float32


def test_first_order_only():
    x = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    h0, Wx, Wh, b = (
        torch.randn(*s, dtype=torch.float64, requires_grad=True)
        for s in [(1, 4), (3, 4), (4, 4), (4,)]
    )
    (g,) = torch.autograd.grad(RNNFunction.apply(x, h0, Wx, Wh, b).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


@pytest.mark.parametrize("big", [80.0, 1e4])
def test_gan_losses_large_logits(big):
    logits = torch.tensor([big, -big, 0.5], dtype=torch.float64, requires_grad=True)
    for ours, ref in [
        (
            tgan.generator_loss(logits),
            F.binary_cross_entropy_with_logits(logits, torch.ones(3, dtype=torch.float64)),
        ),
        (
            tgan.discriminator_loss(logits, logits.flip(0)),
            F.binary_cross_entropy_with_logits(logits, torch.ones(3, dtype=torch.float64))
            + F.binary_cross_entropy_with_logits(
                logits.flip(0), torch.zeros(3, dtype=torch.float64)
            ),
        ),
    ]:
        assert torch.isfinite(ours)
        _close(ours, ref, "float64")
        (g1,) = torch.autograd.grad(ours, logits)
        (g2,) = torch.autograd.grad(ref, logits)
        assert torch.isfinite(g1).all()
        _close(g1, g2, "float64")


def test_simclr_device_argument_follows_inputs():
    torch.manual_seed(12)
    left = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    right = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    # device='cuda' is the course's default: accepted on a CPU-only machine, the loss is
    # computed where the inputs are.
    loss = tsim.simclr_loss_vectorized(left, right, 0.5, device="cuda")
    assert loss.device == left.device
    _close(loss, tsim.simclr_loss_naive(left, right, 0.5), "float64")
    g1 = torch.autograd.grad(loss, [left, right])
    g2 = torch.autograd.grad(tsim.simclr_loss_naive(left, right, 0.5), [left, right])
    for a, b in zip(g1, g2, strict=True):
        _close(a, b, "float64")
    f32 = tsim.simclr_loss_vectorized(left.float(), right.float(), 0.5)
    assert f32.dtype == torch.float32
    assert tsim.compute_sim_matrix(torch.cat([left, right])).shape == (8, 8)
    assert tsim.sim_positive_pairs(left, right).shape == (4, 1)


# ----------------------------------------------------------------------------------------------
# CUDA (skipped without a device)
# ----------------------------------------------------------------------------------------------


@pytest.mark.cuda
@CUDA
def test_modules_on_cuda_match_cpu():
    torch.manual_seed(13)
    layer = ttl.TransformerDecoderLayer(8, 2, dim_feedforward=16, dropout=0.0).double()
    _randomize(layer, 14)
    tgt, memory = (
        torch.randn(2, 5, 8, dtype=torch.float64),
        torch.randn(2, 3, 8, dtype=torch.float64),
    )
    cpu = layer(tgt, memory, _causal(5))
    gpu_layer = layer.cuda()
    gpu = gpu_layer(tgt.cuda(), memory.cuda(), _causal(5).cuda())
    assert gpu.device.type == "cuda"
    _close(gpu.cpu(), cpu, "float64")
    pe = ttl.PositionalEncoding(8, dropout=0.5).cuda().train()
    assert pe(tgt.cuda()).device.type == "cuda"  # the dropout mask is drawn on the device
    left, right = torch.randn(3, 4, device="cuda"), torch.randn(3, 4, device="cuda")
    assert tsim.simclr_loss_vectorized(left, right, 0.5).device.type == "cuda"
    x = torch.randn(3, 3, 4, 8, dtype=torch.float64, device="cuda", requires_grad=True)
    W = [
        torch.randn(8, 8, dtype=torch.float64, device="cuda", requires_grad=True)
        if i % 2 == 0
        else torch.randn(8, dtype=torch.float64, device="cuda", requires_grad=True)
        for i in range(8)
    ]
    out = MultiHeadAttentionFunction.apply(x[0], x[1], x[2], *W, 2, None, None)
    out.sum().backward()
    assert x.grad.device.type == "cuda"
