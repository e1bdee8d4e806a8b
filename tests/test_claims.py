"""Claims in experiment files (minicnn.claims): their keys, the verdict rule, the report section, the figure."""
from __future__ import annotations

import json

import matplotlib.image
import pytest
from matplotlib.container import ErrorbarContainer

from minicnn import plots
from minicnn.study import claims
from minicnn.config import ClaimKeys
from minicnn.errors import ConfigError
from minicnn.study.experiment import load_experiment
from test_experiment import ROOT, TWO, fake_data, run, write_study  # noqa: F401 - fake_data is a fixture


def claim(**keys) -> ClaimKeys:
    return ClaimKeys(**{"text": "b beats a", "metric": "test_accuracy", "variant": "b", "baseline": "a",
                        "direction": "higher", **keys})


def made_up(differences: list[float], cell: str = "", metric: str = "test_accuracy", base: float = 0.9):
    """Rows of variants a and b over seeds 0.. with b - a = differences[seed]."""
    rows = []
    for seed, d in enumerate(differences):
        for name, value in (("a", base), ("b", base + d)):
            rows.append({"cell": cell, "config": name, "seed": seed, metric: value, "diverged": False})
    return rows


UP = [0.010, 0.012, 0.011, 0.009, 0.013]        # CI about [+0.9, +1.3] points
DOWN = [-d for d in UP]
FLAT = [0.001, -0.001, 0.0005, -0.0005, 0.0]    # CI about [-0.1, +0.1] points
NOISY = [0.02, -0.03, 0.01, -0.01, 0.015]       # CI across 0


@pytest.mark.parametrize("direction, margin, differences, verdict", [
    ("higher", 0.005, UP, "supported"),
    ("higher", 0.005, DOWN, "contradicted"),
    ("higher", 0.005, NOISY, "not resolved at 5 seeds"),
    ("lower", 0.005, DOWN, "supported"),
    ("lower", 0.005, UP, "contradicted"),
    ("equal", 0.005, FLAT, "supported"),
    ("equal", 0.005, UP, "contradicted"),        # more than half a point apart, resolved
    ("equal", 0.02, UP, "supported"),            # within 2 points
    ("equal", 0.005, NOISY, "not resolved at 5 seeds"),
    ("not_lower", 0.005, FLAT, "supported"),
    ("not_lower", 0.005, UP, "supported"),
    ("not_lower", 0.005, DOWN, "contradicted"),
    ("not_lower", 0.02, DOWN, "supported"),      # a loss of about 1 point, within a 2-point margin
    ("higher", 0.005, UP[:1], "not resolved at 1 seed"),
])
def test_the_verdict_rule_on_made_up_rows(direction, margin, differences, verdict):
    (tested,) = claims.tested(made_up(differences), [claim(direction=direction, margin=margin)])
    assert tested.verdict == verdict
    assert tested.difference.mean == pytest.approx(sum(differences) / len(differences))


def test_a_claim_without_a_cell_is_tested_in_every_cell_and_one_with_a_cell_in_it_alone():
    rows = made_up(UP, "mnist") + made_up(DOWN, "fashion_mnist")
    every = claims.tested(rows, [claim()])
    assert [(t.cell, t.verdict) for t in every] == [("mnist", "supported"), ("fashion_mnist", "contradicted")]
    (one,) = claims.tested(rows, [claim(cell="fashion_mnist")])
    assert one.verdict == "contradicted" and one.number == 1


def test_a_variant_against_its_own_other_metric():
    rows = made_up(UP, metric="canvas_56")
    for r in rows:
        r["test_accuracy"] = 0.9
    c = claim(metric="canvas_56", baseline="b", baseline_metric="test_accuracy", direction="not_lower", margin=0.02)
    (tested,) = claims.tested(rows, [c])
    assert tested.difference.mean == pytest.approx(0.9 + sum(UP) / 5 - 0.9) and tested.verdict == "supported"
    assert claims.compared(c) == "b canvas_56 - b test_accuracy"


def test_a_metric_not_measured_for_a_variant_is_said_so():
    rows = made_up(UP, metric="canvas_40")
    for r in rows:
        if r["config"] == "b":
            r["canvas_40"] = ""   # a model that cannot take the canvas
    (tested,) = claims.tested(rows, [claim(metric="canvas_40")])
    assert tested.verdict == "not measured"
    assert "| not measured |" in "\n".join(claims.section(rows, [claim(metric="canvas_40")]))


