"""Grid cells of an experiment file (axes or a list), their overrides, labels and folders; load_experiment
with a grid; a whole study with a grid in-process; report.md and the figures per cell.

Training does not use ``data.dataset`` and ``data.augment`` in every version, so the studies
that run here vary ``train.optimizer.lr``; a grid over data sets is checked up to the runs,
overrides and folders load_experiment makes.
"""
from __future__ import annotations

import json
import pathlib
import statistics

import matplotlib.image
import numpy as np
import pytest
import yaml
from matplotlib.container import ErrorbarContainer

from minicnn import plots
from minicnn import results as result_rows
from minicnn.study import grid, report
from minicnn.config import apply_overrides, load_config
from minicnn.confusion import summary_fields
from minicnn.errors import ConfigError
from minicnn.schema import Grid
from minicnn.study.experiment import STOP_FILE, StudyStopped, load_experiment, run_one
from minicnn.files import read_csv
from conftest import tiny_config
from test_experiment import PNG_MAGIC, TWO, fake_data, run, write_study  # noqa: F401 (a fixture)

PANELS = ["val_accuracy.png", "test_accuracy.png", "loss.png", "shift_accuracy.png", "accuracy_vs_macs.png"]
DATASETS = {"data.dataset": ["mnist", "fashion_mnist"], "data.augment.shift": [0, 2]}


# ---------------------------------------------------------------- cells, labels, folder names

def test_cells_are_the_product_in_file_order_first_key_slowest():
    cells = Grid().parse({"data.dataset": ["mnist", "fashion_mnist"], "data.augment.shift": [0, 2]}, "f.yaml", "grid")
    assert cells == ((("data.dataset", "mnist"), ("data.augment.shift", 0)),
                     (("data.dataset", "mnist"), ("data.augment.shift", 2)),
                     (("data.dataset", "fashion_mnist"), ("data.augment.shift", 0)),
                     (("data.dataset", "fashion_mnist"), ("data.augment.shift", 2)))
    assert [grid.label(c) for c in cells] == ["mnist, shift 0", "mnist, shift 2", "fashion_mnist, shift 0",
                                              "fashion_mnist, shift 2"]
    assert [grid.slug(c) for c in cells] == ["mnist-shift0", "mnist-shift2", "fashion_mnist-shift0",
                                             "fashion_mnist-shift2"]
    assert grid.overrides(cells[3]) == ("data.dataset=fashion_mnist", "data.augment.shift=2")
    assert Grid().parse(None, "f.yaml", "grid") == () and grid.label(()) == ""


def test_listed_cells_are_exactly_those_in_file_order():
    listed = [{"data.dataset": "mnist", "data.augment.shift": 0}, {"data.dataset": "mnist", "data.augment.shift": 2},
              {"data.dataset": "fashion_mnist"}]
    cells = Grid().parse(listed, "f.yaml", "grid")
    assert cells == ((("data.dataset", "mnist"), ("data.augment.shift", 0)),
                     (("data.dataset", "mnist"), ("data.augment.shift", 2)),
                     (("data.dataset", "fashion_mnist"),))
    assert [grid.slug(c) for c in cells] == ["mnist-shift0", "mnist-shift2", "fashion_mnist"]


def test_a_study_of_listed_cells_runs_only_those(tmp_path):
    path = write_study(tmp_path, TWO, seeds=[0], grid=[{"data.dataset": "mnist", "data.augment.shift": 0},
                                                       {"data.dataset": "mnist", "data.augment.shift": 2},
                                                       {"data.dataset": "fashion_mnist", "data.augment.shift": 0}])
    exp = load_experiment(path)
    assert [(grid.slug(r.cell), r.name) for r in exp.runs] == [
        ("mnist-shift0", "max"), ("mnist-shift0", "avg"), ("mnist-shift2", "max"), ("mnist-shift2", "avg"),
        ("fashion_mnist-shift0", "max"), ("fashion_mnist-shift0", "avg")]
    config = load_config(exp.runs[3].config_path, exp.runs[3].overrides)
    assert (config.dataset, config.resolved["data"]["augment"]["shift"]) == ("mnist", 2)


def test_labels_and_folder_names_of_other_values():
    assert grid.label((("train.optimizer.lr", 1e-05), ("model.layers[2].bias", True))) == "lr 1.0e-05, bias true"
    assert grid.slug((("train.optimizer.lr", 1e-05), ("model.layers[2].bias", True))) == "lr1.0e-05-biastrue"
    assert grid.slug((("data.path", "../my data/a.npz"),)) == ".._my_data_a.npz"    # one folder level, always
    assert grid.slug((("data.path", ".."),)) == "path" and grid.slug((("data.path", "."),)) == "path"
    assert len(grid.slug((("data.path", "x" * 500),))) == grid.SLUG_PART_CHARS
    assert grid.label((("data.train_size", None),)) == "train_size null"


