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
every epoch. Binarized-MNIST results (Burda et al. 2016, and most papers since) resample
each training image's pixels, x_i ~ Bernoulli(intensity_i), every time the
image is used. Binarizing once and training on the same binary images for
every epoch ("static") over-fits those particular draws. (The README of Burda et
al.'s code compares a fixed binarization of other training and test images with theirs, so it
gives no number for the binarization alone.)

KL warm-up trains on nll + beta * kl (the VAE's ``kl_weight``) with beta rising from 0 to 1, then
evaluates the plain ELBO. The usual account of posterior collapse (Bowman et al. 2016): the KL
term pulls each q(z_u|x) towards the prior, and a unit that the decoder does not read gets no
gradient from the likelihood to resist; once at the prior it stays *inactive*. Chapter 8 finds
47-50 of 50 units active after 3 epochs; a 40-epoch run with Burda et al.'s schedule ends with
16 units clearly used and 34 at the prior.

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

from . import fast as fast_path
from .data import binarize, check_images
from .defaults import DEFAULTS
from .errors import check_positive_int
from .models import VAE, build_vae, linear_warmup


def train_vae(
    vae: VAE,
    x_train: np.ndarray,
    x_val: np.ndarray | None = None,
    epochs: int = DEFAULTS.epochs,
    batch_size: int = DEFAULTS.batch_size,
    learning_rate: float | None = None,
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
    not compiled yet is compiled with Keras's Adam at ``learning_rate``
    (default 1e-3). A compiled model keeps its optimizer and that optimizer's
    state; a ``learning_rate`` given is set on it (refused, with an error, when
    its rate follows a schedule), and ``None`` leaves its rate as it is.
    ``VAE.fit`` checks the images (float, in [0, 1], the model's shape).

    ``fast=True`` trains inside :func:`vae_course.fast.enabled`, which
    computes the same steps in fewer torch calls, with :func:`vae_course.fast.fit`,
    Keras's ``fit`` loop without its per-batch ``DataLoader`` (the same batches);
    ``fast=False`` runs Keras's own ``fit`` (the same weights to float32 rounding,
    slower), for comparisons.

    Returns the Keras ``History``: per-epoch ``loss``, ``nll``, ``kl`` and,
    with validation data, ``val_loss``, ``val_nll``, ``val_kl``.
    """
    epochs = check_positive_int(epochs, "epochs", DEFAULTS.epochs)
    batch_size = check_positive_int(batch_size, "batch_size", DEFAULTS.batch_size)
    if seed is not None:
        keras.utils.set_random_seed(seed)  # the shuffling
        vae.seed_generator.state.assign(
            ops.convert_to_tensor([seed, 0], dtype=vae.seed_generator.state.dtype)
        )
    if learning_rate is not None and (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, (int, float))
        or not learning_rate > 0
    ):
        raise ValueError(
            f"learning_rate must be a number > 0 (or None), got {learning_rate!r}. "
            f"Fix: e.g. learning_rate={DEFAULTS.learning_rate}."
        )
    if not vae.compiled:
        rate = DEFAULTS.learning_rate if learning_rate is None else learning_rate
        vae.compile(optimizer=keras.optimizers.Adam(rate))
    elif learning_rate is not None:
        _set_learning_rate(vae.optimizer, float(learning_rate))
    run = dict(
        epochs=initial_epoch + epochs,
        initial_epoch=initial_epoch,
        batch_size=batch_size,
        callbacks=list(callbacks or []),
        verbose=verbose,
    )
    if not fast:  # Keras's own code; VAE.fit checks the images
        validation = (x_val,) if x_val is not None else None
        return vae.fit(x_train, validation_data=validation, shuffle=True, **run)
    if isinstance(x_train, np.ndarray):  # VAE.fit's checks, for fast.fit's own loop
        x_train = check_images(x_train, "x", vae.image_shape)
    if isinstance(x_val, np.ndarray):
        x_val = check_images(x_val, "validation_data", vae.image_shape)
    with fast_path.enabled(vae):  # vae_course/fast.py: the same math, fewer torch calls
        return fast_path.fit(vae, x_train, x_val=x_val, **run)


def _set_learning_rate(optimizer, learning_rate):
    """Set a compiled model's optimizer to ``learning_rate``; an error if its rate is a schedule."""
    try:
        optimizer.learning_rate = learning_rate  # Keras refuses when the rate is a schedule
    except (TypeError, AttributeError) as exc:
        raise ValueError(
            f"learning_rate={learning_rate!r}: the model is compiled with an optimizer whose rate "
            "follows a schedule, which one number cannot replace. Fix: leave learning_rate out "
            "(None) to train on that schedule, or compile the model with the optimizer you want."
        ) from exc


# --------------------------------------------------------------------------
# Dynamic binarization (chapter 7)
# --------------------------------------------------------------------------


def train_vae_dynamic(
    vae, x_train, x_val=None, epochs=5, seed=0, verbose=2, initial_epoch=0, **kwargs
):
    """``train_vae`` on grey images ``x_train`` in [0, 1], binarized afresh for every epoch.

    Epoch e (counted from 0; from ``initial_epoch`` when going on from a
    checkpoint) trains on ``binarize(x_train, seed=(seed, e))`` — a new draw
    per epoch, reproducible for a given ``seed``. ``x_val`` is used as given, so
    pass it binarized once (a fixed test set to compare epochs on). Other
    keyword arguments go to :func:`train_vae` (``batch_size``,
    ``learning_rate``, ``callbacks``). A callback that stops training (Keras's
    ``model.stop_training``, e.g. on a NaN loss) ends the run after that epoch.
    Returns a dict of per-epoch metrics like ``History.history``: ``loss``,
    ``nll``, ``kl`` (and ``val_*`` with x_val).
    """
    epochs = check_positive_int(epochs, "epochs", 5)
    x_train = check_images(x_train, "x_train", vae.image_shape)
    if seed is not None:
        keras.utils.set_random_seed(seed)  # weights are already built; this seeds the shuffling
        vae.seed_generator.state.assign(
            ops.convert_to_tensor([seed, 0], dtype=vae.seed_generator.state.dtype)
        )
    history = {}
    for epoch in range(initial_epoch, initial_epoch + epochs):
        xb = binarize(x_train, seed=[int(seed or 0), epoch])
        h = train_vae(
            vae, xb, x_val, epochs=1, seed=None, verbose=verbose, initial_epoch=epoch, **kwargs
        )
        for key, values in h.history.items():
            history.setdefault(key, []).extend(values)
        if vae.stop_training:
            break
    return history


# --------------------------------------------------------------------------
# KL warm-up (chapter 8)
# --------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="vae_course")
class WarmupVAE(VAE):
    """A :class:`~vae_course.models.VAE` with KL warm-up: ``kl_weight=linear_warmup(warmup_steps)``.

    Training minimises nll + beta_t * kl with beta_t = min(1, t / warmup_steps)
    at optimizer step t; the VAE's own ``train_step`` does it, and ``beta()``
    gives the current weight. The logged ``loss`` stays nll + kl (the negative
    ELBO), so its numbers compare with an ordinary VAE's. Use :meth:`as_vae`
    to get the trained model as a plain VAE (to save it, or to evaluate it).
    """

    def __init__(self, encoder, decoder, warmup_steps=1000, **kwargs):
        kwargs.pop("kl_weight", None)
        super().__init__(encoder, decoder, kl_weight=linear_warmup(warmup_steps), **kwargs)
        self.warmup_steps = self.kl_weight.steps

    def get_config(self):
        config = super().get_config()
        del config["kl_weight"]
        return {**config, "warmup_steps": self.warmup_steps}

    def as_vae(self):
        """The same encoder and decoder as a plain VAE (shared weights, beta = 1), built."""
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
        raise ValueError(
            f"passes must be an integer from 1 to 8 (Burda et al. ran 8), got {passes!r}."
        )
    rates = [1e-3 * 10 ** (-i / 7) for i in range(passes)]
    if passes == 1:
        return rates[0]
    ends = [burda_epochs(i + 1) * steps_per_epoch for i in range(passes - 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay([e - 1 for e in ends], rates)


def train_burda_schedule(
    x_train, x_val, latent_dim=50, passes=8, seed=0, verbose=2, callbacks=None
):
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
    "linear_warmup",
    "BURDA_HIDDEN",
    "BURDA_ACTIVATION",
    "burda_epochs",
    "burda_schedule",
    "train_burda_schedule",
]
