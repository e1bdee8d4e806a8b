"""Layers with one contract: forward, backward, params, grads, output_shape.

Arrays are NCHW; float32 and float64 both work and a layer returns the dtype
it was given.
"""
from minicnn.layers.activations import ReLU, Softmax
from minicnn.layers.base import Layer
from minicnn.layers.conv import Conv2D
from minicnn.layers.dense import Dense
from minicnn.layers.pooling import (
    AvgPool2D,
    GlobalAvgPool2D,
    GlobalMaxPool2D,
    MaxPool2D,
    MinPool2D,
)
from minicnn.layers.reshape import Flatten
# random pooling
from minicnn.layers.random_pool import FractionalMaxPool2D, StochasticPool2D
# normalisation, regularisation, activations
from minicnn.layers.activations import GELU, LeakyReLU, Sigmoid, Tanh
from minicnn.layers.normalization import BatchNorm1D, BatchNorm2D
from minicnn.layers.regularization import Dropout, Dropout2D
# pooling family: LP, adaptive and spatial pyramid pooling
from minicnn.layers.adaptive_pool import AdaptiveAvgPool2D, AdaptiveMaxPool2D, SpatialPyramidPool2D
from minicnn.layers.lp_pool import LPPool2D
# anti-aliased and learned max/average pooling
from minicnn.layers.blurpool import BlurPool2D, MaxBlurPool2D
from minicnn.layers.mixpool import GatedPool2D, MixedPool2D

__all__ = [
    "Layer", "Conv2D", "Dense", "ReLU", "Softmax", "Flatten",
    "MaxPool2D", "AvgPool2D", "MinPool2D", "GlobalAvgPool2D", "GlobalMaxPool2D",
    # random pooling
    "FractionalMaxPool2D", "StochasticPool2D",
    # normalisation, regularisation, activations
    "BatchNorm2D", "BatchNorm1D", "Dropout", "Dropout2D", "LeakyReLU", "Tanh", "Sigmoid", "GELU",
    # pooling family: LP, adaptive and spatial pyramid pooling
    "LPPool2D", "AdaptiveAvgPool2D", "AdaptiveMaxPool2D", "SpatialPyramidPool2D",
    # anti-aliased and learned max/average pooling
    "BlurPool2D", "MaxBlurPool2D", "MixedPool2D", "GatedPool2D",
]
