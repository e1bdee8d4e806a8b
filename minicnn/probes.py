"""Evaluation probes, run once on the final model (config section ``eval``; issue 24).

- shift consistency (Zhang 2019): the share of test images whose predicted class is the same
  under two independent random moves (dy, dx), each drawn uniformly from -k..k per axis;
- noise: test accuracy under additive Gaussian noise of each sigma (clipped to [0, 1]), and with
  each share p of the pixels set to 0 or 1 (salt and pepper);
- canvases: test accuracy with each test image at a random place on an S x S black canvas, for a
  model whose layers take that size (``Sequential.accepts``; else None: not applicable);
- the generalisation gap: accuracy on the first ``gap_images`` training images, in inference
  mode, minus the test accuracy.

The first three use the first ``probe_images`` test images (default 5,000 of MNIST's 10,000). On the
reference network (max_pool) the probes then took 15.8 s, 3.7 times one pass over the 10,000 test
images and 0.23 of a 55,000-image training epoch, measured in one process on a loaded 2-core machine;
with all 10,000 test images and 10,000 training images they took twice that.

Every draw comes from a generator seeded by fixed words (``PROBE_SEED`` and a stream per probe),
never by the run's seed, so every run of a study sees the same moved, noisy and placed images and
the comparisons over seeds stay paired. Noise is drawn per image: image i's comes from
``default_rng([PROBE_SEED, NOISE, i])`` (a standard normal field z, then uniforms u and a coin per
pixel), the same whatever the batch size or ``data.test_size``; every sigma scales the same z and
pixel j is salt or pepper at every p > u_j, so the levels are nested. The images are made one
evaluation batch at a time: nothing the size of the test set is held beyond the draws.
"""
from __future__ import annotations

import time

import numpy as np

from minicnn.data.dataset import to_float32
from minicnn.data.shifts import move_each

PROBE_SEED = 24                         # first word of every probe generator (this number)
CONSISTENCY, NOISE, CANVAS = 1, 2, 3    # second word: the probe's stream
# results.csv's probe columns, in this order (a suffix sorts numerically within its group)
GROUPS = ("consistency", "gaussian_", "salt_pepper_", "canvas_", "train_eval_accuracy", "generalisation_gap",
          "probe_seconds")


def predicted(model, images: np.ndarray, batch_size: int, count: int, variants) -> np.ndarray:
    """The classes the model predicts (inference mode) for each of ``count`` variants of each image:
    (count, N) int64.

    ``variants(batch, start)`` returns the ``count`` arrays (B, C, H', W') to classify for the
    images ``batch = images[start:start + B]``; each is converted with ``to_float32``.
    """
    out = np.zeros((count, len(images)), dtype=np.int64)
    with np.errstate(all="ignore"):
        for start in range(0, len(images), batch_size):
            for v, x in enumerate(variants(images[start:start + batch_size], start)):
                logits = model.forward(to_float32(x), training=False, logits=True)
                out[v, start:start + len(x)] = logits.argmax(axis=1)
    return out


def consistency(model, images: np.ndarray, max_shift: int, batch_size: int) -> float:
    """Share of ``images`` (N, C, H, W) given the same class under two random moves of up to
    ``max_shift`` pixels per axis (zero fill); nan for no images."""
    if len(images) == 0:
        return float("nan")
    moves = np.random.default_rng([PROBE_SEED, CONSISTENCY]).integers(-max_shift, max_shift + 1,
                                                                       size=(2, len(images), 2))
    classes = predicted(model, images, batch_size, 2, lambda xb, s: [move_each(xb, moves[k, s:s + len(xb)])
                                                                     for k in (0, 1)])
    return float((classes[0] == classes[1]).mean())


def noise_fields(start: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z, u, salt) of images start, start + 1, ..., each (B, C, H, W): a standard normal field,
    uniforms in [0, 1) and a coin (True: the pixel becomes 1, else 0), from image i's own generator."""
    z, u, salt = np.empty(shape, np.float32), np.empty(shape, np.float64), np.empty(shape, bool)
    for j in range(shape[0]):
        rng = np.random.default_rng([PROBE_SEED, NOISE, start + j])
        z[j] = rng.standard_normal(shape[1:], dtype=np.float32)
        u[j] = rng.random(shape[1:])
        salt[j] = rng.random(shape[1:]) < 0.5
    return z, u, salt


def noisy(x: np.ndarray, z: np.ndarray, u: np.ndarray, salt: np.ndarray, sigmas, shares) -> list[np.ndarray]:
    """x (float in [0, 1]) with Gaussian noise of each sigma, clipped, then with each share of
    salt and pepper: one new float32 array per level, sigmas first."""
    out = [np.clip(x + np.float32(sigma) * z, 0, 1, dtype=np.float32) for sigma in sigmas]
    out += [np.where(u < p, salt, x).astype(np.float32) for p in shares]
    return out


def noise_accuracy(model, images, labels, sigmas, shares, batch_size: int) -> dict[str, float]:
    """{"gaussian_0.1": accuracy, ..., "salt_pepper_0.05": accuracy, ...} (module docstring)."""
    if not sigmas and not shares:
        return {}

    def variants(xb, start):
        x = to_float32(xb).astype(np.float32, copy=False)
        return noisy(x, *noise_fields(start, x.shape), sigmas, shares)

    names = noise_columns(sigmas, shares)
    classes = predicted(model, images, batch_size, len(names), variants)
    return {name: _accuracy(classes[i], labels) for i, name in enumerate(names)}


