"""Chapter 10's package code against exact answers: bits per dimension, dequantization,
the discretized logistic, the continuous Bernoulli, the learned decoder scale and ELBO surgery."""

import math
import subprocess
import sys

import keras
import numpy as np
import pytest
import torch

from vae_course.bits import (
    bits_per_dim,
    continuous_bernoulli_log_norm,
    continuous_bernoulli_mean,
    continuous_bernoulli_nll,
    dequantize,
    dequantized_bound,
    discretized_logistic_log_prob,
    nats_from_bits,
)
from vae_course.decoder_scale import (
    LearnedScaleVAE,
    build_learned_scale_vae,
    optimal_shared_sigma,
)
from vae_course.errors import CourseError, DataError
from vae_course.linear_gaussian import LinearGaussian
from vae_course.losses import gaussian_nll, get_likelihood
from vae_course.rate_distortion import elbo_surgery


def test_bits_per_dim_by_hand():
    # 543 nats over 784 pixels: 543 / (784 * 0.693147...) = 0.99925 bits per pixel
    assert bits_per_dim(543.0, 784) == pytest.approx(543.0 / (784 * 0.6931471805599453))
    # a density on [0,1]^D: add D log 256 nats, i.e. exactly 8 bits per dimension
    assert bits_per_dim(-100.0, 10, density_on_unit_cube=True) == pytest.approx(
        (-100.0 + 10 * 5.545177444479562) / (10 * 0.6931471805599453)
    )
    assert bits_per_dim(0.0, 3, density_on_unit_cube=True) == pytest.approx(8.0)
    with pytest.raises(CourseError, match="num_dims"):
        bits_per_dim(1.0, 0)
    for flag in (False, True):
        assert nats_from_bits(bits_per_dim(-78.5, 784, flag), 784, flag) == pytest.approx(-78.5)


def test_dequantize_range_and_errors():
    k = np.arange(256, dtype=np.uint8).reshape(16, 16)
    y = dequantize(k, seed=3)
    assert y.dtype == np.float32 and y.min() >= 0 and y.max() < 1
    assert np.array_equal(np.floor(y.astype(np.float64) * 256).astype(int), k.astype(int))
    with pytest.raises(DataError, match="uint8"):
        dequantize(k.astype(np.float32) / 255)


def test_dequantized_bound_against_a_known_discrete_distribution():
    # density p(y) = 2y on [0, 1]: its 256-level discretization is P(k) = (2k+1) / 256^2, and
    # E_u log p((k+u)/256) = log(2/256) + (k+1) log(k+1) - k log k - 1 exactly.
    k = np.array([[0], [1], [17], [255]], dtype=np.uint8)
    kk = k[:, 0].astype(np.float64)
    log_p_discrete = np.log((2 * kk + 1) / 256.0**2)
    xlogx = lambda a: np.where(a > 0, a * np.log(np.maximum(a, 1e-300)), 0.0)
    exact_bound = np.log(2 / 256) + xlogx(kk + 1) - xlogx(kk) - 1 - np.log(256)
    est = dequantized_bound(lambda y: np.log(2 * y[:, 0]), k, num_samples=20000, seed=0)
    assert np.all(exact_bound < log_p_discrete)  # Jensen: a lower bound, strictly here
    np.testing.assert_allclose(est, exact_bound, atol=0.03)
    # a density constant on every bin loses nothing: the bound is the log-probability
    flat = dequantized_bound(lambda y: np.zeros(len(y)), k, num_samples=3)
    np.testing.assert_allclose(flat, -np.log(256.0), rtol=1e-12)


@pytest.mark.parametrize("log_scale", [-9.0, -4.0, -1.0, 1.0])
def test_discretized_logistic_sums_to_one(log_scale):
    levels = torch.arange(256, dtype=torch.float32) / 255.0
    mean = torch.tensor([0.0, 0.3, 0.5031, 1.0, 1.7])
    x = levels[None, :, None].expand(len(mean), 256, 1)  # (batch, 256 levels, 1)
    m = mean[:, None, None].expand_as(x)
    log_p = torch.stack(
        [discretized_logistic_log_prob(x[:, j], m[:, j], log_scale) for j in range(256)], 1
    )
    assert torch.all(log_p <= 1e-6)
    np.testing.assert_allclose(torch.logsumexp(log_p, 1).numpy(), 0.0, atol=2e-4)


