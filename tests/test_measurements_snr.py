"""Every statement of chapter 9's section "The gradient's SNR at a trained encoder", asserted on
the committed measurements (measurements/trained_snr/*.json, written by
scripts/measure_trained_snr.py), so that a statement the files stop supporting fails here."""

import json
import math
from pathlib import Path

import pytest

DIR = Path(__file__).resolve().parents[1] / "measurements" / "trained_snr"
RUNS = ((0, 0), (0, 1), (0, 2), (1, 1), (2, 2))  # (model seed, draw seed); (0, 0) the chapter's


@pytest.fixture(scope="module")
def runs():
    return [json.loads((DIR / f"snr_model{m}_draws{d}.json").read_text()) for m, d in RUNS]


def test_the_files_are_the_chapters_settings(runs):
    for (m, d), r in zip(RUNS, runs):
        assert (r["model_seed"], r["draw_seed"]) == (m, d)
        assert r["settings"] == {"k": [1, 10, 100], "images": 6, "draws": 400}
        assert r["summary"]["n_components"] == 24


def test_iwae_falls_from_10_to_100_far_less_than_one_over_sqrt_10(runs):
    ratio = [r["summary"]["iwae"]["median_ratio_to_prev"]["100"] for r in runs]
    assert all((v - 1 / math.sqrt(10)) / se > 3 for v, se in ratio), ratio
    assert round(min(v for v, _ in ratio), 2) == 0.60 and round(max(v for v, _ in ratio), 2) == 0.98
    med = [r["summary"]["iwae"]["median_snr"] for r in runs]
    assert all(m["100"][0] < m["10"][0] for m in med), med  # "falls from k = 10 to 100"


def test_dreg_does_not_rise_from_10_to_100(runs):
    ratio = [r["summary"]["dreg"]["median_ratio_to_prev"]["100"][0] for r in runs]
    assert max(ratio) < 1, ratio
    assert round(min(ratio), 2) == 0.77 and round(max(ratio), 2) == 0.98, ratio


def test_at_k100_dreg_is_above_iwae(runs):
    for r in runs:
        (d, d_se), (i, i_se) = (r["summary"][e]["median_snr"]["100"] for e in ("dreg", "iwae"))
        assert d - i > 3 * math.hypot(d_se, i_se), (d, i)
        assert 1.5 <= round(d / i, 1) <= 2.0, (d, i)  # "1.5 to 2 times"
    above = [r["summary"]["dreg_above_iwae"]["100"] for r in runs]
    assert min(above) == 15 and max(above) == 20, above
