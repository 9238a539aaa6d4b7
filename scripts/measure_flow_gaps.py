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
and writes ``flow_gaps_k50_seed<S>.json``; ``--moment-start`` fits the flow's model's Gaussians
again for 400, 800 and 1600 steps, from the moments of its own q (``flows.flow_moments``)
instead of from q_0, on the same draws, and writes ``flow_gaps[_e10_n60000]_moments_seed<S>.json``
with its comparison against the files above (:func:`moment_summary`):

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


MOMENT_STEPS = (400, 800, 1600)


def _stored(out, schedule, seed):
    """The per-image values of both models in the files of ``schedule`` for ``seed``, every fit
    length in one dict per model (the 1600-step file's ``enc`` numbers equal the first's)."""
    per_model = {}
    for extra in ("", "_fit1600"):
        path = out / f"flow_gaps{schedule}{extra}_seed{seed}.json"
        if path.exists():
            for name, r in json.loads(path.read_text())["per_image"].items():
                per_model.setdefault(name, {}).update({k: np.array(v) for k, v in r.items()})
    return per_model


def moment_summary(new, stored, steps=MOMENT_STEPS):
    """The Gaussian fits of the flow's model from its q_T's moments (``new``, per image) against
    the stored fits from q_0 (``stored``: :func:`_stored`). Per fit length s, paired over the
    images (``[mean, se]``):

    * ``moments_minus_q0``: ELBO of the fit from the moments minus that from q_0;
    * ``moments_better``: on how many images the first is the higher;
    * ``approx_gauss_best``: log p-hat minus the higher of the two fits' ELBO, per image
      (log p-hat: the highest by its mean of every stored and new L_1000 of the model; a
      maximum over two fits, so it leans upward by the noise of their ELBOs, which share
      their draws);
    * ``flow_q_minus_best_gauss``: ELBO of the model's own flow q minus that best Gaussian;
    * ``flow_minus_gauss_approx_gauss``: this approximation gap minus that of the model without
      the flow (its q_0-start fits of the same length, against its own log p-hat), where stored.
    """
    flow = stored["flow"]
    if not np.array_equal(np.round(new["elbo_enc"], 4), flow["elbo_enc"]):
        raise RuntimeError("the new fits' draws are not the stored files' (elbo_enc differs)")
    bounds = {k: v for k, v in flow.items() if k.startswith("bound_")}
    bounds.update({k: np.round(v, 4) for k, v in new.items() if k.startswith("bound_")})
    best_key = max(bounds, key=lambda k: bounds[k].mean())
    log_px = bounds[best_key]
    out = {"log_px": best_key}
    for s in steps:
        if f"elbo_gauss_{s}" not in flow:
            continue
        m, q0 = np.round(new[f"elbo_gaussm_{s}"], 4), flow[f"elbo_gauss_{s}"]
        best = np.maximum(m, q0)
        row = {
            "moments_minus_q0": list(paired_difference(m, q0)),
            "moments_better": int((m > q0).sum()),
            "approx_gauss_q0": list(mean_and_se(log_px - q0)),
            "approx_gauss_best": list(mean_and_se(log_px - best)),
            "flow_q_minus_best_gauss": list(paired_difference(flow["elbo_enc"], best)),
        }
        gauss = stored.get("gauss", {})
        if f"elbo_gauss_{s}" in gauss:
            g_bounds = [v for k, v in gauss.items() if k.startswith("bound_")]
            g_px = max(g_bounds, key=np.mean)
            row["flow_minus_gauss_approx_gauss"] = list(
                paired_difference(log_px - best, g_px - gauss[f"elbo_gauss_{s}"])
            )
        out[str(s)] = row
    return out


def measure_moments(seed, epochs, n_train, out, schedule, k_train=1):
    """The ``--moment-start`` run for one seed: fits, their per-image values, the summary."""
    x = iwae_runs.eval_images()
    model, _ = iwae_runs.get_iwae(
        k_train, seed=seed, epochs=epochs, n_train=n_train, flow_steps=iwae_runs.FLOW_STEPS
    )
    start = time.process_time()
    r = iwae_runs.family_gaps(model, x, steps=MOMENT_STEPS, families=("gaussm",))
    cpu = round(time.process_time() - start, 1)
    return {
        "seed": seed,
        "settings": {
            "k_train": k_train,
            "epochs": epochs,
            "n_train": n_train,
            "fit_steps": list(MOMENT_STEPS),
            "moment_draws": iwae_runs.MOMENT_DRAWS,
            "moment_seed": iwae_runs.MOMENT_SEED,
        },
        "summary": moment_summary(r, _stored(out, schedule, seed)),
        "per_image": {key: np.round(v, 4).tolist() for key, v in r.items()},
        "cpu_s": cpu,
        "note": "per_image rounded to 4 decimals; the summary compares the rounded values",
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
    parser.add_argument(
        "--moment-start",
        action="store_true",
        help="refit the flow's model's Gaussians from its q's moments (see above)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    schedule = "" if args.k_train == 1 else f"_k{args.k_train}"
    if (args.epochs, args.n_train) != (iwae_runs.EPOCHS, iwae_runs.N_TRAIN):
        schedule = f"_e{args.epochs}_n{args.n_train}"
    if args.moment_start:
        for s in args.seeds:
            record = measure_moments(s, args.epochs, args.n_train, args.out, schedule, args.k_train)
            path = args.out / f"flow_gaps{schedule}_moments_seed{s}.json"
            path.write_text(json.dumps(record, indent=1) + "\n")
            print(path, json.dumps(record["summary"]), record["cpu_s"], flush=True)
        return
    if args.fit_steps:
        schedule += "_fit" + "_".join(str(s) for s in args.fit_steps)
    for s in args.seeds:
        record = measure(s, args.epochs, args.n_train, args.fit_steps, args.models, args.k_train)
        path = args.out / f"flow_gaps{schedule}_seed{s}.json"
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(path, json.dumps(record["summary"]), record["cpu_s"], flush=True)


if __name__ == "__main__":
    main()