@pytest.mark.parametrize("value", [2, "2", 0.05, 1e-05, -3, True, "true", None, "null", "", "a: b", "x=y", "#x",
                                   "- a", "[1]", "mnist", "1e-05", 2**40])
def test_a_value_reaches_the_config_as_the_same_yaml_value(value):
    text = grid.yaml_text(value)
    raw = {"train": {}}
    apply_overrides(raw, [f"train.x={text}"], "f.yaml")
    assert raw["train"]["x"] == value and type(raw["train"]["x"]) is type(value), text


# ---------------------------------------------------------------- load_experiment

def test_a_grid_over_data_sets_gives_runs_folders_and_overrides(tmp_path):
    path = write_study(tmp_path, TWO, seeds=[0, 1], set=["train.epochs=1"], grid=DATASETS)
    exp = load_experiment(path, overrides=["train.batch_size=25"])
    out = exp.out
    assert exp.variants == ["max", "avg"] and [grid.slug(c) for c in exp.cells] == [
        "mnist-shift0", "mnist-shift2", "fashion_mnist-shift0", "fashion_mnist-shift2"]
    assert len(exp.runs) == 4 * 2 * 2
    assert [(grid.slug(r.cell), r.name, r.seed) for r in exp.runs[:5]] == [
        ("mnist-shift0", "max", 0), ("mnist-shift0", "max", 1), ("mnist-shift0", "avg", 0), ("mnist-shift0", "avg", 1),
        ("mnist-shift2", "max", 0)]
    for r in exp.runs:
        (_, dataset), (_, shift) = r.cell
        assert r.folder == out / f"{dataset}-shift{shift}" / r.name / f"seed{r.seed}"
        assert r.study == out
        assert r.overrides == ("train.epochs=1", "train.batch_size=25", f"data.dataset={dataset}",
                               f"data.augment.shift={shift}", f"seed={r.seed}")
        config = load_config(r.config_path, r.overrides)
        assert (config.dataset, config.resolved["data"]["augment"]["shift"], config.seed) == (dataset, shift, r.seed)
    assert exp.runs[-1].title == "avg seed 1 (fashion_mnist, shift 2)"
    assert len({r.folder for r in exp.runs}) == len(exp.runs)


def test_quick_and_set_work_with_a_grid(tmp_path):
    path = write_study(tmp_path, TWO, seeds=[0, 1, 2], grid={"train.optimizer.lr": [0.05, 0.02]},
                       quick={"seeds": [7], "set": ["train.epochs=1"]})
    exp = load_experiment(path, quick=True, overrides=["train.batch_size=30"])
    assert exp.out.name == "study-quick"
    assert [(grid.label(r.cell), r.name, r.seed) for r in exp.runs] == [
        ("lr 0.05", "max", 7), ("lr 0.05", "avg", 7), ("lr 0.02", "max", 7), ("lr 0.02", "avg", 7)]
    assert exp.runs[2].folder == exp.out / "lr0.02" / "max" / "seed7"
    config = load_config(exp.runs[2].config_path, exp.runs[2].overrides)
    assert (config.epochs, config.batch_size, config.optimizer.options["lr"]) == (1, 30, 0.02)


def test_without_a_grid_the_runs_are_as_before(tmp_path):
    exp = load_experiment(write_study(tmp_path, TWO, seeds=[0, 1]))
    assert exp.cells == [()]
    assert all(r.cell == () and r.study == exp.out and r.folder == exp.out / r.name / f"seed{r.seed}"
               for r in exp.runs)
    assert exp.runs[0].title == "max seed 0"


def test_cells_sharing_a_folder_are_refused(tmp_path):
    path = write_study(tmp_path, TWO, grid={"data.path": ["a b.npz", "a_b.npz"]})
    with pytest.raises(ConfigError, match=r"study\.yaml: grid: the cells 'a b\.npz' and 'a_b\.npz' would share "
                                          r"the folder 'a_b\.npz'"):
        load_experiment(path)


def test_a_grid_of_too_many_runs_is_refused_before_any_config_is_read(tmp_path):
    path = write_study(tmp_path, TWO, seeds=list(range(6)),
                       grid={"train.batch_size": list(range(1, 101)), "data.val_size": list(range(10))})
    with pytest.raises(ConfigError, match=r"study\.yaml: grid: 1000 cells x 12 configs and seeds make 12,000 runs"):
        load_experiment(path)


