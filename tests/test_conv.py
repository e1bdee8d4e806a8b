"""Conv2D's kernels: our float32 GEMM, the Winograd F(2x2, 3x3) transforms, and
the layer on both paths (Winograd and im2col) against a direct convolution.

References are the slow, obvious loops below and tests/reference.py, in float64.

Float32 bounds, and why:
- GEMM: each entry is a sum of K products accumulated in order in float32
  (FMA or multiply-add), so |C - AB| <= gamma_(K+1) (|A||B|), gamma_n = n u / (1 - n u),
  u = 2^-24 (Higham, Accuracy and Stability, 3.5); plus u |C0| when accumulating.
- im2col path: the same bound with K = C kh kw, against S = conv(|x|, |w|) + |b|.
  Its gradients: each dW entry sums N OH OW products, each dx entry at most
  O kh kw, in any order (chunks, parts, overlapping windows): gamma_(terms+3)
  against the same gradient computed on |x|, |w| and |dy|.
- Winograd path: the transforms mix a 4x4 patch, and entries of the
  transformed data can be several times the inputs, so the error is not bounded
  by conv(|x|, |w|) alone.  Every output is y = sum_xi a_xi (sum_c U_xi,c V_xi,c)
  with a chain of at most C + 20 roundings (4 in V, 9 in U, C in the sum, 7
  in the output transform and bias); its error is at most
  gamma_(C+20) kappa^2 S5, where S5 = sum_c ||w_c||_1 max|x_c| over the 5x5
  window that holds the output's 4x4 patch, and kappa = max over i, l of
  sum_xi sum_j |A^T_i,xi| |G_xi,j| |B^T_xi,l| (one dimension's amplification,
  computed below from the matrices: 4; squared for the two dimensions).
  Measured errors sit 100x or more below this worst case.
"""
from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import minicnn.layers as L
from minicnn import _activations, _conv, _im2col
from minicnn.layers import conv, winograd
import reference as ref

U32 = 2.0 ** -24
RNG = np.random.default_rng(1234)


def gamma(n):
    return n * U32 / (1 - n * U32)


# -------------------------------------------------------------- GEMM --

