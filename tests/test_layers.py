"""Every layer: numerical gradients, forward values, dtypes, and bad input.

Gradient checks run in float64 with central differences on the scalar
``loss = sum(layer.forward(x) * r)`` for a fixed random ``r``, for the input
and for every parameter.
"""
from __future__ import annotations

import numpy as np
import pytest

import minicnn.layers as L
import reference as ref
from reference import assert_close

EPS = 1e-6
MAX_RELATIVE_ERROR = 1e-6


def smooth(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def away_from_zero(shape, seed=0):
    """Values in +-[0.1, 1]: ReLU's kink at 0 is never within EPS of an input."""
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 1.0, size=shape)


def distinct(shape, seed=0):
    """All different, at least 0.01 apart: no ties, so max/min pooling is smooth within EPS."""
    rng = np.random.default_rng(seed)
    return (rng.permutation(int(np.prod(shape))) - np.prod(shape) / 2).reshape(shape) * 0.01


def randomize_params(layer, seed=7):
    """Non-zero biases too, so a bias that is ignored or misplaced shows."""
    rng = np.random.default_rng(seed)
    for p in layer.params.values():
        p[...] = rng.standard_normal(p.shape)
    return layer


# name -> (make layer, make input); every layer of minicnn.layers is here.
GRAD_CASES = {
    "Conv2D stride pad rect": (lambda: L.Conv2D(3, 4, (3, 2), stride=(2, 1), padding=(1, 2), dtype=np.float64),
                               lambda: smooth((2, 3, 7, 6))),
    "Conv2D plain": (lambda: L.Conv2D(2, 3, 3, dtype=np.float64), lambda: smooth((2, 2, 5, 5))),
    "Conv2D 1x1 stride 2": (lambda: L.Conv2D(3, 2, 1, stride=2, dtype=np.float64), lambda: smooth((1, 3, 5, 4))),
    "Conv2D big pad": (lambda: L.Conv2D(1, 2, (2, 3), stride=(1, 2), padding=(2, 3), dtype=np.float64),
                       lambda: smooth((2, 1, 3, 4))),
    "Dense": (lambda: L.Dense(5, 4, dtype=np.float64), lambda: smooth((3, 5))),
    "ReLU 4d": (L.ReLU, lambda: away_from_zero((2, 3, 4, 5))),
    "ReLU 2d": (L.ReLU, lambda: away_from_zero((4, 6))),
    "Softmax": (L.Softmax, lambda: smooth((3, 6))),
    "Flatten": (L.Flatten, lambda: smooth((2, 3, 4, 5))),
    "MaxPool2D 2": (lambda: L.MaxPool2D(2), lambda: distinct((1, 2, 6, 7))),
    "MaxPool2D 3/2 pad 1": (lambda: L.MaxPool2D(3, 2, 1), lambda: distinct((1, 2, 7, 6))),
    "MaxPool2D rect overlap": (lambda: L.MaxPool2D((3, 2), (1, 2), (1, 1)), lambda: distinct((1, 2, 5, 7))),
    "MinPool2D 3/1 pad 1": (lambda: L.MinPool2D(3, 1, 1), lambda: distinct((2, 1, 5, 6))),
    "MinPool2D 2": (lambda: L.MinPool2D(2), lambda: distinct((1, 2, 6, 6))),
    "AvgPool2D 3/2 pad 1": (lambda: L.AvgPool2D(3, 2, 1), lambda: smooth((1, 2, 7, 6))),
    "AvgPool2D count_include_pad=False": (
        lambda: L.AvgPool2D((3, 2), (2, 1), (1, 1), count_include_pad=False),
        lambda: smooth((2, 1, 6, 5))),
    "AvgPool2D 2": (lambda: L.AvgPool2D(2), lambda: smooth((1, 2, 6, 6))),
    "GlobalAvgPool2D": (L.GlobalAvgPool2D, lambda: smooth((2, 2, 3, 4))),
    "GlobalMaxPool2D": (L.GlobalMaxPool2D, lambda: distinct((2, 2, 3, 4))),
    # random pooling (their rng reset before every forward: hold_random)
    "FractionalMaxPool2D ratio": (lambda: L.FractionalMaxPool2D((3, 2), output_ratio=(0.6, 0.7)),
                                  lambda: distinct((2, 2, 9, 8))),
    "StochasticPool2D 3/2": (lambda: L.StochasticPool2D(3, 2), lambda: distinct((1, 2, 7, 8))),
    # normalisation, regularisation, activations
    "BatchNorm2D": (lambda: L.BatchNorm2D(3), lambda: smooth((3, 3, 2, 3)) * 2 + 1),
    "BatchNorm2D no affine": (lambda: L.BatchNorm2D(2, affine=False), lambda: smooth((2, 2, 3, 2))),
    "BatchNorm1D": (lambda: L.BatchNorm1D(4, momentum=0.3, eps=1e-3), lambda: smooth((5, 4))),
    "BatchNorm1D (N, C, L)": (lambda: L.BatchNorm1D(2), lambda: smooth((3, 2, 4))),
    "Dropout": (lambda: L.Dropout(0.4), lambda: smooth((3, 2, 4, 5))),
    "Dropout2D": (lambda: L.Dropout2D(0.5), lambda: smooth((3, 4, 3, 2))),
    "LeakyReLU": (lambda: L.LeakyReLU(0.2), lambda: away_from_zero((2, 3, 4, 5))),
    "LeakyReLU negative slope": (lambda: L.LeakyReLU(-0.5), lambda: away_from_zero((3, 7))),
    "Tanh": (L.Tanh, lambda: smooth((2, 3, 4, 5))),
    "Sigmoid": (L.Sigmoid, lambda: smooth((4, 6)) * 3),
    "GELU": (L.GELU, lambda: smooth((2, 3, 4, 5)) * 2),
    "GELU tanh": (lambda: L.GELU("tanh"), lambda: smooth((3, 7)) * 2),
    # pooling family: LP, adaptive and spatial pyramid pooling
    "LPPool2D p=2": (lambda: L.LPPool2D(2, 2), lambda: smooth((1, 2, 6, 7))),
    "LPPool2D p=1 overlap": (lambda: L.LPPool2D(1, (3, 2), (1, 2)), lambda: away_from_zero((2, 1, 5, 7))),
    "LPPool2D p=3.5 rect": (lambda: L.LPPool2D(3.5, (2, 3), (2, 1)), lambda: away_from_zero((1, 2, 6, 7))),
    "LPPool2D p=0.7": (lambda: L.LPPool2D(0.7, 2), lambda: away_from_zero((1, 2, 4, 4))),
    "AdaptiveAvgPool2D non-dividing": (lambda: L.AdaptiveAvgPool2D((3, 4)), lambda: smooth((2, 2, 7, 6))),
    "AdaptiveMaxPool2D non-dividing": (lambda: L.AdaptiveMaxPool2D((4, 3)), lambda: distinct((2, 2, 9, 5))),
    "SpatialPyramidPool2D max": (lambda: L.SpatialPyramidPool2D((1, 2, 4)), lambda: distinct((2, 2, 7, 9))),
    "SpatialPyramidPool2D avg": (lambda: L.SpatialPyramidPool2D((3, 1), "avg"), lambda: smooth((1, 3, 5, 7))),
    # anti-aliased and learned max/average pooling
    "BlurPool2D 3/2": (lambda: L.BlurPool2D(3, 2), lambda: smooth((2, 2, 5, 6))),
    "BlurPool2D 4 rect stride": (lambda: L.BlurPool2D(4, (1, 2)), lambda: smooth((1, 2, 4, 5))),
    "MaxBlurPool2D 2, 3/2": (lambda: L.MaxBlurPool2D(2, 3, 2), lambda: distinct((2, 2, 6, 7))),
    "MaxBlurPool2D rect": (lambda: L.MaxBlurPool2D((3, 2), 5, (2, 1)), lambda: distinct((1, 2, 7, 6))),
    "MixedPool2D 2": (lambda: L.MixedPool2D(2), lambda: distinct((2, 2, 6, 7))),
    "MixedPool2D rect overlap": (lambda: L.MixedPool2D((3, 2), (1, 2)), lambda: distinct((1, 2, 5, 7))),
    "GatedPool2D 2": (lambda: L.GatedPool2D(2), lambda: distinct((2, 2, 6, 7))),
    "GatedPool2D rect overlap": (lambda: L.GatedPool2D((2, 3), 1), lambda: distinct((1, 2, 5, 6))),
}


