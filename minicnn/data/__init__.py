"""Data sets for minicnn: where they come from, how they are verified, where they are cached.

``load_dataset(name, data_dir=..., path=...)`` returns a ``Dataset`` (images
(N, C, H, W), int64 labels, class names, the sha256 of what was loaded) for one of
``DATASETS``:

    mnist           the real MNIST (mnist.py)
    fashion_mnist   Fashion-MNIST (fashion_mnist.py)
    npz             your own .npz file, ``data.path`` (npz.py)

Adding a data set is one module with ``load(data_dir=None, progress=...) -> Dataset``
(and ``fetch``) plus a line in ``DATASETS``; what downloadable sets share (cache,
downloads, checksums, the order of sources) is in ``sources.py``, IDX decoding in ``idx.py``.
``check_fits`` checks a Dataset against a model's input shape and class count;
``shift_images`` builds the shifted test sets and ``shift_batch`` augments training batches.
"""
from __future__ import annotations

from minicnn.data import fashion_mnist, mnist, npz
from minicnn.data.dataset import Dataset, check_fits, to_float32
from minicnn.data.mnist import MNIST, load_mnist
from minicnn.data.shifts import augment_rng, shift_batch, shift_directions, shift_images
from minicnn.data.sources import cache_dir, digest, to_stderr
from minicnn.errors import DataError

__all__ = ["DATASETS", "DataError", "Dataset", "MNIST", "augment_rng", "cache_dir", "check_fits", "digest",
           "fetch", "load_dataset", "load_mnist", "shift_batch", "shift_directions", "shift_images",
           "to_float32"]

# name (data.dataset) -> module with load(data_dir, progress) and fetch(data_dir, progress)
DATASETS = {"mnist": mnist, "fashion_mnist": fashion_mnist, "npz": npz}


def load_dataset(name: str, *, data_dir=None, path=None, progress=to_stderr) -> Dataset:
    """The data set ``name`` (a key of DATASETS) as a Dataset.

    ``data_dir``: a folder of IDX files (mnist, fashion_mnist: the only source tried);
    ``path``: the .npz file (npz only, required). DataError for anything else.
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")
    if name == "npz":
        if path is None:
            raise DataError("dataset npz needs data.path, the .npz file to read")
        if data_dir is not None:
            raise DataError("--data-dir is for mnist and fashion_mnist; dataset npz reads data.path")
        return npz.load(path)
    if path is not None:
        raise DataError(f"data.path is for dataset npz, not {name}")
    return DATASETS[name].load(data_dir, progress)


def fetch(data_dir=None, progress=to_stderr, dataset: str = "mnist"):
    """Make sure the verified cache file of ``dataset`` exists (``minicnn data fetch``); return its path."""
    if dataset not in DATASETS or not hasattr(DATASETS[dataset], "fetch"):
        raise DataError(f"nothing to fetch for {dataset!r}; expected one of "
                        + ", ".join(n for n, m in DATASETS.items() if hasattr(m, "fetch")))
    return DATASETS[dataset].fetch(data_dir, progress)
