r"""Monte Carlo estimates, their standard errors, and how to report them (chapter 1).

E_p[f(X)] ~ (1/N) sum_n f(X_n): :func:`monte_carlo` draws the X_n and
averages, :func:`mc_estimate` gives the mean of any n draws with its standard
error, :func:`format_estimate` prints it to the digits that standard error
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


def monte_carlo(f, sampler, num_samples, generator=None) -> MCEstimate:
    """E_p[f(X)] ~ (1/N) sum_n f(X_n), X_n = sampler(N, generator); with its standard error."""
    return mc_estimate(f(sampler(num_samples, generator)))


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


__all__ = [
    "MCEstimate",
    "mc_estimate",
    "monte_carlo",
    "format_estimate",
    "student_t_quantile",
    "importance_sampling",
]
