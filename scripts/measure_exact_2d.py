"""Chapter 8's 2-latent log p(x) by grid quadrature over z: a lower bound up to quadrature error.

With two latents the integral p(x) = ∫ p(x|z) p(z) dz can be summed on a grid, no sampling
and no proposal: log p(x) ≈ logsumexp_j [log p(x|z_j) + log p(z_j)] + 2 log h over the
midpoints z_j of a square grid of spacing h on [-R, R]^2. Its errors are the mass outside
the square (reported: the share of each image's integrand on the grid's outer band, and the
wider square's value), which can only lower the grid's value, and the midpoint rule's error on
the square, which can have either sign (reported: the change from spacing 2h to h, an estimate
of that error, not a bound on it). So the grid's value is a lower bound on log p(x) only up to
that quadrature error. On chapter 8's 200 images and model
(Burda et al.'s networks, 3 epochs, ``course_models.get_burda(2, seed=S)``) it then gives

* ``exact_minus_L5000_star``: the grid's value minus L_5000 with the fitted q* as proposal
  (chapter 8's estimate of log p(x)), paired over images: up to quadrature error, a lower
  bound on how far L_5000 falls short of log p(x);
* ``approximation_exact``: the grid's value minus ELBO(q*), up to quadrature error a lower
  bound on log p(x) - ELBO(q*),
  the fitted q*'s own gap. That gap exceeds the approximation gap (with the best diagonal
  Gaussian) by however far the fitted q* falls short of the best, so this number bounds the
  approximation gap from below only where the fitted q* is the best Gaussian;

and, for the 2- and 50-latent models, the effective sample size of q*'s 5000 importance
weights (``evaluate.effective_sample_size``), the diagnostic chapter 7 shows for the encoder,
and L_1000 under q* minus the encoder's L_1000 (chapter 8's check that q* is the better proposal).
``per_image`` records each image's grid value, L_5000 under q*, ESS (both models) and outer-band
share. The grid is also summed on a wider square, [-W, W]^2 (``--wide``, default 8) at the same
spacing: ``wide_minus_grid`` (paired over images, and on the image with the largest outer-band
share) says how much mass the square [-R, R]^2 left out.
The local fit, the ELBO and L_5000 are drawn as chapter 8 draws them (400 steps, seeds 0, 1, 2).
The keys keep the word "exact" from an earlier draft (``log_px_exact`` is the grid's value,
too), but nothing here is exact: the mass outside [-R, R]^2 is left out, which can only lower
the grid's value, and the quadrature error, of either sign, is estimated by the spacing change.

    python scripts/measure_exact_2d.py --seed 0 --threads 2 --out measurements/exact2d
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np
import torch

from vae_course.evaluate import (
    effective_sample_size,
    elbo_given_posterior,
    fit_local_posterior,
    iwae_bound,
    log_importance_weights,
    paired_difference,
)
from vae_course.gaussian import std_normal_log_prob
from vae_course.losses import bernoulli_nll
from vae_course.tools import course_models as cm

PERM = np.random.default_rng(0).permutation(10000)
SUBSET_8 = PERM[:200]  # chapter 8's 200 images
STEPS, K = 400, 5000
RADIUS = 6.0


def grid_log_px(vae, x, n, radius=RADIUS, chunk=20000):
    """log p(x) per image by the midpoint rule on an n x n grid over [-radius, radius]^2.

    Returns (log p(x), share of each image's integrand on the outer band |z|_inf > radius - 1).
    The Bernoulli log-likelihood of every (image, grid point) pair is one matrix product,
    log p(x|z) = x . l - sum softplus(l) for the decoder's logits l (checked against the
    model's own ``log_likelihood`` on a few pairs).
    """
    h = 2 * radius / n
    axis = -radius + h * (np.arange(n) + 0.5)
    zz = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    xf = torch.as_tensor(x.reshape(len(x), -1), dtype=torch.float64)
    total = torch.full((len(x),), -math.inf, dtype=torch.float64)
    outer = torch.full((len(x),), -math.inf, dtype=torch.float64)
    checked = False
    with torch.no_grad():
        for s in range(0, len(zz), chunk):
            z = torch.as_tensor(zz[s : s + chunk])
            logits = vae.decoder(z)
            lf = logits.reshape(len(z), -1).to(torch.float64)
            zeros = torch.zeros_like(logits)
            softplus_sum = torch.as_tensor(
                keras.ops.convert_to_numpy(bernoulli_nll(zeros, logits)), dtype=torch.float64
            )  # -log p(0|z) = sum softplus(l)
            log_lik = xf @ lf.T - softplus_sum[None, :]  # (images, points)
            if not checked:  # the matrix form agrees with the model's own likelihood
                xi = torch.as_tensor(x[:3], dtype=torch.float32)
                ref = vae.log_likelihood(xi, logits[:3]).to(torch.float64)
                assert torch.allclose(ref, log_lik[[0, 1, 2], [0, 1, 2]], atol=1e-2), ref
                checked = True
            log_prior = std_normal_log_prob(z.to(torch.float64))
            terms = log_lik + log_prior[None, :]
            total = torch.logaddexp(total, torch.logsumexp(terms, 1))
            band = (z.abs().max(1).values > radius - 1).numpy()
            if band.any():
                outer = torch.logaddexp(outer, torch.logsumexp(terms[:, band], 1))
    log_px = total + 2 * math.log(h)
    return log_px.numpy(), torch.exp(outer - total).numpy()


def pd(a, b):
    m, se = paired_difference(a, b)
    return {"mean": m, "se": se}


def quantiles(v):
    return {q: float(np.quantile(v, float(q))) for q in ("0", "0.1", "0.5", "0.9", "1")}


def run(seed, out, n, n_images=200, wide=8.0):
    t0 = time.time()
    res = {"job": "exact2d", "seed": seed, "grid_radius": RADIUS, "grid_n": n}
    n_wide = round(n * wide / RADIUS)  # the same spacing on the wider square
    res.update({"wide_radius": wide, "wide_n": n_wide})
    x8 = cm.binary_test_images()[SUBSET_8[:n_images]]
    for d in (2, 50):
        vae = cm.get_burda(d, seed=seed)[0]
        r = res[f"latent{d}"] = {}
        t = time.time()
        q_star = fit_local_posterior(
            vae, x8, steps=STEPS, learning_rate=0.02, num_samples=5, seed=0
        )
        elbo_star = elbo_given_posterior(vae, x8, q_star, num_samples=1000, seed=1)
        log_w = log_importance_weights(vae, x8, K, seed=2, posterior=q_star)
        l_k = torch.logsumexp(torch.as_tensor(log_w), 0).numpy() - math.log(K)
        ess = np.asarray(effective_sample_size(log_w), dtype=np.float64)
        l1000_star = iwae_bound(vae, x8, 1000, seed=2, posterior=q_star)
        r["L1000_star_minus_L1000_enc"] = pd(l1000_star, iwae_bound(vae, x8, 1000, seed=2))
        r["L5000_star"] = float(l_k.mean())
        r["elbo_star"] = float(elbo_star.mean())
        r["ess_star_quantiles"] = quantiles(ess)
        r["ess_star_median_fraction"] = float(np.median(ess) / K)
        r["s"] = time.time() - t
        r["per_image"] = {"L5000_star": l_k.tolist(), "ess_star": ess.tolist()}
        if d == 2:
            t = time.time()
            coarse, _ = grid_log_px(vae, x8, n // 2)
            exact, band = grid_log_px(vae, x8, n)
            r["grid_s"] = time.time() - t
            r["log_px_exact"] = float(exact.mean())
            r["spacing_h_minus_2h"] = pd(exact, coarse)
            r["outer_band_share_max"] = float(band.max())
            r["exact_minus_L5000_star"] = pd(exact, l_k)
            r["approximation_exact"] = pd(exact, elbo_star)
            r["approximation_L5000_star"] = pd(l_k, elbo_star)
            wider, wide_band = grid_log_px(vae, x8, n_wide, radius=wide)
            r["wide_grid_s"] = time.time() - t - r["grid_s"]
            edge = int(np.argmax(band))
            r["wide_minus_grid"] = pd(wider, exact)
            r["wide_minus_grid_edge_image"] = {
                "index": edge,
                "diff": float(wider[edge] - exact[edge]),
                "outer_band_share": float(band[edge]),
                "wide_outer_band_share": float(wide_band[edge]),
            }
            r["wide_outer_band_share_max"] = float(wide_band.max())
            r["wide_minus_L5000_star"] = pd(wider, l_k)
            r["per_image"].update(
                {
                    "grid": exact.tolist(),
                    "outer_band_share": band.tolist(),
                    "wide_grid": wider.tolist(),
                }
            )
        (Path(out) / f"exact2d_seed{seed}.json").write_text(json.dumps(res, indent=1))
    res["total_s"] = time.time() - t0
    (Path(out) / f"exact2d_seed{seed}.json").write_text(json.dumps(res, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid", type=int, default=600, help="grid points per axis (spacing 12/n)")
    ap.add_argument("--wide", type=float, default=8.0, help="the wider square's half-width")
    ap.add_argument("--images", type=int, default=200, help="the first of chapter 8's 200 images")
    ap.add_argument("--out", default="measurements/exact2d")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    run(a.seed, a.out, a.grid, a.images, a.wide)


if __name__ == "__main__":
    main()
