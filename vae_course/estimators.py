r"""Monte Carlo estimates and the two gradient estimators of the course (torch).

Everything here is about a Gaussian q = N(m, S) in d dimensions, with S given
by a *scale*:

* ``scale`` of shape (d,): the standard deviations, S = diag(scale^2);
* ``scale`` of shape (d, d): a lower-triangular Cholesky factor L, S = L L^T
  (only its lower triangle is used).

A sample is x = m + scale * eps (diagonal) or x = m + L eps (full), with
eps ~ N(0, I) of shape (num_samples, d).

``f`` is a function from points (..., d) to values (...), written with torch
ops. The gradient estimators return one gradient estimate per sample, so a
chapter can average them (the estimate) and measure their variance; the mean
over samples is the usual N-sample estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.func import grad, vmap

from .gaussian import normal_log_prob


@dataclass(frozen=True)
class MCEstimate:
    """A Monte Carlo estimate: ``mean`` of n draws and its standard error.

    stderr = sd / sqrt(n), with sd the sample standard deviation (n - 1).
    """

    mean: torch.Tensor
    stderr: torch.Tensor
    n: int

    def __repr__(self):
        m, s = self.mean, self.stderr
        if m.numel() == 1:
            return f"MCEstimate(mean={m.item():.6g}, stderr={s.item():.3g}, n={self.n})"
        return f"MCEstimate(mean={m.tolist()}, stderr={s.tolist()}, n={self.n})"


def mc_estimate(values) -> MCEstimate:
    """Mean over the first axis of ``values`` (n, ...) and its standard error."""
    values = torch.as_tensor(values)
    n = values.shape[0]
    if n < 2:
        raise ValueError(f"mc_estimate needs at least 2 draws to give a standard error, got {n}.")
    values = values.to(torch.float64) if not values.is_floating_point() else values
    return MCEstimate(values.mean(0), values.std(0, unbiased=True) / math.sqrt(n), n)


def monte_carlo(f, sampler, num_samples, generator=None) -> MCEstimate:
    """E_p[f(X)] ~ (1/N) sum_n f(X_n), X_n = sampler(N, generator); with its standard error."""
    return mc_estimate(f(sampler(num_samples, generator)))


def _check(mean, scale):
    mean = torch.as_tensor(mean, dtype=torch.get_default_dtype() if not torch.is_tensor(mean) else None)
    scale = torch.as_tensor(scale, dtype=mean.dtype, device=mean.device)
    if mean.ndim != 1:
        raise ValueError(f"mean must have shape (d,), got {tuple(mean.shape)}.")
    _check_scale(mean, scale)
    return mean, scale


def _check_scale(mean, scale):
    d = mean.shape[-1]
    if scale.shape not in ((d,), (d, d)):
        raise ValueError(
            f"scale must have shape (d,) = ({d},) for standard deviations or (d, d) = ({d}, {d}) "
            f"for one Cholesky factor, got {tuple(scale.shape)}. For per-example diagonal "
            "scales (batch, d) use vae_course.losses.diag_gaussian_log_prob."
        )


def transform(eps, mean, scale):
    """x = m + scale * eps (diagonal) or m + L eps (full). eps: (..., d) -> (..., d)."""
    _check_scale(mean, scale)
    if scale.ndim == 1:
        return mean + scale * eps
    return mean + eps @ torch.tril(scale).T


def standard_normal(shape, like, generator=None):
    """eps ~ N(0, I) of ``shape``, with the dtype and on the device of the tensor ``like``.

    Drawn on ``like``'s device; with a ``generator`` on another device (a CPU
    ``torch.Generator`` for CUDA tensors, say), drawn there and moved, so that a
    seeded CPU generator gives the same numbers whatever the tensors' device.
    """
    device = like.device if generator is None else generator.device
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=device).to(like.device)


def sample_gaussian(mean, scale, num_samples, generator=None):
    """Draw (num_samples, d) points from N(m, S) by the reparameterization x = m + scale eps."""
    mean, scale = _check(mean, scale)
    eps = standard_normal((num_samples, mean.shape[0]), mean, generator)
    return transform(eps, mean, scale)


def gaussian_log_prob(x, mean, scale):
    r"""log N(x; m, S), summed over the last axis: (..., d) -> (...).

    Diagonal: -1/2 sum_j ((x_j - m_j)/s_j)^2 - sum_j log s_j - d/2 log 2 pi.
    Full, S = L L^T: -1/2 |L^{-1}(x - m)|^2 - sum_j log L_jj - d/2 log 2 pi.
    """
    _check_scale(mean, scale)
    if scale.ndim == 1:
        return normal_log_prob(x, mean, scale * scale).sum(-1)
    L = torch.tril(scale)
    u = torch.linalg.solve_triangular(L, (x - mean).unsqueeze(-1), upper=False).squeeze(-1)
    return normal_log_prob(u, 0.0, 1.0).sum(-1) - torch.log(torch.diagonal(L).abs()).sum()


def score_function_grads(f, mean, scale, num_samples, baseline=0.0, generator=None):
    r"""Per-sample score-function (REINFORCE) gradients of E_q[f(x)] w.r.t. (mean, scale).

    .. math:: \hat g_n = \big(f(x_n) - c\big)\, \nabla_{\phi} \log q_\phi(x_n),
              \qquad x_n \sim q_\phi

    f needs no gradient; c is a constant ``baseline`` (subtracting it keeps the
    estimator unbiased because E_q[grad log q] = 0). Returns a dict with
    ``"mean"``: (n, d) and ``"scale"``: (n, d) or (n, d, d) (lower triangle).
    """
    mean, scale = _check(mean, scale)
    x = sample_gaussian(mean, scale, num_samples, generator).detach()
    with torch.no_grad():
        fx = f(x) - baseline
    score = vmap(grad(gaussian_log_prob, argnums=(1, 2)), in_dims=(0, None, None))(x, mean, scale)
    shape = lambda g: fx.reshape((-1,) + (1,) * (g.ndim - 1))
    g_mean, g_scale = (g * shape(g) for g in score)
    if scale.ndim == 2:
        g_scale = torch.tril(g_scale)
    return {"mean": g_mean, "scale": g_scale}


def reparam_grads(f, mean, scale, num_samples, generator=None):
    r"""Per-sample pathwise (reparameterization) gradients of E_q[f(x)] w.r.t. (mean, scale).

    .. math:: \hat g_n = \nabla_{\phi} f\big(m_\phi + L_\phi \varepsilon_n\big),
              \qquad \varepsilon_n \sim \mathcal N(0, I)

    f must be differentiable; autograd carries the gradient through the
    transform, also through a full Cholesky factor L. Same return as
    :func:`score_function_grads`.
    """
    mean, scale = _check(mean, scale)
    eps = standard_normal((num_samples, mean.shape[0]), mean, generator)
    path = lambda e, m, s: f(transform(e, m, s))
    g_mean, g_scale = vmap(grad(path, argnums=(1, 2)), in_dims=(0, None, None))(eps, mean, scale)
    if scale.ndim == 2:
        g_scale = torch.tril(g_scale)
    return {"mean": g_mean, "scale": g_scale}


# --------------------------------------------------------------------------
# The KL between two Gaussians, and the ELBO's gradient three ways
# (full, analytic KL, sticking the landing).
# --------------------------------------------------------------------------


def gaussian_kl(mean1, scale1, mean2, scale2):
    r"""KL(N(m1, S1) || N(m2, S2)) between two Gaussians in d dimensions.

    Each ``scale`` is the standard deviations (d,) (S = diag(scale^2)) or a
    lower-triangular Cholesky factor L (d, d) (S = L L^T); ``mean`` is (d,).

    .. math:: \mathrm{KL} = \tfrac12\Big(\operatorname{tr}(S_2^{-1}S_1)
              + (m_2-m_1)^\top S_2^{-1}(m_2-m_1) - d + \log\det S_2 - \log\det S_1\Big)

    computed through the factors: tr(S2^{-1} S1) = ||L2^{-1} L1||_F^2, the
    quadratic form is ||L2^{-1}(m2 - m1)||^2 and log det S = 2 sum_j log|L_jj|.
    Returns a 0-d tensor.
    """
    mean1, scale1 = _check(mean1, scale1)
    mean2, scale2 = _check(mean2, scale2)
    if mean1.shape != mean2.shape:
        raise ValueError(
            f"gaussian_kl needs two Gaussians of the same dimension, got mean1 {tuple(mean1.shape)} and "
            f"mean2 {tuple(mean2.shape)}."
        )
    d = mean1.shape[0]
    L1 = torch.diag(scale1) if scale1.ndim == 1 else torch.tril(scale1)
    L2 = torch.diag(scale2) if scale2.ndim == 1 else torch.tril(scale2)
    for name, L in (("scale1", L1), ("scale2", L2)):
        if not bool(torch.all(torch.diagonal(L) != 0)):
            raise ValueError(
                f"gaussian_kl: {name} has a zero standard deviation or a zero on its Cholesky factor's diagonal, "
                "so its covariance is singular and the KL is not finite. Fix: pass standard deviations > 0, or "
                "L = torch.linalg.cholesky(cov) of a positive-definite cov."
            )
    A = torch.linalg.solve_triangular(L2, L1, upper=False)  # L2^{-1} L1
    u = torch.linalg.solve_triangular(L2, (mean2 - mean1).unsqueeze(-1), upper=False).squeeze(-1)
    log_det1 = 2.0 * torch.log(torch.diagonal(L1).abs()).sum()
    log_det2 = 2.0 * torch.log(torch.diagonal(L2).abs()).sum()
    return 0.5 * ((A * A).sum() + (u * u).sum() - d + log_det2 - log_det1)


ELBO_ESTIMATORS = ("full", "analytic_kl", "stl")


def elbo_integrand(log_likelihood, z, mean, scale, estimator="full"):
    r"""One draw of the ELBO of q = N(m, S) under the prior p(z) = N(0, I), three ways.

    z: (..., d) draws of q, written as z = m + scale eps so that gradients reach
    (mean, scale); ``log_likelihood`` maps (..., d) to (...). Returns (...).

    * ``"full"``: log p(x|z) + log p(z) - log q(z; m, S), every term sampled;
    * ``"analytic_kl"``: log p(x|z) - KL(q || p), the KL exact (:func:`gaussian_kl`);
    * ``"stl"``, sticking the landing (Roeder, Wu & Duvenaud 2017): the value of
      ``"full"``, but with (m, S) inside log q treated as constants (stop-gradient),
      so its gradient drops the score term E_q[grad log q] = 0 and is exactly 0
      wherever q is the posterior.

    All three have the same mean, the ELBO, and the same expected gradient.
    """
    if estimator not in ELBO_ESTIMATORS:
        raise ValueError(f"estimator must be one of {ELBO_ESTIMATORS}, got {estimator!r}.")
    d = mean.shape[-1]
    log_prior = normal_log_prob(z, 0.0, 1.0).sum(-1)
    if estimator == "full":
        return log_likelihood(z) + log_prior - gaussian_log_prob(z, mean, scale)
    if estimator == "stl":
        return log_likelihood(z) + log_prior - gaussian_log_prob(z, mean.detach(), scale.detach())
    ones = torch.ones(d, dtype=mean.dtype, device=mean.device)
    return log_likelihood(z) - gaussian_kl(mean, scale, torch.zeros_like(mean), ones)


def elbo_grads(log_likelihood, mean, scale, num_samples, estimator="full", generator=None):
    r"""Per-sample pathwise gradients of the ELBO of q = N(m, S) w.r.t. (mean, scale).

    .. math:: \hat g_n = \nabla_{(m, S)}\, \hat{\mathcal L}\big(m + L\varepsilon_n\big),
              \qquad \varepsilon_n \sim \mathcal N(0, I), \quad n = 1, \dots, N

    with :math:`\hat{\mathcal L}` the one-draw ELBO of :func:`elbo_integrand`
    (``estimator`` = ``"full"``, ``"analytic_kl"`` or ``"stl"``) and the prior
    N(0, I). Same shapes and return as :func:`reparam_grads`:
    ``{"mean": (N, d), "scale": (N, d) or (N, d, d)}``.
    """
    if estimator not in ELBO_ESTIMATORS:
        raise ValueError(f"estimator must be one of {ELBO_ESTIMATORS}, got {estimator!r}.")
    mean, scale = _check(mean, scale)
    eps = torch.randn((num_samples, mean.shape[0]), generator=generator, dtype=mean.dtype, device=mean.device)

    def one_draw(e, m, s):
        return elbo_integrand(log_likelihood, transform(e, m, s), m, s, estimator)

    g_mean, g_scale = vmap(grad(one_draw, argnums=(1, 2)), in_dims=(0, None, None))(eps, mean, scale)
    if scale.ndim == 2:
        g_scale = torch.tril(g_scale)
    return {"mean": g_mean, "scale": g_scale}


VAE_KL_METHODS = ("analytic", "mc", "stl")


def vae_kl_term(z_mean, z_log_var, z=None, kl="analytic"):
    r"""The KL term of a VAE's loss, per example, three ways.

    ``VAE(..., kl=...)`` computes its KL term with this function, at the draws z
    its likelihood term used; the default ``"analytic"`` is the usual choice, and
    chapters 4 and 5 compare the two sampled forms with it.

    q(z|x) = N(mu, diag sigma^2), p(z) = N(0, I); z_mean = mu and
    z_log_var = log sigma^2 are (batch, d); z is (batch, d) or (N, batch, d),
    the reparameterized draws z = mu + sigma * eps the loss already made.

    * ``"analytic"``: KL(q || p) in closed form (``losses.kl_std_normal``); z unused;
    * ``"mc"``: the Monte Carlo estimate log q(z) - log p(z), averaged over the N draws;
    * ``"stl"``: the same value, with mu and log sigma^2 inside log q treated as
      constants (stop-gradient; Roeder, Wu & Duvenaud 2017): the score term
      E_q[grad log q] = 0 leaves the gradient, so the gradient is 0 where q = p.

    Returns (batch,). Works on the tensors' own device (torch backend).
    """
    from . import losses  # the Keras-ops densities; imported here to keep this module torch-only at import

    if kl not in VAE_KL_METHODS:
        raise ValueError(f'kl must be one of {VAE_KL_METHODS}, got {kl!r}. Fix: e.g. kl="analytic".')
    if kl == "analytic":
        return losses.kl_std_normal(z_mean, z_log_var)
    if z is None:
        raise ValueError(f"kl={kl!r} estimates the KL from draws: pass z, shape (batch, d) or (N, batch, d).")
    if tuple(z.shape[-2:]) != tuple(z_mean.shape):
        raise ValueError(
            f"z must have shape (batch, d) = {tuple(z_mean.shape)} or (N, batch, d), got {tuple(z.shape)}."
        )
    if kl == "stl":
        z_mean, z_log_var = z_mean.detach(), z_log_var.detach()
    per_draw = losses.diag_gaussian_log_prob(z, z_mean, z_log_var) - losses.std_normal_log_prob(z)
    return per_draw.mean(0) if z.ndim == 3 else per_draw


__all__ = [
    "MCEstimate",
    "mc_estimate",
    "monte_carlo",
    "transform",
    "standard_normal",
    "sample_gaussian",
    "gaussian_log_prob",
    "score_function_grads",
    "reparam_grads",
    "gaussian_kl",
    "elbo_integrand",
    "elbo_grads",
    "vae_kl_term",
]


# --- Added for chapters 1 and 2: reporting, intervals, importance sampling, discrete latents ---


def format_estimate(mean, stderr) -> str:
    """``"mean ± stderr"`` rounded to the decimal place of the standard error's leading digit.

    A Monte Carlo estimate is printed only to the digit its standard error
    allows, e.g. 1.2517 with standard error 0.0034 prints as ``1.252 ± 0.003``.
    Floats or one-element tensors; a zero standard error prints both exactly
    as ``repr`` of a float would, to 4 decimals.
    """
    mean, stderr = float(mean), float(stderr)
    if not (math.isfinite(stderr) and stderr >= 0):
        raise ValueError(f"stderr must be a finite number >= 0, got {stderr}.")
    if stderr == 0:
        return f"{mean:.4f} ± 0"
    decimals = max(0, -math.floor(math.log10(stderr)))
    return f"{mean:.{decimals}f} ± {stderr:.{decimals}f}"


def student_t_quantile(prob: float, dof: float) -> float:
    r"""The quantile t with P(T <= t) = prob for Student's t with ``dof`` degrees of freedom.

    With t = sqrt(dof) tan(angle) the density of the angle on (-pi/2, pi/2) is
    proportional to cos(angle)^(dof - 1), a bounded integrand; its cumulative
    integral (trapezoid rule, 200 001 nodes) is inverted by linear
    interpolation: relative error below 1e-6 for dof up to 10^4. For dof = 1
    (Cauchy) it gives tan(pi (prob - 1/2)).
    The interval mean ± t_{N-1, 0.975} stderr covers the mean of Gaussian
    data in 95% of experiments for every N >= 2.
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must lie strictly between 0 and 1, got {prob}.")
    if not dof > 0:
        raise ValueError(f"dof must be positive (N - 1 for N draws), got {dof}.")
    angle = torch.linspace(-math.pi / 2, math.pi / 2, 200_001, dtype=torch.float64)
    dens = torch.cos(angle).clamp(min=0.0) ** (dof - 1.0)
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum((dens[1:] + dens[:-1]) / 2, 0)])
    cdf = cdf / cdf[-1]
    j = int(torch.searchsorted(cdf, torch.tensor([prob], dtype=torch.float64)).item())
    w = (prob - cdf[j - 1]) / (cdf[j] - cdf[j - 1])
    a = angle[j - 1] + w * (angle[j] - angle[j - 1])
    return float(math.sqrt(dof) * math.tan(a))


