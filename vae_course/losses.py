"""The terms of the VAE loss, one value per example, and the ELBO's one-draw estimates.

The likelihoods and densities use ``keras.ops``, so the Keras model calls
them on its own tensors; numpy arrays are accepted too. Each returns shape
``(batch,)``: the per-pixel (or per-latent) terms are summed over every
non-batch axis. :func:`vae_kl_term` is the VAE's KL term three ways
(chapters 5-6); :func:`elbo_integrand` is one draw of the ELBO of a
Gaussian q three ways (chapter 4), in torch.
"""

import keras
import torch
from keras import ops

from .gaussian import LOG_2PI, gaussian_kl, gaussian_log_prob, normal_log_prob


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


VAE_KL_METHODS = ("analytic", "mc", "stl")


def vae_kl_term(z_mean, z_log_var, z=None, kl="analytic"):
    r"""The KL term of a VAE's loss, per example, three ways.

    ``VAE(..., kl=...)`` computes its KL term with this function, at the draws z
    its likelihood term used; the default ``"analytic"`` is the usual choice, and
    chapters 4 and 5 compare the two sampled forms with it.

    q(z|x) = N(mu, diag sigma^2), p(z) = N(0, I); z_mean = mu and
    z_log_var = log sigma^2 are (batch, d); z is (batch, d) or (N, batch, d),
    the reparameterized draws z = mu + sigma * eps the loss already made.

    * ``"analytic"``: KL(q || p) in closed form (:func:`kl_std_normal`); z unused;
    * ``"mc"``: the Monte Carlo estimate log q(z) - log p(z), averaged over the N draws;
    * ``"stl"``: the same value, with mu and log sigma^2 inside log q treated as
      constants (stop-gradient; Roeder, Wu & Duvenaud 2017): the score term
      E_q[grad log q] = 0 leaves the gradient, so the gradient is 0 where q = p.

    Returns (batch,). Works on the tensors' own device (torch backend).
    """
    if kl not in VAE_KL_METHODS:
        raise ValueError(f'kl must be one of {VAE_KL_METHODS}, got {kl!r}. Fix: e.g. kl="analytic".')
    if kl == "analytic":
        return kl_std_normal(z_mean, z_log_var)
    if z is None:
        raise ValueError(f"kl={kl!r} estimates the KL from draws: pass z, shape (batch, d) or (N, batch, d).")
    if tuple(z.shape[-2:]) != tuple(z_mean.shape):
        raise ValueError(
            f"z must have shape (batch, d) = {tuple(z_mean.shape)} or (N, batch, d), got {tuple(z.shape)}."
        )
    if kl == "stl":
        z_mean, z_log_var = z_mean.detach(), z_log_var.detach()
    per_draw = diag_gaussian_log_prob(z, z_mean, z_log_var) - std_normal_log_prob(z)
    return per_draw.mean(0) if z.ndim == 3 else per_draw


__all__ = [
    "LOG_2PI",
    "kl_std_normal",
    "gaussian_nll",
    "bernoulli_nll",
    "std_normal_log_prob",
    "diag_gaussian_log_prob",
    "ELBO_ESTIMATORS",
    "elbo_integrand",
    "VAE_KL_METHODS",
    "vae_kl_term",
]
del keras
