r"""Importance-weighted training objectives and the quality of their gradients (torch).

For k draws z_i = mu + sigma * eps_i from q(z|x) = N(mu, diag sigma^2) and the log weights
log w_i = log p(x, z_i) - log q(z_i | x):

* :func:`iwae_objective` is the estimator of L_k = E[log (1/k) sum_i w_i] that IWAE trains
  on (Burda et al. 2016); with k = 1 it is the ELBO's one-sample estimator;
* :func:`dreg_surrogate` is a function whose gradient with respect to q's parameters is the
  doubly reparameterized gradient (DReG) of L_k (Tucker et al. 2019): the same expectation as
  the gradient of :func:`iwae_objective`, with the score-function part replaced by a second
  reparameterization;
* :func:`encoder_gradients` returns many independent draws of either gradient, and
  :func:`gradient_snr` their signal-to-noise ratio |mean| / sd (Rainforth et al. 2018).

``log_joint`` below is any function z (..., d) -> log p(x, z) (...): the linear-Gaussian model's
(:func:`linear_gaussian_log_joint`) or a VAE's decoder and prior for fixed images
(:func:`vae_log_joint`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .errors import check_positive_int
from .gaussian import diag_gaussian_log_prob, std_normal_log_prob
from .gradients import transform

ESTIMATORS = ("iwae", "dreg")


def gaussian_log_weights(log_joint, eps, mean, log_var, stop_q=False):
    r"""log w = log p(x, z) - log q(z) at z = mean + exp(log_var / 2) eps.

    eps: (k, ..., d); returns (k, ...).

    ``stop_q=True`` evaluates log q with its parameters detached (z still depends on them):
    the form DReG differentiates, in which q's parameters act only through z.
    """
    z = transform(eps, mean, torch.exp(0.5 * log_var))
    q_mean, q_log_var = (mean.detach(), log_var.detach()) if stop_q else (mean, log_var)
    return log_joint(z) - diag_gaussian_log_prob(z, q_mean, q_log_var)


def iwae_objective(log_w):
    r"""log (1/k) sum_i w_i over axis 0 of the log weights (k, ...): one draw of L_k's estimator.

    .. math:: \hat{\mathcal L}_k = \log \frac1k \sum_{i=1}^k w_i

    Biased low for log p(x) (Jensen); with k = 1 it is log w_1, the ELBO's unbiased estimator.
    """
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def dreg_surrogate(log_w_stopped):
    r"""A surrogate whose gradient in q's parameters is DReG's; log weights (k, ...) from
    :func:`gaussian_log_weights` with ``stop_q=True``.

    .. math:: \nabla_\phi \hat{\mathcal L}_k^{\mathrm{DReG}}
              = \sum_{i=1}^k \tilde w_i^{\,2}\,
                \frac{\partial \log w_i}{\partial z_i}\frac{\partial z_i}{\partial \phi},
              \qquad \tilde w_i = \frac{w_i}{\sum_j w_j}

    The normalized weights are held constant (detached). Use it for q's (the encoder's)
    gradient only; the decoder's gradient is the gradient of :func:`iwae_objective`.
    """
    w_tilde = torch.softmax(log_w_stopped, dim=0).detach()
    return (w_tilde**2 * log_w_stopped).sum(0)


def encoder_gradients(log_joint, mean, log_var, num_samples, num_draws, estimator, seed=0):
    r"""``num_draws`` independent draws of d L_k / d(mean, log_var), each from k = ``num_samples``.

    mean, log_var: q's parameters, (d,) tensors. Returns ``(grad_mean, grad_log_var)``, float64
    numpy arrays of shape (num_draws, d). ``estimator`` is ``"iwae"`` (the pathwise gradient of
    :func:`iwae_objective`, score part included) or ``"dreg"`` (:func:`dreg_surrogate`). The
    same ``seed`` gives both estimators the same eps, so their difference is paired.
    ``log_joint`` must map z (k, num_draws, d) to (k, num_draws).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}.")
    k = check_positive_int(num_samples, "num_samples", 100)
    r = check_positive_int(num_draws, "num_draws", 1000)
    # one copy of the parameters per draw: the gradient of the sum is each draw's own gradient
    m = mean.detach().expand(r, -1).clone().requires_grad_(True)
    lv = log_var.detach().expand(r, -1).clone().requires_grad_(True)
    gen = torch.Generator(device=mean.device).manual_seed(int(seed))
    eps = torch.randn((k, r, m.shape[-1]), generator=gen, dtype=m.dtype, device=m.device)
    if estimator == "iwae":
        objective = iwae_objective(gaussian_log_weights(log_joint, eps, m, lv))
    else:
        objective = dreg_surrogate(gaussian_log_weights(log_joint, eps, m, lv, stop_q=True))
    g_m, g_lv = torch.autograd.grad(objective.sum(), [m, lv])
    return (g.detach().cpu().to(torch.float64).numpy() for g in (g_m, g_lv))


