r"""Monte Carlo estimates, their standard errors, and how to report them (chapter 1).

E_p[f(X)] ~ (1/N) sum_n f(X_n): :func:`monte_carlo` draws the X_n and
averages, :func:`mc_estimate` gives the mean of any n draws with its standard
error (the package's one standard error: :func:`mean_and_se` and
:func:`paired_difference` of chapters 7-8 are it on per-image values), :func:`format_estimate` prints it to the digits that standard error
supports, :func:`student_t_quantile` gives the interval's multiplier, and
:func:`importance_sampling` estimates E_p[f] from draws of another density.
Everything is written with torch operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


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


def mean_and_se(a):
    """Mean and standard error (sd / sqrt(n)) of per-image values a, a 1-D array with n >= 2, as floats.

    :func:`mc_estimate` of the values in float64.
    """
    a = torch.as_tensor(_as_float64(a))
    if a.ndim != 1 or len(a) < 2:
        raise ValueError(
            f"mean_and_se: a must be a 1-D array of one value per image (n >= 2); got shape {tuple(a.shape)}. "
            "Fix: pass e.g. the per-image bounds iwae_bound returns."
        )
    estimate = mc_estimate(a)
    return float(estimate.mean), float(estimate.stderr)


def paired_difference(a, b):
    r"""Mean and standard error of a - b for per-image values on the same images.

    .. math:: \bar d = \frac1n\sum_i (a_i - b_i), \qquad
              \mathrm{se} = \frac{\operatorname{sd}(a_i - b_i)}{\sqrt n}

    Two bounds on the same images share most of their image-to-image spread,
    so the paired standard error is far smaller than the one from each
    column's own spread. a, b: 1-D arrays of the same length n >= 2.
    Returns ``(mean, se)`` as floats (:func:`mean_and_se` of a - b).
    """
    a, b = _as_float64(a), _as_float64(b)
    if a.ndim != 1 or a.shape != b.shape or len(a) < 2:
        raise ValueError(
            f"paired_difference: a and b must be 1-D arrays of one value per image, the same images in "
            f"the same order (n >= 2); got shapes {a.shape} and {b.shape}."
        )
    return mean_and_se(a - b)


def _as_float64(a):
    """``a`` (a list, numpy array or tensor) as a float64 numpy array on the CPU."""
    import numpy as np

    if torch.is_tensor(a):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def monte_carlo(f, sampler, num_samples, generator=None) -> MCEstimate:
    """E_p[f(X)] ~ (1/N) sum_n f(X_n), X_n = sampler(N, generator); with its standard error."""
    return mc_estimate(f(sampler(num_samples, generator)))


def format_estimate(mean, stderr) -> str:
    """``"mean ± stderr"``, both rounded at the place of the standard error's one significant digit.

    The standard error is first rounded to one significant digit, and the place
    of that digit sets the rounding of both numbers: 1.2517 ± 0.0034 prints as
    ``1.252 ± 0.003``; 0.5012 ± 0.0096 as ``0.50 ± 0.01`` (0.0096 rounds up to
    0.01, one place to the left); 38550.4 ± 54 as ``38550 ± 50``. Floats or
    one-element tensors; a zero standard error prints the mean to 4 decimals
    and ``± 0``.
    """
    mean, stderr = float(mean), float(stderr)
    if not math.isfinite(mean):
        raise ValueError(f"mean must be a finite number, got {mean}.")
    if not (math.isfinite(stderr) and stderr >= 0):
        raise ValueError(f"stderr must be a finite number >= 0, got {stderr}.")
    if stderr == 0:
        return f"{mean:.4f} ± 0"
    place = math.floor(math.log10(stderr))
    if round(stderr / 10.0**place) >= 10:  # e.g. 0.0096 -> 0.01: the digit moves one place left
        place += 1
    if place >= 0:  # round to tens, hundreds, ...: print integers
        step = 10**place
        return f"{round(mean / step) * step:d} ± {round(stderr / step) * step:d}"
    return f"{mean:.{-place}f} ± {stderr:.{-place}f}"


def student_t_quantile(prob: float, dof: float) -> float:
    r"""The quantile t with P(T <= t) = prob for Student's t with ``dof`` >= 1 degrees of freedom.

    With t = sqrt(dof) tan(angle) the density of the angle on (-pi/2, pi/2) is
    proportional to cos(angle)^(dof - 1), bounded for dof >= 1; its cumulative
    integral (trapezoid rule, 200 001 nodes) is inverted by linear
    interpolation: relative error below 1e-6 for dof up to 10^4. For dof = 1
    (Cauchy) it gives tan(pi (prob - 1/2)). For dof < 1 the angle's density is
    unbounded at the ends and the rule would be wrong, so it is refused.
    The interval mean ± t_{N-1, 0.975} stderr covers the mean of Gaussian
    data in 95% of experiments for every N >= 2.
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must lie strictly between 0 and 1, got {prob}.")
    if not dof >= 1:
        raise ValueError(
            f"dof must be at least 1 (N - 1 for N >= 2 draws), got {dof}. Below 1 the integrand of this "
            "quadrature is unbounded and the quantile it gives is wrong; for 0 < dof < 1 use "
            "scipy.stats.t.ppf(prob, dof)."
        )
    angle = torch.linspace(-math.pi / 2, math.pi / 2, 200_001, dtype=torch.float64)
    dens = torch.cos(angle).clamp(min=0.0) ** (dof - 1.0)
    cdf = torch.cat(
        [torch.zeros(1, dtype=torch.float64), torch.cumsum((dens[1:] + dens[:-1]) / 2, 0)]
    )
    cdf = cdf / cdf[-1]
    j = int(torch.searchsorted(cdf, torch.tensor([prob], dtype=torch.float64)).item())
    w = (prob - cdf[j - 1]) / (cdf[j] - cdf[j - 1])
    a = angle[j - 1] + w * (angle[j] - angle[j - 1])
    return float(math.sqrt(dof) * math.tan(a))


