"""The chapters' model cache: train a model once, load it on every later run.

A cached model's file name carries a hash of its recipe (:func:`recipe_hash`), so that a
recipe that changes (another batch size, another architecture constant) trains a new model
instead of loading the old one.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

from ..data import cache_dir
from ..errors import CheckpointError
from ..models import VAE
from .checkpoints import load_vae, save_vae

# What a recipe may name without changing the model it trains.
NOT_RECIPE = frozenset({"verbose"})
_PLAIN = (bool, int, float, str, bytes, type(None))


def cached_model_path(name: str) -> Path:
    """``<course cache>/models/<name>.keras``, where chapters keep trained models (folder created)."""
    folder = cache_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.keras"


def _plain(value) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return isinstance(value, _PLAIN)


def recipe_hash(train_fn: Callable[[], VAE]) -> str:
    """12 hex digits of SHA-256 over what ``train_fn`` trains with.

    That is its code, as a syntax tree (so that formatting and comments do not
    count), the values it closes over (``seed``, ``epochs``, ...) and the values of
    the module constants it names (``BURDA_HIDDEN``, ...), all but
    :data:`NOT_RECIPE`. Functions it calls (``build_vae``, ``train_vae``) count by
    name only: after changing the package's model or training code, clear the
    cache (``<course cache>/models``).
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(train_fn)))
    parts = [ast.dump(tree, annotate_fields=False)]
    names = inspect.getclosurevars(train_fn)
    for name, value in sorted({**names.globals, **names.nonlocals}.items()):
        if name not in NOT_RECIPE and _plain(value):
            parts.append(f"{name}={value!r}")
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:12]


def cache_key(name: str, train_fn: Callable[[], VAE]) -> str:
    """``<name>_r<recipe hash>``: the file name (without ``.keras``) the model of this recipe is cached under."""
    return f"{name}_r{recipe_hash(train_fn)}"


def load_or_train(name: str, train_fn: Callable[[], VAE]) -> tuple[VAE, bool]:
    """Load the cached model of ``name`` and this recipe, or call ``train_fn()`` to train it and cache it.

    Returns ``(vae, loaded)`` with ``loaded`` True when it came from the cache.
    The file is :func:`cache_key` ``(name, train_fn)``: a changed recipe misses
    the cache and trains, and its new model replaces the files of ``name``'s
    earlier recipes. A cache file that does not load (truncated, older format)
    is retrained and replaced. The file is written to a temporary name and
    renamed, so an interrupted save never leaves a half-written model.
    """
    path = cached_model_path(cache_key(name, train_fn))
    if path.exists():
        try:
            return load_vae(path), True
        except CheckpointError:  # truncated, corrupt or not a VAE: train it again
            pass
    vae = train_fn()
    save_vae(vae, path)
    stale = re.compile(re.escape(name) + r"_r[0-9a-f]{12}\.keras")
    for old in path.parent.iterdir():
        if old != path and stale.fullmatch(old.name):
            old.unlink()
    return vae, False


__all__ = ["cached_model_path", "recipe_hash", "cache_key", "load_or_train", "NOT_RECIPE"]
