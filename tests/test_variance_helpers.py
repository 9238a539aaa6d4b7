"""Chapters 1-3's reporting and variance helpers, the discrete-latent enumeration and the new toy closed forms.

References are independent of the code under test: closed forms of the t
distribution, torch's own variance, sums over every outcome with
torch.distributions' probabilities, Gauss-Hermite quadrature (exact for
polynomials), trapezoid quadrature, and simulation of the process a closed
form describes.
"""

import itertools
import math

import numpy as np
import pytest
import torch

from vae_course import quadratic
from vae_course.gradients import bernoulli_enumeration_grad, reparam_grads, score_function_grads
from vae_course.montecarlo import (
    format_estimate,
    importance_sampling,
    importance_weighted_values,
    mc_estimate,
    sample_variance,
    student_t_quantile,
)

DT = torch.float64


@pytest.mark.parametrize(
    "mean,se,text",
    [
        (38550.4, 54.0, "38550 ± 50"),  # se >= 10: rounded to the tens
        (38622.0, 9.6, "38620 ± 10"),  # 9.6 rounds up to 10: the tens
        (0.5012, 0.0096, "0.50 ± 0.01"),  # 0.0096 rounds up to 0.01: two decimals, not three
        (1.2517, 0.0034, "1.252 ± 0.003"),
        (-1234.5, 250.0, "-1200 ± 200"),
    ],
)
def test_format_estimate_keeps_one_significant_digit(mean, se, text):
    assert format_estimate(mean, se) == text
    shown_se = text.split(" ± ")[1]
    assert len(shown_se.replace("0.", "").lstrip("0").rstrip("0")) == 1  # one significant digit


def test_format_estimate_rejects_a_non_finite_mean():
    with pytest.raises(ValueError, match="mean must be a finite number"):
        format_estimate(float("nan"), 0.1)


@pytest.mark.parametrize("dof", [0.5, 0.99, 0.0, -1.0])
def test_t_quantile_refuses_dof_below_one(dof):
    with pytest.raises(ValueError, match="dof must be at least 1"):
        student_t_quantile(0.975, dof)


def t3_cdf(t):
    """Student's t with 3 degrees of freedom, in closed form."""
    u = t / math.sqrt(3)
    return 0.5 + (u / (1 + u * u) + math.atan(u)) / math.pi


@pytest.mark.parametrize("prob", [0.6, 0.9, 0.975, 0.995])
def test_t_quantile_inverts_the_closed_form_cdf_at_three_dof(prob):
    assert t3_cdf(student_t_quantile(prob, 3)) == pytest.approx(prob, abs=1e-8)


def test_sample_variance_is_torch_var_and_its_standard_error_is_its_spread():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 3, generator=gen, dtype=DT) * torch.tensor([1.0, 2.0, 0.5], dtype=DT)
    v = sample_variance(x)
    torch.testing.assert_close(v.mean, x.var(0), rtol=1e-12, atol=0)
    # Over 400 repeats of 500 draws, the spread of the sample variance matches the standard error it reports.
    reps = torch.randn(400, 500, generator=gen, dtype=DT)
    many = [sample_variance(r) for r in reps]
    spread = torch.stack([m.mean for m in many]).std().item()
    reported = float(np.mean([m.stderr.item() for m in many]))
    assert reported == pytest.approx(spread, rel=0.15)  # the sd of 400 values is known to about 4%
    assert reported == pytest.approx(
        math.sqrt(2 / 500), rel=0.1
    )  # Gaussian: sqrt((m4 - s^4)/n) = s^2 sqrt(2/n)


def test_sample_variance_needs_two_values():
    with pytest.raises(ValueError, match="at least 2 values"):
        sample_variance(torch.ones(1))


