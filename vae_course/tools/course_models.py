"""The trained models that chapters 6, 7 and 8 share, each with the recipe that trains it.

Each ``get_*`` function loads the model from the course cache
(:func:`vae_course.tools.cache.load_or_train`) or trains it with its recipe and
caches it, so that a later chapter (or a second run) reuses it. Every recipe
is seeded: the same seed gives the same model on the same machine.

* :func:`get_chapter6` — the source tutorial's model: Gaussian likelihood,
  sigma = 0.5, latent_dim 2, 784-512-512 ReLU networks, 20 epochs, batch 64.
* :func:`get_burda` — Burda et al. (2015)'s one-stochastic-layer architecture
  (784-200-200-latent, tanh) with a Bernoulli likelihood and dynamic
  binarization, for ``epochs`` epochs (3 in the chapters; the paper: 3,280).
* :func:`get_sigma` — the source's model with another decoder sigma, trained
  briefly (chapter 8's sigma sweep).

Burda et al.'s full optimiser schedule (``burda_schedule``,
``train_burda_schedule``) is in :mod:`vae_course.train`.
"""

from __future__ import annotations

import functools

import keras

from ..data import binarize, load_mnist_float
from ..models import build_vae
from ..train import BURDA_ACTIVATION, BURDA_HIDDEN, WarmupVAE, train_vae, train_vae_dynamic
from .cache import cache_key, cached_model_path, load_or_train

TEST_BINARIZATION_SEED = 1


@functools.lru_cache(maxsize=1)
def mnist():
    """``(x_train, x_test)`` as float32 in [0, 1] (labels dropped), loaded once per process."""
    (x_train, _), (x_test, _) = load_mnist_float()
    return x_train, x_test


@functools.lru_cache(maxsize=1)
def binary_test_images():
    """The 10,000 test images binarized once (seed 1): the fixed test set of every Bernoulli number."""
    return binarize(mnist()[1], seed=TEST_BINARIZATION_SEED)


def get_chapter6(seed=0, verbose=0, epochs=20, cache=load_or_train):
    """Chapter 6's model (see module docstring); returns ``(vae, loaded_from_cache)``.

    ``cache(name, train)`` loads or trains it (:func:`vae_course.tools.cache.load_or_train`).
    """

    def train():
        x_train, x_test = mnist()
        keras.utils.set_random_seed(seed)  # the initial weights, as chapter 6
        vae = build_vae(latent_dim=2, likelihood="gaussian", x_std=0.5)
        train_vae(vae, x_train, x_test, epochs=epochs, batch_size=64, seed=seed, verbose=verbose)
        return vae

    tag = "" if epochs == 20 else f"_{epochs}ep"
    return cache(f"mnist_gaussian_latent2{tag}_seed{seed}", train)


def chapter6_model_path(seed=0):
    """Where :func:`get_chapter6` caches the model of ``seed``: chapter 6 saves the model it
    trains, with this same recipe, there, for chapters 7 and 8."""
    return get_chapter6(seed, cache=lambda name, train: cached_model_path(cache_key(name, train)))


def get_burda(latent_dim, epochs=3, seed=0, warmup_epochs=0, verbose=0):
    """Bernoulli VAE, Burda's 200-200 tanh networks, dynamic binarization; ``(vae, loaded)``.

    ``warmup_epochs`` > 0 trains with KL warm-up over that many epochs
    (:class:`vae_course.train.WarmupVAE`); the cached model is a plain VAE.
    """

    def train():
        x_train, _ = mnist()
        keras.utils.set_random_seed(seed)
        vae = build_vae(
            latent_dim, "bernoulli", hidden_units=BURDA_HIDDEN, activation=BURDA_ACTIVATION
        )
        if warmup_epochs:
            steps_per_epoch = -(-len(x_train) // 64)
            vae = WarmupVAE(
                vae.encoder,
                vae.decoder,
                warmup_steps=warmup_epochs * steps_per_epoch,
                likelihood="bernoulli",
            )
        train_vae_dynamic(
            vae,
            x_train,
            binary_test_images(),
            epochs=epochs,
            seed=seed,
            verbose=verbose,
            batch_size=64,
        )
        return vae.as_vae() if warmup_epochs else vae

    tag = f"_warmup{warmup_epochs}" if warmup_epochs else ""
    return load_or_train(f"mnist_burda_latent{latent_dim}_{epochs}ep{tag}_seed{seed}", train)


def get_sigma(x_std, epochs=2, batch_size=128, seed=0, verbose=0):
    """The source's Gaussian model (latent_dim 2) with decoder sigma ``x_std``.

    Returns ``(vae, loaded)``.
    """

    def train():
        x_train, x_test = mnist()
        keras.utils.set_random_seed(seed)
        vae = build_vae(latent_dim=2, likelihood="gaussian", x_std=float(x_std))
        train_vae(
            vae, x_train, x_test, epochs=epochs, batch_size=batch_size, seed=seed, verbose=verbose
        )
        return vae

    return load_or_train(
        f"mnist_gaussian_latent2_sigma{x_std:g}_{epochs}ep_b{batch_size}_seed{seed}", train
    )


__all__ = [
    "get_chapter6",
    "chapter6_model_path",
    "get_burda",
    "get_sigma",
    "mnist",
    "binary_test_images",
]
