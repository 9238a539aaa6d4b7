"""The course's figures: training curves, the latent space, samples and reconstructions.

Every function builds a matplotlib figure with pyplot and returns it; none
calls ``plt.show()`` (a chapter ends its cell with ``plt.show()``, the
command line saves it with ``vae_course.tools.atomic.save_figure`` and closes it). Images are
(batch, height, width) arrays or tensors with pixel values in [0, 1], drawn
in grey with 0 as black.

* :func:`plot_history` — loss, NLL and KL per epoch, training and validation.
* :func:`plot_latent` — the encoder means of a set of images, coloured by digit.
* :func:`latent_grid` / :func:`plot_manifold` — the decoder's output over a
  grid of latent points, as in Kingma & Welling (2013), figure 4.
* :func:`plot_images`, :func:`plot_reconstructions`, :func:`plot_interpolation`.
"""

from __future__ import annotations

import math

import keras
import matplotlib.pyplot as plt
import numpy as np
import torch

from .data import DataError
from .errors import check_positive_int

_PANELS = (
    ("loss", "loss = −ELBO"),
    ("nll", "reconstruction: −log p(x|z)"),
    ("kl", "KL(q(z|x) ‖ p(z))"),
)


def _numpy(x):
    """An array, tensor or list -> float numpy array (detached, on the CPU)."""
    if torch.is_tensor(x):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(keras.ops.convert_to_numpy(x))
    except Exception:  # plain Python lists and the like
        return np.asarray(x)


def _images(images, name="images"):
    x = _numpy(images)
    if (
        x.ndim == 2 and int(math.isqrt(x.shape[1])) ** 2 == x.shape[1]
    ):  # (batch, 784) -> (batch, 28, 28)
        side = math.isqrt(x.shape[1])
        x = x.reshape(-1, side, side)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise DataError(f"{name}: shape {x.shape}, expected (batch, height, width) images.")
    return x


def plot_history(history):
    """Loss, NLL and KL per epoch in three panels, training and (if present) validation.

    ``history``: a dict of lists as ``keras.callbacks.History.history`` holds
    (keys ``loss, nll, kl`` and ``val_loss, val_nll, val_kl``), a ``History``
    itself, or :func:`vae_course.tools.checkpoints.history_dict` of a history.csv
    (its ``epoch`` column, counted from 1 as on the console, is the x axis).
    Without an ``epoch`` key the epochs are counted from 1. Returns the Figure.
    """
    history = getattr(history, "history", history)
    if not isinstance(history, dict) or "loss" not in history:
        raise DataError(
            "plot_history: expected a dict of per-epoch lists with at least a 'loss' key (History.history)."
        )
    n = len(history["loss"])
    epochs = (
        np.asarray(history["epoch"], dtype=float) if "epoch" in history else np.arange(1, n + 1)
    )
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained")
    for ax, (key, title) in zip(axes, _PANELS):
        if key in history:
            ax.plot(epochs, history[key], marker="o", ms=3, label="training")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], marker="o", ms=3, label="validation")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per image")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return fig


