"""Chapter 9's importance-weighted training runs: one recipe, used by the chapter and by
``scripts/measure_iwae_training.py`` (which runs it for several seeds).

Every model is Burda et al.'s 200-200 tanh network with 50 latents and a Bernoulli likelihood,
trained on the first ``N_TRAIN`` training images, binarized afresh each epoch, for ``EPOCHS``
epochs at batch ``BATCH`` with Adam at 1e-3: chapter 10's short schedule. Models with different
k_train share the seed, so they start from the same weights and see the same batches.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import torch

from ..errors import CourseError, check_positive_int
from ..evaluate import (
    active_units,
    elbo_given_posterior,
    fit_local_posterior,
    iwae_bound,
    log_importance_weights,
)
from ..flows import fit_local_flow, flow_log_weights, flow_moments, per_image_flow
from ..gradients import standard_normal
from ..iwae import (
    ESTIMATORS,
    gaussian_log_weights,
    gradient_snr,
    iwae_objective,
    output_gradient_draws,
    output_jacobians,
    vae_log_joint,
    weight_snr,
)
from ..iwae_training import build_iwae
from ..models import build_vae
from ..montecarlo import mean_and_se, paired_difference
from ..train import train_vae_dynamic
from .cache import load_or_train
from .course_models import binary_test_images, mnist

N_TRAIN = 10000
EPOCHS = 2
BATCH = 128
LATENT = 50
HIDDEN = (200, 200)
ACTIVATION = "tanh"
K_TRAIN = (1, 5, 50)
K_EVAL = 1000  # the test bound L_1000
N_EVAL = 200  # test images of every L_1000 and ELBO number (a random subset, seed 10)
N_ACTIVE = 2000  # test images over which the encoder's mean varies (active units)
THRESHOLDS = (0.01, 0.1, 0.5)  # chapter 8's activity thresholds
SNR_K = (1, 10, 100)  # k of the gradient SNR at a trained encoder's output
SNR_IMAGES = 6  # the first 6 of chapter 8's 200 test images
SNR_DRAWS = 400  # gradient draws per image, estimator and k
GAP_STEPS = 400  # Adam steps of each per-image fit (chapter 8's protocol)
FLOW_STEPS = 2  # IAF steps of the amortized flow
FLOW_HIDDEN = 100  # hidden units of each step's masked network
WIDE_ENCODER = (240, 240)  # a Gaussian encoder with about as many weights as encoder + flow
MOMENT_DRAWS, MOMENT_SEED = 1000, 3  # draws of a flow q whose moments start a Gaussian fit


def eval_rows():
    """Indices of the N_EVAL test images (seed 10)."""
    return np.random.default_rng(10).permutation(10000)[:N_EVAL]


def get_iwae(
    k, seed=0, estimator="iwae", flow_steps=0, epochs=EPOCHS, n_train=N_TRAIN, encoder_units=None
):
    """``(model, loaded)``: the :class:`~vae_course.iwae_training.IWAE` trained with k = ``k``;
    ``estimator="dreg"`` trains the same model (seed, schedule, data order, initial weights)
    with DReG's gradient for the encoder; ``flow_steps`` > 0 the same model with an amortized
    IAF of FLOW_HIDDEN units after the encoder's Gaussian. ``epochs`` and ``n_train`` (the
    first n_train training images) change the schedule; the default is the chapter's.
    ``encoder_units`` (e.g. WIDE_ENCODER) gives the Gaussian encoder other hidden layers: the
    control for the flow's extra weights."""

    def train():
        keras.utils.set_random_seed(seed)
        model = build_iwae(
            k,
            LATENT,
            hidden_units=HIDDEN,
            activation=ACTIVATION,
            estimator=estimator,
            flow_steps=flow_steps,
            flow_hidden_units=FLOW_HIDDEN,
            encoder_hidden_units=encoder_units,
        )
        train_vae_dynamic(
            model, mnist()[0][:n_train], epochs=epochs, seed=seed, verbose=0, batch_size=BATCH
        )
        return model

    flow = f"_flow{flow_steps}" if flow_steps else ""
    n = "" if n_train == N_TRAIN else f"_n{n_train}"
    enc = "" if encoder_units is None else "_enc" + "x".join(str(u) for u in encoder_units)
    return load_or_train(f"ch09_{estimator}{flow}{enc}_k{k}_{epochs}ep{n}_seed{seed}", train)


