"""vae_course.fast: the training speed-ups take effect, compute Keras's result, and fall back loudly."""

import warnings

import keras
import numpy as np
import pytest
import torch

from vae_course import fast
from vae_course.models import VAE, build_decoder, build_encoder, build_vae
from vae_course.train import train_vae

SHAPE = (8, 8)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((96, *SHAPE), dtype=np.float32)


def tiny_vae(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return build_vae(latent_dim=2, image_shape=SHAPE, hidden_units=(16, 16), **kwargs)


class StepCounter(keras.callbacks.Callback):
    """Counts Layer.__call__ and torch._fused_adam_ calls inside each training step."""

    def __init__(self, monkeypatch):
        super().__init__()
        self.layer_calls, self.fused_calls, self.per_step = 0, 0, []
        layer_call, fused = keras.layers.Layer.__call__, torch._fused_adam_

        def counted_layer_call(layer, *args, **kwargs):
            self.layer_calls += 1
            return layer_call(layer, *args, **kwargs)

        def counted_fused(*args, **kwargs):
            self.fused_calls += 1
            return fused(*args, **kwargs)

        monkeypatch.setattr(keras.layers.Layer, "__call__", counted_layer_call)
        monkeypatch.setattr(torch, "_fused_adam_", counted_fused)

    def on_train_batch_begin(self, batch, logs=None):
        self.layer_calls, self.fused_calls = 0, 0

    def on_train_batch_end(self, batch, logs=None):
        self.per_step.append((self.layer_calls, self.fused_calls))


def test_train_vae_takes_the_fast_path(images, monkeypatch):
    """Each step calls no Layer.__call__ (the networks' chains are called directly) and the fused kernel once."""
    vae = tiny_vae()
    counter = StepCounter(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fast.FastPathWarning)
        train_vae(vae, images, epochs=1, batch_size=32, verbose=0, callbacks=[counter])
    assert counter.per_step == [(0, 1)] * 3
    # Keras's own path, for comparison: one Layer.__call__ per layer and no fused kernel.
    plain = tiny_vae()
    plain.compile(optimizer=keras.optimizers.Adam())
    counter = StepCounter(monkeypatch)
    plain.fit(images, epochs=1, batch_size=32, verbose=0, callbacks=[counter])
    assert counter.per_step == [(2 + 5 + 5, 0)] * 3  # 5 layers in each network
    # Everything is put back after fit.
    assert "call" not in vars(vae.encoder) and "call" not in vars(vae.decoder)
    assert "_parallel_update_step" not in vars(vae.optimizer)
    assert not {"encoder", "decoder", "train_step", "test_step"} & set(vars(vae))
    assert isinstance(vae.encoder, keras.Model) and isinstance(vae.decoder, keras.Model)


class Saver(keras.callbacks.Callback):
    """Saves the model after every epoch (as the command line does) and notes what it saw."""

    def __init__(self, path):
        super().__init__()
        self.path, self.seen = path, []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(self.model.encoder)
        self.model.save(self.path)


def test_the_networks_are_themselves_outside_the_steps(images, tmp_path):
    """Callbacks, saving and validation see the real networks; the stand-ins exist only inside a step."""
    vae = tiny_vae()
    saver = Saver(tmp_path / "m.keras")
    train_vae(vae, images, images[:32], epochs=2, batch_size=32, verbose=0, callbacks=[saver])
    assert saver.seen == [vae.encoder, vae.encoder]  # the network itself, not a stand-in
    back = keras.saving.load_model(tmp_path / "m.keras")
    x = images[:8]
    torch.testing.assert_close(back.encode(x)[0], vae.encode(x)[0])


class Recorder(VAE):
    """A VAE that notes what its ``encoder`` attribute is when a step computes the losses."""

    seen = []

    def compute_losses(self, x, training=False, seed=None):
        Recorder.seen.append((self.encoder, training))
        return super().compute_losses(x, training=training, seed=seed)


def test_inside_a_step_the_networks_are_stand_ins(images):
    keras.utils.set_random_seed(0)
    encoder = build_encoder(2, SHAPE, (16,))
    vae = Recorder(encoder, build_decoder(2, SHAPE, (16,)))
    Recorder.seen.clear()
    train_vae(vae, images[:64], images[:32], epochs=1, batch_size=32, verbose=0)
    (a, ta), (b, tb), (c, tc) = Recorder.seen  # two training steps, one validation batch
    assert (ta, tb, tc) == (True, True, False)
    assert all(isinstance(s, fast._StandIn) and s.network is encoder for s in (a, b, c))
    assert a.name == encoder.name and a.outputs is encoder.outputs  # the rest is the network's
    assert vae.encoder is encoder  # and after fit, the network itself again


def test_same_function_and_gradients_inside_and_outside(images):
    vae = tiny_vae()
    vae.compile(optimizer=keras.optimizers.Adam())
    x, z = torch.as_tensor(images[:16]), torch.randn(16, 2)
    w = vae.encoder.get_layer("enc_dense_0").kernel.value
    want = [*vae.encoder(x), vae.decoder(z)]
    g_want = torch.autograd.grad(vae.encoder(x)[0].sum(), w)[0]
    with fast.enabled(vae) as on:
        assert on == {
            "encoder": True,
            "decoder": True,
            "adam": True,
            "draws": True,
            "ops": True,
            "weights": True,
            "metrics": True,
        }
        got = [*vae.encoder(x), vae.decoder(z)]
        g_got = torch.autograd.grad(vae.encoder(x)[0].sum(), w)[0]
    for a, b in zip(got, want):
        torch.testing.assert_close(
            a, b, rtol=1e-6, atol=1e-6
        )  # addmm vs matmul + add: rounding only
    torch.testing.assert_close(g_got, g_want, rtol=1e-5, atol=1e-6)


@keras.saving.register_keras_serializable(package="vae_course_tests")
class TrainingSpy(keras.layers.Layer):
    """Identity that records the ``training`` flag of each call."""

    seen = []

    def call(self, x, training=None):
        TrainingSpy.seen.append(training)
        return x


def test_training_flag_reaches_every_layer(images):
    image = keras.Input(SHAPE)
    h = keras.layers.Flatten()(image)
    h = TrainingSpy()(keras.layers.Dense(16, activation="relu")(h))
    h = keras.layers.Dropout(0.5)(h)
    from vae_course.models import SplitGaussianParams

    encoder = keras.Model(image, list(SplitGaussianParams()(keras.layers.Dense(4)(h))))
    keras.utils.set_random_seed(0)
    vae = VAE(encoder, build_decoder(2, SHAPE, (16,)))
    assert (
        fast.chain_of(encoder)[0] is not None
    )  # Dropout and the spy take `training`: still a chain
    TrainingSpy.seen.clear()
    train_vae(vae, images[:64], images[:32], epochs=1, batch_size=32, verbose=0)
    assert TrainingSpy.seen[-3:] == [True, True, False]  # two training steps, one validation batch
    with fast.enabled(vae):  # Dropout is live in training mode, off in inference mode
        x = torch.as_tensor(images[:4])
        assert torch.equal(encoder(x, training=False)[0], encoder(x, training=False)[0])
        assert not torch.equal(encoder(x, training=True)[0], encoder(x, training=True)[0])


# Keras keeps tracking the replaced encoder's weights; they get no gradient, and Keras says so.
@pytest.mark.filterwarnings("ignore:Gradients do not exist")
def test_a_swapped_encoder_is_the_one_trained(images, monkeypatch):
    keras.utils.set_random_seed(0)
    first = build_encoder(2, SHAPE, (16, 16), name="first_encoder")
    vae = VAE(first, build_decoder(2, SHAPE, (16, 16)))
    old = [w.numpy().copy() for w in first.weights]
    new = build_encoder(2, SHAPE, (16, 16), name="new_encoder")
    before = [w.numpy().copy() for w in new.weights]
    vae.encoder = new  # allowed until the VAE is built
    counter = StepCounter(monkeypatch)
    train_vae(vae, images, epochs=1, batch_size=32, verbose=0, callbacks=[counter])
    assert counter.per_step == [(0, 1)] * 3  # the new encoder runs fast too
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(old, first.weights))
    assert not any(np.array_equal(a, w.numpy()) for a, w in zip(before, new.weights))