def test_discretized_logistic_against_float64_cdf():
    x = torch.tensor([[0.0, 10 / 255, 128 / 255, 1.0]])
    mean, s = torch.tensor([[0.1, 0.05, 0.6, 0.9]]), 0.07
    xd, md = x.double(), mean.double()
    up = torch.sigmoid((xd + 0.5 / 255 - md) / s)
    lo = torch.sigmoid((xd - 0.5 / 255 - md) / s)
    up[..., -1], lo[..., 0] = 1.0, 0.0
    expected = torch.log(up - lo).sum()
    got = discretized_logistic_log_prob(x, mean, math.log(s))
    assert float(got) == pytest.approx(float(expected), abs=1e-4)


def test_continuous_bernoulli_normaliser_and_mean_by_integration():
    grid = np.linspace(0.0, 1.0, 200001)
    for logit in (-30.0, -3.0, -0.2, 1e-5, 0.0, 0.7, 8.0):
        lam = 1 / (1 + math.exp(-logit))
        dens = np.exp(grid * math.log(lam) + (1 - grid) * math.log1p(-lam))
        integral = np.trapezoid(dens, grid)
        log_c = float(continuous_bernoulli_log_norm(torch.tensor(logit, dtype=torch.float64)))
        assert log_c == pytest.approx(-math.log(integral), rel=1e-6, abs=1e-7)
        mean = np.trapezoid(grid * dens, grid) / integral
        got = float(continuous_bernoulli_mean(torch.tensor(logit, dtype=torch.float64)))
        assert got == pytest.approx(mean, abs=1e-6)
    # the density integrates to one: -nll at every grid point, integrated
    logits = torch.full((1, 1), 2.5, dtype=torch.float64)
    vals = [
        math.exp(
            -float(continuous_bernoulli_nll(torch.full((1, 1), g, dtype=torch.float64), logits))
        )
        for g in grid[::1000]
    ]
    assert np.trapezoid(vals, grid[::1000]) == pytest.approx(1.0, abs=1e-4)
    assert get_likelihood("continuous_bernoulli").decoder_output == "logits"


def test_optimal_shared_sigma_minimises_the_gaussian_nll():
    rng = np.random.default_rng(0)
    x, mu = rng.random((20, 7)), rng.random((20, 7))
    s_hat = optimal_shared_sigma(x, mu)
    assert s_hat == pytest.approx(math.sqrt(np.sum((x - mu) ** 2) / x.size))
    grid = np.linspace(0.5 * s_hat, 1.5 * s_hat, 2001)
    nll = [float(gaussian_nll(torch.tensor(x), torch.tensor(mu), math.log(g)).sum()) for g in grid]
    assert grid[int(np.argmin(nll))] == pytest.approx(s_hat, rel=1e-3)
    with pytest.raises(ValueError, match="same shape"):
        optimal_shared_sigma(x, mu[:3])


