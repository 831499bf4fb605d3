"""Overfit CS231n's CaptioningRNN on a tiny synthetic caption set, then sample the captions back.

The course's sanity check for a captioning model (RNN_Captioning / LSTM_Captioning notebooks):
a model with enough capacity must drive the training loss to ~0 on a handful of examples, and
greedy sampling from each training image must then reproduce that image's caption word for word.
Here the "images" are random feature vectors (one per caption), so the script needs no data set.

    python examples/overfit_captioning.py                 # both cell types
    python examples/overfit_captioning.py --cell-type lstm --num-iters 300 --seed 1

It prints the loss during training and each sampled caption next to its target, and exits with
status 1 if a caption is not reproduced. Pure NumPy: numpy_impl's CaptioningRNN trained with
numpy_impl.optim.adam.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from numpy_impl import optim
from numpy_impl.classifiers.rnn import CaptioningRNN

SENTENCES = (
    "a cat sat on the mat",
    "a dog ran",
    "the red dog sat on a cat",
    "two birds fly",
    "the mat is red",
    "a blue bird sat on the dog",
)


def make_dataset(sentences=SENTENCES, input_dim=16, seed=0):
    """Synthetic captioning data.

    Returns (word_to_idx, features (N, input_dim) float64, captions int (N, T)) with each
    caption '<START> w1 ... wk <END>' padded with '<NULL>' to the longest one, and one random
    feature vector per caption.
    """
    words = sorted({w for s in sentences for w in s.split()})
    vocab = ["<NULL>", "<START>", "<END>", *words]
    word_to_idx = {w: i for i, w in enumerate(vocab)}
    T = max(len(s.split()) for s in sentences) + 2
    captions = np.full((len(sentences), T), word_to_idx["<NULL>"], dtype=np.int64)
    for n, s in enumerate(sentences):
        ids = [word_to_idx["<START>"], *(word_to_idx[w] for w in s.split()), word_to_idx["<END>"]]
        captions[n, : len(ids)] = ids
    features = np.random.default_rng(seed).standard_normal((len(sentences), input_dim))
    return word_to_idx, features, captions


def decode(ids, idx_to_word) -> str:
    """Word ids -> text, stopping at <END> and skipping <START>/<NULL> (as the course's
    decode_captions does)."""
    words = []
    for i in ids:
        w = idx_to_word[int(i)]
        if w == "<END>":
            break
        if w not in ("<NULL>", "<START>"):
            words.append(w)
    return " ".join(words)


def overfit(
    cell_type="rnn",
    num_iters=200,
    learning_rate=1e-2,
    hidden_dim=32,
    wordvec_dim=16,
    seed=0,
    print_every=0,
):
    """Train on the whole synthetic set with Adam; return (model, data, loss_history).

    data = (word_to_idx, features, captions). Deterministic for a given seed.
    """
    word_to_idx, features, captions = make_dataset(input_dim=16, seed=seed)
    np.random.seed(seed)  # noqa: NPY002 -- CaptioningRNN draws its weights like the course
    model = CaptioningRNN(
        word_to_idx,
        input_dim=features.shape[1],
        wordvec_dim=wordvec_dim,
        hidden_dim=hidden_dim,
        cell_type=cell_type,
        dtype=np.float64,
    )
    configs = {k: {"learning_rate": learning_rate} for k in model.params}
    history = []
    for it in range(num_iters):
        loss, grads = model.loss(features, captions)
        history.append(float(loss))
        for k in model.params:
            model.params[k], configs[k] = optim.adam(model.params[k], grads[k], configs[k])
        if print_every and (it % print_every == 0 or it == num_iters - 1):
            print(f"[{cell_type}] iteration {it + 1:4d}/{num_iters}: loss {loss:.5f}")
    return model, (word_to_idx, features, captions), history


def reproduced(model, features, captions):
    """(list of (sampled text, target text), all equal?) for greedy samples of every feature."""
    samples = model.sample(features, max_length=captions.shape[1] - 1)
    pairs = [
        (decode(s, model.idx_to_word), decode(c, model.idx_to_word))
        for s, c in zip(samples, captions, strict=True)
    ]
    return pairs, all(a == b for a, b in pairs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell-type", choices=["rnn", "lstm", "both"], default="both")
    parser.add_argument("--num-iters", type=int, default=200)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    ok = True
    for cell_type in ("rnn", "lstm") if args.cell_type == "both" else (args.cell_type,):
        model, (_, features, captions), history = overfit(
            cell_type, args.num_iters, args.learning_rate, seed=args.seed, print_every=50
        )
        pairs, same = reproduced(model, features, captions)
        print(f"[{cell_type}] final training loss {history[-1]:.5f}")
        for sampled, target in pairs:
            mark = "ok " if sampled == target else "BAD"
            print(f"  {mark} sampled: {sampled!r:40} target: {target!r}")
        ok &= same
    print("all training captions reproduced" if ok else "some captions were NOT reproduced")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
