"""BlurPool2D, MaxBlurPool2D, MixedPool2D, GatedPool2D against slow NumPy references and PyTorch.

The references below loop over output windows in plain Python, in float64;
every comparison goes through ``reference.assert_close`` (float64 to 1e-12,
float32 to rtol 1e-5 / atol 1e-6, dtype preserved).  The float64 numerical
gradient checks of these layers (input and parameters) are in test_layers.py
with every other layer's.
"""
from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
import yaml

import minicnn.layers as L
from minicnn import threads
from minicnn.config import build_model, load_config
from minicnn.errors import ConfigError
from minicnn.model import Sequential
from minicnn.optim import SGD
import reference as ref
from reference import assert_close

DTYPES = [np.float32, np.float64]
CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"


# ---------------------------------------------------------------- references --

def taps(f):
    """[1], [1, 1], [1, 2, 1], ... normalised: the binomial row of f taps."""
    row = np.array([math.comb(f - 1, i) for i in range(f)], dtype=np.float64)
    return row / row.sum()


def reflect(i, n):
    """Reflection without edge repeat (PyTorch's mode="reflect"), one bounce."""
    if i < 0:
        return -i
    if i >= n:
        return 2 * (n - 1) - i
    return i


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def blur_forward(x, f, stride):
    """y[oh, ow] = sum_ij t_i t_j x[refl(oh*sh - top + i), refl(ow*sw - left + j)], top = left = (f-1)//2."""
    x = np.asarray(x, dtype=np.float64)
    sh, sw = _pair(stride)
    n_, c_, h, w = x.shape
    t, top = taps(f), (f - 1) // 2
    oh_, ow_ = -(-h // sh), -(-w // sw)
    y = np.zeros((n_, c_, oh_, ow_))
    for n in range(n_):
        for c in range(c_):
            for oh in range(oh_):
                for ow in range(ow_):
                    y[n, c, oh, ow] = sum(t[i] * t[j] * x[n, c, reflect(oh * sh - top + i, h),
                                                          reflect(ow * sw - top + j, w)]
                                          for i in range(f) for j in range(f))
    return y


def blur_backward(x_shape, dy, f, stride):
    """Each dy spread back with the filter's weights onto the pixels its taps read."""
    dy = np.asarray(dy, dtype=np.float64)
    sh, sw = _pair(stride)
    n_, c_, h, w = x_shape
    t, top = taps(f), (f - 1) // 2
    dx = np.zeros(x_shape)
    for n in range(n_):
        for c in range(c_):
            for oh in range(dy.shape[2]):
                for ow in range(dy.shape[3]):
                    for i in range(f):
                        for j in range(f):
                            dx[n, c, reflect(oh * sh - top + i, h), reflect(ow * sw - top + j, w)] += \
                                t[i] * t[j] * dy[n, c, oh, ow]
    return dx


def maxblur_forward(x, k, f, stride):
    return blur_forward(ref.max_pool_forward(x, k, 1), f, stride)


def maxblur_backward(x, dy, k, f, stride):
    m = ref.max_pool_forward(x, k, 1)
    return ref.max_pool_backward(x, blur_backward(m.shape, dy, f, stride), k, 1)


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


def mixed_forward(x, k, stride, theta):
    a = sigmoid(theta)
    return a * ref.max_pool_forward(x, k, stride) + (1 - a) * ref.avg_pool_forward(x, k, stride)


def mixed_backward(x, dy, k, stride, theta):
    """(dx, dtheta)."""
    a = sigmoid(theta)
    dx = a * ref.max_pool_backward(x, dy, k, stride) + (1 - a) * ref.avg_pool_backward(x.shape, dy, k, stride)
    diff = ref.max_pool_forward(x, k, stride) - ref.avg_pool_forward(x, k, stride)
    return dx, a * (1 - a) * float(np.sum(np.asarray(dy, dtype=np.float64) * diff))


def gated(x, dy, k, stride, w):
    """Forward and backward window by window: (y, dx, dw)."""
    x = np.asarray(x, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    stride = k if stride is None else stride
    n_, c_, h, wd = x.shape
    y = ref.avg_pool_forward(x, k, stride)
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for n in range(n_):
        for c in range(c_):
            for oh, ow, cells in ref.windows(h, wd, k, stride, 0):
                values = [x[n, c, i, j] for i, j in cells]
                best = max(values)
                at = cells[values.index(best)]
                avg = sum(values) / len(values)
                g = sigmoid(sum(wk * v for wk, v in zip(w, values)))
                y[n, c, oh, ow] = g * best + (1 - g) * avg
                d = dy[n, c, oh, ow]
                dz = d * (best - avg) * g * (1 - g)
                for kk, (i, j) in enumerate(cells):
                    dx[n, c, i, j] += (1 - g) * d / len(cells) + dz * w[kk]
                    dw[kk] += dz * x[n, c, i, j]
                dx[n, c, at[0], at[1]] += g * d
    return y, dx, dw


# ------------------------------------------------------------------ cases --

def make_input(shape, dtype, values, seed=0):
    """'ties': few distinct values, so max windows hold equal maxima; else continuous."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, size=shape) - 1.0 if values == "ties" else rng.standard_normal(shape)
    return x.astype(dtype)


def upstream(y, seed=1):
    return np.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)


def arg(rng, low, high):
    """An int half of the time, else an (h, w) pair."""
    a, b = (int(v) for v in rng.integers(low, high + 1, size=2))
    return a if rng.random() < 0.5 else (a, b)


def blur_case(seed):
    """A random filter size and stride, and a map from the smallest reflection allows up."""
    rng = np.random.default_rng(seed)
    f = int(rng.integers(1, 8))
    stride = arg(rng, 1, 3)
    h, w = (int(v) for v in rng.integers(f // 2 + 1, f // 2 + 9, size=2))
    return (int(rng.integers(1, 3)), int(rng.integers(1, 4)), h, w), f, stride


BLUR_CASES = [pytest.param((2, 3, 8, 8), 3, 2, id="3/2 square"),
              pytest.param((1, 2, 7, 9), 3, 2, id="3/2 odd"),
              pytest.param((1, 2, 2, 3), 3, 2, id="3/2 smallest map"),
              pytest.param((2, 2, 5, 6), 1, 2, id="1: subsampling"),
              pytest.param((1, 2, 4, 4), 7, (2, 1), id="7 on 4x4 (pad 3 < 4)"),
              pytest.param((1, 2, 6, 5), 4, (1, 3), id="even filter, rect stride"),
              pytest.param((1, 1, 9, 1), 1, (2, 1), id="single column"),
              pytest.param((1, 1, 5, 6), 5, 7, id="stride > map")]
BLUR_CASES += [pytest.param(*blur_case(seed), id=f"random{seed}") for seed in range(16)]


def maxblur_case(seed):
    rng = np.random.default_rng(100 + seed)
    k, f, stride = arg(rng, 1, 3), int(rng.integers(1, 8)), arg(rng, 1, 3)
    kh, kw = _pair(k)
    h = int(rng.integers(kh + f // 2, kh + f // 2 + 7))
    w = int(rng.integers(kw + f // 2, kw + f // 2 + 7))
    return (int(rng.integers(1, 3)), int(rng.integers(1, 4)), h, w), k, f, stride


MAXBLUR_CASES = [pytest.param((2, 3, 8, 8), 2, 3, 2, id="2, 3/2 (reference network)"),
                 pytest.param((1, 2, 9, 7), 3, 3, 2, id="3, 3/2 odd"),
                 pytest.param((1, 2, 6, 7), (2, 3), 4, (1, 2), id="rect kernel and stride"),
                 pytest.param((1, 2, 3, 3), 2, 3, 2, id="smallest map (2x2 after the max)"),
                 pytest.param((1, 2, 5, 5), 1, 1, 1, id="identity"),
                 pytest.param((1, 1, 18, 17), (17, 16), 1, 1, id="window > 256 (int32 switches)")]
MAXBLUR_CASES += [pytest.param(*maxblur_case(seed), id=f"random{seed}") for seed in range(16)]


def window_case(seed):
    rng = np.random.default_rng(200 + seed)
    k = arg(rng, 1, 4)
    kh, kw = _pair(k)
    stride = None if rng.random() < 0.25 else arg(rng, 1, 3)
    h, w = int(rng.integers(kh, kh + 8)), int(rng.integers(kw, kw + 8))
    return (int(rng.integers(1, 3)), int(rng.integers(1, 4)), h, w), k, stride


WINDOW_CASES = [pytest.param((2, 3, 8, 8), 2, None, id="2x2/2"),
                pytest.param((1, 2, 7, 9), 2, None, id="2x2/2 odd map"),
                pytest.param((2, 2, 6, 7), 3, 1, id="3x3/1 overlap"),
                pytest.param((1, 2, 9, 7), (3, 2), (2, 1), id="rect"),
                pytest.param((2, 2, 5, 6), (5, 6), None, id="kernel = map"),
                pytest.param((1, 2, 11, 10), 2, 3, id="stride > kernel"),
                pytest.param((1, 1, 18, 17), (17, 16), 1, id="window > 256 (int32 switches)")]
WINDOW_CASES += [pytest.param(*window_case(seed), id=f"random{seed}") for seed in range(16)]


# --------------------------------------------------------- against NumPy --

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, f, stride", BLUR_CASES)
def test_blur_pool_matches_reference(shape, f, stride, dtype):
    x = make_input(shape, dtype, "continuous")
    layer = L.BlurPool2D(f, stride)
    y = layer.forward(x)
    dy = upstream(y)
    assert_close(y, blur_forward(x, f, stride), dtype)
    assert_close(layer.backward(dy), blur_backward(x.shape, dy, f, stride), dtype)


def test_blur_pool_filter_size_1_is_subsampling():
    x = make_input((2, 3, 7, 8), np.float64, "continuous")
    np.testing.assert_array_equal(L.BlurPool2D(1, (2, 3)).forward(x), x[:, :, ::2, ::3])


def test_blur_pool_hand_value():
    """[1, 2, 1] / 4 in each direction over reflected borders, at stride 2, by hand."""
    x = np.array([[[[0.0, 4.0, 8.0]]]]).repeat(3, axis=2)       # every row 0, 4, 8
    # columns padded by reflection: 4 | 0 4 8 | 4; windows at columns 0 and 2:
    # (4 + 2*0 + 4) / 4 = 2 and (4 + 2*8 + 4) / 4 = 6; the rows are equal, so the vertical pass keeps them
    np.testing.assert_allclose(L.BlurPool2D(3, 2).forward(x), [[[[2.0, 6.0], [2.0, 6.0]]]], rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", ["ties", "continuous"])
@pytest.mark.parametrize("shape, k, f, stride", MAXBLUR_CASES)
def test_max_blur_pool_matches_reference(shape, k, f, stride, values, dtype):
    x = make_input(shape, dtype, values)
    layer = L.MaxBlurPool2D(k, f, stride)
    y = layer.forward(x)
    dy = upstream(y)
    assert_close(y, maxblur_forward(x, k, f, stride), dtype)
    assert_close(layer.backward(dy), maxblur_backward(x, dy, k, f, stride), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", ["ties", "continuous"])
@pytest.mark.parametrize("shape, k, stride", WINDOW_CASES)
def test_mixed_pool_matches_reference(shape, k, stride, values, dtype):
    x = make_input(shape, dtype, values)
    layer = L.MixedPool2D(k, stride, dtype=dtype)
    layer.params["theta"][...] = -0.7
    theta = float(layer.params["theta"][0])
    y = layer.forward(x)
    dy = upstream(y)
    dx = layer.backward(dy)
    assert_close(y, mixed_forward(x, k, stride, theta), dtype)
    want_dx, want_dtheta = mixed_backward(x, dy, k, stride, theta)
    assert_close(dx, want_dx, dtype)
    assert_close(layer.grads["theta"], [want_dtheta], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", ["ties", "continuous"])
@pytest.mark.parametrize("shape, k, stride", WINDOW_CASES)
def test_gated_pool_matches_reference(shape, k, stride, values, dtype):
    x = make_input(shape, dtype, values)
    layer = L.GatedPool2D(k, stride, dtype=dtype)
    layer.params["w"][...] = np.random.default_rng(3).standard_normal(layer.params["w"].shape)
    y = layer.forward(x)
    dy = upstream(y)
    dx = layer.backward(dy)
    want_y, want_dx, want_dw = gated(x, dy, k, stride, layer.params["w"])
    assert_close(y, want_y, dtype)
    assert_close(dx, want_dx, dtype)
    # dw sums dz * x over every window of the batch: float32 rounding of dz grows with that count
    if dtype == np.float32:
        np.testing.assert_allclose(layer.grads["w"], want_dw, rtol=1e-4, atol=1e-5 * np.abs(want_dw).sum())
    else:
        assert_close(layer.grads["w"], want_dw, dtype)


def test_mixed_and_gated_start_halfway_between_max_and_average():
    x = make_input((2, 3, 6, 8), np.float64, "continuous")
    half = 0.5 * (ref.max_pool_forward(x, 2) + ref.avg_pool_forward(x, 2))
    for layer in (L.MixedPool2D(2), L.GatedPool2D(2)):
        assert_close(layer.forward(x), half)


def test_mixed_pool_extremes_are_max_and_average():
    x = make_input((2, 3, 6, 8), np.float64, "continuous")
    layer = L.MixedPool2D(2)
    layer.params["theta"][...] = 800.0         # a = 1 in float64, without overflow
    assert_close(layer.forward(x), ref.max_pool_forward(x, 2))
    layer.params["theta"][...] = -800.0
    assert_close(layer.forward(x), ref.avg_pool_forward(x, 2))


def test_gated_pool_saturated_gate_does_not_overflow():
    x = np.full((1, 1, 2, 2), 1e3, dtype=np.float32)
    for value, want in [(1e3, 1e3), (-1e3, 1e3)]:
        layer = L.GatedPool2D(2, dtype=np.float32)
        layer.params["w"][...] = value
        y = layer.forward(x)
        assert np.isfinite(y).all() and y[0, 0, 0, 0] == want
        assert np.isfinite(layer.backward(np.ones_like(y))).all()


@pytest.mark.parametrize("make", [lambda: L.BlurPool2D(3, 2), lambda: L.MaxBlurPool2D(2, 3, 2),
                                  lambda: L.MixedPool2D(3, 2), lambda: L.GatedPool2D(3, 2)])
def test_results_do_not_depend_on_the_thread_count(make, monkeypatch):
    """Planes split over threads give the same bits, parameter gradients included."""
    x = make_input((8, 32, 64, 64), np.float32, "continuous")     # 1M elements: split over threads
    results = []
    for n in (1, 2, 3):
        monkeypatch.setattr(threads, "KERNEL_THREADS", n)
        layer = make()
        for p in layer.params.values():
            p[...] = 0.3
        y = layer.forward(x)
        results.append((y, layer.backward(upstream(y)), {k: g.copy() for k, g in layer.grads.items()}))
    for y, dx, grads in results[1:]:
        np.testing.assert_array_equal(y, results[0][0])
        np.testing.assert_array_equal(dx, results[0][1])
        for k in grads:
            np.testing.assert_array_equal(grads[k], results[0][2][k])


def test_max_blur_pool_nan_wins_like_max_pooling():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = np.nan
    y = L.MaxBlurPool2D(2, 1, 1).forward(x)                    # filter 1, stride 1: the max itself
    np.testing.assert_array_equal(np.isnan(y[0, 0]), np.isnan(ref.max_pool_forward(x, 2, 1)[0, 0]))


# ---------------------------------------------------------- against PyTorch --

def torch_blur(torch, t, f, stride):
    """The reference implementation's composition: reflect pad, then a depthwise conv."""
    F = torch.nn.functional
    c = t.shape[1]
    row = torch.tensor(taps(f), dtype=t.dtype)
    filt = (row[:, None] * row[None, :])[None, None].repeat(c, 1, 1, 1)
    pads = [(f - 1) // 2, f // 2, (f - 1) // 2, f // 2]
    return F.conv2d(F.pad(t, pads, mode="reflect") if f > 1 else t, filt, stride=stride, groups=c)


def torch_run(torch, x, dy, fn, *params):
    """fn(t, *param tensors) forward and backward with autograd: y, dx, [d params]."""
    t = torch.tensor(x, requires_grad=True)
    ps = [torch.tensor(p, requires_grad=True) for p in params]
    y = fn(t, *ps)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), t.grad.numpy(), [p.grad.numpy() for p in ps]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, f, stride", BLUR_CASES[:8] + BLUR_CASES[8:12])
def test_blur_pool_matches_torch(shape, f, stride, dtype):
    torch = pytest.importorskip("torch")
    x = make_input(shape, dtype, "continuous")
    layer = L.BlurPool2D(f, stride)
    y = layer.forward(x)
    dy = upstream(y)
    ty, tdx, _ = torch_run(torch, x, dy, lambda t: torch_blur(torch, t, f, _pair(stride)))
    assert_close(y, ty, dtype)
    assert_close(layer.backward(dy), tdx, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", ["ties", "continuous"])
@pytest.mark.parametrize("shape, k, f, stride", MAXBLUR_CASES[:6] + MAXBLUR_CASES[6:10])
def test_max_blur_pool_matches_torch(shape, k, f, stride, values, dtype):
    torch = pytest.importorskip("torch")
    x = make_input(shape, dtype, values)
    layer = L.MaxBlurPool2D(k, f, stride)
    y = layer.forward(x)
    dy = upstream(y)

    def composition(t):
        return torch_blur(torch, torch.nn.functional.max_pool2d(t, _pair(k), stride=1), f, _pair(stride))
    ty, tdx, _ = torch_run(torch, x, dy, composition)
    assert_close(y, ty, dtype)
    assert_close(layer.backward(dy), tdx, dtype)


def torch_max_avg(torch, t, k, stride):
    F = torch.nn.functional
    k = _pair(k)
    stride = k if stride is None else _pair(stride)
    return F.max_pool2d(t, k, stride), F.avg_pool2d(t, k, stride), k, stride


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, k, stride", WINDOW_CASES[:7] + WINDOW_CASES[7:11])
def test_mixed_pool_matches_torch(shape, k, stride, dtype):
    torch = pytest.importorskip("torch")
    x = make_input(shape, dtype, "continuous")
    layer = L.MixedPool2D(k, stride, dtype=dtype)
    layer.params["theta"][...] = 0.4
    y = layer.forward(x)
    dy = upstream(y)

    def composition(t, theta):
        mx, av, _, _ = torch_max_avg(torch, t, k, stride)
        a = torch.sigmoid(theta)
        return a * mx + (1 - a) * av
    ty, tdx, (dtheta,) = torch_run(torch, x, dy, composition, layer.params["theta"])
    assert_close(y, ty, dtype)
    assert_close(layer.backward(dy), tdx, dtype)
    np.testing.assert_allclose(layer.grads["theta"], dtheta, rtol=1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, k, stride", WINDOW_CASES[:7] + WINDOW_CASES[7:11])
def test_gated_pool_matches_torch(shape, k, stride, dtype):
    torch = pytest.importorskip("torch")
    x = make_input(shape, dtype, "continuous")
    layer = L.GatedPool2D(k, stride, dtype=dtype)
    layer.params["w"][...] = np.random.default_rng(4).standard_normal(layer.params["w"].shape)
    y = layer.forward(x)
    dy = upstream(y)

    def composition(t, w):
        mx, av, kk, ss = torch_max_avg(torch, t, k, stride)
        n, c, h, wd = t.shape
        windows = torch.nn.functional.unfold(t.reshape(n * c, 1, h, wd), kk, stride=ss)   # (N*C, K, L)
        g = torch.sigmoid((w[None, :, None] * windows).sum(1)).reshape(mx.shape)
        return g * mx + (1 - g) * av
    ty, tdx, (dw,) = torch_run(torch, x, dy, composition, layer.params["w"])
    assert_close(y, ty, dtype)
    assert_close(layer.backward(dy), tdx, dtype)
    scale = np.abs(dw).max()
    np.testing.assert_allclose(layer.grads["w"], dw, rtol=1e-4 if dtype == np.float32 else 1e-10,
                               atol=1e-5 * scale if dtype == np.float32 else 1e-12)


# ------------------------------------------------------------- parameters --

@pytest.mark.parametrize("make, key, shape", [(lambda **kw: L.MixedPool2D(2, **kw), "theta", (1,)),
                                              (lambda **kw: L.GatedPool2D((2, 3), 1, **kw), "w", (6,))])
def test_parameters_have_the_dtype_and_train_through_the_optimizer(make, key, shape):
    layer = make(dtype=np.float32, rng=np.random.default_rng(0))
    assert layer.params[key].shape == layer.grads[key].shape == shape
    assert layer.params[key].dtype == layer.grads[key].dtype == np.float32
    model = Sequential([L.Conv2D(1, 2, 3, padding=1, dtype=np.float32), make(dtype=np.float32), L.Flatten()],
                       (1, 6, 6))
    pool = model.layers[1]
    assert any(params is pool.params and k == key for params, _, k in model.slots())
    optimizer = SGD(model.slots(), lr=0.5, momentum=0.9)
    x = make_input((4, 1, 6, 6), np.float32, "continuous")
    before = pool.params[key].copy()
    for _ in range(3):
        y = model.forward(x)
        model.backward(np.ones_like(y), input_grad=False)
        optimizer.step()
    assert not np.array_equal(pool.params[key], before)


def test_backward_without_input_grad_fills_the_same_grads():
    for make in (lambda: L.MixedPool2D(2), lambda: L.GatedPool2D(2)):
        x = make_input((2, 2, 6, 6), np.float64, "continuous")
        a, b = make(), make()
        for layer in (a, b):
            for p in layer.params.values():
                p[...] = 0.3
        dy = upstream(a.forward(x))
        b.forward(x)
        assert b.backward(dy, input_grad=False) is None
        a.backward(dy)
        for k in a.grads:
            np.testing.assert_array_equal(a.grads[k], b.grads[k])


# ---------------------------------------------------------- bad arguments --

@pytest.mark.parametrize("make, error, words", [
    (lambda: L.BlurPool2D(0), ValueError, "filter_size must be from 1 to 7, got 0"),
    (lambda: L.BlurPool2D(8), ValueError, "got 8"),
    (lambda: L.BlurPool2D(2.0), TypeError, "filter_size"),
    (lambda: L.BlurPool2D(True), TypeError, "filter_size"),
    (lambda: L.BlurPool2D(3, 0), ValueError, "stride"),
    (lambda: L.BlurPool2D(3, (2, -1)), ValueError, "stride"),
    (lambda: L.BlurPool2D(3, "2"), TypeError, "stride"),
    (lambda: L.MaxBlurPool2D(0), ValueError, "kernel_size"),
    (lambda: L.MaxBlurPool2D((2, 2, 2)), TypeError, "kernel_size"),
    (lambda: L.MaxBlurPool2D(2, 9), ValueError, "filter_size"),
    (lambda: L.MaxBlurPool2D(2, 3, 0), ValueError, "stride"),
    (lambda: L.MixedPool2D(0), ValueError, "kernel_size"),
    (lambda: L.MixedPool2D(2, (1, 0)), ValueError, "stride"),
    (lambda: L.GatedPool2D(2.5), TypeError, "kernel_size"),
    (lambda: L.GatedPool2D(None), TypeError, "kernel_size"),
])
def test_bad_arguments_are_refused(make, error, words):
    with pytest.raises(error, match=words):
        make()


@pytest.mark.parametrize("layer, shape", [
    (L.BlurPool2D(3), (1, 1, 1, 5)),            # reflection pad 1 needs 2 rows
    (L.BlurPool2D(7), (1, 1, 8, 3)),            # pad 3 needs 4 columns
    (L.BlurPool2D(2), (1, 1, 1, 1)),
    (L.MaxBlurPool2D(2, 3), (1, 1, 2, 5)),      # the 1x4 max map is too small to reflect
    (L.MaxBlurPool2D(3, 1), (1, 1, 2, 5)),      # the window does not fit
    (L.MixedPool2D(3), (1, 1, 2, 5)),
    (L.GatedPool2D((1, 6)), (1, 1, 2, 5)),
])
def test_maps_too_small_are_value_errors(layer, shape):
    name = type(layer).__name__
    with pytest.raises(ValueError, match=name):
        layer.forward(np.zeros(shape))
    with pytest.raises(ValueError, match=name):
        layer.output_shape(shape[1:])


def test_reflection_limit_is_inclusive():
    """The smallest map a filter reflects: pad + 1 rows and columns."""
    for f in range(1, 8):
        side = f // 2 + 1
        y = L.BlurPool2D(f, 1).forward(np.ones((1, 1, side, side)))
        np.testing.assert_allclose(y, np.ones((1, 1, side, side)), rtol=1e-15)


def test_shapes_windows_and_macs():
    blur, maxblur = L.BlurPool2D(5, (2, 3)), L.MaxBlurPool2D((2, 3), 3, 2)
    assert blur.output_shape((4, 9, 10)) == (4, 5, 4)
    assert blur.window((4, 9, 10)) == ((5, 5), (2, 3))
    assert blur.macs((4, 9, 10)) == 4 * 5 * 4 * 25
    assert maxblur.output_shape((4, 9, 10)) == (4, 4, 4)          # max map 8x8
    assert maxblur.window((4, 9, 10)) == ((4, 5), (2, 2))
    assert L.MixedPool2D(2).output_shape((3, 7, 9)) == (3, 3, 4)
    assert L.GatedPool2D(3, 1).macs((3, 7, 9)) == 3 * 5 * 7 * 9
    assert repr(maxblur) == "MaxBlurPool2D(kernel_size=(2, 3), filter_size=3, stride=(2, 2))"
    assert repr(L.MixedPool2D(2)) == "MixedPool2D(kernel_size=(2, 2), stride=(2, 2))"


# ------------------------------------------------------------------- YAML --

BASE = yaml.safe_load((CONFIGS / "max_pool.yaml").read_text())


def with_layer(index, layer):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["model"]["layers"][index] = layer
    return data


@pytest.mark.parametrize("layer, key_path, words", [
    ({"type": "blurpool2d", "filter_size": 0}, "model.layers[2].filter_size", "positive integer"),
    ({"type": "blurpool2d", "filter_size": 8}, "model.layers[2].filter_size", "at most 7"),
    ({"type": "blurpool2d", "filter_size": "3"}, "model.layers[2].filter_size", "positive integer"),
    ({"type": "blurpool2d", "stride": 0}, "model.layers[2].stride", "positive"),
    ({"type": "blurpool2d", "size": 3}, "model.layers[2].size", "unknown key"),
    ({"type": "maxblurpool2d", "filter_size": 9}, "model.layers[2].filter_size", "at most 7"),
    ({"type": "maxblurpool2d", "kernel_size": 30}, "model.layers[2]", "does not fit"),
    ({"type": "mixedpool2d"}, "model.layers[2].kernel_size", "missing"),
    ({"type": "gatedpool2d", "kernel_size": 2, "padding": 1}, "model.layers[2].padding", "unknown key"),
    ({"type": "gatedpool2d", "kernel_size": [2, 2, 2]}, "model.layers[2].kernel_size", "pair"),
])
def test_bad_yaml_names_the_key_path(tmp_path, layer, key_path, words):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(with_layer(2, layer)))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == key_path and words in info.value.message, str(info.value)


def test_yaml_map_too_small_to_reflect_names_the_layer(tmp_path):
    data = with_layer(5, {"type": "maxpool2d", "kernel_size": 14})     # 14x14 -> 1x1
    data["model"]["layers"].insert(6, {"type": "blurpool2d"})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == "model.layers[6]" and "reflection padding of 1" in info.value.message


@pytest.mark.parametrize("name, extra", [("maxblur_pool", 0), ("mixed_pool", 2), ("gated_pool", 8)])
def test_configs_build_with_and_without_weights(name, extra):
    config = load_config(CONFIGS / f"{name}.yaml")
    built, plan = build_model(config), build_model(config, allocate=False)
    assert built.n_params == plan.n_params == 421_642 + extra       # max_pool.yaml's, plus the gates
    assert built.output_shape == plan.output_shape == (10,)
    assert [r.macs for r in built.rows] == [r.macs for r in plan.rows]