def get_kvae(k, seed=0):
    """``(model, loaded)``: the control, a VAE trained on the k-draw ELBO (``kl="mc"``,
    ``num_mc_samples=k``) with :func:`get_iwae`'s seed, schedule, data order and initial weights:
    it gets the IWAE's k draws per image but averages their log weights instead of log-mean-exp
    (Burda et al.'s VAE rows at k > 1)."""

    def train():
        keras.utils.set_random_seed(seed)
        model = build_vae(
            LATENT,
            "bernoulli",
            hidden_units=HIDDEN,
            activation=ACTIVATION,
            num_mc_samples=k,
            kl="mc",
        )
        train_vae_dynamic(
            model, mnist()[0][:N_TRAIN], epochs=EPOCHS, seed=seed, verbose=0, batch_size=BATCH
        )
        return model

    return load_or_train(f"ch09_kvae_k{k}_{EPOCHS}ep_seed{seed}", train)


def measure(model, eval_seed=0):
    """Per test image of :func:`eval_rows`: L_1000 and the ELBO (L_1) from the same 1000 draws,
    and the activity of each latent over the first N_ACTIVE binarized test images.

    Returns a dict of float64 arrays ``bound`` (N_EVAL,), ``elbo`` (N_EVAL,), ``activity``
    (LATENT,). The ELBO is the mean of the 1000 log weights (unbiased for L_1); the bound is
    their log-mean-exp (unbiased for L_1000, which is below log p(x)).
    """
    x = eval_images()
    log_w = log_importance_weights(model, x, K_EVAL, seed=eval_seed)
    activity, _ = active_units(model, binary_test_images()[:N_ACTIVE])
    return {
        "bound": iwae_objective(torch.from_numpy(log_w)).numpy(),
        "elbo": log_w.mean(0),
        "activity": activity,
    }


def flow_comparison(base, flowed, eval_seed=0, num_det_draws=100, evaluated=None):
    """A model with an amortized flow against the same seed's model without, per test image of
    :func:`eval_rows`, paired over the images (``[mean, se]``), the draws of eps shared:

    * ``bound``, ``elbo``: L_1000 and the ELBO (as :func:`measure`), flow minus no flow;
    * ``total_gap``: the change of L_1000 - ELBO, flow minus no flow;
    * ``log_det``: the flow's mean log|det df/dz0| over ``num_det_draws`` draws (below 0: the
      flow narrows its Gaussian q_0); left out when ``flowed`` has no flow (a control);
    * ``entropy``: the entropy of the flow's q (q_0's plus E log|det|) minus that of the other
      model's Gaussian q, paired (left out with ``log_det``);
    * ``log_var``: the mean log sigma^2 of the flow model's q_0 minus the other model's q;

    and ``flow``/``base``: each model's mean L_1000, ELBO and L_1000 - ELBO (``[mean, se]``).
    ``evaluated``: ``{name: per_image(model)}`` already computed (``"base"``, ``"flow"``), to
    reuse.
    """
    res = dict(evaluated or {})
    for name, model in (("base", base), ("flow", flowed)):
        if name not in res:
            res[name] = per_image(model, eval_seed)
    f, b = res["flow"], res["base"]
    out = {key: paired_difference(f[key], b[key]) for key in ("bound", "elbo")}
    out["total_gap"] = paired_difference(f["gap"], b["gap"])
    if getattr(flowed, "flow", None) is not None:
        with torch.no_grad():
            mean, log_var = flowed.encode(eval_images())
            gen = torch.Generator().manual_seed(int(eval_seed))
            eps = torch.randn((num_det_draws, *mean.shape), generator=gen)
            z0 = mean + torch.exp(0.5 * log_var) * eps
            _, log_det = flowed.flow(z0, torch.cat([mean, log_var], -1))
        log_det = log_det.mean(0).to(torch.float64).numpy()
        out["log_det"] = mean_and_se(log_det)
        # entropy of q_T = entropy of q_0 + E log|det|; against the Gaussian model's q
        d_entropy = 0.5 * LATENT * (f["log_var"] - b["log_var"]) + log_det
        out["entropy"] = mean_and_se(d_entropy)
    out["log_var"] = paired_difference(f["log_var"], b["log_var"])
    out["flow"] = {key: mean_and_se(f[key]) for key in ("bound", "elbo", "gap")}
    out["base"] = {key: mean_and_se(b[key]) for key in ("bound", "elbo", "gap")}
    return {
        k: _plain(v) if isinstance(v, tuple) else {n: _plain(a) for n, a in v.items()}
        for k, v in out.items()
    }


