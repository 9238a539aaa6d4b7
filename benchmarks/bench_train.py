"""Training speed of vae_course against plain PyTorch loops of the same model, in alternated rounds.

    python benchmarks/bench_train.py [--rounds 8] [--steps 300] [--iwae-images 200] [--profile]
    python benchmarks/bench_train.py --pool run1.log run2.log ...   # pool saved runs' rounds

Every side trains the source tutorial's MNIST VAE (784-512-512-2x2 encoder,
2-512-512-784 sigmoid decoder, Gaussian likelihood with sigma = 0.5, analytic
KL, Adam with learning rate 1e-3, batch 64) for one epoch of ``--steps``
steps over the first ``64 * steps`` training images, shuffled each epoch:

* ``train_vae``: ``vae_course.train.train_vae``, what chapters 6-8 run;
* ``command line``: the same with the command line's callbacks
  (``training_callbacks``: NaN check after every batch, progress line, epoch
  timer, CSV history and a checkpoint written at the end of the epoch); the
  time spent writing the two files is also printed on its own, since it is
  paid once an epoch, not once a step;
* ``train_vae, fast path off``: ``train_vae(..., fast=False)``, Keras's own code;
* ``PyTorch, Adam``: a plain loop (``torch.randperm`` batches of one float
  tensor, ``zero_grad``, ``backward``, ``step``, ``loss.item()`` for a running
  mean) with ``torch.optim.Adam``, PyTorch's default implementation;
* ``PyTorch, Adam(fused=True)``: the same loop with the fused kernel.

The machine's speed wanders (other processes, CPU frequency), so only
paired numbers are read: round after round, every side runs one epoch, in
forward order in even rounds and in reverse order in odd ones, and each
round gives each side's ratio to the two plain loops. Round 0 warms up
and is not counted. Prints milliseconds per step of each round, the
median of each side, and the median and every round's paired ratio, then
each side's median ratio to the fused loop with a 95% interval and the count
of rounds at or below 1. ``--pool`` reads the round lines of saved runs'
output and prints the same summary over all their rounds, without training.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import torch
from torch import nn

import vae_course
from vae_course.data import load_mnist_float
from vae_course.models import build_vae
from vae_course.tools.callbacks import training_callbacks
from vae_course.train import train_vae

BATCH = 64


class Reference(nn.Module):
    """The same VAE written directly in PyTorch."""

    def __init__(self, latent_dim=2, hidden=512):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 784),
            nn.Sigmoid(),
        )

    def losses(self, x):
        mu, log_var = self.encoder(x).chunk(2, dim=-1)
        kl = 0.5 * (mu.square() + log_var.exp() - 1 - log_var).sum(-1)
        z = mu + (0.5 * log_var).exp() * torch.randn_like(mu)
        x_mean = self.decoder(z)
        nll = (
            0.5 * ((x.flatten(1) - x_mean) / 0.5).square()
            + math.log(0.5)
            + 0.5 * math.log(2 * math.pi)
        ).sum(-1)
        return nll + kl


def reference_epoch(model, opt, x_train):
    """One epoch of the plain loop; returns the epoch's mean loss."""
    model.train()
    perm = torch.randperm(len(x_train))
    total = 0.0
    for i in range(0, len(x_train), BATCH):
        x = x_train[perm[i : i + BATCH]]
        opt.zero_grad()
        loss = model.losses(x).mean()
        loss.backward()
        opt.step()
        total += loss.item() * len(x)
    return total / len(x_train)


def median_interval(ratios):
    """``(median, low, high)``: the median and a 95% interval for it from the order statistics.

    The interval is the k-th smallest and k-th largest value, with k the
    largest count for which a Binomial(n, 1/2) falls below k with probability
    at most 0.025 (distribution-free, for independent rounds; rounds of one
    run share the machine's phase, so read it as optimistic). Needs at least
    6 values (fewer cannot give 95%).
    """
    v = sorted(ratios)
    n = len(v)
    if n < 6:
        raise ValueError(f"median_interval needs at least 6 ratios for a 95% interval, got {n}")
    k = 0  # the count of values left out below (and above) the interval
    while sum(math.comb(n, j) for j in range(k + 1)) / 2**n <= 0.025:
        k += 1
    return statistics.median(v), v[k - 1], v[n - k]


