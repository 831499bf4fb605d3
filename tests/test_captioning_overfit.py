"""The captioning models overfit a tiny caption set and then sample their training captions back.

Runs the same code as examples/overfit_captioning.py (loaded from its file), so the example in
the README is tested too.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "overfit_captioning.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("overfit_captioning", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_dataset_layout(example):
    word_to_idx, features, captions = example.make_dataset(seed=3)
    assert captions.shape == (
        len(example.SENTENCES),
        max(len(s.split()) for s in example.SENTENCES) + 2,
    )
    assert (captions[:, 0] == word_to_idx["<START>"]).all()
    idx_to_word = {i: w for w, i in word_to_idx.items()}
    for caption, sentence in zip(captions, example.SENTENCES, strict=True):
        assert example.decode(caption, idx_to_word) == sentence
        k = len(sentence.split())
        assert caption[k + 1] == word_to_idx["<END>"]
        assert (caption[k + 2 :] == word_to_idx["<NULL>"]).all()
    assert features.shape[0] == len(example.SENTENCES)


@pytest.mark.parametrize("cell_type", ["rnn", "lstm"])
def test_overfit_and_sample_reproduces_training_captions(example, cell_type):
    model, (word_to_idx, features, captions), history = example.overfit(cell_type, num_iters=200)
    n_words = int((captions[:, 1:] != word_to_idx["<NULL>"]).sum())
    # From chance (about log V per word, summed over each caption's words) ...
    assert history[0] > 0.8 * n_words / len(captions) * np.log(len(word_to_idx))
    # ... to near zero: < 0.005 nats per word on average.
    assert history[-1] < 0.005 * n_words / len(captions)
    pairs, same = example.reproduced(model, features, captions)
    assert same, pairs
    # The decoded text is compared above; the raw ids match the caption up to and including
    # <END> too (sample starts after <START>).
    samples = model.sample(features, max_length=captions.shape[1] - 1)
    for sample, caption in zip(samples, captions, strict=True):
        k = int(np.argmax(caption == word_to_idx["<END>"]))
        np.testing.assert_array_equal(sample[:k], caption[1 : k + 1])


def test_untrained_model_does_not_reproduce(example):
    # The check above can fail: before training, greedy samples are not the captions.
    model, (_, features, captions), _ = example.overfit("rnn", num_iters=0)
    _, same = example.reproduced(model, features, captions)
    assert not same


def test_example_main_exit_status(example, capsys):
    assert example.main(["--cell-type", "rnn", "--num-iters", "150"]) == 0
    out = capsys.readouterr().out
    assert "all training captions reproduced" in out
    assert example.main(["--cell-type", "lstm", "--num-iters", "2"]) == 1


@pytest.fixture()
def one_thread():
    """A few tiny matrices per step: torch's intra-op threads only add overhead (and, on a busy
    machine, waiting)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_transformer_overfits_and_samples_the_captions_back(example, one_thread):
    model, (word_to_idx, features, captions), history = example.overfit_transformer(num_iters=60)
    # The course's transformer loss averages over all N * (T - 1) positions, padding included.
    n_words = int((captions[:, 1:] != word_to_idx["<NULL>"]).sum())
    positions = captions[:, 1:].size
    assert history[0] > 0.8 * n_words / positions * np.log(len(word_to_idx))
    assert history[-1] < 0.01 * n_words / positions
    pairs, same = example.reproduced(model, features, captions)
    assert same, pairs
    untrained, _, _ = example.overfit_transformer(num_iters=0)
    assert not example.reproduced(untrained, features, captions)[1]


def test_coco_like_data_has_the_course_layout(example):
    data = example.make_coco_like_data(num_train=7, input_dim=5, vocab_size=30, seed=1)
    captions = data["train_captions"]
    assert captions.shape == (7, 17) and (captions[:, 0] == 1).all()
    lengths = (captions != 0).sum(axis=1)  # <START> + words + <END>
    assert lengths.min() >= 5 + 2 and lengths.max() <= 17
    assert (captions[np.arange(7), lengths - 1] == 2).all()
    assert data["train_features"].shape == (7, 5) and len(data["train_urls"]) == 7
    assert data["word_to_idx"][data["idx_to_word"][12]] == 12


def test_notebook_mode_writes_outputs(example, tmp_path, capsys):
    # One epoch (two minibatches) of the RNN notebook's set-up: the outputs exist and are sound;
    # the exit status is 1 because two steps cannot reach the notebook's final loss.
    status = example.main(
        ["--notebook", "--model", "rnn", "--num-epochs", "1", "--out", str(tmp_path)]
    )
    assert status == 1
    summary = json.loads((tmp_path / "final_losses.json").read_text())
    assert set(summary) == {"rnn"}
    row = summary["rnn"]
    assert row["iterations"] == 2 and row["num_train"] == 50
    assert np.isfinite(row["final_loss"]) and row["final_loss"] > row["expected_final_loss_below"]
    png = (tmp_path / "loss_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "NOT met" in capsys.readouterr().out


@pytest.mark.slow
def test_notebook_runs_reach_the_notebooks_final_losses(example, tmp_path):
    # The notebooks' full overfitting runs (a few minutes on a CPU).
    assert example.main(["--notebook", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "final_losses.json").read_text())
    for name, row in summary.items():
        assert row["final_loss"] < row["expected_final_loss_below"], name
