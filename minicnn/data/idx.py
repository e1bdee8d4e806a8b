"""IDX files (the format of MNIST and Fashion-MNIST): decoding and reading a folder of them."""
from __future__ import annotations

import hashlib
import math
import os
import pathlib
import zlib

import numpy as np

from minicnn.data.dataset import check_memory
from minicnn.errors import DataError

IMAGES_MAGIC, LABELS_MAGIC = 0x803, 0x801
# split name -> (IDX file name, expected magic number); the same four names for MNIST and Fashion-MNIST
FILES = {
    "x_train": ("train-images-idx3-ubyte", IMAGES_MAGIC),
    "y_train": ("train-labels-idx1-ubyte", LABELS_MAGIC),
    "x_test": ("t10k-images-idx3-ubyte", IMAGES_MAGIC),
    "y_test": ("t10k-labels-idx1-ubyte", LABELS_MAGIC),
}


def _declared_size(head: bytes, magic: int, name: str) -> int:
    """The bytes an IDX file whose first bytes are ``head`` says it has; DataError for a wrong
    magic number or a short header."""
    if len(head) < 4:
        raise DataError(f"{name}: only {len(head)} bytes, not an IDX file.")
    found = int.from_bytes(head[:4], "big")
    if found != magic:
        raise DataError(f"{name}: IDX magic number 0x{found:08x}, expected 0x{magic:08x}: "
                        "wrong file or corrupt.")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(head) < header:
        raise DataError(f"{name}: truncated IDX header ({len(head)} bytes).")
    # math.prod on Python ints: np.prod would wrap around in int64 for huge headers
    return header + math.prod(int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))


def gunzip_idx(raw: bytes, magic: int, name: str) -> bytes:
    """The decompressed bytes of a gzipped IDX file, never more than its header declares.

    The header is decompressed first and checked (magic number; the size it declares
    against the memory available, ``check_memory``), so a small file that would inflate to
    gigabytes fails before they are made.
    """
    header = 4 + 4 * (magic & 0xFF)
    stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        head = stream.decompress(raw, header)
        while len(head) < header and stream.unconsumed_tail:
            head += stream.decompress(stream.unconsumed_tail, header - len(head))
        size = _declared_size(head, magic, name)
        check_memory(size, f"{name}: its IDX header declares {size:,} bytes")
        out = head + stream.decompress(stream.unconsumed_tail, size + 1 - len(head))
    except zlib.error as e:
        raise DataError(f"{name}: not a valid gzip file ({e}).") from None
    if len(out) > size:
        raise DataError(f"{name}: decompresses to more than the {size:,} bytes its IDX header says: corrupt.")
    if not stream.eof:
        raise DataError(f"{name}: not a valid gzip file (it ends before its compressed stream does).")
    return out


def parse_idx(raw: bytes, magic: int, name: str) -> np.ndarray:
    """Decode one uncompressed IDX file of unsigned bytes into a uint8 array.

    Header (big-endian): uint32 magic (0x00000803 images, 0x00000801 labels; the low
    byte is the number of dimensions), then one uint32 per dimension.
    Images come out as (N, rows, cols), labels as (N,).
    """
    expected = _declared_size(raw, magic, name)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    if len(raw) != expected:
        raise DataError(f"{name}: {len(raw)} bytes, but its header {dims} says {expected}: "
                        "the file is truncated or corrupt.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()


def check_sha256(raw: bytes, expected: str, name: str) -> None:
    """DataError unless the (decompressed) bytes have sha256 ``expected``."""
    found = hashlib.sha256(raw).hexdigest()
    if found != expected:
        raise DataError(f"{name}: the decompressed IDX bytes have sha256 {found}, expected {expected}: "
                        "the file is corrupt, truncated or another data set's.")


def read_folder(folder: pathlib.Path, files: dict, fix: str, sha256: dict | None = None,
                where: str | None = None) -> dict:
    """The four arrays from IDX files (each NAME or NAME.gz) in ``folder``.

    ``files``: key -> (NAME, magic, ...); ``sha256``: key -> sha256 of the decompressed
    file, checked when given. Every problem is a DataError naming the file, ending with ``fix``;
    ``where`` names the folder's role in the message (default "--data-dir FOLDER").
    """
    where = where or f"--data-dir {folder}"
    arrays = {}
    for key, (name, magic, *_) in files.items():
        candidates = [folder / name, folder / (name + ".gz")]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise DataError(f"{where}: found neither {name} nor {name}.gz. {fix}")
        try:
            check_memory(2 * os.stat(path).st_size, f"{path}: a file of {os.stat(path).st_size:,} bytes")
            raw = path.read_bytes()
        except OSError as e:
            raise DataError(f"{path}: cannot read it ({e}). {fix}") from None
        except DataError as e:
            raise DataError(f"{e} {fix}") from None
        try:
            if path.suffix == ".gz":
                raw = gunzip_idx(raw, magic, str(path))
            if sha256:
                check_sha256(raw, sha256[key], str(path))
            arrays[key] = parse_idx(raw, magic, str(path))
        except DataError as e:
            raise DataError(f"{e} {fix}") from None
    return arrays