def test_a_network_that_is_not_a_chain_falls_back_with_a_warning(images):
    image = keras.Input(SHAPE)
    h = keras.layers.Flatten()(image)
    h = keras.layers.Add()([keras.layers.Dense(4)(h), keras.layers.Dense(4)(h)])
    from vae_course.models import SplitGaussianParams

    encoder = keras.Model(image, list(SplitGaussianParams()(h)), name="branchy")
    vae = VAE(encoder, build_decoder(2, SHAPE, (16,)))
    with pytest.warns(
        fast.FastPathWarning, match="encoder 'branchy' falls back.*not a plain chain"
    ):
        h = train_vae(vae, images, epochs=1, batch_size=32, verbose=0).history
    assert np.isfinite(h["loss"][0])


def _adam_pair(learning_rate=1e-3, **kwargs):
    rng = np.random.default_rng(0)
    shapes = [(30, 20), (20,), (20, 5)]
    inits = [rng.normal(size=s).astype("float32") for s in shapes]
    out = []
    for _ in range(2):
        opt = keras.optimizers.Adam(learning_rate, **kwargs)
        variables = [keras.Variable(w) for w in inits]
        opt.build(variables)
        out.append((opt, variables))
    grads = [
        [
            keras.ops.convert_to_tensor(rng.normal(size=s).astype("float32") * 10.0**-i)
            for s in shapes
        ]
        for i in range(12)
    ]
    return out, grads


