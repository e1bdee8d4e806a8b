"""The experiment runner in-process: grid, folders, resume, aggregation, report, figures.

Runs go through ``run_experiment(..., executor=...)`` with an executor that
runs them in this process (synchronously, or in threads), and
``minicnn.data.load_dataset`` is replaced by the ``tiny_data`` fixture, so no
test here needs the real data set.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import os
import pathlib
import stat

import matplotlib.image
import numpy as np
import pytest
import yaml
from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer

import minicnn.data
import minicnn.runs
import minicnn.train
from minicnn import plots
from minicnn import results as result_rows
from minicnn.study import report
from minicnn.config import load_config
from minicnn.errors import UserError
from minicnn.study.experiment import RunsFailed, load_experiment, longest_first, run_experiment
from conftest import tiny_config
from minicnn.files import read_csv

ROOT = pathlib.Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ["val_accuracy.png", "test_accuracy.png", "loss.png", "shift_accuracy.png", "accuracy_vs_macs.png",
           "confusion.png"]
TIMING = {"seconds_per_epoch", "images_per_second", "probe_seconds", "run_dir"}
PROBE_COLUMNS = ["consistency", "gaussian_0.1", "gaussian_0.2", "gaussian_0.3", "salt_pepper_0.05", "salt_pepper_0.1",
                 "salt_pepper_0.2", "canvas_40", "canvas_56", "train_eval_accuracy", "generalisation_gap",
                 "probe_seconds"]


def study_config(name, pool="maxpool2d", lr=0.05, epochs=2):
    return tiny_config(name, pool, train={"epochs": epochs, "optimizer": {"name": "sgd", "lr": lr, "momentum": 0.9}},
                       eval={"shifts": [0, 2, 4]})


def write_study(folder: pathlib.Path, configs: dict, seeds=(0, 1), **extra) -> pathlib.Path:
    """configs/NAME.yaml for each {name: config dict} and exp/study.yaml listing them."""
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "exp").mkdir(exist_ok=True)
    for name, data in configs.items():
        (folder / "configs" / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    exp = {"name": "study", "configs": [f"../configs/{n}.yaml" for n in configs], "seeds": list(seeds),
           "out": "../runs/study", **extra}
    path = folder / "exp" / "study.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


class InProcess(concurrent.futures.Executor):
    """Runs each submitted call at once, in this process; the simplest Executor there is."""

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - delivered through the future, as a pool would
            future.set_exception(e)
        return future


@pytest.fixture()
def fake_data(monkeypatch, tiny_data):
    """load_dataset -> tiny_data; counts the calls of fit and of train_epoch."""
    calls = {"load": 0, "fit": 0, "epochs": 0, "fit_folders": []}

    def load(name, **kwargs):
        calls["load"] += 1
        return tiny_data

    real_fit, real_epoch = minicnn.train.fit_config, minicnn.train.train_epoch

    def fit(config, out_dir, **kwargs):
        calls["fit"] += 1
        calls["fit_folders"].append(pathlib.Path(out_dir))
        return real_fit(config, out_dir, **kwargs)

    def train_epoch(*args, **kwargs):
        calls["epochs"] += 1
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(minicnn.data, "load_dataset", load)
    monkeypatch.setattr(minicnn.train, "fit_config", fit)
    monkeypatch.setattr(minicnn.train, "train_epoch", train_epoch)
    return calls


TWO = {"max": study_config("max"), "avg": study_config("avg", pool="avgpool2d")}


def run(path, **kwargs):
    lines = []
    kwargs.setdefault("executor", InProcess())
    rows = run_experiment(path, log=lines.append, **kwargs)
    return rows, lines


def stable(rows):
    """Result rows without wall-clock columns and folders, values as strings (as in results.csv)."""
    return [{k: str(v) for k, v in r.items() if k not in TIMING} for r in rows]


# ---------------------------------------------------------------- the grid

def test_grid_is_configs_times_seeds_with_folders_and_overrides(tmp_path):
    path = write_study(tmp_path, TWO, seeds=[3, 1, 2], set=["train.epochs=1"])
    exp = load_experiment(path, overrides=["train.batch_size=25"])
    out = (tmp_path / "runs" / "study").resolve()
    assert exp.name == "study" and exp.variants == ["max", "avg"]
    assert exp.out.resolve() == out
    assert [(r.name, r.seed) for r in exp.runs] == [("max", 3), ("max", 1), ("max", 2),
                                                    ("avg", 3), ("avg", 1), ("avg", 2)]
    assert [r.folder.resolve() for r in exp.runs] == [out / n / f"seed{s}" for n in ("max", "avg") for s in (3, 1, 2)]
    for r in exp.runs:
        assert r.overrides == ("train.epochs=1", "train.batch_size=25", f"seed={r.seed}")
        config = load_config(r.config_path, r.overrides)
        assert (config.name, config.seed, config.epochs, config.batch_size) == (r.name, r.seed, 1, 25)


def test_runs_are_handed_out_longest_first():
    """The default study's runs by forward MACs x epochs, largest first, stable:
    global pooling's (7.5 M MACs per image) before max and average pooling's
    (4.2 M, in file order) and the strided convolution's (1.4 M) last."""
    exp = load_experiment(ROOT / "experiments" / "pooling_ablation.yaml")
    configs = {r: load_config(r.config_path, r.overrides) for r in exp.runs}
    order = [(configs[r].name, configs[r].seed) for r in longest_first(exp.runs, configs)]
    assert order == [(name, seed) for name in ("global_pool", "max_pool", "avg_pool", "strided_conv")
                     for seed in (0, 1, 2)]
    last = exp.runs[-1]   # strided_conv seed 2, with 10x the epochs: now the most work
    configs[last] = dataclasses.replace(configs[last], epochs=10 * configs[last].epochs)
    assert longest_first(exp.runs, configs)[0] is last


