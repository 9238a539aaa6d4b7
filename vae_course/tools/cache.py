"""The chapters' model cache: train a model once, load it on every later run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..data import cache_dir
from ..errors import CheckpointError
from ..models import VAE
from .checkpoints import load_vae, save_vae


def cached_model_path(name: str) -> Path:
    """``<course cache>/models/<name>.keras``, where chapters keep trained models (folder created)."""
    folder = cache_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.keras"


def load_or_train(name: str, train_fn: Callable[[], VAE]) -> tuple[VAE, bool]:
    """Load the cached model ``name``, or call ``train_fn()`` to train it and cache it.

    Returns ``(vae, loaded)`` with ``loaded`` True when it came from the cache.
    A cache file that does not load (truncated, older format) is retrained
    and replaced. The file is written to a temporary name and renamed, so an
    interrupted save never leaves a half-written model under ``name``.
    """
    path = cached_model_path(name)
    if path.exists():
        try:
            return load_vae(path), True
        except CheckpointError:  # truncated, corrupt or not a VAE: train it again
            pass
    vae = train_fn()
    save_vae(vae, path)
    return vae, False


__all__ = ["cached_model_path", "load_or_train"]
