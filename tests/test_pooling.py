"""Pooling layers against the slow references in ``reference.py`` (and PyTorch).

Every comparison goes through ``reference.assert_close``: float64 to 1e-12,
float32 to rtol 1e-5 / atol 1e-6, dtype preserved.
"""
from __future__ import annotations

import numpy as np
import pytest

import minicnn.layers as L
from minicnn import _pool
import reference as ref
from reference import assert_close

DTYPES = [np.float32, np.float64]

# (input shape, kernel_size, stride, padding); stride None means "kernel_size".
NAMED_CASES = {
    "2x2/2 (fast path)": ((2, 3, 8, 8), 2, None, 0),
    "2x2/2 odd map": ((2, 2, 7, 9), 2, None, 0),
    "2x2/2 explicit": ((1, 2, 6, 5), (2, 2), (2, 2), (0, 0)),
    "2x2/1 overlap": ((2, 2, 5, 6), 2, 1, 0),
    "3x3/1 overlap": ((2, 2, 6, 7), 3, 1, 0),
    "3x3/2 pad 1": ((1, 3, 7, 7), 3, 2, 1),
    "3x3/1 pad 1 (same)": ((2, 2, 5, 4), 3, 1, 1),
    "2x2/2 pad 1": ((2, 2, 5, 6), 2, 2, 1),
    "rect kernel and stride": ((2, 2, 9, 7), (3, 2), (2, 1), (1, 0)),
    "rect everything": ((1, 2, 5, 8), (2, 4), (1, 3), (1, 2)),
    "1x1 map": ((3, 2, 1, 1), 1, None, 0),
    "1x1 map, padded 3x3": ((2, 2, 1, 1), 3, 1, 1),
    "1x1 kernel": ((2, 2, 5, 4), 1, 1, 0),
    "1x1 kernel stride 2": ((2, 2, 5, 4), 1, 2, 0),
    "kernel = map": ((2, 2, 5, 6), (5, 6), None, 0),
    "uneven (windows dropped)": ((1, 2, 10, 11), 3, 3, 0),
    "stride > kernel (gaps)": ((1, 2, 11, 10), 2, 3, 0),
    "kernel > map, padded": ((2, 1, 3, 3), 5, 1, 2),
    "single row": ((2, 2, 1, 9), (1, 3), (1, 2), 0),
    "single column": ((2, 2, 9, 1), (4, 1), (2, 1), (2, 0)),
    "window > 256 (int32 switches)": ((1, 2, 18, 17), (17, 16), 1, 0),
    "window > 256, padded": ((1, 1, 16, 15), (17, 16), (1, 2), (8, 1)),
}


def random_case(seed):
    """A random valid geometry: any kernel up to 4, stride up to 3, legal padding."""
    rng = np.random.default_rng(seed)
    kh, kw = (int(v) for v in rng.integers(1, 5, size=2))
    sh, sw = (int(v) for v in rng.integers(1, 4, size=2))
    ph, pw = int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))
    h = int(rng.integers(max(1, kh - 2 * ph), kh - 2 * ph + 9))
    w = int(rng.integers(max(1, kw - 2 * pw), kw - 2 * pw + 9))
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    square = kh == kw and sh == sw and ph == pw and rng.random() < 0.5

    def arg(a, b):          # an int for square geometry half of the time, else a pair
        return a if square else (a, b)

    stride = None if rng.random() < 0.25 else arg(sh, sw)
    return (n, c, h, w), arg(kh, kw), stride, arg(ph, pw)


CASES = [pytest.param(*case, id=name) for name, case in NAMED_CASES.items()]
CASES += [pytest.param(*random_case(seed), id=f"random{seed}") for seed in range(24)]


def make_input(shape, dtype, values, seed=0):
    """'ties': few distinct values, so windows hold equal maxima; else continuous."""
    rng = np.random.default_rng(seed)
    if values == "ties":
        x = rng.integers(0, 3, size=shape) - 1.0
    else:
        x = rng.standard_normal(shape)
    return x.astype(dtype)


