"""Confusion matrices: computed at the end of a run, stored in summary.json, read back by plots.

File format (the run's ``summary.json``):
    "classes":   ["T-shirt/top", "Trouser", ...]  class names, in label order (K names)
    "confusion": [[...], ...]                      K x K integer counts on the test set after the
                                                   last epoch: row i = true class i, column j = predicted j
"""
from __future__ import annotations

import pathlib

import numpy as np

from minicnn.errors import UserError
from minicnn.runs import SUMMARY, read_summary


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) int64 counts: [i, j] = how many images of class i were predicted j.

    y_true, y_pred: (N,) integers in [0, classes).
    """
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"confusion_matrix: y_true {y_true.shape} and y_pred {y_pred.shape} must be the same (N,)")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if len(y) and (y.min() < 0 or y.max() >= classes):
            raise ValueError(f"confusion_matrix: {name} holds {int(y.min())}..{int(y.max())}, not in [0, {classes})")
    return np.bincount(y_true * classes + y_pred, minlength=classes * classes).reshape(classes, classes)


def row_normalised(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the fraction of class i predicted as j); rows without images stay 0."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def summary_fields(counts: np.ndarray, classes) -> dict:
    """The two summary.json entries for a run's test-set confusion matrix (module docstring)."""
    return {"classes": [str(c) for c in classes], "confusion": np.asarray(counts, dtype=np.int64).tolist()}


def read_run(folder) -> tuple[np.ndarray, list[str]] | None:
    """(counts (K, K), class names) from a run folder's summary.json; None if it has none.

    UserError naming the file if the entries are there but malformed.
    """
    path = pathlib.Path(folder) / SUMMARY
    summary = read_summary(path)
    if "confusion" not in summary:
        return None
    try:
        counts = np.array(summary["confusion"], dtype=np.int64)
        classes = [str(c) for c in summary["classes"]]
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: confusion: not a matrix of counts with its classes ({e})") from None
    if counts.ndim != 2 or counts.shape != (len(classes), len(classes)) or (counts < 0).any():
        raise UserError(f"{path}: confusion: expected a {len(classes)} x {len(classes)} matrix of counts "
                        f"(one row per class), got shape {counts.shape}")
    return counts, classes
