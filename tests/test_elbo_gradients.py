"""The ELBO's gradient estimators (full, analytic KL, sticking the landing, score function),
the general Gaussian KL and the VAE's KL term, against closed forms and torch.distributions."""

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from vae_course import gaussian, gradients, losses, montecarlo
from vae_course.linear_gaussian import LinearGaussian, kl_gaussian
from vae_course.losses import kl_std_normal

F64 = torch.float64
MODELS = [
    LinearGaussian(2.0, 0.5, 0.7),
    LinearGaussian(-0.7, -1.0, 0.3),
    LinearGaussian(1.2, 0.0, 2.5),
]
X = 2.3


def t(values):
    return torch.tensor(values, dtype=F64)


def per_draw_grad_m(model, m, v, estimator, n, gen, baseline=0.0):
    """n one-draw estimates of d ELBO / dm, from the package's estimators (not from the closed forms)."""
    mean, scale = t([m]), t([math.sqrt(v)])
    log_lik = lambda z: model.log_likelihood(X, z[..., 0])
    if estimator == "score":
        # The ELBO's integrand f(z) = log p(x, z) - log q(z); its score-function gradient is f * grad log q.
        f = lambda z: model.log_joint(X, z[..., 0]) - gaussian.gaussian_log_prob(z, mean, scale)
        return gradients.score_function_grads(f, mean, scale, n, baseline=baseline, generator=gen)[
            "mean"
        ][:, 0]
    return gradients.elbo_grads(log_lik, mean, scale, n, estimator=estimator, generator=gen)[
        "mean"
    ][:, 0]


def variance_with_stderr(g):
    """Sample variance of the draws g and its standard error, sqrt((m4 - s^4) / n)."""
    c = g - g.mean()
    var = (c * c).mean()
    m4 = (c**4).mean()
    return var.item(), math.sqrt(max((m4 - var**2).item(), 0.0) / g.numel())


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("estimator", ["mc", "analytic", "stl", "score"])
def test_gradient_variances_match_the_closed_forms(model, estimator):
    gen = torch.Generator().manual_seed(11)
    post_m, post_v = model.posterior(X)
    qs = [(post_m.item(), post_v.item()), (0.0, 1.0), (post_m.item() + 0.3, 0.5 * post_v.item())]
    for m, v in qs:
        for baseline in (0.0, model.elbo(X, m, v).item()) if estimator == "score" else (0.0,):
            g = per_draw_grad_m(model, m, v, estimator, 200_000, gen, baseline)
            exact_grad = -model.posterior_precision() * (m - post_m.item())
            e = montecarlo.mc_estimate(g)
            assert abs(e.mean.item() - exact_grad) <= 4 * e.stderr.item() + 1e-9
            var, se = variance_with_stderr(g)
            closed = model.grad_m_variance(X, m, v, estimator, baseline=baseline).item()
            assert abs(var - closed) <= 4 * se + 1e-9 * (1 + closed), (m, v, var, closed, se)


def test_the_issue_table_for_chapter_4s_model():
    # Chapter 4's model; lambda = 1 + w^2/s^2 is the posterior precision.
    model = MODELS[0]
    lam = 1 + 2.0**2 / 0.7**2
    assert model.posterior_precision() == pytest.approx(lam, rel=1e-15)
    post_m, post_v = model.posterior(X)
    at_post = {
        e: model.grad_m_variance(X, post_m, post_v, e).item() for e in ("mc", "analytic", "stl")
    }
    at_prior = {e: model.grad_m_variance(X, 0.0, 1.0, e).item() for e in ("mc", "analytic", "stl")}
    assert at_post == pytest.approx(
        {"mc": lam, "analytic": (lam - 1) ** 2 / lam, "stl": 0.0}, abs=1e-12
    )
    assert at_prior == pytest.approx(
        {"mc": lam**2, "analytic": (lam - 1) ** 2, "stl": (lam - 1) ** 2}, rel=1e-12
    )
    assert round(at_post["mc"], 3) == 9.163 and round(at_post["analytic"], 3) == 7.272
    assert round(at_prior["mc"], 2) == 83.97 and round(at_prior["analytic"], 2) == 66.64