def run(layer, x, dy):
    """Forward then backward; also checks the layer left its inputs alone."""
    x_copy, dy_copy = x.copy(), dy.copy()
    y = layer.forward(x)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dy, dy_copy)
    return y, dx


def upstream(layer, x, seed=1):
    """A random upstream gradient shaped like the layer's output."""
    shape = (x.shape[0], *layer.output_shape(x.shape[1:]))
    return np.random.default_rng(seed).standard_normal(shape).astype(x.dtype)


# -------------------------------------------------------------- windowed --

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", ["ties", "continuous"])
@pytest.mark.parametrize("shape, kernel, stride, padding", CASES)
def test_max_pool(shape, kernel, stride, padding, values, dtype):
    x = make_input(shape, dtype, values)
    layer = L.MaxPool2D(kernel, stride, padding)
    dy = upstream(layer, x)
    y, dx = run(layer, x, dy)
    assert_close(y, ref.max_pool_forward(x, kernel, stride, padding), dtype)
    assert_close(dx, ref.max_pool_backward(x, dy, kernel, stride, padding), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", ["ties", "continuous"])
@pytest.mark.parametrize("shape, kernel, stride, padding", CASES)
def test_min_pool(shape, kernel, stride, padding, values, dtype):
    x = make_input(shape, dtype, values)
    layer = L.MinPool2D(kernel, stride, padding)
    dy = upstream(layer, x)
    y, dx = run(layer, x, dy)
    assert_close(y, ref.min_pool_forward(x, kernel, stride, padding), dtype)
    assert_close(dx, ref.min_pool_backward(x, dy, kernel, stride, padding), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("shape, kernel, stride, padding", CASES)
def test_avg_pool(shape, kernel, stride, padding, count_include_pad, dtype):
    x = make_input(shape, dtype, "continuous")
    layer = L.AvgPool2D(kernel, stride, padding, count_include_pad=count_include_pad)
    dy = upstream(layer, x)
    y, dx = run(layer, x, dy)
    assert_close(y, ref.avg_pool_forward(x, kernel, stride, padding, count_include_pad), dtype)
    assert_close(dx, ref.avg_pool_backward(x.shape, dy, kernel, stride, padding, count_include_pad),
                 dtype)


def test_avg_pool_default_counts_padding():
    x = np.ones((1, 1, 3, 3))
    y = L.AvgPool2D(3, 1, 1).forward(x)
    assert y[0, 0, 0, 0] == pytest.approx(4 / 9)     # corner: 4 real ones over a 3x3 window
    assert y[0, 0, 1, 1] == pytest.approx(1.0)
    y = L.AvgPool2D(3, 1, 1, count_include_pad=False).forward(x)
    np.testing.assert_allclose(y, 1.0, rtol=0, atol=1e-15)


@pytest.mark.parametrize("make", [L.MaxPool2D, L.MinPool2D, L.AvgPool2D])
def test_stride_defaults_to_kernel_size(make):
    x = make_input((2, 2, 9, 8), np.float64, "continuous")
    a, b = make((3, 2)), make((3, 2), stride=(3, 2))
    assert a.forward(x).shape == (2, 2, 3, 4)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))


# --------------------------------------------------- hand-checked values --
# The references themselves are checked here against numbers worked out by hand.

HAND_X = np.array([[1, 3, 2, 0],
                   [4, 2, 2, 5],
                   [0, 1, 1, 1],
                   [7, 7, 1, 0]], dtype=np.float64)[None, None]
HAND_DY = np.array([[1.0, 2.0], [3.0, 4.0]])[None, None]


