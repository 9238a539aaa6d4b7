"""Every three-seed statement of chapter 9's section "Training on the importance-weighted bound",
asserted on the committed measurements (measurements/iwae_training/seed*.json, written by
scripts/measure_iwae_training.py), so that a statement the files stop supporting fails here."""

import json
from pathlib import Path

import numpy as np
import pytest

DIR = Path(__file__).resolve().parents[1] / "measurements" / "iwae_training"
SEEDS = (0, 1, 2)
K = ("1", "5", "50")


def _load(name):
    return json.loads((DIR / name).read_text())


@pytest.fixture(scope="module")
def runs():
    return [_load(f"seed{s}.json")["models"] for s in SEEDS]


def _z(d):
    """A paired difference in standard errors."""
    return d[0] / d[1]


def test_the_files_are_the_chapters_recipe():
    for s in SEEDS:
        record = _load(f"seed{s}.json")
        assert record["seed"] == s
        assert record["settings"]["k_train"] == [1, 5, 50]
        assert record["settings"]["k_eval"] == 1000 and record["settings"]["n_eval"] == 200


def test_the_test_bound_rises_at_each_step_by_more_than_ten_se(runs):
    steps = [_z(m[k]["bound_minus_prev"]) for m in runs for k in ("5", "50")]
    assert min(steps) > 10, steps
    assert round(min(steps)) == 17 and round(max(steps)) == 21, steps  # cell 20's "17 to 21"


def test_the_headline_rise_from_k1_to_k50_is_about_20_to_26_nats(runs):
    rise = [m["50"]["bound_minus_k1"][0] for m in runs]
    assert round(min(rise)) == 20 and round(max(rise)) == 26, rise


def test_the_elbo_falls_at_each_step_and_the_weakest_step_is_2_2_se(runs):
    steps = [-_z(m[k]["elbo_minus_prev"]) for m in runs for k in ("5", "50")]
    assert min(steps) > 2, steps
    assert round(min(steps), 1) == 2.2 and round(max(steps)) == 36, steps
    weakest = runs[2]["50"]["elbo_minus_prev"]  # "in one seed the step from 5 to 50"
    assert round(-_z(weakest), 1) == 2.2, weakest


def test_the_elbo_drop_from_k1_to_k50_ranges_from_35_to_670_nats(runs):
    drop = [-m["50"]["elbo_minus_k1"][0] for m in runs]
    assert round(min(drop)) == 35 and round(max(drop), -1) == 670, drop


def test_the_total_gap_grows_from_under_10_nats_to_tens_or_hundreds(runs):
    for m in runs:
        gaps = [m[k]["total_gap"][0] for k in K]
        assert gaps[0] < 10 < gaps[1] < gaps[2], gaps
        assert gaps[2] - gaps[0] > 50, gaps  # cell 20's "over 50 nats"


def test_active_units(runs):
    for m in runs:
        at = {t: [m[k]["active"][t] for k in K] for t in ("0.01", "0.1", "0.5")}
        assert at["0.1"][0] < at["0.1"][1] < at["0.1"][2], at  # rises with k at 0.1
        assert min(at["0.01"]) >= 49, at  # nearly all pass at 0.01: it does not separate them
        assert max(at["0.5"]) <= 1, at  # none or one at 0.5
    assert runs[0]["1"]["active"]["0.1"] == 0  # the figure's seed: no k = 1 unit above 0.1


def test_training_cpu_seconds_as_the_chapter_states(runs):
    k50 = [m["50"]["train_cpu_s"] for m in runs]
    k1 = [m["1"]["train_cpu_s"] for m in runs]
    assert round(min(k50)) == 89 and round(max(k50)) == 106, k50
    assert round(min(k1)) == 23 and round(max(k1)) == 79, k1


# ---- the control: VAEs trained on the k-draw ELBO (control_seed*.json), the chapter's paragraph
# "The control: k draws on the ELBO"


@pytest.fixture(scope="module")
def control():
    return [_load(f"control_seed{s}.json")["models"] for s in SEEDS]


def test_the_control_files_match_the_seeds(runs, control):
    for s, m, c in zip(SEEDS, runs, control):
        assert _load(f"control_seed{s}.json")["settings"]["control_k"] == [5, 50]
        assert c["1"]["bound"] == m["1"]["bound"]  # k = 1 is the same one-draw model


def test_more_draws_on_the_elbo_raise_the_bound_less(control):
    at50 = [c["50"]["bound_minus_k1"] for c in control]
    assert all(_z(d) > 11 for d in at50), at50  # "more than 11 paired se"
    assert round(min(d[0] for d in at50)) == 3 and round(max(d[0] for d in at50)) == 6, at50
    at5 = [c["5"]["bound_minus_k1"][0] for c in control]
    assert round(min(at5), 1) == -4.4, at5  # "in one seed 4.4 nats below"


