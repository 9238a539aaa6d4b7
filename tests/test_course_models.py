"""Burda et al.'s optimiser schedule (train.burda_schedule) and the recipe that uses it."""

import keras
import numpy as np
import pytest

from vae_course import train


def test_epochs_per_pass_add_up_to_the_papers_3280():
    assert [train.burda_epochs(p) for p in range(1, 9)] == [1, 4, 13, 40, 121, 364, 1093, 3280]


@pytest.mark.parametrize("passes", [2, 3, 8])
def test_each_step_gets_its_passes_learning_rate(passes):
    steps_per_epoch = 7
    schedule = train.burda_schedule(passes, steps_per_epoch)
    step = 0
    for i in range(passes):  # pass i: 3**i epochs at 1e-3 * 10**(-i/7)
        for _ in range(3**i * steps_per_epoch):
            if (
                step % 5 == 0 or step % steps_per_epoch == steps_per_epoch - 1
            ):  # a sample, and each epoch's end
                np.testing.assert_allclose(float(schedule(step)), 1e-3 * 10 ** (-i / 7), rtol=1e-6)
            step += 1
    assert step == train.burda_epochs(passes) * steps_per_epoch


def test_one_pass_is_a_constant_and_nine_are_refused():
    assert train.burda_schedule(1, 100) == 1e-3
    with pytest.raises(ValueError, match="passes must be an integer from 1 to 8"):
        train.burda_schedule(9, 100)


def test_the_recipe_trains_with_the_schedule_batch_and_epsilon():
    x = np.random.default_rng(0).random((40, 28, 28)).astype(np.float32)  # 2 batches of 20
    vae, history = train.train_burda_schedule(x, None, latent_dim=3, passes=3, seed=0, verbose=0)
    assert len(history["loss"]) == 13  # 1 + 3 + 9 epochs
    opt = vae.optimizer
    assert int(opt.iterations.numpy()) == 26 and opt.epsilon == 1e-4
    # the optimizer holds the schedule: after 26 steps it is in the third pass's rate
    np.testing.assert_allclose(
        float(keras.ops.convert_to_numpy(opt.learning_rate)), 1e-3 * 10 ** (-2 / 7), rtol=1e-6
    )
