"""Where a training step's milliseconds go, in ``train_vae`` and in the fused plain PyTorch loop.

    python benchmarks/profile_step.py [--rounds 16] [--steps 100]

The model and the two sides are ``bench_train.py``'s (``train_vae`` and the
plain loop with ``torch.optim.Adam(fused=True)``, batch 64, MNIST). Four
measurements, each in alternated rounds (forward order in even rounds,
reverse in odd ones, after one warm-up round):

1. ``torch.profiler`` over one epoch of ``--steps`` steps of each side (half
   as many rounds as ``--rounds``): per step, the matrix products (self time
   of ``aten::mm`` and ``aten::addmm``), the fused Adam kernel
   (``aten::_fused_adam_``), the plain loop's ``Optimizer.step`` span (its own
   code, self time; ``train_vae``'s Python around its fused call is in the
   rest) and the rest of the wall time (element-wise operations, the autograd
   engine, Python); the median of each row over the rounds. The profiler adds
   a cost to every operation it records, so these are shares, not timings of
   the unprofiled step.
2. The tensor operations one step dispatches, forward and backward, counted
   with a ``TorchDispatchMode``: an epoch of 60 steps less one of 30, over 30,
   so that per-epoch work (the shuffle, the metrics' reset) drops out. The
   matrix products' shapes are compared: each side's multiset of (m, k, n).
3. Those matrix products (``aten::mm`` and ``aten::addmm``), replayed alone on
   random tensors with each side's recorded shapes, strides and dtype (Keras's
   ``(in, out)`` kernels against PyTorch's ``(out, in)`` weights, and whatever
   layout autograd chose for each gradient), each product 100 times per
   round; the per-step sum and each product's median.
4. Whole steps, unprofiled: one epoch of 300 steps of each side, on the
   512-unit model and on one with 8 hidden units instead (where the
   arithmetic is small and the per-step overhead, Python, dispatch, autograd
   and small kernels, is most of the time), all four in the same rounds.

Ratios are ``train_vae`` over the plain loop, paired by round, with
``bench_train``'s :func:`median_interval` (a 95% interval of the median from
the order statistics; optimistic, since the rounds share the machine's phases).
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import torch
from bench_train import BATCH, Reference, median_interval, reference_epoch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

import vae_course
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


def in_turns(names, rounds):
    """The order of ``rounds`` alternated rounds: ``names`` as given in even rounds, reversed in odd."""
    names = list(names)
    for r in range(rounds):
        yield from names if r % 2 == 0 else reversed(names)


def alternated(fns, rounds):
    """Run each of ``fns`` once per round, in alternated order; ``{name: [seconds, ...]}``."""
    for fn in fns.values():  # warm-up round
        fn()
    out = {name: [] for name in fns}
    for name in in_turns(fns, rounds):
        t = time.perf_counter()
        fns[name]()
        out[name].append(time.perf_counter() - t)
    return out


def ratio_line(what, times, a="train_vae", b="plain loop"):
    a, b = times[a], times[b]
    q = [x / y for x, y in zip(a, b)]
    med, lo, hi = median_interval(q)
    return (
        f"{what}: train_vae {statistics.median(a) * 1e3:.1f} ms, plain loop "
        f"{statistics.median(b) * 1e3:.1f} ms (unpaired medians); paired ratio {med:.2f} "
        f"(95% interval {lo:.2f} to {hi:.2f}, {len(q)} rounds)"
    )


def profiled_shares(fns, steps, rounds):
    """Measurement 1: per-step milliseconds by kind, medians over alternated profiled epochs."""
    for fn in fns.values():
        fn()
    rows = {name: collections.defaultdict(list) for name in fns}
    for name in in_turns(fns, rounds):
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
        self.adam_weights = []  # per call of the fused Adam kernel: how many numbers it updates

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.count[str(func)] += 1
        if str(func) in ("aten.mm.default", "aten.addmm.default"):
            spec = [
                ("t", tuple(a.shape), tuple(a.stride()), a.dtype, a.device)
                if torch.is_tensor(a)
                else ("v", a)
                for a in args
            ]
            self.matmuls.append((func, spec, dict(kwargs)))
        if str(func) == "aten._fused_adam_.default":
            self.adam_weights.append(sum(t.numel() for t in args[0]))
        return func(*args, **kwargs)


def op_name(key):
    """ "aten.mean.dim" -> "mean.dim", "aten.mm.default" -> "mm"."""
    return ".".join(key.split(".")[1:]).removesuffix(".default")


def mnk(spec):
    """(m, k, n) of a recorded ``mm`` (a, b) or ``addmm`` (bias, a, b): a is m x k, b is k x n."""
    a, b = [t for t in spec if t[0] == "t"][-2:]
    return a[1][0], a[1][1], b[1][1]


def canonical(spec):
    """(m, k, n, dtype) with C = AB (m, k, n) and its transpose C' = B'A' (n, k, m) made one:
    the same product in two layouts."""
    m, k, n = mnk(spec)
    dtype = str([t for t in spec if t[0] == "t"][-1][3]).removeprefix("torch.")
    return (*min((m, k, n), (n, k, m)), dtype)


def replayer(calls):
    """A function that runs the recorded matrix products once, on fresh random operands."""
    gen = torch.Generator().manual_seed(0)
    ready = []
    for func, spec, kwargs in calls:
        args = []
        for s in spec:
            if s[0] == "t":
                base = torch.empty_strided(s[1], s[2], dtype=s[3], device=s[4])
                base.copy_(torch.randn(s[1], generator=gen, dtype=s[3]))
                args.append(base)
            else:
                args.append(s[1])
        ready.append((func, args, kwargs))

    def run():
        for func, args, kwargs in ready:
            func(*args, **kwargs)

    return run


def commit():
    """The checkout's commit, with "+changes" if what is timed (``benchmarks/``,
    ``vae_course/``) differs from it; "unknown" outside a git checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "diff", "--quiet", "HEAD", "--", "benchmarks", "vae_course"],
                cwd=os.path.dirname(here),
            ).returncode
            != 0
        )
    except OSError:
        return "unknown"
    return (rev + ("+changes" if dirty else "")) if rev else "unknown"


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=16, help="counted rounds (at least 12)")
    ap.add_argument("--steps", type=int, default=100, help="steps in a profiled epoch")
    args = ap.parse_args(argv)
    if args.rounds < 12:
        ap.error(
            f"--rounds {args.rounds}: give at least 12 (a 95% interval needs 6 rounds, "
            "and the profiled epochs get half of them)"
        )

    (x_all, _), _ = load_mnist_float()
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, keras {keras.__version__}, "
        f"vae_course {vae_course.__version__}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}; batch {BATCH}; --rounds {args.rounds} "
        f"--steps {args.steps}; commit {commit()}",
        flush=True,
    )

    # 1. profiler shares
    fns = sides(x_all[: args.steps * BATCH])
    rows = profiled_shares(fns, args.steps, args.rounds // 2)
    print(f"\n1. torch.profiler, ms per step (each row the median of {args.rounds // 2} epochs):")
    for kind in rows["train_vae"]:
        cells = ", ".join(f"{name} {statistics.median(rows[name][kind]):.1f}" for name in rows)
        print(f"   {kind}: {cells}")

    # 2. dispatched operations per step: an epoch of 60 steps less one of 30
    recorded, per_step_ops, adam_by = {}, {}, {}
    for name in ("train_vae", "plain loop"):
        counts = {}
        for steps in (30, 60):
            fn = sides(x_all[: steps * BATCH])[name]
            fn()
            with Recorder() as rec:
                fn()
            counts[steps] = rec
        recorded[name] = counts[30]
        adam_by[name] = counts[60].adam_weights
        keys = set(counts[60].count) | set(counts[30].count)
        diff = {k: counts[60].count[k] - counts[30].count[k] for k in keys}
        assert all(v % 30 == 0 for v in diff.values()), {k: v for k, v in diff.items() if v % 30}
        per_step_ops[name] = {k: v // 30 for k, v in diff.items() if v}
        other = [
            k
            for k in keys
            if any(
                m in k
                for m in ("bmm", "addmv", "matmul", "linear", "_addmm_activation", ".mv.", ".dot.")
                + (".addr.", "_int_mm")
            )
        ]
        assert not other, f"matrix products other than mm and addmm: {other}"
    print("\n2. dispatched operations a step (forward and backward; 60-step epoch less 30-step):")
    shapes = {}
    for name, ops in per_step_ops.items():
        mm = ops.get("aten.mm.default", 0) + ops.get("aten.addmm.default", 0)
        top = sorted(ops.items(), key=lambda kv: -kv[1])[:12]
        print(
            f"   {name}: {sum(ops.values()):.0f}, {mm:.0f} of them matrix products; most frequent: "
            + ", ".join(f"{op_name(k)} {v:.0f}" for k, v in top)
        )
        rec = recorded[name]
        n = len(rec.matmuls) // 30
        assert len(rec.matmuls) == 30 * n and n == mm, (name, len(rec.matmuls), mm)
        recorded[name] = rec.matmuls[-n:]  # the last step's products
        shapes[name] = sorted(canonical(spec) for _, spec, _ in recorded[name])
        adam = adam_by[name]
        assert len(adam) % 60 == 0, f"{name}: {len(adam)} fused Adam calls in 60 steps"
        print(
            f"   {name}: the fused Adam kernel {len(adam) / 60:.0f} time(s) a step, on "
            f"{sorted(set(adam))} numbers; operand dtypes and devices of the products: "
            + ", ".join(
                sorted({f"{t[3]} on {t[4]}" for _, sp, _ in rec.matmuls for t in sp if t[0] == "t"})
            )
        )
    same = shapes["train_vae"] == shapes["plain loop"]
    print(
        "   the matrix products' (m, k, n), up to transposition, sorted: "
        + ("the same on both sides: " if same else "DIFFERENT: ")
        + ", ".join(f"{'x'.join(map(str, t[:3]))} {t[3]}" for t in shapes["train_vae"])
    )
    if not same:
        print(
            "   plain loop: "
            + ", ".join(f"{'x'.join(map(str, t[:3]))} {t[3]}" for t in shapes["plain loop"])
        )
    a, b = per_step_ops["train_vae"], per_step_ops["plain loop"]
    more = sorted((op_name(k), a.get(k, 0) - b.get(k, 0)) for k in set(a) | set(b))
    print(
        "   train_vae less plain loop, per operation: "
        + ", ".join(f"{k} {d:+d}" for k, d in more if d)
    )

    # 3. the matrix products alone, each side's with its own layouts, each one timed
    each = {name: [replayer([c]) for c in calls] for name, calls in recorded.items()}
    us = {name: [[] for _ in calls] for name, calls in recorded.items()}
    for f in [f for fs in each.values() for f in fs]:
        f()  # warm-up
    for name in in_turns(each, args.rounds):
        for i, f in enumerate(each[name]):
            t = time.perf_counter()
            for _ in range(100):
                f()
            us[name][i].append((time.perf_counter() - t) / 100)
    totals = {name: [sum(v[r] for v in us[name]) for r in range(args.rounds)] for name in us}
    print("\n3. " + ratio_line("the matrix products alone, summed per step", totals))
    for name, calls in recorded.items():
        print(
            f"   {name}, each product in dispatch order, (m, k, n) median µs: "
            + ", ".join(
                f"{'x'.join(map(str, mnk(spec)))} {statistics.median(v) * 1e6:.0f}"
                for (_, spec, _), v in zip(calls, us[name])
            )
        )

    # each product in whichever layout was faster, pairing equal products (up to transposition)
    med = {name: [statistics.median(v) for v in us[name]] for name in us}
    by_shape = {name: collections.defaultdict(list) for name in us}
    for name, calls in recorded.items():
        for (_, spec, _), t in zip(calls, med[name]):
            by_shape[name][canonical(spec)].append(t)
    best = sum(
        min(x, y)
        for key in by_shape["train_vae"]
        for x, y in zip(sorted(by_shape["train_vae"][key]), sorted(by_shape["plain loop"][key]))
    )
    print(
        f"   each product in the faster of the two layouts, summed: {best * 1e3:.2f} ms a step "
        f"(train_vae's {sum(med['train_vae']) * 1e3:.2f}, the plain loop's "
        f"{sum(med['plain loop']) * 1e3:.2f}: sums of the medians)"
    )

    # 4. whole steps, unprofiled: the 512-unit model and the 8-unit one in the same rounds
    x = x_all[: 300 * BATCH]
    fns = sides(x)
    fns.update({f"{k}, 8 units": f for k, f in sides(x, hidden=8).items()})
    times = alternated(fns, args.rounds)
    times = {k: [t / 300 for t in v] for k, v in times.items()}
    print("\n4. " + ratio_line("whole steps, 512 units", times))
    print(
        "   "
        + ratio_line("whole steps, 8 units", times, "train_vae, 8 units", "plain loop, 8 units")
    )
    q = [a / b for a, b in zip(times["plain loop, 8 units"], times["plain loop"])]
    med, lo, hi = median_interval(q)
    print(
        f"   the plain loop's 8-unit step / its 512-unit step, paired: {med:.2f} "
        f"(95% interval {lo:.2f} to {hi:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
