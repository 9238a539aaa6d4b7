"""The further closed forms of vae_course.quadratic (sine, tail probability, Bernoulli, third moment).

References are independent of the formulas under test: dense numerical
integration over eps ~ N(0, 1) of per-sample estimators built with autograd
from the package's log-density and transform, exact enumeration of the
Bernoulli outcomes with torch.distributions' log-probability, and
Gauss-Hermite quadrature (exact for polynomials).
"""

import itertools
import math

import numpy as np
import pytest
import torch
from torch.func import grad, vmap

from vae_course import quadratic
from vae_course.gaussian import gaussian_log_prob
from vae_course.gradients import leave_one_out_baseline, transform

DT = torch.float64


def dense_normal_grid(n=400_001, width=14.0):
    """Nodes and trapezoid weights with sum w g(t) ~ E[g(eps)], eps ~ N(0, 1)."""
    t = torch.linspace(-width, width, n, dtype=DT)
    w = torch.exp(-0.5 * t**2) / math.sqrt(2 * math.pi) * (t[1] - t[0])
    w[0] /= 2
    w[-1] /= 2
    return t, w


def moments(values, w):
    mean = (w * values).sum()
    return mean.item(), (w * (values - mean) ** 2).sum().item()


@pytest.mark.parametrize(
    "mu,sigma,omega", [(1.0, 0.5, 10.0), (1.0, 0.5, 2.0), (0.3, 1.2, 0.7), (-0.5, 0.2, 25.0)]
)
def test_sine_closed_forms(mu, sigma, omega):
    t, w = dense_normal_grid()
    m, s = torch.tensor([mu], dtype=DT), torch.tensor([sigma], dtype=DT)
    f = quadratic.sine(omega)
    eps = t[:, None]
    x = transform(eps, m, s)
    assert moments(f(x), w)[0] == pytest.approx(
        quadratic.sine_expectation(mu, sigma, omega), abs=1e-9
    )
    score_mu = vmap(grad(gaussian_log_prob, argnums=1), in_dims=(0, None, None))(x, m, s)[:, 0]
    sf_mean, sf_var = moments(f(x) * score_mu, w)
    path = lambda e, mm: f(transform(e, mm, s))
    rp = vmap(grad(path, argnums=1), in_dims=(0, None))(eps, m)[:, 0]
    rp_mean, rp_var = moments(rp, w)
    exact = quadratic.sine_grad_mean(mu, sigma, omega)
    assert sf_mean == pytest.approx(exact, abs=1e-8) and rp_mean == pytest.approx(exact, abs=1e-8)
    assert sf_var == pytest.approx(quadratic.sine_score_variance_mean(mu, sigma, omega), rel=1e-8)
    assert rp_var == pytest.approx(quadratic.sine_reparam_variance_mean(mu, sigma, omega), rel=1e-8)


def test_sine_published_numbers():
    """Mohamed et al. (2020)'s point, with the issue's numbers: mu = 1, sigma = 0.5, omega = 10."""
    assert quadratic.sine_score_variance_mean(1.0, 0.5, 10.0) == pytest.approx(2.0, abs=1e-6)
    assert quadratic.sine_reparam_variance_mean(1.0, 0.5, 10.0) == pytest.approx(50.0, abs=1e-6)


