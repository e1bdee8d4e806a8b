"""Figures from run folders (never from live objects), PNG via the Agg canvas.

``plot_folder(DIR)`` draws an experiment folder (results.csv plus run folders)
or a single run folder (metrics.csv).  Each ``*_figure`` function takes plain
data and returns a matplotlib Figure, so tests can inspect the series drawn.
"""
from __future__ import annotations

import csv
import math
import pathlib

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from minicnn.errors import UserError
from minicnn.files import atomic_open
from minicnn.report import shift_keys

FIGSIZE = (6.4, 4.2)
# the columns the figures read, and which of them must hold numbers
RESULT_COLUMNS = ("config", "test_accuracy", "params", "macs", "receptive_field", "seconds_per_epoch",
                  "images_per_second", "diverged", "run_dir")
RESULT_NUMBERS = ("test_accuracy", "params", "macs", "seconds_per_epoch", "images_per_second", "shift_*")
METRIC_COLUMNS = ("val_accuracy", "train_loss", "val_loss")


def read_table(path, columns=(), numbers=()) -> list[dict[str, str]]:
    """Rows of a CSV file minicnn wrote; UserError naming the file if it is not one.

    ``columns`` must all be in the header and ``numbers`` must parse as floats (a
    name ending in ``*`` stands for every column it starts, which may also be
    empty), so a damaged or foreign file is reported in one line instead of a
    traceback later.
    """
    path = pathlib.Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            fields = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: cannot read it ({e})") from None
    missing = [c for c in columns if c not in fields]
    if missing:
        raise UserError(f"{path}: not a table written by minicnn: no column {', '.join(missing)}"
                        + ("" if fields else " (the file is empty)"))
    checks = [(key, False) for key in numbers if not key.endswith("*")]
    checks += [(f, True) for key in numbers if key.endswith("*") for f in fields if f.startswith(key[:-1])]
    for i, row in enumerate(rows, start=2):
        for key, may_be_empty in checks:
            try:
                if not (may_be_empty and row[key] in ("", None)):
                    float(row[key])
            except (TypeError, ValueError):
                raise UserError(f"{path}: line {i}, column {key}: expected a number, got {row[key]!r}") from None
    return rows


def _new(title: str, xlabel: str, ylabel: str):
    fig = Figure(figsize=FIGSIZE, dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _curves(metrics: dict[str, list[list[dict]]], key: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """variant -> (epochs, mean, std over seeds) of metric ``key``, over epochs all seeds reached."""
    out = {}
    for variant, runs in metrics.items():
        n = min(len(r) for r in runs) if runs else 0
        if n == 0:
            continue
        values = np.array([[float(row[key]) for row in run[:n]] for run in runs])
        std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(n)
        out[variant] = (np.arange(1, n + 1), values.mean(axis=0), std)
    return out


def val_accuracy_figure(metrics) -> Figure:
    fig, ax = _new("Validation accuracy per epoch (mean ± std over seeds)", "epoch", "validation accuracy (%)")
    for variant, (x, mean, std) in _curves(metrics, "val_accuracy").items():
        line, = ax.plot(x, 100 * mean, marker="o", label=variant)
        ax.fill_between(x, 100 * (mean - std), 100 * (mean + std), color=line.get_color(), alpha=0.2)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend()
    return fig


def loss_figure(metrics) -> Figure:
    fig, ax = _new("Loss per epoch (solid: training, dashed: validation)", "epoch", "cross-entropy")
    train, val = _curves(metrics, "train_loss"), _curves(metrics, "val_loss")
    for variant, (x, mean, _) in train.items():
        line, = ax.plot(x, mean, marker="o", label=variant)
        if variant in val:
            ax.plot(val[variant][0], val[variant][1], linestyle="--", color=line.get_color())
    ax.set_yscale("log")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend()
    return fig


def test_accuracy_figure(stats: list[dict]) -> Figure:
    fig, ax = _new("Final test accuracy (mean ± std over seeds)", "variant", "test accuracy (%)")
    names = [s["config"] for s in stats]
    means = np.array([100 * s["test_mean"] for s in stats])
    stds = np.array([0.0 if math.isnan(s["test_std"]) else 100 * s["test_std"] for s in stats])
    ax.bar(names, means, yerr=stds, capsize=6, color=[f"C{i}" for i in range(len(names))])
    finite = means[np.isfinite(means)]
    if finite.size:
        ax.set_ylim(max(0.0, finite.min() - 2 * max(stds.max(), 0.5) - 1), 100)
    for i, m in enumerate(means):
        if np.isfinite(m):
            ax.annotate(f"{m:.2f}", (i, m + stds[i]), textcoords="offset points", xytext=(0, 4), ha="center")
    return fig


def shift_figure(stats: list[dict]) -> Figure:
    fig, ax = _new("Test accuracy on shifted digits (mean ± std over seeds)", "shift (pixels)", "test accuracy (%)")
    for s in stats:
        keys = [k for k in s if k.startswith("shift_")]
        x = [int(k.split("_")[1]) for k in keys]
        mean = np.array([100 * s[k][0] for k in keys])
        std = np.array([0.0 if math.isnan(s[k][1]) else 100 * s[k][1] for k in keys])
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=4, label=s["config"])
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend()
    return fig


def save(fig: Figure, path) -> pathlib.Path:
    """Write the figure as PNG atomically."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return pathlib.Path(path)


def plot_experiment(folder) -> list[pathlib.Path]:
    """Draw the four experiment figures from folder/results.csv and the run folders."""
    from minicnn.report import aggregate

    folder = pathlib.Path(folder)
    rows = read_table(folder / "results.csv", RESULT_COLUMNS, RESULT_NUMBERS)
    variants = list(dict.fromkeys(r["config"] for r in rows))
    stats = aggregate(rows, variants)
    metrics = {v: [read_table(folder / r["run_dir"] / "metrics.csv", METRIC_COLUMNS, METRIC_COLUMNS)
                   for r in rows
                   if r["config"] == v and (folder / r["run_dir"] / "metrics.csv").exists()]
               for v in variants}
    figures = [(val_accuracy_figure(metrics), "val_accuracy.png"), (test_accuracy_figure(stats), "test_accuracy.png"),
               (loss_figure(metrics), "loss.png")]
    if rows and shift_keys(rows):
        figures.append((shift_figure(stats), "shift_accuracy.png"))
    return [save(fig, folder / name) for fig, name in figures]


def plot_run(folder) -> list[pathlib.Path]:
    folder = pathlib.Path(folder)
    rows = read_table(folder / "metrics.csv", METRIC_COLUMNS, METRIC_COLUMNS)
    name = folder.name
    metrics = {name: [rows]}
    return [save(val_accuracy_figure(metrics), folder / "val_accuracy.png"),
            save(loss_figure(metrics), folder / "loss.png")]


def plot_folder(folder) -> list[pathlib.Path]:
    folder = pathlib.Path(folder)
    if (folder / "results.csv").exists():
        return plot_experiment(folder)
    if (folder / "metrics.csv").exists():
        return plot_run(folder)
    raise UserError(f"{folder}: neither an experiment folder (results.csv) nor a run folder (metrics.csv)")
