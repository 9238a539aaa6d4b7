r"""The gradient estimators of the course (chapters 2-4), in torch.

The score function (REINFORCE) and the pathwise (reparameterization)
gradients of E_q[f(x)], the leave-one-out baseline, the score function
of independent Bernoullis, and the pathwise gradient of the ELBO.

The Gaussian estimators are about a Gaussian q = N(m, S) in d dimensions, with S given
by a *scale*:

* ``scale`` of shape (d,): the standard deviations, S = diag(scale^2);
* ``scale`` of shape (d, d): a lower-triangular Cholesky factor L, S = L L^T
  (only its lower triangle is used).

A sample is x = m + scale * eps (diagonal) or x = m + L eps (full), with
eps ~ N(0, I) of shape (num_samples, d).

``f`` is a function from points (..., d) to values (...), written with torch
ops. The gradient estimators return one gradient estimate per sample, so a
chapter can average them (the estimate) and measure their variance; the mean
over samples is the usual N-sample estimator.
"""

from __future__ import annotations

import torch
from torch.func import grad, vmap

from .gaussian import _check, _check_scale, gaussian_log_prob
from .losses import ELBO_ESTIMATORS, elbo_integrand


def transform(eps, mean, scale):
    """x = m + scale * eps (diagonal) or m + L eps (full). eps: (..., d) -> (..., d)."""
    _check_scale(mean, scale)
    if scale.ndim == 1:
        return mean + scale * eps
    return mean + eps @ torch.tril(scale).T


def standard_normal(shape, like, generator=None):
    """eps ~ N(0, I) of ``shape``, with the dtype and on the device of the tensor ``like``.

    Drawn on ``like``'s device; with a ``generator`` on another device (a CPU
    ``torch.Generator`` for CUDA tensors, say), drawn there and moved, so that a
    seeded CPU generator gives the same numbers whatever the tensors' device.
    """
    device = like.device if generator is None else generator.device
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=device).to(like.device)


def sample_gaussian(mean, scale, num_samples, generator=None):
    """Draw (num_samples, d) points from N(m, S) by the reparameterization x = m + scale eps."""
    mean, scale = _check(mean, scale)
    eps = standard_normal((num_samples, mean.shape[0]), mean, generator)
    return transform(eps, mean, scale)


def score_function_grads(f, mean, scale, num_samples, baseline=0.0, generator=None):
    r"""Per-sample score-function (REINFORCE) gradients of E_q[f(x)] w.r.t. (mean, scale).

    .. math:: \hat g_n = \big(f(x_n) - c\big)\, \nabla_{\phi} \log q_\phi(x_n),
              \qquad x_n \sim q_\phi

    f needs no gradient; c is a constant ``baseline`` (subtracting it keeps the
    estimator unbiased because E_q[grad log q] = 0). Returns a dict with
    ``"mean"``: (n, d) and ``"scale"``: (n, d) or (n, d, d) (lower triangle).
    """
    mean, scale = _check(mean, scale)
    x = sample_gaussian(mean, scale, num_samples, generator).detach()
    with torch.no_grad():
        fx = f(x) - baseline
    score = vmap(grad(gaussian_log_prob, argnums=(1, 2)), in_dims=(0, None, None))(x, mean, scale)
    shape = lambda g: fx.reshape((-1,) + (1,) * (g.ndim - 1))
    g_mean, g_scale = (g * shape(g) for g in score)
    if scale.ndim == 2:
        g_scale = torch.tril(g_scale)
    return {"mean": g_mean, "scale": g_scale}


def reparam_grads(f, mean, scale, num_samples, generator=None):
    r"""Per-sample pathwise (reparameterization) gradients of E_q[f(x)] w.r.t. (mean, scale).

    .. math:: \hat g_n = \nabla_{\phi} f\big(m_\phi + L_\phi \varepsilon_n\big),
              \qquad \varepsilon_n \sim \mathcal N(0, I)

    f must be differentiable; autograd carries the gradient through the
    transform, also through a full Cholesky factor L. Same return as
    :func:`score_function_grads`.
    """
    mean, scale = _check(mean, scale)
    eps = standard_normal((num_samples, mean.shape[0]), mean, generator)
    path = lambda e, m, s: f(transform(e, m, s))
    g_mean, g_scale = vmap(grad(path, argnums=(1, 2)), in_dims=(0, None, None))(eps, mean, scale)
    if scale.ndim == 2:
        g_scale = torch.tril(g_scale)
    return {"mean": g_mean, "scale": g_scale}


