"""The package on whatever device Keras's torch backend uses: CPU here, CUDA where torch sees one.

Every test runs once per device. The CUDA cases carry the ``cuda`` mark and are skipped where
torch sees no CUDA GPU (CI's machines); run them on a GPU machine with ``pytest -m cuda tests``.
Each case checks that results come back right (against the same closed forms and exact values as
the CPU tests), that the work stayed on the device, and that nothing mixes devices.
"""

import math

import keras
import numpy as np
import pytest
import torch
from test_evaluate import exact_log_px, linear_vae

from vae_course import losses, plots
from vae_course.evaluate import iwae_bound, negative_elbo
from vae_course.gradients import (
    bernoulli_score_grads,
    elbo_grads,
    reparam_grads,
    sample_gaussian,
    score_function_grads,
)
from vae_course.models import build_vae
from vae_course.train import train_vae

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA GPU"),
        ],
    ),
]


@pytest.fixture(params=DEVICES)
def device(request):
    """Keras's torch backend places new variables and tensors on this device inside the test."""
    with keras.device(request.param):
        yield torch.device(request.param)


def on(device, t):
    return t.device.type == device.type


def test_estimators_draw_on_the_tensors_device(device):
    mean = torch.tensor([1.0, -0.5], dtype=torch.float32, device=device)
    scale = torch.tensor([0.5, 2.0], dtype=torch.float32, device=device)
    x = sample_gaussian(mean, scale, 50_000)
    assert on(device, x) and x.dtype == torch.float32
    assert torch.allclose(x.mean(0), mean, atol=0.05) and torch.allclose(x.std(0), scale, rtol=0.02)
    # A seeded CPU generator gives the same draws whatever the tensors' device.
    a = sample_gaussian(mean, scale, 10, torch.Generator().manual_seed(3))
    b = sample_gaussian(mean.cpu(), scale.cpu(), 10, torch.Generator().manual_seed(3))
    assert on(device, a) and torch.allclose(a.cpu(), b)
    # Both gradient estimators of E[(x - k)^2], k = 0: d/dmu = 2 mu, d/dsigma = 2 sigma.
    f = lambda v: (v**2).sum(-1)
    for est in (score_function_grads, reparam_grads):
        g = est(f, mean, scale, 400_000)
        assert on(device, g["mean"]) and on(device, g["scale"])
        se = g["mean"].std(0) / math.sqrt(400_000)
        assert torch.all((g["mean"].mean(0) - 2 * mean).abs() < 5 * se), est.__name__


def test_elbo_and_bernoulli_gradients_draw_on_the_tensors_device(device):
    """With a seeded CPU generator, as the chapters pass: the draws follow the tensors' device."""
    mean = torch.tensor([1.0, -0.5], dtype=torch.float32, device=device)
    scale = torch.tensor([0.5, 2.0], dtype=torch.float32, device=device)
    n = 200_000
    # log p(x|z) = -|z|^2 / 2 with the prior N(0, I): ELBO = -sum(m^2 + s^2) + sum(1 + log s^2) / 2
    # + const, so d/dm = -2 m.
    g = elbo_grads(
        lambda z: -0.5 * (z**2).sum(-1), mean, scale, n, generator=torch.Generator().manual_seed(4)
    )
    assert on(device, g["mean"]) and on(device, g["scale"])
    se = g["mean"].std(0) / math.sqrt(n)
    assert torch.all((g["mean"].mean(0) + 2 * mean).abs() < 5 * se)
    cpu = elbo_grads(
        lambda z: -0.5 * (z**2).sum(-1),
        mean.cpu(),
        scale.cpu(),
        10,
        generator=torch.Generator().manual_seed(4),
    )
    again = elbo_grads(
        lambda z: -0.5 * (z**2).sum(-1), mean, scale, 10, generator=torch.Generator().manual_seed(4)
    )
    assert torch.allclose(again["mean"].cpu(), cpu["mean"], atol=1e-6)
    # Bernoulli bits, f(x) = sum(x): d/dlogits E[f] = p (1 - p).
    logits = torch.tensor([0.3, -1.2], dtype=torch.float32, device=device)
    b = bernoulli_score_grads(
        lambda x: x.sum(-1), logits, n, baseline="rloo", generator=torch.Generator().manual_seed(5)
    )
    assert on(device, b["logits"]) and on(device, b["x"])
    p = torch.sigmoid(logits)
    se = b["logits"].std(0) / math.sqrt(n)
    assert torch.all((b["logits"].mean(0) - p * (1 - p)).abs() < 5 * se)


