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

from .data import check_images
from .errors import CourseError, check_positive_int
from .gaussian import diag_gaussian_log_prob, std_normal_log_prob
from .gradients import standard_normal, transform
from .losses import kl_std_normal
from .montecarlo import mean_and_se, paired_difference


def _log_weights(vae, x, z_mean, z_log_var, eps):
    """log w for eps (c, b, d) -> (c, b)."""
    c, b, d = eps.shape
    z = transform(eps, z_mean, torch.exp(0.5 * z_log_var))
    if getattr(vae, "flow", None) is None:
        log_qz = diag_gaussian_log_prob(z, z_mean, z_log_var)
    else:  # an amortized flow after the Gaussian draw (vae_course.iwae_training.IWAE)
        z, log_qz = vae.propose(z_mean, z_log_var, z)
    out = vae.decoder(z.reshape(c * b, d))
    x_rep = x.unsqueeze(0).expand((c,) + tuple(x.shape)).reshape((c * b,) + tuple(x.shape[1:]))
    log_px_z = vae.log_likelihood(x_rep, out).reshape(c, b)
    log_pz = std_normal_log_prob(z)
    return log_px_z + log_pz - log_qz


def iwae_bound(vae, x, num_samples, batch_size=100, max_rows=20000, seed=0, posterior=None):
    r"""The k-sample importance-weighted bound L_k(x) for each image, k = ``num_samples``.

    vae: a trained :class:`vae_course.models.VAE`; x: float images (batch, H, W)
    in [0, 1]. Returns a float64 numpy array of shape (batch,), in nats.
    ``max_rows`` caps how many decoder rows (samples x images) run at once.
    ``posterior=(z_mean, z_log_var)``, each (batch, latent_dim), replaces the
    encoder's q(z|x) as the proposal (e.g. a wider one, or the per-image fit of
    :func:`fit_local_posterior`).

    Runs on the device Keras's torch backend uses (CUDA, MPS or CPU): the
    draws of epsilon come from a generator on that device, seeded with
    ``seed`` (reproducible on one device; another device draws other numbers).
    Each chunk's log-sum-exp is taken there in float32 and only the (batch,)
    running totals are kept on the CPU in float64 (MPS has no float64).
    """
    num_samples = check_positive_int(num_samples, "num_samples", 5000)
    x = check_images(x, "x", vae.image_shape)
    out = np.full(len(x), -math.inf, dtype=np.float64)
    for rows, log_w in _log_weight_chunks(
        vae, x, num_samples, batch_size, max_rows, seed, posterior
    ):
        lse = torch.logsumexp(log_w, dim=0).cpu().to(torch.float64)
        out[rows] = torch.logaddexp(torch.from_numpy(out[rows]), lse).numpy()
    return out - math.log(num_samples)


