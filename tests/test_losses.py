"""Every density and KL against torch.distributions on random inputs."""

import math

import keras
import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from vae_course import gaussian, losses


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


def test_kl_std_normal_matches_torch(gen):
    mu = torch.randn(32, 5, generator=gen) * 2
    log_var = torch.randn(32, 5, generator=gen)
    ours = losses.kl_std_normal(mu, log_var)
    q = Independent(Normal(mu, torch.exp(0.5 * log_var)), 1)
    p = Independent(Normal(torch.zeros(5), torch.ones(5)), 1)
    ref = kl_divergence(q, p)
    assert ours.shape == (32,)
    torch.testing.assert_close(ours.cpu(), ref, rtol=1e-5, atol=1e-5)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    assert float(losses.kl_std_normal(np.zeros((1, 3)), np.zeros((1, 3)))[0]) == 0.0
    assert float(losses.kl_std_normal(np.full((1, 3), 0.1), np.zeros((1, 3)))[0]) > 0


@pytest.mark.parametrize("log_std", [math.log(0.5), 0.0, "array"])
def test_gaussian_nll_matches_torch(gen, log_std):
    x = torch.rand(16, 28, 28, generator=gen)
    mean = torch.rand(16, 28, 28, generator=gen)
    if log_std == "array":
        log_std = torch.randn(28, 28, generator=gen) * 0.3
    std = torch.exp(torch.as_tensor(log_std, dtype=torch.float32))
    ref = -Normal(mean, std).log_prob(x).sum(dim=(1, 2))
    ours = losses.gaussian_nll(x, mean, log_std)
    assert ours.shape == (16,)
    torch.testing.assert_close(ours.cpu(), ref, rtol=1e-5, atol=1e-3)


def test_gaussian_nll_is_the_source_formula_with_sigma_half(gen):
    """The source's code: 0.5*((x-mu)/0.5)^2 + log(0.5) + 0.5*log(2 pi), summed: sigma = 0.5."""
    x = torch.rand(8, 28, 28, generator=gen)
    mu = torch.rand(8, 28, 28, generator=gen)
    source = (0.5 * ((x - mu) / 0.5) ** 2 + math.log(0.5) + 0.5 * math.log(2 * math.pi)).sum(
        dim=(1, 2)
    )
    torch.testing.assert_close(losses.gaussian_nll(x, mu, math.log(0.5)).cpu(), source)


def test_gaussian_nll_accepts_numpy():
    x = np.random.default_rng(0).random((4, 3, 2)).astype("float32")
    out = losses.gaussian_nll(x, x, 0.0)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out), np.full(4, 6 * 0.5 * math.log(2 * math.pi)), rtol=1e-6
    )


def test_bernoulli_nll_matches_torch(gen):
    x = (torch.rand(16, 28, 28, generator=gen) > 0.5).float()
    logits = torch.randn(16, 28, 28, generator=gen) * 4
    ref = -Bernoulli(logits=logits).log_prob(x).sum(dim=(1, 2))
    torch.testing.assert_close(losses.bernoulli_nll(x, logits).cpu(), ref, rtol=1e-5, atol=1e-3)


def test_bernoulli_nll_is_finite_and_right_for_extreme_logits():
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    logits = torch.tensor([[100.0, -100.0, -100.0, 100.0]])
    out = losses.bernoulli_nll(x, logits)
    assert torch.isfinite(out).all()
    # two confident right answers (~0 each) and two confident wrong ones (100 nats each)
    torch.testing.assert_close(out.cpu(), torch.tensor([200.0]))


def test_bernoulli_nll_on_grey_pixels_is_the_cross_entropy(gen):
    x = torch.rand(4, 10, generator=gen)
    logits = torch.randn(4, 10, generator=gen)
    p = torch.sigmoid(logits)
    ref = -(x * torch.log(p) + (1 - x) * torch.log1p(-p)).sum(-1)
    torch.testing.assert_close(losses.bernoulli_nll(x, logits).cpu(), ref, rtol=1e-5, atol=1e-5)


def test_log_probs_match_torch(gen):
    z = torch.randn(7, 3, generator=gen)
    mean, log_var = torch.randn(7, 3, generator=gen), torch.randn(7, 3, generator=gen)
    torch.testing.assert_close(
        gaussian.std_normal_log_prob(z).cpu(),
        Independent(Normal(torch.zeros(3), 1.0), 1).log_prob(z),
    )
    torch.testing.assert_close(
        gaussian.diag_gaussian_log_prob(z, mean, log_var).cpu(),
        Independent(Normal(mean, torch.exp(0.5 * log_var)), 1).log_prob(z),
    )
