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
# pool-b: anti-aliased and learned max/average pooling
from minicnn.layers.blurpool import BlurPool2D, MaxBlurPool2D
from minicnn.layers.mixpool import GatedPool2D, MixedPool2D

__all__ = [
    "Layer", "Conv2D", "Dense", "ReLU", "Softmax", "Flatten",
    "MaxPool2D", "AvgPool2D", "MinPool2D", "GlobalAvgPool2D", "GlobalMaxPool2D",
    # pool-b: anti-aliased and learned max/average pooling
    "BlurPool2D", "MaxBlurPool2D", "MixedPool2D", "GatedPool2D",
]