def hold_random(layer):
    """A layer that draws random numbers draws the same ones at every forward."""
    if getattr(layer, "draws_random", False):
        layer.rng = np.random.default_rng(0)


def numerical_gradient(loss, a):
    """d loss / d a by central differences, perturbing ``a`` in place."""
    grad = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + EPS
        plus = loss()
        a[idx] = old - EPS
        minus = loss()
        a[idx] = old
        grad[idx] = (plus - minus) / (2 * EPS)
    return grad


def relative_error(analytic, numeric):
    scale = max(np.abs(analytic).max(), np.abs(numeric).max())
    assert scale > 1e-3, "the gradient is (nearly) zero: this check would prove nothing"
    return np.abs(analytic - numeric).max() / scale


@pytest.mark.parametrize("name", GRAD_CASES)
def test_numerical_gradient(name):
    make_layer, make_x = GRAD_CASES[name]
    layer = randomize_params(make_layer())
    x = make_x()
    hold_random(layer)
    y = layer.forward(x)
    r = np.random.default_rng(1).standard_normal(y.shape)

    def loss():
        hold_random(layer)
        return float(np.sum(layer.forward(x) * r))

    hold_random(layer)
    y = layer.forward(x)
    dx = layer.backward(r)
    grads = {k: g.copy() for k, g in layer.grads.items()}
    assert dx.shape == x.shape and dx.dtype == np.float64
    assert relative_error(dx, numerical_gradient(loss, x)) < MAX_RELATIVE_ERROR

    assert set(grads) == set(layer.params)
    for key, param in layer.params.items():
        assert grads[key].shape == param.shape
        assert relative_error(grads[key], numerical_gradient(loss, param)) < MAX_RELATIVE_ERROR, key