class _Net:
    """What fast.enabled needs of a model: an encoder, a decoder, an optimizer."""

    def __init__(self, optimizer):
        self.encoder, self.decoder, self.optimizer = (
            build_encoder(2, SHAPE, (4,)),
            build_decoder(2, SHAPE, (4,)),
            optimizer,
        )
        self.trainable_weights = self.encoder.trainable_weights + self.decoder.trainable_weights


STEPPED = keras.optimizers.schedules.PiecewiseConstantDecay(
    [3, 7], [1e-3, 3e-4, 1e-4]
)  # stepped, as Burda's


@pytest.mark.parametrize(
    "kwargs", [{}, {"beta_1": 0.5, "epsilon": 1e-3}, {"learning_rate": STEPPED, "epsilon": 1e-4}]
)
def test_each_fused_step_is_keras_adams_update(kwargs, monkeypatch):
    (ref, ours), grads = _adam_pair(**kwargs)
    calls = []
    fused = torch._fused_adam_
    monkeypatch.setattr(torch, "_fused_adam_", lambda *a, **k: calls.append(1) or fused(*a, **k))
    with fast.enabled(_Net(ours[0])) as on:
        assert on["adam"]
        for g in grads:  # 12 steps, gradients from 1 down to 1e-11: epsilon matters at the end
            with torch.no_grad():
                ref[0].apply(g, ref[1])
                ours[0].apply(g, ours[1])
            for a, b in zip(ref[1], ours[1]):
                np.testing.assert_allclose(
                    keras.ops.convert_to_numpy(b),
                    keras.ops.convert_to_numpy(a),
                    rtol=1e-6,
                    atol=1e-7,
                )  # float32 rounding
    assert len(calls) == 12 and int(ours[0].iterations.numpy()) == 12


@pytest.mark.parametrize(
    "kwargs",
    [
        {"amsgrad": True},
        {"weight_decay": 1e-4},
        {"clipnorm": 1.0},
        {"clipvalue": 0.5},
        {"global_clipnorm": 1.0},
        {"use_ema": True},
        {"loss_scale_factor": 8.0},
        {"gradient_accumulation_steps": 2},
    ],
)
def test_a_setting_off_the_allow_list_keeps_keras_update_and_says_so(kwargs):
    (_, ours), _ = _adam_pair(**kwargs)
    (key,) = kwargs
    with (
        pytest.warns(fast.FastPathWarning, match=f"Adam update falls back.*setting {key}="),
        fast.enabled(_Net(ours[0])) as on,
    ):
        assert not on["adam"]
    assert "_parallel_update_step" not in vars(ours[0])


def test_an_unknown_setting_keeps_keras_update(monkeypatch):
    """A setting a later Keras might add is not silently ignored: the allow-list does not know it."""
    (_, ours), _ = _adam_pair()
    config = ours[0].get_config()
    monkeypatch.setattr(ours[0], "get_config", lambda: {**config, "nesterov": True})
    with (
        pytest.warns(
            fast.FastPathWarning, match="setting nesterov=True is not one the fused update knows"
        ),
        fast.enabled(_Net(ours[0])) as on,
    ):
        assert not on["adam"]


def test_a_subclass_of_adam_keeps_its_own_update():
    class MyAdam(type(keras.optimizers.Adam())):
        pass

    with (
        pytest.warns(fast.FastPathWarning, match="not Keras's Adam itself"),
        fast.enabled(_Net(MyAdam())) as on,
    ):
        assert not on["adam"]


def test_the_kernel_check_is_kept_per_device():
    assert fast.fused_adam_works("cpu") == ""
    assert (
        fast.fused_adam_works("meta") != ""
    )  # no data on the meta device: the check fails there, and says why
    assert fast.fused_adam_works("cpu") == ""  # ... which does not turn it off on the CPU


