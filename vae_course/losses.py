"""The three terms of the VAE loss, one value per example.

All functions use ``keras.ops``, so the Keras model calls them on its own
tensors; numpy arrays are accepted too. Each returns shape ``(batch,)``:
the per-pixel (or per-latent) terms are summed over every non-batch axis.
"""

import keras
from keras import ops

from .gaussian import LOG_2PI, normal_log_prob


def _sum_per_example(t):
    """Sum over every axis but the first: (batch, ...) -> (batch,)."""
    axes = tuple(range(1, len(ops.shape(t))))
    return ops.sum(t, axis=axes) if axes else t


def kl_std_normal(z_mean, z_log_var):
    r"""KL(N(mu, diag sigma^2) || N(0, I)), summed over latent dimensions.

    .. math:: \mathrm{KL} = \tfrac12 \sum_{j=1}^{d}
              \left(\mu_j^2 + \sigma_j^2 - 1 - \log\sigma_j^2\right)

    z_mean, z_log_var: (batch, d), with z_log_var = log sigma^2.
    Returns (batch,).
    """
    z_mean = ops.convert_to_tensor(z_mean)
    z_log_var = ops.convert_to_tensor(z_log_var)
    return 0.5 * ops.sum(ops.square(z_mean) + ops.exp(z_log_var) - 1.0 - z_log_var, axis=-1)


def gaussian_nll(x, x_mean, log_std):
    r"""Negative log-density of x under N(x_mean, sigma^2), summed per example.

    .. math:: -\log \mathcal N(x;\mu,\sigma^2) = \sum_i \tfrac12
              \left(\frac{x_i-\mu_i}{\sigma}\right)^2 + \log\sigma + \tfrac12\log 2\pi

    x, x_mean: (batch, ...); log_std = log sigma, a scalar or an array that
    broadcasts against x. Returns (batch,).
    """
    x = ops.convert_to_tensor(x)
    x_mean = ops.convert_to_tensor(x_mean, dtype=x.dtype)
    log_std = ops.convert_to_tensor(log_std, dtype=x.dtype)
    return -_sum_per_example(normal_log_prob(x, x_mean, log_var=2.0 * log_std))


def bernoulli_nll(x, logits):
    r"""Negative log-probability of x in {0, 1} (or [0, 1]) under Bernoulli(sigmoid(logits)).

    .. math:: -\log p(x) = \sum_i \operatorname{softplus}(\ell_i) - x_i \ell_i

    which is the binary cross-entropy written so that it stays finite for any
    logit (no log of a rounded-to-zero sigmoid). Returns (batch,).
    """
    x = ops.convert_to_tensor(x)
    logits = ops.convert_to_tensor(logits, dtype=x.dtype)
    # softplus(l) - x*l, with softplus(l) = max(l, 0) + log1p(exp(-|l|)).
    nll = ops.relu(logits) + ops.log1p(ops.exp(-ops.abs(logits))) - x * logits
    return _sum_per_example(nll)


def std_normal_log_prob(z):
    r"""log N(z; 0, I) summed over the last axis: (..., d) -> (...)."""
    z = ops.convert_to_tensor(z)
    return ops.sum(normal_log_prob(z, 0.0, 1.0), axis=-1)


def diag_gaussian_log_prob(z, mean, log_var):
    r"""log N(z; mean, diag exp(log_var)) summed over the last axis: (..., d) -> (...)."""
    z = ops.convert_to_tensor(z)
    mean = ops.convert_to_tensor(mean, dtype=z.dtype)
    log_var = ops.convert_to_tensor(log_var, dtype=z.dtype)
    return ops.sum(normal_log_prob(z, mean, log_var=log_var), axis=-1)


__all__ = [
    "LOG_2PI",
    "kl_std_normal",
    "gaussian_nll",
    "bernoulli_nll",
    "std_normal_log_prob",
    "diag_gaussian_log_prob",
]
del keras
