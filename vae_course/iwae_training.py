r"""Importance-weighted training (Burda et al. 2016): a VAE that trains on L_k instead of the ELBO.

:class:`IWAE` is a :class:`~vae_course.models.VAE` whose loss is minus the k-sample estimator
:func:`vae_course.iwae.iwae_objective` of

.. math:: \mathcal L_k(x) = \mathbb E_{z_1, \dots, z_k \sim q(z\mid x)}
          \Big[\log \frac1k \sum_{i=1}^k \frac{p(x, z_i)}{q(z_i \mid x)}\Big].

With ``num_samples=1`` it is, step for step, a ``VAE(..., kl="mc")``: the VAE trained on the
one-sample Monte Carlo log weight log p(x|z) + log p(z) - log q(z|x), Burda et al.'s VAE at
k = 1 (they also train VAEs on the k-draw ELBO, ``VAE(kl="mc", num_mc_samples=k)``, for k = 5
and 50). Its network, likelihood, saving and evaluation are the VAE's; only the loss differs.
With ``flow_steps`` > 0 the encoder's Gaussian is the base q_0 of an inverse autoregressive
flow (:class:`~vae_course.flows.IAF`) whose steps also see the encoder's (mu, log sigma^2): an
amortized flow, trained with the rest; :meth:`IWAE.propose` gives its draws and log q.
Importing this module registers the class with Keras (``tools.checkpoints.load_vae`` loads it).
"""

from __future__ import annotations

import keras
from keras import ops

from .errors import CourseError, check_positive_int
from .flows import IAF
from .gaussian import diag_gaussian_log_prob, std_normal_log_prob
from .iwae import ESTIMATORS, iwae_objective
from .losses import get_likelihood
from .models import VAE, build_encoder, build_networks