def per_image(model, eval_seed=0):
    """Per test image of :func:`eval_rows`: ``bound`` (L_1000), ``elbo``, ``gap`` (their
    difference) from the same 1000 draws, and ``log_var``, the mean log sigma^2 of the encoder's
    Gaussian (q_0 for a model with a flow). float64 arrays."""
    x = eval_images()
    log_w = log_importance_weights(model, x, K_EVAL, seed=eval_seed)
    out = {"bound": iwae_objective(torch.from_numpy(log_w)).numpy(), "elbo": log_w.mean(0)}
    out["gap"] = out["bound"] - out["elbo"]
    with torch.no_grad():
        log_var = [model.encode(x[i : i + 100])[1] for i in range(0, len(x), 100)]
    out["log_var"] = np.concatenate([keras.ops.convert_to_numpy(v) for v in log_var])
    out["log_var"] = out["log_var"].mean(axis=1).astype(np.float64)
    return out


def flow_and_control(base, flowed, wide, eval_seed=0):
    """``(flow - base, wide - base, flow - wide)``: :func:`flow_comparison` for the flow, for the
    control with a wider Gaussian encoder, and between the two, each model evaluated once."""
    ev = {name: per_image(m, eval_seed) for name, m in (("b", base), ("f", flowed), ("w", wide))}
    return (
        flow_comparison(base, flowed, eval_seed, evaluated={"base": ev["b"], "flow": ev["f"]}),
        flow_comparison(base, wide, eval_seed, evaluated={"base": ev["b"], "flow": ev["w"]}),
        flow_comparison(wide, flowed, eval_seed, evaluated={"base": ev["w"], "flow": ev["f"]}),
    )


def eval_images():
    """The N_EVAL binarized test images of :func:`eval_rows` (:func:`measure`'s and the gaps')."""
    return binary_test_images()[eval_rows()]


def gaps(model, x, steps=(GAP_STEPS,)):
    """Chapter 8's two gaps for one model, per image of ``x`` (n, H, W), in nats.

    ``elbo_enc``: the ELBO of the encoder's q; ``elbo_star_<s>``: the ELBO of q*, the Gaussian
    fitted to each image alone for s steps (``fit_local_posterior``: Adam from the encoder's
    output, learning rate 0.02 falling to 0, 5 draws a step); every ELBO from the same 1000
    draws of eps with the analytic KL. ``bound_enc`` and ``bound_star``: L_1000 with the
    encoder's q and with q* as the proposal (the GAP_STEPS fit, or the last one if ``steps`` has
    no GAP_STEPS). ``log_var_enc`` and ``log_var_star``: the mean over the latents of each q's
    log sigma^2 (how wide it is). Returns float64 arrays.
    """
    q_enc = tuple(keras.ops.convert_to_numpy(a).astype(np.float32) for a in model.encode(x))
    out = {"elbo_enc": elbo_given_posterior(model, x, q_enc, num_samples=K_EVAL, seed=1)}
    fits = {}
    for s in steps:
        fits[s] = fit_local_posterior(model, x, steps=s, learning_rate=0.02, num_samples=5)
        out[f"elbo_star_{s}"] = elbo_given_posterior(model, x, fits[s], num_samples=K_EVAL, seed=1)
    out["bound_enc"] = iwae_bound(model, x, K_EVAL, seed=2)
    q_star = fits.get(GAP_STEPS, fits[steps[-1]])
    out["bound_star"] = iwae_bound(model, x, K_EVAL, seed=2, posterior=q_star)
    # how wide each q is: the mean over the latents of log sigma^2, per image
    out["log_var_enc"] = q_enc[1].mean(axis=1).astype(np.float64)
    out["log_var_star"] = q_star[1].mean(axis=1).astype(np.float64)
    return out