def test_a_value_wrong_for_one_config_names_the_grid_key_and_that_config(tmp_path):
    adam = tiny_config("adam", train={"optimizer": {"name": "adam", "lr": 0.001}})
    path = write_study(tmp_path, {**TWO, "adam": adam}, grid={"train.optimizer.momentum": [0.9, 0.5]})
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    assert caught.value.file == str(path) and caught.value.path == "grid.train.optimizer.momentum"
    assert "unknown key for adam" in str(caught.value) and str(tmp_path / "exp" / "../configs/adam.yaml") in str(caught.value)


def test_a_stop_file_in_the_experiment_folder_stops_a_run_of_a_grid_cell(tmp_path, fake_data):
    exp = load_experiment(write_study(tmp_path, TWO, grid={"train.optimizer.lr": [0.05, 0.02]}))
    exp.out.mkdir(parents=True)
    (exp.out / STOP_FILE).touch()
    with pytest.raises(StudyStopped, match=r"max seed 0 \(lr 0\.05\): the study was stopped"):
        run_one(exp.runs[0])
    assert len(read_csv(exp.runs[0].folder / "metrics.csv")) == 1     # stopped after its first epoch, saved


# ---------------------------------------------------------------- a whole study with a grid

@pytest.fixture()
def grid_study(tmp_path, fake_data):
    path = write_study(tmp_path, TWO, seeds=[0, 1], grid={"train.optimizer.lr": [0.05, 0.02]})
    rows, lines = run(path)
    return {"path": path, "rows": rows, "lines": lines, "out": tmp_path / "runs" / "study", "calls": fake_data}


def test_a_grid_study_runs_every_cell_config_and_seed(grid_study):
    out, calls = grid_study["out"], grid_study["calls"]
    assert calls["fit"] == 8
    assert sorted(str(p.relative_to(out)) for p in calls["fit_folders"]) == sorted(
        f"{cell}/{name}/seed{seed}" for cell in ("lr0.05", "lr0.02") for name in ("max", "avg") for seed in (0, 1))
    assert "study: 8 runs (2 grid cells x 2 configs x 2 seeds)" in grid_study["lines"][0]
    for cell, lr in (("lr0.05", 0.05), ("lr0.02", 0.02)):
        assert yaml.safe_load((out / cell / "max" / "seed0" / "config.yaml").read_text())["train"]["optimizer"]["lr"] == lr
    # the learning rate reached training: the same seed trains differently in the two cells
    losses = [read_csv(out / cell / "max" / "seed0" / "metrics.csv")[0]["train_loss"] for cell in ("lr0.05", "lr0.02")]
    assert losses[0] != losses[1]


def test_results_csv_has_a_cell_column_and_run_dirs_under_the_cells(grid_study):
    out = grid_study["out"]
    rows = read_csv(out / "results.csv")
    assert list(rows[0])[:3] == ["cell", "config", "seed"] and list(rows[0])[-1] == "run_dir"
    assert [(r["cell"], r["config"], r["seed"]) for r in rows] == [
        (cell, name, seed) for cell in ("lr 0.05", "lr 0.02") for name in ("max", "avg") for seed in ("0", "1")]
    for r in rows:
        assert r["run_dir"] == f"{r['cell'].replace(' ', '')}/{r['config']}/seed{r['seed']}"
        summary = json.loads((out / r["run_dir"] / "summary.json").read_text())
        assert float(r["test_accuracy"]) == summary["test_accuracy"] and summary["name"] == r["config"]


def test_report_has_a_summary_and_a_section_per_cell_compared_within_it(grid_study):
    out = grid_study["out"]
    text = (out / "report.md").read_text()
    rows = read_csv(out / "results.csv")
    assert "8 of 8 runs finished" in text and "in 2 grid cells" in text
    head, first, second = text.split("\n## lr ")
    assert "## Summary over the grid cells" in head and "| variant | lr 0.05 | lr 0.02 |" in head
    for section, cell in ((first, "lr 0.05"), (second, "lr 0.02")):
        assert section.startswith(cell.removeprefix("lr "))
        mine = [r for r in rows if r["cell"] == cell]
        table = [line for line in section.split("###")[0].splitlines() if line.startswith("| ")]
        assert len(table) == 3    # header, max, avg: nothing of the other cell
        for line, name in zip(table[1:], ["max", "avg"]):
            mean, std = result_rows.mean_std([float(r["test_accuracy"]) for r in mine if r["config"] == name])
            assert line.startswith(f"| {name} | {100 * mean:.2f} ± {100 * std:.2f} | 2 |"), line
        assert "### Paired differences to max" in section
        acc = {(r["config"], r["seed"]): float(r["test_accuracy"]) for r in mine}
        diffs = [acc["avg", s] - acc["max", s] for s in ("0", "1")]
        (line,) = [x for x in section.splitlines() if x.startswith("| avg | 2 |")]
        assert line.split(" | ")[2].startswith(f"{100 * statistics.fmean(diffs):+.2f} ["), (line, diffs)
        overview = [x for x in head.splitlines() if x.startswith("| avg | ") and "[" in x]
        assert len(overview) == 1 and f"{100 * statistics.fmean(diffs):+.2f} [" in overview[0]


