"""fit_local_posterior, elbo_given_posterior, active_units, paired_difference and
iwae_bound(posterior=...) against the linear-Gaussian model, where every answer is exact.

z ~ N(0, 1), x | z ~ N(w z + b, s^2) (one pixel): vae_course.linear_gaussian.LinearGaussian
gives log p(x), the posterior and the ELBO of any Gaussian q in closed form. The
posterior is Gaussian with a mean linear in x, so a linear encoder can be exact
(amortization gap 0) and the best Gaussian q per image is exact (approximation gap 0).
"""

import math

import keras
import numpy as np
import pytest
import torch

from vae_course.evaluate import (
    active_units,
    elbo_given_posterior,
    fit_local_posterior,
    iwae_bound,
    mean_and_se,
    paired_difference,
)
from vae_course.linear_gaussian import LinearGaussian
from vae_course.models import VAE, build_decoder, build_encoder, build_vae
from vae_course.train import train_vae_dynamic

MODEL = LinearGaussian(w=1.5, b=0.3, s=0.8)


def linear_vae(exact=True, latent_dim=1):
    """A VAE computing MODEL; its linear encoder is the exact posterior, or a wrong one."""
    enc = build_encoder(latent_dim=latent_dim, image_shape=(1, 1), hidden_units=())
    dec = build_decoder(
        latent_dim=latent_dim, image_shape=(1, 1), hidden_units=(), output_activation=None
    )
    w_dec = np.zeros((latent_dim, 1), np.float32)
    w_dec[0, 0] = MODEL.w
    dec.get_layer("pixels").set_weights([w_dec, np.array([MODEL.b], np.float32)])
    total = MODEL.w**2 + MODEL.s**2
    a, c, log_var = MODEL.w / total, -MODEL.w * MODEL.b / total, math.log(MODEL.s**2 / total)
    if not exact:
        a, c, log_var = 0.3 * a, c + 0.7, log_var + 1.2
    kernel = np.zeros((1, 2 * latent_dim), np.float32)
    bias = np.zeros(2 * latent_dim, np.float32)
    kernel[0, 0], bias[0], bias[latent_dim] = a, c, log_var  # other latents: mean 0, log var 0
    enc.get_layer("z_params").set_weights([kernel, bias])
    return VAE(enc, dec, likelihood="gaussian", x_std=MODEL.s)


@pytest.fixture
def x():
    # pixel values in [0, 1], as the VAE's input check wants
    return np.random.default_rng(0).random((40, 1, 1)).astype(np.float32)


def exact_elbo(x, posterior):
    m, lv = (torch.as_tensor(np.asarray(p, np.float64)[:, 0]) for p in posterior)
    return MODEL.elbo(torch.as_tensor(x.reshape(-1), dtype=torch.float64), m, torch.exp(lv)).numpy()


def encoder_posterior(vae, x):
    m, lv = vae.encode(x)
    return keras.ops.convert_to_numpy(m), keras.ops.convert_to_numpy(lv)


def test_local_fit_reaches_the_exact_posterior_approximation_gap_0(x):
    vae = linear_vae(exact=False)
    q = fit_local_posterior(vae, x, steps=400, learning_rate=0.05, num_samples=20, seed=1)
    post_mean, post_var = MODEL.posterior(torch.as_tensor(x.reshape(-1), dtype=torch.float64))
    # within a tenth of the posterior sd (0.47): the last noisy Adam steps leave that much
    np.testing.assert_allclose(q[0][:, 0], post_mean.numpy(), atol=0.05)
    np.testing.assert_allclose(np.exp(q[1][:, 0]), float(post_var), rtol=0.1)
    log_px = MODEL.log_marginal(torch.as_tensor(x.reshape(-1), dtype=torch.float64)).numpy()
    approximation_gap = log_px - exact_elbo(x, q)
    assert np.all(approximation_gap >= 0) and approximation_gap.mean() < 2e-3
    # the wrong encoder's own gap was large: the fit did the work
    assert (log_px - exact_elbo(x, encoder_posterior(vae, x))).mean() > 0.3


