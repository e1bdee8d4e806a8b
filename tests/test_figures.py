"""accuracy_vs_macs.png and confusion.png from synthetic run folders; confusion matrices; the
paired-difference section of report.md."""
from __future__ import annotations

import json
import math

import matplotlib.image
import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from minicnn import plots
from minicnn import results as result_rows
from minicnn.study import report
from minicnn.confusion import confusion_matrix, read_run, row_normalised, summary_fields
from minicnn.errors import UserError
from minicnn.study.stats import paired_differences

CLASSES = ["T-shirt/top", "Trouser", "Pullover"]
VARIANTS = {"max": (0.90, 6_000_000), "avg": (0.88, 6_000_000), "global": (0.80, 20_000_000)}


def make_study(folder, seeds=(0, 1, 2), confusion=True):
    """A synthetic experiment folder: results.csv and run folders with metrics.csv and summary.json.

    Run (variant, seed) has test accuracy base + seed / 1000 and confusion counts
    [[8 + seed, 2, 0], [1, 9, 0], [0, 0, 10]] (class 0 mistaken for class 1 twice)."""
    rows = []
    for name, (acc, macs) in VARIANTS.items():
        for seed in seeds:
            a = acc + seed / 1000
            run = folder / name / f"seed{seed}"
            run.mkdir(parents=True)
            counts = np.array([[8 + seed, 2, 0], [1, 9, 0], [0, 0, 10]])
            summary = {"test_accuracy": a, **(summary_fields(counts, CLASSES) if confusion else {})}
            (run / "summary.json").write_text(json.dumps(summary))
            (run / "metrics.csv").write_text(f"epoch,train_loss,val_loss,val_accuracy\n1,0.5,0.4,{a}\n")
            rows.append({"config": name, "seed": seed, "test_accuracy": a, "val_accuracy": a, "epochs": 1,
                         "params": 100, "macs": macs, "receptive_field": "4x4", "seconds_per_epoch": 1.0,
                         "images_per_second": 10.0, "diverged": False, "shift_0": a, "shift_2": a - 0.1,
                         "run_dir": f"{name}/seed{seed}"})
    report.write_results(folder / "results.csv", rows)
    return rows


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    counts = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 4)
    assert counts.dtype == np.int64 and counts.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    share = row_normalised(counts)
    np.testing.assert_allclose(share[2], [1 / 3, 0, 2 / 3, 0])
    assert share[3].tolist() == [0, 0, 0, 0]                      # a class without images stays 0
    with pytest.raises(ValueError, match=r"y_pred holds 0\.\.4, not in \[0, 4\)"):
        confusion_matrix([0, 1], [0, 4], 4)


def test_confusion_round_trips_through_summary_json(tmp_path):
    counts = np.array([[3, 1], [0, 4]])
    (tmp_path / "summary.json").write_text(json.dumps({"test_accuracy": 0.9, **summary_fields(counts, ["a", "b"])}))
    got, classes = read_run(tmp_path)
    assert got.tolist() == [[3, 1], [0, 4]] and classes == ["a", "b"]
    (tmp_path / "summary.json").write_text(json.dumps({"confusion": [[1, 2]], "classes": ["a", "b"]}))
    with pytest.raises(UserError, match=r"summary\.json: confusion: expected a 2 x 2 matrix"):
        read_run(tmp_path)
    (tmp_path / "summary.json").write_text("{}")
    assert read_run(tmp_path) is None


def test_accuracy_vs_macs_draws_one_labelled_point_per_variant(tmp_path):
    rows = make_study(tmp_path)
    stats = result_rows.aggregate(rows, list(VARIANTS))
    fig = plots.accuracy_vs_macs_figure(stats)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and "MACs" in ax.get_xlabel()
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 3
    for container, (name, (acc, macs)) in zip(bars, VARIANTS.items()):
        x, y = container.lines[0].get_data()
        assert x[0] == macs and y[0] == pytest.approx(100 * (acc + 0.001))   # mean of seeds 0, 1, 2
        (segment,) = container.lines[2][0].get_segments()
        assert segment[1][1] - segment[0][1] == pytest.approx(2 * 0.1)      # ± std = 0.1 points
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["max 90.10 ± 0.10", "avg 88.10 ± 0.10", "global 80.10 ± 0.10"]
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])   # max and avg share x