def test_the_figures_have_one_panel_per_cell(grid_study):
    out = grid_study["out"]
    for name in PANELS:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        image = matplotlib.image.imread(out / name)
        assert image.shape[1] > 1000 and image[..., :3].std() > 0.01, (name, image.shape)   # two panels side by side
    rows = plots.read_table(out / "results.csv")
    confusion = plots._confusions(out, rows)
    if confusion is not None:  # runs save confusion matrices once training computes them
        assert (out / "confusion.png").exists()
        titles = [ax.get_title() for ax in plots.confusion_figure(*confusion).axes if ax.get_title()]
        assert [t.split("\n")[0] for t in titles] == ["lr 0.05", "lr 0.05", "lr 0.02", "lr 0.02"]
    stats = result_rows.aggregate(rows, ["max", "avg"])
    assert [(s["cell"], s["config"]) for s in stats] == [("lr 0.05", "max"), ("lr 0.05", "avg"),
                                                         ("lr 0.02", "max"), ("lr 0.02", "avg")]
    fig = plots.test_accuracy_figure(stats)
    assert [ax.get_title() for ax in fig.axes] == ["lr 0.05", "lr 0.02"]
    for ax, cell in zip(fig.axes, ("lr 0.05", "lr 0.02")):
        points = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        expected = [100 * s["test_mean"] for s in stats if s["cell"] == cell]
        assert [c.lines[0].get_ydata()[0] for c in points] == pytest.approx(expected)
    for figure in (plots.accuracy_vs_macs_figure(stats), plots.shift_figure(stats)):
        assert [ax.get_title() for ax in figure.axes] == ["lr 0.05", "lr 0.02"]
        assert [len([c for c in ax.containers if isinstance(c, ErrorbarContainer)]) for ax in figure.axes] == [2, 2]
    metrics = {(r["cell"], r["config"]): [plots.read_table(out / r["run_dir"] / "metrics.csv")] for r in rows}
    for figure in (plots.val_accuracy_figure(metrics), plots.loss_figure(metrics)):
        assert [ax.get_title() for ax in figure.axes] == ["lr 0.05", "lr 0.02"]
        assert [sorted(t.get_text() for t in ax.get_legend().get_texts()) for ax in figure.axes] == [["avg", "max"]] * 2
        # a variant keeps its colour in every panel
        colours = [{line.get_label(): line.get_color() for line in ax.lines if not line.get_label().startswith("_")}
                   for ax in figure.axes]
        assert colours[0] == colours[1]


def test_resume_of_a_finished_grid_study_runs_nothing(grid_study):
    before = grid_study["calls"]["fit"]
    rows, lines = run(grid_study["path"], resume=True)
    assert grid_study["calls"]["fit"] == before and len(rows) == 8
    assert "8 already finished, 0 to run" in lines[0]


# ---------------------------------------------------------------- known numbers, synthetic folders

DIGITS = ["0", "1", "2"]
FASHION = ["T-shirt/top", "Trouser", "Pullover"]
CELLS = {"mnist": DIGITS, "fashion_mnist": FASHION}
# test accuracy of (cell, variant) before + seed / 1000: avg is 2 points under max on mnist, 1 over on fashion
BASE = {("mnist", "max"): 0.99, ("mnist", "avg"): 0.97, ("fashion_mnist", "max"): 0.88, ("fashion_mnist", "avg"): 0.89}


