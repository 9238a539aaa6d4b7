"""vae_course.flows and vae_course.iwae against exact answers: autograd's Jacobian, the ELBO at
k = 1 and at the identity flow, the linear-Gaussian model's exact posterior and log p(x)."""

import math

import keras
import numpy as np
import pytest
import torch

import vae_course  # noqa: F401  (sets the torch backend)
from vae_course.flows import (
    IAF,
    fit_local_flow,
    flow_elbo,
    flow_log_weights,
    flow_moments,
    made_masks,
    per_image_flow,
)
from vae_course.iwae import (
    dreg_surrogate,
    encoder_gradients,
    gaussian_log_weights,
    gradient_snr,
    grid_log_marginal,
    iwae_objective,
    linear_gaussian_log_joint,
)
from vae_course.linear_gaussian import LinearGaussian

MODEL = LinearGaussian(w=1.5, b=0.3, s=0.8)
X = torch.tensor(2.0, dtype=torch.float64)


def _randomise(flow, seed=1):
    rng = np.random.default_rng(seed)
    for step in flow.steps:
        for v in (step.w2, step.b2):
            v.assign((0.5 * rng.normal(size=v.shape)).astype("float32"))


def test_made_masks_are_autoregressive():
    m1, m2 = made_masks(4, 9)
    reach = (m1 @ m2) > 0  # reach[i, o]: input i can influence output o
    assert not np.tril(reach).any()  # output o sees only inputs before it
    assert reach[0, 1:].all()  # and the first input reaches every later output


def test_new_flow_is_the_identity():
    keras.utils.set_random_seed(0)
    flow = IAF(3, num_steps=3, hidden_units=8)
    z = torch.randn(6, 3)
    out, log_det = flow(z)
    assert torch.equal(out, z) and torch.equal(log_det, torch.zeros(6))
    out2, log_det2 = IAF(3, num_steps=2, hidden_units=8)(z)
    assert torch.equal(out2, z) and torch.equal(log_det2, torch.zeros(6))
    _randomise(flow)
    assert not torch.equal(flow(z)[0], z)  # the check above can fail


@pytest.mark.parametrize("num_steps", [1, 2, 3])
def test_log_det_matches_autograd_jacobian(num_steps):
    keras.utils.set_random_seed(0)
    flow = IAF(3, num_steps=num_steps, hidden_units=8)
    _randomise(flow)
    z = torch.randn(5, 3)
    _, log_det = flow(z)
    for i in range(5):
        jac = torch.autograd.functional.jacobian(lambda u: flow(u)[0], z[i])
        sign, logabs = torch.linalg.slogdet(jac.double())
        assert sign != 0
        assert abs(log_det[i].item() - logabs.item()) < 1e-5


def test_per_image_flows_are_independent():
    keras.utils.set_random_seed(0)
    flow = IAF(2, num_steps=2, hidden_units=4, num_sets=3)
    _randomise(flow)
    z = torch.randn(7, 3, 2)
    out, _ = flow(z)
    z2 = z.clone()
    z2[:, 1] += 1.0  # move image 1's draws only
    out2, _ = flow(z2)
    assert torch.equal(out[:, 0], out2[:, 0]) and torch.equal(out[:, 2], out2[:, 2])
    assert not torch.equal(out[:, 1], out2[:, 1])


def test_identity_flow_gives_the_gaussian_elbo_exactly():
    lj = linear_gaussian_log_joint(MODEL, X)
    mean = torch.tensor([[0.2]], dtype=torch.float32)
    log_var = torch.tensor([[-0.5]], dtype=torch.float32)
    flow = IAF(1, num_steps=2, hidden_units=4)
    eps = torch.randn(50, 1, 1)
    a = flow_log_weights(lj, eps, mean, log_var, flow)
    b = gaussian_log_weights(lj, eps, mean, log_var)
    assert torch.equal(a, b)
    # and its ELBO estimate is the exact ELBO within the Monte Carlo error
    elbo = flow_elbo(lj, mean, log_var, flow, num_samples=20000, seed=0)[0]
    exact = MODEL.elbo(2.0, 0.2, math.exp(-0.5)).item()
    w = gaussian_log_weights(lj, torch.randn(20000, 1, 1), mean, log_var)
    assert abs(elbo - exact) < 4 * w.std().item() / math.sqrt(20000)


