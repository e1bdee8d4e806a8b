"""Training throughput and per-layer time, minicnn against PyTorch, in one process.



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
(forward, then backward for the input and parameter gradients).  A ReLU
right after a Conv2D or BatchNorm runs inside it in minicnn (Sequential fuses the pair), so
its row shows no time of its own and the Conv2D row includes it; compare the
two rows together, or the sums.

Threads: ``--threads T`` (default: OMP_NUM_THREADS, else the number of CPUs)
sets OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MINICNN_KERNEL_THREADS before
NumPy and minicnn are imported, so that minicnn runs T threads (minicnn.threads
says how), and torch.set_num_threads(T) for PyTorch.

The header names the BLAS kernel NumPy's OpenBLAS runs (threadpoolctl's
``architecture``) and minicnn's own GEMM micro-kernel.  Each config's line also
gives the FLOP rate of a training step and its fraction of the peak: FLOPs are
those of a direct convolution and dense products, forward plus both gradients
(2 * MACs each; the first layer computes no input gradient), whatever
algorithm runs; the peak is the best of 10 float32 products
(2048 x 2048) @ (2048 x 2048) by NumPy's BLAS at the same thread count.

``--clock cpu`` (with ``--threads 1``) times CPU time of the main thread, not
wall time: on a machine shared with other work, wall time counts the time
the process waited for a core, CPU time does not.

Instruction set: ``--isa avx512|avx2|portable`` caps both sides alike, before
either is imported: minicnn with MINICNN_ISA, PyTorch with
ATEN_CPU_CAPABILITY (avx512, avx2, default) and, for avx2 and portable,
ONEDNN_MAX_CPU_ISA (AVX2, SSE41; its float32 kernels top out at AVX-512
anyway) and MKL_ENABLE_INSTRUCTIONS (AVX2, SSE4_2: PyTorch's Linear layers
multiply with MKL, which ATEN_CPU_CAPABILITY does not cap); and the sgemm peak's OpenBLAS kernel, unless OPENBLAS_CORETYPE is set
(Haswell, Nehalem).  Each side reads its cap once per process and neither reads the
other's, so one process holds both and their repetitions still alternate.
The header names the level each side runs at.

Input: ``--input CxHxW`` (e.g. 3x64x64, 3x96x96) trains the network on random
images of that shape (``model.input_shape``; the dense layer follows); with no
config named it runs the reference network, configs/max_pool.yaml.

``--matrix`` runs the whole benchmark as subprocesses, at 2 and 1 threads,
with the environment as it is and with OPENBLAS_CORETYPE forced to Haswell
(or, when the environment already sets it, unset together with
OPENBLAS_L2_SIZE), then prints one table of all of them.

    python benchmarks/bench_train.py [CONFIG ...] [--steps 30] [--repeats 5] [--threads N]
                                     [--isa avx512|avx2|portable] [--input 3x64x64]
    python benchmarks/bench_train.py --matrix [CONFIG ...] [--steps 30] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _option(argv, name):
    """The value of ``--name V`` or ``--name=V`` on the command line, or None."""
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


# minicnn's level -> PyTorch's caps for the same instruction set
ISA_CAPS = {
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "portable": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                 "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}

# BLAS reads its thread count when it is loaded, minicnn and PyTorch their
# instruction set: set them before NumPy, minicnn or torch is imported
THREADS = int(_option(sys.argv[1:], "--threads") or os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MINICNN_KERNEL_THREADS"):
    os.environ[_variable] = str(THREADS)
ISA = _option(sys.argv[1:], "--isa")
if ISA in ISA_CAPS:
    os.environ.update({"MINICNN_ISA": ISA, **ISA_CAPS[ISA]})
    if ISA != "avx512":   # the sgemm peak, too, at that level (unless the environment names a kernel)
        os.environ.setdefault("OPENBLAS_CORETYPE", {"avx2": "Haswell", "portable": "Nehalem"}[ISA])

import numpy as np  # noqa: E402

from minicnn import threads  # noqa: E402
from minicnn.config import build_model, load_config  # noqa: E402
from minicnn.losses import softmax_cross_entropy  # noqa: E402
from minicnn.optim import OPTIMIZERS  # noqa: E402
from torch_twin import optional_torch, torch_network, torch_optimizer  # noqa: E402

POOL_SIZE = 4096  # synthetic training images the batches are drawn from
clock = time.perf_counter  # --clock cpu: time.thread_time (one thread only)
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
    t0 = clock()
    for s in starts:
        idx = order[s:s + batch_size]
        step(x[idx], y[idx])
    return clock() - t0


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
            t0 = clock()
            out = fn(*args, **kwargs)
            sink.append(clock() - t0)
            return out
        return timed


def minicnn_runner(config, x, y):
    """(model, run(steps) -> seconds) for minicnn's training step."""
    model = build_model(config)
    optimizer = OPTIMIZERS[config.optimizer.name](model.slots(), **config.optimizer.options)
    step = lambda xb, yb: minicnn_step(model, optimizer, xb, yb)  # noqa: E731
    rng = np.random.default_rng(1)

    def run(steps):
        with threads.one_blas_thread():  # as minicnn.train.fit_config holds it
            return run_epochish(step, x, y, config.batch_size, steps, rng)
    return model, run


