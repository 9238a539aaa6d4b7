"""The benchmark's summary: the median paired ratio, its 95% interval, and pooling saved runs."""

import importlib.util
import re
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    """A script of benchmarks/ as a module (registered: profile_step imports bench_train)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench = _load("bench_train")
ps = _load("profile_step")


def _below(n, k):
    """P(Binomial(n, 1/2) <= k), from torch.distributions (an independent reference)."""
    b = torch.distributions.Binomial(n, torch.tensor(0.5, dtype=torch.float64))
    return float(b.log_prob(torch.arange(k + 1, dtype=torch.float64)).exp().sum())


@pytest.mark.parametrize("n", [6, 8, 16, 40, 64, 80, 160])
def test_the_interval_is_the_narrowest_with_95_percent_coverage(n):
    values = [float(i) for i in range(1, n + 1)]  # value i is the i-th smallest
    med, lo, hi = bench.median_interval(list(reversed(values)))
    assert med == statistics.median(values)
    k = int(lo)  # the interval runs from the k-th smallest to the k-th largest value
    assert hi == n + 1 - k
    # the median lies outside [x_(k), x_(n+1-k)] only if at most k-1 values fall below it,
    # or at most k-1 above: probability 2 P(Bin <= k-1), which must be at most 5% ...
    assert 2 * _below(n, k - 1) <= 0.05
    # ... and the next narrower interval would not keep 95%
    assert 2 * _below(n, k) > 0.05


def test_ranks_worked_by_hand():
    # n = 8: P(Bin <= 0) = 1/256 <= 0.025 < P(Bin <= 1) = 9/256, so k = 1: the 1st and 8th values.
    # n = 16: P(Bin <= 3) = 697/65536 <= 0.025 < P(Bin <= 4) = 2517/65536: the 4th and 13th.
    for n, k in [(8, 1), (16, 4)]:
        _, lo, hi = bench.median_interval(list(range(1, n + 1)))
        assert (lo, hi) == (k, n + 1 - k)


def test_too_few_rounds_is_refused():
    with pytest.raises(ValueError, match="at least 6"):
        bench.median_interval([1.0] * 5)


def test_a_short_run_gets_its_median_without_an_interval():
    rounds = [{"train_vae": t, bench.FUSED: 1.0} for t in (0.9, 1.2, 1.0)]
    (line,) = bench.summary_lines(rounds)
    assert line == (
        "train_vae / fused loop: median 1.00 (no 95% interval from fewer than 6 rounds), "
        "2 of 3 rounds at or below 1"
    )


def _log(path, rounds, writes=None):
    lines = ["python 3.11, torch ..., 300 steps of batch 64 per epoch", "round 0 (warm-up): x"]
    lines.append("round 0: train_vae 99.00, PyTorch, Adam(fused=True) 1.00 ms/step; ignored")
    for r, (a, c, f) in enumerate(rounds, start=1):
        lines.append(
            f"round {r}: train_vae {a:.2f}, command line {c:.2f}, PyTorch, Adam 9.00, "
            f"PyTorch, Adam(fused=True) {f:.2f} ms/step; train_vae / fused {a / f:.3f}"
        )
    if writes is not None:
        lines.append(
            f"command line: writing ... {writes:.2f} ms per step at 300 steps an epoch, ..."
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pooling_saved_runs(tmp_path):
    one = _log(tmp_path / "1.log", [(7.0, 8.0, 8.0)] * 4, writes=0.5)  # ratios 0.875; 1.0
    two = _log(tmp_path / "2.log", [(9.0, 9.0, 8.0)] * 3, writes=0.0)  # 1.125; 1.125
    lines = bench.pool([one, two])
    by_side = {line.split(" / fused")[0]: line for line in lines}
    assert set(by_side) == {
        "train_vae",
        "command line",
        "PyTorch, Adam",
        "command line, less its writes",
    }
    assert "median 0.88 " in by_side["train_vae"]  # 0.875
    assert "4 of 7 rounds at or below 1" in by_side["train_vae"]
    assert "median 1.00 " in by_side["command line"]
    assert "4 of 7 rounds at or below 1" in by_side["command line"]
    # less its writes: (8 - 0.5) / 8 = 0.9375 in the first run, 9 / 8 in the second
    assert "median 0.94 " in by_side["command line, less its writes"]
    assert "median 1.12 " in by_side["PyTorch, Adam"]  # 1.125, rounded half to even


def test_a_file_without_rounds_is_named(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("nothing here\n")
    with pytest.raises(ValueError, match="notes.txt: no counted"):
        bench.pool([bad])


def test_a_run_given_twice_is_refused(tmp_path):
    one = _log(tmp_path / "1.log", [(7.0, 8.0, 8.0)] * 6)
    with pytest.raises(ValueError, match="given twice"):
        bench.pool([one, tmp_path / "." / "1.log"])


LOGS = sorted((ROOT / "measurements" / "bench_train").glob("run*.log"))


def _readme_row(label):
    """The cells of README's table row that starts with ``label``."""
    rows = [
        line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(label)
    ]
    assert len(rows) == 1, (label, rows)
    return [c.strip() for c in rows[0].strip("|").split("|")]


