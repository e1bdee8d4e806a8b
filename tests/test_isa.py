"""MINICNN_ISA: the one switch that caps every kernel's instruction set, and
every lower path against the portable loops on whatever CPU runs the tests.

The level is read once per process; the tests move it with
``minicnn.isa.override`` (for tests only), which sets it in every kernel
module.  A level above what this CPU runs is skipped, saying so.  The
comparisons reuse the kernel tests' shapes: pooling, im2col / col2im and the
Winograd transforms must give the portable loops' bits; the GEMM and the
whole Conv2D (both paths, forward and backward) each stay within the bounds
tests/test_conv.py states against float64, and on 1, 2 and 3 threads as
tests/test_threads.py asks.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from minicnn import _conv, _im2col, _pool, isa
from minicnn.errors import UserError
from minicnn.layers import conv, winograd
import test_conv
import test_pooling
import test_threads
from test_threads import kernel_threads  # noqa: F401  (the fixture)

ROOT = pathlib.Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(25)


def runnable(level):
    if isa.LEVELS.index(level) > isa.LEVELS.index(isa.cpu()):
        pytest.skip(f"this CPU runs at most {isa.cpu()}, not {level}")
    return level


LOWER = [pytest.param(level, id=level) for level in ("avx512", "avx2")]


def at(level, fn, *args):
    with isa.override(level):
        return fn(*args)


# ---------------------------------------------------------- the switch --

def test_parse_accepts_the_levels_and_refuses_the_rest():
    assert isa.parse("", "avx2") == "avx2"
    assert isa.parse(" AVX2 ", "avx512") == "avx2"
    assert isa.parse("portable", "portable") == "portable"
    with pytest.raises(UserError, match="this CPU runs at most avx2"):
        isa.parse("avx512", "avx2")
    with pytest.raises(UserError, match="expected avx512, avx2 or portable"):
        isa.parse("sse9" * 100, "avx512")


def test_every_dispatching_kernel_module_registered_its_level():
    import minicnn.layers  # noqa: F401  (imports every kernel module)

    assert {setter.__module__ for setter in isa._setters} >= {"minicnn._conv", "minicnn._im2col", "minicnn._pool"}


def test_override_moves_the_gemm_kernel_and_restores_it():
    best = _conv.gemm_kernel()
    assert best == {"avx512": "avx512", "avx2": "avx2", "portable": "plain"}[isa.level()]
    assert at("portable", _conv.gemm_kernel) == "plain"
    assert at("portable", _conv.gemm_kernel, _conv.KERNELS[best]) in (None, "plain")  # the cap binds asked-for kernels
    if isa.cpu() != "portable":
        assert at("avx2", _conv.gemm_kernel) == "avx2"
    assert _conv.gemm_kernel() == best


def run_minicnn(env_value, *args, code=None):
    env = dict(os.environ, MINICNN_ISA=env_value, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "minicnn", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("value, message", [("avx3", "is not an instruction-set level"),
                                            ("avx512" if isa.cpu() != "avx512" else "", "runs at most")])
def test_cli_refuses_a_bad_level_in_one_line_with_status_2(value, message):
    if not value:
        pytest.skip("this CPU runs every level")
    result = run_minicnn(value, "summary", "configs/max_pool.yaml")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_python_gets_a_user_error_and_a_capped_process_reports_its_level():
    result = run_minicnn("bogus", code="import minicnn.layers, minicnn.isa as i, minicnn._conv as c;"
                                        "print(c.gemm_kernel()); i.level()")
    assert result.stdout.split() == ["plain"]       # imported, every kernel held to portable, then refused
    assert result.returncode == 1 and "minicnn.errors.UserError: MINICNN_ISA='bogus'" in result.stderr
    result = run_minicnn("portable", code="import minicnn.layers, minicnn.isa as i, minicnn._conv as c;"
                                           "print(i.level(), c.gemm_kernel())")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["portable", "plain"]


# ------------------------------------------ lower paths against portable --

@pytest.mark.parametrize("level", LOWER)
@pytest.mark.parametrize("shape", test_pooling.FAST_SHAPES)
@pytest.mark.parametrize("window, padding", [((2, 2), (0, 0)), ((3, 3), (1, 1)), ((2, 3), (0, 1)),
                                             ((5, 3), (2, 1)), ((4, 4), (1, 0))])
@pytest.mark.parametrize("minimum", [False, True])
def test_stride_2_max_min_pooling_equals_portable_bit_for_bit(level, shape, window, padding, minimum):
    runnable(level)
    p, h, w = shape
    (kh, kw), (ph, pw) = window, padding
    if kh > h + 2 * ph or kw > w + 2 * pw:
        pytest.skip("window larger than the padded plane")
    x = test_pooling.awkward_planes(p, h, w, seed=h * w + kh + 7 * ph)
    oh, ow = (h + 2 * ph - kh) // 2 + 1, (w + 2 * pw - kw) // 2 + 1
    results = []
    for lv in (level, "portable"):
        y, argmax, dx = np.full((p, oh, ow), 7, np.float32), np.full((p, oh, ow), 7, np.uint8), np.full_like(x, 7)
        dy = test_pooling.awkward_planes(p, oh, ow, seed=5)
        with isa.override(lv):
            _pool.extreme_forward(x, y, argmax, kh, kw, 2, 2, ph, pw, minimum)
            _pool.extreme_backward(dy, argmax, dx, kh, kw, 2, 2, ph, pw)
        results.append((y, argmax, dx))
    for fast, portable in zip(*results):
        test_pooling.assert_bits_equal(fast, portable)


IM2COL_SHAPES = [
    (2, 3, 28, 28, 3, 3, 2, 2, 1, 1), (2, 2, 14, 14, 3, 3, 2, 2, 1, 1), (2, 1, 28, 28, 3, 3, 1, 1, 1, 1),
    (1, 2, 9, 8, 3, 2, 2, 1, 1, 0), (3, 1, 7, 10, 2, 3, 1, 2, 0, 2), (2, 2, 5, 5, 5, 5, 1, 1, 2, 2),
    (1, 2, 30, 30, 3, 3, 1, 1, 1, 1), (1, 2, 31, 31, 3, 3, 2, 2, 1, 1), (1, 2, 33, 33, 3, 3, 2, 2, 1, 1),
    (1, 2, 16, 16, 3, 3, 2, 2, 1, 1), (1, 2, 17, 15, 3, 3, 2, 2, 1, 1), (1, 1, 6, 6, 1, 1, 3, 3, 0, 0),
    (2, 1, 1, 1, 3, 3, 2, 2, 1, 1), (1, 2, 8, 8, 2, 2, 2, 2, 0, 0), (1, 1, 32, 3, 8, 3, 1, 1, 0, 0)]


@pytest.mark.parametrize("level", LOWER)
@pytest.mark.parametrize("n, c, h, w, kh, kw, sh, sw, ph, pw", IM2COL_SHAPES)
def test_im2col_and_col2im_equal_portable(level, n, c, h, w, kh, kw, sh, sw, ph, pw):
    runnable(level)
    x = RNG.standard_normal((n, c, h, w)).astype(np.float32)
    x.reshape(-1)[:1], x.reshape(-1)[-1] = np.nan, -0.0
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    d = RNG.standard_normal((c * kh * kw, n * oh * ow)).astype(np.float32)
    d.reshape(-1)[:2] = [-0.0, np.inf]
    out = {}
    for lv in (level, "portable"):
        cols, dx = np.full(d.shape, 7, np.float32), np.full_like(x, 7)
        with isa.override(lv):
            _im2col.im2col(x, cols, kh, kw, sh, sw, ph, pw)
            _im2col.col2im(d, dx, kh, kw, sh, sw, ph, pw)
        out[lv] = (cols, dx)
    for fast, portable in zip(out[level], out["portable"]):
        test_conv.assert_same_values(fast, portable)


WINO = test_conv.WINO_SHAPES + [(2, 3, 28, 28, 1, 1), (1, 2, 31, 31, 1, 1), (2, 2, 14, 14, 0, 0)]


@pytest.mark.parametrize("level", LOWER)
@pytest.mark.parametrize("n, c, h, w, ph, pw", WINO)
def test_winograd_transforms_equal_portable(level, n, c, h, w, ph, pw):
    """All four transforms (input, its adjoint, output with and without ReLU, its
    adjoint): the portable loops' values, NaN, inf and -0.0 included."""
    runnable(level)
    th, tw = winograd.tiles(h, w, (ph, pw))
    t, oh, ow = n * th * tw, h + 2 * ph - 2, w + 2 * pw - 2
    x = RNG.standard_normal((n, c, h, w)).astype(np.float32)
    x.reshape(-1)[:3] = [np.nan, np.inf, -0.0]
    dv = winograd.matrices(np.empty(winograd.matrices_size(c, t, 4), np.float32), c, t)
    dv[...] = RNG.standard_normal(dv.shape)
    dv[:, :, :1], dv[0, 0, -1], dv[5, 0, -1] = -0.0, np.nan, np.inf
    bias = RNG.standard_normal(c).astype(np.float32)
    dy = RNG.standard_normal((n, c, oh, ow)).astype(np.float32)
    dy.reshape(-1)[:2] = [np.nan, -0.0]
    out = {}
    for lv in (level, "portable"):
        size = winograd.matrices_size(c, t, 4)
        v, dm = np.full(size, 7, np.float32), np.full(size, 7, np.float32)
        dx, y, yr = np.full_like(x, 7), np.full((n, c, oh, ow), 7, np.float32), np.full((n, c, oh, ow), 7, np.float32)
        db = np.full(c, 0.5)
        with isa.override(lv):
            _conv.winograd_input(x, winograd.matrices(v, c, t), ph, pw)
            _conv.winograd_input_adjoint(dv, dx, ph, pw)
            _conv.winograd_output(dv, bias, y, False)
            _conv.winograd_output(dv, bias, yr, True)
            _conv.winograd_output_adjoint(dy, winograd.matrices(dm, c, t), db, yr)
        out[lv] = (v, dx, y, yr, dm, db)
    for fast, portable in zip(out[level][:-1], out["portable"][:-1]):   # V, dx, y, ReLU y, dM
        test_conv.assert_same_values(fast, portable)
    np.testing.assert_allclose(out[level][-1], out["portable"][-1], rtol=1e-12)


