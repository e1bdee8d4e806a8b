"""LPPool2D, AdaptiveAvgPool2D, AdaptiveMaxPool2D and SpatialPyramidPool2D against slow
NumPy references (below) and PyTorch.

The references loop over windows and bins in plain Python, in float64;
comparisons go through ``reference.assert_close`` (float64 to 1e-12, float32
to rtol 1e-5 / atol 1e-6).  Float64 numerical gradient checks of these layers
are in tests/test_layers.py (GRAD_CASES).
"""
from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
import yaml

import minicnn.layers as L
import reference as ref
from minicnn import threads
from minicnn.config import load_config
from minicnn.errors import ConfigError
from reference import assert_close

DTYPES = [np.float32, np.float64]
CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"


# ------------------------------------------------------------ references --

def lp_forward(x, p, kernel_size, stride=None):
    """(sum over the window of |x|^p)^(1/p), directly in float64."""
    stride = kernel_size if stride is None else stride
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    y = ref._output(x, kernel_size, stride, 0)
    for n in range(N):
        for c in range(C):
            for oh, ow, cells in ref.windows(H, W, kernel_size, stride, 0):
                y[n, c, oh, ow] = sum(abs(x[n, c, i, j]) ** p for i, j in cells) ** (1 / p)
    return y


def lp_backward(x, dy, p, kernel_size, stride=None):
    """dx_i = sum over windows of dy * sign(x_i) * (|x_i| / y)^(p - 1); 0 where x_i = 0."""
    stride = kernel_size if stride is None else stride
    x = np.asarray(x, dtype=np.float64)
    y = lp_forward(x, p, kernel_size, stride)
    N, C, H, W = x.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for oh, ow, cells in ref.windows(H, W, kernel_size, stride, 0):
                for i, j in cells:
                    v = x[n, c, i, j]
                    if v != 0:
                        dx[n, c, i, j] += dy[n, c, oh, ow] * np.sign(v) * (abs(v) / y[n, c, oh, ow]) ** (p - 1)
    return dx


def bins(size, out):
    """PyTorch's rule: bin i covers floor(i * size / out) .. ceil((i + 1) * size / out) - 1."""
    return [(math.floor(i * size / out), math.ceil((i + 1) * size / out)) for i in range(out)]


def adaptive_cells(H, W, output_size):
    """Yield (oh, ow, cells) per bin, cells in row-major order."""
    oh_n, ow_n = (output_size, output_size) if isinstance(output_size, int) else output_size
    for oh, (hs, he) in enumerate(bins(H, oh_n)):
        for ow, (ws, we) in enumerate(bins(W, ow_n)):
            yield oh, ow, [(i, j) for i in range(hs, he) for j in range(ws, we)]


def adaptive_forward(x, output_size, mode):
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    oh_n, ow_n = (output_size, output_size) if isinstance(output_size, int) else output_size
    y = np.zeros((N, C, oh_n, ow_n))
    for n in range(N):
        for c in range(C):
            for oh, ow, cells in adaptive_cells(H, W, output_size):
                values = [x[n, c, i, j] for i, j in cells]
                y[n, c, oh, ow] = values[ref._chosen_cell(values, False)] if mode == "max" else sum(values) / len(values)
    return y


def adaptive_backward(x, dy, output_size, mode):
    """Max: all of dy to the chosen element (first maximum, last NaN); avg: dy / bin size to each."""
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for oh, ow, cells in adaptive_cells(H, W, output_size):
                if mode == "max":
                    i, j = cells[ref._chosen_cell([x[n, c, i, j] for i, j in cells], False)]
                    dx[n, c, i, j] += dy[n, c, oh, ow]
                else:
                    for i, j in cells:
                        dx[n, c, i, j] += dy[n, c, oh, ow] / len(cells)
    return dx


def spp_forward(x, levels, mode):
    n = x.shape[0]
    return np.concatenate([adaptive_forward(x, level, mode).reshape(n, -1) for level in levels], axis=1)


def spp_backward(x, dy, levels, mode):
    n, c = x.shape[:2]
    dx, start = np.zeros(x.shape), 0
    for level in levels:
        size = c * level * level
        dx += adaptive_backward(x, dy[:, start:start + size].reshape(n, c, level, level), level, mode)
        start += size
    return dx


