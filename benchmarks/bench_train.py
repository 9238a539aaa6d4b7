"""Training speed of vae_course against plain PyTorch loops of the same model, in alternated rounds.

    python benchmarks/bench_train.py [--rounds 8] [--steps 300] [--iwae-images 200] [--profile]

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
median of each side, and the median and every round's paired ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import platform
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

    def __init__(self, latent_dim=2):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 512),
            nn.ReLU(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 512),
            nn.ReLU(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Linear(512, 784),
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
    args = ap.parse_args(argv)

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
            + f"{this['train_vae'] / this[plains[1]]:.3f}",
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
            cells.append(f"{statistics.median(q):.3f} ({', '.join(f'{v:.2f}' for v in q)})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if writes:
        w = statistics.median(writes[1:])
        print(
            f"command line: writing history.csv and model.keras takes {w:.2f} s per epoch (median), "
            f"{w / args.steps * 1e3:.2f} ms per step at {args.steps} steps an epoch, "
            f"{w / 938 * 1e3:.2f} ms per step over a full MNIST epoch (938 steps)"
        )
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