RUNNABLE = [k for k in _conv.KERNELS if _conv.gemm_kernel(_conv.KERNELS[k]) is not None]
GEMM_SHAPES = [(1, 1, 1), (8, 32, 32), (7, 5, 33), (13, 300, 70), (64, 32, 3136 // 7),
               (9, 1, 17), (33, 257, 15), (6, 16, 16), (16, 40, 48)]


def gemm_case(rng, m, k, n, layout):
    """Random float32 A (m, k) and B (k, n), the one ``layout`` names ("a_transposed",
    "b_transposed") column-major; their float64 product; gamma_(K+1) |A||B|, the error bound."""
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    if layout == "a_transposed":
        a = np.asfortranarray(a)                  # column-major: A read across strides
    if layout == "b_transposed":
        b = np.asfortranarray(b)                  # B packed from a strided view
    exact = a.astype(np.float64) @ b.astype(np.float64)
    bound = gamma(k + 1) * (np.abs(a).astype(np.float64) @ np.abs(b))
    return a, b, exact, bound


def test_plain_kernel_runs_everywhere_and_auto_picks_the_best():
    assert "plain" in RUNNABLE
    best = "avx512" if "avx512" in RUNNABLE else "avx2" if "avx2" in RUNNABLE else "plain"
    assert _conv.gemm_kernel() == best


@pytest.mark.parametrize("kernel", RUNNABLE)
@pytest.mark.parametrize("m, k, n", GEMM_SHAPES)
@pytest.mark.parametrize("layout", ["rows", "a_transposed", "b_transposed"])
def test_sgemm_matches_float64_product(kernel, m, k, n, layout):
    a, b, exact, bound = gemm_case(RNG, m, k, n, layout)
    c = np.full((m, n), np.nan, dtype=np.float32)  # overwritten, never read
    _conv.sgemm(a, b, c, kernel=_conv.KERNELS[kernel])
    assert np.all(np.abs(c - exact) <= bound)


@pytest.mark.parametrize("kernel", RUNNABLE)
@pytest.mark.parametrize("n", [40, 48])      # a last panel of 8 columns, of exactly 16
def test_sgemm_accumulates_into_a_row_strided_output(kernel, n):
    a = RNG.standard_normal((10, 7)).astype(np.float32)
    b = RNG.standard_normal((7, n)).astype(np.float32)
    big = RNG.standard_normal((10, n + 10)).astype(np.float32)
    c = big[:, 5:n + 5]                            # rows n + 10 apart
    before = big.copy()
    _conv.sgemm(a, b, c, accumulate=True, kernel=_conv.KERNELS[kernel])
    exact = before[:, 5:n + 5].astype(np.float64) + a.astype(np.float64) @ b
    bound = gamma(8) * (np.abs(a).astype(np.float64) @ np.abs(b) + np.abs(before[:, 5:n + 5]))
    assert np.all(np.abs(c - exact) <= bound)
    np.testing.assert_array_equal(big[:, :5], before[:, :5])      # nothing outside C touched
    np.testing.assert_array_equal(big[:, n + 5:], before[:, n + 5:])


@pytest.mark.parametrize("kernel", RUNNABLE)
@pytest.mark.parametrize("k", [5, 130, 300])
def test_sgemm_batch_with_one_shared_a(kernel, k):
    """A broadcast over the batch (stride 0) is packed once per k-block; every product stays right."""
    a = RNG.standard_normal((7, k)).astype(np.float32)
    b = RNG.standard_normal((3, k, 45)).astype(np.float32)
    c = np.empty((3, 7, 45), dtype=np.float32)
    _conv.sgemm_batch(np.broadcast_to(a, (3, 7, k)), b, c, kernel=_conv.KERNELS[kernel])
    for i in range(3):
        exact = a.astype(np.float64) @ b[i]
        assert np.all(np.abs(c[i] - exact) <= gamma(k + 1) * (np.abs(a).astype(np.float64) @ np.abs(b[i])))


def test_sgemm_k_zero_gives_zero_and_bad_shapes_raise():
    c = np.ones((3, 4), dtype=np.float32)
    _conv.sgemm(np.zeros((3, 0), np.float32), np.zeros((0, 4), np.float32), c)
    np.testing.assert_array_equal(c, 0)
    with pytest.raises(ValueError):
        _conv.sgemm(np.zeros((3, 2), np.float32), np.zeros((3, 4), np.float32), c)


def test_unknown_kernel_is_refused():
    assert _conv.gemm_kernel(7) is None
    c = np.zeros((2, 2), np.float32)
    with pytest.raises(RuntimeError):
        _conv.sgemm(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), c, kernel=7)


# --------------------------------------------------- Winograd pieces --

# (N, C, H, W, ph, pw): odd and even sizes, no / one / two pixels of padding
WINO_SHAPES = [(2, 3, 5, 6, 1, 1), (1, 2, 7, 7, 0, 0), (3, 1, 4, 5, 2, 2), (1, 1, 3, 3, 1, 1),
               (2, 4, 2, 9, 1, 2), (1, 3, 1, 1, 1, 1), (2, 2, 6, 3, 0, 2), (1, 5, 14, 14, 1, 1)]


def transformed(rows, t, dtype=np.float64):
    buf = np.empty(winograd.matrices_size(rows, t, np.dtype(dtype).itemsize), dtype=dtype)
    return winograd.matrices(buf, rows, t)


def patch_transform_reference(x, ph, pw):
    """V (16, C, N*TH*TW) = B^T d B by explicit 4x4 matrices, tile by tile."""
    bt = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
    n, c, h, w = x.shape
    th, tw = winograd.tiles(h, w, (ph, pw))
    xp = np.zeros((n, c, 2 * th + 2, 2 * tw + 2))
    xp[:, :, ph:ph + h, pw:pw + w] = x[:, :, :2 * th + 2 - ph, :2 * tw + 2 - pw]
    v = np.zeros((16, c, n * th * tw))
    for i in range(n):
        for ch in range(c):
            for a in range(th):
                for b in range(tw):
                    d = xp[i, ch, 2 * a:2 * a + 4, 2 * b:2 * b + 4]
                    v[:, ch, (i * th + a) * tw + b] = (bt @ d @ bt.T).reshape(16)
    return v