def test_the_public_switches(images, monkeypatch):
    """``train_vae(fast=False)`` runs Keras's own code; ``enabled(networks=..., adam=...)`` picks the parts."""
    vae = tiny_vae()
    counter = StepCounter(monkeypatch)
    train_vae(vae, images, epochs=1, batch_size=32, verbose=0, callbacks=[counter], fast=False)
    assert counter.per_step == [(2 + 5 + 5, 0)] * 3
    with fast.enabled(vae, networks=False) as on:
        assert on == {
            "encoder": False,
            "decoder": False,
            "adam": True,
            "draws": True,
            "ops": True,
            "weights": True,
            "metrics": True,
        }
        assert "call" not in vars(vae.encoder)
    with fast.enabled(vae, adam=False) as on:
        assert on == {
            "encoder": True,
            "decoder": True,
            "adam": False,
            "draws": True,
            "ops": True,
            "weights": True,
            "metrics": True,
        }
        assert "_parallel_update_step" not in vars(vae.optimizer)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_training_with_and_without_the_fast_path_gives_the_same_weights(images, likelihood):
    """Two runs from the same weights and seed, 4 epochs of 3 steps: the same weights, up to float32 rounding."""
    x = (images > 0.5).astype("float32") if likelihood == "bernoulli" else images
    runs = []
    for on in (True, False):
        vae = tiny_vae(seed=3, likelihood=likelihood)
        with warnings.catch_warnings():
            warnings.simplefilter(
                "error", fast.FastPathWarning
            )  # the fast run does take the fast path
            h = train_vae(
                vae, x, x[:32], epochs=4, batch_size=32, seed=5, verbose=0, fast=on
            ).history
        runs.append((vae, h))
    (fast_vae, fast_h), (keras_vae, keras_h) = runs
    assert int(fast_vae.optimizer.iterations) == int(keras_vae.optimizer.iterations) == 12
    moved = 0
    for a, b, w0 in zip(
        fast_vae.weights, keras_vae.weights, tiny_vae(seed=3, likelihood=likelihood).weights
    ):
        a, b, w0 = (keras.ops.convert_to_numpy(v) for v in (a, b, w0))
        np.testing.assert_allclose(
            a, b, rtol=1e-5, atol=1e-6, err_msg=a.shape
        )  # float32 rounding: addmm, fused kernel
        moved += int(np.abs(a - w0).max() > 1e-3)  # and training did move the weights
    assert moved == len(fast_vae.weights)
    for key in ("loss", "nll", "kl", "val_loss"):
        np.testing.assert_allclose(fast_h[key], keras_h[key], rtol=1e-5)


def test_a_broken_kernel_is_caught_once_and_named(images, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no fused Adam for this device")

    monkeypatch.setattr(torch, "_fused_adam_", broken)
    fast.fused_adam_works.cache_clear()
    try:
        vae = tiny_vae()
        with pytest.warns(
            fast.FastPathWarning, match="Adam update falls back.*no fused Adam for this device"
        ):
            h = train_vae(vae, images, epochs=1, batch_size=32, verbose=0).history
        assert np.isfinite(h["loss"][0]) and int(vae.optimizer.iterations) == 3
    finally:
        fast.fused_adam_works.cache_clear()


def test_the_compiled_model_saves_keras_adam(tmp_path, images):
    vae = tiny_vae()
    train_vae(vae, images, epochs=1, batch_size=32, learning_rate=2e-3, verbose=0)
    vae.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras")
    assert type(back.optimizer).__name__ == "Adam" and float(
        back.optimizer.learning_rate
    ) == pytest.approx(2e-3)
    assert int(back.optimizer.iterations) == 3


def test_the_steps_draws_are_keras_own(images):
    """Inside a step, keras.random.normal with a SeedGenerator gives Keras's numbers and state."""
    assert fast.direct_normal_works("cpu") == ""
    vae = tiny_vae()
    vae.compile(optimizer=keras.optimizers.Adam())
    normal = fast._direct_normal("cpu")
    for seed in (0, 12345, 2**31 - 1):  # the sum of the two state numbers wraps past 2**32
        ours = keras.random.SeedGenerator(seed)
        theirs = keras.random.SeedGenerator(seed)
        for shape in [(4, 2), (3, 4, 2)]:
            torch.testing.assert_close(
                normal(shape, dtype=torch.float32, seed=ours),
                keras.random.normal(shape, dtype=torch.float32, seed=theirs),
                rtol=0,
                atol=0,
            )
        assert torch.equal(ours.state.value, theirs.state.value)
    # Anything else goes to Keras: a number as seed, another dtype.
    torch.testing.assert_close(
        normal((3,), seed=5), keras.random.normal((3,), seed=5), rtol=0, atol=0
    )
    assert normal((3,), dtype="float64", seed=keras.random.SeedGenerator(1)).dtype == torch.float64
    # The patch lives only inside a step.
    original = keras.random.normal
    with fast.enabled(vae) as on:
        assert on["draws"] and keras.random.normal is original
        vae.train_step((torch.as_tensor(images[:8]),))
        assert keras.random.normal is original
    # A broken replica is caught and named, and training goes on with Keras's draws.
    fast.direct_normal_works.cache_clear()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(fast, "_direct_normal", lambda device: lambda *a, **k: torch.zeros(1))
            with (
                pytest.warns(fast.FastPathWarning, match="random.normal in the steps falls back"),
                fast.enabled(vae) as on,
            ):
                assert not on["draws"]
    finally:
        fast.direct_normal_works.cache_clear()


class OpsRecorder(VAE):
    """A VAE that notes which ``keras.ops.sum`` a step's losses are computed with."""

    seen = []

    def compute_losses(self, x, training=False, seed=None):
        OpsRecorder.seen.append(keras.ops.sum)
        return super().compute_losses(x, training=training, seed=seed)


def test_the_steps_keras_ops_are_keras_own_bit_for_bit():
    """Inside a step, keras.ops.convert_to_tensor, shape, sum, mean and exp on float32 tensors are
    the torch calls Keras ends in (the same bits); other arguments go to Keras; outside, Keras's."""
    assert fast.direct_ops_work("cpu") == ""
    ours = fast._direct_ops("cpu")
    x = torch.randn(6, 5, 4)
    for axis in (None, 1, (0, 2), -1):
        for name in ("sum", "mean"):
            a, b = ours[name](x, axis=axis), getattr(keras.ops, name)(x, axis=axis)
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    assert ours["convert_to_tensor"](x) is x and torch.equal(ours["exp"](x), torch.exp(x))
    # Anything else is Keras's: an int8 sum becomes int32, a float64 tensor asked for float32.
    small = torch.tensor([100, 100], dtype=torch.int8)
    assert ours["sum"](small).dtype == torch.int32 and int(ours["sum"](small)) == 200
    assert ours["convert_to_tensor"](x.double(), dtype="float32").dtype == torch.float32
    assert ours["exp"](x.double()).dtype == torch.float64  # Keras's exp keeps float64
    # Only inside a step.
    keras.utils.set_random_seed(0)
    vae = OpsRecorder(build_encoder(2, SHAPE, (16,)), build_decoder(2, SHAPE, (16,)))
    OpsRecorder.seen.clear()
    original = keras.ops.sum
    images = np.random.default_rng(0).random((64, *SHAPE), dtype=np.float32)
    train_vae(vae, images, images[:32], epochs=1, batch_size=32, verbose=0)
    assert len(OpsRecorder.seen) == 3 and all(f is not original for f in OpsRecorder.seen)
    assert keras.ops.sum is original
    # A replica that differs from Keras is caught and named; the steps keep Keras's ops.
    fast.direct_ops_work.cache_clear()
    try:
        with pytest.MonkeyPatch.context() as mp:
            broken = dict(ours, sum=lambda x, axis=None, keepdims=False: torch.sum(x) + 1)
            mp.setattr(fast, "_direct_ops", lambda device: broken)
            with (
                pytest.warns(fast.FastPathWarning, match="keras.ops in the steps falls back"),
                fast.enabled(vae) as on,
            ):
                assert not on["ops"]
    finally:
        fast.direct_ops_work.cache_clear()


@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # Keras's, for the None gradient
@pytest.mark.parametrize("call", ["subset", "reordered", "no variables", "a None gradient"])
def test_an_apply_other_than_the_plain_one_is_keras_own(call, monkeypatch):
    """``optimizer.apply`` goes straight to the fused update only for the plain call; any other
    call is Keras's ``apply`` (which still runs the fused kernel), with Keras's result."""
    (ref, ours), grads = _adam_pair()
    keras_apply, keras_calls = type(ours[0]).apply, []
    monkeypatch.setattr(
        type(ours[0]),
        "apply",
        lambda self, *a, **k: keras_calls.append(1) or keras_apply(self, *a, **k),
    )

    def args(opt, variables, g):
        if call == "subset":
            return [g[0], g[2]], [variables[0], variables[2]]
        if call == "reordered":
            return g[::-1], variables[::-1]
        if call == "no variables":
            return (g,)
        return [g[0], None, g[2]], variables  # Keras skips the weight without a gradient

    with fast.enabled(_Net(ours[0])) as on:
        assert on["adam"]
        for g in grads[:3]:
            with torch.no_grad():
                keras_apply(ref[0], *args(*ref, g))
                ours[0].apply(*args(*ours, g))
    assert (
        len(keras_calls) == 3
    )  # every call of ours went to Keras's apply (ref's calls it directly)
    for a, b in zip(ref[1], ours[1]):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(b), keras.ops.convert_to_numpy(a), rtol=1e-6, atol=1e-7
        )
    assert int(ours[0].iterations.numpy()) == int(ref[0].iterations.numpy()) == 3


