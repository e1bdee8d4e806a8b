"""max_pool_overlap's pooling layer, 3x3 windows, stride 2, padding 1, float32, forward + backward:
minicnn's vector path against its generic loops (the kernels' ``simd=False``, what every padded
window ran before the padded vector path) and against PyTorch, one thread each, with 2x2/2 on the
same input as the yardstick.  Calls are interleaved round by round; a time is the median over all
timed calls, in milliseconds.  A second table splits minicnn's time into forward and backward.

    python benchmarks/bench_pool_overlap.py [--rounds 9]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

from minicnn import _pool, threads

SHAPES = [(128, 32, 28, 28), (128, 64, 14, 14)]


def minicnn_call(x, k, s, p, simd):
    """Forward + backward of the kernels on all N*C planes, one thread; returns the call."""
    n, c, h, w = x.shape
    planes = x.reshape(n * c, h, w)
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    y = np.empty((n * c, oh, ow), np.float32)
    argmax = np.empty((n * c, oh, ow), np.uint8)
    dy = np.random.default_rng(1).standard_normal((n * c, oh, ow)).astype(np.float32)
    dx = np.empty_like(planes)

    def forward():
        _pool.extreme_forward(planes, y, argmax, k, k, s, s, p, p, False, simd)

    def backward():
        _pool.extreme_backward(dy, argmax, dx, k, k, s, s, p, p, simd)

    def call():
        forward()
        backward()
    call.parts = {"forward": forward, "backward": backward}
    return call


def torch_call(torch, x, k, s, p):
    xt = torch.from_numpy(x).requires_grad_()

    def call():
        y = torch.nn.functional.max_pool2d(xt, k, s, p)
        y.backward(torch.ones_like(y))
        xt.grad = None
    return call


def median_ms(call, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        call()
        for _ in range(5):
            start = time.perf_counter()
            call()
            times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    print(f"{platform.machine()}, numpy {np.__version__}, torch {torch.__version__ if torch else 'absent'}; "
          f"1 thread each; median of {args.rounds} interleaved rounds x 5 calls; ms, forward + backward\n")
    print("| input | minicnn 3x3/2 pad 1 | generic loops (before) | PyTorch 3x3/2 pad 1 | minicnn 2x2/2 | "
          "generic / minicnn | PyTorch / minicnn | 3x3 pad 1 / 2x2 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    parts = []
    with threads.limit(1):
        for shape in SHAPES:
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            calls = {"fast": minicnn_call(x, 3, 2, 1, True), "generic": minicnn_call(x, 3, 2, 1, False),
                     "2x2": minicnn_call(x, 2, 2, 0, True)}
            if torch is not None:
                calls["torch"] = torch_call(torch, x, 3, 2, 1)
            times = {name: [] for name in calls}
            for _ in range(args.rounds):
                for name, call in calls.items():
                    for _ in range(2):
                        call()
                    for _ in range(5):
                        start = time.perf_counter()
                        call()
                        times[name].append(1e3 * (time.perf_counter() - start))
            ms = {name: statistics.median(t) for name, t in times.items()}
            theirs = ms.get("torch", float("nan"))
            print(f"| {'x'.join(map(str, shape))} | {ms['fast']:.2f} | {ms['generic']:.2f} | {theirs:.2f} | "
                  f"{ms['2x2']:.2f} | {ms['generic'] / ms['fast']:.2f}x | {theirs / ms['fast']:.2f}x | "
                  f"{ms['fast'] / ms['2x2']:.2f}x |")
            parts.append((shape, {name: {part: median_ms(f, args.rounds) for part, f in calls[name].parts.items()}
                                  for name in ("fast", "generic", "2x2")}))
    print("\n| input | part | minicnn 3x3/2 pad 1 | generic loops (before) | minicnn 2x2/2 | 3x3 pad 1 / 2x2 |")
    print("|---|---|---:|---:|---:|---:|")
    for shape, ms in parts:
        for part in ("forward", "backward"):
            print(f"| {'x'.join(map(str, shape))} | {part} | {ms['fast'][part]:.2f} | {ms['generic'][part]:.2f} | "
                  f"{ms['2x2'][part]:.2f} | {ms['fast'][part] / ms['2x2'][part]:.2f}x |")


if __name__ == "__main__":
    main()