def _pooled(paths):
    out = {}
    for line in bench.pool(paths):
        name, rest = line.split(" / fused loop: ")
        m = re.match(r"median (\S+) \(95% interval (\S+) to (\S+)\), (\d+) of (\d+) rounds", rest)
        out[name] = (f"{m[1]} ({m[2]} to {m[3]})", f"{m[4]} of {m[5]}")
    return out


def test_the_committed_runs_give_readme_table():
    """README's performance table is what --pool prints for measurements/bench_train/run*.log."""
    assert len(LOGS) == 5
    pooled = _pooled(LOGS)
    for label, side in [
        ("| `train_vae` (", "train_vae"),
        ("| command line (", "command line"),
        ("| command line, less its writes", "command line, less its writes"),
        ("| `train_vae(fast=False)`", "train_vae, fast path off"),
        ("| plain PyTorch, `torch.optim.Adam` |", "PyTorch, Adam"),
    ]:
        assert tuple(_readme_row(label)[2:4]) == pooled[side], side
    # the ms column: run 5's medians, to one decimal
    run5 = LOGS[-1].read_text()
    for label, side in [
        ("| `train_vae` (", "train_vae"),
        ("| command line (", "command line"),
        ("| `train_vae(fast=False)`", "train_vae, fast path off"),
        ("| plain PyTorch, `torch.optim.Adam` |", "PyTorch, Adam"),
        ("| plain PyTorch, `torch.optim.Adam(fused=True)`", "PyTorch, Adam(fused=True)"),
    ]:
        ms = float(re.search(rf"^\| {re.escape(side)} \| ([\d.]+) \|", run5, re.M)[1])
        assert _readme_row(label)[1] == f"{ms:.1f}", side


def test_the_readme_sentences_on_the_runs():
    readme = (ROOT / "README.md").read_text()
    flat = " ".join(readme.split())
    per_run = [_pooled([log])["train_vae"][0].split()[0] for log in LOGS]
    assert f"{', '.join(per_run[:-1])} and {per_run[-1]}." in flat
    assert f"five runs' medians ({min(per_run)} to {max(per_run)})" in flat
    to_adam = [
        float(re.search(r"^\| train_vae \| [\d.]+ \| ([\d.]+) ", log.read_text(), re.M)[1])
        for log in LOGS
    ]
    assert f"took {min(to_adam):.2f} to {max(to_adam):.2f} of the time" in flat
    spread = [float(re.search(r"up to ([\d.]+)x", log.read_text())[1]) for log in LOGS]
    worst = max(range(5), key=lambda i: spread[i])
    assert f"up to {spread[worst]:.2f} times its fastest (run {worst + 1})" in flat
    writes = [float(re.search(r"([\d.]+) ms per step at 300", log.read_text())[1]) for log in LOGS]
    assert f"({min(writes):.2f} to {max(writes):.2f} ms a step at these 300-step epochs" in flat
    full = [
        float(re.search(r"([\d.]+) ms per step over a full", log.read_text())[1]) for log in LOGS
    ]
    assert f"{min(full):.2f} to {max(full):.2f} ms over a full 938-step epoch" in flat
    pooled = _pooled(LOGS)
    assert f"a median paired ratio of {pooled['train_vae'][0].replace(')', ';')}" in flat
    assert f"It takes {min(to_adam):.2f} to {max(to_adam):.2f} of the time" in flat
    assert f"took {pooled['train_vae, fast path off'][0].split()[0]} times as long" in flat
    assert f"| 5 runs of 16 rounds | {pooled['train_vae'][0]} | {pooled['train_vae'][1]} (" in flat
    assert f"{pooled['train_vae'][0].split()[0]} over the 80 rounds" in flat
    less = pooled["command line, less its writes"][0].split()[0]
    assert f"the same step: {less} once the end-of-epoch files" in flat
    assert f"adds {min(full):.2f} to {max(full):.2f} ms a step" in flat
    # the 17 runs' medians as README lists them, and what it says of them
    block = flat[flat.index("The 17 runs' medians") :]
    listed = [float(v) for v in re.findall(r"\d\.\d\d", block[: block.index("11 of the 17")])]
    assert len(listed) == 17 and listed[-5:] == [float(v) for v in per_run]
    med, lo, hi = bench.median_interval(listed)
    assert f"{sum(v <= 1 for v in listed)} of the 17 are at or below 1" in flat
    assert f"gives {med:.2f} ({lo:.2f} to {hi:.2f})" in flat
    # the upper ends README says cannot be excluded: the commit table's intervals and the 17 runs'
    table = [
        line for line in readme.splitlines() if re.match(r"\| (3cb406f|76e4b03|992ceab)", line)
    ]
    uppers = [float(u) for line in table for u in re.findall(r"to (\d\.\d\d)\)", line)]
    assert len(table) == 3 and len(uppers) == 4
    assert f"upper ends ({min(uppers):.2f} to {max(uppers):.2f}; {hi:.2f} over the 17 runs)" in flat