def test_the_section_gives_each_claim_its_interval_and_verdict_and_states_the_rule():
    lines = claims.section(made_up(UP), [claim(), claim(text="b no worse", direction="not_lower")])
    text = "\n".join(lines)
    assert lines[0] == "## Claims" and claims.RULE in text
    rows = [line for line in lines if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 2 and "| supported |" in rows[0] and "not lower by more than 0.50 points" in rows[1]
    assert "+1.10 [" in rows[0]
    assert claims.section(made_up(UP), []) == []


def test_claims_figure_draws_one_panel_per_claim_and_one_row_per_cell(tmp_path):
    rows = made_up(UP, "mnist") + made_up(NOISY, "fashion_mnist")
    tested = claims.tested(rows, [claim(), claim(direction="equal", cell="mnist")])
    fig = plots.claims_figure(tested)
    assert len(fig.axes) == 2
    first, second = fig.axes
    bars = [c for ax in fig.axes for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 3
    for bar, t in zip(bars, tested):
        assert bar.lines[0].get_xdata()[0] == pytest.approx(100 * t.difference.mean)
        low, high = bar.lines[2][0].get_segments()[0][:, 0]  # the CI's horizontal bar
        assert (low, high) == pytest.approx((100 * t.difference.low, 100 * t.difference.high))
    assert [t.get_text() for t in first.get_yticklabels()] == ["mnist", "fashion_mnist"]
    assert first.get_title(loc="left") == "1. test_accuracy: b - a: predicts higher"
    assert second.get_title(loc="left").startswith("2. ") and "equal within 0.50 points" in second.get_title(loc="left")
    colours = [bar.lines[0].get_color() for bar in bars]
    assert colours == ["tab:green", "tab:gray", "tab:red"]  # supported, not resolved, contradicted (UP is > 0.5 pt)
    plots.save(fig, tmp_path / "claims.png")
    assert matplotlib.image.imread(tmp_path / "claims.png").shape[2] == 4


# ---------------------------------------------------------------- the experiment file's claims: keys

def good(**keys):
    return {"text": "avg pooling is more shift-consistent", "metric": "consistency", "variant": "avg",
            "baseline": "max", "direction": "higher", **keys}


@pytest.mark.parametrize("item, where, words", [
    (good(metric="accuracy"), "claims[0].metric", "expected a results.csv column that runs of avg write"),
    (good(baseline_metric="canvas_41"), "claims[0].baseline_metric", "that runs of max write"),
    (good(baseline="avg", baseline_metric="consistency"), "claims[0].baseline", "another variant"),
    (good(metric="canvas_99"), "claims[0].metric", "canvas_40"),
    (good(variant="stochastic"), "claims[0].variant", "expected one of the configs' names (max, avg)"),
    (good(baseline="nope"), "claims[0].baseline", "(max, avg)"),
    (good(baseline="avg"), "claims[0].baseline", "another variant"),
    (good(cell="mnist"), "claims[0].cell", "no grid"),
    (good(metric="probe_seconds"), "claims[0].metric", "consistency"),
    (good(direction="better"), "claims[0].direction", "one of higher, lower, equal, not_lower"),
    (good(margin=0), "claims[0].margin", "(0, 1)"),
    (good(colour="red"), "claims[0].colour", "unknown key"),
    ({"metric": "consistency"}, "claims[0].text", "missing"),
])
def test_a_bad_claim_names_its_key(tmp_path, item, where, words):
    path = write_study(tmp_path, TWO, claims=[good(), item][1:])
    with pytest.raises(ConfigError) as e:
        load_experiment(path)
    assert e.value.path == where and words in e.value.message, e.value


def test_a_bad_claim_exits_2_with_one_line(tmp_path, run_cli):
    path = write_study(tmp_path, TWO, claims=[good(), good(metric="nonsense")])
    status, _, err = run_cli("ablate", path)
    assert status == 2 and "claims[1].metric" in err and "Traceback" not in err


def test_a_claim_may_compare_a_variant_with_its_own_test_accuracy(tmp_path):
    path = write_study(tmp_path, TWO, claims=[good(metric="canvas_40", baseline="avg",
                                                   baseline_metric="test_accuracy")])
    assert load_experiment(path).claims[0].baseline_metric == "test_accuracy"


def test_a_claim_may_name_a_grid_cell(tmp_path):
    path = write_study(tmp_path, TWO, claims=[good(cell="lr 0.02")],
                       grid={"train.optimizer.lr": [0.05, 0.02]})
    assert load_experiment(path).claims[0].cell == "lr 0.02"
    path = write_study(tmp_path, TWO, claims=[good(cell="lr 0.03")], grid={"train.optimizer.lr": [0.05, 0.02]})
    with pytest.raises(ConfigError, match=r"claims\[0\]\.cell: expected one of the grid cells' labels "
                                          r"\(lr 0\.05; lr 0\.02\)"):
        load_experiment(path)


# ---------------------------------------------------------------- a study with claims

def test_a_study_reports_its_claims_and_draws_them_from_its_folder(tmp_path, fake_data):
    path = write_study(tmp_path, TWO, seeds=[0, 1], claims=[good(), good(metric="generalisation_gap",
                                                                       direction="lower", text="avg over-fits less")])
    run(path)
    out = tmp_path / "runs" / "study"
    report = (out / "report.md").read_text()
    section = report.split("## Claims")[1]
    assert "avg pooling is more shift-consistent" in section and "avg over-fits less" in section
    assert "consistency: avg - max" in section
    assert json.loads((out / "claims.json").read_text())[1]["metric"] == "generalisation_gap"
    assert (out / "claims.png").exists()
    (out / "claims.png").unlink()
    assert out / "claims.png" in claims.draw_folder(out)  # redrawn from the folder alone


def test_the_family_study_loads_with_its_claims():
    exp = load_experiment(ROOT / "experiments" / "pooling_family.yaml")
    assert exp.variants[0] == "max_pool" and len(exp.variants) == 12 and len(exp.cells) == 3
    assert len(exp.runs) == 12 * 3 * 5 and len(exp.claims) == 16
    assert {"stochastic_pool", "fractional_max_pool", "mixed_pool", "gated_pool", "maxblur_pool"} <= set(exp.variants)
    assert {c.metric for c in exp.claims} >= {"consistency", "gaussian_0.2", "salt_pepper_0.1", "canvas_56",
                                              "generalisation_gap", "test_accuracy"}
