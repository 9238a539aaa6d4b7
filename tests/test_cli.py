"""The command line, ``python -m vae_course``: train, sample, evaluate, resume, and every bad input.

Runs go through ``main([...])`` in this process (one real ``subprocess`` run
checks the module entry point); training runs are tiny (``--limit 512
--val-limit 500 --epochs 1``) and shared between tests where they can be.
"""

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import vae_course
import vae_course.plots
import vae_course.train
from vae_course.data import ENV_VAR, IDX_FILES, default_data_dir, load_mnist, scale_images
from vae_course.models import build_vae
from vae_course.tools import checkpoints as ck
from vae_course.tools import cli

DATA = Path(os.environ.get(ENV_VAR) or default_data_dir())
QUICK = ["--limit", "512", "--val-limit", "500", "--epochs", "1", "--data-dir", str(DATA)]
PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.skipif(
    not all((DATA / f).is_file() or (DATA / (f + ".gz")).is_file() for f in IDX_FILES.values()),
    reason=f"MNIST not found in {DATA}; run `python -m vae_course fetch-data` or set {ENV_VAR}",
)


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def run(argv, stdout=None):
    """main(argv) -> (exit status, stdout, stderr)."""
    out, err = stdout or io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_clean_error(code, err, *needles):
    """Exit 2, one `error:` message naming the input, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    assert "error: " in err
    for needle in needles:
        assert needle in err, (needle, err)


def leftovers(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.startswith(".") or ".tmp" in p.name]


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    """One quick training run; the in-memory VAE is kept to compare with the checkpoint."""
    out = tmp_path_factory.mktemp("run_a")
    trained, curves = [], []
    real, real_plot = vae_course.train.train_vae, vae_course.plots.plot_history

    def spy(vae, *args, **kwargs):
        trained.append((vae, kwargs["verbose"]))
        return real(vae, *args, **kwargs)

    def plot_spy(history):  # the epochs on loss_curves.png's x axis
        fig = real_plot(history)
        curves.append(list(fig.axes[0].get_lines()[0].get_xdata()))
        return fig

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vae_course.train, "train_vae", spy)
        mp.setattr(vae_course.plots, "plot_history", plot_spy)
        code, stdout, stderr = run(["train", "--out", out, "--seed", "3", *QUICK])
    assert code == 0, stderr
    return {
        "out": out,
        "vae": trained[0][0],
        "verbose": trained[0][1],
        "stdout": stdout,
        "curve_epochs": curves,
    }


# ------------------------------------------------------------------------ train
def test_train_writes_checkpoint_history_and_plots(run_a):
    out = run_a["out"]
    rows = (out / "history.csv").read_text().splitlines()
    assert rows[0] == "epoch,loss,nll,kl,val_loss,val_nll,val_kl"
    assert len(rows) == 2 and rows[1].startswith("1,")  # epochs numbered as on the console
    for name in ("loss_curves.png", "prior_samples.png", "latent_scatter.png", "manifold.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    assert run_a["curve_epochs"] == [
        [1]
    ]  # loss_curves.png plots the one epoch at 1, as history.csv
    assert leftovers(out) == []
    state = ck.read_state(out / "model.keras")
    assert (
        state["epochs_done"] == 1
        and state["settings"]["seed"] == 3
        and state["settings"]["limit"] == 512
    )
    # not a terminal: verbose=2 (one line per epoch, no progress bar), plus our timing line
    stdout = run_a["stdout"]
    assert run_a["verbose"] == 2 and "━" not in stdout
    assert re.search(r"8/8 - \d+s", stdout)
    assert re.search(r"epoch 1/1: \d+\.\d\d s  loss \d+\.\d{4}  nll .* val_kl \d+\.\d{4}", stdout)
    assert "training on 512 images, validating on 500" in stdout


def test_model_keras_reloads_with_identical_encoder_and_decoder_outputs(run_a):
    loaded = keras.saving.load_model(run_a["out"] / "model.keras")
    trained = run_a["vae"]
    x = np.random.default_rng(0).random((10, 28, 28), dtype=np.float32)
    z = np.random.default_rng(1).normal(size=(10, 2)).astype(np.float32)
    for a, b in zip(loaded.encoder(x), trained.encoder(x)):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded.decoder(z)),
        keras.ops.convert_to_numpy(trained.decoder(z)),
    )


def test_same_seed_gives_identical_history_and_a_terminal_gets_the_progress_bar(run_a, tmp_path):
    tty = FakeTTY()
    code, stdout, stderr = run(["train", "--out", tmp_path, "--seed", "3", *QUICK], stdout=tty)
    assert code == 0, stderr
    assert (tmp_path / "history.csv").read_text() == (run_a["out"] / "history.csv").read_text()
    assert "━" in stdout  # verbose=1: Keras's progress bar


def test_resume_appends_history_and_counts_epochs_on(run_a, tmp_path):
    shutil.copytree(run_a["out"], tmp_path / "r")
    code, stdout, stderr = run(
        ["train", "--resume", tmp_path / "r", "--epochs", "1", "--data-dir", DATA]
    )
    assert code == 0, stderr
    assert (
        "resuming" in stdout
        and "after 1 epochs" in stdout
        and "Epoch 2/2" in stdout
        and "epoch 2/2:" in stdout
    )
    assert (
        "training on 512 images, validating on 500" in stdout
    )  # the recorded --limit and --val-limit
    first = (run_a["out"] / "history.csv").read_text()
    now = (tmp_path / "r" / "history.csv").read_text()
    assert (
        now.startswith(first)
        and len(now.splitlines()) == 3
        and now.splitlines()[2].startswith("2,")
    )
    assert ck.read_state(tmp_path / "r" / "model.keras")["epochs_done"] == 2
    assert int(ck.load_vae(tmp_path / "r").optimizer.iterations) == 2 * 8
    # a resumed run keeps its model's shape
    code, _, err = run(
        ["train", "--resume", tmp_path / "r", "--latent-dim", "3", "--data-dir", DATA]
    )
    assert_clean_error(code, err, "--latent-dim 3", "trained with 2")


def test_bernoulli_training_binarizes_afresh_every_epoch(tmp_path, monkeypatch):
    """Dynamic binarization, as chapter 7 trains: each epoch sees new 0/1 draws of the grey images."""
    seen = []
    real = vae_course.train.train_vae

    def spy(vae, x, *args, **kwargs):
        seen.append(np.array(x))
        return real(vae, x, *args, **kwargs)

    monkeypatch.setattr(vae_course.train, "train_vae", spy)
    out = tmp_path / "bern"
    argv = [
        "train",
        "--out",
        out,
        "--likelihood",
        "bernoulli",
        "--limit",
        "256",
        "--val-limit",
        "200",
    ]
    code, stdout, stderr = run([*argv, "--epochs", "2", "--data-dir", DATA])
    assert code == 0, stderr
    assert len(seen) == 2 and not np.array_equal(seen[0], seen[1])
    grey = scale_images(load_mnist(DATA)[0][0][:256])
    for x in seen:  # each epoch's images are a binarization of the same grey images
        assert set(np.unique(x)) <= {0.0, 1.0} and abs(x.mean() - grey.mean()) < 0.01
    assert re.search(r"(?m)^epoch 1/2: ", stdout) and re.search(r"(?m)^epoch 2/2: ", stdout), stdout
    assert len((out / "history.csv").read_text().splitlines()) == 3


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "b"
    code, stdout, stderr = run(
        [
            "train",
            "--out",
            out,
            "--likelihood",
            "bernoulli",
            "--latent-dim",
            "3",
            "--limit",
            "256",
            "--val-limit",
            "200",
            "--epochs",
            "1",
            "--data-dir",
            DATA,
        ]
    )
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "history.csv",
        "loss_curves.png",
        "model.keras",
        "prior_samples.png",
    ]
    model, history = (out / "model.keras").read_bytes(), (out / "history.csv").read_bytes()
    # An absurd learning rate makes the weights overflow after one step: the loss turns NaN in epoch 2.
    code, stdout, stderr = run(
        ["train", "--resume", out, "--epochs", "2", "--learning-rate", "1e10", "--data-dir", DATA]
    )
    assert_clean_error(
        code,
        stderr,
        "training stopped in epoch 2",
        "became nan",
        f"last good checkpoint, after epoch 1, is kept in {out / 'model.keras'}",
        "--learning-rate",
    )
    assert (out / "model.keras").read_bytes() == model
    assert (out / "history.csv").read_bytes() == history
    assert leftovers(out) == []
    assert ck.load_vae(out).likelihood == "bernoulli"


def test_refuses_to_overwrite_an_earlier_run(run_a):
    before = (run_a["out"] / "model.keras").read_bytes()
    code, _, err = run(["train", "--out", run_a["out"], *QUICK])
    assert_clean_error(
        code, err, str(run_a["out"]), "already holds model.keras", "--resume", "--overwrite"
    )
    assert (run_a["out"] / "model.keras").read_bytes() == before
    code, _, err = run(["train", "--epochs", "1"])
    assert_clean_error(code, err, "--out DIR")


# --------------------------------------------------------------- sample, evaluate
def test_sample_writes_a_png(run_a, tmp_path):
    code, stdout, err = run(
        ["sample", "--model", run_a["out"] / "model.keras", "--n", "9", "--out", tmp_path / "s.png"]
    )
    assert code == 0, err
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG and leftovers(tmp_path) == []
    code, _, err = run(["sample", "--model", run_a["out"], "--out", tmp_path / "s.jpg"])
    assert_clean_error(code, err, "s.jpg", ".png")


def test_evaluate_prints_negative_elbo_and_iwae_bound(run_a):
    code, stdout, err = run(
        [
            "evaluate",
            "--model",
            run_a["out"] / "model.keras",
            "--k",
            "20",
            "--limit",
            "100",
            "--data-dir",
            DATA,
        ]
    )
    assert code == 0, err
    assert "100 test images" in stdout
    nelbo = float(re.search(r"-ELBO \(one z per image\)\s+(-?\d+\.\d+) nats", stdout).group(1))
    bound = float(re.search(r"IWAE bound L_20 <= log p\(x\)\s+(-?\d+\.\d+) nats", stdout).group(1))
    assert 0 < nelbo < 1000 and np.isfinite(bound)
    assert (
        -bound <= nelbo + 1.0
    )  # L_k is tighter than the ELBO (up to the 1-sample noise of the ELBO)


# ------------------------------------------------------------------- bad inputs
def _idx_folder(folder, broken=None):
    """Links to the real IDX files; ``broken`` = (file, bytes) replaces one of them."""
    folder.mkdir()
    for stem in IDX_FILES.values():
        src = DATA / stem if (DATA / stem).is_file() else DATA / (stem + ".gz")
        (folder / src.name).symlink_to(src)
    if broken:
        name, data = broken
        (folder / name).unlink()
        (folder / name).write_bytes(data)
    return folder


def _missing(tmp_path):
    return tmp_path / "no-such-folder"


def _empty(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _truncated_idx(tmp_path):
    data = (DATA / IDX_FILES["x_test"]).read_bytes()[:100_000]
    return _idx_folder(tmp_path / "trunc", (IDX_FILES["x_test"], data))


def _corrupt_idx(tmp_path):
    return _idx_folder(tmp_path / "corrupt", (IDX_FILES["y_test"], b"not an idx file at all"))


def _corrupt_npz(tmp_path):
    (tmp_path / "npz").mkdir()
    (tmp_path / "npz" / "mnist.npz").write_bytes(b"garbage, not a zip")
    return tmp_path / "npz"


def _truncated_npz(tmp_path):
    np.savez(tmp_path / "small.npz", x_train=np.zeros((3, 28, 28), np.uint8))
    (tmp_path / "npz2").mkdir()
    (tmp_path / "npz2" / "mnist.npz").write_bytes((tmp_path / "small.npz").read_bytes()[:200])
    return tmp_path / "npz2"


@pytest.mark.parametrize(
    "make, expected",
    [
        (_missing, "is not a folder"),
        (_empty, "holds neither mnist.npz nor the IDX files"),
        (_truncated_idx, "truncated or corrupt"),
        (_corrupt_idx, "magic number"),
        (_corrupt_npz, "not a readable mnist.npz"),
        (_truncated_npz, "not a readable mnist.npz"),
    ],
    ids=["missing", "empty", "truncated-idx", "corrupt-idx", "corrupt-npz", "truncated-npz"],
)
def test_bad_data_folder_gives_one_clear_message(make, expected, tmp_path):
    folder = make(tmp_path)
    code, _, err = run(["train", "--out", tmp_path / "out", "--epochs", "1", "--data-dir", folder])
    assert_clean_error(code, err, folder.name, expected, "Fix:")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "spoil, expected",
    [
        (lambda x: (x * 255).astype(np.uint8), ["uint8 pixels", "/ 255"]),
        (lambda x: x * 255, ["pixel values span [0, 255]", "divide by 255"]),
        (
            lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x),
            ["1 values are NaN or infinite"],
        ),
        (
            lambda x: np.where(np.arange(x.size).reshape(x.shape) < 3, np.inf, x),
            ["3 values are NaN or infinite"],
        ),
        (lambda x: x[:, :14, :14], ["images of shape (14, 14)", "the model takes (28, 28)"]),
    ],
    ids=["uint8-never-scaled", "float-never-scaled", "nan", "inf", "wrong-image-shape"],
)
def test_bad_pixels_reach_a_clear_message(spoil, expected, tmp_path, monkeypatch):
    """The package's check (VAE.fit -> check_images, once per fit) rejects the data, and main reports it."""
    from vae_course.tools import commands

    real = commands._prepare
    monkeypatch.setattr(
        commands, "_prepare", lambda x, *args, **kwargs: spoil(real(x, *args, **kwargs))
    )
    code, _, err = run(
        ["train", "--out", tmp_path, "--limit", "64", "--epochs", "1", "--data-dir", DATA]
    )
    assert_clean_error(code, err, "error: x: ", *expected)
    assert not (tmp_path / "model.keras").exists() and not (tmp_path / "history.csv").exists()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--latent-dim", "0"], ["argument --latent-dim", "must be a positive integer", "got 0"]),
        (["--latent-dim", "-2"], ["argument --latent-dim", "got -2"]),
        (
            ["--likelihood", "poisson"],
            ["argument --likelihood", "invalid choice: 'poisson'", "gaussian"],
        ),
        (["--epochs", "two"], ["argument --epochs", "'two'"]),
        (["--learning-rate", "nan"], ["argument --learning-rate", "finite"]),
    ],
    ids=[
        "latent-dim-0",
        "latent-dim-negative",
        "unknown-likelihood",
        "epochs-not-a-number",
        "learning-rate-nan",
    ],
)
def test_bad_argument_gives_one_clear_message(argv, expected, tmp_path):
    code, _, err = run(["train", "--out", tmp_path, *argv])
    assert_clean_error(code, err, *expected)
    assert list(tmp_path.iterdir()) == []


