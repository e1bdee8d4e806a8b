"""Training throughput and per-layer time, minicnn against PyTorch, in one process.

For every config (default: configs/*.yaml) this runs the training step of
``minicnn.train.train_epoch`` on synthetic MNIST-shaped batches (the speed of a
step does not depend on the pixel values):

    xb, yb = x[idx], y[idx]                      # gather a shuffled batch
    logits = model.forward(xb, training=True, logits=True)
    loss, dlogits = softmax_cross_entropy(logits, yb)
    model.backward(dlogits, logits=True, input_grad=False)
    optimizer.step()
    (logits.argmax(axis=1) == yb).sum()          # accuracy bookkeeping

and prints images/s (median of several repetitions), a per-layer breakdown of
forward and backward time measured inside real training steps, and, when torch
is importable, the same network in PyTorch (same weights, batch size, optimizer
and number of threads) with the ratios.  minicnn and PyTorch repetitions
alternate, so that load from other processes hits both alike.  PyTorch's
per-layer times are measured module by module on the module's real input
(forward, then backward for the input and parameter gradients).

Threads: ``--threads T`` (default: OMP_NUM_THREADS, else the number of CPUs)
sets OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MINICNN_KERNEL_THREADS before
NumPy and minicnn are imported, so that minicnn runs T threads (minicnn.threads
says how), and torch.set_num_threads(T) for PyTorch.

    python benchmarks/bench_train.py [CONFIG ...] [--steps 30] [--repeats 5] [--threads N]
"""
from __future__ import annotations

import argparse
import glob
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
    return int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)


# BLAS reads its thread count when it is loaded: set it before NumPy is imported
THREADS = _threads_from_argv(sys.argv[1:])
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MINICNN_KERNEL_THREADS"):
    os.environ[_variable] = str(THREADS)

import numpy as np  # noqa: E402

from minicnn import threads  # noqa: E402
from minicnn.config import build_model, load_config  # noqa: E402
from minicnn.losses import softmax_cross_entropy  # noqa: E402
from minicnn.optim import OPTIMIZERS  # noqa: E402
from torch_twin import torch_network, torch_optimizer  # noqa: E402

POOL_SIZE = 4096  # synthetic training images the batches are drawn from
PAUSE = 0.1       # seconds between minicnn and PyTorch runs


def synthetic_data(config, n=POOL_SIZE, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, *config.input_shape), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    return x, y


# ------------------------------------------------------------------ minicnn --

def minicnn_step(model, optimizer, xb, yb):
    logits = model.forward(xb, training=True, logits=True)
    loss, dlogits = softmax_cross_entropy(logits, yb)
    model.backward(dlogits, logits=True, input_grad=False)
    optimizer.step()
    return int((logits.argmax(axis=1) == yb).sum())


def run_epochish(step, x, y, batch_size, steps, rng):
    """``steps`` training steps on shuffled batches; returns seconds."""
    order = rng.permutation(len(x))
    starts = [(i * batch_size) % (len(x) - batch_size + 1) for i in range(steps)]
    t0 = time.perf_counter()
    for s in starts:
        idx = order[s:s + batch_size]
        step(x[idx], y[idx])
    return time.perf_counter() - t0


class LayerTimer:
    """Wraps every layer's forward/backward of a model to record their times."""

    def __init__(self, model):
        self.model = model
        self.times = {i: {"fwd": [], "bwd": []} for i in range(len(model.layers))}
        self._saved = []

    def __enter__(self):
        for i, layer in enumerate(self.model.layers):
            fwd, bwd = layer.forward, layer.backward
            self._saved.append((layer, fwd, bwd))
            layer.forward = self._wrap(fwd, self.times[i]["fwd"])
            layer.backward = self._wrap(bwd, self.times[i]["bwd"])
        return self

    def __exit__(self, *exc):
        for layer, _, _ in self._saved:
            del layer.forward, layer.backward   # back to the class methods

    @staticmethod
    def _wrap(fn, sink):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            sink.append(time.perf_counter() - t0)
            return out
        return timed


def minicnn_runner(config, x, y):
    """(model, run(steps) -> seconds) for minicnn's training step."""
    model = build_model(config)
    optimizer = OPTIMIZERS[config.optimizer.name](model.slots(), **config.optimizer.options)
    step = lambda xb, yb: minicnn_step(model, optimizer, xb, yb)  # noqa: E731
    rng = np.random.default_rng(1)

    def run(steps):
        with threads.one_blas_thread():  # as minicnn.train.fit holds it
            return run_epochish(step, x, y, config.batch_size, steps, rng)
    return model, run


def minicnn_layer_times(model, run, steps):
    """Median forward and backward time of every layer inside real training steps."""
    with LayerTimer(model) as timer:
        run(steps)
    layers = []
    for i, layer in enumerate(model.layers):
        t = timer.times[i]
        if not t["fwd"]:
            continue  # a final Softmax folded into the loss
        layers.append((f"{i:2d} {layer!r}", statistics.median(t["fwd"]),
                       statistics.median(t["bwd"]) if t["bwd"] else 0.0))
    return layers


# ------------------------------------------------------------------ PyTorch --

