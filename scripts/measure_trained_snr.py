"""Measure chapter 9's gradient SNR at a trained encoder's output, for several models and draws.

For model seed S, chapter 7's 2-latent Bernoulli model of that seed (``get_burda(2, seed=S)``,
3 epochs; S = 0 is the chapter's ``vae2``), on the first ``iwae_runs.SNR_IMAGES`` of chapter 8's
200 test images: ``iwae_runs.trained_snr`` (IWAE's and DReG's gradient with respect to each
image's mu and log sigma^2 at the encoder's output, k in ``iwae_runs.SNR_K``,
``iwae_runs.SNR_DRAWS`` draws each, draw seed D) and its ``iwae_runs.snr_summary``, written to
``<out>/snr_model<S>_draws<D>.json`` with the per-component SNRs and their standard errors.
The chapter runs model 0 with draws 0 and takes its tolerances from these files:

    nice -n 10 python scripts/measure_trained_snr.py --models 0 1 2 --threads 2
    nice -n 10 python scripts/measure_trained_snr.py --models 0 --draws 1 2 --threads 2

Without ``--draws`` each model's draw seed is its model seed. ``--weights`` measures instead
the SNR with respect to the encoder's weights, from the same draws
(``iwae_runs.trained_weight_snr``), into ``<out>/snr_weights_model<S>_draws<D>.json``:

    nice -n 10 python scripts/measure_trained_snr.py --models 0 1 2 --weights --threads 2

``--k`` replaces ``iwae_runs.SNR_K`` (the draws of each k are the same as with the default grid:
seed ``1000 * D + k``) and adds ``_k<k...>`` to the file's name. ``--and-weights`` writes both
kinds of file from the same draws (``iwae_runs.snr_draws``, taken once). The chapter's
beyond-100 runs (410 to 490 CPU seconds a model for the draws, 8.9 GB of memory at the peak):

    nice -n 10 python scripts/measure_trained_snr.py --models 0 1 2 --k 100 1000 --and-weights

``--moments`` writes, for the same draws, the median |mean| and sd of the draws apart
(``iwae_runs.gradient_moments``) into ``<out>/snr_moments_model<S>_draws<D><tag>.json``:

    nice -n 10 python scripts/measure_trained_snr.py --models 0 1 2 --k 1 10 100 1000 --moments
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

from vae_course import iwae
from vae_course.tools import course_models, iwae_runs


def chapter_images():
    """The first SNR_IMAGES of chapter 8's 200 test images (the chapter's ``x9[:SNR_IMAGES]``)."""
    subset = np.random.default_rng(0).permutation(10000)[:200]
    return course_models.binary_test_images()[subset][: iwae_runs.SNR_IMAGES]


def settings(ks=iwae_runs.SNR_K, **extra):
    """The runs' settings, as recorded in their files."""
    return {
        "k": list(ks),
        "images": iwae_runs.SNR_IMAGES,
        "draws": iwae_runs.SNR_DRAWS,
        **extra,
    }


def measure(vae, model_seed, draw_seed, ks, draws):
    start = time.process_time()
    result = iwae_runs.trained_snr(vae, chapter_images(), seed=draw_seed, ks=ks, draws=draws)
    return {
        "model_seed": model_seed,
        "draw_seed": draw_seed,
        "settings": settings(ks),
        "summary": iwae_runs.snr_summary(result, ks=ks),
        "snr": {f"{e}_{k}": np.round(v[0], 4).tolist() for (e, k), v in result.items()},
        "se": {f"{e}_{k}": np.round(v[1], 4).tolist() for (e, k), v in result.items()},
        "cpu_s": round(time.process_time() - start, 1),
        "note": "snr, se: (images, 4) per estimator_k, the columns mu_1, mu_2, log sigma^2_1, "
        "log sigma^2_2; rounded to 4 decimals (the summary from the unrounded values)",
    }