def sample_variance(values) -> MCEstimate:
    r"""The sample variance of ``values`` (n, ...) over the first axis, with its standard error.

    The variance is the average of the squared deviations (v_n - mean)^2, times
    n / (n - 1), so it equals ``values.var(0)``. It is itself a Monte Carlo
    average, so :func:`mc_estimate` of the squared deviations gives its
    standard error, about sqrt((m_4 - s^4) / n) with m_4 the fourth central
    moment (meaningful only when the values have a finite fourth moment).
    The course's one helper for a measured variance. Returns an
    :class:`MCEstimate` whose ``mean`` is the variance.
    """
    values = torch.as_tensor(values)
    values = values.to(torch.float64) if not values.is_floating_point() else values
    n = values.shape[0] if values.ndim else 0
    if n < 2:
        raise ValueError(
            f"sample_variance needs at least 2 values along the first axis, got shape {tuple(values.shape)}."
        )
    squared = mc_estimate((values - values.mean(0)) ** 2)
    factor = n / (n - 1)
    return MCEstimate(squared.mean * factor, squared.stderr * factor, n)


def importance_weighted_values(f, log_p, proposal, log_q, num_samples, generator=None):
    r"""The values f(X_n) p(X_n) / q(X_n), X_n ~ q, whose average is the importance-sampling estimate.

    ``proposal(N, generator)`` draws (N, d) points; ``log_p`` and ``log_q`` map
    them to log-densities (N,); returns f's values times the weights, (N, ...).
    :func:`importance_sampling` averages them; :func:`sample_variance` gives
    the variance of one term.
    """
    x = proposal(num_samples, generator)
    return f(x) * torch.exp(log_p(x) - log_q(x))


def importance_sampling(f, log_p, proposal, log_q, num_samples, generator=None) -> MCEstimate:
    r"""E_p[f(X)] estimated with draws from a proposal q, with its standard error.

    .. math:: \hat\mu_N^{\mathrm{IS}} = \frac1N \sum_{n=1}^N f(X_n)\, \frac{p(X_n)}{q(X_n)},
              \qquad X_n \sim q

    Unbiased wherever q > 0 on the support of f p. Its variance is
    (E_q[f^2 p^2 / q^2] - E_p[f]^2) / N, small when q puts its mass where |f| p
    is large, and infinite when the integral of f^2 p^2 / q diverges.
    ``proposal(N, generator)`` draws (N, d) points; ``log_p`` and ``log_q`` map
    points (N, d) to log-densities (N,).
    """
    return mc_estimate(
        importance_weighted_values(f, log_p, proposal, log_q, num_samples, generator)
    )


__all__ = [
    "MCEstimate",
    "mc_estimate",
    "mean_and_se",
    "paired_difference",
    "monte_carlo",
    "format_estimate",
    "student_t_quantile",
    "importance_sampling",
    "sample_variance",
    "importance_weighted_values",
]
