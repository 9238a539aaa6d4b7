"""Measure the two gaps of chapter 9's models with and without an amortized flow, for several seeds.

For seed S, the k_train = 1 models of ``iwae_runs.get_iwae`` without a flow, with the amortized
flow (``flow_steps=FLOW_STEPS``) and with the wider Gaussian encoder (``WIDE_ENCODER``), on the
chapter's 200 test images: ``iwae_runs.family_gaps``, which fits to each image a Gaussian and a
Gaussian with a two-step IAF (for 400 and 800 steps; the wider encoder 400 only), and
``summarize`` below. Writes ``<out>/flow_gaps_seed<S>.json`` (the chapter's schedule, 158 steps)
or, with ``--epochs 10 --n-train 60000``, ``flow_gaps_e10_n60000_seed<S>.json``;
``--fit-steps 1600 --models gauss flow`` fits those models' images for 1600 steps only and
writes ``flow_gaps_fit1600_seed<S>.json`` (the same draws of eps: its ``enc`` numbers equal the
first file's); ``--k-train 50 --models gauss flow`` does the same for the k_train = 50 models
and writes ``flow_gaps_k50_seed<S>.json``:

    nice -n 10 python scripts/measure_flow_gaps.py --seeds 0 1 2 --threads 2

Models missing from the cache are trained first. Run nothing else on the machine meanwhile.
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

from vae_course.montecarlo import mean_and_se, paired_difference
from vae_course.tools import iwae_runs

STEPS = (400, 800)
MODELS = {  # name: (get_iwae's keywords, fit lengths)
    "gauss": ({}, STEPS),
    "flow": ({"flow_steps": iwae_runs.FLOW_STEPS}, STEPS),
    "wide": ({"encoder_units": iwae_runs.WIDE_ENCODER}, STEPS[:1]),
}


def gaps_of(r, own, steps):
    """One model's gaps per image from :func:`iwae_runs.family_gaps`'s ``r``, with fits of
    ``steps`` steps: log p(x) estimated by the highest (by its mean) of every L_1000 in ``r``;
    ``own`` names the model's own family ("gauss" or "flow"), whose fit gives the amortization
    gap."""
    bounds = [key for key in r if key.startswith("bound_")]
    best = max(bounds, key=lambda key: r[key].mean())
    log_px = r[best]
    return best, {
        "total": log_px - r["elbo_enc"],
        "amortization": r[f"elbo_{own}_{steps}"] - r["elbo_enc"],
        "approx_gauss": log_px - r[f"elbo_gauss_{steps}"],
        "approx_flow": log_px - r[f"elbo_flow_{steps}"],
        "flow_fit_minus_gauss_fit": r[f"elbo_flow_{steps}"] - r[f"elbo_gauss_{steps}"],
    }


def summarize(per_model, steps):
    """Per model: each gap (``[mean, se]`` over the images) and which L_1000 stood in for
    log p(x); between models (``flow_minus_gauss``, ``wide_minus_gauss``, ``flow_minus_wide``):
    each gap's paired difference. Models without fits of ``steps`` steps are left out."""
    own = {"gauss": "gauss", "flow": "flow", "wide": "gauss"}
    rows, out = {}, {}
    for name, r in per_model.items():
        if f"elbo_gauss_{steps}" not in r:
            continue
        best, rows[name] = gaps_of(r, own[name], steps)
        out[name] = {"log_px": best, **{g: list(mean_and_se(v)) for g, v in rows[name].items()}}
    for a, b in (("flow", "gauss"), ("wide", "gauss"), ("flow", "wide")):
        if a in rows and b in rows:
            out[f"{a}_minus_{b}"] = {
                g: list(paired_difference(rows[a][g], rows[b][g])) for g in rows[a]
            }
    return out


def measure(seed, epochs, n_train, fit_steps=None, models=tuple(MODELS), k_train=1):
    """``fit_steps``: the fits' lengths for every model (default: MODELS's); ``models``: which;
    ``k_train``: the models' k."""
    x = iwae_runs.eval_images()
    per_model, cpu = {}, {}
    plan = {m: (MODELS[m][0], tuple(fit_steps or MODELS[m][1])) for m in models}
    for name, (kwargs, steps) in plan.items():
        model, _ = iwae_runs.get_iwae(k_train, seed=seed, epochs=epochs, n_train=n_train, **kwargs)
        start = time.process_time()
        per_model[name] = iwae_runs.family_gaps(model, x, steps=steps)
        cpu[name] = round(time.process_time() - start, 1)
    moves = {
        name: {
            fam: list(paired_difference(r[f"elbo_{fam}_800"], r[f"elbo_{fam}_400"]))
            for fam in ("gauss", "flow")
        }
        for name, r in per_model.items()
        if "elbo_gauss_800" in r and "elbo_gauss_400" in r
    }
    return {
        "seed": seed,
        "settings": {
            "k_train": k_train,
            "epochs": epochs,
            "n_train": n_train,
            "images": iwae_runs.N_EVAL,
            "k_eval": iwae_runs.K_EVAL,
            "fit_steps": {name: list(steps) for name, (_, steps) in plan.items()},
            "flow_steps": iwae_runs.FLOW_STEPS,
            "flow_hidden_units": iwae_runs.FLOW_HIDDEN,
            "wide_encoder": list(iwae_runs.WIDE_ENCODER),
        },
        "summary": {
            str(s): summarize(per_model, s)
            for s in sorted({s for _, t in plan.values() for s in t})
        },
        "moves_800_minus_400": moves,
        "per_image": {
            name: {key: np.round(v, 4).tolist() for key, v in r.items()}
            for name, r in per_model.items()
        },
        "cpu_s": cpu,
        "note": "per_image rounded to 4 decimals (the summary from the unrounded values)",
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=iwae_runs.EPOCHS)
    parser.add_argument("--n-train", type=int, default=iwae_runs.N_TRAIN)
    parser.add_argument("--fit-steps", type=int, nargs="+", help="every model's fit lengths")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--k-train", type=int, default=1, choices=iwae_runs.K_TRAIN)
    parser.add_argument("--out", type=Path, default=Path("measurements/iwae_gaps"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    schedule = "" if args.k_train == 1 else f"_k{args.k_train}"
    if (args.epochs, args.n_train) != (iwae_runs.EPOCHS, iwae_runs.N_TRAIN):
        schedule = f"_e{args.epochs}_n{args.n_train}"
    if args.fit_steps:
        schedule += "_fit" + "_".join(str(s) for s in args.fit_steps)
    for s in args.seeds:
        record = measure(s, args.epochs, args.n_train, args.fit_steps, args.models, args.k_train)
        path = args.out / f"flow_gaps{schedule}_seed{s}.json"
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(path, json.dumps(record["summary"]), record["cpu_s"], flush=True)


if __name__ == "__main__":
    main()