def test_the_plain_apply_skips_keras_apply(monkeypatch):
    (_, ours), grads = _adam_pair()
    keras_calls = []
    keras_apply = type(ours[0]).apply
    monkeypatch.setattr(
        type(ours[0]),
        "apply",
        lambda self, *a, **k: keras_calls.append(1) or keras_apply(self, *a, **k),
    )
    with fast.enabled(_Net(ours[0])):
        for g in grads[:3]:
            ours[0].apply(g, ours[1])
    assert keras_calls == [] and int(ours[0].iterations.numpy()) == 3
    assert "apply" not in vars(ours[0])  # put back


def test_train_vae_steps_skip_keras_apply_from_the_first_step(images, monkeypatch):
    """A new model's optimizer is built before the first step (as Keras's fit builds it), so
    every step, the first included, takes the plain apply, not Keras's."""
    vae = tiny_vae()
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert not vae.optimizer.built
    keras_calls = []
    keras_apply = type(vae.optimizer).apply
    monkeypatch.setattr(
        type(vae.optimizer),
        "apply",
        lambda self, *a, **k: keras_calls.append(1) or keras_apply(self, *a, **k),
    )
    train_vae(vae, images, epochs=2, batch_size=32, verbose=0)
    assert keras_calls == [] and int(vae.optimizer.iterations) == 6