def importance_sampling(f, log_p, proposal, log_q, num_samples, generator=None) -> MCEstimate:
    r"""E_p[f(X)] estimated with draws from a proposal q, with its standard error.

    .. math:: \hat\mu_N^{\mathrm{IS}} = \frac1N \sum_{n=1}^N f(X_n)\, \frac{p(X_n)}{q(X_n)},
              \qquad X_n \sim q

    Unbiased wherever q > 0 on the support of f p. Its variance is
    (E_q[f^2 p^2 / q^2] - E_p[f]^2) / N, small when q puts its mass where |f| p
    is large. ``proposal(N, generator)`` draws (N, d) points; ``log_p`` and
    ``log_q`` map points (N, d) to log-densities (N,).
    """
    x = proposal(num_samples, generator)
    log_w = log_p(x) - log_q(x)
    return mc_estimate(f(x) * torch.exp(log_w))


def leave_one_out_baseline(values):
    r"""c_n = (sum_m f_m - f_n) / (N - 1): the mean of the other draws. values (N, ...) -> (N, ...).

    c_n is independent of draw n, so (f_n - c_n) times the score of draw n
    has the same mean as f_n times that score (leave-one-out, "RLOO").
    """
    values = torch.as_tensor(values)
    n = values.shape[0]
    if n < 2:
        raise ValueError(f"a leave-one-out baseline needs at least 2 draws, got {n}.")
    return (values.sum(0, keepdim=True) - values) / (n - 1)


