"""Measure the two gaps of chapter 9's importance-weighted models, for several seeds.

For seed S, the IWAE models of ``iwae_runs.get_iwae(k, seed=S)`` (k_train = 1, 5, 50; seed 0 is
the chapter's), on ``iwae_runs.eval_images()`` (the chapter's 200 test images):
``iwae_runs.gaps`` with per-image fits of 200, 400, 800 and 1600 steps (the chapter runs 400;
the others show whether ELBO(q*) still moves), and ``iwae_runs.gap_summary``. Writes
``<out>/gaps_seed<S>.json`` with the summary, the fits' moves and the per-image values:

    nice -n 10 python scripts/measure_iwae_gaps.py --seeds 0 1 2 --threads 2

With ``--l5000``, the check chapter 8 made of its estimate of log p(x): for each model the
400-step q* is fitted again (the same fit: its L_1000 is compared with the file's), and L_5000
with q* and with the encoder's q as the proposal (other draws than the L_1000: seed 3) is set
against the L_1000 the gaps used. Writes ``<out>/l5000_seed<S>.json`` (about 90 CPU seconds a
model).

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
FIT = {"learning_rate": 0.02, "num_samples": 5}  # iwae_runs.gaps' per-image fit


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


def measure_l5000(seed, out):
    """L_5000 against the L_1000 of ``<out>/gaps_seed<seed>.json``, per model (nats, paired)."""
    x = iwae_runs.eval_images()
    saved = json.loads((out / f"gaps_seed{seed}.json").read_text())
    record = {
        "seed": seed,
        "settings": {
            "k_eval": [iwae_runs.K_EVAL, 5000],
            "draw_seeds": [2, 3],  # the gap files' L_1000 draws; other draws for L_5000
            "fit_steps": iwae_runs.GAP_STEPS,
            "fit_learning_rate": FIT["learning_rate"],
            "fit_draws": FIT["num_samples"],
        },
        "models": {},
    }
    for k in iwae_runs.K_TRAIN:
        model, _ = iwae_runs.get_iwae(k, seed=seed)
        start = time.process_time()
        q_star = iwae_runs.fit_local_posterior(model, x, steps=iwae_runs.GAP_STEPS, **FIT)
        bounds = {}
        for name, posterior in (("enc", None), ("star", q_star)):
            for k_eval, draws in ((iwae_runs.K_EVAL, 2), (5000, 3)):
                bounds[name, k_eval] = iwae_runs.iwae_bound(
                    model, x, k_eval, seed=draws, posterior=posterior
                )
        per_image = saved["per_image"][str(k)]
        row = {
            # the refitted q* and the draws are the file's: its rounded L_1000 to 1e-4
            "l1000_max_abs_diff_from_file": max(
                float(
                    np.abs(bounds[n, iwae_runs.K_EVAL] - np.asarray(per_image[f"bound_{n}"])).max()
                )
                for n in ("enc", "star")
            ),
            "log_px_1000": saved["summary"][str(k)]["log_px"],
        }
        for n in ("enc", "star"):
            row[f"l5000_minus_l1000_{n}"] = [
                float(v) for v in paired_difference(bounds[n, 5000], bounds[n, iwae_runs.K_EVAL])
            ]
        best = {
            k_eval: max((bounds[n, k_eval] for n in ("enc", "star")), key=np.mean)
            for k_eval in (iwae_runs.K_EVAL, 5000)
        }
        row["log_px_5000"] = (
            "bound_star"
            if bounds["star", 5000].mean() > bounds["enc", 5000].mean()
            else "bound_enc"
        )
        # the approximation gap (and the total) against L_5000 minus against L_1000
        row["best_l5000_minus_best_l1000"] = [
            float(v) for v in paired_difference(best[5000], best[iwae_runs.K_EVAL])
        ]
        row["cpu_s"] = round(time.process_time() - start, 1)
        print(seed, k, json.dumps(row), flush=True)
        row["per_image"] = {  # rounded to 4 decimals
            f"bound_{n}_{k_eval}": np.round(bounds[n, k_eval], 4).tolist()
            for n in ("enc", "star")
            for k_eval in (iwae_runs.K_EVAL, 5000)
        }
        record["models"][str(k)] = row
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("measurements/iwae_gaps"))
    parser.add_argument("--l5000", action="store_true", help="check L_1000 against L_5000")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.l5000:
        for s in args.seeds:
            record = measure_l5000(s, args.out)
            (args.out / f"l5000_seed{s}.json").write_text(json.dumps(record, indent=1) + "\n")
        return
    for s in args.seeds:
        record = measure(s)
        (args.out / f"gaps_seed{s}.json").write_text(json.dumps(record, indent=1) + "\n")
        print(s, json.dumps(record["summary"]), record["cpu_s"], flush=True)


if __name__ == "__main__":
    main()
