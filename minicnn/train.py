"""Fit and evaluate one model; its run folder (minicnn.runs) is its complete record.

Resuming reads the checkpoint only, and every epoch shuffles with its own
generator ``default_rng([seed, epoch])``, so an interrupted and resumed run
gives the same numbers as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import resource
import sys
import time

import numpy as np

from minicnn import data as mnist_data, threads
from minicnn.config import Config, build_model, dump_yaml
from minicnn.losses import softmax_cross_entropy
from minicnn.model import Sequential
from minicnn.optim import OPTIMIZERS
from minicnn.progress import ProgressBar
from minicnn.runs import RunFolder

# A run has diverged when a batch's mean cross-entropy is not finite or exceeds
# this many nats: the model then gives the right class e^-100 on average, which
# no learning run recovers from (an untrained model scores ln 10 = 2.3).
DIVERGED_LOSS = 100.0
METRIC_FIELDS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                 "test_loss", "test_accuracy", "train_seconds", "images_per_second"]


@dataclasses.dataclass
class Splits:
    """Float32 images (N, 1, 28, 28) in [0, 1] and int64 labels (N,), plus raw test images."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_images: np.ndarray  # uint8 (N, 28, 28), source of the shifted test sets


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1]."""
    return (images.astype(np.float32) / np.float32(255))[:, None]


def split(config: Config, mnist) -> Splits:
    """Validation = the last val_size training images; train_size/test_size cut from the front."""
    n_train = len(mnist.x_train) - config.val_size
    stop = n_train if config.train_size is None else min(config.train_size, n_train)
    test = slice(0, config.test_size)
    return Splits(
        to_float(mnist.x_train[:stop]), mnist.y_train[:stop].astype(np.int64),
        to_float(mnist.x_train[n_train:]), mnist.y_train[n_train:].astype(np.int64),
        to_float(mnist.x_test[test]), mnist.y_test[test].astype(np.int64),
        mnist.x_test[test],
    )


def evaluate(model: Sequential, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (0..1) of the model on (x, y); (nan, nan) if empty."""
    if len(x) == 0:
        return float("nan"), float("nan")
    loss_sum, correct = 0.0, 0
    with np.errstate(all="ignore"):
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            logits = model.forward(xb, training=False, logits=True)
            loss, _ = softmax_cross_entropy(logits, yb)
            loss_sum += loss * len(xb)
            correct += int((logits.argmax(axis=1) == yb).sum())
    return loss_sum / len(x), correct / len(x)


def train_epoch(model, optimizer, x, y, batch_size, rng, bar=None) -> tuple[float, float, bool]:
    """One pass over (x, y) in shuffled mini-batches.

    Returns (mean loss, accuracy, diverged); stops at the first batch whose loss
    is not finite or above DIVERGED_LOSS.
    """
    order = rng.permutation(len(x))
    loss_sum, correct, seen = 0.0, 0, 0
    with np.errstate(all="ignore"):
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            xb, yb = x[idx], y[idx]
            logits = model.forward(xb, training=True, logits=True)
            loss, dlogits = softmax_cross_entropy(logits, yb)
            if not loss <= DIVERGED_LOSS:  # also true for nan
                return loss, correct / max(seen, 1), True
            model.backward(dlogits, logits=True, input_grad=False)
            optimizer.step()
            loss_sum += loss * len(idx)
            correct += int((logits.argmax(axis=1) == yb).sum())
            seen += len(idx)
            if bar is not None:
                bar.update(seen, loss=f"{loss_sum / seen:.4f}", acc=f"{100 * correct / seen:.2f}%")
    return loss_sum / seen, correct / seen, False