def test_the_bin_rule_by_hand():
    assert bins(7, 3) == [(0, 3), (2, 5), (4, 7)]           # overlapping: 7 / 3 does not divide
    assert bins(5, 2) == [(0, 3), (2, 5)]
    assert bins(4, 2) == [(0, 2), (2, 4)]
    assert bins(3, 3) == [(0, 1), (1, 2), (2, 3)]
    assert bins(10, 4) == [(0, 3), (2, 5), (5, 8), (7, 10)]
    x = np.arange(5.0).reshape(1, 1, 1, 5)
    np.testing.assert_array_equal(L.AdaptiveAvgPool2D((1, 2)).forward(x), [[[[1.0, 3.0]]]])
    np.testing.assert_array_equal(L.AdaptiveMaxPool2D((1, 2)).forward(x), [[[[2.0, 4.0]]]])


# ------------------------------------------------------------ helpers --

def random_input(shape, dtype, seed=0, kind="normal"):
    rng = np.random.default_rng(seed)
    if kind == "ties":
        x = rng.integers(-1, 2, size=shape).astype(np.float64)
    elif kind == "nonnegative":
        x = np.abs(rng.standard_normal(shape)) + 0.05
    else:
        x = rng.standard_normal(shape)
    return x.astype(dtype)


def run(layer, x, seed=1):
    """Forward, then backward of a random dy; checks the inputs were left alone."""
    x_copy = x.copy()
    y = layer.forward(x)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    dy_copy = dy.copy()
    dx = layer.backward(dy)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dy, dy_copy)
    assert y.dtype == dx.dtype == x.dtype and dx.shape == x.shape
    assert y.shape[1:] == layer.output_shape(x.shape[1:])
    return y, dy, dx


def random_lp_case(seed):
    rng = np.random.default_rng(seed)
    kh, kw = (int(v) for v in rng.integers(1, 5, size=2))
    sh, sw = (int(v) for v in rng.integers(1, 4, size=2))
    h, w = int(rng.integers(kh, kh + 8)), int(rng.integers(kw, kw + 8))
    stride = None if rng.random() < 0.25 else (sh, sw)
    return (int(rng.integers(1, 3)), int(rng.integers(1, 4)), h, w), (kh, kw), stride


LP_CASES = [((2, 3, 8, 8), 2, None), ((1, 2, 7, 9), 3, 2), ((2, 2, 9, 7), (3, 2), (2, 1)),
            ((1, 2, 5, 8), (2, 4), (1, 3)), ((2, 1, 5, 5), 5, None), ((1, 2, 6, 1), (3, 1), 1)]
LP_CASES += [random_lp_case(seed) for seed in range(10)]


# ------------------------------------------------------------ LPPool2D --

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2, 3, 3.5, 0.5, 7])
@pytest.mark.parametrize("shape, kernel, stride", LP_CASES)
def test_lp_pool_matches_reference(shape, kernel, stride, p, dtype):
    x = random_input(shape, dtype, seed=len(shape) + int(p * 10))   # signed: the layer pools |x|
    x.flat[::7] = 0                                                  # zeros: gradient 0 there
    layer = L.LPPool2D(p, kernel, stride)
    y, dy, dx = run(layer, x)
    assert_close(y, lp_forward(x, p, kernel, stride), dtype)
    assert_close(dx, lp_backward(x, dy.astype(np.float64), p, kernel, stride), dtype)


