"""Dynamic binarization: train a Bernoulli VAE on a fresh random binarization every epoch.

Binarized-MNIST results (Burda et al. 2015, and most papers since) resample
each training image's pixels, x_i ~ Bernoulli(intensity_i), every time the
image is used. Binarizing once and training on the same binary images for
every epoch ("static") over-fits those particular draws; Burda et al.'s code
reports about 2 nats worse test log-likelihood for it.
"""

from __future__ import annotations

import keras

from .data import binarize, check_images
from .train import train_vae


def train_vae_dynamic(vae, x_train, x_val=None, epochs=5, seed=0, verbose=2, **kwargs):
    """``train_vae`` on grey images ``x_train`` in [0, 1], binarized afresh for every epoch.

    Epoch e trains on ``binarize(x_train, seed=(seed, e))`` — a new draw per
    epoch, reproducible for a given ``seed``. ``x_val`` is used as given, so
    pass it binarized once (a fixed test set to compare epochs on). Other
    keyword arguments go to :func:`vae_course.train.train_vae` (``batch_size``,
    ``learning_rate``, ``callbacks``). Returns a dict of per-epoch metrics like
    ``History.history``: ``loss``, ``nll``, ``kl`` (and ``val_*`` with x_val).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}.")
    x_train = check_images(x_train, "x_train", vae.image_shape)
    if seed is not None:
        keras.utils.set_random_seed(seed)  # weights are already built; this seeds shuffling and z draws
    history = {}
    for epoch in range(epochs):
        xb = binarize(x_train, seed=[int(seed or 0), epoch])
        h = train_vae(vae, xb, x_val, epochs=1, seed=None, verbose=verbose, initial_epoch=epoch, **kwargs)
        for key, values in h.history.items():
            history.setdefault(key, []).extend(values)
    return history


__all__ = ["train_vae_dynamic"]
