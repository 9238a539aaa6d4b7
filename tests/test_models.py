import math

import keras
import numpy as np
import pytest
import torch

from vae_course.data import DataError
from vae_course.models import VAE, ELBOMetrics, build_decoder, build_encoder, build_vae


def test_default_models_are_the_sources():
    enc, dec = build_encoder(), build_decoder()
    assert enc.count_params() == 666_628
    assert dec.count_params() == 666_384
    x = torch.rand(5, 28, 28)
    z_mean, z_log_var = enc(x)
    assert tuple(z_mean.shape) == (5, 2) and tuple(z_log_var.shape) == (5, 2)
    out = dec(torch.randn(5, 2)).detach()
    assert tuple(out.shape) == (5, 28, 28)
    assert float(out.min()) > 0 and float(out.max()) < 1  # sigmoid means


def test_other_sizes():
    enc = build_encoder(latent_dim=50, image_shape=(8, 8), hidden_units=(32,))
    dec = build_decoder(
        latent_dim=50, image_shape=(8, 8), hidden_units=(32,), output_activation=None
    )
    assert enc.count_params() == (64 * 32 + 32) + (32 * 100 + 100)
    assert tuple(dec(torch.randn(3, 50)).shape) == (3, 8, 8)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "2"])
def test_bad_latent_dim(bad):
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        build_encoder(latent_dim=bad)
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        build_decoder(latent_dim=bad)


def test_bad_vae_arguments():
    enc, dec = build_encoder(), build_decoder()
    with pytest.raises(ValueError, match="likelihood must be one of .*'poisson'"):
        VAE(enc, dec, likelihood="poisson")
    with pytest.raises(ValueError, match="x_std must be a positive number"):
        VAE(enc, dec, x_std=0)
    with pytest.raises(ValueError, match="num_mc_samples must be a positive integer"):
        VAE(enc, dec, num_mc_samples=0)


def test_losses_are_per_example_and_consistent():
    vae = build_vae(num_mc_samples=3)
    x = torch.rand(6, 28, 28)
    loss, nll, kl = vae.compute_losses(x)
    assert tuple(loss.shape) == (6,)
    torch.testing.assert_close(loss, nll + kl)
    assert torch.all(kl >= 0)


def test_elbo_metrics_average_over_examples():
    m = ELBOMetrics()
    m.update_state(torch.tensor([1.0, 2.0]), torch.tensor([0.5, 1.5]), torch.tensor([0.5, 0.5]))
    m.update_state(torch.tensor([4.0]), torch.tensor([3.0]), torch.tensor([1.0]))
    r = {k: float(v) for k, v in m.result().items()}
    assert r == pytest.approx({"loss": 7 / 3, "nll": 5 / 3, "kl": 2 / 3})
    m.reset_state()
    assert float(m.result()["loss"]) == 0.0


def test_training_lowers_the_loss(mnist_float):
    (x_train, y_train), (x_test, _) = mnist_float
    keras.utils.set_random_seed(0)
    vae = build_vae()
    vae.compile(optimizer="adam")
    before = vae.evaluate(x_test[:1000], batch_size=250, verbose=0, return_dict=True)["loss"]
    hist = vae.fit(
        x_train[:3000],
        y_train[:3000],
        epochs=2,
        batch_size=64,
        verbose=0,
        validation_data=(x_test[:1000],),
    )
    h = hist.history
    assert set(h) == {"loss", "nll", "kl", "val_loss", "val_nll", "val_kl"}
    assert h["loss"][1] < h["loss"][0]
    assert h["val_loss"][-1] < before - 100  # from ~540 nats untrained to ~270
    for a, b, c in zip(h["loss"], h["nll"], h["kl"]):
        assert a == pytest.approx(b + c, rel=1e-5)