def test_exact_linear_encoder_has_amortization_gap_0(x):
    vae = linear_vae(exact=True)
    q_enc = encoder_posterior(vae, x)
    q_star = fit_local_posterior(vae, x, steps=200, learning_rate=0.02, num_samples=20, seed=2)
    amortization_gap = exact_elbo(x, q_star) - exact_elbo(x, q_enc)
    assert abs(amortization_gap.mean()) < 2e-3


def test_elbo_given_posterior_is_unbiased_and_paired(x):
    vae = linear_vae(exact=False)
    q = encoder_posterior(vae, x)
    est = elbo_given_posterior(vae, x, q, num_samples=4000, seed=3)
    # log p(x|z) has a sd of about 2 nats under this q: se 0.03 per image at S = 4000, 0.005 for the mean
    np.testing.assert_allclose(est, exact_elbo(x, q), atol=0.15)
    assert abs(est.mean() - exact_elbo(x, q).mean()) < 0.02
    # same seed, same eps: the estimate is a deterministic function of (x, q, seed)
    np.testing.assert_array_equal(est, elbo_given_posterior(vae, x, q, num_samples=4000, seed=3))


def test_iwae_with_the_exact_posterior_as_proposal_is_log_px(x):
    vae = linear_vae(exact=False)
    total = MODEL.w**2 + MODEL.s**2
    xs = x.reshape(-1).astype(np.float64)
    exact_q = (
        (MODEL.w * (xs - MODEL.b) / total)[:, None],
        np.full((len(xs), 1), math.log(MODEL.s**2 / total)),
    )
    log_px = MODEL.log_marginal(torch.as_tensor(xs)).numpy()
    for k in (1, 50):
        np.testing.assert_allclose(iwae_bound(vae, x, k, posterior=exact_q), log_px, atol=2e-4)
    # the encoder's own (wrong) proposal gives a bound below it
    assert (log_px - iwae_bound(vae, x, 1)).mean() > 0.3


def test_iwae_rejects_a_bad_posterior(x):
    with pytest.raises(ValueError, match=r"posterior z_mean: shape \(3, 1\), expected \(40, 1\)"):
        iwae_bound(linear_vae(), x, 5, posterior=(np.zeros((3, 1)), np.zeros((3, 1))))


def test_active_units_is_the_variance_of_the_encoder_mean(x):
    vae = linear_vae(exact=True, latent_dim=3)  # latent 0 reads x, latents 1 and 2 ignore it
    activity, n_active = active_units(vae, x)
    total = MODEL.w**2 + MODEL.s**2
    np.testing.assert_allclose(
        activity[0], np.var(x.reshape(-1) * MODEL.w / total, ddof=1), rtol=1e-5
    )
    np.testing.assert_allclose(activity[1:], 0.0, atol=1e-12)
    assert n_active == (activity[0] > 0.01)
    assert active_units(vae, x, threshold=0.0)[1] == 1


def test_paired_difference_matches_a_t_statistic():
    rng = np.random.default_rng(4)
    common = rng.normal(0, 10, 50)
    a, b = common + rng.normal(0.5, 0.1, 50), common
    mean, se = paired_difference(a, b)
    d = a - b
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    assert abs(mean / se - t) < 1e-9 and abs(mean - 0.5) < 0.1
    # pairing removes the shared spread: the unpaired se is about 100 times larger
    assert mean_and_se(a)[1] > 30 * se
    with pytest.raises(ValueError, match="the same images in the same order"):
        paired_difference(a, b[:-1])


def test_dynamic_binarization_draws_new_pixels_every_epoch(monkeypatch):
    from vae_course import train

    seen = []
    real = train.binarize
    monkeypatch.setattr(train, "binarize", lambda x, seed: seen.append(real(x, seed)) or seen[-1])
    x = np.random.default_rng(5).random((64, 4, 4)).astype(np.float32)
    vae = build_vae(
        latent_dim=2,
        likelihood="bernoulli",
        image_shape=(4, 4),
        hidden_units=(8,),
        activation="tanh",
    )
    history = train_vae_dynamic(vae, x, epochs=3, batch_size=32, seed=0, verbose=0)
    assert len(history["loss"]) == 3 and len(seen) == 3
    assert not np.array_equal(seen[0], seen[1]) and not np.array_equal(seen[1], seen[2])
    for draw in seen:  # each draw is a binarization of x
        assert set(np.unique(draw)) <= {0.0, 1.0} and abs(draw.mean() - x.mean()) < 0.05