@pytest.mark.parametrize("n, c, h, w, ph, pw", WINO_SHAPES)
def test_input_transform_matches_explicit_matrices(n, c, h, w, ph, pw):
    x = RNG.standard_normal((n, c, h, w))
    th, tw = winograd.tiles(h, w, (ph, pw))
    v = transformed(c, n * th * tw)
    _conv.winograd_input(x, v, ph, pw)
    np.testing.assert_allclose(v, patch_transform_reference(x, ph, pw), rtol=0, atol=1e-13)


@pytest.mark.parametrize("n, c, h, w, ph, pw", WINO_SHAPES)
def test_transforms_and_their_adjoints_agree(n, c, h, w, ph, pw):
    """<T x, v> == <x, T* v> for the input and the output transform, in float64."""
    th, tw = winograd.tiles(h, w, (ph, pw))
    t = n * th * tw
    x, v = RNG.standard_normal((n, c, h, w)), RNG.standard_normal((16, c, t))
    tx, tv = transformed(c, t), np.empty_like(x)
    _conv.winograd_input(x, tx, ph, pw)
    _conv.winograd_input_adjoint(np.ascontiguousarray(v), tv, ph, pw)
    assert np.sum(tx * v) == pytest.approx(np.sum(x * tv), rel=1e-12, abs=1e-12)

    oh, ow = h + 2 * ph - 2, w + 2 * pw - 2
    m, dy = RNG.standard_normal((16, c, t)), RNG.standard_normal((n, c, oh, ow))
    y, dm = np.empty_like(dy), transformed(c, t)
    _conv.winograd_output(np.ascontiguousarray(m), np.zeros(c), y)
    db = np.full(c, 0.5)
    _conv.winograd_output_adjoint(dy, dm, db)
    assert np.sum(y * dy) == pytest.approx(np.sum(m * dm), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(db, 0.5 + dy.sum(axis=(0, 2, 3)), rtol=1e-13)  # accumulated


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, c, h, w, ph, pw", WINO_SHAPES)
def test_output_transform_with_relu_equals_relu_after_it(n, c, h, w, ph, pw, dtype):
    """winograd_output(relu=True) is max(y, 0) with NaN kept, bit for bit; the
    adjoint with relu_out masks dy by relu_out > 0 (NaN in dy kept where the
    mask is 0, as 0 * NaN) and sums the masked gradient into db."""
    th, tw = winograd.tiles(h, w, (ph, pw))
    t = n * th * tw
    oh, ow = h + 2 * ph - 2, w + 2 * pw - 2
    m = np.ascontiguousarray(RNG.standard_normal((16, c, t)).astype(dtype))
    m.reshape(-1)[:2] = [np.nan, np.inf]
    bias = RNG.standard_normal(c).astype(dtype)
    y, y_relu = np.empty((n, c, oh, ow), dtype), np.empty((n, c, oh, ow), dtype)
    _conv.winograd_output(m, bias, y)
    _conv.winograd_output(m, bias, y_relu, True)
    expected = np.empty_like(y)
    _activations.relu_forward(y.reshape(-1), expected.reshape(-1))
    np.testing.assert_array_equal(y_relu, expected)
    assert not (y_relu < 0).any()

    dy = RNG.standard_normal(y.shape).astype(dtype)
    dy.reshape(-1)[-2:] = [np.nan, np.inf]
    masked = np.empty_like(dy)
    _activations.relu_backward(y_relu.reshape(-1), dy.reshape(-1), masked.reshape(-1))
    dm, dm_ref = transformed(c, t).astype(dtype), transformed(c, t).astype(dtype)
    db, db_ref = np.zeros(c), np.zeros(c)
    _conv.winograd_output_adjoint(dy, dm, db, y_relu)
    _conv.winograd_output_adjoint(masked, dm_ref, db_ref)
    np.testing.assert_array_equal(dm, dm_ref)
    np.testing.assert_array_equal(db, db_ref)
    finite = np.isfinite(masked).all(axis=(0, 2, 3))
    np.testing.assert_allclose(db[finite], masked.sum(axis=(0, 2, 3), dtype=np.float64)[finite], rtol=1e-6)


def test_filter_transform_is_g_w_gt_and_its_adjoint_the_transpose():
    w, du = RNG.standard_normal((3, 2, 3, 3)), RNG.standard_normal((16, 3, 2))
    u = winograd.filter_transform(w, np.empty((16, 3, 2)))
    g = winograd.G
    for o in range(3):
        for c in range(2):
            np.testing.assert_allclose(u[:, o, c].reshape(4, 4), g @ w[o, c] @ g.T, rtol=0, atol=1e-14)
    assert np.sum(u * du) == pytest.approx(np.sum(w * winograd.filter_transform_adjoint(du)), rel=1e-13)


# ---------------------------------------------------- the whole layer --

def direct_backward(x, w, dy, stride, padding):
    """(dx, dW, db) of a direct convolution, by explicit loops over outputs."""
    (sh, sw), (ph, pw) = stride, padding
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    dxp, dw = np.zeros_like(xp), np.zeros(w.shape)
    for i in range(n):
        for a in range(dy.shape[2]):
            for b in range(dy.shape[3]):
                patch = xp[i, :, a * sh:a * sh + kh, b * sw:b * sw + kw]
                g = dy[i, :, a, b]
                dw += g[:, None, None, None] * patch[None]
                dxp[i, :, a * sh:a * sh + kh, b * sw:b * sw + kw] += np.tensordot(g, w, axes=1)
    return dxp[:, :, ph:ph + h, pw:pw + wd], dw, dy.sum(axis=(0, 2, 3))


# (N, C, O, H, W, kernel, stride, padding); all 3x3 stride 1 run Winograd below
LAYER_CASES = [
    (2, 3, 4, 5, 6, 3, 1, 1), (1, 2, 3, 7, 7, 3, 1, 0), (3, 1, 2, 4, 5, 3, 1, 2),
    (2, 4, 3, 2, 9, 3, 1, (1, 2)), (1, 1, 1, 3, 3, 3, 1, 1), (2, 9, 5, 6, 3, 3, 1, (0, 2)),
    (2, 3, 4, 7, 6, (3, 2), (2, 1), (1, 2)), (2, 2, 3, 9, 8, 3, 2, 1), (1, 3, 2, 5, 4, 1, 2, 0),
    (2, 1, 3, 28, 28, 3, 2, 1), (2, 2, 3, 20, 18, 5, 1, 2),   # the last: per-image products (>= 256 outputs)
]


@pytest.fixture
def winograd_from_one_channel(monkeypatch):
    monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", 1)


def make_layer(c, o, kernel, stride, padding, dtype=np.float64):
    layer = L.Conv2D(c, o, kernel, stride, padding, dtype=dtype, rng=RNG)
    layer.params["b"][...] = RNG.standard_normal(o)
    return layer


@pytest.mark.parametrize("n, c, o, h, w, kernel, stride, padding", LAYER_CASES)
def test_layer_matches_direct_convolution_float64(n, c, o, h, w, kernel, stride, padding,
                                                   winograd_from_one_channel):
    layer = make_layer(c, o, kernel, stride, padding)
    assert layer._winograd() == (kernel == 3 and stride == 1)
    x = RNG.standard_normal((n, c, h, w))
    y = layer.forward(x)
    dy = RNG.standard_normal(y.shape)
    dx = layer.backward(dy)
    expect_y = ref.conv2d_forward(x, layer.params["W"], layer.params["b"], stride, padding)
    expect = direct_backward(x, layer.params["W"], dy, layer.stride, layer.padding)
    for got, want in zip((y, dx, layer.grads["W"], layer.grads["b"]), (expect_y, *expect)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())


def kappa():
    """One dimension's amplification: max over (i, l) of sum_xi,j |A^T_i,xi| |G_xi,j| |B^T_xi,l|."""
    at = np.abs(np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64))
    bt = np.abs(np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64))
    g = np.abs(winograd.G).sum(axis=1)
    return max(np.sum(at[i] * g * bt[:, l]) for i in range(2) for l in range(4))


