"""Chapter 10's models and measurements: one recipe, used by the chapter and by
``scripts/measure_likelihoods.py`` (which runs it for several seeds).

Every model is Burda et al.'s 200-200 tanh network with 50 latents, trained for
``EPOCHS`` epochs on the first ``N_TRAIN`` training images, batch ``BATCH``: short
runs, so that the chapter trains all of them in a couple of minutes. Density models
train on images dequantized afresh each epoch; the Bernoulli models on images
binarized afresh each epoch.
"""

from __future__ import annotations

import functools
import math

import keras
import numpy as np
from keras import ops

from ..bits import (
    LOG_LEVELS,
    bits_per_dim,
    continuous_bernoulli_mean,
    continuous_bernoulli_nll,
    dequantize,
    discretized_gaussian_log_prob,
)
from ..data import binarize, load_mnist, scale_images
from ..decoder_scale import build_learned_scale_vae, optimal_shared_sigma
from ..evaluate import iwae_bound
from ..losses import kl_std_normal
from ..models import VAE, build_vae
from ..montecarlo import mean_and_se
from ..rate_distortion import elbo_surgery
from ..train import train_vae, train_vae_dynamic
from .cache import load_or_train

N_TRAIN = 10000
EPOCHS = 2
BATCH = 128
LATENT = 50
HIDDEN = (200, 200)
ACTIVATION = "tanh"
N_TEST = 500  # the test images of every bits-per-dimension number (a random subset, seed 10)
K_EVAL = 100  # L_k's k
N_SURGERY = 2000  # test images of the ELBO surgery (log N = 7.6 nats)
SCALE_RATE = 30.0  # a learned scale moves 30 times as fast as the networks' weights
BETAS = (0.25, 1.0, 4.0)
D = 784


@functools.lru_cache(maxsize=1)
def uint8_mnist():
    """``(k_train, k_test)``: the first N_TRAIN training images and all test images, uint8."""
    (k_train, _), (k_test, _) = load_mnist()
    return k_train[:N_TRAIN], k_test


def test_subset():
    """Indices of the N_TEST test images (seed 10)."""
    return np.random.default_rng(10).permutation(10000)[:N_TEST]


def train_dequantized(vae, k_train, epochs, seed):
    """Train on (k + u) / 256 with fresh u each epoch (seed (seed, epoch))."""
    keras.utils.set_random_seed(seed)
    for epoch in range(epochs):
        y = dequantize(k_train, seed=[seed, epoch])
        train_vae(vae, y, epochs=1, batch_size=BATCH, seed=seed + 1000 * epoch, verbose=0)
    return vae


def get_model(kind, seed=0):
    """``(vae, loaded)`` for one of chapter 10's models (see :data:`KINDS`)."""

    def train():
        k_train, _ = uint8_mnist()
        keras.utils.set_random_seed(seed)
        if kind == "gaussian_fixed":
            vae = build_vae(LATENT, "gaussian", hidden_units=HIDDEN, activation=ACTIVATION)
            return train_dequantized(vae, k_train, EPOCHS, seed)
        if kind == "gaussian_shared":
            vae = build_learned_scale_vae(LATENT, scale_rate=SCALE_RATE)
            return train_dequantized(vae, k_train, EPOCHS, seed)
        if kind == "continuous_bernoulli":
            vae = build_vae(
                LATENT, "continuous_bernoulli", hidden_units=HIDDEN, activation=ACTIVATION
            )
            return train_dequantized(vae, k_train, EPOCHS, seed)
        if kind == "gaussian_per_pixel":  # on the 8-bit levels k/255 themselves
            vae = build_learned_scale_vae(LATENT, per_pixel=True, scale_rate=SCALE_RATE)
        elif kind == "logistic_per_pixel":
            vae = build_learned_scale_vae(
                LATENT, "discretized_logistic", per_pixel=True, scale_rate=SCALE_RATE
            )
        else:  # "beta<b>": a Bernoulli beta-VAE, binarized afresh each epoch
            beta = float(kind[4:])
            vae = build_vae(
                LATENT, "bernoulli", hidden_units=HIDDEN, activation=ACTIVATION, kl_weight=beta
            )
            train_vae_dynamic(
                vae,
                scale_images(k_train),
                epochs=EPOCHS,
                seed=seed,
                verbose=0,
                batch_size=BATCH,
            )
            return vae
        train_vae(vae, scale_images(k_train), epochs=EPOCHS, batch_size=BATCH, seed=seed, verbose=0)
        return vae

    return load_or_train(f"ch10_{kind}_{EPOCHS}ep_seed{seed}", train)


KINDS = (
    "gaussian_fixed",
    "gaussian_shared",
    "continuous_bernoulli",
    "gaussian_per_pixel",
    "logistic_per_pixel",
    *(f"beta{b:g}" for b in BETAS),
)


