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


def test_the_files_are_the_chapters_protocol_on_chapter_8s_models(flow50):
    gaps = Path(__file__).resolve().parents[1] / "measurements" / "gaps"
    exact = Path(__file__).resolve().parents[1] / "measurements" / "exact2d"
    for s, r in zip(SEEDS, flow50):
        record = json.loads((DIR / f"flow50_seed{s}.json").read_text())
        assert record["seed"] == s
        assert r["n_images"] == 200 and r["k_bound"] == 5000
        p = r["protocol"]
        assert p["gauss_steps"] == [400, 800] and p["flow_from_gauss_steps"] == 400
        assert (p["flow_steps"], p["flow_num_steps"], p["flow_hidden_units"]) == (400, 2, 100)
        assert (p["learning_rate"], p["flow_learning_rate"], p["draws_per_step"]) == (
            0.02,
            0.005,
            5,
        )
        assert p["elbo_draws"] == 1000
    # chapter 8's estimate of log p(x) on chapter 8's models: L_5000 under q* as committed there
    ch8 = [json.loads((exact / "exact2d_seed0.json").read_text())["latent50"]["L5000_star"]]
    ch8 += [
        json.loads((gaps / f"gaps_seed{s}.json").read_text())["ch8_gaps50"]["L5000_star"]
        for s in (1, 2)
    ]
    for r, want in zip(flow50, ch8):
        assert r["mean_l5000"] == pytest.approx(want, abs=1e-5)


def test_the_fitted_gaussians_gap_is_1_8_to_1_9_nats(flow50):
    gap = _values(flow50, "approx_gauss800")
    assert round(min(gap), 1) == 1.8 and round(max(gap), 1) == 1.9, gap


def test_the_flow_raises_the_elbo_by_far_more_than_twice_the_gaussians_steps(flow50):
    gain = [r["flow_minus_gauss800"] for r in flow50]
    assert round(min(g[0] for g in gain), 2) == 0.58 and round(max(g[0] for g in gain), 2) == 0.65
    assert all(g[0] > 25 * g[1] for g in gain), gain
    steps = _values(flow50, "gauss800_minus_400")
    assert round(min(steps), 3) == 0.005 and round(max(steps), 3) == 0.008, steps
    assert min(g[0] for g in gain) > 40 * max(steps)


def test_the_flow_closes_31_to_35_percent_of_the_gap(flow50):
    share = [r["share_closed"] for r in flow50]
    assert round(min(share), 2) == 0.31 and round(max(share), 2) == 0.35, share
    for r in flow50:  # the share is the gain over the gap, as the text computes it
        gap = r["approx_gauss800"][0]
        assert r["share_closed"] == pytest.approx(r["flow_minus_gauss800"][0] / gap, rel=1e-9)


def test_the_flow_as_proposal_barely_moves_the_bound(flow50):
    d = [r["lflow_minus_l5000"] for r in flow50]
    assert all(x[0] + 2 * x[1] < 0.1 for x in d), d  # at most about 0.1 nats, every seed
    above = [x for x in d if x[0] > 3 * x[1]]
    assert len(above) == 1 and round(above[0][0], 2) == 0.05, d  # one seed: 0.05, 4.4 se
    assert round(above[0][0] / above[0][1], 1) == 4.4
    assert all(abs(x[0]) < 0.5 * x[1] for x in d if x not in above), d  # within half an se


def test_chapter_8s_numbers_the_paragraph_cites(flow50):
    root = Path(__file__).resolve().parents[1] / "measurements"
    exact = json.loads((root / "exact2d" / "exact2d_seed0.json").read_text())["latent50"]
    ess = exact["ess_star_quantiles"]
    assert round(ess["0.5"], -1) == 140 and round(ess["0"], 1) == 1.8, ess
    rise = [
        json.loads((root / "gaps" / f"gaps_seed{s}.json").read_text())["ch8_gaps50"][
            "L5000_star_minus_L1000_star"
        ]["mean"]
        for s in SEEDS
    ]
    assert min(rise) > 0 and round(max(rise), 2) == 0.06, rise  # "at most 0.06 nats"
    # the stronger tie of the files to chapter 8's protocol: the same Gaussian fits, bit for bit
    for s, r in zip((1, 2), flow50[1:]):
        g = json.loads((root / "gaps" / f"gaps_seed{s}.json").read_text())["ch8_gaps50"]
        assert r["approx_gauss800"][0] == pytest.approx(g["approximation_800"]["mean"], abs=1e-9)
        assert r["gauss800_minus_400"][0] == pytest.approx(
            g["elbo_star_800_minus_400"]["mean"], abs=1e-9
        )


def test_the_restart_alone_does_not_give_the_flows_gain(flow50):
    """The control: the flow's fit with the flow's learning rate at 0 (Adam restarted from the
    400-step q*, the same draws): its Gaussian ends slightly *below* the 800-step one, and the
    flow is above it by about as much as above the 800-step Gaussian."""
    for r in flow50:
        assert r["restart_flow_stayed_identity"]  # the flow's weights that make m, s stayed 0
        assert "learning_rate 0" in r["protocol"]["restart_control"]
    restart = [r["restart_minus_gauss800"] for r in flow50]
    assert all(x[0] < -4 * x[1] for x in restart), restart  # below, by more than 4 se
    assert (round(min(x[0] for x in restart), 2), round(max(x[0] for x in restart), 2)) == (
        -0.04,
        -0.04,
    )
    beyond = [r["flow_minus_restart"] for r in flow50]
    assert all(x[0] > 25 * x[1] for x in beyond), beyond
    assert (round(min(x[0] for x in beyond), 2), round(max(x[0] for x in beyond), 2)) == (
        0.61,
        0.68,
    )