def minicnn_layer_times(model, run, steps):
    """Median forward and backward time of every layer inside real training steps."""
    with LayerTimer(model) as timer:
        run(steps)
    layers = []
    for i, layer in enumerate(model.layers):
        t = timer.times[i]
        if i in model.fused_relus:   # runs inside the Conv2D or BatchNorm before it (Sequential)
            layers.append((f"{i:2d} {layer!r}, in the layer above", 0.0, 0.0))
            continue
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
        t0 = clock()
        for i in range(steps):
            s = (i * bs) % (len(x) - bs + 1)
            idx = order[s:s + bs]
            step(tx[idx], ty[idx])
        return clock() - t0

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
            t0 = clock()
            y = m(inp)
            t1 = clock()
            y.backward(dy)
            t2 = clock()
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
            inp.grad = None
            m.zero_grad(set_to_none=True)
        out.append(statistics.median(fwd))
        out.append(statistics.median(bwd))
        h = y.detach()
    return out


# ----------------------------------------------------------- FLOPs, peak --

def step_flops(model, batch_size):
    """FLOPs of one training step as a direct convolution would do them:
    forward, weight gradient and input gradient of every layer with parameters
    (2 * MACs each), less the first such layer's input gradient."""
    macs = [r.macs for r, layer in zip(model.rows, model.layers) if layer.params]
    return batch_size * 2 * (3 * sum(macs) - (macs[0] if macs else 0))


def peak_flop_rate(threads_count, size=2048, repeats=10):
    """Best FLOP/s of NumPy's float32 (size x size) @ (size x size) at threads_count."""
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    out = np.empty_like(a)
    best = float("inf")
    with threadpool_limits(threads_count, user_api="blas"):
        np.matmul(a, b, out=out)
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - t0)
    return 2 * size ** 3 / best


def kernels():
    """'openblas SkylakeX, minicnn avx512': which BLAS kernel and GEMM micro-kernel run."""
    from threadpoolctl import threadpool_info
    blas = ", ".join(f"{i['internal_api']} {i.get('architecture')}" for i in threadpool_info()
                     if i["user_api"] == "blas")
    try:
        from minicnn import _conv
    except ImportError:   # a minicnn from before its own GEMM: everything on BLAS
        return f"{blas}; minicnn GEMM none"
    from minicnn import isa
    return f"{blas}; minicnn isa {isa.level()}, GEMM {_conv.gemm_kernel()}"


def torch_isa(torch) -> str:
    """'AVX2, oneDNN max AVX2, MKL max AVX2': the level of PyTorch's own kernels, oneDNN's and MKL's caps."""
    return (f"{torch.backends.cpu.get_cpu_capability()}, oneDNN max {os.environ.get('ONEDNN_MAX_CPU_ISA', 'as is')}"
            f", MKL max {os.environ.get('MKL_ENABLE_INSTRUCTIONS', 'as is')}")


# ---------------------------------------------------------------- matrix --