def family_gaps(model, x, steps=(GAP_STEPS,), seed=1, families=("gauss", "flow")):
    """The two gaps in two families of q, per image of ``x`` (n, H, W), for a model with or
    without an amortized flow. The q's:

    * ``enc``: the model's own q (its encoder's Gaussian, and its flow if it has one);
    * ``gauss_<s>``: the Gaussian fitted to each image alone for s steps (chapter 8's
      ``fit_local_posterior``, from the encoder's Gaussian q_0);
    * ``flow_<s>``: the Gaussian and a FLOW_STEPS-step IAF of FLOW_HIDDEN units fitted to each
      image alone for s steps (``fit_local_flow``) from the model's own q: its flow with each
      image's context folded in (``per_image_flow``), or an identity flow without one;
    * ``gaussm_<s>``: for a model with a flow, the Gaussian fitted for s steps from the moments
      of its own q_T (``flow_moments``, MOMENT_DRAWS draws) instead of from q_0.

    ``families`` names which fits to make (``"gauss"``, ``"flow"``, ``"gaussm"``).

    For each q: ``elbo_<q>`` (the mean of K_EVAL log weights) and ``bound_<q>`` (their
    log-mean-exp: L_1000 with q as the proposal), from the same draws of eps for every q.
    Returns float64 arrays.
    """
    log_joint = vae_log_joint(model, x)
    with torch.no_grad():
        mean, log_var = (torch.as_tensor(keras.ops.convert_to_numpy(a)) for a in model.encode(x))
    context = torch.cat([mean, log_var], -1)

    def own_flow():
        return None if model.flow is None else per_image_flow(model.flow, context)

    def weights(m, lv, flow):
        gen, chunks = torch.Generator().manual_seed(seed), []
        with torch.no_grad():
            for _ in range(K_EVAL // 100):  # 100 draws at a time
                eps = standard_normal((100, *m.shape), m, gen)
                if flow is None:
                    chunks.append(gaussian_log_weights(log_joint, eps, m, lv))
                else:
                    chunks.append(flow_log_weights(log_joint, eps, m, lv, flow))
        log_w = torch.cat(chunks).to(torch.float64)
        return log_w.mean(0).numpy(), iwae_objective(log_w).numpy()

    if "gaussm" in families and model.flow is None:
        raise CourseError(
            "family_gaps: families 'gaussm' start from the moments of the model's flow q, and "
            "this model has no flow. Fix: leave 'gaussm' out of families for it."
        )
    qs = {"enc": (mean, log_var, own_flow())}
    moments = None
    if "gaussm" in families:
        moments = flow_moments(mean, log_var, own_flow(), MOMENT_DRAWS, MOMENT_SEED)
    for s in steps:
        fits = {"gauss": None, "gaussm": moments}
        for family, start in fits.items():
            if family in families:
                fit = fit_local_posterior(
                    model, x, steps=s, learning_rate=0.02, num_samples=5, start=start
                )
                qs[f"{family}_{s}"] = (*(torch.as_tensor(a) for a in fit), None)
        if "flow" in families:
            qs[f"flow_{s}"] = fit_local_flow(
                log_joint, mean, log_var, FLOW_STEPS, FLOW_HIDDEN, steps=s, flow=own_flow()
            )
    out = {}
    for name, q in qs.items():
        out[f"elbo_{name}"], out[f"bound_{name}"] = weights(*q)
    return out


def gap_summary(results, steps=GAP_STEPS):
    """From ``{k: gaps(...)}``: per model, paired over the images (``[mean, se]``),

    * ``amortization``: ELBO(q*) - ELBO(q_enc), with q* fitted for ``steps`` steps;
    * ``approximation``: L_1000 - ELBO(q*), against ``log_px``, the higher of the two L_1000
      (under the encoder's q and under q*) by its mean over the images; both are below
      log p(x) on average, so this understates the approximation gap, while a fit that stopped
      short of the best Gaussian overstates it and understates the amortization gap;
    * ``total``: the same L_1000 - ELBO(q_enc); ``log_px`` names which L_1000 it is;
    * ``bound_star_minus_enc``: L_1000 under q* minus under the encoder's q;
    * each gap's paired change against the first model (``<gap>_minus_first``) and against the
      model before it in ``results`` (``<gap>_minus_prev``);
    * the change of ELBO(q_enc) and of ELBO(q*) against the first model, and how much wider
      q_enc is than q* (``log_var_enc_minus_star``: mean log sigma^2, when :func:`gaps` gave it).
    """
    ks = list(results)
    rows, best = {}, {}
    for k, r in results.items():
        which = "bound_star" if r["bound_star"].mean() > r["bound_enc"].mean() else "bound_enc"
        best[k] = r[which]
        e_star = r[f"elbo_star_{steps}"]
        rows[k] = {
            "log_px": which,
            "amortization": e_star - r["elbo_enc"],
            "approximation": best[k] - e_star,
            "total": best[k] - r["elbo_enc"],
        }
    out = {}
    for k, r in results.items():
        row = {"log_px": rows[k]["log_px"]}
        prev = rows[ks[max(ks.index(k) - 1, 0)]]  # the model before this one
        for gap in ("amortization", "approximation", "total"):
            row[gap] = mean_and_se(rows[k][gap])
            row[f"{gap}_minus_first"] = paired_difference(rows[k][gap], rows[ks[0]][gap])
            row[f"{gap}_minus_prev"] = paired_difference(rows[k][gap], prev[gap])
        row["bound_star_minus_enc"] = paired_difference(r["bound_star"], r["bound_enc"])
        e_star, first = r[f"elbo_star_{steps}"], results[ks[0]]
        row["elbo_enc_minus_first"] = paired_difference(r["elbo_enc"], first["elbo_enc"])
        row["elbo_star_minus_first"] = paired_difference(e_star, first[f"elbo_star_{steps}"])
        if "log_var_enc" in r:
            row["log_var_enc_minus_star"] = paired_difference(r["log_var_enc"], r["log_var_star"])
        out[k] = row
    return {k: {n: _plain(v) for n, v in row.items()} for k, row in out.items()}


def summary(results):
    """The numbers the chapter asserts, from ``{k: measure(...)}``: means and standard errors over
    the N_EVAL images, paired differences against k = 1 and against the next smaller k, the total
    gap L_1000 - L_1, active units at each threshold."""
    out = {}
    ks = list(results)
    for k, r in results.items():
        row = {}
        prev = results[ks[max(ks.index(k) - 1, 0)]]  # the next smaller k_train
        for key in ("bound", "elbo"):
            row[key] = mean_and_se(r[key])
            row[f"{key}_minus_k1"] = paired_difference(r[key], results[1][key])
            row[f"{key}_minus_prev"] = paired_difference(r[key], prev[key])
        row["total_gap"] = paired_difference(r["bound"], r["elbo"])
        row["active"] = {str(t): int((r["activity"] > t).sum()) for t in THRESHOLDS}
        out[k] = row
    return {k: {n: _plain(v) for n, v in row.items()} for k, row in out.items()}


def _plain(v):
    if isinstance(v, tuple):
        return [float(a) for a in v]
    return v


def timed_models(seed, get=None, ks=K_TRAIN):
    """``{k: (model, cpu_seconds)}`` for every k in ``ks`` from ``get`` (default :func:`get_iwae`);
    cpu_seconds is None when the model was loaded from the cache."""
    get = get_iwae if get is None else get
    out = {}
    for k in ks:
        start = time.process_time()
        model, loaded = get(k, seed)
        out[k] = (model, None if loaded else time.process_time() - start)
    return out


def snr_draws(vae, x, seed=0, ks=SNR_K):
    """``{(estimator, k): draws}``: the gradient draws at the encoder's outputs for the images
    ``x`` (n, H, W) that :func:`trained_snr`, :func:`trained_weight_snr` and
    :func:`gradient_moments` read, each (n, SNR_DRAWS, 2d), seed ``1000 * seed + k`` (the eps of
    :func:`~vae_course.iwae.snr_against_k`; the two estimators share them)."""
    mean, log_var = (t.detach() for t in vae.encode(x))
    return {
        (est, k): output_gradient_draws(vae, x, mean, log_var, k, SNR_DRAWS, est, 1000 * seed + k)
        for est in ESTIMATORS
        for k in ks
    }


def trained_snr(vae, x, seed=0, ks=SNR_K, draws=None):
    """``{(estimator, k): (snr, se)}`` as :func:`~vae_course.iwae.snr_against_k` gives it, at the
    encoder's output for the images ``x`` (n, H, W): k in ``ks``, SNR_DRAWS draws, draw seed
    ``seed``.
    ``draws``: :func:`snr_draws`'s result for the same arguments, to reuse draws already taken."""
    draws = snr_draws(vae, x, seed, ks) if draws is None else draws
    return {
        (est, k): tuple(np.stack(a) for a in zip(*map(gradient_snr, draws[est, k])))
        for est in ESTIMATORS
        for k in ks
    }


def trained_weight_snr(vae, x, seed=0, ks=SNR_K, num_boot=200, draws=None):
    """The SNR of IWAE's and DReG's gradient with respect to the encoder's weights, from the
    draws :func:`trained_snr` takes at its outputs (the same eps: seed ``1000 * seed + k``).

    Per image, each weight's gradient is J^T g (``iwae.weight_snr``), and every weight into one
    unit has that unit's SNR (its input is fixed by the image), the SNR of the unit's bias. The
    summaries, each a median over the images of a median per image:

    * ``per_weight``: over the weights the image reaches (units counted by their fan-in);
    * ``per_unit``: over the units (their biases), and ``layer_<l>`` over layer l's units;
    * ``batch``: not per image; the median over the weights of the SNR of the images' summed
      gradient, each image's variance from its own draws (the variance the sum would have with
      draws independent between images; the weights into one unit differ here, through which
      images reach them, but units still count by their fan-in).

    Each ``[value, se]``, the se over ``num_boot`` bootstrap resamples of the draws, the same
    resamples for both estimators, which share their eps; ``dreg_over_iwae_<k>`` gives the ratio
    of DReG's summary to IWAE's with its paired bootstrap se. Returns that dict and the number
    of weights and of units.
    """
    jac = output_jacobians(vae.encoder, x)
    weights = vae.encoder.trainable_weights
    bias_layer = np.concatenate(
        [
            np.full(int(np.prod(w.shape)), i if len(w.shape) == 1 else -1)
            for i, w in enumerate(weights)
        ]
    )
    layers = [i for i in np.unique(bias_layer) if i >= 0]
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, SNR_DRAWS, SNR_DRAWS) for _ in range(num_boot)]

    def summaries(g):
        per_image, batch = weight_snr(jac, g)
        units = per_image[:, bias_layer >= 0]

        def med(a):
            return float(np.median(np.nanmedian(a, axis=1)))

        by_layer = [med(per_image[:, bias_layer == i]) for i in layers]
        return np.array([med(per_image), float(np.nanmedian(batch)), med(units), *by_layer])

    draws = snr_draws(vae, x, seed, ks) if draws is None else draws
    names = ("per_weight", "batch", "per_unit", *(f"layer_{i + 1}" for i in range(len(layers))))
    out = {}
    for k in ks:
        value, boots = {}, {}
        for est in ESTIMATORS:
            g = draws[est, k]
            value[est] = summaries(g)
            boots[est] = np.array([summaries(g[:, idx]) for idx in resamples])
            out[f"{est}_{k}"] = {
                n: [float(value[est][i]), float(boots[est][:, i].std(ddof=1))]
                for i, n in enumerate(names)
            }
        ratio, ratio_boots = value["dreg"] / value["iwae"], boots["dreg"] / boots["iwae"]
        out[f"dreg_over_iwae_{k}"] = {
            n: [float(ratio[i]), float(ratio_boots[:, i].std(ddof=1))] for i, n in enumerate(names)
        }
    return out, int(jac.shape[2]), int((bias_layer >= 0).sum())


