"""Measure how the ELBO of the MNIST test set's first 5,000 images differs from its last 5,000.

Chapter 7 compares the two halves under chapter 6's model. This script computes the same
difference (first half minus second, with the standard error of two independent means) for
models it loads or trains through ``vae_course.tools.course_models``: chapter 6's Gaussian
model (seed 0 only: its training takes minutes) and chapter 7's Bernoulli models with 2 and
50 latents (3 epochs) for the given seed, on the binarized test set.

    python scripts/measure_halves.py --seed 1 --threads 2 --out measurements/halves

One JSON file per seed; summarize with ``python scripts/summarize_spread.py measurements/halves``.
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

from vae_course.evaluate import negative_elbo
from vae_course.montecarlo import mean_and_se
from vae_course.tools import course_models as cm


def halves(elbo):
    """First 5,000 minus last 5,000: the difference of means and its standard error."""
    elbo = keras.ops.convert_to_numpy(elbo).astype(np.float64)
    (m1, se1), (m2, se2) = mean_and_se(elbo[:5000]), mean_and_se(elbo[5000:])
    return {"first_minus_second": m1 - m2, "se": math.hypot(se1, se2)}


def run(seed, out):
    t0 = time.time()
    res = {"job": "halves", "seed": seed}
    if seed == 0:
        vae = cm.get_chapter6(seed=0)[0]
        res["ch6"] = halves(-negative_elbo(vae, cm.mnist()[1], seed=0))
    xb = cm.binary_test_images()
    for d in (2, 50):
        vae = cm.get_burda(d, seed=seed)[0]
        res[f"burda{d}"] = halves(-negative_elbo(vae, xb, seed=0))
    res["total_s"] = time.time() - t0
    (Path(out) / f"halves_seed{seed}.json").write_text(json.dumps(res, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="measurements/halves")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    run(a.seed, a.out)


if __name__ == "__main__":
    main()