def test_lp_pool_hand_values():
    x = np.array([[3.0, -4.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])[None, None]
    y, _, _ = run(L.LPPool2D(2, 2), x)
    np.testing.assert_allclose(y, [[[[5.0, 2.0]]]], rtol=1e-15)
    layer = L.LPPool2D(2, 2)
    layer.forward(x)
    dx = layer.backward(np.ones((1, 1, 1, 2)))
    np.testing.assert_allclose(dx[0, 0], [[0.6, -0.8, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]], rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lp_pool_with_p_1_is_sum_pooling(dtype):
    x = random_input((2, 3, 7, 6), dtype, kind="nonnegative")
    layer = L.LPPool2D(1, (3, 2), (2, 2))
    y, dy, dx = run(layer, x)
    assert_close(y, ref.avg_pool_forward(x, (3, 2), (2, 2)) * 6, dtype)
    assert_close(dx, ref.avg_pool_backward(x.shape, dy, (3, 2), (2, 2)) * 6, dtype)


@pytest.mark.parametrize("p", [1, 2, 3, 3.5, 0.5])
def test_lp_pool_all_zero_window_gives_zero_and_gradient_zero(p):
    x = np.zeros((1, 2, 4, 4))
    x[0, 1, 0, 0] = 2.0                                   # one window of plane 1 is not all zero
    layer = L.LPPool2D(p, 2)
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(y))
    assert np.isfinite(dx).all()
    np.testing.assert_array_equal(y[0, 0], 0)
    np.testing.assert_array_equal(dx[0, 0], 0)
    assert y[0, 1, 0, 0] == pytest.approx(2.0, rel=1e-14)
    assert dx[0, 1, 0, 0] == pytest.approx(1.0, rel=1e-14)
    np.testing.assert_array_equal(np.delete(dx[0, 1].ravel(), 0), 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lp_pool_signed_input_non_integer_p_gives_no_nan(dtype):
    x = random_input((2, 3, 6, 6), dtype)
    assert (x < 0).any()
    layer = L.LPPool2D(2.5, 2)
    y, _, dx = run(layer, x)
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    np.testing.assert_array_equal(y, L.LPPool2D(2.5, 2).forward(np.abs(x)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [50, 500.0, 1e4, 1e300])
def test_lp_pool_large_p_tends_to_max_pooling(p, dtype):
    x = random_input((2, 3, 6, 8), dtype)
    y = L.LPPool2D(p, 2).forward(x)
    m = ref.max_pool_forward(np.abs(x), 2)
    assert np.isfinite(y).all()
    # max |x| <= y <= max |x| * 4^(1/p): no overflow however large p is
    assert (y.astype(np.float64) >= m * (1 - 1e-6)).all()
    assert (y.astype(np.float64) <= m * 4 ** (1 / p) * (1 + 1e-6)).all()
    if p >= 1e4:
        np.testing.assert_allclose(y, m, rtol=2e-4)


def test_lp_pool_large_p_gradient_tends_to_max_pooling():
    rng = np.random.default_rng(4)
    x = rng.uniform(0.1, 0.8, size=(2, 2, 6, 6))
    x[:, :, ::2, ::2] = 1.0 + rng.uniform(0, 0.1, size=(2, 2, 3, 3))   # one clear maximum per window
    layer = L.LPPool2D(500, 2)
    layer.forward(x)
    dy = rng.standard_normal((2, 2, 3, 3))
    np.testing.assert_allclose(layer.backward(dy), ref.max_pool_backward(x, dy, 2), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [2, 3, 3.5, 40])
@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_lp_pool_tiny_and_huge_values_neither_overflow_nor_underflow(p, scale, dtype):
    # float32's range ends near 3e38 and 1e-45: 1e30^40 and 1e-30^40 are far past double's
    x = random_input((1, 2, 6, 6), np.float64, kind="nonnegative")
    big = (x * scale).astype(dtype)
    y = L.LPPool2D(p, 2).forward(big)
    expected = lp_forward(x, p, 2) * scale
    np.testing.assert_allclose(y.astype(np.float64), expected, rtol=2e-6 if dtype == np.float32 else 1e-12)
    if dtype == np.float64:
        huge = L.LPPool2D(p, 2).forward(x * 1e300)
        np.testing.assert_allclose(huge, lp_forward(x, p, 2) * 1e300, rtol=1e-12)


def test_lp_pool_inf_and_nan():
    x = np.array([[np.inf, 1.0, np.nan, 1.0, -np.inf, 0.0]])[None, None]
    y = L.LPPool2D(2, (1, 2)).forward(x)
    assert y[0, 0, 0, 0] == np.inf and np.isnan(y[0, 0, 0, 1]) and y[0, 0, 0, 2] == np.inf
    y = L.LPPool2D(1, (1, 2)).forward(x)
    assert y[0, 0, 0, 0] == np.inf and np.isnan(y[0, 0, 0, 1]) and y[0, 0, 0, 2] == np.inf


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2, 3, 3.5])
@pytest.mark.parametrize("shape, kernel, stride", [((2, 3, 8, 8), 2, None), ((2, 2, 9, 7), (3, 2), (2, 1)),
                                                   ((1, 2, 7, 10), 3, 1)])
def test_lp_pool_matches_torch_on_nonnegative_input(shape, kernel, stride, p, dtype):
    torch = pytest.importorskip("torch")
    x = random_input(shape, dtype, seed=3, kind="nonnegative")
    layer = L.LPPool2D(p, kernel, stride)
    y, dy, dx = run(layer, x)
    t = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.lp_pool2d(t, p, kernel, stride)
    ty.backward(torch.tensor(dy))
    assert_close(y, ty.detach().numpy(), dtype)
    assert_close(dx, t.grad.numpy(), dtype)


@pytest.mark.parametrize("bad, error, shown", [
    (0, ValueError, "0"), (-1, ValueError, "-1"), (-0.5, ValueError, "-0.5"), (float("nan"), ValueError, "nan"),
    (float("inf"), ValueError, "inf"), (10**400, ValueError, "1000"), ("2", TypeError, "'2'"),
    (True, TypeError, "True"), (None, TypeError, "None"), ([2], TypeError, "[2]"),
])
def test_lp_pool_refuses_bad_norm_type(bad, error, shown):
    with pytest.raises(error, match="LPPool2D: norm_type") as info:
        L.LPPool2D(bad, 2)
    assert shown in str(info.value)


def test_lp_pool_refuses_bad_windows():
    for kwargs in [dict(kernel_size=0), dict(kernel_size=2, stride=0), dict(kernel_size=(2, -1))]:
        with pytest.raises(ValueError, match="LPPool2D"):
            L.LPPool2D(2, **kwargs)
    with pytest.raises(TypeError, match="LPPool2D"):
        L.LPPool2D(2, 2.0)
    with pytest.raises(ValueError, match="LPPool2D.*does not fit the 2x5 input"):
        L.LPPool2D(2, 3).forward(np.zeros((1, 1, 2, 5)))


# ------------------------------------------------------------ adaptive pools --

def random_adaptive_case(seed):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 13, size=2))
    out = (int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1)))
    if out[0] == out[1] and rng.random() < 0.5:
        out = out[0]
    return (int(rng.integers(1, 3)), int(rng.integers(1, 4)), h, w), out