def _bpd(log_p, density_on_unit_cube):
    """(mean, se) of bits per dimension from per-image log-likelihoods (nats)."""
    bpd = bits_per_dim(-np.asarray(log_p), D, density_on_unit_cube)
    m, s = mean_and_se(bpd)
    return [float(m), float(s)]


def decoder_means(vae, x, seed=0):
    """Decoder means at one z ~ q(z|x) per image, numpy (n, 28, 28)."""
    gen = keras.random.SeedGenerator(seed)
    z_mean, z_log_var = vae.encode(x)
    z = vae.reparameterize(z_mean, z_log_var, seed=gen)
    return ops.convert_to_numpy(vae.decode(z))


DENSITY_DATA = {"gaussian_fixed", "gaussian_shared", "continuous_bernoulli"}  # dequantized


def decoder_spread(vae, kind, seed=0):
    """How much the decoder's output at the encoder's mean moves across the N_TEST test images.

    The standard deviation over the images of the decoder's raw output (means, or logits for
    the continuous Bernoulli), averaged over the pixels: about 0 when the encoder sends every
    image to the same code, so that the model ignores its latent variable.
    """
    k_sub = uint8_mnist()[1][test_subset()]
    x = dequantize(k_sub, seed=[seed, 99]) if kind in DENSITY_DATA else scale_images(k_sub)
    out = ops.convert_to_numpy(vae.decoder(vae.encode(x)[0]))
    return float(out.std(axis=0).mean())


def always_zero_pixels():
    """Mask (28, 28) of the pixels that are 0 in every one of the 60,000 training images."""
    (k, _), _ = load_mnist()
    return k.max(axis=0) == 0


def measure(seed=0, models=None):
    """Every number chapter 10 asserts, for the models of ``seed``; a JSON-ready dict."""
    models = models or {kind: get_model(kind, seed)[0] for kind in KINDS}
    k_train, k_test = uint8_mnist()
    idx = test_subset()
    k_sub = k_test[idx]
    y_sub = dequantize(k_sub, seed=[seed, 99])  # one dequantization of the test images
    x_sub = scale_images(k_sub)
    xb_sub = binarize(x_sub, seed=1)
    out = {"seed": seed, "n_test": N_TEST, "k_eval": K_EVAL}
    bpd = {}
    for kind in ("gaussian_fixed", "gaussian_shared", "continuous_bernoulli"):
        bpd[kind] = _bpd(iwae_bound(models[kind], y_sub, K_EVAL, seed=seed), True)
    bpd["logistic_per_pixel"] = _bpd(
        iwae_bound(models["logistic_per_pixel"], x_sub, K_EVAL, seed=seed), False
    )
    bpd["gaussian_per_pixel_raw"] = _bpd(
        iwae_bound(models["gaussian_per_pixel"], x_sub, K_EVAL, seed=seed), True
    )
    bpd["bernoulli_binarized"] = _bpd(iwae_bound(models["beta1"], xb_sub, K_EVAL, seed=seed), False)
    # the fixed-sigma model, re-scored with the sigma its residuals call for
    fixed = models["gaussian_fixed"]
    y_fit = dequantize(k_train[:2000], seed=[seed, 98])
    sigma_hat = optimal_shared_sigma(y_fit, decoder_means(fixed, y_fit, seed))
    rescored = VAE(fixed.encoder, fixed.decoder, "gaussian", x_std=sigma_hat)
    bpd["gaussian_fixed_sigma_hat"] = _bpd(iwae_bound(rescored, y_sub, K_EVAL, seed=seed), True)
    shared = models["gaussian_shared"]
    own_hat = optimal_shared_sigma(y_fit, decoder_means(shared, y_fit, seed))
    out["sigma"] = {
        "fixed": 0.5,
        "sigma_hat_of_fixed": sigma_hat,
        "learned_shared": float(math.exp(float(ops.convert_to_numpy(shared.log_scale)))),
        "sigma_hat_of_learned": own_hat,
    }
    # the per-pixel scales: on the always-zero pixels, and elsewhere
    zero = always_zero_pixels()
    steps = EPOCHS * math.ceil(N_TRAIN / BATCH)
    for kind in ("gaussian_per_pixel", "logistic_per_pixel"):
        log_s = ops.convert_to_numpy(models[kind].log_scale)
        out[kind] = {
            "n_zero_pixels": int(zero.sum()),
            "steps": steps,
            "fall_zero_mean": float(math.log(0.5) - log_s[zero].mean()),
            "fall_zero_min": float(math.log(0.5) - log_s[zero].max()),
            "fall_other_median": float(math.log(0.5) - np.median(log_s[~zero])),
        }
    out["bpd"] = bpd
    # rate, distortion and ELBO surgery of the beta sweep, on binarized test images
    xb_test = binarize(scale_images(k_test), seed=1)
    rd = {}
    for beta in BETAS:
        vae = models[f"beta{beta:g}"]
        z_mean, z_log_var = (ops.convert_to_numpy(t) for t in vae.encode(xb_test[:N_SURGERY]))
        surgery = elbo_surgery(z_mean, z_log_var, seed=seed, chunk=64)
        gen = keras.random.SeedGenerator(seed)
        with _no_grad():
            xb = ops.convert_to_tensor(xb_test[:N_SURGERY])
            nll = np.mean(
                [ops.convert_to_numpy(vae.compute_losses(xb, seed=gen)[1]) for _ in range(5)], 0
            )
        rd[f"{beta:g}"] = {
            "distortion": [float(v) for v in mean_and_se(nll)],
            "rate": [float(v) for v in mean_and_se(surgery["rate"])],
            "mutual_information": [float(v) for v in mean_and_se(surgery["mutual_information"])],
            "marginal_kl": [float(v) for v in mean_and_se(surgery["marginal_kl"])],
        }
    out["rate_distortion"] = rd
    out["log_n_surgery"] = math.log(N_SURGERY)
    return out


