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
import inspect
import pathlib
import resource
import sys
import time

import numpy as np

from minicnn import blas, confusion, isa, probes, schedules, threads
from minicnn import data as datasets
from minicnn.config import Config, check_memory, dump_yaml, from_config, model_section
from minicnn.data.dataset import from_grey
from minicnn.errors import ConfigError
from minicnn.losses import softmax_cross_entropy
from minicnn.model import Sequential
from minicnn.optim import OPTIMIZERS
from minicnn.progress import ProgressBar
from minicnn.runs import History, RunFolder

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
    """Mean cross-entropy and accuracy of ``model`` on the labelled images (x, y).

    Args:
        model: a Sequential whose outputs are class scores (ending in Dense, or Softmax).
        x: (N, C, H, W) images, uint8 0..255 or float in [0, 1].
        y: (N,) integer labels.
        batch_size: images per forward pass. Default: 128.

    Returns:
        (loss, accuracy in 0..1); (nan, nan) for no images.

    Example::

        >>> import numpy as np, minicnn as mc
        >>> model = mc.Sequential([mc.Flatten(), mc.Dense(out_features=3)], (1, 2, 2), seed=0)
        >>> loss, acc = mc.evaluate(model, np.zeros((4, 1, 2, 2), np.float32), np.array([0, 1, 2, 0]))
        >>> round(loss, 4), acc      # all-zero images: equal scores for the three classes
        (1.0986, 0.5)
    """
    loss, predicted = _scores(model, x, y, batch_size)
    return loss, accuracy(predicted, y)


