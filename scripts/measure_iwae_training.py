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

With ``--control`` it trains instead the control of the same seed (``iwae_runs.get_kvae``: VAEs
on the k-draw ELBO at k = 5 and 50, same seed, schedule, data order and initial weights) and
writes ``<out>/control_seed<S>.json``: their summary against the k_train = 1 model (which is the
one-draw VAE) and the paired differences IWAE minus k-draw VAE at equal k.

With ``--estimator dreg`` it trains the k_train = 5 and 50 models of the same seed with DReG's
encoder gradient (``iwae_runs.get_iwae(k, seed, estimator="dreg")``: same schedule, data order
and initial weights) and writes ``<out>/dreg_seed<S>.json``: their summary (against the seed's
IWAE k_train = 1 model) and the paired differences DReG minus IWAE at the same k (L_1000, the
ELBO, on the same 200 images and the same draws) and the difference in active units.

With ``--flow`` it trains the models of the same seed with an amortized flow
(``iwae_runs.get_iwae(k, seed, flow_steps=iwae_runs.FLOW_STEPS)``: same schedule, data order and
encoder and decoder initial weights) at k_train = 1 and 50 and writes ``<out>/flow_seed<S>.json``:
``iwae_runs.flow_comparison`` against the same seed's model without the flow, and at k_train = 1
the same for the control (a Gaussian encoder with ``iwae_runs.WIDE_ENCODER`` hidden units, about
as many weights as the encoder and the flow together). With ``--flow
--epochs E --n-train N`` it does so at k_train = 1 on a longer schedule (E epochs of the first N
training images) and writes ``<out>/flow_e<E>_n<N>_seed<S>.json``.