def _per_pixel_histogram_bpd(k_train, k_sub, prior=0.5):
    """Bits per dimension of independent 256-level histograms, one per pixel, no latent.

    Fitted on ``k_train`` (counts + ``prior`` per level), scored on ``k_sub``; (mean, se).
    """
    kt = k_train.reshape(len(k_train), -1)
    counts = np.stack([np.bincount(kt[:, i], minlength=256) for i in range(kt.shape[1])])
    log2_p = np.log2((counts + prior) / (counts.sum(1, keepdims=True) + 256 * prior))
    ks = k_sub.reshape(len(k_sub), -1)
    bits = -log2_p[np.arange(ks.shape[1])[None, :], ks].mean(axis=1)
    return [float(v) for v in mean_and_se(bits)]


def _per_pixel_continuous_bernoulli_bpd(y_train, y_sub):
    """Bits per dimension of one continuous Bernoulli per pixel at its maximum-likelihood
    lambda (mean matching, by bisection on the logit), no latent; on dequantized images."""
    import torch

    ybar = y_train.reshape(len(y_train), -1).astype(np.float64).mean(axis=0)
    lo, hi = np.full_like(ybar, -60.0), np.full_like(ybar, 60.0)
    for _ in range(100):  # the mean increases with the logit
        mid = (lo + hi) / 2
        m = ops.convert_to_numpy(continuous_bernoulli_mean(torch.tensor(mid)))
        lo, hi = np.where(m < ybar, mid, lo), np.where(m >= ybar, mid, hi)
    logits = np.broadcast_to((lo + hi) / 2, (len(y_sub), ybar.size)).copy()
    ys = y_sub.reshape(len(y_sub), -1).astype(np.float64)
    nll = ops.convert_to_numpy(continuous_bernoulli_nll(torch.tensor(ys), torch.tensor(logits)))
    return _bpd(-nll, True)


