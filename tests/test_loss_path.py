"""The VAE's one loss path: the KL weight beta and its warm-up schedule, the model's own
random draws, the likelihood table, and the one vocabulary of the ELBO's estimators."""

import math
import random

import keras
import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from vae_course import gaussian, gradients, losses
from vae_course.errors import CourseError, check_positive_int
from vae_course.evaluate import negative_elbo
from vae_course.linear_gaussian import LinearGaussian
from vae_course.models import (
    VAE,
    LinearWarmup,
    build_decoder,
    build_encoder,
    build_vae,
    linear_warmup,
)
from vae_course.montecarlo import mean_and_se, paired_difference
from vae_course.train import WarmupVAE, train_vae

SMALL = dict(latent_dim=2, image_shape=(4, 4), hidden_units=(8,))


def _binary(n, seed=6):
    return (np.random.default_rng(seed).random((n, 4, 4)) < 0.5).astype(np.float32)


def _one_step_change(kl_weight, x):
    """The weight change of one SGD step (lr 1) from the same weights and the same draws."""
    keras.utils.set_random_seed(3)
    vae = build_vae(likelihood="bernoulli", kl_weight=kl_weight, **SMALL)
    vae.compile(optimizer=keras.optimizers.SGD(1.0))
    before = [keras.ops.convert_to_numpy(w).copy() for w in vae.trainable_weights]
    vae.seed_generator.state.assign(keras.ops.convert_to_tensor([5, 0], dtype="int32"))
    vae.train_on_batch(x)
    after = [keras.ops.convert_to_numpy(w) for w in vae.trainable_weights]
    return vae, [b - a for a, b in zip(after, before)]  # = the gradient, for SGD with lr 1


def _reference_gradient(vae, x, beta):
    """d/dweights mean(nll + beta kl) by autograd, at the draws the step used."""
    vae.seed_generator.state.assign(keras.ops.convert_to_tensor([5, 0], dtype="int32"))
    for w in vae.trainable_weights:
        w.value.grad = None
    _, nll, kl = vae.compute_losses(keras.ops.convert_to_tensor(x), training=True)
    torch.mean(nll + beta * kl).backward()
    return [w.value.grad.detach().cpu().numpy() for w in vae.trainable_weights]


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_train_step_minimises_nll_plus_beta_kl(beta):
    x = _binary(32)
    vae, change = _one_step_change(beta, x)
    # the reference: a fresh model with the same initial weights, gradient by hand
    keras.utils.set_random_seed(3)
    fresh = build_vae(likelihood="bernoulli", **SMALL)
    for g, r in zip(change, _reference_gradient(fresh, x, beta)):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6)


def test_beta_changes_the_step():
    x = _binary(32)
    _, zero = _one_step_change(0.0, x)
    _, one = _one_step_change(1.0, x)
    z_params_bias = 3  # the encoder's last bias: the KL's gradient reaches it, the decoder's weights it does not
    assert np.abs(zero[z_params_bias] - one[z_params_bias]).max() > 1e-4
    np.testing.assert_array_equal(
        zero[-1], one[-1]
    )  # the decoder's bias: the KL does not depend on it


def test_linear_warmup_values():
    schedule = linear_warmup(10)
    values = [float(keras.ops.convert_to_numpy(schedule(t))) for t in (0, 1, 5, 9, 10, 11, 1000)]
    assert values == pytest.approx([0.0, 0.1, 0.5, 0.9, 1.0, 1.0, 1.0], abs=1e-7)
    with pytest.raises(CourseError, match="steps must be a positive integer, got 0"):
        linear_warmup(0)