def test_every_layer_has_a_gradient_check():
    checked = {name.split()[0] for name in GRAD_CASES}
    assert checked == set(L.__all__) - {"Layer"}


def test_parameter_keys():
    assert set(L.Conv2D(2, 3, 3).params) == {"W", "b"}
    assert set(L.Dense(2, 3).params) == {"W", "b"}
    for make in [L.ReLU, L.Softmax, L.Flatten, L.GlobalAvgPool2D, L.GlobalMaxPool2D,
                 lambda: L.MaxPool2D(2), lambda: L.MinPool2D(2), lambda: L.AvgPool2D(2)]:
        layer = make()
        assert layer.params == {} and layer.grads == {}


# ------------------------------------------------------ forward values --

CONV_CASES = [
    # (N, C, H, W), O, kernel, stride, padding
    ((2, 3, 7, 6), 4, (3, 2), (2, 1), (1, 2)),
    ((1, 1, 5, 5), 1, 3, 1, 0),
    ((2, 2, 6, 6), 3, 3, 1, 1),
    ((2, 3, 5, 4), 2, 1, 2, 0),
    ((1, 2, 3, 4), 2, (2, 3), (1, 2), (2, 3)),
    ((2, 1, 4, 4), 2, 4, 1, 0),
    ((1, 2, 9, 8), 3, 5, 3, 2),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, out_channels, kernel, stride, padding", CONV_CASES)
def test_conv2d_forward_matches_reference(shape, out_channels, kernel, stride, padding, dtype):
    layer = randomize_params(L.Conv2D(shape[1], out_channels, kernel, stride, padding, dtype=np.float64))
    x = smooth(shape).astype(dtype)
    y = layer.forward(x)
    expected = ref.conv2d_forward(x, layer.params["W"], layer.params["b"], stride, padding)
    assert y.shape[1:] == layer.output_shape(shape[1:])
    assert_close(y, expected, dtype)


def test_conv2d_hand_value():
    layer = L.Conv2D(1, 1, 2, padding=1, dtype=np.float64)
    layer.params["W"][...] = [[[[1.0, 2.0], [3.0, 4.0]]]]
    layer.params["b"][...] = 0.5
    y = layer.forward(np.array([[[[1.0, 10.0]]]]))          # 1x2 image -> 2x3 output
    np.testing.assert_allclose(y[0, 0], [[4 + 0.5, 40 + 3 + 0.5, 30 + 0.5],
                                         [2 + 0.5, 20 + 1 + 0.5, 10 + 0.5]], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_forward_matches_reference(dtype):
    layer = randomize_params(L.Dense(5, 3, dtype=np.float64))
    x = smooth((4, 5)).astype(dtype)
    assert_close(layer.forward(x), ref.dense_forward(x, layer.params["W"], layer.params["b"]), dtype)


def test_relu_softmax_flatten_values():
    x = np.array([[-2.0, -0.0, 0.5, 3.0]])
    np.testing.assert_array_equal(L.ReLU().forward(x), [[0, 0, 0.5, 3]])
    y = L.Softmax().forward(x)
    np.testing.assert_allclose(y, np.exp(x) / np.exp(x).sum(), rtol=1e-14)
    big = np.array([[1000.0, 1000.0, -1000.0], [-1e4, 0.0, 1e4]])
    y = L.Softmax().forward(big)                             # stable: no overflow, no NaN
    np.testing.assert_allclose(y, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], atol=1e-15)
    x = smooth((2, 3, 4, 5))
    np.testing.assert_array_equal(L.Flatten().forward(x), x.reshape(2, 60))


# ------------------------------------------------- parameters and dtype --

def test_rng_and_dtype_keywords():
    a = L.Conv2D(2, 3, 3, rng=np.random.default_rng(5), dtype=np.float64)
    b = L.Conv2D(2, 3, 3, rng=np.random.default_rng(5), dtype=np.float64)
    c = L.Conv2D(2, 3, 3, rng=np.random.default_rng(6), dtype=np.float64)
    np.testing.assert_array_equal(a.params["W"], b.params["W"])
    assert not np.array_equal(a.params["W"], c.params["W"])
    d = L.Dense(4, 2, rng=np.random.default_rng(5), dtype=np.float64)
    e = L.Dense(4, 2, rng=np.random.default_rng(6), dtype=np.float64)
    assert not np.array_equal(d.params["W"], e.params["W"])
    for layer in [L.Conv2D(2, 3, 3, dtype=np.float32), L.Dense(4, 2, dtype=np.float32)]:
        for key in ("W", "b"):
            assert layer.params[key].dtype == layer.grads[key].dtype == np.float32
            assert layer.grads[key].shape == layer.params[key].shape


def test_params_are_used_in_place():
    """The optimizer updates params in place: the layer must see the change."""
    conv, dense = L.Conv2D(1, 1, 1, dtype=np.float64), L.Dense(1, 1, dtype=np.float64)
    for layer, x in [(conv, np.ones((1, 1, 2, 2))), (dense, np.ones((1, 1)))]:
        layer.params["W"] *= 0
        layer.params["W"] += 2.0
        layer.params["b"] += 0.25
        np.testing.assert_allclose(layer.forward(x), 2.25 * np.ones_like(layer.forward(x)), rtol=1e-15)


def test_grads_are_overwritten_not_accumulated():
    layer = randomize_params(L.Conv2D(2, 2, 3, padding=1, dtype=np.float64))
    x = smooth((2, 2, 4, 4))
    dy = smooth(layer.forward(x).shape, seed=3)
    layer.backward(dy)
    first = {k: g.copy() for k, g in layer.grads.items()}
    layer.forward(x)
    layer.backward(dy)
    for k in first:
        np.testing.assert_allclose(layer.grads[k], first[k], rtol=1e-14)


# A layer and a valid input shape for it, for the dtype and bad-input tests.
LAYERS = {
    "Conv2D": (lambda: L.Conv2D(2, 3, 3, stride=(1, 2), padding=1, dtype=np.float64), (2, 2, 6, 7)),
    "Dense": (lambda: L.Dense(6, 4, dtype=np.float64), (3, 6)),
    "ReLU": (L.ReLU, (2, 3, 4, 5)),
    "Softmax": (L.Softmax, (3, 5)),
    "Flatten": (L.Flatten, (2, 3, 4, 5)),
    "MaxPool2D": (lambda: L.MaxPool2D(3, 2, 1), (2, 2, 7, 6)),
    "MinPool2D": (lambda: L.MinPool2D((2, 3), (2, 1)), (2, 2, 7, 6)),
    "AvgPool2D": (lambda: L.AvgPool2D(3, 2, 1, count_include_pad=False), (2, 2, 7, 6)),
    "GlobalAvgPool2D": (L.GlobalAvgPool2D, (2, 3, 4, 5)),
    "GlobalMaxPool2D": (L.GlobalMaxPool2D, (2, 3, 4, 5)),
    # random pooling: a seeded rng, so that every fresh layer draws the same
    "FractionalMaxPool2D": (lambda: L.FractionalMaxPool2D(3, output_ratio=0.6, rng=np.random.default_rng(0)),
                            (2, 2, 7, 6)),
    "StochasticPool2D": (lambda: L.StochasticPool2D((2, 3), (2, 1), rng=np.random.default_rng(0)), (2, 2, 7, 6)),
    # normalisation, regularisation, activations (random layers with a fixed generator)
    "BatchNorm2D": (lambda: L.BatchNorm2D(2), (3, 2, 4, 5)),
    "BatchNorm1D": (lambda: L.BatchNorm1D(6), (3, 6)),
    "Dropout": (lambda: L.Dropout(0.3, rng=np.random.default_rng(3)), (2, 3, 4, 5)),
    "Dropout2D": (lambda: L.Dropout2D(0.5, rng=np.random.default_rng(3)), (2, 6, 4, 5)),
    "LeakyReLU": (L.LeakyReLU, (2, 3, 4, 5)),
    "Tanh": (L.Tanh, (2, 3, 4, 5)),
    "Sigmoid": (L.Sigmoid, (3, 5)),
    "GELU": (L.GELU, (2, 3, 4, 5)),
    # pooling family: LP, adaptive and spatial pyramid pooling
    "LPPool2D": (lambda: L.LPPool2D(3, (3, 2), (2, 1)), (2, 2, 7, 6)),
    "AdaptiveAvgPool2D": (lambda: L.AdaptiveAvgPool2D((3, 4)), (2, 2, 7, 6)),
    "AdaptiveMaxPool2D": (lambda: L.AdaptiveMaxPool2D((4, 3)), (2, 2, 7, 6)),
    "SpatialPyramidPool2D": (lambda: L.SpatialPyramidPool2D((1, 2, 4), "avg"), (2, 2, 7, 6)),
    # anti-aliased and learned max/average pooling
    "BlurPool2D": (lambda: L.BlurPool2D(3, (2, 1)), (2, 2, 7, 6)),
    "MaxBlurPool2D": (lambda: L.MaxBlurPool2D((2, 3), 3, 2), (2, 2, 7, 6)),
    "MixedPool2D": (lambda: L.MixedPool2D(3, 2), (2, 2, 7, 6)),
    "GatedPool2D": (lambda: L.GatedPool2D((2, 3), 1), (2, 2, 7, 6)),
}
NAMES = list(LAYERS)


def test_every_layer_is_in_the_bad_input_table():
    assert set(LAYERS) == set(L.__all__) - {"Layer"}


def forward_backward(name, x, dy=None, seed=1):
    """Run a fresh layer (deterministic init) on x; dy defaults to a random one."""
    make, _ = LAYERS[name]
    layer = randomize_params(make())
    y = layer.forward(x)
    if dy is None:
        dy = np.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)
    return y, layer.backward(dy), dy


