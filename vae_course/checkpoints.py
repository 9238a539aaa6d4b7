"""Checkpoints, training history and the training callbacks: nothing is ever half-written.

Every file goes to a temporary file in the same folder first and is then
renamed over the old one with ``os.replace``, which is atomic: a reader (or a
crash, or Ctrl-C) sees either the old file or the new one, never a mix.

* :func:`save_vae` / :func:`load_vae`: a VAE as a Keras ``.keras`` file
  (config, weights and optimizer state), plus a small ``vae_course.json``
  entry inside the archive that records how many epochs it has trained and
  with which settings, so that ``train --resume`` can count epochs on.
  ``load_vae`` checks the file first and raises :class:`CheckpointError`,
  naming the file, what was expected and the fix, for a missing, truncated
  or corrupt file or one that holds something other than a course VAE.
* :func:`write_history` / :func:`read_history`: ``history.csv`` with the
  columns of Keras's ``CSVLogger`` (``epoch``, counted from 0, then
  ``loss, nll, kl, val_loss, val_nll, val_kl``); floats are written with
  ``repr``, so equal losses give equal text.
* The callbacks of a training run, in the order :func:`training_callbacks`
  puts them: :class:`StopOnNaN`, :class:`EpochTimer`,
  :class:`AtomicCSVLogger`, :class:`AtomicModelCheckpoint`. An epoch is
  *good* when its metrics and the model's weights are all finite; only good
  epochs reach ``history.csv`` and ``model.keras``, so a NaN loss leaves the
  last good checkpoint and its history as they were.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import keras

from .data import DataError

CHECKPOINT_NAME = "model.keras"
HISTORY_NAME = "history.csv"
HISTORY_COLUMNS = ("epoch", "loss", "nll", "kl", "val_loss", "val_nll", "val_kl")
STATE_ENTRY = "vae_course.json"
_VAE_NAMES = ("vae_course>VAE", "VAE")

_RETRAIN = "Fix: train a model with `python -m vae_course train --out DIR` and pass DIR/model.keras"


class CheckpointError(DataError):
    """A checkpoint or history file that is missing, truncated, corrupt or not a course VAE."""


class TrainingDiverged(DataError):
    """Training stopped because the loss (or a weight) became NaN or infinite."""


# --------------------------------------------------------------- atomic files
def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_mode(path):
    try:
        return path.stat().st_mode & 0o777  # keep the mode of the file being replaced
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    The temporary file keeps ``path``'s suffix (Keras wants ``.keras``). If the
    block raises, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        os.chmod(tmp, _file_mode(path))  # mkstemp makes 0600; give the usual permissions
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically (temporary file + ``os.replace``)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


# ----------------------------------------------------------------- checkpoints
def save_vae(vae, path, state=None):
    """Save ``vae`` to ``path`` (a ``.keras`` file) atomically.

    ``state`` (a JSON-able dict, e.g. ``{"epochs_done": 3, ...}``) is stored
    as ``vae_course.json`` inside the archive; Keras ignores that entry.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise CheckpointError(f"checkpoint {path}: the name must end in .keras (Keras's format). Fix: e.g. {path.with_suffix('.keras')}.")
    with atomic_path(path) as tmp:
        vae.save(tmp)
        if state is not None:
            with zipfile.ZipFile(tmp, "a") as zf:
                zf.writestr(STATE_ENTRY, json.dumps(state, indent=1, sort_keys=True))
    return path


def _resolve(path):
    path = Path(path)
    if path.is_dir():
        inner = path / CHECKPOINT_NAME
        if not inner.is_file():
            raise CheckpointError(
                f"checkpoint folder {path} holds no {CHECKPOINT_NAME}. Expected the folder a "
                f"`python -m vae_course train --out {path}` run wrote. {_RETRAIN}."
            )
        return inner
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: no such file. Expected a .keras file written by training. {_RETRAIN}.")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: not a regular file. {_RETRAIN}.")
    return path


