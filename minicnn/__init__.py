"""minicnn: a small, fast, honest CNN framework for pooling studies on MNIST.

The public API, for notebooks and scripts (``import minicnn as mc``); the
``minicnn`` command is one client of exactly these names.

Example::

    >>> import numpy as np, minicnn as mc
    >>> model = mc.Sequential([mc.Conv2D(out_channels=4, kernel_size=3), mc.ReLU(), mc.MaxPool2D(2),
    ...                        mc.Flatten(), mc.Dense(out_features=10)], input_shape=(1, 28, 28), seed=0)
    >>> x = np.zeros((32, 1, 28, 28), np.float32)
    >>> history = mc.fit(model, x, np.arange(32) % 10, epochs=1, batch_size=16, log=None)
    >>> mc.predict(model, x).shape
    (32,)
"""
from minicnn.config import from_config
from minicnn.layers import (AdaptiveAvgPool2D, AdaptiveMaxPool2D, AvgPool2D, BatchNorm1D, BatchNorm2D,
                            BlurPool2D, Conv2D, Dense, Dropout, Dropout2D, Flatten, FractionalMaxPool2D, GELU,
                            GatedPool2D, GlobalAvgPool2D, GlobalMaxPool2D, LPPool2D, Layer, LeakyReLU,
                            MaxBlurPool2D, MaxPool2D, MinPool2D, MixedPool2D, ReLU, Sigmoid, Softmax,
                            SpatialPyramidPool2D, StochasticPool2D, Tanh)
from minicnn.model import Sequential
from minicnn.optim import SGD, Adam
from minicnn.runs import History, load_run
from minicnn.schedules import Constant, Cosine, Step, learning_rate
from minicnn.train import evaluate, fit, predict

__version__ = "0.1.0"

# Public names whose modules draw with matplotlib, imported on first use: every command of the
# CLI imports this package, and most of them (train, summary, a refused config) draw nothing.
LAZY = {"plot_history": "minicnn.plots", "plot_study": "minicnn.plots", "history_figures": "minicnn.plots",
        "study_figures": "minicnn.plots", "show": "minicnn.featuremaps", "show_figures": "minicnn.featuremaps",
        "load_study": "minicnn.study.load"}


def __getattr__(name):
    if name not in LAZY:
        raise AttributeError(f"module 'minicnn' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(LAZY))

__all__ = [
    # the model and its layers
    "Sequential", "Layer", "Conv2D", "Dense", "ReLU", "Softmax", "Flatten",
    "MaxPool2D", "AvgPool2D", "MinPool2D", "GlobalAvgPool2D", "GlobalMaxPool2D",
    # the pooling family
    "FractionalMaxPool2D", "StochasticPool2D", "LPPool2D", "AdaptiveAvgPool2D", "AdaptiveMaxPool2D",
    "SpatialPyramidPool2D", "BlurPool2D", "MaxBlurPool2D", "MixedPool2D", "GatedPool2D",
    # normalisation, regularisation, activations
    "BatchNorm2D", "BatchNorm1D", "Dropout", "Dropout2D", "LeakyReLU", "Tanh", "Sigmoid", "GELU",
    # optimizers and learning-rate schedules
    "SGD", "Adam", "Constant", "Step", "Cosine", "learning_rate",
    # training and evaluation
    "fit", "evaluate", "predict", "History",
    # configs, run and study folders
    "from_config", "load_run", "load_study",
    # figures
    "plot_history", "plot_study", "history_figures", "study_figures", "show", "show_figures",
]
