r"""KL warm-up: train on nll + beta * kl with beta rising from 0 to 1, then evaluate the plain ELBO.

Early in training the KL term pulls every q(z_u|x) onto the prior faster than
the decoder learns to use z_u; a unit that reaches the prior gets no gradient
from the likelihood to leave it, and stays *inactive* (posterior collapse).
Warm-up (Bowman et al. 2016; Sønderby et al. 2016) weights the KL by

.. math:: \beta_t = \min(1, t / T)

at optimizer step t, so the decoder first learns to read z. After T steps
the loss is the negative ELBO again, and the model is an ordinary VAE.
"""

from __future__ import annotations

from keras import ops

from .models import VAE, _images


class WarmupVAE(VAE):
    """A :class:`~vae_course.models.VAE` whose training step minimises nll + beta_t * kl, beta_t = min(1, t / warmup_steps).

    The logged ``loss`` stays nll + kl (the negative ELBO, beta = 1), so its
    numbers compare with an ordinary VAE's. Use :meth:`as_vae` to get the
    trained model as a plain VAE (to save it, or to evaluate it).
    """

    def __init__(self, encoder, decoder, warmup_steps=1000, **kwargs):
        super().__init__(encoder, decoder, **kwargs)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 1:
            raise ValueError(
                f"warmup_steps must be an integer >= 1, got {warmup_steps!r}. Fix: e.g. one epoch, 938 steps."
            )
        self.warmup_steps = warmup_steps
        self.steps_done = 0

    def kl_weight(self):
        """beta_t = min(1, t / warmup_steps) for the next step t (counted from 0)."""
        return min(1.0, self.steps_done / self.warmup_steps)

    def train_step(self, data):
        import torch

        x = _images(data)
        self.zero_grad()
        loss, nll, kl = self.compute_losses(x, training=True)
        ops.mean(nll + self.kl_weight() * kl).backward()
        self.steps_done += 1
        gradients = [v.value.grad for v in self.trainable_weights]
        with torch.no_grad():
            self.optimizer.apply(gradients, self.trainable_weights)
            self.elbo_metrics.update_state(loss, nll, kl)
        return self.elbo_metrics.result()

    def as_vae(self):
        """The same encoder and decoder as a plain VAE (shared weights), built."""
        vae = VAE(
            self.encoder,
            self.decoder,
            likelihood=self.likelihood,
            x_std=self.x_std,
            num_mc_samples=self.num_mc_samples,
            kl=self.kl,
            name="vae",
        )
        vae.build((None,) + tuple(self.image_shape))
        return vae


__all__ = ["WarmupVAE"]