def test_iwae_objective_at_k1_is_the_log_weight_and_tends_to_log_px():
    log_w = torch.randn(1, 4, dtype=torch.float64)
    assert torch.equal(iwae_objective(log_w), log_w[0])
    lj = linear_gaussian_log_joint(MODEL, X)
    mean = torch.zeros(1, dtype=torch.float64)
    log_var = torch.zeros(1, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    values = {}
    for k in (1, 1000):
        eps = torch.randn(k, 2000, 1, generator=gen, dtype=torch.float64)
        v = iwae_objective(gaussian_log_weights(lj, eps, mean, log_var))
        values[k] = (v.mean().item(), v.std().item() / math.sqrt(2000))
    exact_elbo, log_px = MODEL.elbo(2.0, 0.0, 1.0).item(), MODEL.log_marginal(2.0).item()
    assert abs(values[1][0] - exact_elbo) < 4 * values[1][1]  # k = 1: the ELBO, unbiased
    assert values[1000][0] < log_px + 4 * values[1000][1]  # a lower bound in expectation
    assert abs(values[1000][0] - log_px) < 0.01  # ... and close to log p(x) at k = 1000


def test_dreg_has_the_iwae_gradients_mean():
    lj = linear_gaussian_log_joint(MODEL, X)
    mean = torch.tensor([-0.3], dtype=torch.float64)
    log_var = torch.tensor([1.0], dtype=torch.float64)
    iw = encoder_gradients(lj, mean, log_var, 5, 40000, "iwae", seed=3)
    dr = encoder_gradients(lj, mean, log_var, 5, 40000, "dreg", seed=3)
    for g_iw, g_dr in zip(iw, dr):
        diff = g_iw[:, 0] - g_dr[:, 0]  # same eps: paired
        assert abs(diff.mean()) < 4 * diff.std(ddof=1) / math.sqrt(len(diff))
        assert abs(g_iw.mean()) > 10 * g_iw.std() / math.sqrt(len(g_iw))  # a gradient to match


def test_dreg_is_zero_in_every_draw_at_the_exact_posterior():
    lj = linear_gaussian_log_joint(MODEL, X)
    post_mean, post_var = MODEL.posterior(2.0)
    mean, log_var = post_mean.reshape(1), torch.log(post_var).reshape(1)
    for g in encoder_gradients(lj, mean, log_var, 10, 200, "dreg"):
        assert np.abs(g).max() < 1e-12
    g_mean, _ = encoder_gradients(lj, mean, log_var, 10, 200, "iwae")
    assert np.abs(g_mean).max() > 0.1  # IWAE's score part is not zero draw by draw


def test_dreg_surrogate_weights_are_constants():
    log_w = torch.tensor([0.0, 1.0, 2.0], requires_grad=True)
    (g,) = torch.autograd.grad(dreg_surrogate(log_w), [log_w])
    expected = torch.softmax(log_w.detach(), 0) ** 2
    assert torch.allclose(g, expected)


def test_gradient_snr_on_known_draws():
    rng = np.random.default_rng(0)
    g = rng.normal(2.0, 1.0, size=(20000, 2)) * np.array([1.0, -3.0])
    snr, se = gradient_snr(g)
    assert np.all(np.abs(snr - 2.0) < 4 * se)
    assert np.all(se < 0.05)
    with pytest.raises(ValueError, match="at least 3 draws"):
        gradient_snr(np.ones((2, 1)))
    with pytest.raises(ValueError, match="estimator"):
        encoder_gradients(None, torch.zeros(1), torch.zeros(1), 1, 3, "reinforce")


def test_grid_log_marginal_on_a_two_dimensional_linear_gaussian():
    other = LinearGaussian(w=-0.7, b=0.1, s=0.5)

    def lj(z):  # two independent linear-Gaussian models, one per coordinate
        return MODEL.log_joint(2.0, z[..., 0]) + other.log_joint(-1.0, z[..., 1])

    exact = (MODEL.log_marginal(2.0) + other.log_marginal(-1.0)).item()
    (m1, v1), (m2, v2) = MODEL.posterior(2.0), other.posterior(-1.0)
    center = torch.stack([m1, m2]).reshape(1, 2)
    scale = torch.sqrt(torch.stack([v1, v2])).reshape(1, 2)
    assert abs(grid_log_marginal(lj, center, scale, 101, 6.0)[0] - exact) < 1e-3
    # a grid around a wrong centre, wider, still finds it
    assert abs(grid_log_marginal(lj, center + 0.3, 2 * scale, 201, 6.0)[0] - exact) < 1e-3
    with pytest.raises(ValueError, match="2-D"):
        grid_log_marginal(lj, torch.zeros(1, 3), torch.ones(1, 3))


def test_steps_alternate_the_autoregressive_order():
    # each step's Jacobian is triangular: lower for steps 0, 2, ..., upper for 1, 3, ...
    keras.utils.set_random_seed(0)
    flow = IAF(3, num_steps=4, hidden_units=8)
    _randomise(flow)
    z = torch.randn(3)
    for t, step in enumerate(flow.steps):
        jac = torch.autograd.functional.jacobian(lambda u, s=step: s(u)[0], z).reshape(3, 3)
        above, below = torch.triu(jac, 1), torch.tril(jac, -1)
        assert torch.equal(above if t % 2 == 0 else below, torch.zeros(3, 3)), t
        assert (below if t % 2 == 0 else above).abs().sum() > 0, t  # the check above can fail


DEVICES = [
    "meta",  # a stand-in for an accelerator: shapes only, no data
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA GPU"),
        ],
    ),
]


