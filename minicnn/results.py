"""A study's result rows (one dict per run, as results.csv holds them) and their statistics per
grid cell and variant: what report.md and the figures both read.

A study with a grid has a ``cell`` column, the cell's label; every statistic is
taken within one cell, never across cells.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import statistics

from minicnn import probes
from minicnn.errors import UserError
from minicnn.files import read_table

# the columns the figures read: every results.csv has them
RESULT_COLUMNS = ("config", "test_accuracy", "params", "macs", "receptive_field", "seconds_per_epoch",
                  "images_per_second", "diverged", "run_dir")
# what read_results makes of each column it checks (shift_K columns are fractions too)
RESULT_KINDS = {"seed": "count", "test_accuracy": "fraction", "val_accuracy": "fraction", "epochs": "count",
                "params": "count", "macs": "count", "seconds_per_epoch": "number",
                "images_per_second": "number", "diverged": "bool"}
_EXPECTED = {"fraction": "an accuracy in [0, 1], nan or empty", "number": "a finite number >= 0, nan or empty",
             "count": "an integer >= 0", "bool": "True or False"}


def read_results(path) -> list[dict]:
    """The rows of a study's results.csv with their values typed (``RESULT_KINDS``: accuracies
    and timings float, nan where empty; counts int; diverged bool; a shift_K float, or None
    where the run has none); UserError naming the file, line and column of a value that is
    not what ``write_results`` writes."""
    rows = read_table(path, RESULT_COLUMNS)
    for line, row in enumerate(rows, start=2):
        for column in row:
            kind = RESULT_KINDS.get(column, "fraction" if column.startswith("shift_") else None)
            if kind is not None:
                try:
                    row[column] = _typed(row[column], kind)
                except ValueError:
                    raise UserError(f"{path}: line {line}, column {column}: expected {_EXPECTED[kind]}, "
                                    f"got {str(row[column])[:50]!r}") from None
                if column.startswith("shift_") and math.isnan(row[column]):
                    row[column] = None
    return rows


def _typed(text, kind: str):
    text = (text or "").strip()
    if kind == "bool":
        if text.lower() not in ("true", "false"):
            raise ValueError(text)
        return text.lower() == "true"
    value = float(text) if text else math.nan  # ValueError for words
    if kind == "count":
        if not (math.isfinite(value) and value >= 0 and value.is_integer()):
            raise ValueError(text)
        return int(value)  # "421642.0", as a spreadsheet may save it, is 421642
    if not (math.isnan(value) or math.isfinite(value) and value >= 0 and (kind != "fraction" or value <= 1)):
        raise ValueError(text)
    return value


@dataclasses.dataclass
class Study:
    """A study's results read back (``load_study``).

    ``rows``: results.csv, one dict per run; ``variants``: the configs in order;
    ``stats``: per grid cell and variant, mean and std over seeds (``aggregate``);
    ``metrics``: {variant, or (cell, variant): [metrics rows of each run]};
    ``confusion``: the runs' confusion matrices and class names (None if none saved);
    ``differences``: {cell: [paired difference of each variant to the first, test accuracy]},
    "" the cell of a study without a grid.
    """

    folder: pathlib.Path
    rows: list[dict]
    variants: list[str]
    stats: list[dict]
    metrics: dict
    confusion: tuple | None
    differences: dict = dataclasses.field(default_factory=dict)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); std is nan for fewer than two values."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def shift_keys(rows: list[dict]) -> list[str]:
    keys = {k for r in rows for k in r if k.startswith("shift_")}
    return sorted(keys, key=lambda k: int(k.split("_")[1]))


def cell_labels(rows: list[dict]) -> list[str]:
    """The grid cells' labels in the order of the rows (results.csv's ``cell``); [] without a grid."""
    return list(dict.fromkeys(r["cell"] for r in rows if r.get("cell") not in (None, "")))


def in_cell(rows: list[dict], cell: str) -> list[dict]:
    """The rows of one grid cell ("": a study without a grid)."""
    return [r for r in rows if (r.get("cell") or "") == cell]


def aggregate(rows: list[dict], variants: list[str]) -> list[dict]:
    """One dict per grid cell and variant (cell by cell, variants in ``variants`` order) with
    statistics over its seeds; ``cell`` is the cell's label, "" without a grid.

    Diverged runs are counted but left out of the accuracy statistics.
    """
    out = []
    for cell, name in [(c, v) for c in cell_labels(rows) or [""] for v in variants]:
        runs = [r for r in in_cell(rows, cell) if r["config"] == name]
        if not runs:
            continue
        ok = [r for r in runs if not _true(r["diverged"])]
        stats = {"cell": cell, "config": name, "runs": len(runs), "diverged": len(runs) - len(ok),
                 "params": int(runs[0]["params"]), "macs": int(runs[0]["macs"]),
                 "receptive_field": runs[0]["receptive_field"]}
        stats["test_mean"], stats["test_std"] = mean_std([float(r["test_accuracy"]) for r in ok])
        stats["seconds_per_epoch"] = mean_std([float(r["seconds_per_epoch"]) for r in runs])[0]
        stats["images_per_second"] = mean_std([float(r["images_per_second"]) for r in runs])[0]
        for key in shift_keys(runs):
            stats[key] = mean_std([float(r[key]) for r in ok if r.get(key) not in (None, "")])
        for key in probes.columns({k for r in runs for k in r}):  # None: not measured (a canvas the model refuses)
            values = [float(r[key]) for r in ok if r.get(key) not in (None, "")]
            stats[key] = mean_std(values) if values else None
        out.append(stats)
    return out


def _true(value) -> bool:
    return value is True or str(value).lower() == "true"
