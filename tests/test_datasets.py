"""Tests for minicnn.data's registry, Fashion-MNIST's sources, npz files, check_fits and the cache files.

Fake data only (small arrays made here, MINICNN_DATA in tmp_path, no network), except
the test marked ``fashion_mnist``, which reads the real data set.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import minicnn.data as data
from minicnn.data import DataError, fashion_mnist, idx, npz, sources
from minicnn.errors import UserError

KEYS = ("x_train", "y_train", "x_test", "y_test")


def fake_grey(seed=0, n_train=20, n_test=10):
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
            "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            "y_test": rng.integers(0, 10, n_test, dtype=np.uint8)}


def idx_bytes(array):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return ((0x800 | array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
            + array.tobytes())


def write_idx_dir(folder, arrays, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    for key, (name, _magic) in idx.FILES.items():
        raw = idx_bytes(arrays[key])
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(raw) if gz else raw)
    return folder


@pytest.fixture(autouse=True)
def isolated(request, monkeypatch, tmp_path):
    if request.node.get_closest_marker("fashion_mnist"):
        yield
        return
    monkeypatch.setenv("MINICNN_DATA", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise OSError("no network in tests")
    monkeypatch.setattr(sources.urllib.request, "urlopen", no_network)
    yield


@pytest.fixture
def fake_fashion(monkeypatch, tmp_path):
    """Fake Fashion-MNIST IDX files in a folder standing in for Debian's, checksums set to them."""
    arrays = fake_grey()
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_SHA256", sources.digest(*(arrays[k] for k in KEYS)))
    monkeypatch.setattr(fashion_mnist, "IDX_SHA256",
                        {k: hashlib.sha256(idx_bytes(arrays[k])).hexdigest() for k in KEYS})
    debian = write_idx_dir(tmp_path / "debian", arrays)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", debian)
    monkeypatch.setattr(fashion_mnist._read_debian, "__defaults__", (debian,))
    return arrays


def assert_dataset(ds, arrays, name):
    assert ds.name == name and ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.x_train.shape == (len(arrays["x_train"]), 1, 28, 28) and ds.input_shape == (1, 28, 28)
    for k in KEYS:
        np.testing.assert_array_equal(getattr(ds, k).reshape(arrays[k].shape), arrays[k])


# ---------------------------------------------------------------- Fashion-MNIST

def test_fashion_mnist_from_debian_then_from_the_cache(fake_fashion):
    messages = []
    ds = data.load_dataset("fashion_mnist", progress=messages.append)
    assert_dataset(ds, fake_fashion, "fashion_mnist")
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot" and len(ds.classes) == 10
    assert ds.sha256 == fashion_mnist.FASHION_MNIST_SHA256
    assert ds.source.startswith("Debian package files in")
    assert any("mirror" in m and "failed" in m for m in messages)      # the mirror was tried first
    cache = data.cache_dir() / "fashion_mnist.npz"
    assert os.listdir(cache.parent) == ["fashion_mnist.npz"]
    again = data.load_dataset("fashion_mnist", progress=None)
    assert again.source == f"cache {cache} (from {ds.source})"
    assert_dataset(again, fake_fashion, "fashion_mnist")


def test_fashion_mnist_data_dir_is_accepted_and_never_falls_through(fake_fashion, tmp_path):
    folder = write_idx_dir(tmp_path / "mine", fake_fashion, gz=False)
    ds = data.load_dataset("fashion_mnist", data_dir=folder, progress=None)
    assert_dataset(ds, fake_fashion, "fashion_mnist")
    assert ds.source == f"data_dir {folder}"
    raw = bytearray((folder / "t10k-labels-idx1-ubyte").read_bytes())
    raw[-1] ^= 1
    (folder / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: the decompressed IDX bytes have sha256 "
                                        r"[0-9a-f]{64}, expected [0-9a-f]{64}.*--data-dir"):
        data.load_dataset("fashion_mnist", data_dir=folder, progress=None)