With ``--equal-compute`` it trains the one-draw model (k_train = 1) of the same seed for k times
the epochs, for k = 5 and 50 (``iwae_runs.get_iwae(1, seed, epochs=k * EPOCHS)``: the same
initial weights, its images binarized and shuffled afresh each epoch; as many decoder passes per
image as the IWAE's k, spread over k times the steps), and writes
``<out>/equal_compute_seed<S>.json``: their summary against the seed's k_train = 1 model and the
paired differences IWAE at k minus that model (L_1000 and the ELBO, same images and draws).

A model loaded from the cache has no training time to report: its ``train_cpu_s`` is carried
over from the file being replaced when that file has one (the run that trained it), else null.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import torch

from vae_course.montecarlo import paired_difference
from vae_course.tools import iwae_runs

CONTROL_K = (5, 50)
DREG_K = (5, 50)


def _settings():
    return {
        "n_train": iwae_runs.N_TRAIN,
        "epochs": iwae_runs.EPOCHS,
        "batch": iwae_runs.BATCH,
        "k_train": list(iwae_runs.K_TRAIN),
        "k_eval": iwae_runs.K_EVAL,
        "n_eval": iwae_runs.N_EVAL,
        "n_active": iwae_runs.N_ACTIVE,
    }


def _bound_and_elbo(a, b):
    """Paired differences a - b of two :func:`iwae_runs.measure` results: L_1000 and the ELBO."""
    return {key: [float(v) for v in paired_difference(a[key], b[key])] for key in ("bound", "elbo")}


def _cpu(models, path):
    """``{k: train CPU seconds}``: measured now, or carried over from ``path`` (see the docstring)."""
    old = json.loads(path.read_text())["models"] if path.exists() else {}
    out = {}
    for k, (_, cpu) in models.items():
        out[k] = round(cpu, 1) if cpu is not None else old.get(str(k), {}).get("train_cpu_s")
    return out


def measure_seed(seed, out):
    path = out / f"seed{seed}.json"
    models = iwae_runs.timed_models(seed)
    cpu = _cpu(models, path)
    start = time.process_time()
    results = {k: iwae_runs.measure(m) for k, (m, _) in models.items()}
    row = {str(k): v for k, v in iwae_runs.summary(results).items()}
    for k in models:
        row[str(k)]["train_cpu_s"] = cpu[k]
    return path, {
        "seed": seed,
        "settings": _settings(),
        "models": row,
        "measure_cpu_s": round(time.process_time() - start, 1),
        "note": "train_cpu_s: CPU seconds of the run that trained the model (the first model of "
        "a process includes loading MNIST); the other numbers measured when the file was written",
    }


def measure_control(seed, out):
    path = out / f"control_seed{seed}.json"
    iwaes = iwae_runs.timed_models(seed)
    kvaes = iwae_runs.timed_models(seed, get=iwae_runs.get_kvae, ks=CONTROL_K)
    cpu = _cpu(kvaes, path)
    start = time.process_time()
    iw = {k: iwae_runs.measure(m) for k, (m, _) in iwaes.items()}
    kv = {1: iw[1], **{k: iwae_runs.measure(m) for k, (m, _) in kvaes.items()}}
    row = {str(k): v for k, v in iwae_runs.summary(kv).items()}
    for k in CONTROL_K:
        row[str(k)]["train_cpu_s"] = cpu[k]
        row[str(k)]["iwae_minus_vae"] = _bound_and_elbo(iw[k], kv[k])
    return path, {
        "seed": seed,
        "settings": {**_settings(), "control_k": list(CONTROL_K)},
        "models": row,
        "measure_cpu_s": round(time.process_time() - start, 1),
        "note": "models: VAEs trained on the k-draw ELBO (k = 1 is the k_train = 1 model of "
        "seed<S>.json); iwae_minus_vae: paired differences, IWAE minus VAE at the same k; "
        "train_cpu_s: CPU seconds of the run that trained the model",
    }


def measure_equal_compute(seed, out):
    path = out / f"equal_compute_seed{seed}.json"
    iwaes = iwae_runs.timed_models(seed)
    longer = iwae_runs.timed_models(
        seed, get=lambda k, s: iwae_runs.get_iwae(1, s, epochs=k * iwae_runs.EPOCHS), ks=CONTROL_K
    )
    cpu = _cpu(longer, path)
    start = time.process_time()
    iw = {k: iwae_runs.measure(m) for k, (m, _) in iwaes.items()}
    long = {1: iw[1], **{k: iwae_runs.measure(m) for k, (m, _) in longer.items()}}
    row = {str(k): v for k, v in iwae_runs.summary(long).items()}
    for k in CONTROL_K:
        row[str(k)]["train_cpu_s"] = cpu[k]
        row[str(k)]["epochs"] = k * iwae_runs.EPOCHS
        row[str(k)]["iwae_minus_longer"] = _bound_and_elbo(iw[k], long[k])
    k_max = max(CONTROL_K)  # the IWAE with the most draws against each longer run
    for k in CONTROL_K:
        row[str(k)][f"iwae{k_max}_minus_longer"] = _bound_and_elbo(iw[k_max], long[k])
    return path, {
        "seed": seed,
        "settings": {**_settings(), "longer_k": list(CONTROL_K)},
        "models": row,
        "measure_cpu_s": round(time.process_time() - start, 1),
        "note": "models: the k_train = 1 model trained for k times the epochs (k = 1 is the "
        "k_train = 1 model of seed<S>.json); iwae_minus_longer: paired differences, the IWAE at "
        "k minus that model; iwae50_minus_longer: the IWAE at k = 50 minus that model; "
        "train_cpu_s: CPU seconds of the run that trained the model",
    }


def measure_dreg(seed, out):
    path = out / f"dreg_seed{seed}.json"
    iwaes = iwae_runs.timed_models(seed)
    dregs = iwae_runs.timed_models(
        seed, get=lambda k, s: iwae_runs.get_iwae(k, s, estimator="dreg"), ks=DREG_K
    )
    cpu = _cpu(dregs, path)
    start = time.process_time()
    iw = {k: iwae_runs.measure(m) for k, (m, _) in iwaes.items()}
    dr = {1: iw[1], **{k: iwae_runs.measure(m) for k, (m, _) in dregs.items()}}
    row = {str(k): v for k, v in iwae_runs.summary(dr).items()}
    for k in DREG_K:
        row[str(k)]["train_cpu_s"] = cpu[k]
        row[str(k)]["dreg_minus_iwae"] = _bound_and_elbo(dr[k], iw[k])
        row[str(k)]["iwae_active"] = {
            str(t): int((iw[k]["activity"] > t).sum()) for t in iwae_runs.THRESHOLDS
        }
    return path, {
        "seed": seed,
        "settings": {**_settings(), "dreg_k": list(DREG_K)},
        "models": row,
        "measure_cpu_s": round(time.process_time() - start, 1),
        "note": "models: IWAEs trained with DReG's encoder gradient (k = 1 is the IWAE k_train = 1 "
        "model of seed<S>.json, for which the two estimators differ only by the score term's "
        "mean-zero noise and which is not retrained); dreg_minus_iwae: paired differences, DReG "
        "minus IWAE at the same k, the same images and draws; iwae_active: the IWAE's active "
        "units at the same k; train_cpu_s: CPU seconds of the run that trained the model",
    }


FLOW_K = (1, 50)


def measure_flow(seed, out, epochs=None, n_train=None):
    long = epochs is not None or n_train is not None
    epochs = iwae_runs.EPOCHS if epochs is None else epochs
    n_train = iwae_runs.N_TRAIN if n_train is None else n_train
    name = f"flow_e{epochs}_n{n_train}_seed{seed}.json" if long else f"flow_seed{seed}.json"
    path = out / name
    old = json.loads(path.read_text())["models"] if path.exists() else {}
    row = {}
    for k in (1,) if long else FLOW_K:
        cpu = {}
        models = {}
        for flow in (0, iwae_runs.FLOW_STEPS):
            start = time.process_time()
            models[flow], loaded = iwae_runs.get_iwae(
                k, seed, flow_steps=flow, epochs=epochs, n_train=n_train
            )
            old_cpu = old.get(str(k), {}).get("train_cpu_s", {}).get(str(flow))
            cpu[str(flow)] = old_cpu if loaded else round(time.process_time() - start, 1)
        if k == 1:  # the control: a Gaussian encoder with about as many weights as the flow's
            start = time.process_time()
            models["wide"], loaded = iwae_runs.get_iwae(
                k, seed, epochs=epochs, n_train=n_train, encoder_units=iwae_runs.WIDE_ENCODER
            )
            old_cpu = old.get(str(k), {}).get("train_cpu_s", {}).get("wide")
            cpu["wide"] = old_cpu if loaded else round(time.process_time() - start, 1)
        start = time.process_time()
        flowed = models[iwae_runs.FLOW_STEPS]
        if k == 1:
            fl, wide, flow_minus_wide = iwae_runs.flow_and_control(
                models[0], flowed, models["wide"]
            )
            row[str(k)] = {**fl, "wide": wide, "flow_minus_wide": flow_minus_wide}
        else:
            row[str(k)] = iwae_runs.flow_comparison(models[0], flowed)
        row[str(k)]["measure_cpu_s"] = round(time.process_time() - start, 1)
        row[str(k)]["train_cpu_s"] = cpu
        print(k, json.dumps(row[str(k)]), flush=True)
    return path, {
        "seed": seed,
        "settings": {
            **_settings(),
            "k_train": [1] if long else list(FLOW_K),
            "epochs": epochs,
            "n_train": n_train,
            "flow_steps": iwae_runs.FLOW_STEPS,
            "flow_hidden": iwae_runs.FLOW_HIDDEN,
        },
        "models": row,
        "note": "models[k]: iwae_runs.flow_comparison, the model with the amortized flow minus "
        "the same seed's model without it ([mean, se] paired over the images; flow and base: "
        "each model's own means); at k = 1 also 'wide': the same comparison for the control, a "
        f"Gaussian encoder of {list(iwae_runs.WIDE_ENCODER)} hidden units (about the weights of "
        "encoder and flow together; its own initial encoder weights and draws) against the "
        "model without the flow, and 'flow_minus_wide': the flow's model against the control; "
        "train_cpu_s: CPU seconds of the run that trained each model ('0': without the flow, "
        "'wide': the control), null when loaded from the cache and not carried over",
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("measurements/iwae_training"))
    parser.add_argument("--control", action="store_true", help="the k-draw VAE control")
    parser.add_argument(
        "--estimator", choices=("iwae", "dreg"), default="iwae", help="dreg: the DReG runs"
    )
    parser.add_argument("--flow", action="store_true", help="the amortized-flow runs")
    parser.add_argument(
        "--equal-compute", action="store_true", help="k_train = 1 with k times the epochs"
    )
    parser.add_argument("--epochs", type=int, default=None, help="with --flow: a longer schedule")
    parser.add_argument("--n-train", type=int, default=None, help="with --flow: training images")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        if args.flow:
            path, record = measure_flow(seed, args.out, args.epochs, args.n_train)
        elif args.control:
            path, record = measure_control(seed, args.out)
        elif args.equal_compute:
            path, record = measure_equal_compute(seed, args.out)
        elif args.estimator == "dreg":
            path, record = measure_dreg(seed, args.out)
        else:
            path, record = measure_seed(seed, args.out)
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