def environments():
    """(label, environment) pairs: as it is, and OPENBLAS_CORETYPE changed."""
    here = dict(os.environ)
    if here.get("OPENBLAS_CORETYPE"):
        other = {k: v for k, v in here.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        return [(f"as is (OPENBLAS_CORETYPE={here['OPENBLAS_CORETYPE']})", here),
                ("OPENBLAS_CORETYPE unset", other)]
    return [("as is (OPENBLAS_CORETYPE unset)", here),
            ("OPENBLAS_CORETYPE=Haswell", {**here, "OPENBLAS_CORETYPE": "Haswell"})]


def run_matrix(argv):
    """Run this script at 2 and 1 threads in each environment; print every
    run's output, then one table of them all."""
    rest, skip = [], False
    for a in argv:   # drop --matrix and any --threads: each run sets its own
        if skip or a == "--matrix" or a.startswith("--threads="):
            skip = False
            continue
        if a == "--threads":
            skip = True
            continue
        rest.append(a)
    rows = []
    for count in (2, 1):
        for label, env in environments():
            cmd = [sys.executable, __file__, *rest, "--threads", str(count), "--json"]
            print(f"\n# {label}, {count} thread(s)\n", flush=True)
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            for line in out.splitlines():
                if line.startswith("RESULT "):
                    rows.append({**json.loads(line[7:]), "environment": label})
                else:
                    print(line)
    print("\n| config | threads | environment | kernels | minicnn img/s | PyTorch img/s | ratio "
          "| minicnn GFLOP/s | % of peak |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        torch_ips = f"{r['torch']:.0f}" if r["torch"] else "-"
        ratio = f"{r['minicnn'] / r['torch']:.2f}x" if r["torch"] else "-"
        print(f"| {r['config']} | {r['threads']} | {r['environment']} | {r['kernels']} | {r['minicnn']:.0f} "
              f"| {torch_ips} | {ratio} | {r['gflops']:.1f} | {100 * r['peak_fraction']:.0f}% |")


# -------------------------------------------------------------------- main --

def input_shape(text):
    """'3x64x64' -> (3, 64, 64)."""
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected CxHxW with positive sizes, e.g. 3x64x64, got {text!r}")
    return shape


def ms(s):
    return f"{1e3 * s:8.3f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="*", help="YAML configs (default: every config in configs/)")
    ap.add_argument("--steps", type=int, default=30, help="training steps per repetition")
    ap.add_argument("--repeats", type=int, default=5, help="repetitions; the median is reported")
    ap.add_argument("--threads", type=int, default=THREADS, help="BLAS and PyTorch threads (default: CPUs)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--matrix", action="store_true",
                    help="run at 2 and 1 threads, environment as is and OPENBLAS_CORETYPE changed")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: time the main thread's CPU time instead of wall time (with --threads 1 "
                         "only), which a loaded machine inflates far less")
    ap.add_argument("--isa", choices=list(ISA_CAPS),
                    help="cap minicnn (MINICNN_ISA) and PyTorch (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA) alike")
    ap.add_argument("--input", type=input_shape, metavar="CxHxW",
                    help="random images of this shape (default: each config's); no config named: max_pool.yaml")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.clock == "cpu":
        if args.threads != 1:
            ap.error("--clock cpu needs --threads 1 (other threads' work would not be counted)")
        global clock
        clock = time.thread_time
    if args.matrix:
        return run_matrix(sys.argv[1:] if argv is None else list(argv))
    if args.threads != THREADS or args.isa != ISA:
        ap.error("--threads and --isa must be given on the command line (read before NumPy loads)")
    paths = args.configs or ([str(ROOT / "configs" / "max_pool.yaml")] if args.input
                             else sorted(glob.glob(str(ROOT / "configs" / "*.yaml"))))
    # random images of another shape: a data set of that shape (npz; its file is never read here)
    overrides = ([f"model.input_shape=[{','.join(map(str, args.input))}]", "data.dataset=npz",
                  "data.path=random.npz"] if args.input else [])

    torch = None if args.no_torch else optional_torch(args.threads)
    print(f"threads {args.threads}, steps {args.steps} x {args.repeats} repetitions (median), {args.clock} clock"
          + (f", torch {torch.__version__} ({torch_isa(torch)})" if torch else "") + f"; {kernels()}")
    peak = peak_flop_rate(args.threads)
    print(f"peak: {peak / 1e9:.0f} GFLOP/s (best of 10 NumPy float32 2048^3 products, {args.threads} thread(s))")

    summary = []
    for path in paths:
        config = load_config(path, overrides)
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
        shape = "x".join(map(str, config.input_shape))
        print(f"\n## {config.name} ({pathlib.Path(path).name}), input {shape}, batch {config.batch_size}, float32\n")
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
                ratios = (f"{f / tf:5.2f} | {b / tb if tb > 0 else float('nan'):5.2f}" if f > 0
                          else "    - |     -")
                print(f"| {name} | {ms(f)} | {ms(b)} | {ms(tf)} | {ms(tb)} | {ratios} |")
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
        rate = step_flops(model, bs) * ips / bs
        line += f"\nminicnn step: {rate / 1e9:.1f} GFLOP/s, {100 * rate / peak:.0f}% of peak"
        print(line)
        summary.append((config.name, ips, tips))
        if args.json:
            print("RESULT " + json.dumps({"config": config.name, "input": shape, "isa": args.isa,
                                          "threads": args.threads, "kernels": kernels(),
                                          "minicnn": ips, "torch": tips, "gflops": rate / 1e9,
                                          "peak_fraction": rate / peak}))

    print("\n| config | minicnn img/s | PyTorch img/s | ratio |")
    print("|---|---:|---:|---:|")
    for name, ips, tips in summary:
        print(f"| {name} | {ips:.0f} | {f'{tips:.0f}' if tips else '-'} | "
              f"{f'{ips / tips:.2f}x' if tips else '-'} |")


if __name__ == "__main__":
    main()
