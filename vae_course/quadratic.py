r"""Closed forms for the course's running example: a quadratic under a Gaussian.

Chapters 1-3 measure Monte Carlo estimates and gradient estimators on an
integrand whose every moment is known, so each measured number has an exact
value to be checked against. Two integrands are used.

* One dimension: ``f(x) = (x - k)^2`` with ``x ~ N(mu, sigma^2)``. Write the
  offset ``a = mu - k`` and ``x = mu + sigma * eps`` with ``eps ~ N(0, 1)``, so
  ``f = (a + sigma * eps)^2``. Every formula below is a polynomial in the
  moments E[eps^2] = 1, E[eps^4] = 3, E[eps^6] = 15, E[eps^8] = 105 (odd
  moments vanish). The per-sample gradient estimators of
  :mod:`vae_course.gradients` are, for this f,

  - score function, w.r.t. mu:     (f - c) * eps / sigma
  - score function, w.r.t. sigma:  (f - c) * (eps^2 - 1) / sigma
  - pathwise (reparameterization), w.r.t. mu:     2 (a + sigma eps)
  - pathwise (reparameterization), w.r.t. sigma:  2 (a + sigma eps) eps

  with c a constant baseline. sigma is always a standard deviation.

* d dimensions: ``f(x) = |x|^2`` with ``x ~ N(m, L L^T)``, L a lower-triangular
  Cholesky factor.

Further toy problems, each with its closed forms: ``sin(omega x)`` under
N(mu, sigma^2), where the pathwise estimator loses to the score function at
high frequency; the tail probability P(X > t) of a standard normal, estimated
by importance sampling; and ``(x - k)^2`` for a Bernoulli x, a discrete latent
where only the score function applies.

The scalar functions accept floats, numpy arrays or torch tensors (anything
that broadcasts with ``+``, ``*`` and ``**``); those that need exp, sin or cos
(the sine and tail-probability ones) use torch's when given a tensor, so
autograd passes through them, and numpy's otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def shifted_square(k):
    r"""The integrand f(x) = (x - k)^2, as a torch function from points (..., 1) to values (...).

    Written for the estimators of :mod:`vae_course.gradients`, whose points
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


def third_central_moment(mu, sigma, k):
    r"""E[(f - E f)^3] = 24 a^2 sigma^4 + 8 sigma^6 for f = (x - k)^2, x ~ N(mu, sigma^2), a = mu - k.

    f - E f = 2 a sigma eps + sigma^2 (eps^2 - 1); the odd moments of eps
    vanish, E[eps^2 (eps^2 - 1)] = 2 and E[(eps^2 - 1)^3] = 8. The mean of N
    independent copies has third central moment E[(f - E f)^3] / N^2, so its
    skewness, E[(f - E f)^3] / Var[f]^(3/2), shrinks like 1/sqrt(N).
    """
    a = mu - k
    return 24 * a**2 * sigma**4 + 8 * sigma**6


def grad_mean(mu, sigma, k):
    r"""d/dmu E[(x - k)^2] = 2 a, a = mu - k."""
    return 2 * (mu - k) + 0 * sigma


def grad_scale(mu, sigma, k):
    r"""d/dsigma E[(x - k)^2] = 2 sigma."""
    return 2 * sigma + 0 * (mu - k)


def score_variance_mean(mu, sigma, k, baseline=0.0):
    r"""Variance of one score-function sample (f - c) eps / sigma of d/dmu E[f].

    .. math:: \operatorname{Var} = \frac{a^4 + 14 a^2\sigma^2 + 15\sigma^4
              - 2 c\,(a^2 + 3\sigma^2) + c^2}{\sigma^2}

    With c = 0: a^4/sigma^2 + 14 a^2 + 15 sigma^2. With the mean baseline
    c = E[f] = a^2 + sigma^2: 8 a^2 + 10 sigma^2. With the optimal constant
    baseline c = a^2 + 3 sigma^2 (:func:`optimal_baseline_mean`): 8 a^2 + 6 sigma^2.
    """
    a = mu - k
    c = baseline
    s2 = sigma**2
    return (a**4 + 14 * a**2 * s2 + 15 * s2**2 - 2 * c * (a**2 + 3 * s2) + c**2) / s2