def test_most_of_the_iwae_rise_remains_at_equal_draws(runs, control):
    for k, lo, hi in (("5", 10, 15), ("50", 17, 20)):
        d = [c[k]["iwae_minus_vae"]["bound"] for c in control]
        assert all(_z(x) > 16 for x in d), (k, d)
        assert round(min(x[0] for x in d)) == lo and round(max(x[0] for x in d)) == hi, (k, d)
    share = [c["50"]["iwae_minus_vae"]["bound"][0] / m["50"]["bound_minus_k1"][0]
             for m, c in zip(runs, control)]  # fmt: skip
    assert round(min(share), 2) == 0.75 and round(max(share), 2) == 0.85, share


def test_the_elbo_rises_with_draws_and_falls_with_the_objective(control):
    up = [c["50"]["elbo_minus_k1"] for c in control]
    assert all(_z(d) > 2 for d in up), up  # the 50-draw VAE's ELBO above the one-draw VAE's
    assert round(min(d[0] for d in up)) == 5 and round(max(d[0] for d in up)) == 10, up
    down = [c[k]["iwae_minus_vae"]["elbo"] for c in control for k in ("5", "50")]
    assert all(_z(d) < -6 for d in down), down  # IWAE's ELBO below the VAE's at equal draws


def test_control_active_units_and_cpu(runs, control):
    for m, c in zip(runs, control):
        assert m["50"]["active"]["0.1"] > c["50"]["active"]["0.1"]
        assert m["5"]["active"]["0.1"] > c["5"]["active"]["0.1"]
        vae_001 = [c[k]["active"]["0.01"] for k in ("5", "50")]
        assert max(vae_001) < min(m[k]["active"]["0.01"] for k in ("1", "5", "50")), vae_001
    at001 = [c[k]["active"]["0.01"] for c in control for k in ("5", "50")]
    assert min(at001) == 41 and max(at001) == 48, at001
    cpu = [c["50"]["train_cpu_s"] for c in control]
    assert round(min(cpu)) == 81 and round(max(cpu)) == 109, cpu


# Burda et al. (2016), Table 1, MNIST, one stochastic layer (arXiv:1509.00519v4): the test
# -L_5000 in nats and the active units (A_u > 0.01), {k: (VAE NLL, VAE active, IWAE NLL, IWAE
# active)}; the k = 1 rows are one algorithm. The published reference of the chapter's paragraph
# "What Burda et al. report, and how these runs differ".
BURDA_TABLE1 = {1: (86.76, 19, 86.76, 19), 5: (86.47, 20, 85.54, 22), 50: (86.35, 20, 84.78, 25)}


def test_burda_table1_directions_hold_and_the_short_run_gains_are_larger(runs, control):
    t = BURDA_TABLE1
    iwae_gain, vae_gain = t[1][2] - t[50][2], t[1][0] - t[50][0]
    assert round(iwae_gain, 2) == 1.98 and round(vae_gain, 2) == 0.41  # the chapter's numbers
    # their directions: the IWAE's bound rises at each step, the VAE's less (at both steps);
    # at equal k the IWAE is above the VAE
    assert t[1][2] > t[5][2] > t[50][2] and t[1][0] > t[5][0] > t[50][0]
    assert iwae_gain > vae_gain and all(t[k][2] < t[k][0] for k in (5, 50))
    for m, c in zip(runs, control):  # here, in every seed: the same, except the VAE's 1 -> 5
        assert m["1"]["bound"][0] < m["5"]["bound"][0] < m["50"]["bound"][0]
        ours_iwae, ours_vae = m["50"]["bound_minus_k1"][0], c["50"]["bound_minus_k1"][0]
        assert ours_iwae > ours_vae > 0
        assert all(c[k]["iwae_minus_vae"]["bound"][0] > 0 for k in ("5", "50"))
        # the sizes: both gains more than five times theirs
        assert ours_iwae > 5 * iwae_gain and ours_vae > 5 * vae_gain
    # ... the exception: in one seed the 5-draw VAE is below the one-draw VAE, by 4.4 nats
    vae5 = [c["5"]["bound_minus_k1"][0] for c in control]
    assert sum(d < 0 for d in vae5) == 1 and round(min(vae5), 1) == -4.4, vae5
    # every model here more than 90 nats below their worst number (86.76; L_1000 on 200 images
    # here, L_5000 on the whole test set there)
    worst_theirs = max(v for row in t.values() for v in (row[0], row[2]))
    best_ours = max(x[k]["bound"][0] for x in runs + control for k in K)
    assert worst_theirs == 86.76 and -best_ours - worst_theirs > 90, best_ours
    # active units at their threshold: 19 to 25 of 50 there, 41 to 50 here
    ours = [x[k]["active"]["0.01"] for x in runs + control for k in K]
    assert min(ours) == 41 and max(ours) == 50, ours
    assert min(row[i] for row in t.values() for i in (1, 3)) == 19
    assert max(row[i] for row in t.values() for i in (1, 3)) == 25


