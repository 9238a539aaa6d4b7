r"""The Gaussian log-density, written once; ``losses``, ``estimators`` and ``linear_gaussian`` use it.

.. math:: \log \mathcal N(x; \mu, v) = -\tfrac12\Big(\log 2\pi + \log v + \frac{(x-\mu)^2}{v}\Big)

Written with torch operations (Keras's torch backend hands torch tensors
to ``losses``), so it works under ``torch.func`` transforms and on the
tensors' own device.
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def normal_log_prob(x, mean, var=None, *, log_var=None) -> torch.Tensor:
    r"""log N(x; mean, var), element-wise, given the variance ``var`` or its log, ``log_var``.

    x, mean, var / log_var: torch tensors or numbers that broadcast together;
    numbers become tensors of x's dtype and device (float64 if x is a
    number too). Returns the broadcast shape. Give exactly one of ``var``
    and ``log_var`` (a VAE's encoder outputs log-variances).
    """
    if (var is None) == (log_var is None):
        raise ValueError(
            "normal_log_prob: give exactly one of var (the variance) and log_var (its log). "
            "Fix: e.g. normal_log_prob(x, 0.0, 1.0) or normal_log_prob(x, mean, log_var=z_log_var)."
        )
    x = x if torch.is_tensor(x) else torch.as_tensor(x, dtype=torch.float64)
    mean = _like(mean, x)
    if var is not None:
        var = _like(var, x)
        log_var = torch.log(var)
    else:
        log_var = _like(log_var, x)
        var = torch.exp(log_var)
    return -0.5 * (LOG_2PI + log_var + (x - mean) ** 2 / var)


def _like(a, x: torch.Tensor) -> torch.Tensor:
    return a if torch.is_tensor(a) else torch.as_tensor(a, dtype=x.dtype, device=x.device)


__all__ = ["LOG_2PI", "normal_log_prob"]
