"""Companion package of the VAE course.

Every formula the book teaches is defined once here; the chapters import it.
The package runs on Keras 3's torch backend: importing it sets
``KERAS_BACKEND=torch`` unless the variable is set already, and refuses, with
one message that says what to do, when Keras already runs another backend.

Importing the package itself is light (no torch, no Keras), so that
``python -m vae_course --help`` answers at once. Yet after ``import vae_course``,
``keras.saving.load_model("runs/mnist/model.keras")`` finds the course's classes
(``VAE`` and its layers), which ``vae_course.models`` registers with Keras: the
package imports that module as soon as Keras is imported, now if it already is,
else right after Keras's own import finishes.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.util
import os
import sys

from .errors import BackendError

__version__ = "0.1.0"

_FIX = (
    "Fix: set the environment variable KERAS_BACKEND=torch before anything imports keras "
    "(in a notebook: restart the kernel, then run `import os; os.environ['KERAS_BACKEND'] = 'torch'` "
    "first, or `import vae_course` before keras)."
)


def _keras_backend_in_use() -> str | None:
    """The backend of a Keras that is already imported (even half-way), else None."""
    config = sys.modules.get("keras.src.backend.config")
    if config is not None:
        try:
            return config.backend()
        except Exception:  # a half-imported Keras
            return "unknown"
    if any(name == "keras" or name.startswith("keras.") for name in sys.modules):
        return "unknown"
    return None


def check_backend() -> None:
    """Raise :class:`BackendError` unless Keras runs (or will run) on the torch backend."""
    chosen = os.environ.setdefault("KERAS_BACKEND", "torch")
    if chosen != "torch":
        raise BackendError(
            f"vae_course runs on Keras's torch backend, but KERAS_BACKEND is {chosen!r}. {_FIX}"
        )
    backend = _keras_backend_in_use()
    if backend == "unknown":
        raise BackendError(
            "vae_course runs on Keras's torch backend, but an earlier `import keras` ran (or failed) with another "
            "backend, e.g. the one ~/.keras/keras.json names, and Keras cannot switch backends once imported. "
            + _FIX
        )
    if backend not in (None, "torch"):
        raise BackendError(
            f"vae_course runs on Keras's torch backend, but keras was imported before it with the {backend!r} "
            f"backend, and Keras cannot switch backends once imported. {_FIX}"
        )


def _register_keras_classes() -> None:
    """Import ``vae_course.models`` and ``decoder_scale``, whose classes register themselves with Keras's serialization."""
    # Never break someone's `import keras`: an error here comes back when vae_course.models is used.
    with contextlib.suppress(Exception):
        importlib.import_module(f"{__name__}.models")
        importlib.import_module(f"{__name__}.decoder_scale")
        importlib.import_module(f"{__name__}.iwae_training")


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; when ``keras`` is first imported, registers the course's classes after it."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)  # once; and so that the search below finds Keras's real spec
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_keras = spec.loader.exec_module

        def exec_module(module):
            exec_keras(module)
            _register_keras_classes()

        spec.loader.exec_module = exec_module
        return spec


check_backend()
if "keras" in sys.modules:
    _register_keras_classes()
elif not any(isinstance(finder, _AfterKerasImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _AfterKerasImport())
