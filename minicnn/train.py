"""Fit and evaluate one model; its run folder (minicnn.runs) is its complete record.

Resuming reads the checkpoint only, and nothing else carries over between epochs:
every epoch shuffles with its own generator ``default_rng([seed, epoch])``, draws
its augmentation shifts from ``minicnn.data.augment_rng(seed, epoch)``, reseeds the
random layers (dropout) before every batch (``Sequential.seed_batch``), and sets the
learning rate of every batch from its global index (minicnn.schedules), so an
interrupted and resumed run gives exactly the numbers of an uninterrupted one; the
layers' running statistics (BatchNorm) are in the checkpoint.
"""
from __future__ import annotations

import dataclasses
import resource
import sys
import time

import numpy as np

from minicnn import blas, confusion, isa, probes, schedules, threads
from minicnn import data as datasets
from minicnn.config import Config, build_model, check_memory, dump_yaml
from minicnn.data.dataset import from_grey
from minicnn.errors import ConfigError
from minicnn.losses import softmax_cross_entropy
from minicnn.model import Sequential
from minicnn.optim import OPTIMIZERS
from minicnn.progress import ProgressBar
from minicnn.runs import RunFolder

# A run has diverged when a batch's mean cross-entropy is not finite or exceeds
# this many nats: the model then gives the right class e^-100 on average, which
# no learning run recovers from (an untrained model scores ln 10 = 2.3).
DIVERGED_LOSS = 100.0


@dataclasses.dataclass
class Splits:
    """Images (N, C, H, W) as the data set stores them (uint8 0..255, or float32 in [0, 1]) and
    int64 labels (N,).  Views of the data set, not copies: images become float32 one batch at a
    time (``data.to_float32``), so a run never holds a float32 copy of the whole data set (220 MB
    for MNIST)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def as_dataset(mnist: datasets.MNIST) -> datasets.Dataset:
    """An MNIST object (uint8 (N, 28, 28) arrays, e.g. a test's small fake) as a Dataset named
    mnist; its sha256 is the digest of the arrays given (MNIST_SHA256 for the real set)."""
    sha256 = datasets.digest(mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test)
    return from_grey(mnist, "mnist", datasets.mnist.CLASSES, sha256)


def load_data(config: Config, data_dir=None) -> datasets.Dataset:
    """The config's data set (data.dataset, data.path; ``data_dir`` for mnist and fashion_mnist),
    checked against its model (input shape, class count): the Dataset to train on."""
    dataset = datasets.load_dataset(config.dataset, data_dir=data_dir, path=config.data_path)
    return datasets.check_fits(dataset, config.input_shape, config.num_outputs)


def preload(configs, data_dir=None) -> None:
    """Check every config's memory estimate, then load each distinct data set the configs
    use once (fetching and caching it) and check it fits each of them: a study's up-front
    check, before its workers start. UserError (ConfigError, DataError) for the first problem."""
    by_data: dict[tuple, list[Config]] = {}
    for config in configs:
        check_memory(config)
        by_data.setdefault((config.dataset, config.data_path), []).append(config)
    for group in by_data.values():
        dataset = datasets.load_dataset(group[0].dataset, data_dir=data_dir, path=group[0].data_path)
        for config in group:
            _train_count(config, datasets.check_fits(dataset, config.input_shape, config.num_outputs))


def split(config: Config, dataset: datasets.Dataset) -> Splits:
    """Validation = the last val_size training images; train_size/test_size cut from the front.

    ConfigError (data.val_size) when val_size leaves no training image.
    """
    n_train = _train_count(config, dataset)
    stop = n_train if config.train_size is None else min(config.train_size, n_train)
    test = slice(0, config.test_size)
    return Splits(dataset.x_train[:stop], dataset.y_train[:stop], dataset.x_train[n_train:], dataset.y_train[n_train:],
                  dataset.x_test[test], dataset.y_test[test])


def _train_count(config: Config, dataset: datasets.Dataset) -> int:
    """Training images left after the validation split; ConfigError (data.val_size) if none."""
    n_train = len(dataset.x_train) - config.val_size
    if n_train <= 0:
        raise ConfigError(config.file, "data.val_size", f"expected fewer than the {len(dataset.x_train)} "
                          f"training images of {dataset.source}, got {config.val_size}")
    return n_train


def evaluate(model: Sequential, x: np.ndarray, y: np.ndarray, batch_size: int = 128) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (0..1) of the model on (x, y); (nan, nan) if empty."""
    loss, predicted = predict(model, x, y, batch_size)
    return loss, accuracy(predicted, y)


def accuracy(predicted: np.ndarray, y: np.ndarray) -> float:
    """Fraction of predicted classes equal to the labels y; nan if there are none."""
    return int((predicted == y).sum()) / len(y) if len(y) else float("nan")


def predict(model: Sequential, x: np.ndarray, y: np.ndarray, batch_size: int = 128) -> tuple[float, np.ndarray]:
    """Mean cross-entropy on (x, y) (nan if empty) and the predicted classes (N,) int64.

    x: (N, C, H, W) uint8 0..255 or float in [0, 1]; y: (N,) int64.
    """
    predicted = np.zeros(len(x), dtype=np.int64)
    if len(x) == 0:
        return float("nan"), predicted
    loss_sum = 0.0
    with np.errstate(all="ignore"):
        for start in range(0, len(x), batch_size):
            xb, yb = datasets.to_float32(x[start:start + batch_size]), y[start:start + batch_size]
            logits = model.forward(xb, training=False, logits=True)
            loss, _ = softmax_cross_entropy(logits, yb)
            loss_sum += loss * len(xb)
            predicted[start:start + len(xb)] = logits.argmax(axis=1)
    return loss_sum / len(x), predicted


def train_epoch(model, optimizer, x, y, batch_size, rng, bar=None, rates=None,
                augment=None, *, seed=None, epoch=0) -> tuple[float, float, bool]:
    """One pass over (x, y) in shuffled mini-batches.

    x: (N, C, H, W) uint8 0..255 or float in [0, 1], y: (N,) int64; rng shuffles. ``rates``: the learning rate of
    each batch, in order (None: optimizer.lr as it is); ``augment``: called with each
    batch's images (B, C, H, W), in batch order, returns the images to train on.
    ``seed``: before batch b, ``model.seed_batch(seed, epoch, b)`` reseeds the layers that draw
    random numbers (dropout); None leaves their generators as they are.
    Returns (mean loss, accuracy, diverged); stops at the first batch whose loss
    is not finite or above DIVERGED_LOSS, returning that loss.
    """
    order = rng.permutation(len(x))
    loss_sum, correct, seen = 0.0, 0, 0
    with np.errstate(all="ignore"):
        for batch, start in enumerate(range(0, len(x), batch_size)):
            idx = order[start:start + batch_size]
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb)
            xb = datasets.to_float32(xb)
            if rates is not None:
                optimizer.lr = rates[batch]
            if seed is not None:
                model.seed_batch(seed, epoch, batch)
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