def gradient_moments(draws, num_boot=200, seed=0):
    """The mean and the noise of gradient draws apart: ``{kind: {"abs_mean": [m, se], "sd":
    [m, se]}}`` for the kinds ``"mu"`` and ``"log_var"`` (the first and second half of the last
    axis), each the median over the images and that kind's components of |mean| or of the
    standard deviation over the draws (ddof 1).

    draws: (n, num_draws, 2d) gradient draws per image, as ``output_gradient_draws`` returns. The
    se is the sd over ``num_boot`` bootstrap resamples of the draws (the same resamples for every
    image, whose draws share their eps). A component's |mean| is biased upward by about
    0.8 sd / sqrt(num_draws) when its true mean is near 0: compare |mean| with that floor.
    """
    g = np.asarray(draws, dtype=np.float64)
    if g.ndim != 3 or g.shape[1] < 3 or g.shape[2] % 2:
        raise CourseError(
            f"draws: expected an array (images, draws >= 3, 2d), got shape {g.shape}. "
            "Fix: pass output_gradient_draws(...)'s result."
        )
    if not np.isfinite(g).all():
        raise CourseError(
            f"draws: {int((~np.isfinite(g)).sum())} of {g.size} entries are not finite. "
            "Fix: check the model and q for NaN or inf before drawing gradients."
        )
    num_boot = check_positive_int(num_boot, "num_boot", 200, minimum=2)
    half = g.shape[2] // 2
    kinds = {"mu": slice(0, half), "log_var": slice(half, None)}

    def stats(a):
        m, sd = np.abs(a.mean(1)), a.std(1, ddof=1)
        return np.array([[np.median(m[:, c]), np.median(sd[:, c])] for c in kinds.values()])

    rng = np.random.default_rng(seed)
    boots = np.array(
        [stats(g[:, rng.integers(0, g.shape[1], g.shape[1])]) for _ in range(num_boot)]
    )
    value, se = stats(g), boots.std(0, ddof=1)
    return {
        kind: {
            name: [float(value[i, j]), float(se[i, j])] for j, name in enumerate(("abs_mean", "sd"))
        }
        for i, kind in enumerate(kinds)
    }


