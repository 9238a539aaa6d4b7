"""The estimators added for chapters 1 and 2: reporting, t quantiles, importance sampling, discrete latents."""

import math

import pytest
import torch

from vae_course import gradients, montecarlo, quadratic

DT = torch.float64


@pytest.mark.parametrize(
    "mean,se,text",
    [
        (1.2517, 0.0034, "1.252 ± 0.003"),
        (21.715, 0.111, "21.7 ± 0.1"),
        (-0.00071, 0.002, "-0.001 ± 0.002"),
        (38550.0, 54.0, "38550 ± 50"),
        (0.1, 0.0, "0.1000 ± 0"),
    ],
)
def test_format_estimate(mean, se, text):
    assert montecarlo.format_estimate(torch.tensor(mean), se) == text


def test_format_estimate_rejects_bad_stderr():
    with pytest.raises(ValueError, match="stderr must be a finite number >= 0"):
        montecarlo.format_estimate(1.0, -0.1)


@pytest.mark.parametrize("prob", [0.6, 0.9, 0.975, 0.995])
def test_t_quantile_closed_forms(prob):
    # dof = 1 is the Cauchy law; dof = 2 has F(t) = 1/2 + t / (2 sqrt(t^2 + 2)).
    assert montecarlo.student_t_quantile(prob, 1) == pytest.approx(
        math.tan(math.pi * (prob - 0.5)), rel=1e-9
    )
    assert montecarlo.student_t_quantile(prob, 2) == pytest.approx(
        (2 * prob - 1) / math.sqrt(2 * prob * (1 - prob)), rel=1e-8
    )
    # large dof: the Cornish-Fisher expansion around the normal quantile z (error O(dof^-4))
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(prob, dtype=DT)).item()
    for nu in (100, 1000, 10_000):
        cf = (
            z
            + (z**3 + z) / (4 * nu)
            + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * nu**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * nu**3)
        )
        assert montecarlo.student_t_quantile(prob, nu) == pytest.approx(cf, rel=1e-6)


def test_t_quantile_gives_exact_coverage_for_gaussian_data():
    gen = torch.Generator().manual_seed(0)
    for n in (2, 4):
        x = torch.randn(n, 200_000, generator=gen, dtype=DT)
        e = montecarlo.mc_estimate(x)
        t = montecarlo.student_t_quantile(0.975, n - 1)
        cover = (e.mean.abs() <= t * e.stderr).double().mean().item()
        assert abs(cover - 0.95) < 4 * math.sqrt(0.95 * 0.05 / 200_000)


@pytest.mark.parametrize(
    "prob,dof,match", [(1.0, 3, "prob must lie"), (0.5, 0, "dof must be at least 1")]
)
def test_t_quantile_bad_input(prob, dof, match):
    with pytest.raises(ValueError, match=match):
        montecarlo.student_t_quantile(prob, dof)


@pytest.mark.parametrize("shift", [0.0, 1.0, 2.5])
def test_importance_sampling_of_a_tail_probability(shift):
    t = 2.0
    std = torch.distributions.Normal(torch.tensor(0.0, dtype=DT), 1.0)
    prop = torch.distributions.Normal(torch.tensor(shift, dtype=DT), 1.0)
    n = 200_000
    e = montecarlo.importance_sampling(
        lambda x: (x[:, 0] > t).to(DT),
        lambda x: std.log_prob(x[:, 0]),
        lambda m, g: shift + torch.randn(m, 1, generator=g, dtype=DT),
        lambda x: prop.log_prob(x[:, 0]),
        n,
        torch.Generator().manual_seed(1),
    )
    exact = 1 - std.cdf(torch.tensor(t, dtype=DT)).item()
    assert abs(e.mean.item() - exact) < 4 * e.stderr.item()
    var = quadratic.tail_importance_variance(t, shift)
    # the standard error estimates sqrt(Var / N) to a few percent at this N
    assert e.stderr.item() == pytest.approx(math.sqrt(var / n), rel=0.05)