def test_a_one_thread_retrain_of_seed_0_gives_the_same_numbers():
    """onethread/seed0.json: seed 0 re-trained from an empty model cache with --threads 1."""
    again = _load("onethread/seed0.json")["models"]
    first = _load("seed0.json")["models"]
    for k in K:
        for name, value in first[k].items():
            if name != "train_cpu_s":
                assert again[k][name] == value, (k, name)
    cpu = [again[k]["train_cpu_s"] for k in K]  # the chapter's "2.5, 3.6 and 30.6"
    assert [round(c, 1) for c in cpu] == [2.5, 3.6, 30.6], cpu


# ---- training with DReG (dreg_seed*.json, `--estimator dreg`): chapter 9's "Training with DReG"


# ---- the one-draw model with k times the steps (equal_compute_seed*.json)


@pytest.fixture(scope="module")
def longer():
    return [_load(f"equal_compute_seed{s}.json") for s in SEEDS]


def test_the_longer_runs_are_the_one_draw_model_with_k_times_the_epochs(runs, longer):
    for s, m, f in zip(SEEDS, runs, longer):
        assert f["seed"] == s and f["settings"]["longer_k"] == [5, 50]
        assert f["settings"]["epochs"] == 2 and f["settings"]["n_train"] == 10000
        assert f["models"]["1"]["bound"] == m["1"]["bound"]  # k = 1: the same one-draw model
        assert [f["models"][k]["epochs"] for k in ("5", "50")] == [10, 100]


def test_the_longer_runs_are_compared_with_the_seeds_iwaes(longer, runs):
    """The file's IWAE (the longer model plus the paired difference) is seed<S>.json's."""
    for f, m in zip(longer, runs):
        for k in ("5", "50"):
            got = f["models"][k]["bound"][0] + f["models"][k]["iwae_minus_longer"]["bound"][0]
            assert got == pytest.approx(m[k]["bound"][0], abs=1e-6)
            got = f["models"][k]["bound"][0] + f["models"][k]["iwae50_minus_longer"]["bound"][0]
            assert got == pytest.approx(m["50"]["bound"][0], abs=1e-6)


def test_the_longer_runs_arithmetic_against_the_iwaes(longer):
    """A calculation, not a measurement: 'with encoder and decoder of about the same size that is
    roughly 1.7 times the IWAE's arithmetic at k = 5 and 2 times at k = 50'; the 10-epoch model
    has 'a tenth of the 50-draw IWAE's decoder passes (10 per image against 100) and about a fifth
    of its arithmetic'. Per image and epoch the arithmetic is proportional to the weights the
    passes run through: E + k D for the IWAE (one encoder pass), k (E + D) for the one-draw model
    over k times the epochs."""
    from vae_course.iwae_training import build_iwae
    from vae_course.tools import iwae_runs

    m = build_iwae(
        1, iwae_runs.LATENT, hidden_units=iwae_runs.HIDDEN, activation=iwae_runs.ACTIVATION
    )
    enc, dec = (sum(int(np.prod(w.shape)) for w in net.weights) for net in (m.encoder, m.decoder))
    assert abs(enc / dec - 1) < 0.06, (enc, dec)  # "about the same size"
    ratio = {k: k * (enc + dec) / (enc + k * dec) for k in (5, 50)}
    assert (round(ratio[5], 1), round(ratio[50])) == (1.7, 2), ratio
    for f in longer:  # decoder passes per image: one a step for 10 epochs against 50 for 2
        passes = f["models"]["5"]["epochs"] * 1 / (f["settings"]["epochs"] * 50)
        assert passes == 0.1, passes
    assert round(5 * (enc + dec) / (enc + 50 * dec), 1) == 0.2  # "about a fifth"


