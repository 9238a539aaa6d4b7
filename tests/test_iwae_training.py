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
from vae_course.evaluate import active_units, iwae_bound
from vae_course.iwae import (
    dreg_surrogate,
    gaussian_log_weights,
    iwae_objective,
    linear_gaussian_log_joint,
)
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
    """Chapter 9's fairness claim: k_train = 1 and 5 (and the k-draw VAE control, the model
    trained with DReG and the model with an amortized flow) start from the same weights and the
    same state of the generator of eps, and see the same binarized batches in the same order."""
    x = _images()
    models = []
    builds = (
        lambda: build_iwae(1, **SMALL),
        lambda: build_iwae(5, **SMALL),
        lambda: build_iwae(5, estimator="dreg", **SMALL),
        lambda: build_iwae(1, flow_steps=2, flow_hidden_units=6, **SMALL),
    )
    for build in builds:
        keras.utils.set_random_seed(0)
        models.append(build())
    keras.utils.set_random_seed(0)
    models.append(
        build_vae(likelihood="bernoulli", kl="mc", num_mc_samples=5, activation="tanh", **SMALL)
    )
    inits = [_weights(m) for m in models]
    for other in inits[1:]:  # (the flow's own weights come after the networks')
        assert all(np.array_equal(a, b) for a, b in zip(inits[0], other))
    states = [keras.ops.convert_to_numpy(m.seed_generator.state) for m in models]
    assert all(np.array_equal(states[0], other) for other in states[1:]), states
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


# ---- training with DReG (estimator="dreg")


def _grads(model, loss):
    """Gradients of loss.sum() with respect to the encoder's and the decoder's weights."""
    enc = [v.value for v in model.encoder.trainable_weights]
    dec = [v.value for v in model.decoder.trainable_weights]
    g = torch.autograd.grad(keras.ops.sum(loss), enc + dec)
    return [t.numpy() for t in g[: len(enc)]], [t.numpy() for t in g[len(enc) :]]