@pytest.mark.parametrize("device", DEVICES)
def test_flow_keeps_the_inputs_device(device):
    with keras.device(device):
        flow = IAF(3, num_steps=3, hidden_units=8)
        z = torch.randn(5, 3, device=device)
        out, log_det = flow(z)
        assert out.device.type == device and log_det.device.type == device
        assert out.shape == (5, 3) and log_det.shape == (5,)
    if device == "cuda":  # draws made on the CPU, flow weights on the GPU: results on the CPU
        with keras.device(device):
            out, log_det = flow(z.cpu())
        assert out.device.type == "cpu" and log_det.device.type == "cpu"
        assert torch.equal(out, z.cpu()) and torch.equal(log_det, torch.zeros(5))


def test_chi2_posterior_to_q_against_quadrature():
    # the integral of p(z | x)^2 / q(z) - 1 by the trapezoid rule on a fine, wide grid
    z = torch.linspace(-30.0, 30.0, 600_001, dtype=torch.float64)
    mu, a = MODEL.posterior(X)
    log_post = -((z - mu) ** 2) / (2 * a) - 0.5 * torch.log(2 * math.pi * a)
    for m, v in ((0.0, 1.0), (0.7, 0.3), (1.2, 0.15)):
        log_q = -((z - m) ** 2) / (2 * v) - 0.5 * math.log(2 * math.pi * v)
        ref = torch.trapezoid(torch.exp(2 * log_post - log_q), z).item() - 1.0
        got = MODEL.chi2_posterior_to_q(X, m, v).item()
        assert abs(got - ref) < 1e-6 * max(1.0, abs(ref)), (m, v, got, ref)
    assert abs(MODEL.chi2_posterior_to_q(X, mu, a).item()) < 1e-12  # q = posterior: zero
    with pytest.raises(ValueError, match="v must exceed"):
        MODEL.chi2_posterior_to_q(X, 0.0, 0.4 * a.item())


# ---- a flow with a context (the amortized flow of vae_course.iwae_training.IWAE)


def _randomise_context(flow, seed=2):
    _randomise(flow, seed)
    rng = np.random.default_rng(seed + 1)
    for step in flow.steps:
        step.wc.assign(rng.normal(size=step.wc.shape).astype("float32"))


def test_flow_with_context_is_the_identity_when_new_and_depends_on_the_context():
    keras.utils.set_random_seed(0)
    flow = IAF(3, num_steps=2, hidden_units=8, context_dim=4)
    z, h = torch.randn(5, 6, 3), torch.randn(6, 4)  # (k, batch, d) draws, (batch, c) context
    out, log_det = flow(z, h)
    assert torch.equal(out, z) and torch.equal(log_det, torch.zeros(5, 6))
    _randomise_context(flow)
    out, _ = flow(z, h)
    h2 = h.clone()
    h2[2] += 1.0  # another context for image 2 only
    out2, _ = flow(z, h2)
    assert not torch.equal(out[:, 2], out2[:, 2])
    assert torch.equal(out[:, [0, 1, 3, 4, 5]], out2[:, [0, 1, 3, 4, 5]])


def test_log_det_with_context_matches_autograd_jacobian():
    keras.utils.set_random_seed(0)
    flow = IAF(4, num_steps=3, hidden_units=8, context_dim=2)
    _randomise_context(flow)
    z, h = torch.randn(3, 4), torch.randn(3, 2)
    _, log_det = flow(z, h)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda u, i=i: flow(u, h[i])[0], z[i])
        assert abs(log_det[i].item() - torch.linalg.slogdet(jac.double())[1].item()) < 1e-5


def test_context_mismatch_names_the_argument():
    flow = IAF(3, num_steps=1, hidden_units=4, context_dim=2)
    with pytest.raises(ValueError, match="context is missing"):
        flow(torch.randn(2, 3))
    with pytest.raises(ValueError, match="last axis is 3, expected context_dim = 2"):
        flow(torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match="context is given"):
        IAF(3, num_steps=1, hidden_units=4)(torch.randn(2, 3), torch.randn(2, 2))
    with pytest.raises(ValueError, match="context_dim"):
        IAF(3, context_dim=-1)


