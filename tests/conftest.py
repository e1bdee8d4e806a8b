"""Shared fixtures: a tiny fake MNIST (also as a Dataset) and a tiny config, so training tests run in seconds."""
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


@pytest.fixture(scope="session")
def tiny_data(tiny_mnist):
    """tiny_mnist as the Dataset that minicnn.data.load_dataset returns (images (N, 1, 28, 28))."""
    from minicnn.train import as_dataset

    return as_dataset(tiny_mnist)


def tiny_config(name="tiny", pool="maxpool2d", seed=0, data=None, train=None, eval=None) -> dict:
    """The small network the training tests share, as a fresh config dict.

    conv2d 4 filters 3x3 stride 2, relu, ``pool`` 2x2, flatten, dense 10,
    softmax.  ``data``, ``train`` and ``eval`` update those sections.  Also
    the ``tiny_config`` fixture, for tests that prefer fixtures; modules that
    build tables at import time do ``from conftest import tiny_config``.
    """
    return {
        "name": name, "seed": seed,
        "data": {"dataset": "mnist", "val_size": 100, "train_size": 300, **(data or {})},
        "model": {"input_shape": [1, 28, 28], "layers": [
            {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2},
            {"type": "relu"},
            {"type": pool, "kernel_size": 2},
            {"type": "flatten"},
            {"type": "dense", "out_features": 10},
            {"type": "softmax"},
        ]},
        "train": {"epochs": 2, "batch_size": 50, "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
                  **(train or {})},
        "eval": {"shifts": [0, 2], **(eval or {})},
    }


@pytest.fixture(name="tiny_config")
def tiny_config_fixture():
    return tiny_config


@pytest.fixture()
def run_cli(capsys):
    """``minicnn ARGS`` in this process: (status, stdout, stderr); signal handlers restored."""
    import signal

    from minicnn import cli

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def run(*args):
        try:
            status = cli.main([str(a) for a in args])
        except SystemExit as e:  # argparse's own errors
            status = e.code
        finally:
            for s, handler in saved.items():
                signal.signal(s, handler)
        out, err = capsys.readouterr()
        return status, out, err

    return run
