"""The encoder, the decoder and the VAE of the course (Keras 3, torch backend).

The defaults reproduce the source tutorial's MNIST model exactly:

* encoder 784-512-512-(2 x latent_dim), 666,628 parameters for latent_dim = 2,
  returning ``(z_mean, z_log_var)``, each (batch, latent_dim);
* decoder latent_dim-512-512-784 with a sigmoid output, 666,384 parameters;
* likelihood p(x | z) = N(x; decoder(z), 0.5^2), i.e. sigma = 0.5.
"""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from . import losses
from .data import DataError, check_images

LIKELIHOODS = ("gaussian", "bernoulli")


def chain_layers(model):
    """The layers of ``model`` in order if it is a plain chain, else ``None``.

    A plain chain: one input, every layer fed by the previous layer's output
    alone, the last layer's outputs being the model's, and no layer whose
    result depends on a ``training`` or ``mask`` argument (Dense takes
    ``training`` but ignores it). The encoder and decoder built here are such
    chains.
    """
    try:
        if len(model.inputs) != 1:
            return None
        chain, prev = [], [id(t) for t in model.inputs]
        for layer in model.layers:
            if isinstance(layer, layers.InputLayer):
                continue
            uses_training = layer._call_has_training_arg and type(layer) is not layers.Dense
            if len(layer._inbound_nodes) != 1 or uses_training or layer._call_has_mask_arg:
                return None
            node = layer._inbound_nodes[0]
            if [id(t) for t in node.input_tensors] != prev:
                return None
            prev = [id(t) for t in node.output_tensors]
            chain.append(layer)
        return chain if prev == [id(t) for t in model.outputs] else None
    except (AttributeError, TypeError, ValueError):
        return None


def run_chain(model, chain, x):
    """model(x), computed by calling each chain layer's ``call`` in turn.

    ``Layer.__call__`` does bookkeeping (input conversion and checks, autocast
    and name scopes, masks) that costs a few hundred microseconds per layer;
    on the training hot path of a small MLP that is a fifth of the step. Dense
    layers run as one ``torch.addmm`` (see ``_dense_addmm``). The function
    computed is the same up to floating-point rounding: tests compare it with
    ``model(x)``.
    """
    if chain is None:
        return model(x)
    for layer in chain:
        x = _dense_addmm(layer, x) if type(layer) is layers.Dense else layer.call(x)
    return x


def _dense_addmm(layer, x):
    """``Dense.call`` (x @ kernel + bias, then the activation) with one fused ``torch.addmm``.

    Keras's Dense makes the product and the sum as two ops (and two nodes in the
    backward graph); PyTorch's own Linear layer fuses them. Falls back to
    ``layer.call`` for anything but a plain float Dense on 2-D torch input.
    """
    import torch

    if (
        not isinstance(x, torch.Tensor)
        or x.ndim != 2
        or layer.bias is None
        or getattr(layer, "lora_enabled", False)
        or getattr(layer, "quantization_mode", None) is not None
    ):
        return layer.call(x)
    y = torch.addmm(layer.bias.value, x, layer.kernel.value)
    return layer.activation(y) if layer.activation is not None else y


def _check_latent_dim(latent_dim):
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, (int, np.integer)) or latent_dim <= 0:
        raise ValueError(
            f"latent_dim must be a positive integer, got {latent_dim!r}. "
            "Fix: pass the size of the code z, e.g. latent_dim=2 (the source's) or 50."
        )
    return int(latent_dim)


def _check_likelihood(likelihood):
    if likelihood not in LIKELIHOODS:
        raise ValueError(
            f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}. Use "
            "'gaussian' for grey-level pixels in [0, 1] and 'bernoulli' for binarized images."
        )
    return likelihood