def rescore(seed=0, models=None, surgery_sizes=(1000, 2000, 5000)):
    """Chapter 10's second look at its trained models, with no training; a JSON-ready dict.

    - ``edge``: the learned-sigma Gaussian's networks (decoder mean at the encoder's mean)
      scored as a density on dequantized images and as a discretized Gaussian whose edge
      bins take the tails (:func:`~vae_course.bits.discretized_gaussian_log_prob`), and the
      discretized logistic's reconstruction term the same way; bits per dimension, and per
      pixel at level 0; the logistic's P(level 0) on the test pixels at level 0.
    - ``baselines``: bits per dimension with no latent variable (per-pixel histogram,
      per-pixel continuous Bernoulli), fitted on the N_TRAIN training images.
    - ``codes``: rate (mean KL) and the spread of the encoder means across the test images.
    - ``elbo_paired``: paired differences of -ELBO between the beta models (mean, se).
    - ``surgery_sizes``: the I_q estimate of the beta = 0.25 model on N = 1000, 2000, 5000
      test images (N = 1000: the mean over the two halves of the first 2000).
    """
    import torch

    models = models or {kind: get_model(kind, seed)[0] for kind in KINDS}
    k_train, k_test = uint8_mnist()
    k_sub = k_test[test_subset()]
    y_sub = dequantize(k_sub, seed=[seed, 99])  # the dequantization measure() used
    x_sub = scale_images(k_sub)
    out = {"seed": seed, "n_zero_pixels_first_train": int((k_train.max(axis=0) == 0).sum())}
    with torch.no_grad():
        shared = models["gaussian_shared"]
        sigma = math.exp(float(ops.convert_to_numpy(shared.log_scale)))
        mu = ops.convert_to_numpy(shared.decoder(shared.encode(y_sub)[0])).astype(np.float64)
        log_density = -0.5 * ((y_sub - mu) / sigma) ** 2 - math.log(sigma * math.sqrt(2 * math.pi))
        nats_density = LOG_LEVELS - log_density  # per pixel, with the log 256 of dequantization
        nats_discrete = -discretized_gaussian_log_prob(
            k_sub.reshape(-1, 1), mu.reshape(-1, 1), sigma
        ).reshape(k_sub.shape)
        logistic = models["logistic_per_pixel"]
        log_s = ops.convert_to_numpy(logistic.log_scale).astype(np.float64)
        mu_l = ops.convert_to_numpy(logistic.decoder(logistic.encode(x_sub)[0])).astype(np.float64)
        half = 0.5 / 255

        def sig(t):  # the logistic function, without overflow
            return np.exp(-np.logaddexp(0.0, -t))

        up = (x_sub + half - mu_l) / np.exp(log_s)
        lo = (x_sub - half - mu_l) / np.exp(log_s)
        p_logistic = np.where(
            k_sub == 0, sig(up), np.where(k_sub == 255, 1 - sig(lo), sig(up) - sig(lo))
        )
        nats_logistic = -np.log(np.maximum(p_logistic, 1e-300))
    zero_level = k_sub == 0
    bits = {
        "gaussian_density": nats_density / math.log(2),
        "gaussian_discretized": nats_discrete / math.log(2),
        "logistic": nats_logistic / math.log(2),
    }
    out["edge"] = {
        "sigma": sigma,
        "recon_bpd": {k: float(v.mean()) for k, v in bits.items()},
        "bits_per_level0_pixel": {k: float(v[zero_level].mean()) for k, v in bits.items()},
        "logistic_p0_mean": float(p_logistic[zero_level].mean()),
        "logistic_p0_max": float(p_logistic[zero_level].max()),
        "fraction_level0": float(zero_level.mean()),
    }
    y_train = dequantize(k_train, seed=[seed, 0])
    out["baselines"] = {
        "histogram": _per_pixel_histogram_bpd(k_train, k_sub),
        "continuous_bernoulli": _per_pixel_continuous_bernoulli_bpd(y_train, y_sub),
    }
    codes = {}
    with torch.no_grad():
        for kind in ("gaussian_shared", "continuous_bernoulli", "logistic_per_pixel"):
            x = y_sub if kind in DENSITY_DATA else x_sub
            z_mean, z_log_var = models[kind].encode(x)
            kl = ops.convert_to_numpy(kl_std_normal(z_mean, z_log_var))
            codes[kind] = {
                "rate": [float(v) for v in mean_and_se(kl)],
                "z_mean_sd": float(ops.convert_to_numpy(z_mean).std(axis=0).mean()),
            }
    out["codes"] = codes
    xb_test = binarize(scale_images(k_test), seed=1)
    neg_elbo = {}
    with torch.no_grad():
        xb = ops.convert_to_tensor(xb_test[:N_SURGERY])
        for beta in BETAS:
            vae = models[f"beta{beta:g}"]
            gen = keras.random.SeedGenerator(seed)
            nll = np.mean(
                [ops.convert_to_numpy(vae.compute_losses(xb, seed=gen)[1]) for _ in range(5)], 0
            )
            z_mean, z_log_var = vae.encode(xb)
            neg_elbo[beta] = nll + ops.convert_to_numpy(kl_std_normal(z_mean, z_log_var))
    out["elbo_paired"] = {
        f"{b:g}-{a:g}": [float(v) for v in mean_and_se(neg_elbo[b] - neg_elbo[a])]
        for a, b in zip(BETAS[:-1], BETAS[1:])
    }
    vae = models[f"beta{BETAS[0]:g}"]
    with torch.no_grad():
        z_mean, z_log_var = (ops.convert_to_numpy(t) for t in vae.encode(xb_test[:5000]))
    sizes = {}
    for n in surgery_sizes:
        parts = [slice(i * n, (i + 1) * n) for i in range(max(1, N_SURGERY // n))]
        est = [
            elbo_surgery(z_mean[p], z_log_var[p], seed=seed, chunk=64)["mutual_information"].mean()
            for p in parts
        ]
        sizes[str(n)] = float(np.mean(est))
    out["mutual_information_by_n"] = sizes
    return out


def _no_grad():
    import torch

    return torch.no_grad()


__all__ = [
    "decoder_spread",
    "KINDS",
    "get_model",
    "measure",
    "rescore",
    "uint8_mnist",
    "test_subset",
    "always_zero_pixels",
]