FUSED = "PyTorch, Adam(fused=True)"


def summary_lines(rounds):
    """One line per side: its median ratio to the fused loop, paired by round, with
    :func:`median_interval`'s interval and the count of rounds at or below 1.

    ``rounds``: one dict per counted round, side name -> milliseconds per step,
    with the fused loop in each; a round may also hold ``"writes"``, the command
    line's file writing in ms per step, which adds a line for the command line
    less its writes. A side is summed up over the rounds that have it.
    """
    sides = {}
    for r in rounds:
        for name, value in r.items():
            if name not in (FUSED, "writes"):
                sides.setdefault(name, []).append(value / r[FUSED])
            if name == "command line" and "writes" in r:
                sides.setdefault("command line, less its writes", []).append(
                    (value - r["writes"]) / r[FUSED]
                )
    lines = []
    for name, q in sides.items():
        if len(q) >= 6:
            med, lo, hi = median_interval(q)
            spread = f"95% interval {lo:.2f} to {hi:.2f}"
        else:
            med, spread = statistics.median(q), "no 95% interval from fewer than 6 rounds"
        lines.append(
            f"{name} / fused loop: median {med:.2f} ({spread}), "
            f"{sum(r <= 1 for r in q)} of {len(q)} rounds at or below 1"
        )
    return lines


_ROUND = re.compile(r"^round (\d+): (.*) ms/step")
_SIDE = re.compile(r"(?:^|, )(.+?) (\d+(?:\.\d+)?)(?=, |$)")
_WRITES = re.compile(r"([\d.]+) ms per step at \d+ steps an epoch")


def pool(paths):
    """The summary lines over every counted round of the saved runs in ``paths``.

    It reads the printed milliseconds (two decimals) and, for the command line's
    writes, each run's printed median in every round of that run, so its figures
    can differ in the last digit from the summary the run printed itself.
    """
    seen, rounds = {}, []
    for path in paths:
        key = os.path.realpath(path)
        if key in seen:
            raise ValueError(f"{path}: given twice (as {seen[key]}); each run may count once")
        seen[key] = path
        with open(path) as f:
            text = f.read()
        found = [m for m in map(_ROUND.match, text.splitlines()) if m and m.group(1) != "0"]
        if not found:
            raise ValueError(
                f"{path}: no counted 'round N: ...' lines; is it bench_train.py's output?"
            )
        w = _WRITES.search(text)
        for m in found:
            r = {name: float(value) for name, value in _SIDE.findall(m.group(2))}
            if FUSED not in r:
                raise ValueError(f"{path}: round {m.group(1)} has no {FUSED!r} side to pair with")
            if w and "command line" in r:
                r["writes"] = float(w.group(1))
            rounds.append(r)
    return summary_lines(rounds)


