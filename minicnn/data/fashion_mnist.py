"""Fashion-MNIST (``dataset: fashion_mnist``): 60,000 + 10,000 28x28 grey images of clothes.

Sources, in order (the chain is ``sources.load_chain``):

1. ``data_dir``, when given: the four IDX files, ``.gz`` or not; the only source tried;
2. the cache, ``cache_dir() / "fashion_mnist.npz"``;
3. the public mirror of the four ``.gz`` files (short timeout);
4. Debian's package ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``),
   which puts the four ``.gz`` files in ``/usr/share/datasets/fashion-mnist``.

Debian recompressed the files, so every IDX file is checked by the sha256 of its
decompressed bytes (``IDX_SHA256``), and the decoded arrays by ``FASHION_MNIST_SHA256``.
"""
from __future__ import annotations

import pathlib

from minicnn.data import idx, sources
from minicnn.data.dataset import Dataset, from_grey

NAME = "fashion_mnist"
LABEL = "Fashion-MNIST"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
# sha256 of the decompressed IDX files, as published by the Fashion-MNIST project
IDX_SHA256 = {
    "x_train": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "y_train": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "x_test": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "y_test": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
# sha256 of x_train, y_train, x_test, y_test (uint8, C order, in that order), computed once
# from the four files above (sources.digest); it verifies the cache. Sanity checked: first
# labels 9 0 0 3 0 2 7 2 5 5 / 9 2 1 1 6, 6,000 / 1,000 per class, pixel mean 0.2860.
FASHION_MNIST_SHA256 = "ca3ab2a37f845e1b8ae23cab1b51749a3011ba3bf1d9016176d75cbaabac376f"
IMAGE_SIZE = (28, 28)
CACHE_NAME = "fashion_mnist.npz"
MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
MIRROR_TIMEOUT = 3.0  # seconds per connection / read
DEBIAN_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")

HOW_TO_FIX = (
    "To fix it: install Debian's package (apt-get install dataset-fashion-mnist); or pass "
    "--data-dir DIR with the four Fashion-MNIST IDX files (train-images-idx3-ubyte, "
    "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each .gz or not); "
    f"or make {MIRROR} reachable; or set MINICNN_DATA to a folder that already holds a good {CACHE_NAME}."
)


class FashionMNIST(sources.GreyImages):
    """The Fashion-MNIST arrays, all uint8: images (N, 28, 28) in 0..255, labels (N,) in 0..9."""


def _verified(arrays: dict, source: str, what: str) -> FashionMNIST:
    sources.check_arrays(arrays, IMAGE_SIZE, FASHION_MNIST_SHA256, LABEL, what)
    return FashionMNIST(*(arrays[k] for k in sources.KEYS), source)


def _read_folder(folder: pathlib.Path, source: str, fix: str, where: str | None = None) -> FashionMNIST:
    arrays = idx.read_folder(folder, idx.FILES, fix, IDX_SHA256, where)
    return _verified(arrays, source, f"the IDX files in {folder}")


def _read_data_dir(folder: pathlib.Path) -> FashionMNIST:
    fix = (f"Replace or re-download the file named above (and check that {folder} holds the "
           "original Fashion-MNIST IDX files), or leave out --data-dir to use the cache or the download.")
    return _read_folder(folder, f"data_dir {folder}", fix)


def _read_debian(folder: pathlib.Path = DEBIAN_DIR) -> FashionMNIST:
    fix = "Reinstall the package: apt-get install --reinstall dataset-fashion-mnist."
    return _read_folder(folder, f"Debian package files in {folder}", fix, where=f"Debian package folder {folder}")


def _download_mirror(base: str, progress) -> FashionMNIST:
    """Download the four IDX .gz files; check the decompressed bytes' sha256, then decode."""
    arrays = {}
    for key, (name, magic) in idx.FILES.items():
        url = base + name + ".gz"
        progress(f"downloading {url} ...")
        raw = idx.gunzip_idx(sources.download(url, MIRROR_TIMEOUT), magic, url)
        idx.check_sha256(raw, IDX_SHA256[key], url)
        arrays[key] = idx.parse_idx(raw, magic, url)
    return _verified(arrays, f"mirror {base}", f"the files from {base}")


def _read_cache(path: pathlib.Path) -> FashionMNIST:
    arrays, origin = sources.read_cache(path)
    return _verified(arrays, f"cache {path} (from {origin})", str(path))


def load_fashion_mnist(data_dir=None, progress=sources.to_stderr) -> FashionMNIST:
    """The verified Fashion-MNIST arrays from the first source that works (module docstring).

    ``data_dir``: the only source tried when given. ``progress``: called with one-line
    messages (None: silence). DataError listing every source tried when none works.
    """
    progress = progress or (lambda message: None)
    local = None if data_dir is None else (lambda: _read_data_dir(pathlib.Path(data_dir)))
    remotes = [(f"mirror {MIRROR}", lambda: _download_mirror(MIRROR, progress)),
               (f"Debian package dataset-fashion-mnist ({DEBIAN_DIR})", _read_debian)]
    return sources.load_chain(LABEL, sources.cache_dir() / CACHE_NAME, _read_cache, local, remotes,
                              HOW_TO_FIX, progress)


def load(data_dir=None, progress=sources.to_stderr) -> Dataset:
    """Fashion-MNIST as a Dataset: uint8 (N, 1, 28, 28), int64 labels, the ten class names."""
    return from_grey(load_fashion_mnist(data_dir, progress), NAME, CLASSES, FASHION_MNIST_SHA256)


def fetch(data_dir=None, progress=sources.to_stderr) -> pathlib.Path:
    """Make sure the verified cache file exists; return its path."""
    return sources.fetch(lambda: load_fashion_mnist(data_dir, progress), _read_cache,
                         sources.cache_dir() / CACHE_NAME, LABEL)
