"""Where a training step's milliseconds go, in ``train_vae`` and in the fused plain PyTorch loop.

    python benchmarks/profile_step.py [--rounds 8] [--steps 100]

The model and the two sides are ``bench_train.py``'s (``train_vae`` and the
plain loop with ``torch.optim.Adam(fused=True)``, batch 64, MNIST). Four
measurements, each in alternated rounds (forward order in even rounds,
reverse in odd ones, after one warm-up round):

1. ``torch.profiler`` over one epoch of ``--steps`` steps of each side (half
   as many rounds as ``--rounds``, at least 3): per step, the matrix products
   (self time of ``aten::mm`` and ``aten::addmm``), the fused Adam kernel
   (``aten::_fused_adam_``), the plain loop's ``Optimizer.step`` span (its own
   code, self time) and the rest of the wall time (element-wise operations, the
   autograd engine, Python); medians over the rounds. The profiler adds a cost
   to every operation it records, most to the spans that are mostly Python, so
   these are shares, not timings of the unprofiled step.
2. The tensor operations one step dispatches, forward and backward, counted
   with a ``TorchDispatchMode`` over a 30-step epoch (``train_vae``'s
   epoch-level operations, such as the shuffle, are spread over its steps).
3. The matrix products each side's step dispatched in 2 (``aten::mm`` and
   ``aten::addmm``, with their operands' shapes and strides: Keras's
   ``(in, out)`` kernels against PyTorch's ``(out, in)`` weights, and whatever
   layout autograd chose for each gradient), replayed alone on random
   tensors of the same shapes and strides, 100 steps' worth per round; paired
   ratio.
4. The whole step on a model with 8 hidden units instead of 512, where the
   arithmetic is small and the per-step overhead (Python, dispatch, autograd,
   small kernels) is most of the time: one epoch of 300 steps per side and
   round; paired ratio.

Ratios are ``train_vae`` over the plain loop, with ``bench_train``'s
:func:`median_interval` (a 95% interval of the median from the order
statistics; optimistic, since the rounds share the machine's phases).
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import torch
from bench_train import BATCH, Reference, median_interval, reference_epoch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from vae_course.data import load_mnist_float
from vae_course.models import build_vae
from vae_course.train import train_vae

MATMULS = ("aten::mm", "aten::addmm")


def sides(x, hidden=512):
    """``{"train_vae": epoch, "plain loop": epoch}``: each call trains one epoch over ``x``."""
    keras.utils.set_random_seed(0)
    vae = build_vae(hidden_units=(hidden, hidden))
    torch.manual_seed(0)
    ref = Reference(hidden=hidden)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3, fused=True)
    xt = torch.from_numpy(x)
    return {
        "train_vae": lambda: train_vae(vae, x, epochs=1, batch_size=BATCH, seed=None, verbose=0),
        "plain loop": lambda: reference_epoch(ref, opt, xt),
    }


def alternated(fns, rounds):
    """Run each of ``fns`` once per round, in alternated order; ``{name: [seconds, ...]}``."""
    for fn in fns.values():  # warm-up round
        fn()
    out = {name: [] for name in fns}
    for r in range(rounds):
        for name in list(fns) if r % 2 == 0 else list(reversed(fns)):
            t = time.perf_counter()
            fns[name]()
            out[name].append(time.perf_counter() - t)
    return out


def ratio_line(what, times):
    a, b = times["train_vae"], times["plain loop"]
    q = [x / y for x, y in zip(a, b)]
    med, lo, hi = median_interval(q)
    return (
        f"{what}: train_vae {statistics.median(a) * 1e3:.2f} ms, plain loop "
        f"{statistics.median(b) * 1e3:.2f} ms (medians); paired ratio {med:.2f} "
        f"(95% interval {lo:.2f} to {hi:.2f}, {len(q)} rounds)"
    )


def profiled_shares(fns, steps, rounds):
    """Measurement 1: per-step milliseconds by kind, medians over alternated profiled epochs."""
    for fn in fns.values():
        fn()
    rows = {name: collections.defaultdict(list) for name in fns}
    for r in range(rounds):
        for name in list(fns) if r % 2 == 0 else list(reversed(fns)):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                t = time.perf_counter()
                fns[name]()
                wall = (time.perf_counter() - t) * 1e3 / steps
            self_us = collections.Counter()
            for e in prof.key_averages():
                self_us[e.key] += e.self_cpu_time_total
            per = {k: self_us[k] / steps / 1e3 for k in self_us}
            parts = {
                "matrix products": sum(per.get(k, 0.0) for k in MATMULS),
                "fused Adam kernel": per.get("aten::_fused_adam_", 0.0),
                "Optimizer.step's own code": sum(
                    v for k, v in per.items() if k.startswith("Optimizer.step#")
                ),
            }
            parts["the rest"] = wall - sum(parts.values())
            parts["wall, profiled"] = wall
            for k, v in parts.items():
                rows[name][k].append(v)
    return rows


class Recorder(TorchDispatchMode):
    """Counts every dispatched operation and records the matrix products' operands."""

    def __init__(self):
        super().__init__()
        self.count = collections.Counter()
        self.matmuls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.count[str(func)] += 1
        if str(func) in ("aten.mm.default", "aten.addmm.default"):
            spec = [
                ("t", tuple(a.shape), tuple(a.stride())) if torch.is_tensor(a) else ("v", a)
                for a in args
            ]
            self.matmuls.append((func, spec, dict(kwargs)))
        return func(*args, **kwargs)