def test_tanh_option_builds_burdas_architecture():
    vae = build_vae(
        latent_dim=50, likelihood="bernoulli", hidden_units=(200, 200), activation="tanh"
    )
    acts = {
        layer.name: layer.activation.__name__
        for layer in vae.encoder.layers + vae.decoder.layers
        if hasattr(layer, "activation")
    }
    assert acts["enc_dense_0"] == acts["dec_dense_1"] == "tanh"
    # 784-200-200-(2x50) and 50-200-200-784
    assert vae.encoder.count_params() == 784 * 200 + 200 + 200 * 200 + 200 + 200 * 100 + 100
    assert vae.decoder.count_params() == 50 * 200 + 200 + 200 * 200 + 200 + 200 * 784 + 784


def test_warmup_weights_the_kl_from_0_to_1(tmp_path):
    from vae_course.tools.checkpoints import load_vae, save_vae
    from vae_course.train import WarmupVAE, train_vae

    base = build_vae(latent_dim=2, likelihood="bernoulli", image_shape=(4, 4), hidden_units=(8,))
    vae = WarmupVAE(base.encoder, base.decoder, warmup_steps=4, likelihood="bernoulli")
    assert vae.beta() == 0.0
    x = (np.random.default_rng(6).random((64, 4, 4)) < 0.5).astype(np.float32)
    train_vae(vae, x, epochs=1, batch_size=32, seed=0, verbose=0)  # 2 steps: beta 0, then 1/4
    assert vae.beta() == 0.5
    train_vae(vae, x, epochs=2, batch_size=32, seed=None, verbose=0, initial_epoch=1)
    assert vae.beta() == 1.0
    plain = vae.as_vae()  # an ordinary VAE with the trained weights, which the cache can hold
    loaded = load_vae(save_vae(plain, tmp_path / "warm.keras"))
    assert type(loaded) is VAE
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded.encode(x[:5])[0]),
        keras.ops.convert_to_numpy(vae.encode(x[:5])[0]),
        rtol=1e-6,
    )


def test_local_fit_from_a_given_start_and_bad_starts(x):
    """``start`` replaces the encoder's output as the fit's first point: one Adam step of 1e-4
    stays within 1e-3 of it; a wrong shape, a non-pair or a non-finite start is named."""
    vae = linear_vae(exact=False)
    n = len(x)
    start = (np.full((n, 1), 2.0, np.float32), np.full((n, 1), -1.0, np.float32))
    q = fit_local_posterior(vae, x, steps=1, learning_rate=1e-4, start=start)
    np.testing.assert_allclose(q[0], start[0], atol=1e-3)
    np.testing.assert_allclose(q[1], start[1], atol=1e-3)
    q_enc = fit_local_posterior(vae, x, steps=1, learning_rate=1e-4)
    assert np.abs(q_enc[0] - start[0]).max() > 0.1  # without it, the encoder's output
    # from that start a full fit still reaches the exact posterior
    q = fit_local_posterior(
        vae, x, steps=400, learning_rate=0.05, num_samples=20, seed=1, start=start
    )
    post_mean, _ = MODEL.posterior(torch.as_tensor(x.reshape(-1), dtype=torch.float64))
    np.testing.assert_allclose(q[0][:, 0], post_mean.numpy(), atol=0.05)
    with pytest.raises(ValueError, match=r"start's z_log_var has shape \(3, 1\), expected"):
        fit_local_posterior(vae, x, steps=1, start=(start[0], start[1][:3]))
    with pytest.raises(ValueError, match="start must be a pair"):
        fit_local_posterior(vae, x, steps=1, start=start[0])
    with pytest.raises(ValueError, match="non-finite"):
        fit_local_posterior(vae, x, steps=1, start=(start[0] * np.nan, start[1]))
