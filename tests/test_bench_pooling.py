"""The benchmark's summary: the median paired ratio, its 95% interval, and pooling saved runs."""

import importlib.util
import statistics
import sys
from pathlib import Path

import pytest
import torch

spec = importlib.util.spec_from_file_location(
    "bench_train", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"
)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


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


def test_the_committed_runs_give_readme_table():
    """README's performance table is what --pool prints for measurements/bench_train/run*.log."""
    logs = sorted(
        (Path(__file__).resolve().parents[1] / "measurements" / "bench_train").glob("run*.log")
    )
    assert len(logs) == 5
    lines = {line.split(" / fused")[0]: line for line in bench.pool(logs)}
    assert lines["train_vae"].endswith(
        "median 1.00 (95% interval 0.97 to 1.01), 41 of 80 rounds at or below 1"
    )
    assert lines["command line"].endswith(
        "median 1.04 (95% interval 1.02 to 1.06), 23 of 80 rounds at or below 1"
    )
    assert lines["command line, less its writes"].endswith(
        "median 1.00 (95% interval 0.99 to 1.03), 38 of 80 rounds at or below 1"
    )
    assert lines["train_vae, fast path off"].endswith(
        "median 2.05 (95% interval 1.92 to 2.23), 0 of 16 rounds at or below 1"
    )
    assert lines["PyTorch, Adam"].endswith(
        "median 1.28 (95% interval 1.26 to 1.33), 0 of 80 rounds at or below 1"
    )
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for cells in [
        "| 1.00 (0.97 to 1.01) | 41 of 80 |",
        "| 1.04 (1.02 to 1.06) | 23 of 80 |",
        "| 1.00 (0.99 to 1.03) | 38 of 80 |",
        "| 2.05 (1.92 to 2.23) | 0 of 16 |",
        "| 1.28 (1.26 to 1.33) | 0 of 80 |",
    ]:
        assert cells in readme


def test_the_recorder_sees_the_plain_steps_products_and_the_replay_keeps_their_layouts():
    profile_spec = importlib.util.spec_from_file_location(
        "profile_step", Path(__file__).resolve().parents[1] / "benchmarks" / "profile_step.py"
    )
    sys.modules.setdefault("bench_train", bench)  # profile_step imports it by name
    ps = importlib.util.module_from_spec(profile_spec)
    profile_spec.loader.exec_module(ps)

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
    assert seen == [[s[1:] for s in spec] for _, spec, _ in rec.matmuls[:17]]