def test_learned_scale_vae_likelihood_training_and_saving(tmp_path):
    keras.utils.set_random_seed(0)
    shared = build_learned_scale_vae(3, hidden_units=(8,), image_shape=(2, 3), scale_rate=3.0)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(shared.log_scale), math.log(0.5), rtol=1e-6
    )
    assert tuple(shared.log_scale.shape) == ()
    per_pixel = build_learned_scale_vae(
        3,
        "discretized_logistic",
        per_pixel=True,
        min_log_scale=-3.0,
        hidden_units=(8,),
        image_shape=(2, 3),
    )
    assert tuple(per_pixel.log_scale.shape) == (2, 3)
    x = np.random.default_rng(0).integers(0, 256, (64, 2, 3)).astype("float32") / 255
    out = shared.decoder(torch.zeros(64, 3))
    expected = -gaussian_nll(x, out, math.log(0.5))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(shared.log_likelihood(x, out)),
        keras.ops.convert_to_numpy(expected),
        rtol=1e-6,
    )
    per_pixel.scale_weight.assign(np.full((2, 3), -5.0, dtype="float32"))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(per_pixel.log_likelihood(x, out)),
        keras.ops.convert_to_numpy(discretized_logistic_log_prob(x, out, -3.0)),
        rtol=1e-6,
    )  # the floor is what the likelihood uses
    shared.compile(optimizer=keras.optimizers.Adam(0.05))
    shared.fit(x, epochs=3, batch_size=32, verbose=0)
    assert float(keras.ops.convert_to_numpy(shared.log_scale)) < math.log(0.5) - 0.1
    path = tmp_path / "m.keras"
    shared.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, LearnedScaleVAE)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded.log_scale), keras.ops.convert_to_numpy(shared.log_scale)
    )
    code = (
        "import sys; from vae_course.tools.checkpoints import load_vae; "
        "print(type(load_vae(sys.argv[1])).__name__)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert proc.stdout.strip() == "LearnedScaleVAE", proc.stderr[-2000:]  # a fresh process loads it
    with pytest.raises(CourseError, match="likelihood must be one of"):
        LearnedScaleVAE(shared.encoder, shared.decoder, likelihood="bernoulli")


def _linear_gaussian_encoder(n, w, s, shrink, seed):
    """x ~ p(x); q(z|x) = N(shrink * posterior mean, posterior variance): closed-form I_q."""
    model = LinearGaussian(w=w, b=0.0, s=s)
    gen = torch.Generator().manual_seed(seed)
    x = math.sqrt(model.marginal_var()) * torch.randn(n, generator=gen, dtype=torch.float64)
    m, v = model.posterior(x)
    mean = (shrink * m)[:, None]
    log_var = torch.log(torch.as_tensor(v, dtype=torch.float64)).expand(n)[:, None]
    var_m = shrink**2 * (1.0 - float(v))  # Var_x of the posterior mean is 1 - v
    mi = 0.5 * math.log((var_m + float(v)) / float(v))  # I_q: q(z) = N(0, var_m + v)
    agg_var = var_m + float(v)
    marginal_kl = 0.5 * (agg_var - 1.0 - math.log(agg_var))
    return mean.numpy(), log_var.numpy(), mi, marginal_kl


@pytest.mark.parametrize("shrink", [1.0, 0.5])
def test_elbo_surgery_on_the_linear_gaussian_model(shrink):
    mean, log_var, mi, marginal_kl = _linear_gaussian_encoder(4000, 2.0, 1.0, shrink, seed=0)
    out = elbo_surgery(mean, log_var, seed=1)
    np.testing.assert_allclose(out["rate"], out["mutual_information"] + out["marginal_kl"])
    # the average rate is E_x KL, which equals I_q + KL(q(z)||p(z)) in closed form
    se = out["rate"].std() / math.sqrt(4000)
    assert abs(out["rate"].mean() - (mi + marginal_kl)) < 4 * se
    est = out["mutual_information"]
    assert abs(est.mean() - mi) < 4 * est.std() / math.sqrt(4000) + 0.01
    assert np.all(est <= math.log(4000) + 1e-9)  # sanity check: holds by construction


def test_elbo_surgery_mutual_information_is_biased_down():
    # I_q = 0.5 log(1 + w^2/s^2) = 2.3 nats with w = 3.16, s = 1: with N = 30 images the
    # estimate averages well below it (InfoNCE: at most I and at most log 30 = 3.4)
    estimates = []
    for seed in range(40):
        mean, log_var, mi, _ = _linear_gaussian_encoder(30, math.sqrt(99.0), 1.0, 1.0, seed)
        estimates.append(elbo_surgery(mean, log_var, seed=seed)["mutual_information"].mean())
    estimates = np.array(estimates)
    assert mi == pytest.approx(0.5 * math.log(100.0))
    assert estimates.mean() + 4 * estimates.std() / math.sqrt(40) < mi


def test_elbo_surgery_checks_shapes():
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        elbo_surgery(np.zeros((3, 2)), np.zeros((3, 1)))


@pytest.mark.parametrize("mean,sigma", [(0.3, 0.2), (0.001, 0.01), (1.2, 0.05), (0.9, 0.001)])
def test_discretized_gaussian_sums_to_one_and_matches_the_cdf(mean, sigma):
    from vae_course.bits import discretized_gaussian_log_prob

    levels = np.arange(256, dtype=np.uint8)[:, None]
    log_p = discretized_gaussian_log_prob(levels, mean, sigma)
    assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-9)

    def cdf(t):
        return 0.5 * (1 + math.erf((t - mean) / (sigma * math.sqrt(2))))

    for k in (0, 77, 255):  # edge bins take the tails; interior bins [k/256, (k+1)/256)
        lo = 0.0 if k == 0 else cdf(k / 256)
        hi = 1.0 if k == 255 else cdf((k + 1) / 256)
        if hi - lo > 1e-12:
            assert log_p[k] == pytest.approx(math.log(hi - lo), rel=1e-6)


def test_discretized_gaussian_rejects_bad_input():
    from vae_course.bits import discretized_gaussian_log_prob

    with pytest.raises(Exception, match="uint8"):
        discretized_gaussian_log_prob(np.zeros((1, 2)), 0.5, 0.1)
    with pytest.raises(ValueError, match="sigma"):
        discretized_gaussian_log_prob(np.zeros((1, 2), np.uint8), 0.5, 0.0)
