r"""Closed forms for the course's running example: a quadratic under a Gaussian.

Chapters 1-3 measure Monte Carlo estimates and gradient estimators on an
integrand whose every moment is known, so each measured number has an exact
value to be checked against. Two integrands are used.

* One dimension: ``f(x) = (x - k)^2`` with ``x ~ N(mu, sigma^2)``. Write the
  offset ``a = mu - k`` and ``x = mu + sigma * eps`` with ``eps ~ N(0, 1)``, so
  ``f = (a + sigma * eps)^2``. Every formula below is a polynomial in the
  moments E[eps^2] = 1, E[eps^4] = 3, E[eps^6] = 15, E[eps^8] = 105 (odd
  moments vanish). The per-sample gradient estimators of
  :mod:`vae_course.estimators` are, for this f,

  - score function, w.r.t. mu:     (f - b) * eps / sigma
  - score function, w.r.t. sigma:  (f - b) * (eps^2 - 1) / sigma
  - pathwise (reparameterization), w.r.t. mu:     2 (a + sigma eps)
  - pathwise (reparameterization), w.r.t. sigma:  2 (a + sigma eps) eps

  with b a constant baseline.

* d dimensions: ``f(x) = |x|^2`` with ``x ~ N(m, L L^T)``, L a lower-triangular
  Cholesky factor.

The scalar functions accept floats, numpy arrays or torch tensors (anything
that broadcasts with ``+``, ``*`` and ``**``).
"""
from __future__ import annotations

import torch


def shifted_square(k):
    r"""The integrand f(x) = (x - k)^2, as a torch function from points (..., 1) to values (...).

    Written for the estimators of :mod:`vae_course.estimators`, whose points
    carry a trailing dimension d = 1.
    """
    return lambda x: ((x - k) ** 2).sum(-1)


def expectation(mu, sigma, k):
    r"""E[(x - k)^2] = a^2 + sigma^2 for x ~ N(mu, sigma^2), a = mu - k."""
    a = mu - k
    return a**2 + sigma**2


def variance(mu, sigma, k):
    r"""Var[(x - k)^2] = 4 a^2 sigma^2 + 2 sigma^4 for x ~ N(mu, sigma^2), a = mu - k.

    f = a^2 + 2 a sigma eps + sigma^2 eps^2; Var(eps) = 1, Var(eps^2) = 2 and
    Cov(eps, eps^2) = 0.
    """
    a = mu - k
    return 4 * a**2 * sigma**2 + 2 * sigma**4


def grad_mean(mu, sigma, k):
    r"""d/dmu E[(x - k)^2] = 2 a, a = mu - k."""
    return 2 * (mu - k) + 0 * sigma


def grad_scale(mu, sigma, k):
    r"""d/dsigma E[(x - k)^2] = 2 sigma."""
    return 2 * sigma + 0 * (mu - k)


def score_variance_mean(mu, sigma, k, baseline=0.0):
    r"""Variance of one score-function sample (f - b) eps / sigma of d/dmu E[f].

    .. math:: \operatorname{Var} = \frac{a^4 + 14 a^2\sigma^2 + 15\sigma^4
              - 2 b\,(a^2 + 3\sigma^2) + b^2}{\sigma^2}

    With b = 0: a^4/sigma^2 + 14 a^2 + 15 sigma^2. With the mean baseline
    b = E[f] = a^2 + sigma^2: 8 a^2 + 10 sigma^2. With the optimal constant
    baseline b = a^2 + 3 sigma^2 (:func:`optimal_baseline_mean`): 8 a^2 + 6 sigma^2.
    """
    a = mu - k
    b = baseline
    s2 = sigma**2
    return (a**4 + 14 * a**2 * s2 + 15 * s2**2 - 2 * b * (a**2 + 3 * s2) + b**2) / s2


def score_variance_scale(mu, sigma, k, baseline=0.0):
    r"""Variance of one score-function sample (f - b) (eps^2 - 1) / sigma of d/dsigma E[f].

    .. math:: \operatorname{Var} = \frac{2a^4 + 60 a^2\sigma^2 + 74\sigma^4
              - 4 b\,(a^2 + 5\sigma^2) + 2 b^2}{\sigma^2}

    With b = 0: 2 a^4/sigma^2 + 60 a^2 + 74 sigma^2; the optimal constant
    baseline is b = a^2 + 5 sigma^2 (:func:`optimal_baseline_scale`).
    """
    a = mu - k
    b = baseline
    s2 = sigma**2
    return (2 * a**4 + 60 * a**2 * s2 + 74 * s2**2 - 4 * b * (a**2 + 5 * s2) + 2 * b**2) / s2


def optimal_baseline_mean(mu, sigma, k):
    r"""The constant b that minimises :func:`score_variance_mean`: b* = a^2 + 3 sigma^2.

    For a score s, Var[(f - b) s] = Var[f s] - 2 b E[f s^2] + b^2 E[s^2]
    (E[s] = 0), smallest at b* = E[f s^2] / E[s^2]. With s = eps / sigma:
    E[f eps^2] = a^2 + 3 sigma^2 and E[eps^2] = 1.
    """
    a = mu - k
    return a**2 + 3 * sigma**2


def optimal_baseline_scale(mu, sigma, k):
    r"""The constant b that minimises :func:`score_variance_scale`: b* = a^2 + 5 sigma^2.

    b* = E[f s^2] / E[s^2] with s = (eps^2 - 1) / sigma:
    E[f (eps^2 - 1)^2] = 2 a^2 + 10 sigma^2 and E[(eps^2 - 1)^2] = 2.
    """
    a = mu - k
    return a**2 + 5 * sigma**2


def reparam_variance_mean(mu, sigma, k):
    r"""Variance of one pathwise sample 2 (a + sigma eps) of d/dmu E[f]: 4 sigma^2 (no a)."""
    return 4 * sigma**2 + 0 * (mu - k)


def reparam_variance_scale(mu, sigma, k):
    r"""Variance of one pathwise sample 2 (a + sigma eps) eps of d/dsigma E[f]: 4 a^2 + 8 sigma^2."""
    a = mu - k
    return 4 * a**2 + 8 * sigma**2


def squared_norm(x):
    r"""The integrand f(x) = |x|^2 = sum_j x_j^2: points (..., d) -> values (...)."""
    return (x**2).sum(-1)


def squared_norm_expectation(mean, chol):
    r"""E|x|^2 = tr(L L^T) + |m|^2 for x ~ N(m, L L^T); only the lower triangle of L is used.

    tr(L L^T) is the sum of the squared entries of L.
    """
    L = torch.tril(chol)
    return (L**2).sum() + (mean**2).sum()


def squared_norm_grads(mean, chol):
    r"""Gradients of E|x|^2 = tr(L L^T) + |m|^2: d/dm = 2 m and d/dL = 2 L (lower triangle).

    Returns a dict shaped like the estimators' output without the sample axis:
    ``"mean"``: (d,), ``"scale"``: (d, d).
    """
    return {"mean": 2 * mean, "scale": 2 * torch.tril(chol)}


__all__ = [
    "shifted_square",
    "expectation",
    "variance",
    "grad_mean",
    "grad_scale",
    "score_variance_mean",
    "score_variance_scale",
    "optimal_baseline_mean",
    "optimal_baseline_scale",
    "reparam_variance_mean",
    "reparam_variance_scale",
    "squared_norm",
    "squared_norm_expectation",
    "squared_norm_grads",
]