def test_mnist_files_are_not_fashion_mnist(fake_fashion, tmp_path):
    folder = write_idx_dir(tmp_path / "other", fake_grey(seed=5))
    with pytest.raises(DataError, match="decompressed IDX bytes have sha256"):
        data.load_dataset("fashion_mnist", data_dir=folder, progress=None)


def test_fashion_mnist_all_sources_fail(fake_fashion, monkeypatch, tmp_path):
    monkeypatch.setattr(fashion_mnist._read_debian, "__defaults__", (tmp_path / "absent",))
    with pytest.raises(DataError) as info:
        data.load_dataset("fashion_mnist", progress=None)
    text = str(info.value)
    assert text.startswith("could not get Fashion-MNIST. Tried, in order:")
    assert "no network in tests" in text and "apt-get install dataset-fashion-mnist" in text
    assert f"Debian package folder {tmp_path / 'absent'}: found neither train-images-idx3-ubyte" in text


def test_fashion_mnist_mirror_checks_the_decompressed_bytes(fake_fashion, monkeypatch):
    served = {name + ".gz": gzip.compress(idx_bytes(fake_fashion[k]), mtime=0)
              for k, (name, _) in idx.FILES.items()}

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

    monkeypatch.setattr(sources.urllib.request, "urlopen",
                        lambda url, timeout: Response(served[url.rsplit("/", 1)[1]]))
    got = fashion_mnist._download_mirror("https://example.invalid/", lambda m: None)
    np.testing.assert_array_equal(got.x_test, fake_fashion["x_test"])
    served["train-labels-idx1-ubyte.gz"] = gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: the decompressed IDX bytes have sha256"):
        fashion_mnist._download_mirror("https://example.invalid/", lambda m: None)


@pytest.mark.fashion_mnist
def test_real_fashion_mnist():
    try:
        ds = data.load_dataset("fashion_mnist", progress=None)
    except DataError as e:
        pytest.skip(f"real Fashion-MNIST not available: {e}")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert ds.y_test[:5].tolist() == [9, 2, 1, 1, 6]
    assert np.bincount(ds.y_train).tolist() == [6000] * 10 and np.bincount(ds.y_test).tolist() == [1000] * 10
    assert abs(ds.x_train.mean() / 255 - 0.2860) < 1e-3
    assert ds.sha256 == sources.digest(*(getattr(ds, k) for k in KEYS))


# ---------------------------------------------------------------- the registry

def test_load_dataset_refuses_wrong_combinations(tmp_path):
    with pytest.raises(DataError, match="unknown data set 'cifar'; expected one of mnist, fashion_mnist, npz"):
        data.load_dataset("cifar")
    with pytest.raises(DataError, match="needs data.path"):
        data.load_dataset("npz")
    with pytest.raises(DataError, match="--data-dir is for mnist and fashion_mnist"):
        data.load_dataset("npz", path=tmp_path / "x.npz", data_dir=tmp_path)
    with pytest.raises(DataError, match="data.path is for dataset npz, not mnist"):
        data.load_dataset("mnist", path=tmp_path / "x.npz")
    assert issubclass(DataError, UserError)


# ---------------------------------------------------------------- npz files

def good_npz_arrays(channels=3, size=(40, 36), dtype=np.uint8):
    rng = np.random.default_rng(1)
    shape = (lambda n: (n, channels, *size)) if channels else (lambda n: (n, *size))

    def images(n):
        if dtype == np.uint8:
            return rng.integers(0, 256, shape(n), dtype=np.uint8)
        return rng.random(shape(n)).astype(dtype)
    return {"x_train": images(12), "y_train": rng.integers(0, 4, 12).astype(np.int32),
            "x_test": images(5), "y_test": np.array([0, 1, 2, 3, 3], np.uint8)}