@keras.saving.register_keras_serializable(package="vae_course")
class IWAE(VAE):
    r"""A VAE trained on the importance-weighted bound with k = ``num_samples`` draws per image.

    For each image, k draws z_i = mu + sigma * eps_i from the encoder's q(z|x) give the log
    weights log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x), and the loss is

    .. math:: -\hat{\mathcal L}_k = -\log \frac1k \sum_{i=1}^k w_i,

    minus one draw of L_k's estimator; its gradient is the pathwise (reparameterized) gradient,
    score part included, as Burda et al. train. The logged ``loss`` is that -L̂_k; ``nll`` and
    ``kl`` are the means over the k draws of -log p(x|z_i) and log q(z_i|x) - log p(z_i), so
    ``nll + kl`` is minus the ELBO's k-draw estimate (equal to ``loss`` when k = 1). The KL weight
    is 1 and the KL term is the sampled one: L_k has no closed-form part.

    ``estimator="dreg"`` keeps that loss's value and the decoder's gradient and gives the
    encoder the doubly reparameterized gradient instead (:meth:`dreg_losses`; Tucker et al.
    2019's IWAE-DReG).

    ``flow_steps`` > 0 puts an amortized IAF of that many steps (``flow_hidden_units`` hidden
    units each) after the Gaussian draw: q(z|x) is then the flow's q_T, and log w uses its
    density (:meth:`propose`). It starts as the identity, so a new model with a flow has the
    same loss as one without. Not with ``estimator="dreg"``.
    """

    def __init__(
        self,
        encoder,
        decoder,
        num_samples=5,
        estimator="iwae",
        flow_steps=0,
        flow_hidden_units=100,
        **kwargs,
    ):
        for key, plain in (("num_mc_samples", 1), ("kl", "mc"), ("kl_weight", 1.0)):
            if kwargs.pop(key, plain) != plain:
                raise CourseError(
                    f"IWAE: {key} is fixed at {plain!r} (the k draws are num_samples, and L_k has "
                    f"no KL weight). Fix: leave {key} out; use VAE for other settings."
                )
        super().__init__(encoder, decoder, kl="mc", **kwargs)
        self.num_samples = check_positive_int(num_samples, "num_samples", 5)
        if estimator not in ESTIMATORS:
            raise CourseError(
                f"IWAE: estimator must be one of {ESTIMATORS}, got {estimator!r}. Fix: "
                "estimator='iwae' (the gradient of -L̂_k) or 'dreg' (DReG's for the encoder)."
            )
        self.estimator = estimator
        flow_steps = check_positive_int(flow_steps, "flow_steps", 2, minimum=0)
        if flow_steps and estimator == "dreg":
            raise CourseError(
                "IWAE: estimator='dreg' is not implemented with a flow (flow_steps > 0). Fix: "
                "estimator='iwae', or flow_steps=0."
            )
        self.flow_steps = flow_steps
        self.flow_hidden_units = check_positive_int(flow_hidden_units, "flow_hidden_units", 100)
        self.flow = None
        if flow_steps:
            d = self.latent_dim
            self.flow = IAF(d, flow_steps, self.flow_hidden_units, context_dim=2 * d, name="flow")

    def propose(self, z_mean, z_log_var, z0):
        r"""``(z, log q(z|x))`` for draws z0 (..., batch, d) of the encoder's Gaussian q_0.

        Without a flow, z = z0 and log q is q_0's density. With one, z = f(z0; h) for the context
        h = (mu, log sigma^2) and log q(z|x) = log q_0(z0) - log|det df/dz0| (eq. flow-density).
        """
        z, log_det = self._through_flow(z_mean, z_log_var, z0)
        return z, self._log_q(z0, z_mean, z_log_var, log_det)

    def _through_flow(self, z_mean, z_log_var, z0):
        """(z, log|det|): the flow's output for context (mu, log sigma^2), or (z0, None)."""
        if self.flow is None:
            return z0, None
        return self.flow(z0, ops.concatenate([z_mean, z_log_var], axis=-1))

    @staticmethod
    def _log_q(z0, z_mean, z_log_var, log_det):
        log_q = diag_gaussian_log_prob(z0, z_mean, z_log_var)
        return log_q if log_det is None else log_q - log_det

    def log_weights(self, x, training=False, seed=None):
        r"""``(nll, kl)``, each (k, batch): -log p(x|z_i) and log q(z_i|x) - log p(z_i).

        log w_i = -(nll_i + kl_i), added in the order :class:`~vae_course.models.VAE` adds
        its loss, so that k = 1 reproduces the VAE's numbers bit for bit.
        """
        z_mean, z_log_var = self.encoder(x, training=training)
        k = self.num_samples
        z0 = self.reparameterize(z_mean, z_log_var, k, seed=seed)  # (k, batch, d)
        z, log_det = self._through_flow(z_mean, z_log_var, z0)  # z = z0 without a flow
        out = self.decoder(ops.reshape(z, (-1, self.latent_dim)), training=training)
        x_rep = ops.tile(x, (k,) + (1,) * (len(ops.shape(x)) - 1))
        nll = -ops.reshape(self.log_likelihood(x_rep, out), (k, -1))
        # log q after the decoder, as the VAE adds its terms: k = 1 trains bit for bit as it
        kl = self._log_q(z0, z_mean, z_log_var, log_det) - std_normal_log_prob(z)
        return nll, kl

    def call(self, x, training=False):
        """A reconstruction of x through one draw z ~ q(z|x) (through the flow, if any)."""
        z_mean, z_log_var = self.encoder(x, training=training)
        z, _ = self.propose(z_mean, z_log_var, self.reparameterize(z_mean, z_log_var))
        return get_likelihood(self.likelihood).mean(self.decoder(z, training=training))

    def compute_losses(self, x, training=False, seed=None):
        """Per-example (loss, nll, kl), each (batch,): loss = -L̂_k; nll, kl averaged over draws."""
        if self.estimator == "dreg":
            return self.dreg_losses(x, training=training, seed=seed)
        nll, kl = self.log_weights(x, training=training, seed=seed)
        loss = -iwae_objective(-(nll + kl))
        return loss, ops.mean(nll, axis=0), ops.mean(kl, axis=0)

    def dreg_losses(self, x, training=False, seed=None):
        r"""(loss, nll, kl) of :meth:`compute_losses`, same values, with DReG's encoder gradient.

        The decoder's parameters get the IWAE gradient sum_i w̃_i ∇ log p(x, z_i), the encoder's
        sum_i w̃_i² (∂ log w_i / ∂z_i)(∂z_i / ∂φ) with q's parameters held fixed in log q
        (:func:`vae_course.iwae.dreg_surrogate`). A first decoder pass gives the normalized weights
        w̃_i, then held constant (stop_gradient); the second runs on z_i' = z_i in value, whose
        gradient into the encoder is scaled by w̃_i, so that sum_i w̃_i log w_i' carries both
        gradients.
        """
        sg = ops.stop_gradient
        z_mean, z_log_var = self.encoder(x, training=training)
        k = self.num_samples
        z = self.reparameterize(z_mean, z_log_var, k, seed=seed)  # (k, batch, d)
        x_rep = ops.tile(x, (k,) + (1,) * (len(ops.shape(x)) - 1))

        def nll_kl(z_in):  # q's parameters held fixed: they act on log w only through z
            out = self.decoder(ops.reshape(z_in, (-1, self.latent_dim)), training=training)
            nll = -ops.reshape(self.log_likelihood(x_rep, out), (k, -1))
            kl = diag_gaussian_log_prob(z_in, sg(z_mean), sg(z_log_var)) - std_normal_log_prob(z_in)
            return nll, kl

        nll0, kl0 = nll_kl(sg(z))
        log_w0 = -(nll0 + kl0)
        w_tilde = sg(ops.exp(log_w0 - ops.logsumexp(log_w0, axis=0, keepdims=True)))  # (k, batch)
        z_scaled = sg(z) + ops.expand_dims(w_tilde, -1) * (z - sg(z))  # = z; gradient × w̃_i
        nll, kl = nll_kl(z_scaled)
        log_w = -(nll + kl)
        surrogate = ops.sum(w_tilde * log_w, axis=0)
        loss = -iwae_objective(sg(log_w)) - (surrogate - sg(surrogate))  # value: -L̂_k
        return loss, ops.mean(nll, axis=0), ops.mean(kl, axis=0)

    def get_config(self):
        config = super().get_config()
        for key in ("num_mc_samples", "kl", "kl_weight"):
            del config[key]
        return {
            **config,
            "num_samples": self.num_samples,
            "estimator": self.estimator,
            "flow_steps": self.flow_steps,
            "flow_hidden_units": self.flow_hidden_units,
        }


