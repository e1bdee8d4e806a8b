"""What pooling keeps, drawn for a trained network: ``minicnn show RUN_OR_EXPERIMENT_DIR``.

For N test images: the input, each conv block's feature maps (a Conv2D and the
ReLU after it) and each pooling layer's output, in ``features.png``; for max
pooling, the switches (the input position each output took, Zeiler and
Fergus's deconvnet switches; the max-pooling figure of CS231n) drawn as dots
over the pooling layer's input map, with the pooling windows as a grid, in
``switches.png``.  For a study, one row per variant (its first run), on the
same images.  The PNGs go into the folder, next to the other figures.
"""
from __future__ import annotations

import pathlib

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from minicnn import data as datasets
from minicnn.errors import UserError
from minicnn.layers import Conv2D, MaxPool2D, MinPool2D, ReLU
from minicnn.plots import read_table, save_all
from minicnn.runs import load_run

MAPS = 4          # feature maps shown per stage, as a 2x2 mosaic
CELL = 1.9        # inches per panel


def stages(model, x: np.ndarray) -> list[tuple[str, object, np.ndarray, np.ndarray]]:
    """(label, layer, its input, its output) of every stage worth drawing, in order: the input
    (layer None), each conv block (a Conv2D, with the ReLU after it) and each pooling layer, as
    long as the activations are (N, C, H, W) maps; a global pooling layer's (N, C) output ends
    them, given as one (N, 1, r, C / r) map (r the largest divisor of C up to its square root).

    Example::

        >>> import numpy as np, minicnn as mc
        >>> from minicnn.featuremaps import stages
        >>> model = mc.Sequential([mc.Conv2D(1, 2, 3, padding=1), mc.ReLU(), mc.MaxPool2D(2),
        ...                        mc.Flatten(), mc.Dense(out_features=3)], (1, 6, 6), seed=0)
        >>> [label for label, *_ in stages(model, np.zeros((1, 1, 6, 6), np.float32))]
        ['input', 'conv block 1', 'MaxPool2D']
    """
    x = datasets.to_float32(x)
    out = [("input", None, x, x)]
    blocks = 0
    layers = model.layers
    i = 0
    while i < len(layers) and x.ndim == 4:
        layer, before = layers[i], x
        x = layer.forward(x, training=False)
        if isinstance(layer, Conv2D):
            if i + 1 < len(layers) and isinstance(layers[i + 1], ReLU):
                i += 1
                x = layers[i].forward(x, training=False)
            blocks += 1
            out.append((f"conv block {blocks}", layer, before, x))
        elif "Pool" in type(layer).__name__:
            # a global pooling's (N, C) vector is drawn as one (rows, C / rows) map
            rows = max(d for d in range(1, int(np.sqrt(x.shape[1])) + 1) if x.shape[1] % d == 0)
            out.append((type(layer).__name__, layer, before,
                        x if x.ndim == 4 else x.reshape(len(x), 1, rows, x.shape[1] // rows)))
        i += 1
    return out


def _mosaic(maps: np.ndarray) -> np.ndarray:
    """(C, H, W) -> the first MAPS maps tiled 2x2 (one pixel of gap, nan), each scaled to [0, 1]."""
    c, h, w = maps.shape
    tile = np.full((2 * h + 1, 2 * w + 1), np.nan)
    for k in range(min(c, MAPS)):
        m = maps[k].astype(np.float64)
        span = m.max() - m.min()
        r, q = divmod(k, 2)
        tile[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = (m - m.min()) / span if span > 0 else 0.0
    return tile if c > 1 else tile[:h, :w]


def _figure(rows: int, cols: int, title: str):
    fig = Figure(figsize=(CELL * cols + 0.6, CELL * rows + 0.7), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_axis_off()
    return fig, axes


def features_figure(runs: dict[str, list], images: np.ndarray) -> Figure:
    """One row per (name, image): the input and each stage's first feature maps.

    ``runs``: {row name: stages(model, images)}; a stage's panel shows its first four maps as a
    2x2 mosaic, each map scaled to its own range.
    """
    rows = [(name, n) for name in runs for n in range(len(images))]
    cols = max(len(s) for s in runs.values())
    fig, axes = _figure(len(rows), cols, "What each stage keeps: the input, then each conv block's and "
                        f"pooling layer's first {MAPS} feature maps")
    for r, (name, n) in enumerate(rows):
        for c, (label, _, _, out) in enumerate(runs[name]):
            ax = axes[r, c]
            ax.set_axis_on()
            ax.imshow(_mosaic(out[n]), cmap="magma" if c else "gray", interpolation="nearest")
            shape = "x".join(map(str, out.shape[1:])) if out.shape[1] > 1 or not c else f"{out[0].size} values"
            ax.set_title(f"{label}\n{shape}", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{name}\nimage {n}" if len(runs) > 1 or name else f"image {n}", fontsize=8)
    return fig


def switches_figure(runs: dict[str, list], images: np.ndarray) -> Figure | None:
    """One row per (name, image), one column per max-pooling layer: the layer's input map (the
    channel with the largest mean activation) in grey, the pooling windows as a grid, and a red
    dot at each switch, the input position whose value the output kept.  None without max pooling."""
    pools = {name: [(label, layer, before) for label, layer, before, _ in s if isinstance(layer, MaxPool2D)]
             for name, s in runs.items()}
    pools = {name: p for name, p in pools.items() if p}
    if not pools:
        return None
    rows = [(name, n) for name in pools for n in range(len(images))]
    cols = max(len(p) for p in pools.values())
    fig, axes = _figure(len(rows), cols, "Max-pooling switches: the input position\neach output kept (red), "
                        "over the layer's input;\nfaint: flat windows (a tie: the first wins)")
    for r, (name, n) in enumerate(rows):
        for c, (label, layer, before) in enumerate(pools[name]):
            kept, ys, xs = layer.switches(before[n:n + 1])
            channel = int(before[n].mean(axis=(1, 2)).argmax())
            low = MinPool2D(layer.kernel_size, layer.stride, layer.padding)(before[n:n + 1, channel:channel + 1])
            flat = (kept[0, channel] == low[0, 0]).ravel()  # every value of the window equal: a tie
            ax = axes[r, c]
            ax.set_axis_on()
            ax.imshow(before[n, channel], cmap="gray", interpolation="nearest")
            (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
            h, w = before.shape[2:]
            for y in np.arange(-ph, h, sh):
                ax.axhline(y - 0.5, color="tab:blue", linewidth=0.4, alpha=0.6)
            for x in np.arange(-pw, w, sw):
                ax.axvline(x - 0.5, color="tab:blue", linewidth=0.4, alpha=0.6)
            size = max(2.0, 300.0 / max(h, w))
            px, py = xs[0, channel].ravel(), ys[0, channel].ravel()
            ax.scatter(px[flat], py[flat], s=size / 3, c="tab:red", alpha=0.35, linewidths=0)
            ax.scatter(px[~flat], py[~flat], s=size, c="red", linewidths=0)
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            ax.set_title(f"{label} {kh}x{kw}/{sh}, channel {channel}\n{h}x{w} -> "
                         f"{(h + 2 * ph - kh) // sh + 1}x{(w + 2 * pw - kw) // sw + 1}", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{name}\nimage {n}" if len(pools) > 1 or name else f"image {n}", fontsize=8)
    return fig


def show_figures(models: dict[str, object], images: np.ndarray) -> dict:
    """{file name: Figure}: features.png and (with max pooling) switches.png of the models (one
    row per model and image) on the same images (N, C, H, W).

    Example::

        >>> import numpy as np, minicnn as mc
        >>> model = mc.Sequential([mc.Conv2D(1, 4, 3, padding=1), mc.ReLU(), mc.MaxPool2D(2),
        ...                        mc.Flatten(), mc.Dense(out_features=2)], (1, 8, 8), seed=0)
        >>> sorted(mc.show_figures({"max": model}, np.random.default_rng(0).random((2, 1, 8, 8))))
        ['features.png', 'switches.png']
    """
    runs = {name: stages(model, images) for name, model in models.items()}
    figures = {"features.png": features_figure(runs, images)}
    switches = switches_figure(runs, images)
    if switches is not None:
        figures["switches.png"] = switches
    return figures


def show(folder, images: int = 4, x: np.ndarray | None = None, data_dir=None) -> list[pathlib.Path]:
    """Draw features.png and switches.png for a run or study folder, into that folder.

    Args:
        folder: a run folder (``minicnn train``, ``fit(..., out=...)``) or a study folder
            (``minicnn ablate``: one row per variant, from its first run).
        images: how many test images, the first of the test set. Default: 4.
        x: the images to draw instead, (N, C, H, W) (needed for a run ``fit`` trained on arrays).
        data_dir: the folder of IDX files, as ``--data-dir``.

    Returns:
        The paths of the PNG files written.
    """
    folder = pathlib.Path(folder)
    if (folder / "results.csv").exists():
        rows = read_table(folder / "results.csv", ("config", "run_dir"))
        firsts = {}
        for r in rows:
            firsts.setdefault(r["config"] if not r.get("cell") else f"{r['cell']}: {r['config']}", r["run_dir"])
        runs = {name: load_run(folder / run_dir) for name, run_dir in firsts.items()}
    elif (folder / "config.yaml").exists():
        runs = {"": load_run(folder)}
    else:
        raise UserError(f"{folder}: neither an experiment folder (results.csv) nor a run folder (config.yaml)")
    if x is None:
        x = _test_images(next(iter(runs.values())).config, images, data_dir, folder)
    return save_all(show_figures({name: run.model for name, run in runs.items()}, x[:images]), folder)


def _test_images(config: dict, images: int, data_dir, folder) -> np.ndarray:
    if images < 1:
        raise UserError(f"--images must be at least 1, got {images}")
    spec = config.get("data") or {}
    if spec.get("dataset") not in datasets.DATASETS:
        raise UserError(f"{folder}: its run was trained on arrays, not a data set; pass the images "
                        "(show(folder, x=...))")
    dataset = datasets.load_dataset(spec["dataset"], data_dir=data_dir if spec["dataset"] != "npz" else None,
                                    path=spec.get("path"))
    return dataset.x_test[:images]