def test_leave_one_out_baseline():
    v = torch.tensor([[1.0, 0.0], [2.0, 10.0], [6.0, 2.0]], dtype=DT)
    torch.testing.assert_close(
        gradients.leave_one_out_baseline(v),
        torch.tensor([[4.0, 6.0], [3.5, 1.0], [1.5, 5.0]], dtype=DT),
    )
    with pytest.raises(ValueError, match="at least 2 draws"):
        gradients.leave_one_out_baseline(torch.ones(1))


@pytest.mark.parametrize("baseline", [0.0, 0.25, "rloo"])
def test_bernoulli_score_grads_unbiased(baseline):
    k = 0.45
    logits = torch.tensor([0.0, 1.2, -2.0], dtype=DT)
    f = lambda x: ((x - k) ** 2).sum(-1)
    g = gradients.bernoulli_score_grads(
        f, logits, 400_000, baseline, torch.Generator().manual_seed(2)
    )
    assert g["logits"].shape == (400_000, 3) and set(g["x"].unique().tolist()) <= {0.0, 1.0}
    p = torch.sigmoid(logits)
    assert torch.allclose(g["x"].mean(0), p, atol=0.005)
    exact = quadratic.bernoulli_grad_logit(p, k)
    e = montecarlo.mc_estimate(g["logits"])
    assert torch.all((e.mean - exact).abs() < 4 * e.stderr)


def test_bernoulli_score_grads_single_latent_variances():
    k, n = 0.45, 200_000
    logits = torch.tensor([0.7], dtype=DT)
    p = torch.sigmoid(logits).item()
    f = quadratic.shifted_square(k)
    g = gradients.bernoulli_score_grads(f, logits, n, 0.0, torch.Generator().manual_seed(3))[
        "logits"
    ][:, 0]
    v = montecarlo.mc_estimate((g - g.mean()) ** 2)
    assert abs(v.mean.item() - quadratic.bernoulli_score_variance(p, k)) < 4 * v.stderr.item()


@pytest.mark.parametrize("per_coordinate", [False, True])
def test_bernoulli_mean_baseline_is_biased(per_coordinate):
    """With N = 2 draws a call's batch-mean baseline halves the gradient; RLOO does not."""
    k, calls = 0.45, 40_000
    exact = quadratic.bernoulli_grad_logit(0.5, k)
    gen = torch.Generator().manual_seed(4)
    for baseline, factor in (("mean", 0.5), ("rloo", 1.0)):
        if per_coordinate:  # 40 000 independent one-bit problems in one call
            g = gradients.bernoulli_score_grads(
                lambda x: (x - k) ** 2, torch.zeros(calls, dtype=DT), 2, baseline, gen
            )
            vals = g["logits"].mean(0)
            assert g["f"].shape == (2, calls)
        else:
            f = quadratic.shifted_square(k)
            vals = torch.stack(
                [
                    gradients.bernoulli_score_grads(f, torch.zeros(1, dtype=DT), 2, baseline, gen)[
                        "logits"
                    ].mean()
                    for _ in range(calls // 10)
                ]
            )
        e = montecarlo.mc_estimate(vals)
        assert abs(e.mean.item() - factor * exact) < 4 * e.stderr.item()
        assert e.stderr.item() < 0.12 * exact  # precise enough to tell 0.5 from 1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"logits": torch.zeros(2, 2)}, r"logits must have shape \(d,\)"),
        ({"baseline": "median"}, "baseline must be a number, 'rloo' or 'mean'"),
        ({"f": lambda x: x[:, :1]}, r"f must map draws \(N, d\) = \(4, 2\)"),
    ],
)
def test_bernoulli_bad_input(kwargs, match):
    args = {"f": lambda x: x.sum(-1), "logits": torch.zeros(2), "num_samples": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        gradients.bernoulli_score_grads(**args)