def build_iwae(
    num_samples,
    latent_dim=50,
    likelihood="bernoulli",
    image_shape=(28, 28),
    hidden_units=(200, 200),
    activation="tanh",
    estimator="iwae",
    flow_steps=0,
    flow_hidden_units=100,
    encoder_hidden_units=None,
):
    """An :class:`IWAE` with ``build_vae``'s networks; the defaults are Burda et al.'s 200-200
    tanh networks with 50 latents and a Bernoulli likelihood. ``estimator``: ``"iwae"`` or
    ``"dreg"`` (the encoder's gradient; the initial weights do not depend on it). ``flow_steps``
    > 0 adds an amortized IAF; the encoder and decoder start from the same weights as without.
    ``encoder_hidden_units``: the encoder's hidden layers, if not ``hidden_units`` (the decoder
    then still starts from the same weights as without; the encoder, a new one, does not)."""
    encoder, decoder = build_networks(latent_dim, likelihood, image_shape, hidden_units, activation)
    if encoder_hidden_units is not None:
        encoder = build_encoder(
            latent_dim, image_shape, encoder_hidden_units, activation=activation
        )
    model = IWAE(
        encoder,
        decoder,
        num_samples=num_samples,
        estimator=estimator,
        flow_steps=flow_steps,
        flow_hidden_units=flow_hidden_units,
        likelihood=likelihood,
        name="iwae",
    )
    model.build((None, *image_shape))
    return model


__all__ = ["IWAE", "build_iwae"]
