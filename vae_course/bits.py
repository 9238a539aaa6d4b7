r"""Likelihoods on one scale: dequantization, bits per dimension, discrete pixel likelihoods.

MNIST's pixels are integers k in {0, ..., 255}. A model with a *density* on
[0, 1]^D (a Gaussian or a continuous Bernoulli decoder) and a model with a
*probability* on the 256 levels (a discretized logistic) give numbers in
different units, unless the density is turned into a probability first.

**Uniform dequantization** (Theis, van den Oord & Bethge 2016): add u ~ U[0, 1)^D
to the integers and divide by 256, y = (k + u) / 256. For any density p on [0, 1]^D,

.. math:: \log P(k) := \log \int_{[0,1)^D} p\big(\tfrac{k+u}{256}\big)\,256^{-D}\,du
          \;\ge\; \mathbb E_u\Big[\log p\big(\tfrac{k+u}{256}\big)\Big] - D\log 256

(Jensen), and P sums to 1 over the 256^D images. So E_u[log p(y)] - D log 256 is a
lower bound on the log-probability of a discrete model P of the 8-bit data.

**Bits per dimension**: -log2 P(k) / D = -log P(k) / (D ln 2); 8 bits per pixel is
the uniform distribution over 256 levels.
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from .errors import DataError, check_positive_int

LEVELS = 256
LOG_LEVELS = math.log(LEVELS)


def bits_per_dim(nll_nats, num_dims, density_on_unit_cube=False):
    r"""Convert a negative log-likelihood in nats (per example) to bits per dimension.

    .. math:: \mathrm{bpd} = \frac{-\log P}{D\,\ln 2}, \qquad
              -\log P = -\log p(y) + D\log 256 \text{ when } p \text{ is a density on } [0,1]^D

    ``density_on_unit_cube=True`` says ``nll_nats`` is -log of a density of the
    dequantized images y = (k + u) / 256 in [0, 1]^D; the term D log 256 turns it
    into -log of a probability of the 8-bit image (see the module docstring).
    Works on numbers and numpy arrays.
    """
    num_dims = check_positive_int(num_dims, "num_dims", 784)
    nll = np.asarray(nll_nats, dtype=np.float64)
    if density_on_unit_cube:
        nll = nll + num_dims * LOG_LEVELS
    return nll / (num_dims * math.log(2.0))


def nats_from_bits(bpd, num_dims, density_on_unit_cube=False):
    """The inverse of :func:`bits_per_dim`: -log p in nats per example from bits per dimension."""
    num_dims = check_positive_int(num_dims, "num_dims", 784)
    nll = np.asarray(bpd, dtype=np.float64) * num_dims * math.log(2.0)
    return nll - num_dims * LOG_LEVELS if density_on_unit_cube else nll


def check_uint8(x, name="x"):
    """``x`` as a uint8 array, or a clear error."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise DataError(
            f"{name}: expected 8-bit pixels (dtype uint8, values 0..255), got dtype {x.dtype}. "
            "Fix: pass the images as loaded by data.load_mnist, before scaling."
        )
    return x


def dequantize(x_uint8, seed=0):
    """Uniform dequantization: y = (k + u) / 256, u ~ U[0, 1), float32 in [0, 1).

    ``x_uint8`` are the 8-bit pixels; one call draws u once, reproducibly for ``seed``.
    """
    x = check_uint8(x_uint8, "x_uint8")
    u = np.random.default_rng(seed).random(x.shape)
    return ((x.astype(np.float64) + u) / LEVELS).astype(np.float32)


