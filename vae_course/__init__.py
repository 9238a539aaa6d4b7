"""Companion package of the VAE course.

Every formula the book teaches is defined once here; the chapters import it.
Importing the package selects the torch backend for Keras unless the
``KERAS_BACKEND`` environment variable already names one.
"""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

__version__ = "0.1.0"

# Registers the package's Keras classes (VAE, ...) so that a plain
# keras.saving.load_model("model.keras") finds them after `import vae_course`.
from . import models, optimizers  # noqa: E402,F401
