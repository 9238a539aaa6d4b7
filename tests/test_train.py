"""train_vae and train_vae_dynamic: the learning rate a caller passes is the one trained with, and
a dynamic-binarization run goes on from a checkpoint's epoch and stops when a callback says so."""

import keras
import numpy as np
import pytest

from vae_course import train
from vae_course.models import build_vae
from vae_course.train import train_vae, train_vae_dynamic

SHAPE = (4, 4)


def small_vae(likelihood="gaussian"):
    keras.utils.set_random_seed(0)
    return build_vae(latent_dim=2, image_shape=SHAPE, hidden_units=(8,), likelihood=likelihood)


def images(n=64):
    return np.random.default_rng(1).random((n,) + SHAPE).astype(np.float32)


def rate(vae):
    return float(keras.ops.convert_to_numpy(vae.optimizer.learning_rate))


def test_a_new_model_is_compiled_with_the_rate_given_or_1e_3():
    vae = small_vae()
    train_vae(vae, images(), epochs=1, batch_size=32, learning_rate=2e-3, verbose=0)
    assert rate(vae) == pytest.approx(2e-3)
    vae = small_vae()
    train_vae(vae, images(), epochs=1, batch_size=32, verbose=0)
    assert rate(vae) == pytest.approx(1e-3)


def test_a_compiled_model_trains_at_the_rate_given():
    """It used to keep the rate it was compiled with and ignore the one passed, without a word."""
    vae = small_vae()
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    seen = []

    class Rate(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(rate(self.model))

    train_vae(
        vae, images(), epochs=1, batch_size=32, learning_rate=5e-3, callbacks=[Rate()], verbose=0
    )
    assert seen and all(r == pytest.approx(5e-3) for r in seen)
    # None keeps the compiled optimizer's rate.
    train_vae(vae, images(), epochs=1, batch_size=32, verbose=0)
    assert rate(vae) == pytest.approx(5e-3)


def test_a_rate_for_a_model_compiled_with_a_schedule_is_refused():
    vae = small_vae()
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([10], [1e-3, 1e-4])
    vae.compile(optimizer=keras.optimizers.Adam(schedule))
    with pytest.raises(
        ValueError, match=r"learning_rate=0\.01: .*schedule.*Fix: leave learning_rate out"
    ):
        train_vae(vae, images(), epochs=1, batch_size=32, learning_rate=1e-2, verbose=0)
    train_vae(
        vae, images(), epochs=1, batch_size=32, verbose=0
    )  # no rate given: the schedule trains


@pytest.mark.parametrize("bad", [0, -1e-3, "1e-3", True])
def test_a_bad_rate_is_named(bad):
    with pytest.raises(ValueError, match="learning_rate must be a number > 0"):
        train_vae(small_vae(), images(), epochs=1, learning_rate=bad, verbose=0)


def test_dynamic_binarization_goes_on_from_initial_epoch(monkeypatch):
    seeds = []
    real = train.binarize
    monkeypatch.setattr(
        train, "binarize", lambda x, seed: seeds.append(list(seed)) or real(x, seed)
    )
    vae = small_vae("bernoulli")
    history = train_vae_dynamic(
        vae, images(), epochs=2, seed=7, initial_epoch=3, batch_size=32, verbose=0
    )
    assert seeds == [[7, 3], [7, 4]] and len(history["loss"]) == 2


def test_dynamic_binarization_stops_when_a_callback_stops_training():
    class StopAfterFirst(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    vae = small_vae("bernoulli")
    history = train_vae_dynamic(
        vae, images(), epochs=3, batch_size=32, callbacks=[StopAfterFirst()], verbose=0
    )
    assert len(history["loss"]) == 1