def test_confusion_figure_is_row_normalised_mean_over_seeds(tmp_path):
    make_study(tmp_path)
    written = {p.name for p in plots.plot_experiment(tmp_path)}
    assert {"accuracy_vs_macs.png", "confusion.png"} <= written
    matrices, classes = plots._confusions(tmp_path, plots.read_table(tmp_path / "results.csv"))
    fig = plots.confusion_figure(matrices, classes)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["max (3 seeds)", "avg (3 seeds)", "global (3 seeds)"]
    image = axes[0].get_images()[0].get_array()
    # seeds 0-2: class 0 row sums to 8+9+10 right + 6 wrong = 33 images: 27/33 right, 6/33 as class 1
    np.testing.assert_allclose(image[0], [100 * 27 / 33, 100 * 6 / 33, 0])
    np.testing.assert_allclose(image.sum(axis=1), 100)
    assert [t.get_text() for t in axes[0].get_yticklabels()] == CLASSES
    assert [t.get_text() for t in axes[0].get_xticklabels()] == CLASSES
    png = matplotlib.image.imread(tmp_path / "confusion.png")
    assert png.shape[0] > 500 and png[..., :3].std() > 0.05


def test_no_confusion_png_without_saved_matrices(tmp_path):
    make_study(tmp_path, confusion=False)
    written = {p.name for p in plots.plot_experiment(tmp_path)}
    assert "confusion.png" not in written and "accuracy_vs_macs.png" in written


class Exp:
    name, file, variants, runs = "study", "study.yaml", list(VARIANTS), [None] * 9


def test_report_has_paired_differences_with_t_intervals(tmp_path):
    rows = make_study(tmp_path)
    rows[3]["test_accuracy"] += 0.004          # avg seed 0: differences to max -1.6, -2.0, -2.0 points
    for r in rows:
        r["blas"] = "openblas 0.3.27 Haswell, 1 thread"
    report.write_report(tmp_path / "report.md", Exp, result_rows.aggregate(rows, Exp.variants), rows)
    text = (tmp_path / "report.md").read_text()
    assert "## Paired differences to max" in text
    lines = [line for line in text.splitlines() if line.startswith("| avg | 3 |")]
    # mean -1.8667 points, sd 0.2309, t(0.975, 2) = 4.3027: half width 0.5737
    assert lines == ["| avg | 3 | -1.87 [-2.44, -1.29] | -2.00 [-2.00, -2.00] |"]   # shift 2 px left as made
    # global: every seed exactly -10 points: sd 0, a zero-width interval
    assert "| global | 3 | -10.00 [-10.00, -10.00] | -10.00 [-10.00, -10.00] |" in text
    assert "Test accuracy, paired differences to max in percentage points with 95% CIs: worse than max: " in text
    assert "Shift 2 px, paired differences" in text and "shift 0 px" not in text.split("## Paired")[1]
    assert "BLAS: openblas 0.3.27 Haswell, 1 thread (9 runs)." in text
    (diff,) = [d for d in paired_differences(rows, Exp.variants) if d.variant == "avg"]
    assert diff.n == 3 and math.isclose(diff.mean, -0.018666666, rel_tol=1e-6)


def test_report_without_a_second_seed_has_no_comparison(tmp_path):
    rows = make_study(tmp_path, seeds=(0,))
    report.write_report(tmp_path / "report.md", Exp, result_rows.aggregate(rows, Exp.variants), rows)
    assert "Paired differences" not in (tmp_path / "report.md").read_text()


def test_twenty_variants_get_twenty_colours():
    """A family study has more than matplotlib's ten default colours' worth of variants; the first
    ten stay the default ones, so the figures of smaller studies keep their colours."""
    assert [plots._colour(i) for i in range(10)] == [f"C{i}" for i in range(10)]
    assert len({str(plots._colour(i)) for i in range(20)}) == 20
