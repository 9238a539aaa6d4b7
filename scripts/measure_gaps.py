"""Measure, over seeds, the numbers chapters 7 and 8 assert on that measure_spread.py does not record.

For chapter 7's Bernoulli models (Burda et al.'s networks, 3 epochs) and one seed:

* chapter 7: L_100 and L_5000 on the *same* 100 random test images (paired), so the two
  bounds compare on one image set;
* chapter 8, the two gaps on 200 random test images, with the local fit q* run for several
  step counts (does ELBO(q*) still move?), log p(x) estimated by L_k with q* as proposal
  for k = 1000 and 5000 (how far does it still move?), and the encoder's L_5000 beside it;
* chapter 8, active units: the activity of each latent of the 50-latent model, its mean KL,
  and the counts above several thresholds.

    python scripts/measure_gaps.py --seed 1 --threads 2 --out measurements/gaps

One JSON file per seed; summarize with ``python scripts/summarize_spread.py measurements/gaps``.
"""

from __future__ import annotations

import argparse
import json
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
    paired_difference,
)
from vae_course.losses import kl_std_normal
from vae_course.tools import course_models as cm

PERM = np.random.default_rng(0).permutation(10000)
SUBSET_7, SUBSET_8 = (
    PERM[:100],
    PERM[:200],
)  # chapter 7's 100 images are the first half of chapter 8's 200
STEPS = (200, 400, 800)
THRESHOLDS = (0.01, 0.1, 0.5)


def np_(t):
    return keras.ops.convert_to_numpy(t).astype(np.float64)


def pd(a, b):
    """The paired difference a - b as {"mean", "se"} (summarize_spread.py lists both)."""
    m, se = paired_difference(a, b)
    return {"mean": m, "se": se}


def run(seed, out):
    t0 = time.time()
    res = {"job": "gaps", "seed": seed}
    xb = cm.binary_test_images()
    models = {d: cm.get_burda(d, seed=seed)[0] for d in (2, 50)}
    res["train_s"] = time.time() - t0
    xs = xb[SUBSET_7]
    for d in (2, 50):
        t = time.time()
        l100 = iwae_bound(models[d], xb, 100, seed=100)[SUBSET_7]
        l5000 = iwae_bound(models[d], xs, 5000, seed=5000)
        res[f"ch7_burda{d}"] = {
            "L100_sub": float(l100.mean()),
            "L5000_minus_L100_sub": pd(l5000, l100),
        }
        res[f"ch7_burda{d}"]["s"] = time.time() - t
        write(out, res)
    x8 = xb[SUBSET_8]
    for d in (2, 50):
        vae, r = models[d], {}
        q_enc = tuple(np_(a).astype(np.float32) for a in vae.encode(x8))
        e_enc = elbo_given_posterior(vae, x8, q_enc, num_samples=1000, seed=1)
        r["elbo_enc"] = float(e_enc.mean())
        e_star, q_star = {}, {}
        for s in STEPS:
            t = time.time()
            q_star[s] = fit_local_posterior(
                vae, x8, steps=s, learning_rate=0.02, num_samples=5, seed=0
            )
            r[f"fit{s}_s"] = time.time() - t
            e_star[s] = elbo_given_posterior(vae, x8, q_star[s], num_samples=1000, seed=1)
            r[f"amortization_{s}"] = pd(e_star[s], e_enc)
        for a, b in zip(STEPS, STEPS[1:]):
            r[f"elbo_star_{b}_minus_{a}"] = pd(e_star[b], e_star[a])
        qs = q_star[400]
        t = time.time()
        lk = {k: iwae_bound(vae, x8, k, seed=2, posterior=qs) for k in (1000, 5000)}
        r["L5000_star_s"] = time.time() - t
        l_enc = iwae_bound(vae, x8, 5000, seed=2)
        r["L5000_star"] = float(lk[5000].mean())
        r["L5000_star_minus_L1000_star"] = pd(lk[5000], lk[1000])
        r["L5000_star_minus_L5000_enc"] = pd(lk[5000], l_enc)
        for s in STEPS:
            r[f"approximation_{s}"] = pd(lk[5000], e_star[s])
        r["total"] = pd(lk[5000], e_enc)
        r["total_first100"] = pd(lk[5000][:100], e_enc[:100])
        r["L5000_enc_minus_elbo_enc_first100"] = pd(l_enc[:100], e_enc[:100])
        res[f"ch8_gaps{d}"] = r
        write(out, res)
    for name in (50,):
        vae = models[name]
        act, n = active_units(vae, xb)
        m, lv = vae.encode(xb)
        kl_unit = [
            float(np_(kl_std_normal(m[:, u : u + 1], lv[:, u : u + 1])).mean()) for u in range(50)
        ]
        res[f"ch8_units_{name}"] = {
            "activity": act.tolist(),
            "kl_per_unit": kl_unit,
            **{f"n_above_{th:g}": int((act > th).sum()) for th in THRESHOLDS},
        }
    res["total_s"] = time.time() - t0
    write(out, res)


def write(out, res):
    (Path(out) / f"gaps_seed{res['seed']}.json").write_text(json.dumps(res, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="measurements/gaps")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    run(a.seed, a.out)


if __name__ == "__main__":
    main()
