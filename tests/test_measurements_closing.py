"""The three-seed statements of chapter 9's paragraph on a per-image flow on chapter 8's
50-latent model, asserted on the committed measurements (measurements/closing/flow50_seed*.json,
written by scripts/measure_closing_gaps.py --latent50), so that a statement the files stop
supporting fails here."""

import json
from pathlib import Path

import pytest

DIR = Path(__file__).resolve().parents[1] / "measurements" / "closing"
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def flow50():
    return [json.loads((DIR / f"flow50_seed{s}.json").read_text())["flow50"] for s in SEEDS]


def _values(rows, key):
    return [r[key][0] for r in rows]


def test_the_files_are_the_chapters_protocol(flow50):
    for s, r in zip(SEEDS, flow50):
        record = json.loads((DIR / f"flow50_seed{s}.json").read_text())
        assert record["seed"] == s
        assert r["n_images"] == 200 and r["k_flow"] == 1000


def test_the_fitted_gaussians_gap_is_1_8_to_1_9_nats(flow50):
    gap = _values(flow50, "approx_gauss800")
    assert round(min(gap), 1) == 1.8 and round(max(gap), 1) == 1.9, gap


def test_the_flow_raises_the_elbo_by_far_more_than_twice_the_gaussians_steps(flow50):
    gain = [r["flow_minus_gauss800"] for r in flow50]
    assert [round(g[0], 2) for g in gain] == [0.49, 0.47, 0.41], gain
    assert all(g[0] > 25 * g[1] for g in gain), gain
    steps = _values(flow50, "gauss800_minus_400")
    assert all(0 < d < 0.01 for d in steps), steps  # "moved it by less than 0.01"
    assert min(g[0] for g in gain) > 40 * max(steps)


def test_the_flow_closes_22_to_27_percent_of_the_gap(flow50):
    share = [r["share_closed"] for r in flow50]
    assert round(min(share), 2) == 0.22 and round(max(share), 2) == 0.27, share
    for r in flow50:  # the share is the gain over the gap, as the text computes it
        gap = r["approx_gauss800"][0]
        assert r["share_closed"] == pytest.approx(r["flow_minus_gauss800"][0] / gap, rel=1e-9)


def test_the_flow_as_proposal_finds_no_missed_mass(flow50):
    d = [r["lflow_minus_l5000"] for r in flow50]
    assert all(abs(x[0]) < x[1] for x in d), d  # within one standard error in every seed