@pytest.mark.parametrize("k", [1, 5])
def test_dreg_keeps_the_loss_and_the_decoder_gradient_and_gives_the_encoder_dregs(k):
    """Against autograd of the two separate estimators on the same draws: the loss value and the
    decoder's gradient are IWAE's; the encoder's is the gradient of iwae.dreg_surrogate."""
    keras.utils.set_random_seed(4)
    dreg = build_iwae(k, estimator="dreg", **SMALL)
    iwae = IWAE.from_config({**dreg.get_config(), "estimator": "iwae"})
    iwae.set_weights(dreg.get_weights())
    x = (_images(6) > 0.5).astype("float32")
    loss_d = dreg.compute_losses(x, seed=keras.random.SeedGenerator(5))
    loss_i = iwae.compute_losses(x, seed=keras.random.SeedGenerator(5))
    for a, b in zip(loss_d, loss_i):  # loss, nll, kl: the same values
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    enc_d, dec_d = _grads(dreg, loss_d[0])
    enc_i, dec_i = _grads(iwae, loss_i[0])
    for a, b in zip(dec_d, dec_i):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    # the reference: dreg_surrogate of the same draws, q's parameters stopped in log q
    eps = keras.random.normal((k, 6, 3), seed=keras.random.SeedGenerator(5))
    mean, log_var = dreg.encoder(x)
    xt = torch.as_tensor(x)

    def log_joint(z):
        logits = dreg.decoder(z.reshape(-1, 3)).reshape(k, 6, 16)
        log_px_z = torch.distributions.Bernoulli(logits=logits).log_prob(xt.reshape(1, 6, 16))
        return log_px_z.sum(-1) + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)

    surrogate = dreg_surrogate(gaussian_log_weights(log_joint, eps, mean, log_var, stop_q=True))
    enc_ref, _ = _grads(dreg, -surrogate)
    for a, b in zip(enc_d, enc_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # and it is not IWAE's encoder gradient (the score term is gone)
    assert not all(np.allclose(a, b, rtol=1e-3, atol=1e-5) for a, b in zip(enc_d, enc_i))


def test_dreg_model_starts_and_draws_as_the_iwae_and_round_trips_its_config():
    keras.utils.set_random_seed(0)
    iwae = build_iwae(5, **SMALL)
    keras.utils.set_random_seed(0)
    dreg = build_iwae(5, estimator="dreg", **SMALL)
    assert all(np.array_equal(a, b) for a, b in zip(_weights(iwae), _weights(dreg)))
    assert dreg.get_config()["estimator"] == "dreg"
    assert IWAE.from_config(dreg.get_config()).estimator == "dreg"
    assert IWAE.from_config(iwae.get_config()).estimator == "iwae"
    with pytest.raises(CourseError, match="estimator"):
        IWAE(dreg.encoder, dreg.decoder, num_samples=5, likelihood="bernoulli", estimator="rws")


# ---- the SNR at a trained encoder's output (iwae.snr_against_k, iwae_runs.snr_summary)


def test_snr_against_k_is_each_images_own_gradient_snr():
    from vae_course.iwae import encoder_gradients, gradient_snr, snr_against_k, vae_log_joint

    keras.utils.set_random_seed(6)
    vae = build_vae(likelihood="bernoulli", **SMALL)
    x = (_images(3) > 0.5).astype("float32")
    mean, log_var = (t.detach() for t in vae.encode(x))
    out = snr_against_k(vae, x, mean, log_var, (1, 4), 20, seed=2)
    assert set(out) == {(e, k) for e in ("iwae", "dreg") for k in (1, 4)}
    for (est, k), (snr, se) in out.items():
        assert snr.shape == se.shape == (3, 6)
        g_m, g_lv = encoder_gradients(
            vae_log_joint(vae, x[2:3]), mean[2], log_var[2], k, 20, est, seed=2000 + k
        )
        want = gradient_snr(np.concatenate([g_m, g_lv], axis=1))
        np.testing.assert_allclose(snr[2], want[0], rtol=1e-6)
        np.testing.assert_allclose(se[2], want[1], rtol=1e-6)


def test_snr_summary_on_known_ratios():
    from vae_course.tools.iwae_runs import snr_summary

    base = np.array([[1.0, 2.0], [4.0, 8.0]])  # 2 images; columns mu, log sigma^2 (d = 1)
    small = np.full((2, 2), 1e-9)  # se ~ 0: the parametric bootstrap leaves the values
    result = {("iwae", 1): (base, small), ("iwae", 10): (base * [0.5, 2.0], small)}
    result |= {("dreg", 1): (base * 3, small), ("dreg", 10): (base / 2, small)}
    s = snr_summary(result, ks=(1, 10), num_boot=20)
    assert s["n_components"] == 4
    assert s["iwae"]["median_snr"]["1"][0] == pytest.approx(3.0)  # median of 1, 2, 4, 8
    # the kinds: mu (1, 4) halves, log sigma^2 (2, 8) doubles
    assert s["iwae"]["mu"]["median_snr"]["1"][0] == pytest.approx(2.5)
    assert s["iwae"]["log_var"]["median_snr"]["1"][0] == pytest.approx(5.0)
    assert s["iwae"]["mu"]["median_ratio_to_prev"]["10"][0] == pytest.approx(0.5)
    assert s["iwae"]["log_var"]["median_ratio_to_prev"]["10"][0] == pytest.approx(2.0)
    assert s["iwae"]["mu"]["median_minus_first"]["10"][0] == pytest.approx(1.25 - 2.5)
    assert s["iwae"]["log_var"]["median_minus_first"]["10"][0] == pytest.approx(10.0 - 5.0)
    assert s["iwae"]["median_ratio_to_prev"]["10"][0] == pytest.approx(1.25)  # of .5, 2, .5, 2
    assert s["dreg"]["median_ratio_to_prev"]["10"][0] == pytest.approx(1 / 6)
    assert s["iwae"]["median_snr"]["1"][1] < 1e-6
    assert s["dreg_above_iwae"] == {"1": 4, "10": 0}  # equal at 10: not above
    assert s["dreg_above_iwae_2se"] == {"1": 4, "10": 0}


# ---- the two gaps of an importance-weighted model (iwae_runs.gaps, iwae_runs.gap_summary)


def test_gap_summary_on_known_values():
    from vae_course.tools.iwae_runs import gap_summary

    rng = np.random.default_rng(0)
    base = rng.normal(-100.0, 5.0, size=20)
    noise = rng.normal(0.0, 0.1, size=(4, 20))
    results = {
        1: {  # q* is 2 nats above the encoder, the bound under the encoder 3 above q*
            "elbo_enc": base,
            "elbo_star_400": base + 2.0 + noise[0],
            "bound_enc": base + 5.0 + noise[1],
            "bound_star": base + 4.0,
        },
        5: {  # here q* is the better proposal: the summary takes its bound
            "elbo_enc": base - 1.0,
            "elbo_star_400": base + 3.0 + noise[2],
            "bound_enc": base + 6.0,
            "bound_star": base + 7.0 + noise[3],
        },
    }
    s = gap_summary(results, steps=400)
    assert s[1]["log_px"] == "bound_enc" and s[5]["log_px"] == "bound_star"
    assert s[1]["amortization"][0] == pytest.approx(2.0, abs=0.05)
    assert s[1]["approximation"][0] == pytest.approx(3.0, abs=0.1)
    assert s[5]["amortization"][0] == pytest.approx(4.0, abs=0.05)
    assert s[5]["approximation"][0] == pytest.approx(4.0, abs=0.1)
    assert s[5]["total"][0] == pytest.approx(8.0, abs=0.1)
    assert s[5]["amortization_minus_first"][0] == pytest.approx(2.0, abs=0.1)
    assert s[5]["approximation_minus_first"][0] == pytest.approx(1.0, abs=0.1)
    assert s[1]["amortization_minus_first"] == [0.0, 0.0]
    assert s[5]["approximation_minus_prev"] == s[5]["approximation_minus_first"]  # two models
    assert s[5]["bound_star_minus_enc"][0] == pytest.approx(1.0, abs=0.1)
    # the paired se: of the differences, not of the values (base's spread of 5 nats cancels)
    assert s[5]["amortization"][1] < 0.1


def test_gaps_of_a_small_model_fit_above_the_encoder_and_below_the_bound():
    from vae_course.tools.iwae_runs import gap_summary, gaps

    keras.utils.set_random_seed(0)
    model = build_iwae(5, **SMALL)  # untrained: its encoder is far from each image's best q
    x = (_images(12) > 0.5).astype("float32")
    r = gaps(model, x, steps=(5, 60))
    assert set(r) == {
        "elbo_enc",
        "elbo_star_5",
        "elbo_star_60",
        "bound_enc",
        "bound_star",
        "log_var_enc",
        "log_var_star",
    }
    assert all(v.shape == (12,) and v.dtype == np.float64 for v in r.values())
    mean, log_var = (keras.ops.convert_to_numpy(a) for a in model.encode(x))
    np.testing.assert_allclose(r["log_var_enc"], log_var.mean(axis=1), rtol=1e-6)
    s = gap_summary({5: r}, steps=60)[5]
    assert s["amortization"][0] > 3 * s["amortization"][1] > 0  # the fit beats the encoder
    assert (r["elbo_star_60"] - r["elbo_star_5"]).mean() > 0  # more steps, a higher ELBO
    # ELBO(q*) <= log p(x), and L_1000 is within its noise of log p(x) on so small a model
    assert s["approximation"][0] > -3 * s["approximation"][1]
    assert s["total"][0] == pytest.approx(s["amortization"][0] + s["approximation"][0])


# ---- an amortized flow after the encoder's Gaussian (flow_steps > 0)


def test_flow_model_starts_as_the_model_without_and_its_log_q_is_the_change_of_variables():
    keras.utils.set_random_seed(3)
    plain = build_iwae(5, **SMALL)
    keras.utils.set_random_seed(3)
    flowed = build_iwae(5, flow_steps=2, flow_hidden_units=6, **SMALL)
    n = len(plain.weights)
    assert len(flowed.weights) == n + 2 * 5  # the flow's weights come after the networks'
    assert all(np.array_equal(a, b) for a, b in zip(_weights(plain), _weights(flowed)[:n]))
    x = (_images(6) > 0.5).astype("float32")
    for a, b in zip(  # a new flow is the identity: the same losses, bit for bit
        plain.compute_losses(x, seed=keras.random.SeedGenerator(1)),
        flowed.compute_losses(x, seed=keras.random.SeedGenerator(1)),
    ):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    # a trained-looking flow: log q(z) = log q_0(z_0) - log|det dz/dz_0|, the determinant from
    # autograd's Jacobian, q_0 from torch.distributions
    rng = np.random.default_rng(0)
    for v in flowed.flow.weights:
        v.assign(0.3 * rng.normal(size=v.shape).astype("float32"))
    mean, log_var = flowed.encoder(x)
    z0 = torch.randn(4, 6, 3)
    z, log_q = flowed.propose(mean, log_var, z0)
    h = torch.cat([mean, log_var], -1)
    q0 = torch.distributions.Normal(mean, torch.exp(0.5 * log_var))
    for i in (0, 3):
        jac = torch.autograd.functional.jacobian(lambda u, i=i: flowed.flow(u, h[i])[0], z0[1, i])
        want = q0.log_prob(z0[1]).sum(-1)[i] - torch.linalg.slogdet(jac.double())[1]
        assert abs(log_q[1, i].item() - want.item()) < 1e-4
    assert not torch.allclose(z, z0)
    # the evaluation's log weights use the same q: L_1 from the model's loss at k = 1 draws
    nll, kl = flowed.log_weights(x, seed=keras.random.SeedGenerator(2))
    log_w = -(nll + kl)
    assert torch.isfinite(log_w).all() and not torch.equal(kl, plain.log_weights(x)[1])


def test_flow_model_trains_saves_and_refuses_what_does_not_apply(tmp_path):
    keras.utils.set_random_seed(4)
    model = build_iwae(1, flow_steps=2, flow_hidden_units=6, **SMALL)
    before = [keras.ops.convert_to_numpy(w) for w in model.flow.weights]
    x = (_images(16) > 0.5).astype("float32")
    train_vae_dynamic(model, x, epochs=2, seed=0, verbose=0, batch_size=8)
    after = [keras.ops.convert_to_numpy(w) for w in model.flow.weights]
    assert not all(np.array_equal(a, b) for a, b in zip(before, after))  # the flow trained
    path = save_vae(model, tmp_path / "flow.keras")
    loaded = keras.saving.load_model(path)
    assert (loaded.flow_steps, loaded.flow_hidden_units) == (2, 6)
    assert all(np.array_equal(a, b) for a, b in zip(_weights(model), _weights(loaded)))
    bound = iwae_bound(model, x[:4], 20, seed=0)
    np.testing.assert_array_equal(bound, iwae_bound(loaded, x[:4], 20, seed=0))
    with pytest.raises(CourseError, match="flow"):
        active_units(model, x)
    with pytest.raises(CourseError, match="posterior"):
        iwae_bound(model, x[:4], 20, posterior=(np.zeros((4, 3)), np.zeros((4, 3))))
    with pytest.raises(CourseError, match="dreg"):
        build_iwae(5, estimator="dreg", flow_steps=1, **SMALL)
    with pytest.raises(CourseError, match="flow_steps"):
        build_iwae(5, flow_steps=-1, **SMALL)


def test_a_wider_encoder_keeps_the_decoders_initial_weights():
    """The flow's control in chapter 9: with encoder_hidden_units the decoder still starts from
    the weights it has without, and the encoder has the layers asked for."""
    keras.utils.set_random_seed(5)
    plain = build_iwae(1, **SMALL)
    keras.utils.set_random_seed(5)
    wide = build_iwae(1, encoder_hidden_units=(12, 10), **SMALL)
    dec = [keras.ops.convert_to_numpy(w) for w in plain.decoder.weights]
    assert all(
        np.array_equal(a, keras.ops.convert_to_numpy(b)) for a, b in zip(dec, wide.decoder.weights)
    )
    kernels = [tuple(w.shape) for w in wide.encoder.weights if len(w.shape) == 2]
    assert kernels == [(16, 12), (12, 10), (10, 6)], kernels  # 4x4 images, 3 latents


@pytest.mark.parametrize("flow_steps", [0, 2])
def test_family_gaps_evaluates_the_models_own_q(flow_steps):
    """iwae_runs.family_gaps' ``enc`` q (the encoder's flow folded into per-image flows) has the
    ELBO of the model's own log weights, drawn by the model; every q has all its numbers."""
    from vae_course.tools import iwae_runs

    keras.utils.set_random_seed(4)
    model = build_iwae(400, flow_steps=flow_steps, flow_hidden_units=6, **SMALL)
    rng = np.random.default_rng(0)
    for v in getattr(model.flow, "weights", []):  # a trained-looking flow
        v.assign(0.3 * rng.normal(size=v.shape).astype("float32"))
    x = (_images(4) > 0.5).astype("float32")
    r = iwae_runs.family_gaps(model, x, steps=(3,))
    names = ("enc", "gauss_3", "flow_3")
    assert set(r) == {f"{a}_{q}" for a in ("elbo", "bound") for q in names}
    assert all(v.shape == (4,) and np.isfinite(v).all() for v in r.values())
    with torch.no_grad():
        nll, kl = model.log_weights(x, seed=keras.random.SeedGenerator(5))
    log_w = -(nll + kl).double()  # (400, 4): the model's own draws through its own flow
    se = np.hypot(log_w.std(0).numpy() / 20, log_w.std(0).numpy() / 1000**0.5)
    assert np.all(np.abs(r["elbo_enc"] - log_w.mean(0).numpy()) < 4 * se), (r["elbo_enc"], se)


def test_family_gaps_fits_gaussians_from_the_flows_moments_only_where_there_is_a_flow(
    monkeypatch,
):
    """``families=("gaussm",)``: Gaussian fits started from the moments of the model's flow q
    (not from q_0, which a fit of zero length would return); refused without a flow."""
    from vae_course.evaluate import fit_local_posterior
    from vae_course.flows import flow_moments, per_image_flow
    from vae_course.tools import iwae_runs

    keras.utils.set_random_seed(4)
    model = build_iwae(1, flow_steps=2, flow_hidden_units=6, **SMALL)
    rng = np.random.default_rng(0)
    for v in model.flow.weights:
        v.assign(0.3 * rng.normal(size=v.shape).astype("float32"))
    x = (_images(4) > 0.5).astype("float32")
    calls = []  # what family_gaps passes to each Gaussian fit

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return fit_local_posterior(*args, **kwargs)

    monkeypatch.setattr(iwae_runs, "fit_local_posterior", recording)
    r = iwae_runs.family_gaps(model, x, steps=(2,), families=("gauss", "gaussm"))
    names = ("enc", "gauss_2", "gaussm_2")
    assert set(r) == {f"{a}_{q}" for a in ("elbo", "bound") for q in names}
    # both fits share their noise and their evaluation draws: only the start differs
    assert np.abs(r["elbo_gaussm_2"] - r["elbo_gauss_2"]).min() > 1e-3
    # the start is the moments: a 2-step fit from them stays next to them, one from q_0 does not
    with torch.no_grad():
        mean, log_var = (torch.as_tensor(keras.ops.convert_to_numpy(a)) for a in model.encode(x))
    moments = flow_moments(
        mean,
        log_var,
        per_image_flow(model.flow, torch.cat([mean, log_var], -1)),
        iwae_runs.MOMENT_DRAWS,
        iwae_runs.MOMENT_SEED,
    )
    # two fits: from q_0 (no start), then from exactly these moments, with the same settings
    assert len(calls) == 2 and calls[0].get("start") is None
    assert all(np.array_equal(a, b) for a, b in zip(calls[1]["start"], moments))
    assert {k: v for k, v in calls[0].items() if k != "start"} == {
        k: v for k, v in calls[1].items() if k != "start"
    }
    from_moments = fit_local_posterior(
        model, x, steps=2, learning_rate=0.02, num_samples=5, start=moments
    )
    from_q0 = fit_local_posterior(model, x, steps=2, learning_rate=0.02, num_samples=5)
    assert np.abs(from_moments[0] - moments[0]).max() < 0.05  # two Adam steps of 0.02 at most
    assert np.abs(from_q0[0] - from_moments[0]).max() > 0.1  # the two starts differ
    plain = build_iwae(1, **SMALL)
    with pytest.raises(ValueError, match="has no flow"):
        iwae_runs.family_gaps(plain, x, steps=(2,), families=("gaussm",))


@pytest.mark.parametrize("estimator", ["iwae", "dreg"])
def test_weight_snr_from_output_draws_is_the_snr_of_the_weights_own_gradient_draws(estimator):
    """weight_snr(J, g) for one image equals gradient_snr of the encoder weights' gradient drawn
    through the whole network by autograd, draw by draw on the same eps (J^T g is exact, for
    DReG's stopped gradients too); for a batch, the sum over images with independent draws,
    against explicit sums of draws."""
    from vae_course.iwae import (
        dreg_surrogate,
        encoder_gradients,
        gaussian_log_weights,
        gradient_snr,
        iwae_objective,
        output_jacobians,
        vae_log_joint,
        weight_snr,
    )

    keras.utils.set_random_seed(3)
    model = build_iwae(1, **SMALL)
    x = (_images(2) > 0.5).astype("float32")
    k, r = 5, 40
    jac = output_jacobians(model.encoder, x)
    n_weights = sum(int(np.prod(w.shape)) for w in model.encoder.trainable_weights)
    assert jac.shape == (2, 6, n_weights)
    with torch.no_grad():
        mean, log_var = model.encode(x)

    def output_draws(j):
        g = encoder_gradients(
            vae_log_joint(model, x[j : j + 1]), mean[j], log_var[j], k, r, estimator, seed=9
        )
        return np.concatenate(list(g), axis=1)

    per_image, batch = weight_snr(jac, np.stack([output_draws(j) for j in range(2)]))
    # the same draws, through the encoder's weights by autograd, one draw at a time
    weights = [v.value for v in model.encoder.trainable_weights]
    gen = torch.Generator().manual_seed(9)
    eps = torch.randn((k, r, 3), generator=gen)
    explicit = []
    for i in range(r):
        m, lv = model.encoder(x[:1])
        log_joint, e = vae_log_joint(model, x[:1]), eps[:, i : i + 1]
        if estimator == "iwae":
            obj = iwae_objective(gaussian_log_weights(log_joint, e, m, lv))
        else:
            obj = dreg_surrogate(gaussian_log_weights(log_joint, e, m, lv, stop_q=True))
        grads = torch.autograd.grad(obj.sum(), weights, allow_unused=True)
        explicit.append(
            torch.cat(
                [
                    (gw if gw is not None else torch.zeros_like(w)).reshape(-1)
                    for gw, w in zip(grads, weights)
                ]
            )
            .double()
            .numpy()
        )
    explicit = np.stack(explicit)
    reached = np.isfinite(per_image[0])
    # the weights the image does not reach are exactly those from its pixels that are 0 (a tanh
    # encoder has no inactive unit); they have no gradient in any draw
    kernel = model.encoder.trainable_weights[0]
    zero_pixel = np.zeros(n_weights, bool)
    zero_pixel[: int(np.prod(kernel.shape))] = np.repeat(x[0].reshape(-1) == 0, kernel.shape[1])
    assert np.array_equal(~reached, zero_pixel) and np.all(explicit[:, ~reached] == 0)
    want = gradient_snr(explicit[:, reached])[0]
    np.testing.assert_allclose(per_image[0][reached], want, rtol=1e-4)
    # every reached weight into a unit has that unit's SNR, its bias's: one SNR per unit
    shapes = [tuple(w.shape) for w in model.encoder.trainable_weights]  # kernel, bias, ...
    offsets = np.cumsum([0] + [int(np.prod(sh)) for sh in shapes])
    n_units = 0
    for i in range(0, len(shapes), 2):
        (n_in, n_out), snr = shapes[i], per_image[0]
        kern = snr[offsets[i] : offsets[i + 1]].reshape(n_in, n_out)
        bias = snr[offsets[i + 1] : offsets[i + 2]]
        rows = np.isfinite(kern[:, 0])
        np.testing.assert_allclose(kern[rows], np.broadcast_to(bias, kern[rows].shape), rtol=1e-9)
        n_units += n_out
    assert len(np.unique(np.round(per_image[0][reached], 9))) == n_units
    # a batch: synthetic output draws, independent between images, summed explicitly
    rng = np.random.default_rng(0)
    jac2 = rng.normal(size=(2, 3, 5))
    g2 = rng.normal(loc=[0.3, -0.2, 0.1], size=(2, 20000, 3))
    _, b = weight_snr(jac2, g2)
    sums = np.einsum("nrm,nmp->rp", g2, jac2)
    np.testing.assert_allclose(b, gradient_snr(sums)[0], rtol=0.05)
    with pytest.raises(ValueError, match="must agree in n and m"):
        weight_snr(jac2, g2[:, :, :2])


def test_trained_weight_snr_uses_the_output_runs_draws():
    """iwae_runs.trained_weight_snr: the last layer's units are the encoder's outputs, so their
    summary equals the median of snr_against_k's per-component SNRs on the same eps (exact)."""
    from vae_course.iwae import snr_against_k
    from vae_course.tools import iwae_runs

    keras.utils.set_random_seed(3)
    model = build_iwae(1, **SMALL)
    x = (_images(2) > 0.5).astype("float32")
    out, n, units = iwae_runs.trained_weight_snr(model, x, seed=4, num_boot=5)
    assert n == sum(int(np.prod(w.shape)) for w in model.encoder.trainable_weights)
    assert units == 8 + 6  # SMALL: 8 hidden units, then 2 x 3 outputs
    with torch.no_grad():
        mean, log_var = model.encode(x)
    ref = snr_against_k(model, x, mean, log_var, iwae_runs.SNR_K, iwae_runs.SNR_DRAWS, seed=4)
    for (est, k), (snr, _) in ref.items():
        want = np.median(np.median(snr, axis=1))
        assert out[f"{est}_{k}"]["layer_2"][0] == pytest.approx(want, rel=1e-9), (est, k)
        # sanity checks: every summary has an se, and the ratio is DReG's over IWAE's
        assert all(v[1] > 0 for v in out[f"{est}_{k}"].values())
        ratio = out[f"dreg_over_iwae_{k}"]["per_unit"][0]
        assert ratio == pytest.approx(
            out[f"dreg_{k}"]["per_unit"][0] / out[f"iwae_{k}"]["per_unit"][0]
        )


def test_snr_draws_are_the_draws_of_snr_against_k():
    """iwae_runs.snr_draws, shared by the script's three measurements: trained_snr from them, and
    from its own draws, equals snr_against_k on the same eps exactly; trained_weight_snr gives
    the same result with or without them."""
    from vae_course.iwae import snr_against_k
    from vae_course.tools import iwae_runs

    keras.utils.set_random_seed(5)
    model = build_iwae(1, **SMALL)
    x = (_images(2) > 0.5).astype("float32")
    ks = (1, 3)
    with torch.no_grad():
        mean, log_var = model.encode(x)
    ref = snr_against_k(model, x, mean, log_var, ks, iwae_runs.SNR_DRAWS, seed=7)
    draws = iwae_runs.snr_draws(model, x, seed=7, ks=ks)
    assert set(draws) == set(ref)
    for got in (
        iwae_runs.trained_snr(model, x, 7, ks, draws),
        iwae_runs.trained_snr(model, x, 7, ks),
    ):
        for key, (snr, se) in ref.items():
            np.testing.assert_array_equal(got[key][0], snr)
            np.testing.assert_array_equal(got[key][1], se)
    shared = iwae_runs.trained_weight_snr(model, x, seed=7, ks=ks, num_boot=5, draws=draws)
    assert shared == iwae_runs.trained_weight_snr(model, x, seed=7, ks=ks, num_boot=5)


def test_gradient_moments_recovers_known_means_and_noise():
    """iwae_runs.gradient_moments on draws of known mean and sd: each median within 4 of its
    bootstrap se of the truth, mu and log_var kinds apart (the first and second half); a median,
    not a mean, over components and images; bad draws and resample counts refused."""
    from vae_course.tools import iwae_runs

    rng = np.random.default_rng(0)
    n, r = 5, 4000
    # per image, mu components |mean| 0.5 and 0.5 except one image at 5.0 (a mean over the
    # images would move, the median not); sd 1 and 3 per kind
    mean = np.tile([0.5, -0.5, 2.0, -2.0], (n, 1))
    mean[0, :2] = 5.0
    sd = np.array([1.0, 1.0, 3.0, 3.0])
    draws = mean[:, None, :] + sd * rng.standard_normal((n, r, 4))
    out = iwae_runs.gradient_moments(draws, num_boot=50)
    for kind, (m, s) in {"mu": (0.5, 1.0), "log_var": (2.0, 3.0)}.items():
        (am, am_se), (sm, sm_se) = out[kind]["abs_mean"], out[kind]["sd"]
        assert 0 < am_se < 0.1 and 0 < sm_se < 0.1, out
        assert abs(am - m) < 4 * am_se and abs(sm - s) < 4 * sm_se, (kind, out)
    with pytest.raises(CourseError, match="shape"):
        iwae_runs.gradient_moments(draws[:, :, :3])
    bad = draws.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(CourseError, match="1 of .* not finite"):
        iwae_runs.gradient_moments(bad)
    with pytest.raises(CourseError, match="num_boot"):
        iwae_runs.gradient_moments(draws, num_boot=1)
