"""Figures of runs and studies, PNG via the Agg canvas: from the live objects the API gives
(a History from ``fit`` or ``load_run``, a Study from ``load_study``) or from their folders.

``plot_history`` and ``plot_study`` draw the live objects; ``plot_folder(DIR)`` reads an
experiment folder (results.csv plus run folders) or a single run folder (metrics.csv) into
those same objects and draws them the same way.  Each ``*_figure`` function takes plain data
and returns a matplotlib Figure, so tests can inspect the series drawn.

A study with a grid (results.csv's ``cell`` column) gets one panel per cell in
every figure, titled by the cell's label: statistics, curves and confusion
matrices are never pooled across cells.  Stats carry their cell (``aggregate``);
curves are keyed by (cell, variant) instead of variant.  A variant keeps its
colour in every panel.
"""
from __future__ import annotations

import math
import pathlib

import numpy as np
import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, NullFormatter
from matplotlib.transforms import Bbox

from minicnn.confusion import read_run, row_normalised
from minicnn.errors import UserError
from minicnn.files import atomic_open, read_table
from minicnn.results import Study, aggregate, cell_labels, read_results, shift_keys
from minicnn.runs import History

FIGSIZE = (6.4, 4.2)
# the columns of metrics.csv the figures read, all numbers
METRIC_COLUMNS = ("val_accuracy", "train_loss", "val_loss")