def test_quick_takes_the_quick_section_and_its_own_folder(tmp_path):
    path = write_study(tmp_path, TWO, seeds=[0, 1, 2], quick={"seeds": [5], "set": ["train.epochs=1"]})
    exp = load_experiment(path, quick=True)
    assert [(r.name, r.seed) for r in exp.runs] == [("max", 5), ("avg", 5)]
    assert exp.out.name == "study-quick"
    assert all(r.folder.parent.parent == exp.out for r in exp.runs)
    assert load_config(exp.runs[0].config_path, exp.runs[0].overrides).epochs == 1
    # without a quick section: the first seed, 1 epoch, 2,000 training images
    path = write_study(tmp_path / "plain", TWO, seeds=[4, 5])
    exp = load_experiment(path, quick=True)
    assert [r.seed for r in exp.runs] == [4, 4]
    config = load_config(exp.runs[0].config_path, exp.runs[0].overrides)
    assert (config.epochs, config.train_size) == (1, 2000)
    # an explicit out folder is taken as given
    assert load_experiment(path, quick=True, out=tmp_path / "elsewhere").out == tmp_path / "elsewhere"


# ---------------------------------------------------------------- one whole study, inspected below

@pytest.fixture()
def study(tmp_path, fake_data):
    path = write_study(tmp_path, TWO, seeds=[0, 1])
    rows, lines = run(path)
    return {"path": path, "rows": rows, "lines": lines, "out": tmp_path / "runs" / "study", "calls": fake_data}


def test_study_writes_every_run_folder_and_the_experiment_files(study):
    out, calls = study["out"], study["calls"]
    assert calls["fit"] == 4 and calls["epochs"] == 8 and calls["load"] >= 1
    for name in ("max", "avg"):
        for seed in (0, 1):
            folder = out / name / f"seed{seed}"
            assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.npz", "config.yaml", "metrics.csv",
                                                                "summary.json"]
            summary = json.loads((folder / "summary.json").read_text())
            assert summary["seed"] == seed and summary["epochs"] == 2 and summary["name"] == name
            assert yaml.safe_load((folder / "config.yaml").read_text())["seed"] == seed
    names = {p.name for p in out.iterdir()}
    assert {"results.csv", "report.md", *FIGURES} <= names
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".write-test-")], \
        "temporary files left behind"
    umask = os.umask(0o022)
    os.umask(umask)
    modes = {str(p.relative_to(out)): oct(stat.S_IMODE(p.stat().st_mode)) for p in out.rglob("*") if p.is_file()}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, f"not the permissions of a new file: {modes}"
    assert any("report:" in line for line in study["lines"])


