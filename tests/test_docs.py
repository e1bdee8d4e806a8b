"""docs/architecture.md agrees with the code, the README with the committed results, and nothing
points to a file users do not have."""
import pathlib
import re

from minicnn import results as result_rows
from minicnn.study import report, stats
from minicnn.config import EXPERIMENT_SCHEMA, SCHEMA
from minicnn.files import read_csv
from minicnn.schema import schema_table

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "architecture.md").read_text()


def block(name):
    found = re.search(rf"<!-- schema: {name} -->\n(.*?)\n<!-- /schema -->", DOC, re.S)
    assert found, f"no schema block {name!r} in docs/architecture.md"
    return found.group(1)


def test_config_schema_table_is_the_codes():
    assert block("config") == schema_table(SCHEMA)


def test_experiment_schema_table_is_the_codes():
    assert block("experiment") == schema_table(EXPERIMENT_SCHEMA)


def test_every_declared_key_has_a_row():
    for key in ("seed", "data.augment.shift", "train.schedule.gamma", "model.layers[i].out_features",
                "train.optimizer.momentum", "eval.shifts"):
        assert f"| `{key}` |" in block("config")


def test_no_reference_to_design_md():
    files = [ROOT / "README.md", *(p for p in (ROOT / "minicnn").rglob("*") if p.suffix in (".py", ".pyx", ".h"))]
    assert [str(p) for p in files if "DESIGN.md" in p.read_text()] == []


def modules():
    """Every module of the package (.py, .pyx) as its path under minicnn/, e.g. "study/grid.py"."""
    package = ROOT / "minicnn"
    return sorted(str(p.relative_to(package)) for p in package.rglob("*")
                  if p.suffix in (".py", ".pyx") and "build" not in p.parts)


def unnamed(text):
    """The modules ``text`` does not name: a module in a subpackage needs its folder ("study/")
    and its file name, each standing alone (``conv.py`` is not named by ``_conv.pyx``)."""
    def named(word):
        return re.search(rf"(?<![\w/.]){re.escape(word)}(?![\w])", text) is not None
    return [m for m in modules() if not all(named(part + "/") if i < len(m.split("/")) - 1 else named(part)
                                            for i, part in enumerate(m.split("/")))]


def test_the_readmes_layout_names_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout\n")[1].split("\n## ")[0]
    assert unnamed(layout) == []


def test_the_architectures_floors_table_names_every_module():
    table = DOC[DOC.index("| floor | modules |"):].split("\n\n")[0]
    assert unnamed(table) == []


def test_unnamed_finds_a_missing_module():
    assert "layers/conv.py" in unnamed("layers/ _conv.pyx")
    assert "study/grid.py" in unnamed("grid.py")


def test_the_readmes_full_study_tables_are_the_committed_results():
    """Every accuracy and paired CI the README gives for the full study, recomputed from
    experiments/results/full/results.csv with the report's own functions."""
    readme = (ROOT / "README.md").read_text()
    rows = read_csv(ROOT / "experiments" / "results" / "full" / "results.csv")
    variants = ["max_pool", "avg_pool", "global_pool", "strided_conv"]
    cells = ["mnist, shift 0", "mnist, shift 2", "fashion_mnist, shift 0"]
    for v in variants:
        cells_text = [report._pct(*result_rows.mean_std([float(r["test_accuracy"]) for r in result_rows.in_cell(rows, c)
                                                     if r["config"] == v])) for c in cells]
        assert f"| {v} | {' | '.join(cells_text)} |" in readme, v

    def ci(cell, metric):
        return {d.variant: stats.interval(d) for d in stats.paired_differences(result_rows.in_cell(rows, cell), variants, metric)}

    columns = [ci("mnist, shift 0", "test_accuracy"), ci("fashion_mnist, shift 0", "test_accuracy"),
               ci("mnist, shift 0", "shift_4"), ci("mnist, shift 2", "shift_4"), ci("fashion_mnist, shift 0", "shift_4")]
    for v in variants[1:]:
        row = re.search(rf"^\| {v} \| (.*) \|$", readme.split("Each variant minus max_pool on the same seed (same "
                                                              "initial draw, batch order")[1], re.M)
        assert row, v
        assert [c.strip("* ") for c in row.group(1).split(" | ")] == [c[v] for c in columns], v


def test_the_readmes_default_study_tables_are_the_committed_results():
    readme = (ROOT / "README.md").read_text()
    default = readme.split("## Results: the default study on real MNIST")[1].split("## Results: the full study")[0]
    rows = read_csv(ROOT / "experiments" / "results" / "results.csv")
    variants = ["max_pool", "avg_pool", "global_pool", "strided_conv"]
    for v in variants:
        accuracy = report._pct(*result_rows.mean_std([float(r["test_accuracy"]) for r in rows if r["config"] == v]))
        assert f"| {v} | {accuracy} |" in default, v
    columns = [{d.variant: stats.interval(d) for d in stats.paired_differences(rows, variants, metric)}
               for metric in ("test_accuracy", "shift_2", "shift_4")]
    for v in variants[1:]:
        assert f"| {v} | {' | '.join(c[v] for c in columns)} |" in default, v


def test_the_readmes_notebook_snippet_runs_on_small_arrays():
    """The ten lines of "In a notebook", run as they stand on random arrays in place of MNIST."""
    import numpy as np

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## In a notebook\n")[1].split("\n## ")[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    rng = np.random.default_rng(0)
    names = {"x_train": rng.integers(0, 256, (96, 1, 28, 28), dtype=np.uint8), "y_train": rng.integers(0, 10, 96),
             "x_val": rng.integers(0, 256, (32, 1, 28, 28), dtype=np.uint8), "y_val": rng.integers(0, 10, 32)}
    exec(compile(code, "README.md", "exec"), names)
    assert len(names["history"]) == 2 and len(names["history"].history["val_accuracy"]) == 2
    assert names["model"].layers[3].in_channels == 16


def test_the_readmes_test_command_runs_the_docstrings():
    readme = (ROOT / "README.md").read_text()
    assert 'pip install -e ".[test]" && python -m pytest -q --doctest-modules minicnn tests' in readme


def test_ci_runs_the_readmes_test_command_verbatim():
    """The README's second command is what CI runs on a fresh machine, word for word."""
    readme = (ROOT / "README.md").read_text()
    command = re.findall(r"```bash\n(.*?)\n```", readme, re.S)[1]
    assert command.startswith("pip install") and "pytest" in command
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_readmes_new_layers_table_is_the_committed_results():
    """The README's table of the new layers, recomputed from experiments/results/new_layers/results.csv."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Results: the new layers, one seed each")[1].split("\n## ")[0]
    rows = read_csv(ROOT / "experiments" / "results" / "new_layers" / "results.csv")
    assert len(rows) == 15

    def pct(value):
        return "n/a" if value in ("", None) else f"{100 * float(value):.2f}"

    for r in rows:
        line = (f"| {r['config']} | {pct(r['test_accuracy'])} | {int(float(r['params'])):,} | "
                f"{float(r['seconds_per_epoch']):.1f} | {pct(r['consistency'])} | {pct(r['shift_4'])} | "
                f"{pct(r['canvas_56'])} | {pct(r['generalisation_gap'])} |")
        assert line in section, r["config"]