def test_per_image_flow_maps_each_image_as_the_flow_with_its_context():
    keras.utils.set_random_seed(0)
    flow = IAF(4, num_steps=3, hidden_units=8, context_dim=2)
    _randomise_context(flow)
    z, h = torch.randn(5, 3, 4), torch.randn(3, 2)  # (k, images, d) draws, (images, c)
    want, want_det = flow(z, h)
    copy = per_image_flow(flow, h)
    assert (copy.num_sets, copy.context_dim, copy.num_steps) == (3, 0, 3)
    got, got_det = copy(z)
    assert torch.allclose(got, want, atol=1e-5) and torch.allclose(got_det, want_det, atol=1e-5)
    # each image's set is its own: changing image 1's leaves images 0 and 2 as they were
    copy.steps[0].b1.assign(copy.steps[0].b1 + torch.tensor([[0.0], [1.0], [0.0]]))
    moved, _ = copy(z)
    assert torch.equal(moved[:, [0, 2]], got[:, [0, 2]]) and not torch.equal(moved[:, 1], got[:, 1])
    with pytest.raises(ValueError, match="num_sets = 1 and a context"):
        per_image_flow(IAF(4, num_steps=1, hidden_units=8), h)
    with pytest.raises(ValueError, match="expected context_dim = 2"):
        per_image_flow(flow, torch.randn(3, 5))


def test_fit_local_flow_starts_from_a_given_flow_and_checks_it():
    keras.utils.set_random_seed(0)
    flow = IAF(2, num_steps=2, hidden_units=4, context_dim=4)
    _randomise_context(flow)
    mean, log_var = torch.zeros(3, 2), torch.zeros(3, 2)
    start = per_image_flow(flow, torch.cat([mean, log_var], -1))
    before = [keras.ops.convert_to_numpy(w).copy() for w in start.weights]

    def log_joint(z):  # the linear-Gaussian posterior N(1, 0.5^2) in each of 2 latents
        return -2.0 * ((z - 1.0) ** 2).sum(-1)

    m, lv, fitted = fit_local_flow(log_joint, mean, log_var, steps=50, flow=start)
    assert fitted is start  # fitted in place, from its own weights
    after = [keras.ops.convert_to_numpy(w) for w in fitted.weights]
    assert not any(np.array_equal(a, b) for a, b in zip(before, after))
    elbo = flow_elbo(log_joint, m, lv, fitted, num_samples=2000, seed=1)
    elbo0 = flow_elbo(log_joint, mean, log_var, per_image_flow(flow, torch.zeros(3, 4)), 2000, 1)
    assert np.all(elbo > elbo0)  # it climbed from where it started
    with pytest.raises(ValueError, match="num_sets = 3"):
        fit_local_flow(log_joint, mean, log_var, steps=1, flow=IAF(2, num_sets=2))


def test_flow_moments_of_an_affine_flow_are_its_gaussians():
    """With w2 = 0 an IAF step is z * exp(s) + m for its bias (m, s): q_T of q_0 = N(mu, v) is
    N(exp(s) mu + m, exp(2 s) v) exactly, per image; the moments match to 4 standard errors."""
    keras.utils.set_random_seed(0)
    flow = IAF(3, num_steps=1, hidden_units=4, num_sets=2)
    shift = np.array([[0.5, -1.0, 2.0], [0.0, 0.3, -0.7]], np.float32)
    log_scale = np.array([[0.2, -0.5, 0.0], [1.0, 0.1, -1.2]], np.float32)
    flow.steps[0].b2.assign(np.concatenate([shift, log_scale], axis=1))
    mean = torch.tensor([[1.0, 2.0, -1.0], [0.5, -0.5, 0.0]])
    log_var = torch.tensor([[0.0, -1.0, 0.5], [-2.0, 0.3, 1.0]])
    s = 20000
    m, lv = flow_moments(mean, log_var, flow, num_samples=s, seed=7)
    want_m = np.exp(log_scale) * mean.numpy() + shift
    want_lv = 2 * log_scale + log_var.numpy()
    sd = np.exp(0.5 * want_lv)
    assert m.shape == lv.shape == (2, 3) and m.dtype == np.float32
    assert np.all(np.abs(m - want_m) < 4 * sd / s**0.5), (m, want_m)
    assert np.all(np.abs(lv - want_lv) < 4 * (2 / (s - 1)) ** 0.5), (lv, want_lv)
    # the check can fail: the input's moments are not q_T's
    assert np.abs(m - mean.numpy()).max() > 0.5
    with pytest.raises(ValueError, match="at least 2 draws"):
        flow_moments(mean, log_var, flow, num_samples=1)
