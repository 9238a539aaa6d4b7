"""vae_course.optimizers.Adam makes Keras's Adam update, through one fused kernel."""
import keras
import numpy as np
import pytest
import torch

from vae_course import optimizers
from vae_course.models import build_vae


def _pair(**kwargs):
    """Two identical variable sets with identical gradients, one per optimizer."""
    rng = np.random.default_rng(0)
    shapes = [(30, 20), (20,), (20, 5)]
    inits = [rng.normal(size=s).astype("float32") for s in shapes]
    grads = [[torch.from_numpy(rng.normal(size=s).astype("float32") * 10.0 ** -i) for s in shapes] for i in range(12)]
    out = []
    for opt in (keras.optimizers.Adam(1e-3, **kwargs), optimizers.Adam(1e-3, **kwargs)):
        variables = [keras.Variable(w) for w in inits]
        opt.build(variables)
        out.append((opt, variables))
    return out, grads


@pytest.mark.parametrize("kwargs", [{}, {"beta_1": 0.5, "epsilon": 1e-3}, {"amsgrad": True}])
def test_each_step_is_keras_adams_update(kwargs):
    (ref, ours), grads = _pair(**kwargs)
    for g in grads:  # 12 steps, gradients from 1 down to 1e-11: epsilon matters at the end
        with torch.no_grad():
            ref[0].apply(g, ref[1])
            ours[0].apply(g, ours[1])
        for a, b in zip(ref[1], ours[1]):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-7)  # float32 rounding
    assert int(ours[0].iterations.numpy()) == 12


def test_the_fused_kernel_is_used_on_torch():
    assert keras.config.backend() == "torch"
    assert issubclass(optimizers.Adam, optimizers._TorchAdam)


def test_compiled_model_round_trips(tmp_path):
    vae = build_vae()
    vae.compile(optimizer=optimizers.Adam(2e-3))
    vae.train_step(torch.rand(8, 28, 28))
    vae.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(back.optimizer, optimizers.Adam)
    assert float(back.optimizer.learning_rate) == pytest.approx(2e-3)
