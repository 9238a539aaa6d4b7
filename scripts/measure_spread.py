"""Measure the seed-to-seed spread of every number chapters 6, 7 and 8 assert on.

Trains each chapter's models with several seeds (the chapters use seed 0)
and computes, for each, the numbers the chapters print; writes one JSON file
per (job, seed). The asserts' tolerances and the spreads quoted in the text
come from these runs. One job per process, so they run in parallel:

    python scripts/measure_spread.py ch6 --seed 1 --out spread/
    python scripts/measure_spread.py ch78 --seed 1 --out spread/

``--quick`` trains 1 epoch on everything (a smoke test of this script).
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
    active_units,
    elbo_given_posterior,
    fit_local_posterior,
    iwae_bound,
    negative_elbo,
    paired_difference,
)
from vae_course.losses import gaussian_nll, kl_std_normal
from vae_course.tools import course_models as cm

# The chapters' image sets: a random subset of the test set (not the first images).
PERM = np.random.default_rng(0).permutation(10000)
SUBSET_7 = PERM[:100]  # chapter 7, k up to 5000
SUBSET_8 = PERM[:200]  # chapter 8, the two gaps
KS = (1, 10, 100, 1000, 5000)
SIGMAS = (0.1, 0.19, 0.5, 1.0)
SIGMA_EPOCHS, SIGMA_BATCH = 2, 128
FIT_STEPS, FIT_SAMPLES = 200, 5
CONST_PER_PIXEL = 0.5 * math.log(2 * math.pi)


def np_(t):
    return keras.ops.convert_to_numpy(t).astype(np.float64)


def bound_table(vae, xs):
    """L_k on xs for KS (seed = k), with L_k - L_1 paired."""
    lk = {k: iwae_bound(vae, xs, k, seed=k) for k in KS}
    out = {f"L{k}": float(v.mean()) for k, v in lk.items()}
    for k in KS[1:]:
        out[f"gap{k}"], out[f"gap{k}_se"] = paired_difference(lk[k], lk[1])
    return out, lk


def job_ch6(seed, out, quick):
    t0 = time.time()
    res = {"job": "ch6", "seed": seed}
    x_train, x_test = cm.mnist()
    keras.utils.set_random_seed(seed)
    from vae_course.models import build_vae
    from vae_course.train import train_vae

    vae = build_vae(latent_dim=2, likelihood="gaussian", x_std=0.5)
    h = train_vae(
        vae, x_train, x_test, epochs=1 if quick else 20, batch_size=64, seed=seed, verbose=0
    ).history
    res["history"] = {k: [float(v) for v in vs] for k, vs in h.items()}
    res["train_s"] = time.time() - t0
    if not quick:  # chapters 7 and 8 load it from the cache instead of training it again
        from vae_course.tools.checkpoints import save_vae

        save_vae(vae, cm.chapter6_model_path(seed))
    m, lv = vae.encode(x_test)
    res["mean_kl"] = float(np_(kl_std_normal(m, lv)).mean())
    mu = np_(m)
    res["zmean_mean"], res["zmean_std"] = mu.mean(0).tolist(), mu.std(0).tolist()
    recon = np_(vae.decode(m))
    res["sse_mean_code"] = float(((x_test - recon) ** 2).sum(axis=(1, 2)).mean())
    res["nll_at_mean"] = float(np_(gaussian_nll(x_test, vae.decode(m), math.log(0.5))).mean())
    const = 784 * (math.log(0.5) + CONST_PER_PIXEL)
    res["implied_sse"] = (h["val_nll"][-1] - const) * 2 * 0.25
    res["sigma_hat"] = math.sqrt(res["implied_sse"] / 784)
    write(out, res)
    # chapter 7 on this model
    xs = x_test[SUBSET_7]
    table, lk = bound_table(vae, xs)
    res["ch7"] = table
    elbo = -negative_elbo(vae, xs, seed=0)
    res["ch7"]["L1_minus_elbo"], res["ch7"]["L1_minus_elbo_se"] = paired_difference(lk[1], elbo)
    m7, lv7 = (np_(t).astype(np.float32) for t in vae.encode(xs))
    for name, shift in (("wide15", 2 * math.log(1.5)), ("wide27", 2.0)):
        lw = iwae_bound(vae, xs, 5000, seed=5000, posterior=(m7, lv7 + shift))
        res["ch7"][f"L5000_{name}"] = float(lw.mean())
        res["ch7"][f"{name}_minus_L5000"], res["ch7"][f"{name}_minus_L5000_se"] = paired_difference(
            lw, lk[5000]
        )
    one = x_test[SUBSET_7[:1]]
    res["ch7"]["spread_one"] = {
        k: float(np.std([iwae_bound(vae, one, k, seed=s)[0] for s in range(20)]))
        for k in (1, 10, 100)
    }
    res["total_s"] = time.time() - t0
    write(out, res)


def job_ch78(seed, out, quick, lite=False):
    t0 = time.time()
    res = {"job": "ch78", "seed": seed}
    ep = 1 if quick else 3
    _, x_test = cm.mnist()
    xb = cm.binary_test_images()
    models = {}
    for d in (2, 50):
        models[d], _ = cm.get_burda(d, epochs=ep, seed=seed)
        res[f"train_burda{d}_s"] = time.time() - t0
    models["warm"], _ = cm.get_burda(50, epochs=ep, seed=seed, warmup_epochs=1)
    res["train_warm_s"] = time.time() - t0
    # chapter 7: Bernoulli table
    xs = xb[SUBSET_7]
    for d in (2, 50):
        vae = models[d]
        r = {"neg_elbo_full": float(negative_elbo(vae, xb, seed=0).mean())}
        l1 = iwae_bound(vae, xs, 1, seed=1)
        l5000 = iwae_bound(vae, xs, 5000, seed=5000)
        r["L5000"] = float(l5000.mean())
        r["gap5000"], r["gap5000_se"] = paired_difference(l5000, l1)
        t = time.time()
        r["L100_full"] = float(iwae_bound(vae, xb, 100, seed=100).mean())
        r["L100_full_s"] = time.time() - t
        m, lv = (np_(a).astype(np.float32) for a in vae.encode(xs))
        lw = iwae_bound(vae, xs, 5000, seed=5000, posterior=(m, lv + 2 * math.log(1.5)))
        r["wide15_minus_L5000"], r["wide15_minus_L5000_se"] = paired_difference(lw, l5000)
        res[f"ch7_burda{d}"] = r
        write(out, res)
    # chapter 8: the two gaps on SUBSET_8
    x8 = xb[SUBSET_8]
    for d in (2, 50):
        vae = models[d]
        t = time.time()
        q_enc = tuple(np_(a).astype(np.float32) for a in vae.encode(x8))
        q_star = fit_local_posterior(
            vae, x8, steps=FIT_STEPS, learning_rate=0.02, num_samples=FIT_SAMPLES, seed=0
        )
        e_enc = elbo_given_posterior(vae, x8, q_enc, num_samples=1000, seed=1)
        e_star = elbo_given_posterior(vae, x8, q_star, num_samples=1000, seed=1)
        l_enc = iwae_bound(vae, x8, 1000, seed=2)
        l_star = iwae_bound(vae, x8, 1000, seed=2, posterior=q_star)
        log_px = np.maximum(l_enc, l_star)
        r = {
            "elbo_enc": float(e_enc.mean()),
            "elbo_star": float(e_star.mean()),
            "L1000_enc": float(l_enc.mean()),
            "L1000_star": float(l_star.mean()),
            "log_px": float(log_px.mean()),
        }
        r["amortization"], r["amortization_se"] = paired_difference(e_star, e_enc)
        r["approximation"], r["approximation_se"] = paired_difference(log_px, e_star)
        r["star_minus_enc_L1000"], r["star_minus_enc_L1000_se"] = paired_difference(l_star, l_enc)
        r["s"] = time.time() - t
        res[f"ch8_gaps{d}"] = r
        write(out, res)
    for name in (50, "warm"):
        act, n = active_units(models[name], xb)
        res[f"ch8_active_{name}"] = {
            "n": n,
            "activity": act.tolist(),
            "neg_elbo_full": float(negative_elbo(models[name], xb, seed=0).mean()),
        }
    write(out, res)
    if lite:
        return
    # chapter 8: sigma sweep
    t = time.time()
    x_train, _ = cm.mnist()
    for sigma in SIGMAS:
        vae, _ = cm.get_sigma(
            sigma, epochs=1 if quick else SIGMA_EPOCHS, batch_size=SIGMA_BATCH, seed=seed
        )
        loss = negative_elbo(vae, x_test, seed=0)
        m, lv = vae.encode(x_test)
        recon = np_(vae.decode(m))
        sse = ((x_test - recon) ** 2).sum(axis=(1, 2))
        kl = np_(kl_std_normal(m, lv))
        nll = loss - kl
        sse_sampled = 2 * sigma**2 * (nll - 784 * (math.log(sigma) + CONST_PER_PIXEL))
        res[f"ch8_sigma{sigma:g}"] = {
            "neg_elbo": float(loss.mean()),
            "kl": float(kl.mean()),
            "sse_mean_code": float(sse.mean()),
            "sse_sampled": float(sse_sampled.mean()),
            "sigma_hat": float(math.sqrt(sse_sampled.mean() / 784)),
        }
        write(out, res)
    res["sigma_s"] = time.time() - t
    res["total_s"] = time.time() - t0
    write(out, res)


def write(out, res):
    path = Path(out) / f"{res['job']}_seed{res['seed']}.json"
    path.write_text(json.dumps(res, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("job", choices=("ch6", "ch78"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="spread")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--lite", action="store_true", help="ch78: skip the sigma sweep")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    if a.job == "ch6":
        job_ch6(a.seed, a.out, a.quick)
    else:
        job_ch78(a.seed, a.out, a.quick, a.lite)


if __name__ == "__main__":
    main()