def torch_runner(config, model, x, y, torch):
    """(net, run(steps) -> seconds) for the same network's PyTorch training step."""
    net = torch_network(model, torch)
    opt = torch_optimizer(config, net.parameters(), torch)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    F = torch.nn.functional

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        logits = net(xb)
        loss = F.cross_entropy(logits, yb)
        loss.backward()
        opt.step()
        return int((logits.argmax(dim=1) == yb).sum())

    bs = config.batch_size
    rng = np.random.default_rng(1)

    def run(steps):
        order = torch.from_numpy(rng.permutation(len(x)))
        t0 = time.perf_counter()
        for i in range(steps):
            s = (i * bs) % (len(x) - bs + 1)
            idx = order[s:s + bs]
            step(tx[idx], ty[idx])
        return time.perf_counter() - t0

    return net, run, tx[:bs]


def torch_layer_times(net, xb, torch, steps):
    """Forward and backward (input and parameter gradients) of each module on its real input."""
    out = []
    h = xb
    for m in net:
        inp = h.detach().requires_grad_(True)
        y = m(inp)
        dy = torch.randn_like(y)
        fwd, bwd = [], []
        for _ in range(steps):
            t0 = time.perf_counter()
            y = m(inp)
            t1 = time.perf_counter()
            y.backward(dy)
            t2 = time.perf_counter()
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
            inp.grad = None
            m.zero_grad(set_to_none=True)
        out.append(statistics.median(fwd))
        out.append(statistics.median(bwd))
        h = y.detach()
    return out


# -------------------------------------------------------------------- main --

def ms(s):
    return f"{1e3 * s:8.3f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="*", help="YAML configs (default: configs/*.yaml)")
    ap.add_argument("--steps", type=int, default=30, help="training steps per repetition")
    ap.add_argument("--repeats", type=int, default=5, help="repetitions; the median is reported")
    ap.add_argument("--threads", type=int, default=THREADS, help="BLAS and PyTorch threads (default: CPUs)")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    if args.threads != THREADS:
        ap.error("--threads must be given on the command line (it is read before NumPy loads)")
    paths = args.configs or sorted(glob.glob(str(ROOT / "configs" / "*.yaml")))

    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            print("torch not importable: minicnn figures only")
    print(f"threads {args.threads}, steps {args.steps} x {args.repeats} repetitions (median)"
          + (f", torch {torch.__version__}" if torch else ""))

    summary = []
    for path in paths:
        config = load_config(path)
        x, y = synthetic_data(config)
        model, run = minicnn_runner(config, x, y)
        runs = {"minicnn": run}
        if torch is not None:
            net, runs["torch"], tx0 = torch_runner(config, model, x, y, torch)
        for r in runs.values():
            r(5)  # warm up: allocator, thread pools, caches
        secs = {k: [] for k in runs}
        for _ in range(args.repeats):   # interleaved, so that load from elsewhere hits both alike
            for k, r in runs.items():
                time.sleep(PAUSE)       # the other side's idle threads stop spinning
                secs[k].append(r(args.steps))
        bs = config.batch_size
        ips = bs * args.steps / statistics.median(secs["minicnn"])
        time.sleep(PAUSE)
        layers = minicnn_layer_times(model, run, args.steps)
        tips, tlayers = None, None
        if torch is not None:
            tips = bs * args.steps / statistics.median(secs["torch"])
            time.sleep(PAUSE)
            tlayers = torch_layer_times(net, tx0, torch, args.steps)
        print(f"\n## {config.name} ({pathlib.Path(path).name}), batch {config.batch_size}, float32\n")
        print("| layer | fwd ms | bwd ms | torch fwd ms | torch bwd ms | fwd ratio | bwd ratio |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        tot_f = tot_b = ttot_f = ttot_b = 0.0
        for k, (name, f, b) in enumerate(layers):
            tot_f += f
            tot_b += b
            if tlayers:
                tf, tb = tlayers[2 * k], tlayers[2 * k + 1]
                ttot_f += tf
                ttot_b += tb
                print(f"| {name} | {ms(f)} | {ms(b)} | {ms(tf)} | {ms(tb)} | "
                      f"{f / tf:5.2f} | {b / tb if tb > 0 else float('nan'):5.2f} |")
            else:
                print(f"| {name} | {ms(f)} | {ms(b)} | - | - | - | - |")
        if tlayers:
            print(f"| **sum of layers** | {ms(tot_f)} | {ms(tot_b)} | {ms(ttot_f)} | {ms(ttot_b)} | "
                  f"{tot_f / ttot_f:5.2f} | {tot_b / ttot_b:5.2f} |")
        else:
            print(f"| **sum of layers** | {ms(tot_f)} | {ms(tot_b)} | - | - | - | - |")
        step_ms = 1e3 * config.batch_size / ips
        line = f"\nminicnn: {ips:7.0f} images/s ({step_ms:.2f} ms/step; layers {1e3 * (tot_f + tot_b):.2f} ms)"
        if tips:
            line += (f"\nPyTorch: {tips:7.0f} images/s ({1e3 * config.batch_size / tips:.2f} ms/step)"
                     f"\nminicnn / PyTorch throughput: {ips / tips:.2f}x")
        print(line)
        summary.append((config.name, ips, tips))

    print("\n| config | minicnn img/s | PyTorch img/s | ratio |")
    print("|---|---:|---:|---:|")
    for name, ips, tips in summary:
        print(f"| {name} | {ips:.0f} | {f'{tips:.0f}' if tips else '-'} | "
              f"{f'{ips / tips:.2f}x' if tips else '-'} |")


if __name__ == "__main__":
    main()