@pytest.mark.parametrize("t_,shift", [(2.0, 0.0), (2.0, 2.0), (2.0, 2.5), (3.0, 1.0), (1.0, -0.5)])
def test_tail_importance_variance(t_, shift):
    x = torch.linspace(t_, t_ + 25.0, 500_001, dtype=DT)  # the region x > t, trapezoid rule
    log_p = -0.5 * x**2 - 0.5 * math.log(2 * math.pi)
    log_q = -0.5 * (x - shift) ** 2 - 0.5 * math.log(2 * math.pi)
    prob = torch.trapezoid(log_p.exp(), x).item()
    second = torch.trapezoid(torch.exp(2 * log_p - log_q), x).item()
    assert quadratic.tail_probability(t_) == pytest.approx(prob, rel=1e-8)
    assert quadratic.tail_importance_variance(t_, shift) == pytest.approx(
        second - prob**2, rel=1e-8
    )
    # torch and numpy inputs agree with the scalar one
    v = quadratic.tail_importance_variance(
        torch.tensor([t_], dtype=DT), torch.tensor([shift], dtype=DT)
    )
    assert v.item() == pytest.approx(quadratic.tail_importance_variance(t_, shift), rel=1e-12)
    assert quadratic.tail_importance_variance(np.array([t_]), shift)[0] == pytest.approx(
        v.item(), rel=1e-12
    )


@pytest.mark.parametrize("mu,sigma,k", [(1.0, 0.5, 0.0), (-0.7, 1.3, 2.0)])
def test_third_central_moment(mu, sigma, k):
    t, w = np.polynomial.hermite_e.hermegauss(30)
    w = w / math.sqrt(2 * math.pi)
    fx = (mu + sigma * t - k) ** 2
    mean = (w * fx).sum()
    assert (w * (fx - mean) ** 3).sum() == pytest.approx(
        quadratic.third_central_moment(mu, sigma, k), rel=1e-10
    )


def bernoulli_enumeration(eta, k, outcomes):
    """Exact law of x in {0, 1}^N under Bernoulli(sigmoid(eta)): (x (M, N), probabilities (M,), scores (M, N))."""
    x = torch.tensor(outcomes, dtype=DT)
    logit = torch.tensor(eta, dtype=DT)
    logp = lambda e, xx: torch.distributions.Bernoulli(logits=e).log_prob(xx)
    score = vmap(vmap(grad(logp), in_dims=(None, 0)), in_dims=(None, 0))(logit, x)
    prob = torch.exp(torch.distributions.Bernoulli(logits=logit).log_prob(x).sum(-1))
    return x, prob, score


@pytest.mark.parametrize("eta,k", [(0.0, 0.45), (1.3, 0.45), (-2.0, 0.1), (0.4, 1.5)])
def test_bernoulli_single_sample(eta, k):
    x, prob, score = bernoulli_enumeration(eta, k, [[0.0], [1.0]])
    p = torch.sigmoid(torch.tensor(eta, dtype=DT)).item()
    f = (x[:, 0] - k) ** 2
    assert (prob * f).sum().item() == pytest.approx(
        quadratic.bernoulli_expectation(p, k), rel=1e-12
    )
    exact_grad = grad(lambda e: torch.sigmoid(e) * (1 - k) ** 2 + (1 - torch.sigmoid(e)) * k**2)(
        torch.tensor(eta, dtype=DT)
    ).item()
    assert quadratic.bernoulli_grad_logit(p, k) == pytest.approx(exact_grad, rel=1e-12)
    for c in (0.0, 0.3, -2.0):
        g = (f - c) * score[:, 0]
        mean = (prob * g).sum().item()
        assert mean == pytest.approx(exact_grad, abs=1e-12)
        var = (prob * (g - mean) ** 2).sum().item()
        assert quadratic.bernoulli_score_variance(p, k, c) == pytest.approx(var, rel=1e-10)


@pytest.mark.parametrize("n", [2, 3, 5, 8])
@pytest.mark.parametrize("eta,k", [(0.0, 0.45), (1.3, 0.45), (-0.8, 2.0)])
def test_bernoulli_rloo_variance_by_enumeration(n, eta, k):
    x, prob, score = bernoulli_enumeration(eta, k, list(itertools.product([0.0, 1.0], repeat=n)))
    f = (x - k) ** 2  # (M, N)
    loo = vmap(leave_one_out_baseline)(f)  # (M, N)
    est = ((f - loo) * score).mean(-1)  # the N-draw estimate per outcome
    mean = (prob * est).sum().item()
    p = torch.sigmoid(torch.tensor(eta, dtype=DT)).item()
    assert mean == pytest.approx(quadratic.bernoulli_grad_logit(p, k), abs=1e-12)  # unbiased
    var = (prob * (est - mean) ** 2).sum().item()
    assert quadratic.bernoulli_rloo_variance(p, k, n) == pytest.approx(var, rel=1e-9, abs=1e-15)
    # The baseline that includes draw n itself shrinks the mean by (N - 1)/N.
    biased = ((f - f.mean(-1, keepdim=True)) * score).mean(-1)
    assert (prob * biased).sum().item() == pytest.approx((1 - 1 / n) * mean, abs=1e-12)