def test_the_metrics_as_torch_calls_give_keras_numbers(images):
    """Training with the metrics as torch calls and with Keras's own metric code: the same
    history to the last bit (the same operations on the same state vector)."""
    assert fast.direct_metric_works("cpu") == ""
    hs = []
    for metrics in (True, False):
        vae = tiny_vae(seed=4)
        vae.compile(optimizer=keras.optimizers.Adam(1e-3))
        with fast.enabled(vae, metrics=metrics) as on:
            assert on["metrics"] is metrics
            if metrics:
                assert "update_state" in vars(vae.elbo_metrics)
            h = vae.fit(images, validation_data=images[:40], epochs=2, batch_size=32, verbose=0)
            hs.append(h.history)
        assert "update_state" not in vars(vae.elbo_metrics)  # put back
    assert hs[0] == hs[1]


def test_a_metric_that_changes_the_update_keeps_its_own(images):
    from vae_course.models import ELBOMetrics

    class Doubled(ELBOMetrics):
        def update_state(self, loss, nll, kl):
            super().update_state(2 * loss, nll, kl)

    class DoubledVAE(VAE):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.elbo_metrics = Doubled()

    vae = DoubledVAE(build_encoder(2, SHAPE, (16,)), build_decoder(2, SHAPE, (16,)))
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    with fast.enabled(vae) as on:
        assert not on["metrics"]
        assert "update_state" not in vars(vae.elbo_metrics)


class StopAt(keras.callbacks.Callback):
    """Stops training after optimizer step ``n`` (a batch hook, as the command line's NaN check)."""

    def __init__(self, n):
        super().__init__()
        self.n, self.batches = n, []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append((batch, round(float(logs["loss"]), 4)))
        if int(self.model.optimizer.iterations) == self.n:
            self.model.stop_training = True


def compiled_tiny_vae():
    vae = tiny_vae(seed=3)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    return vae


def train_with(lean, vae, x, epochs, initial_epoch=0, x_val=None, callbacks=(), verbose=0, **on):
    """Train ``vae`` (seed 5, the fast path's parts ``on``) with ``fast.fit`` if ``lean``, else
    with Keras's ``vae.fit``, on the same arguments. Returns the History."""
    keras.utils.set_random_seed(5)
    run = dict(epochs=epochs, initial_epoch=initial_epoch, batch_size=32, verbose=verbose)
    with fast.enabled(vae, **on):
        if lean:
            return fast.fit(vae, x, x_val=x_val, callbacks=list(callbacks), **run)
        validation = (x_val,) if x_val is not None else None
        return vae.fit(x, validation_data=validation, callbacks=list(callbacks), **run)


def counted_dataloaders(monkeypatch):
    """A list that gets an entry each time a torch DataLoader starts an iteration."""
    started, iter_ = [], torch.utils.data.DataLoader.__iter__
    monkeypatch.setattr(
        torch.utils.data.DataLoader, "__iter__", lambda self: started.append(1) or iter_(self)
    )
    return started


@pytest.mark.parametrize("validation", [False, True])
@pytest.mark.parametrize("stop", [None, 7])
def test_the_lean_loop_is_keras_fit_bit_for_bit(images, validation, stop, monkeypatch):
    """``fast.fit`` (what train_vae runs) against ``vae.fit``, both with the fast path on: the same
    batches (Keras's shuffle), so the same weights, history, batch hooks and global torch RNG state."""
    x = images[:90]  # 3 batches of 32, the last of 26
    x_val = images[:40] if validation else None
    dataloaders = counted_dataloaders(monkeypatch)
    runs = []
    for lean in (True, False):
        vae = compiled_tiny_vae()
        cbs = [StopAt(stop)] if stop else []
        dataloaders.clear()
        h = train_with(lean, vae, x, epochs=4, initial_epoch=1, x_val=x_val, callbacks=cbs)
        runs.append((vae, h, cbs, torch.rand(3), len(dataloaders)))
    (a, ha, ca, ra, da), (b, hb, cb, rb, db) = runs
    assert da == (3 * 2 if validation else 0) and db > da  # no DataLoader for the training batches
    for u, v in zip(a.weights, b.weights):
        assert torch.equal(u.value, v.value)
    assert ha.history == hb.history and ha.epoch == hb.epoch == [1, 2, 3]
    assert int(a.optimizer.iterations) == int(b.optimizer.iterations) == (stop or 9)
    if stop:
        assert ca[0].batches == cb[0].batches and len(ca[0].batches) == stop
    assert torch.equal(ra, rb)  # the same draws taken from torch's global generator


def test_the_lean_loop_hands_other_input_to_keras_fit(images, monkeypatch):
    """A torch tensor is not the float32 NumPy array the lean loop slices: Keras's fit trains on it."""
    dataloaders = counted_dataloaders(monkeypatch)
    vae = compiled_tiny_vae()
    h = train_with(True, vae, torch.from_numpy(images[:64]), epochs=1)
    assert int(vae.optimizer.iterations) == 2 and len(h.history["loss"]) == 1
    assert dataloaders  # Keras's own batches


