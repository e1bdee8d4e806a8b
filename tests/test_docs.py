"""docs/architecture.md agrees with the code, the README with the committed results, and nothing
points to a file users do not have."""
import pathlib
import re

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


def floors():
    """{module: (floor, allowed imports)} from the floors table of docs/architecture.md."""
    table = DOC[DOC.index("| floor | modules |"):].split("\n\n")[0].splitlines()[2:]
    out = {}
    for row in table:
        floor, modules, allowed = (cell.strip() for cell in row.strip("|").split("|"))
        members = [m for m in re.findall(r"`(\w+)`", modules) if m != "data" or floor == "services"]
        members = [m for m in members if floor != "front door" or m in ("cli", "__main__")]
        for m in members:
            out[m] = (floor, None if allowed == "every module" else set(re.findall(r"`(\w+)`", allowed)))
    return out


def imports(path):
    """Top-level minicnn modules that a file imports (anywhere in it)."""
    text = path.read_text()
    found = set(re.findall(r"^\s*(?:from|import) minicnn\.(\w+)", text, re.M))
    for names in re.findall(r"^\s*from minicnn import ([\w ,]+)", text, re.M):
        found |= {n.split(" as ")[0].strip() for n in names.split(",")}
    return found


def test_every_import_follows_the_floors_table():
    table = floors()
    wrong = []
    for path in sorted((ROOT / "minicnn").rglob("*")):
        if path.suffix not in (".py", ".pyx"):
            continue
        module = path.relative_to(ROOT / "minicnn").with_suffix("").parts[0]
        if module == "__init__":  # the package's version line
            continue
        assert module in table, f"{module} is in no floor of docs/architecture.md"
        floor, allowed = table[module]
        for name in imports(path) - {module}:
            if allowed is not None and name not in allowed and table.get(name, ("?",))[0] != floor:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_the_readmes_full_study_tables_are_the_committed_results():
    """Every accuracy and paired CI the README gives for the full study, recomputed from
    experiments/results/full/results.csv with the report's own functions."""
    readme = (ROOT / "README.md").read_text()
    rows = read_csv(ROOT / "experiments" / "results" / "full" / "results.csv")
    variants = ["max_pool", "avg_pool", "global_pool", "strided_conv"]
    cells = ["mnist, shift 0", "mnist, shift 2", "fashion_mnist, shift 0"]
    for v in variants:
        cells_text = [report._pct(*report.mean_std([float(r["test_accuracy"]) for r in report.in_cell(rows, c)
                                                     if r["config"] == v])) for c in cells]
        assert f"| {v} | {' | '.join(cells_text)} |" in readme, v

    def ci(cell, metric):
        return {d.variant: stats.interval(d) for d in stats.paired_differences(report.in_cell(rows, cell), variants, metric)}

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
        accuracy = report._pct(*report.mean_std([float(r["test_accuracy"]) for r in rows if r["config"] == v]))
        assert f"| {v} | {accuracy} |" in default, v
    columns = [{d.variant: stats.interval(d) for d in stats.paired_differences(rows, variants, metric)}
               for metric in ("test_accuracy", "shift_2", "shift_4")]
    for v in variants[1:]:
        assert f"| {v} | {' | '.join(c[v] for c in columns)} |" in default, v
