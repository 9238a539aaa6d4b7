r"""The course's training path: the one chapter 6, chapter 7 and the command line use.

``train_vae`` is ``VAE.compile`` + ``VAE.fit`` with the source tutorial's
set-up (Adam, learning rate 1e-3, batch 64) and the run seeded, so that the
same seed gives the same losses on the same machine. It runs ``fit`` with
the speed-ups of :mod:`vae_course.fast` switched on: the same math in fewer
torch calls.

Also here: dynamic binarization (:func:`train_vae_dynamic`, chapter 7), KL
warm-up (:class:`WarmupVAE`, chapter 8) and Burda et al.'s optimiser schedule
(:func:`burda_schedule`, :func:`train_burda_schedule`, for the long runs of
``scripts/burda_recipe.py``).

Dynamic binarization trains a Bernoulli VAE on a fresh random binarization
every epoch. Binarized-MNIST results (Burda et al. 2015, and most papers since) resample
each training image's pixels, x_i ~ Bernoulli(intensity_i), every time the
image is used. Binarizing once and training on the same binary images for
every epoch ("static") over-fits those particular draws; Burda et al.'s code
reports about 2 nats worse test log-likelihood for it.

KL warm-up trains on nll + beta * kl with beta rising from 0 to 1, then
evaluates the plain ELBO. Early in training the KL term pulls every q(z_u|x) onto the prior faster than
the decoder learns to use z_u; a unit that reaches the prior gets no gradient
from the likelihood to leave it, and stays *inactive* (posterior collapse).
Warm-up (Bowman et al. 2016; Sønderby et al. 2016) weights the KL by

.. math:: \beta_t = \min(1, t / T)

at optimizer step t, so the decoder first learns to read z. After T steps
the loss is the negative ELBO again, and the model is an ordinary VAE.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from . import fast
from .data import binarize, check_images
from .defaults import DEFAULTS
from .models import VAE, _images, build_vae


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
) -> keras.callbacks.History:
    """Train ``vae`` on images ``x_train`` (float, [0, 1]), validating on ``x_val``.

    ``seed`` seeds the shuffling and the z draws of this run. The initial
    weights are drawn when the model is built, before this call: for a fully
    reproducible run call ``keras.utils.set_random_seed(seed)`` before building
    the model too (the command line and the chapters do). A model that is
    not compiled yet is compiled with Keras's Adam at ``learning_rate``.
    ``VAE.fit`` checks the images (float, in [0, 1], the model's shape).

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
    with fast.enabled(vae):  # the speed-ups of vae_course/fast.py: same math, fewer torch calls
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


# --------------------------------------------------------------------------
# Dynamic binarization (chapter 7)
# --------------------------------------------------------------------------


def train_vae_dynamic(vae, x_train, x_val=None, epochs=5, seed=0, verbose=2, **kwargs):
    """``train_vae`` on grey images ``x_train`` in [0, 1], binarized afresh for every epoch.

    Epoch e trains on ``binarize(x_train, seed=(seed, e))`` — a new draw per
    epoch, reproducible for a given ``seed``. ``x_val`` is used as given, so
    pass it binarized once (a fixed test set to compare epochs on). Other
    keyword arguments go to :func:`train_vae` (``batch_size``,
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


# --------------------------------------------------------------------------
# KL warm-up (chapter 8)
# --------------------------------------------------------------------------


class WarmupVAE(VAE):
    """A :class:`~vae_course.models.VAE` whose training step minimises nll + beta_t * kl, beta_t = min(1, t / warmup_steps).

    The logged ``loss`` stays nll + kl (the negative ELBO, beta = 1), so its
    numbers compare with an ordinary VAE's. Use :meth:`as_vae` to get the
    trained model as a plain VAE (to save it, or to evaluate it).
    """

    def __init__(self, encoder, decoder, warmup_steps=1000, **kwargs):
        super().__init__(encoder, decoder, **kwargs)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 1:
            raise ValueError(
                f"warmup_steps must be an integer >= 1, got {warmup_steps!r}. Fix: e.g. one epoch, 938 steps."
            )
        self.warmup_steps = warmup_steps
        self.steps_done = 0

    def kl_weight(self):
        """beta_t = min(1, t / warmup_steps) for the next step t (counted from 0)."""
        return min(1.0, self.steps_done / self.warmup_steps)

    def train_step(self, data):
        import torch

        x = _images(data)
        self.zero_grad()
        loss, nll, kl = self.compute_losses(x, training=True)
        ops.mean(nll + self.kl_weight() * kl).backward()
        self.steps_done += 1
        gradients = [v.value.grad for v in self.trainable_weights]
        with torch.no_grad():
            self.optimizer.apply(gradients, self.trainable_weights)
            self.elbo_metrics.update_state(loss, nll, kl)
        return self.elbo_metrics.result()

    def as_vae(self):
        """The same encoder and decoder as a plain VAE (shared weights), built."""
        vae = VAE(
            self.encoder,
            self.decoder,
            likelihood=self.likelihood,
            x_std=self.x_std,
            num_mc_samples=self.num_mc_samples,
            kl=self.kl,
            name="vae",
        )
        vae.build((None,) + tuple(self.image_shape))
        return vae


# --------------------------------------------------------------------------
# Burda et al. (2015)'s architecture and optimiser schedule (chapter 7, scripts/burda_recipe.py)
# --------------------------------------------------------------------------

BURDA_HIDDEN = (200, 200)
BURDA_ACTIVATION = "tanh"
BURDA_BATCH = 20
BURDA_EPSILON = 1e-4


def burda_epochs(passes):
    """Epochs in Burda et al.'s first ``passes`` passes: pass i runs 3**i epochs (8 passes: 3,280)."""
    return (3**passes - 1) // 2


def burda_schedule(passes, steps_per_epoch):
    """Burda et al.'s learning rate: 1e-3 * 10**(-i/7) for the 3**i epochs of pass i = 0 .. passes-1.

    Returns a float for one pass, else a Keras ``PiecewiseConstantDecay`` over
    optimizer steps (step t, counted from 0, is in pass i while it is below the
    end of pass i).
    """
    if isinstance(passes, bool) or not isinstance(passes, int) or not 1 <= passes <= 8:
        raise ValueError(f"passes must be an integer from 1 to 8 (Burda et al. ran 8), got {passes!r}.")
    rates = [1e-3 * 10 ** (-i / 7) for i in range(passes)]
    if passes == 1:
        return rates[0]
    ends = [burda_epochs(i + 1) * steps_per_epoch for i in range(passes - 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay([e - 1 for e in ends], rates)


def train_burda_schedule(x_train, x_val, latent_dim=50, passes=8, seed=0, verbose=2, callbacks=None):
    """Burda et al.'s VAE recipe in full: their architecture, dynamic binarization, batch 20, Adam
    (epsilon 1e-4) on :func:`burda_schedule`, for ``burda_epochs(passes)`` epochs. Returns
    ``(vae, history)``. Eight passes are 3,280 epochs: hours, not a chapter's run.
    """
    keras.utils.set_random_seed(seed)
    vae = build_vae(latent_dim, "bernoulli", hidden_units=BURDA_HIDDEN, activation=BURDA_ACTIVATION)
    steps_per_epoch = -(-len(x_train) // BURDA_BATCH)
    lr = burda_schedule(passes, steps_per_epoch)
    vae.compile(optimizer=keras.optimizers.Adam(learning_rate=lr, epsilon=BURDA_EPSILON))
    history = train_vae_dynamic(
        vae,
        x_train,
        x_val,
        epochs=burda_epochs(passes),
        seed=seed,
        verbose=verbose,
        batch_size=BURDA_BATCH,
        callbacks=callbacks,
    )
    return vae, history


__all__ = [
    "train_vae",
    "train_vae_dynamic",
    "WarmupVAE",
    "BURDA_HIDDEN",
    "BURDA_ACTIVATION",
    "burda_epochs",
    "burda_schedule",
    "train_burda_schedule",
]