def test_results_csv_has_one_row_per_run_and_the_columns(study):
    rows = read_csv(study["out"] / "results.csv")
    assert list(rows[0]) == (report.RESULT_FIELDS + ["shift_0", "shift_2", "shift_4", *PROBE_COLUMNS, "dataset",
                                                     "data_sha256", "blas", "run_dir"])
    assert [(r["config"], r["seed"]) for r in rows] == [("max", "0"), ("max", "1"), ("avg", "0"), ("avg", "1")]
    for r in rows:
        summary = json.loads((study["out"] / r["run_dir"] / "summary.json").read_text())
        assert (r["dataset"], r["data_sha256"], r["blas"]) == ("mnist", summary["data_sha256"], summary["blas"])
        assert len(r["data_sha256"]) == 64 and r["blas"].endswith("1 thread")
        assert float(r["test_accuracy"]) == summary["test_accuracy"]
        assert float(r["shift_0"]) == summary["test_accuracy"]
        assert float(r["shift_2"]) == summary["shift_accuracy"]["2"]
        assert r["diverged"] == "False" and int(r["epochs"]) == 2
        assert int(r["params"]) == summary["params"]
        assert r["receptive_field"] == "%dx%d" % tuple(summary["receptive_field"])
    assert stable(rows) == stable(study["rows"])


def test_report_md_holds_the_table_with_mean_and_std(study):
    text = (study["out"] / "report.md").read_text()
    assert text.startswith("# study")
    assert "4 of 4 runs finished" in text and "sample standard deviation" in text
    main, paired = text.split("## Paired differences to max")    # two seeds: each variant against the first
    table = [line for line in main.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| variant | test accuracy % (mean ± std) | runs |")
    paired, probe = paired.split("## Probes")
    assert [line.split(" | ")[:2] for line in paired.splitlines() if line.startswith("| avg")] == [["| avg", "2"]]
    assert [line.split(" | ")[0] for line in probe.splitlines() if line.startswith("| avg")] == ["| avg"] * 2
    rows = read_csv(study["out"] / "results.csv")
    for line, name in zip(table[1:], ["max", "avg"]):
        accs = [float(r["test_accuracy"]) for r in rows if r["config"] == name]
        mean, std = result_rows.mean_std(accs)
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == name and cells[1] == f"{100 * mean:.2f} ± {100 * std:.2f}" and cells[2] == "2"
    assert len(table) == 3


def test_figure_files_are_valid_pngs(study):
    for name in FIGURES:
        path = study["out"] / name
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert len(data) > 10_000, (name, len(data))
        image = matplotlib.image.imread(path)          # decodes the whole file
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 500, (name, image.shape)
        assert image[..., :3].std() > 0.01, f"{name} is blank"


def test_plot_redraws_the_figures_from_the_folders_alone(study):
    for name in FIGURES:
        (study["out"] / name).unlink()
    written = plots.plot_folder(study["out"])
    assert sorted(p.name for p in written) == sorted(FIGURES)
    run_folder = study["out"] / "max" / "seed0"
    assert sorted(p.name for p in plots.plot_folder(run_folder)) == ["loss.png", "val_accuracy.png"]
    assert (run_folder / "loss.png").read_bytes()[:8] == PNG_MAGIC


# ---------------------------------------------------------------- resume

def test_a_folder_with_runs_is_refused_without_resume(study):
    calls = study["calls"]
    before = calls["fit"]
    with pytest.raises(UserError, match="already holds 4 runs.*--resume"):
        run(study["path"])
    assert calls["fit"] == before


def test_resume_skips_finished_runs(study):
    calls, out = study["calls"], study["out"]
    summaries = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("summary.json")}
    fits, epochs = calls["fit"], calls["epochs"]
    rows, lines = run(study["path"], resume=True)
    assert calls["fit"] == fits and calls["epochs"] == epochs, "a finished run was run again"
    assert any("4 already finished, 0 to run" in line for line in lines)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("summary.json")} == summaries
    assert stable(rows) == stable(study["rows"])
    # a run whose summary is gone is finished from its checkpoint, with no epoch trained again
    (out / "avg" / "seed1" / "summary.json").unlink()
    rows, _ = run(study["path"], resume=True)
    assert calls["fit"] == fits + 1 and calls["epochs"] == epochs
    assert calls["fit_folders"][-1] == out / "avg" / "seed1"
    assert stable(rows) == stable(study["rows"])


