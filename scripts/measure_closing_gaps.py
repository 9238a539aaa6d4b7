"""Measure, for one seed, every number chapter 9 asserts on (its settings, another seed).

* the linear-Gaussian model of chapter 4 (q = the prior, x = 2.3): the mean, sd and SNR of the
  gradient for q's mean by IWAE and by DReG, k = 1, 10, 100, 1000, 10,000 draws each;
* chapter 7's 2-latent Bernoulli model *trained with this seed* (3 epochs; seed 0 is the one the
  chapter loads) on the first 30 of chapter 8's 200 test images: the Gaussian q* (400 and 800
  steps), the per-image IAF (from the 400-step q*, 400 steps more), log p(x) by quadrature on
  two grids, L_5000 under q*, and the approximation gaps.

    python scripts/measure_closing_gaps.py --seed 1 --threads 2 --out measurements/closing

Writes closing_seed{S}.json. The model of seed S > 0 is trained into the course cache first.

With ``--latent50`` it runs instead the same per-image flow protocol on chapter 8's 50-latent
model (chapter 7's, trained with this seed) and its 200 test images, against chapter 8's
estimate of log p(x) (L_5000 under q*), and writes flow50_seed{S}.json (``flow_gaps50``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np
import torch

from vae_course.evaluate import elbo_given_posterior, fit_local_posterior, iwae_bound
from vae_course.flows import fit_local_flow, flow_elbo, flow_log_weights
from vae_course.gradients import standard_normal
from vae_course.iwae import (
    ESTIMATORS,
    encoder_gradients,
    gradient_snr,
    grid_log_marginal,
    iwae_objective,
    linear_gaussian_log_joint,
    vae_log_joint,
)
from vae_course.linear_gaussian import LinearGaussian
from vae_course.montecarlo import mean_and_se, paired_difference
from vae_course.tools import course_models

KS, DRAWS = (1, 10, 100, 1000), 10_000


def linear_gaussian(seed):
    model = LinearGaussian(w=2.0, b=0.5, s=0.7)
    log_joint = linear_gaussian_log_joint(model, torch.tensor(2.3, dtype=torch.float64))
    q0 = torch.zeros(1, dtype=torch.float64)
    out = {}
    for est in ESTIMATORS:
        out[est] = {}
        for k in KS:
            g_mu, _ = encoder_gradients(log_joint, q0, q0, k, DRAWS, est, seed=1000 * seed + k)
            snr, se = gradient_snr(g_mu)
            m, m_se = mean_and_se(g_mu[:, 0])
            out[est][str(k)] = {
                "mean": m,
                "mean_se": m_se,
                "sd": float(g_mu.std(ddof=1)),
                "snr": float(snr[0]),
                "snr_se": float(se[0]),
            }
    return out


def flow_gaps(seed):
    x_test = course_models.mnist()[1]
    subset = np.random.default_rng(0).permutation(len(x_test))[:200]
    x9 = course_models.binary_test_images()[subset][:30]
    vae2, _ = course_models.get_burda(2, seed=seed)
    log_joint = vae_log_joint(vae2, x9)
    q_star = {
        s: fit_local_posterior(vae2, x9, steps=s, num_samples=5, seed=seed) for s in (400, 800)
    }
    elbo_g = {
        s: elbo_given_posterior(vae2, x9, q, num_samples=1000, seed=seed + 1)
        for s, q in q_star.items()
    }
    mean4, log_var4 = (torch.as_tensor(a) for a in q_star[400])
    fm, flv, flow = fit_local_flow(log_joint, mean4, log_var4, steps=400, seed=seed)
    elbo_f = flow_elbo(log_joint, fm, flv, flow, num_samples=1000, seed=seed + 1)
    sd4 = torch.exp(0.5 * log_var4)
    zero, one = torch.zeros_like(mean4), torch.ones_like(mean4)
    log_px = grid_log_marginal(log_joint, zero, one, num_points=200, span=5.0)
    log_px_coarse = grid_log_marginal(log_joint, zero, one, num_points=150, span=5.0)
    log_px_wide = grid_log_marginal(log_joint, zero, one, num_points=240, span=6.0)
    log_px_local = grid_log_marginal(log_joint, mean4, sd4, num_points=70, span=7.0)
    l5000 = iwae_bound(vae2, x9, 5000, seed=seed + 2, posterior=q_star[400])
    far = log_px - log_px_local  # the mass away from q*'s mode, in nats
    near = far <= 0.1
    out = {"far": [float(v) for v in far], "n_far": int((~near).sum())}
    for name, a, b in (
        ("gap_gauss400", log_px, elbo_g[400]),
        ("gap_gauss800", log_px, elbo_g[800]),
        ("gap_flow", log_px, elbo_f),
        ("flow_minus_gauss", elbo_f, elbo_g[800]),
        ("steps800_minus_400", elbo_g[800], elbo_g[400]),
        ("l5000_minus_grid", l5000, log_px),
    ):
        out[name], out[name + "_se"] = paired_difference(a, b)
        out[name + "_near"], out[name + "_near_se"] = paired_difference(a[near], b[near])
    out["grid_coarse_moves_max"] = float(np.abs(log_px_coarse - log_px).max())
    out["grid_wide_moves_max"] = float(np.abs(log_px_wide - log_px).max())
    out["q_sd_median"] = float(sd4.median())
    out["mean_log_px"] = float(log_px.mean())
    return out


FLOW50_HIDDEN = 100  # MADE hidden units at 50 latents: >= d - 1, so every degree 1..49 occurs


def flow_gaps50(seed, n_images=200, k_bound=5000, chunk=100):
    """Chapter 8's 50-latent model (chapter 7's, trained with this seed) on chapter 8's 200 test
    images: the Gaussian q* (400 and 800 steps, chapter 8's protocol), the per-image IAF of
    FLOW50_HIDDEN hidden units from the 400-step q* (400 steps more), every ELBO from 1000 draws,
    chapter 8's log p(x) estimate L_5000 under q*, and L_5000 with the fitted flow as the
    proposal (the flow's q_T, exact density, so again a bound in expectation), and the control
    for the flow fit's restart of Adam: the same fit with the flow's learning rate at 0 (only
    the Gaussian moves). The fits' and the draws' seeds are fixed (as chapter 8's); only the
    model changes with ``seed``."""
    x_test = course_models.mnist()[1]
    subset = np.random.default_rng(0).permutation(len(x_test))[:200]
    x8 = course_models.binary_test_images()[subset][:n_images]
    vae50, _ = course_models.get_burda(50, seed=seed)
    log_joint = vae_log_joint(vae50, x8)
    start = time.process_time()
    q_star = {
        s: fit_local_posterior(vae50, x8, steps=s, learning_rate=0.02, num_samples=5, seed=0)
        for s in (400, 800)
    }
    fit_gauss_s = time.process_time() - start
    elbo_g = {
        s: elbo_given_posterior(vae50, x8, q, num_samples=1000, seed=1) for s, q in q_star.items()
    }
    mean4, log_var4 = (torch.as_tensor(a) for a in q_star[400])
    start = time.process_time()
    fm, flv, flow = fit_local_flow(
        log_joint, mean4, log_var4, hidden_units=FLOW50_HIDDEN, steps=400, seed=0
    )
    fit_flow_s = time.process_time() - start
    elbo_f = flow_elbo(log_joint, fm, flv, flow, num_samples=1000, seed=1)
    # the control: the same restart from the 400-step q* (Adam anew, the same draws), the flow's
    # learning rate 0, so that it stays the identity and only the Gaussian moves
    rm, rlv, rflow = fit_local_flow(
        log_joint,
        mean4,
        log_var4,
        hidden_units=FLOW50_HIDDEN,
        steps=400,
        flow_learning_rate=0.0,
        seed=0,
    )
    elbo_r = flow_elbo(log_joint, rm, rlv, rflow, num_samples=1000, seed=1)
    restart_identity = all(
        not np.any(keras.ops.convert_to_numpy(w)) for st in rflow.steps for w in (st.w2, st.b2)
    )
    l5000 = iwae_bound(vae50, x8, k_bound, seed=2, posterior=q_star[400])  # chapter 8's estimate
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():  # L_k with the flow as the proposal, the same k, in chunks
        log_w = torch.cat(
            [
                flow_log_weights(
                    log_joint, standard_normal((chunk, *fm.shape), fm, gen), fm, flv, flow
                )
                for _ in range(k_bound // chunk)
            ]
        )
    l_flow = iwae_objective(log_w.to(torch.float64)).numpy()
    out = {
        "n_images": len(x8),
        "k_bound": k_bound,
        "protocol": {
            "gauss_steps": [400, 800],
            "flow_from_gauss_steps": 400,
            "flow_steps": 400,
            "flow_num_steps": 2,
            "flow_hidden_units": FLOW50_HIDDEN,
            "learning_rate": 0.02,
            "flow_learning_rate": 0.005,
            "draws_per_step": 5,
            "fit_seed": 0,
            "elbo_draws": 1000,
            "restart_control": "the flow's fit with flow_learning_rate 0 (the flow stays the "
            "identity; the same draws)",
        },
    }
    for name, a, b in (
        ("flow_minus_gauss800", elbo_f, elbo_g[800]),
        ("gauss800_minus_400", elbo_g[800], elbo_g[400]),
        ("approx_gauss800", l5000, elbo_g[800]),  # the fitted Gaussian's gap to L_5000
        ("approx_flow", l5000, elbo_f),
        ("lflow_minus_l5000", l_flow, l5000),
        ("restart_minus_gauss800", elbo_r, elbo_g[800]),  # the restart alone
        ("flow_minus_restart", elbo_f, elbo_r),  # the flow beyond the restart
    ):
        out[name] = list(paired_difference(a, b))
    out["share_closed"] = float(np.mean(elbo_f - elbo_g[800]) / np.mean(l5000 - elbo_g[800]))
    out["restart_flow_stayed_identity"] = bool(restart_identity)
    out["mean_l5000"] = float(l5000.mean())
    out["fit_gauss_cpu_s"] = round(fit_gauss_s, 1)
    out["fit_flow_cpu_s"] = round(fit_flow_s, 1)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("measurements/closing"))
    parser.add_argument(
        "--latent50", action="store_true", help="only the per-image flow on the 50-latent model"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    result = {"seed": args.seed, "threads": args.threads}
    if args.latent50:
        result["flow50"] = flow_gaps50(args.seed)
        name = f"flow50_seed{args.seed}.json"
    else:
        result["linear_gaussian"] = linear_gaussian(args.seed)
        result["flow"] = flow_gaps(args.seed)
        name = f"closing_seed{args.seed}.json"
    result["seconds"] = round(time.time() - start, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / name
    path.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path} in {result['seconds']} s")


if __name__ == "__main__":
    main()
