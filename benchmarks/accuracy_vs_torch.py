"""Test accuracy per epoch on real data, minicnn against PyTorch on the same terms.

For each seed, trains CONFIG with ``minicnn.train.fit_config`` (exactly what
``minicnn train`` runs) and the same network in PyTorch starting from the same
initial weights, on the config's data set (``data.dataset``: mnist,
fashion_mnist or npz) and the same train/test split, with the same mini-batch
order (``default_rng([seed, epoch])``, as fit shuffles), the same augmented
batches (``data.augment.shift``: ``shift_batch`` with ``augment_rng(seed, epoch)``),
the same learning rate before every batch (``train.schedule``, from
``minicnn.schedules.learning_rate``), batch size and optimizer.
Prints the test accuracy after every epoch, per seed and as mean ± sample std
over seeds, so that a gap between the two is told apart from seed-to-seed noise.

    python benchmarks/accuracy_vs_torch.py [CONFIG] [--epochs 3] [--seeds 0 1 2] [--set KEY=VALUE]
    python benchmarks/accuracy_vs_torch.py --set data.dataset=fashion_mnist \
        --set "train.schedule={name: cosine, warmup_epochs: 1}" --epochs 8

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

from minicnn import data, schedules  # noqa: E402
from minicnn.config import build_model, load_config  # noqa: E402
from minicnn.train import fit_config, load_data, split  # noqa: E402
from torch_twin import torch_network, torch_optimizer  # noqa: E402


def minicnn_accuracies(config, dataset) -> list[float]:
    """Test accuracy in % after each epoch of ``minicnn.train.fit_config``."""
    with tempfile.TemporaryDirectory() as out:
        fit_config(config, out, data=dataset, log=lambda line: print("  minicnn", line, flush=True),
            show_progress=False)
        with open(pathlib.Path(out) / "metrics.csv", newline="") as f:
            return [100 * float(row["test_accuracy"]) for row in csv.DictReader(f)]


def torch_accuracies(config, dataset, torch) -> list[float]:
    """Test accuracy in % after each epoch of the PyTorch twin, same start, batches and rates."""
    splits = split(config, dataset)
    net = torch_network(build_model(config), torch)  # build_model seeds from config.seed, as fit does
    optimizer = torch_optimizer(config, net.parameters(), torch)
    schedule = {"name": config.schedule.name, **config.schedule.options}
    base_lr = config.optimizer.options["lr"]
    y = torch.from_numpy(splits.y_train)
    x_test, y_test = torch.from_numpy(data.to_float32(splits.x_test)), torch.from_numpy(splits.y_test)
    bs, accuracies = config.batch_size, []
    batches = -(-len(splits.x_train) // bs)
    for epoch in range(config.epochs):
        order = np.random.default_rng([config.seed, epoch]).permutation(len(splits.x_train))
        rng = data.augment_rng(config.seed, epoch)
        net.train()
        for batch, start in enumerate(range(0, len(order), bs)):
            idx = order[start:start + bs]
            xb = splits.x_train[idx]
            if config.augment_shift > 0:
                xb = data.shift_batch(xb, config.augment_shift, rng)
            xb = data.to_float32(xb)
            for group in optimizer.param_groups:
                group["lr"] = schedules.learning_rate(schedule, base_lr, epoch * batches + batch, batches,
                                                      config.epochs)
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(torch.from_numpy(xb)), y[idx]).backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            eb = config.eval_batch_size
            correct = sum(int((net(x_test[i:i + eb]).argmax(1) == y_test[i:i + eb]).sum())
                          for i in range(0, len(x_test), eb))
        accuracies.append(100 * correct / len(x_test))
        print(f"  PyTorch epoch {epoch + 1}/{config.epochs}  test {accuracies[-1]:.2f}%  "
              f"lr {optimizer.param_groups[0]['lr']:.4g}", flush=True)
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
    results, dataset = {}, None
    for seed in args.seeds:
        config = load_config(args.config, [*args.set, f"train.epochs={args.epochs}", f"seed={seed}"])
        dataset = dataset or load_data(config)  # the seed changes nothing about the data
        print(f"seed {seed}", flush=True)
        results[seed] = (minicnn_accuracies(config, dataset), torch_accuracies(config, dataset, torch))

    print(f"\n{pathlib.Path(args.config).name} on {dataset.name}{''.join(' --set ' + s for s in args.set)}: "
          f"test accuracy %, schedule {config.schedule.name}, augment shift {config.augment_shift}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} PyTorch threads\n")
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