def test_hand_max_pool_2x2():
    expected_y = [[4, 5], [7, 1]]
    expected_dx = [[0, 0, 0, 0],
                   [1, 0, 0, 2],
                   [0, 0, 4, 0],     # bottom-right window is all 1 but a 0: first 1 wins
                   [3, 0, 0, 0]]     # tie 7, 7: the first one takes all of it
    for y, dx in [(ref.max_pool_forward(HAND_X, 2), ref.max_pool_backward(HAND_X, HAND_DY, 2)),
                  run(L.MaxPool2D(2), HAND_X, HAND_DY)]:
        np.testing.assert_array_equal(y[0, 0], expected_y)
        np.testing.assert_array_equal(dx[0, 0], expected_dx)


def test_hand_min_and_avg_pool_2x2():
    for y in [ref.min_pool_forward(HAND_X, 2), L.MinPool2D(2).forward(HAND_X)]:
        np.testing.assert_array_equal(y[0, 0], [[1, 0], [0, 0]])
    for dx in [ref.min_pool_backward(HAND_X, HAND_DY, 2), run(L.MinPool2D(2), HAND_X, HAND_DY)[1]]:
        np.testing.assert_array_equal(dx[0, 0], [[1, 0, 0, 2], [0, 0, 0, 0],
                                                 [3, 0, 0, 0], [0, 0, 0, 4]])
    for y in [ref.avg_pool_forward(HAND_X, 2), L.AvgPool2D(2).forward(HAND_X)]:
        np.testing.assert_allclose(y[0, 0], [[10 / 4, 9 / 4], [15 / 4, 3 / 4]], rtol=1e-15)


def test_hand_overlapping_windows_accumulate():
    # windows [1, 5], [5, 5], [5, 2]: the tie goes to the first 5, which gets two windows' worth
    x = np.array([1.0, 5.0, 5.0, 2.0])[None, None, None]
    dy = np.array([10.0, 20.0, 40.0])[None, None, None]
    expected_dx = [[[[0, 30, 40, 0]]]]
    np.testing.assert_array_equal(ref.max_pool_backward(x, dy, (1, 2), 1), expected_dx)
    y, dx = run(L.MaxPool2D((1, 2), 1), x, dy)
    np.testing.assert_array_equal(y, [[[[5, 5, 5]]]])
    np.testing.assert_array_equal(dx, expected_dx)
    # average: each window spreads dy / 2
    _, dx = run(L.AvgPool2D((1, 2), 1), x, dy)
    np.testing.assert_allclose(dx, [[[[5, 15, 30, 20]]]], rtol=1e-15)


