r"""An inverse autoregressive flow (Kingma et al. 2016) on top of the Gaussian q, as Keras layers.

A draw z_0 = mu + sigma * eps of the Gaussian q_0 goes through T invertible steps

.. math:: z_t = z_{t-1} \odot \exp\big(s_t(z_{t-1})\big) + m_t(z_{t-1}),

where (m_t, s_t) come from a masked network (MADE) whose i-th outputs depend only on the
coordinates before i. The Jacobian of a step is therefore triangular with diagonal exp(s_t), so

.. math:: \log q_T(z_T) = \log q_0(z_0) - \sum_{t=1}^T \sum_i s_{t,i}(z_{t-1}).

Every other step reverses the order of the coordinates. The last layer of each network starts
at zero, so a new flow is exactly the identity and q_T = q_0. ``num_sets`` > 1 gives each of
that many images its own flow parameters (a per-image fit, as chapter 8's q*). A ``context``
(Kingma et al.'s h; here the encoder's (mu, log sigma^2)) enters every step's hidden layer, so
that an encoder amortizes the flow too: its steps differ from image to image, while each
step's Jacobian stays triangular, since the context does not depend on z.
"""

from __future__ import annotations

import keras
import numpy as np
import torch
from keras import ops

from .errors import CourseError, check_positive_int
from .gaussian import diag_gaussian_log_prob
from .gradients import standard_normal, transform


def made_masks(latent_dim, hidden_units):
    """The two 0/1 masks of a one-hidden-layer MADE: ``(input->hidden (d, h), hidden->out (h, d))``.

    Hidden unit j sees inputs 1..deg_j (deg_j cycles through 1..d-1); output i sees the hidden
    units with deg_j < i, so output i depends on inputs 1..i-1 only (output 1 on none). With
    fewer than d - 1 hidden units only the degrees 1..h occur, and inputs h+1..d feed nothing.
    """
    d, h = latent_dim, hidden_units
    deg_in = np.arange(1, d + 1)
    deg_hidden = np.arange(h) % max(d - 1, 1) + 1
    mask1 = (deg_hidden[None, :] >= deg_in[:, None]).astype("float32")
    mask2 = (deg_in[None, :] > deg_hidden[:, None]).astype("float32")
    return mask1, mask2


@keras.saving.register_keras_serializable(package="vae_course")
class IAFStep(keras.layers.Layer):
    """One affine autoregressive step z' = z * exp(s(z, h)) + m(z, h); ``call(z, context=None)``
    -> ``(z', log|det|)``.

    z: (..., num_sets, latent_dim) (or (..., latent_dim) with num_sets = 1); log|det| has z's
    shape without the last axis. ``reverse=True`` reverses the coordinates before the step and
    restores their order after it, so the autoregressive order runs backwards. With
    ``context_dim`` > 0, ``context`` h (..., context_dim), broadcast against z's leading axes,
    is added to the hidden layer through a weight of its own (no mask: h does not depend on z).
    Both outputs come back on z's device.
    """

    def __init__(
        self, latent_dim, hidden_units=16, num_sets=1, reverse=False, context_dim=0, **kwargs
    ):
        super().__init__(**kwargs)
        self.latent_dim = check_positive_int(latent_dim, "latent_dim", 2)
        self.hidden_units = check_positive_int(hidden_units, "hidden_units", 16)
        self.num_sets = check_positive_int(num_sets, "num_sets", 1)
        self.reverse = bool(reverse)
        self.context_dim = check_positive_int(context_dim, "context_dim", 0, minimum=0)
        self.mask1, self.mask2 = made_masks(self.latent_dim, self.hidden_units)
        n, d, h = self.num_sets, self.latent_dim, self.hidden_units
        self.w1 = self.add_weight(
            shape=(n, d, h), initializer=keras.initializers.RandomNormal(0.0, d**-0.5), name="w1"
        )
        self.b1 = self.add_weight(shape=(n, h), initializer="zeros", name="b1")
        self.w2 = self.add_weight(shape=(n, h, 2 * d), initializer="zeros", name="w2")
        self.b2 = self.add_weight(shape=(n, 2 * d), initializer="zeros", name="b2")
        if self.context_dim:
            c = self.context_dim
            self.wc = self.add_weight(
                shape=(n, c, h),
                initializer=keras.initializers.RandomNormal(0.0, c**-0.5),
                name="wc",
            )
        self.built = True  # every weight exists now: nothing is left for build() to make

    def shift_and_log_scale(self, z, context=None):
        """(m(z, h), s(z, h)), each of z's shape, from the masked network."""
        mask1 = ops.convert_to_tensor(self.mask1)
        mask2 = ops.convert_to_tensor(np.concatenate([self.mask2, self.mask2], axis=1))
        pre = self._matmul(z, self.w1 * mask1) + self.b1
        if self.context_dim:
            pre = pre + self._matmul(context, self.wc)
        out = self._matmul(ops.tanh(pre), self.w2 * mask2) + self.b2
        return out[..., : self.latent_dim], out[..., self.latent_dim :]

    def _matmul(self, x, w):
        """x (..., num_sets, i) @ w (num_sets, i, o), set by set; one shared matrix when num_sets
        is 1 (a plain product: a batched one would copy w for every row)."""
        if self.num_sets == 1:
            return x @ w[0]
        return ops.squeeze(ops.expand_dims(x, -2) @ w, -2)

    def call(self, z, context=None):
        device = getattr(z, "device", None)  # the caller's; Keras's ops work on Keras's device
        z = ops.convert_to_tensor(z)
        context = _check_context(context, self.context_dim, type(self).__name__)
        if self.reverse:
            z = ops.flip(z, axis=-1)
        m, s = self.shift_and_log_scale(z, context)
        z_new, log_det = z * ops.exp(s) + m, ops.sum(s, axis=-1)
        if self.reverse:  # back to the input's order (a permutation: no change of volume)
            z_new = ops.flip(z_new, axis=-1)
        if device is not None:
            z_new, log_det = z_new.to(device), log_det.to(device)
        return z_new, log_det

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "hidden_units": self.hidden_units,
            "num_sets": self.num_sets,
            "reverse": self.reverse,
            "context_dim": self.context_dim,
        }