def test_the_epoch_lines_at_verbose_2_are_keras_fits(images, capsys):
    """fast.fit leaves out the progress bar's batch hook at verbose=2 (it only counts the
    batches): the printed epoch lines are vae.fit's (both with the fast path on), up to the times."""
    import re

    lines = []
    for lean in (True, False):
        train_with(lean, compiled_tiny_vae(), images, epochs=2, x_val=images[:32], verbose=2)
        lines.append(re.sub(r"\d+(ms|us|s)(/step)?", "T", capsys.readouterr().out))
    assert lines[0] == lines[1] and lines[0].count("3/3 - T - T - ") == 2, lines


def test_the_direct_ops_train_to_the_same_bits(images):
    """Training with the steps' keras.ops as torch calls and with Keras's own: the same weights
    and history, bit for bit (the same torch calls, without Keras's dispatch)."""
    runs = []
    for ops in (True, False):
        vae = compiled_tiny_vae()
        h = train_with(True, vae, images, epochs=2, x_val=images[:32], ops=ops)
        runs.append((vae, h.history))
    (a, ha), (b, hb) = runs
    assert ha == hb and all(torch.equal(u.value, v.value) for u, v in zip(a.weights, b.weights))


class Freezer(keras.callbacks.Callback):
    """Freezes the encoder's first layer after the batch ``at`` of each epoch, unfreezes it at the
    next epoch's start."""

    def __init__(self, at=1):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        self.model.encoder.get_layer("enc_dense_0").trainable = True

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.at:
            self.model.encoder.get_layer("enc_dense_0").trainable = False


class WeightCounter(VAE):
    """Records each training step's (number of trainable weights, class of the model)."""

    seen = []

    def train_step(self, data):
        WeightCounter.seen.append((len(self.trainable_weights), type(self)))
        return super().train_step(data)


def test_the_direct_weight_lookups_train_to_the_same_bits(images):
    """Training with the steps' weight lookups (Variable.value, trainable_weights, zero_grad)
    short-cut and with Keras's and torch's own: the same weights and history, bit for bit; also
    when a callback freezes and unfreezes a layer between steps (Keras's answer then)."""
    for freeze in (False, True):
        runs = []
        for weights in (True, False):
            keras.utils.set_random_seed(3)
            vae = WeightCounter(build_encoder(2, SHAPE, (16,)), build_decoder(2, SHAPE, (16,)))
            vae.compile(optimizer=keras.optimizers.Adam(1e-3))
            WeightCounter.seen.clear()
            cbs = [Freezer()] if freeze else []
            h = train_with(
                True, vae, images, epochs=2, x_val=images[:32], callbacks=cbs, weights=weights
            )
            runs.append((vae, h.history, list(WeightCounter.seen)))
        (a, ha, sa), (b, hb, sb) = runs
        assert [n for n, _ in sa] == [n for n, _ in sb] == ([8, 8, 6] * 2 if freeze else [8] * 6)
        assert all(c is not WeightCounter for _, c in sa)  # the lean class in every step
        assert all(c is WeightCounter for _, c in sb)
        assert ha == hb and all(torch.equal(u.value, v.value) for u, v in zip(a.weights, b.weights))


def test_the_weight_lookups_are_keras_own_and_only_inside_a_step(images):
    """Variable.value short-cut: the tensor itself outside any scope, Keras's answer inside one;
    the lean class and the short-cut only inside a step, put back after a step that fails."""
    assert fast.direct_value_works("cpu") == ""
    v = keras.Variable(np.ones((2, 2), "float32"))
    owner = fast._value_owner(v)
    keras_value = vars(owner)["value"]
    ours = fast._direct_value(owner)
    assert ours.fget(v) is v._value
    from keras.src.backend.common.stateless_scope import StatelessScope

    with StatelessScope(state_mapping=[(v, keras.ops.zeros((2, 2)))]):
        assert float(ours.fget(v).sum()) == 0.0
    keras.utils.set_random_seed(3)
    vae = WeightCounter(build_encoder(2, SHAPE, (16,)), build_decoder(2, SHAPE, (16,)))
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    WeightCounter.seen.clear()
    with fast.enabled(vae) as on:
        assert on["weights"]
        fast.fit(
            vae, images[:64], epochs=1, initial_epoch=0, batch_size=32, x_val=None,
            callbacks=[], verbose=0,
        )  # fmt: skip
        assert type(vae) is WeightCounter  # outside the steps: the model's own class ...
        assert vars(owner)["value"] is keras_value  # ... and Keras's Variable.value
        inside = {}

        def failing(data):
            inside["class"], inside["value"] = type(vae), vars(owner)["value"]
            raise RuntimeError("a step that fails")

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(WeightCounter, "compute_losses", lambda self, *a, **k: failing(None))
            with pytest.raises(RuntimeError, match="a step that fails"):
                vae.train_step(images[:32])  # the fast path's wrapper of the model's step
        assert inside["class"] is not WeightCounter and inside["value"] is not keras_value
        assert type(vae) is WeightCounter and vars(owner)["value"] is keras_value
    classes = [c for _, c in WeightCounter.seen]
    assert len(classes) == 3 and all(c is not WeightCounter for c in classes)
    assert all(issubclass(c, WeightCounter) and c.__name__ == "WeightCounter" for c in classes)
    assert vars(owner)["value"] is keras_value


