"""Aggregate run results per variant (and grid cell) and write results.csv and report.md.

A study with a grid (minicnn.grid) has a ``cell`` column in results.csv, the
cell's label; every statistic and comparison is taken within one cell, never
across cells (a variant on MNIST is not a seed of the same variant on
Fashion-MNIST).
"""
from __future__ import annotations

import math
import statistics

from minicnn.errors import UserError
from minicnn.files import read_table, write_csv, write_text
from minicnn.stats import interval, paired_differences, resolution_sentence

RESULT_FIELDS = ["config", "seed", "test_accuracy", "val_accuracy", "epochs", "params", "macs",
                 "receptive_field", "seconds_per_epoch", "images_per_second", "diverged"]
# columns written after the shifts when any row has them: the data set, the sha256 of what was
# loaded, and the BLAS library and kernel (minicnn.blas.describe) of each run's summary.json
PROVENANCE_FIELDS = ["dataset", "data_sha256", "blas"]
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
        out.append(stats)
    return out


def _true(value) -> bool:
    return value is True or str(value).lower() == "true"


def write_results(path, rows: list[dict]) -> None:
    provenance = [k for k in PROVENANCE_FIELDS if any(k in r for r in rows)]
    fields = ["cell"] * bool(cell_labels(rows)) + RESULT_FIELDS + shift_keys(rows) + provenance + ["run_dir"]
    write_csv(path, rows, fields)


def compared_metrics(rows: list[dict]) -> list[tuple[str, str]]:
    """(column, label) of the metrics the paired comparison covers: test accuracy and each
    shifted-digit accuracy (shift_0 is the test accuracy again, so it is left out)."""
    return [("test_accuracy", "test accuracy")] + [(k, f"shift {k.split('_')[1]} px")
                                                   for k in shift_keys(rows) if k != "shift_0"]


