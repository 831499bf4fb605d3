"""Tests for numpy_impl.solver.Solver: the CS231n training loop, its argument checks, and safe,
atomic checkpoints that resume to exactly the same run."""

# ruff: noqa: NPY002 -- the models under test draw from NumPy's global generator (CS231n's
# convention), so the tests seed it with np.random.seed.

import json
import os
import zipfile

import numpy as np
import pytest

from numpy_impl import optim
from numpy_impl.classifiers import FullyConnectedNet, TwoLayerNet
from numpy_impl.solver import Solver, load_checkpoint


def make_data(seed=0, n_train=60, n_val=20, D=12, C=4):
    rs = np.random.RandomState(seed)
    centers = rs.randn(C, D) * 2
    y_tr, y_val = rs.randint(C, size=n_train), rs.randint(C, size=n_val)
    return {
        "X_train": centers[y_tr] + rs.randn(n_train, D),
        "y_train": y_tr,
        "X_val": centers[y_val] + rs.randn(n_val, D),
        "y_val": y_val,
    }


def make_fc(seed):
    # Batchnorm (running stats outside model.params) and unseeded dropout (draws from NumPy's
    # global generator) make resuming depend on everything a checkpoint must carry.
    np.random.seed(seed)
    return FullyConnectedNet(
        [10, 8],
        input_dim=12,
        num_classes=4,
        normalization="batchnorm",
        dropout_keep_ratio=0.7,
        weight_scale=0.1,
        dtype=np.float64,
    )


SETTINGS = {
    "update_rule": "adam",
    "optim_config": {"learning_rate": 5e-3},
    "lr_decay": 0.9,
    "num_epochs": 4,
    "batch_size": 16,
    "num_train_samples": 30,
    "num_val_samples": 10,
    "verbose": False,
}


def run(model_seed=3, train_seed=11, **extra):
    model = make_fc(model_seed)
    np.random.seed(train_seed)
    solver = Solver(model, make_data(), **{**SETTINGS, **extra})
    solver.train()
    return solver


def assert_same_run(a, b):
    np.testing.assert_array_equal(
        np.asarray(a.loss_history, dtype=np.float64), np.asarray(b.loss_history, dtype=np.float64)
    )
    np.testing.assert_array_equal(a.train_acc_history, b.train_acc_history)
    np.testing.assert_array_equal(a.val_acc_history, b.val_acc_history)
    assert a.best_val_acc == b.best_val_acc and a.epoch == b.epoch
    assert sorted(a.update_ratio_history) == sorted(b.update_ratio_history)
    for k in a.update_ratio_history:
        np.testing.assert_array_equal(a.update_ratio_history[k], b.update_ratio_history[k])
    assert sorted(a.model.params) == sorted(b.model.params)
    for k in a.model.params:
        np.testing.assert_array_equal(a.model.params[k], b.model.params[k])
    for pa, pb in zip(a.model.bn_params, b.model.bn_params, strict=True):
        np.testing.assert_array_equal(pa["running_mean"], pb["running_mean"])
        np.testing.assert_array_equal(pa["running_var"], pb["running_var"])
    for k in a.optim_configs:
        ca, cb = a.optim_configs[k], b.optim_configs[k]
        assert sorted(ca) == sorted(cb)
        for key in ca:
            np.testing.assert_array_equal(ca[key], cb[key])


def test_histories_lengths_best_params_and_lr_decay():
    solver = run()
    iters_per_epoch = 60 // 16
    assert len(solver.loss_history) == 4 * iters_per_epoch
    # Checked after the first iteration and at the end of each epoch.
    assert len(solver.train_acc_history) == len(solver.val_acc_history) == 5
    assert solver.best_val_acc == max(solver.val_acc_history)
    assert solver.model.params is solver.best_params
    lr = 5e-3
    for _ in range(4):
        lr *= 0.9  # decayed once at the end of each epoch
    for cfg in solver.optim_configs.values():
        assert cfg["learning_rate"] == lr
        assert cfg["t"] == 4 * iters_per_epoch


def test_same_seed_same_run_and_checkpointing_does_not_perturb(tmp_path):
    plain = run()
    again = run()
    assert_same_run(plain, again)
    ckpt = run(checkpoint_name=str(tmp_path / "net"))
    assert_same_run(plain, ckpt)
    names = sorted(os.listdir(tmp_path))
    assert names == [f"net_epoch_{e}.npz" for e in range(5)]  # no temporary files left