def winograd_scale(x, w, padding):
    """S5 (N, O, OH, OW): sum_c ||w_(o,c)||_1 * max|x_c| over the 5x5 padded window
    starting one row and column above the output (it holds the output's tile patch)."""
    (ph, pw) = padding
    n, c, h, wd = x.shape
    xp = np.zeros((n, c, h + 2 * ph + 4, wd + 2 * pw + 4))
    xp[:, :, ph + 1:ph + 1 + h, pw + 1:pw + 1 + wd] = np.abs(x)
    oh, ow = h + 2 * ph - 2, wd + 2 * pw - 2
    win = np.lib.stride_tricks.sliding_window_view(xp, (5, 5), axis=(2, 3))[:, :, :oh, :ow].max(axis=(4, 5))
    return np.einsum("oc,nchw->nohw", np.abs(w).sum(axis=(2, 3)), win)


@pytest.mark.parametrize("n, c, o, h, w, kernel, stride, padding",
                         LAYER_CASES + [(4, 32, 16, 14, 14, 3, 1, 1), (2, 64, 8, 7, 7, 3, 1, 1)])
def test_layer_float32_within_stated_bound(n, c, o, h, w, kernel, stride, padding,
                                            winograd_from_one_channel):
    layer = make_layer(c, o, kernel, stride, padding, dtype=np.float32)
    x = RNG.standard_normal((n, c, h, w)).astype(np.float32)
    y = layer.forward(x)
    w64, b64 = layer.params["W"].astype(np.float64), layer.params["b"].astype(np.float64)
    exact = ref.conv2d_forward(x, w64, b64, stride, padding)
    err = np.abs(y - exact)
    if layer._winograd():
        bound = gamma(c + 20) * kappa() ** 2 * winograd_scale(x, w64, layer.padding) + U32 * np.abs(exact)
    else:
        k = c * layer.kernel_size[0] * layer.kernel_size[1]
        scale = ref.conv2d_forward(np.abs(x), np.abs(w64), np.abs(b64), stride, padding)
        bound = gamma(k + 2) * scale
    assert np.all(err <= bound), float(np.max(err / bound))


