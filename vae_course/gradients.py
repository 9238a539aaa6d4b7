r"""The gradient estimators of the course (chapters 2-4), in torch.

The score function (REINFORCE) and the pathwise (reparameterization)
gradients of E_q[f(x)], the leave-one-out baseline, the score function
of independent Bernoullis, and the ELBO's one-draw estimates
(:func:`elbo_integrand`, three ways: ``"analytic"``, ``"mc"``, ``"stl"``, the
same names as the VAE's ``kl=``) with their pathwise gradient.
Torch only: nothing here imports Keras.

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

from .gaussian import _check, _check_scale, gaussian_kl, gaussian_log_prob, normal_log_prob


def transform(eps, mean, scale):
    """x = m + scale * eps (diagonal) or m + L eps (full). eps: (..., d) -> (..., d).

    The course's one reparameterization: the VAE's z = mu + sigma * eps, with
    ``scale`` = sigma of the same shape as ``mean`` (batch, d), is the diagonal
    case. ``scale`` with one axis more than ``mean`` is a lower-triangular L.
    """
    if mean.ndim == 1:
        _check_scale(mean, scale)
    if scale.ndim == mean.ndim:
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
    estimator unbiased because E_q[grad log q] = 0). ``f`` maps the draws
    (n, d) to values (n,); or, with a diagonal ``scale`` (d,), to values
    (n, d) for d independent one-dimensional problems side by side: then
    coordinate j's gradient uses coordinate j's value (and ``baseline`` may be
    a tensor (d,), one constant per problem). Returns a dict with
    ``"mean"``: (n, d) and ``"scale"``: (n, d) or (n, d, d) (lower triangle).
    """
    mean, scale = _check(mean, scale)
    x = sample_gaussian(mean, scale, num_samples, generator).detach()
    with torch.no_grad():
        values = f(x)
    score = vmap(grad(gaussian_log_prob, argnums=(1, 2)), in_dims=(0, None, None))(x, mean, scale)
    if (
        values.shape == x.shape and x.shape[1] > 1
    ):  # d independent problems: coordinate by coordinate
        if scale.ndim != 1:
            raise ValueError(
                f"f returned one value per coordinate, {tuple(values.shape)}, which needs independent "
                f"coordinates: a diagonal scale (d,), got {tuple(scale.shape)}. Fix: return values (n,)."
            )
        fx = values - baseline
        return {"mean": score[0] * fx, "scale": score[1] * fx}
    if values.shape != x.shape[:1]:
        raise ValueError(
            f"f must map the draws (n, d) = {tuple(x.shape)} to values (n,) or, for d independent problems "
            f"with a diagonal scale, (n, d); got {tuple(values.shape)}."
        )
    fx = values - baseline
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
    logits = torch.as_tensor(
        logits, dtype=torch.get_default_dtype() if not torch.is_tensor(logits) else None
    )
    if logits.ndim != 1:
        raise ValueError(f"logits must have shape (d,), got {tuple(logits.shape)}.")
    p = torch.sigmoid(logits)
    # Uniforms on logits' device; with a generator on another device, drawn there and moved (as
    # standard_normal does), so that a seeded CPU generator gives the same draws on any device.
    device = logits.device if generator is None else generator.device
    shape = (num_samples, logits.shape[0])
    u = torch.rand(shape, generator=generator, dtype=logits.dtype, device=device).to(logits.device)
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


def bernoulli_enumeration_grad(f, logits):
    r"""The exact gradient of E_q[f(x)] w.r.t. the logits of independent Bernoullis, by enumeration.

    q(x) = prod_j p_j^{x_j} (1 - p_j)^{1 - x_j} with p = sigmoid(logits), shape (d,).
    Summing the score-function identity over the outcomes instead of sampling,

    .. math:: \nabla_\eta\, \mathbb E_q f = \sum_x q(x)\, f(x)\, (x - p)

    exactly, with no variance. ``f`` as in :func:`bernoulli_score_grads`: it
    maps outcomes (M, d) to values (M,), summed over all 2^d outcomes (d <= 20);
    or to values (M, d) for d independent one-bit problems side by side
    (coordinate j's value depends on x_j alone), where two evaluations, at
    x = 0 and x = 1, give p (1 - p) (f(1) - f(0)). Returns (d,).
    """
    logits = torch.as_tensor(
        logits, dtype=torch.get_default_dtype() if not torch.is_tensor(logits) else None
    )
    if logits.ndim != 1:
        raise ValueError(f"logits must have shape (d,), got {tuple(logits.shape)}.")
    p = torch.sigmoid(logits)
    d = p.shape[0]
    ends = torch.stack(
        [torch.zeros_like(p), torch.ones_like(p)]
    )  # x = 0 and x = 1 in every coordinate
    values = f(ends)
    if values.shape == (2, d):
        return p * (1 - p) * (values[1] - values[0])
    if values.shape != (2,):
        raise ValueError(
            f"f must map outcomes (M, d) to values (M,) or, for d independent one-bit problems, (M, d); "
            f"at (2, {d}) it returned {tuple(values.shape)}."
        )
    if d > 20:
        raise ValueError(
            f"exact enumeration of d = {d} bits needs 2^{d} evaluations of f. Fix: estimate the gradient "
            "with bernoulli_score_grads, or pass an f of independent one-bit problems (values (M, d))."
        )
    outcomes = ((torch.arange(2**d)[:, None] >> torch.arange(d)) & 1).to(p.dtype)  # (2^d, d)
    q = torch.exp((outcomes * torch.log(p) + (1 - outcomes) * torch.log1p(-p)).sum(-1))
    return (q[:, None] * f(outcomes)[:, None] * (outcomes - p)).sum(0)