def replayer(calls):
    """A function that runs the recorded matrix products once, on fresh random operands."""
    gen = torch.Generator().manual_seed(0)
    ready = []
    for func, spec, kwargs in calls:
        args = []
        for s in spec:
            if s[0] == "t":
                base = torch.empty_strided(s[1], s[2])
                base.copy_(torch.randn(s[1], generator=gen))
                args.append(base)
            else:
                args.append(s[1])
        ready.append((func, args, kwargs))

    def run():
        for func, args, kwargs in ready:
            func(*args, **kwargs)

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=8, help="counted rounds (at least 6)")
    ap.add_argument("--steps", type=int, default=100, help="steps in a profiled epoch")
    args = ap.parse_args(argv)
    if args.rounds < 6:
        ap.error(f"--rounds {args.rounds}: give at least 6 (a 95% interval needs 6 rounds)")

    (x_all, _), _ = load_mnist_float()
    print(
        f"torch {torch.__version__}, keras {keras.__version__}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}; batch {BATCH}",
        flush=True,
    )

    # 1. profiler shares
    fns = sides(x_all[: args.steps * BATCH])
    rows = profiled_shares(fns, args.steps, max(3, args.rounds // 2))
    print(f"\n1. torch.profiler, ms per step (medians of {max(3, args.rounds // 2)} epochs each):")
    for kind in rows["train_vae"]:
        cells = ", ".join(f"{name} {statistics.median(rows[name][kind]):.2f}" for name in rows)
        print(f"   {kind}: {cells}")

    # 2. dispatched operations, and the matrix products they include
    fns = sides(x_all[: 30 * BATCH])
    recorded = {}
    for name, fn in fns.items():
        fn()
        with Recorder() as rec:
            fn()
        recorded[name] = rec
        ops = sum(rec.count.values()) / 30
        mm = sum(rec.count[k] for k in ("aten.mm.default", "aten.addmm.default")) / 30
        print(
            f"\n2. {name}: {ops:.0f} dispatched operations a step, {mm:.0f} of them matrix products"
            if name == "train_vae"
            else f"   {name}: {ops:.0f} dispatched operations a step, {mm:.0f} of them matrix products"
        )
    for name, rec in recorded.items():
        top = ", ".join(f"{k.split('.')[1]} {v / 30:.0f}" for k, v in rec.count.most_common(12))
        print(f"   {name}, most frequent: {top}")

    # 3. the matrix products alone, as each step dispatched them (one step's worth: the last 1/30)
    replays = {}
    for name, rec in recorded.items():
        per_step = len(rec.matmuls) // 30
        one = replayer(rec.matmuls[-per_step:])
        replays[name] = lambda one=one: [one() for _ in range(100)]
    times = alternated(replays, args.rounds)
    times = {k: [t / 100 for t in v] for k, v in times.items()}
    print("\n3. " + ratio_line("matrix products alone, per step", times))

    # 4. the 8-unit model
    times = alternated(sides(x_all[: 300 * BATCH], hidden=8), args.rounds)
    times = {k: [t / 300 for t in v] for k, v in times.items()}
    print("\n4. " + ratio_line("8 hidden units, per step", times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