def gradient_snr(grads, num_boot=200, seed=0):
    r"""The signal-to-noise ratio |mean| / sd of each gradient component, and its standard error.

    .. math:: \mathrm{SNR} = \frac{|\mathbb E[g]|}{\sqrt{\operatorname{Var}[g]}}

    grads: (num_draws, ...) independent draws of a gradient (e.g. from
    :func:`encoder_gradients`). Returns ``(snr, se)``, arrays of the remaining shape; ``se`` is
    the sd of the ratio over ``num_boot`` bootstrap resamples of the draws (a fixed ``seed``).
    The sample ratio is biased (upward for a mean near 0); compare ratios from equally many draws.
    """
    g = np.asarray(grads, dtype=np.float64)
    if g.ndim < 1 or g.shape[0] < 3 or not np.isfinite(g).all():
        raise ValueError(
            "grads: expected a finite array with at least 3 draws on axis 0, "
            f"got shape {g.shape}. Fix: pass num_draws >= 3 gradient draws."
        )
    num_boot = check_positive_int(num_boot, "num_boot", 200)

    def ratio(a):
        return np.abs(a.mean(0)) / a.std(0, ddof=1)

    rng = np.random.default_rng(seed)
    boots = [ratio(g[rng.integers(0, len(g), len(g))]) for _ in range(num_boot)]
    return ratio(g), np.std(boots, axis=0, ddof=1)


def output_gradient_draws(vae, x, mean, log_var, k, num_draws, estimator, seed):
    r"""Each image's draws of the gradient at q's parameters: (n, num_draws, 2d).

    For image j, :func:`encoder_gradients` of L_k with respect to (mean[j], log_var[j]) under
    :func:`vae_log_joint`, the d mean columns first; every image gets the draws of ``seed``.
    """
    return np.stack(
        [
            np.concatenate(
                list(
                    encoder_gradients(
                        vae_log_joint(vae, x[j : j + 1]),
                        mean[j],
                        log_var[j],
                        k,
                        num_draws,
                        estimator,
                        seed=seed,
                    )
                ),
                axis=1,
            )
            for j in range(len(x))
        ]
    )


def snr_against_k(vae, x, mean, log_var, ks, num_draws, seed=0):
    r"""Both estimators' SNR at a VAE's images, for each k: ``{(estimator, k): (snr, se)}``.

    x: (n, H, W) images; mean, log_var: (n, d) tensors, each image's q (e.g. the encoder's
    output). For image j, :func:`encoder_gradients` draws ``num_draws`` gradients of L_k with
    respect to (mean[j], log_var[j]) from :func:`vae_log_joint`, and :func:`gradient_snr` gives
    their SNR; snr and se are (n, 2d) float64 arrays, the d mean components first. The two
    estimators get the same eps (seed ``1000 * seed + k``); different k get different eps.
    """
    out = {}
    for est in ESTIMATORS:
        for k in ks:
            g = output_gradient_draws(vae, x, mean, log_var, k, num_draws, est, 1000 * seed + k)
            rows = [gradient_snr(g_j) for g_j in g]
            out[est, k] = tuple(np.stack(a) for a in zip(*rows))
    return out


def output_jacobians(network, x):
    r"""For each image, the Jacobian of a network's outputs with respect to its trainable weights.

    x: (n, ...) inputs. ``network(x)`` returns one tensor (n, a) or several (n, a_1), ... (an
    encoder's ``(mean, log_var)``), concatenated to m outputs in that order. Returns a float64
    numpy array (n, m, p), p the number of weights (each weight flattened, in
    ``network.trainable_weights`` order): row o of image j is the gradient of its output o.
    """
    weights = [v.value for v in network.trainable_weights]
    out = []
    for j in range(len(x)):
        y = network(x[j : j + 1])
        y = torch.cat(list(y), -1)[0] if isinstance(y, (list, tuple)) else y[0]
        rows = []
        for o in range(y.shape[0]):
            grads = torch.autograd.grad(y[o], weights, retain_graph=True, allow_unused=True)
            rows.append(
                torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(w)).reshape(-1)
                        for g, w in zip(grads, weights)
                    ]
                )
            )
        out.append(torch.stack(rows).detach().cpu().to(torch.float64).numpy())
    return np.stack(out)