@pytest.mark.parametrize("name", NAMES)
def test_float32_in_float32_out(name):
    shape = LAYERS[name][1]
    x64 = distinct(shape) if "Pool" in name else away_from_zero(shape)
    x32 = x64.astype(np.float32)
    y32, dx32, dy32 = forward_backward(name, x32)
    assert y32.dtype == dx32.dtype == np.float32
    y64, dx64, _ = forward_backward(name, x32.astype(np.float64), dy32.astype(np.float64))
    assert_close(y32, y64, np.float32)
    assert_close(dx32, dx64, np.float32)


# ------------------------------------------------------------ bad input --

WRONG_NDIM = {
    "Conv2D": [(2, 6, 7), (1, 2, 2, 6, 7)],
    "Dense": [(6,), (3, 6, 1)],
    "ReLU": [()],
    "Softmax": [(5,), (3, 5, 1)],
    "Flatten": [(), (6,)],
    "MaxPool2D": [(2, 7, 6), (1, 2, 2, 7, 6)],
    "MinPool2D": [(2, 7, 6), (2, 2, 1, 7, 6)],
    "AvgPool2D": [(7, 6), (1, 2, 2, 7, 6)],
    "GlobalAvgPool2D": [(3, 4, 5), (1, 2, 3, 4, 5)],
    "GlobalMaxPool2D": [(4, 5), (1, 2, 3, 4, 5)],
    # random pooling
    "FractionalMaxPool2D": [(2, 7, 6), (1, 2, 2, 7, 6)],
    "StochasticPool2D": [(2, 7, 6), (1, 2, 2, 7, 6)],
    # normalisation, regularisation, activations
    "BatchNorm2D": [(3, 2, 4), (1, 3, 2, 4, 5)],
    "BatchNorm1D": [(6,), (3, 6, 1, 1)],
    "Dropout": [()],
    "Dropout2D": [(2, 6, 4), (1, 2, 6, 4, 5)],
    "LeakyReLU": [()],
    "Tanh": [()],
    "Sigmoid": [()],
    "GELU": [()],
    # pooling family: LP, adaptive and spatial pyramid pooling
    "LPPool2D": [(2, 7, 6), (1, 2, 2, 7, 6)],
    "AdaptiveAvgPool2D": [(7, 6), (1, 2, 2, 7, 6)],
    "AdaptiveMaxPool2D": [(2, 7, 6), (2, 2, 1, 7, 6)],
    "SpatialPyramidPool2D": [(2, 7, 6), (1, 2, 2, 7, 6)],
    # anti-aliased and learned max/average pooling
    "BlurPool2D": [(2, 7, 6), (1, 2, 2, 7, 6)],
    "MaxBlurPool2D": [(7, 6), (1, 2, 2, 7, 6)],
    "MixedPool2D": [(2, 7, 6), (1, 2, 2, 7, 6)],
    "GatedPool2D": [(2, 7, 6), (1, 2, 2, 7, 6)],
}


