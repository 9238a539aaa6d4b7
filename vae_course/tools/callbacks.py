"""The callbacks of a training run that writes ``model.keras`` and ``history.csv``.

In the order :func:`training_callbacks` puts them: :class:`StopOnNaN`
(Keras's ``TerminateOnNaN``, which also checks the weights), Keras's
``ProgbarLogger``, :class:`EpochTimer`, :class:`AtomicCSVLogger`,
:class:`AtomicModelCheckpoint`. An epoch is *good* when its metrics and the
model's weights are all finite; only good epochs reach ``history.csv`` and
``model.keras``, so a NaN loss leaves the last good checkpoint and its
history as they were.

Why not Keras's ``CSVLogger(append=True)`` and ``ModelCheckpoint``: they
write in place (a crash can leave half a row or half an archive), they also
write the epoch that went NaN, ``CSVLogger`` numbers epochs from 0 where the
console counts from 1, and ``ModelCheckpoint`` cannot store the epoch count
and settings that ``train --resume`` needs. The two writers here do what
those do, through :mod:`vae_course.tools.atomic`.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TextIO

import keras

from ..errors import TrainingDiverged
from .checkpoints import CHECKPOINT_NAME, HISTORY_COLUMNS, HISTORY_NAME, save_vae, write_history


def _metric_values(logs):
    out = {}
    for k, v in (logs or {}).items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def nonfinite_metrics(logs) -> list[str]:
    """Names of the metrics in ``logs`` that are NaN or infinite."""
    return [k for k, v in _metric_values(logs).items() if not math.isfinite(v)]


def nonfinite_weights(model: keras.Model) -> list[str]:
    """Paths of the model's weights that hold a NaN or an infinity."""
    return [w.path for w in model.weights if not bool(keras.ops.all(keras.ops.isfinite(w.value)))]


def is_good_epoch(model: keras.Model, logs) -> bool:
    """True when every metric in ``logs`` and every weight of ``model`` is finite."""
    return not nonfinite_metrics(logs) and not nonfinite_weights(model)


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """Keras's ``TerminateOnNaN``, which also checks every metric and weight at the end of an epoch.

    It stops training at the first batch whose running loss is NaN or
    infinite (Keras's part), or after an epoch that ends with a NaN metric
    or weight. After ``fit``, ``stopped`` tells whether it fired, ``epoch``
    (counted from 1) and ``what`` say where and what, ``last_good_epoch`` is
    the last epoch (counted from 1) that ended finite, and :meth:`error`
    builds the :class:`TrainingDiverged` to raise.
    """

    # Keras's own fit (train_vae(fast=False)) may call on_batch_end on a worker thread, after the
    # step (the check only reads the logs and sets flags): a callback that is not async-safe
    # makes it wait for the callbacks in line. train_vae's loop (vae_course.fast.fit) calls the
    # batch ends itself, in line, before the next step (about 7 us a step for these).
    async_safe = True

    def __init__(self):
        super().__init__()
        self.stopped = False
        self.epoch = None
        self.batch = None
        self.what = None
        self.last_good_epoch = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def on_batch_end(self, batch, logs=None):
        super().on_batch_end(batch, logs)
        if not self.stopped and "loss" in nonfinite_metrics(logs):
            self.stopped, self.epoch, self.batch = True, self._epoch, batch + 1
            self.what = (
                f"the training loss became {_metric_values(logs)['loss']} at batch {batch + 1}"
            )

    def on_epoch_end(self, epoch, logs=None):
        if self.stopped:
            return
        bad, weights = nonfinite_metrics(logs), nonfinite_weights(self.model)
        if bad or weights:
            self.stopped, self.epoch = True, epoch + 1
            if bad:
                self.what = f"at the end of the epoch {', '.join(bad)} became NaN or infinite"
            else:
                self.what = f"weights {', '.join(weights[:3])} became NaN or infinite"
            self.model.stop_training = True
        else:
            self.last_good_epoch = epoch + 1

    def error(
        self, checkpoint: str | Path | None = None, epochs_before: int = 0
    ) -> TrainingDiverged:
        """The :class:`TrainingDiverged` that describes the stop.

        ``checkpoint``: the file the run saves to; ``epochs_before``: the
        epochs it had done when this run started (``initial_epoch``).
        """
        where = f"in epoch {self.epoch}" if self.epoch is not None else ""
        msg = f"training stopped {where}: {self.what}."
        good = self.last_good_epoch if self.last_good_epoch is not None else epochs_before
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
    """Print one line per epoch: its number (from 1), its wall-clock seconds and its metrics.

    The seconds of each epoch (training and validation) are kept in ``seconds``.
    ``total``: the run's last epoch, shown as "epoch 3/20" (default: ``fit``'s
    ``epochs``, which a run of one ``fit`` per epoch would show as "3/3").
    """

    def __init__(self, stream: TextIO | None = None, total: int | None = None):
        super().__init__()
        self.stream = stream
        self.total = total
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        self.seconds.append(seconds)
        values = _metric_values(logs)
        keys = [k for k in HISTORY_COLUMNS[1:] if k in values] + sorted(
            set(values) - set(HISTORY_COLUMNS)
        )
        metrics = "  ".join(f"{k} {values[k]:.4f}" for k in keys)
        total = self.total or (self.params.get("epochs") if self.params else None)
        print(
            f"epoch {epoch + 1}{f'/{total}' if total else ''}: {seconds:.2f} s  {metrics}",
            file=self.stream or sys.stdout,
            flush=True,
        )