def test_importance_weighted_values_average_to_importance_sampling():
    std = torch.distributions.Normal(torch.tensor(0.0, dtype=DT), 1.0)
    prop = torch.distributions.Normal(torch.tensor(2.0, dtype=DT), 1.0)
    args = (
        lambda x: (x[..., 0] > 2.0).to(DT),
        lambda x: std.log_prob(x[..., 0]),
        lambda n, g: (
            prop.sample((n, 1)) if g is None else 2.0 + torch.randn(n, 1, generator=g, dtype=DT)
        ),
        lambda x: prop.log_prob(x[..., 0]),
        50_000,
    )
    w = importance_weighted_values(*args, torch.Generator().manual_seed(3))
    e = importance_sampling(*args, torch.Generator().manual_seed(3))
    torch.testing.assert_close(mc_estimate(w).mean, e.mean)
    v = sample_variance(w)
    assert abs(v.mean.item() - quadratic.tail_importance_variance(2.0, 2.0)) < 4 * v.stderr.item()


def test_scaled_proposal_second_moment_against_quadrature():
    x = torch.linspace(-40.0, 40.0, 800_001, dtype=DT)
    p = torch.distributions.Normal(torch.tensor(0.0, dtype=DT), 1.0)
    for s2 in (0.55, 0.75, 0.9, 2.0):
        q = torch.distributions.Normal(torch.tensor(0.0, dtype=DT), math.sqrt(s2))
        integral = torch.trapezoid((2 * p.log_prob(x) - q.log_prob(x)).exp(), x).item()
        assert quadratic.scaled_proposal_second_moment(s2) == pytest.approx(integral, rel=1e-8)
    with pytest.raises(ValueError, match="s2 must exceed 1/2"):
        quadratic.scaled_proposal_second_moment(0.5)


def bernoulli_expectation_by_sum(f, logits):
    """E_q f(x) summed over all outcomes with torch.distributions' probabilities (differentiable in logits)."""
    d = logits.shape[0]
    outcomes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=DT)
    log_q = torch.distributions.Bernoulli(logits=logits).log_prob(outcomes).sum(-1)
    return (log_q.exp() * f(outcomes)).sum()


def test_bernoulli_enumeration_grad_is_autograd_of_the_exact_sum():
    logits = torch.tensor([0.3, -1.2, 2.0], dtype=DT)
    f = lambda x: torch.sin(x @ torch.tensor([1.0, 2.0, -0.5], dtype=DT)) + x.prod(-1)
    lg = logits.clone().requires_grad_(True)
    (reference,) = torch.autograd.grad(bernoulli_expectation_by_sum(f, lg), lg)
    torch.testing.assert_close(
        bernoulli_enumeration_grad(f, logits), reference, rtol=1e-12, atol=1e-14
    )


def test_bernoulli_enumeration_grad_of_independent_bits_uses_two_evaluations():
    calls = []

    def f(x):
        calls.append(x.shape)
        return (x - 0.45) ** 2

    logits = torch.linspace(-3.0, 3.0, 1000, dtype=DT)
    g = bernoulli_enumeration_grad(f, logits)
    torch.testing.assert_close(
        g, quadratic.bernoulli_grad_logit(torch.sigmoid(logits), 0.45), rtol=1e-12, atol=1e-15
    )
    assert calls == [(2, 1000)]


def test_bernoulli_enumeration_grad_refuses_many_joint_bits():
    with pytest.raises(ValueError, match="needs 2\\^21 evaluations"):
        bernoulli_enumeration_grad(lambda x: x.sum(-1), torch.zeros(21, dtype=DT))


def test_score_function_grads_per_coordinate_equals_one_problem_at_a_time():
    mean, scale = torch.tensor([0.5, -1.0, 2.0], dtype=DT), torch.tensor([0.3, 1.0, 2.0], dtype=DT)
    ks = torch.tensor([0.0, 1.0, -2.0], dtype=DT)
    side = score_function_grads(
        lambda x: (x - ks) ** 2,
        mean,
        scale,
        5,
        baseline=ks,
        generator=torch.Generator().manual_seed(1),
    )
    x = mean + scale * torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=DT)
    for j in range(3):  # coordinate j alone: ((x_j - k_j)^2 - c_j) (x_j - m_j) / s_j^2
        expected = ((x[:, j] - ks[j]) ** 2 - ks[j]) * (x[:, j] - mean[j]) / scale[j] ** 2
        torch.testing.assert_close(side["mean"][:, j], expected, rtol=1e-12, atol=1e-12)


