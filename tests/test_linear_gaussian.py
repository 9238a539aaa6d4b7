"""The closed forms of vae_course.linear_gaussian, against torch.distributions and quadrature."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vae_course.linear_gaussian import LinearGaussian, kl_gaussian, normal_log_prob

MODELS = [
    LinearGaussian(1.5, 0.3, 0.8),
    LinearGaussian(-0.7, -1.0, 0.3),
    LinearGaussian(3.0, 2.0, 2.5),
]
XS = torch.tensor([-2.0, 0.1, 1.7, 4.0], dtype=torch.float64)
QS = [(0.0, 1.0), (0.4, 0.2), (-1.3, 2.5), (2.0, 0.01)]

# A grid over z for trapezoidal quadrature. For every (model, x, q) above the
# integrands are Gaussians times polynomials in z: smooth, and negligible beyond
# |z| = 15, where the trapezoidal rule converges exponentially fast. The step is
# 0.005, so the narrowest Gaussian (sd 0.1) spans 20 steps per standard deviation.
Z = torch.linspace(-15.0, 15.0, 6001, dtype=torch.float64)


def trapz(values):
    return torch.trapezoid(values, Z)


@pytest.mark.parametrize("model", MODELS)
def test_log_marginal_matches_torch_and_quadrature(model):
    expected = Normal(
        torch.tensor(model.b, dtype=torch.float64), math.sqrt(model.w**2 + model.s**2)
    ).log_prob(XS)
    assert torch.allclose(model.log_marginal(XS), expected, rtol=0, atol=1e-12)
    for x in XS:
        integral = trapz(torch.exp(model.log_joint(x, Z)))
        assert abs(math.log(integral) - model.log_marginal(x).item()) < 1e-9


@pytest.mark.parametrize("model", MODELS)
def test_posterior_is_bayes_rule_and_matches_quadrature_moments(model):
    mean, var = model.posterior(XS)
    assert mean.shape == XS.shape and var.shape == ()
    for x, m in zip(XS, mean):
        # Bayes: log p(z | x) = log p(x, z) - log p(x), for every z.
        log_post = model.log_joint(x, Z) - model.log_marginal(x)
        assert torch.allclose(log_post, Normal(m, var.sqrt()).log_prob(Z), rtol=0, atol=1e-9)
        density = torch.exp(log_post)
        assert abs(trapz(density).item() - 1.0) < 1e-9
        m_num = trapz(Z * density)
        v_num = trapz((Z - m_num) ** 2 * density)
        assert abs(m_num.item() - m.item()) < 1e-9
        assert abs(v_num.item() - var.item()) < 1e-9


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("q", QS)
def test_elbo_and_kls_match_quadrature(model, q):
    m, v = q
    log_q = normal_log_prob(Z, m, v)
    q_density = torch.exp(log_q)
    for x in XS:
        ell = trapz(q_density * model.log_likelihood(x, Z))
        elbo = trapz(q_density * (model.log_joint(x, Z) - log_q))
        kl_prior = trapz(q_density * (log_q - model.log_prior(Z)))
        log_post = model.log_joint(x, Z) - model.log_marginal(x)
        kl_post = trapz(q_density * (log_q - log_post))
        assert abs(model.expected_log_likelihood(x, m, v).item() - ell.item()) < 1e-7
        assert abs(model.elbo(x, m, v).item() - elbo.item()) < 1e-7
        assert abs(model.kl_to_prior(m, v).item() - kl_prior.item()) < 1e-7
        assert abs(model.kl_to_posterior(x, m, v).item() - kl_post.item()) < 1e-7


@pytest.mark.parametrize("model", MODELS)
def test_evidence_identity_and_zero_gap_at_the_posterior(model):
    m = torch.tensor([[-1.0], [0.0], [0.5], [2.0]], dtype=torch.float64)  # (4, 1) against XS (4,)
    for v in (0.05, 0.7, 3.0):
        lhs = model.log_marginal(XS)
        rhs = model.elbo(XS, m, v) + model.kl_to_posterior(XS, m, v)
        assert rhs.shape == (4, 4)
        assert torch.allclose(rhs, lhs.expand(4, 4), rtol=0, atol=1e-12)
        assert bool(torch.all(model.elbo(XS, m, v) <= lhs))
    post_mean, post_var = model.posterior(XS)
    assert bool(torch.all(model.kl_to_posterior(XS, post_mean, post_var) == 0.0))
    assert torch.allclose(
        model.elbo(XS, post_mean, post_var), model.log_marginal(XS), rtol=0, atol=1e-12
    )


def test_kl_gaussian_matches_torch_and_is_exactly_zero_on_the_diagonal():
    g = torch.Generator().manual_seed(0)
    m1, m2 = (
        torch.randn(100, generator=g, dtype=torch.float64),
        torch.randn(100, generator=g, dtype=torch.float64),
    )
    v1 = torch.exp(torch.randn(100, generator=g, dtype=torch.float64))
    v2 = torch.exp(torch.randn(100, generator=g, dtype=torch.float64))
    expected = kl_divergence(Normal(m1, v1.sqrt()), Normal(m2, v2.sqrt()))
    assert torch.allclose(kl_gaussian(m1, v1, m2, v2), expected, rtol=1e-12, atol=1e-12)
    assert bool(torch.all(kl_gaussian(m1, v1, m1, v1) == 0.0))
    assert bool(torch.all(kl_gaussian(m1, v1, m2, v2) >= 0.0))


def test_sgvb_estimators_are_unbiased():
    model = LinearGaussian(1.5, 0.3, 0.8)
    x, m, v = 1.7, 0.2, 0.5
    eps = torch.randn(200_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = model.elbo(x, m, v).item()
    for estimator in (model.sgvb_elbo, model.sgvb_elbo_analytic_kl):
        draws = estimator(x, m, v, eps)
        assert draws.shape == eps.shape
        stderr = draws.std().item() / math.sqrt(len(eps))
        assert abs(draws.mean().item() - exact) < 4 * stderr


def test_sgvb_is_exact_at_the_posterior():
    model = LinearGaussian(-0.7, -1.0, 0.3)
    x = 0.1
    mean, var = model.posterior(x)
    eps = torch.linspace(-3, 3, 7, dtype=torch.float64)
    draws = model.sgvb_elbo(x, mean, var, eps)
    assert torch.allclose(draws, model.log_marginal(x).expand(7), rtol=0, atol=1e-12)


def test_gradients_flow():
    model = LinearGaussian(1.5, 0.3, 0.8)
    m = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    log_v = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    model.elbo(1.0, m, log_v.exp()).backward()
    # d ELBO / dm = w (x - w m - b) / s^2 - m at m = 0.
    assert abs(m.grad.item() - 1.5 * (1.0 - 0.3) / 0.64) < 1e-12
    assert log_v.grad is not None


def test_float32_inputs_keep_their_dtype():
    model = LinearGaussian(1.5, 0.3, 0.8)
    x = torch.tensor([0.0, 1.0], dtype=torch.float32)
    assert model.log_marginal(x).dtype == torch.float32
    assert model.posterior(x)[1].dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(w=1.0, b=0.0, s=0.0),
        dict(w=1.0, b=0.0, s=-1.0),
        dict(w=float("nan"), b=0.0, s=1.0),
        dict(w=True, b=0.0, s=1.0),
        dict(w="1", b=0.0, s=1.0),
    ],
)
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        LinearGaussian(**kwargs)


def test_non_positive_variances_are_refused():
    model = LinearGaussian(1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="variance"):
        model.elbo(0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="variance"):
        kl_gaussian(0.0, 1.0, 0.0, torch.tensor([1.0, -1.0]))


# grad_m_variance against Gauss-Hermite quadrature of autograd's one-draw gradients. Each one-draw
# gradient is a polynomial in eps of degree <= 3 (its square <= 6), so 20 nodes integrate it exactly;
# nothing here repeats grad_m_variance's algebra.
@pytest.mark.parametrize("model", MODELS[:2])
@pytest.mark.parametrize("q", QS[:3])
@pytest.mark.parametrize("estimator", ["full", "analytic_kl", "stl", "score"])
def test_grad_m_variance_matches_quadrature_of_autograd_gradients(model, q, estimator):
    import numpy as np
    from torch.func import grad

    from vae_course.gaussian import gaussian_log_prob
    from vae_course.gradients import transform
    from vae_course.losses import elbo_integrand

    x, (m, v), c = XS[1], q, -1.5
    nodes, weights = np.polynomial.hermite_e.hermegauss(20)
    eps = torch.tensor(nodes, dtype=torch.float64)[:, None]
    w = torch.tensor(weights / math.sqrt(2 * math.pi), dtype=torch.float64)
    mean, scale = (
        torch.tensor([m], dtype=torch.float64),
        torch.tensor([math.sqrt(v)], dtype=torch.float64),
    )
    loglik = lambda z: model.log_likelihood(x, z[..., 0])

    def one_draw(e, mn):
        if (
            estimator == "score"
        ):  # (f(z) - c) d/dm log q(z), f = log p(x, z) - log q(z) at the fixed draw z
            z = transform(e, mean, scale).detach()
            f = model.log_joint(x, z[..., 0]) - gaussian_log_prob(z, mean, scale)
            return (f.detach() - c) * gaussian_log_prob(z, mn, scale)
        return elbo_integrand(loglik, transform(e, mn, scale), mn, scale, estimator)

    g = torch.stack([grad(one_draw, argnums=1)(e, mean)[0] for e in eps])
    mean_g = (w * g).sum()
    var = (w * (g - mean_g) ** 2).sum().item()
    assert mean_g.item() == pytest.approx(
        -model.posterior_precision() * (m - model.posterior(x)[0].item()), abs=1e-9
    )
    assert model.grad_m_variance(x, m, v, estimator, baseline=c).item() == pytest.approx(
        var, rel=1e-9, abs=1e-12
    )
