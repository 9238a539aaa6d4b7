"""vae_course.gaussian.normal_log_prob, the one Gaussian log-density, against torch.distributions."""

import math

import pytest
import torch

from vae_course import linear_gaussian, losses
from vae_course.gaussian import LOG_2PI, normal_log_prob


def test_matches_torch_distributions_given_var_or_log_var():
    g = torch.Generator().manual_seed(0)
    x, mean = (
        torch.randn(5, 3, generator=g, dtype=torch.float64),
        torch.randn(3, generator=g, dtype=torch.float64),
    )
    var = torch.rand(5, 3, generator=g, dtype=torch.float64) + 0.1
    want = torch.distributions.Normal(mean, var.sqrt()).log_prob(x)
    torch.testing.assert_close(normal_log_prob(x, mean, var), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        normal_log_prob(x, mean, log_var=var.log()), want, rtol=1e-12, atol=1e-12
    )
    assert normal_log_prob(0.0, 0.0, 1.0).item() == pytest.approx(
        -0.5 * math.log(2 * math.pi), rel=1e-15
    )
    assert math.log(2 * math.pi) == LOG_2PI


def test_numbers_follow_the_tensor_dtype():
    x = torch.zeros(2, dtype=torch.float32)
    assert normal_log_prob(x, 0.0, 2.0).dtype == torch.float32
    assert normal_log_prob(1.0, 0.0, 2.0).dtype == torch.float64


@pytest.mark.parametrize("kwargs", [{}, {"var": 1.0, "log_var": 0.0}])
def test_exactly_one_of_var_and_log_var(kwargs):
    with pytest.raises(ValueError, match="give exactly one of var .* and log_var"):
        normal_log_prob(torch.zeros(2), 0.0, **kwargs)


def test_one_formula_and_one_constant_for_the_whole_package():
    assert linear_gaussian.normal_log_prob is normal_log_prob
    assert losses.LOG_2PI is LOG_2PI and linear_gaussian.LOG_2PI is LOG_2PI
    assert losses.normal_log_prob is normal_log_prob
