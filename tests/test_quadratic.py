"""The closed forms of vae_course.quadratic against exact integration and seeded Monte Carlo.

Exact: every quantity of the one-dimensional example is the expectation of a
polynomial in eps ~ N(0, 1), which Gauss-Hermite quadrature with 30 nodes
integrates exactly (up to rounding) for degree <= 59. The per-sample
estimators are built here from autograd of the package's log-density and
transform, not from the formulas under test.
"""

import math

import numpy as np
import pytest
import torch
from torch.func import grad, vmap

from vae_course import quadratic
from vae_course.gaussian import gaussian_log_prob
from vae_course.gradients import reparam_grads, sample_gaussian, score_function_grads, transform
from vae_course.montecarlo import mc_estimate

DT = torch.float64
CASES = [(1.0, 0.5, 0.0), (0.0, 1.0, 0.0), (-0.7, 1.3, 2.0), (2.5, 0.3, -1.0)]


def gauss_hermite(n=30):
    """Nodes and weights with sum_i w_i g(t_i) = E[g(eps)], eps ~ N(0, 1)."""
    t, w = np.polynomial.hermite_e.hermegauss(n)
    return torch.tensor(t, dtype=DT), torch.tensor(w / math.sqrt(2 * math.pi), dtype=DT)


def exact_moments(values, w):
    """Exact mean and variance of per-node values (n, ...) under the quadrature weights."""
    w = w.reshape((-1,) + (1,) * (values.ndim - 1))
    mean = (w * values).sum(0)
    return mean, (w * (values - mean) ** 2).sum(0)


def per_node_estimators(mu, sigma, k, baseline):
    """Score-function and pathwise samples of d/d(mu, sigma) E[(x - k)^2] at the quadrature nodes."""
    t, w = gauss_hermite()
    m = torch.tensor([mu], dtype=DT)
    s = torch.tensor([sigma], dtype=DT)
    eps = t[:, None]
    x = transform(eps, m, s)
    f = quadratic.shifted_square(k)
    score = vmap(grad(gaussian_log_prob, argnums=(1, 2)), in_dims=(0, None, None))(x, m, s)
    sf = torch.cat([(f(x) - baseline)[:, None] * g for g in score], dim=1)
    path = lambda e, mm, ss: f(transform(e, mm, ss))
    rp = torch.cat(vmap(grad(path, argnums=(1, 2)), in_dims=(0, None, None))(eps, m, s), dim=1)
    return sf, rp, w


@pytest.mark.parametrize("mu,sigma,k", CASES)
def test_expectation_and_variance_exact(mu, sigma, k):
    t, w = gauss_hermite()
    fx = quadratic.shifted_square(k)(
        transform(t[:, None], torch.tensor([mu], dtype=DT), torch.tensor([sigma], dtype=DT))
    )
    mean, var = exact_moments(fx, w)
    assert mean.item() == pytest.approx(quadratic.expectation(mu, sigma, k), rel=1e-12)
    assert var.item() == pytest.approx(quadratic.variance(mu, sigma, k), rel=1e-12)


@pytest.mark.parametrize("mu,sigma,k", CASES)
@pytest.mark.parametrize("which", ["zero", "mean", "optimal_mean", "optimal_scale", "large"])
def test_gradient_variances_exact(mu, sigma, k, which):
    baseline = {
        "zero": 0.0,
        "mean": quadratic.expectation(mu, sigma, k),
        "optimal_mean": quadratic.optimal_baseline_mean(mu, sigma, k),
        "optimal_scale": quadratic.optimal_baseline_scale(mu, sigma, k),
        "large": 7.5,
    }[which]
    sf, rp, w = per_node_estimators(mu, sigma, k, baseline)
    sf_mean, sf_var = exact_moments(sf, w)
    rp_mean, rp_var = exact_moments(rp, w)
    # Both estimators are unbiased, whatever the baseline.
    for est in (sf_mean, rp_mean):
        assert est[0].item() == pytest.approx(quadratic.grad_mean(mu, sigma, k), abs=1e-10)
        assert est[1].item() == pytest.approx(quadratic.grad_scale(mu, sigma, k), abs=1e-10)
    assert sf_var[0].item() == pytest.approx(
        quadratic.score_variance_mean(mu, sigma, k, baseline), rel=1e-10
    )
    assert sf_var[1].item() == pytest.approx(
        quadratic.score_variance_scale(mu, sigma, k, baseline), rel=1e-10
    )
    assert rp_var[0].item() == pytest.approx(
        quadratic.reparam_variance_mean(mu, sigma, k), rel=1e-10
    )
    assert rp_var[1].item() == pytest.approx(
        quadratic.reparam_variance_scale(mu, sigma, k), rel=1e-10
    )


@pytest.mark.parametrize("mu,sigma,k", CASES)
def test_named_baselines(mu, sigma, k):
    a2, s2 = (mu - k) ** 2, sigma**2
    v_mean = quadratic.score_variance_mean(mu, sigma, k, quadratic.expectation(mu, sigma, k))
    v_opt = quadratic.score_variance_mean(
        mu, sigma, k, quadratic.optimal_baseline_mean(mu, sigma, k)
    )
    assert quadratic.score_variance_mean(mu, sigma, k) == pytest.approx(
        (mu - k) ** 4 / s2 + 14 * a2 + 15 * s2
    )
    assert v_mean == pytest.approx(8 * a2 + 10 * s2)
    assert v_opt == pytest.approx(8 * a2 + 6 * s2)


