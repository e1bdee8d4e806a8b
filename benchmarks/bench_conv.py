"""Conv2D forward and backward, minicnn against PyTorch, on the shapes of configs/.

Every distinct convolution of configs/*.yaml, at batch 64, float32: forward,
and backward with the input and weight gradients (the first layer of a network
also without the input gradient, as training runs it).  minicnn and PyTorch
calls alternate and each figure is the median of the rounds; the ratio is
minicnn time / PyTorch time (below 1: minicnn is faster).

Threads: ``--threads T`` sets OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and
MINICNN_KERNEL_THREADS before NumPy loads, and torch.set_num_threads(T).
``--clock cpu`` (one thread only) times the main thread's CPU time instead of
wall time, as in bench_train.py.

    python benchmarks/bench_conv.py [--threads N] [--rounds 15] [--clock cpu]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_train import THREADS, kernels  # noqa: E402  (sets the thread variables first)

import numpy as np  # noqa: E402

from minicnn import threads  # noqa: E402
import minicnn.layers as L  # noqa: E402

BATCH = 64
# (C, O, H, W, stride, first layer?) of every convolution in configs/
SHAPES = [
    (1, 32, 28, 28, 1, True),
    (1, 32, 28, 28, 2, True),
    (32, 32, 28, 28, 2, False),
    (32, 64, 14, 14, 1, False),
    (32, 64, 14, 14, 2, False),
    (64, 64, 14, 14, 2, False),
    (64, 128, 7, 7, 1, False),
]


def median_ms(samples):
    return 1e3 * statistics.median(samples)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = ap.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        ap.error("--clock cpu needs --threads 1")
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    import torch
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, batch {BATCH}, float32, median of {args.rounds} alternating rounds, "
          f"{args.clock} clock; {kernels()}; torch {torch.__version__}\n")
    print("| conv | minicnn fwd ms | torch fwd ms | ratio | minicnn bwd ms | torch bwd ms | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for c, o, h, w, s, first in SHAPES:
        layer = L.Conv2D(c, o, 3, stride=s, padding=1, dtype=np.float32, rng=rng)
        x = rng.standard_normal((BATCH, c, h, w), dtype=np.float32)
        y = layer.forward(x)
        dy = rng.standard_normal(y.shape, dtype=np.float32)
        tconv = torch.nn.Conv2d(c, o, 3, stride=s, padding=1)
        tx = torch.from_numpy(x).requires_grad_(not first)
        tdy = torch.from_numpy(dy)
        times = {k: [] for k in ("f", "b", "tf", "tb")}
        with threads.one_blas_thread():
            for r in range(args.rounds + 2):
                t0 = clock()
                layer.forward(x)
                t1 = clock()
                layer.backward(dy, input_grad=not first)
                t2 = clock()
                ty = tconv(tx)
                t3 = clock()
                ty.backward(tdy)
                t4 = clock()
                tconv.zero_grad(set_to_none=True)
                tx.grad = None
                if r >= 2:  # warm-up rounds
                    for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                        times[k].append(v)
        f, b, tf, tb = (median_ms(times[k]) for k in ("f", "b", "tf", "tb"))
        name = f"{c}->{o} {h}x{w} s{s}" + (" (no dx)" if first else "")
        print(f"| {name} | {f:.3f} | {tf:.3f} | {f / tf:.2f} | {b:.3f} | {tb:.3f} | {b / tb:.2f} |")


if __name__ == "__main__":
    main()
