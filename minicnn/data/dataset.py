"""``Dataset``: what every data set module returns, and the checks against a model."""
from __future__ import annotations

import dataclasses

import numpy as np

from minicnn.data.sources import GreyImages
from minicnn import memory
from minicnn.errors import DataError

# the most classes a data set or model may have: a run's confusion matrix (K x K counts in
# memory and in summary.json, minicnn.confusion) stays under 10 MB
MAX_CLASSES = 1_000


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A data set ready to train on.

    x_train (N, C, H, W) and x_test (M, C, H, W): uint8 in 0..255 or float32 in [0, 1]
    (``to_float32`` gives float32 either way); y_train (N,), y_test (M,): int64 labels
    in [0, len(classes)). ``sha256`` identifies exactly what was loaded, for summary.json:
    for mnist and fashion_mnist the sha256 of the four decoded uint8 arrays (the digest
    every source is verified against), for npz the sha256 of the .npz file's bytes
    (what ``sha256sum FILE`` prints). ``source``: where the arrays came from.
    """

    name: str
    x_train: np.ndarray = dataclasses.field(repr=False)
    y_train: np.ndarray = dataclasses.field(repr=False)
    x_test: np.ndarray = dataclasses.field(repr=False)
    y_test: np.ndarray = dataclasses.field(repr=False)
    classes: tuple[str, ...]
    sha256: str
    source: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(int(d) for d in self.x_train.shape[1:])


def check_memory(nbytes: int, what: str) -> None:
    """DataError when ``nbytes`` more would not fit in the memory available
    (``minicnn.memory.available_memory``): the rule minicnn.config.check_memory applies to a
    model, applied to data before it is read.

    ``what`` says where the size comes from ("x.npz: its arrays declare ...").
    """
    available = memory.available_memory()
    if available is not None and nbytes > available:
        raise DataError(f"{what}: reading it needs about {_mib(nbytes)}, more than the {_mib(available)} "
                        "available; it is corrupt (a small file declaring huge arrays), or use a machine "
                        "with more memory")


def _mib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def from_grey(data: GreyImages, name: str, classes: tuple[str, ...], sha256: str) -> Dataset:
    """uint8 (N, H, W) images and labels -> a Dataset of (N, 1, H, W) images and int64 labels."""
    return Dataset(name, data.x_train[:, None], data.y_train.astype(np.int64),
                   data.x_test[:, None], data.y_test.astype(np.int64), tuple(classes), sha256,
                   data.source)


def to_float32(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) uint8 0..255 -> float32 in [0, 1] (x / 255); float32 is returned as is."""
    if images.dtype == np.uint8:
        out = images.astype(np.float32)
        out /= np.float32(255)  # in place: one float32 array, not two
        return out
    return images


def check_fits(dataset: Dataset, input_shape, num_classes: int) -> Dataset:
    """Check that a model with ``input_shape`` (C, H, W) and ``num_classes`` outputs fits the data.

    npz data sets name their classes "0", "1", ...; their class list is extended to
    ``num_classes`` (classes absent from the file are allowed), so the returned Dataset
    is the one to use. DataError naming the data, the array and the model's numbers otherwise.
    """
    expected = tuple(int(d) for d in input_shape)
    if dataset.input_shape != expected:
        c, h, w = dataset.input_shape
        if w <= 4 < c:  # (N, H, W, C) saved as it is: its (C, H, W) would mix up the axes
            raise DataError(f"{dataset.source}: x_train holds images of shape (C, H, W) = {dataset.input_shape}, "
                            f"which look channels-last (N, H, W, C) with {w} channel{'s' * (w > 1)}; minicnn "
                            "reads channels first: save the images as x.transpose(0, 3, 1, 2), then set "
                            f"model.input_shape: {[w, c, h]}")
        raise DataError(f"{dataset.source}: x_train holds images of shape (C, H, W) = "
                        f"{dataset.input_shape}, but model.input_shape is {list(expected)}; "
                        f"set model.input_shape: {list(dataset.input_shape)}")
    if num_classes > MAX_CLASSES:
        raise DataError(f"{dataset.source}: the last dense layer has out_features {num_classes:,}; minicnn "
                        f"takes at most {MAX_CLASSES:,} classes")
    if dataset.name == "npz":
        for key in ("y_train", "y_test"):
            y = getattr(dataset, key)
            if len(y) and y.max() >= num_classes:
                i = int(np.argmax(y >= num_classes))
                raise DataError(f"{dataset.source}: {key}[{i}] = {int(y[i])}, but the last dense layer "
                                f"has out_features {num_classes}: labels must be in [0, {num_classes})")
        return dataclasses.replace(dataset, classes=tuple(str(k) for k in range(num_classes)))
    if num_classes != len(dataset.classes):
        raise DataError(f"{dataset.source}: {dataset.name} has {len(dataset.classes)} classes, but the "
                        f"last dense layer has out_features {num_classes}")
    return dataset