# float32 im2col-path gradients.  The first six take the channels-last
# backward (_channels_last.h; kw * C a multiple of 32 and C of 8 with AVX-512, of 16 with AVX2):
# strides 1 to 3, rows and columns of the input no window reads, a rectangular
# kernel, output channels that leave a partial block of 8, positions that leave
# one, rows narrower than 8, and a batch of several chunks.
GRADIENT_CASES = [
    (5, 32, 16, 28, 28, 3, 2, 1), (3, 64, 8, 14, 14, 3, 2, 1), (2, 8, 4, 10, 9, (3, 4), (2, 1), (1, 2)),
    (2, 8, 12, 11, 11, 4, 3, 0), (2, 16, 8, 9, 11, 2, 1, 0), (2, 32, 8, 6, 5, 3, 2, 1),
    (2, 3, 4, 7, 6, (3, 2), (2, 1), (1, 2)), (2, 1, 3, 28, 28, 3, 2, 1),
]


@pytest.mark.parametrize("n, c, o, h, w, kernel, stride, padding", GRADIENT_CASES)
def test_im2col_float32_gradients_within_stated_bound(n, c, o, h, w, kernel, stride, padding):
    """dW sums N * OH * OW products (in chunk, then part order: at most 3 more
    roundings), dx at most O * kh * kw: gamma_(terms + 3) times the same sum of
    absolute values, computed by the float64 reference on |x|, |w| and |dy|."""
    layer = make_layer(c, o, kernel, stride, padding, dtype=np.float32)
    assert not layer._winograd()
    x = RNG.standard_normal((n, c, h, w)).astype(np.float32)
    dy = RNG.standard_normal(layer.forward(x).shape).astype(np.float32)
    dx = layer.backward(dy)
    w64 = layer.params["W"].astype(np.float64)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    exact_dx, exact_dw, exact_db = direct_backward(x64, w64, dy64, layer.stride, layer.padding)
    abs_dx, abs_dw, _ = direct_backward(np.abs(x64), np.abs(w64), np.abs(dy64), layer.stride, layer.padding)
    kh, kw = layer.kernel_size
    positions = n * dy.shape[2] * dy.shape[3]
    assert np.all(np.abs(layer.grads["W"] - exact_dw) <= gamma(positions + 3) * abs_dw)
    assert np.all(np.abs(dx - exact_dx) <= gamma(o * kh * kw + 3) * abs_dx)
    np.testing.assert_allclose(layer.grads["b"], exact_db, rtol=1e-5)