def fit(config: Config, out_dir, *, data: datasets.Dataset | None = None, mnist: datasets.MNIST | None = None,
        data_dir=None, resume: bool = False, log=print, show_progress: bool | None = None) -> dict:
    """Train ``config`` and write its run folder ``out_dir``; return summary.json's dict.

    ``data``: a preloaded Dataset to train on instead of the config's data set (tests,
    benchmarks); ``mnist``: the same for a minicnn.data.MNIST object (``as_dataset``).
    Otherwise the config's data set is loaded (``load_data``; ``data_dir`` for mnist and
    fashion_mnist). Either way it is checked against the model (``minicnn.data.check_fits``).
    ``resume``: continue from out_dir's checkpoint, or return its summary if the run is
    finished.  ``log``: called with one line per epoch.
    Raises UserError for data that does not fit the config, a folder that is unwritable,
    in use by another process, holding a run of a different config, holding a run while
    ``resume`` is false, or holding a checkpoint that does not fit the model (see minicnn.runs).
    """
    if data is not None and mnist is not None:
        raise TypeError("fit: pass data or mnist, not both")
    with RunFolder(out_dir, dump_yaml(config.resolved)).claim(resume) as run:
        if run.finished:
            return run.summary()
        # before writing config.yaml: a data error leaves no half-made run
        if mnist is not None:
            data = as_dataset(mnist)
        dataset = (load_data(config, data_dir) if data is None
                   else datasets.check_fits(data, config.input_shape, config.num_outputs))
        splits = split(config, dataset)
        run.start()
        return run.finish(_train(config, dataset, splits, run, log, show_progress))


