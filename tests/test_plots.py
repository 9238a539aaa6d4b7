"""vae_course.plots: each function returns a labelled Figure and shows nothing; tools.atomic.save_figure is atomic."""

import matplotlib

matplotlib.use("Agg")

import keras
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import vae_course  # noqa: F401
from vae_course import plots
from vae_course.data import DataError
from vae_course.models import build_vae
from vae_course.tools.atomic import save_figure

SHAPE = (8, 8)


@pytest.fixture(scope="module")
def vae():
    keras.utils.set_random_seed(0)
    return build_vae(latent_dim=2, image_shape=SHAPE, hidden_units=(16,))


@pytest.fixture(autouse=True)
def close_figures(monkeypatch):
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(1))
    yield
    assert not shown, "a plots function called plt.show()"
    plt.close("all")


def images(n=6, seed=0):
    return np.random.default_rng(seed).random((n,) + SHAPE, dtype=np.float32)


def test_latent_grid_is_the_inverse_normal_cdf_of_a_uniform_grid():
    z = plots.latent_grid(4)
    assert z.shape == (16, 2) and z.dtype == np.float32
    u = (np.arange(4) + 0.5) / 4
    q = torch.special.ndtri(torch.tensor(u)).numpy()
    np.testing.assert_allclose(z[:4, 0], q, rtol=1e-6)  # first row: z1 rising
    np.testing.assert_allclose(
        z[::4, 1], q[::-1], rtol=1e-6
    )  # first column: z2 falling (top row is high z2)
    np.testing.assert_allclose(z[:4, 1], q[-1])
    assert np.isfinite(plots.latent_grid(20)).all()
    z5 = plots.latent_grid(3, latent_dim=5)
    assert z5.shape == (9, 5) and (z5[:, 2:] == 0).all()
    for bad in ((0, 2), (3, 1), (2.5, 2)):
        with pytest.raises(DataError):
            plots.latent_grid(*bad)


def test_plot_history_has_three_labelled_panels_with_train_and_val():
    history = {
        "loss": [3.0, 2.0],
        "nll": [2.5, 1.8],
        "kl": [0.5, 0.2],
        "val_loss": [2.9, 2.1],
        "val_nll": [2.4, 1.9],
        "val_kl": [0.5, 0.2],
    }
    fig = plots.plot_history(history)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    for ax, key in zip(fig.axes, ("loss", "nll", "kl")):
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel() and ax.get_title()
        assert [line.get_label() for line in ax.get_lines()] == ["training", "validation"]
        np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [1, 2])
        np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), history[f"val_{key}"])
    # an "epoch" key (history.csv's column, from 1; a resumed run counts on) is the x axis as it is
    fig = plots.plot_history({"epoch": [3, 4], "loss": [1, 2], "nll": [1, 2], "kl": [0, 0]})
    np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_xdata(), [3, 4])
    with pytest.raises(DataError):
        plots.plot_history({"accuracy": [1]})


def test_plot_latent_scatter_with_colour_bar():
    z = np.random.default_rng(0).normal(size=(50, 2))
    fig = plots.plot_latent(z, np.arange(50) % 10)
    ax, bar = fig.axes
    assert ax.get_xlabel().startswith("$z_1$") and ax.get_ylabel().startswith("$z_2$")
    assert bar.get_ylabel() == "digit"
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), z)
    with pytest.raises(DataError):
        plots.plot_latent(z, np.arange(49))


def test_plot_manifold_tiles_decoded_grid(vae):
    fig = plots.plot_manifold(vae, n=5)
    (ax,) = fig.axes
    canvas = ax.get_images()[0].get_array()
    assert canvas.shape == (5 * 8, 5 * 8)
    with torch.no_grad():
        want = keras.ops.convert_to_numpy(vae.decode(plots.latent_grid(5)))
    np.testing.assert_allclose(canvas[:8, 8:16], want[1], rtol=1e-6)  # row 0, column 1
    assert ax.get_xlabel() == "$z_1$" and ax.get_ylabel() == "$z_2$"


def test_plot_images_reconstructions_interpolation(vae):
    x = images(5)
    fig = plots.plot_images(x, n_cols=3, titles=list("abcde"))
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert len(fig.axes) == 6 and len(shown) == 5 and shown[4].get_title() == "e"
    assert len(plots.plot_images(torch.tensor(x.reshape(5, 64))).axes) == 5  # flat tensors are fine
    with pytest.raises(DataError):
        plots.plot_images(x, titles=["only one"])

    fig = plots.plot_reconstructions(x[:3], x[:3] * 0.5)
    assert len(fig.axes) == 6
    assert fig.axes[0].get_ylabel() == "original" and fig.axes[3].get_ylabel() == "reconstruction"

    fig = plots.plot_interpolation(vae, x[0], x[1], steps=4)
    assert (
        len(fig.axes) == 6
        and fig.axes[0].get_title() == "$x_a$"
        and fig.axes[-1].get_title() == "$x_b$"
    )
    with torch.no_grad():
        z_a = keras.ops.convert_to_numpy(vae.encode(x[:1])[0])
        want = keras.ops.convert_to_numpy(vae.decode(z_a))[0]
    np.testing.assert_allclose(fig.axes[1].get_images()[0].get_array(), want, rtol=1e-5)


def test_save_figure_writes_a_png_atomically(tmp_path):
    path = tmp_path / "sub" / "curves.png"
    fig = plots.plot_images(images(2))
    assert save_figure(fig, path) == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("renderer crashed")

    fig.savefig = broken
    with pytest.raises(RuntimeError):
        save_figure(fig, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["curves.png"]