class Clock(keras.callbacks.Callback):
    """Notes the time of its ``on_epoch_end`` call (two of them bracket the callbacks between)."""

    def on_epoch_end(self, epoch, logs=None):
        self.t = time.perf_counter()


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--rounds", type=int, default=8, help="counted rounds (one epoch per side each)"
    )
    ap.add_argument("--steps", type=int, default=300, help="steps per epoch (64 images each)")
    ap.add_argument(
        "--no-command-line", action="store_true", help="leave out the command line's callbacks"
    )
    ap.add_argument(
        "--no-keras", action="store_true", help="leave out train_vae with the fast path off"
    )
    ap.add_argument(
        "--iwae-images", type=int, default=0, help="test images for the IWAE throughput at k = 1000"
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="cProfile one train_vae epoch and print the top entries",
    )
    ap.add_argument(
        "--pool",
        nargs="+",
        metavar="LOG",
        help="saved outputs of this script to pool (no training)",
    )
    args = ap.parse_args(argv)
    if args.pool:
        print("\n".join(pool(args.pool)))
        return 0

    (x_all, _), (x_test_all, _) = load_mnist_float()
    x_train = x_all[: args.steps * BATCH]
    xt = torch.from_numpy(x_train)
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, keras {keras.__version__}, "
        f"vae_course {vae_course.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; "
        f"{args.steps} steps of batch {BATCH} per epoch",
        flush=True,
    )

    def package(fast=True):
        keras.utils.set_random_seed(0)
        vae = build_vae()
        return lambda: train_vae(
            vae, x_train, epochs=1, batch_size=BATCH, seed=None, verbose=0, fast=fast
        )

    writes = []  # seconds the command line spends writing history.csv and model.keras after each epoch

    def command_line():
        keras.utils.set_random_seed(0)
        vae = build_vae()
        out = tempfile.mkdtemp(prefix="bench_train_")

        def epoch():
            cbs, _ = training_callbacks(out, stream=io.StringIO())
            start, end = Clock(), Clock()
            first_writer = next(
                i for i, cb in enumerate(cbs) if type(cb).__name__ == "AtomicCSVLogger"
            )
            cbs = [*cbs[:first_writer], start, *cbs[first_writer:], end]
            with contextlib.redirect_stdout(
                io.StringIO()
            ):  # the command line's epoch line, not wanted here
                train_vae(
                    vae, x_train, epochs=1, batch_size=BATCH, seed=None, verbose=2, callbacks=cbs
                )
            writes.append(end.t - start.t)

        return epoch

    def plain(fused):
        torch.manual_seed(0)
        ref = Reference()
        opt = torch.optim.Adam(ref.parameters(), lr=1e-3, fused=fused or None)
        return lambda: reference_epoch(ref, opt, xt)

    sides = {"train_vae": package()}
    if not args.no_command_line:
        sides["command line"] = command_line()
    if not args.no_keras:
        sides["train_vae, fast path off"] = package(fast=False)
    sides["PyTorch, Adam"] = plain(False)
    sides["PyTorch, Adam(fused=True)"] = plain(True)
    plains = ["PyTorch, Adam", "PyTorch, Adam(fused=True)"]

    ms = {name: [] for name in sides}
    for r in range(args.rounds + 1):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        this = {}
        for name in order:
            t = time.perf_counter()
            sides[name]()
            this[name] = (time.perf_counter() - t) / args.steps * 1e3
        if r == 0:
            print(
                "round 0 (warm-up): " + ", ".join(f"{n} {this[n]:.2f}" for n in sides), flush=True
            )
            continue
        for name in sides:
            ms[name].append(this[name])
        print(
            f"round {r}: "
            + ", ".join(f"{n} {this[n]:.2f}" for n in sides)
            + " ms/step; train_vae / fused "
            + f"{this['train_vae'] / this[plains[1]]:.2f}",
            flush=True,
        )

    print()
    print(
        f"| ms per step, {args.rounds} rounds | median | ratio to Adam: median (rounds) | ratio to fused Adam: median (rounds) |"
    )
    print("|---|---|---|---|")
    for name in sides:
        cells = [f"{statistics.median(ms[name]):.2f}"]
        for ref in plains:
            q = [a / b for a, b in zip(ms[name], ms[ref])]
            cells.append(f"{statistics.median(q):.2f} ({', '.join(f'{v:.2f}' for v in q)})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if writes:
        w = statistics.median(writes[1:])
        print(
            f"command line: writing history.csv and model.keras takes {w:.2f} s per epoch (median), "
            f"{w / args.steps * 1e3:.2f} ms per step at {args.steps} steps an epoch, "
            f"{w / 938 * 1e3:.2f} ms per step over a full MNIST epoch (938 steps)"
        )
    print()
    rounds = [{name: ms[name][i] for name in sides} for i in range(args.rounds)]
    if writes:
        w = statistics.median(writes[1:]) / args.steps * 1e3
        rounds = [{**r, "writes": w} for r in rounds]
    print("\n".join(summary_lines(rounds)))
    spread = [max(v) / min(v) for v in ms.values()]
    print(
        f"slowest / fastest round of the same side: up to {max(spread):.2f}x (the machine's noise)"
    )

    if args.iwae_images:
        from vae_course.evaluate import iwae_bound

        x_test = x_test_all[: args.iwae_images]
        vae = build_vae()  # untrained: the time per image does not depend on the weights
        t = time.perf_counter()
        iwae_bound(vae, x_test, 1000)
        dt = time.perf_counter() - t
        print(
            f"IWAE bound, k = 1000: {len(x_test) / dt:.1f} images/s ({len(x_test)} images in {dt:.1f} s)"
        )

    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        sides["train_vae"]()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