def dequantized_bound(log_density, k, num_samples=1000, seed=0):
    r"""Monte Carlo estimate of E_u[log p((k + u)/256)] - D log 256, per example.

    ``log_density(y)`` maps y of shape (n, *shape) in [0, 1) to log p(y), (n,);
    ``k`` are the integer levels, (batch, *shape). Returns (batch,) float64: an
    unbiased estimate of a lower bound on the discrete log-probability log P(k).
    """
    k = check_uint8(k, "k")
    num_samples = check_positive_int(num_samples, "num_samples", 1000)
    rng = np.random.default_rng(seed)
    out = np.zeros(len(k), dtype=np.float64)
    dims = int(np.prod(k.shape[1:])) if k.ndim > 1 else 1
    for _ in range(num_samples):
        y = (k.astype(np.float64) + rng.random(k.shape)) / LEVELS
        out += np.asarray(log_density(y), dtype=np.float64)
    return out / num_samples - dims * LOG_LEVELS


def _sum_per_example(t):
    axes = tuple(range(1, len(ops.shape(t))))
    return ops.sum(t, axis=axes) if axes else t


def discretized_logistic_log_prob(x, mean, log_scale):
    r"""log P(x) of 8-bit pixels under a logistic(mean, s) discretized to 256 bins, per example.

    ``x`` holds the levels scaled as the course scales them, k / 255 in [0, 1]. Level
    k gets the logistic's mass on [(k - 1/2)/255, (k + 1/2)/255], the end levels the
    mass of the tails as well (Salimans et al. 2017), so the 256 probabilities sum
    to 1 for any mean and s = exp(log_scale):

    .. math:: P(k) = \operatorname{sigmoid}\Big(\frac{c_k^+ - \mu}{s}\Big)
              - \operatorname{sigmoid}\Big(\frac{c_k^- - \mu}{s}\Big),
              \quad c_0^- = -\infty,\ c_{255}^+ = +\infty .

    Each log P(k) <= 0, so the sum never runs off to +infinity, whatever s does.
    ``mean`` (batch, ...) and ``log_scale`` (broadcasting against x). Returns (batch,).
    """
    x = ops.convert_to_tensor(x)
    mean = ops.convert_to_tensor(mean, dtype=x.dtype)
    log_scale = ops.convert_to_tensor(log_scale, dtype=x.dtype)
    inv_s = ops.exp(-log_scale)
    half = 0.5 / (LEVELS - 1)
    upper = (x + half - mean) * inv_s
    lower = (x - half - mean) * inv_s
    log_cdf_upper = -ops.softplus(-upper)  # log sigmoid(upper): level 0
    log_sf_lower = -ops.softplus(lower)  # log (1 - sigmoid(lower)): level 255
    # interior: log(sigmoid(upper) - sigmoid(lower)), with a midpoint-density fallback when tiny
    mass = ops.sigmoid(upper) - ops.sigmoid(lower)
    centre = (x - mean) * inv_s
    log_pdf_mid = centre - log_scale - 2.0 * ops.softplus(centre) + math.log(2 * half)
    log_mass = ops.where(mass > 1e-5, ops.log(ops.maximum(mass, 1e-12)), log_pdf_mid)
    log_p = ops.where(x < half, log_cdf_upper, ops.where(x > 1.0 - half, log_sf_lower, log_mass))
    return _sum_per_example(log_p)