def score_variance_scale(mu, sigma, k, baseline=0.0):
    r"""Variance of one score-function sample (f - c) (eps^2 - 1) / sigma of d/dsigma E[f].

    .. math:: \operatorname{Var} = \frac{2a^4 + 60 a^2\sigma^2 + 74\sigma^4
              - 4 c\,(a^2 + 5\sigma^2) + 2 c^2}{\sigma^2}

    With c = 0: 2 a^4/sigma^2 + 60 a^2 + 74 sigma^2; the optimal constant
    baseline is c = a^2 + 5 sigma^2 (:func:`optimal_baseline_scale`).
    """
    a = mu - k
    c = baseline
    s2 = sigma**2
    return (2 * a**4 + 60 * a**2 * s2 + 74 * s2**2 - 4 * c * (a**2 + 5 * s2) + 2 * c**2) / s2


def optimal_baseline_mean(mu, sigma, k):
    r"""The constant c that minimises :func:`score_variance_mean`: c* = a^2 + 3 sigma^2.

    Write u for one component of the score. Var[(f - c) u] = Var[f u] -
    2 c E[f u^2] + c^2 E[u^2] (E[u] = 0), smallest at c* = E[f u^2] / E[u^2].
    With u = eps / sigma: E[f eps^2] = a^2 + 3 sigma^2 and E[eps^2] = 1.
    """
    a = mu - k
    return a**2 + 3 * sigma**2


