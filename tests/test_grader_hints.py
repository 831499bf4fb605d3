"""Hints that name a mistake instead of a generic mismatch: sampling one step late, batchnorm's
test mode on batch statistics, noise that is not U(-1, 1) or ignores its seed, GAN networks
off the notebook's spec, a captioning transformer that skips a step."""

import os

from cs231n_grader import engine, runner, submission

CORRECT = os.path.join(os.path.dirname(__file__), "fixtures", "students", "correct", "cs231n")


def _grade_edited(tmp_path, rel, edits, only, memory_mb=1024):
    text = open(os.path.join(CORRECT, rel)).read()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / os.path.basename(rel)
    path.write_text(text)
    with submission.load([str(path)]) as sub:
        return {r.name: r for r in engine.grade(sub, runner.Limits(10.0, memory_mb), only=only)}


def test_sample_shifted_by_one(tmp_path):
    res = _grade_edited(
        tmp_path,
        "classifiers/rnn.py",
        [
            (
                "        for t in range(max_length):\n",
                "        captions[:, 0] = self._start\n        for t in range(max_length - 1):\n",
            ),
            ("            captions[:, t] = word", "            captions[:, t + 1] = word"),
        ],
        only=["CaptioningRNN.sample"],
    )
    r = res["CaptioningRNN.sample"]
    assert r.verdict == "fail" and "shifted one step late" in r.hint


def test_batchnorm_test_mode_on_batch_statistics(tmp_path):
    res = _grade_edited(
        tmp_path,
        "layers.py",
        [
            (
                "        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta",
                "        out = gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + eps) + beta",
            ),
        ],
        only=["batchnorm_forward"],
    )
    r = res["batchnorm_forward"]
    assert r.verdict == "fail" and "running_mean" in r.hint and "test mode" in r.hint
    assert r.cases_passed == r.cases_total - 1


def test_gan_noise_and_networks(tmp_path):
    """sample_noise is judged by its statistics (no reference reproduces another
    implementation's draws); the networks against the notebook's layer-by-layer spec."""
    res = _grade_edited(
        tmp_path,
        "gan_pytorch.py",
        [
            (
                "    if seed is not None:\n        torch.manual_seed(seed)\n"
                "    return 2 * torch.rand(batch_size, dim) - 1",
                "    return torch.rand(batch_size, dim)",
            ),
            (
                "        nn.Linear(784, 256),\n        nn.LeakyReLU(0.01),",
                "        nn.Linear(784, 256),\n        nn.ReLU(),",
            ),
            ("        nn.Linear(1024, 784),", "        nn.Linear(1024, 784, bias=False),"),
        ],
        only=["sample_noise", "generator_loss", "discriminator", "generator", "build_dc_*"],
        memory_mb=6144,
    )
    r = res["sample_noise"]
    assert r.verdict == "fail"
    text = " ".join(r.details)
    assert "not uniform on [-1, 1]" in text and "same seed gave different noise" in text
    assert res["generator_loss"].verdict == "pass"
    assert res["discriminator"].verdict == "fail" and "activations" in res["discriminator"].hint
    gen = res["generator"]
    assert gen.verdict == "fail" and "1857536 parameters in 5 tensors" in gen.hint
    assert "1858320 in 6" in gen.hint  # the notebook's count for generator(4)
    assert res["build_dc_classifier"].verdict == "pass"
    assert res["build_dc_generator"].verdict == "pass"


def test_pytorch_files_in_one_child_fail_alone_and_transformer_forward(tmp_path):
    """The PyTorch items run in one child: a file that fails to import fails only its own
    tests. CaptioningTransformer.forward is graded against the notebook's composition of the
    model's own submodules (the right one passes in test_grader.py's full-marks test); one that
    forgets the positional encoding is named."""
    import shutil

    pkg = tmp_path / "a3" / "cs231n"
    shutil.copytree(os.path.join(CORRECT, "..", "..", "a3_course", "cs231n"), pkg)
    gan = pkg / "gan_pytorch.py"
    gan.write_text("import no_such_module_for_the_grader_test\n" + gan.read_text())
    path = pkg / "classifiers" / "transformer.py"
    text = path.read_text()
    good = "caption_embeddings = self.positional_encoding(self.embedding(captions))"
    assert good in text
    path.write_text(text.replace(good, "caption_embeddings = self.embedding(captions)"))
    only = ["gan_losses", "simclr", "captioning_transformer"]
    with submission.load([str(tmp_path / "a3")]) as sub:
        res = {r.name: r for r in engine.grade(sub, runner.Limits(10.0, 6144), jobs=2, only=only)}
    assert res["discriminator_loss"].verdict == "error"
    assert "importing cs231n/gan_pytorch.py failed" in res["sample_noise"].hint
    assert "no_such_module_for_the_grader_test" in res["sample_noise"].hint
    for name in ("sim", "compute_sim_matrix", "simclr_loss_naive", "simclr_loss_vectorized"):
        assert res[name].verdict == "pass", (name, res[name].hint)
    r = res["CaptioningTransformer.forward"]
    assert r.verdict == "fail" and "positional encoding" in r.hint