@pytest.mark.parametrize("name", NAMES)
def test_wrong_ndim_is_value_error(name):
    for shape in WRONG_NDIM[name]:
        with pytest.raises(ValueError, match=name):
            LAYERS[name][0]().forward(np.zeros(shape))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.float16, np.longdouble, bool,
                                   object, np.complex128, np.complex64])
@pytest.mark.parametrize("name", NAMES)
def test_wrong_dtype_is_type_error(name, dtype):
    make, shape = LAYERS[name]
    with pytest.raises(TypeError, match=name):
        make().forward(np.ones(shape, dtype=dtype))


@pytest.mark.parametrize("name", NAMES)
def test_not_an_array_is_type_error(name):
    make, shape = LAYERS[name]
    with pytest.raises(TypeError, match=name):
        make().forward(np.zeros(shape).tolist())


def non_contiguous_versions(a):
    """Views with a's values: strided, transposed (Fortran order), reversed."""
    strided = np.repeat(a, 2, axis=-1)[..., ::2]
    fortran = np.asfortranarray(a)
    reversed_ = np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    views = {"strided": strided, "fortran": fortran, "reversed": reversed_}
    if a.ndim >= 2:
        views["transposed"] = np.ascontiguousarray(np.swapaxes(a, 0, 1)).swapaxes(0, 1)
    for view in views.values():
        np.testing.assert_array_equal(view, a)
        assert view.ndim < 2 or not view.flags.c_contiguous
    return views


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_non_contiguous_input_same_as_copy(name, dtype):
    shape = LAYERS[name][1]
    x = (distinct(shape) if "Pool" in name else away_from_zero(shape)).astype(dtype)
    y, dx, dy = forward_backward(name, x)
    x_views, dy_views = non_contiguous_versions(x), non_contiguous_versions(dy)
    for how in x_views:
        for x_view, dy_view in [(x_views[how], dy), (x, dy_views[how]), (x_views[how], dy_views[how])]:
            y2, dx2, _ = forward_backward(name, x_view, dy_view)
            assert_close(y2, y, dtype)
            assert_close(dx2, dx, dtype)