@keras.saving.register_keras_serializable(package="vae_course")
class IAF(keras.layers.Layer):
    """``num_steps`` :class:`IAFStep` s, the autoregressive order reversed every other step;
    ``call(z, context=None)`` -> ``(z_T, sum of the steps' log|det|)``. Exactly the identity
    when new. ``context_dim`` > 0: every step also sees the context (see :class:`IAFStep`)."""

    def __init__(
        self, latent_dim, num_steps=2, hidden_units=16, num_sets=1, context_dim=0, **kwargs
    ):
        super().__init__(**kwargs)
        self.latent_dim = check_positive_int(latent_dim, "latent_dim", 2)
        self.num_steps = check_positive_int(num_steps, "num_steps", 2)
        self.hidden_units = check_positive_int(hidden_units, "hidden_units", 16)
        self.num_sets = check_positive_int(num_sets, "num_sets", 1)
        self.context_dim = check_positive_int(context_dim, "context_dim", 0, minimum=0)
        self.steps = [
            IAFStep(
                latent_dim,
                hidden_units,
                num_sets,
                reverse=t % 2 == 1,
                context_dim=self.context_dim,
                name=f"iaf_step_{t}",
            )
            for t in range(self.num_steps)
        ]
        self.built = True

    def call(self, z, context=None):
        log_det = 0.0
        for step in self.steps:
            z, ld = step(z, context)
            log_det = log_det + ld
        return z, log_det

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "num_steps": self.num_steps,
            "hidden_units": self.hidden_units,
            "num_sets": self.num_sets,
            "context_dim": self.context_dim,
        }


def _check_context(context, context_dim, name):
    if (context is None) != (context_dim == 0):
        raise CourseError(
            f"{name}: context is {'missing' if context is None else 'given'} but context_dim is "
            f"{context_dim}. Fix: pass a context (..., context_dim) exactly when context_dim > 0."
        )
    if context is None:
        return None
    context = ops.convert_to_tensor(context)
    if context.shape[-1] != context_dim:
        raise CourseError(
            f"{name}: context's last axis is {context.shape[-1]}, expected context_dim = "
            f"{context_dim}. Fix: pass a context of shape (..., {context_dim})."
        )
    return context


def per_image_flow(flow, context):
    """A copy of an encoder's ``flow`` (an :class:`IAF` with one set of weights and a context)
    with one set of weights per image and no context: image j's hidden biases are
    b1 + h_j W_c for its context h_j (b, context_dim), so the copy maps image j's z as
    ``flow(z, context)`` does (up to rounding), and each image's set can be fitted by itself
    (:func:`fit_local_flow`'s ``flow``)."""
    if not (isinstance(flow, IAF) and flow.num_sets == 1 and flow.context_dim):
        raise CourseError(
            f"per_image_flow: flow must be an IAF with num_sets = 1 and a context, got {flow!r}. "
            "Fix: pass an encoder's flow (an IWAE's .flow) and its context (mu, log sigma^2)."
        )
    context = _check_context(context, flow.context_dim, "per_image_flow")
    b = int(context.shape[0])
    out = IAF(flow.latent_dim, flow.num_steps, flow.hidden_units, num_sets=b)
    for new, old in zip(out.steps, flow.steps):
        for name in ("w1", "w2", "b2"):
            getattr(new, name).assign(ops.repeat(getattr(old, name), b, axis=0))
        new.b1.assign(old.b1 + context @ old.wc[0])
    return out


def flow_log_weights(log_joint, eps, mean, log_var, flow):
    r"""log w = log p(x, z_T) - log q_T(z_T) for z_0 = mean + exp(log_var / 2) eps through ``flow``.

    .. math::

        \log q_T(z_T) = \log q_0(z_0)
        - \log\left|\det \frac{\partial z_T}{\partial z_0}\right|

    eps: (k, b, d); mean, log_var: (b, d); returns (k, b). With an identity flow this is
    :func:`vae_course.iwae.gaussian_log_weights`, term for term.
    """
    z0 = transform(eps, mean, torch.exp(0.5 * log_var))
    z, log_det = flow(z0)
    return log_joint(z) - (diag_gaussian_log_prob(z0, mean, log_var) - log_det)


