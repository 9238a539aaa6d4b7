"""Summarize the seed-to-seed spread written by ``scripts/measure_spread.py``.

    python scripts/summarize_spread.py measurements/spread

For every number that all runs of a job share, prints the mean, the sample
standard deviation over seeds, the minimum and the maximum, and the values
seed by seed. Chapters 6-8 quote these spreads, and their asserts' tolerances
come from them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SKIP = {"job", "seed", "history", "activity", "zmean_mean", "zmean_std"}


def flatten(d, prefix=""):
    for key, value in d.items():
        name = f"{prefix}{key}"
        if key in SKIP or key == "s" or key.endswith("_s"):  # run times, not results
            continue
        if isinstance(value, dict):
            yield from flatten(value, name + ".")
        elif isinstance(value, (int, float)):
            yield name, float(value)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    a = ap.parse_args()
    runs = {}
    for path in sorted(Path(a.folder).glob("*_seed*.json")):
        res = json.loads(path.read_text())
        runs.setdefault(res["job"], {})[res["seed"]] = dict(flatten(res))
    for job, by_seed in runs.items():
        seeds = sorted(by_seed)
        names = [n for n in by_seed[seeds[0]] if all(n in by_seed[s] for s in seeds)]
        print(f"# {job}: seeds {seeds}")
        print(f"{'quantity':<40} {'mean':>9} {'sd':>7} {'min':>9} {'max':>9}   by seed")
        for n in names:
            v = np.array([by_seed[s][n] for s in seeds])
            sd = v.std(ddof=1) if len(v) > 1 else float("nan")
            print(
                f"{n:<40} {v.mean():>9.3f} {sd:>7.3f} {v.min():>9.3f} {v.max():>9.3f}   {' '.join(f'{x:.3f}' for x in v)}"
            )
        print()


if __name__ == "__main__":
    main()