def test_resume_refuses_runs_of_a_changed_config(study):
    """Resume skips finished runs, so it must not mix in runs of an older version of a config."""
    calls = study["calls"]
    fits = calls["fit"]
    config = yaml.safe_load((study["path"].parent.parent / "configs" / "avg.yaml").read_text())
    config["train"]["optimizer"]["lr"] = 0.01
    (study["path"].parent.parent / "configs" / "avg.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(UserError, match=r"avg.seed0 holds a run of an older version of .*avg.yaml"):
        run(study["path"], resume=True)
    assert calls["fit"] == fits
    with pytest.raises(UserError, match="older version"):
        run(study["path"], resume=True, overrides=["train.epochs=3"])     # an override changes it too


def test_resume_removes_the_temporary_files_of_killed_writes(study):
    out = study["out"]
    orphans = [out / ".results.csv.abcd1234.tmp", out / "max" / "seed0" / ".checkpoint.npz.zz9yx8w7.tmp",
               out / "avg" / "seed1" / ".write-test-k2j3h4g5"]
    keep = [out / "notes.tmp", out / "max" / "seed0" / "my.checkpoint.npz.tmp", out / ".hidden"]
    for path in orphans + keep:
        path.write_bytes(b"half a file")
    run(study["path"], resume=True)
    assert [p for p in orphans if p.exists()] == []
    assert all(p.read_bytes() == b"half a file" for p in keep)


def test_resume_continues_an_interrupted_run_and_equals_an_uninterrupted_study(tmp_path, fake_data, monkeypatch):
    whole_path = write_study(tmp_path / "whole", TWO, seeds=[0, 1])
    whole, _ = run(whole_path)

    cut_path = write_study(tmp_path / "cut", TWO, seeds=[0, 1])
    counting = minicnn.train.train_epoch
    state = {"n": 0}

    def interrupted(*args, **kwargs):
        state["n"] += 1
        if state["n"] == 4:            # run 2 (max seed1), its second epoch: Ctrl-C
            raise KeyboardInterrupt
        return counting(*args, **kwargs)

    monkeypatch.setattr(minicnn.train, "train_epoch", interrupted)
    lines = []
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cut_path, executor=InProcess(), log=lines.append)
    assert any("--resume" in line for line in lines), "the message does not say how to continue"
    out = tmp_path / "cut" / "runs" / "study"
    assert (out / "max" / "seed0" / "summary.json").exists()
    assert not (out / "max" / "seed1" / "summary.json").exists()
    assert len(read_csv(out / "max" / "seed1" / "metrics.csv")) == 1     # its first epoch is kept
    assert not (out / "avg").exists()
    finished = (out / "max" / "seed0" / "summary.json").read_bytes()
    assert not list(out.rglob("*.tmp"))

    monkeypatch.setattr(minicnn.train, "train_epoch", counting)
    epochs_before = fake_data["epochs"]
    with pytest.raises(UserError, match="--resume"):
        run(cut_path)
    resumed, _ = run(cut_path, resume=True)
    # max seed1 continues from epoch 2 (1 epoch), avg seed0 and seed1 run whole (2 each)
    assert fake_data["epochs"] - epochs_before == 5
    assert (out / "max" / "seed0" / "summary.json").read_bytes() == finished
    assert stable(resumed) == stable(whole)
    whole_out = tmp_path / "whole" / "runs" / "study"
    assert stable(read_csv(out / "results.csv")) == stable(read_csv(whole_out / "results.csv"))
    for name in ("max", "avg"):
        for seed in (0, 1):
            a = read_csv(whole_out / name / f"seed{seed}" / "metrics.csv")
            b = read_csv(out / name / f"seed{seed}" / "metrics.csv")
            drop = {"train_seconds", "images_per_second"}
            assert [{k: v for k, v in r.items() if k not in drop} for r in a] == \
                   [{k: v for k, v in r.items() if k not in drop} for r in b]
            with np.load(whole_out / name / f"seed{seed}" / "checkpoint.npz") as x, \
                    np.load(out / name / f"seed{seed}" / "checkpoint.npz") as y:
                assert x.files == y.files
                for k in x.files:
                    if k != "metrics":
                        np.testing.assert_array_equal(x[k], y[k])


