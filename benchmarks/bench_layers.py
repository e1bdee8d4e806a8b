"""BatchNorm forward + backward: minicnn against PyTorch, float32, in one process.

BatchNorm2D(32) in training mode on (128, 32, 28, 28) (the reference network's
first feature map at batch 128), alone and followed by a ReLU (which minicnn
runs inside the BatchNorm's passes, as Sequential does), against
torch.nn.BatchNorm2d (and + torch.relu) with autograd backward.  Both run at
``--threads T`` (MINICNN_KERNEL_THREADS and torch.set_num_threads, set before
minicnn is imported).  Implementations alternate round by round (a 10 ms pause,
two untimed calls, five timed ones), so that load from other processes hits
them alike; a time is the median over all timed calls, in milliseconds.

    python benchmarks/bench_layers.py [--rounds 7] [--threads N]
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


def _threads_from_argv(argv) -> int:
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return os.cpu_count() or 1


THREADS = _threads_from_argv(sys.argv[1:])  # minicnn reads it when it is imported
os.environ["MINICNN_KERNEL_THREADS"] = str(THREADS)

import numpy as np  # noqa: E402

import minicnn.layers as L  # noqa: E402
from torch_twin import optional_torch  # noqa: E402

SHAPE = (128, 32, 28, 28)


def minicnn_step(relu):
    layer = L.BatchNorm2D(SHAPE[1], dtype=np.float32)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE, dtype=np.float32)
    dy = rng.standard_normal(SHAPE, dtype=np.float32)

    def step():
        layer.forward(x, relu=relu)
        layer.backward(dy)
    return step


def torch_step(torch, relu):
    layer = torch.nn.BatchNorm2d(SHAPE[1])
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal(SHAPE, dtype=np.float32)).requires_grad_(True)
    dy = torch.from_numpy(rng.standard_normal(SHAPE, dtype=np.float32))

    def step():
        y = layer(x)
        (torch.relu(y) if relu else y).backward(dy)
        x.grad = None
        layer.zero_grad(set_to_none=True)
    return step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=THREADS, help="minicnn and PyTorch threads (default: CPUs)")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    torch = None if args.no_torch else optional_torch(args.threads)
    print(f"BatchNorm2D fwd+bwd, training, {SHAPE} float32, {args.threads} thread(s), median of "
          f"{args.rounds} x 5 calls, ms\n")
    print("| layer | minicnn | PyTorch | PyTorch / minicnn |")
    print("|---|---:|---:|---:|")
    for relu in (False, True):
        steps = {"minicnn": minicnn_step(relu)}
        if torch is not None:
            steps["torch"] = torch_step(torch, relu)
        times = {k: [] for k in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                time.sleep(0.01)
                for _ in range(2):
                    step()
                for _ in range(5):
                    t0 = time.perf_counter()
                    step()
                    times[name].append(time.perf_counter() - t0)
        ours = statistics.median(times["minicnn"]) * 1e3
        theirs = statistics.median(times["torch"]) * 1e3 if torch is not None else None
        print(f"| BatchNorm2D{' + ReLU' if relu else ''} | {ours:.2f} | "
              + (f"{theirs:.2f} | {theirs / ours:.2f}x |" if theirs else "- | - |"))


if __name__ == "__main__":
    main()
