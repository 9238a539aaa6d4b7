"""The effective sample size of importance weights, against direct sums, and the weights behind iwae_bound."""

import math

import numpy as np
import pytest

from vae_course.evaluate import effective_sample_size, iwae_bound, log_importance_weights
from vae_course.models import build_vae


def test_ess_equals_the_direct_formula_on_small_weights():
    rng = np.random.default_rng(0)
    w = rng.gamma(
        0.5, size=(50, 7)
    )  # heavy-ish tailed positive weights, small enough to sum directly
    direct = w.sum(0) ** 2 / (w**2).sum(0)
    np.testing.assert_allclose(effective_sample_size(np.log(w)), direct, rtol=1e-12)


def test_ess_limits_and_shift_invariance():
    k = 40
    assert effective_sample_size(np.zeros((k, 3))) == pytest.approx(np.full(3, k))
    one = np.full((k, 1), -1000.0)
    one[5] = 0.0
    assert effective_sample_size(one)[0] == pytest.approx(1.0)
    log_w = np.random.default_rng(1).normal(size=(k, 4)) * 3
    np.testing.assert_allclose(
        effective_sample_size(log_w - 700.0), effective_sample_size(log_w), rtol=1e-12
    )


def test_ess_rejects_bad_input():
    with pytest.raises(ValueError, match="log_w"):
        effective_sample_size(np.array([[0.0], [np.nan]]))


def test_log_weights_are_the_ones_behind_iwae_bound():
    vae = build_vae(latent_dim=2, likelihood="bernoulli", hidden_units=(16,))
    x = (np.random.default_rng(0).random((5, 28, 28)) > 0.5).astype("float32")
    log_w = log_importance_weights(vae, x, 30, max_rows=40, seed=3)  # several chunks
    assert log_w.shape == (30, 5)
    lse = np.log(np.exp(log_w - log_w.max(0)).sum(0)) + log_w.max(0)
    np.testing.assert_allclose(
        lse - math.log(30), iwae_bound(vae, x, 30, max_rows=40, seed=3), atol=1e-4
    )
