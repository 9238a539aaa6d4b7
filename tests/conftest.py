import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST, from VAE_COURSE_DATA or the course cache (see README)."""
    from vae_course.data import load_mnist

    return load_mnist()


@pytest.fixture(scope="session")
def mnist_float(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    return (x_train.astype(np.float32) / 255, y_train), (x_test.astype(np.float32) / 255, y_test)