def test_the_readme_profile_numbers_are_profile_steps_output():
    out = (ROOT / "measurements" / "bench_train" / "profile_step.txt").read_text()
    flat = " ".join((ROOT / "README.md").read_text().split())

    def row(kind):
        m = re.search(rf"{re.escape(kind)}: train_vae ([\d.]+), plain loop ([\d.]+)", out)
        return m[1], m[2]

    for label, kind in [
        ("matrix products", "matrix products"),
        ("fused Adam kernel", "fused Adam kernel"),
        ("the rest: element-wise operations, the autograd engine, Python", "the rest"),
        ("wall time under the profiler", "wall, profiled"),
    ]:
        a, b = row(kind)
        assert f"| {label} | {a} ms | {b} ms |" in flat, label
    step = row("Optimizer.step's own code")[1]
    assert f"| (in the rest) | {step} ms |" in flat

    ops = dict(re.findall(r"^   (train_vae|plain loop): (\d+), 17 of them", out, re.M))
    assert f"{ops['train_vae']} for `train_vae` and {ops['plain loop']} for the plain loop" in flat
    assert "up to transposition, sorted: the same on both sides" in out

    m = re.search(
        r"summed per step: train_vae ([\d.]+) ms, plain loop ([\d.]+) ms .*paired ratio "
        r"([\d.]+) \(95% interval ([\d.]+) to ([\d.]+)",
        out,
    )
    assert f"{m[1]} and {m[2]} ms, paired ratio {m[3]} ({m[4]} to {m[5]})" in flat
    head = [
        re.search(
            rf"^   {side}, each product.*?: 64x784x512 \d+, 64x512x512 \d+, 64x512x4 (\d+)",
            out,
            re.M,
        )[1]
        for side in ("train_vae", "plain loop")
    ]
    assert f"took {head[0]} µs as Keras stores it and {head[1]} µs as PyTorch does" in flat

    def ratio(what):
        m = re.search(rf"{what}: .*paired ratio ([\d.]+) \(95% interval ([\d.]+) to ([\d.]+)", out)
        return f"{m[1]} ({m[2]} to {m[3]})"

    assert f"The 512-unit model: {ratio('whole steps, 512 units')}" in flat
    assert f"A model with 8 hidden units: {ratio('whole steps, 8 units')}" in flat
    m = re.search(r"512-unit step, paired: ([\d.]+) \(95% interval ([\d.]+) to ([\d.]+)\)", out)
    assert f"8-unit step is {m[1]} ({m[2]} to {m[3]}) of its 512-unit step" in flat
    assert f"the whole 8-unit step, {m[1]} of the 512-unit step" in flat
    best = re.search(
        r"layouts, summed: ([\d.]+) ms a step \(train_vae's ([\d.]+), the plain loop's ([\d.]+)",
        out,
    )
    assert f"summed: {best[1]} ms, against {best[2]} and {best[3]}" in flat
    assert f"save `train_vae` about {float(best[2]) - float(best[1]):.1f} ms a step" in flat
    plain = float(re.search(r"whole steps, 512 units: .*plain loop ([\d.]+) ms", out)[1])
    assert f"(about {0.2 * plain:.1f} ms in measurement 4)" in flat
    # what is left of the plain step, by subtraction: less its products (replayed), its Adam
    # kernel (profiled) and its 8-unit step
    adam = float(row("fused Adam kernel")[1])
    rest = plain - float(best[3]) - adam - float(m[1]) * plain
    assert f"What is left of the plain loop's {plain:.1f} ms" in flat
    assert f"neither products nor Adam:** roughly {rest:.1f} ms" in flat
    both = rest + float(m[1]) * plain
    assert 0.4 < 0.2 * plain / both < 0.5
    assert f"nearly half of those two parts (about {both:.1f} ms together)" in flat
    assert "on [1333012] numbers" in out and "all 1,333,012 weights" in flat
    assert out.count("the fused Adam kernel 1 time(s) a step") == 2


