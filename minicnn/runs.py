"""A run folder, and the only code that reads or writes one.

Run folder:
    config.yaml     the resolved config (defaults filled in): the run's identity
    checkpoint.npz  parameters, layer state (running statistics: model.state_dict), optimizer
                    state and metric rows after the last finished epoch
    metrics.csv     one row per finished epoch (derived from the checkpoint), METRIC_FIELDS
    summary.json    written once the run is finished; strict JSON (null, never NaN)
    .lock           exists while a process holds the run (``FolderLock``)

Rules, in the order ``RunFolder.claim`` applies them:
0. minicnn writes only into a folder it made: one that does not exist yet, is empty
   (but for a lock and temporary files of its own), or holds config.yaml, the
   mark of a run folder (``check_ours``); any other folder is refused before
   anything is written into it, so no file of another tool is ever replaced;
1. one process at a time: an exclusive ``fcntl.flock`` on ``.lock``, held for
   the run's life; a second process gets a UserError naming the folder and
   the holder's pid and host;
2. temporary files of writes that a kill interrupted are removed;
3. the folder must hold a run of this very config (config.yaml, compared as
   text) before anything else in it is read back;
4. a folder holding a finished or checkpointed run is only continued with
   ``resume``; otherwise the caller is told how to start over.
A checkpoint is read and checked completely (every array's name, shape and
dtype against the model and optimizer, every metric row against its schema)
before any state is loaded.  Every file is written atomically (minicnn.files).

A run may be claimed, and resumed, by a process on another machine that
mounts the same folder: the lock is a ``flock``, which Linux's NFS client
(since 2.6.12) emulates with NFS byte-range locks, so it holds across
machines; we rely on that for now.  A lock dies with its process, so a
killed holder never leaves a folder locked.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import json
import math
import os
import pathlib
import socket
import time
import zipfile
from typing import Sequence

import numpy as np
import yaml

from minicnn.config import from_run_config
from minicnn.errors import UserError
from minicnn.files import (FILE_MODE, TEMPORARY_NAME, check_writable, read_regular, remove_temporaries, write_csv,
                           write_json, write_npz, write_text)

CONFIG, CHECKPOINT, METRICS, SUMMARY, LOCK = "config.yaml", "checkpoint.npz", "metrics.csv", "summary.json", ".lock"
# Metric rows are JSON in the checkpoint; about 300 characters an epoch.  This bounds what
# a corrupt header could make us allocate, while leaving room for 10,000 epochs.
METRICS_MAX_BYTES = 16 << 20
# The columns of metrics.csv, in order (every metric row also has ``diverged``): losses and
# accuracies after the epoch, ``lr`` the learning rate of the epoch's last batch, then timing.
METRIC_FIELDS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                 "test_loss", "test_accuracy", "lr", "train_seconds", "images_per_second")


def check_ours(folder, marks: Sequence[str], what: str = "folder") -> None:
    """UserError unless ``folder`` is one minicnn may write into: missing, empty but for a
    lock and temporary files of minicnn's, or holding one of ``marks`` (the files by which
    minicnn knows it made a folder: config.yaml of a run, the marker of a study).

    Checked before anything is written, so a folder of another tool is never touched.
    """
    folder = pathlib.Path(folder)
    try:
        names = [entry.name for entry in os.scandir(folder)]
    except FileNotFoundError:
        return
    except OSError as e:  # NotADirectoryError included: a file is in its way
        raise UserError(f"cannot write the {what} {folder}: {e.strerror or e}; choose another --out") from None
    if any(mark in names for mark in marks):
        return
    foreign = sorted(n for n in names if n != LOCK and not TEMPORARY_NAME.match(n))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise UserError(f"{folder} holds files minicnn did not write ({shown}) and is not a {what} of "
                        "minicnn's; it writes only into a new or empty folder or one it made: choose another "
                        "--out")


class FolderLock:
    """An exclusive ``flock`` on FOLDER/.lock, from ``acquire`` (or ``with``) until ``release``.

    ``what`` names the folder in messages ("run folder", "experiment folder").
    The lock file holds "PID on HOST" of the holder and is removed on release.
    """

    def __init__(self, folder, what: str = "folder") -> None:
        self.folder, self.what = pathlib.Path(folder), what
        self.path = self.folder / LOCK
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        try:
            check_writable(self.folder)
        except OSError as e:
            raise UserError(f"cannot write the {self.what} {self.folder}: {e}") from None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise UserError(f"the {self.what} {self.folder} is in use by "
                                f"{'process ' + holder if holder else 'another process'}; wait until it "
                                "ends, or choose another --out folder") from None
            # the last holder unlinks the file before it lets go: then this lock is on a dead inode
            with contextlib.suppress(FileNotFoundError):
                on_disk, ours = os.stat(self.path), os.fstat(fd)
                if (on_disk.st_dev, on_disk.st_ino) == (ours.st_dev, ours.st_ino):
                    break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # while still holding it: see the inode check in acquire
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(fd: int) -> str:
    """"PID on HOST" from a lock file another process holds; it writes that just after it locks."""
    for _ in range(50):
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        if holder:
            return holder
        time.sleep(0.01)
    return ""


class RunFolder:
    """The folder of one run of the config whose resolved YAML is ``config_text``.

    ``metric_fields``: the columns of metrics.csv, in order; every metric row is a
    dict of these (numbers, ``epoch`` an int counting from 1) plus ``diverged`` (bool).
    """

    def __init__(self, path, config_text: str, metric_fields: Sequence[str] = METRIC_FIELDS) -> None:
        self.path = pathlib.Path(path)
        self.config_text = config_text
        self.metric_fields = tuple(metric_fields)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def started(self) -> bool:
        return (self.path / CONFIG).exists()

    @property
    def finished(self) -> bool:
        return (self.path / SUMMARY).exists()

    # ------------------------------------------------------------ claim

    @contextlib.contextmanager
    def claim(self, resume: bool):
        """Hold the folder for the life of the ``with`` block; check it may be (re)used.

        Raises UserError when it is a folder minicnn did not make (``check_ours``), another
        process holds it, it holds a run of another config, or (without ``resume``) it
        holds a finished or checkpointed run.
        """
        check_ours(self.path, [CONFIG], "run folder")
        with FolderLock(self.path, "run folder"):
            remove_temporaries(self.path)
            self.check_identity()
            if not resume and (self.finished or (self.path / CHECKPOINT).exists()):
                what, verb = ("a finished run", "keep it") if self.finished else ("an unfinished run", "continue it")
                raise UserError(f"{self.path} already holds {what} of this config; pass --resume to {verb}, "
                                "or delete the folder (or choose another --out) to start over")
            yield self

    def tidy(self) -> None:
        """Remove the temporary files of killed writes, if no process holds the folder now."""
        with contextlib.suppress(UserError), FolderLock(self.path, "run folder"):
            remove_temporaries(self.path)

    def check_identity(self) -> None:
        """UserError unless the folder is new or its config.yaml is this config's."""
        path = self.path / CONFIG
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read {path}: {e}") from None
        if text != self.config_text:
            raise UserError(f"{self.path} holds a run of a different config ({_difference(text, self.config_text)}); "
                            "choose another --out folder, or delete this one to start over")

    # ------------------------------------------------------------ read back

    def summary(self, required: Sequence[str] = ()) -> dict:
        """summary.json of the finished run (its config checked first), read by ``read_summary``."""
        self.check_identity()
        return read_summary(self.path / SUMMARY, required)

    def restore(self, model, optimizer) -> list[dict]:
        """Load checkpoint.npz into ``model`` and ``optimizer``; return its metric rows ([] if none).

        Everything is checked before anything is loaded; a checkpoint that does not fit
        raises UserError and leaves model and optimizer untouched.  metrics.csv is
        rewritten from the rows (a kill between the two writes leaves it an epoch behind).
        """
        path = self.path / CHECKPOINT
        if not path.exists():
            return []
        expected = {f"model.{k}": v for k, v in model.state_dict().items()}
        expected.update({f"optim.{k}": v for k, v in optimizer.state_dict().items()})
        try:
            arrays = _read_checkpoint(path, expected)
            rows = _check_rows(arrays.pop("metrics"), self.metric_fields)
        except ValueError as e:
            raise UserError(f"{path}: cannot resume from this checkpoint: {e}; delete it to start the "
                            "run over") from None
        model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
        optimizer.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("optim.")})
        if rows:
            self._write_metrics(rows)
        return rows

    # ------------------------------------------------------------ write

    def start(self) -> None:
        """Write config.yaml (the run's identity); a metrics.csv without a checkpoint is stale."""
        if not (self.path / CHECKPOINT).exists():
            (self.path / METRICS).unlink(missing_ok=True)
        write_text(self.path / CONFIG, self.config_text)

    def save_epoch(self, model, optimizer, rows: list[dict]) -> None:
        """Checkpoint first: it is the record a resume trusts; metrics.csv is derived from it."""
        arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
        arrays.update({f"optim.{k}": v for k, v in optimizer.state_dict().items()})
        arrays["metrics"] = np.array(json.dumps(rows))
        write_npz(self.path / CHECKPOINT, arrays)
        self._write_metrics(rows)

    def finish(self, summary: dict) -> dict:
        """Write summary.json (non-finite numbers as null); return the summary as written."""
        return write_json(self.path / SUMMARY, summary)

    def _write_metrics(self, rows: list[dict]) -> None:
        write_csv(self.path / METRICS, [{k: r[k] for k in self.metric_fields} for r in rows],
                  list(self.metric_fields))