def test_resume_rewrites_a_stale_metrics_csv(tmp_path, tiny_mnist, monkeypatch):
    from minicnn.config import validate

    config = validate(study_config("max"), "max.yaml")
    minicnn.train.fit_config(config, tmp_path / "whole", mnist=tiny_mnist, log=lambda line: None)
    real_write_csv = minicnn.runs.write_csv
    writes = {"metrics": 0}

    def killed_before_the_second_metrics_csv(path, rows, fields=None):
        if pathlib.Path(path).name == "metrics.csv":
            writes["metrics"] += 1
            if writes["metrics"] == 2:      # epoch 2 is in checkpoint.npz; its metrics.csv not yet
                raise KeyboardInterrupt
        return real_write_csv(path, rows, fields)

    monkeypatch.setattr(minicnn.runs, "write_csv", killed_before_the_second_metrics_csv)
    with pytest.raises(KeyboardInterrupt):
        minicnn.train.fit_config(config, tmp_path / "cut", mnist=tiny_mnist, log=lambda line: None)
    monkeypatch.setattr(minicnn.runs, "write_csv", real_write_csv)
    minicnn.train.fit_config(config, tmp_path / "cut", mnist=tiny_mnist, resume=True, log=lambda line: None)
    assert len(read_csv(tmp_path / "cut" / "metrics.csv")) == len(read_csv(tmp_path / "whole" / "metrics.csv")) == 2


def test_a_thread_pool_gives_the_same_results(tmp_path, fake_data):
    """Everything but the BLAS column: OpenBLAS's thread count is one setting per process, which
    runs overlapping in threads of one process cannot each hold (threads.limit), so a run may
    record the count another run's end restored. minicnn's float32 training does not call BLAS."""
    a, _ = run(write_study(tmp_path / "a", TWO, seeds=[0, 1]))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        b, _ = run(write_study(tmp_path / "b", TWO, seeds=[0, 1]), executor=pool, jobs=2)
    assert [{k: v for k, v in r.items() if k != "blas"} for r in stable(a)] == \
        [{k: v for k, v in r.items() if k != "blas"} for r in stable(b)]


# ---------------------------------------------------------------- divergence and failures

def test_a_diverged_run_is_recorded_and_the_study_goes_on(tmp_path, fake_data):
    configs = {"boom": study_config("boom", lr=100.0), "max": study_config("max")}
    path = write_study(tmp_path, configs, seeds=[0, 1])
    rows, lines = run(path)
    assert fake_data["fit"] == 4
    out = tmp_path / "runs" / "study"
    results = read_csv(out / "results.csv")
    assert [(r["config"], r["diverged"]) for r in results] == [("boom", "True"), ("boom", "True"),
                                                               ("max", "False"), ("max", "False")]
    assert all(float(r["test_accuracy"]) > 0.5 for r in results if r["config"] == "max")
    assert any("DIVERGED" in line for line in lines)
    text = (out / "report.md").read_text()
    boom = next(line for line in text.splitlines() if line.startswith("| boom "))
    cells = [c.strip() for c in boom.strip("|").split("|")]
    assert cells[1] == "–" and cells[2] == "2 (2 diverged)"
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    stats = result_rows.aggregate(results, ["boom", "max"])
    assert stats[0]["diverged"] == 2 and math.isnan(stats[0]["test_mean"])
    assert stats[1]["diverged"] == 0 and stats[1]["test_mean"] > 0.5