def paired_section(rows: list[dict], variants: list[str], level: str = "##") -> list[str]:
    """report.md's lines comparing every variant with the first by paired differences over seeds
    (``rows`` of one grid cell), under a heading of ``level``; [] with fewer than two seeds or variants."""
    seeds = {int(r["seed"]) for r in rows}
    present = [v for v in variants if any(r["config"] == v for r in rows)]
    if len(seeds) < 2 or len(present) < 2 or present[0] != variants[0]:
        return []
    metrics = compared_metrics(rows)
    diffs = {column: paired_differences(rows, variants, column) for column, _ in metrics}
    base = variants[0]
    head = ["variant", "seeds paired"] + [label for _, label in metrics]
    lines = [
        f"{level} Paired differences to {base}",
        "",
        f"Each variant minus {base} on the same seed (same initial draw and batch order), in percentage",
        "points: mean over the seeds both finished without diverging, and its 95% confidence interval",
        "[low, high] from Student's t with n - 1 degrees of freedom. A difference is resolved when its",
        "interval excludes 0.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for i, variant in enumerate(variants[1:]):
        first = diffs["test_accuracy"][i]
        cells = [variant, str(first.n)] + [interval(diffs[column][i]) for column, _ in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for column, label in metrics:
        lines += [resolution_sentence(diffs[column], label[0].upper() + label[1:]), ""]
    return lines


def provenance_lines(rows: list[dict]) -> list[str]:
    """Which data (name, sha256) and which BLAS (library, kernel, threads) the runs used."""
    lines = []
    for key, label in (("dataset", "Data set"), ("data_sha256", "sha256 of the data loaded"),
                       ("blas", "BLAS")):
        counts = {}
        for r in rows:
            if r.get(key) not in (None, ""):
                counts[r[key]] = counts.get(r[key], 0) + 1
        if counts:
            lines.append(f"{label}: " + "; ".join(f"{v} ({n} run{'s' if n != 1 else ''})"
                                                 for v, n in counts.items()) + ".")
    return lines + [""] if lines else []


def _pct(mean: float, std: float | None = None) -> str:
    if math.isnan(mean):
        return "–"
    if std is None:
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if not math.isnan(std) else f"{100 * mean:.2f}"


def report_table(stats: list[dict]) -> str:
    """The markdown table of report.md (also shown in the README)."""
    shifts = [k for k in stats[0] if k.startswith("shift_")] if stats else []
    head = (["variant", "test accuracy % (mean ± std)", "runs", "params", "MACs / image",
             "RF of last spatial layer", "s / epoch", "images / s"]
            + [f"shift {k.split('_')[1]} px" for k in shifts])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in stats:
        runs = f"{s['runs']}" + (f" ({s['diverged']} diverged)" if s["diverged"] else "")
        cells = [s["config"], _pct(s["test_mean"], s["test_std"]), runs, f"{s['params']:,}",
                 f"{s['macs']:,}", s["receptive_field"] or "–", f"{s['seconds_per_epoch']:.1f}",
                 f"{s['images_per_second']:,.0f}"] + [_pct(*s[k]) for k in shifts]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def grid_overview(rows: list[dict], variants: list[str], stats: list[dict]) -> list[str]:
    """report.md's summary of a study with a grid: test accuracy per variant (rows) and cell
    (columns), then each variant's paired difference to the first, cell by cell."""
    cells = cell_labels(rows)
    found = {(s["cell"], s["config"]): s for s in stats}
    lines = ["## Summary over the grid cells", "",
             "Test accuracy % (mean ± std over seeds) per cell; each cell is a section below.", "",
             "| variant | " + " | ".join(cells) + " |", "|" + "---|" * (len(cells) + 1)]
    for v in variants:
        means = [_pct(found[c, v]["test_mean"], found[c, v]["test_std"]) if (c, v) in found else "–" for c in cells]
        lines.append(f"| {v} | " + " | ".join(means) + " |")
    lines.append("")
    diffs = {c: paired_differences(in_cell(rows, c), variants) for c in cells}
    if len(variants) > 1 and any(d.n > 1 for c in cells for d in diffs[c]):
        lines += [f"Test accuracy minus {variants[0]}'s on the same seed, percentage points, mean [95% CI] "
                  "(Student's t; resolved when the interval excludes 0):", "",
                  "| variant | " + " | ".join(cells) + " |", "|" + "---|" * (len(cells) + 1)]
        for i, v in enumerate(variants[1:]):
            lines.append(f"| {v} | " + " | ".join(interval(diffs[c][i]) for c in cells) + " |")
        lines.append("")
    return lines


def write_report(path, exp, stats: list[dict], rows: list[dict]) -> None:
    """report.md from the result rows and their ``aggregate`` statistics: one table (and paired
    comparison) for the study, or with a grid a summary and then one section per cell."""
    seeds = sorted({int(r["seed"]) for r in rows})
    epochs = sorted({int(r["epochs"]) for r in rows})
    cells = cell_labels(rows)
    if cells:
        body = grid_overview(rows, exp.variants, stats)
        for cell in cells:
            body += [f"## {cell}", "", report_table([s for s in stats if s["cell"] == cell]), "",
                     *paired_section(in_cell(rows, cell), exp.variants, level="###")]
    else:
        body = [report_table(stats) if stats else "(no finished runs)", "", *paired_section(rows, exp.variants)]
    grid_text = f" in {len(cells)} grid cells" if cells else ""
    text = [
        f"# {exp.name}",
        "",
        f"Experiment file `{exp.file}`: {len(exp.variants)} variants x seeds {seeds}{grid_text}, "
        f"{'/'.join(map(str, epochs))} epoch{'' if epochs == [1] else 's'}; {len(rows)} of {len(exp.runs)} runs finished.",
        "",
        "Test accuracy is the mean over seeds ± the sample standard deviation (n - 1) over",
        "seeds; diverged runs are counted in `runs` and left out of the accuracies.",
        "Shift k px: test accuracy on the test images moved by k pixels in a fixed random",
        "direction per image (one of 8), zero fill. MACs: multiply-accumulates per image in",
        "forward. RF: receptive field of the last layer that still has a spatial map.",
        "Seconds per epoch and images per second are training only (no evaluation), mean over seeds.",
        "",
        *body,
        *provenance_lines(rows),
        "Figures: `val_accuracy.png`, `test_accuracy.png`, `shift_accuracy.png`, `loss.png`,",
        "`accuracy_vs_macs.png`, and `confusion.png` when the runs saved confusion matrices.",
        "",
    ]
    write_text(path, "\n".join(text))