def _inspect(path):
    """Open the archive, verify every member's CRC; return (names, config dict)."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            broken = zf.testzip()
            config = json.loads(zf.read("config.json")) if "config.json" in names else None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"checkpoint {path}: not a readable .keras archive ({size} bytes; {type(exc).__name__}: {exc}). "
            "It is truncated or corrupt (e.g. a copy or run that was cut off), or not a Keras model file at all. "
            f"{_RETRAIN}, or restore an intact copy."
        ) from exc
    if broken is not None:
        raise CheckpointError(
            f"checkpoint {path}: archive member {broken!r} fails its checksum; the file is corrupt. "
            f"{_RETRAIN}, or restore an intact copy."
        )
    if config is None or "model.weights.h5" not in names:
        raise CheckpointError(
            f"checkpoint {path}: a zip archive but not a Keras model (no config.json and "
            f"model.weights.h5 inside; it holds {sorted(names)[:5]}). {_RETRAIN}."
        )
    return names, config


def read_state(path):
    """The ``vae_course.json`` dict stored in a checkpoint by :func:`save_vae` ({} if none)."""
    path = _resolve(path)
    names, _ = _inspect(path)
    if STATE_ENTRY not in names:
        return {}
    with zipfile.ZipFile(path) as zf:
        try:
            return json.loads(zf.read(STATE_ENTRY))
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {path}: its {STATE_ENTRY} entry is not valid JSON ({exc}). {_RETRAIN}.") from exc


def load_vae(path, compile=True):
    """Load a course VAE from ``path`` (a ``.keras`` file, or a folder holding ``model.keras``).

    With ``compile=True`` the optimizer and its state come back too, so that
    training can go on. Raises :class:`CheckpointError` (a ``ValueError``)
    for a missing, truncated or corrupt file or one that is not a course VAE.
    """
    from . import models  # registers VAE & co. as Keras serializable

    path = _resolve(path)
    if path.suffix != ".keras":
        raise CheckpointError(
            f"checkpoint {path}: expected a Keras .keras file (the name must end in .keras). {_RETRAIN}."
        )
    _, config = _inspect(path)
    cls = config.get("registered_name") or config.get("class_name")
    if cls not in _VAE_NAMES:
        raise CheckpointError(
            f"checkpoint {path}: holds a Keras model of class {config.get('class_name')!r}, not a "
            f"vae_course VAE. {_RETRAIN}."
        )
    try:
        vae = keras.saving.load_model(path, compile=compile)
    except Exception as exc:  # h5py, deserialization and shape errors of all kinds
        raise CheckpointError(
            f"checkpoint {path}: Keras could not load it ({type(exc).__name__}: {str(exc)[:300]}). "
            f"{_RETRAIN}."
        ) from exc
    if not isinstance(vae, models.VAE):
        raise CheckpointError(f"checkpoint {path}: loaded a {type(vae).__name__}, not a vae_course VAE. {_RETRAIN}.")
    return vae


def resume_state(path):
    """What ``train --resume`` needs from a checkpoint: ``(vae, checkpoint, epochs_done, settings, rows)``.

    ``vae`` comes back compiled, optimizer state included; ``epochs_done`` and
    ``settings`` are those the checkpoint recorded; ``rows`` are the
    ``history.csv`` rows next to it for those epochs (later rows, from a run
    whose checkpoint was not written, are dropped). A ``.keras`` file saved
    by plain ``vae.save`` records nothing: its epochs are counted from the
    history next to it, if any.
    """
    checkpoint = _resolve(path)
    vae = load_vae(checkpoint, compile=True)
    state = read_state(checkpoint)
    history = checkpoint.with_name(HISTORY_NAME)
    rows = read_history(history) if history.is_file() else []
    epochs_done = int(state.get("epochs_done", len(rows)))
    rows = [r for r in rows if r["epoch"] < epochs_done]
    return vae, checkpoint, epochs_done, dict(state.get("settings", {})), rows


# --------------------------------------------------------------------- history
def _fmt(value):
    if isinstance(value, str):
        return value
    return repr(float(value))


def write_history(path, rows):
    """Write ``rows`` (dicts with an ``epoch`` and metrics) to ``path`` as CSV, atomically.

    Columns: :data:`HISTORY_COLUMNS`, then any other keys (sorted); a value
    that a row lacks is written ``NA``, as Keras's ``CSVLogger`` does.
    """
    extra = sorted({k for r in rows for k in r} - set(HISTORY_COLUMNS))
    columns = list(HISTORY_COLUMNS) + extra
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            for r in rows:
                writer.writerow([str(int(r["epoch"])) if c == "epoch" else _fmt(r.get(c, "NA")) for c in columns])
    return Path(path)


def read_history(path):
    """Rows of a ``history.csv`` as dicts: ``epoch`` an int, metrics floats; ``NA`` values are left out."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            table = list(csv.reader(fh))
    except OSError as exc:
        raise CheckpointError(f"history {path}: cannot read it ({exc}).") from exc
    if not table or table[0][:1] != ["epoch"]:
        raise CheckpointError(
            f"history {path}: expected a CSV file whose header starts with 'epoch' (as training writes it). "
            "Fix: delete or rename it to start a new history."
        )
    header, rows = table[0], []
    for line, values in enumerate(table[1:], start=2):
        if len(values) != len(header):
            raise CheckpointError(
                f"history {path}: line {line} has {len(values)} fields, the header {len(header)}. "
                "Fix: delete or rename it to start a new history."
            )
        try:
            row = {k: float(v) for k, v in zip(header, values) if v != "NA"}
            row["epoch"] = int(values[0])
        except ValueError as exc:
            raise CheckpointError(f"history {path}: line {line}: {exc}. Fix: delete or rename it to start a new history.") from exc
        rows.append(row)
    return rows


