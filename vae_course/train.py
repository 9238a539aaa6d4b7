"""The course's training path: the one chapter 6, chapter 7 and the command line use.

``train_vae`` is ``VAE.compile`` + ``VAE.fit`` with the source tutorial's
set-up (Adam, learning rate 1e-3, batch 64) and the run seeded, so that the
same seed gives the same losses on the same machine. It runs ``fit`` with
the speed-ups of :mod:`vae_course.fast` switched on: the same math in fewer
torch calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import keras
import numpy as np

from . import fast as fast_path
from .defaults import DEFAULTS
from .models import VAE


def train_vae(
    vae: VAE,
    x_train: np.ndarray,
    x_val: np.ndarray | None = None,
    epochs: int = DEFAULTS.epochs,
    batch_size: int = DEFAULTS.batch_size,
    learning_rate: float = DEFAULTS.learning_rate,
    seed: int | None = DEFAULTS.seed,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    verbose: int = 2,
    initial_epoch: int = 0,
    fast: bool = True,
) -> keras.callbacks.History:
    """Train ``vae`` on images ``x_train`` (float, [0, 1]), validating on ``x_val``.

    ``seed`` seeds the shuffling and the z draws of this run. The initial
    weights are drawn when the model is built, before this call: for a fully
    reproducible run call ``keras.utils.set_random_seed(seed)`` before building
    the model too (the command line and the chapters do). A model that is
    not compiled yet is compiled with Keras's Adam at ``learning_rate``.
    ``VAE.fit`` checks the images (float, in [0, 1], the model's shape).

    ``fast=True`` runs ``fit`` inside :func:`vae_course.fast.enabled`, which
    computes the same steps in fewer torch calls; ``fast=False`` runs Keras's
    own code (the same weights to float32 rounding, slower), for comparisons.

    Returns the Keras ``History``: per-epoch ``loss``, ``nll``, ``kl`` and,
    with validation data, ``val_loss``, ``val_nll``, ``val_kl``.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}. Fix: e.g. epochs={DEFAULTS.epochs}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"batch_size must be an integer >= 1, got {batch_size!r}. Fix: e.g. batch_size={DEFAULTS.batch_size}."
        )
    if seed is not None:
        keras.utils.set_random_seed(seed)
    if not vae.compiled:
        vae.compile(optimizer=keras.optimizers.Adam(learning_rate))
    with (
        fast_path.enabled(vae) if fast else contextlib.nullcontext()
    ):  # the speed-ups of vae_course/fast.py: same math, fewer torch calls
        return vae.fit(
            x_train,
            epochs=initial_epoch + epochs,
            initial_epoch=initial_epoch,
            batch_size=batch_size,
            validation_data=(x_val,) if x_val is not None else None,
            shuffle=True,
            callbacks=list(callbacks or []),
            verbose=verbose,
        )


__all__ = ["train_vae"]