def optimal_baseline_scale(mu, sigma, k):
    r"""The constant c that minimises :func:`score_variance_scale`: c* = a^2 + 5 sigma^2.

    c* = E[f u^2] / E[u^2] with u = (eps^2 - 1) / sigma:
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


def sgd_excess_floor(step, grad_variance):
    r"""Stationary E[(mu - k)^2] of SGD on E f = (mu - k)^2 + sigma^2 with noisy gradients.

    The update mu <- mu - step * g with g = 2 (mu - k) + xi, where the noise xi has
    mean 0 and variance ``grad_variance`` (= V / N for N draws of a per-sample
    variance V), makes a = mu - k an AR(1) process, a' = (1 - 2 step) a - step xi.
    Its stationary variance, for 0 < step < 1, is

    .. math:: \mathbb E[a^2] = \frac{\text{step}^2\, V}{1 - (1 - 2\,\text{step})^2}
              = \frac{\text{step}\, V}{4 (1 - \text{step})}

    exact when V does not depend on mu (the pathwise estimator, V = 4 sigma^2).
    """
    if not 0 < step < 1:
        raise ValueError(
            f"step must lie in (0, 1) for SGD on this quadratic to settle, got {step}."
        )
    return step * grad_variance / (4 * (1 - step))


def sgd_quadratic_floor(step, curvature, grad_variance):
    r"""Stationary excess loss of SGD on a quadratic (h/2) x^2 with noisy gradients h x + xi.

    The update x <- x - step (h x + xi), with xi of mean 0 and variance V
    (``grad_variance``), is an AR(1) process x' = (1 - step h) x - step xi, stable
    for 0 < step h < 2. Its stationary second moment and excess loss are

    .. math:: \mathbb E[x^2] = \frac{\text{step}^2 V}{1 - (1 - \text{step}\, h)^2},
              \qquad \frac h2\, \mathbb E[x^2] = \frac{\text{step}\, V}{2\,(2 - \text{step}\, h)} .

    With h = 2 it is ``sgd_excess_floor``. Exact for a quadratic with noise
    that does not depend on x; near the optimum of a smooth loss, the
    leading-order floor.
    """
    if not 0 < step * curvature < 2:
        raise ValueError(
            f"step * curvature must lie in (0, 2) for SGD to settle, got step={step}, curvature={curvature}; "
            "use a smaller step."
        )
    return step * grad_variance / (2 * (2 - step * curvature))


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


def _normal_sf(x):
    """P(Z > x) for Z ~ N(0, 1): 0.5 erfc(x / sqrt 2), for floats, numpy arrays or torch tensors."""
    if torch.is_tensor(x):
        return 0.5 * torch.special.erfc(x / math.sqrt(2.0))
    out = 0.5 * np.vectorize(math.erfc, otypes=[float])(np.asarray(x, dtype=float) / math.sqrt(2.0))
    return float(out) if out.ndim == 0 else out


def _exp(x):
    return torch.exp(x) if torch.is_tensor(x) else np.exp(x)


def sine(omega):
    r"""The integrand f(x) = sin(omega x), as a torch function from points (..., 1) to values (...)."""
    return lambda x: torch.sin(omega * x).sum(-1)


def sine_expectation(mu, sigma, omega):
    r"""E[sin(omega x)] = sin(omega mu) exp(-omega^2 sigma^2 / 2) for x ~ N(mu, sigma^2).

    It is the imaginary part of E[exp(i omega x)] = exp(i omega mu - omega^2 sigma^2 / 2).
    """
    xp, (mu, sigma, omega) = _as_common(mu, sigma, omega)
    return xp.sin(omega * mu) * xp.exp(-0.5 * omega**2 * sigma**2)


def sine_grad_mean(mu, sigma, omega):
    r"""d/dmu E[sin(omega x)] = omega cos(omega mu) exp(-omega^2 sigma^2 / 2)."""
    xp, (mu, sigma, omega) = _as_common(mu, sigma, omega)
    return omega * xp.cos(omega * mu) * xp.exp(-0.5 * omega**2 * sigma**2)


def sine_reparam_variance_mean(mu, sigma, omega):
    r"""Variance of one pathwise sample omega cos(omega x) of d/dmu E[sin(omega x)].

    .. math:: \omega^2\Big(\tfrac12\big(1 + \cos(2\omega\mu)\,e^{-2\omega^2\sigma^2}\big)
              - \cos^2(\omega\mu)\,e^{-\omega^2\sigma^2}\Big)

    from cos^2 = (1 + cos 2 omega x)/2. It grows like omega^2 / 2: the slope
    of f grows with the frequency.
    """
    xp, (mu, sigma, omega) = _as_common(mu, sigma, omega)
    e = xp.exp(-(omega**2) * sigma**2)
    return omega**2 * (0.5 * (1 + xp.cos(2 * omega * mu) * e**2) - xp.cos(omega * mu) ** 2 * e)


def sine_score_variance_mean(mu, sigma, omega):
    r"""Variance of one score-function sample sin(omega x) eps / sigma of d/dmu E[sin(omega x)].

    .. math:: \frac{1 - \cos(2\omega\mu)\,(1 - 4\omega^2\sigma^2)\,e^{-2\omega^2\sigma^2}}{2\sigma^2}
              - \omega^2\cos^2(\omega\mu)\,e^{-\omega^2\sigma^2}

    from sin^2 = (1 - cos 2 omega x)/2 and E[eps^2 cos(t eps + b)] =
    cos(b) (1 - t^2) exp(-t^2/2). It stays below 1/(2 sigma^2) + o(1) as omega
    grows: |f| <= 1, so only the score, of variance 1/sigma^2, is large.
    """
    xp, (mu, sigma, omega) = _as_common(mu, sigma, omega)
    e = xp.exp(-(omega**2) * sigma**2)
    second = (1 - xp.cos(2 * omega * mu) * (1 - 4 * omega**2 * sigma**2) * e**2) / (2 * sigma**2)
    return second - sine_grad_mean(mu, sigma, omega) ** 2


def tail_probability(t):
    r"""P(X > t) for X ~ N(0, 1): erfc(t / sqrt 2) / 2."""
    return _normal_sf(t)


def tail_importance_variance(t, shift):
    r"""Variance of one importance-sampling term 1[x > t] p(x)/q(x), x ~ q = N(shift, 1), p = N(0, 1).

    .. math:: \operatorname{Var} = e^{\text{shift}^2}\, P(Z > t + \text{shift}) - P(Z > t)^2

    since p(x)^2 / q(x) = exp(shift^2) N(x; -shift, 1). At shift = 0 it is the
    Bernoulli variance P(1 - P) of plain Monte Carlo.
    """
    return _exp(shift**2) * _normal_sf(t + shift) - _normal_sf(t) ** 2


def bernoulli_expectation(p, k):
    r"""E[(x - k)^2] = p (1 - k)^2 + (1 - p) k^2 for x ~ Bernoulli(p)."""
    return p * (1 - k) ** 2 + (1 - p) * k**2


def bernoulli_grad_logit(p, k):
    r"""d/deta E[(x - k)^2] = p (1 - p) (1 - 2k), with p = sigmoid(eta) the probability of x = 1.

    E f = f(0) + p (f(1) - f(0)), f(1) - f(0) = 1 - 2k, and dp/deta = p (1 - p).
    """
    return p * (1 - p) * (1 - 2 * k)


def bernoulli_score_variance(p, k, baseline=0.0):
    r"""Variance of one score-function sample (f(x) - c) (x - p) of d/deta E[(x - k)^2], x ~ Bernoulli(p).

    The score of the logit eta is d/deta log q(x) = x - p. Summing over x = 0, 1:

    .. math:: p (1-p)^2 (f(1) - c)^2 + (1-p) p^2 (f(0) - c)^2 - \big(p(1-p)(f(1) - f(0))\big)^2
    """
    f0, f1 = k**2, (1 - k) ** 2
    c = baseline
    return (
        p * (1 - p) ** 2 * (f1 - c) ** 2
        + (1 - p) * p**2 * (f0 - c) ** 2
        - bernoulli_grad_logit(p, k) ** 2
    )


def bernoulli_optimal_baseline(p, k):
    r"""The variance-minimising constant baseline c* = E[f s^2] / E[s^2] for d/deta E[(x - k)^2], x ~ Bernoulli(p).

    The score is s = x - p, with E[s^2] = p (1 - p) and
    E[f s^2] = p (1 - p)^2 f(1) + (1 - p) p^2 f(0), so c* = (1 - p) f(1) + p f(0).
    For one bit f(x) s is affine in s, and this baseline leaves zero variance.
    """
    return (1 - p) * (1 - k) ** 2 + p * k**2


def bernoulli_rloo_variance(p, k, num_samples):
    r"""Variance of the N-draw leave-one-out (RLOO) estimate of d/deta E[(x - k)^2], x ~ Bernoulli(p).

    The estimate is (1/N) sum_n (f(x_n) - c_n)(x_n - p) with c_n the mean of
    f over the other N - 1 draws. Since f(x) = f(0) + (f(1) - f(0)) x, it
    equals (f(1) - f(0)) K (N - K) / (N (N - 1)) with K ~ Binomial(N, p) the
    number of ones; its variance is an exact sum over K = 0..N. (Its mean is
    p (1 - p) (f(1) - f(0)): unbiased.) Scalars only.
    """
    n = int(num_samples)
    if n < 2:
        raise ValueError(
            f"num_samples must be at least 2 for a leave-one-out baseline, got {num_samples}."
        )
    delta = (1 - k) ** 2 - k**2
    pmf = [math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(n + 1)]
    vals = [delta * j * (n - j) / (n * (n - 1)) for j in range(n + 1)]
    m1 = sum(w * v for w, v in zip(pmf, vals))
    return sum(w * v * v for w, v in zip(pmf, vals)) - m1 * m1


__all__ = [
    "shifted_square",
    "expectation",
    "variance",
    "third_central_moment",
    "grad_mean",
    "grad_scale",
    "score_variance_mean",
    "score_variance_scale",
    "optimal_baseline_mean",
    "optimal_baseline_scale",
    "reparam_variance_mean",
    "reparam_variance_scale",
    "sgd_excess_floor",
    "sgd_quadratic_floor",
    "squared_norm",
    "squared_norm_expectation",
    "squared_norm_grads",
    "sine",
    "sine_expectation",
    "sine_grad_mean",
    "sine_reparam_variance_mean",
    "sine_score_variance_mean",
    "tail_probability",
    "tail_importance_variance",
    "bernoulli_expectation",
    "bernoulli_grad_logit",
    "bernoulli_score_variance",
    "bernoulli_optimal_baseline",
    "bernoulli_rloo_variance",
    "scaled_proposal_second_moment",
    "isotropic_log_likelihood",
    "isotropic_score_variance",
    "isotropic_optimal_baseline",
    "sgd_excess_floor_self_consistent",
]


def scaled_proposal_second_moment(s2):
    r"""The integral of p^2 / q for p = N(0, 1) and the proposal q = N(0, s2): s2 / sqrt(2 s2 - 1).

    p(x)^2 / q(x) = s exp(-x^2 (1 - 1/(2 s2))) / sqrt(2 pi), a Gaussian integral
    that converges exactly when s2 > 1/2. It is E_q[(p/q)^2], so one weight p/q
    has variance s2 / sqrt(2 s2 - 1) - 1: finite for 1/2 < s2 < 1 although the
    proposal's tails are then lighter than p's.
    """
    if not s2 > 0.5:
        raise ValueError(
            f"s2 must exceed 1/2, got {s2}: for s2 <= 1/2 the integral of p^2/q diverges and the "
            "importance weights have infinite variance. Fix: take a proposal variance s2 > 1/2."
        )
    return s2 / math.sqrt(2 * s2 - 1)


def isotropic_log_likelihood(level):
    r"""f(z) = -level - |z|^2 / 2: points (..., d) -> values (...).

    A stand-in for a Gaussian log-likelihood log p(x|z) (at x = 0, unit
    noise), whose constant ``-level`` plays the part of the hundreds of nats a
    VAE's log p(x|z) sits below zero.
    """
    return lambda z: -level - 0.5 * (z**2).sum(-1)


def isotropic_score_variance(dim, level, baseline=0.0):
    r"""Variance of one score-function sample of d/dmu_1 E_q f, f = isotropic_log_likelihood(level), q = N(0, I_d).

    The sample is (f(z) - c) eps_1 with z = eps ~ N(0, I_d). Writing
    |eps|^2 = eps_1^2 + R with R ~ chi^2_{d-1} independent of eps_1,
    E[|eps|^2 eps_1^2] = d + 2 and E[|eps|^4 eps_1^2] = (d + 2)(d + 4); the
    true gradient is 0. With A = level + c,

    .. math:: \operatorname{Var} = \Big(A + \frac{d + 2}{2}\Big)^2 + \frac{d + 2}{2}

    It grows with the dimension and with the level; the pathwise sample,
    -eps_1, has variance 1 whatever both are. Floats, numpy arrays or tensors.
    """
    half = (dim + 2) / 2
    return (level + baseline + half) ** 2 + half


def isotropic_optimal_baseline(dim, level):
    r"""The variance-minimising constant baseline for :func:`isotropic_score_variance`: -level - (d + 2)/2.

    It is c* = E[f s^2] / E[s^2] with the score s = eps_1, and it leaves the variance (d + 2)/2.
    """
    return -level - (dim + 2) / 2


def sgd_excess_floor_self_consistent(step, variance_of_offset):
    r"""Stationary E[a^2] of the SGD of :func:`sgd_excess_floor` when the noise variance depends on a.

    ``variance_of_offset(a)`` is the per-sample gradient variance V(a) at offset
    a = mu - k, an even polynomial of degree at most 4, V = c0 + c2 a^2 + c4 a^4
    (its coefficients are read off at a = 0, 1, 2 and checked at a = 3).
    Stationarity of a' = (1 - 2 step) a - step xi, with xi of variance V(a)
    given a, gives

    .. math:: \mathbb E[a^2] = \frac{\text{step}\; \mathbb E\,V(a)}{4 (1 - \text{step})},
              \qquad \mathbb E\,V(a) = c_0 + c_2\,\mathbb E[a^2] + c_4\,\mathbb E[a^4]

    For c4 = 0 (the pathwise estimator; the score function with the oracle
    baseline c*) this is exact. For c4 > 0 (the score function without a
    baseline) E[a^4] is taken as 3 E[a^2]^2, as for a Gaussian a, and the
    smaller root of the quadratic is returned: an approximation, which a
    heavier-tailed a exceeds.
    """
    if not 0 < step < 1:
        raise ValueError(
            f"step must lie in (0, 1) for SGD on this quadratic to settle, got {step}."
        )
    v0, v1, v2, v3 = (float(variance_of_offset(a)) for a in (0.0, 1.0, 2.0, 3.0))
    c0 = v0
    c4 = (v2 - 4 * v1 + 3 * v0) / 12
    c2 = v1 - v0 - c4
    if abs(v3 - (c0 + 9 * c2 + 81 * c4)) > 1e-9 * (1 + abs(v3)):
        raise ValueError(
            "variance_of_offset must be an even polynomial of degree <= 4 in the offset a "
            f"(V(0..3) = {v0}, {v1}, {v2}, {v3} are not). Fix: pass the closed-form variance of one gradient sample."
        )
    r = step / (4 * (1 - step))
    if abs(c4) < 1e-12 * (1 + abs(c2) + abs(c0)):
        if r * c2 >= 1:
            raise ValueError(
                f"no stationary floor: the noise grows too fast with a for step = {step}; SGD diverges."
            )
        return r * c0 / (1 - r * c2)
    disc = (1 - r * c2) ** 2 - 12 * r**2 * c4 * c0
    if disc < 0 or r * c2 >= 1:
        raise ValueError(
            f"no stationary floor: the noise grows too fast with a for step = {step}; SGD diverges."
        )
    return ((1 - r * c2) - math.sqrt(disc)) / (6 * r * c4)


def _as_common(*values):
    """(numpy, values) for floats and arrays; (torch, tensors) when any value is a tensor, keeping autograd."""
    tensors = [v for v in values if torch.is_tensor(v)]
    if not tensors:
        return np, values
    ref = tensors[0]
    return torch, tuple(
        v if torch.is_tensor(v) else torch.as_tensor(v, dtype=ref.dtype, device=ref.device)
        for v in values
    )