def test_a_failing_run_does_not_stop_the_study(tmp_path, fake_data, monkeypatch):
    path = write_study(tmp_path, TWO, seeds=[0, 1])
    counting = minicnn.train.fit_config

    def flaky(config, out_dir, **kwargs):
        if config.name == "max" and config.seed == 0:
            raise RuntimeError("disk on fire")
        return counting(config, out_dir, **kwargs)

    monkeypatch.setattr(minicnn.train, "fit_config", flaky)
    lines = []
    with pytest.raises(RunsFailed, match="1 of 4 runs failed") as failed:
        run_experiment(path, executor=InProcess(), log=lines.append)
    table = failed.value.table()
    assert "max seed 0  RuntimeError: disk on fire" in table and "--resume" in table
    assert "disk on fire" in failed.value.tracebacks() and "Traceback" in failed.value.tracebacks()
    out = tmp_path / "runs" / "study"
    results = read_csv(out / "results.csv")
    assert [(r["config"], r["seed"]) for r in results] == [("max", "1"), ("avg", "0"), ("avg", "1")]
    assert "3 of 4 runs finished" in (out / "report.md").read_text()
    assert any("FAILED" in line for line in lines)


# ---------------------------------------------------------------- aggregation on known numbers

def test_mean_std_on_known_numbers():
    mean, std = result_rows.mean_std([0.9, 0.92, 0.94])
    assert mean == pytest.approx(0.92, abs=1e-12) and std == pytest.approx(0.02, abs=1e-12)  # n - 1
    assert result_rows.mean_std([0.5]) == (0.5, pytest.approx(math.nan, nan_ok=True))
    assert all(math.isnan(v) for v in result_rows.mean_std([]))
    mean, std = result_rows.mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and std == pytest.approx(math.sqrt(5 / 3))


def known_rows(as_csv=False):
    def row(config, seed, acc, diverged=False, ips=100.0, shift=None):
        r = {"config": config, "seed": seed, "test_accuracy": acc, "val_accuracy": acc, "epochs": 2,
             "params": 1000, "macs": 5000, "receptive_field": "4x4", "seconds_per_epoch": 2.0,
             "images_per_second": ips, "diverged": diverged, "shift_0": acc,
             "shift_2": acc - 0.1 if shift is None else shift, "run_dir": f"runs/{config}/seed{seed}"}
        return {k: str(v) for k, v in r.items()} if as_csv else r

    return [row("a", 0, 0.90, ips=100.0), row("a", 1, 0.92, ips=200.0), row("a", 2, 0.94, ips=300.0),
            row("a", 3, 0.10, diverged=True, ips=400.0, shift=0.05),
            row("b", 0, 0.80), row("b", 1, 0.80)]


@pytest.mark.parametrize("as_csv", [False, True], ids=["python values", "csv strings"])
def test_aggregate_excludes_and_counts_diverged_runs(as_csv):
    stats = result_rows.aggregate(known_rows(as_csv), ["b", "a", "missing"])
    assert [s["config"] for s in stats] == ["b", "a"]
    b, a = stats
    assert (a["runs"], a["diverged"], a["params"], a["macs"], a["receptive_field"]) == (4, 1, 1000, 5000, "4x4")
    assert a["test_mean"] == pytest.approx(0.92) and a["test_std"] == pytest.approx(0.02)
    assert a["shift_2"][0] == pytest.approx(0.82) and a["shift_2"][1] == pytest.approx(0.02)
    assert a["images_per_second"] == pytest.approx(250.0)     # timing: every run, diverged or not
    assert (b["runs"], b["diverged"], b["test_mean"], b["test_std"]) == (2, 0, 0.8, 0.0)


def test_report_table_on_known_numbers(tmp_path):
    rows = known_rows()
    stats = result_rows.aggregate(rows, ["a", "b"])
    table = report.report_table(stats).splitlines()
    assert table[0] == ("| variant | test accuracy % (mean ± std) | runs | params | MACs / image | "
                        "RF of last spatial layer | s / epoch | images / s | shift 0 px | shift 2 px |")
    assert table[2] == ("| a | 92.00 ± 2.00 | 4 (1 diverged) | 1,000 | 5,000 | 4x4 | 2.0 | 250 | "
                        "92.00 ± 2.00 | 82.00 ± 2.00 |")
    assert table[3].startswith("| b | 80.00 ± 0.00 | 2 |")
    report.write_results(tmp_path / "results.csv", rows)
    assert list(read_csv(tmp_path / "results.csv")[0]) == report.RESULT_FIELDS + ["shift_0", "shift_2", "run_dir"]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------- the figures' series