def flow_elbo(log_joint, mean, log_var, flow, num_samples=1000, seed=1):
    r"""The ELBO of the flow's q_T for each of b images: the mean of ``num_samples`` log weights.

    .. math:: \mathrm{ELBO}(q_T) = \mathbb E_{q_T}\big[\log p(x, z) - \log q_T(z)\big]

    mean, log_var: (b, d) tensors. Returns (b,) float64 numpy; unbiased for the ELBO.
    """
    s = check_positive_int(num_samples, "num_samples", 1000)
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        eps = standard_normal((s,) + tuple(mean.shape), mean, gen)
        log_w = flow_log_weights(log_joint, eps, mean, log_var, flow)
    return log_w.mean(0).to(torch.float64).cpu().numpy()


def flow_moments(mean, log_var, flow, num_samples=1000, seed=3):
    r"""The diagonal Gaussian with the first two moments of the flow's q_T, for each of b images.

    .. math:: \hat\mu_j = \frac1S\sum_s z_{T,j}^{(s)}, \qquad
              \log\hat\sigma_j^2 = \log\Big(\frac1{S-1}\sum_s
              \big(z_{T,j}^{(s)} - \hat\mu_j\big)^2\Big)

    from ``num_samples`` draws z_T = flow(mean + exp(log_var / 2) eps) (``flow`` maps one
    image's z by its own weights: :func:`per_image_flow`). A start for a Gaussian fit that
    sits where q_T's mass is, rather than at q_0, the flow's input. mean, log_var: (b, d)
    tensors. Returns float32 numpy arrays (b, d), (b, d); reproducible for a given ``seed``.
    """
    s = check_positive_int(num_samples, "num_samples", 1000)
    if s < 2:
        raise ValueError(f"num_samples: a variance needs at least 2 draws, got {s}.")
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        eps = standard_normal((s,) + tuple(mean.shape), mean, gen)
        z, _ = flow(transform(eps, mean, torch.exp(0.5 * log_var)))
        z = z.to(torch.float64)
        m, v = z.mean(0), z.var(0, correction=1)
    return m.float().cpu().numpy(), torch.log(v).float().cpu().numpy()


def fit_local_flow(
    log_joint,
    mean,
    log_var,
    num_steps=2,
    hidden_units=16,
    steps=400,
    learning_rate=0.02,
    flow_learning_rate=0.005,
    num_samples=5,
    seed=0,
    flow=None,
):
    r"""The best Gaussian-plus-IAF q for each of b images by itself: maximise its ELBO.

    Starts from the Gaussian (mean, log_var) (b, d) and an identity :class:`IAF` with its own
    parameters for each image, and takes ``steps`` Adam steps on all of them at once, with the
    learning rate falling linearly to 0 and ``num_samples`` fresh draws a step: the protocol of
    :func:`vae_course.evaluate.fit_local_posterior`, with the flow's parameters added.
    ``flow``: start from this per-image :class:`IAF` instead (num_sets = b, no context, e.g.
    :func:`per_image_flow` of an encoder's flow; ``num_steps`` and ``hidden_units`` are then
    its own); its weights are fitted in place. Returns ``(mean, log_var, flow)``; reproducible
    for a given ``seed``.
    """
    steps = check_positive_int(steps, "steps", 400)
    num_samples = check_positive_int(num_samples, "num_samples", 5)
    b, d = mean.shape
    if flow is None:
        keras.utils.set_random_seed(int(seed))  # the flow's first-layer weights
        flow = IAF(d, num_steps, hidden_units, num_sets=b)
    elif not (
        isinstance(flow, IAF)
        and flow.num_sets == b
        and flow.latent_dim == d
        and not flow.context_dim
    ):
        raise CourseError(
            f"fit_local_flow: flow must be an IAF with num_sets = {b} (one set per image), "
            f"latent_dim = {d} and no context; got {flow!r}. Fix: pass per_image_flow(flow, "
            "context) of an encoder's flow, or flow=None for an identity flow."
        )
    m = mean.detach().clone().requires_grad_(True)
    lv = log_var.detach().clone().requires_grad_(True)
    flow_params = [v.value for v in flow.trainable_weights]
    params = [m, lv] + flow_params
    opt = torch.optim.Adam(
        [{"params": [m, lv]}, {"params": flow_params, "lr": flow_learning_rate}], lr=learning_rate
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 - t / steps)
    gen = torch.Generator().manual_seed(int(seed))
    for _ in range(steps):
        eps = standard_normal((num_samples, b, d), m, gen)
        loss = -flow_log_weights(log_joint, eps, m, lv, flow).mean(0).sum()
        grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        sched.step()
    return m.detach(), lv.detach(), flow


__all__ = [
    "made_masks",
    "IAFStep",
    "IAF",
    "per_image_flow",
    "flow_log_weights",
    "flow_elbo",
    "flow_moments",
    "fit_local_flow",
]
