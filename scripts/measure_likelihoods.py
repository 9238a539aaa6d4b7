"""Measure every number chapter 10 asserts, for several seeds of the chapter's recipe.

Trains (or loads from the model cache) chapter 10's models for each seed
(``vae_course.tools.chapter10``: 200-200 tanh networks, 50 latents, 2 epochs on 10,000
images, batch 128) and writes ``<out>/seed<S>.json`` with the output of
``chapter10.measure``. The chapter runs seed 0 itself and takes its tolerances from these
files:

    python scripts/measure_likelihoods.py --seeds 0 1 2 --threads 2 --out measurements/likelihoods

``--rescore-only`` loads the cached models and writes ``rescore.json`` (chapter10.rescore:
the discretized-Gaussian re-scoring, the latent-free baselines, the codes' rate, the paired
-ELBO differences and the I_q estimate against N), with no training.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import torch

from vae_course.tools import chapter10


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("measurements/likelihoods"))
    parser.add_argument(
        "--spread-only",
        action="store_true",
        help="only chapter10.decoder_spread of the cached models, to <out>/decoder_spread.json",
    )
    parser.add_argument(
        "--rescore-only",
        action="store_true",
        help="only chapter10.rescore of the cached models (no training), to <out>/rescore.json",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.rescore_only:
        rescored = {}
        for seed in args.seeds:
            start = time.time()
            rescored[str(seed)] = chapter10.rescore(seed)
            rescored[str(seed)]["wall_s"] = round(time.time() - start, 1)
            print(f"seed {seed}: {rescored[str(seed)]['wall_s']} s", flush=True)
        (args.out / "rescore.json").write_text(json.dumps(rescored, indent=1) + "\n")
        return
    if args.spread_only:
        kinds = ("gaussian_shared", "continuous_bernoulli", "logistic_per_pixel")
        spread = {
            str(seed): {
                kind: chapter10.decoder_spread(chapter10.get_model(kind, seed)[0], kind, seed)
                for kind in kinds
            }
            for seed in args.seeds
        }
        (args.out / "decoder_spread.json").write_text(json.dumps(spread, indent=1) + "\n")
        print(spread)
        return
    for seed in args.seeds:
        start = time.time()
        result = chapter10.measure(seed)
        result["wall_s"] = round(time.time() - start, 1)
        (args.out / f"seed{seed}.json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"seed {seed}: {result['wall_s']} s", flush=True)


if __name__ == "__main__":
    main()