@pytest.mark.parametrize("resume_epoch", [0, 2, 3])
def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path, resume_epoch):
    full = run(checkpoint_name=str(tmp_path / "net"))
    # A fresh process would start from different weights and a different random state.
    model = make_fc(99)
    np.random.seed(12345)
    resumed = Solver.from_checkpoint(
        str(tmp_path / f"net_epoch_{resume_epoch}.npz"), model, make_data(), verbose=False
    )
    resumed.train()
    assert_same_run(full, resumed)


def test_restore_checkpoint_on_a_configured_solver(tmp_path):
    full = run(checkpoint_name=str(tmp_path / "net"))
    model = make_fc(5)
    solver = Solver(model, make_data(), **SETTINGS)
    solver.restore_checkpoint(str(tmp_path / "net_epoch_1.npz"))
    assert solver.epoch == 1 and len(solver.val_acc_history) == 2
    solver.train()
    assert_same_run(full, solver)


def test_checkpoint_is_plain_npz_with_json_metadata(tmp_path):
    run(checkpoint_name=str(tmp_path / "net"), num_epochs=1)
    path = tmp_path / "net_epoch_1.npz"
    with np.load(path, allow_pickle=False) as z:  # no object arrays anywhere
        assert all(z[k].dtype != object for k in z.files)
        meta = json.loads(bytes(z["meta"]).decode())
    assert meta["update_rule"] == "adam" and meta["epoch"] == 1
    arrays, meta2 = load_checkpoint(str(path))
    assert meta2 == meta and "rng_keys" in arrays


def test_resume_rejects_mismatched_settings(tmp_path):
    run(checkpoint_name=str(tmp_path / "net"), num_epochs=1)
    path = str(tmp_path / "net_epoch_1.npz")
    with pytest.raises(ValueError, match="update_rule"):
        Solver(make_fc(1), make_data(), **{**SETTINGS, "update_rule": "sgd"}).restore_checkpoint(
            path
        )
    with pytest.raises(ValueError, match="batch_size"):
        Solver(make_fc(1), make_data(), **{**SETTINGS, "batch_size": 8}).restore_checkpoint(path)
    np.random.seed(0)
    other = TwoLayerNet(input_dim=12, hidden_dim=5, num_classes=4)
    with pytest.raises(ValueError, match="parameters"):
        Solver(other, make_data(), **SETTINGS).restore_checkpoint(path)


def test_corrupted_truncated_and_missing_checkpoints_name_the_file(tmp_path):
    run(checkpoint_name=str(tmp_path / "net"), num_epochs=1)
    good = (tmp_path / "net_epoch_1.npz").read_bytes()

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="truncated.npz"):
        load_checkpoint(str(truncated))

    corrupted = tmp_path / "corrupted.npz"
    data = bytearray(good)
    with zipfile.ZipFile(tmp_path / "net_epoch_1.npz") as zf:
        member = zf.read("param/0.npy")
    start = good.find(member) + len(member) // 2  # the array is stored uncompressed
    data[start : start + 64] = bytes(64)  # zero bytes inside a stored array: CRC mismatch
    corrupted.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted.npz"):
        load_checkpoint(str(corrupted))

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="garbage.npz"):
        Solver.from_checkpoint(str(garbage), make_fc(1), make_data())

    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(ValueError, match="foreign.npz"):
        load_checkpoint(str(foreign))

    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_checkpoint(str(tmp_path / "missing.npz"))


def test_unknown_kwargs_and_update_rules():
    model = make_fc(0)
    with pytest.raises(ValueError, match='"learning_rate"'):
        Solver(model, make_data(), learning_rate=1e-3)
    with pytest.raises(ValueError, match="Invalid update_rule"):
        Solver(model, make_data(), update_rule="adamw")
    with pytest.raises(ValueError, match="Invalid update_rule"):
        Solver(model, make_data(), update_rule="np")  # a module attribute, not a rule
    with pytest.raises(ValueError, match="X_val"):
        Solver(model, {"X_train": np.zeros((2, 12)), "y_train": np.zeros(2, int)})
    with pytest.raises(ValueError, match="batch_size"):
        Solver(model, make_data(), batch_size=0)
    with pytest.raises(TypeError, match="model"):
        Solver(object(), make_data())
    for rule in optim.__all__:
        assert Solver(model, make_data(), update_rule=rule).update_rule is getattr(optim, rule)


