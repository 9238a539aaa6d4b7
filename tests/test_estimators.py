"""The estimators against closed forms and torch.distributions, seeded."""

import math

import pytest
import torch

from vae_course import gaussian, gradients, montecarlo

K = 3.0  # f(x) = (x - K)^2, x ~ N(mu, sigma^2): d/dmu = 2(mu - K), d/dsigma = 2 sigma


def f(x):
    return ((x - K) ** 2).sum(-1)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(7)


def within(estimate: montecarlo.MCEstimate, truth, n_se=4.0):
    return torch.all(
        (estimate.mean - torch.as_tensor(truth, dtype=estimate.mean.dtype)).abs()
        <= n_se * estimate.stderr
    )


def test_mc_estimate_standard_error():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    e = montecarlo.mc_estimate(values)
    assert e.mean.item() == 2.5
    assert math.isclose(e.stderr.item(), values.std().item() / 2, rel_tol=1e-7)
    with pytest.raises(ValueError, match="at least 2 draws"):
        montecarlo.mc_estimate(torch.tensor([1.0]))


def test_monte_carlo_of_a_known_expectation(gen):
    # E[X^2] = mu^2 + sigma^2 for X ~ N(mu, sigma^2)
    sampler = lambda n, g: gradients.sample_gaussian(
        torch.tensor([1.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64), n, g
    )
    e = montecarlo.monte_carlo(lambda x: (x**2).sum(-1), sampler, 100_000, gen)
    assert within(e, 5.0)


@pytest.mark.parametrize("mu, sigma", [(1.0, 2.0), (3.5, 0.5), (-1.0, 1.0)])
def test_score_function_is_unbiased(gen, mu, sigma):
    g = gradients.score_function_grads(
        f,
        torch.tensor([mu], dtype=torch.float64),
        torch.tensor([sigma], dtype=torch.float64),
        200_000,
        generator=gen,
    )
    assert within(montecarlo.mc_estimate(g["mean"]), [2 * (mu - K)])
    assert within(montecarlo.mc_estimate(g["scale"]), [2 * sigma])


@pytest.mark.parametrize("mu, sigma", [(1.0, 2.0), (3.5, 0.5), (-1.0, 1.0)])
def test_reparameterization_is_unbiased(gen, mu, sigma):
    g = gradients.reparam_grads(
        f,
        torch.tensor([mu], dtype=torch.float64),
        torch.tensor([sigma], dtype=torch.float64),
        100_000,
        generator=gen,
    )
    assert within(montecarlo.mc_estimate(g["mean"]), [2 * (mu - K)])
    assert within(montecarlo.mc_estimate(g["scale"]), [2 * sigma])


def test_variances_match_the_closed_forms(gen):
    mu, sigma = 1.0, 1.5
    a = mu - K
    m, s = torch.tensor([mu], dtype=torch.float64), torch.tensor([sigma], dtype=torch.float64)
    sf = gradients.score_function_grads(f, m, s, 400_000, generator=gen)["mean"][:, 0]
    rp = gradients.reparam_grads(f, m, s, 400_000, generator=gen)["mean"][:, 0]
    assert math.isclose(sf.var().item(), a**4 / sigma**2 + 14 * a**2 + 15 * sigma**2, rel_tol=0.05)
    assert math.isclose(rp.var().item(), 4 * sigma**2, rel_tol=0.02)
    base = gradients.score_function_grads(
        f, m, s, 400_000, baseline=a**2 + sigma**2, generator=gen
    )["mean"][:, 0]
    assert math.isclose(base.var().item(), 8 * a**2 + 10 * sigma**2, rel_tol=0.05)


def test_baseline_keeps_the_estimator_unbiased(gen):
    m, s = torch.tensor([0.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    g = gradients.score_function_grads(f, m, s, 200_000, baseline=100.0, generator=gen)
    assert within(montecarlo.mc_estimate(g["mean"]), [2 * (0.0 - K)])


def test_full_covariance_sampling_matches_sigma(gen):
    L = torch.tensor([[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [-0.3, 0.2, 0.7]], dtype=torch.float64)
    x = gradients.sample_gaussian(torch.zeros(3, dtype=torch.float64), L, 200_000, gen)
    torch.testing.assert_close(torch.cov(x.T), L @ L.T, atol=0.05, rtol=0.02)


def test_gaussian_log_prob_matches_torch(gen):
    L = torch.tensor([[1.0, 0.0], [0.5, 2.0]], dtype=torch.float64)
    m = torch.tensor([0.3, -1.0], dtype=torch.float64)
    x = torch.randn(10, 2, generator=gen, dtype=torch.float64)
    ref = torch.distributions.MultivariateNormal(m, scale_tril=L).log_prob(x)
    torch.testing.assert_close(gaussian.gaussian_log_prob(x, m, L), ref)
    s = torch.tensor([0.5, 2.0], dtype=torch.float64)
    ref = torch.distributions.Independent(torch.distributions.Normal(m, s), 1).log_prob(x)
    torch.testing.assert_close(gaussian.gaussian_log_prob(x, m, s), ref)


def test_gradients_flow_through_the_cholesky_factor(gen):
    # E|x|^2 = |m|^2 + tr(L L^T)  =>  d/dL = 2L (lower triangle), d/dm = 2m.
    L = torch.tensor([[1.0, 0.0], [0.5, 2.0]], dtype=torch.float64)
    m = torch.tensor([0.3, -1.0], dtype=torch.float64)
    sq = lambda x: (x**2).sum(-1)
    rp = gradients.reparam_grads(sq, m, L, 100_000, generator=gen)
    sf = gradients.score_function_grads(sq, m, L, 400_000, generator=gen)
    for g in (rp, sf):
        assert within(montecarlo.mc_estimate(g["mean"]), 2 * m)
        e = montecarlo.mc_estimate(g["scale"].reshape(-1, 4))
        assert within(e, (2 * L).reshape(4))
    assert torch.all(rp["scale"][:, 0, 1] == 0)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"scale must have shape \(d,\) = \(2,\)"):
        gradients.sample_gaussian(torch.zeros(2), torch.ones(3), 5)
    with pytest.raises(ValueError, match=r"per-example diagonal scales"):
        gaussian.gaussian_log_prob(torch.zeros(5, 2), torch.zeros(2), torch.ones(5, 2))
    with pytest.raises(ValueError, match=r"mean must have shape \(d,\)"):
        gradients.sample_gaussian(torch.zeros(2, 2), torch.ones(2), 5)