def _log_weight_chunks(vae, x, num_samples, batch_size, max_rows, seed, posterior):
    """Yield ``(slice of images, log w (c, b))``: every image's k log weights, in chunks.

    Images go ``batch_size`` at a time; each batch's k draws in chunks of at most
    ``max_rows`` decoder rows, from one generator on the model's device seeded with
    ``seed``, in this order, so that :func:`iwae_bound` and
    :func:`log_importance_weights` see the same draws.
    """
    if posterior is not None:
        if getattr(vae, "flow", None) is not None:
            raise CourseError(
                "posterior: this model's q has a flow after the Gaussian, so a Gaussian "
                "(z_mean, z_log_var) is not its q. Fix: leave posterior out (the model's own q)."
            )
        posterior = _check_posterior(posterior, len(x), vae.latent_dim)
    gen = None
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb = keras.ops.convert_to_tensor(x[start : start + batch_size], dtype="float32")
            b = xb.shape[0]
            if posterior is None:
                z_mean, z_log_var = vae.encode(xb)
            else:
                z_mean, z_log_var = (
                    keras.ops.convert_to_tensor(p[start : start + b]) for p in posterior
                )
            if gen is None:
                gen = torch.Generator(device=z_mean.device).manual_seed(int(seed))
            chunk = max(1, min(num_samples, max_rows // b))
            done = 0
            while done < num_samples:
                c = min(chunk, num_samples - done)
                eps = torch.randn(
                    (c, b, vae.latent_dim), generator=gen, device=z_mean.device, dtype=z_mean.dtype
                )
                yield slice(start, start + b), _log_weights(vae, xb, z_mean, z_log_var, eps)
                done += c


def log_importance_weights(
    vae, x, num_samples, batch_size=100, max_rows=20000, seed=0, posterior=None
):
    r"""The k = ``num_samples`` log importance weights of each image, drawn as :func:`iwae_bound` draws them.

    .. math:: \log w_i = \log p(x \mid z_i) + \log p(z_i) - \log q(z_i \mid x), \qquad z_i \sim q(z \mid x)

    With the same ``seed``, ``batch_size``, ``max_rows`` and ``posterior``, these are the weights
    behind ``iwae_bound(vae, x, num_samples, ...)``: ``logsumexp(log_w, axis=0) - log k`` is that bound.
    Returns a float64 numpy array of shape (num_samples, batch), in nats (mind its size: k times
    the number of images).
    """
    num_samples = check_positive_int(num_samples, "num_samples", 5000)
    x = check_images(x, "x", vae.image_shape)
    out = np.empty((num_samples, len(x)), dtype=np.float64)
    filled = np.zeros(len(x), dtype=np.int64)  # weights written so far, per image
    for rows, log_w in _log_weight_chunks(
        vae, x, num_samples, batch_size, max_rows, seed, posterior
    ):
        c, done = log_w.shape[0], filled[rows.start]
        out[done : done + c, rows] = log_w.cpu().to(torch.float64).numpy()
        filled[rows] += c
    return out


def effective_sample_size(log_w):
    r"""Kish's effective sample size of importance weights, per column: (sum w)^2 / sum w^2.

    .. math:: \mathrm{ESS} = \frac{\big(\sum_{i=1}^k w_i\big)^2}{\sum_{i=1}^k w_i^2}
              = \exp\big(2\,\mathrm{logsumexp}(\log w) - \mathrm{logsumexp}(2 \log w)\big)

    1 when one weight carries everything, k when all are equal. A bound L_k whose weights have
    an ESS of a few is an average of a few terms, however large k is: a sign that the proposal
    misses the posterior and L_k has not converged. log_w: (k, ...) array of log weights (samples
    first, e.g. from :func:`log_importance_weights`). Returns an array of the remaining shape.
    """
    log_w = np.asarray(log_w, dtype=np.float64)
    if log_w.ndim < 1 or log_w.shape[0] < 1 or not np.isfinite(log_w).all():
        raise ValueError(
            "log_w: expected a finite array of log weights with the samples on axis 0, "
            f"got shape {log_w.shape}."
        )
    m = log_w.max(axis=0)
    w = np.exp(log_w - m)  # the largest weight of each column is 1: no overflow
    return w.sum(axis=0) ** 2 / (w**2).sum(axis=0)


def negative_elbo(vae, x, batch_size=500, seed=0):
    """Per-example -ELBO with the model's KL and one z sample, as the training loss: (batch,) numpy.

    The draws of z come from a ``keras.random.SeedGenerator(seed)`` of this call
    (reproducible for a given ``seed``; nothing global is reseeded), or a
    ``SeedGenerator`` passed as ``seed``, or with ``seed=None`` the model's own.
    """
    x = check_images(x, "x", vae.image_shape)
    if isinstance(seed, keras.random.SeedGenerator) or seed is None:
        generator = seed
    else:
        generator = keras.random.SeedGenerator(seed)
    res = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb = keras.ops.convert_to_tensor(x[start : start + batch_size], dtype="float32")
            loss, _, _ = vae.compute_losses(xb, seed=generator)
            res.append(keras.ops.convert_to_numpy(loss).astype(np.float64))
    return np.concatenate(res)


def _check_posterior(posterior, n, latent_dim):
    """(z_mean, z_log_var) as two float32 arrays of shape (n, latent_dim), or a clear error."""
    try:
        z_mean, z_log_var = posterior
    except (TypeError, ValueError):
        raise ValueError(
            "posterior must be a pair (z_mean, z_log_var) of arrays of shape (batch, latent_dim); "
            f"got {type(posterior).__name__}. Fix: pass posterior=(z_mean, z_log_var)."
        ) from None
    out = []
    for name, a in (("z_mean", z_mean), ("z_log_var", z_log_var)):
        a = np.asarray(
            keras.ops.convert_to_numpy(a) if not isinstance(a, np.ndarray) else a, dtype=np.float32
        )
        if a.shape != (n, latent_dim):
            raise ValueError(
                f"posterior {name}: shape {a.shape}, expected ({n}, {latent_dim}) = (number of images, "
                "the model's latent_dim). Fix: one row of q's parameters per image."
            )
        if not np.isfinite(a).all():
            raise ValueError(f"posterior {name}: holds NaN or infinite values.")
        out.append(a)
    return tuple(out)


def _randn(shape, gen, like):
    """Standard normals on the device and in the dtype of ``like``, drawn with the seeded CPU generator
    ``gen`` and moved there (``gradients.standard_normal``): the same seed gives the same draws on
    every device, so a local fit on a GPU starts from the same noise as on the CPU."""
    return standard_normal(shape, like, gen)


def elbo_given_posterior(vae, x, posterior, num_samples=100, batch_size=100, seed=0):
    r"""The ELBO of the Gaussian q(z) = N(z_mean, diag exp(z_log_var)) for each image.

    .. math:: \mathrm{ELBO}(q; x) = \frac1S \sum_{s=1}^S \log p(x \mid z_s)
              - \mathrm{KL}\big(q \,\|\, \mathcal N(0, I)\big), \qquad z_s \sim q,

    with ``num_samples`` = S draws and the analytic KL. x: (batch, H, W);
    posterior = (z_mean, z_log_var), each (batch, latent_dim). Returns (batch,)
    float64 numpy, in nats; reproducible for a given ``seed`` (the same seed
    gives the same eps for two posteriors, so their difference is paired).
    """
    x = check_images(x, "x", vae.image_shape)
    num_samples = check_positive_int(num_samples, "num_samples", 100)
    z_mean_all, z_log_var_all = _check_posterior(posterior, len(x), vae.latent_dim)
    gen = torch.Generator().manual_seed(int(seed))
    out = np.empty(len(x), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb = keras.ops.convert_to_tensor(x[start : start + batch_size])
            m = keras.ops.convert_to_tensor(z_mean_all[start : start + batch_size])
            lv = keras.ops.convert_to_tensor(z_log_var_all[start : start + batch_size])
            out[start : start + len(m)] = (
                _elbo_terms(vae, xb, m, lv, _randn((num_samples,) + tuple(m.shape), gen, m))
                .to(torch.float64)
                .cpu()
                .numpy()
            )
    return out


def _elbo_terms(vae, x, z_mean, z_log_var, eps):
    """mean_s log p(x | z_s) - KL(q || p(z)) for eps (S, b, d): (b,) torch."""
    s, b, d = eps.shape
    z = transform(eps, z_mean, torch.exp(0.5 * z_log_var))
    out = vae.decoder(z.reshape(s * b, d))
    x_rep = x.unsqueeze(0).expand((s,) + tuple(x.shape)).reshape((s * b,) + tuple(x.shape[1:]))
    log_px_z = vae.log_likelihood(x_rep, out).reshape(s, b).mean(0)
    return log_px_z - kl_std_normal(z_mean, z_log_var)


def fit_local_posterior(
    vae,
    x,
    steps=300,
    learning_rate=0.02,
    num_samples=10,
    batch_size=500,
    seed=0,
    start=None,
):
    r"""The best Gaussian q*(z|x) for each image by itself: maximise that image's ELBO.

    .. math:: (\mu^*, \log\sigma^{2*}) = \arg\max_{\mu, \log\sigma^2}
              \mathrm{ELBO}\big(\mathcal N(\mu, \operatorname{diag}\sigma^2); x\big)

    The decoder stays fixed; each image's (mu, log sigma^2) starts at the
    encoder's output (or at ``start``, a pair of (batch, latent_dim)
    arrays) and takes ``steps`` Adam steps on the reparameterized ELBO
    (``num_samples`` fresh draws of eps a step, the analytic KL), with the
    learning rate falling linearly from ``learning_rate`` to 0 so that the
    noise of the last steps averages out. This is the "optimal" posterior of
    Cremer, Li & Duvenaud (2018): ELBO(q*) - ELBO(q_encoder) is the
    amortization gap, log p(x) - ELBO(q*) the approximation gap.

    x: (batch, H, W). Returns ``(z_mean, z_log_var)``, float32 numpy arrays of
    shape (batch, latent_dim). Reproducible for a given ``seed``.
    """
    x = check_images(x, "x", vae.image_shape)
    steps = check_positive_int(steps, "steps", 300)
    num_samples = check_positive_int(num_samples, "num_samples", 10)
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a number > 0, got {learning_rate!r}.")
    if start is not None:
        start = _check_start(start, (len(x), vae.latent_dim))
    gen = torch.Generator().manual_seed(int(seed))
    means, log_vars = [], []
    for first in range(0, len(x), batch_size):
        xb = keras.ops.convert_to_tensor(x[first : first + batch_size])
        if start is None:
            with torch.no_grad():
                m0, lv0 = vae.encode(xb)
        else:
            m0, lv0 = (
                keras.ops.convert_to_tensor(a[first : first + batch_size], dtype="float32")
                for a in start
            )
        m = m0.detach().clone().requires_grad_(True)
        lv = lv0.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([m, lv], lr=learning_rate)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 - t / steps)
        for _ in range(steps):
            eps = _randn((num_samples,) + tuple(m.shape), gen, m)
            loss = -_elbo_terms(
                vae, xb, m, lv, eps
            ).sum()  # images are independent: a sum gives each its own gradient
            grad_m, grad_lv = torch.autograd.grad(loss, [m, lv])
            m.grad, lv.grad = grad_m, grad_lv
            opt.step()
            sched.step()
        means.append(m.detach().cpu().numpy())
        log_vars.append(lv.detach().cpu().numpy())
    return np.concatenate(means).astype(np.float32), np.concatenate(log_vars).astype(np.float32)


def _check_start(start, shape):
    """``start`` as two float32 arrays of ``shape`` (images, latent_dim), or a clear error."""
    fix = (
        f"Fix: pass start=(z_mean, z_log_var), two arrays of shape {shape}, "
        "one row per image, or start=None for the encoder's output."
    )
    if not (isinstance(start, (tuple, list)) and len(start) == 2):
        raise ValueError(
            f"start must be a pair (z_mean, z_log_var), got {type(start).__name__}. {fix}"
        )
    out = []
    for name, a in zip(("z_mean", "z_log_var"), start):
        a = np.asarray(keras.ops.convert_to_numpy(a), dtype=np.float32)
        if a.shape != shape:
            raise ValueError(f"start's {name} has shape {a.shape}, expected {shape}. {fix}")
        if not np.isfinite(a).all():
            raise ValueError(f"start's {name} has non-finite values. {fix}")
        out.append(a)
    return tuple(out)


def active_units(vae, x, threshold=0.01, batch_size=500):
    r"""Burda et al. (2015)'s activity of each latent: A_u = Cov_x(E_q[z_u]).

    .. math:: A_u = \operatorname{Var}_{x}\big(\mathbb E_{q(z\mid x)}[z_u]\big)

    the variance over the images x of the encoder's mean for latent u; a unit is
    *active* when A_u > ``threshold`` (0.01 in the paper). An inactive unit's
    q(z_u|x) is the same for every image, so it carries no information about x.
    x: (batch, H, W). Returns ``(activity, n_active)``: a float64 array of
    shape (latent_dim,) and an int.
    """
    x = check_images(x, "x", vae.image_shape)
    if getattr(vae, "flow", None) is not None:
        raise CourseError(
            "active_units: this model's q has a flow after the Gaussian, so the encoder's mean is "
            "not E_q[z]. Fix: use a model without a flow (flow_steps=0)."
        )
    if len(x) < 2:
        raise ValueError(f"x: {len(x)} image(s); a variance over images needs at least 2.")
    with torch.no_grad():
        mu = np.concatenate(
            [
                keras.ops.convert_to_numpy(vae.encode(x[start : start + batch_size])[0]).astype(
                    np.float64
                )
                for start in range(0, len(x), batch_size)
            ]
        )
    activity = mu.var(axis=0, ddof=1)
    return activity, int((activity > threshold).sum())


__all__ = [
    "iwae_bound",
    "log_importance_weights",
    "effective_sample_size",
    "negative_elbo",
    "elbo_given_posterior",
    "fit_local_posterior",
    "active_units",
    "paired_difference",
    "mean_and_se",
]
