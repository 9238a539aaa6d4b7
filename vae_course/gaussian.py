r"""The Gaussian log-density and the KL between two Gaussians (chapters 2-5).

.. math:: \log \mathcal N(x; \mu, v) = -\tfrac12\Big(\log 2\pi + \log v + \frac{(x-\mu)^2}{v}\Big)

:func:`normal_log_prob` is that formula, element-wise, and :func:`normal_kl` the
KL between two univariate Gaussians; every log-density and every Gaussian KL
of the package (``losses``, ``gradients``, ``linear_gaussian``, ``evaluate``)
is one of them, summed. :func:`std_normal_log_prob` and
:func:`diag_gaussian_log_prob` are the VAE's prior and posterior densities. :func:`gaussian_log_prob` and
:func:`gaussian_kl` are the log-density of, and the KL between, Gaussians
N(m, S) in d dimensions whose covariance S is given by a *scale*: the
standard deviations (d,), S = diag(scale^2), or a lower-triangular Cholesky
factor L (d, d), S = L L^T.

Written with torch operations (Keras's torch backend hands torch tensors
to ``losses``), so it works under ``torch.func`` transforms and on the
tensors' own device.
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def normal_log_prob(x, mean, var=None, *, log_var=None) -> torch.Tensor:
    r"""log N(x; mean, var), element-wise, given the variance ``var`` or its log, ``log_var``.

    x, mean, var / log_var: torch tensors or numbers that broadcast together;
    numbers become tensors of x's dtype and device (float64 if x is a
    number too). Returns the broadcast shape. Give exactly one of ``var``
    and ``log_var`` (a VAE's encoder outputs log-variances).
    """
    if (var is None) == (log_var is None):
        raise ValueError(
            "normal_log_prob: give exactly one of var (the variance) and log_var (its log). "
            "Fix: e.g. normal_log_prob(x, 0.0, 1.0) or normal_log_prob(x, mean, log_var=z_log_var)."
        )
    x = x if torch.is_tensor(x) else torch.as_tensor(x, dtype=torch.float64)
    mean = _like(mean, x)
    if var is not None:
        var = _like(var, x)
        log_var = torch.log(var)
    else:
        log_var = _like(log_var, x)
        var = torch.exp(log_var)
    return -0.5 * (LOG_2PI + log_var + (x - mean) ** 2 / var)


def _like(a, x: torch.Tensor) -> torch.Tensor:
    return a if torch.is_tensor(a) else torch.as_tensor(a, dtype=x.dtype, device=x.device)


def normal_kl(mean1, log_var1, mean2=0.0, log_var2=0.0) -> torch.Tensor:
    r"""KL(N(mean1, v1) || N(mean2, v2)) between univariate Gaussians, element-wise, from log-variances.

    .. math:: \mathrm{KL} = \tfrac12\Big(\log\frac{v_2}{v_1} + \frac{v_1 + (m_1-m_2)^2}{v_2} - 1\Big)

    The defaults make the second Gaussian N(0, 1), a VAE's prior. Arguments
    broadcast; numbers become tensors like ``mean1``. Exactly 0.0 where the
    two Gaussians are equal. Summed over coordinates it is the KL between
    diagonal Gaussians (:func:`~vae_course.losses.kl_std_normal`, :func:`gaussian_kl`).
    """
    mean1 = mean1 if torch.is_tensor(mean1) else torch.as_tensor(mean1, dtype=torch.float64)
    log_var1, mean2, log_var2 = _like(log_var1, mean1), _like(mean2, mean1), _like(log_var2, mean1)
    return 0.5 * (
        log_var2
        - log_var1
        + (torch.exp(log_var1) + (mean1 - mean2) ** 2) / torch.exp(log_var2)
        - 1.0
    )


def std_normal_log_prob(z) -> torch.Tensor:
    r"""log N(z; 0, I) summed over the last axis: (..., d) -> (...)."""
    z = torch.as_tensor(z)
    return normal_log_prob(z, 0.0, 1.0).sum(-1)


def diag_gaussian_log_prob(z, mean, log_var) -> torch.Tensor:
    r"""log N(z; mean, diag exp(log_var)) summed over the last axis: (..., d) -> (...)."""
    z = torch.as_tensor(z)
    mean = torch.as_tensor(mean, dtype=z.dtype, device=z.device)
    log_var = torch.as_tensor(log_var, dtype=z.dtype, device=z.device)
    return normal_log_prob(z, mean, log_var=log_var).sum(-1)


def _check(mean, scale):
    mean = torch.as_tensor(
        mean, dtype=torch.get_default_dtype() if not torch.is_tensor(mean) else None
    )
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
            "scales (batch, d) use diag_gaussian_log_prob."
        )


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


def gaussian_kl(mean1, scale1, mean2, scale2):
    r"""KL(N(m1, S1) || N(m2, S2)) between two Gaussians in d dimensions.

    Each ``scale`` is the standard deviations (d,) (S = diag(scale^2)) or a
    lower-triangular Cholesky factor L (d, d) (S = L L^T); ``mean`` is (d,).

    .. math:: \mathrm{KL} = \tfrac12\Big(\operatorname{tr}(S_2^{-1}S_1)
              + (m_2-m_1)^\top S_2^{-1}(m_2-m_1) - d + \log\det S_2 - \log\det S_1\Big)

    Two diagonal Gaussians: the sum of :func:`normal_kl` over the coordinates.
    Otherwise computed through the factors: tr(S2^{-1} S1) = ||L2^{-1} L1||_F^2,
    the quadratic form is ||L2^{-1}(m2 - m1)||^2 and log det S = 2 sum_j log|L_jj|.
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
    if scale1.ndim == 1 and scale2.ndim == 1:
        return normal_kl(
            mean1, 2.0 * torch.log(scale1.abs()), mean2, 2.0 * torch.log(scale2.abs())
        ).sum()
    A = torch.linalg.solve_triangular(L2, L1, upper=False)  # L2^{-1} L1
    u = torch.linalg.solve_triangular(L2, (mean2 - mean1).unsqueeze(-1), upper=False).squeeze(-1)
    log_det1 = 2.0 * torch.log(torch.diagonal(L1).abs()).sum()
    log_det2 = 2.0 * torch.log(torch.diagonal(L2).abs()).sum()
    return 0.5 * ((A * A).sum() + (u * u).sum() - d + log_det2 - log_det1)


__all__ = [
    "LOG_2PI",
    "normal_log_prob",
    "normal_kl",
    "std_normal_log_prob",
    "diag_gaussian_log_prob",
    "gaussian_log_prob",
    "gaussian_kl",
]
