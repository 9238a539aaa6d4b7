"""Measure the two gaps of chapter 9's importance-weighted models, for several seeds.

For seed S, the IWAE models of ``iwae_runs.get_iwae(k, seed=S)`` (k_train = 1, 5, 50; seed 0 is
the chapter's), on ``iwae_runs.eval_images()`` (the chapter's 200 test images):
``iwae_runs.gaps`` with per-image fits of 200, 400, 800 and 1600 steps (the chapter runs 400;
the others show whether ELBO(q*) still moves), and ``iwae_runs.gap_summary``. Writes
``<out>/gaps_seed<S>.json`` with the summary, the fits' moves and the per-image values:

    nice -n 10 python scripts/measure_iwae_gaps.py --seeds 0 1 2 --threads 2

Models missing from the cache are trained first (about 2 minutes each at k_train = 50). Run
nothing else on the machine meanwhile: with two busy torch processes on two cores, each runs
many times slower.
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

from vae_course.montecarlo import paired_difference
from vae_course.tools import iwae_runs

STEPS = (200, 400, 800, 1600)


def measure(seed):
    x = iwae_runs.eval_images()
    per_model, cpu = {}, {}
    for k in iwae_runs.K_TRAIN:
        model, _ = iwae_runs.get_iwae(k, seed=seed)
        start = time.process_time()
        per_model[k] = iwae_runs.gaps(model, x, steps=STEPS)
        cpu[k] = round(time.process_time() - start, 1)
    summary = iwae_runs.gap_summary(per_model)
    for k, r in per_model.items():
        for a, b in zip(STEPS, STEPS[1:]):
            move = paired_difference(r[f"elbo_star_{b}"], r[f"elbo_star_{a}"])
            summary[k][f"elbo_star_{b}_minus_{a}"] = [float(v) for v in move]
    return {
        "seed": seed,
        "settings": {
            "k_train": list(iwae_runs.K_TRAIN),
            "images": iwae_runs.N_EVAL,
            "steps": list(STEPS),
            "summary_steps": iwae_runs.GAP_STEPS,
            "k_eval": iwae_runs.K_EVAL,
        },
        "summary": {str(k): v for k, v in summary.items()},
        "summary_longest": {  # the same with the longest fits (q* of 400 steps as a proposal)
            str(k): v for k, v in iwae_runs.gap_summary(per_model, steps=STEPS[-1]).items()
        },
        "per_image": {
            str(k): {key: np.round(v, 4).tolist() for key, v in r.items()}
            for k, r in per_model.items()
        },
        "cpu_s": {str(k): v for k, v in cpu.items()},
        "note": "per_image rounded to 4 decimals (the summary from the unrounded values)",
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("measurements/iwae_gaps"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for s in args.seeds:
        record = measure(s)
        (args.out / f"gaps_seed{s}.json").write_text(json.dumps(record, indent=1) + "\n")
        print(s, json.dumps(record["summary"]), record["cpu_s"], flush=True)


if __name__ == "__main__":
    main()