def test_check_accuracy_batches_and_subsamples():
    class Oracle:
        """Scores that predict label (sum of features > 0); counts calls."""

        params = {}

        def __init__(self):
            self.batch_sizes = []

        def loss(self, X, y=None):
            self.batch_sizes.append(len(X))
            return np.stack([X.sum(1) <= 0, X.sum(1) > 0], axis=1).astype(float)

    rs = np.random.RandomState(0)
    X = rs.randn(250, 3)
    y = (X.sum(1) > 0).astype(int)
    y[:25] = 1 - y[:25]  # 10% wrong
    model = Oracle()
    solver = Solver(model, {"X_train": X, "y_train": y, "X_val": X, "y_val": y})
    assert solver.check_accuracy(X, y, batch_size=100) == 0.9
    assert model.batch_sizes == [100, 100, 50]
    np.random.seed(0)
    acc = solver.check_accuracy(X, y, num_samples=40, batch_size=100)
    np.random.seed(0)
    idx = np.random.choice(250, 40)  # the course's draw, with replacement
    assert acc == np.mean(np.isin(idx, np.arange(25)) == 0)


def test_verbose_output_format(capsys):
    np.random.seed(0)
    model = TwoLayerNet(input_dim=12, hidden_dim=5, num_classes=4)
    solver = Solver(model, make_data(), num_epochs=1, batch_size=20, print_every=2)
    solver.train()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("(Iteration 1 / 3) loss: ")
    assert any(line.startswith("(Epoch 0 / 1) train acc: ") for line in out)
    assert any(line.startswith("(Iteration 3 / 3) loss: ") for line in out)
    assert out[-1].startswith("(Epoch 1 / 1) train acc: ") and "; val_acc: " in out[-1]


class ConstantGradModel:
    """loss = sum(G * W): the gradient is the constant G, so SGD's updates are known exactly."""

    def __init__(self, W, G):
        self.params = {"W": W.copy(), "b": np.zeros(3)}
        self.G = G

    def loss(self, X, y=None):
        if y is None:
            return np.zeros((len(X), 3))
        return float(np.sum(self.G * self.params["W"])), {"W": self.G, "b": np.ones(3)}


def test_update_ratio_history_matches_sgd_by_hand():
    rs = np.random.RandomState(0)
    W0, G = rs.randn(4, 3), rs.randn(4, 3)
    lr = 0.01
    data = {
        "X_train": np.zeros((10, 2)),
        "y_train": np.zeros(10, dtype=int),
        "X_val": np.zeros((5, 2)),
        "y_val": np.zeros(5, dtype=int),
    }
    solver = Solver(
        ConstantGradModel(W0, G),
        data,
        optim_config={"learning_rate": lr},
        batch_size=5,
        num_epochs=3,
        verbose=False,
    )
    solver.train()
    # Iteration t starts from W0 - t*lr*G and moves by lr*G.
    expected = [
        lr * np.sqrt(np.sum(G * G)) / np.sqrt(np.sum((W0 - t * lr * G) ** 2)) for t in range(6)
    ]
    np.testing.assert_allclose(solver.update_ratio_history["W"], expected, rtol=1e-12)
    # b starts at 0 (ratio undefined), then ||lr * 1|| / ||t * lr * 1|| = 1 / t.
    b_ratios = solver.update_ratio_history["b"]
    assert np.isnan(b_ratios[0])
    np.testing.assert_allclose(b_ratios[1:], [1 / t for t in range(1, 6)], rtol=1e-12)


def test_update_ratio_grows_with_the_learning_rate():
    ratios = {}
    for lr in (1e-4, 1e-2):
        solver = run(optim_config={"learning_rate": lr}, num_epochs=1)
        assert set(solver.update_ratio_history) == set(solver.model.params)
        assert all(len(v) == len(solver.loss_history) for v in solver.update_ratio_history.values())
        ratios[lr] = np.median(solver.update_ratio_history["W1"])
    assert ratios[1e-2] > 10 * ratios[1e-4]


def test_checkpoint_without_update_ratios_still_loads(tmp_path):
    run(checkpoint_name=str(tmp_path / "net"), num_epochs=1)
    path = tmp_path / "net_epoch_1.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if not k.startswith("ratio/")}
    old = tmp_path / "old.npz"
    np.savez(old, **arrays)
    solver = Solver(make_fc(1), make_data(), **SETTINGS)
    solver.restore_checkpoint(str(old))
    assert all(v == [] for v in solver.update_ratio_history.values())
    solver.train()
    assert all(len(v) == 3 * (60 // 16) for v in solver.update_ratio_history.values())