def test_with_k_times_the_steps_the_one_draw_model_beats_the_iwae(longer, runs):
    """'Its L_1000 is above the IWAE's by 37 to 42 nats at k = 5 and by 77 to 78 at k = 50, and
    its ELBO is above the IWAE's too, in every seed (each more than 20 paired standard errors).
    Even the 10-epoch model ... is above that IWAE by 26 to 33 nats (more than 25 paired
    standard errors in every seed). ... the one-draw model's L_1000 rises by 97 to 104 nats from 2 to 100 epochs, and
    its active units at 0.01 fall from 49 or 50 of 50 to 19 to 29.'"""
    for k, want in (("5", (37, 42)), ("50", (77, 78))):
        d = [f["models"][k]["iwae_minus_longer"]["bound"] for f in longer]
        assert all(_z(x) < -20 for x in d), d
        assert _range([-x[0] for x in d], 0) == want, d
        e = [f["models"][k]["iwae_minus_longer"]["elbo"] for f in longer]
        assert all(_z(x) < -20 for x in e), e
    ten = [f["models"]["5"]["iwae50_minus_longer"]["bound"] for f in longer]
    assert all(_z(x) < -25 for x in ten), ten
    assert _range([-x[0] for x in ten], 0) == (26, 33), ten
    rise = [f["models"]["50"]["bound_minus_k1"][0] for f in longer]
    assert _range(rise, 0) == (97, 104), rise
    assert {m["1"]["active"]["0.01"] for m in runs} == {49, 50}
    active = [f["models"]["50"]["active"]["0.01"] for f in longer]
    assert (min(active), max(active)) == (19, 29), active


@pytest.fixture(scope="module")
def dreg():
    return [_load(f"dreg_seed{s}.json")["models"] for s in SEEDS]


def test_the_dreg_files_match_the_seeds(runs, dreg):
    for s, m, d in zip(SEEDS, runs, dreg):
        assert _load(f"dreg_seed{s}.json")["settings"]["dreg_k"] == [5, 50]
        assert d["1"]["bound"] == m["1"]["bound"]  # k = 1 is the same IWAE model
        for k in ("5", "50"):  # the IWAE's active units recorded beside DReG's are the seed's
            assert d[k]["iwae_active"] == m[k]["active"], (s, k)


def test_dreg_raises_the_bound_at_k50_in_every_seed(dreg):
    d = [x["50"]["dreg_minus_iwae"]["bound"] for x in dreg]
    assert all(_z(x) > 9 for x in d), d  # "more than 9 paired standard errors in each"
    assert round(min(x[0] for x in d), 1) == 1.9 and round(max(x[0] for x in d), 1) == 3.4, d
    # "mean over the seeds 2.4, standard error 0.5": the seeds' mean and its se from their spread
    diffs = np.array([x[0] for x in d])
    mean, se = diffs.mean(), diffs.std(ddof=1) / np.sqrt(len(diffs))
    assert (round(mean, 1), round(se, 1)) == (2.4, 0.5), (mean, se)
    assert mean > 3 * se  # the three seeds' mean, not only each seed's paired se


def test_at_k5_the_seeds_disagree_on_the_sign(dreg):
    d = [x["5"]["dreg_minus_iwae"]["bound"] for x in dreg]
    assert all(abs(_z(x)) > 7 for x in d), d  # each beyond 7 paired se
    below = sorted(round(x[0], 1) for x in d if x[0] < 0)
    above = [round(x[0], 1) for x in d if x[0] > 0]
    assert below == [-4.0, -1.1] and above == [1.6], d
    assert d[0][0] < 0  # this chapter's seed is one of the two below


def test_the_dreg_elbo_has_no_consistent_direction(dreg):
    e50 = [x["50"]["dreg_minus_iwae"]["elbo"][0] for x in dreg]
    assert [round(v) for v in e50] == [-28, 152, -247], e50
    e5 = [x["5"]["dreg_minus_iwae"]["elbo"] for x in dreg]
    assert sorted(_z(x) < -13 for x in e5) == [False, True, True], e5  # two below by > 13 se
    assert sum(abs(_z(x)) < 2 for x in e5) == 1, e5  # the third within 2 se


def test_dreg_active_units(dreg):
    at01 = {
        k: [(x[k]["active"]["0.1"], x[k]["iwae_active"]["0.1"]) for x in dreg] for k in ("5", "50")
    }
    for k, pairs in at01.items():  # fewer in some seeds, more in others, at both k
        assert any(a < b for a, b in pairs) and any(a > b for a, b in pairs), (k, pairs)
    assert all(x[k]["active"]["0.01"] == 50 for x in dreg for k in ("5", "50"))
    # "as in the IWAE models at the same k": the same at 0.01 in every seed
    assert all(x[k]["iwae_active"]["0.01"] == 50 for x in dreg for k in ("5", "50"))


def test_dreg_bound_rises_from_5_to_50_and_its_cpu(dreg):
    steps = [_z(x["50"]["bound_minus_prev"]) for x in dreg]
    assert min(steps) > 20, steps
    cpu = [x["50"]["train_cpu_s"] for x in dreg]
    assert round(min(cpu)) == 114 and round(max(cpu)) == 149, cpu


