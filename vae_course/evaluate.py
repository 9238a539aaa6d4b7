r"""How good is a trained VAE? Importance-weighted bounds on log p(x).

For k samples z_1..z_k ~ q(z|x), with weights w_i = p(x|z_i) p(z_i) / q(z_i|x),

.. math:: \mathcal L_k(x) = \mathbb E\Big[\log \frac1k \sum_{i=1}^k w_i\Big]
          \;\le\; \log p(x),

and L_1 is the ELBO, L_k grows with k and tends to log p(x) (Burda, Grosse
& Salakhutdinov 2015). ``iwae_bound`` returns one draw of the estimator per
image, computed in chunks of samples with a running logsumexp so that
k = 5000 fits in memory.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import torch

from . import losses
from .data import check_images


def _log_weights(vae, x, z_mean, z_log_var, eps):
    """log w for eps (c, b, d) -> (c, b)."""
    c, b, d = eps.shape
    z = z_mean + torch.exp(0.5 * z_log_var) * eps
    out = vae.decoder(z.reshape(c * b, d))
    x_rep = x.unsqueeze(0).expand((c,) + tuple(x.shape)).reshape((c * b,) + tuple(x.shape[1:]))
    log_px_z = vae.log_likelihood(x_rep, out).reshape(c, b)
    log_pz = losses.std_normal_log_prob(z)
    log_qz = losses.diag_gaussian_log_prob(z, z_mean, z_log_var)
    return log_px_z + log_pz - log_qz


def iwae_bound(vae, x, num_samples, batch_size=100, max_rows=20000, seed=0):
    r"""The k-sample importance-weighted bound L_k(x) for each image, k = ``num_samples``.

    vae: a trained :class:`vae_course.models.VAE`; x: float images (batch, H, W)
    in [0, 1]. Returns a float64 numpy array of shape (batch,), in nats.
    ``max_rows`` caps how many decoder rows (samples x images) run at once.

    Runs on the device Keras's torch backend uses (CUDA, MPS or CPU): the
    draws of epsilon come from a generator on that device, seeded with
    ``seed`` (reproducible on one device; another device draws other numbers).
    Each chunk's log-sum-exp is taken there in float32 and only the (batch,)
    running totals are kept on the CPU in float64 (MPS has no float64).
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}.")
    x = check_images(x, "x", vae.image_shape)
    out = np.empty(len(x), dtype=np.float64)
    gen = None
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb = keras.ops.convert_to_tensor(x[start : start + batch_size], dtype="float32")
            b = xb.shape[0]
            z_mean, z_log_var = vae.encode(xb)
            if gen is None:
                gen = torch.Generator(device=z_mean.device).manual_seed(int(seed))
            chunk = max(1, min(num_samples, max_rows // b))
            running = torch.full((b,), -math.inf, dtype=torch.float64)
            done = 0
            while done < num_samples:
                c = min(chunk, num_samples - done)
                eps = torch.randn((c, b, vae.latent_dim), generator=gen, device=z_mean.device, dtype=z_mean.dtype)
                lse = torch.logsumexp(_log_weights(vae, xb, z_mean, z_log_var, eps), dim=0)
                running = torch.logaddexp(running, lse.cpu().to(torch.float64))
                done += c
            out[start : start + b] = (running - math.log(num_samples)).numpy()
    return out


def negative_elbo(vae, x, batch_size=500, seed=0):
    """Per-example -ELBO with the analytic KL and one z sample, as the training loss: (batch,) numpy.

    Re-seeds Keras's global random state with ``seed`` (skip with seed=None).
    """
    x = check_images(x, "x", vae.image_shape)
    keras.utils.set_random_seed(seed) if seed is not None else None
    res = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb = keras.ops.convert_to_tensor(x[start : start + batch_size], dtype="float32")
            loss, _, _ = vae.compute_losses(xb)
            res.append(keras.ops.convert_to_numpy(loss).astype(np.float64))
    return np.concatenate(res)


__all__ = ["iwae_bound", "negative_elbo"]
