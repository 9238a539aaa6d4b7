r"""A decoder with a learned scale: one sigma for all pixels, or one per pixel.

Chapter 8 fixed the Gaussian decoder's sigma (0.5 in the source). Here sigma is a
weight of the model, learned with the networks by the same loss ("calibrated
decoder", Rybkin, Daniilidis & Levine 2021). For a given decoder mean the best
shared sigma has a closed form (:func:`optimal_shared_sigma`):

.. math:: \hat\sigma^2 = \frac{1}{N D}\sum_{n,i} (x_{n,i} - \mu_{n,i})^2 ,

the mean squared residual. A sigma per pixel has the same optimum pixel by pixel,
and on a pixel that is 0 in every image a decoder mean that reaches 0 drives it,
and the Gaussian density there, without limit (Mattei & Frellsen 2018). A
likelihood on the 256 discrete levels (:func:`vae_course.bits.discretized_logistic_log_prob`)
cannot run off: each pixel's log-probability is at most 0.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from .bits import discretized_logistic_log_prob
from .errors import CourseError
from .losses import gaussian_nll
from .models import VAE

SCALED_LIKELIHOODS = ("gaussian", "discretized_logistic")
LOG_HALF = math.log(0.5)  # the source's sigma = 0.5, where a learned scale starts


@keras.saving.register_keras_serializable(package="vae_course")
class LearnedScaleVAE(VAE):
    """A :class:`~vae_course.models.VAE` whose decoder scale is a trainable weight ``log_scale``.

    ``likelihood="gaussian"``: p(x|z) = N(x; decoder(z), sigma^2), sigma = exp(log_scale);
    ``likelihood="discretized_logistic"``: the 256-level logistic of
    :func:`~vae_course.bits.discretized_logistic_log_prob` with scale exp(log_scale).
    The decoder outputs means in [0, 1] (a sigmoid). ``per_pixel=False`` learns one
    scale for all pixels, ``True`` one per pixel. ``min_log_scale`` (optional) is a
    floor: the scale used is max(log_scale, min_log_scale). ``init_log_scale`` is
    the starting value (log 0.5 by default, the source's sigma).

    ``scale_rate`` c sets how fast the scale learns: the weight is w with
    log_scale = c * w. Adam moves each weight by about its learning rate per step
    whatever the gradient's size, so log_scale moves by about c times the learning
    rate: c = 30 lets a 158-step run move sigma by a factor e^4.7, where c = 1 allows
    only e^0.16.
    """

    def __init__(
        self,
        encoder,
        decoder,
        likelihood="gaussian",
        per_pixel=False,
        min_log_scale=None,
        init_log_scale=LOG_HALF,
        scale_rate=1.0,
        **kwargs,
    ):
        if likelihood not in SCALED_LIKELIHOODS:
            raise CourseError(
                f"likelihood must be one of {SCALED_LIKELIHOODS}, got {likelihood!r}. Fix: "
                "likelihood='gaussian' or likelihood='discretized_logistic'."
            )
        super().__init__(encoder, decoder, likelihood="gaussian", **kwargs)
        self.scaled_likelihood = likelihood
        self.per_pixel = bool(per_pixel)
        self.min_log_scale = None if min_log_scale is None else float(min_log_scale)
        self.init_log_scale = float(init_log_scale)
        if not (isinstance(scale_rate, (int, float)) and scale_rate > 0):
            raise CourseError(f"scale_rate must be a number > 0, got {scale_rate!r}. Fix: e.g. 30.")
        self.scale_rate = float(scale_rate)
        shape = self.image_shape if self.per_pixel else ()
        self.scale_weight = self.add_weight(
            shape=shape,
            initializer=keras.initializers.Constant(self.init_log_scale / self.scale_rate),
            name="log_scale",
        )

    @property
    def log_scale(self):
        """log sigma (the scale before any floor): scale_rate * the weight."""
        return self.scale_rate * self.scale_weight

    def effective_log_scale(self):
        """log_scale with the floor applied: the value the likelihood uses."""
        s = self.log_scale
        if self.min_log_scale is not None:
            s = ops.maximum(s, self.min_log_scale)
        return s

    def log_likelihood(self, x, decoder_out):
        """log p(x | z) per example with the learned scale: (batch,)."""
        s = self.effective_log_scale()
        if self.scaled_likelihood == "gaussian":
            return -gaussian_nll(x, decoder_out, s)
        return discretized_logistic_log_prob(x, decoder_out, s)

    def get_config(self):
        config = super().get_config()
        for key in ("likelihood", "x_std"):
            config.pop(key)
        config.update(
            likelihood=self.scaled_likelihood,
            per_pixel=self.per_pixel,
            min_log_scale=self.min_log_scale,
            init_log_scale=self.init_log_scale,
            scale_rate=self.scale_rate,
        )
        return config


def build_learned_scale_vae(
    latent_dim,
    likelihood="gaussian",
    per_pixel=False,
    min_log_scale=None,
    hidden_units=(200, 200),
    activation="tanh",
    image_shape=(28, 28),
    scale_rate=1.0,
):
    """Encoder, sigmoid decoder and :class:`LearnedScaleVAE`, Burda's 200-200 tanh networks by default."""
    from .models import build_decoder, build_encoder

    encoder = build_encoder(latent_dim, image_shape, hidden_units, activation=activation)
    decoder = build_decoder(
        latent_dim, image_shape, hidden_units, output_activation="sigmoid", activation=activation
    )
    vae = LearnedScaleVAE(
        encoder,
        decoder,
        likelihood,
        per_pixel,
        min_log_scale,
        scale_rate=scale_rate,
        name="learned_scale_vae",
    )
    vae.build((None, *image_shape))
    return vae


def optimal_shared_sigma(x, x_mean):
    r"""The shared sigma that maximises sum log N(x; x_mean, sigma^2): sqrt(mean squared residual).

    x, x_mean: arrays of the same shape (images and decoder means). Setting the
    derivative of -sum log N = SSE / (2 sigma^2) + N D log sigma + const to zero gives
    sigma^2 = SSE / (N D).
    """
    x = np.asarray(x, dtype=np.float64)
    x_mean = np.asarray(x_mean, dtype=np.float64)
    if x.shape != x_mean.shape:
        raise ValueError(
            f"x and x_mean must have the same shape, got {x.shape} and {x_mean.shape}."
        )
    return float(np.sqrt(np.mean((x - x_mean) ** 2)))


__all__ = [
    "SCALED_LIKELIHOODS",
    "LearnedScaleVAE",
    "build_learned_scale_vae",
    "optimal_shared_sigma",
]
