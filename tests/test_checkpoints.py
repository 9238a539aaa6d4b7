"""vae_course.tools.atomic, .checkpoints and .callbacks: atomic files, load_vae's checks, history.csv, the training callbacks.

Uses a tiny VAE on 8 x 8 random images, so that every test runs in well under a second.
"""

import csv
import json
import math
import os
import zipfile

import keras
import numpy as np
import pytest

from vae_course.errors import CourseError, TrainingDiverged
from vae_course.models import build_vae
from vae_course.tools import atomic
from vae_course.tools import callbacks as cb
from vae_course.tools import checkpoints as ck
from vae_course.train import train_vae

SHAPE = (8, 8)


def tiny_vae(seed=0, likelihood="gaussian"):
    keras.utils.set_random_seed(seed)
    return build_vae(latent_dim=2, likelihood=likelihood, image_shape=SHAPE, hidden_units=(16,))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((128,) + SHAPE, dtype=np.float32)


def leftovers(folder):
    """Temporary files an atomic write would leave behind if it went wrong."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".") or ".tmp" in p.name]


def outputs(vae, x, z):
    enc = [keras.ops.convert_to_numpy(t) for t in vae.encoder(x)]
    return enc, keras.ops.convert_to_numpy(vae.decoder(z))


# ------------------------------------------------------------------ atomic files
def test_atomic_path_replaces_on_success_and_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "history.csv"
    atomic.atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("half-writ")
        raise RuntimeError("crash in the middle of a write")
    assert target.read_text() == "old\n"
    with pytest.raises(KeyboardInterrupt), atomic.atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise KeyboardInterrupt
    assert target.read_text() == "old\n"
    assert leftovers(tmp_path) == []
    atomic.atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n" and leftovers(tmp_path) == []
    mask = os.umask(0)
    os.umask(mask)
    new = atomic.atomic_write_text(tmp_path / "fresh.txt", "x")
    assert new.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600


def test_failed_checkpoint_save_keeps_the_previous_checkpoint(tmp_path, images):
    vae = tiny_vae()
    path = ck.save_vae(vae, tmp_path / "model.keras", {"epochs_done": 1})
    before = path.read_bytes()

    def broken_save(filepath, *args, **kwargs):
        with open(filepath, "wb") as fh:
            fh.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    vae.save = broken_save
    with pytest.raises(OSError, match="disk full"):
        ck.save_vae(vae, path, {"epochs_done": 2})
    assert path.read_bytes() == before
    assert ck.read_state(path)["epochs_done"] == 1
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------ checkpoints
def test_round_trip_gives_identical_encoder_and_decoder_outputs(tmp_path, images):
    vae = tiny_vae()
    train_vae(vae, images, images[:32], epochs=1, batch_size=32, verbose=0)
    path = ck.save_vae(vae, tmp_path / "model.keras", {"epochs_done": 1, "settings": {"seed": 0}})
    z = np.random.default_rng(1).normal(size=(16, 2)).astype("float32")
    want = outputs(vae, images[:16], z)
    # Plain Keras reloads it (the package classes are registered) ...
    plain = keras.saving.load_model(path)
    # ... and so does load_vae, optimizer state included.
    ours = ck.load_vae(path)
    for loaded in (plain, ours):
        assert type(loaded).__name__ == "VAE" and loaded.likelihood == "gaussian"
        got = outputs(loaded, images[:16], z)
        np.testing.assert_array_equal(got[0][0], want[0][0])
        np.testing.assert_array_equal(got[0][1], want[0][1])
        np.testing.assert_array_equal(got[1], want[1])
    assert int(ours.optimizer.iterations) == int(vae.optimizer.iterations) == 4
    assert ck.read_state(path) == {"epochs_done": 1, "settings": {"seed": 0}}
    assert ck.load_vae(tmp_path).name == "vae"  # a folder holding model.keras works too


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "model.keras"
    return ck.save_vae(tiny_vae(), path, {"epochs_done": 0})


def _bad_checkpoints(folder, good):
    data = good.read_bytes()
    (folder / "truncated.keras").write_bytes(data[: len(data) // 2])
    (folder / "empty.keras").write_bytes(b"")
    (folder / "text.keras").write_text("this is not a model\n")
    corrupt = bytearray(data)
    with zipfile.ZipFile(good) as zf:  # flip bytes inside the stored weights
        info = zf.getinfo("model.weights.h5")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    corrupt[start + 4096 : start + 4104] = b"\xff" * 8
    (folder / "corrupt.keras").write_bytes(bytes(corrupt))
    with zipfile.ZipFile(folder / "notmodel.keras", "w") as zf:
        zf.writestr("readme.txt", "a zip file, but no model")
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(folder / "sequential.keras")
    np.savez(folder / "arrays.npz", a=np.zeros(3))
    (folder / "emptydir").mkdir()
    return {
        "missing.keras": "no such file",
        "emptydir": "holds no model.keras",
        "truncated.keras": "truncated or corrupt",
        "empty.keras": "truncated or corrupt",
        "text.keras": "truncated or corrupt",
        "corrupt.keras": "corrupt",
        "notmodel.keras": "not a Keras model",
        "sequential.keras": "not a vae_course VAE",
        "arrays.npz": "expected a Keras .keras file",
    }


def test_load_vae_explains_missing_truncated_and_foreign_files(tmp_path, good_checkpoint):
    cases = _bad_checkpoints(tmp_path, good_checkpoint)
    for name, expected in cases.items():
        with pytest.raises(ck.CheckpointError) as info:
            ck.load_vae(tmp_path / name)
        msg = str(info.value)
        assert isinstance(info.value, CourseError) and isinstance(info.value, ValueError)
        assert name in msg, msg  # which input
        assert expected in msg, msg  # what is wrong / expected
        assert "Fix:" in msg, msg  # how to fix it


# ---------------------------------------------------------------------- history
def test_history_round_trip_keeps_every_digit(tmp_path):
    rows = [
        {
            "epoch": 1,
            "loss": 1 / 3,
            "nll": 0.1,
            "kl": 2.0,
            "val_loss": 3.0,
            "val_nll": 2.5,
            "val_kl": 0.5,
        },
        {"epoch": 2, "loss": 0.25, "nll": 0.2, "kl": 0.05},  # no validation: NA
    ]
    path = ck.write_history(tmp_path / "history.csv", rows)
    with open(path, newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == list(ck.HISTORY_COLUMNS)
    assert table[1][1] == repr(1 / 3) and table[2][4:] == ["NA", "NA", "NA"]
    back = ck.read_history(path)
    assert back == rows  # NA comes back as a missing key
    assert math.isnan(ck.history_dict(back)["val_loss"][1])
    assert ck.history_dict(back)["loss"] == [1 / 3, 0.25]
    (tmp_path / "bad.csv").write_text("step,loss\n0,1\n")
    with pytest.raises(ck.CheckpointError, match="bad.csv.*header starts with 'epoch'"):
        ck.read_history(tmp_path / "bad.csv")


# -------------------------------------------------------------------- callbacks
class Poison(keras.callbacks.Callback):
    """Test-only hook: turn one weight into NaN at the start (or end) of an epoch."""

    def __init__(self, epoch, when="begin"):
        super().__init__()
        self.epoch, self.when = epoch, when

    def _poison(self, epoch):
        if epoch == self.epoch:
            w = self.model.encoder.weights[0]
            w.assign(w * float("nan"))

    def on_epoch_begin(self, epoch, logs=None):
        if self.when == "begin":
            self._poison(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if self.when == "end":
            self._poison(epoch)


class Snapshot(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = [keras.ops.convert_to_numpy(w).copy() for w in self.model.weights]


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, images, capsys):
    vae = tiny_vae()
    callbacks, stop = cb.training_callbacks(tmp_path, state={"settings": {"seed": 0}})
    snap = Snapshot()
    train_vae(
        vae,
        images,
        images[:32],
        epochs=4,
        batch_size=32,
        verbose=0,
        callbacks=callbacks + [snap, Poison(epoch=2)],
    )
    # Epochs counted from 1, as on the console: the third epoch is poisoned at its start.
    assert stop.stopped and stop.epoch == 3 and stop.batch == 1 and stop.last_good_epoch == 2
    assert sorted(snap.weights) == [
        0,
        1,
        2,
    ]  # Keras's epoch indices: the third ended (with NaN), the fourth never ran
    # history.csv and model.keras end at the last good epoch (the second) ...
    rows = ck.read_history(tmp_path / "history.csv")
    assert [r["epoch"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    state = ck.read_state(tmp_path / "model.keras")
    assert state["epochs_done"] == 2 and state["settings"] == {"seed": 0}
    assert state["metrics"]["loss"] == rows[1]["loss"]
    # ... and the checkpoint holds exactly the weights of that epoch.
    good = ck.load_vae(tmp_path / "model.keras")
    for w, want in zip(good.weights, snap.weights[1]):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), want)
    msg = str(stop.error(tmp_path / "model.keras"))
    assert "epoch 3" in msg and "nan" in msg and "after epoch 2" in msg and "Fix:" in msg
    assert isinstance(stop.error(), TrainingDiverged) and not isinstance(
        stop.error(), ck.CheckpointError
    )
    out = capsys.readouterr().out  # the per-epoch timing lines
    assert "epoch 1/4: " in out and " s  loss " in out and "val_kl" in out
    assert leftovers(tmp_path) == []


def test_nan_weights_with_finite_logs_are_not_saved(tmp_path, images):
    vae = tiny_vae()
    callbacks, stop = cb.training_callbacks(tmp_path)
    # Poison after the epoch's metrics were computed but before the writers see it.
    train_vae(
        vae,
        images,
        None,
        epochs=2,
        batch_size=32,
        verbose=0,
        callbacks=[Poison(0, "end")] + callbacks,
    )
    assert stop.stopped and stop.last_good_epoch is None and "weights" in stop.what
    assert not (tmp_path / "model.keras").exists() and not (tmp_path / "history.csv").exists()
    assert "wrote no model.keras" in str(stop.error(tmp_path / "model.keras"))


def test_resumed_history_is_appended_and_epochs_counted_on(tmp_path, images):
    vae = tiny_vae()
    callbacks, _ = cb.training_callbacks(tmp_path)
    train_vae(vae, images, None, epochs=1, batch_size=32, verbose=0, callbacks=callbacks)
    first = (tmp_path / "history.csv").read_text()
    vae = ck.load_vae(tmp_path)
    done = ck.read_state(tmp_path / "model.keras")["epochs_done"]
    callbacks, _ = cb.training_callbacks(tmp_path, ck.read_history(tmp_path / "history.csv"))
    train_vae(
        vae,
        images,
        None,
        epochs=2,
        batch_size=32,
        verbose=0,
        callbacks=callbacks,
        initial_epoch=done,
    )
    text = (tmp_path / "history.csv").read_text()
    assert text.startswith(first)
    assert [r["epoch"] for r in ck.read_history(tmp_path / "history.csv")] == [1, 2, 3]
    assert ck.read_state(tmp_path / "model.keras")["epochs_done"] == 3
    assert int(ck.load_vae(tmp_path).optimizer.iterations) == 3 * 4
    with zipfile.ZipFile(tmp_path / "model.keras") as zf:
        assert json.loads(zf.read(ck.STATE_ENTRY))["epochs_done"] == 3


def test_resume_state_reads_epochs_settings_and_history(tmp_path, images):
    vae = tiny_vae()
    train_vae(vae, images, None, epochs=1, batch_size=32, verbose=0)
    rows = [{"epoch": e, "loss": 1.0 + e, "nll": 1.0, "kl": 0.0} for e in (1, 2, 3)]
    ck.write_history(tmp_path / "history.csv", rows)
    # recorded state wins: a history row beyond the checkpoint is dropped
    ck.save_vae(vae, tmp_path / "model.keras", {"epochs_done": 2, "settings": {"seed": 7}})
    loaded, path, done, settings, kept = ck.resume_state(tmp_path)
    assert path == tmp_path / "model.keras" and done == 2 and settings == {"seed": 7}
    assert kept == rows[:2] and loaded.optimizer is not None
    # a plain vae.save() records nothing: epochs are counted from the history next to it
    vae.save(tmp_path / "model.keras")
    _, _, done, settings, kept = ck.resume_state(tmp_path / "model.keras")
    assert done == 3 and settings == {} and kept == rows


class Interrupt(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 1 and self.model.optimizer.iterations > 4:  # in the second epoch
            raise KeyboardInterrupt


def test_ctrl_c_mid_epoch_keeps_the_last_checkpoint_whole(tmp_path, images):
    vae = tiny_vae()
    callbacks, _ = cb.training_callbacks(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        train_vae(
            vae,
            images,
            None,
            epochs=3,
            batch_size=32,
            verbose=0,
            callbacks=callbacks + [Interrupt()],
        )
    assert ck.read_state(tmp_path / "model.keras")["epochs_done"] == 1
    assert [r["epoch"] for r in ck.read_history(tmp_path / "history.csv")] == [1]
    assert int(ck.load_vae(tmp_path).optimizer.iterations) == 4
    assert leftovers(tmp_path) == []


class BatchEndThread(keras.callbacks.Callback):
    """Records on which thread Keras calls the end of each training batch."""

    async_safe = True

    def __init__(self):
        super().__init__()
        self.threads, self.calls, self.logs = set(), 0, None

    def on_train_batch_end(self, batch, logs=None):
        import threading

        self.threads.add(threading.get_ident())
        self.calls, self.logs = self.calls + 1, logs


def test_batch_ends_run_in_line_in_train_vae_and_off_the_thread_in_keras_fit(tmp_path, images):
    # train_vae's loop (vae_course.fast.fit) calls the batch ends of the callbacks that have one
    # in the training thread, with the logs as floats: about 7 us a step for the command line's,
    # where CallbackList's hand-over to a thread pool took about 160 us.
    import threading

    callbacks, _ = cb.training_callbacks(tmp_path)
    spy = BatchEndThread()
    train_vae(
        tiny_vae(), images, None, epochs=1, batch_size=32, verbose=0, callbacks=callbacks + [spy]
    )
    assert spy.threads == {threading.get_ident()} and spy.calls == 4  # 128 images, batches of 32
    assert all(type(v) is float for v in spy.logs.values()) and set(spy.logs) == {
        "loss",
        "nll",
        "kl",
    }

    def keras_fit(others):  # Keras's own fit: train_vae(fast=False)
        spy = BatchEndThread()
        train_vae(
            tiny_vae(),
            images,
            epochs=1,
            batch_size=32,
            verbose=0,
            callbacks=others + [spy],
            fast=False,
        )
        return spy.threads

    # Keras's own fit hands async-safe callbacks (the command line's are) to a worker thread ...
    threads = keras_fit(callbacks)
    assert threads and threading.get_ident() not in threads
    # ... and runs them in line beside one that is not async-safe: the check can fail
    assert keras_fit([Interrupt()]) == {threading.get_ident()}
