"""FractionalMaxPool2D and StochasticPool2D against slow NumPy references, PyTorch, and statistics.

The references below loop over windows in plain Python, in float64, and take
the layer's random numbers as arguments: the tests draw them from a Generator
seeded like the layer's, so the layer's random choice is known.
"""
from __future__ import annotations

import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import yaml

import minicnn.layers as L
from minicnn import _random_pool
from minicnn.config import build_model, load_config
from minicnn.errors import ConfigError
from reference import assert_close

ROOT = pathlib.Path(__file__).resolve().parent.parent
DTYPES = [np.float32, np.float64]
EPS = 1e-6


# -------------------------------------------------------------- references --

def intervals(u, size, out, k, dtype):
    """PyTorch's generate_intervals, in the input's precision."""
    t = np.dtype(dtype).type
    if out == 1:
        return [size - k]
    alpha = t(size - k) / t(out - 1)
    return [int(t(t(o) + t(u)) * alpha) - int(t(u) * alpha) for o in range(out - 1)] + [size - k]


def fractional_reference(x, samples, kernel, out):
    """(y, dx of an upstream gradient via ``scatter``): a row-major scan per region, PyTorch's rule."""
    (kh, kw), (oh_, ow_) = kernel, out
    n, c, h, w = x.shape
    y = np.zeros((n, c, oh_, ow_))
    where = np.zeros((n, c, oh_, ow_), dtype=np.int64)
    for a in range(n):
        for b in range(c):
            cols = intervals(samples[a, b, 0], w, ow_, kw, x.dtype)
            rows = intervals(samples[a, b, 1], h, oh_, kh, x.dtype)
            for oh, r in enumerate(rows):
                for ow, s in enumerate(cols):
                    best, at = -math.inf, r * w + s
                    for i in range(r, r + kh):
                        for j in range(s, s + kw):
                            v = float(x[a, b, i, j])
                            if v > best or math.isnan(v):
                                best, at = v, i * w + j
                    y[a, b, oh, ow], where[a, b, oh, ow] = best, at
    return y, where


def stochastic_reference(x, u, kernel, stride):
    """Training: the first element whose running sum of positive parts exceeds u * S."""
    (kh, kw), (sh, sw) = kernel, stride
    n, c, h, w = x.shape
    oh_, ow_ = (h - kh) // sh + 1, (w - kw) // sw + 1
    y = np.zeros((n, c, oh_, ow_))
    where = np.full((n, c, oh_, ow_), -1, dtype=np.int64)
    for a, b, oh, ow in np.ndindex(n, c, oh_, ow_):
        cells = [(i, j) for i in range(oh * sh, oh * sh + kh) for j in range(ow * sw, ow * sw + kw)]
        weights = [float(x[a, b, i, j]) if x[a, b, i, j] > 0 else 0.0 for i, j in cells]
        total = 0.0
        for wt in weights:
            total += wt
        if total == 0:
            continue
        running, pick = 0.0, max(k for k, wt in enumerate(weights) if wt > 0)
        for k, wt in enumerate(weights):
            running += wt
            if running > u[a, b, oh, ow] * total:
                pick = k
                break
        i, j = cells[pick]
        y[a, b, oh, ow], where[a, b, oh, ow] = x[a, b, i, j], i * w + j
    return y, where