def plot_latent(z_mean, labels):
    """Scatter of the encoder means ``z_mean`` (n, d >= 2; the first two axes), coloured by digit.

    ``labels``: (n,) integers 0..9. A colour bar names the digits. Returns the Figure.
    """
    z = _numpy(z_mean)
    labels = _numpy(labels).astype(int).ravel()
    if z.ndim != 2 or z.shape[1] < 2 or len(z) != len(labels):
        raise DataError(
            f"plot_latent: z_mean of shape {z.shape} and {len(labels)} labels; expected (n, d >= 2) and n labels."
        )
    fig, ax = plt.subplots(figsize=(6.4, 5.4), layout="constrained")
    points = ax.scatter(
        z[:, 0], z[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=3, alpha=0.7, linewidths=0
    )
    bar = fig.colorbar(points, ax=ax, ticks=range(10))
    bar.set_label("digit")
    ax.set_xlabel("$z_1$ (mean of q(z|x))")
    ax.set_ylabel("$z_2$ (mean of q(z|x))")
    ax.set_title(f"Latent means of {len(z)} images")
    return fig


def latent_grid(n, latent_dim=2):
    """An n x n grid of latent points, uniform in probability under the N(0, 1) prior.

    The unit square's cell centres u_i = (i + 1/2) / n are mapped through the
    inverse normal CDF, ``torch.special.ndtri``, as in Kingma & Welling's
    manifold figure. Returns a float32 array of shape (n * n, latent_dim),
    row-major as the images are laid out: row r (top to bottom) has z_2
    falling, column c has z_1 rising; dimensions beyond the second are 0.
    """
    n = check_positive_int(n, "n", 15, error=DataError)
    latent_dim = check_positive_int(latent_dim, "latent_dim", 2, minimum=2, error=DataError)
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    values = torch.special.ndtri(u)
    z2, z1 = torch.meshgrid(values.flip(0), values, indexing="ij")
    grid = torch.zeros((n * n, int(latent_dim)), dtype=torch.float64)
    grid[:, 0], grid[:, 1] = z1.reshape(-1), z2.reshape(-1)
    return grid.numpy().astype(np.float32)


def _decode(vae, z):
    with torch.no_grad():
        return _images(vae.decode(z), "decoded images")


def plot_manifold(vae, n=20):
    """The decoder's mean image at each point of ``latent_grid(n, vae.latent_dim)``, tiled.

    With latent_dim > 2, z_1 and z_2 vary and the other dimensions stay 0.
    Axis ticks give the z values. Returns the Figure.
    """
    z = latent_grid(n, vae.latent_dim)
    images = _decode(vae, z)
    h, w = images.shape[1:]
    canvas = images.reshape(n, n, h, w).transpose(0, 2, 1, 3).reshape(n * h, n * w)
    fig, ax = plt.subplots(figsize=(7, 7), layout="constrained")
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1)
    values = z[:n, 0]
    step = max(1, n // 10)
    idx = np.arange(0, n, step)
    ax.set_xticks(idx * w + w / 2 - 0.5, [f"{v:.2f}" for v in values[idx]], rotation=90)
    ax.set_yticks(idx * h + h / 2 - 0.5, [f"{v:.2f}" for v in values[::-1][idx]])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    rest = "; $z_3, \\dots$ = 0" if vae.latent_dim > 2 else ""
    ax.set_title(f"Decoder means over a {n} x {n} grid of prior quantiles{rest}")
    return fig


def plot_images(images, n_cols=8, titles=None):
    """Images (batch, H, W) in a grid of ``n_cols`` columns, with optional per-image titles."""
    x = _images(images)
    n_cols = check_positive_int(n_cols, "n_cols", 8, error=DataError)
    if titles is not None and len(titles) != len(x):
        raise DataError(
            f"plot_images: {len(titles)} titles for {len(x)} images; give one per image."
        )
    n_cols = min(int(n_cols), max(1, len(x)))
    n_rows = max(1, math.ceil(len(x) / n_cols))
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(1.2 * n_cols, 1.2 * n_rows + (0.25 * n_rows if titles else 0)),
        squeeze=False,
        layout="constrained",
    )
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < len(x):
            ax.imshow(x[i], cmap="gray", vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
    return fig


def _strip(ax, label=None):
    ax.set_xticks([])
    ax.set_yticks([])
    if label:
        ax.set_ylabel(label)


def plot_reconstructions(originals, reconstructions):
    """Two rows: the original images on top, their reconstructions below."""
    a, b = _images(originals, "originals"), _images(reconstructions, "reconstructions")
    if a.shape != b.shape:
        raise DataError(
            f"plot_reconstructions: originals {a.shape} and reconstructions {b.shape} differ in shape."
        )
    n = len(a)
    fig, axes = plt.subplots(
        2, n, figsize=(1.2 * n + 0.8, 2.8), squeeze=False, layout="constrained"
    )
    for i in range(n):
        for row, (imgs, label) in enumerate(((a, "original"), (b, "reconstruction"))):
            axes[row, i].imshow(imgs[i], cmap="gray", vmin=0, vmax=1)
            _strip(axes[row, i], label if i == 0 else None)
    return fig


def plot_interpolation(vae, x_a, x_b, steps=10):
    """Decode points on the line between the encoder means of ``x_a`` and ``x_b``.

    ``x_a``, ``x_b``: one image each, (H, W) or (1, H, W). The row shows x_a,
    then ``steps`` decodings of (1 - t) z_a + t z_b for t from 0 to 1, then x_b.
    """
    steps = check_positive_int(steps, "steps", 8, minimum=2, error=DataError)
    a = _numpy(x_a).reshape((1,) + tuple(vae.image_shape)).astype("float32")
    b = _numpy(x_b).reshape((1,) + tuple(vae.image_shape)).astype("float32")
    with torch.no_grad():
        z_a = _numpy(vae.encode(a)[0])
        z_b = _numpy(vae.encode(b)[0])
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    decoded = _decode(vae, (1 - t) * z_a + t * z_b)
    panels = [a[0]] + list(decoded) + [b[0]]
    titles = ["$x_a$"] + [f"t={v:.2f}" for v in t[:, 0]] + ["$x_b$"]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(1.1 * len(panels), 1.7), squeeze=False, layout="constrained"
    )
    for ax, img, title in zip(axes[0], panels, titles):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        _strip(ax)
    fig.suptitle("Decoded interpolation in latent space between the encoder means")
    return fig


__all__ = [
    "plot_history",
    "plot_latent",
    "latent_grid",
    "plot_manifold",
    "plot_images",
    "plot_reconstructions",
    "plot_interpolation",
]
