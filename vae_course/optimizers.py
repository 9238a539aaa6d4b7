r"""Keras's Adam, with its update done by one fused torch kernel.

The math is Keras's Adam exactly: with g the gradient and t the step,

.. math::
    m_t = \beta_1 m_{t-1} + (1-\beta_1) g, \qquad
    v_t = \beta_2 v_{t-1} + (1-\beta_2) g^2, \\
    w_t = w_{t-1} - \alpha_t \frac{m_t}{\sqrt{v_t} + \hat\epsilon}, \qquad
    \alpha_t = \eta \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}.

Keras's torch backend computes it with a dozen ``torch._foreach_*`` calls,
five of which allocate a fresh copy of every weight; on the source's MNIST
model that is about a quarter of each training step on a 2-core CPU. Here the
same update runs in ``torch._fused_adam_``, one pass over the weights, in
place. PyTorch's kernel puts epsilon inside the bias correction,
:math:`\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon'`, so passing
:math:`\epsilon' = \hat\epsilon / \sqrt{1-\beta_2^t}` gives Keras's update to
floating-point rounding (tests/test_optimizers.py checks twelve steps to float32 rounding).
"""
from __future__ import annotations

import math

import keras

try:  # the torch backend's Adam, whose update hook this class replaces
    from keras.src.backend.torch.optimizers.torch_adam import Adam as _TorchAdam
except ImportError:  # another Keras layout or backend: plain Keras Adam
    _TorchAdam = None


def _fused_available():
    try:
        import torch

        return _TorchAdam is not None and keras.config.backend() == "torch" and hasattr(torch, "_fused_adam_")
    except ImportError:
        return False


_Base = _TorchAdam if _fused_available() else keras.optimizers.Adam


@keras.saving.register_keras_serializable(package="vae_course")
class Adam(_Base):
    """``keras.optimizers.Adam`` (same arguments, same math), updated by a fused torch kernel.

    Falls back to Keras's own update for AMSGrad, weight decay, or when the
    torch backend (or its fused kernel) is not available.
    """

    def _slots(self, variables):
        """The torch tensors behind the weights and their two Adam moments, cached.

        Looking them up through Keras costs ~36 property reads per step; the
        tensors never change identity (Keras assigns in place), which the
        cache checks on every call.
        """
        cache = self.__dict__.get("_vae_course_slots")
        if cache is None or len(cache[0]) != len(variables) or any(
            getattr(v, "_value", None) is not p for v, p in zip(variables, cache[0])
        ):
            params = [v.value for v in variables]
            m = [self._momentums[self._get_variable_index(v)].value for v in variables]
            v2 = [self._velocities[self._get_variable_index(v)].value for v in variables]
            cache = (params, m, v2)
            self.__dict__["_vae_course_slots"] = cache
        return cache

    def _parallel_update_step(self, grads, variables, learning_rate):
        import torch

        if self.amsgrad or self.weight_decay:
            return super()._parallel_update_step(grads, variables, learning_rate)
        params, m, v2 = self._slots(variables)
        step = float(self.iterations.value) + 1.0
        steps = [torch.tensor(step, dtype=torch.float32, device=params[0].device)] * len(params)
        eps = self.epsilon / math.sqrt(1.0 - self.beta_2**step)
        torch._fused_adam_(
            params, list(grads), m, v2, [], steps,
            lr=float(learning_rate), beta1=self.beta_1, beta2=self.beta_2,
            weight_decay=0.0, eps=eps, amsgrad=False, maximize=False,
        )


__all__ = ["Adam"]