class AtomicCSVLogger(keras.callbacks.Callback):
    """``CSVLogger``'s columns, the whole file rewritten atomically after each good epoch.

    Epochs are numbered from 1, as on the console. ``rows``: earlier history
    to keep in front (when training goes on from a checkpoint). Epochs that
    are not good (see :func:`is_good_epoch`) are not written, so the file
    always matches the last good checkpoint.
    """

    def __init__(self, path: str | Path, rows=()):
        super().__init__()
        self.path = Path(path)
        self.rows = [dict(r) for r in rows]

    def on_epoch_end(self, epoch, logs=None):
        if not is_good_epoch(self.model, logs):
            return
        self.rows = [r for r in self.rows if r["epoch"] <= epoch]
        self.rows.append({"epoch": epoch + 1, **_metric_values(logs)})
        write_history(self.path, self.rows)


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """Save the model to ``path`` atomically after each good epoch.

    The stored state records ``epochs_done`` (epochs numbered from 1: the
    epoch just ended), this epoch's metrics, and whatever ``state`` holds
    (e.g. the training settings).
    """

    def __init__(self, path: str | Path, state: dict | None = None):
        super().__init__()
        self.path = Path(path)
        self.state = dict(state or {})
        self.last_saved_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        if not is_good_epoch(self.model, logs):
            return
        save_vae(
            self.model,
            self.path,
            {**self.state, "epochs_done": epoch + 1, "metrics": _metric_values(logs)},
        )
        self.last_saved_epoch = epoch + 1


def training_callbacks(
    out_dir: str | Path,
    history_rows=(),
    state: dict | None = None,
    stream: TextIO | None = None,
    total_epochs: int | None = None,
) -> tuple[list[keras.callbacks.Callback], StopOnNaN]:
    """The callbacks of a training run that writes ``out_dir/model.keras`` and ``out_dir/history.csv``.

    Returns ``(callbacks, stop_on_nan)``; after ``fit``, check
    ``stop_on_nan.stopped`` and raise ``stop_on_nan.error(...)``. Keras's
    progress bar (shown as ``fit``'s ``verbose`` says) is in the list, ahead
    of the timing line, so that it finishes its line before the timer prints.
    ``total_epochs``: the run's last epoch, for the timing line.
    """
    out_dir = Path(out_dir)
    stop = StopOnNaN()
    progbar = keras.callbacks.ProgbarLogger()
    progbar.async_safe = True  # Keras's own progress bar, added by fit, is dispatched the same way
    callbacks = [
        stop,
        progbar,
        EpochTimer(stream, total_epochs),
        AtomicCSVLogger(out_dir / HISTORY_NAME, history_rows),
        AtomicModelCheckpoint(out_dir / CHECKPOINT_NAME, state),
    ]
    return callbacks, stop


__all__ = [
    "StopOnNaN",
    "EpochTimer",
    "AtomicCSVLogger",
    "AtomicModelCheckpoint",
    "training_callbacks",
    "nonfinite_metrics",
    "nonfinite_weights",
    "is_good_epoch",
]
