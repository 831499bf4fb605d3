"""``run_a_gan``: the training loop of CS231n's ``gan_pytorch.py``, writing its sample grids as PNG
files (one per epoch, plus one per ``show_every`` iterations) instead of showing them.

Per iteration (a full batch; the last, smaller one is skipped, as the course does):
  1. D step: logits_real = D(2 * (x - 0.5)) on real images x in [0, 1], logits_fake = D(G(z))
     with G's output detached; minimize discriminator_loss(logits_real, logits_fake).
  2. G step: fresh noise z, minimize generator_loss(D(G(z))).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from cifar_training.datasets import atomic_write_bytes
from gan_training.models import IMAGE_SIZE, deprocess_img, sample_noise
from twin_checks import require_int_param

__all__ = ["run_a_gan", "save_image_grid"]

SAMPLES_SHOWN = 16  # the course shows the first 16 fake images, a 4 x 4 grid


def save_image_grid(images, path) -> Path:
    """Write images (M, 784) or (M, 1, 28, 28) in [-1, 1] as one PNG grid, ceil(sqrt(M)) per row
    (the course's ``show_images`` layout), atomically (temporary file, then os.replace)."""
    from torchvision.utils import make_grid, save_image

    images = images.detach().float().cpu().reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
    if images.shape[0] == 0:
        raise ValueError("images must hold at least one image, got 0")
    per_row = math.ceil(math.sqrt(images.shape[0]))
    grid = make_grid(deprocess_img(images).clamp(0, 1), nrow=per_row, padding=2, pad_value=1.0)
    buffer = io.BytesIO()
    save_image(grid, buffer, format="png")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def run_a_gan(
    D,
    G,
    D_solver,
    G_solver,
    discriminator_loss,
    generator_loss,
    loader_train,
    show_every=250,
    batch_size=128,
    noise_size=96,
    num_epochs=10,
    *,
    out_dir=None,
    device=None,
    log=print,
    history=None,
    start_epoch=0,
    start_iteration=0,
    on_epoch_end=None,
):
    """Train G and D adversarially (the course's signature; the keywords after ``*`` are added).

    D, G: the models (see ``gan_training.models``); D_solver, G_solver: their optimizers;
    discriminator_loss(logits_real, logits_fake), generator_loss(logits_fake): the losses;
    loader_train: yields (x, label) with x (batch_size, 1, 28, 28) in [0, 1];
    show_every: every show_every iterations, log the losses and keep 16 samples;
    noise_size: the noise dimension G takes; num_epochs: passes over loader_train.
    out_dir: where the PNG grids go (``iter_XXXXXX.png`` every show_every iterations,
    ``epoch_XXX.png`` after each epoch, from that iteration's fake images); None writes nothing.
    device: where the batches and the noise go (default: the device of G's first parameter).
    log: called with one progress line (None: silent).
    history: a list that receives {'iteration', 'epoch', 'd_loss', 'g_loss'} per iteration.
    start_epoch, start_iteration: continue a run from there (epochs start_epoch .. num_epochs - 1,
    iterations counted from start_iteration), the models and optimizers already restored.
    on_epoch_end: called as on_epoch_end(epochs_done, iterations_done) after each epoch's
    samples are written (the command line saves its resumable state there).

    Returns the kept samples: a list of (16, 784) NumPy arrays, as the course's loop does.
    """
    show_every = require_int_param("show_every", show_every, 1)
    batch_size = require_int_param("batch_size", batch_size, 1)
    noise_size = require_int_param("noise_size", noise_size, 1)
    num_epochs = require_int_param("num_epochs", num_epochs, 0)
    start_epoch = require_int_param("start_epoch", start_epoch, 0)
    start_iteration = require_int_param("start_iteration", start_iteration, 0)
    if device is None:
        device = next(G.parameters()).device
    out_dir = None if out_dir is None else Path(out_dir)
    say = log or (lambda _line: None)
    images, iter_count = [], start_iteration
    for epoch in range(start_epoch, num_epochs):
        fake_images = None
        for x, _ in loader_train:
            if len(x) != batch_size:
                continue
            x = x.to(device)
            D_solver.zero_grad()
            logits_real = D(2 * (x - 0.5))
            z = sample_noise(batch_size, noise_size, device=device, dtype=x.dtype)
            fake_images = G(z).detach()
            logits_fake = D(fake_images.view(batch_size, 1, IMAGE_SIZE, IMAGE_SIZE))
            d_total_error = discriminator_loss(logits_real, logits_fake)
            d_total_error.backward()
            D_solver.step()

            G_solver.zero_grad()
            z = sample_noise(batch_size, noise_size, device=device, dtype=x.dtype)
            fake_images = G(z)
            gen_logits_fake = D(fake_images.view(batch_size, 1, IMAGE_SIZE, IMAGE_SIZE))
            g_error = generator_loss(gen_logits_fake)
            g_error.backward()
            G_solver.step()

            d_value, g_value = d_total_error.item(), g_error.item()
            if history is not None:
                history.append(
                    {"iteration": iter_count, "epoch": epoch, "d_loss": d_value, "g_loss": g_value}
                )
            if iter_count % show_every == 0:
                say(f"Iter: {iter_count}, D: {d_value:.4}, G:{g_value:.4}")
                shown = fake_images.detach()[:SAMPLES_SHOWN]
                images.append(shown.cpu().numpy())
                if out_dir is not None:
                    save_image_grid(shown, out_dir / f"iter_{iter_count:06d}.png")
            iter_count += 1
        if fake_images is None:
            raise ValueError(
                f"loader_train gave no full batch of batch_size={batch_size} in epoch {epoch}: "
                "it needs at least batch_size images"
            )
        if out_dir is not None:
            path = save_image_grid(
                fake_images.detach()[:SAMPLES_SHOWN], out_dir / f"epoch_{epoch + 1:03d}.png"
            )
            say(f"epoch {epoch + 1}/{num_epochs}: samples written to {path}")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, iter_count)
    return images