ELBO_ESTIMATORS = ("analytic", "mc", "stl")
_RENAMED = {"full": "mc", "analytic_kl": "analytic"}


def check_estimator(estimator, name="estimator"):
    """``estimator`` if it is one of :data:`ELBO_ESTIMATORS`, else a clear error (also for the old names)."""
    if estimator in ELBO_ESTIMATORS:
        return estimator
    hint = (
        f"{estimator!r} is the old name of {_RENAMED[estimator]!r}. "
        if isinstance(estimator, str) and estimator in _RENAMED
        else ""
    )
    raise ValueError(
        f"{name} must be one of {ELBO_ESTIMATORS}, got {estimator!r}. {hint}Fix: {name}='analytic' "
        "(the KL in closed form), 'mc' (log q - log p at the draws) or 'stl' (the same, sticking the landing)."
    )


def elbo_integrand(log_likelihood, z, mean, scale, estimator="mc"):
    r"""One draw of the ELBO of q = N(m, S) under the prior p(z) = N(0, I), three ways.

    z: (..., d) draws of q, written as z = m + scale eps so that gradients reach
    (mean, scale); ``log_likelihood`` maps (..., d) to (...). Returns (...).

    * ``"mc"``: log p(x|z) + log p(z) - log q(z; m, S), every term sampled;
    * ``"analytic"``: log p(x|z) - KL(q || p), the KL exact (:func:`gaussian_kl`);
    * ``"stl"``, sticking the landing (Roeder, Wu & Duvenaud 2017): the value of
      ``"mc"``, but with (m, S) inside log q treated as constants (stop-gradient),
      so its gradient drops the score term E_q[grad log q] = 0 and is exactly 0
      wherever q is the posterior.

    All three have the same mean, the ELBO, and the same expected gradient.
    """
    check_estimator(estimator)
    d = mean.shape[-1]
    log_prior = normal_log_prob(z, 0.0, 1.0).sum(-1)
    if estimator == "mc":
        return log_likelihood(z) + log_prior - gaussian_log_prob(z, mean, scale)
    if estimator == "stl":
        return log_likelihood(z) + log_prior - gaussian_log_prob(z, mean.detach(), scale.detach())
    ones = torch.ones(d, dtype=mean.dtype, device=mean.device)
    return log_likelihood(z) - gaussian_kl(mean, scale, torch.zeros_like(mean), ones)


def elbo_grads(log_likelihood, mean, scale, num_samples, estimator="mc", generator=None):
    r"""Per-sample pathwise gradients of the ELBO of q = N(m, S) w.r.t. (mean, scale).

    .. math:: \hat g_n = \nabla_{(m, S)}\, \hat{\mathcal L}\big(m + L\varepsilon_n\big),
              \qquad \varepsilon_n \sim \mathcal N(0, I), \quad n = 1, \dots, N

    with :math:`\hat{\mathcal L}` the one-draw ELBO of :func:`elbo_integrand`
    (``estimator`` = ``"mc"``, ``"analytic"`` or ``"stl"``) and the prior
    N(0, I). Same shapes and return as :func:`reparam_grads`:
    ``{"mean": (N, d), "scale": (N, d) or (N, d, d)}``.
    """
    check_estimator(estimator)
    mean, scale = _check(mean, scale)
    eps = standard_normal((num_samples, mean.shape[0]), mean, generator)

    def one_draw(e, m, s):
        return elbo_integrand(log_likelihood, transform(e, m, s), m, s, estimator)

    g_mean, g_scale = vmap(grad(one_draw, argnums=(1, 2)), in_dims=(0, None, None))(
        eps, mean, scale
    )
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
    "ELBO_ESTIMATORS",
    "check_estimator",
    "elbo_integrand",
    "elbo_grads",
    "bernoulli_enumeration_grad",
]