def test_stl_is_exactly_zero_at_the_posterior_and_full_equals_stl_in_value():
    model = MODELS[0]
    m, v = model.posterior(X)
    gen = torch.Generator().manual_seed(3)
    g = gradients.elbo_grads(
        lambda z: model.log_likelihood(X, z[..., 0]),
        m.reshape(1),
        v.sqrt().reshape(1),
        1000,
        estimator="stl",
        generator=gen,
    )
    assert g["mean"].abs().max() < 1e-12 and g["scale"].abs().max() < 1e-12
    z = torch.randn(50, 1, generator=gen, dtype=F64)
    log_lik = lambda z: model.log_likelihood(X, z[..., 0])
    full = gradients.elbo_integrand(log_lik, z, m.reshape(1), v.sqrt().reshape(1), "mc")
    stl = gradients.elbo_integrand(log_lik, z, m.reshape(1), v.sqrt().reshape(1), "stl")
    assert torch.equal(full, stl)
    # ... and the one-dimensional integrands are the ones linear_gaussian writes out.
    eps = (z[..., 0] - m) / v.sqrt()
    torch.testing.assert_close(full, model.sgvb_elbo(X, m, v, eps), rtol=0, atol=1e-12)
    analytic = gradients.elbo_integrand(log_lik, z, m.reshape(1), v.sqrt().reshape(1), "analytic")
    torch.testing.assert_close(
        analytic, model.sgvb_elbo_analytic_kl(X, m, v, eps), rtol=0, atol=1e-12
    )


def test_elbo_grads_with_a_cholesky_factor_are_unbiased():
    # log p(x|z) = -|z - a|^2 / 2: ELBO = -|m - a|^2/2 - tr(S)/2 - KL(q || N(0, I)) + const,
    # d/dm = -(m - a) - m, d/dL = -L - (L - L^{-T}) (lower triangle).
    gen = torch.Generator().manual_seed(5)
    a = t([1.0, -0.5])
    m = t([0.3, 0.2])
    L = t([[0.8, 0.0], [0.3, 0.6]])
    exact_m = -(m - a) - m
    exact_L = torch.tril(-2 * L + torch.linalg.inv(L).T)
    for estimator in losses.ELBO_ESTIMATORS:
        g = gradients.elbo_grads(
            lambda z: -0.5 * ((z - a) ** 2).sum(-1), m, L, 100_000, estimator, gen
        )
        e_m = montecarlo.mc_estimate(g["mean"])
        e_L = montecarlo.mc_estimate(g["scale"].reshape(-1, 4))
        assert torch.all((e_m.mean - exact_m).abs() <= 4 * e_m.stderr + 1e-12), estimator
        assert torch.all((e_L.mean - exact_L.reshape(4)).abs() <= 4 * e_L.stderr + 1e-12), estimator


def test_gaussian_kl_matches_torch_distributions():
    gen = torch.Generator().manual_seed(2)
    for d in (1, 2, 5):
        for _ in range(3):
            m1, m2 = (
                torch.randn(d, generator=gen, dtype=F64),
                torch.randn(d, generator=gen, dtype=F64),
            )
            L1 = torch.tril(torch.randn(d, d, generator=gen, dtype=F64), -1) + torch.diag(
                0.3 + torch.rand(d, generator=gen, dtype=F64)
            )
            L2 = torch.tril(torch.randn(d, d, generator=gen, dtype=F64), -1) + torch.diag(
                0.3 + torch.rand(d, generator=gen, dtype=F64)
            )
            ref = kl_divergence(
                MultivariateNormal(m1, scale_tril=L1), MultivariateNormal(m2, scale_tril=L2)
            )
            torch.testing.assert_close(
                gaussian.gaussian_kl(m1, L1, m2, L2), ref, rtol=1e-12, atol=1e-12
            )
            s1, s2 = torch.diagonal(L1).abs(), torch.diagonal(L2).abs()
            ref = kl_divergence(Independent(Normal(m1, s1), 1), Independent(Normal(m2, s2), 1))
            torch.testing.assert_close(
                gaussian.gaussian_kl(m1, s1, m2, s2), ref, rtol=1e-12, atol=1e-12
            )
            torch.testing.assert_close(
                gaussian.gaussian_kl(m1, s1, m2, L2),
                kl_divergence(
                    MultivariateNormal(m1, scale_tril=torch.diag(s1)),
                    MultivariateNormal(m2, scale_tril=L2),
                ),
                rtol=1e-12,
                atol=1e-12,
            )
            assert gaussian.gaussian_kl(m1, L1, m1, L1).item() == pytest.approx(0.0, abs=1e-12)
    # d = 1 is chapter 4's univariate formula (in variances).
    assert gaussian.gaussian_kl(t([0.4]), t([0.5]), t([-1.0]), t([2.0])).item() == pytest.approx(
        kl_gaussian(0.4, 0.25, -1.0, 4.0).item(), rel=1e-14
    )
    with pytest.raises(ValueError, match="same dimension"):
        gaussian.gaussian_kl(t([0.0]), t([1.0]), t([0.0, 0.0]), t([1.0, 1.0]))
    with pytest.raises(ValueError, match="scale2 has a zero standard deviation"):
        gaussian.gaussian_kl(t([0.0, 0.0]), t([1.0, 1.0]), t([0.0, 0.0]), t([1.0, 0.0]))
    with pytest.raises(ValueError, match="scale1 has a zero"):
        gaussian.gaussian_kl(
            t([0.0, 0.0]), t([[1.0, 0.0], [0.5, 0.0]]), t([0.0, 0.0]), t([1.0, 1.0])
        )