def fit(config: Config, out_dir, *, mnist=None, data_dir=None, resume: bool = False,
        log=print, show_progress: bool | None = None) -> dict:
    """Train ``config`` and write its run folder ``out_dir``; return summary.json's dict.

    ``mnist``: preloaded minicnn.data.MNIST (else loaded from ``data_dir`` or the usual
    sources).  ``resume``: continue from out_dir's checkpoint, or return its summary if
    the run is finished.  ``log``: called with one line per epoch.
    Raises UserError for a folder that is unwritable, in use by another process,
    holding a run of a different config, holding a run while ``resume`` is false,
    or holding a checkpoint that does not fit the model (see minicnn.runs).
    """
    with RunFolder(out_dir, dump_yaml(config.resolved), METRIC_FIELDS).claim(resume) as run:
        if run.finished:
            return run.summary()
        if mnist is None:  # before writing config.yaml: a data error leaves no half-made run
            mnist = mnist_data.load_mnist(data_dir)
        run.start()
        return run.finish(_train(config, mnist, run, log, show_progress))


def _train(config: Config, mnist, run: RunFolder, log, show_progress) -> dict:
    """Continue from run's checkpoint, train the remaining epochs (checkpointing each); return the summary."""
    splits = split(config, mnist)
    model = build_model(config)
    optimizer = OPTIMIZERS[config.optimizer.name](model.slots(), **config.optimizer.options)
    rows = run.restore(model, optimizer)

    diverged = any(r.get("diverged") for r in rows)
    with threads.one_blas_thread():  # the layers spread their work over minicnn's own threads
        for epoch in range(len(rows), config.epochs):
            if diverged:
                break
            label = f"{config.name} seed {config.seed} epoch {epoch + 1}/{config.epochs}"
            bar = ProgressBar(len(splits.x_train), label, enabled=show_progress)
            start = time.perf_counter()
            loss, acc, diverged = train_epoch(model, optimizer, splits.x_train, splits.y_train,
                                              config.batch_size, np.random.default_rng([config.seed, epoch]), bar)
            seconds = time.perf_counter() - start
            bar.close()
            val_loss, val_acc = evaluate(model, splits.x_val, splits.y_val, config.eval_batch_size)
            test_loss, test_acc = evaluate(model, splits.x_test, splits.y_test, config.eval_batch_size)
            rows.append({"epoch": epoch + 1, "train_loss": loss, "train_accuracy": acc,
                         "val_loss": val_loss, "val_accuracy": val_acc,
                         "test_loss": test_loss, "test_accuracy": test_acc,
                         "train_seconds": seconds, "images_per_second": len(splits.x_train) / seconds,
                         "diverged": diverged})
            run.save_epoch(model, optimizer, rows)
            log(_epoch_line(config, rows[-1]))

    return _summary(config, model, splits, rows)


def _summary(config: Config, model: Sequential, splits: Splits, rows: list[dict]) -> dict:
    last = rows[-1] if rows else {}
    diverged = bool(last.get("diverged", False))
    shifted = {}
    for shift in config.shifts:
        x = to_float(mnist_data.shift_images(splits.test_images, shift, seed=0))
        shifted[str(shift)] = evaluate(model, x, splits.y_test, config.eval_batch_size)[1]
    train_seconds = sum(r["train_seconds"] for r in rows)
    images = len(splits.x_train) * len(rows)
    rf = model.receptive_field
    return {
        "name": config.name, "seed": config.seed, "epochs": len(rows),
        "test_accuracy": last.get("test_accuracy"), "test_loss": last.get("test_loss"),
        "val_accuracy": last.get("val_accuracy"), "train_loss": last.get("train_loss"),
        "params": model.n_params, "macs": model.macs,
        "receptive_field": list(rf) if rf else None,
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / len(rows) if rows else None,
        "images_per_second": images / train_seconds if train_seconds else None,
        "shift_accuracy": shifted,
        "diverged": diverged,
        "peak_memory_mib": peak_memory_mib(),
        "train_images": len(splits.x_train),
    }


def peak_memory_mib() -> float:
    """This process's peak resident memory in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _epoch_line(config: Config, r: dict) -> str:
    status = "  DIVERGED (non-finite loss)" if r["diverged"] else ""
    return (f"epoch {r['epoch']}/{config.epochs}  loss {r['train_loss']:.4f}  "
            f"train {100 * r['train_accuracy']:.2f}%  val {100 * r['val_accuracy']:.2f}%  "
            f"test {100 * r['test_accuracy']:.2f}%  {r['train_seconds']:.1f} s  "
            f"{r['images_per_second']:.0f} img/s{status}")