# ---- the two gaps of the IWAE models (iwae_gaps/gaps_seed*.json): "The two gaps of these models"

GAPS_DIR = Path(__file__).resolve().parents[1] / "measurements" / "iwae_gaps"


@pytest.fixture(scope="module")
def gaps():
    return [json.loads((GAPS_DIR / f"gaps_seed{s}.json").read_text()) for s in SEEDS]


def _gap(g, k, key):
    return g["summary"][k][key]


def test_the_gap_files_are_the_chapters_settings(gaps, runs):
    for s, g in zip(SEEDS, gaps):
        assert g["seed"] == s
        assert g["settings"] == {
            "k_train": [1, 5, 50],
            "images": 200,
            "steps": [200, 400, 800, 1600],
            "summary_steps": 400,
            "k_eval": 1000,
        }


def _range(values, digits=1):
    return round(min(values), digits), round(max(values), digits)


def test_the_fitted_gaussians_elbo_rises_while_the_encoders_falls(gaps):
    rise = [_gap(g, "50", "elbo_star_minus_first") for g in gaps]
    assert all(v > 5 * se for v, se in rise), rise
    assert _range([v for v, _ in rise], 0) == (6, 14), rise  # "by 6 to 14 nats"
    longest = [g["summary_longest"]["50"]["elbo_star_minus_first"][0] for g in gaps]
    assert _range(longest, 0) == (10, 16), longest  # "10 to 16 after 1600 steps"
    fall = [-_gap(g, "50", "elbo_enc_minus_first")[0] for g in gaps]
    assert _range(fall, 0) == (36, 671), fall
    # "the amortization gap grows by more than the ELBO falls"
    for g in gaps:
        assert (
            _gap(g, "50", "amortization_minus_first")[0] > -_gap(g, "50", "elbo_enc_minus_first")[0]
        )


def test_the_amortization_gap_grows_at_each_step(gaps):
    for g in gaps:
        for k in ("5", "50"):
            d = _gap(g, k, "amortization_minus_prev")
            assert d[0] > 4 * d[1], (k, d)
    at1 = [_gap(g, "1", "amortization")[0] for g in gaps]
    at50 = [_gap(g, "50", "amortization")[0] for g in gaps]
    assert _range(at1) == (2.4, 4.4), at1  # "2.4 to 4.4 nats"
    assert (round(min(at50)), round(max(at50), -1)) == (52, 680), at50  # "52 to 680"


def test_the_approximation_gap_grows_at_each_step_by_more_than_10_se(gaps):
    for g in gaps:
        for summary in ("summary", "summary_longest"):  # 400 and 1600 steps
            for k in ("5", "50"):
                d = g[summary][k]["approximation_minus_prev"]
                assert d[0] > 10 * d[1], (summary, k, d)
    at1 = [_gap(g, "1", "approximation")[0] for g in gaps]
    at50 = [_gap(g, "50", "approximation")[0] for g in gaps]
    assert _range(at1) == (4.4, 5.4), at1
    assert _range(at50) == (15.9, 18.9), at50
    growth = [g["summary_longest"]["50"]["approximation_minus_first"][0] for g in gaps]
    assert _range(growth, 0) == (9, 10), growth  # "with 1600 steps ... 9 to 10 nats"


def test_the_last_doubling_of_the_fits(gaps):
    move50 = [_gap(g, "50", "elbo_star_1600_minus_800")[0] for g in gaps]
    move1 = [_gap(g, "1", "elbo_star_1600_minus_800")[0] for g in gaps]
    assert _range(move50) == (0.5, 1.4), move50  # "by 0.5 to 1.4 nats"
    assert round(max(move1), 1) == 0.2, move1  # "at most 0.2"
    in_se = [m / g["summary_longest"]["50"]["approximation"][1] for g, m in zip(gaps, move50)]
    assert round(max(in_se), 1) == 2.3, in_se  # "up to 2.3 standard errors of the gap"
    times = [
        g["summary_longest"]["50"]["approximation_minus_first"][0] / (m50 - m1)
        for g, m50, m1 in zip(gaps, move50, move1)
    ]
    assert _range(times, 0) == (8, 21), times  # "8 to 21 times the difference"
    before = [_gap(g, "50", "elbo_star_800_minus_400")[0] for g in gaps]
    assert all(m < b / 2 for m, b in zip(move50, before)), (move50, before)  # "under half"


