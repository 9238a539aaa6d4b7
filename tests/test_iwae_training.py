"""The importance-weighted VAE (vae_course.iwae_training): k = 1 is the VAE on the Monte Carlo
log weight, the loss is L_k's estimator at the model's own draws (checked with
torch.distributions), L_k rises towards the exact log p(x) of the linear-Gaussian model, and a
saved model loads in a fresh process."""

import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import torch

from vae_course.errors import CourseError
from vae_course.iwae import gaussian_log_weights, iwae_objective, linear_gaussian_log_joint
from vae_course.iwae_training import IWAE, build_iwae
from vae_course.linear_gaussian import LinearGaussian
from vae_course.models import build_vae
from vae_course.tools.checkpoints import save_vae
from vae_course.train import train_vae_dynamic

SMALL = {"latent_dim": 3, "image_shape": (4, 4), "hidden_units": (8,)}


def _images(n=40, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, 4, 4)).astype("float32")


def _weights(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def test_k1_trains_exactly_as_the_vae_on_the_monte_carlo_log_weight():
    keras.utils.set_random_seed(0)
    vae = build_vae(likelihood="bernoulli", kl="mc", activation="tanh", **SMALL)
    keras.utils.set_random_seed(0)
    iwae = build_iwae(1, activation="tanh", **SMALL)
    assert all(np.array_equal(a, b) for a, b in zip(_weights(vae), _weights(iwae)))
    x = _images()
    losses = []
    for model in (vae, iwae):
        gen = keras.random.SeedGenerator(7)
        losses.append(keras.ops.convert_to_numpy(model.compute_losses(x, seed=gen)[0]))
        train_vae_dynamic(model, x, epochs=2, seed=3, verbose=0, batch_size=8)
    assert np.array_equal(losses[0], losses[1])  # the same single-sample ELBO estimate
    assert all(np.array_equal(a, b) for a, b in zip(_weights(vae), _weights(iwae)))

    # training moved the weights (against a copy taken before training)
    keras.utils.set_random_seed(0)
    before = _weights(build_iwae(1, activation="tanh", **SMALL))
    assert not any(np.array_equal(a, b) for a, b in zip(before, _weights(iwae)))


def _first_epoch_batches(model, x):
    """The batches ``train_vae_dynamic`` hands to the model's train_step in one epoch."""
    seen, step = [], model.train_step

    def recording_step(data):
        images = data[0] if isinstance(data, (tuple, list)) else data
        seen.append(keras.ops.convert_to_numpy(images).copy())
        return step(data)

    model.train_step = recording_step
    train_vae_dynamic(model, x, epochs=1, seed=3, verbose=0, batch_size=8)
    return seen


def test_runs_with_different_k_share_initial_weights_and_batches():
    """Chapter 9's fairness claim: k_train = 1 and 5 (and the k-draw VAE control) start from the
    same weights and see the same binarized batches in the same order."""
    x = _images()
    models = []
    for build in (lambda: build_iwae(1, **SMALL), lambda: build_iwae(5, **SMALL)):
        keras.utils.set_random_seed(0)
        models.append(build())
    keras.utils.set_random_seed(0)
    models.append(
        build_vae(likelihood="bernoulli", kl="mc", num_mc_samples=5, activation="tanh", **SMALL)
    )
    inits = [_weights(m) for m in models]
    for other in inits[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(inits[0], other))
    batches = [_first_epoch_batches(m, x) for m in models]
    assert len(batches[0]) == 5
    assert not np.array_equal(batches[0][0], (x[:8] > 0.5))  # shuffled (and binarized afresh)
    for other in batches[1:]:
        assert len(other) == len(batches[0])
        assert all(np.array_equal(a, b) for a, b in zip(batches[0], other))


@pytest.mark.parametrize("k", [1, 5])
def test_loss_is_minus_the_iwae_estimator_at_the_models_draws(k):
    keras.utils.set_random_seed(1)
    model = build_iwae(k, **SMALL)
    x = (_images(6) > 0.5).astype("float32")
    loss, nll, kl = (
        keras.ops.convert_to_numpy(t)
        for t in model.compute_losses(x, seed=keras.random.SeedGenerator(5))
    )
    # the same draws, scored with torch.distributions
    eps = keras.random.normal((k, 6, 3), seed=keras.random.SeedGenerator(5))
    with torch.no_grad():
        mean, log_var = model.encode(x)
        z = mean + torch.exp(0.5 * log_var) * eps
        logits = model.decoder(z.reshape(k * 6, 3)).reshape(k, 6, 16)
        xt = torch.as_tensor(x).reshape(1, 6, 16)
        log_px_z = torch.distributions.Bernoulli(logits=logits).log_prob(xt).sum(-1)
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_qz = torch.distributions.Normal(mean, torch.exp(0.5 * log_var)).log_prob(z).sum(-1)
        log_w = (log_px_z + log_pz - log_qz).double()
        want = (torch.logsumexp(log_w, 0) - math.log(k)).numpy()
    np.testing.assert_allclose(-loss, want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(-(nll + kl), log_w.mean(0).numpy(), rtol=1e-5, atol=1e-4)
    if k == 1:
        assert np.array_equal(loss, nll + kl)


def test_objective_rises_with_k_towards_the_exact_log_marginal():
    model = LinearGaussian(w=1.5, b=0.3, s=0.8)
    x = torch.tensor(2.0, dtype=torch.float64)
    lj = linear_gaussian_log_joint(model, x)
    mean = torch.tensor([-0.5], dtype=torch.float64)  # q is not the posterior
    log_var = torch.tensor([0.5], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    n = 4000
    est = {}
    for k in (1, 2, 5, 50, 500):
        eps = torch.randn(k, n, 1, generator=gen, dtype=torch.float64)
        v = iwae_objective(gaussian_log_weights(lj, eps, mean, log_var))
        est[k] = (v.mean().item(), v.std().item() / math.sqrt(n))
    log_px = model.log_marginal(x).item()
    ks = sorted(est)
    for a, b in zip(ks, ks[1:]):  # independent draws: the se of a difference adds in quadrature
        se = math.hypot(est[a][1], est[b][1])
        assert est[b][0] - est[a][0] > 3 * se, (a, b, est)
    exact_elbo = model.elbo(x, mean[0], torch.exp(log_var[0])).item()
    assert abs(est[1][0] - exact_elbo) < 4 * est[1][1]
    gap_500 = log_px - est[500][0]
    assert 0 < gap_500 < 0.01 * (log_px - exact_elbo), (gap_500, log_px - exact_elbo)


def test_objective_gradient_is_the_normalized_weights():
    log_w = torch.tensor([[0.3, -2.0], [1.7, -1.0], [-0.4, 0.5]], requires_grad=True)
    (g,) = torch.autograd.grad(iwae_objective(log_w).sum(), [log_w])
    assert torch.allclose(g, torch.softmax(log_w.detach(), 0))


def test_bad_settings_name_the_argument():
    vae = build_vae(likelihood="bernoulli", **SMALL)
    encoder, decoder = vae.encoder, vae.decoder
    with pytest.raises(CourseError, match="kl_weight"):
        IWAE(encoder, decoder, num_samples=5, likelihood="bernoulli", kl_weight=0.5)
    with pytest.raises(ValueError, match="num_samples"):
        IWAE(encoder, decoder, num_samples=0, likelihood="bernoulli")


def test_saved_iwae_loads_in_a_fresh_process(tmp_path):
    keras.utils.set_random_seed(2)
    model = build_iwae(5, **SMALL)
    x = (_images(16) > 0.5).astype("float32")
    train_vae_dynamic(model, x, epochs=1, seed=0, verbose=0, batch_size=8)
    path = save_vae(model, tmp_path / "model.keras")
    want = keras.ops.convert_to_numpy(model.encode(x[:2])[0]).ravel()[:4]
    code = (
        "import vae_course, numpy as np\n"
        "from vae_course.tools.checkpoints import load_vae\n"
        f"m = load_vae({str(path)!r})\n"
        "x = (np.random.default_rng(0).uniform(size=(16, 4, 4)) > 0.5).astype('float32')\n"
        "mu = m.encode(x[:2])[0].detach().numpy().ravel()[:4]\n"
        "print(type(m).__name__, m.num_samples, m.likelihood, *mu.tolist())"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    name, k, likelihood, *mu = run.stdout.split()
    assert (name, k, likelihood) == ("IWAE", "5", "bernoulli")
    np.testing.assert_array_equal(np.array(mu, dtype=np.float32), want)