def snr_summary(result, ks=SNR_K, num_boot=200, seed=0):
    """What the chapter asserts of :func:`trained_snr`'s result. For each estimator, over all the
    components and over each kind (``"mu"``: the mean components, ``"log_var"``: the log
    variance components, the first and second half of each row): the median SNR at each k, its
    change from the first k (``median_minus_first``: the median at k minus the median at the
    first k), and the median over the components of the ratio SNR(k) / SNR(previous k) (1/sqrt of
    the k ratio if the SNR fell as on chapter 4's model). Over all components, at each k, the
    number whose DReG SNR is above IWAE's, and above it by more than 2 standard errors.
    Statistics come as ``[value, se]``; the se is their sd when every component's SNR is redrawn
    ``num_boot`` times from a normal with its bootstrap se (a rough guide: it ignores the
    bootstrap's own noise)."""
    rng = np.random.default_rng(seed)
    snr = {key: v[0] for key, v in result.items()}
    boots = [
        {key: v[0] + v[1] * rng.standard_normal(v[0].shape) for key, v in result.items()}
        for _ in range(num_boot)
    ]
    half = snr[ESTIMATORS[0], ks[0]].shape[1] // 2  # the mean components come first
    kinds = {"all": slice(None), "mu": slice(0, half), "log_var": slice(half, None)}

    def with_se(stat):
        return [float(stat(snr)), float(np.std([stat(b) for b in boots], ddof=1))]

    def stats(est, cols):
        def med(s, k):
            return np.median(s[est, k][:, cols])

        return {
            "median_snr": {str(k): with_se(lambda s, k=k: med(s, k)) for k in ks},
            "median_minus_first": {
                str(k): with_se(lambda s, k=k: med(s, k) - med(s, ks[0])) for k in ks[1:]
            },
            "median_ratio_to_prev": {
                str(k): with_se(
                    lambda s, p=p, k=k: np.median(s[est, k][:, cols] / s[est, p][:, cols])
                )
                for p, k in zip(ks, ks[1:])
            },
        }

    out = {"n_components": int(snr[ESTIMATORS[0], ks[0]].size)}
    for est in ESTIMATORS:
        out[est] = stats(est, kinds["all"])
        out[est].update({kind: stats(est, kinds[kind]) for kind in ("mu", "log_var")})
    above, above_2se = {}, {}
    for k in ks:
        (d, d_se), (i, i_se) = result["dreg", k], result["iwae", k]
        above[str(k)] = int((d > i).sum())
        above_2se[str(k)] = int((d - i > 2 * np.hypot(d_se, i_se)).sum())
    out["dreg_above_iwae"], out["dreg_above_iwae_2se"] = above, above_2se
    return out