def test_the_iwae_encoders_q_is_wider_and_a_better_proposal(gaps):
    wider, better = [], []
    for g in gaps:
        for k in ("5", "50"):
            w, d = _gap(g, k, "log_var_enc_minus_star"), _gap(g, k, "bound_star_minus_enc")
            assert w[0] > 30 * w[1] and d[0] < -4 * d[1], (k, w, d)
            wider.append(w[0])
            better.append(-d[0])
    assert _range(wider, 2) == (0.13, 0.21), wider
    assert _range(better) == (0.4, 1.5), better
    # k_train = 1: not wider; q* the better proposal in two seeds (> 7 se), within 1 se in one
    assert all(_gap(g, "1", "log_var_enc_minus_star")[0] < 0.01 for g in gaps)
    z = sorted(
        _gap(g, "1", "bound_star_minus_enc")[0] / _gap(g, "1", "bound_star_minus_enc")[1]
        for g in gaps
    )
    assert abs(z[0]) < 1 and z[1] > 7 and z[2] > 7, z


# ---- the L_5000 check of those gaps (iwae_gaps/l5000_seed*.json, measure_iwae_gaps.py --l5000)


@pytest.fixture(scope="module")
def l5000():
    return [json.loads((GAPS_DIR / f"l5000_seed{s}.json").read_text()) for s in SEEDS]


def _best(per_image, k_eval):
    """The higher (by its mean) of L_k under q_enc and under q*, per image, with gap_summary's
    rule (q_enc on a tie): the stand-in for log p(x)."""
    enc, star = (np.asarray(per_image[f"bound_{n}_{k_eval}"]) for n in ("enc", "star"))
    return star if star.mean() > enc.mean() else enc


def _picked(per_image, k_eval):
    enc, star = (np.mean(per_image[f"bound_{n}_{k_eval}"]) for n in ("enc", "star"))
    return "bound_star" if star > enc else "bound_enc"


def _paired(a, b):
    d = np.asarray(a) - np.asarray(b)
    return d.mean(), d.std(ddof=1) / np.sqrt(len(d))


def test_the_l5000_check_refits_the_gaps_q_star_and_redraws(gaps, l5000):
    """The refitted q* and the L_1000 draws are the gap files' (their L_1000 to the files'
    rounding); L_5000 uses other draws; the files' summaries are these per-image numbers'."""
    for s, g, c in zip(SEEDS, gaps, l5000):
        assert c["seed"] == s
        assert c["settings"] == {
            "k_eval": [1000, 5000],
            "draw_seeds": [2, 3],
            "fit_steps": g["settings"]["summary_steps"],
            "fit_learning_rate": 0.02,
            "fit_draws": 5,
        }
        for k in K:
            row = c["models"][k]
            assert row["l1000_max_abs_diff_from_file"] < 1e-4
            pi = row["per_image"]
            for n in ("enc", "star"):
                file = np.asarray(g["per_image"][k][f"bound_{n}"])
                assert np.abs(np.asarray(pi[f"bound_{n}_1000"]) - file).max() < 2e-4
            # the stand-in picked from these bounds is the one the gap file's summary names
            assert _picked(pi, 1000) == g["summary"][k]["log_px"] == row["log_px_1000"]
            assert _picked(pi, 5000) == row["log_px_5000"]
            mean, se = _paired(_best(pi, 5000), _best(pi, 1000))
            assert row["best_l5000_minus_best_l1000"] == pytest.approx([mean, se], abs=1e-3)


def _approximation(g, c, k, steps):
    """The approximation gap against the L_5000 stand-in, per image, with the fit of ``steps``."""
    best = _best(c["models"][k]["per_image"], 5000)
    return best - np.asarray(g["per_image"][k][f"elbo_star_{steps}"])


