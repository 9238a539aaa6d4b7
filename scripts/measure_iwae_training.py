"""Measure every number chapter 9's importance-weighted training section asserts, for several seeds.

Trains (or loads from the model cache) the chapter's three models for each seed
(``vae_course.tools.iwae_runs``: Burda et al.'s 200-200 tanh networks, 50 latents, k_train = 1,
5 and 50, 2 epochs on 10,000 dynamically binarized images, batch 128) and writes
``<out>/seed<S>.json`` with ``iwae_runs.summary`` of their measurements (L_1000 and the ELBO on
200 test images, paired differences against k_train = 1, the total gap, active units) and the
CPU seconds of each training run. The chapter runs seed 0 itself and takes its tolerances from
these files:

    nice -n 10 python scripts/measure_iwae_training.py --seeds 0 1 2 --threads 2 \
        --out measurements/iwae_training
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import torch

from vae_course.tools import iwae_runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("measurements/iwae_training"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        models = iwae_runs.timed_models(seed)
        start = time.process_time()
        results = {k: iwae_runs.measure(m) for k, (m, _) in models.items()}
        row = {str(k): v for k, v in iwae_runs.summary(results).items()}
        for k, (_, cpu) in models.items():
            row[str(k)]["train_cpu_s"] = round(cpu, 1)
        record = {
            "seed": seed,
            "settings": {
                "n_train": iwae_runs.N_TRAIN,
                "epochs": iwae_runs.EPOCHS,
                "batch": iwae_runs.BATCH,
                "k_train": list(iwae_runs.K_TRAIN),
                "k_eval": iwae_runs.K_EVAL,
                "n_eval": iwae_runs.N_EVAL,
                "n_active": iwae_runs.N_ACTIVE,
            },
            "models": row,
            "measure_cpu_s": round(time.process_time() - start, 1),
        }
        (args.out / f"seed{seed}.json").write_text(json.dumps(record, indent=1) + "\n")
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
