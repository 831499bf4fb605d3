"""Overfit CS231n's captioning models (RNN, LSTM, Transformer) on a small caption set.

The course's sanity check for a captioning model (RNN_Captioning, LSTM_Captioning and
Transformer_Captioning notebooks): a model with enough capacity must drive the training loss to
~0 on a few examples, and greedy sampling from each training image must then give that image's
caption back word for word.

Two set-ups:

- quick (default): six short sentences, one random feature vector each, full-batch Adam; the
  script checks that every caption is sampled back.
- ``--notebook``: the notebooks' experiment: 50 training captions, minibatches of 25 drawn with
  ``sample_coco_minibatch``, and their hyperparameters (RNN/LSTM: hidden 512, word vectors
  256, Adam 5e-3 for 50 epochs with lr decay 0.95 / 0.995; Transformer: word vectors 256,
  2 heads, 2 layers, Adam 1e-3 for 100 epochs). With ``--data-dir PATH`` (the course's
  coco_captioning folder, read by ``numpy_impl.coco_utils.load_coco_data(max_train=50)``) it
  runs on COCO; without it, on synthetic COCO-shaped data: 50 random captions of 5 to 15
  words over a 1004-word vocabulary, padded to 17 tokens, with 512-dim Gaussian features.

    python examples/overfit_captioning.py                      # rnn, lstm and transformer
    python examples/overfit_captioning.py --model transformer --num-iters 300 --seed 1
    python examples/overfit_captioning.py --notebook --out runs/overfit
    python examples/overfit_captioning.py --notebook --data-dir PATH --out runs/overfit-coco

It prints the loss while training and, in the quick set-up, each sampled caption beside its
target; the exit status is 1 when a caption is not sampled back (quick) or a final loss misses
the notebook's bound (``--notebook``). ``--out DIR`` writes ``loss_curves.png`` and
``final_losses.json`` (final loss, iterations, wall time, captions sampled back, per model).

RNN and LSTM: numpy_impl's CaptioningRNN with numpy_impl.optim.adam. Transformer:
torch_impl's CaptioningTransformer with torch.optim.Adam (as the course's
CaptioningSolverTransformer), float32 on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

from numpy_impl import optim
from numpy_impl.classifiers.rnn import CaptioningRNN
from numpy_impl.coco_utils import load_coco_data, sample_coco_minibatch
from torch_impl.classifiers.transformer import CaptioningTransformer

MODELS = ("rnn", "lstm", "transformer")

SENTENCES = (
    "a cat sat on the mat",
    "a dog ran",
    "the red dog sat on a cat",
    "two birds fly",
    "the mat is red",
    "a blue bird sat on the dog",
)

# The notebooks' overfitting runs (50 training captions, batches of 25) and the final loss
# each notebook says to expect.
NOTEBOOK = {
    "rnn": dict(
        hidden_dim=512,
        wordvec_dim=256,
        learning_rate=5e-3,
        lr_decay=0.95,
        num_epochs=50,
        expected_final_loss=0.1,
    ),
    "lstm": dict(
        hidden_dim=512,
        wordvec_dim=256,
        learning_rate=5e-3,
        lr_decay=0.995,
        num_epochs=50,
        expected_final_loss=0.5,
    ),
    "transformer": dict(
        wordvec_dim=256,
        num_heads=2,
        num_layers=2,
        max_length=30,
        learning_rate=1e-3,
        num_epochs=100,
        expected_final_loss=0.03,
    ),
}
NOTEBOOK_NUM_TRAIN = 50
NOTEBOOK_BATCH_SIZE = 25
NOTEBOOK_SEED = 231  # the notebooks' np.random.seed / torch.manual_seed


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


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


def make_coco_like_data(
    num_train=NOTEBOOK_NUM_TRAIN,
    input_dim=512,
    vocab_size=1004,
    caption_length=17,
    min_words=5,
    seed=0,
):
    """Synthetic data in load_coco_data's format: one random caption per image.

    Vocabulary '<NULL>', '<START>', '<END>', '<UNK>' and made-up words 'w0004', ...; each
    caption has min_words to caption_length - 2 words drawn uniformly, framed by '<START>' and
    '<END>' and padded with '<NULL>' to caption_length; features (num_train, input_dim) ~
    N(0, 1). Returns a dict with train_captions, train_image_idxs, train_features, train_urls,
    idx_to_word, word_to_idx.
    """
    rng = np.random.default_rng(seed)
    idx_to_word = ["<NULL>", "<START>", "<END>", "<UNK>"]
    idx_to_word += [f"w{i:04d}" for i in range(len(idx_to_word), vocab_size)]
    captions = np.zeros((num_train, caption_length), dtype=np.int32)
    for n in range(num_train):
        k = int(rng.integers(min_words, caption_length - 1))
        captions[n, : k + 2] = [1, *rng.integers(4, vocab_size, k), 2]
    return {
        "train_captions": captions,
        "train_image_idxs": np.arange(num_train, dtype=np.int32),
        "train_features": rng.standard_normal((num_train, input_dim)).astype(np.float32),
        "train_urls": np.asarray([f"synthetic://{n}" for n in range(num_train)]),
        "idx_to_word": idx_to_word,
        "word_to_idx": {w: i for i, w in enumerate(idx_to_word)},
    }


def decode(ids, idx_to_word) -> str:
    """Word ids -> text without the markers: stops at <END>, skips <START> and <NULL>
    (``coco_utils.decode_captions`` keeps <START> and <END>, as the course's does)."""
    words = []
    for i in ids:
        w = idx_to_word[int(i)]
        if w == "<END>":
            break
        if w not in ("<NULL>", "<START>"):
            words.append(w)
    return " ".join(words)


# --------------------------------------------------------------------------------------------
# Quick set-up: full-batch training on a handful of sentences
# --------------------------------------------------------------------------------------------


def overfit(
    cell_type="rnn",
    num_iters=200,
    learning_rate=1e-2,
    hidden_dim=32,
    wordvec_dim=16,
    seed=0,
    print_every=0,
):
    """Train CaptioningRNN on the whole synthetic set with Adam; return (model, data,
    loss_history), data = (word_to_idx, features, captions). Deterministic for a given seed."""
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


def overfit_transformer(
    num_iters=200,
    learning_rate=1e-2,
    wordvec_dim=32,
    num_heads=2,
    num_layers=2,
    dim_feedforward=64,
    dropout=0.0,
    seed=0,
    print_every=0,
):
    """Train torch_impl's CaptioningTransformer on the whole synthetic set with torch.optim.Adam;
    return (model, data, loss_history) as :func:`overfit`. Deterministic for a given seed."""
    word_to_idx, features, captions = make_dataset(input_dim=16, seed=seed)
    torch.manual_seed(seed)
    model = CaptioningTransformer(
        word_to_idx,
        input_dim=features.shape[1],
        wordvec_dim=wordvec_dim,
        num_heads=num_heads,
        num_layers=num_layers,
        max_length=captions.shape[1],
        dim_feedforward=dim_feedforward,
        dropout=dropout,
    )
    f = torch.as_tensor(features, dtype=torch.float32)
    c = torch.as_tensor(captions)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    history = []
    model.train()
    for it in range(num_iters):
        loss = model.loss(f, c)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
        if print_every and (it % print_every == 0 or it == num_iters - 1):
            print(f"[transformer] iteration {it + 1:4d}/{num_iters}: loss {history[-1]:.5f}")
    return model, (word_to_idx, features, captions), history


def _samples(model, features, max_length) -> np.ndarray:
    """Greedy samples as a NumPy array, from either twin."""
    if isinstance(model, torch.nn.Module):
        features = torch.as_tensor(features, dtype=torch.float32)
        return model.sample(features, max_length=max_length).cpu().numpy()
    return np.asarray(model.sample(features, max_length=max_length))


def reproduced(model, features, captions):
    """(list of (sampled text, target text), all equal?) for greedy samples of every feature."""
    samples = _samples(model, features, captions.shape[1] - 1)
    pairs = [
        (decode(s, model.idx_to_word), decode(c, model.idx_to_word))
        for s, c in zip(samples, captions, strict=True)
    ]
    return pairs, all(a == b for a, b in pairs)


# --------------------------------------------------------------------------------------------
# The notebooks' set-up: 50 captions, minibatches of 25
# --------------------------------------------------------------------------------------------


def _iterations(num_epochs: int, num_train: int, batch_size: int) -> tuple[int, int]:
    """(iterations per epoch, total) as the course's solvers count them."""
    per_epoch = max(num_train // batch_size, 1)
    return per_epoch, num_epochs * per_epoch


def train_notebook_rnn(data, cell_type, num_epochs=None, seed=NOTEBOOK_SEED, print_every=10):
    """The RNN/LSTM notebook's overfitting run: CaptioningRNN (hidden 512, word vectors 256),
    Adam with per-epoch lr decay, minibatches of 25. Returns (model, loss_history)."""
    hp = NOTEBOOK[cell_type]
    num_epochs = hp["num_epochs"] if num_epochs is None else num_epochs
    np.random.seed(seed)  # noqa: NPY002 -- the course's seeding (weights and minibatches)
    model = CaptioningRNN(
        data["word_to_idx"],
        input_dim=data["train_features"].shape[1],
        wordvec_dim=hp["wordvec_dim"],
        hidden_dim=hp["hidden_dim"],
        cell_type=cell_type,
    )
    configs = {k: {"learning_rate": hp["learning_rate"]} for k in model.params}
    per_epoch, total = _iterations(num_epochs, len(data["train_captions"]), NOTEBOOK_BATCH_SIZE)
    history = []
    for it in range(total):
        captions, features, _ = sample_coco_minibatch(data, NOTEBOOK_BATCH_SIZE, "train")
        loss, grads = model.loss(features, captions)
        history.append(float(loss))
        for k in model.params:
            model.params[k], configs[k] = optim.adam(model.params[k], grads[k], configs[k])
        if (it + 1) % per_epoch == 0:
            for c in configs.values():
                c["learning_rate"] *= hp["lr_decay"]
        if print_every and (it % print_every == 0 or it == total - 1):
            print(f"[{cell_type}] iteration {it + 1:4d}/{total}: loss {loss:.5f}", flush=True)
    return model, history


def train_notebook_transformer(data, num_epochs=None, seed=NOTEBOOK_SEED, print_every=10):
    """The Transformer notebook's overfitting run: CaptioningTransformer (word vectors 256,
    2 heads, 2 layers, dropout 0.1 in training), torch.optim.Adam 1e-3, minibatches of 25.
    Returns (model, loss_history)."""
    hp = NOTEBOOK["transformer"]
    num_epochs = hp["num_epochs"] if num_epochs is None else num_epochs
    np.random.seed(seed)  # noqa: NPY002 -- the course's seeding (minibatches)
    torch.manual_seed(seed)
    model = CaptioningTransformer(
        data["word_to_idx"],
        input_dim=data["train_features"].shape[1],
        wordvec_dim=hp["wordvec_dim"],
        num_heads=hp["num_heads"],
        num_layers=hp["num_layers"],
        max_length=hp["max_length"],
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=hp["learning_rate"])
    _, total = _iterations(num_epochs, len(data["train_captions"]), NOTEBOOK_BATCH_SIZE)
    history = []
    model.train()
    for it in range(total):
        captions, features, _ = sample_coco_minibatch(data, NOTEBOOK_BATCH_SIZE, "train")
        loss = model.loss(
            torch.as_tensor(features, dtype=torch.float32),
            torch.as_tensor(captions, dtype=torch.long),
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
        if print_every and (it % print_every == 0 or it == total - 1):
            print(
                f"[transformer] iteration {it + 1:4d}/{total}: loss {history[-1]:.5f}", flush=True
            )
    return model, history


def count_reproduced(model, data) -> tuple[int, int]:
    """(training captions sampled back word for word, number of training captions)."""
    captions = data["train_captions"]
    features = data["train_features"][data["train_image_idxs"]]
    samples = _samples(model, features, captions.shape[1] - 1)
    idx_to_word = data["idx_to_word"]
    hits = sum(
        decode(s, idx_to_word) == decode(c, idx_to_word)
        for s, c in zip(samples, captions, strict=True)
    )
    return int(hits), len(captions)


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def _atomic_write(path: str, write) -> None:
    """write(file object) into a temporary file beside path, then rename it into place."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_outputs(out_dir: str, histories: dict, summary: dict, title: str) -> None:
    """out_dir/loss_curves.png (every model's training loss per iteration, log scale) and
    out_dir/final_losses.json (summary). The losses are the notebooks': CaptioningRNN's sums
    over time and averages over the batch, the transformer's averages over every position."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, history in histories.items():
        ax.plot(np.arange(1, len(history) + 1), history, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    # Each model's loss as its notebook reports it.
    ax.set_ylabel("training loss\n(RNN/LSTM: summed over time; transformer: per position)")
    ax.set_title(title)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    try:
        _atomic_write(
            os.path.join(out_dir, "loss_curves.png"),
            lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"),
        )
    finally:
        plt.close(fig)
    text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    _atomic_write(os.path.join(out_dir, "final_losses.json"), lambda f: f.write(text.encode()))


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _selected(args) -> tuple[str, ...]:
    if args.cell_type is not None:  # the older flag: rnn, lstm or both
        return ("rnn", "lstm") if args.cell_type == "both" else (args.cell_type,)
    return MODELS if args.model == "all" else (args.model,)


def run_quick(models, args, summary, histories) -> bool:
    ok = True
    for name in models:
        start = time.perf_counter()
        if name == "transformer":
            lr = 1e-2 if args.learning_rate is None else args.learning_rate
            model, (_, features, captions), history = overfit_transformer(
                args.num_iters, lr, seed=args.seed, print_every=50
            )
        else:
            lr = 1e-2 if args.learning_rate is None else args.learning_rate
            model, (_, features, captions), history = overfit(
                name, args.num_iters, lr, seed=args.seed, print_every=50
            )
        pairs, same = reproduced(model, features, captions)
        wall = time.perf_counter() - start
        print(f"[{name}] final training loss {history[-1]:.5f} ({wall:.1f} s)")
        for sampled, target in pairs:
            mark = "ok " if sampled == target else "BAD"
            print(f"  {mark} sampled: {sampled!r:40} target: {target!r}")
        histories[name] = history
        summary[name] = {
            "final_loss": history[-1],
            "iterations": len(history),
            "wall_s": round(wall, 2),
            "reproduced": sum(a == b for a, b in pairs),
            "num_train": len(pairs),
        }
        ok &= same
    print("all training captions reproduced" if ok else "some captions were NOT reproduced")
    return ok


def run_notebook(models, args, summary, histories) -> bool:
    if args.data_dir is not None:
        np.random.seed(NOTEBOOK_SEED)  # noqa: NPY002 -- the notebooks seed before subsampling
        data = load_coco_data(base_dir=args.data_dir, max_train=NOTEBOOK_NUM_TRAIN)
        source = f"COCO ({NOTEBOOK_NUM_TRAIN} training captions)"
    else:
        data = make_coco_like_data(seed=args.seed)
        source = f"synthetic COCO-shaped data ({NOTEBOOK_NUM_TRAIN} captions)"
    print(f"data: {source}", flush=True)
    ok = True
    for name in models:
        start = time.perf_counter()
        if name == "transformer":
            model, history = train_notebook_transformer(data, args.num_epochs)
        else:
            model, history = train_notebook_rnn(data, name, args.num_epochs)
        train_wall = time.perf_counter() - start
        hits, n = count_reproduced(model, data)
        bound = NOTEBOOK[name]["expected_final_loss"]
        met = history[-1] < bound
        print(
            f"[{name}] final training loss {history[-1]:.5f} (the notebook expects < {bound}; "
            f"{'met' if met else 'NOT met'}), {len(history)} iterations in {train_wall:.1f} s, "
            f"{hits}/{n} training captions sampled back",
            flush=True,
        )
        histories[name] = history
        summary[name] = {
            "final_loss": history[-1],
            "expected_final_loss_below": bound,
            "iterations": len(history),
            "wall_s": round(train_wall, 2),
            "reproduced": hits,
            "num_train": n,
            "data": source,
        }
        ok &= met
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", choices=[*MODELS, "all"], default="all")
    parser.add_argument(
        "--cell-type", choices=["rnn", "lstm", "both"], default=None, help=argparse.SUPPRESS
    )
    parser.add_argument("--notebook", action="store_true", help="the notebooks' 50-caption run")
    parser.add_argument(
        "--data-dir", default=None, help="with --notebook: the course's coco_captioning folder"
    )
    parser.add_argument("--num-iters", type=int, default=200, help="quick set-up iterations")
    parser.add_argument(
        "--num-epochs", type=int, default=None, help="with --notebook: override the epochs"
    )
    parser.add_argument("--learning-rate", type=float, default=None, help="quick set-up")
    parser.add_argument("--seed", type=int, default=0, help="data (and quick set-up) seed")
    parser.add_argument("--out", default=None, help="write loss_curves.png, final_losses.json")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch's intra-op threads (default: torch's)"
    )
    args = parser.parse_args(argv)
    if args.data_dir is not None and not args.notebook:
        parser.error("--data-dir needs --notebook")
    if args.num_iters < 1 or (args.num_epochs is not None and args.num_epochs < 1):
        parser.error("--num-iters and --num-epochs must be at least 1")

    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    models = _selected(args)
    summary, histories = {}, {}
    if args.notebook:
        ok = run_notebook(models, args, summary, histories)
        title = "overfitting 50 training captions"
    else:
        ok = run_quick(models, args, summary, histories)
        title = f"overfitting {len(SENTENCES)} synthetic captions"
    if args.out is not None:
        write_outputs(args.out, histories, summary, title)
        print(f"wrote {os.path.join(args.out, 'loss_curves.png')} and final_losses.json")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
