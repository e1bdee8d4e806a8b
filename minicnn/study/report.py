"""Aggregate run results per variant (and grid cell) and write results.csv and report.md.

A study with a grid (minicnn.study.grid) has a ``cell`` column in results.csv, the
cell's label; every statistic and comparison is taken within one cell, never
across cells (a variant on MNIST is not a seed of the same variant on
Fashion-MNIST).
"""
from __future__ import annotations

import math

from minicnn import probes
from minicnn.files import write_csv, write_text
from minicnn.results import cell_labels, in_cell, shift_keys
from minicnn.study import claims
from minicnn.study.stats import interval, paired_differences, resolution_sentence

RESULT_FIELDS = ["config", "seed", "test_accuracy", "val_accuracy", "epochs", "params", "macs",
                 "receptive_field", "seconds_per_epoch", "images_per_second", "diverged"]
# columns written after the shifts when any row has them: the data set, the sha256 of what was
# loaded, and the BLAS library and kernel (minicnn.blas.describe) of each run's summary.json
PROVENANCE_FIELDS = ["dataset", "data_sha256", "blas"]
def write_results(path, rows: list[dict]) -> None:
    provenance = [k for k in PROVENANCE_FIELDS if any(k in r for r in rows)]
    fields = (["cell"] * bool(cell_labels(rows)) + RESULT_FIELDS + shift_keys(rows)
              + probes.columns({k for r in rows for k in r}) + provenance + ["run_dir"])
    write_csv(path, rows, fields)


def compared_metrics(rows: list[dict]) -> list[tuple[str, str]]:
    """(column, label) of the metrics the paired comparison covers: test accuracy and each
    shifted-digit accuracy (shift_0 is the test accuracy again, so it is left out)."""
    return [("test_accuracy", "test accuracy")] + [(k, f"shift {k.split('_')[1]} px")
                                                   for k in shift_keys(rows) if k != "shift_0"]


def probe_metrics(rows: list[dict]) -> list[tuple[str, str]]:
    """(column, label) of the probes (minicnn.probes) the rows hold, all but their seconds."""
    return [(k, probes.label(k)) for k in probes.columns({k for r in rows for k in r}) if k != "probe_seconds"]


def probe_section(rows: list[dict], stats: list[dict], variants: list[str], level: str = "##") -> list[str]:
    """report.md's probes (minicnn.probes) of one grid cell's ``rows`` and ``stats``: their means ±
    std over seeds per variant (n/a for a model that cannot take a canvas), then with two or more
    seeds each variant's paired difference to the first; [] when the runs have no probes."""
    keys = probes.columns({k for s in stats for k in s})
    if not keys:
        return []
    lines = [f"{level} Probes", "", "Percentages, mean ± std over seeds; probe seconds: wall time per run.", "",
             "| variant | " + " | ".join(probes.label(k) for k in keys) + " |", "|" + "---|" * (len(keys) + 1)]
    for s in stats:
        cells = ["n/a" if s.get(k) is None else f"{s[k][0]:.1f}" if k == "probe_seconds" else _pct(*s[k])
                 for k in keys]
        lines.append(f"| {s['config']} | " + " | ".join(cells) + " |")
    lines.append("")
    compared = probe_metrics(rows)
    present = [v for v in variants if any(r["config"] == v for r in rows)]
    if len({int(r["seed"]) for r in rows}) < 2 or len(present) < 2 or present[0] != variants[0] or not compared:
        return lines
    found = [paired_differences(rows, variants, column) for column, _ in compared]
    lines += [f"Each variant minus {variants[0]} on the same seed, percentage points, mean [95% CI] (Student's t; "
              "resolved when the interval excludes 0; n/a: not measured for the variant):", "",
              "| variant | " + " | ".join(label for _, label in compared) + " |",
              "|" + "---|" * (len(compared) + 1)]
    for i, variant in enumerate(variants[1:]):
        lines.append(f"| {variant} | " + " | ".join(interval(d[i]) if d[i].n else "n/a" for d in found) + " |")
    return lines + [""]


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


PROBES_TEXT = [
    "Probes (minicnn.probes, on the final model and the first eval.probe_images test images, the same draws",
    "for every run): shift consistency is the share of those images given the same class under two random",
    "moves of up to eval.consistency_shift px",
    "per axis; Gaussian sigma s and salt & pepper p are test accuracies with that noise added (pixels in",
    "[0, 1], clipped; p of the pixels set to 0 or 1); canvas SxS is test accuracy with each test image at",
    "a random place on an SxS black canvas, n/a for a model whose layers take only its input size; train",
    "accuracy (inference) is on the first eval.gap_images training images, and the generalisation gap is",
    "it minus test accuracy. Probe seconds: their wall time per run.",
]


def write_report(path, exp, stats: list[dict], rows: list[dict]) -> None:
    """report.md from the result rows and their ``aggregate`` statistics: one table (and paired
    comparison) for the study, or with a grid a summary and then one section per cell."""
    seeds = sorted({int(r["seed"]) for r in rows})
    epochs = sorted({int(r["epochs"]) for r in rows})
    cells = cell_labels(rows)
    if cells:
        body = grid_overview(rows, exp.variants, stats)
        for cell in cells:
            here = [s for s in stats if s["cell"] == cell]
            body += [f"## {cell}", "", report_table(here), "",
                     *paired_section(in_cell(rows, cell), exp.variants, level="###"),
                     *probe_section(in_cell(rows, cell), here, exp.variants, level="###")]
    else:
        body = [report_table(stats) if stats else "(no finished runs)", "", *paired_section(rows, exp.variants),
                *probe_section(rows, stats, exp.variants)]
    body += claims.section(rows, getattr(exp, "claims", ()))  # an Experiment; a test's stand-in may have none
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
        *(PROBES_TEXT if probe_metrics(rows) else []),
        "",
        *body,
        *provenance_lines(rows),
        "Figures: `val_accuracy.png`, `test_accuracy.png`, `shift_accuracy.png`, `loss.png`,",
        "`accuracy_vs_macs.png`, `confusion.png` when the runs saved confusion matrices, and",
        "`claims.png` (each claim's paired difference and CI) when the experiment file has claims.",
        "",
    ]
    write_text(path, "\n".join(text))
