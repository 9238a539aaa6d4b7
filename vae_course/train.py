"""The course's training path: the one chapter 6, chapter 7 and the command line use.

``train_vae`` is ``VAE.compile`` + ``VAE.fit`` with the source tutorial's
set-up (Adam, learning rate 1e-3, batch 64), the data checked first and the
run seeded, so that the same seed gives the same losses on the same machine.
"""
from __future__ import annotations

import keras

from .data import check_images
from .optimizers import Adam


def train_vae(
    vae,
    x_train,
    x_val=None,
    epochs=20,
    batch_size=64,
    learning_rate=1e-3,
    seed=0,
    callbacks=None,
    verbose=2,
    initial_epoch=0,
):
    """Train ``vae`` on images ``x_train`` (float, [0, 1]), validating on ``x_val``.

    ``seed`` seeds the shuffling and the z draws of this run. The initial
    weights are drawn when the model is built, before this call: for a fully
    reproducible run call ``keras.utils.set_random_seed(seed)`` before building
    the model too (the command line and the chapters do).

    Returns the Keras ``History``: per-epoch ``loss``, ``nll``, ``kl`` and,
    with validation data, ``val_loss``, ``val_nll``, ``val_kl``.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    x_train = check_images(x_train, "x_train", vae.image_shape)
    if x_val is not None:
        x_val = check_images(x_val, "x_val", vae.image_shape)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    if getattr(vae, "optimizer", None) is None or not vae.compiled:
        vae.compile(optimizer=Adam(learning_rate))
    return vae.fit(
        x_train,
        epochs=initial_epoch + epochs,
        initial_epoch=initial_epoch,
        batch_size=batch_size,
        validation_data=(x_val,) if x_val is not None else None,
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
    )




def cached_model_path(name):
    """``<course cache>/models/<name>.keras``, where chapters keep trained models (folder created)."""
    from .data import cache_dir

    folder = cache_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.keras"


def load_or_train(name, train_fn):
    """Load the cached model ``name``, or call ``train_fn()`` to train it and cache it.

    Returns ``(vae, loaded)`` with ``loaded`` True when it came from the cache.
    A cache file that does not load (truncated, older format) is retrained
    and replaced. The file is written to a temporary name and renamed, so an
    interrupted save never leaves a half-written model under ``name``.
    """
    from .checkpoints import load_vae, save_vae
    from .data import DataError

    path = cached_model_path(name)
    if path.exists():
        try:
            return load_vae(path), True
        except DataError:  # truncated, corrupt or not a VAE: rebuild it
            pass
    vae = train_fn()
    save_vae(vae, path)
    return vae, False


__all__ = ["train_vae", "cached_model_path", "load_or_train"]
