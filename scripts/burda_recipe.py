"""Burda et al. (2015)'s VAE run, in full or its first passes: the recipe chapter 7 points to.

Their one-stochastic-layer VAE (784-200-200-latent, tanh, Bernoulli), trained
on dynamically binarized MNIST with batches of 20 and Adam (epsilon 1e-4),
in passes: pass i = 0 .. 7 runs 3**i epochs at learning rate 1e-3 * 10**(-i/7),
3,280 epochs in all. Then it evaluates what chapter 7's table prints, on the
same binarized test set: -ELBO and -L_k on all 10,000 test images, -L_5000 on
chapter 7's 100 random images, and the active units (chapter 8).

    python scripts/burda_recipe.py --passes 8 --k-all 5000   # the paper's run: many hours
    python scripts/burda_recipe.py --passes 4                 # 40 epochs, the run chapter 7 quotes

Writes ``<out>/burda_latent<d>_passes<p>_seed<s>.json`` (and the model as
``.keras`` beside it). It does not resume: an interrupted run starts again.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import torch

from vae_course.evaluate import (
    active_units,
    iwae_bound,
    mean_and_se,
    negative_elbo,
    paired_difference,
)
from vae_course.tools import course_models as cm
from vae_course.tools.atomic import atomic_write_text
from vae_course.tools.checkpoints import save_vae
from vae_course.train import burda_epochs, train_burda_schedule


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--passes", type=int, default=8, help="Burda's passes to run, 1-8 (8: 3,280 epochs; 4: 40)"
    )
    ap.add_argument("--latent-dim", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--k-all",
        type=int,
        default=100,
        help="k of the bound on all 10,000 test images (paper: 5000)",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", default="runs/burda")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"burda_latent{a.latent_dim}_passes{a.passes}_seed{a.seed}"

    t0 = time.time()
    x_train, _ = cm.mnist()
    xb = cm.binary_test_images()
    vae, history = train_burda_schedule(x_train, xb, a.latent_dim, a.passes, a.seed, verbose=2)
    res = {
        "passes": a.passes,
        "epochs": burda_epochs(a.passes),
        "latent_dim": a.latent_dim,
        "seed": a.seed,
    }
    res["train_s"] = time.time() - t0
    res["history"] = {k: [float(v) for v in vs] for k, vs in history.items()}
    save_vae(vae, out / f"{stem}.keras")

    subset = np.random.default_rng(0).permutation(len(xb))[:100]  # chapter 7's 100 random images
    res["neg_elbo_all"] = mean_and_se(negative_elbo(vae, xb, seed=0))
    res[f"neg_L{a.k_all}_all"] = mean_and_se(-iwae_bound(vae, xb, a.k_all, seed=a.k_all))
    l1, l5000 = iwae_bound(vae, xb[subset], 1, seed=1), iwae_bound(vae, xb[subset], 5000, seed=5000)
    res["neg_L5000_random100"] = mean_and_se(-l5000)
    res["L5000_minus_L1_random100"] = paired_difference(l5000, l1)
    activity, res["active_units"] = active_units(vae, xb)
    res["activity"] = activity.tolist()
    res["total_s"] = time.time() - t0
    atomic_write_text(out / f"{stem}.json", json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k not in ("history", "activity")}, indent=1))


if __name__ == "__main__":
    main()