# summary.json's entries that resume, the results table and the figures read: what each must be
SUMMARY_KINDS = {"test_accuracy": "fraction", "val_accuracy": "fraction", "test_loss": "number",
                 "train_loss": "number", "epochs": "count", "params": "count", "macs": "count",
                 "seconds_per_epoch": "number", "images_per_second": "number", "diverged": "bool"}
SUMMARY_MAX_BYTES = 64 << 20  # a 1,000-class confusion matrix is about 5 MB
_EXPECTED = {"fraction": "a number in [0, 1] or null", "number": "a finite number >= 0 or null",
             "count": "an integer >= 0", "bool": "true or false"}


def read_summary(path, required: Sequence[str] = ()) -> dict:
    """A run's summary.json, checked: a JSON object whose entries of ``SUMMARY_KINDS`` (those in
    ``required`` must be there), ``receptive_field`` and ``shift_accuracy`` have their kinds.

    UserError naming the file and the entry otherwise, and saying how to write it again.
    """
    path = pathlib.Path(path)
    again = "delete it and resume the run to write it again from checkpoint.npz"
    try:
        summary = json.loads(read_regular(path, SUMMARY_MAX_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise UserError(f"{path}: cannot read it ({str(e)[:200]}); {again}") from None
    if not isinstance(summary, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(summary).__name__}; {again}")
    for key in required:
        if key not in summary:
            raise UserError(f"{path}: no entry {key!r}; {again}")
    for key, kind in SUMMARY_KINDS.items():
        if key in summary and not _is_kind(summary[key], kind):
            raise UserError(f"{path}: {key}: expected {_EXPECTED[kind]}, got {_short(summary[key])}; {again}")
    rf = summary.get("receptive_field")
    if rf is not None and not (isinstance(rf, list) and len(rf) == 2 and all(_is_kind(v, "count") for v in rf)):
        raise UserError(f"{path}: receptive_field: expected [height, width] or null, got {_short(rf)}; {again}")
    shifts = summary.get("shift_accuracy", {})
    if not isinstance(shifts, dict) or not all(k.isdigit() and _is_kind(v, "fraction") for k, v in shifts.items()):
        raise UserError(f"{path}: shift_accuracy: expected {{pixels: {_EXPECTED['fraction']}}}, got "
                        f"{_short(shifts)}; {again}")
    return summary


def _is_kind(value, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "count":
        return isinstance(value, int) and value >= 0
    if value is None:
        return True
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return 0 <= value <= 1 if kind == "fraction" else value >= 0


def _read_checkpoint(path: pathlib.Path, expected: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of ``path``, each checked against ``expected`` (name, shape, dtype) plus
    ``metrics``, a 0-d string; ValueError saying what does not fit."""
    limits = {f"{k}.npy": v.nbytes + 4096 for k, v in expected.items()}  # + the .npy header
    limits["metrics.npy"] = METRICS_MAX_BYTES
    arrays = {}
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            for name in names:
                if name not in limits:
                    raise ValueError(f"unexpected array {name[:-4] if name.endswith('.npy') else name!r}")
            for name, limit in limits.items():
                if name not in names:
                    raise ValueError(f"array {name[:-4]!r} is missing")
                if z.getinfo(name).file_size > limit:
                    raise ValueError(f"array {name[:-4]!r} is larger than it can be ({z.getinfo(name).file_size} bytes)")
                raw = z.read(name)  # checks the CRC: a flipped byte is caught here
                arrays[name[:-4]] = np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt zip can fail in zipfile's parser in many ways
        raise ValueError(f"not a readable .npz file ({type(e).__name__}: {e})") from None
    for key, want in expected.items():
        got = arrays[key]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise ValueError(f"array {key!r} is {got.dtype}{list(got.shape)}, the model and optimizer "
                             f"need {want.dtype}{list(want.shape)}")
    metrics = arrays["metrics"]
    if metrics.shape != () or metrics.dtype.kind != "U":
        raise ValueError(f"array 'metrics' is {metrics.dtype}{list(metrics.shape)}, expected a string")
    return arrays


def _check_rows(metrics: np.ndarray, fields: Sequence[str]) -> list[dict]:
    """The metric rows of a checkpoint, checked against their schema; ValueError if not."""
    try:
        rows = json.loads(str(metrics))
    except ValueError as e:
        raise ValueError(f"its metrics are not JSON ({e})") from None
    if not isinstance(rows, list):
        raise ValueError(f"its metrics are a {type(rows).__name__}, expected a list of rows")
    keys = {*fields, "diverged"}
    for i, row in enumerate(rows):
        where = f"metrics row {i}"
        if not isinstance(row, dict) or set(row) != keys:
            got = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(f"{where} has {str(got)[:200]}, expected the keys {sorted(keys)}")
        for key in fields:
            value = row[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{where}: {key} is {str(value)[:50]!r}, expected a number")
        if row["epoch"] != i + 1 or not isinstance(row["epoch"], int):
            raise ValueError(f"{where}: epoch is {row['epoch']!r}, expected {i + 1}")
        if not isinstance(row["diverged"], bool) or (row["diverged"] and i != len(rows) - 1):
            raise ValueError(f"{where}: diverged is {row['diverged']!r}, expected a bool that only "
                             "the last row may have true")
    return rows


def _difference(old_text: str, new_text: str) -> str:
    """Where two resolved configs differ, e.g. 'train.epochs is 1 there, 2 here'."""
    try:
        old, new = yaml.safe_load(old_text), yaml.safe_load(new_text)
    except yaml.YAMLError:
        return "its config.yaml is not this config's"

    def first(a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            for key in [*a, *(k for k in b if k not in a)]:
                found = first(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
                if found:
                    return found
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b)):
                found = first(x, y, f"{path}[{i}]")
                if found:
                    return found
        elif a != b:
            return f"{path or 'the config'} is {_short(a)} there, {_short(b)} here"
        return None

    return first(old, new, "") or "its config.yaml is not this config's"


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclasses.dataclass
class History:
    """What training gives back: one dict per epoch, the run's summary and its folder.

    ``rows`` have metrics.csv's columns (``train_loss``, ``train_accuracy``,
    ``val_loss``, ``val_accuracy``, ``test_loss``, ``test_accuracy``, ``lr``,
    ``train_seconds``, ``images_per_second``, ``diverged``); ``history`` is the
    same by column, Keras's ``History.history``.  ``summary`` is summary.json's
    dict (None for a run not finished); ``folder`` the run folder (None when
    ``fit`` was given no ``out``).

    Example::

        >>> import minicnn as mc
        >>> h = mc.History([{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.75}])
        >>> h.history["val_accuracy"], len(h)
        ([0.5, 0.75], 2)
    """

    rows: list[dict]
    summary: dict | None = None
    folder: pathlib.Path | None = None

    @property
    def history(self) -> dict[str, list]:
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        return {k: [r.get(k) for r in self.rows] for k in keys}

    def __len__(self) -> int:
        return len(self.rows)


@dataclasses.dataclass
class Run:
    """A run folder read back (``load_run``): its resolved ``config`` (config.yaml as a mapping),
    its ``history`` (metrics per epoch and the summary) and the trained ``model`` (the last
    checkpoint's weights)."""

    folder: pathlib.Path
    config: dict
    history: History
    model: object

    @property
    def summary(self) -> dict | None:
        return self.history.summary


def load_run(path) -> Run:
    """Read a run folder that ``minicnn train`` or ``fit(..., out=...)`` wrote.

    Args:
        path: the run folder (config.yaml, checkpoint.npz, metrics.csv, summary.json).

    Returns:
        A Run: ``config``, ``history`` (its ``rows`` and ``summary``), ``model``, with the
        weights of the last finished epoch. UserError when the folder is not a run's or its
        checkpoint does not fit its config.

    Example::

        >>> import numpy as np, minicnn as mc, tempfile, pathlib
        >>> model = mc.Sequential([mc.Flatten(), mc.Dense(out_features=2)], (1, 2, 2), seed=0)
        >>> x, y = np.zeros((8, 1, 2, 2), np.float32), np.arange(8) % 2
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
        >>> _ = mc.fit(model, x, y, epochs=2, batch_size=4, out=out, log=None)
        >>> run = mc.load_run(out)
        >>> len(run.history), np.array_equal(run.model.layers[1].params["W"], model.layers[1].params["W"])
        (2, True)
    """
    folder = pathlib.Path(path)
    file = folder / CONFIG
    try:
        config = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{folder}: not a run folder (no {CONFIG})") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise UserError(f"{file}: cannot read it ({e})") from None
    if not isinstance(config, dict):
        raise UserError(f"{file}: expected a mapping, got {type(config).__name__}")
    model, optimizer = from_run_config(config, str(file))
    expected = {f"model.{k}": v for k, v in model.state_dict().items()}
    expected.update({f"optim.{k}": v for k, v in optimizer.state_dict().items()})
    try:
        arrays = _read_checkpoint(folder / CHECKPOINT, expected)
        rows = _check_rows(arrays.pop("metrics"), METRIC_FIELDS)
    except (OSError, ValueError) as e:
        raise UserError(f"{folder / CHECKPOINT}: cannot read this run's checkpoint: {e}") from None
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
    summary = RunFolder(folder, file.read_text(encoding="utf-8")).summary() if (folder / SUMMARY).exists() else None
    return Run(folder, config, History(rows, summary, folder), model)