def leave_one_out_baseline(values):
    r"""c_n = (sum_m f_m - f_n) / (N - 1): the mean of the other draws. values (N, ...) -> (N, ...).

    c_n is independent of draw n, so (f_n - c_n) times the score of draw n
    has the same mean as f_n times that score (leave-one-out, "RLOO").
    """
    values = torch.as_tensor(values)
    n = values.shape[0]
    if n < 2:
        raise ValueError(f"a leave-one-out baseline needs at least 2 draws, got {n}.")
    return (values.sum(0, keepdim=True) - values) / (n - 1)


def bernoulli_score_grads(f, logits, num_samples, baseline=0.0, generator=None):
    r"""Per-sample score-function gradients of E_q[f(x)] w.r.t. the logits of independent Bernoullis.

    q(x) = prod_j p_j^{x_j} (1 - p_j)^{1 - x_j} with p = sigmoid(logits), shape (d,);
    draws x: (N, d) of 0.0/1.0. The score is d/d logits log q(x) = x - p, and

    .. math:: \hat g_n = \big(f(x_n) - c_n\big)\,(x_n - p)

    ``baseline``: a constant c (float); ``"rloo"``, c_n = the mean of f over
    the other N - 1 draws (:func:`leave_one_out_baseline`), unbiased; or
    ``"mean"``, c = the mean of f over all N draws *including* draw n, which
    is biased: its expectation is (1 - 1/N) times the gradient (shown in
    chapter 2). ``f`` maps the draws (N, d) to values (N,); or, for d
    independent one-bit problems side by side (each coordinate with its own
    baseline), to values (N, d). Returns ``{"logits": (N, d), "x": (N, d),
    "f": f's values}``.
    """
    logits = torch.as_tensor(logits, dtype=torch.get_default_dtype() if not torch.is_tensor(logits) else None)
    if logits.ndim != 1:
        raise ValueError(f"logits must have shape (d,), got {tuple(logits.shape)}.")
    p = torch.sigmoid(logits)
    u = torch.rand((num_samples, logits.shape[0]), generator=generator, dtype=logits.dtype)
    x = (u < p).to(logits.dtype)
    values = f(x)
    if values.shape == x.shape:  # one value per coordinate: d independent one-bit problems
        fx = values
    elif values.shape == x.shape[:1]:
        fx = values[:, None]
    else:
        raise ValueError(
            f"f must map draws (N, d) = {tuple(x.shape)} to values (N,) or, for d independent "
            f"problems, (N, d); got {tuple(values.shape)}."
        )
    if isinstance(baseline, str):
        if baseline == "rloo":
            c = leave_one_out_baseline(fx)
        elif baseline == "mean":
            c = fx.mean(0, keepdim=True)
        else:
            raise ValueError(f"baseline must be a number, 'rloo' or 'mean', got {baseline!r}.")
    else:
        c = baseline
    return {"logits": (fx - c) * (x - p), "x": x, "f": values}


def elbo_grads(log_likelihood, mean, scale, num_samples, estimator="full", generator=None):
    r"""Per-sample pathwise gradients of the ELBO of q = N(m, S) w.r.t. (mean, scale).

    .. math:: \hat g_n = \nabla_{(m, S)}\, \hat{\mathcal L}\big(m + L\varepsilon_n\big),
              \qquad \varepsilon_n \sim \mathcal N(0, I), \quad n = 1, \dots, N

    with :math:`\hat{\mathcal L}` the one-draw ELBO of :func:`elbo_integrand`
    (``estimator`` = ``"full"``, ``"analytic_kl"`` or ``"stl"``) and the prior
    N(0, I). Same shapes and return as :func:`reparam_grads`:
    ``{"mean": (N, d), "scale": (N, d) or (N, d, d)}``.
    """
    if estimator not in ELBO_ESTIMATORS:
        raise ValueError(f"estimator must be one of {ELBO_ESTIMATORS}, got {estimator!r}.")
    mean, scale = _check(mean, scale)
    eps = torch.randn((num_samples, mean.shape[0]), generator=generator, dtype=mean.dtype, device=mean.device)

    def one_draw(e, m, s):
        return elbo_integrand(log_likelihood, transform(e, m, s), m, s, estimator)

    g_mean, g_scale = vmap(grad(one_draw, argnums=(1, 2)), in_dims=(0, None, None))(eps, mean, scale)
    if scale.ndim == 2:
        g_scale = torch.tril(g_scale)
    return {"mean": g_mean, "scale": g_scale}


__all__ = [
    "transform",
    "standard_normal",
    "sample_gaussian",
    "score_function_grads",
    "reparam_grads",
    "leave_one_out_baseline",
    "bernoulli_score_grads",
    "elbo_grads",
]