def test_against_l5000_the_approximation_gap_moves_little_and_still_grows(gaps, l5000):
    """'The stand-in taken with 5000 draws is higher than log p-hat by at most 0.33 nats (standard
    error 0.07), at most 2.3% of that model's 400-step approximation gap, and by less than two
    standard errors in five of the nine models (with q-hat* alone ... 0.5 to 0.8 nats). Against
    L_5000 the approximation gap still grows from k_train = 1 to 50, by 11 to 15 nats with the
    400-step fits and 9 to 11 with the 1600-step ones, each step by more than 10 paired standard
    errors ... about 9 nats (the smallest growth above).'"""
    rises = [
        (c["models"][k]["best_l5000_minus_best_l1000"], _gap(g, k, "approximation")[0])
        for g, c in zip(gaps, l5000)
        for k in K
    ]
    assert all(v > -2 * se for (v, se), _ in rises), rises  # L_5000 >= L_1000, up to the noise
    (top, top_se), _ = max(rises, key=lambda r: r[0][0])
    assert (round(top, 2), round(top_se, 2)) == (0.33, 0.07), rises
    assert round(max(v / gap for (v, _), gap in rises), 3) == 0.023, rises
    assert all(v + 2 * se < 0.05 * gap for (v, se), gap in rises), rises  # even at +2 se
    assert sum(v < 2 * se for (v, se), _ in rises) == 5, rises
    # "with q-hat* alone as the proposal the k_train = 50 models' bound rises by 0.5 to 0.8 nats;
    # there the encoder's q is the better proposal"
    star50 = [c["models"]["50"]["l5000_minus_l1000_star"] for c in l5000]
    assert all(v > 4 * se for v, se in star50) and _range([v for v, _ in star50]) == (0.5, 0.8)
    assert all(c["models"]["50"]["log_px_5000"] == "bound_enc" for c in l5000)
    growth = {}
    for steps in (400, 1600):
        for g, c in zip(gaps, l5000):
            a = {k: _approximation(g, c, k, steps) for k in K}
            for prev, k in (("1", "5"), ("5", "50")):
                mean, se = _paired(a[k], a[prev])
                assert mean > 10 * se, (steps, prev, k, mean, se)
            growth.setdefault(steps, []).append(_paired(a["50"], a["1"])[0])
    assert _range(growth[400], 0) == (11, 15), growth
    assert _range(growth[1600], 0) == (9, 11), growth
    assert round(min(growth[400] + growth[1600])) == 9, growth


# ---- the amortized flow (flow_seed*.json, flow_e10_n60000_seed*.json), the chapter's section
# "A flow inside the encoder"


@pytest.fixture(scope="module")
def flow():
    return [_load(f"flow_seed{s}.json") for s in SEEDS]


@pytest.fixture(scope="module")
def flow_long():
    return [_load(f"flow_e10_n60000_seed{s}.json") for s in SEEDS]


def test_the_flow_files_are_the_chapters_recipe_and_models(runs, flow, flow_long):
    for s, m, f, fl in zip(SEEDS, runs, flow, flow_long):
        assert f["seed"] == fl["seed"] == s
        assert f["settings"]["flow_steps"] == 2 and f["settings"]["flow_hidden"] == 100
        assert (f["settings"]["epochs"], f["settings"]["n_train"]) == (2, 10000)
        assert (fl["settings"]["epochs"], fl["settings"]["n_train"]) == (10, 60000)
        assert f["settings"]["k_train"] == [1, 50] and fl["settings"]["k_train"] == [1]
        for k in ("1", "50"):  # the models without the flow are the seed's IWAE models
            assert f["models"][k]["base"]["bound"][0] == pytest.approx(m[k]["bound"][0], abs=1e-9)
            assert f["models"][k]["base"]["elbo"][0] == pytest.approx(m[k]["elbo"][0], abs=1e-9)


def _flow_range(files, k, key, digits=1, sub=None):
    v = [(f["models"][k][sub] if sub else f["models"][k])[key][0] for f in files]
    return round(min(v), digits), round(max(v), digits)


def test_the_flow_raises_bound_and_elbo_and_shrinks_the_total_gap_at_k1(flow):
    rows = [f["models"]["1"] for f in flow]
    assert all(_z(r["bound"]) > 12 and _z(r["elbo"]) > 13 and _z(r["total_gap"]) < -9 for r in rows)
    assert all(r["elbo"][0] > r["bound"][0] for r in rows)  # "higher by more"
    assert _flow_range(flow, "1", "bound") == (4.2, 8.1)
    assert _flow_range(flow, "1", "elbo", 0) == (8, 14)  # "7.8 to 14"
    assert round(min(r["elbo"][0] for r in rows), 1) == 7.8
    assert _flow_range(flow, "1", "total_gap") == (-5.4, -3.6)
    assert _flow_range(flow, "1", "log_det", 0) == (-12, -10)  # it narrows q_0 ...
    assert _flow_range(flow, "1", "log_var", 2) == (0.47, 0.59)  # ... which is wider
    assert all(_z(r["log_var"]) > 20 for r in rows)
    assert _flow_range(flow, "1", "entropy") == (1.5, 2.5)  # on balance q_T is wider
    assert all(_z(r["entropy"]) > 19 for r in rows)


def test_a_wider_gaussian_encoder_does_not_give_the_flows_gain(flow):
    wide = [round(f["models"]["1"]["wide"]["bound"][0], 1) for f in flow]
    assert wide == [-1.5, -5.4, 0.9], wide
    fw = [f["models"]["1"]["flow_minus_wide"]["bound"] for f in flow]
    assert _flow_range(flow, "1", "bound", sub="flow_minus_wide") == (6.2, 9.7)
    assert all(_z(d) > 12 for d in fw), fw
    for f in flow:  # "more weights than the encoder and the flow's unmasked weights together"
        assert f["settings"]["flow_hidden"] == 100 and f["settings"]["flow_steps"] == 2
    d, h, enc = 50, 100, lambda a, b: 784 * a + a + a * b + b + b * 2 * d + 2 * d
    unmasked_per_step = d * h + h + h * 2 * d + 2 * d + 2 * d * h  # an upper bound
    assert enc(240, 240) > enc(200, 200) + 2 * unmasked_per_step


