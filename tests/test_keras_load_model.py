"""A saved VAE loads the way a Keras user loads a model: ``import vae_course``, then Keras's own
``keras.saving.load_model``, with Keras imported before or after the package. And importing the
package stays light: no Keras, no torch until something imports Keras.

Each case runs in a fresh interpreter, since what is imported, and in which order, is the point.
"""

import os
import subprocess
import sys

import pytest

from vae_course.models import build_vae

ENV = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}


def python(code, **env):
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**ENV, **env}
    )
    return run.returncode, run.stdout.strip(), run.stderr


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "model.keras"
    vae = build_vae(latent_dim=3, image_shape=(4, 4), hidden_units=(8,), likelihood="bernoulli")
    vae.save(path)
    return path


LOAD = "m = keras.saving.load_model({path!r}); print(type(m).__name__, m.latent_dim, m.likelihood)"


@pytest.mark.parametrize(
    "imports, env",
    [("import vae_course, keras", {}), ("import keras, vae_course", {"KERAS_BACKEND": "torch"})],
    ids=["package-first", "keras-first"],
)
def test_keras_load_model_after_import_vae_course(saved, imports, env):
    code, out, err = python(f"{imports}\n" + LOAD.format(path=str(saved)), **env)
    assert code == 0, err
    assert out == "VAE 3 bernoulli"


def test_without_the_package_keras_cannot_find_the_class(saved):
    """The reference: the registration above is what makes the difference."""
    code, _, err = python("import keras\n" + LOAD.format(path=str(saved)), KERAS_BACKEND="torch")
    assert code != 0 and "VAE" in err


def test_importing_the_package_imports_neither_keras_nor_torch():
    code, out, err = python(
        "import sys, vae_course; print('keras' in sys.modules, 'torch' in sys.modules)"
    )
    assert code == 0 and out == "False False", err