@keras.saving.register_keras_serializable(package="vae_course")
class SplitGaussianParams(layers.Layer):
    """Split a (batch, 2d) tensor into ``(z_mean, z_log_var)``, each (batch, d)."""

    def call(self, h):
        z_mean, z_log_var = ops.split(h, 2, axis=-1)
        return z_mean, z_log_var

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape[:-1]) + (input_shape[-1] // 2,)
        return shape, shape


def build_encoder(latent_dim=2, image_shape=(28, 28), hidden_units=(512, 512), name="encoder", activation="relu"):
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


def build_decoder(
    latent_dim=2,
    image_shape=(28, 28),
    hidden_units=(512, 512),
    output_activation="sigmoid",
    name="decoder",
    activation="relu",
):
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
class VAE(keras.Model):
    """A variational auto-encoder trained on the negative ELBO.

    loss(x) = nll(x) + kl(x), per example, where

    * kl(x) = KL(q(z|x) || N(0, I)), analytic (``losses.kl_std_normal``);
    * nll(x) = -(1/L) sum_l log p(x | z_l), z_l = mu + sigma * eps_l,
      eps_l ~ N(0, I) of shape (batch, latent_dim), L = ``num_mc_samples``.

    ``likelihood="gaussian"``: p(x|z) = N(x; decoder(z), x_std^2) with the
    decoder giving means. ``likelihood="bernoulli"``: p(x|z) =
    Bernoulli(sigmoid(decoder(z))) with the decoder giving logits (build it
    with ``output_activation=None``).

    Metrics ``loss``, ``nll``, ``kl`` are means over the examples of an epoch.
    """

    def __init__(self, encoder, decoder, likelihood="gaussian", x_std=0.5, num_mc_samples=1, **kwargs):
        super().__init__(**kwargs)
        self.likelihood = _check_likelihood(likelihood)
        if not (isinstance(x_std, (int, float)) and x_std > 0 and math.isfinite(x_std)):
            raise ValueError(f"x_std must be a positive number (the likelihood's sigma), got {x_std!r}. Fix: e.g. x_std=0.5.")
        if isinstance(num_mc_samples, bool) or not isinstance(num_mc_samples, int) or num_mc_samples < 1:
            raise ValueError(f"num_mc_samples must be an integer >= 1, got {num_mc_samples!r}. Fix: e.g. num_mc_samples=1.")
        self.encoder = encoder
        self.decoder = decoder
        self.x_std = float(x_std)
        self.log_x_std = math.log(self.x_std)
        self.num_mc_samples = num_mc_samples
        self.latent_dim = int(encoder.outputs[0].shape[-1])
        self.image_shape = tuple(encoder.inputs[0].shape[1:])
        self.elbo_metrics = ELBOMetrics()
        # Fast path (see run_chain): the layer lists of the two networks.
        self._encoder_chain = chain_layers(encoder)
        self._decoder_chain = chain_layers(decoder)

    def encode(self, x):
        """(z_mean, z_log_var) = encoder(x), each (batch, latent_dim)."""
        return run_chain(self.encoder, self._encoder_chain, ops.convert_to_tensor(x, dtype="float32"))

    def decoder_output(self, z):
        """decoder(z): pixel means (Gaussian) or logits (Bernoulli), (batch, *image_shape)."""
        return run_chain(self.decoder, self._decoder_chain, z)

    # ----------------------------------------------------------- the maths
    def reparameterize(self, z_mean, z_log_var, num_samples=None):
        """z = mu + sigma * eps, eps ~ N(0, I).

        Shapes: (batch, d) in; (batch, d) out, or (L, batch, d) when
        ``num_samples`` = L is given.
        """
        shape = ops.shape(z_mean) if num_samples is None else (num_samples,) + tuple(ops.shape(z_mean))
        eps = keras.random.normal(shape, dtype=z_mean.dtype)
        return z_mean + ops.exp(0.5 * z_log_var) * eps

    def log_likelihood(self, x, decoder_out):
        """log p(x | z) per example, given the decoder's output for z: (batch,)."""
        if self.likelihood == "gaussian":
            return -losses.gaussian_nll(x, decoder_out, self.log_x_std)
        return -losses.bernoulli_nll(x, decoder_out)

    def compute_losses(self, x):
        """Per-example (loss, nll, kl), each (batch,); loss = nll + kl = -ELBO estimate."""
        z_mean, z_log_var = self.encode(x)
        kl = losses.kl_std_normal(z_mean, z_log_var)
        if self.num_mc_samples == 1:
            z = self.reparameterize(z_mean, z_log_var)
            nll = -self.log_likelihood(x, self.decoder_output(z))
        else:
            L = self.num_mc_samples
            z = self.reparameterize(z_mean, z_log_var, L)  # (L, batch, d)
            out = self.decoder_output(ops.reshape(z, (-1, self.latent_dim)))
            x_rep = ops.tile(x, (L,) + (1,) * (len(ops.shape(x)) - 1))
            nll = -ops.mean(ops.reshape(self.log_likelihood(x_rep, out), (L, -1)), axis=0)
        return nll + kl, nll, kl

    def decode(self, z):
        """Pixel means for latent codes z (batch, d): probabilities for Bernoulli."""
        out = self.decoder_output(ops.convert_to_tensor(z, dtype="float32"))
        return ops.sigmoid(out) if self.likelihood == "bernoulli" else out

    def call(self, x):
        """A reconstruction of x through one sample z ~ q(z|x)."""
        z_mean, z_log_var = self.encode(x)
        return self.decode(self.reparameterize(z_mean, z_log_var))

    # ------------------------------------------------------------ training
    @staticmethod
    def _images(data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, (list, tuple)):
            x = x[0]
        return x

    def train_step(self, data):
        """One SGD step, the Keras 3 torch-backend way."""
        import torch

        x = self._images(data)
        self.zero_grad()
        loss, nll, kl = self.compute_losses(x)
        ops.mean(loss).backward()
        gradients = [v.value.grad for v in self.trainable_weights]
        with torch.no_grad():
            self.optimizer.apply(gradients, self.trainable_weights)
            self.elbo_metrics.update_state(loss, nll, kl)
        return self.elbo_metrics.result()

    def test_step(self, data):
        loss, nll, kl = self.compute_losses(self._images(data))
        self.elbo_metrics.update_state(loss, nll, kl)
        return self.elbo_metrics.result()

    @property
    def metrics(self):
        return [self.elbo_metrics]

    def fit(self, x=None, y=None, *args, validation_data=None, **kwargs):
        """``keras.Model.fit``, with the images checked first when they are arrays."""
        if isinstance(x, np.ndarray):
            x = check_images(x, "x", self.image_shape)
        if isinstance(validation_data, np.ndarray):
            validation_data = (check_images(validation_data, "validation_data", self.image_shape),)
        elif isinstance(validation_data, tuple) and validation_data and isinstance(validation_data[0], np.ndarray):
            validation_data = (check_images(validation_data[0], "validation_data", self.image_shape),) + tuple(
                validation_data[1:]
            )
        return super().fit(x, y, *args, validation_data=validation_data, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        if isinstance(x, np.ndarray):
            x = check_images(x, "x", self.image_shape)
        return super().evaluate(x, y, *args, **kwargs)

    # ------------------------------------------------------- serialization
    def get_config(self):
        return {
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "likelihood": self.likelihood,
            "x_std": self.x_std,
            "num_mc_samples": self.num_mc_samples,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return cls(**config)


def build_vae(
    latent_dim=2, likelihood="gaussian", image_shape=(28, 28), hidden_units=(512, 512), x_std=0.5, num_mc_samples=1,
    activation="relu",
):
    """Encoder, decoder and VAE wired together, the decoder's output matching the likelihood.

    Burda et al. (2015)'s architecture: ``build_vae(50, "bernoulli", hidden_units=(200, 200), activation="tanh")``.
    """
    likelihood = _check_likelihood(likelihood)
    encoder = build_encoder(latent_dim, image_shape, hidden_units, activation=activation)
    decoder = build_decoder(
        latent_dim, image_shape, hidden_units, output_activation="sigmoid" if likelihood == "gaussian" else None,
        activation=activation,
    )
    vae = VAE(encoder, decoder, likelihood=likelihood, x_std=x_std, num_mc_samples=num_mc_samples, name="vae")
    vae.build((None,) + tuple(image_shape))
    return vae


__all__ = ["chain_layers", "run_chain", "build_encoder", "build_decoder", "build_vae", "VAE", "ELBOMetrics", "SplitGaussianParams", "DataError"]
