"""Atomic file writes: write a temporary file beside the target, then rename.

A reader (or a resumed run) therefore sees either the old file or the new one,
never half of one, whatever kills the writer.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pathlib
import re
import tempfile

import numpy as np


# the names atomic_open and check_writable give their temporary files (mkstemp adds 8 characters)
TEMPORARY_NAME = re.compile(r"^(\..+\.[a-z0-9_]{8}\.tmp|\.write-test-[a-z0-9_]{8})$")


def _file_mode() -> int:
    """The permissions open() would give a new file (0o666 less the umask); mkstemp gives 0o600."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()  # read once, at import: os.umask is process-wide, so not while threads write


@contextlib.contextmanager
def atomic_open(path, mode: str = "w"):
    """Open a temporary file for writing; on success rename it to ``path``."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            os.fchmod(f.fileno(), FILE_MODE)  # like any new file, not mkstemp's owner-only 0o600
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path, rows: list[dict], fields: list[str] | None = None) -> None:
    """rows of dicts -> CSV with a header (fields: column order, default the first row's keys)."""
    fields = fields or (list(rows[0]) if rows else [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def read_csv(path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def write_npz(path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def remove_temporaries(folder) -> list[pathlib.Path]:
    """Delete the temporary files a killed writer left in ``folder`` (not below it); return them.

    Only for a folder no other process is writing to, e.g. when resuming a run
    that was interrupted: SIGKILL between mkstemp and rename orphans the temporary.
    """
    removed = []
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        if TEMPORARY_NAME.match(path.name) and path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def check_writable(folder) -> pathlib.Path:
    """Create ``folder`` and prove a file can be written there; OSError otherwise."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
        pass
    return folder
