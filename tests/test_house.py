"""The house: every import in minicnn/ goes down the floors (or stays on its floor), and no
module imports one that imports it.

The floors, bottom to top, are those of the design (cli > study > plots > train > runs >
config > model > layers > losses/optim > data > kernels), with the few service modules
placed on the floor of their users.  Every import counts, also those inside functions.
"""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "minicnn"

# bottom to top; a module name matches its longest listed prefix ("minicnn._" is every kernel)
FLOORS = [
    ("kernels", ["minicnn._", "minicnn.errors", "minicnn.files", "minicnn.threads", "minicnn.blas", "minicnn.memory", "minicnn.isa"]),
    ("data", ["minicnn.data"]),
    ("losses/optim", ["minicnn.losses", "minicnn.optim", "minicnn.schedules"]),
    ("layers", ["minicnn.layers"]),
    ("model", ["minicnn.model"]),
    ("config", ["minicnn.config", "minicnn.schema"]),
    ("runs", ["minicnn.runs", "minicnn.confusion"]),
    ("train", ["minicnn.train", "minicnn.progress", "minicnn.probes", "minicnn.results"]),
    ("plots", ["minicnn.plots", "minicnn.featuremaps"]),
    ("study", ["minicnn.study"]),
    ("api", ["minicnn"]),  # the package root: the table of contents of the public API
    ("cli", ["minicnn.cli", "minicnn.__main__"]),
]


def floor_of(module: str) -> int | None:
    """Index in FLOORS of the floor ``module`` lives on; None when no floor lists it."""
    best, level = -1, None
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            hit = (module.startswith(p) if p.endswith("_") else module == p or module.startswith(p + "."))
            if p == "minicnn":
                hit = module == "minicnn"
            if hit and len(p) > best:
                best, level = len(p), i
    return level


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """{dotted name: file} of every .py module and .pyx kernel under the package ``root``."""
    return {module_name(p, root): p for p in sorted(root.rglob("*")) if p.suffix in (".py", ".pyx")}


def imports(path: pathlib.Path, name: str, known: dict) -> set[str]:
    """The package's modules that ``path`` (module ``name``) imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for a in node.names:
                full = f"{base}.{a.name}"
                found.add(full if full in known else base)
    root = next(iter(known)).split(".")[0]
    return {m for m in found if m == root or m.startswith(root + ".")} - {name}


def graph(root: pathlib.Path) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports(path, name, known) for name, path in known.items() if path.suffix == ".py"}


def upward(edges: dict[str, set[str]]) -> list[str]:
    """'a imports b' for every import that goes up a floor or touches a module in no floor."""
    wrong = []
    for a, targets in sorted(edges.items()):
        for b in sorted(targets):
            fa, fb = floor_of(a), floor_of(b)
            if fa is None or fb is None:
                wrong.append(f"{a if fa is None else b} is on no floor of tests/test_house.py")
            elif fb > fa:
                wrong.append(f"{a} ({FLOORS[fa][0]}) imports {b} ({FLOORS[fb][0]})")
    return sorted(set(wrong))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a list of modules, first repeated last) per back edge of a depth-first walk."""
    found, state, stack = [], {}, []

    def visit(a):
        state[a] = "open"
        stack.append(a)
        for b in sorted(edges.get(a, ())):
            if state.get(b) == "open":
                found.append(stack[stack.index(b):] + [b])
            elif b not in state:
                visit(b)
        stack.pop()
        state[a] = "done"

    for a in sorted(edges):
        if a not in state:
            visit(a)
    return found


def test_every_import_goes_down_the_floors():
    assert upward(graph(PACKAGE)) == []


def test_no_import_cycle():
    assert cycles(graph(PACKAGE)) == []


def test_imports_inside_functions_count():
    edges = graph(PACKAGE)
    assert "minicnn.train" in edges["minicnn.study.experiment"]  # run_one's lazy `from minicnn.train import fit`
    assert "minicnn._pool" in edges["minicnn.layers.pooling"]    # `from minicnn import _pool`


def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "minicnn"
    (pkg / "layers").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "layers" / "__init__.py").write_text("")
    (pkg / "model.py").write_text("from minicnn.layers import conv\n")
    (pkg / "layers" / "conv.py").write_text("def f():\n    from minicnn.model import Sequential\n")
    (pkg / "data.py").write_text("from . import train\n")
    (pkg / "train.py").write_text("import minicnn.data\n")
    edges = graph(pkg)
    assert upward(edges) == ["minicnn.data (data) imports minicnn.train (train)",
                             "minicnn.layers.conv (layers) imports minicnn.model (model)"]
    assert sorted(map(tuple, cycles(edges))) == [("minicnn.data", "minicnn.train", "minicnn.data"),
                                                 ("minicnn.layers.conv", "minicnn.model", "minicnn.layers.conv")]