@pytest.mark.parametrize("level", LOWER)
@pytest.mark.parametrize("m, k, n", test_conv.GEMM_SHAPES)
@pytest.mark.parametrize("layout", ["rows", "a_transposed", "b_transposed"])
def test_gemm_at_each_level_within_the_stated_bound(level, m, k, n, layout):
    """The kernel each level picks, and the portable one, within gamma_(K+1) |A||B| of
    the exact product (an FMA rounds once, a multiply and an add twice: not the same bits)."""
    runnable(level)
    a, b, exact, bound = test_conv.gemm_case(RNG, m, k, n, layout)
    for lv in (level, "portable"):
        c = np.full((m, n), np.nan, dtype=np.float32)
        with isa.override(lv):
            _conv.sgemm(a, b, c)
        assert np.all(np.abs(c - exact) <= bound), lv


@pytest.mark.parametrize("level", LOWER + [pytest.param("portable", id="portable")])
@pytest.mark.parametrize("case", test_conv.LAYER_CASES + [(4, 32, 16, 14, 14, 3, 1, 1), (2, 64, 8, 7, 7, 3, 1, 1)])
def test_conv_forward_at_each_level_within_the_stated_bound(level, case, monkeypatch):
    """Both paths (every 3x3 stride-1 case runs Winograd here)."""
    monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", 1)
    with isa.override(runnable(level)):
        test_conv.test_layer_float32_within_stated_bound(*case, None)


@pytest.mark.parametrize("level", LOWER + [pytest.param("portable", id="portable")])
@pytest.mark.parametrize("case", test_conv.GRADIENT_CASES)
def test_conv_im2col_backward_at_each_level_within_the_stated_bound(level, case):
    """The channels-last backward at avx512, im2col / col2im below."""
    with isa.override(runnable(level)):
        test_conv.test_im2col_float32_gradients_within_stated_bound(*case)


@pytest.mark.parametrize("level", LOWER + [pytest.param("portable", id="portable")])
def test_conv_winograd_backward_at_each_level_close_to_float64(level, monkeypatch):
    monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", 1)
    with isa.override(runnable(level)):
        test_conv.test_winograd_float32_gradients_close_to_float64(None)


@pytest.mark.parametrize("level", LOWER)
@pytest.mark.parametrize("name", ["conv_strided", "conv_big", "max", "max2x2"])
@pytest.mark.parametrize("n", [1, 37])
def test_layers_same_results_on_any_thread_count_at_each_level(level, name, n, kernel_threads):
    """The channels-last backward (avx512 and avx2), Winograd and pooling split over parts."""
    with isa.override(runnable(level)):
        test_threads.test_same_results_on_any_thread_count(name, n, np.float32, kernel_threads)
