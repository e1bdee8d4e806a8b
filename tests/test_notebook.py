"""examples/pooling_in_a_notebook.ipynb runs top to bottom through a real Jupyter kernel (nbclient,
ipykernel's own python3 kernel: the interpreter running the tests), and is committed without outputs.
It trains on 2,000 real MNIST images: skipped when MNIST cannot be had."""
import json
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "pooling_in_a_notebook.ipynb"


def test_the_notebook_is_committed_without_outputs():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def test_the_notebook_runs_in_a_kernel(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from minicnn import data

    try:
        data.load_dataset("mnist", progress=lambda line: None)
    except data.DataError as e:
        pytest.skip(f"MNIST cannot be had here: {str(e).splitlines()[0]}")
    # the kernel imports this checkout's minicnn, whatever is installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "max pooling      test accuracy" in text and "average pooling  test accuracy" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # the loss curves, the feature maps, the switches