def test_hand_padding_never_wins():
    # max pooling pads with -inf: a window of all-negative numbers still returns one of them
    x = -np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    y, dx = run(L.MaxPool2D(3, 1, 1), x, np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(y[0, 0], [[-1, -1], [-1, -1]])
    np.testing.assert_array_equal(dx[0, 0], [[4, 0], [0, 0]])
    y = L.MinPool2D(3, 1, 1).forward(-x)
    np.testing.assert_array_equal(y[0, 0], [[1, 1], [1, 1]])


# ---------------------------------------------------------------- global --

GLOBAL_SHAPES = [(1, 1, 1, 1), (2, 3, 1, 1), (2, 3, 4, 5), (3, 2, 7, 1), (1, 4, 1, 9),
                 (2, 2, 17, 19), (4, 5, 3, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", ["ties", "continuous"])
@pytest.mark.parametrize("shape", GLOBAL_SHAPES)
def test_global_max_pool(shape, values, dtype):
    x = make_input(shape, dtype, values)
    dy = np.random.default_rng(3).standard_normal(shape[:2]).astype(dtype)
    y, dx = run(L.GlobalMaxPool2D(), x, dy)
    assert_close(y, ref.global_max_forward(x), dtype)
    assert_close(dx, ref.global_max_backward(x, dy), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GLOBAL_SHAPES)
def test_global_avg_pool(shape, dtype):
    x = make_input(shape, dtype, "continuous")
    dy = np.random.default_rng(3).standard_normal(shape[:2]).astype(dtype)
    y, dx = run(L.GlobalAvgPool2D(), x, dy)
    assert_close(y, ref.global_avg_forward(x), dtype)
    assert_close(dx, ref.global_avg_backward(x.shape, dy), dtype)


def test_global_pools_match_full_window_pools():
    x = make_input((2, 3, 5, 4), np.float64, "ties")
    np.testing.assert_array_equal(L.GlobalMaxPool2D().forward(x), L.MaxPool2D((5, 4)).forward(x)[..., 0, 0])
    np.testing.assert_allclose(L.GlobalAvgPool2D().forward(x), x.mean(axis=(2, 3)), rtol=1e-14)


# ------------------------------------------------- conservation and reuse --

@pytest.mark.parametrize("make", [L.MaxPool2D, L.MinPool2D], ids=["max", "min"])
@pytest.mark.parametrize("shape, kernel, stride, padding", CASES[:12])
def test_extreme_pool_gradient_is_conserved(make, shape, kernel, stride, padding):
    # every window sends its whole gradient to one input element: nothing is lost to padding
    x = make_input(shape, np.float64, "ties")
    layer = make(kernel, stride, padding)
    dy = upstream(layer, x)
    _, dx = run(layer, x, dy)
    np.testing.assert_allclose(dx.sum(axis=(2, 3)), dy.sum(axis=(2, 3)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [lambda: L.MaxPool2D(3, 2, 1), lambda: L.MinPool2D(2),
                                  lambda: L.AvgPool2D(3, 1, 1, count_include_pad=False),
                                  lambda: L.AvgPool2D(2), L.GlobalMaxPool2D, L.GlobalAvgPool2D])
def test_layer_reuse_across_shapes_and_dtypes(make):
    """One layer object, many calls: nothing stale from an earlier call leaks in."""
    layer = make()
    for i, (shape, dtype) in enumerate([((2, 3, 6, 6), np.float64), ((1, 2, 7, 5), np.float32),
                                        ((3, 1, 4, 9), np.float64), ((2, 3, 6, 6), np.float64)]):
        x = make_input(shape, dtype, "ties", seed=i)
        dy = upstream(layer, x, seed=i)
        y, dx = run(layer, x, dy)
        fresh_y, fresh_dx = run(make(), x, dy)
        assert y.dtype == dx.dtype == dtype
        np.testing.assert_array_equal(y, fresh_y)
        np.testing.assert_array_equal(dx, fresh_dx)
        np.testing.assert_array_equal(layer.backward(dy), dx)   # backward twice: same answer


def test_training_false_gives_same_output():
    x = make_input((2, 2, 6, 6), np.float64, "continuous")
    for layer in [L.MaxPool2D(2), L.MinPool2D(3, 1, 1), L.AvgPool2D(2), L.GlobalAvgPool2D(),
                  L.GlobalMaxPool2D()]:
        np.testing.assert_array_equal(layer.forward(x, training=False), layer.forward(x))


@pytest.mark.parametrize("shape, kernel, stride, padding", CASES)
def test_output_shape_matches_forward(shape, kernel, stride, padding):
    for layer in [L.MaxPool2D(kernel, stride, padding), L.AvgPool2D(kernel, stride, padding)]:
        y = layer.forward(np.zeros(shape))
        assert y.shape[1:] == layer.output_shape(shape[1:])


# ------------------------------------------------------------ NaN and inf --

def special_input(shape, dtype, seed):
    """Few distinct values plus NaN, +inf and -inf sprinkled in, some windows with several NaNs."""
    rng = np.random.default_rng(seed)
    x = (rng.integers(0, 3, size=shape) - 1.0)
    specials = rng.choice([np.nan, np.inf, -np.inf, 0.0], size=shape, p=[0.15, 0.1, 0.1, 0.65])
    x = np.where(specials != 0, specials, x)
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape, kernel, stride, padding",
                         [((2, 2, 6, 6), 2, None, 0), ((2, 2, 7, 6), 3, 1, 1),
                          ((1, 3, 5, 9), (2, 3), (1, 2), (1, 1)), ((1, 1, 18, 17), (17, 16), 1, 0)])
def test_max_and_min_pool_nan_inf(shape, kernel, stride, padding, seed, dtype):
    x = special_input(shape, dtype, seed)
    for make, forward, backward in [(L.MaxPool2D, ref.max_pool_forward, ref.max_pool_backward),
                                    (L.MinPool2D, ref.min_pool_forward, ref.min_pool_backward)]:
        layer = make(kernel, stride, padding)
        dy = upstream(layer, x)
        y, dx = run(layer, x, dy)
        assert_close(y, forward(x, kernel, stride, padding), dtype)
        assert_close(dx, backward(x, dy, kernel, stride, padding), dtype)
        assert np.isfinite(dx).all()


def test_max_pool_nan_propagates():
    x = np.array([[1.0, np.nan, 3.0, np.nan, 0.5],
                  [1.0, 2.0, 3.0, 4.0, 0.5]])[None, None]
    for layer in [L.MaxPool2D((1, 5)), L.MinPool2D((1, 5))]:
        y, dx = run(layer, x, np.ones((1, 1, 2, 1)))
        assert np.isnan(y[0, 0, 0, 0])                    # NaN wins over bigger numbers
        np.testing.assert_array_equal(dx[0, 0, 0], [0, 0, 0, 1, 0])   # PyTorch: the last NaN
    y = L.MaxPool2D((1, 5)).forward(x)
    assert y[0, 0, 1, 0] == 4.0
    y, dx = run(L.GlobalMaxPool2D(), x, np.ones((1, 1)))
    assert np.isnan(y[0, 0])
    np.testing.assert_array_equal(dx[0, 0], [[0, 0, 0, 1, 0], [0, 0, 0, 0, 0]])


def test_max_pool_nan_first_in_window():
    # a NaN at the start of the window must not be replaced by the numbers after it
    x = np.array([np.nan, 5.0, 7.0, -1.0])[None, None, None]
    for layer in [L.MaxPool2D((1, 4)), L.MinPool2D((1, 4)), L.MaxPool2D((1, 2)), L.GlobalMaxPool2D()]:
        y = layer.forward(x)
        assert np.isnan(y.flat[0])


def test_max_pool_all_minus_inf():
    x = np.full((1, 1, 3, 3), -np.inf)
    y, dx = run(L.MaxPool2D(3, 2, 1), x, np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    assert np.all(y == -np.inf)
    # each window's gradient goes to its first real element, never into the padding
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 0], [3, 4, 0], [0, 0, 0]])
    y, _ = run(L.GlobalMaxPool2D(), x, np.ones((1, 1)))
    assert y[0, 0] == -np.inf


def test_avg_pool_inf_and_nan_propagate():
    x = np.array([[1.0, np.inf, 1.0, 1.0],
                  [1.0, 1.0, np.nan, 1.0]])[None, None]
    y = L.AvgPool2D(2).forward(x)
    assert y[0, 0, 0, 0] == np.inf
    assert np.isnan(y[0, 0, 0, 1])
    assert np.isnan(L.GlobalAvgPool2D().forward(x)[0, 0])


# ---------------------------------------------------------------- PyTorch --

TORCH_CASES = [((2, 3, 8, 8), 2, None, 0), ((2, 2, 7, 6), 3, 1, 1), ((1, 2, 9, 7), (3, 2), (2, 1), (1, 0)),
               ((2, 2, 5, 8), (2, 4), (1, 3), (1, 2)), ((1, 1, 18, 17), (17, 16), 1, (8, 0))]


def torch_pool(fn, x, dy, **kwargs):
    torch = pytest.importorskip("torch")
    t = torch.tensor(x, requires_grad=True)
    y = fn(t, **kwargs)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), t.grad.numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", ["ties", "continuous", "special"])