@pytest.mark.parametrize("name", NAMES)
def test_backward_before_forward_is_runtime_error(name):
    make, shape = LAYERS[name]
    layer = make()
    y = layer.forward(np.ones(shape), training=False)
    with pytest.raises(RuntimeError, match=name):
        make().backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match=name):       # forward(training=False) keeps nothing
        layer.backward(np.ones_like(y))


@pytest.mark.parametrize("name", NAMES)
def test_wrong_gradient_is_rejected(name):
    make, shape = LAYERS[name]
    layer = make()
    y = layer.forward(np.ones(shape))
    for bad_shape in [(y.shape[0] + 1, *y.shape[1:]), (*y.shape[:-1], y.shape[-1] + 1),
                      y.shape[:-1], (*y.shape, 1)]:
        with pytest.raises(ValueError, match=name):
            layer.backward(np.ones(bad_shape))
    with pytest.raises(TypeError, match=name):
        layer.backward(np.ones(y.shape, dtype=np.int64))
    fresh = make()                                       # the refusals changed nothing:
    fresh.forward(np.ones(shape))
    np.testing.assert_array_equal(layer.backward(np.ones(y.shape)), fresh.backward(np.ones(y.shape)))
    for key in layer.grads:
        np.testing.assert_array_equal(layer.grads[key], fresh.grads[key])


