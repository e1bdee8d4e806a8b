"""Test accuracy per epoch on real MNIST, minicnn against PyTorch on the same terms.

For each seed, trains CONFIG with ``minicnn.train.fit`` (exactly what
``minicnn train`` runs) and the same network in PyTorch starting from the same
initial weights, on the same train/test split, with the same mini-batch order
(``default_rng([seed, epoch])``, as fit shuffles), batch size and optimizer.
Prints the test accuracy after every epoch, per seed and as mean ± sample std
over seeds, so that a gap between the two is told apart from seed-to-seed noise.

    python benchmarks/accuracy_vs_torch.py [CONFIG] [--epochs 3] [--seeds 0 1 2] [--set KEY=VALUE]

minicnn trains an epoch of configs/max_pool.yaml in about 18 s on 2 cores.
"""
from __future__ import annotations

import argparse
import csv
import pathlib
import statistics
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minicnn import data  # noqa: E402
from minicnn.config import build_model, load_config  # noqa: E402
from minicnn.train import fit, split  # noqa: E402
from torch_twin import torch_network, torch_optimizer  # noqa: E402


def minicnn_accuracies(config, mnist) -> list[float]:
    """Test accuracy in % after each epoch of ``minicnn.train.fit``."""
    with tempfile.TemporaryDirectory() as out:
        fit(config, out, mnist=mnist, log=lambda line: print("  minicnn", line, flush=True),
            show_progress=False)
        with open(pathlib.Path(out) / "metrics.csv", newline="") as f:
            return [100 * float(row["test_accuracy"]) for row in csv.DictReader(f)]


def torch_accuracies(config, mnist, torch) -> list[float]:
    """Test accuracy in % after each epoch of the PyTorch twin, same start and batches."""
    splits = split(config, mnist)
    net = torch_network(build_model(config), torch)  # build_model seeds from config.seed, as fit does
    optimizer = torch_optimizer(config, net.parameters(), torch)
    x, y = torch.from_numpy(splits.x_train), torch.from_numpy(splits.y_train)
    x_test, y_test = torch.from_numpy(splits.x_test), torch.from_numpy(splits.y_test)
    bs, accuracies = config.batch_size, []
    for epoch in range(config.epochs):
        order = torch.from_numpy(np.random.default_rng([config.seed, epoch]).permutation(len(x)))
        net.train()
        for start in range(0, len(x), bs):
            idx = order[start:start + bs]
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            eb = config.eval_batch_size
            correct = sum(int((net(x_test[i:i + eb]).argmax(1) == y_test[i:i + eb]).sum())
                          for i in range(0, len(x_test), eb))
        accuracies.append(100 * correct / len(x_test))
        print(f"  PyTorch epoch {epoch + 1}/{config.epochs}  test {accuracies[-1]:.2f}%", flush=True)
    return accuracies


def mean_std(values) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", nargs="?", default=str(ROOT / "configs" / "max_pool.yaml"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, as for minicnn train (repeatable)")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        sys.exit("accuracy_vs_torch needs torch (pip install torch)")
    mnist = data.load_mnist()
    results = {}
    for seed in args.seeds:
        config = load_config(args.config, [*args.set, f"train.epochs={args.epochs}", f"seed={seed}"])
        print(f"seed {seed}", flush=True)
        results[seed] = (minicnn_accuracies(config, mnist), torch_accuracies(config, mnist, torch))

    print(f"\n{pathlib.Path(args.config).name}: test accuracy %, torch {torch.__version__}, "
          f"{torch.get_num_threads()} PyTorch threads\n")
    print("| epoch | " + " | ".join(f"minicnn seed {s} | PyTorch seed {s}" for s in args.seeds)
          + " | minicnn mean ± std | PyTorch mean ± std |")
    print("|---:|" + "---:|" * (2 * len(args.seeds) + 2))
    for e in range(args.epochs):
        ours = [results[s][0][e] for s in args.seeds if e < len(results[s][0])]
        theirs = [results[s][1][e] for s in args.seeds]
        cells = [f"{results[s][0][e]:.2f} | {results[s][1][e]:.2f}" if e < len(results[s][0])
                 else f"diverged | {results[s][1][e]:.2f}" for s in args.seeds]
        print(f"| {e + 1} | " + " | ".join(cells) + f" | {mean_std(ours) if ours else '-'} | {mean_std(theirs)} |")


if __name__ == "__main__":
    main()
