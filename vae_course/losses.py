"""The terms of the VAE loss, one value per example: the likelihoods and the KL.

The likelihoods use ``keras.ops``, so the Keras model calls them on its own
tensors; numpy arrays are accepted too. Each returns shape ``(batch,)``: the
per-pixel (or per-latent) terms are summed over every non-batch axis.
:data:`LIKELIHOOD_TABLE` says, for each likelihood, what the decoder outputs
and how to score and show it; :func:`vae_kl_term` is the VAE's KL term three
ways (chapters 5-6), with the estimator names of
:data:`~vae_course.gradients.ELBO_ESTIMATORS`.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

from keras import ops

from .bits import continuous_bernoulli_mean, continuous_bernoulli_nll
from .defaults import LIKELIHOODS
from .errors import CourseError
from .gaussian import (
    LOG_2PI,
    diag_gaussian_log_prob,
    normal_kl,
    normal_log_prob,
    std_normal_log_prob,
)
from .gradients import ELBO_ESTIMATORS, check_estimator


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
    return ops.sum(normal_kl(z_mean, z_log_var), axis=-1)


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
    check_estimator(kl, "kl")
    if kl == "analytic":
        return kl_std_normal(z_mean, z_log_var)
    if z is None:
        raise ValueError(
            f"kl={kl!r} estimates the KL from draws: pass z, shape (batch, d) or (N, batch, d)."
        )
    if tuple(z.shape[-2:]) != tuple(z_mean.shape):
        raise ValueError(
            f"z must have shape (batch, d) = {tuple(z_mean.shape)} or (N, batch, d), "
            f"got {tuple(z.shape)}."
        )
    if kl == "stl":
        z_mean, z_log_var = z_mean.detach(), z_log_var.detach()
    per_draw = diag_gaussian_log_prob(z, z_mean, z_log_var) - std_normal_log_prob(z)
    return per_draw.mean(0) if z.ndim == 3 else per_draw


@dataclass(frozen=True)
class Likelihood:
    """One p(x | z): what the decoder outputs, how x is scored, how the output is shown.

    ``decoder_output`` names what the decoder's last layer gives ("means" or
    "logits"); ``output_activation`` is the activation :func:`build_decoder`
    ends with for it; ``refused_activation`` is an activation a decoder must
    not end with (a sigmoid before a likelihood that applies its own);
    ``log_prob(x, out, x_std)`` is log p(x | z) per example, (batch,);
    ``mean(out)`` the pixel means; ``data`` says what the images should be.
    """

    name: str
    decoder_output: str
    output_activation: str | None
    refused_activation: str | None
    log_prob: Callable
    mean: Callable
    data: str


LIKELIHOOD_TABLE = {
    "gaussian": Likelihood(
        "gaussian",
        decoder_output="means",
        output_activation="sigmoid",
        refused_activation=None,
        log_prob=lambda x, out, x_std: -gaussian_nll(x, out, math.log(x_std)),
        mean=lambda out: out,
        data="grey levels in [0, 1]",
    ),
    "bernoulli": Likelihood(
        "bernoulli",
        decoder_output="logits",
        output_activation=None,
        refused_activation="sigmoid",
        log_prob=lambda x, out, x_std: -bernoulli_nll(x, out),
        mean=ops.sigmoid,
        data="binarized images, 0.0 or 1.0 (binarize the grey levels afresh each epoch)",
    ),
    # a density on [0, 1]: the Bernoulli's cross-entropy with its normaliser (chapter 10)
    "continuous_bernoulli": Likelihood(
        "continuous_bernoulli",
        decoder_output="logits",
        output_activation=None,
        refused_activation="sigmoid",
        log_prob=lambda x, out, x_std: -continuous_bernoulli_nll(x, out),
        mean=lambda out: continuous_bernoulli_mean(out),
        data="grey levels in [0, 1]",
    ),
}
assert tuple(LIKELIHOOD_TABLE) == LIKELIHOODS


def get_likelihood(name) -> Likelihood:
    """The :class:`Likelihood` called ``name``, or a clear error."""
    if name not in LIKELIHOOD_TABLE:
        raise CourseError(
            f"likelihood must be one of {LIKELIHOODS}, got {name!r}. Fix: "
            "likelihood='gaussian' for grey-level "
            "pixels in [0, 1], likelihood='bernoulli' for binarized images, "
            "likelihood='continuous_bernoulli' for a density on grey levels in [0, 1]."
        )
    return LIKELIHOOD_TABLE[name]


__all__ = [
    "LOG_2PI",
    "kl_std_normal",
    "gaussian_nll",
    "bernoulli_nll",
    "ELBO_ESTIMATORS",
    "vae_kl_term",
    "Likelihood",
    "LIKELIHOOD_TABLE",
    "get_likelihood",
]
