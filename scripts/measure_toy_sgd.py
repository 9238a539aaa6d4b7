"""Seed-to-seed spread of chapter 2's SGD on a Bernoulli logit.

Chapter 2 runs 200 SGD runs of 200 steps per gradient estimator with seed 22
and asserts on quantiles of the final excess loss. Those numbers come from one
seed on one machine (the chapter does not compare them across machines); this
script repeats the experiment for other seeds, with the chapter's settings and
the package's estimators, and writes what the asserts and the text rely on:

    python scripts/measure_toy_sgd.py --seeds 22 23 24 25 26 27 28 29 30 31 --out measurements/toy
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from vae_course import quadratic
from vae_course.gradients import bernoulli_score_grads

K_BIT, N_BIT, ALPHA, STEPS, RUNS = 0.45, 4, 5.0, 200, 200  # as in chapter 2


def sgd_runs(gradient, gen):
    eta, excess = torch.zeros(RUNS), []
    for _ in range(STEPS):
        eta = eta - ALPHA * gradient(eta, gen)
        excess.append(quadratic.bernoulli_expectation(torch.sigmoid(eta), K_BIT) - K_BIT**2)
    return torch.stack(excess, 1).numpy()


def f_bit(x):
    return (x - K_BIT) ** 2


def score_estimate(f_, baseline):
    return lambda eta, gen: bernoulli_score_grads(f_, eta, N_BIT, baseline, gen)["logits"].mean(0)


ESTIMATORS = {
    "exact gradient": lambda eta, gen: quadratic.bernoulli_grad_logit(torch.sigmoid(eta), K_BIT),
    "RLOO": score_estimate(f_bit, "rloo"),
    "no baseline": score_estimate(f_bit, 0.0),
    "no baseline, f + 5": score_estimate(lambda x: f_bit(x) + 5.0, 0.0),
}


def measure(seed: int) -> dict:
    curves = {name: sgd_runs(g, torch.Generator().manual_seed(seed)) for name, g in ESTIMATORS.items()}
    worst = 1 - 2 * K_BIT
    final = {name: np.quantile(cv[:, -1], [0.1, 0.5, 0.9]).tolist() for name, cv in curves.items()}
    width = {name: q[2] - q[0] for name, q in final.items()}
    return {
        "seed": seed,
        "final_quantiles_10_50_90": final,
        "lost_share": {name: float((cv[:, -1] > worst / 2).mean()) for name, cv in curves.items()},
        "rloo_median_over_exact": final["RLOO"][1] / final["exact gradient"][1],
        "no_baseline_median_over_exact": final["no baseline"][1] / final["exact gradient"][1],
        "band_width_no_baseline_over_rloo": width["no baseline"] / width["RLOO"],
        "band_ratio_90_10_no_baseline": final["no baseline"][2] / final["no baseline"][0],
        "band_ratio_90_10_rloo": final["RLOO"][2] / final["RLOO"][0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(22, 32)))
    parser.add_argument("--out", type=Path, default=Path("measurements/toy"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(s) for s in args.seeds]
    summary = {}
    for key in (
        "rloo_median_over_exact",
        "no_baseline_median_over_exact",
        "band_width_no_baseline_over_rloo",
        "band_ratio_90_10_no_baseline",
        "band_ratio_90_10_rloo",
    ):
        vals = [r[key] for r in rows]
        summary[key] = {"min": min(vals), "max": max(vals), "mean": float(np.mean(vals))}
    lost = [r["lost_share"]["no baseline, f + 5"] for r in rows]
    summary["lost_share_f_plus_5"] = {"min": min(lost), "max": max(lost), "mean": float(np.mean(lost))}
    summary["lost_share_rloo_or_no_baseline_max"] = max(
        max(r["lost_share"]["RLOO"], r["lost_share"]["no baseline"]) for r in rows
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "ch2_bernoulli_sgd.json"
    path.write_text(
        json.dumps(
            {
                "settings": {"k": K_BIT, "N": N_BIT, "step": ALPHA, "steps": STEPS, "runs": RUNS},
                "summary": summary,
                "per_seed": rows,
            },
            indent=1,
        )
        + "\n"
    )
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
