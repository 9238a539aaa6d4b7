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
    """E_p[f(X)] ~ (1/N) sum_i f(X_i), X_i = sampler(N, generator); with its standard error."""
    return mc_estimate(f(sampler(num_samples, generator)))


def _check(mean, scale):
    mean = torch.as_tensor(mean, dtype=torch.get_default_dtype() if not torch.is_tensor(mean) else None)
    scale = torch.as_tensor(scale, dtype=mean.dtype)
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


def sample_gaussian(mean, scale, num_samples, generator=None):
    """Draw (num_samples, d) points from N(m, S) by the reparameterization x = m + scale eps."""
    mean, scale = _check(mean, scale)
    eps = torch.randn((num_samples, mean.shape[0]), generator=generator, dtype=mean.dtype)
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

    .. math:: \hat g_i = \big(f(x_i) - b\big)\, \nabla_{\theta} \log q_\theta(x_i),
              \qquad x_i \sim q_\theta

    f needs no gradient; b is a constant ``baseline`` (subtracting it keeps the
    estimator unbiased because E_q[grad log q] = 0). Returns a dict with
    ``"mean"``: (n, d) and ``"scale"``: (n, d) or (n, d, d) (lower triangle).
    """
    mean, scale = _check(mean, scale)
    x = sample_gaussian(mean, scale, num_samples, generator).detach()
    with torch.no_grad():
        fx = f(x) - baseline
    score = vmap(grad(gaussian_log_prob, argnums=(1, 2)), in_dims=(0, None, None))(x, mean, scale)
    shape = lambda g: fx.reshape((-1,) + (1,) * (g.ndim - 1))  # noqa: E731
    g_mean, g_scale = (g * shape(g) for g in score)
    if scale.ndim == 2:
        g_scale = torch.tril(g_scale)
    return {"mean": g_mean, "scale": g_scale}


def reparam_grads(f, mean, scale, num_samples, generator=None):
    r"""Per-sample pathwise (reparameterization) gradients of E_q[f(x)] w.r.t. (mean, scale).

    .. math:: \hat g_i = \nabla_{\theta} f\big(m_\theta + L_\theta \varepsilon_i\big),
              \qquad \varepsilon_i \sim \mathcal N(0, I)

    f must be differentiable; autograd carries the gradient through the
    transform, also through a full Cholesky factor L. Same return as
    :func:`score_function_grads`.
    """
    mean, scale = _check(mean, scale)
    eps = torch.randn((num_samples, mean.shape[0]), generator=generator, dtype=mean.dtype)
    path = lambda e, m, s: f(transform(e, m, s))  # noqa: E731
    g_mean, g_scale = vmap(grad(path, argnums=(1, 2)), in_dims=(0, None, None))(eps, mean, scale)
    if scale.ndim == 2:
        g_scale = torch.tril(g_scale)
    return {"mean": g_mean, "scale": g_scale}


__all__ = [
    "MCEstimate",
    "mc_estimate",
    "monte_carlo",
    "transform",
    "sample_gaussian",
    "gaussian_log_prob",
    "score_function_grads",
    "reparam_grads",
]