ADAPTIVE_CASES = [((2, 3, 8, 8), 4), ((2, 2, 7, 7), 3), ((1, 2, 10, 6), (4, 5)), ((2, 2, 5, 9), (2, 7)),
                  ((1, 3, 6, 6), 6), ((2, 2, 5, 4), 1), ((1, 1, 1, 1), 1), ((1, 2, 1, 9), (1, 4)),
                  ((2, 1, 13, 11), (5, 3)), ((1, 2, 28, 28), 14), ((1, 2, 14, 14), 7), ((1, 2, 7, 7), 4)]
ADAPTIVE_CASES += [random_adaptive_case(seed) for seed in range(16)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["normal", "ties"])
@pytest.mark.parametrize("shape, out", ADAPTIVE_CASES)
def test_adaptive_pools_match_reference(shape, out, kind, dtype):
    x = random_input(shape, dtype, seed=sum(shape), kind=kind)
    for layer, mode in [(L.AdaptiveMaxPool2D(out), "max"), (L.AdaptiveAvgPool2D(out), "avg")]:
        y, dy, dx = run(layer, x)
        assert_close(y, adaptive_forward(x, out, mode), dtype)
        assert_close(dx, adaptive_backward(x, dy, out, mode), dtype)


def test_adaptive_max_ties_first_in_row_major_order_and_nan_last():
    # one 2x3 bin: the maxima 5 at (0, 2) and (1, 0): row-major order picks (0, 2), not the first column
    x = np.array([[1.0, 0.0, 5.0], [5.0, 2.0, 5.0]])[None, None]
    layer = L.AdaptiveMaxPool2D(1)
    layer.forward(x)
    np.testing.assert_array_equal(layer.backward(np.ones((1, 1, 1, 1)))[0, 0], [[0, 0, 1], [0, 0, 0]])
    x = np.array([[np.nan, 0.0, 5.0], [7.0, np.nan, 1.0]])[None, None]
    y = layer.forward(x)
    assert np.isnan(y[0, 0, 0, 0])
    np.testing.assert_array_equal(layer.backward(np.ones((1, 1, 1, 1)))[0, 0], [[0, 0, 0], [0, 1, 0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(4))
def test_adaptive_max_nan_and_inf_match_reference(seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.integers(-1, 2, size=(2, 2, 9, 7)).astype(np.float64)
    x[rng.random(x.shape) < 0.15] = np.nan
    x[rng.random(x.shape) < 0.1] = np.inf
    x[rng.random(x.shape) < 0.1] = -np.inf
    x = x.astype(dtype)
    for out in [(4, 3), 2, 1, (9, 7)]:
        y, dy, dx = run(L.AdaptiveMaxPool2D(out), x)
        assert_close(y, adaptive_forward(x, out, "max"), dtype)
        assert_close(dx, adaptive_backward(x, dy, out, "max"), dtype)


TORCH_ADAPTIVE = [((2, 3, 8, 8), 4), ((2, 2, 7, 7), 3), ((1, 2, 10, 6), (4, 5)), ((2, 2, 13, 11), (5, 3)),
                  ((2, 3, 28, 28), 14), ((2, 3, 14, 14), 7), ((1, 2, 9, 9), 9), ((1, 2, 7, 5), 1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["normal", "ties"])
@pytest.mark.parametrize("shape, out", TORCH_ADAPTIVE)
def test_adaptive_pools_match_torch(shape, out, kind, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = random_input(shape, dtype, seed=5, kind=kind)
    y, dy, dx = run(L.AdaptiveAvgPool2D(out), x)
    t = torch.tensor(x, requires_grad=True)
    F.adaptive_avg_pool2d(t, out).backward(torch.tensor(dy))
    assert_close(y, F.adaptive_avg_pool2d(torch.tensor(x), out).numpy(), dtype)
    assert_close(dx, t.grad.numpy(), dtype)

    y, dy, dx = run(L.AdaptiveMaxPool2D(out), x)
    t = torch.tensor(x, requires_grad=True)
    ty, indices = F.adaptive_max_pool2d(t, out, return_indices=True)
    ty.backward(torch.tensor(dy))
    assert_close(y, ty.detach().numpy(), dtype)
    assert_close(dx, t.grad.numpy(), dtype)
    # the switches are torch's indices: dy put at them is our dx, exactly
    n, c, h, w = shape
    at_indices = np.zeros((n * c, h * w), dtype=dtype)     # added in our order: bit for bit
    np.add.at(at_indices, (np.arange(n * c)[:, None], indices.numpy().reshape(n * c, -1)), dy.reshape(n * c, -1))
    np.testing.assert_array_equal(dx, at_indices.reshape(shape))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, k", [((2, 3, 28, 28), 2), ((2, 3, 14, 14), 2), ((1, 2, 12, 9), 3), ((2, 2, 8, 8), 4)])
def test_dividing_sizes_equal_plain_pooling(shape, k, dtype):
    """Sizes that divide give bins of k x k with stride k: max pooling exactly (the same tie and
    NaN rule), average pooling to rounding; configs/adaptive_max_pool.yaml trains as max_pool.yaml."""
    x = random_input(shape, dtype, seed=9, kind="ties")
    x[0, 0, 0, :2] = np.nan
    out = (shape[2] // k, shape[3] // k)
    y, dy, dx = run(L.AdaptiveMaxPool2D(out), x)
    plain = L.MaxPool2D(k)
    np.testing.assert_array_equal(y, plain.forward(x))
    np.testing.assert_array_equal(dx, plain.backward(dy))
    x = random_input(shape, dtype, seed=9)
    y, dy, dx = run(L.AdaptiveAvgPool2D(out), x)
    plain = L.AvgPool2D(k)
    assert_close(y, plain.forward(x).astype(np.float64), dtype)
    assert_close(dx, plain.backward(dy).astype(np.float64), dtype)


def test_one_layer_takes_any_input_size():
    # the model's input_shape does not bind these layers: probes evaluate on larger canvases
    for layer in [L.AdaptiveMaxPool2D(7), L.AdaptiveAvgPool2D((7, 5)), L.SpatialPyramidPool2D((1, 2, 4), "avg")]:
        for i, shape in enumerate([(2, 3, 14, 14), (1, 3, 40, 33), (3, 3, 7, 9), (2, 3, 14, 14)]):
            x = random_input(shape, np.float64, seed=i)
            y, dy, dx = run(layer, x)
            if isinstance(layer, L.SpatialPyramidPool2D):
                assert_close(y, spp_forward(x, (1, 2, 4), "avg"))
                assert_close(dx, spp_backward(x, dy, (1, 2, 4), "avg"))
            else:
                mode = "max" if isinstance(layer, L.AdaptiveMaxPool2D) else "avg"
                assert_close(y, adaptive_forward(x, layer.output_size, mode))
                assert_close(dx, adaptive_backward(x, dy, layer.output_size, mode))


@pytest.mark.parametrize("name", ["AdaptiveAvgPool2D", "AdaptiveMaxPool2D"])
def test_adaptive_output_larger_than_input_is_value_error_naming_both(name):
    layer = getattr(L, name)((5, 3))
    for shape in [(1, 1, 4, 3), (1, 1, 5, 2), (2, 3, 0, 0)]:
        with pytest.raises(ValueError, match=rf"{name}: output_size=\(5, 3\) is larger than the "
                                             rf"{shape[2]}x{shape[3]} input"):
            layer.forward(np.zeros(shape))
        with pytest.raises(ValueError, match=name):
            layer.output_shape(shape[1:])
    layer.forward(np.zeros((1, 1, 5, 3)))           # equal sizes fit


@pytest.mark.parametrize("name", ["AdaptiveAvgPool2D", "AdaptiveMaxPool2D"])
def test_adaptive_refuses_bad_output_size(name):
    for bad, error in [(0, ValueError), ((2, 0), ValueError), (-1, ValueError), (2.0, TypeError),
                       ("2", TypeError), ((1, 2, 3), TypeError), (True, TypeError), (2**40, ValueError)]:
        with pytest.raises(error, match=f"{name}: output_size"):
            getattr(L, name)(bad)


def test_adaptive_window_for_the_receptive_field():
    assert L.AdaptiveMaxPool2D(14).window((32, 28, 28)) == ((2, 2), (2, 2))
    assert L.AdaptiveAvgPool2D((3, 1)).window((1, 7, 5)) == ((3, 5), (2, 5))   # 7 -> 3: bins of 3, step 2
    assert L.SpatialPyramidPool2D((1, 2)).window((1, 7, 5)) == ((7, 5), (7, 5))


# ------------------------------------------------------------ spatial pyramid --

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("shape, levels", [((2, 3, 8, 8), (1, 2, 4)), ((2, 2, 7, 7), (1, 2, 4)),
                                           ((1, 3, 9, 5), (3, 1)), ((2, 2, 6, 13), (2,)),
                                           ((1, 2, 4, 4), (4, 4, 1)), ((3, 1, 11, 10), (1, 3, 6))])
def test_spp_matches_reference(shape, levels, mode, dtype):
    x = random_input(shape, dtype, seed=2, kind="ties" if mode == "max" else "normal")
    layer = L.SpatialPyramidPool2D(levels, mode)
    y, dy, dx = run(layer, x)
    assert y.shape == (shape[0], shape[1] * sum(level * level for level in levels))
    assert_close(y, spp_forward(x, levels, mode), dtype)
    assert_close(dx, spp_backward(x, dy, levels, mode), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (2, 4, 28, 28), (1, 2, 9, 13)])
def test_spp_is_torchs_adaptive_pools_concatenated(shape, mode, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    pool = F.adaptive_max_pool2d if mode == "max" else F.adaptive_avg_pool2d
    x = random_input(shape, dtype, seed=7)
    y, dy, dx = run(L.SpatialPyramidPool2D((1, 2, 4), mode), x)
    t = torch.tensor(x, requires_grad=True)
    ty = torch.cat([pool(t, level).flatten(1) for level in (1, 2, 4)], dim=1)
    ty.backward(torch.tensor(dy))
    assert_close(y, ty.detach().numpy(), dtype)
    assert_close(dx, t.grad.numpy(), dtype)


def test_spp_refuses_bad_arguments_and_small_inputs():
    for levels, error in [((), TypeError), ([], TypeError), (3, TypeError), ((1, 0), ValueError),
                          ((1, -2), ValueError), ((1, 2.0), TypeError), (("1",), TypeError),
                          ((True,), TypeError), ((2**40,), ValueError)]:
        with pytest.raises(error, match="SpatialPyramidPool2D: levels"):
            L.SpatialPyramidPool2D(levels)
    for mode, error in [("mean", ValueError), ("MAX", ValueError), (None, TypeError), (1, TypeError)]:
        with pytest.raises(error, match="SpatialPyramidPool2D: mode"):
            L.SpatialPyramidPool2D((1, 2), mode)
    layer = L.SpatialPyramidPool2D((1, 2, 4))
    with pytest.raises(ValueError, match="SpatialPyramidPool2D: level 4 needs an input of at least 4x4, got 3x9"):
        layer.forward(np.zeros((1, 1, 3, 9)))
    with pytest.raises(ValueError, match="at least 4x4, got 9x3"):
        layer.output_shape((1, 9, 3))
    assert layer.output_shape((5, 4, 4)) == (5 * 21,)


# ------------------------------------------------------------ every layer --

LAYERS = {
    "lp2": lambda: L.LPPool2D(2, 2),
    "lp3.5 overlap": lambda: L.LPPool2D(3.5, (3, 2), (1, 2)),
    "adaptive max 5x3": lambda: L.AdaptiveMaxPool2D((5, 3)),
    "adaptive avg 5x3": lambda: L.AdaptiveAvgPool2D((5, 3)),
    "spp max": lambda: L.SpatialPyramidPool2D((1, 2, 4)),
    "spp avg": lambda: L.SpatialPyramidPool2D((1, 3), "avg"),
}


@pytest.fixture
def kernel_threads(monkeypatch):
    """Set the thread count; any work, however small, is shared out."""
    monkeypatch.setattr(threads, "PARALLEL_MIN_WORK", 1)
    return lambda n: monkeypatch.setattr(threads, "KERNEL_THREADS", n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 5])
@pytest.mark.parametrize("name", LAYERS)
def test_same_results_on_any_thread_count(name, n, dtype, kernel_threads):
    x = np.round(random_input((n, 3, 11, 9), dtype, seed=3), 1)   # rounded: ties across parts
    results = []
    for count in (1, 2, 3):
        kernel_threads(count)
        y, _, dx = run(LAYERS[name](), x)
        results.append((y, dx))
    for y, dx in results[1:]:
        np.testing.assert_array_equal(y, results[0][0])
        np.testing.assert_array_equal(dx, results[0][1])


@pytest.mark.parametrize("name", LAYERS)
def test_reuse_training_false_and_backward_twice(name):
    layer = LAYERS[name]()
    for i, (shape, dtype) in enumerate([((2, 3, 9, 8), np.float64), ((1, 2, 12, 7), np.float32),
                                        ((2, 3, 9, 8), np.float64)]):
        x = random_input(shape, dtype, seed=i)
        y, dy, dx = run(layer, x)
        fresh_y, _, fresh_dx = run(LAYERS[name](), x)
        np.testing.assert_array_equal(y, fresh_y)
        np.testing.assert_array_equal(dx, fresh_dx)
        np.testing.assert_array_equal(layer.backward(dy), dx)
        np.testing.assert_array_equal(layer.forward(x, training=False), y)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(dy)


def test_repr_and_macs():
    assert repr(L.LPPool2D(2, 2)) == "LPPool2D(norm_type=2, kernel_size=(2, 2), stride=(2, 2))"
    assert repr(L.AdaptiveMaxPool2D((3, 4))) == "AdaptiveMaxPool2D(output_size=(3, 4))"
    assert repr(L.SpatialPyramidPool2D()) == "SpatialPyramidPool2D(levels=(1, 2, 4), mode='max')"
    assert L.LPPool2D(3, 2).macs((32, 28, 28)) == 32 * 14 * 14 * 4
    assert L.AdaptiveAvgPool2D(7).macs((64, 14, 14)) == 0


# ------------------------------------------------------------ YAML --

BASE = yaml.safe_load((CONFIGS / "max_pool.yaml").read_text())


def with_layer(index, layer):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["model"]["layers"][index] = layer
    return data


YAML_BROKEN = [
    ("p zero", with_layer(2, {"type": "lppool2d", "norm_type": 0, "kernel_size": 2}),
     "model.layers[2].norm_type", "a number > 0"),
    ("p negative", with_layer(5, {"type": "lppool2d", "norm_type": -2, "kernel_size": 2}),
     "model.layers[5].norm_type", "a number > 0"),
    ("p string", with_layer(2, {"type": "lppool2d", "norm_type": "two", "kernel_size": 2}),
     "model.layers[2].norm_type", "a number > 0"),
    ("p missing", with_layer(2, {"type": "lppool2d", "kernel_size": 2}), "model.layers[2].norm_type", "missing"),
    ("lp padding", with_layer(2, {"type": "lppool2d", "norm_type": 2, "kernel_size": 2, "padding": 1}),
     "model.layers[2].padding", "unknown key"),
    ("adaptive larger than input", with_layer(5, {"type": "adaptivemaxpool2d", "output_size": 15}),
     "model.layers[5]", "output_size=(15, 15) is larger than the 14x14 input"),
    ("adaptive avg larger than input", with_layer(2, {"type": "adaptiveavgpool2d", "output_size": [14, 29]}),
     "model.layers[2]", "output_size=(14, 29) is larger than the 28x28 input"),
    ("adaptive zero", with_layer(2, {"type": "adaptiveavgpool2d", "output_size": 0}),
     "model.layers[2].output_size", "positive integer"),
    ("spp level too big", with_layer(6, {"type": "spp2d", "levels": [1, 8]}),
     "model.layers[6]", "level 8 needs an input of at least 8x8, got 7x7"),
    ("spp level zero", with_layer(6, {"type": "spp2d", "levels": [1, 0]}), "model.layers[6].levels", "positive"),
    ("spp no levels", with_layer(6, {"type": "spp2d", "levels": []}), "model.layers[6].levels", "non-empty"),
    ("spp mode", with_layer(6, {"type": "spp2d", "mode": "mean"}), "model.layers[6].mode", "max, avg"),
    ("spp on a flat input", with_layer(7, {"type": "spp2d"}), "model.layers[7]", "(C, H, W)"),
]


@pytest.mark.parametrize("what, data, key_path, words", YAML_BROKEN, ids=[b[0] for b in YAML_BROKEN])
def test_broken_yaml_names_file_path_and_expectation(tmp_path, what, data, key_path, words):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.file, info.value.path) == (str(path), key_path)
    assert words in info.value.message, info.value.message


def test_minicnn_summary_exits_2_on_p_zero(tmp_path):
    import os
    import subprocess
    import sys

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(YAML_BROKEN[0][1]))
    root = CONFIGS.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "minicnn", "summary", str(path)], cwd=root, capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr
    assert "model.layers[2].norm_type" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("name, pool_type, flat", [("lp_pool", "LPPool2D", 3136), ("adaptive_max_pool", "AdaptiveMaxPool2D", 3136),
                                                   ("adaptive_avg_pool", "AdaptiveAvgPool2D", 3136),
                                                   ("spp", "SpatialPyramidPool2D", 1344)])
def test_shipped_configs_build_the_intended_network(name, pool_type, flat):
    from minicnn.config import build_model

    model = build_model(load_config(CONFIGS / f"{name}.yaml"))
    assert pool_type in [type(layer).__name__ for layer in model.layers]
    dense = next(layer for layer in model.layers if isinstance(layer, L.Dense))
    assert dense.params["W"].shape == (flat, 128)
    if name != "spp":
        assert [r.output_shape for r in model.rows][2] == (32, 14, 14)
        assert [r.output_shape for r in model.rows][5] == (64, 7, 7)
    x = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
    assert model.forward(x).shape == (2, 10)