def save_npz(tmp_path, arrays, name="mine.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("channels, dtype", [(3, np.uint8), (0, np.uint8), (2, np.float64), (1, np.float32)])
def test_npz_loads_images_labels_and_its_sha256(tmp_path, channels, dtype):
    arrays = good_npz_arrays(channels, dtype=dtype)
    path = save_npz(tmp_path, arrays)
    ds = data.load_dataset("npz", path=path)
    c = channels or 1
    assert ds.name == "npz" and ds.input_shape == (c, 40, 36) and ds.x_train.shape == (12, c, 40, 36)
    assert ds.x_train.dtype == (np.uint8 if dtype == np.uint8 else np.float32)
    np.testing.assert_array_equal(ds.x_test.reshape(arrays["x_test"].shape), arrays["x_test"].astype(ds.x_test.dtype))
    assert ds.y_train.dtype == np.int64 and ds.y_test.tolist() == [0, 1, 2, 3, 3]
    assert ds.classes == ("0", "1", "2", "3")
    assert ds.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and ds.source == str(path)
    x = data.to_float32(ds.x_train)
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1


def _zip_with(tmp_path, **members):
    path = tmp_path / "bad.npz"
    with zipfile.ZipFile(path, "w") as z:
        for name, raw in members.items():
            z.writestr(name, raw)
    return path


def _npy(array, **kwargs):
    buf = io.BytesIO()
    np.save(buf, array, **kwargs)
    return buf.getvalue()


def _edit(**changes):
    def make(tmp_path):
        arrays = good_npz_arrays()
        for k, v in changes.items():
            if v is None:
                del arrays[k]
            else:
                arrays[k] = v(arrays[k]) if callable(v) else v
        return save_npz(tmp_path, arrays)
    return make


def _lying_header(tmp_path):
    """x_train's header claims 9999 images (same header length), its data holds 2."""
    members = {f"{k}.npy": _npy(v) for k, v in good_npz_arrays().items()}
    members["x_train.npy"] = _npy(np.zeros((2, 3, 4, 4), np.uint8)).replace(b"(2, 3, 4, 4)", b"(9999, 3, 4)")
    return _zip_with(tmp_path, **members)


def _object_array(tmp_path):
    members = {f"{k}.npy": _npy(v) for k, v in good_npz_arrays().items()}
    members["y_train.npy"] = _npy(np.array([1, "a"], dtype=object), allow_pickle=True)
    return _zip_with(tmp_path, **members)


def _raw_file(content):
    def make(tmp_path):
        (tmp_path / "bad.npz").write_bytes(content)
        return tmp_path / "bad.npz"
    return make


def _truncated(tmp_path):
    path = save_npz(tmp_path, good_npz_arrays())
    path.write_bytes(path.read_bytes()[:-300])
    return path


def _nan_at_5(x):
    return np.where(np.arange(36) == 5, np.nan, x / 255.0)


def _minus_inf_at_0(x):
    return np.where(np.arange(36) == 0, -np.inf, x / 255.0).astype(np.float32)


NPZ_ERRORS = {
    "missing-array": (_edit(y_test=None), r"no array y_test; the file holds 'x_train', 'y_train', 'x_test'"),
    "labels-out-of-range": (_edit(y_train=lambda y: np.where(np.arange(12) == 7, -3, y)),
                            r"y_train\[7\] = -3; labels must be integers"),
    "labels-not-integers": (_edit(y_test=lambda y: y + 0.5),
                            r"y_test has dtype float64 \(first value 0\.5\); labels must be integers"),
    "labels-2d": (_edit(y_test=lambda y: y[:, None]), r"y_test has shape \(5, 1\); expected one label per image"),
    "lengths-differ": (_edit(y_train=lambda y: y[:11]), r"y_train has 11 labels but x_train has 12 images"),
    "train-test-shapes": (_edit(x_test=lambda x: x[:, :, :39]),
                          r"x_train holds images of shape \(C, H, W\) = \(3, 40, 36\) but x_test \(3, 39, 36\)"),
    "flat-images": (_edit(x_train=lambda x: x.reshape(12, -1)), r"x_train has shape \(12, 4320\); expected images"),
    "no-images": (_edit(x_train=lambda x: x[:0], y_train=lambda y: y[:0]),
                  r"x_train has shape \(0, 3, 40, 36\): no images"),
    "nan": (_edit(x_train=_nan_at_5), r"x_train\[0, 0, 0, 5\] = nan; images must be finite"),
    "inf": (_edit(x_test=_minus_inf_at_0), r"x_test\[0, 0, 0, 0\] = -inf"),
    "float-above-1": (_edit(x_train=lambda x: x.astype(np.float32)),
                      r"x_train\[0, 0, 0, 0\] = \d+\.0; float images must be in \[0, 1\]"),
    "int-images": (_edit(x_train=lambda x: x.astype(np.int64)),
                   r"x_train has dtype int64; expected uint8 \(0\.\.255\) or float"),
    "object-array": (_object_array, r"y_train is an object array"),
    "lying-header": (_lying_header, r"x_train: its header says \(9999, 3, 4\) uint8, more than the \d+ bytes stored"),
    "not-a-zip": (_raw_file(b"plain text"), r"not a readable \.npz file \(BadZipFile"),
    "npy-not-npz": (_raw_file(_npy(np.zeros(3))), r"not a readable \.npz file"),
    "truncated": (_truncated, r"not a readable \.npz file"),
    "no-such-file": (lambda tmp_path: tmp_path / "absent.npz", r"absent\.npz: no such file \(data\.path\)"),
}


@pytest.mark.parametrize("make, message", NPZ_ERRORS.values(), ids=NPZ_ERRORS.keys())
def test_npz_errors_name_the_file_the_array_and_the_value(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DataError, match=message) as info:
        data.load_dataset("npz", path=path)
    assert str(info.value).startswith(str(path) + ": ")
    assert "\n" not in str(info.value)


def test_npz_long_member_names_are_cut_in_the_message(tmp_path):
    path = _zip_with(tmp_path, **{("n" * 5000 + str(i) + ".npy"): b"" for i in range(30)})
    with pytest.raises(DataError) as info:
        data.load_dataset("npz", path=path)
    assert len(str(info.value)) < 1000 and "and 20 more" in str(info.value)


# ---------------------------------------------------------------- check_fits

def test_check_fits_accepts_the_right_model_and_extends_npz_classes(tmp_path):
    ds = data.load_dataset("npz", path=save_npz(tmp_path, good_npz_arrays()))
    fitted = data.check_fits(ds, [3, 40, 36], 6)
    assert fitted.classes == ("0", "1", "2", "3", "4", "5") and fitted.x_train is ds.x_train


def test_check_fits_names_both_shapes_and_class_counts(tmp_path):
    path = save_npz(tmp_path, good_npz_arrays())
    ds = data.load_dataset("npz", path=path)
    with pytest.raises(DataError, match=rf"{path}: x_train holds images of shape \(C, H, W\) = \(3, 40, 36\), "
                                        r"but model.input_shape is \[1, 28, 28\]; set model.input_shape: \[3, 40, 36\]"):
        data.check_fits(ds, (1, 28, 28), 10)
    with pytest.raises(DataError, match=r"y_train\[6\] = 3, but the last dense layer has out_features 3: "
                                        r"labels must be in \[0, 3\)"):
        data.check_fits(ds, (3, 40, 36), 3)
    mnist_like = data.Dataset("mnist", ds.x_train, ds.y_train, ds.x_test, ds.y_test, tuple("0123456789"), "x", "src")
    with pytest.raises(DataError, match="mnist has 10 classes, but the last dense layer has out_features 4"):
        data.check_fits(mnist_like, (3, 40, 36), 4)
    assert data.check_fits(mnist_like, (3, 40, 36), 10) is mnist_like


# ---------------------------------------------------------------- cache files

def test_cache_write_removes_stale_temporaries_and_keeps_the_file_mode(tmp_path):
    cache = data.cache_dir() / "set.npz"
    cache.parent.mkdir(parents=True)
    stale = cache.parent / ".set.npz.abcd1234.tmp"
    stale.write_bytes(b"half a file")
    other = cache.parent / ".mnist.npz.abcd1234.tmp"   # another cache's: not ours to judge
    other.write_bytes(b"x")
    grey = sources.GreyImages(*(fake_grey()[k] for k in KEYS), "test")
    sources.write_cache(cache, grey, "Set")
    assert sorted(os.listdir(cache.parent)) == [".mnist.npz.abcd1234.tmp", "set.npz"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert oct(cache.stat().st_mode & 0o777) == oct(0o666 & ~umask)
    arrays, origin = sources.read_cache(cache)
    assert origin == "test" and all(np.array_equal(arrays[k], getattr(grey, k)) for k in KEYS)


def test_ctrl_c_while_writing_the_cache_leaves_no_temporary(tmp_path):
    """SIGINT in the middle of np.savez: KeyboardInterrupt, the old cache intact, no .tmp."""
    cache = tmp_path / "c" / "set.npz"
    script = f"""
import signal, numpy as np
from minicnn.data import sources
signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever this process inherited (a background job ignores SIGINT)
grey = sources.GreyImages(np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.uint8),
                          np.zeros((1, 28, 28), np.uint8), np.zeros(1, np.uint8), "old")
sources.write_cache(__import__("pathlib").Path({str(cache)!r}), grey, "Set")
real = np.lib.format.write_array
def interrupted(*a, **k):
    signal.raise_signal(signal.SIGINT)   # to this thread: os.kill may hand it to another, late
    return real(*a, **k)
np.lib.format.write_array = interrupted
big = np.ones((50, 28, 28), np.uint8)
try:
    sources.write_cache(__import__("pathlib").Path({str(cache)!r}), sources.GreyImages(big, big[:, 0, 0], big, big[:, 0, 0], "new"), "Set")
except KeyboardInterrupt:
    print("interrupted")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "interrupted", done.stderr
    assert os.listdir(cache.parent) == ["set.npz"]
    assert sources.read_cache(cache)[1] == "old"


def test_fetch_a_named_data_set_and_sweep_stale_temporaries(fake_fashion):
    path = data.fetch(progress=None, dataset="fashion_mnist")
    assert path == data.cache_dir() / "fashion_mnist.npz" and path.is_file()
    stale = path.parent / ".fashion_mnist.npz.k1ll3d00.tmp"
    stale.write_bytes(b"half")
    before = path.stat().st_mtime_ns
    assert data.fetch(progress=None, dataset="fashion_mnist") == path
    assert os.listdir(path.parent) == ["fashion_mnist.npz"] and path.stat().st_mtime_ns == before
    with pytest.raises(DataError, match="nothing to fetch for 'npz'"):
        data.fetch(dataset="npz")


def test_cache_from_another_data_set_is_refused(fake_fashion, tmp_path):
    """A cache file whose arrays are not this data set's (e.g. copied over) is not used."""
    cache = data.cache_dir() / "fashion_mnist.npz"
    cache.parent.mkdir(parents=True)
    np.savez(cache, **fake_grey(seed=9), source=np.array("elsewhere"))
    ds = data.load_dataset("fashion_mnist", progress=None)
    assert ds.source.startswith("Debian package files in")
    assert sources.read_cache(cache)[1] == ds.source


def test_dataset_input_shape_and_repr():
    ds = data.Dataset("npz", np.zeros((2, 3, 5, 7), np.uint8), np.zeros(2, np.int64),
                      np.zeros((1, 3, 5, 7), np.uint8), np.zeros(1, np.int64), ("0",), "abc", "f.npz")
    assert ds.input_shape == (3, 5, 7)
    assert "x_train" not in repr(ds) and "f.npz" in repr(ds)
    assert pathlib.Path(data.__file__).parent.name == "data"


def test_npz_compressed_files_load_too(tmp_path):
    arrays = good_npz_arrays(channels=3)
    np.savez_compressed(tmp_path / "small.npz", **arrays)
    ds = data.load_dataset("npz", path=tmp_path / "small.npz")
    np.testing.assert_array_equal(ds.x_train, arrays["x_train"])