def test_bernoulli_vae_trains_on_binary_images(mnist_float):
    (x_train, _), _ = mnist_float
    from vae_course.data import binarize

    xb = binarize(x_train[:1000], seed=0)
    keras.utils.set_random_seed(0)
    vae = build_vae(latent_dim=3, likelihood="bernoulli")
    vae.compile(optimizer="adam")
    h = vae.fit(xb, epochs=2, batch_size=100, verbose=0).history
    assert all(math.isfinite(v) for v in h["loss"]) and h["loss"][1] < h["loss"][0]
    probs = vae.decode(np.zeros((2, 3), np.float32)).detach()
    assert float(probs.min()) >= 0 and float(probs.max()) <= 1


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((10, 28, 28), np.uint8), "uint8 pixels"),
        (np.full((10, 28, 28), 3.0, np.float32), "divide by 255"),
        (np.full((10, 28, 28), np.nan, np.float32), "NaN or infinite"),
        (np.zeros((10, 32, 32), np.float32), r"model takes \(28, 28\)"),
    ],
)
def test_fit_rejects_bad_data(x, message):
    vae = build_vae()
    vae.compile(optimizer="adam")
    with pytest.raises(DataError, match=message):
        vae.fit(x, epochs=1, verbose=0)
    with pytest.raises(DataError, match=message):
        vae.fit(np.zeros((10, 28, 28), np.float32), epochs=1, verbose=0, validation_data=(x,))


def test_save_and_load_round_trip(tmp_path):
    vae = build_vae(latent_dim=3, likelihood="bernoulli")
    path = tmp_path / "m.keras"
    vae.save(path)
    back = keras.saving.load_model(path)
    assert isinstance(back, VAE) and back.likelihood == "bernoulli" and back.latent_dim == 3
    x, z = torch.rand(4, 28, 28), torch.randn(4, 3)
    for a, b in zip(vae.encoder(x), back.encoder(x)):
        assert torch.equal(a, b)
    assert torch.equal(vae.decoder(z), back.decoder(z))


@pytest.mark.parametrize("num_mc_samples", [1, 3])
def test_kl_options_of_the_loss(num_mc_samples):
    """kl="mc" and "stl" give log q(z) - log p(z) at the loss's own draws; at q = p the value is 0
    for all three, the "mc" gradient still carries the score term, and "stl"'s gradient is exactly 0."""
    import torch

    vaes = {}
    for kl in ("analytic", "mc", "stl"):
        keras.utils.set_random_seed(0)
        vaes[kl] = build_vae(
            latent_dim=3,
            image_shape=(2, 2),
            hidden_units=(4,),
            num_mc_samples=num_mc_samples,
            kl=kl,
        )
    x = np.random.default_rng(0).random((5, 2, 2)).astype(np.float32)
    # Away from the prior: "mc" and "stl" agree in value, and average to the analytic KL.
    keras.utils.set_random_seed(1)
    _, _, kl_mc = vaes["mc"].compute_losses(x)
    keras.utils.set_random_seed(1)
    _, _, kl_stl = vaes["stl"].compute_losses(x)
    torch.testing.assert_close(kl_mc, kl_stl)
    _, _, kl_exact = vaes["analytic"].compute_losses(x)
    draws = []
    for seed in range(400):
        keras.utils.set_random_seed(seed)
        draws.append(keras.ops.convert_to_numpy(vaes["mc"].compute_losses(x)[2]))
    draws = np.array(draws)
    se = draws.std(0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(0) - keras.ops.convert_to_numpy(kl_exact)) < 4 * se + 1e-6)
    # At q = p (encoder outputs mean 0, log-variance 0): KL = 0; gradients in the encoder's bias.
    grads = {}
    for kl, vae in vaes.items():
        layer = vae.encoder.get_layer("z_params")
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
        vae.zero_grad()
        _, _, kl_value = vae.compute_losses(x)
        torch.testing.assert_close(kl_value, torch.zeros_like(kl_value), atol=1e-6, rtol=0)
        kl_value.sum().backward()
        grads[kl] = layer.bias.value.grad.detach().abs().max().item()
    assert grads["analytic"] == 0.0 and grads["stl"] == 0.0
    assert grads["mc"] > 0.1, "the total-derivative estimate keeps the score term's noise at q = p"


def test_kl_option_round_trips_and_rejects_bad_values(tmp_path):
    vae = build_vae(latent_dim=2, image_shape=(2, 2), hidden_units=(4,), kl="stl")
    assert VAE.from_config(vae.get_config()).kl == "stl"
    with pytest.raises(ValueError, match="kl must be one of"):
        build_vae(latent_dim=2, image_shape=(2, 2), hidden_units=(4,), kl="sampled")