def make_grid_study(folder, seeds=(0, 1, 2)):
    """An experiment folder of a grid over data.dataset: results.csv with a cell column, run folders
    with metrics.csv and summary.json (the cell's class names; class 0 taken for class 1 2 times)."""
    rows = []
    for (cell, name), acc in BASE.items():
        for seed in seeds:
            a = acc + seed / 1000
            run = folder / cell / name / f"seed{seed}"
            run.mkdir(parents=True)
            counts = np.array([[8 + seed, 2, 0], [1, 9, 0], [0, 0, 10]])
            (run / "summary.json").write_text(json.dumps({"test_accuracy": a, **summary_fields(counts, CELLS[cell])}))
            (run / "metrics.csv").write_text(f"epoch,train_loss,val_loss,val_accuracy\n1,0.5,0.4,{a}\n")
            rows.append({"cell": cell, "config": name, "seed": seed, "test_accuracy": a, "val_accuracy": a,
                         "epochs": 1, "params": 100, "macs": 6_000_000 if name == "max" else 5_000_000,
                         "receptive_field": "4x4", "seconds_per_epoch": 1.0, "images_per_second": 10.0,
                         "diverged": False, "shift_0": a, "shift_2": a - 0.1, "run_dir": f"{cell}/{name}/seed{seed}"})
    report.write_results(folder / "results.csv", rows)
    return rows


class GridExp:
    name, file, variants, runs = "study", "study.yaml", ["max", "avg"], [None] * 12


def test_paired_differences_are_taken_within_each_cell(tmp_path):
    rows = make_grid_study(tmp_path)
    report.write_report(tmp_path / "report.md", GridExp, result_rows.aggregate(rows, GridExp.variants), rows)
    text = (tmp_path / "report.md").read_text()
    _, head, mnist, fashion = text.split("\n## ")
    # the overview: per cell, not pooled (pooled, the mean would be -0.5 points with a wide interval)
    assert "| max | 99.10 ± 0.10 | 88.10 ± 0.10 |" in head
    assert "| avg | -2.00 [-2.00, -2.00] | +1.00 [+1.00, +1.00] |" in head
    assert mnist.startswith("mnist\n") and "| avg | 3 | -2.00 [-2.00, -2.00] |" in mnist
    assert fashion.startswith("fashion_mnist\n") and "| avg | 3 | +1.00 [+1.00, +1.00] |" in fashion
    assert "worse than max: avg" in mnist and "better than max: avg" in fashion


def test_confusion_png_has_a_row_per_cell_with_its_class_names(tmp_path):
    make_grid_study(tmp_path)
    written = {p.name for p in plots.plot_experiment(tmp_path)}
    assert {"confusion.png", "accuracy_vs_macs.png"} <= written
    matrices, classes = plots._confusions(tmp_path, plots.read_table(tmp_path / "results.csv"))
    assert classes == CELLS and list(matrices) == list(BASE)
    fig = plots.confusion_figure(matrices, classes)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["mnist\nmax (3 seeds)", "mnist\navg (3 seeds)",
                                               "fashion_mnist\nmax (3 seeds)", "fashion_mnist\navg (3 seeds)"]
    assert [ax.get_subplotspec().get_geometry()[:2] for ax in axes] == [(2, 2)] * 4
    for ax, cell in zip(axes, ["mnist", "mnist", "fashion_mnist", "fashion_mnist"]):
        assert [t.get_text() for t in ax.get_yticklabels()] == CELLS[cell]
    np.testing.assert_allclose(axes[3].get_images()[0].get_array()[0], [100 * 27 / 33, 100 * 6 / 33, 0])
    png = matplotlib.image.imread(tmp_path / "confusion.png")
    assert png.shape[0] > 700 and png[..., :3].std() > 0.05


def test_accuracy_vs_macs_labels_each_cells_points_in_its_panel(tmp_path):
    rows = make_grid_study(tmp_path)
    fig = plots.accuracy_vs_macs_figure(result_rows.aggregate(rows, ["max", "avg"]))
    assert [ax.get_title() for ax in fig.axes] == ["mnist", "fashion_mnist"]
    assert [[t.get_text() for t in ax.texts] for ax in fig.axes] == [
        ["max 99.10 ± 0.10", "avg 97.10 ± 0.10"], ["max 88.10 ± 0.10", "avg 89.10 ± 0.10"]]
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)
        for text in ax.texts:     # every label inside its own panel
            box = text.get_window_extent(renderer)
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, text


def test_the_full_study_file_is_three_cells_of_five_seeds_on_a_cosine_schedule():
    exp = load_experiment(pathlib.Path(__file__).parent.parent / "experiments" / "pooling_full.yaml")
    assert exp.variants == ["max_pool", "avg_pool", "global_pool", "strided_conv"]
    assert [grid.label(c) for c in exp.cells] == ["mnist, shift 0", "mnist, shift 2", "fashion_mnist, shift 0"]
    assert len(exp.runs) == 3 * 4 * 5 and exp.out.name == "pooling_full" and exp.out.parent.name == "runs"
    config = load_config(exp.runs[-1].config_path, exp.runs[-1].overrides)
    assert (config.dataset, config.resolved["train"]["schedule"]["name"]) == ("fashion_mnist", "cosine")
