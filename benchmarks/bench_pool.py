"""Pooling forward + backward: minicnn against NumPy, PyTorch and the memory floor.

Every pooling layer of the reference study (max 2x2/2, max 3x3/2, average
2x2/2, min 2x2/2, global average, global max), the random poolings (fractional max 3x3 to
half the size, stochastic 2x2/2 and 3x3/2) and the rest of the pooling family
(LP pooling p = 2 and 3, adaptive average and max onto 7x7 and onto 5x5, whose
bins overlap, spatial pyramid pooling 1, 2, 4),
and BlurPool 3/2, MaxBlurPool (max 2x2/1 then blur 3/2), mixed and gated
2x2/2 pooling run forward and backward on
float32 inputs shaped like the reference network's feature maps at batch 128,
(128, 32, 28, 28) and (128, 64, 14, 14), against

- a plain NumPy implementation (CS231n's reshape trick where it applies,
  sliding windows otherwise);
- PyTorch's CPU kernels (F.max_pool2d etc. with autograd backward; min pooling
  as -max_pool2d(-x), the usual way to get it in PyTorch; fractional max pooling
  as F.fractional_max_pool2d, drawing its samples as minicnn does; stochastic
  pooling, which PyTorch lacks, as the fastest composition a user would write:
  unfold, cumsum of the positive parts, one torch.rand per window, gather;
  spatial pyramid pooling as torch.cat of F.adaptive_*_pool2d(x, l).flatten(1;
  the blur and mixed poolings as the compositions of ``torch_blur_mix``);
- the memory floor: the bytes the operation must move (read x, write y and a
  1-byte argmax per window; read dy and argmax, write dx) divided by the copy
  bandwidth measured in the same run with a large np.copyto (reads + writes).

minicnn (its kernel threads, minicnn.threads: MINICNN_KERNEL_THREADS) and PyTorch
(torch.set_num_threads) each run at ``--threads`` threads (default: the CPU
count) and at 1 thread, and each ratio compares the same thread count on both
sides.  minicnn ships with 1 kernel thread because ``ablate`` runs one worker
per core; a single ``train`` can set MINICNN_KERNEL_THREADS=2.  Implementations are interleaved
round by round (each round: a 10 ms pause so that the previous implementation's
idle OpenMP threads stop spinning, three untimed calls, five timed calls), so that
load from other processes hits them alike; a time is the median over all timed
calls, in milliseconds, forward + backward.

    python benchmarks/bench_pool.py [--rounds 7] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

import minicnn.layers as L  # noqa: E402
from minicnn import threads as minicnn_threads  # noqa: E402
from torch_twin import torch_stochastic_pool  # noqa: E402

SHAPES = [(128, 32, 28, 28), (128, 64, 14, 14)]
# name -> (minicnn layer factory, kind, kernel, stride); for the adaptive kinds "kernel" is the
# output size, for spp the levels
LAYERS = {
    "max 2x2/2": (lambda: L.MaxPool2D(2), "max", 2, 2),
    "max 3x3/2": (lambda: L.MaxPool2D(3, 2), "max", 3, 2),
    "avg 2x2/2": (lambda: L.AvgPool2D(2), "avg", 2, 2),
    "min 2x2/2": (lambda: L.MinPool2D(2), "min", 2, 2),
    "global avg": (L.GlobalAvgPool2D, "gavg", None, None),
    "global max": (L.GlobalMaxPool2D, "gmax", None, None),
    # random pooling; for fractional max pooling the last field is the output ratio
    "frac max 3x3 r0.5": (lambda: L.FractionalMaxPool2D(3, output_ratio=0.5), "fmp", 3, 0.5),
    "stochastic 2x2/2": (lambda: L.StochasticPool2D(2), "stoch", 2, 2),
    "stochastic 3x3/2": (lambda: L.StochasticPool2D(3, 2), "stoch", 3, 2),
    # pooling family: LP, adaptive and spatial pyramid pooling
    "lp p=2 2x2/2": (lambda: L.LPPool2D(2, 2), "lp2", 2, 2),
    "lp p=3 2x2/2": (lambda: L.LPPool2D(3, 2), "lp3", 2, 2),
    "adaptive avg ->7": (lambda: L.AdaptiveAvgPool2D(7), "aavg", 7, None),
    "adaptive max ->7": (lambda: L.AdaptiveMaxPool2D(7), "amax", 7, None),
    "adaptive avg ->5": (lambda: L.AdaptiveAvgPool2D(5), "aavg", 5, None),
    "adaptive max ->5": (lambda: L.AdaptiveMaxPool2D(5), "amax", 5, None),
    "spp max 1,2,4": (lambda: L.SpatialPyramidPool2D((1, 2, 4), "max"), "sppmax", (1, 2, 4), None),
    "spp avg 1,2,4": (lambda: L.SpatialPyramidPool2D((1, 2, 4), "avg"), "sppavg", (1, 2, 4), None),
    # anti-aliased and learned max/average pooling; blur's "kernel" is its filter size,
    # maxblur's the pair (max window, filter size)
    "blur 3/2": (lambda: L.BlurPool2D(3, 2), "blur", 3, 2),
    "maxblur 2, 3/2": (lambda: L.MaxBlurPool2D(2, 3, 2), "maxblur", (2, 3), 2),
    "mixed 2x2/2": (lambda: L.MixedPool2D(2), "mixed", 2, 2),
    "gated 2x2/2": (lambda: L.GatedPool2D(2), "gated", 2, 2),
}
BLUR_KINDS = ("blur", "maxblur", "mixed", "gated")
ADAPTIVE = ("aavg", "amax", "sppmax", "sppavg")


# -------------------------------------------------------------------- NumPy --

def numpy_adaptive(kind, size, x, dy_of):
    """Adaptive (or spatial pyramid) pooling: one vectorised step per bin, PyTorch's bins."""
    n, c, h, w = x.shape
    levels = size if kind.startswith("spp") else (size,)
    maximum = kind in ("amax", "sppmax")
    ys, picks = [], []
    for level in levels:
        rows = [((i * h) // level, -(-(i + 1) * h // level)) for i in range(level)]
        cols = [((j * w) // level, -(-(j + 1) * w // level)) for j in range(level)]
        y = np.empty((n, c, level, level), dtype=x.dtype)
        for i, (hs, he) in enumerate(rows):
            for j, (ws, we) in enumerate(cols):
                cell = x[:, :, hs:he, ws:we].reshape(n, c, -1)
                if maximum:
                    arg = cell.argmax(axis=2)
                    picks.append((hs, he, ws, we, arg))
                    y[:, :, i, j] = np.take_along_axis(cell, arg[..., None], axis=2)[..., 0]
                else:
                    picks.append((hs, he, ws, we, None))
                    y[:, :, i, j] = cell.mean(axis=2)
        ys.append(y.reshape(n, -1) if kind.startswith("spp") else y)
    dy = dy_of(np.concatenate(ys, axis=1) if kind.startswith("spp") else ys[0])
    if kind.startswith("spp"):
        grads, start = [], 0
        for level in levels:
            grads.append(dy[:, start:start + c * level * level].reshape(n, c, level * level))
            start += c * level * level
        dy = np.concatenate(grads, axis=2)
    dy = dy.reshape(n, c, -1)
    dx = np.zeros_like(x)
    for o, (hs, he, ws, we, arg) in enumerate(picks):
        g = dy[:, :, o]
        if arg is None:
            dx[:, :, hs:he, ws:we] += (g / ((he - hs) * (we - ws)))[:, :, None, None]
        else:
            cell = np.zeros((n, c, (he - hs) * (we - ws)), dtype=x.dtype)
            np.put_along_axis(cell, arg[..., None], g[..., None], axis=2)
            dx[:, :, hs:he, ws:we] += cell.reshape(n, c, he - hs, we - ws)
    return dx


def numpy_pool(kind, k, s, x, dy_of):
    """Plain NumPy forward and backward; returns dx (dy_of(y) gives the upstream gradient)."""
    if kind in BLUR_KINDS:
        return numpy_blur_mix(kind, k, s, x, dy_of)
    n, c, h, w = x.shape
    if kind in ("fmp", "stoch"):
        return numpy_random_pool(kind, k, s, x, dy_of)
    if kind in ADAPTIVE:
        return numpy_adaptive(kind, k, x, dy_of)
    if kind in ("lp2", "lp3"):                       # the reshape trick: these windows tile the map
        p = int(kind[2])
        oh, ow = h // k, w // k
        a = np.abs(x[:, :, :oh * k, :ow * k]).reshape(n, c, oh, k, ow, k)
        y = ((a ** p).sum(axis=(3, 5))) ** (1 / p)
        dy = dy_of(y)
        ratio = a / np.where(y == 0, 1, y)[:, :, :, None, :, None]
        dx = np.zeros_like(x)
        dx[:, :, :oh * k, :ow * k] = (np.sign(x[:, :, :oh * k, :ow * k]).reshape(a.shape) * ratio ** (p - 1)
                                      * dy[:, :, :, None, :, None]).reshape(n, c, oh * k, ow * k)
        return dx
    if kind in ("gavg", "gmax"):
        flat = x.reshape(n, c, h * w)
        if kind == "gavg":
            y = flat.mean(axis=2)
            dy = dy_of(y)
            return np.broadcast_to((dy / (h * w))[:, :, None, None], x.shape).copy()
        idx = flat.argmax(axis=2)
        y = np.take_along_axis(flat, idx[:, :, None], axis=2)[:, :, 0]
        dy = dy_of(y)
        dx = np.zeros_like(flat)
        np.put_along_axis(dx, idx[:, :, None], dy[:, :, None], axis=2)
        return dx.reshape(x.shape)
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    if k == s and h % k == 0 and w % k == 0:        # CS231n's reshape trick
        xr = x.reshape(n, c, oh, k, ow, k)
        if kind == "avg":
            y = xr.mean(axis=(3, 5))
            dy = dy_of(y)
            dxr = np.broadcast_to((dy / (k * k))[:, :, :, None, :, None], xr.shape)
            return dxr.reshape(x.shape).copy()
        y = xr.max(axis=(3, 5)) if kind == "max" else xr.min(axis=(3, 5))
        dy = dy_of(y)
        mask = xr == y[:, :, :, None, :, None]
        return (mask * dy[:, :, :, None, :, None]).reshape(x.shape)
    # general windows: a strided view of all windows, argmax, and k*k strided adds
    win = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s].reshape(n, c, oh, ow, k * k)
    if kind == "avg":
        y = win.mean(axis=4)
        dy = dy_of(y) / (k * k)
        arg = None
    else:
        arg = win.argmax(axis=4) if kind == "max" else win.argmin(axis=4)
        y = np.take_along_axis(win, arg[..., None], axis=4)[..., 0]
        dy = dy_of(y)
    dx = np.zeros_like(x)
    for i in range(k):
        for j in range(k):
            g = dy if arg is None else dy * (arg == i * k + j)
            dx[:, :, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s] += g
    return dx


def numpy_random_pool(kind, k, s, x, dy_of):
    """Fractional max pooling (s: the output ratio) and stochastic pooling: NumPy gathers,
    the gradient scattered with one bincount."""
    n, c, h, w = x.shape
    p = n * c
    planes = x.reshape(p, h * w)
    rng = np.random.default_rng()
    if kind == "fmp":
        oh, ow = int(h * s), int(w * s)
        u = rng.random((p, 2)).astype(x.dtype)

        def starts(u, size, out):
            alpha = x.dtype.type(size - k) / x.dtype.type(out - 1)
            o = np.arange(out - 1, dtype=x.dtype)
            first = ((o + u[:, None]) * alpha).astype(np.int64) - (u[:, None] * alpha).astype(np.int64)
            return np.concatenate([first, np.full((len(u), 1), size - k)], axis=1)

        rows, cols = starts(u[:, 1], h, oh), starts(u[:, 0], w, ow)
        corner = rows[:, :, None] * w + cols[:, None, :]                      # (p, oh, ow)
        offsets = (np.arange(k)[:, None] * w + np.arange(k)).ravel()
        at = corner[..., None] + offsets                                      # (p, oh, ow, k*k)
        win = np.take_along_axis(planes, at.reshape(p, -1), axis=1).reshape(at.shape)
    else:
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
        win = sliding_window_view(planes.reshape(p, h, w), (k, k), axis=(1, 2))[:, ::s, ::s].reshape(p, oh, ow, k * k)
        corner = (np.arange(oh)[:, None] * s * w + np.arange(ow) * s)[None]
        at = corner[..., None] + (np.arange(k)[:, None] * w + np.arange(k)).ravel()
    if kind == "fmp":
        pick = win.argmax(axis=3)
        picked = 1
        y = np.take_along_axis(win, pick[..., None], axis=3)[..., 0]
    else:
        cs = np.cumsum(np.maximum(win, 0), axis=3, dtype=np.float64)
        t = rng.random((p, oh, ow)) * cs[..., -1]
        pick = np.minimum((cs <= t[..., None]).sum(axis=3), k * k - 1)
        picked = cs[..., -1] > 0          # a window without a positive element: 0, no gradient
        y = np.take_along_axis(win, pick[..., None], axis=3)[..., 0] * picked
    dy = dy_of(y.reshape(n, c, oh, ow)).reshape(p, oh, ow) * picked
    flat = np.take_along_axis(np.broadcast_to(at, (p, oh, ow, k * k)), pick[..., None], axis=3)[..., 0]
    flat = flat + (np.arange(p) * h * w)[:, None, None]
    return np.bincount(flat.ravel(), dy.ravel(), minlength=p * h * w).astype(x.dtype).reshape(x.shape)
def binomial(f):
    row = np.array([1.0])
    for _ in range(f - 1):
        row = np.convolve(row, [1.0, 1.0])
    return (row / row.sum()).astype(np.float32)


def numpy_blur(m, f, s, dy_of):
    """Reflect pad, f*f strided multiply-adds; backward adds back and folds the padding onto
    the pixels it reflects.  Returns dm."""
    top, bottom = (f - 1) // 2, f // 2
    t = binomial(f)
    p = np.pad(m, ((0, 0), (0, 0), (top, bottom), (top, bottom)), mode="reflect")
    oh, ow = -(-m.shape[2] // s), -(-m.shape[3] // s)
    y = sum(t[i] * t[j] * p[:, :, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s]
            for i in range(f) for j in range(f))
    dy = dy_of(y)
    dp = np.zeros_like(p)
    for i in range(f):
        for j in range(f):
            dp[:, :, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s] += t[i] * t[j] * dy
    h, w = m.shape[2:]
    for q in range(1, top + 1):                       # rows, then columns: padding q reflects pixel q
        dp[:, :, top + q] += dp[:, :, top - q]
    for q in range(1, bottom + 1):
        dp[:, :, top + h - 1 - q] += dp[:, :, top + h - 1 + q]
    for q in range(1, top + 1):
        dp[:, :, :, top + q] += dp[:, :, :, top - q]
    for q in range(1, bottom + 1):
        dp[:, :, :, top + w - 1 - q] += dp[:, :, :, top + w - 1 + q]
    return dp[:, :, top:top + h, top:top + w]


def numpy_blur_mix(kind, k, s, x, dy_of):
    """BlurPool, MaxBlurPool, mixed and gated pooling in NumPy (gates at their start, 1/2); returns dx."""
    if kind == "blur":
        return numpy_blur(x, k, s, dy_of)
    n, c, h, w = x.shape
    kmax = k[0] if kind == "maxblur" else k
    stride = 1 if kind == "maxblur" else s
    oh, ow = (h - kmax) // stride + 1, (w - kmax) // stride + 1
    win = sliding_window_view(x, (kmax, kmax), axis=(2, 3))[:, :, ::stride, ::stride].reshape(
        n, c, oh, ow, kmax * kmax)
    arg = win.argmax(axis=4)
    best = np.take_along_axis(win, arg[..., None], axis=4)[..., 0]
    gate_w = np.zeros(kmax * kmax, dtype=x.dtype)      # gated: w at its start; mixed: a = 1/2
    if kind == "maxblur":
        dhit = numpy_blur(best, k[1], s, dy_of)
        davg = dz = None
    else:
        avg = win.mean(axis=4)
        g = 1 / (1 + np.exp(-(win @ gate_w))) if kind == "gated" else 0.5
        dy = dy_of(g * best + (1 - g) * avg)
        dhit, davg = g * dy, (1 - g) * dy / (kmax * kmax)
        dz = dy * (best - avg) * g * (1 - g) if kind == "gated" else None
    dx = np.zeros_like(x)
    for i in range(kmax):
        for j in range(kmax):
            d = dhit * (arg == i * kmax + j)
            if davg is not None:
                d = d + davg
            if dz is not None:
                d = d + dz * gate_w[i * kmax + j]
            dx[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride] += d
    return dx


# ------------------------------------------------------------------ PyTorch --

def torch_pool(torch, kind, k, s):
    F = torch.nn.functional
    if kind == "max":
        return lambda t: F.max_pool2d(t, k, s)
    if kind == "min":
        return lambda t: -F.max_pool2d(-t, k, s)
    if kind == "avg":
        return lambda t: F.avg_pool2d(t, k, s)
    if kind == "gavg":
        return lambda t: F.adaptive_avg_pool2d(t, 1).flatten(1)
    if kind == "fmp":
        return lambda t: F.fractional_max_pool2d(t, k, output_ratio=(s, s))
    if kind == "stoch":
        return lambda t: torch_stochastic_pool(torch, t, (k, k), (s, s))
    if kind in ("lp2", "lp3"):
        return lambda t: F.lp_pool2d(t, int(kind[2]), k, s)
    if kind == "aavg":
        return lambda t: F.adaptive_avg_pool2d(t, k)
    if kind == "amax":
        return lambda t: F.adaptive_max_pool2d(t, k)
    if kind in ("sppmax", "sppavg"):          # SPP as a user writes it: adaptive pools, concatenated
        pool = F.adaptive_max_pool2d if kind == "sppmax" else F.adaptive_avg_pool2d
        return lambda t: torch.cat([pool(t, level).flatten(1) for level in k], dim=1)
    if kind == "gmax":
        return lambda t: F.adaptive_max_pool2d(t, 1).flatten(1)
    return torch_blur_mix(torch, kind, k, s)


def torch_blur_mix(torch, kind, k, s):
    """The compositions a PyTorch user writes: BlurPool as reflect pad + depthwise conv (the
    reference implementation's), MaxBlurPool with max_pool2d(stride 1) before it, mixed and
    gated from max_pool2d, avg_pool2d and (the gate) unfold.  Their parameters are constants
    here, so PyTorch computes only dx (minicnn also the parameters' gradients)."""
    F = torch.nn.functional

    def blur(t, f):
        row = torch.from_numpy(binomial(f))
        filt = (row[:, None] * row[None, :])[None, None].repeat(t.shape[1], 1, 1, 1)
        return F.conv2d(F.pad(t, [(f - 1) // 2, f // 2] * 2, mode="reflect"), filt, stride=s, groups=t.shape[1])
    if kind == "blur":
        return lambda t: blur(t, k)
    if kind == "maxblur":
        return lambda t: blur(F.max_pool2d(t, k[0], stride=1), k[1])
    if kind == "mixed":
        a = torch.sigmoid(torch.zeros(1))
        return lambda t: a * F.max_pool2d(t, k, s) + (1 - a) * F.avg_pool2d(t, k, s)
    w = torch.zeros(k * k)

    def gated(t):
        n, c, h, wd = t.shape
        windows = F.unfold(t.reshape(n * c, 1, h, wd), k, stride=s)
        g = torch.sigmoid((w[None, :, None] * windows).sum(1)).reshape(n, c, (h - k) // s + 1, (wd - k) // s + 1)
        return g * F.max_pool2d(t, k, s) + (1 - g) * F.avg_pool2d(t, k, s)
    return gated


# --------------------------------------------------------------- the floor --

def copy_bandwidth(rounds=7, nbytes=256 << 20):
    """Bytes per second (read + write) of np.copyto between two large arrays."""
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.zeros_like(src)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * nbytes / best


def bytes_moved(kind, k, s, shape):
    n, c, h, w = shape
    x = n * c * h * w * 4
    if kind in ("fmp", "stoch"):   # an int32 position per output; stochastic reads a float64 draw too
        oh, ow = (int(h * s), int(w * s)) if kind == "fmp" else ((h - k) // s + 1, (w - k) // s + 1)
        out = n * c * oh * ow * 4
        return (x + out + out + (2 * out if kind == "stoch" else 0)) + (out + out + x)
    if kind in BLUR_KINDS:
        return blur_mix_bytes(kind, k, s, shape)
    if kind in ("gavg", "gmax"):
        out, idx = n * c * 4, (n * c * 4 if kind == "gmax" else 0)
    elif kind in ADAPTIVE:                  # 4-byte switches for max
        out = n * c * 4 * sum(level * level for level in (k if kind.startswith("spp") else (k,)))
        idx = out if kind in ("amax", "sppmax") else 0
    elif kind in ("lp2", "lp3"):            # backward reads x, y and dy
        out = n * c * (h // k) * (w // k) * 4
        return (x + out) + (x + 2 * out + x)
    else:
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
        out, idx = n * c * oh * ow * 4, (n * c * oh * ow if kind in ("max", "min") else 0)
    return (x + out + idx) + (out + idx + x)          # forward + backward


def blur_mix_bytes(kind, k, s, shape):
    """Forward + backward: x, y, what forward keeps (switches 1 byte, max - avg and gates 4),
    dy, dx; gated's backward reads x again."""
    n, c, h, w = shape
    x = n * c * h * w * 4
    if kind in ("blur", "maxblur"):
        mh, mw = (h - k[0] + 1, w - k[0] + 1) if kind == "maxblur" else (h, w)
        out = n * c * -(-mh // s) * -(-mw // s) * 4
        kept = n * c * mh * mw if kind == "maxblur" else 0
    else:
        out = n * c * ((h - k) // s + 1) * ((w - k) // s + 1) * 4
        kept = out // 4 * (5 if kind == "mixed" else 9)
    return 2 * (x + out + kept) + (x if kind == "gated" else 0)


# -------------------------------------------------------------------- main --

PAUSE = 0.01   # seconds between implementations: PyTorch's idle OpenMP threads stop spinning
WARMUP = 3     # untimed calls after the pause: a CPU idle for the pause runs the next calls
               # at up to half speed (measured: 3.3 ms instead of 1.75 after a 50 ms pause)
REPS = 5       # timed calls per implementation and round


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1),
                    help="threads for the multi-threaded columns, minicnn and PyTorch alike (default: CPUs)")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("torch not importable: no PyTorch columns")

    bandwidth = copy_bandwidth()
    shipped = minicnn_threads.KERNEL_THREADS
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}"
          + (f", torch {torch.__version__}" if torch else "")
          + f"; copy bandwidth {bandwidth / 1e9:.1f} GB/s (np.copyto 256 MB, read + write)")
    threads = args.threads
    print(f"minicnn and PyTorch each at {threads} and at 1 thread(s) (minicnn ships with {shipped}); "
          f"median of {args.rounds} interleaved rounds x {REPS} calls; times in ms, forward + backward\n")

    rng = np.random.default_rng(0)
    rows = []
    for shape in SHAPES:
        x = rng.standard_normal(shape, dtype=np.float32)
        for name, (make, kind, k, s) in LAYERS.items():
            layer = make()
            y = layer.forward(x)
            dy = rng.standard_normal(y.shape, dtype=np.float32)

            def ours(threads):
                def run():
                    old = minicnn_threads.KERNEL_THREADS
                    minicnn_threads.KERNEL_THREADS = threads
                    try:
                        layer.forward(x)
                        layer.backward(dy)
                    finally:
                        minicnn_threads.KERNEL_THREADS = old
                return run

            impls = {f"minicnn {threads} thr": ours(threads), "minicnn 1 thr": ours(1),
                     "numpy": lambda: numpy_pool(kind, k, s, x, lambda _: dy)}
            if torch is not None:
                tx = torch.from_numpy(x).requires_grad_(True)
                tdy = torch.from_numpy(dy)
                op = torch_pool(torch, kind, k, s)

                def torch_run(threads):
                    def run():
                        torch.set_num_threads(threads)
                        torch.autograd.grad(op(tx), tx, tdy)
                    return run
                impls[f"torch {threads} thr"] = torch_run(threads)
                impls["torch 1 thr"] = torch_run(1)
            for fn in impls.values():
                fn()  # warm up
            times = {key: [] for key in impls}
            for _ in range(args.rounds):
                for key, fn in impls.items():
                    time.sleep(PAUSE)
                    for _ in range(WARMUP):
                        fn()
                    times[key] += [timed(fn) for _ in range(REPS)]
            med = {key: statistics.median(v) for key, v in times.items()}
            floor = bytes_moved(kind, k, s, shape) / bandwidth
            rows.append((name, shape, med, floor))

    ours_t, ours_1, torch_t, torch_1 = (f"{lib} {n} thr" for lib in ("minicnn", "torch") for n in (threads, 1))
    cols = [ours_t, ours_1, "numpy"] + ([torch_t, torch_1] if torch else [])
    # Each ratio compares like with like: the same thread count on both sides.
    ratios = ([(torch_t, ours_t), (torch_1, ours_1)] if torch else []) + [("numpy", ours_1)]
    head = ["layer", "input"] + [f"{c} ms" for c in cols] + ["floor ms"]
    head += [f"{a} / {b}" for a, b in ratios] + [f"{ours_1} / floor", f"{ours_t} / floor"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * 2 + "---:|" * (len(head) - 2))
    for name, shape, med, floor in rows:
        cells = [name, "x".join(map(str, shape))] + [f"{1e3 * med[c]:.2f}" for c in cols] + [f"{1e3 * floor:.2f}"]
        cells += [f"{med[a] / med[b]:.2f}x" for a, b in ratios]
        cells += [f"{med[ours_1] / floor:.2f}x", f"{med[ours_t] / floor:.2f}x"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