@pytest.mark.parametrize("shape, kernel, stride, padding", TORCH_CASES)
def test_max_and_min_pool_match_torch(shape, kernel, stride, padding, values, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = special_input(shape, dtype, 0) if values == "special" else make_input(shape, dtype, values)
    kwargs = dict(kernel_size=kernel, stride=stride, padding=padding)

    layer = L.MaxPool2D(kernel, stride, padding)
    dy = upstream(layer, x)
    y, dx = run(layer, x, dy)
    ty, tdx = torch_pool(F.max_pool2d, x, dy, **kwargs)
    assert_close(y, ty, dtype)
    assert_close(dx, tdx, dtype)

    # min pooling is max pooling of -x, negated (ties and NaNs included)
    y, dx = run(L.MinPool2D(kernel, stride, padding), x, dy)
    ty, tdx = torch_pool(lambda t, **kw: -F.max_pool2d(-t, **kw), x, dy, **kwargs)
    assert_close(y, ty, dtype)
    assert_close(dx, tdx, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("shape, kernel, stride, padding", TORCH_CASES)
def test_avg_pool_matches_torch(shape, kernel, stride, padding, count_include_pad, dtype):
    torch = pytest.importorskip("torch")
    x = make_input(shape, dtype, "continuous")
    layer = L.AvgPool2D(kernel, stride, padding, count_include_pad=count_include_pad)
    dy = upstream(layer, x)
    y, dx = run(layer, x, dy)
    ty, tdx = torch_pool(torch.nn.functional.avg_pool2d, x, dy, kernel_size=kernel, stride=stride,
                         padding=padding, count_include_pad=count_include_pad)
    assert_close(y, ty, dtype)
    assert_close(dx, tdx, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 2, 1, 1), (2, 2, 17, 19)])
