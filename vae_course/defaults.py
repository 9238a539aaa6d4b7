"""The course's training set-up, written once: the source tutorial's (used by ``train_vae`` and the command line)."""

from __future__ import annotations

from dataclasses import dataclass

LIKELIHOODS = ("gaussian", "bernoulli", "continuous_bernoulli")


@dataclass(frozen=True)
class Defaults:
    """20 epochs, latent_dim 2, Gaussian likelihood with sigma 0.5, batch 64, Adam with learning rate 1e-3."""

    epochs: int = 20
    latent_dim: int = 2
    likelihood: str = "gaussian"
    x_std: float = 0.5
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0


DEFAULTS = Defaults()

__all__ = ["DEFAULTS", "Defaults", "LIKELIHOODS"]