def bernoulli_score_grads(f, logits, num_samples, baseline=0.0, generator=None):
    r"""Per-sample score-function gradients of E_q[f(x)] w.r.t. the logits of independent Bernoullis.

    q(x) = prod_j p_j^{x_j} (1 - p_j)^{1 - x_j} with p = sigmoid(logits), shape (d,);
    draws x: (N, d) of 0.0/1.0. The score is d/d logits log q(x) = x - p, and

    .. math:: \hat g_n = \big(f(x_n) - c_n\big)\,(x_n - p)

    ``baseline``: a constant c (float); ``"rloo"``, c_n = the mean of f over
    the other N - 1 draws (:func:`leave_one_out_baseline`), unbiased; or
    ``"mean"``, c = the mean of f over all N draws *including* draw n, which
    is biased: its expectation is (1 - 1/N) times the gradient (shown in
    chapter 2). ``f`` maps the draws (N, d) to values (N,); or, for d
    independent one-bit problems side by side (each coordinate with its own
    baseline), to values (N, d). Returns ``{"logits": (N, d), "x": (N, d),
    "f": f's values}``.
    """
    logits = torch.as_tensor(logits, dtype=torch.get_default_dtype() if not torch.is_tensor(logits) else None)
    if logits.ndim != 1:
        raise ValueError(f"logits must have shape (d,), got {tuple(logits.shape)}.")
    p = torch.sigmoid(logits)
    u = torch.rand((num_samples, logits.shape[0]), generator=generator, dtype=logits.dtype)
    x = (u < p).to(logits.dtype)
    values = f(x)
    if values.shape == x.shape:  # one value per coordinate: d independent one-bit problems
        fx = values
    elif values.shape == x.shape[:1]:
        fx = values[:, None]
    else:
        raise ValueError(
            f"f must map draws (N, d) = {tuple(x.shape)} to values (N,) or, for d independent "
            f"problems, (N, d); got {tuple(values.shape)}."
        )
    if isinstance(baseline, str):
        if baseline == "rloo":
            c = leave_one_out_baseline(fx)
        elif baseline == "mean":
            c = fx.mean(0, keepdim=True)
        else:
            raise ValueError(f"baseline must be a number, 'rloo' or 'mean', got {baseline!r}.")
    else:
        c = baseline
    return {"logits": (fx - c) * (x - p), "x": x, "f": values}


__all__ += [
    "format_estimate",
    "student_t_quantile",
    "importance_sampling",
    "leave_one_out_baseline",
    "bernoulli_score_grads",
]