def predict(model: Sequential, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """The class ``model`` predicts for each image: the index of its largest score.

    Args:
        model: a Sequential whose outputs are class scores.
        x: (N, C, H, W) images, uint8 0..255 or float in [0, 1].
        batch_size: images per forward pass. Default: 128.

    Returns:
        (N,) int64 classes.

    Example::

        >>> import numpy as np, minicnn as mc
        >>> model = mc.Sequential([mc.Flatten(), mc.Dense(out_features=3)], (1, 2, 2), seed=0)
        >>> mc.predict(model, np.ones((2, 1, 2, 2), np.float32)).shape
        (2,)
    """
    return _scores(model, x, None, batch_size)[1]


def accuracy(predicted: np.ndarray, y: np.ndarray) -> float:
    """Fraction of predicted classes equal to the labels y; nan if there are none."""
    return int((predicted == y).sum()) / len(y) if len(y) else float("nan")


def _scores(model: Sequential, x: np.ndarray, y: np.ndarray | None, batch_size: int) -> tuple[float, np.ndarray]:
    """Mean cross-entropy on (x, y) (nan if empty or y is None) and the predicted classes (N,) int64.

    x: (N, C, H, W) uint8 0..255 or float in [0, 1]; y: (N,) int64 or None.
    """
    predicted = np.zeros(len(x), dtype=np.int64)
    if len(x) == 0:
        return float("nan"), predicted
    loss_sum = 0.0
    with np.errstate(all="ignore"):
        for start in range(0, len(x), batch_size):
            xb = datasets.to_float32(x[start:start + batch_size])
            logits = model.forward(xb, training=False, logits=True)
            if y is not None:
                loss, _ = softmax_cross_entropy(logits, y[start:start + batch_size])
                loss_sum += loss * len(xb)
            predicted[start:start + len(xb)] = logits.argmax(axis=1)
    return (loss_sum / len(x) if y is not None else float("nan")), predicted


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


def fit(model: Sequential, x: np.ndarray, y: np.ndarray, *, val=None, epochs: int, batch_size: int,
        optimizer=None, schedule=None, seed: int = 0, augment=None, out=None, log=print,
        show_progress: bool | None = False) -> History:
    """Train ``model`` on the images ``x`` with labels ``y`` in shuffled mini-batches.

    The same loop as ``minicnn train`` (``run_epochs``): epoch e shuffles with
    ``default_rng([seed, e])``, the learning rate of every batch comes from
    ``schedule``, and a config's run and this call on the same data, weights and
    settings give the same numbers.

    Args:
        model: a Sequential ending in class scores (Dense, optionally Softmax).
        x: (N, C, H, W) training images, uint8 0..255 or float in [0, 1].
        y: (N,) integer labels.
        val: an (x_val, y_val) pair evaluated after every epoch, or None.
        epochs: passes over the training images.
        batch_size: images per optimizer step.
        optimizer: an Optimizer over ``model.parameters()``, or a mapping as in a
            config's ``train.optimizer`` ({"name": "adam", "lr": 1e-3}). Default:
            ``SGD(model.parameters())``, lr 0.05 and momentum 0.9, as in a config.
        schedule: a Constant, Step or Cosine schedule or its mapping
            ({"name": "cosine", "warmup_epochs": 1}). Default: constant.
        seed: batch order and augmentation draws. Default: 0.
        augment: {"shift": k} shifts each training image by up to k pixels, new
            draws every epoch. Default: none.
        out: a run folder to write (config.yaml, metrics.csv, checkpoint.npz,
            summary.json), as ``minicnn train`` writes one. Default: none.
        log: called with one line per epoch (None: silent). Default: print.
        show_progress: a per-batch bar on a terminal. Default: False.

    Returns:
        A History: one row per epoch (``history.history["val_accuracy"]``), the summary.

    Example::

        >>> import numpy as np, minicnn as mc
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.random((64, 1, 8, 8), dtype=np.float32), rng.integers(0, 2, 64)
        >>> model = mc.Sequential([mc.Conv2D(out_channels=4, kernel_size=3), mc.ReLU(), mc.MaxPool2D(2),
        ...                        mc.Flatten(), mc.Dense(out_features=2)], (1, 8, 8), seed=0)
        >>> history = mc.fit(model, x, y, val=(x[:16], y[:16]), epochs=2, batch_size=16, log=None)
        >>> len(history), sorted(history.history)[:3]
        (2, ['diverged', 'epoch', 'images_per_second'])
    """
    x, y = np.asarray(x), np.asarray(y, dtype=np.int64)
    x_val, y_val = (np.asarray(val[0]), np.asarray(val[1], dtype=np.int64)) if val is not None else (x[:0], y[:0])
    for name, images, labels in (("x", x, y), ("val", x_val, y_val)):
        if images.shape[1:] != model.input_shape or labels.shape != images.shape[:1]:
            raise ValueError(f"fit: {name} holds images {images.shape} and labels {labels.shape}; the model "
                             f"takes (N, {', '.join(map(str, model.input_shape))}) images and (N,) labels")
    classes = model.output_shape[0] if len(model.output_shape) == 1 else 0
    for name, labels in (("y", y), ("val", y_val)):
        if len(labels) and not 0 <= labels.min() <= labels.max() < classes:
            raise ValueError(f"fit: {name} holds labels {labels.min()}..{labels.max()}; the model gives "
                             f"{classes} class scores (output shape {model.output_shape})")
    splits = Splits(x, y, x_val, y_val, x[:0], y[:0])
    if optimizer is None or isinstance(optimizer, dict):
        spec = dict(optimizer or {"name": "sgd"})
        optimizer = OPTIMIZERS[spec.pop("name", "sgd")](model.parameters(), **spec)
    schedule = schedules.resolve(schedule)
    shift = int((augment or {}).get("shift", 0))
    rows: list[dict] = []
    settings = dict(epochs=epochs, batch_size=batch_size, seed=seed, schedule=schedule, augment_shift=shift,
                    eval_batch_size=128, label="fit", show_progress=show_progress)
    start = time.perf_counter()
    if out is None:
        def epoch_done(rows):
            if log is not None:
                log(_line(epochs, rows[-1]))
        with threads.one_blas_thread():
            run_epochs(model, optimizer, splits, rows, epoch_done=epoch_done, **settings)
        return History(rows, _fit_summary(model, splits, rows, seed, time.perf_counter() - start))
    text = dump_yaml(_fit_config(model, optimizer, splits, settings, pathlib.Path(out).name))
    with RunFolder(out, text).claim(resume=False) as run:
        run.start()

        def epoch_done(rows):
            run.save_epoch(model, optimizer, rows)
            if log is not None:
                log(_line(epochs, rows[-1]))
        with threads.one_blas_thread():
            run_epochs(model, optimizer, splits, rows, epoch_done=epoch_done, **settings)
        summary = run.finish(_fit_summary(model, splits, rows, seed, time.perf_counter() - start))
    return History(rows, summary, pathlib.Path(out))


def _fit_config(model, optimizer, splits: Splits, settings: dict, name: str) -> dict:
    """The config.yaml of a run folder ``fit`` writes: its model and training settings (the data
    are arrays, given by their sizes); load_run rebuilds the model from it."""
    kind = next(k for k, cls in OPTIMIZERS.items() if type(optimizer) is cls)
    options = {k: optimizer.base_lr if k == "lr" else getattr(optimizer, k)
               for k in inspect.signature(type(optimizer)).parameters if k != "slots"}
    return {"name": name, "seed": settings["seed"],
            "data": {"arrays": {"train": len(splits.x_train), "val": len(splits.x_val)},
                     "augment": {"shift": settings["augment_shift"]}},
            "model": model_section(model),
            "train": {"epochs": settings["epochs"], "batch_size": settings["batch_size"],
                      "optimizer": {"name": kind, **options}, "schedule": settings["schedule"]}}


def _fit_summary(model: Sequential, splits: Splits, rows: list[dict], seed: int, seconds: float) -> dict:
    last = rows[-1] if rows else {}
    train_seconds = sum(r["train_seconds"] for r in rows)
    rf = model.receptive_field
    return {"seed": seed, "epochs": len(rows), "val_accuracy": last.get("val_accuracy"),
            "val_loss": last.get("val_loss"), "train_loss": last.get("train_loss"),
            "params": model.n_params, "macs": model.macs, "receptive_field": list(rf) if rf else None,
            "train_seconds": train_seconds, "seconds": seconds,
            "images_per_second": len(splits.x_train) * len(rows) / train_seconds if train_seconds else None,
            "diverged": bool(last.get("diverged", False)), "train_images": len(splits.x_train)}


def fit_config(config: Config, out_dir, *, data: datasets.Dataset | None = None,
               mnist: datasets.MNIST | None = None, data_dir=None, resume: bool = False, log=print,
               show_progress: bool | None = None) -> dict:
    """Train ``config`` and write its run folder ``out_dir``; return summary.json's dict: what
    ``minicnn train`` and each run of ``minicnn ablate`` do.  The same core as ``fit`` (run_epochs).

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
        raise TypeError("fit_config: pass data or mnist, not both")
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
    model = from_config(config)
    optimizer = OPTIMIZERS[config.optimizer.name](model.parameters(), **config.optimizer.options)
    rows = run.restore(model, optimizer)
    schedule = {"name": config.schedule.name, **config.schedule.options}

    def epoch_done(rows):
        run.save_epoch(model, optimizer, rows)
        log(_line(config.epochs, rows[-1]))

    with threads.one_blas_thread():  # the layers spread their work over minicnn's own threads
        blas_info = blas.blas_info()  # inside: it records the thread count the run uses
        predicted = run_epochs(model, optimizer, splits, rows, epochs=config.epochs, batch_size=config.batch_size,
                               seed=config.seed, schedule=schedule, augment_shift=config.augment_shift,
                               eval_batch_size=config.eval_batch_size, label=f"{config.name} seed {config.seed}",
                               show_progress=show_progress, epoch_done=epoch_done)
        return _summary(config, model, dataset, splits, rows, blas_info, predicted)


def run_epochs(model, optimizer, splits: Splits, rows: list[dict], *, epochs: int, batch_size: int, seed: int,
               schedule: dict, augment_shift: int, eval_batch_size: int, label: str, show_progress=None,
               epoch_done=None) -> np.ndarray | None:
    """
    isa.level()  # a bad MINICNN_ISA (the kernels stayed portable at import) is the caller's error
    threads.warn_environment()The fit core, for the config-driven run and ``fit`` alike: train from epoch ``len(rows)`` to
    ``epochs``, appending one metric row per epoch to ``rows`` and calling ``epoch_done(rows)``.

    Each epoch shuffles with ``default_rng([seed, epoch])``, draws its augmentation from
    ``data.augment_rng(seed, epoch)`` (none when ``augment_shift`` is 0) and sets every
    batch's learning rate from the optimizer's ``lr`` at the start by ``schedule``.
    Returns the final model's test predictions (None when no epoch ran).
    """
    base_lr = optimizer.base_lr
    batches = -(-len(splits.x_train) // batch_size)  # per epoch, the last one possibly short
    diverged = any(r.get("diverged") for r in rows)
    predicted = None  # the final model's test predictions, once an epoch has run here
    for epoch in range(len(rows), epochs):
        if diverged:
            break
        bar = ProgressBar(len(splits.x_train), f"{label} epoch {epoch + 1}/{epochs}", enabled=show_progress)
        rates = [schedules.learning_rate(schedule, base_lr, epoch * batches + b, batches, epochs)
                 for b in range(batches)]
        augment = None
        if augment_shift > 0:  # else nothing is drawn: runs without it are unchanged
            rng = datasets.augment_rng(seed, epoch)
            augment = lambda xb, rng=rng: datasets.shift_batch(xb, augment_shift, rng)  # noqa: E731
        start = time.perf_counter()
        loss, acc, diverged = train_epoch(model, optimizer, splits.x_train, splits.y_train, batch_size,
                                          np.random.default_rng([seed, epoch]), bar, rates, augment,
                                          seed=seed, epoch=epoch)
        seconds = time.perf_counter() - start
        bar.close()
        val_loss, val_acc = evaluate(model, splits.x_val, splits.y_val, eval_batch_size)
        test_loss, predicted = _scores(model, splits.x_test, splits.y_test, eval_batch_size)
        test_acc = accuracy(predicted, splits.y_test)
        rows.append({"epoch": epoch + 1, "train_loss": loss, "train_accuracy": acc,
                     "val_loss": val_loss, "val_accuracy": val_acc,
                     "test_loss": test_loss, "test_accuracy": test_acc, "lr": optimizer.lr,
                     "train_seconds": seconds, "images_per_second": len(splits.x_train) / seconds,
                     "diverged": diverged})
        if epoch_done is not None:
            epoch_done(rows)
    return predicted


def _summary(config: Config, model: Sequential, dataset: datasets.Dataset, splits: Splits, rows: list[dict],
             blas_info: list[dict], predicted: np.ndarray | None) -> dict:
    """The run's summary; ``predicted``: the model's test predictions if at hand (else computed)."""
    last = rows[-1] if rows else {}
    diverged = bool(last.get("diverged", False))
    if predicted is None:  # no epoch ran in this process (a finished run resumed)
        _, predicted = _scores(model, splits.x_test, splits.y_test, config.eval_batch_size)
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


def _line(epochs: int, r: dict) -> str:
    """One epoch's line; ``fit`` on arrays has no test set, and says nothing of one."""
    status = f"  DIVERGED (loss {r['train_loss']:.4g}: non-finite or above {DIVERGED_LOSS:g} nats)" if r["diverged"] else ""
    test = "" if np.isnan(r["test_accuracy"]) else f"test {100 * r['test_accuracy']:.2f}%  "
    return (f"epoch {r['epoch']}/{epochs}  loss {r['train_loss']:.4f}  "
            f"train {100 * r['train_accuracy']:.2f}%  val {100 * r['val_accuracy']:.2f}%  "
            f"{test}lr {r['lr']:.4g}  {r['train_seconds']:.1f} s  "
            f"{r['images_per_second']:.0f} img/s{status}")
