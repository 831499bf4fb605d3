"""SimCLR training (the course's ``simclr/utils.py`` ``train``) and the linear-probe evaluation.

Linear probe (Chen et al., 2020, section 4): freeze the encoder f, compute h = f(x) for the
training and test images (no augmentation), standardize h with the training mean and std, and
fit a multinomial logistic regression on the training features -- a torch_impl Affine layer and
softmax loss (plus L2 on the weights), full-batch torch_impl Adam -- then report its accuracy on
the test features. Before extracting features every batchnorm's running statistics are
re-estimated on the probe's training images (their exact average over the batches): an encoder
that has never trained has none, and a trained one saw augmented images only.
"""

from __future__ import annotations

import torch

from torch_impl import nn as tnn
from torch_impl import optim as topt
from torch_impl.functions import SoftmaxLossFunction
from torch_impl.simclr import simclr_loss_vectorized
from twin_checks import require_int_param

__all__ = ["train", "refresh_batchnorm_statistics", "extract_features", "linear_probe"]


def train(
    model,
    data_loader,
    train_optimizer,
    epoch,
    epochs,
    batch_size=32,
    temperature=0.5,
    device="cuda",
    log=None,
):
    """One epoch of SimCLR over data_loader, which yields (x_i, x_j, target): two augmented views
    (N, 3, 32, 32) of the same N images. The loss is torch_impl.simclr.simclr_loss_vectorized of
    the two views' projections (temperature = tau), given ``device`` as the course passes it.

    batch_size: weighs each batch's loss in the average (the course's bookkeeping; the loader's
    batches should have this size). log: called with a progress line every 10 batches and at the
    end (None: silent). Returns the average loss.
    """
    model.train()
    total_loss, total_num = 0.0, 0
    num_batches = len(data_loader)
    for step, (x_i, x_j, _target) in enumerate(data_loader, start=1):
        x_i, x_j = x_i.to(device), x_j.to(device)
        _, out_left = model(x_i)
        _, out_right = model(x_j)
        loss = simclr_loss_vectorized(out_left, out_right, temperature, device)
        train_optimizer.zero_grad()
        loss.backward()
        train_optimizer.step()
        total_num += batch_size
        total_loss += loss.item() * batch_size
        if log is not None and (step % 10 == 0 or step == num_batches):
            log(
                f"Train Epoch: [{epoch}/{epochs}] batch {step}/{num_batches} "
                f"Loss: {total_loss / total_num:.4f}"
            )
    if total_num == 0:
        raise ValueError("data_loader gave no batch: it needs at least one full batch")
    return total_loss / total_num


def _batchnorms(model):
    return [m for m in model.modules() if isinstance(m, (tnn.BatchNorm, tnn.SpatialBatchNorm))]


@torch.no_grad()
def refresh_batchnorm_statistics(model, loader, device) -> None:
    """Set every batchnorm's running mean and variance to their average over the batches of
    loader (yielding (x, label)): CS231n's update running = m * running + (1 - m) * batch with
    m = (k - 1) / k at batch k is the running average. The model's mode and momenta are
    restored."""
    norms = _batchnorms(model)
    momenta, was_training = [m.momentum for m in norms], model.training
    for m in norms:
        m.reset_running_stats()
    model.train()
    try:
        for k, (x, _) in enumerate(loader, start=1):
            for m in norms:
                m.momentum = (k - 1) / k
            model(x.to(device))
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)


@torch.no_grad()
def extract_features(encoder, loader, device):
    """(features (N, D), labels (N,)) of encoder (in eval mode) over loader's (x, label)."""
    was_training = encoder.training
    encoder.eval()
    feats, labels = [], []
    try:
        for x, y in loader:
            feats.append(encoder(x.to(device)).reshape(x.shape[0], -1).float().cpu())
            labels.append(torch.as_tensor(y))
    finally:
        encoder.train(was_training)
    return torch.cat(feats), torch.cat(labels).long()


def linear_probe(
    train_x,
    train_y,
    test_x,
    test_y,
    num_classes=10,
    steps=500,
    learning_rate=1e-2,
    reg=1e-4,
    seed=0,
):
    """Multinomial logistic regression on frozen features; returns {'train_accuracy',
    'test_accuracy', 'loss'}.

    train_x (N, D), test_x (M, D): features; train_y (N,), test_y (M,): labels in
    [0, num_classes). Standardized with the training features' mean and std; loss =
    softmax cross-entropy + reg * sum(w^2), minimized by ``steps`` full-batch torch_impl Adam
    steps (learning_rate) from a seeded init.
    """
    steps = require_int_param("steps", steps, 1)
    num_classes = require_int_param("num_classes", num_classes, 2)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"train_x and test_x must be (N, D) and (M, D) with the same D, got "
            f"{tuple(train_x.shape)} and {tuple(test_x.shape)}"
        )
    if train_x.shape[0] == 0:
        raise ValueError("train_x must hold at least one sample")
    train_x, test_x = train_x.double(), test_x.double()
    mean, std = train_x.mean(0), train_x.std(0, correction=0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    classifier = tnn.Affine(train_x.shape[1], num_classes, dtype=torch.float64)
    torch.random.set_rng_state(generator_state)
    optimizer = topt.Adam(classifier.parameters(), learning_rate=learning_rate)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (
            SoftmaxLossFunction.apply(classifier(train_x), train_y)
            + reg * (classifier.w * classifier.w).sum()
        )
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        train_acc = (classifier(train_x).argmax(1) == train_y).double().mean().item()
        test_acc = (classifier(test_x).argmax(1) == test_y).double().mean().item()
    return {"train_accuracy": train_acc, "test_accuracy": test_acc, "loss": loss.item()}