@pytest.mark.parametrize("mu,sigma,k", CASES)
def test_optimal_baselines_minimise(mu, sigma, k):
    for var, opt in [
        (quadratic.score_variance_mean, quadratic.optimal_baseline_mean),
        (quadratic.score_variance_scale, quadratic.optimal_baseline_scale),
    ]:
        b = torch.tensor(float(opt(mu, sigma, k)), dtype=DT)
        slope = grad(lambda bb, var=var: var(mu, sigma, k, bb))(b)
        assert abs(slope.item()) < 1e-9
        v = var(mu, sigma, k, b.item())
        assert v < var(mu, sigma, k, b.item() + 0.1) and v < var(mu, sigma, k, b.item() - 0.1)


@pytest.mark.parametrize("mu,sigma,k", CASES[:2])
def test_gradient_variances_monte_carlo(mu, sigma, k):
    """Seeded runs of the package's estimators land within 5 standard errors of the closed forms."""
    n = 200_000
    m = torch.tensor([mu], dtype=DT)
    s = torch.tensor([sigma], dtype=DT)
    f = quadratic.shifted_square(k)
    b = quadratic.expectation(mu, sigma, k)
    sf = score_function_grads(f, m, s, n, baseline=b, generator=torch.Generator().manual_seed(1))
    rp = reparam_grads(f, m, s, n, generator=torch.Generator().manual_seed(2))
    checks = [
        (sf["mean"][:, 0], quadratic.grad_mean, quadratic.score_variance_mean(mu, sigma, k, b)),
        (sf["scale"][:, 0], quadratic.grad_scale, quadratic.score_variance_scale(mu, sigma, k, b)),
        (rp["mean"][:, 0], quadratic.grad_mean, quadratic.reparam_variance_mean(mu, sigma, k)),
        (rp["scale"][:, 0], quadratic.grad_scale, quadratic.reparam_variance_scale(mu, sigma, k)),
    ]
    for g, true_grad, true_var in checks:
        est = mc_estimate(g)
        assert abs(est.mean.item() - true_grad(mu, sigma, k)) < 5 * est.stderr.item()
        var = mc_estimate((g - g.mean()) ** 2)
        assert abs(var.mean.item() - true_var) < 5 * var.stderr.item()


def test_expectation_and_variance_monte_carlo():
    mu, sigma, k = 1.0, 0.5, 0.0
    x = sample_gaussian(
        torch.tensor([mu], dtype=DT),
        torch.tensor([sigma], dtype=DT),
        400_000,
        torch.Generator().manual_seed(3),
    )
    fx = quadratic.shifted_square(k)(x)
    est = mc_estimate(fx)
    assert abs(est.mean.item() - quadratic.expectation(mu, sigma, k)) < 5 * est.stderr.item()
    var = mc_estimate((fx - fx.mean()) ** 2)
    assert abs(var.mean.item() - quadratic.variance(mu, sigma, k)) < 5 * var.stderr.item()


MEAN = torch.tensor([0.5, -1.0, 2.0], dtype=DT)
CHOL = torch.tensor([[1.2, 0.0, 0.0], [0.4, 0.8, 0.0], [-0.3, 0.5, 0.6]], dtype=DT)


def test_squared_norm_closed_forms_autograd():
    """The gradient formulas are the autograd gradients of the expectation formula."""
    g_mean, g_chol = grad(quadratic.squared_norm_expectation, argnums=(0, 1))(MEAN, CHOL)
    ref = quadratic.squared_norm_grads(MEAN, CHOL)
    torch.testing.assert_close(g_mean, ref["mean"])
    torch.testing.assert_close(g_chol, ref["scale"])
    # tr(L L^T) + |m|^2, written with the full covariance.
    expected = torch.trace(CHOL @ CHOL.T) + MEAN @ MEAN
    torch.testing.assert_close(quadratic.squared_norm_expectation(MEAN, CHOL), expected)
    # Only the lower triangle counts.
    upper = CHOL + torch.triu(torch.ones(3, 3, dtype=DT), diagonal=1)
    torch.testing.assert_close(quadratic.squared_norm_expectation(MEAN, upper), expected)


def test_squared_norm_monte_carlo():
    n = 200_000
    x = sample_gaussian(MEAN, CHOL, n, torch.Generator().manual_seed(4))
    est = mc_estimate(quadratic.squared_norm(x))
    assert (
        abs(est.mean.item() - quadratic.squared_norm_expectation(MEAN, CHOL).item())
        < 5 * est.stderr.item()
    )
    g = reparam_grads(
        quadratic.squared_norm, MEAN, CHOL, n, generator=torch.Generator().manual_seed(5)
    )
    ref = quadratic.squared_norm_grads(MEAN, CHOL)
    for key in ("mean", "scale"):
        e = mc_estimate(g[key])
        lower = (
            torch.ones_like(e.mean, dtype=torch.bool)
            if key == "mean"
            else torch.tril(torch.ones(3, 3, dtype=torch.bool))
        )
        z = ((e.mean - ref[key]) / e.stderr)[lower]
        assert z.abs().max().item() < 5
        assert torch.all(e.mean[~lower] == 0)
