"""Checkpoints and the training history, written atomically (see :mod:`vae_course.tools.atomic`).

* :func:`save_vae` / :func:`load_vae`: a VAE as a Keras ``.keras`` file
  (config, weights and optimizer state), plus a small ``vae_course.json``
  entry inside the archive that records how many epochs it has trained and
  with which settings, so that ``train --resume`` can count epochs on.
  ``load_vae`` checks the file first and raises :class:`CheckpointError`,
  naming the file, what was expected and the fix, for a missing, truncated
  or corrupt file or one that holds something other than a course VAE.
* :func:`write_history` / :func:`read_history`: ``history.csv`` with the
  columns of Keras's ``CSVLogger`` (``epoch``, then ``loss, nll, kl,
  val_loss, val_nll, val_kl``), epochs numbered from 1 as the console
  numbers them; floats are written with ``repr``, so equal losses give
  equal text.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

import keras

from ..errors import CheckpointError
from .atomic import atomic_path

CHECKPOINT_NAME = "model.keras"
HISTORY_NAME = "history.csv"
HISTORY_COLUMNS = ("epoch", "loss", "nll", "kl", "val_loss", "val_nll", "val_kl")
STATE_ENTRY = "vae_course.json"
_VAE_NAMES = (
    "vae_course>VAE",
    "VAE",
    "vae_course>LearnedScaleVAE",
    "LearnedScaleVAE",
    "vae_course>IWAE",
    "IWAE",
)
PathLike = str | os.PathLike

_RETRAIN = "Fix: train a model with `python -m vae_course train --out DIR` and pass DIR/model.keras"


# ----------------------------------------------------------------- checkpoints
def save_vae(vae: keras.Model, path: PathLike, state: dict | None = None) -> Path:
    """Save ``vae`` to ``path`` (a ``.keras`` file) atomically.

    ``state`` (a JSON-able dict, e.g. ``{"epochs_done": 3, ...}``) is stored
    as ``vae_course.json`` inside the archive; Keras ignores that entry.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise CheckpointError(
            f"checkpoint {path}: the name must end in .keras (Keras's format). Fix: e.g. {path.with_suffix('.keras')}."
        )
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
        raise CheckpointError(
            f"checkpoint {path}: no such file. Expected a .keras file written by training. {_RETRAIN}."
        )
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
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        ValueError,
        KeyError,
    ) as exc:
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


def read_state(path: PathLike) -> dict:
    """The ``vae_course.json`` dict stored in a checkpoint by :func:`save_vae` ({} if none)."""
    path = _resolve(path)
    names, _ = _inspect(path)
    if STATE_ENTRY not in names:
        return {}
    with zipfile.ZipFile(path) as zf:
        try:
            return json.loads(zf.read(STATE_ENTRY))
        except ValueError as exc:
            raise CheckpointError(
                f"checkpoint {path}: its {STATE_ENTRY} entry is not valid JSON ({exc}). {_RETRAIN}."
            ) from exc


def load_vae(path: PathLike, compile: bool = True) -> keras.Model:
    """Load a course VAE from ``path`` (a ``.keras`` file, or a folder holding ``model.keras``).

    With ``compile=True`` the optimizer and its state come back too, so that
    training can go on. Raises :class:`CheckpointError` (a ``ValueError``)
    for a missing, truncated or corrupt file or one that is not a course VAE.
    """
    from .. import decoder_scale, iwae_training, models  # noqa: F401  (registers VAE & co. with Keras)

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
            f"checkpoint {path}: Keras could not load it ({type(exc).__name__}: {str(exc)[:300]}). {_RETRAIN}."
        ) from exc
    if not isinstance(vae, models.VAE):
        raise CheckpointError(
            f"checkpoint {path}: loaded a {type(vae).__name__}, not a vae_course VAE. {_RETRAIN}."
        )
    return vae


def resume_state(path: PathLike) -> tuple[keras.Model, Path, int, dict, list[dict]]:
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
    rows = [r for r in rows if r["epoch"] <= epochs_done]  # epochs are numbered from 1
    return vae, checkpoint, epochs_done, dict(state.get("settings", {})), rows


# --------------------------------------------------------------------- history
def _fmt(value):
    if isinstance(value, str):
        return value
    return repr(float(value))


def write_history(path: PathLike, rows: Iterable[dict]) -> Path:
    """Write ``rows`` (dicts with an ``epoch`` and metrics) to ``path`` as CSV, atomically.

    Columns: :data:`HISTORY_COLUMNS`, then any other keys (sorted); a value
    that a row lacks is written ``NA``, as Keras's ``CSVLogger`` does.
    """
    extra = sorted({k for r in rows for k in r} - set(HISTORY_COLUMNS))
    columns = list(HISTORY_COLUMNS) + extra
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for r in rows:
            writer.writerow(
                [str(int(r["epoch"])) if c == "epoch" else _fmt(r.get(c, "NA")) for c in columns]
            )
    return Path(path)


def read_history(path: PathLike) -> list[dict]:
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
            raise CheckpointError(
                f"history {path}: line {line}: {exc}. Fix: delete or rename it to start a new history."
            ) from exc
        rows.append(row)
    return rows


def history_dict(rows: list[dict]) -> dict[str, list[float]]:
    """Rows (as :func:`read_history` returns them) -> {column: [values...]}, like ``History.history``."""
    keys = [k for k in HISTORY_COLUMNS if any(k in r for r in rows)]
    keys += sorted({k for r in rows for k in r} - set(keys))
    return {k: [r.get(k, float("nan")) for r in rows] for k in keys}


__all__ = [
    "CHECKPOINT_NAME",
    "HISTORY_NAME",
    "HISTORY_COLUMNS",
    "CheckpointError",
    "save_vae",
    "load_vae",
    "read_state",
    "resume_state",
    "write_history",
    "read_history",
    "history_dict",
]