def test_warmup_resumes_mid_ramp_from_a_saved_model(tmp_path):
    from vae_course.tools.checkpoints import load_vae, save_vae

    keras.utils.set_random_seed(0)
    vae = build_vae(likelihood="bernoulli", kl_weight=linear_warmup(8), **SMALL)
    assert vae.beta() == 0.0
    x = _binary(64)
    train_vae(vae, x, epochs=2, batch_size=32, seed=0, verbose=0)  # 4 steps
    assert vae.beta() == pytest.approx(0.5)
    loaded = load_vae(save_vae(vae, tmp_path / "mid.keras"))
    assert isinstance(loaded.kl_weight, LinearWarmup) and loaded.kl_weight.steps == 8
    assert int(loaded.optimizer.iterations) == 4 and loaded.beta() == pytest.approx(0.5)
    train_vae(loaded, x, epochs=1, batch_size=32, seed=None, verbose=0, initial_epoch=2)
    assert loaded.beta() == pytest.approx(0.75)


def test_warmup_vae_is_the_vae_with_a_schedule():
    base = build_vae(likelihood="bernoulli", **SMALL)
    vae = WarmupVAE(base.encoder, base.decoder, warmup_steps=4, likelihood="bernoulli")
    assert isinstance(vae.kl_weight, LinearWarmup) and vae.warmup_steps == 4
    assert "train_step" not in WarmupVAE.__dict__
    again = WarmupVAE.from_config(vae.get_config())
    assert again.warmup_steps == 4 and again.beta(2) == 0.5


def test_kl_weight_round_trips_and_rejects_bad_values():
    vae = build_vae(kl_weight=0.25, **SMALL)
    assert VAE.from_config(vae.get_config()).kl_weight == 0.25
    with pytest.raises(CourseError, match="kl_weight must be a number >= 0"):
        build_vae(kl_weight=-1.0, **SMALL)
    plain_function = build_vae(kl_weight=lambda step: 1.0, **SMALL)
    with pytest.raises(CourseError, match="plain function"):
        plain_function.get_config()


def _draws(vae, n=3):
    z_mean = keras.ops.zeros((n, 2))
    return keras.ops.convert_to_numpy(vae.reparameterize(z_mean, z_mean))


def test_the_vae_draws_from_its_own_seed_generator():
    keras.utils.set_random_seed(1)
    first = _draws(build_vae(**SMALL))
    keras.utils.set_random_seed(1)
    again = build_vae(**SMALL)
    keras.random.normal((7,))  # the global generator moves on ...
    np.testing.assert_array_equal(
        _draws(again), first
    )  # ... the model's draws do not: reproducible
    keras.utils.set_random_seed(2)
    assert not np.array_equal(_draws(build_vae(**SMALL)), first)


def test_negative_elbo_takes_a_seed_and_reseeds_nothing_global():
    vae = build_vae(likelihood="bernoulli", **SMALL)
    x = _binary(10)
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    expected = (random.random(), np.random.random(), torch.rand(1).item())
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    first = negative_elbo(vae, x, seed=4)
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected
    np.testing.assert_array_equal(first, negative_elbo(vae, x, seed=4))
    assert not np.array_equal(first, negative_elbo(vae, x, seed=5))


def test_likelihood_table_scores_against_torch_distributions():
    rng = np.random.default_rng(0)
    x = (rng.random((5, 3, 3)) < 0.5).astype(np.float64)
    out = rng.normal(size=(5, 3, 3))
    t, o = torch.as_tensor(x), torch.as_tensor(out)
    bern = losses.get_likelihood("bernoulli").log_prob(t, o, 0.5)
    torch.testing.assert_close(bern, Independent(Bernoulli(logits=o), 2).log_prob(t))
    gauss = losses.get_likelihood("gaussian").log_prob(t, o, 0.5)
    torch.testing.assert_close(gauss, Independent(Normal(o, 0.5), 2).log_prob(t))
    torch.testing.assert_close(losses.get_likelihood("bernoulli").mean(o), torch.sigmoid(o))
    assert build_vae(likelihood="bernoulli", **SMALL).decoder.layers[-1].name == "reshape"  # logits
    assert build_vae(likelihood="gaussian", **SMALL).decoder.layers[-1].name == "sigmoid"  # means
    with pytest.raises(CourseError, match="likelihood must be one of .*'poisson'"):
        losses.get_likelihood("poisson")