@pytest.mark.parametrize("eta,k", [(0.0, 0.45), (1.3863, 0.1), (-2.0, 0.1), (0.4, 1.5)])
def test_bernoulli_optimal_baseline_minimises_the_enumerated_variance(eta, k):
    x, prob, score = bernoulli_enumeration(eta, k, [[0.0], [1.0]])
    p = torch.sigmoid(torch.tensor(eta, dtype=DT)).item()
    f = (x[:, 0] - k) ** 2
    s = score[:, 0]
    # The regression coefficient E[f s^2] / E[s^2], summed over the two outcomes.
    c_ref = ((prob * f * s * s).sum() / (prob * s * s).sum()).item()
    c_star = quadratic.bernoulli_optimal_baseline(p, k)
    assert c_star == pytest.approx(c_ref, rel=1e-12)
    g = (f - c_star) * s
    mean = (prob * g).sum()
    assert (prob * (g - mean) ** 2).sum().item() == pytest.approx(0.0, abs=1e-14)  # one bit: zero variance
    for c in (c_star - 0.1, c_star + 0.1, 0.0):
        assert quadratic.bernoulli_score_variance(p, k, c) > 1e-6


def test_bernoulli_rloo_needs_two_draws():
    with pytest.raises(ValueError, match="num_samples must be at least 2"):
        quadratic.bernoulli_rloo_variance(0.5, 0.45, 1)


@pytest.mark.parametrize("step,curvature", [(0.05, 1.0), (0.05, 0.5), (0.4, 3.0)])
def test_sgd_quadratic_floor_by_simulation(step, curvature):
    """Many independent AR(1) chains x <- x - step (h x + xi) with Gaussian noise, run to stationarity."""
    from vae_course.montecarlo import mc_estimate

    gen = torch.Generator().manual_seed(6)
    chains, var = 50_000, 0.7
    x = torch.zeros(chains, dtype=DT)
    for _ in range(int(12 / (step * curvature))):
        x = x - step * (curvature * x + math.sqrt(var) * torch.randn(chains, generator=gen, dtype=DT))
    e = mc_estimate(curvature / 2 * x**2)
    assert abs(e.mean.item() - quadratic.sgd_quadratic_floor(step, curvature, var)) < 4 * e.stderr.item()
    with pytest.raises(ValueError, match="step \\* curvature must lie in"):
        quadratic.sgd_quadratic_floor(0.5, 4.0, var)


@pytest.mark.parametrize("step", [0.05, 0.3])
def test_sgd_excess_floor_by_simulation(step):
    """Many independent AR(1) chains with Gaussian noise, run to stationarity."""
    gen = torch.Generator().manual_seed(5)
    chains, var = 50_000, 2.5
    a = torch.zeros(chains, dtype=DT)
    for _ in range(int(10 / step)):
        a = (1 - 2 * step) * a - step * math.sqrt(var) * torch.randn(
            chains, generator=gen, dtype=DT
        )
    from vae_course.montecarlo import mc_estimate

    e = mc_estimate(a**2)
    assert abs(e.mean.item() - quadratic.sgd_excess_floor(step, var)) < 4 * e.stderr.item()
    with pytest.raises(ValueError, match="step must lie in"):
        quadratic.sgd_excess_floor(1.2, var)