def history_dict(rows):
    """Rows (as :func:`read_history` returns them) -> {column: [values...]}, like ``History.history``."""
    keys = [k for k in HISTORY_COLUMNS if any(k in r for r in rows)]
    keys += sorted({k for r in rows for k in r} - set(keys))
    return {k: [r.get(k, float("nan")) for r in rows] for k in keys}


# ------------------------------------------------------------------- callbacks
def _metric_values(logs):
    out = {}
    for k, v in (logs or {}).items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def nonfinite_metrics(logs):
    """Names of the metrics in ``logs`` that are NaN or infinite."""
    return [k for k, v in _metric_values(logs).items() if not math.isfinite(v)]


def nonfinite_weights(model):
    """Paths of the model's weights that hold a NaN or an infinity."""
    return [w.path for w in model.weights if not bool(keras.ops.all(keras.ops.isfinite(w.value)))]


def is_good_epoch(model, logs):
    """True when every metric in ``logs`` and every weight of ``model`` is finite."""
    return not nonfinite_metrics(logs) and not nonfinite_weights(model)


class StopOnNaN(keras.callbacks.Callback):
    """Stop training at the first batch whose running loss is NaN or infinite.

    At the end of each epoch it also checks every metric and weight. After
    ``fit``, ``stopped`` tells whether it fired, ``last_good_epoch`` is the
    last epoch (0-based) that ended finite, and :meth:`error` builds the
    :class:`TrainingDiverged` to raise.
    """

    def __init__(self):
        super().__init__()
        self.stopped = False
        self.epoch = None
        self.batch = None
        self.what = None
        self.last_good_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        bad = [k for k in nonfinite_metrics(logs) if k == "loss"]
        if bad and not self.stopped:
            self.stopped, self.epoch, self.batch = True, self._epoch, batch
            self.what = f"the training loss became {_metric_values(logs)['loss']} at batch {batch + 1}"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.stopped:
            return
        bad, weights = nonfinite_metrics(logs), nonfinite_weights(self.model)
        if bad or weights:
            self.stopped, self.epoch = True, epoch
            self.what = (
                f"at the end of the epoch {', '.join(bad)} became NaN or infinite" if bad
                else f"weights {', '.join(weights[:3])} became NaN or infinite"
            )
            self.model.stop_training = True
        else:
            self.last_good_epoch = epoch

    def error(self, checkpoint=None, epochs_before=0):
        """The :class:`TrainingDiverged` that describes the stop.

        ``checkpoint``: the file the run saves to; ``epochs_before``: the
        epochs it had done when this run started (``initial_epoch``).
        """
        where = f"in epoch {self.epoch + 1}" if self.epoch is not None else ""
        msg = f"training stopped {where}: {self.what}."
        good = self.last_good_epoch + 1 if self.last_good_epoch is not None else epochs_before
        if checkpoint is not None and good > 0 and Path(checkpoint).is_file():
            msg += (
                f" The last good checkpoint, after epoch {good}, is kept in {checkpoint}, and "
                f"{Path(checkpoint).with_name(HISTORY_NAME).name} ends there."
            )
        elif checkpoint is not None:
            msg += f" No epoch ended finite, so this run wrote no {Path(checkpoint).name}."
        msg += (
            " Fix: lower the learning rate (--learning-rate), check the data, or go on from the last "
            "good checkpoint with `train --resume DIR`."
        )
        return TrainingDiverged(msg)