def test_vae_kl_term_three_ways():
    gen = torch.Generator().manual_seed(9)
    z_mean = torch.randn(4, 3, generator=gen, dtype=F64)
    z_log_var = 0.5 * torch.randn(4, 3, generator=gen, dtype=F64)
    eps = torch.randn(20_000, 4, 3, generator=gen, dtype=F64)

    def grads(kl, mean, log_var):
        mean, log_var = mean.clone().requires_grad_(True), log_var.clone().requires_grad_(True)
        z = mean + torch.exp(0.5 * log_var) * eps
        value = losses.vae_kl_term(
            mean, log_var, z, kl=kl
        )  # on Keras's device (a GPU's, where there is one)
        return value.detach().cpu(), torch.autograd.grad(value.sum(), (mean, log_var))

    closed = kl_std_normal(z_mean, z_log_var).cpu()
    torch.testing.assert_close(losses.vae_kl_term(z_mean, z_log_var).cpu(), closed)
    v_mc, g_mc = grads("mc", z_mean, z_log_var)
    v_stl, g_stl = grads("stl", z_mean, z_log_var)
    assert torch.equal(v_mc, v_stl)  # same value ...
    one = torch.ones_like(z_mean)
    # ... unbiased for the KL and for its gradient (mu, (e^l - 1)/2), but through different estimators:
    sd_value = (0.5 * (z_log_var.exp() - 1) ** 2 + z_mean**2 * z_log_var.exp()).sum(-1).sqrt()
    assert torch.all((v_mc - closed).abs() < 4 * sd_value / math.sqrt(eps.shape[0]))
    for g in (g_mc, g_stl):
        assert torch.all((g[0] - z_mean).abs() < 0.05)
        assert torch.all((g[1] - 0.5 * (z_log_var.exp() - one)).abs() < 0.05)
    assert not torch.allclose(g_mc[0], g_stl[0], rtol=0, atol=1e-6)
    # At q = p: every draw of the value is 0, the "mc" gradient is noise (mean of eps), the "stl" one exactly 0.
    zero = torch.zeros(4, 3, dtype=F64)
    v0, g0 = grads("mc", zero, zero)
    _, g0_stl = grads("stl", zero, zero)
    assert v0.abs().max() == 0.0
    torch.testing.assert_close(g0[0], eps.mean(0), rtol=0, atol=1e-12)
    assert g0_stl[0].abs().max() == 0.0 and g0_stl[1].abs().max() < 1e-12
    # one draw (batch, d) works too, and bad input is named
    assert losses.vae_kl_term(z_mean, z_log_var, eps[0], kl="mc").shape == (4,)
    with pytest.raises(ValueError, match="kl must be one of"):
        losses.vae_kl_term(z_mean, z_log_var, eps[0], kl="exact")
    with pytest.raises(ValueError, match="pass z"):
        losses.vae_kl_term(z_mean, z_log_var, kl="stl")
    with pytest.raises(ValueError, match="z must have shape"):
        losses.vae_kl_term(z_mean, z_log_var, eps[0, :, :2], kl="mc")


def test_unknown_estimators_are_refused():
    with pytest.raises(ValueError, match="estimator must be one of"):
        MODELS[0].grad_m_variance(X, 0.0, 1.0, "pathwise")
    with pytest.raises(ValueError, match="estimator must be one of"):
        gradients.elbo_grads(lambda z: z.sum(-1), t([0.0]), t([1.0]), 10, estimator="score")