def test_at_k50_the_flow_adds_little_and_the_elbo_has_no_direction(flow):
    rows = [f["models"]["50"] for f in flow]
    bound = [r["bound"] for r in rows]
    assert [round(b[0], 1) for b in bound] == [1.1, 0.4, 0.1], bound
    assert [round(_z(b), 1) for b in bound] == [7.9, 3.4, 0.7], bound
    elbo = [round(r["elbo"][0], -1) for r in rows]
    assert elbo == [140, 590, -130], elbo
    assert all(abs(_z(r["elbo"])) > 2 for r in rows)  # each sign beyond its own noise


def test_on_the_longer_schedule_the_gain_shrinks_and_a_wider_encoder_gets_most(flow, flow_long):
    rows = [f["models"]["1"] for f in flow_long]
    assert _flow_range(flow_long, "1", "bound") == (2.7, 3.0)
    assert _flow_range(flow_long, "1", "elbo") == (1.9, 2.4)
    assert all(_z(r["bound"]) > 5 and _z(r["elbo"]) > 5 for r in rows)
    assert _flow_range(flow_long, "1", "bound", sub="wide") == (1.7, 2.0)
    assert all(_z(r["wide"]["bound"]) > 5 for r in rows)
    assert all(r["wide"]["bound"][0] > r["bound"][0] / 2 for r in rows)  # "most of it"
    fw = [r["flow_minus_wide"]["bound"] for r in rows]
    assert _flow_range(flow_long, "1", "bound", sub="flow_minus_wide") == (0.6, 1.2)
    assert round(min(_z(d) for d in fw), 1) == 2.5 and round(max(_z(d) for d in fw), 1) == 5.1
    fwe = [_z(r["flow_minus_wide"]["elbo"]) for r in rows]  # two seeds above, one within 1 se
    assert sorted(round(z, 1) for z in fwe) == [-0.3, 2.2, 3.0], fwe
    assert _flow_range(flow_long, "1", "total_gap") == (0.4, 0.7)  # now larger with the flow
    assert [round(_z(r["total_gap"]), 1) for r in rows] == [4.5, 4.8, 2.1]
    assert _flow_range(flow_long, "1", "entropy") == (-1.3, -0.9)  # and q_T the narrower
    for short, long in zip(flow, flow_long):  # smaller in every seed
        assert long["models"]["1"]["bound"][0] < short["models"]["1"]["bound"][0]
    base = [f["models"]["1"]["base"]["bound"][0] for f in flow_long]
    assert all(-106 < b < -104 for b in base), base  # "about -105"
    assert all(-205 < f["models"]["1"]["base"]["bound"][0] < -199 for f in flow)  # "-200"


def test_the_flows_training_cost(flow, flow_long):
    ratios = [
        f["models"][k]["train_cpu_s"]["2"] / f["models"][k]["train_cpu_s"]["0"]
        for files, ks in ((flow, ("1", "50")), (flow_long, ("1",)))
        for f in files
        for k in ks
    ]
    assert round(min(ratios), 1) == 1.2 and round(max(ratios), 1) == 1.7, ratios


def test_the_longest_one_draw_runs_come_within_14_to_16_nats_of_burda_et_al(longer):
    """'every 158-step model of these runs (IWAE and one-draw VAE) and of the control is more
    than 90 nats below theirs, the one-draw model trained for 100 epochs ("Equal decoder passes"
    above) 14 to 16 nats below' (86.76, their worst number)."""
    gap = [-f["models"]["50"]["bound"][0] - BURDA_TABLE1[1][0] for f in longer]
    assert all(f["models"]["50"]["epochs"] == 100 for f in longer)
    assert _range(gap, 0) == (14, 16), gap


def test_the_cpu_times_quoted_for_the_longer_runs_and_the_50_draw_iwae(runs, longer):
    """'the files' CPU times, taken under varying load, cannot settle it: 73 to 84 s for the
    100-epoch runs against 89 to 106 s for the 50-draw IWAE' (the numbers only)."""
    longer_s = [f["models"]["50"]["train_cpu_s"] for f in longer]
    iwae_s = [m["50"]["train_cpu_s"] for m in runs]
    assert _range(longer_s, 0) == (73, 84) and _range(iwae_s, 0) == (89, 106), (longer_s, iwae_s)