def discretized_gaussian_log_prob(k, mean, sigma):
    r"""log P(k) of 8-bit levels under N(mean, sigma^2) discretized to dequantization's bins.

    Level k gets the Gaussian's mass on the bin [k/256, (k+1)/256) that uniform
    dequantization spreads it over, level 0 the whole left tail as well and level 255 the
    whole right tail, so the 256 probabilities sum to 1 for any mean and sigma:

    .. math:: P(k) = \Phi\Big(\frac{b_k^+ - \mu}{\sigma}\Big)
              - \Phi\Big(\frac{b_k^- - \mu}{\sigma}\Big),
              \quad b_0^- = -\infty,\ b_{255}^+ = +\infty .

    This re-scores a Gaussian decoder trained on dequantized images as a discrete model with
    no retraining. ``k`` uint8 levels (batch, ...), ``mean`` broadcasting against it, ``sigma``
    > 0 (a number or an array broadcasting against k). Float64 numpy; returns (batch,).
    """
    import torch

    k = check_uint8(np.asarray(k), "k").astype(np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if np.any(sigma <= 0):
        raise ValueError("sigma must be > 0 (a standard deviation); pass exp(log_sigma).")
    lower = np.where(k == 0, -np.inf, k / LEVELS)
    upper = np.where(k == LEVELS - 1, np.inf, (k + 1) / LEVELS)
    a = torch.as_tensor((lower - mean) / sigma)
    b = torch.as_tensor((upper - mean) / sigma)
    # a bin above the mean is computed as a lower-tail difference of the mirrored bin, so that
    # neither CDF is close to 1 and the difference keeps its digits
    flip = a > 0
    a, b = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_p = torch.special.log_ndtr(b) + torch.log1p(
        -torch.exp(torch.special.log_ndtr(a) - torch.special.log_ndtr(b))
    )
    log_p = log_p.numpy()
    return log_p.reshape(len(log_p), -1).sum(axis=1)


def continuous_bernoulli_log_norm(logits):
    r"""log C(lambda) of the continuous Bernoulli, lambda = sigmoid(logits), element-wise.

    The continuous Bernoulli (Loaiza-Ganem & Cunningham 2019) is the density
    p(x) = C(lambda) lambda^x (1 - lambda)^(1 - x) on [0, 1]. Its normaliser,
    written in the logit l,

    .. math:: C = \frac{2\,\operatorname{artanh}(1 - 2\lambda)}{1 - 2\lambda}
              = \frac{l}{\tanh(l/2)}, \qquad C \to 2 \text{ as } l \to 0,

    is computed as log|l| - log(1 - e^{-|l|}) + log(1 + e^{-|l|}), with the series
    log 2 + l^2 / 12 for |l| < 1e-3.
    """
    logits = ops.convert_to_tensor(logits)
    a = ops.abs(logits)
    small = a < 1e-3
    a_safe = ops.where(small, ops.ones_like(a), a)
    exact = ops.log(a_safe) - ops.log(-ops.expm1(-a_safe)) + ops.log1p(ops.exp(-a_safe))
    series = math.log(2.0) + ops.square(logits) / 12.0
    return ops.where(small, series, exact)


def continuous_bernoulli_nll(x, logits):
    r"""-log p(x) under the continuous Bernoulli with these logits, summed per example.

    The Bernoulli's cross-entropy (:func:`vae_course.losses.bernoulli_nll`) minus
    the normaliser log C: with grey levels x in [0, 1] the cross-entropy alone is
    not the negative log of any density of x. Returns (batch,).
    """
    from .losses import bernoulli_nll

    x = ops.convert_to_tensor(x)
    logits = ops.convert_to_tensor(logits, dtype=x.dtype)
    return bernoulli_nll(x, logits) - _sum_per_example(continuous_bernoulli_log_norm(logits))


def continuous_bernoulli_mean(logits):
    r"""E[x] under the continuous Bernoulli: 1 / (1 - e^{-l}) - 1 / l, -> 1/2 + l/12 as l -> 0.

    The density is proportional to e^{l x} on [0, 1], so this is the mean of an
    exponential density cut to [0, 1]; it is not sigmoid(l), the Bernoulli's mean.
    """
    logits = ops.convert_to_tensor(logits)
    small = ops.abs(logits) < 1e-3
    l_safe = ops.where(small, ops.ones_like(logits), logits)
    exact = -1.0 / ops.expm1(-l_safe) - 1.0 / l_safe
    return ops.where(small, 0.5 + logits / 12.0, exact)


__all__ = [
    "LEVELS",
    "LOG_LEVELS",
    "bits_per_dim",
    "nats_from_bits",
    "check_uint8",
    "dequantize",
    "dequantized_bound",
    "discretized_logistic_log_prob",
    "continuous_bernoulli_log_norm",
    "continuous_bernoulli_nll",
    "continuous_bernoulli_mean",
]