class EpochTimer(keras.callbacks.Callback):
    """Print one line per epoch: its number, its wall-clock seconds and its metrics.

    The seconds of each epoch (training and validation) are kept in ``seconds``.
    """

    def __init__(self, stream=None):
        super().__init__()
        self.stream = stream
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        self.seconds.append(seconds)
        values = _metric_values(logs)
        keys = [k for k in HISTORY_COLUMNS[1:] if k in values] + sorted(set(values) - set(HISTORY_COLUMNS))
        metrics = "  ".join(f"{k} {values[k]:.4f}" for k in keys)
        total = self.params.get("epochs") if self.params else None
        print(
            f"epoch {epoch + 1}{f'/{total}' if total else ''}: {seconds:.2f} s  {metrics}",
            file=self.stream or sys.stdout,
            flush=True,
        )


class AtomicCSVLogger(keras.callbacks.Callback):
    """``CSVLogger``'s columns, but the whole file is rewritten atomically after each good epoch.

    ``rows``: earlier history to keep in front (when training goes on from a
    checkpoint). Epochs that are not good (see :func:`is_good_epoch`) are not
    written, so the file always matches the last good checkpoint.
    """

    def __init__(self, path, rows=()):
        super().__init__()
        self.path = Path(path)
        self.rows = [dict(r) for r in rows]

    def on_epoch_end(self, epoch, logs=None):
        if not is_good_epoch(self.model, logs):
            return
        values = _metric_values(logs)
        self.rows = [r for r in self.rows if r["epoch"] < epoch]
        self.rows.append({"epoch": epoch, **values})
        write_history(self.path, self.rows)


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """Save the model to ``path`` atomically after each good epoch.

    The stored state records ``epochs_done`` (= epoch + 1), this epoch's
    metrics, and whatever ``state`` holds (e.g. the training settings).
    """

    def __init__(self, path, state=None):
        super().__init__()
        self.path = Path(path)
        self.state = dict(state or {})
        self.last_saved_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        if not is_good_epoch(self.model, logs):
            return
        save_vae(self.model, self.path, {**self.state, "epochs_done": epoch + 1, "metrics": _metric_values(logs)})
        self.last_saved_epoch = epoch


def training_callbacks(out_dir, history_rows=(), state=None, stream=None):
    """The callbacks of a training run that writes ``out_dir/model.keras`` and ``out_dir/history.csv``.

    Returns ``(callbacks, stop_on_nan)``; after ``fit``, check
    ``stop_on_nan.stopped`` and raise ``stop_on_nan.error(...)``. Keras's
    progress bar (shown as ``fit``'s ``verbose`` says) is in the list, ahead
    of the timing line, so that it finishes its line before the timer prints.
    """
    out_dir = Path(out_dir)
    stop = StopOnNaN()
    callbacks = [
        stop,
        keras.callbacks.ProgbarLogger(),
        EpochTimer(stream),
        AtomicCSVLogger(out_dir / HISTORY_NAME, history_rows),
        AtomicModelCheckpoint(out_dir / CHECKPOINT_NAME, state),
    ]
    return callbacks, stop


__all__ = [
    "CHECKPOINT_NAME",
    "HISTORY_NAME",
    "HISTORY_COLUMNS",
    "CheckpointError",
    "TrainingDiverged",
    "atomic_path",
    "atomic_write_text",
    "save_vae",
    "load_vae",
    "read_state",
    "resume_state",
    "write_history",
    "read_history",
    "history_dict",
    "nonfinite_metrics",
    "nonfinite_weights",
    "is_good_epoch",
    "StopOnNaN",
    "EpochTimer",
    "AtomicCSVLogger",
    "AtomicModelCheckpoint",
    "training_callbacks",
]