def test_winograd_float32_gradients_close_to_float64(winograd_from_one_channel):
    """dx and dW in float32 stay within 1e-5 of float64's, relative to their largest entry."""
    layer64 = make_layer(32, 16, 3, 1, 1)
    layer32 = L.Conv2D(32, 16, 3, 1, 1, dtype=np.float32)
    for k in ("W", "b"):
        layer32.params[k][...] = layer64.params[k]
    x = RNG.standard_normal((3, 32, 9, 10))
    dy = RNG.standard_normal((3, 16, 9, 10))
    layer64.forward(x)
    layer32.forward(x.astype(np.float32))
    dx64, dx32 = layer64.backward(dy), layer32.backward(dy.astype(np.float32))
    for a, b in ((dx32, dx64), (layer32.grads["W"], layer64.grads["W"]), (layer32.grads["b"], layer64.grads["b"])):
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max()


def test_winograd_numerical_gradient(winograd_from_one_channel):
    layer = make_layer(2, 3, 3, 1, (1, 0))
    x = RNG.standard_normal((2, 2, 5, 6))
    probe = RNG.standard_normal(layer.forward(x).shape)

    def loss():
        return float(np.sum(layer.forward(x) * probe))

    layer.forward(x)
    dx = layer.backward(probe)
    grads = {k: g.copy() for k, g in layer.grads.items()}
    for array, analytic in [(x, dx), (layer.params["W"], grads["W"]), (layer.params["b"], grads["b"])]:
        numeric = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            keep = array[i]
            array[i] = keep + 1e-6
            up = loss()
            array[i] = keep - 1e-6
            down = loss()
            array[i] = keep
            numeric[i] = (up - down) / 2e-6
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_default_network_layers_pick_their_path():
    assert L.Conv2D(32, 64, 3, padding=1)._winograd()
    assert not L.Conv2D(1, 32, 3, padding=1)._winograd()          # one channel: im2col
    assert not L.Conv2D(32, 32, 3, stride=2, padding=1)._winograd()


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="the benchmark compares with PyTorch")
def test_bench_conv_runs_and_prints_every_shape():
    script = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "bench_conv.py"
    result = subprocess.run([sys.executable, str(script), "--threads", "1", "--rounds", "1", "--clock", "cpu"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n| ") == 1 + 7          # header, one row per shape
    assert re.search(r"minicnn isa (avx512|avx2|portable), GEMM ", result.stdout)


@pytest.mark.parametrize("n, c, h, w, ph, pw", WINO_SHAPES + [(2, 3, 28, 28, 1, 1), (1, 2, 30, 30, 1, 1),
                                                             (1, 2, 31, 31, 1, 1), (2, 2, 14, 14, 0, 0)])
def test_input_transform_simd_path_equals_the_portable_loops_bit_for_bit(n, c, h, w, ph, pw):
    """winograd_input's AVX-512 path (float32 planes up to 32 padded columns,
    when the CPU has AVX-512F; else both calls run the same loops) writes
    exactly the bits of the portable loops, NaN, inf and -0.0 included, and
    nothing outside the 16 matrices' rows."""
    x = RNG.standard_normal((n, c, h, w)).astype(np.float32)
    x.reshape(-1)[:3] = [np.nan, np.inf, -0.0]
    th, tw = winograd.tiles(h, w, (ph, pw))
    t = n * th * tw
    size = winograd.matrices_size(c, t, 4)
    fast, portable = np.full(size, 7, np.float32), np.full(size, 7, np.float32)
    _conv.winograd_input(x, winograd.matrices(fast, c, t), ph, pw)
    _conv.winograd_input(x, winograd.matrices(portable, c, t), ph, pw, False)
    assert_same_values(fast, portable)


def assert_same_values(a, b):
    """Equal bit for bit, but that any NaN equals any NaN: which NaN a sum of two
    NaNs gives depends on the operand order the compiler picked."""
    np.testing.assert_array_equal(a, b)   # NaN where the other has NaN
    finite = ~np.isnan(a)
    np.testing.assert_array_equal(np.signbit(a[finite]), np.signbit(b[finite]))  # -0.0 stays -0.0


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("n, c, oh, ow", [(2, 3, 14, 14), (3, 5, 7, 7), (2, 2, 5, 6), (1, 2, 1, 2),
                                          (2, 3, 28, 28), (1, 2, 32, 32), (1, 2, 33, 33), (2, 2, 4, 9)])
def test_output_adjoint_simd_path_equals_the_portable_loops(n, c, oh, ow, relu):
    """winograd_output_adjoint's AVX-512 path (float32 rows up to 32 wide) gives
    the portable loops' dM, NaN, inf and -0.0 included, with and without the
    ReLU mask, and the same db up to the order of its double-precision sums."""
    dy = RNG.standard_normal((n, c, oh, ow)).astype(np.float32)
    dy.reshape(-1)[:2] = [np.nan, -0.0]
    dy.reshape(-1)[-1] = np.inf
    y = RNG.standard_normal(dy.shape).astype(np.float32)
    y.reshape(-1)[1:3] = [0.0, np.nan]
    t = n * ((oh + 1) // 2) * ((ow + 1) // 2)
    size = winograd.matrices_size(c, t, 4)
    fast, portable = np.full(size, 7, np.float32), np.full(size, 7, np.float32)
    db_fast, db_portable = np.full(c, 0.5), np.full(c, 0.5)
    relu_out = y if relu else None
    _conv.winograd_output_adjoint(dy, winograd.matrices(fast, c, t), db_fast, relu_out)
    _conv.winograd_output_adjoint(dy, winograd.matrices(portable, c, t), db_portable, relu_out, False)
    assert_same_values(fast, portable)
    np.testing.assert_allclose(db_fast, db_portable, rtol=1e-12)


@pytest.mark.parametrize("n, c, h, w, ph, pw", WINO_SHAPES + [(2, 3, 28, 28, 1, 1), (1, 2, 30, 30, 1, 1),
                                                             (1, 2, 31, 31, 1, 1), (2, 2, 14, 14, 0, 0)])
def test_input_adjoint_simd_path_equals_the_portable_loops(n, c, h, w, ph, pw):
    """winograd_input_adjoint's AVX-512 path adds the overlapping patches in the
    portable loops' order: the same dx, NaN, inf and -0.0 included."""
    th, tw = winograd.tiles(h, w, (ph, pw))
    t = n * th * tw
    dv = winograd.matrices(np.empty(winograd.matrices_size(c, t, 4), np.float32), c, t)
    dv[...] = RNG.standard_normal(dv.shape)
    dv[:, :, :1] = -0.0                    # a whole tile of -0.0: its pixels stay +0.0 or sums
    dv[0, 0, -1], dv[5, 0, -1] = np.nan, np.inf
    fast, portable = np.full((n, c, h, w), 7, np.float32), np.full((n, c, h, w), 7, np.float32)
    _conv.winograd_input_adjoint(dv, fast, ph, pw)
    _conv.winograd_input_adjoint(dv, portable, ph, pw, False)
    assert_same_values(fast, portable)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("n, c, oh, ow", [(2, 3, 14, 14), (3, 5, 7, 7), (2, 2, 5, 6), (1, 2, 1, 2),
                                          (2, 3, 28, 28), (1, 2, 32, 32), (1, 2, 33, 33), (2, 2, 4, 9)])
def test_output_transform_simd_path_equals_the_portable_loops(n, c, oh, ow, relu):
    """winograd_output's AVX-512 path: the same y as the portable loops, with and
    without the ReLU (NaN kept, -0.0 -> +0.0), inf and -0.0 included."""
    t = n * ((oh + 1) // 2) * ((ow + 1) // 2)
    m = winograd.matrices(np.empty(winograd.matrices_size(c, t, 4), np.float32), c, t)
    m[...] = RNG.standard_normal(m.shape)
    m[:, :, :1] = -0.0
    m[0, 0, -1], m[3, 0, -1] = np.nan, np.inf
    bias = RNG.standard_normal(c).astype(np.float32)
    bias[0] = -0.0
    fast, portable = np.full((n, c, oh, ow), 7, np.float32), np.full((n, c, oh, ow), 7, np.float32)
    _conv.winograd_output(m, bias, fast, relu)
    _conv.winograd_output(m, bias, portable, relu, False)
    assert_same_values(fast, portable)


@pytest.mark.parametrize("n, c, h, w, kh, kw, sh, sw, ph, pw", [
    (2, 3, 28, 28, 3, 3, 2, 2, 1, 1), (2, 2, 14, 14, 3, 3, 2, 2, 1, 1), (2, 1, 28, 28, 3, 3, 1, 1, 1, 1),
    (1, 2, 9, 8, 3, 2, 2, 1, 1, 0), (3, 1, 7, 10, 2, 3, 1, 2, 0, 2), (2, 2, 5, 5, 5, 5, 1, 1, 2, 2),
    (1, 2, 30, 30, 3, 3, 1, 1, 1, 1), (1, 2, 31, 31, 3, 3, 2, 2, 1, 1), (1, 2, 33, 33, 3, 3, 2, 2, 1, 1),
    (1, 1, 6, 6, 1, 1, 3, 3, 0, 0), (2, 1, 1, 1, 3, 3, 2, 2, 1, 1), (1, 2, 8, 8, 2, 2, 2, 2, 0, 0),
    (1, 2, 16, 16, 3, 3, 2, 2, 1, 1), (1, 2, 17, 15, 3, 3, 2, 2, 1, 1)])
def test_im2col_and_col2im_simd_paths_equal_the_portable_loops(n, c, h, w, kh, kw, sh, sw, ph, pw):
    """im2col / col2im's AVX-512 paths (float32, row stride 1 or 2, padded rows up
    to 32 wide; other geometries run the portable loops both times) give the
    portable loops' values, NaN, inf and -0.0 included."""
    x = RNG.standard_normal((n, c, h, w)).astype(np.float32)
    x.reshape(-1)[:1] = np.nan
    x.reshape(-1)[-1] = -0.0
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    fast, portable = np.full((c * kh * kw, n * oh * ow), 7, np.float32), np.full((c * kh * kw, n * oh * ow), 7, np.float32)
    _im2col.im2col(x, fast, kh, kw, sh, sw, ph, pw)
    _im2col.im2col(x, portable, kh, kw, sh, sw, ph, pw, False)
    assert_same_values(fast, portable)
    d = RNG.standard_normal(fast.shape).astype(np.float32)
    d.reshape(-1)[:2] = [-0.0, np.inf]
    dx_fast, dx_portable = np.full_like(x, 7), np.full_like(x, 7)
    _im2col.col2im(d, dx_fast, kh, kw, sh, sw, ph, pw)
    _im2col.col2im(d, dx_portable, kh, kw, sh, sw, ph, pw, False)
    assert_same_values(dx_fast, dx_portable)