def test_a_model_class_with_its_own_lookups_keeps_them(images):
    """The lean class is made only for a built model whose class leaves trainable_weights,
    weights, zero_grad and parameters to Keras and torch; otherwise a warning says why."""

    def new(cls):
        return cls(build_encoder(2, SHAPE, (16,)), build_decoder(2, SHAPE, (16,)))

    class OwnWeights(VAE):
        @property
        def trainable_weights(self):
            return super().trainable_weights

    class OwnZeroGrad(VAE):
        def zero_grad(self, set_to_none=True):
            return super().zero_grad(set_to_none)

    built = new(VAE)
    built.build((None, *SHAPE))
    assert fast._lean_class(built)[0] is not None  # the control
    assert fast._lean_class(new(VAE))[1] == "a layer of the model is not built"
    for cls, name in ((OwnWeights, "trainable_weights"), (OwnZeroGrad, "zero_grad")):
        vae = new(cls)
        vae.build((None, *SHAPE))
        vae.compile(optimizer=keras.optimizers.Adam(1e-3))
        assert fast._lean_class(vae) == (None, f"{cls.__name__} has its own {name}")
        with (
            pytest.warns(fast.FastPathWarning, match=f"has its own {name}"),
            fast.enabled(vae) as on,
        ):
            assert not on["weights"]


def test_a_value_check_that_misses_a_scope_is_caught(monkeypatch):
    """If Keras renamed a scope slot, the short-cut would answer where Keras would not: the
    check (here against a short-cut that ignores the device slot) says so."""

    from keras.src.backend.common import global_state

    def ignores_device(owner):
        keras_value, state = owner.value, global_state.GLOBAL_STATE_TRACKER

        def value(self):
            if (
                self._value is not None
                and getattr(state, "stateless_scope", None) is None
                and getattr(state, "autocast_scope", None) is None
            ):
                return self._value
            return keras_value.fget(self)

        return property(value)

    fast.direct_value_works.cache_clear()
    try:
        monkeypatch.setattr(fast, "_direct_value", ignores_device)
        assert (
            fast.direct_value_works("cpu") == "inside a meta-device scope it differs from Keras's"
        )
    finally:
        fast.direct_value_works.cache_clear()


def test_callbacks_that_fit_honours_are_honoured(images, tmp_path):
    """A LambdaCallback's batch hooks (set on the instance) run; BackupAndRestore resumes at the
    epoch it saved; both as in vae.fit, bit for bit."""

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("crash after epoch 2")

    runs = []
    for lean in (True, False):
        vae = compiled_tiny_vae()
        begun, backup_dir = [], str(tmp_path / f"backup_{lean}")
        stop = keras.callbacks.LambdaCallback(
            on_train_batch_begin=lambda batch, logs, begun=begun: begun.append(batch),
            on_train_batch_end=lambda batch, logs, vae=vae: setattr(
                vae, "stop_training", int(vae.optimizer.iterations) == 11
            ),
        )
        with pytest.raises(RuntimeError, match="crash"):
            train_with(
                lean,
                vae,
                images,
                epochs=5,
                callbacks=[keras.callbacks.BackupAndRestore(backup_dir), Crash()],
            )
        resume = keras.callbacks.BackupAndRestore(backup_dir)
        h = train_with(lean, vae, images, epochs=5, callbacks=[resume, stop])
        runs.append((vae, h.epoch, begun))
    (a, ea, ba), (b, eb, bb) = runs
    assert ea == eb == [2, 3] and ba == bb == [0, 1, 2, 0, 1]  # resumed at 3, stopped at step 11
    assert all(torch.equal(u.value, v.value) for u, v in zip(a.weights, b.weights))


@pytest.mark.filterwarnings("ignore:Limiting steps_per_epoch")  # Keras's, for the cap asked for
def test_what_the_lean_loop_hands_to_keras_fit(images):
    """A reversed (negative-stride) array and Keras's max_steps_per_epoch go to vae.fit."""
    vae = tiny_vae()
    h = train_vae(vae, images[::-1], epochs=1, batch_size=32, verbose=0)
    assert int(vae.optimizer.iterations) == 3 and len(h.history["loss"]) == 1
    keras.config.set_max_steps_per_epoch(1)
    try:
        vae = tiny_vae()
        train_vae(vae, images, epochs=2, batch_size=32, verbose=0)
        assert int(vae.optimizer.iterations) == 2
    finally:
        keras.config.set_max_steps_per_epoch(None)