def test_score_function_grads_per_coordinate_needs_a_diagonal_scale():
    with pytest.raises(ValueError, match="diagonal scale"):
        score_function_grads(lambda x: x**2, torch.zeros(2, dtype=DT), torch.eye(2, dtype=DT), 4)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("level,baseline", [(0.0, 0.0), (100.0, 0.0), (10.0, -7.5)])
def test_isotropic_score_variance_against_gauss_hermite(dim, level, baseline):
    nodes, weights = np.polynomial.hermite_e.hermegauss(20)
    weights = weights / math.sqrt(2 * math.pi)
    grid = torch.tensor(list(itertools.product(nodes, repeat=dim)), dtype=DT)
    w = torch.tensor([math.prod(c) for c in itertools.product(weights, repeat=dim)], dtype=DT)
    g = (quadratic.isotropic_log_likelihood(level)(grid) - baseline) * grid[
        :, 0
    ]  # score of mu_1 at N(0, I): eps_1
    mean = (w * g).sum()
    var = (w * (g - mean) ** 2).sum().item()
    assert abs(mean.item()) < 1e-9
    assert quadratic.isotropic_score_variance(dim, level, baseline) == pytest.approx(var, rel=1e-10)
    best = quadratic.isotropic_optimal_baseline(dim, level)
    assert quadratic.isotropic_score_variance(dim, level, best) == pytest.approx(
        (dim + 2) / 2, rel=1e-12
    )


def test_isotropic_pathwise_variance_is_one():
    g = reparam_grads(
        quadratic.isotropic_log_likelihood(50.0),
        torch.zeros(8, dtype=DT),
        torch.ones(8, dtype=DT),
        4,
        generator=torch.Generator().manual_seed(0),
    )["mean"]
    eps = torch.randn(4, 8, generator=torch.Generator().manual_seed(0), dtype=DT)
    torch.testing.assert_close(
        g, -eps, rtol=1e-12, atol=1e-12
    )  # -eps: variance 1 whatever d and the level


def test_self_consistent_floor_reduces_to_the_exact_one_and_matches_simulation():
    assert quadratic.sgd_excess_floor_self_consistent(0.05, lambda a: 1.0) == pytest.approx(
        quadratic.sgd_excess_floor(0.05, 1.0), rel=1e-12
    )
    # V(a) = 8 a^2 + 6 sigma^2 (linear in a^2): the floor is exact; simulate the AR(1) with that noise.
    step, sigma = 0.05, 0.5
    V = lambda a: quadratic.score_variance_mean(
        a, sigma, 0.0, quadratic.optimal_baseline_mean(a, sigma, 0.0)
    )
    floor = quadratic.sgd_excess_floor_self_consistent(step, V)
    rng = np.random.default_rng(0)
    a = np.zeros(20_000)
    acc = []
    for t in range(600):
        a = (1 - 2 * step) * a - step * np.sqrt(V(a)) * rng.standard_normal(a.shape)
        if t >= 200:
            acc.append(a**2)
    per_chain = np.mean(acc, 0)
    se = per_chain.std(ddof=1) / math.sqrt(per_chain.size)
    assert abs(per_chain.mean() - floor) < 4 * se


def test_self_consistent_floor_rejects_a_non_polynomial_variance():
    with pytest.raises(ValueError, match="even polynomial of degree <= 4"):
        quadratic.sgd_excess_floor_self_consistent(0.05, lambda a: math.exp(a))


def test_sine_closed_forms_take_tensors_that_require_grad():
    mu = torch.tensor(0.7, dtype=DT, requires_grad=True)
    value = quadratic.sine_expectation(mu, 0.5, 3.0)
    (slope,) = torch.autograd.grad(value, mu)
    assert slope.item() == pytest.approx(quadratic.sine_grad_mean(0.7, 0.5, 3.0), rel=1e-12)
    for fn in (quadratic.sine_reparam_variance_mean, quadratic.sine_score_variance_mean):
        assert torch.is_tensor(fn(mu, 0.5, 3.0))
