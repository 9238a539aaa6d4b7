"""The IWAE bound against a model whose log p(x) is known exactly.

A linear-Gaussian VAE: z ~ N(0, 1), x | z ~ N(z w + b, s^2 I) in D = 4 dimensions,
so p(x) = N(b, w w^T + s^2 I). With the encoder set to the exact posterior every
importance weight equals p(x), and the bound is exact for every k.
"""

import math

import numpy as np
import pytest
import torch

from vae_course.evaluate import iwae_bound, negative_elbo
from vae_course.models import VAE, build_decoder, build_encoder

S = 0.5
W = np.array([[0.8, -0.4, 0.3, 0.6]], np.float32)
B = np.array([0.5, 0.4, 0.6, 0.5], np.float32)


def linear_vae(exact_posterior=True):
    enc = build_encoder(latent_dim=1, image_shape=(2, 2), hidden_units=())
    dec = build_decoder(latent_dim=1, image_shape=(2, 2), hidden_units=(), output_activation=None)
    dec.get_layer("pixels").set_weights([W, B])
    var = 1.0 / (1.0 + float((W**2).sum()) / S**2)
    kernel = np.zeros((4, 2), np.float32)
    kernel[:, 0] = var * W[0] / S**2
    bias = np.array([-var * float(W[0] @ B) / S**2, math.log(var)], np.float32)
    if not exact_posterior:
        kernel[:, 0] *= 0.2
        bias += np.array([0.8, 1.5], np.float32)
    enc.get_layer("z_params").set_weights([kernel, bias])
    return VAE(enc, dec, likelihood="gaussian", x_std=S)


def exact_log_px(x):
    cov = torch.tensor(W.T @ W + S**2 * np.eye(4), dtype=torch.float64)
    p = torch.distributions.MultivariateNormal(torch.tensor(B, dtype=torch.float64), cov)
    return p.log_prob(torch.tensor(x.reshape(len(x), 4), dtype=torch.float64)).numpy()


@pytest.fixture
def x():
    return np.random.default_rng(0).random((20, 2, 2)).astype(np.float32)


@pytest.mark.parametrize("k", [1, 7, 500])
def test_exact_posterior_gives_log_px_for_every_k(x, k):
    np.testing.assert_allclose(iwae_bound(linear_vae(), x, k), exact_log_px(x), atol=2e-4)


def test_bound_rises_with_k_towards_log_px(x):
    vae = linear_vae(exact_posterior=False)
    x = np.concatenate([x] * 10)
    truth = exact_log_px(x).mean()
    bounds = [iwae_bound(vae, x, k, seed=1).mean() for k in (1, 10, 100, 5000)]
    assert bounds[0] < bounds[1] < bounds[2]
    assert truth - bounds[0] > 0.3  # a visible gap at k = 1
    # one draw of L_5000 averaged over 200 images: within its Monte Carlo noise of log p(x)
    assert abs(truth - bounds[3]) < 0.005


def test_chunking_does_not_change_the_distribution(x):
    vae = linear_vae(exact_posterior=False)
    a = iwae_bound(vae, x, 2000, max_rows=20000, seed=3).mean()
    b = iwae_bound(vae, x, 2000, max_rows=7, seed=4).mean()  # chunks of 1 sample
    assert abs(a - b) < 0.01


def test_k1_matches_the_elbo_on_average(x):
    vae = linear_vae(exact_posterior=False)
    many = np.concatenate([x] * 200)
    elbo_mc = iwae_bound(vae, many, 1, seed=5)  # MC KL
    elbo_analytic = -negative_elbo(vae, many, seed=5)  # analytic KL
    stderr = math.hypot(elbo_mc.std(), elbo_analytic.std()) / math.sqrt(len(many))
    assert abs(elbo_mc.mean() - elbo_analytic.mean()) < 4 * stderr


def test_bad_arguments(x):
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        iwae_bound(linear_vae(), x, 0)
    with pytest.raises(ValueError, match="uint8 pixels"):
        iwae_bound(linear_vae(), (x * 255).astype(np.uint8), 5)