def noise_columns(sigmas, shares) -> list[str]:
    """The names of the noise accuracies, in ``noisy``'s order: gaussian_0.1, ..., salt_pepper_0.05, ..."""
    return [f"gaussian_{s:g}" for s in sigmas] + [f"salt_pepper_{p:g}" for p in shares]


def place(images: np.ndarray, size: int, offsets: np.ndarray) -> np.ndarray:
    """Each image (B, C, H, W) on a black size x size canvas with its top-left corner at
    ``offsets[i] = (row, column)``: (B, C, size, size), the dtype of images."""
    height, width = images.shape[-2:]
    padded = np.pad(images, [(0, 0)] * (images.ndim - 2) + [(0, size - height), (0, size - width)])
    return move_each(padded, offsets)


def canvas_accuracy(model, images, labels, size: int, batch_size: int) -> float | None:
    """Test accuracy on size x size canvases (``place``, offsets drawn uniformly per image from
    ``default_rng([PROBE_SEED, CANVAS, size])``); None when the model does not take that size."""
    channels, height, width = images.shape[1:]
    if not model.accepts((channels, size, size)):
        return None
    offsets = np.random.default_rng([PROBE_SEED, CANVAS, size]).integers(
        0, [size - height + 1, size - width + 1], size=(len(images), 2))
    classes = predicted(model, images, batch_size, 1, lambda xb, s: [place(xb, size, offsets[s:s + len(xb)])])
    return _accuracy(classes[0], labels)


def _accuracy(classes: np.ndarray, labels: np.ndarray) -> float:
    return float((classes == labels).mean()) if len(labels) else float("nan")


def run(model, splits, settings, test_accuracy: float) -> dict:
    """summary.json's probe fields for the final ``model`` on ``splits`` (minicnn.train.Splits),
    with the eval section ``settings`` (minicnn.config.EvalKeys); a probe that is off is None
    (or {}), as is a canvas the model does not take. ``probe_seconds``: their wall time."""
    start = time.perf_counter()
    x, y, batch = splits.x_test[:settings.probe_images], splits.y_test[:settings.probe_images], settings.batch_size
    fields = {
        "consistency": consistency(model, x, settings.consistency_shift, batch)
        if settings.consistency_shift else None,
        "noise_accuracy": noise_accuracy(model, x, y, settings.gaussian_sigmas, settings.salt_pepper, batch),
        "canvas_accuracy": {str(size): canvas_accuracy(model, x, y, size, batch) for size in settings.canvases},
        "train_eval_accuracy": None, "generalisation_gap": None,
    }
    if settings.gap_images:
        n = min(settings.gap_images, len(splits.x_train))
        train = predicted(model, splits.x_train[:n], batch, 1, lambda xb, s: [xb])
        fields["train_eval_accuracy"] = _accuracy(train[0], splits.y_train[:n])
        fields["generalisation_gap"] = fields["train_eval_accuracy"] - test_accuracy
    fields["probe_seconds"] = time.perf_counter() - start
    return fields


def result_fields(summary: dict) -> dict:
    """results.csv's probe columns from a summary.json (names: ``GROUPS``); None (not measured,
    or a canvas the model does not take) becomes "", an empty cell. {} for a run without probes."""
    if "probe_seconds" not in summary:
        return {}
    row = {"consistency": summary["consistency"]}
    row |= summary["noise_accuracy"]
    row |= {f"canvas_{size}": acc for size, acc in summary["canvas_accuracy"].items()}
    for key in GROUPS[4:]:
        row[key] = summary[key]
    return {key: "" if value is None else value for key, value in row.items()}


def columns(keys) -> list[str]:
    """The probe columns among ``keys``, in results.csv's order (``GROUPS``, then by number)."""
    def order(key):
        group = next(i for i, g in enumerate(GROUPS) if key == g or g.endswith("_") and key.startswith(g))
        return group, float(key[len(GROUPS[group]):] or 0) if GROUPS[group].endswith("_") else 0.0

    return sorted({k for k in keys if any(k == g or g.endswith("_") and k.startswith(g) for g in GROUPS)},
                  key=order)


def columns_for(settings) -> list[str]:
    """The probe columns a run with eval section ``settings`` writes (every one, measured or not)."""
    return (["consistency"] + noise_columns(settings.gaussian_sigmas, settings.salt_pepper)
            + [f"canvas_{size}" for size in settings.canvases] + list(GROUPS[4:]))


def label(column: str) -> str:
    """A probe column as report.md names it."""
    for prefix, words in (("gaussian_", "Gaussian sigma {}"), ("salt_pepper_", "salt & pepper {}"),
                          ("canvas_", "canvas {0}x{0}")):
        if column.startswith(prefix):
            value = column[len(prefix):]
            return words.format(f"{100 * float(value):g}%" if prefix == "salt_pepper_" else value)
    return {"consistency": "shift consistency", "train_eval_accuracy": "train accuracy (inference)",
            "generalisation_gap": "generalisation gap", "probe_seconds": "probe seconds"}[column]
