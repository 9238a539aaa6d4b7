r"""A latent-variable model in which every quantity of the ELBO is exact (torch).

The linear-Gaussian model with one latent and one observed coordinate:

.. math::
    z \sim \mathcal N(0, 1), \qquad x \mid z \sim \mathcal N(w z + b,\ s^2),

with weight ``w``, offset ``b`` and noise standard deviation ``s > 0``. Its
marginal, its posterior, and the ELBO and the posterior KL of any Gaussian
q(z) = N(m, v) have closed forms, which is what the course needs to check the
identity log p(x) = ELBO(q) + KL(q || p(z | x)) to rounding error.

Conventions: ``v`` (and ``var``) are **variances**, never standard deviations.
Every method works element-wise and broadcasts: ``x``, ``z``, ``m``, ``v``
may be Python numbers or torch tensors of any broadcastable shapes, and the
result has the broadcast shape. Python numbers become float64 tensors;
tensors keep their dtype. All operations are differentiable torch ops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .gaussian import LOG_2PI, normal_kl, normal_log_prob
from .gradients import check_estimator, transform


def _tensor(a):
    """A torch tensor: tensors are returned as they are, numbers become float64."""
    return a if torch.is_tensor(a) else torch.as_tensor(a, dtype=torch.float64)


def _check_variance(v, name):
    v = _tensor(v)
    if not bool(torch.all(v > 0)):
        raise ValueError(
            f"{name} must be a variance > 0 everywhere; got a minimum of {v.min().item():.3g}."
        )
    return v


def kl_gaussian(m1, v1, m2, v2):
    r"""KL(N(m1, v1) || N(m2, v2)) between two univariate Gaussians, element-wise.

    .. math:: \mathrm{KL} = \tfrac12\Big(\log\frac{v_2}{v_1} + \frac{v_1 + (m_1-m_2)^2}{v_2} - 1\Big)

    v1, v2 are variances (checked > 0); the formula is :func:`~vae_course.gaussian.normal_kl`'s,
    which takes log-variances. Exactly 0.0 when (m1, v1) == (m2, v2). Shapes broadcast.
    """
    m1, m2 = _tensor(m1), _tensor(m2)
    v1, v2 = _check_variance(v1, "v1"), _check_variance(v2, "v2")
    return normal_kl(m1, torch.log(v1), m2, torch.log(v2))


@dataclass(frozen=True)
class LinearGaussian:
    r"""z ~ N(0, 1), x | z ~ N(w z + b, s^2); ``s`` is a standard deviation.

    Example::

        model = LinearGaussian(w=1.5, b=0.3, s=0.8)
        model.log_marginal(2.0)         # log p(x), exact
        m, v = model.posterior(2.0)     # p(z | x) = N(m, v), exact
        model.elbo(2.0, 0.0, 1.0)       # ELBO of q = N(0, 1), exact
    """

    w: float
    b: float
    s: float

    def __post_init__(self):
        for name in ("w", "b", "s"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise ValueError(f"{name} must be a finite number, got {value!r}.")
        if self.s <= 0:
            raise ValueError(f"s is the noise standard deviation and must be > 0, got {self.s!r}.")

    # ------------------------------------------------------------ the model
    def log_prior(self, z):
        r"""log p(z) = log N(z; 0, 1), element-wise."""
        return normal_log_prob(z, 0.0, 1.0)

    def log_likelihood(self, x, z):
        r"""log p(x | z) = log N(x; w z + b, s^2), element-wise; x and z broadcast."""
        return normal_log_prob(x, self.w * _tensor(z) + self.b, self.s**2)

    def log_joint(self, x, z):
        r"""log p(x, z) = log p(x | z) + log p(z), element-wise."""
        return self.log_likelihood(x, z) + self.log_prior(z)

    # ------------------------------------------------------ exact answers
    def marginal_var(self):
        r"""Var(x) = w^2 + s^2 (a float)."""
        return self.w**2 + self.s**2

    def log_marginal(self, x):
        r"""The evidence log p(x), exact: x ~ N(b, w^2 + s^2).

        .. math:: \log p(x) = \log\int \mathcal N(x; wz+b, s^2)\,\mathcal N(z; 0, 1)\,dz
                  = \log \mathcal N(x;\ b,\ w^2 + s^2)
        """
        return normal_log_prob(x, self.b, self.marginal_var())

    def posterior(self, x):
        r"""The exact posterior p(z | x) = N(mean, var); returns ``(mean, var)``.

        .. math:: \mathrm{var} = \frac{s^2}{w^2 + s^2}, \qquad
                  \mathrm{mean} = \frac{w\,(x - b)}{w^2 + s^2}

        ``mean`` has the shape of x; ``var`` is a 0-d tensor (it does not depend on x).
        """
        x = _tensor(x)
        total = self.marginal_var()
        mean = self.w * (x - self.b) / total
        var = torch.as_tensor(self.s**2 / total, dtype=x.dtype)
        return mean, var

    def expected_log_likelihood(self, x, m, v):
        r"""E_q[log p(x | z)] for q(z) = N(m, v), exact.

        .. math:: \mathbb E_q[\log p(x\mid z)] = -\tfrac12\log(2\pi s^2)
                  - \frac{(x - w m - b)^2 + w^2 v}{2 s^2}

        (the mean of a squared residual is the squared mean residual plus its variance).
        """
        x, m, v = _tensor(x), _tensor(m), _check_variance(v, "v")
        return -0.5 * (LOG_2PI + 2.0 * math.log(self.s)) - (
            (x - self.w * m - self.b) ** 2 + self.w**2 * v
        ) / (2.0 * self.s**2)

    def kl_to_prior(self, m, v):
        r"""KL(q || p(z)) = KL(N(m, v) || N(0, 1)) = (m^2 + v - 1 - log v) / 2."""
        return kl_gaussian(m, v, 0.0, 1.0)

    def elbo(self, x, m, v):
        r"""The ELBO of q(z) = N(m, v), exact.

        .. math:: \mathrm{ELBO}(q) = \mathbb E_q[\log p(x\mid z)]
                  - \mathrm{KL}\big(q \,\|\, p(z)\big)
        """
        return self.expected_log_likelihood(x, m, v) - self.kl_to_prior(m, v)

    def kl_to_posterior(self, x, m, v):
        r"""The gap KL(q || p(z | x)) of q(z) = N(m, v), exact; 0.0 at the posterior itself."""
        post_mean, post_var = self.posterior(x)
        return kl_gaussian(m, v, post_mean, post_var)

    def chi2_posterior_to_q(self, x, m, v):
        r"""The chi-square divergence of the posterior from q(z) = N(m, v), exact.

        It is finite only for v > Var(z|x) / 2.

        .. math:: \chi^2\big(p(z\mid x)\,\|\,q\big) = \int \frac{p(z\mid x)^2}{q(z)}\,dz - 1
                  = \frac{\sqrt v}{a\sqrt P}\exp\Big(\frac{(2\mu/a - m/v)^2}{2P}
                  - \frac{\mu^2}{a} + \frac{m^2}{2v}\Big) - 1,

        with (mu, a) the posterior's mean and variance and P = 2/a - 1/v. For large k,
        :math:`\mathcal L_k \approx \log p(x) - \chi^2/(2k)` (the variance of w/p(x) is chi^2).
        """
        m, v = _tensor(m), _check_variance(v, "v")
        mu, a = self.posterior(x)
        prec = 2.0 / a - 1.0 / v
        if torch.any(prec <= 0):
            raise ValueError(f"chi2_posterior_to_q: v must exceed Var(z | x) / 2 = {a / 2}")
        expo = (2.0 * mu / a - m / v) ** 2 / (2.0 * prec) - mu**2 / a + m**2 / (2.0 * v)
        return torch.sqrt(v) / (a * torch.sqrt(prec)) * torch.exp(expo) - 1.0

    # --------------------------------------------------- Monte Carlo (SGVB)
    def sgvb_elbo(self, x, m, v, eps):
        r"""One-sample ELBO estimates, one per entry of ``eps`` (the full SGVB form).

        .. math:: \hat{\mathcal L} = \log p(x \mid z) + \log p(z) - \log q(z), \qquad
                  z = m + \sqrt v\,\varepsilon, \quad \varepsilon \sim \mathcal N(0, 1)

        eps: standard-normal draws, broadcasting against x, m, v (e.g. shape (n,)).
        Unbiased: its mean over eps is :meth:`elbo`.
        """
        m, v = _tensor(m), _check_variance(v, "v")
        z = transform(eps, *torch.broadcast_tensors(m, torch.sqrt(v)))  # z = m + sqrt(v) eps
        return self.log_joint(x, z) - normal_log_prob(z, m, v)

    def sgvb_elbo_analytic_kl(self, x, m, v, eps):
        r"""One-sample ELBO estimates with the KL term exact (the form a VAE trains on).

        .. math:: \hat{\mathcal L}_{\mathrm{KL}} = \log p(x \mid z) - \mathrm{KL}\big(q\,\|\,p(z)\big),
                  \qquad z = m + \sqrt v\,\varepsilon

        Same shapes as :meth:`sgvb_elbo`; also unbiased.
        """
        m, v = _tensor(m), _check_variance(v, "v")
        z = transform(eps, *torch.broadcast_tensors(m, torch.sqrt(v)))  # z = m + sqrt(v) eps
        return self.log_likelihood(x, z) - self.kl_to_prior(m, v)

    # ------------------------------------- gradient variances, closed forms
    def posterior_precision(self):
        r"""lambda = 1 / Var(z | x) = 1 + w^2 / s^2 (a float), the curvature of -log p(x, z) in z."""
        return 1.0 + self.w**2 / self.s**2

    def grad_m_variance(self, x, m, v, estimator, baseline=0.0):
        r"""Variance of a one-draw estimate of d ELBO / dm for q = N(m, v), exact.

        With lambda = :meth:`posterior_precision`, mu the posterior mean, delta = m - mu,
        z = m + sqrt(v) eps, and the prior N(0, 1):

        * ``"mc"`` (pathwise gradient of :meth:`sgvb_elbo`): -lambda (z - mu), variance lambda^2 v;
        * ``"analytic"`` (of :meth:`sgvb_elbo_analytic_kl`): the KL's gradient m is exact,
          the likelihood's is -(lambda - 1)(z - (x - b)/w), variance (lambda - 1)^2 v;
        * ``"stl"`` (sticking the landing, log q's parameters held constant):
          -lambda delta + (1/sqrt(v) - lambda sqrt(v)) eps, variance (1 - lambda v)^2 / v;
        * ``"score"`` (score function, (f(z) - c) (z - m)/v with the ELBO's integrand
          f = log p(x, z) - log q(z) = a0 + a1 eps + a2 eps^2 and the constant ``baseline`` c):
          [(a0 - c + 3 a2)^2 + 2 a1^2 + 6 a2^2] / v, where
          a0 = log p(x) + log(lambda v)/2 - lambda delta^2/2, a1 = -lambda delta sqrt(v),
          a2 = (1 - lambda v)/2.

        Each estimate has mean -lambda delta, the exact gradient. ``baseline`` is only
        used by ``"score"``. Shapes broadcast like :meth:`elbo`.
        """
        if estimator != "score":
            check_estimator(estimator)
        x, m, v = _tensor(x), _tensor(m), _check_variance(v, "v")
        lam = self.posterior_precision()
        if estimator == "mc":
            return lam**2 * v
        if estimator == "analytic":
            return (lam - 1.0) ** 2 * v
        if estimator == "stl":
            return (1.0 - lam * v) ** 2 / v
        delta = m - self.posterior(x)[0]
        a0 = self.log_marginal(x) + 0.5 * torch.log(lam * v) - 0.5 * lam * delta**2
        a1 = -lam * delta * torch.sqrt(v)
        a2 = 0.5 * (1.0 - lam * v)
        return ((a0 - _tensor(baseline) + 3.0 * a2) ** 2 + 2.0 * a1**2 + 6.0 * a2**2) / v


__all__ = ["LinearGaussian", "kl_gaussian", "normal_log_prob", "LOG_2PI"]