def _train(config: Config, dataset: datasets.Dataset, splits: Splits, run: RunFolder, log, show_progress) -> dict:
    """Continue from run's checkpoint, train the remaining epochs (checkpointing each); return the summary."""
    model = build_model(config)
    optimizer = OPTIMIZERS[config.optimizer.name](model.slots(), **config.optimizer.options)
    rows = run.restore(model, optimizer)
    schedule = {"name": config.schedule.name, **config.schedule.options}
    base_lr = config.optimizer.options["lr"]
    batches = -(-len(splits.x_train) // config.batch_size)  # per epoch, the last one possibly short

    diverged = any(r.get("diverged") for r in rows)
    predicted = None  # the final model's test predictions, once an epoch has run here
    with threads.one_blas_thread():  # the layers spread their work over minicnn's own threads
        blas_info = blas.blas_info()  # inside: it records the thread count the run uses
        for epoch in range(len(rows), config.epochs):
            if diverged:
                break
            label = f"{config.name} seed {config.seed} epoch {epoch + 1}/{config.epochs}"
            bar = ProgressBar(len(splits.x_train), label, enabled=show_progress)
            rates = [schedules.learning_rate(schedule, base_lr, epoch * batches + b, batches, config.epochs)
                     for b in range(batches)]
            augment = None
            if config.augment_shift > 0:  # else nothing is drawn: runs without it are unchanged
                rng = datasets.augment_rng(config.seed, epoch)
                augment = lambda xb, rng=rng: datasets.shift_batch(xb, config.augment_shift, rng)  # noqa: E731
            start = time.perf_counter()
            loss, acc, diverged = train_epoch(model, optimizer, splits.x_train, splits.y_train, config.batch_size,
                                              np.random.default_rng([config.seed, epoch]), bar, rates, augment,
                                              seed=config.seed, epoch=epoch)
            seconds = time.perf_counter() - start
            bar.close()
            val_loss, val_acc = evaluate(model, splits.x_val, splits.y_val, config.eval_batch_size)
            test_loss, predicted = predict(model, splits.x_test, splits.y_test, config.eval_batch_size)
            test_acc = accuracy(predicted, splits.y_test)
            rows.append({"epoch": epoch + 1, "train_loss": loss, "train_accuracy": acc,
                         "val_loss": val_loss, "val_accuracy": val_acc,
                         "test_loss": test_loss, "test_accuracy": test_acc, "lr": optimizer.lr,
                         "train_seconds": seconds, "images_per_second": len(splits.x_train) / seconds,
                         "diverged": diverged})
            run.save_epoch(model, optimizer, rows)
            log(_epoch_line(config, rows[-1]))
        return _summary(config, model, dataset, splits, rows, blas_info, predicted)


def _summary(config: Config, model: Sequential, dataset: datasets.Dataset, splits: Splits, rows: list[dict],
             blas_info: list[dict], predicted: np.ndarray | None) -> dict:
    """The run's summary; ``predicted``: the model's test predictions if at hand (else computed)."""
    last = rows[-1] if rows else {}
    diverged = bool(last.get("diverged", False))
    if predicted is None:  # no epoch ran in this process (a finished run resumed)
        _, predicted = predict(model, splits.x_test, splits.y_test, config.eval_batch_size)
    shifted = {}
    for shift in config.shifts:
        if shift == 0:  # the test set itself: its predictions are at hand
            shifted["0"] = accuracy(predicted, splits.y_test)
            continue
        x = datasets.shift_images(splits.x_test, shift, seed=0)
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
        **probes.run(model, splits, config.eval, accuracy(predicted, splits.y_test)),
        "diverged": diverged,
        "peak_memory_mib": peak_memory_mib(),
        "train_images": len(splits.x_train),
        "dataset": dataset.name,
        "data_sha256": dataset.sha256,
        "blas": blas.describe(blas_info),
        "blas_info": blas_info,
        "isa": isa.level(),  # the instruction set minicnn's kernels ran at (MINICNN_ISA)
        **confusion.summary_fields(confusion.confusion_matrix(splits.y_test, predicted, len(dataset.classes)),
                                   dataset.classes),
    }


def peak_memory_mib() -> float:
    """This process's own peak resident memory in MiB.

    Linux: VmHWM of /proc/self/status, the high-water mark of this address space, which
    starts anew at exec.  Not ru_maxrss: Linux carries that across fork and exec, so a
    process started from a large one (a notebook, a study's pool worker, a test runner)
    would report its parent's size.  macOS: ru_maxrss (bytes there), which is per process.
    Elsewhere ru_maxrss, read as KiB.
    """
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024  # kB
        except (OSError, ValueError, IndexError):
            pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _epoch_line(config: Config, r: dict) -> str:
    status = f"  DIVERGED (loss {r['train_loss']:.4g}: non-finite or above {DIVERGED_LOSS:g} nats)" if r["diverged"] else ""
    return (f"epoch {r['epoch']}/{config.epochs}  loss {r['train_loss']:.4f}  "
            f"train {100 * r['train_accuracy']:.2f}%  val {100 * r['val_accuracy']:.2f}%  "
            f"test {100 * r['test_accuracy']:.2f}%  lr {r['lr']:.4g}  {r['train_seconds']:.1f} s  "
            f"{r['images_per_second']:.0f} img/s{status}")
