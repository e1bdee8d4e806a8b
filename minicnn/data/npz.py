"""Your own images (``dataset: npz``, ``data.path``): one ``.npz`` file you made.

It holds ``x_train``, ``y_train``, ``x_test``, ``y_test``: images (N, H, W) or
(N, C, H, W), any size and channel count, as uint8 (0..255) or float (in [0, 1]);
labels integers in [0, MAX_CLASSES) (``dataset.check_fits`` checks them against the
model's number of classes). It is read with ``allow_pickle=False``, only if it is a
regular file whose arrays, as their headers declare them, fit in the memory
available (``dataset.check_memory``), and every way it can be wrong is a DataError
naming the file, the array and the value.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import pathlib
import stat
import zipfile

import numpy as np

from minicnn.data.dataset import MAX_CLASSES, Dataset, check_memory
from minicnn.data.sources import KEYS
from minicnn.errors import DataError

NAME = "npz"
_HOW = ("an .npz file of x_train, y_train, x_test, y_test, e.g. "
        "np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)")


def _short(names, limit=10) -> str:
    """At most ``limit`` names of at most 40 characters each (they come from the file)."""
    shown = [repr(n[:40]) for n in names[:limit]]
    return ", ".join(shown) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _check_headers(path: pathlib.Path, archive: zipfile.ZipFile) -> int:
    """Every array is there, not an object array, and its header fits the bytes stored; return
    the bytes loading them takes (the arrays, and what ``_images`` and ``_labels`` make of them).

    Read before any array is, so a lying header cannot make us allocate more than the file holds.
    """
    need = 0
    members = archive.namelist()
    for key in KEYS:
        if key + ".npy" not in members:
            held = _short([m.removesuffix(".npy") for m in members]) or "nothing"
            raise DataError(f"{path}: no array {key}; the file holds {held}. Expected {_HOW}.")
        info = archive.getinfo(key + ".npy")
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _fortran, dtype = read_header(f)
        if dtype.hasobject:
            raise DataError(f"{path}: {key} is an object array (dtype {dtype}); save plain numbers, "
                            "e.g. np.asarray(x, dtype=np.uint8).")
        if math.prod(shape) * dtype.itemsize > info.file_size:
            raise DataError(f"{path}: {key}: its header says {shape} {dtype}, more than the "
                            f"{info.file_size} bytes stored: the file is truncated or corrupt.")
        n = math.prod(shape)
        # float images: a float32 copy and three bool masks; labels: an int64 copy
        need += n * dtype.itemsize + (n * 7 if key.startswith("x") and dtype.kind == "f" else 0) \
            + (n * 8 if key.startswith("y") else 0)
    return need


def _read(path: pathlib.Path) -> tuple[dict[str, np.ndarray], str]:
    """The four arrays and the sha256 of the file's bytes (read once, so they match)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise DataError(f"{path}: not a regular file (a folder, device or pipe); data.path must name an "
                            f".npz file, {_HOW}.")
        check_memory(info.st_size, f"{path}: a file of {info.st_size:,} bytes")
        blob = path.read_bytes()
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            need = _check_headers(path, archive)
        check_memory(len(blob) + need, f"{path}: its arrays, as their headers declare them")
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            return {k: npz[k] for k in KEYS}, hashlib.sha256(blob).hexdigest()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (data.path)") from None
    except Exception as e:  # whatever a corrupt file makes zipfile / np.load raise
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e}); "
                        f"expected {_HOW}.") from None


def _images(path, key: str, x: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, C, H, W) uint8, or float in [0, 1] -> (N, C, H, W) uint8 or float32."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise DataError(f"{path}: {key} has shape {x.shape}; expected images (N, H, W) or (N, C, H, W).")
    if 0 in x.shape:
        raise DataError(f"{path}: {key} has shape {x.shape}: no images.")
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind != "f":
        raise DataError(f"{path}: {key} has dtype {x.dtype}; expected uint8 (0..255) or float (0..1).")
    finite = np.isfinite(x)
    if not finite.all():
        i = tuple(int(j) for j in np.unravel_index(int(np.argmin(finite)), x.shape))
        raise DataError(f"{path}: {key}{list(i)} = {x[i]}; images must be finite numbers in [0, 1].")
    outside = (x < 0) | (x > 1)
    if outside.any():
        i = tuple(int(j) for j in np.unravel_index(int(np.argmax(outside)), x.shape))
        raise DataError(f"{path}: {key}{list(i)} = {x[i]}; float images must be in [0, 1] "
                        "(uint8 images may be 0..255).")
    return x.astype(np.float32)


def _labels(path, key: str, y: np.ndarray, n: int, x_key: str) -> np.ndarray:
    if y.ndim != 1:
        raise DataError(f"{path}: {key} has shape {y.shape}; expected one label per image, shape ({n},).")
    if len(y) != n:
        raise DataError(f"{path}: {key} has {len(y)} labels but {x_key} has {n} images.")
    if y.dtype.kind not in "iu":
        first = y.reshape(-1)[:1].tolist()
        raise DataError(f"{path}: {key} has dtype {y.dtype} (first value {first[0] if first else None!r}); "
                        "labels must be integers, e.g. y.astype(np.int64).")
    bad = (y < 0) | (y >= MAX_CLASSES)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}: {key}[{i}] = {int(y[i])}; labels must be integers in [0, classes), and "
                        f"minicnn takes at most {MAX_CLASSES:,} classes.")
    return y.astype(np.int64)


def load(path) -> Dataset:
    """Read and check the .npz file at ``path``; classes "0" .. str(max label)."""
    path = pathlib.Path(path)
    raw, sha256 = _read(path)
    x_train, x_test = _images(path, "x_train", raw["x_train"]), _images(path, "x_test", raw["x_test"])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{path}: x_train holds images of shape (C, H, W) = {x_train.shape[1:]} but "
                        f"x_test {x_test.shape[1:]}.")
    y_train = _labels(path, "y_train", raw["y_train"], len(x_train), "x_train")
    y_test = _labels(path, "y_test", raw["y_test"], len(x_test), "x_test")
    classes = tuple(str(k) for k in range(int(max(y_train.max(), y_test.max())) + 1))
    return Dataset(NAME, x_train, y_train, x_test, y_test, classes, sha256, str(path))