def test_bernoulli_draws_follow_the_logits_device_with_no_gpu():
    """The check above, on a machine with no GPU: torch's "meta" device stands in for CUDA."""
    logits = torch.zeros(3, device="meta")
    for generator in (None, torch.Generator().manual_seed(0)):
        b = bernoulli_score_grads(lambda x: x.sum(-1), logits, 4, generator=generator)
        assert b["logits"].device.type == "meta" and b["x"].device.type == "meta"


def test_losses_on_device_match_torch_distributions(device):
    gen = torch.Generator().manual_seed(0)
    z_mean, z_log_var = torch.randn(8, 3, generator=gen), torch.randn(8, 3, generator=gen)
    kl = losses.kl_std_normal(z_mean.to(device), z_log_var.to(device))
    q = torch.distributions.Normal(z_mean, torch.exp(0.5 * z_log_var))
    ref = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(-1)
    assert on(device, kl) and torch.allclose(kl.cpu(), ref, atol=1e-5)


def test_iwae_bound_is_exact_on_device(device):
    vae = linear_vae()
    assert on(device, vae.decoder.trainable_weights[0].value)
    x = np.random.default_rng(0).random((20, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(iwae_bound(vae, x, 300, batch_size=7), exact_log_px(x), atol=2e-4)


def test_two_epochs_then_evaluation_on_device(device, mnist_float):
    (x_train, _), (x_test, _) = mnist_float
    keras.utils.set_random_seed(0)
    vae = build_vae(latent_dim=2)
    history = train_vae(vae, x_train[:2000], x_test[:500], epochs=2, batch_size=100, verbose=0)
    assert on(device, vae.trainable_weights[0].value)
    loss = history.history["loss"]
    assert loss[1] < loss[0] and all(math.isfinite(v) for v in history.history["val_loss"])
    x = x_test[:50]
    neg_elbo = negative_elbo(vae, x)
    l1, l50 = iwae_bound(vae, x, 1, seed=1), iwae_bound(vae, x, 50, seed=1)
    assert neg_elbo.shape == l1.shape == (50,) and np.all(np.isfinite(l50))
    # L_1 is one draw of the ELBO: its mean over 50 images agrees with -negative_elbo within noise,
    # and L_50 lies above it for the mean image.
    assert abs(l1.mean() + neg_elbo.mean()) < 5.0 and l50.mean() > l1.mean()
    for fig in (plots.plot_manifold(vae, n=4), plots.plot_interpolation(vae, x[0], x[1], steps=3)):
        plots.plt.close(fig)


def test_fast_path_takes_cpu_input_on_device(device):
    """Inside ``fast.enabled`` the networks skip ``Layer.__call__``; a CPU tensor or array still lands on
    Keras's device (on a GPU this once failed with a device mismatch in ``torch.addmm``)."""
    from vae_course import fast

    keras.utils.set_random_seed(0)
    vae = build_vae(latent_dim=2, image_shape=(4, 4), hidden_units=(8,))
    vae.compile(optimizer=keras.optimizers.Adam())
    x = np.random.default_rng(0).random((5, 4, 4)).astype(np.float32)
    want = vae.encoder(torch.as_tensor(x))[0]
    with fast.enabled(vae):
        got = vae.encoder(torch.as_tensor(x))[0]
        got_np = vae.encoder(x)[0]
    assert on(device, got) and on(device, got_np)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_np, want, rtol=1e-6, atol=1e-6)