def test_package_rejects_bad_latent_dim_and_likelihood():
    with pytest.raises(ValueError, match="latent_dim must be a positive integer, got 0"):
        build_vae(latent_dim=0)
    with pytest.raises(ValueError, match="likelihood must be one of .*'poisson'"):
        build_vae(likelihood="poisson")


@pytest.fixture(scope="module")
def bad_checkpoints(run_a, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_ckpt")
    data = (run_a["out"] / "model.keras").read_bytes()
    (folder / "truncated.keras").write_bytes(data[: len(data) // 3])
    (folder / "text.keras").write_text("not a model")
    with zipfile.ZipFile(folder / "zip.keras", "w") as zf:
        zf.writestr("notes.txt", "a zip, not a model")
    return folder


@pytest.mark.parametrize("command", ["evaluate", "sample", "train --resume"])
@pytest.mark.parametrize(
    "name, expected",
    [
        ("missing.keras", "no such file"),
        ("truncated.keras", "truncated or corrupt"),
        ("text.keras", "truncated or corrupt"),
        ("zip.keras", "not a Keras model"),
    ],
    ids=["missing", "truncated", "not-a-zip", "zip-but-not-a-model"],
)
def test_bad_checkpoint_gives_one_clear_message(name, expected, command, bad_checkpoints, tmp_path):
    path = bad_checkpoints / name
    if command == "evaluate":
        argv = ["evaluate", "--model", path, "--k", "2", "--limit", "2", "--data-dir", DATA]
    elif command == "sample":
        argv = ["sample", "--model", path, "--out", tmp_path / "s.png"]
    else:
        argv = ["train", "--resume", path, "--epochs", "1", "--data-dir", DATA]
    code, _, err = run(argv)
    assert_clean_error(code, err, f"checkpoint {path}", expected, "Fix:")
    assert list(tmp_path.iterdir()) == []


def test_a_model_for_other_images_is_refused(tmp_path):
    ck.save_vae(build_vae(image_shape=(14, 14), hidden_units=(8,)), tmp_path / "model.keras")
    code, _, err = run(
        [
            "evaluate",
            "--model",
            tmp_path / "model.keras",
            "--k",
            "2",
            "--limit",
            "4",
            "--data-dir",
            DATA,
        ]
    )
    assert_clean_error(
        code, err, "takes images of shape (14, 14)", "MNIST images are (28, 28)", "Fix:"
    )


# ---------------------------------------------------------- help and the module
def test_help_on_each_command():
    for command, options in [
        (
            "train",
            [
                "--epochs",
                "--latent-dim",
                "--likelihood",
                "--batch-size",
                "--seed",
                "--out",
                "--resume",
                "--limit",
            ],
        ),
        ("sample", ["--model", "--n", "--out"]),
        ("evaluate", ["--model", "--k", "--limit"]),
        ("fetch-data", ["--dest"]),
    ]:
        code, out, _ = run([command, "--help"])
        assert code == 0 and all(o in out for o in options), (command, out)
    code, out, _ = run(["--help"])
    assert code == 0 and all(c in out for c in ("train", "sample", "evaluate"))


def test_help_is_quick_plain_text_and_imports_no_torch_or_keras():
    code = (
        "import sys, time; t = time.perf_counter(); from vae_course.tools.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['evaluate', '--help']):\n"
        "    try: main(argv)\n"
        "    except SystemExit: pass\n"
        "print('SECONDS', time.perf_counter() - t)\n"
        "print('HEAVY', sorted(m for m in ('torch', 'keras', 'matplotlib.pyplot') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout  # what makes it quick: nothing heavy is imported
    assert float(re.search(r"SECONDS (\S+)", proc.stdout).group(1)) < 1.0
    assert "``" not in proc.stdout and ":func:" not in proc.stdout  # no RST markup
    words = " ".join(proc.stdout.split())  # argparse wraps lines
    assert (
        "(default: 20)" in words
        and "(default: 0.001)" in words
        and "Adam with learning rate 0.001" in words
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "vae_course", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "fetch-data" in proc.stdout
    assert time.perf_counter() - start < 2.0  # the whole process, interpreter start-up included


def test_python_dash_m_vae_course(run_a, tmp_path):
    """The real entry point: a run that works, and bad input that exits 2 with no traceback."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    model = run_a["out"] / "model.keras"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vae_course",
            "sample",
            "--model",
            model,
            "--n",
            "4",
            "--out",
            tmp_path / "s.png",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG and "wrote 4 samples" in proc.stdout
    # argparse's check needs no Keras import, so this one is quick
    proc = subprocess.run(
        [sys.executable, "-m", "vae_course", "train", "--latent-dim", "0", "--out", tmp_path / "x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "error: argument --latent-dim: must be a positive integer (the size of z, e.g. 2), got 0"
        )
    )
    assert not (tmp_path / "x").exists()


def test_ctrl_c_exits_130_without_a_traceback(monkeypatch, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    from vae_course.tools import commands

    monkeypatch.setattr(commands, "_mnist", interrupted)
    code, _, err = run(["train", "--out", tmp_path, "--epochs", "1"])
    assert code == 130 and err.startswith("error: interrupted") and "Traceback" not in err
