"""Atomic file writes: write a temporary file beside the target, then rename.

A reader (or a resumed run) therefore sees either the old file or the new one,
never half of one, whatever kills the writer.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import pathlib
import re
import stat
import tempfile

import numpy as np

from minicnn.errors import UserError


# the names atomic_open and check_writable give their temporary files (mkstemp adds 8 characters)
TEMPORARY_NAME = re.compile(r"^(\..+\.[a-z0-9_]{8}\.tmp|\.write-test-[a-z0-9_]{8})$")


def _file_mode() -> int:
    """The permissions open() would give a new file (0o666 less the umask); mkstemp gives 0o600."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()  # read once, at import: os.umask is process-wide, so not while threads write


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", size: int | None = None):
    """Open a temporary file for writing; on success rename it to ``path``.

    A full disk (ENOSPC, EDQUOT) raises UserError naming the folder, the bytes
    needed (``size``, when the caller knows it) and the bytes free; the
    temporary file is removed whatever happens.
    """
    path = pathlib.Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            os.fchmod(f.fileno(), FILE_MODE)  # like any new file, not mkstemp's owner-only 0o600
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(_disk_full(path, size)) from None
        raise


def _disk_full(path: pathlib.Path, size: int | None) -> str:
    try:
        stat = os.statvfs(path.parent)
        free = f"{_bytes(stat.f_bavail * stat.f_frsize)} free"
    except OSError:
        free = "free space unknown"
    needed = f"{_bytes(size)} needed" if size is not None else "size unknown"
    return f"disk full: cannot write {path.name} in {path.parent} ({needed}, {free}); free some space and run again"


def _bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"


def write_bytes(path, data: bytes) -> None:
    with atomic_open(path, "wb", size=len(data)) as f:
        f.write(data)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj) -> object:
    """Write ``obj`` as strict JSON (a non-finite float becomes null); return what was written."""
    obj = finite_or_none(obj)
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return obj


def finite_or_none(obj):
    """``obj`` with every NaN or infinite float, in nested dicts and lists, replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


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


TABLE_MAX_BYTES = 64 << 20  # a results.csv of 10,000 runs is about 3 MB


def read_regular(path, limit: int) -> bytes:
    """The bytes of ``path``; OSError if it is not a regular file or holds more than ``limit`` bytes
    (it reads at most ``limit + 1`` of them)."""
    with open(path, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError("not a regular file")
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise OSError(f"larger than {limit >> 20} MiB")
    return raw


def read_table(path, columns=(), numbers=()) -> list[dict[str, str]]:
    """Rows of a CSV file minicnn wrote; UserError naming the file if it is not one (or not a
    regular file of at most TABLE_MAX_BYTES).

    ``columns`` must all be in the header and ``numbers`` must parse as floats (a
    name ending in ``*`` stands for every column it starts, which may also be
    empty), so a damaged or foreign file is reported in one line instead of a
    traceback later.
    """
    path = pathlib.Path(path)
    try:
        raw = read_regular(path, TABLE_MAX_BYTES)
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8"), newline=""))
        rows = list(reader)
        fields = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: cannot read it ({e})") from None
    missing = [c for c in columns if c not in fields]
    if missing:
        raise UserError(f"{path}: not a table written by minicnn: no column {', '.join(missing)}"
                        + ("" if fields else " (the file is empty)"))
    checks = [(key, False) for key in numbers if not key.endswith("*")]
    checks += [(f, True) for key in numbers if key.endswith("*") for f in fields if f.startswith(key[:-1])]
    for i, row in enumerate(rows, start=2):
        for key, may_be_empty in checks:
            try:
                if not (may_be_empty and row[key] in ("", None)):
                    float(row[key])
            except (TypeError, ValueError):
                raise UserError(f"{path}: line {i}, column {key}: expected a number, "
                                f"got {str(row[key])[:50]!r}") from None
    return rows


def write_npz(path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()  # in memory first, so that a full disk can say how much was needed
    np.savez(buf, **arrays)
    write_bytes(path, buf.getvalue())


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