def metrics_for(values: dict[str, list[list[float]]]):
    """{variant: [per seed: [val_accuracy per epoch]]} -> the metrics dicts plots reads from CSV."""
    return {v: [[{"epoch": str(e + 1), "val_accuracy": str(acc), "train_loss": str(1.0 / (e + 1)),
                  "val_loss": str(2.0 / (e + 1))} for e, acc in enumerate(run)] for run in runs]
            for v, runs in values.items()}


def test_val_accuracy_figure_draws_mean_lines_and_std_bands():
    metrics = metrics_for({"max": [[0.5, 0.7, 0.9], [0.7, 0.9, 0.95]], "avg": [[0.4, 0.6, 0.8], [0.4, 0.6]]})
    fig = plots.val_accuracy_figure(metrics)
    ax = fig.axes[0]
    assert ax.get_title() and ax.get_xlabel() == "epoch" and "accuracy" in ax.get_ylabel()
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["max", "avg"]
    np.testing.assert_allclose(lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(lines[0].get_ydata(), [60, 80, 92.5])
    np.testing.assert_allclose(lines[1].get_xdata(), [1, 2])           # only epochs every seed reached
    np.testing.assert_allclose(lines[1].get_ydata(), [40, 60])
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2
    top = bands[0].get_paths()[0].vertices[:, 1]
    std = np.std([[50, 70, 90], [70, 90, 95]], axis=0, ddof=1)
    assert top.max() == pytest.approx((np.array([60, 80, 92.5]) + std).max())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["max", "avg"]


def test_loss_figure_draws_training_and_validation_per_variant():
    fig = plots.loss_figure(metrics_for({"max": [[0.5, 0.7], [0.6, 0.8]], "avg": [[0.4, 0.6], [0.4, 0.6]]}))
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 4 and ax.get_yscale() == "log"
    solid = [line for line in lines if line.get_linestyle() == "-"]
    dashed = [line for line in lines if line.get_linestyle() == "--"]
    assert [line.get_label() for line in solid] == ["max", "avg"] and len(dashed) == 2
    np.testing.assert_allclose(solid[0].get_ydata(), [1.0, 0.5])
    np.testing.assert_allclose(dashed[0].get_ydata(), [2.0, 1.0])


def test_test_accuracy_figure_draws_one_point_per_variant_with_error_bars():
    stats = result_rows.aggregate(known_rows(), ["a", "b"])
    fig = plots.test_accuracy_figure(stats)
    ax = fig.axes[0]
    points = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert [c.get_label() for c in points] == ["a", "b"]
    np.testing.assert_allclose([c.lines[0].get_ydata()[0] for c in points], [92.0, 80.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    segments = [c.lines[2][0].get_segments()[0] for c in points]
    np.testing.assert_allclose([s[1][1] - s[0][1] for s in segments], [4.0, 0.0], atol=1e-9)   # 2 x std
    assert ax.get_title() and ax.get_ylabel()


def test_shift_figure_draws_accuracy_versus_shift_per_variant():
    stats = result_rows.aggregate(known_rows(), ["a", "b"])
    fig = plots.shift_figure(stats)
    ax = fig.axes[0]
    containers = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert [c.get_label() for c in containers] == ["a", "b"]
    line = containers[0].lines[0]
    np.testing.assert_allclose(np.asarray(line.get_xdata(), dtype=float), [0, 2])
    np.testing.assert_allclose(np.asarray(line.get_ydata(), dtype=float), [92.0, 82.0])
    assert ax.get_xlabel() == "shift (pixels)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]


def test_save_writes_png_atomically(tmp_path):
    fig = plots.val_accuracy_figure(metrics_for({"max": [[0.5, 0.7]]}))
    path = plots.save(fig, tmp_path / "f.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]