def _new(title: str, xlabel: str, ylabel: str):
    fig = Figure(figsize=FIGSIZE, dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _panels(title: str, xlabel: str, ylabel: str, cells: list[str]):
    """(figure, one axes per cell): a single axes titled ``title`` for [""] (no grid), else a grid of
    panels titled by cell under ``title``, two per row."""
    if cells == [""]:
        fig, ax = _new(title, xlabel, ylabel)
        return fig, [ax]
    cols = min(len(cells), 2)
    rows = math.ceil(len(cells) / cols)
    fig = Figure(figsize=(FIGSIZE[0] * cols, FIGSIZE[1] * rows + 0.4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title)
    axes = []
    for i, cell in enumerate(cells):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_title(cell)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        axes.append(ax)
    return fig, axes


def _colour(i: int):
    """The i-th variant's colour: matplotlib's ten default colours, then ten darker ones of
    tab20b (a family study has more than ten variants; "C10" would repeat "C0")."""
    extra = matplotlib.colormaps["tab20b"].colors[::2]
    palette = [f"C{k}" for k in range(10)] + list(extra)
    return palette[i % len(palette)]


def _legend(ax) -> None:
    """The legend inside the panel for a few series; beside it for more than eight, where it
    would cover the curves."""
    if len(ax.get_legend_handles_labels()[1]) > 8:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    else:
        ax.legend()


def _split(items: dict) -> tuple[dict[str, dict], dict[str, str]]:
    """({cell: {variant: item}}, {variant: colour}) from items keyed by variant (cell "") or by
    (cell, variant); colours follow the variants' first appearance."""
    by_cell, colours = {}, {}
    for key, item in items.items():
        cell, variant = key if isinstance(key, tuple) else ("", key)
        by_cell.setdefault(cell, {})[variant] = item
        colours.setdefault(variant, _colour(len(colours)))
    return by_cell or {"": {}}, colours


def _split_stats(stats: list[dict]) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """({cell: [stats of its variants]}, {variant: colour}) from ``aggregate``'s list."""
    by_cell, colours = {}, {}
    for s in stats:
        by_cell.setdefault(s.get("cell", ""), []).append(s)
        colours.setdefault(s["config"], _colour(len(colours)))
    return by_cell or {"": []}, colours


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
    """Mean ± std over seeds per epoch; ``metrics``: {variant or (cell, variant): [metrics rows per run]}."""
    by_cell, colours = _split(metrics)
    fig, axes = _panels("Validation accuracy per epoch (mean ± std over seeds)", "epoch", "validation accuracy (%)",
                        list(by_cell))
    for ax, cell_metrics in zip(axes, by_cell.values()):
        for variant, (x, mean, std) in _curves(cell_metrics, "val_accuracy").items():
            ax.plot(x, 100 * mean, marker="o", label=variant, color=colours[variant])
            ax.fill_between(x, 100 * (mean - std), 100 * (mean + std), color=colours[variant], alpha=0.2)
        ax.xaxis.get_major_locator().set_params(integer=True)
        _legend(ax)
    return fig


def loss_figure(metrics) -> Figure:
    by_cell, colours = _split(metrics)
    fig, axes = _panels("Loss per epoch (solid: training, dashed: validation)", "epoch", "cross-entropy",
                        list(by_cell))
    for ax, cell_metrics in zip(axes, by_cell.values()):
        train, val = _curves(cell_metrics, "train_loss"), _curves(cell_metrics, "val_loss")
        for variant, (x, mean, _) in train.items():
            ax.plot(x, mean, marker="o", label=variant, color=colours[variant])
            if variant in val:
                ax.plot(val[variant][0], val[variant][1], linestyle="--", color=colours[variant])
        ax.set_yscale("log")
        ax.xaxis.get_major_locator().set_params(integer=True)
        _legend(ax)
    return fig


def test_accuracy_figure(stats: list[dict]) -> Figure:
    """One point per variant, mean ± std over seeds: points, not bars, because the axis shows
    only the range the means span, and a bar's length from a cut axis would misstate the ratios."""
    by_cell, colours = _split_stats(stats)
    fig, axes = _panels("Final test accuracy (mean ± std over seeds)", "variant", "test accuracy (%)", list(by_cell))
    for ax, cell_stats in zip(axes, by_cell.values()):
        names = [s["config"] for s in cell_stats]
        for i, s in enumerate(cell_stats):
            mean = 100 * s["test_mean"]
            std = 0.0 if math.isnan(s["test_std"]) else 100 * s["test_std"]
            ax.errorbar([i], [mean], yerr=[std], marker="o", markersize=8, capsize=6, label=s["config"],
                        color=colours[s["config"]])
            if np.isfinite(mean):
                ax.annotate(f"{mean:.2f}", (i, mean), textcoords="offset points", xytext=(12, -4))
        # more than a few names side by side would run into each other: slant them
        ax.set_xticks(range(len(names)), names, rotation=40 if len(names) > 5 else 0,
                      ha="right" if len(names) > 5 else "center")
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.margins(y=0.15)
    return fig


def shift_figure(stats: list[dict]) -> Figure:
    by_cell, colours = _split_stats(stats)
    fig, axes = _panels("Test accuracy on shifted test images (mean ± std over seeds)", "shift (pixels)",
                        "test accuracy (%)", list(by_cell))
    for ax, cell_stats in zip(axes, by_cell.values()):
        for s in cell_stats:
            keys = [k for k in s if k.startswith("shift_")]
            x = [int(k.split("_")[1]) for k in keys]
            mean = np.array([100 * s[k][0] for k in keys])
            std = np.array([0.0 if math.isnan(s[k][1]) else 100 * s[k][1] for k in keys])
            ax.errorbar(x, mean, yerr=std, marker="o", capsize=4, label=s["config"], color=colours[s["config"]])
        ax.xaxis.get_major_locator().set_params(integer=True)
        _legend(ax)
    return fig


def accuracy_vs_macs_figure(stats: list[dict]) -> Figure:
    """One labelled point per variant (per panel: grid cell): test accuracy (mean ± std over seeds)
    against MACs per image."""
    by_cell, colours = _split_stats(stats)
    fig, axes = _panels("Test accuracy against compute (mean ± std over seeds)", "MACs per image (log scale)",
                        "test accuracy (%)", list(by_cell))
    for ax, cell_stats in zip(axes, by_cell.values()):
        _macs_panel(fig, ax, cell_stats, colours)
    return fig


def _macs_panel(fig: Figure, ax, stats: list[dict], colours: dict[str, str]) -> None:
    points = [(s["config"], s["macs"], 100 * s["test_mean"], 100 * s["test_std"])
              for s in stats if not math.isnan(s["test_mean"])]  # std is nan with one seed
    for name, macs, mean, std in points:
        ax.errorbar([macs], [mean], yerr=None if math.isnan(std) else [std], marker="o", markersize=7, capsize=5,
                    color=colours[name])
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 2M, 5M, 10M: no crowded 3x10^6 4x10^6
    ax.xaxis.set_minor_formatter(NullFormatter())
    if points:
        xs = [p[1] for p in points]
        ax.set_xlim(min(xs) / 2.5, max(xs) * 3)  # room for the labels beside the points
        ys = [p[2] for p in points]
        pad = max(0.5, (max(ys) - min(ys)) * 0.15, *(2 * p[3] for p in points if not math.isnan(p[3])))
        ax.set_ylim(min(ys) - pad, max(ys) + pad)
    _label_points(fig, ax, [(f"{name} {mean:.2f}" + ("" if math.isnan(std) else f" ± {std:.2f}"), macs, mean,
                             0.0 if math.isnan(std) else std, colours[name])
                            for name, macs, mean, std in points])


def _label_points(fig: Figure, ax, labels: list[tuple[str, float, float, float, str]]) -> None:
    """Write each (text, x, y, error bar half height, colour) beside its point, at the first of a
    few places where it covers no other label, point or error bar (variants with equal MACs share
    a vertical line) and stays inside the axes."""
    renderer = fig.canvas.get_renderer()
    fig.draw_without_rendering()  # final limits and layout, so text extents are where they end up
    frame = ax.get_window_extent(renderer)
    placed = []
    for _, x, y, err, _ in labels:
        (x0, y0), (x1, y1) = ax.transData.transform([(x, y - err), (x, y + err)])
        placed.append(Bbox([[x0 - 7, y0 - 7], [x1 + 7, y1 + 7]]))
    places = [((8, 6), "left"), ((8, -14), "left"), ((-8, 6), "right"), ((-8, -14), "right"),
              ((8, 20), "left"), ((8, -28), "left"), ((-8, 20), "right"), ((-8, -28), "right")]
    for text, x, y, _, colour in labels:
        for offset, align in places:
            label = ax.annotate(text, (x, y), textcoords="offset points", xytext=offset, ha=align,
                                color=colour, fontsize=9)
            box = label.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed) or (offset, align) == places[-1]:
                placed.append(box)
                break
            label.remove()


def confusion_figure(matrices: dict, classes) -> Figure:
    """One row-normalised confusion matrix per variant (counts summed over its seeds, then each
    true-class row divided by its total: the mean over seeds, as every seed uses the same test set).

    ``matrices``: {variant: [counts (K, K) per run]} and ``classes`` the K names; with a grid
    {(cell, variant): [...]} and {cell: names}, one row of panels per cell.
    """
    by_cell, colours = _split(matrices)
    columns = list(colours)  # the variants, in order: a grid's column of panels is one variant
    names_of = classes if isinstance(classes, dict) else {"": classes}
    panels = [(cell, name, runs) for cell, variants in by_cell.items() for name, runs in variants.items()]
    most = max(len(names_of[cell]) for cell in by_cell)
    if list(by_cell) == [""]:
        cols = min(len(panels), 2)
        rows, size = max(1, math.ceil(len(panels) / cols)), 4.6 if most <= 10 else 6.0
    else:
        cols, rows, size = len(columns), len(by_cell), 3.9 if most <= 10 else 5.2
    fig = Figure(figsize=(size * cols + 0.8, size * rows + 0.4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle("Confusion on the test set (row-normalised: share of each true class, mean over seeds)")
    image = None
    for i, (cell, name, runs) in enumerate(panels):
        classes = names_of[cell]
        ticks = np.arange(len(classes))
        where = list(by_cell).index(cell) * cols + columns.index(name) + 1 if cell else i + 1
        ax = fig.add_subplot(rows, cols, where)
        share = row_normalised(np.sum(runs, axis=0))
        # a log scale from 0.1 %: at 99 % accuracy the errors are what a reader looks for
        image = ax.imshow(np.ma.masked_less(100 * share, 0.05), cmap="Blues", norm=LogNorm(0.1, 100))
        ax.set_title((f"{cell}\n" if cell else "") + f"{name} ({len(runs)} seed{'s' if len(runs) != 1 else ''})",
                     fontsize=None if not cell else 10)
        ax.set_xticks(ticks, classes, rotation=60 if max(map(len, classes)) > 2 else 0, ha="right"
                      if max(map(len, classes)) > 2 else "center", fontsize=8)
        ax.set_yticks(ticks, classes, fontsize=8)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        if len(classes) <= 12:
            for (t, p), value in np.ndenumerate(100 * share):
                if value >= 0.05:
                    ax.text(p, t, f"{value:.0f}" if value >= 9.5 else f"{value:.1f}", ha="center", va="center",
                            fontsize=7 if len(classes) <= 10 else 6, color="white" if value > 20 else "black")
    if image is not None:
        bar = fig.colorbar(image, ax=fig.axes, shrink=0.6, label="% of the true class (log scale; blank: under 0.05 %)")
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    return fig


VERDICT_COLOURS = {"supported": "tab:green", "contradicted": "tab:red"}   # else: not resolved, grey


def claims_figure(tested) -> Figure:
    """Forest plot of the claims (minicnn.study.claims.tested): one panel per claim, in the file's order,
    each on its own scale (a claim about a 0.3-point margin next to one about 40 points), one row
    per grid cell: the paired difference (percentage points) with its 95% CI, a line at 0, dotted
    lines at the margin of an equal / not_lower claim; colour: the verdict."""
    claims_in = {}
    for t in tested:
        claims_in.setdefault(t.number, []).append(t)
    groups = list(claims_in.values())
    fig = Figure(figsize=(8.4, sum(0.38 * len(g) + 0.75 for g in groups) + 0.9), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle("Claims: paired difference variant - baseline over seeds, 95% CI (percentage points)")
    grid = fig.add_gridspec(len(groups), 1, height_ratios=[len(g) + 0.6 for g in groups]) if groups else None
    for i, group in enumerate(groups):
        ax = fig.add_subplot(grid[i])
        c = group[0].claim
        ax.set_title(f"{group[0].number}. {group[0].compared}: predicts {group[0].predicts}", fontsize=9, loc="left")
        ax.grid(True, axis="x", alpha=0.3)
        ax.axvline(0, color="black", linewidth=1)
        for y, t in enumerate(group):
            d, colour = t.difference, VERDICT_COLOURS.get(t.verdict, "tab:gray")
            if c.direction in ("equal", "not_lower"):
                for edge in (-c.margin, c.margin) if c.direction == "equal" else (-c.margin,):
                    ax.plot([100 * edge] * 2, [y - 0.4, y + 0.4], linestyle=":", color=colour)
            if d.n:
                low, high = (d.low, d.high) if d.n > 1 else (d.mean, d.mean)
                ax.errorbar([100 * d.mean], [y], xerr=[[100 * (d.mean - low)], [100 * (high - d.mean)]],
                            marker="o", capsize=4, color=colour)
        ax.set_yticks(range(len(group)), [(t.cell or "all runs") + ("" if t.difference.n else " (not measured)")
                                          for t in group], fontsize=8)
        ax.set_ylim(len(group) - 0.5, -0.5)
        ax.tick_params(axis="x", labelsize=8)
        ax.margins(x=0.15)
    handles = [Line2D([], [], marker="o", linestyle="", color=colour) for colour in (*VERDICT_COLOURS.values(), "tab:gray")]
    handles.append(Line2D([], [], linestyle=":", color="tab:gray"))
    fig.legend(handles, ["supported", "contradicted", "not resolved / not measured", "margin (equal, not lower)"],
               fontsize=8, loc="outside lower center", ncols=4)
    return fig


def save(fig: Figure, path) -> pathlib.Path:
    """Write the figure as PNG atomically."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return pathlib.Path(path)


def _key(row: dict):
    """A result row's series: its variant, or (cell, variant) in a study with a grid."""
    return (row["cell"], row["config"]) if row.get("cell") else row["config"]


def study_figures(study) -> dict[str, Figure]:
    """The figures of a study, {file name: Figure}, from the Study that ``load_study`` gives
    (its ``rows``, ``stats``, ``metrics`` and ``confusion``); ``plot_study`` saves them.

    val_accuracy.png and loss.png (curves per epoch, mean ± std over seeds), test_accuracy.png,
    accuracy_vs_macs.png, shift_accuracy.png (when the runs were evaluated on shifted images)
    and confusion.png (when the runs saved their confusion matrices).
    """
    figures = {"val_accuracy.png": val_accuracy_figure(study.metrics),
               "test_accuracy.png": test_accuracy_figure(study.stats),
               "loss.png": loss_figure(study.metrics), "accuracy_vs_macs.png": accuracy_vs_macs_figure(study.stats)}
    if study.rows and shift_keys(study.rows):
        figures["shift_accuracy.png"] = shift_figure(study.stats)
    if study.confusion is not None:
        figures["confusion.png"] = confusion_figure(*study.confusion)
    return figures


def history_figures(histories) -> dict[str, Figure]:
    """Validation accuracy and loss per epoch, {file name: Figure}, of one History (``fit``,
    ``load_run``) or of several to compare: {label: History, or [History per seed]}.

    Example::

        >>> import minicnn as mc
        >>> h = mc.History([{"epoch": 1, "val_accuracy": 0.9, "train_loss": 0.5, "val_loss": 0.4}])
        >>> sorted(mc.history_figures({"max pooling": h}))
        ['loss.png', 'val_accuracy.png']
    """
    if not isinstance(histories, dict):
        histories = {"run": histories}
    metrics = {name: [r.rows for r in (h if isinstance(h, (list, tuple)) else [h])] for name, h in histories.items()}
    return {"val_accuracy.png": val_accuracy_figure(metrics), "loss.png": loss_figure(metrics)}


def save_all(figures: dict[str, Figure], folder) -> list[pathlib.Path]:
    """Write {file name: Figure} into ``folder`` as PNG files; their paths."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [save(fig, folder / name) for name, fig in figures.items()]


def plot_history(histories, out=None) -> dict[str, Figure]:
    """Draw ``history_figures(histories)``; with ``out``, also save them there as PNG files.

    Example::

        >>> import minicnn as mc
        >>> h = mc.History([{"epoch": 1, "val_accuracy": 0.9, "train_loss": 0.5, "val_loss": 0.4}])
        >>> figures = mc.plot_history(h)     # in a notebook, figures["loss.png"] shows itself
        >>> figures["val_accuracy.png"].axes[0].get_ylabel()
        'validation accuracy (%)'
    """
    figures = history_figures(histories)
    if out is not None:
        save_all(figures, out)
    return figures


def plot_study(study, out=None) -> dict[str, Figure]:
    """Draw ``study_figures(study)`` for a Study (``load_study``); with ``out``, also save them
    there as PNG files (``minicnn plot`` saves them into the study's folder)."""
    figures = study_figures(study)
    if out is not None:
        save_all(figures, out)
    return figures


def read_study(folder) -> Study:
    """A study folder's results.csv, the statistics per cell and variant, the runs' metrics and
    confusion matrices: everything the figures draw (``load_study`` adds the paired differences)."""
    folder = pathlib.Path(folder)
    rows = read_results(folder / "results.csv")
    variants = list(dict.fromkeys(r["config"] for r in rows))
    metrics = {}
    for r in rows:
        runs = metrics.setdefault(_key(r), [])
        if (folder / r["run_dir"] / "metrics.csv").exists():
            runs.append(read_table(folder / r["run_dir"] / "metrics.csv", METRIC_COLUMNS, METRIC_COLUMNS))
    return Study(folder, rows, variants, aggregate(rows, variants), metrics, _confusions(folder, rows))


def plot_experiment(folder) -> list[pathlib.Path]:
    """Draw the experiment figures from folder/results.csv and the run folders, into the folder."""
    return save_all(study_figures(read_study(folder)), folder)


def _confusions(folder: pathlib.Path, rows: list[dict]):
    """({variant: [counts per run]}, class names) from the runs' summary.json (minicnn.confusion),
    with a grid ({(cell, variant): [...]}, {cell: class names}); None when no run saved one.
    Diverged runs are left out, as in the accuracy statistics, and so are runs whose folder is
    not there (a study's committed results.csv without its run folders)."""
    matrices, classes = {}, {}
    for r in rows:
        gone = not (folder / r["run_dir"]).is_dir()
        found = None if gone or str(r["diverged"]).lower() == "true" else read_run(folder / r["run_dir"])
        if found is None:
            continue
        counts, names = found
        known = classes.setdefault(r.get("cell") or "", names)
        if names != known:
            raise UserError(f"{folder / r['run_dir'] / 'summary.json'}: classes {names[:12]} differ from "
                            f"another run's {known[:12]}" + (f" in the cell {r['cell']}" if r.get("cell") else "")
                            + ": not one study")
        matrices.setdefault(_key(r), []).append(counts)
    if not matrices:
        return None
    return matrices, classes if cell_labels(rows) else classes[""]


def plot_run(folder) -> list[pathlib.Path]:
    """val_accuracy.png and loss.png of a run folder, from its metrics.csv, into the folder."""
    folder = pathlib.Path(folder)
    rows = read_table(folder / "metrics.csv", METRIC_COLUMNS, METRIC_COLUMNS)
    return save_all(history_figures({folder.name: History(rows)}), folder)


def plot_folder(folder) -> list[pathlib.Path]:
    """``minicnn plot``: the figures of an experiment folder (results.csv) or a run folder (metrics.csv)."""
    folder = pathlib.Path(folder)
    if (folder / "results.csv").exists():
        return plot_experiment(folder)
    if (folder / "metrics.csv").exists():
        return plot_run(folder)
    raise UserError(f"{folder}: neither an experiment folder (results.csv) nor a run folder (metrics.csv)")
