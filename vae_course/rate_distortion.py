r"""Rate, distortion and ELBO surgery.

For a VAE, -ELBO = D + R with the **distortion** D = -E_q[log p(x|z)] and the
**rate** R = KL(q(z|x) || p(z)), both averaged over the data (Alemi et al. 2018).
Training on D + beta R (a beta-VAE) moves the model along the plane; the lines
D + R = const are lines of equal ELBO.

**ELBO surgery** (Hoffman & Johnson 2016) splits the average rate in two:

.. math:: \mathbb E_x\,\mathrm{KL}(q(z|x)\,\|\,p(z))
          = I_q(x; z) + \mathrm{KL}(q(z)\,\|\,p(z)),

with the aggregate posterior q(z) = E_x q(z|x) and the mutual information
I_q(x; z) = E_x E_{q(z|x)}[log q(z|x) - log q(z)] of x and z under q. On N data
points, :func:`elbo_surgery` estimates log q(z_m) by the mixture over all N,
including x_m itself. That makes the estimate of I_q the InfoNCE form (Poole et
al. 2019): in expectation it is **at most** the population I_q and at most log N;
the estimate of KL(q(z) || p(z)) = rate - I_q is therefore biased **up**.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .gaussian import diag_gaussian_log_prob, normal_kl


def elbo_surgery(z_mean, z_log_var, seed=0, chunk=256):
    r"""Average rate, I_q(x; z) and KL(q(z) || p(z)) from the encoder's outputs on N images.

    z_mean, z_log_var: (N, d) arrays. One z_m ~ q(z|x_m) per image (seed ``seed``);
    log q(z_m) = logsumexp_n log q(z_m | x_n) - log N over all N images. Returns a
    dict of float64 (N,) arrays: ``rate`` (exact KL per image), ``mutual_information``
    (log q(z_m|x_m) - log q(z_m), mean = the estimate, <= log N per image) and
    ``marginal_kl`` (rate - mutual_information); their means are the estimates.
    """
    mu = torch.as_tensor(np.asarray(z_mean), dtype=torch.float64)
    lv = torch.as_tensor(np.asarray(z_log_var), dtype=torch.float64)
    if mu.ndim != 2 or mu.shape != lv.shape:
        raise ValueError(
            f"z_mean and z_log_var must both be (N, d), got {tuple(mu.shape)} and "
            f"{tuple(lv.shape)}."
        )
    n = mu.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    z = mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=gen, dtype=torch.float64)
    log_q_own = diag_gaussian_log_prob(z, mu, lv)
    log_q_agg = torch.empty(n, dtype=torch.float64)
    for start in range(0, n, chunk):
        zc = z[start : start + chunk, None, :]  # (c, 1, d) against all N components
        log_q_agg[start : start + chunk] = torch.logsumexp(
            diag_gaussian_log_prob(zc, mu[None], lv[None]), dim=1
        ) - math.log(n)
    rate = normal_kl(mu, lv).sum(-1)
    mi = log_q_own - log_q_agg
    return {
        "rate": rate.numpy(),
        "mutual_information": mi.numpy(),
        "marginal_kl": (rate - mi).numpy(),
    }


__all__ = ["elbo_surgery"]