def test_global_pools_match_torch(shape, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = make_input(shape, dtype, "ties")
    dy = np.random.default_rng(3).standard_normal(shape[:2]).astype(dtype)
    full = dict(kernel_size=shape[2:])
    y, dx = run(L.GlobalMaxPool2D(), x, dy)
    ty, tdx = torch_pool(lambda t, **kw: F.max_pool2d(t, **kw)[..., 0, 0], x, dy, **full)
    assert_close(y, ty, dtype)
    assert_close(dx, tdx, dtype)
    y, dx = run(L.GlobalAvgPool2D(), x, dy)
    ty, tdx = torch_pool(lambda t: F.adaptive_avg_pool2d(t, 1)[..., 0, 0], x, dy)
    assert_close(y, ty, dtype)
    assert_close(dx, tdx, dtype)


# ---------------------------------------------------------------- SSE2 fast paths against the generic loops

def awkward_planes(p, h, w, seed):
    """float32 planes with ties, NaN, +-inf and -0.0 among normal values."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(p, h, w)).astype(np.float32) * rng.choice([1.0, 0.5], size=(p, h, w))
    x = x.astype(np.float32)
    flat = x.reshape(-1)
    for value in (np.nan, np.inf, -np.inf, -0.0):
        flat[rng.integers(0, flat.size, size=max(1, flat.size // 50))] = value
    return x


FAST_SHAPES = [(3, 2, 2), (2, 7, 9), (4, 12, 12), (1, 28, 28), (2, 5, 33), (1, 1, 64)]


def both_paths(kernel, inputs, outputs, *args):
    """Run kernel with simd=True and simd=False on fresh copies of outputs; return both results."""
    results = []
    for simd in (True, False):
        outs = [np.full_like(o, 7) for o in outputs]
        kernel(*inputs, *outs, *args, simd)
        results.append(outs)
    return results


def assert_bits_equal(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))  # bit for bit, NaN and -0.0 included


@pytest.mark.parametrize("shape", FAST_SHAPES)
@pytest.mark.parametrize("window", [(2, 2), (3, 3), (2, 3), (4, 4), (3, 2), (5, 3)])
@pytest.mark.parametrize("padding", [(0, 0), (1, 1), (1, 0), (0, 1), (2, 1)])
@pytest.mark.parametrize("minimum", [False, True])
def test_extreme_fast_paths_equal_the_generic_loops_bit_for_bit(shape, window, padding, minimum):
    """Stride 2 with and without padding (the vector path, its clipped edge windows) and the
    offset-table scatter of backward, against the generic loops."""
    p, h, w = shape
    kh, kw = window
    ph, pw = padding
    if ph > kh // 2 or pw > kw // 2:
        pytest.skip("padding over half the window")
    if kh > h + 2 * ph or kw > w + 2 * pw:
        pytest.skip("window larger than the padded plane")
    x = awkward_planes(p, h, w, seed=h * w + kh + 7 * ph + 3 * pw)
    oh, ow = (h + 2 * ph - kh) // 2 + 1, (w + 2 * pw - kw) // 2 + 1
    y = np.empty((p, oh, ow), np.float32)
    argmax = np.empty((p, oh, ow), np.uint8)
    (y1, a1), (y2, a2) = both_paths(_pool.extreme_forward, (x,), (y, argmax), kh, kw, 2, 2, ph, pw, minimum)
    assert_bits_equal(y1, y2)
    assert_bits_equal(a1, a2)
    dy = awkward_planes(p, oh, ow, seed=5)
    dx = np.empty_like(x)
    (d1,), (d2,) = both_paths(_pool.extreme_backward, (dy, a1), (dx,), kh, kw, 2, 2, ph, pw)
    assert_bits_equal(d1, d2)


@pytest.mark.parametrize("stride", [(1, 1), (3, 2), (1, 3)])
def test_backward_offset_table_equals_the_generic_scatter_for_other_strides(stride):
    sh, sw = stride
    x = awkward_planes(3, 11, 13, seed=sh * 10 + sw)
    kh, kw, ph, pw = 3, 3, 1, 1
    oh, ow = (11 + 2 * ph - kh) // sh + 1, (13 + 2 * pw - kw) // sw + 1
    y, argmax = np.empty((3, oh, ow), np.float32), np.empty((3, oh, ow), np.uint8)
    _pool.extreme_forward(x, y, argmax, kh, kw, sh, sw, ph, pw, False)
    dy = awkward_planes(3, oh, ow, seed=9)
    (d1,), (d2,) = both_paths(_pool.extreme_backward, (dy, argmax), (np.empty_like(x),), kh, kw, sh, sw, ph, pw)
    assert_bits_equal(d1, d2)


@pytest.mark.parametrize("shape", FAST_SHAPES)
def test_average_fast_paths_equal_the_generic_loops_bit_for_bit(shape):
    p, h, w = shape
    x = awkward_planes(p, h, w, seed=h + w)
    oh, ow = h // 2, w // 2
    if oh == 0 or ow == 0:
        pytest.skip("no 2x2 window fits")
    y = np.empty((p, oh, ow), np.float32)
    (y1,), (y2,) = both_paths(_pool.average_forward, (x,), (y,), 2, 2, 2, 2, 0, 0, True)
    assert_bits_equal(y1, y2)
    dy = awkward_planes(p, oh, ow, seed=3)
    (d1,), (d2,) = both_paths(_pool.average_backward, (dy,), (np.empty_like(x),), 2, 2, 2, 2, 0, 0, True)
    assert_bits_equal(d1, d2)


@pytest.mark.parametrize("length", [1, 3, 4, 7, 16, 49, 784, 1001])
def test_global_fast_paths_equal_the_generic_loops_bit_for_bit(length):
    rng = np.random.default_rng(length)
    x = rng.standard_normal((5, length)).astype(np.float32)   # sums: no NaN, so rounding shows
    (y1,), (y2,) = both_paths(_pool.global_average_forward, (x,), (np.empty(5, np.float32),))
    assert_bits_equal(y1, y2)
    x = awkward_planes(5, 1, length, seed=length).reshape(5, length)
    (m1, i1), (m2, i2) = both_paths(_pool.global_max_forward, (x,), (np.empty(5, np.float32),
                                                                     np.empty(5, np.int32)))
    assert_bits_equal(m1, m2)
    assert_bits_equal(i1, i2)