POOLS = ["MaxPool2D", "MinPool2D", "AvgPool2D"]


@pytest.mark.parametrize("name", POOLS)
@pytest.mark.parametrize("kwargs, number", [
    (dict(kernel_size=0), "0"), (dict(kernel_size=-3), "-3"), (dict(kernel_size=(2, 0)), "0"),
    (dict(kernel_size=2, stride=0), "0"), (dict(kernel_size=2, stride=(1, -2)), "-2"),
    (dict(kernel_size=2, padding=-1), "-1"), (dict(kernel_size=(3, 3), padding=(0, -1)), "-1"),
    (dict(kernel_size=2, padding=2), "2"), (dict(kernel_size=3, padding=2), "2"),
    (dict(kernel_size=(4, 1), padding=(0, 1)), "1"), (dict(kernel_size=1, padding=1), "1"),
], ids=lambda v: repr(v) if isinstance(v, dict) else None)
def test_impossible_pool_window_is_value_error(name, kwargs, number):
    with pytest.raises(ValueError, match=name) as info:
        getattr(L, name)(**kwargs)
    assert number in str(info.value)


@pytest.mark.parametrize("name", POOLS + ["Conv2D"])
@pytest.mark.parametrize("kwargs, shape", [
    (dict(kernel_size=3), (1, 1, 2, 2)),
    (dict(kernel_size=3), (1, 1, 5, 2)),
    (dict(kernel_size=(1, 5), padding=(0, 1)), (1, 1, 4, 2)),
    (dict(kernel_size=(7, 1), padding=(3, 0)), (2, 1, 0, 3)),
])
def test_window_larger_than_input_is_value_error(name, kwargs, shape):
    layer = L.Conv2D(1, 1, **kwargs) if name == "Conv2D" else getattr(L, name)(**kwargs)
    with pytest.raises(ValueError, match=name):
        layer.forward(np.zeros(shape))
    with pytest.raises(ValueError, match=name):
        layer.output_shape(shape[1:])


@pytest.mark.parametrize("kwargs", [dict(kernel_size=0), dict(kernel_size=(3, -1)),
                                    dict(kernel_size=3, stride=0), dict(kernel_size=3, stride=(1, -1)),
                                    dict(kernel_size=3, padding=-1), dict(kernel_size=3, padding=(0, -2))])
def test_impossible_conv_geometry_is_value_error(kwargs):
    with pytest.raises(ValueError, match="Conv2D"):
        L.Conv2D(2, 3, **kwargs)


def test_conv_and_dense_reject_wrong_feature_count():
    with pytest.raises(ValueError, match="Conv2D"):
        L.Conv2D(3, 2, 3).forward(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match="Dense"):
        L.Dense(4, 2).forward(np.zeros((2, 5)))


# One rule for counts as for window sizes: a value of the wrong type is a
# TypeError, a value out of range a ValueError (layers.base.count and pair).
BAD_COUNTS = [(0, ValueError), (-1, ValueError), (2.0, TypeError), (True, TypeError), ("3", TypeError)]


@pytest.mark.parametrize("bad, error", BAD_COUNTS)
def test_dense_counts_follow_the_rule(bad, error):
    with pytest.raises(error, match="Dense: in_features"):
        L.Dense(bad, 2)
    with pytest.raises(error, match="Dense: out_features"):
        L.Dense(3, bad)


def test_conv_counts_follow_the_rule():
    for bad, error in BAD_COUNTS:
        with pytest.raises(error, match="Conv2D"):
            L.Conv2D(bad, 2, 3)
        with pytest.raises(error, match="Conv2D"):
            L.Conv2D(3, bad, 3)


@pytest.mark.parametrize("name", ["GlobalAvgPool2D", "GlobalMaxPool2D"])
@pytest.mark.parametrize("shape", [(2, 3, 0, 4), (2, 3, 4, 0)])
def test_global_pool_rejects_empty_map(name, shape):
    with pytest.raises(ValueError, match=name):
        getattr(L, name)().forward(np.zeros(shape))


@pytest.mark.parametrize("name", POOLS)
@pytest.mark.parametrize("bad", [2.0, "2", None, (2, 2, 2), True])
def test_non_integer_window_is_type_error(name, bad):
    with pytest.raises(TypeError, match=name):
        getattr(L, name)(bad)