def test_a_sigmoid_decoder_with_a_bernoulli_likelihood_is_refused():
    encoder = build_encoder(2, (4, 4), (8,))
    with pytest.raises(
        CourseError, match="expects the decoder to output logits.*ends with a sigmoid"
    ):
        VAE(
            encoder,
            build_decoder(2, (4, 4), (8,), output_activation="sigmoid"),
            likelihood="bernoulli",
        )
    VAE(
        encoder, build_decoder(2, (4, 4), (8,), output_activation=None), likelihood="bernoulli"
    )  # logits: fine


@pytest.mark.parametrize(("old", "new"), [("full", "mc"), ("analytic_kl", "analytic")])
def test_one_vocabulary_for_the_estimators(old, new):
    assert losses.ELBO_ESTIMATORS == gradients.ELBO_ESTIMATORS == ("analytic", "mc", "stl")
    with pytest.raises(ValueError, match=f"'{old}' is the old name of '{new}'"):
        gradients.elbo_grads(
            lambda z: -(z**2).sum(-1), torch.zeros(2), torch.ones(2), 4, estimator=old
        )
    with pytest.raises(ValueError, match=f"'{old}' is the old name of '{new}'"):
        build_vae(kl=old, **SMALL)
    with pytest.raises(ValueError, match=f"'{old}' is the old name of '{new}'"):
        LinearGaussian(1.0, 0.0, 1.0).grad_m_variance(0.0, 0.0, 1.0, old)


def test_one_gaussian_kl_against_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    m1, m2 = (
        torch.randn(5, generator=gen, dtype=torch.float64),
        torch.randn(5, generator=gen, dtype=torch.float64),
    )
    lv1, lv2 = (
        torch.randn(5, generator=gen, dtype=torch.float64),
        torch.randn(5, generator=gen, dtype=torch.float64),
    )
    reference = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp()))
    torch.testing.assert_close(gaussian.normal_kl(m1, lv1, m2, lv2), reference)
    torch.testing.assert_close(
        gaussian.gaussian_kl(m1, (0.5 * lv1).exp(), m2, (0.5 * lv2).exp()), reference.sum()
    )
    prior = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(0.0, 1.0)).sum()
    torch.testing.assert_close(losses.kl_std_normal(m1[None], lv1[None])[0], prior)


def test_one_reparameterization_for_the_vae_and_the_chapters():
    mean, scale = torch.tensor([[0.5, -1.0], [2.0, 0.0]]), torch.tensor([[1.0, 2.0], [0.5, 3.0]])
    eps = torch.tensor([[0.1, 0.2], [0.3, -0.4]])
    torch.testing.assert_close(
        gradients.transform(eps, mean, scale), mean + scale * eps
    )  # per-example diagonal
    L = torch.tensor([[1.0, 0.0], [0.5, 2.0]])
    torch.testing.assert_close(
        gradients.transform(eps, mean[0], L), mean[0] + eps @ L.T
    )  # one Cholesky factor


def test_one_standard_error():
    a = np.random.default_rng(0).normal(size=50)
    b = a + np.random.default_rng(1).normal(size=50)
    assert mean_and_se(a) == pytest.approx((a.mean(), a.std(ddof=1) / math.sqrt(50)), rel=1e-12)
    assert paired_difference(b, a) == pytest.approx(mean_and_se(b - a), rel=1e-12)
    with pytest.raises(ValueError, match="1-D array"):
        mean_and_se(a[:1])


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "4", None])
def test_check_positive_int_names_what_was_given_and_the_fix(bad):
    with pytest.raises(
        CourseError,
        match=rf"epochs must be a positive integer, got {bad!r}\. Fix: e\.g\. epochs=5\.",
    ):
        check_positive_int(bad, "epochs", 5)
    assert check_positive_int(np.int64(3), "epochs", 5) == 3
