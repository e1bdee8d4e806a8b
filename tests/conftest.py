"""Shared fixtures: a tiny fake MNIST so training tests run in seconds."""
import numpy as np
import pytest

from minicnn.data import MNIST


@pytest.fixture(scope="session")
def tiny_mnist():
    """Learnable fake MNIST: class k is a bright bar at row 2 + 2k, plus noise.

    600 training images (the last 100 are validation in configs with val_size 100)
    and 200 test images, uint8 (N, 28, 28).
    """
    rng = np.random.default_rng(123)

    def make(n):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(y):
            x[i, 2 + 2 * k: 4 + 2 * k, 4:24] = 250
        return x, y

    x_train, y_train = make(600)
    x_test, y_test = make(200)
    return MNIST(x_train, y_train, x_test, y_test, "tiny fake")