def test_the_recorder_sees_the_plain_steps_products_and_the_replay_keeps_their_layouts():
    torch.manual_seed(0)
    ref = bench.Reference(hidden=8)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3, fused=True)
    x = torch.rand(2 * bench.BATCH, 28, 28)
    with ps.Recorder() as rec:
        bench.reference_epoch(ref, opt, x)
    # six layers: six addmm forward; eleven mm backward (the first layer's input needs none)
    assert rec.count["aten.addmm.default"] == 2 * 6
    assert rec.count["aten.mm.default"] == 2 * 11
    assert len(rec.matmuls) == 2 * 17

    seen = []

    class Layouts(ps.Recorder):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if str(func) in ("aten.mm.default", "aten.addmm.default"):
                seen.append([(tuple(a.shape), tuple(a.stride())) for a in args])
            return func(*args, **(kwargs or {}))

    run = ps.replayer(rec.matmuls[:17])
    with Layouts():
        run()
    assert seen == [[s[1:3] for s in spec] for _, spec, _ in rec.matmuls[:17]]


def test_whole_number_values_are_read(tmp_path):
    log = tmp_path / "whole.log"
    log.write_text(
        "".join(
            f"round {r}: train_vae 7, PyTorch, Adam(fused=True) 8 ms/step; x\n" for r in range(7)
        )
    )
    (line,) = bench.pool([log])
    assert line == (
        "train_vae / fused loop: median 0.88 (95% interval 0.88 to 0.88), "
        "6 of 6 rounds at or below 1"
    )


def test_a_product_and_its_transpose_are_one_product():
    f32, cpu = torch.float32, torch.device("cpu")
    addmm = [
        ("t", (4,), (1,), f32, cpu),
        ("t", (64, 512), (512, 1), f32, cpu),
        ("t", (512, 4), (4, 1), f32, cpu),
    ]
    mm_t = [("t", (4, 512), (1, 4), f32, cpu), ("t", (512, 64), (1, 512), f32, cpu)]
    assert ps.mnk(addmm) == (64, 512, 4)
    assert ps.mnk(mm_t) == (4, 512, 64)
    assert ps.canonical(addmm) == ps.canonical(mm_t) == (4, 512, 64, "float32")
    other = [("t", (64, 512), (512, 1), f32, cpu), ("t", (512, 2), (2, 1), f32, cpu)]
    assert ps.canonical(other) != ps.canonical(addmm)


def test_both_sides_dispatch_the_same_products_up_to_transposition():
    x = np.random.default_rng(0).random((2 * bench.BATCH, 28, 28), dtype=np.float32)
    shapes, adam = {}, {}
    for name, fn in ps.sides(x, hidden=8).items():
        fn()
        with ps.Recorder() as rec:
            fn()
        assert len(rec.matmuls) == 2 * 17, name
        shapes[name] = sorted(ps.canonical(spec) for _, spec, _ in rec.matmuls)
        adam[name] = rec.adam_weights
    assert shapes["train_vae"] == shapes["plain loop"]
    # one fused Adam call a step on each side, over every weight of the model
    n = sum(p.numel() for p in bench.Reference(hidden=8).parameters())
    assert adam["train_vae"] == adam["plain loop"] == [n, n]
