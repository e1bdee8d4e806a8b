"""What every downloadable data set shares: the cache folder and its files, downloads,
checksums, and the chain of sources tried in order.

A data set module (``mnist.py``, ``fashion_mnist.py``) only names its files,
checksums and sources, and calls ``load_chain``; the rules below are the same
for all:

1. the user's ``--data-dir``, when given, is the only source tried;
2. else the cache ``cache_dir() / NAME.npz``; then each remote source in order;
3. whatever verified data came from elsewhere replaces a missing or bad cache.

Cache files are written atomically (``minicnn.files.atomic_open``: fsync, rename,
normal file mode) under an exclusive ``flock`` of the cache folder, so a writer
holding the lock knows any temporary file of that cache is a killed writer's and
removes it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gzip
import hashlib
import http.client
import os
import pathlib
import sys
import urllib.request
import zlib

import numpy as np

from minicnn.errors import DataError
from minicnn.files import TEMPORARY_NAME, write_npz

KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclasses.dataclass(frozen=True, eq=False)
class GreyImages:
    """Four uint8 arrays: images (N, H, W) in 0..255, labels (N,); and where they came from."""

    x_train: np.ndarray = dataclasses.field(repr=False)
    y_train: np.ndarray = dataclasses.field(repr=False)
    x_test: np.ndarray = dataclasses.field(repr=False)
    y_test: np.ndarray = dataclasses.field(repr=False)
    source: str = ""  # which source the arrays came from


def to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cache_dir() -> pathlib.Path:
    """$MINICNN_DATA, else $XDG_CACHE_HOME/minicnn, else ~/.cache/minicnn."""
    if os.environ.get("MINICNN_DATA"):
        return pathlib.Path(os.environ["MINICNN_DATA"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return pathlib.Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "minicnn"
    return pathlib.Path.home() / ".cache" / "minicnn"


def digest(x_train, y_train, x_test, y_test) -> str:
    """sha256 hex digest of the four arrays' bytes (as uint8, C order, in this order)."""
    h = hashlib.sha256()
    for a in (x_train, y_train, x_test, y_test):
        h.update(np.ascontiguousarray(a, dtype=np.uint8).tobytes())
    return h.hexdigest()


def check_arrays(arrays: dict, image_size: tuple[int, int], expected_sha256: str, label: str,
                 what: str) -> None:
    """DataError unless {x_train, ...} are uint8 (N, H, W) images with N uint8 labels whose
    ``digest`` is ``expected_sha256``. ``label`` names the data set, ``what`` the thing read."""
    for x, y in ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])):
        if (x.dtype != np.uint8 or y.dtype != np.uint8 or x.ndim != 3 or y.ndim != 1
                or x.shape[1:] != image_size or len(x) != len(y)):
            raise DataError(
                f"{what}: images {x.dtype}{x.shape} / labels {y.dtype}{y.shape} are not uint8 "
                f"(N, {image_size[0]}, {image_size[1]}) images with N uint8 labels; it is not {label}.")
    found = digest(*(arrays[k] for k in KEYS))
    if found != expected_sha256:
        raise DataError(
            f"{what}: the decoded arrays have sha256 {found}, expected {expected_sha256}: "
            f"the data is corrupt, truncated or not the real {label}.")


def gunzip(raw: bytes, name: str) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{name}: not a valid gzip file ({e}).") from None


def download(url: str, timeout: float) -> bytes:
    """The bytes at ``url``; OSError (network) or DataError (broken transfer) if not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except http.client.HTTPException as e:  # e.g. IncompleteRead; not an OSError
        raise DataError(f"{url}: {type(e).__name__}: {e}") from None


# ---------------------------------------------------------------- cache files

def read_cache(path: pathlib.Path) -> tuple[dict, str]:
    """The four arrays of a cache file and the source it names ("unknown" if none).

    Any file that is not a cache (missing, truncated, garbage, a .npy, an array
    missing) gives DataError naming it, never another exception.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # e.g. a .npy file
            raise ValueError(f"a {type(loaded).__name__}, not an .npz archive")
        with loaded as npz:
            arrays = {k: npz[k] for k in KEYS}
            origin = str(npz["source"]) if "source" in npz.files else "unknown"
    except Exception as e:  # whatever a corrupt file makes np.load / zipfile raise
        raise DataError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    return arrays, origin


def _remove_temporaries(path: pathlib.Path) -> None:
    """Delete the temporary files of writes of ``path`` a kill interrupted (hold ``_locked``)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if TEMPORARY_NAME.match(stale.name):
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(folder: pathlib.Path):
    """Hold an exclusive flock on ``folder`` (a directory) while the block runs."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_cache(path: pathlib.Path, data: GreyImages, label: str) -> None:
    """Write ``data`` to the cache file ``path`` atomically; remove temporaries of killed writers.

    DataError (saying to set MINICNN_DATA) if the folder is not writable.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.parent):
            _remove_temporaries(path)
            write_npz(path, {**{k: getattr(data, k) for k in KEYS}, "source": np.array(data.source)})
    except OSError as e:
        raise DataError(f"cannot write the {label} cache {path}: {e}. Set MINICNN_DATA "
                        "to a writable folder.") from None


# ---------------------------------------------------------------- the chain of sources

def load_chain(label: str, cache: pathlib.Path, read_cache_file, local, remotes, how_to_fix: str,
               progress) -> GreyImages:
    """Return verified data from the first source that works (module docstring).

    ``read_cache_file(path) -> GreyImages`` reads and verifies a cache file;
    ``local``: None or a function reading the user's ``--data-dir`` (its DataError is
    raised as is); ``remotes``: [(name, function)] tried in order, each raising
    DataError or OSError on failure. ``how_to_fix`` ends the error when all fail.
    """
    if local is not None:
        data = local()
        if not _cache_ok(read_cache_file, cache):  # missing or bad: replace it with verified data
            save(data, cache, label, progress)
        return data

    failures = []
    if cache.exists():
        try:
            return read_cache_file(cache)
        except DataError as e:
            progress(f"ignoring the {label} cache: {e}; it will be replaced.")
            failures.append(f"cache {cache}: {e}")
    else:
        failures.append(f"cache {cache}: not there yet")

    for name, load in remotes:
        try:
            data = load()
        except (DataError, OSError) as e:  # OSError covers urllib's network errors
            progress(f"{name}: failed ({e})")
            failures.append(f"{name}: {e}")
            continue
        save(data, cache, label, progress)
        return data
    raise DataError(f"could not get {label}. Tried, in order:\n"
                    + "".join(f"  - {f}\n" for f in failures) + how_to_fix)


def _cache_ok(read_cache_file, path: pathlib.Path) -> bool:
    try:
        read_cache_file(path)
    except DataError:
        return False
    return True


def save(data: GreyImages, cache: pathlib.Path, label: str, progress) -> None:
    """Write the cache; a failure is only a warning (the data is in hand)."""
    try:
        write_cache(cache, data, label)
        progress(f"cached {label} in {cache}")
    except DataError as e:
        progress(f"warning: {e}")


def fetch(load, read_cache_file, cache: pathlib.Path, label: str) -> pathlib.Path:
    """``load()`` the data, then make sure its verified cache file exists; return its path.

    Unlike loading, a cache that cannot be written is an error here (``minicnn data fetch``);
    temporaries of killed cache writes are removed either way.
    """
    data = load()
    if not _cache_ok(read_cache_file, cache):
        write_cache(cache, data, label)
    else:
        with _locked(cache.parent):
            _remove_temporaries(cache)
    return cache
