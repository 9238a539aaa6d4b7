"""The encoder, the decoder and the VAE of the course (Keras 3, torch backend).

The defaults reproduce the source tutorial's MNIST model exactly:

* encoder 784-512-512-(2 x latent_dim), 666,628 parameters for latent_dim = 2,
  returning ``(z_mean, z_log_var)``, each (batch, latent_dim);
* decoder latent_dim-512-512-784 with a sigmoid output, 666,384 parameters;
* likelihood p(x | z) = N(x; decoder(z), 0.5^2), i.e. sigma = 0.5.

Importing this module registers the classes below with Keras, so that
``keras.saving.load_model("model.keras")`` finds them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
from keras import layers, ops

from .data import check_images
from .defaults import DEFAULTS
from .errors import CourseError, check_positive_int
from .gradients import check_estimator, transform
from .losses import get_likelihood, vae_kl_term


# ------------------------------------------------------------------ encoder
@keras.saving.register_keras_serializable(package="vae_course")
class SplitGaussianParams(layers.Layer):
    """Split a (batch, 2d) tensor into ``(z_mean, z_log_var)``, each (batch, d)."""

    def call(self, h):
        z_mean, z_log_var = ops.split(h, 2, axis=-1)
        return z_mean, z_log_var

    def compute_output_shape(self, input_shape):
        shape = (*input_shape[:-1], input_shape[-1] // 2)
        return shape, shape


def build_encoder(
    latent_dim: int = DEFAULTS.latent_dim,
    image_shape: Sequence[int] = (28, 28),
    hidden_units: Sequence[int] = (512, 512),
    name: str = "encoder",
    activation: str = "relu",
) -> keras.Model:
    """q_phi(z | x): images (batch, *image_shape) -> (z_mean, z_log_var), each (batch, latent_dim).

    ``hidden_units`` and ``activation`` set the hidden layers: the source's
    (512, 512) ReLU by default; Burda et al. (2015)'s one-stochastic-layer VAE
    uses ``hidden_units=(200, 200), activation="tanh"`` with latent_dim=50.
    """
    latent_dim = _check_latent_dim(latent_dim)
    image = keras.Input(shape=tuple(image_shape), name="image")
    h = layers.Flatten(name="flatten")(image)
    for i, units in enumerate(hidden_units):
        h = layers.Dense(units, activation=activation, name=f"enc_dense_{i}")(h)
    h = layers.Dense(2 * latent_dim, name="z_params")(h)
    z_mean, z_log_var = SplitGaussianParams(name="split")(h)
    return keras.Model(image, [z_mean, z_log_var], name=name)


# ------------------------------------------------------------------ decoder
def build_decoder(
    latent_dim: int = DEFAULTS.latent_dim,
    image_shape: Sequence[int] = (28, 28),
    hidden_units: Sequence[int] = (512, 512),
    output_activation: str | None = "sigmoid",
    name: str = "decoder",
    activation: str = "relu",
) -> keras.Model:
    """p_theta(x | z): z (batch, latent_dim) -> images (batch, *image_shape).

    ``hidden_units`` and ``activation`` set the hidden layers, as in :func:`build_encoder`.

    ``output_activation="sigmoid"`` gives pixel means in (0, 1), as the
    source's model; ``None`` gives logits, which the Bernoulli likelihood wants.
    """
    latent_dim = _check_latent_dim(latent_dim)
    z = keras.Input(shape=(latent_dim,), name="z")
    h = z
    for i, units in enumerate(hidden_units):
        h = layers.Dense(units, activation=activation, name=f"dec_dense_{i}")(h)
    h = layers.Dense(int(np.prod(image_shape)), name="pixels")(h)
    h = layers.Reshape(tuple(image_shape), name="reshape")(h)
    if output_activation is not None:
        h = layers.Activation(output_activation, name=output_activation)(h)
    return keras.Model(z, h, name=name)


# ---------------------------------------------------------------------- VAE
@keras.saving.register_keras_serializable(package="vae_course")
class ELBOMetrics(keras.metrics.Metric):
    """Running means of the loss, the NLL and the KL over one epoch.

    One state vector [sum loss, sum nll, sum kl, count] is updated once per
    step (one small op instead of three Mean metrics); ``result()`` returns a
    dict, which Keras spreads into the logs as ``loss``, ``nll`` and ``kl``.
    """

    def __init__(self, name="elbo_metrics", **kwargs):
        super().__init__(name=name, **kwargs)
        self.sums = self.add_variable(shape=(4,), initializer="zeros", name="sums")

    def update_state(self, loss, nll, kl):
        n = ops.cast(ops.shape(loss)[0], loss.dtype)
        stats = ops.stack([ops.sum(loss), ops.sum(nll), ops.sum(kl), n])
        self.sums.assign_add(ops.cast(stats, self.sums.dtype))

    def result(self):
        mean = self.sums[:3] / ops.maximum(self.sums[3], 1.0)
        return {"loss": mean[0], "nll": mean[1], "kl": mean[2]}

    def reset_state(self):
        self.sums.assign(ops.zeros((4,), dtype=self.sums.dtype))


@keras.saving.register_keras_serializable(package="vae_course")
class LinearWarmup:
    r"""The KL weight of warm-up: beta_t = min(1, t / steps) at optimizer step t (counted from 0).

    A schedule for ``VAE(kl_weight=...)``, like Keras's learning-rate
    schedules: called with the optimizer's step, saved with the model.
    """

    def __init__(self, steps):
        self.steps = check_positive_int(steps, "steps", 938)

    def __call__(self, step):
        return ops.minimum(1.0, ops.cast(step, "float32") / self.steps)

    def get_config(self):
        return {"steps": self.steps}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def linear_warmup(steps):
    """KL warm-up over ``steps`` optimizer steps: ``VAE(..., kl_weight=linear_warmup(938))``."""
    return LinearWarmup(steps)


@keras.saving.register_keras_serializable(package="vae_course")
class VAE(keras.Model):
    """A variational auto-encoder trained on the negative ELBO.

    loss(x) = nll(x) + kl(x), per example, where

    * nll(x) = -(1/N) sum_n log p(x | z_n), z_n = mu + sigma * eps_n,
      eps_n ~ N(0, I) of shape (batch, latent_dim), N = ``num_mc_samples``;
    * kl(x) = KL(q(z|x) || N(0, I)): ``kl="analytic"`` (the default) in closed
      form (``losses.kl_std_normal``); ``"mc"`` estimated as log q(z_n) - log p(z_n)
      at the same draws; ``"stl"`` the same value with the encoder's outputs
      inside log q held constant ("sticking the landing"), see
      ``losses.vae_kl_term``.

    ``likelihood="gaussian"``: p(x|z) = N(x; decoder(z), x_std^2) with the
    decoder giving means. ``likelihood="bernoulli"``: p(x|z) =
    Bernoulli(sigmoid(decoder(z))) with the decoder giving logits (build it
    with ``output_activation=None``; a decoder ending in a sigmoid is refused).
    ``losses.LIKELIHOOD_TABLE`` holds both.

    ``kl_weight`` (beta): training minimises nll + beta * kl; a number, or a
    schedule called with ``optimizer.iterations`` (e.g. :func:`linear_warmup`),
    so that warm-up resumes where a saved model stopped. The logged ``loss``
    is always nll + kl, the negative ELBO.

    The draws of eps come from the model's own ``keras.random.SeedGenerator``
    (``seed``; by default drawn from Keras's global seed when the model is
    built, so ``keras.utils.set_random_seed`` before building makes runs
    reproducible).

    Metrics ``loss``, ``nll``, ``kl`` are means over the examples of an epoch.
    """

    def __init__(
        self,
        encoder: keras.Model,
        decoder: keras.Model,
        likelihood: str = DEFAULTS.likelihood,
        x_std: float = DEFAULTS.x_std,
        num_mc_samples: int = 1,
        kl: str = "analytic",
        kl_weight=1.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = get_likelihood(likelihood).name
        _check_decoder_output(decoder, self.likelihood)
        self.x_std = _check_x_std(x_std)
        self.num_mc_samples = check_positive_int(num_mc_samples, "num_mc_samples", 1)
        self.kl = check_estimator(kl, "kl")
        self.kl_weight = _check_kl_weight(kl_weight)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="z_seed")
        self.elbo_metrics = ELBOMetrics()

    @property
    def latent_dim(self) -> int:
        """The size of z: the last axis of the encoder's z_mean."""
        return int(self.encoder.outputs[0].shape[-1])

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of one image, as the encoder takes it, e.g. (28, 28)."""
        return tuple(self.encoder.inputs[0].shape[1:])

    # ----------------------------------------------------------- the maths
    def reparameterize(self, z_mean, z_log_var, num_samples: int | None = None, seed=None):
        """z = mu + sigma * eps, eps ~ N(0, I) (``gradients.transform``).

        Shapes: (batch, d) in; (batch, d) out, or (N, batch, d) when
        ``num_samples`` = N is given. eps comes from ``seed`` (a
        ``keras.random.SeedGenerator``) if given, else from the model's own.
        """
        shape = ops.shape(z_mean) if num_samples is None else (num_samples, *ops.shape(z_mean))
        eps = keras.random.normal(shape, dtype=z_mean.dtype, seed=seed or self.seed_generator)
        return transform(eps, z_mean, ops.exp(0.5 * z_log_var))

    def log_likelihood(self, x, decoder_out):
        """log p(x | z) per example, given the decoder's output for z: (batch,)."""
        return get_likelihood(self.likelihood).log_prob(x, decoder_out, self.x_std)

    def beta(self, step=None):
        """The KL weight at optimizer step ``step`` (default: the optimizer's next step; 0 before compiling)."""
        if step is None:
            optimizer = getattr(self, "optimizer", None)
            step = optimizer.iterations if optimizer is not None else 0
        weight = self.kl_weight(step) if callable(self.kl_weight) else self.kl_weight
        return float(ops.convert_to_numpy(weight))

    def compute_losses(self, x, training=False, seed=None):
        """Per-example (loss, nll, kl), each (batch,); loss = nll + kl = -ELBO estimate."""
        z_mean, z_log_var = self.encoder(x, training=training)
        if self.num_mc_samples == 1:
            z = self.reparameterize(z_mean, z_log_var, seed=seed)
            nll = -self.log_likelihood(x, self.decoder(z, training=training))
        else:
            N = self.num_mc_samples
            z = self.reparameterize(z_mean, z_log_var, N, seed=seed)  # (N, batch, d)
            out = self.decoder(ops.reshape(z, (-1, self.latent_dim)), training=training)
            x_rep = ops.tile(x, (N,) + (1,) * (len(ops.shape(x)) - 1))
            nll = -ops.mean(ops.reshape(self.log_likelihood(x_rep, out), (N, -1)), axis=0)
        kl = vae_kl_term(z_mean, z_log_var, z, kl=self.kl)
        return nll + kl, nll, kl

    # ------------------------------------------------------------ training
    def train_step(self, data):
        """One SGD step on nll + beta * kl, the Keras 3 torch-backend way."""
        import torch

        x = _images(data)
        self.zero_grad()
        loss, nll, kl = self.compute_losses(x, training=True)
        if callable(
            self.kl_weight
        ):  # a schedule of the step, e.g. linear_warmup: resumes with the optimizer
            objective = nll + self.kl_weight(self.optimizer.iterations) * kl
        else:
            objective = loss if self.kl_weight == 1.0 else nll + self.kl_weight * kl
        ops.mean(objective).backward()
        weights = self.trainable_weights
        gradients = [v.value.grad for v in weights]
        with torch.no_grad():
            self.optimizer.apply(gradients, weights)
            self.elbo_metrics.update_state(loss, nll, kl)
        return self.elbo_metrics.result()

    def test_step(self, data):
        loss, nll, kl = self.compute_losses(_images(data), training=False)
        self.elbo_metrics.update_state(loss, nll, kl)
        return self.elbo_metrics.result()

    @property
    def metrics(self):
        return [self.elbo_metrics]

    def fit(self, x=None, y=None, *args, validation_data=None, **kwargs):
        """``keras.Model.fit``, with array images checked first (float, in [0, 1], the model's shape)."""
        if isinstance(x, np.ndarray):
            x = check_images(x, "x", self.image_shape)
        if isinstance(validation_data, np.ndarray):
            validation_data = (validation_data,)
        if (
            isinstance(validation_data, tuple)
            and validation_data
            and isinstance(validation_data[0], np.ndarray)
        ):
            x_val = check_images(validation_data[0], "validation_data", self.image_shape)
            validation_data = (x_val, *validation_data[1:])
        return super().fit(x, y, *args, validation_data=validation_data, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.evaluate``, with array images checked first."""
        if isinstance(x, np.ndarray):
            x = check_images(x, "x", self.image_shape)
        return super().evaluate(x, y, *args, **kwargs)

    # ---------------------------------------------------- using the model
    def encode(self, x):
        """(z_mean, z_log_var) = encoder(x) in inference mode, each (batch, latent_dim)."""
        return self.encoder(ops.convert_to_tensor(x, dtype="float32"), training=False)

    def decode(self, z):
        """Pixel means for latent codes z (batch, d): probabilities for Bernoulli."""
        out = self.decoder(ops.convert_to_tensor(z, dtype="float32"), training=False)
        return get_likelihood(self.likelihood).mean(out)

    def call(self, x, training=False):
        """A reconstruction of x through one sample z ~ q(z|x)."""
        z_mean, z_log_var = self.encoder(x, training=training)
        out = self.decoder(self.reparameterize(z_mean, z_log_var), training=training)
        return get_likelihood(self.likelihood).mean(out)

    # ------------------------------------------------------- serialization
    def get_config(self):
        return {
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "likelihood": self.likelihood,
            "x_std": self.x_std,
            "num_mc_samples": self.num_mc_samples,
            "kl": self.kl,
            "kl_weight": _serialize_kl_weight(self.kl_weight),
            "seed": self.seed,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        if isinstance(config.get("kl_weight"), dict):
            config["kl_weight"] = keras.saving.deserialize_keras_object(config["kl_weight"])
        return cls(**config)


def build_networks(
    latent_dim: int = DEFAULTS.latent_dim,
    likelihood: str = DEFAULTS.likelihood,
    image_shape: Sequence[int] = (28, 28),
    hidden_units: Sequence[int] = (512, 512),
    activation: str = "relu",
) -> tuple[keras.Model, keras.Model]:
    """``(encoder, decoder)`` for ``likelihood``: the decoder's output activation is the one it wants."""
    output_activation = get_likelihood(likelihood).output_activation
    encoder = build_encoder(latent_dim, image_shape, hidden_units, activation=activation)
    decoder = build_decoder(
        latent_dim,
        image_shape,
        hidden_units,
        output_activation=output_activation,
        activation=activation,
    )
    return encoder, decoder


def build_vae(
    latent_dim: int = DEFAULTS.latent_dim,
    likelihood: str = DEFAULTS.likelihood,
    image_shape: Sequence[int] = (28, 28),
    hidden_units: Sequence[int] = (512, 512),
    x_std: float = DEFAULTS.x_std,
    num_mc_samples: int = 1,
    kl: str = "analytic",
    activation: str = "relu",
    kl_weight=1.0,
) -> VAE:
    """Encoder, decoder and VAE wired together, the decoder's output matching the likelihood.

    Burda et al. (2015)'s architecture: ``build_vae(50, "bernoulli", hidden_units=(200, 200), activation="tanh")``.
    """
    encoder, decoder = build_networks(latent_dim, likelihood, image_shape, hidden_units, activation)
    vae = VAE(
        encoder, decoder, likelihood, x_std, num_mc_samples, kl=kl, kl_weight=kl_weight, name="vae"
    )
    vae.build((None, *image_shape))
    return vae


# ------------------------------------------------------------ input checks
def _images(data):
    """The images of a batch as ``fit`` hands it over: x, (x,), (x, y) or (x, y, w)."""
    x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return x[0] if isinstance(x, (list, tuple)) else x


def _check_latent_dim(latent_dim):
    return check_positive_int(latent_dim, "latent_dim", 2)


def _check_decoder_output(decoder, likelihood):
    """Refuse a decoder whose last activation the likelihood applies itself (a sigmoid before logits)."""
    refused = get_likelihood(likelihood).refused_activation
    activation = (
        getattr(decoder.layers[-1], "activation", None)
        if getattr(decoder, "layers", None)
        else None
    )
    if refused is not None and getattr(activation, "__name__", None) == refused:
        raise CourseError(
            f"likelihood={likelihood!r} expects the decoder to output "
            f"{get_likelihood(likelihood).decoder_output}, but the decoder {decoder.name!r} ends with a "
            f"{refused}, so the likelihood would apply it twice. Fix: build the decoder with "
            "output_activation=None (build_vae does it for you)."
        )


def _check_x_std(x_std):
    if (
        isinstance(x_std, bool)
        or not isinstance(x_std, (int, float))
        or not (x_std > 0 and math.isfinite(x_std))
    ):
        raise ValueError(
            f"x_std must be a positive number (the likelihood's sigma), got {x_std!r}. Fix: e.g. x_std=0.5."
        )
    return float(x_std)


def _check_kl_weight(kl_weight):
    if callable(kl_weight):
        return kl_weight
    if (
        isinstance(kl_weight, bool)
        or not isinstance(kl_weight, (int, float))
        or not (kl_weight >= 0 and math.isfinite(kl_weight))
    ):
        raise CourseError(
            f"kl_weight must be a number >= 0 or a schedule of the optimizer step, got {kl_weight!r}. "
            "Fix: kl_weight=1.0 (the ELBO) or kl_weight=linear_warmup(938) (KL warm-up over 938 steps)."
        )
    return float(kl_weight)


def _serialize_kl_weight(kl_weight):
    if not callable(kl_weight):
        return kl_weight
    if not hasattr(kl_weight, "get_config"):
        raise CourseError(
            f"kl_weight {kl_weight!r} is a plain function, which a saved model cannot hold. Fix: use "
            "linear_warmup(steps), or a class with get_config registered with "
            "keras.saving.register_keras_serializable."
        )
    return keras.saving.serialize_keras_object(kl_weight)


__all__ = [
    "build_encoder",
    "build_decoder",
    "build_vae",
    "VAE",
    "LinearWarmup",
    "linear_warmup",
    "ELBOMetrics",
    "SplitGaussianParams",
]