def measure_weights(vae, model_seed, draw_seed, ks, draws):
    start = time.process_time()
    num_boot = 200
    result, n_weights, n_units = iwae_runs.trained_weight_snr(
        vae, chapter_images(), seed=draw_seed, ks=ks, num_boot=num_boot, draws=draws
    )
    return {
        "model_seed": model_seed,
        "draw_seed": draw_seed,
        "settings": settings(
            ks, encoder_weights=n_weights, encoder_units=n_units, bootstrap_resamples=num_boot
        ),
        "snr": result,
        "cpu_s": round(time.process_time() - start, 1),
        "note": "snr: per estimator_k, [median, bootstrap se] of the SNR with respect to the "
        "encoder's weights (iwae_runs.trained_weight_snr): per_weight (median over the images of "
        "each one's median over the weights it reaches), per_unit and layer_<l> (the same over "
        "the units' biases: per image every weight into a unit has the unit's SNR), batch (the "
        "six images' summed gradient); dreg_over_iwae_<k>: DReG's summary over IWAE's, with a "
        "paired bootstrap se",
    }


def measure_moments(vae, model_seed, draw_seed, ks, draws):
    start = time.process_time()
    num_boot = 200
    moments = {
        f"{est}_{k}": iwae_runs.gradient_moments(draws[est, k], num_boot=num_boot)
        for est in iwae.ESTIMATORS
        for k in ks
    }
    return {
        "model_seed": model_seed,
        "draw_seed": draw_seed,
        "settings": settings(ks, bootstrap_resamples=num_boot),
        "moments": moments,
        "cpu_s": round(time.process_time() - start, 1),
        "note": "moments: per estimator_k and kind (mu, log_var), [median, bootstrap se] over "
        "the images and the kind's components of |mean| (abs_mean) and of the sd (sd) of the "
        "gradient draws at the encoder's output (iwae_runs.gradient_moments); the draws of the "
        "snr_model files (seed 1000 D + k)",
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--draws", type=int, nargs="+", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("measurements/trained_snr"))
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--weights", action="store_true", help="the SNR with respect to the encoder's weights"
    )
    what.add_argument(
        "--moments",
        action="store_true",
        help="the mean and the sd of the output draws apart (gradient_moments)",
    )
    what.add_argument(
        "--and-weights",
        action="store_true",
        help="both the output and the weight measurements, from draws taken once",
    )
    parser.add_argument(
        "--k",
        type=int,
        nargs="+",
        default=None,
        help=f"the k to measure, increasing (default {' '.join(map(str, iwae_runs.SNR_K))})",
    )
    args = parser.parse_args(argv)
    ks = iwae_runs.SNR_K if args.k is None else tuple(args.k)
    if len(ks) < 2 or list(ks) != sorted(set(ks)) or not 1 <= ks[0] <= ks[-1] <= 1000:
        parser.error(
            f"--k: expected at least two increasing k from 1 to 1000 (the summaries compare each "
            f"k with the one before; a k's draws have seed 1000 * D + k, so a k above 1000 would "
            f"reuse another draw seed's), got {list(ks)}"
        )
    tag = "" if ks == iwae_runs.SNR_K else "_k" + "_".join(map(str, ks))
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.and_weights:
        kinds = ["outputs", "weights"]
    else:
        kinds = ["weights" if args.weights else "moments" if args.moments else "outputs"]
    measures = {"outputs": measure, "weights": measure_weights, "moments": measure_moments}
    names = {"outputs": "snr", "weights": "snr_weights", "moments": "snr_moments"}
    for s in args.models:
        vae, _ = course_models.get_burda(2, seed=s)
        for d in [s] if args.draws is None else args.draws:
            start = time.process_time()
            draws = iwae_runs.snr_draws(vae, chapter_images(), seed=d, ks=ks)
            draw_s = time.process_time() - start
            for i, kind in enumerate(kinds):
                record = measures[kind](vae, s, d, ks, draws)
                path = args.out / f"{names[kind]}_model{s}_draws{d}{tag}.json"
                if i == 0:  # the first file's time counts the draws, which the others share
                    record["cpu_s"] = round(record["cpu_s"] + draw_s, 1)
                else:
                    record["cpu_s_note"] = "the draws were taken (and timed) by the output run"
                path.write_text(json.dumps(record, indent=1) + "\n")
                shown = record.get("summary", record.get("snr", record.get("moments")))
                print(path, json.dumps(shown), record["cpu_s"])


if __name__ == "__main__":
    main()