def stochastic_eval_reference(x, kernel, stride):
    """sum(w^2) / sum(w) with w = max(a, 0); 0 for a window without a positive element."""
    (kh, kw), (sh, sw) = kernel, stride
    n, c, h, w = x.shape
    y = np.zeros((n, c, (h - kh) // sh + 1, (w - kw) // sw + 1))
    for a, b, oh, ow in np.ndindex(*y.shape):
        win = np.maximum(x[a, b, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw].astype(np.float64), 0).ravel()
        y[a, b, oh, ow] = (win ** 2).sum() / win.sum() if win.sum() > 0 else 0.0
    return y


def scatter(where, dy, shape):
    """dx: each output's gradient added at its flat position in its plane (none where -1)."""
    dx = np.zeros(shape)
    n, c, h, w = shape
    for a, b, o, p in np.ndindex(*dy.shape):
        k = where[a, b, o, p]
        if k >= 0:
            dx[a, b, k // w, k % w] += dy[a, b, o, p]
    return dx


# ------------------------------------------------------------------ cases --

def fractional_case(seed):
    """A random valid geometry: rectangles, odd sizes; output_size or output_ratio."""
    rng = np.random.default_rng(seed)
    kh, kw = (int(v) for v in rng.integers(1, 5, 2))
    h, w = int(rng.integers(kh, kh + 16)), int(rng.integers(kw, kw + 16))
    n, c = (int(v) for v in rng.integers(1, 4, 2))
    if seed % 2:
        out = (int(rng.integers(1, h - kh + 2)), int(rng.integers(1, w - kw + 2)))
        kwargs = dict(output_size=out if out[0] != out[1] or seed % 4 == 1 else out[0])
    else:
        lo = [max(1 / s, 0.05) for s in (h, w)]   # at least one row and column
        hi = [min(0.95, (s - k + 1) / s) for s, k in ((h, kh), (w, kw))]
        kwargs = dict(output_ratio=tuple(float(rng.uniform(a, max(a, b))) for a, b in zip(lo, hi)))
    kernel = (kh, kw) if kh != kw or seed % 3 else kh
    return (n, c, h, w), kernel, kwargs


def valid_fractional_cases():
    """The first 30 random cases whose output fits the input."""
    cases = []
    for seed in range(60):
        shape, kernel, kwargs = fractional_case(seed)
        try:
            L.FractionalMaxPool2D(kernel, **kwargs).output_shape(shape[1:])
        except ValueError:
            continue
        cases.append(pytest.param(shape, kernel, kwargs, id=f"random{seed}"))
    return cases[:30]


FRACTIONAL_CASES = valid_fractional_cases()

STOCHASTIC_NAMED = {
    "2x2/2 (unrolled)": ((2, 3, 8, 8), 2, None),
    "2x2/2 odd map": ((2, 2, 7, 9), 2, None),
    "3x3/2 overlap": ((2, 2, 9, 7), 3, 2),
    "3x3/1 overlap": ((1, 2, 6, 7), 3, 1),
    "rect kernel and stride": ((2, 2, 9, 7), (3, 2), (2, 1)),
    "rect overlap": ((1, 3, 8, 10), (2, 4), (1, 3)),
    "1x1": ((2, 2, 4, 3), 1, None),
    "kernel = map": ((2, 2, 5, 6), (5, 6), None),
    "stride > kernel": ((1, 2, 11, 10), 2, 3),
}


def stochastic_case(seed):
    rng = np.random.default_rng(100 + seed)
    kh, kw = (int(v) for v in rng.integers(1, 5, 2))
    sh, sw = (int(v) for v in rng.integers(1, 4, 2))
    h, w = int(rng.integers(kh, kh + 10)), int(rng.integers(kw, kw + 10))
    n, c = (int(v) for v in rng.integers(1, 3, 2))
    return (n, c, h, w), (kh, kw), None if seed % 4 == 0 else (sh, sw)


STOCHASTIC_CASES = [pytest.param(*case, id=name) for name, case in STOCHASTIC_NAMED.items()]
STOCHASTIC_CASES += [pytest.param(*stochastic_case(seed), id=f"random{seed}") for seed in range(20)]


def relu_input(shape, dtype, seed=0, ties=False):
    """Non-negative, as after a ReLU: about a third exact zeros (whole zero windows too)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, shape).astype(np.float64) if ties else rng.standard_normal(shape)
    return np.maximum(x - 0.4, 0).astype(dtype)


def geometry(layer):
    return layer.kernel_size, layer.stride


# ------------------------------------------------------------- fractional --

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", ["continuous", "ties"])
@pytest.mark.parametrize("shape, kernel, kwargs", FRACTIONAL_CASES)
def test_fractional_matches_reference(shape, kernel, kwargs, values, dtype):
    rng = np.random.default_rng(3)
    x = (rng.integers(-1, 2, shape) if values == "ties" else rng.standard_normal(shape)).astype(dtype)
    layer = L.FractionalMaxPool2D(kernel, **kwargs, rng=np.random.default_rng(11))
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    samples = np.random.default_rng(11).random((shape[0], shape[1], 2)).astype(dtype)
    ref_y, where = fractional_reference(x, samples, layer.kernel_size, y.shape[2:])
    assert_close(y, ref_y, dtype)
    assert_close(dx, scatter(where, dy, shape), dtype)


def test_fractional_with_integer_alpha_is_max_pooling():
    """28 -> 14 with 2x2 regions: alpha = 2, every sample gives the 2x2/2 grid."""
    x = np.random.default_rng(0).standard_normal((3, 4, 28, 28))
    layer = L.FractionalMaxPool2D(2, output_size=14, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(layer.forward(x), L.MaxPool2D(2).forward(x))


def test_fractional_nan_and_inf_follow_pytorchs_rule():
    x = np.full((1, 1, 4, 4), -np.inf)   # 2x2 regions at rows and columns 0 and 2
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 1, 0] = np.nan      # the last NaN in row-major order of the first region
    layer = L.FractionalMaxPool2D(2, output_size=(2, 2), rng=np.random.default_rng(0))
    y = layer.forward(x)
    assert np.isnan(y[0, 0, 0, 0]) and (y.ravel()[1:] == -np.inf).all()
    dx = layer.backward(np.ones_like(y))
    assert dx[0, 0, 1, 0] == 1 and dx[0, 0, 0, 1] == 0
    assert dx[0, 0, 0, 2] == dx[0, 0, 2, 0] == dx[0, 0, 2, 2] == 1     # all -inf regions: their first element
    assert dx.sum() == 4


@pytest.mark.parametrize("dtype", DTYPES)
def test_fractional_evaluation_uses_fixed_samples_per_channel(dtype):
    """default_rng(0).random((C, 2)) for every image: deterministic, independent of the batch."""
    x = np.random.default_rng(0).standard_normal((3, 4, 17, 13)).astype(dtype)
    layer = L.FractionalMaxPool2D((3, 2), output_ratio=(0.55, 0.6), rng=np.random.default_rng(0))
    state = layer.rng.bit_generator.state
    y1, y2 = layer.forward(x, training=False), layer.forward(x, training=False)
    np.testing.assert_array_equal(y1, y2)
    assert layer.rng.bit_generator.state == state        # nothing drawn
    samples = np.broadcast_to(np.random.default_rng(0).random((4, 2)).astype(dtype), (3, 4, 2))
    ref, _ = fractional_reference(x, samples, layer.kernel_size, y1.shape[2:])
    assert_close(y1, ref, dtype)
    np.testing.assert_array_equal(layer.forward(x[1:2], training=False), y1[1:2])     # alone or in a batch
    same = np.broadcast_to(x[:1, :1], (1, 4, 17, 13)).copy()                          # one map on every channel
    assert len({layer.forward(same, training=False)[0, k].tobytes() for k in range(4)}) > 1


def test_fractional_output_shape_follows_the_input_with_a_ratio():
    layer = L.FractionalMaxPool2D(3, output_ratio=0.5)
    assert layer.output_shape((8, 28, 28)) == (8, 14, 14)
    assert layer.output_shape((8, 14, 14)) == (8, 7, 7)
    assert layer.output_shape((8, 15, 21)) == (8, 7, 10)     # int(H * ratio), as PyTorch
    assert L.FractionalMaxPool2D((2, 3), output_size=(5, 4)).output_shape((1, 9, 9)) == (1, 5, 4)


def test_fractional_window_bounds_the_step():
    layer = L.FractionalMaxPool2D(3, output_ratio=0.5)
    assert layer.window((1, 28, 28)) == ((3, 3), (2, 2))     # alpha = 25 / 13: steps of 1 or 2
    assert L.FractionalMaxPool2D(2, output_size=(1, 3)).window((1, 5, 9)) == ((2, 2), (1, 4))


@pytest.mark.parametrize("kwargs, words", [
    (dict(kernel_size=2), "exactly one"),
    (dict(kernel_size=2, output_size=3, output_ratio=0.5), "exactly one"),
    (dict(kernel_size=0, output_size=3), "kernel_size"),
    (dict(kernel_size=2, output_size=0), "output_size=(0, 0)"),
    (dict(kernel_size=2, output_size=(3, -1)), "-1"),
    (dict(kernel_size=2, output_ratio=1.0), "output_ratio=1.0"),
    (dict(kernel_size=2, output_ratio=0), "output_ratio=0"),
    (dict(kernel_size=2, output_ratio=(0.5, 1.5)), "1.5"),
    (dict(kernel_size=2, output_ratio=-0.5), "-0.5"),
])
def test_fractional_bad_arguments_are_value_errors(kwargs, words):
    with pytest.raises(ValueError, match="FractionalMaxPool2D") as info:
        L.FractionalMaxPool2D(**kwargs)
    assert words in str(info.value)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=2.0, output_size=2), dict(kernel_size=2, output_size="3"),
                                    dict(kernel_size=2, output_ratio="0.5"), dict(kernel_size=2, output_ratio=True),
                                    dict(kernel_size=2, output_ratio=(0.5, 0.5, 0.5))])
def test_fractional_wrong_types_are_type_errors(kwargs):
    with pytest.raises(TypeError, match="FractionalMaxPool2D"):
        L.FractionalMaxPool2D(**kwargs)


@pytest.mark.parametrize("kwargs, shape, numbers", [
    (dict(kernel_size=3, output_size=13), (1, 1, 14, 14), ["13x13", "12x12"]),
    (dict(kernel_size=(2, 5), output_size=(4, 3)), (2, 1, 5, 6), ["4x3", "4x2"]),
    (dict(kernel_size=4, output_ratio=0.9), (1, 1, 10, 10), ["9x9", "7x7"]),
    (dict(kernel_size=1, output_ratio=0.2), (1, 1, 4, 9), ["0x1"]),
    (dict(kernel_size=7, output_size=1), (1, 1, 6, 9), ["1x1", "0x3"]),
])
def test_fractional_output_larger_than_input_minus_kernel_plus_one_is_value_error(kwargs, shape, numbers):
    layer = L.FractionalMaxPool2D(**kwargs)
    for call in (lambda: layer.forward(np.zeros(shape)), lambda: layer.output_shape(shape[1:])):
        with pytest.raises(ValueError, match="FractionalMaxPool2D") as info:
            call()
        for number in numbers:
            assert number in str(info.value)


# ------------------------------------------------------------- stochastic --

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ties", [False, True], ids=["continuous", "ties"])
@pytest.mark.parametrize("shape, kernel, stride", STOCHASTIC_CASES)
def test_stochastic_matches_reference(shape, kernel, stride, ties, dtype):
    x = relu_input(shape, dtype, ties=ties)
    layer = L.StochasticPool2D(kernel, stride, rng=np.random.default_rng(5))
    y = layer.forward(x)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    u = np.random.default_rng(5).random(y.shape)
    ref_y, where = stochastic_reference(x, u, *geometry(layer))
    assert_close(y, ref_y, dtype)
    assert_close(dx, scatter(where, dy, shape), dtype)
    assert_close(layer.forward(x, training=False), stochastic_eval_reference(x, *geometry(layer)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_stochastic_signed_input_treats_negatives_as_zero_weight(dtype):
    x = np.random.default_rng(2).standard_normal((2, 3, 9, 8)).astype(dtype)
    x[0, 0, :2, :2] = -1.0                               # a window without a positive element
    x[1, 1, 2, 3] = np.nan                               # NaN weighs nothing
    layer = L.StochasticPool2D(2, rng=np.random.default_rng(4))
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(y))
    ref_y, where = stochastic_reference(x, np.random.default_rng(4).random(y.shape), (2, 2), (2, 2))
    assert_close(y, ref_y, dtype)
    assert (y >= 0).all() and y[0, 0, 0, 0] == 0
    assert (dx[0, 0, :2, :2] == 0).all() and dx[1, 1, 2, 3] == 0
    assert_close(layer.forward(x, training=False), stochastic_eval_reference(x, (2, 2), (2, 2)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 2), ((2, 3), (1, 2))])
def test_stochastic_unrolled_and_generic_loops_agree_bit_for_bit(kernel, stride, dtype):
    x = relu_input((3, 4, 12, 13), dtype)
    layer = L.StochasticPool2D(kernel, stride)
    (kh, kw), (sh, sw) = geometry(layer)
    shape = (12, *layer.output_shape((4, 12, 13))[1:])
    u = np.random.default_rng(0).random(shape)
    u[0] = 0.0                                          # the smallest draw picks the first positive
    planes = x.reshape(12, 12, 13)
    outs = []
    for fast in (True, False):
        y, index, ev = np.empty(shape, dtype), np.empty(shape, np.int32), np.empty(shape, dtype)
        _random_pool.stochastic_forward(planes, u, y, index, kh, kw, sh, sw, fast)
        _random_pool.stochastic_eval_forward(planes, ev, kh, kw, sh, sw, fast)
        outs.append((y, index, ev))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def test_stochastic_rounding_at_the_top_picks_the_last_positive_element():
    """u just below 1: u * S may round to S; the pick is then the last positive element."""
    x = np.array([[[[0.1, 0.2], [0.7, 0.0]]]])
    layer = L.StochasticPool2D(2)
    for fast in (True, False):
        y, index = np.empty((1, 1, 1)), np.empty((1, 1, 1), np.int32)
        _random_pool.stochastic_forward(x[0], np.full((1, 1, 1), np.nextafter(1.0, 0)), y, index, 2, 2, 2, 2, fast)
        assert y[0, 0, 0] == 0.7 and index[0, 0, 0] == 2
    assert layer.forward(x, training=False)[0, 0, 0, 0] == pytest.approx((0.01 + 0.04 + 0.49) / 1.0)


def test_stochastic_sampling_frequencies():
    """Chi-square over 20,000 picks of one window against a_i / sum a (seeded: deterministic).

    With 5 degrees of freedom the 0.1% critical value is 20.5.  The layer's
    frequencies pass; uniform picks and a^2 weights, two plausible wrong rules,
    give statistics in the thousands.
    """
    a = np.array([0.0, 1.0, 2.0, 3.0, 0.5, 4.0, 0.0, 1.5, 3.0])     # 3x3, two zeros
    x = np.tile(a.reshape(1, 1, 3, 3), (20000, 1, 1, 1))
    layer = L.StochasticPool2D(3, rng=np.random.default_rng(2024))
    layer.forward(x)
    dx = layer.backward(np.ones((20000, 1, 1, 1)))
    counts = dx.reshape(20000, 9).sum(axis=0)
    assert counts.sum() == 20000 and counts[0] == counts[6] == 0

    def chi2(p):
        expected = 20000 * p[a > 0]
        return float((((counts[a > 0] - expected) ** 2) / expected).sum())

    assert chi2(a / a.sum()) < 20.5
    assert chi2((a > 0) / (a > 0).sum()) > 200
    assert chi2(a ** 2 / (a ** 2).sum()) > 200


def test_stochastic_evaluation_is_the_expectation_of_training():
    x = relu_input((1, 2, 4, 6), np.float64, seed=8)
    layer = L.StochasticPool2D(2, rng=np.random.default_rng(0))
    mean = np.mean([layer.forward(x) for _ in range(4000)], axis=0)
    np.testing.assert_allclose(mean, layer.forward(x, training=False), atol=0.03)


def test_stochastic_hand_values():
    x = np.array([[[[1.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])
    layer = L.StochasticPool2D(2)
    np.testing.assert_array_equal(layer.forward(x, training=False), [[[[2.5, 0.0]]]])
    assert layer.macs((1, 2, 4)) == 2 * 4


@pytest.mark.parametrize("kwargs, number", [(dict(kernel_size=0), "0"), (dict(kernel_size=2, stride=0), "0"),
                                            (dict(kernel_size=(2, -1)), "-1")])
def test_stochastic_bad_window_is_value_error(kwargs, number):
    with pytest.raises(ValueError, match="StochasticPool2D") as info:
        L.StochasticPool2D(**kwargs)
    assert number in str(info.value)


def test_stochastic_window_larger_than_input_is_value_error():
    with pytest.raises(ValueError, match="StochasticPool2D"):
        L.StochasticPool2D(3).forward(np.zeros((1, 1, 2, 5)))


def test_stochastic_backward_needs_a_training_forward():
    layer = L.StochasticPool2D(2)
    layer.forward(np.ones((1, 1, 4, 4)), training=False)
    with pytest.raises(RuntimeError, match="StochasticPool2D"):
        layer.backward(np.ones((1, 1, 2, 2)))


# ------------------------------------------------------------------ both --

RANDOM_LAYERS = {
    "FractionalMaxPool2D": lambda rng: L.FractionalMaxPool2D((3, 2), output_ratio=(0.6, 0.5), rng=rng),
    "StochasticPool2D": lambda rng: L.StochasticPool2D(3, 2, rng=rng),
}


@pytest.mark.parametrize("name", RANDOM_LAYERS)
def test_same_seed_same_output_other_seed_other_output(name):
    x = relu_input((4, 3, 15, 14), np.float32, seed=1)
    make = RANDOM_LAYERS[name]
    assert make(None).draws_random is True
    a, b, c = make(np.random.default_rng(7)), make(np.random.default_rng(7)), make(np.random.default_rng(8))
    ya, yb, yc = a.forward(x), b.forward(x), c.forward(x)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(ya, yc)
    assert not np.array_equal(a.forward(x), ya)           # the next batch draws anew
    a.rng = np.random.default_rng(7)                       # what the trainer's seed_batch does
    np.testing.assert_array_equal(a.forward(x), ya)


@pytest.mark.parametrize("name", RANDOM_LAYERS)
def test_evaluation_draws_nothing_and_repeats(name):
    x = relu_input((2, 3, 15, 14), np.float64, seed=1)
    layer = RANDOM_LAYERS[name](np.random.default_rng(0))
    state = layer.rng.bit_generator.state
    y = layer.forward(x, training=False)
    np.testing.assert_array_equal(RANDOM_LAYERS[name](np.random.default_rng(99)).forward(x, training=False), y)
    assert layer.rng.bit_generator.state == state


@pytest.mark.parametrize("name", RANDOM_LAYERS)
def test_two_threads_give_one_threads_result(name, monkeypatch):
    """Above PARALLEL_MIN_WORK the planes are split between threads: the same bits."""
    from minicnn import threads

    x = relu_input((4, 8, 180, 190), np.float32, seed=3)        # 1,094,400 elements
    results = []
    for n in (1, 2):
        monkeypatch.setattr(threads, "KERNEL_THREADS", n)
        assert len(threads.row_ranges(32, x.size)) == n
        layer = RANDOM_LAYERS[name](np.random.default_rng(0))
        y = layer.forward(x)
        results.append((y, layer.backward(np.ones_like(y)), layer.forward(x, training=False)))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


GRAD_CASES = {
    "fractional ratio": (lambda: L.FractionalMaxPool2D((3, 2), output_ratio=(0.6, 0.7)), (2, 2, 9, 8)),
    "fractional size, overlap": (lambda: L.FractionalMaxPool2D(3, output_size=(5, 4)), (1, 3, 8, 7)),
    "stochastic 2x2": (lambda: L.StochasticPool2D(2), (2, 2, 6, 7)),
    "stochastic 3x3/2 overlap": (lambda: L.StochasticPool2D(3, 2), (1, 3, 7, 8)),
    "stochastic rect": (lambda: L.StochasticPool2D((2, 3), (1, 2)), (2, 1, 5, 7)),
}


@pytest.mark.parametrize("name", GRAD_CASES)
def test_numerical_gradient_with_the_random_choice_held(name):
    """Central differences on sum(y * r), the layer's rng reset before every forward."""
    make, shape = GRAD_CASES[name]
    rng = np.random.default_rng(0)
    x = (rng.permutation(int(np.prod(shape))).reshape(shape) + 1) * 0.01      # distinct, positive
    layer = make()

    def forward():
        layer.rng = np.random.default_rng(3)
        return layer.forward(x)

    r = np.random.default_rng(1).standard_normal(forward().shape)
    dx = layer.backward(r)
    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + EPS
        plus = float(np.sum(forward() * r))
        x[idx] = old - EPS
        minus = float(np.sum(forward() * r))
        x[idx] = old
        numeric[idx] = (plus - minus) / (2 * EPS)
    assert np.abs(dx).max() > 0.1
    assert np.abs(dx - numeric).max() / np.abs(dx).max() < 1e-6


# ---------------------------------------------------------------- PyTorch --

TORCH_CASES = [
    ((2, 3, 28, 28), 3, dict(output_ratio=(0.5, 0.5))),
    ((2, 3, 28, 28), 2, dict(output_ratio=(0.7071, 0.7071))),
    ((3, 2, 17, 23), (3, 2), dict(output_size=(7, 11))),
    ((1, 4, 9, 14), (2, 4), dict(output_ratio=(0.6, 0.45))),
    ((2, 2, 6, 31), 1, dict(output_size=(6, 1))),
    ((4, 1, 50, 32), 3, dict(output_size=(13, 12))),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kernel, kwargs", TORCH_CASES)
def test_fractional_equals_pytorch_given_the_same_samples(shape, kernel, kwargs, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    x[0, 0, :4, :4] = 0.0                                  # ties
    layer = L.FractionalMaxPool2D(kernel, **kwargs, rng=np.random.default_rng(42))
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    samples = np.random.default_rng(42).random((shape[0], shape[1], 2)).astype(dtype)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = torch.nn.functional.fractional_max_pool2d(tx, kernel, **kwargs, _random_samples=torch.from_numpy(samples))
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(dx, tx.grad.numpy())


@pytest.mark.parametrize("size, kernel, out", [(6, 2, 3), (8, 2, 5), (7, 3, 4), (31, 3, 14)])
def test_fractional_region_arithmetic_runs_in_float32_as_pytorchs(size, kernel, out):
    """Samples just below a region boundary, where float32 and float64 arithmetic disagree."""
    torch = pytest.importorskip("torch")
    t = np.float32
    alpha = (size - kernel) / (out - 1)
    candidates = [np.nextafter(t(m / alpha - o), t(0)) for o in range(1, out - 1)
                  for m in range(int(o * alpha) + 1, int((o + 1) * alpha) + 1) if 0 < m / alpha - o < 1]
    disagree = [u for u in candidates if intervals(u, size, out, kernel, t) != intervals(u, size, out, kernel, np.float64)]
    assert disagree, "no sample where the two precisions differ: the test would prove nothing"
    x = np.random.default_rng(0).standard_normal((1, len(disagree), size, size)).astype(t)
    samples = np.stack([disagree, disagree], axis=1)[None].astype(t)
    planes = x.reshape(-1, size, size)
    y, index = np.empty((len(disagree), out, out), t), np.empty((len(disagree), out, out), np.int32)
    _random_pool.fractional_max_forward(planes, samples[0], y, index, kernel, kernel)
    ty, ti = torch.nn.functional.fractional_max_pool2d(torch.from_numpy(x), kernel, output_size=out,
                                                       _random_samples=torch.from_numpy(samples),
                                                       return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy()[0])
    np.testing.assert_array_equal(index, ti.numpy()[0])


def test_the_benchmarks_pytorch_stochastic_pooling_is_the_layers():
    """benchmarks/torch_twin.py's composition: the same output and gradient where the pick is
    forced (one positive element per window, or none), the same evaluation everywhere."""
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from torch_twin import torch_stochastic_pool, torch_stochastic_pool_eval

    rng = np.random.default_rng(0)
    x = np.zeros((2, 3, 12, 12))
    x[:, :, ::2, 1::2] = rng.random((2, 3, 6, 6)) + 0.1
    x[0, 0, :2, :2] = 0                                         # no positive element
    layer = L.StochasticPool2D(2)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = torch_stochastic_pool(torch, tx, (2, 2), (2, 2))
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(ty.detach().numpy(), y)
    np.testing.assert_array_equal(tx.grad.numpy(), layer.backward(dy))
    x = relu_input((2, 3, 9, 8), np.float64)
    layer = L.StochasticPool2D((3, 2), (2, 1))
    np.testing.assert_allclose(torch_stochastic_pool_eval(torch, torch.from_numpy(x), (3, 2), (2, 1)).numpy(),
                               layer.forward(x, training=False), rtol=1e-12)


# ------------------------------------------------------------------ YAML --

CONFIGS = ["fractional_max_pool", "stochastic_pool"]


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_build_train_a_step_and_summarise(name, tmp_path):
    config = load_config(ROOT / "configs" / f"{name}.yaml")
    model = build_model(config)
    assert [r.output_shape for r in model.rows if len(r.output_shape) == 3][-1] == (64, 7, 7)
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    out = model.forward(x, training=True, logits=True)
    assert out.shape == (4, 10) and np.isfinite(out).all()
    model.backward(np.ones_like(out), logits=True, input_grad=False)
    done = subprocess.run([sys.executable, "-m", "minicnn", "summary", str(ROOT / "configs" / f"{name}.yaml")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert ("FractionalMaxPool2D" if name.startswith("fractional") else "StochasticPool2D") in done.stdout


def config_with(tmp_path, layer):
    data = yaml.safe_load((ROOT / "configs" / "max_pool.yaml").read_text())
    data["model"]["layers"][2] = layer
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


YAML_BROKEN = [
    ({"type": "fractionalmaxpool2d", "kernel_size": 2, "output_ratio": 1.5}, "model.layers[2].output_ratio",
     "(0, 1)"),
    ({"type": "fractionalmaxpool2d", "kernel_size": 2, "output_ratio": "half"}, "model.layers[2].output_ratio",
     "(0, 1)"),
    ({"type": "fractionalmaxpool2d", "kernel_size": 2, "output_ratio": [0.5, 0.5, 0.5]},
     "model.layers[2].output_ratio", "pair"),
    ({"type": "fractionalmaxpool2d", "kernel_size": 2, "output_size": 0}, "model.layers[2].output_size",
     "positive"),
    ({"type": "fractionalmaxpool2d", "kernel_size": 2}, "model.layers[2]", "exactly one"),
    ({"type": "fractionalmaxpool2d", "kernel_size": 2, "output_size": 14, "output_ratio": 0.5}, "model.layers[2]",
     "exactly one"),
    ({"type": "fractionalmaxpool2d", "kernel_size": 3, "output_size": 27}, "model.layers[2]", "26x26"),
    ({"type": "fractionalmaxpool2d", "output_size": 14}, "model.layers[2].kernel_size", "missing"),
    ({"type": "fractionalmaxpool2d", "kernel_size": 2, "output_size": 14, "stride": 2}, "model.layers[2].stride",
     "unknown key"),
    ({"type": "stochasticpool2d", "kernel_size": 0}, "model.layers[2].kernel_size", "positive"),
    ({"type": "stochasticpool2d", "kernel_size": 2, "padding": 1}, "model.layers[2].padding", "unknown key"),
    ({"type": "stochasticpool2d", "kernel_size": 40}, "model.layers[2]", "does not fit"),
]


@pytest.mark.parametrize("layer, key_path, words", YAML_BROKEN, ids=[f"{b[0]}" for b in YAML_BROKEN])
def test_bad_yaml_names_the_key_path(tmp_path, layer, key_path, words):
    path = config_with(tmp_path, layer)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path) and info.value.path == key_path
    assert words in info.value.message


def test_bad_yaml_exits_2_from_the_command_line(tmp_path):
    path = config_with(tmp_path, {"type": "fractionalmaxpool2d", "kernel_size": 2, "output_ratio": 1.5})
    done = subprocess.run([sys.executable, "-m", "minicnn", "summary", str(path)], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 2
    assert f"{path}: model.layers[2].output_ratio" in done.stderr and "Traceback" not in done.stderr