def weight_snr(jacobians, grads):
    r"""The SNR of a gradient with respect to a network's weights, from draws at its outputs.

    For one image the weights reach the objective only through the network's outputs o, so each
    draw of the weights' gradient is :math:`J^\top g`, with g that draw's gradient with respect
    to o and :math:`J = \partial o / \partial\,\mathrm{weights}` fixed:

    .. math:: \mathbb E[J^\top g] = J^\top\,\mathbb E[g], \qquad
              \operatorname{Var}[(J^\top g)_w] = J_{:w}^\top \operatorname{Cov}[g]\, J_{:w}

    For a batch of images with independent draws the gradient of the summed objective is
    :math:`\sum_j J_j^\top g_j`: the means and the variances add.

    jacobians: (n, m, p) (:func:`output_jacobians`); grads: (n, r, m), r draws of each image's
    output gradient (e.g. :func:`encoder_gradients`, mean and log-variance columns side by
    side). Returns ``(per_image, batch)``: SNR arrays (n, p) and (p,), nan where the variance
    is 0 (a weight the image does not reach: from an input that is 0, or behind an inactive
    ReLU).
    """
    jac = np.asarray(jacobians, dtype=np.float64)
    g = np.asarray(grads, dtype=np.float64)
    if jac.ndim != 3 or g.ndim != 3 or g.shape[0] != jac.shape[0] or g.shape[2] != jac.shape[1]:
        raise ValueError(
            f"jacobians (n, m, p) and grads (n, r, m) must agree in n and m; got shapes "
            f"{jac.shape} and {g.shape}. Fix: one Jacobian and one set of draws per image."
        )
    if g.shape[1] < 3:
        raise ValueError(f"grads: at least 3 draws per image are needed, got {g.shape[1]}.")
    means = np.einsum("nm,nmp->np", g.mean(1), jac)
    centred = g - g.mean(1, keepdims=True)
    covs = np.einsum("nrm,nrl->nml", centred, centred) / (g.shape[1] - 1)
    variances = np.einsum("nmp,nml,nlp->np", jac, covs, jac)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_image = np.where(variances > 0, np.abs(means) / np.sqrt(variances), np.nan)
        total = variances.sum(0)
        batch = np.where(total > 0, np.abs(means.sum(0)) / np.sqrt(total), np.nan)
    return per_image, batch


def linear_gaussian_log_joint(model, x):
    """z (..., 1) -> log p(x, z) (...) of a :class:`~vae_course.linear_gaussian.LinearGaussian`."""
    return lambda z: model.log_joint(x, z[..., 0])


def vae_log_joint(vae, x):
    r"""z (k, b, d) -> log p(x_j | z) + log p(z) (k, b) for a VAE and images x (b, H, W).

    z[:, j] is decoded for image x[j]; with b = 1 every row belongs to the one image.
    """
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)

    def log_joint(z):
        k, b, d = z.shape
        out = vae.decoder(z.reshape(k * b, d).to(torch.float32))
        xs = x.to(out.device).expand((b,) + tuple(x.shape[1:]))  # one image for all, or b
        x_rep = xs.unsqueeze(0).expand((k,) + tuple(xs.shape)).reshape((k * b,) + xs.shape[1:])
        log_px_z = vae.log_likelihood(x_rep, out).reshape(k, b)
        return log_px_z.to(z.device, z.dtype) + std_normal_log_prob(z)  # on z's device

    return log_joint


def grid_log_marginal(log_joint, center, scale, num_points=101, span=6.0):
    r"""log p(x) = log ∫ p(x, z) dz for a 2-D latent by the midpoint rule on a grid.

    The grid, per image, covers center ± span * scale in each coordinate with ``num_points``
    cells a side; center, scale: (b, 2) tensors (e.g. a fitted q's mean and sd). log_joint maps
    z (n, b, 2) to (n, b). Returns (b,) float64 numpy. Not a bound: the rule's error and the mass
    outside the grid can go either way; check it by changing ``num_points`` and ``span``.
    """
    n = check_positive_int(num_points, "num_points", 101)
    if center.shape[-1] != 2:
        raise ValueError(f"center: the grid is 2-D, got latent size {center.shape[-1]}.")
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n * 2.0 - 1.0  # cell midpoints in (-1, 1)
    g1, g2 = torch.meshgrid(u, u, indexing="ij")
    unit = torch.stack([g1.reshape(-1), g2.reshape(-1)], -1)  # (n^2, 2)
    c = center.detach().to(torch.float64)
    s = scale.detach().to(torch.float64) * span
    z = c.unsqueeze(0) + unit.unsqueeze(1) * s.unsqueeze(0)  # (n^2, b, 2)
    log_cell = torch.log(s[:, 0] * s[:, 1] * 4.0 / n**2)  # each cell's area
    with torch.no_grad():
        rows = max(1, 20000 // z.shape[1])
        lj = torch.cat(
            [log_joint(z[i : i + rows]).to(torch.float64) for i in range(0, n * n, rows)]
        )
    return (torch.logsumexp(lj, 0) + log_cell).cpu().numpy()


__all__ = [
    "ESTIMATORS",
    "gaussian_log_weights",
    "iwae_objective",
    "dreg_surrogate",
    "encoder_gradients",
    "gradient_snr",
    "output_gradient_draws",
    "snr_against_k",
    "output_jacobians",
    "weight_snr",
    "linear_gaussian_log_joint",
    "vae_log_joint",
    "grid_log_marginal",
]
