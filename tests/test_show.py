"""``minicnn show`` and ``mc.show``: max-pooling switches against a plain NumPy reference, and
the feature-map and switch figures of a run folder, a study folder and the command line."""
import numpy as np
import pytest
import yaml

import minicnn as mc
import minicnn.layers as L
from conftest import tiny_config
from minicnn.featuremaps import show, stages
from minicnn.study.experiment import run_experiment
from minicnn.train import fit_config
from test_cli import minicnn
from test_experiment import InProcess, write_study

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def reference_switches(x, k, s, p):
    """For each output, (row, col) of the first maximum (row-major) of its window in x, padded with -inf."""
    n, c, h, w = x.shape
    padded = np.full((n, c, h + 2 * p[0], w + 2 * p[1]), -np.inf)
    padded[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x
    oh, ow = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    rows, cols = np.zeros((n, c, oh, ow), int), np.zeros((n, c, oh, ow), int)
    for i in range(n):
        for j in range(c):
            for a in range(oh):
                for b in range(ow):
                    window = padded[i, j, a * s[0]:a * s[0] + k[0], b * s[1]:b * s[1] + k[1]]
                    u, v = divmod(int(np.argmax(window)), k[1])  # argmax: the first maximum, row-major
                    rows[i, j, a, b], cols[i, j, a, b] = a * s[0] + u - p[0], b * s[1] + v - p[1]
    return rows, cols


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k, s, p, hw", [((2, 2), (2, 2), (0, 0), (6, 6)), ((3, 3), (2, 2), (1, 1), (7, 9)),
                                         ((3, 2), (1, 2), (1, 0), (5, 6)), ((2, 3), (3, 1), (0, 1), (8, 5))])
def test_switches_are_the_first_maximum_of_each_window(k, s, p, hw, dtype):
    rng = np.random.default_rng(sum(k) + sum(s) + sum(hw))
    x = rng.integers(0, 4, (2, 3, *hw)).astype(dtype)  # few values: many ties
    y, rows, cols = L.MaxPool2D(k, s, p).switches(x)
    ref_rows, ref_cols = reference_switches(x, k, s, p)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_array_equal(cols, ref_cols)
    n, c = np.indices(y.shape[:2])
    np.testing.assert_array_equal(x[n[..., None, None], c[..., None, None], rows, cols], y)
    assert rows.min() >= 0 and cols.min() >= 0 and rows.max() < hw[0] and cols.max() < hw[1]


def test_stages_are_the_input_each_conv_block_and_each_pooling_layer():
    model = mc.Sequential([mc.Conv2D(1, 3, 3, padding=1), mc.ReLU(), mc.MaxPool2D(2), mc.Conv2D(3, 2, 3),
                           mc.AvgPool2D(2), mc.Flatten(), mc.Dense(out_features=2)], (1, 10, 10), seed=0)
    x = np.random.default_rng(0).random((2, 1, 10, 10), dtype=np.float32)
    found = stages(model, x)
    assert [(label, out.shape) for label, _, _, out in found] == [
        ("input", (2, 1, 10, 10)), ("conv block 1", (2, 3, 10, 10)), ("MaxPool2D", (2, 3, 5, 5)),
        ("conv block 2", (2, 2, 3, 3)), ("AvgPool2D", (2, 2, 1, 1))]
    np.testing.assert_array_equal(found[1][3], np.maximum(model.layers[0](x), 0))  # after the ReLU
    np.testing.assert_array_equal(found[2][3], model.layers[2](found[1][3]))
    pooled = mc.Sequential([mc.Conv2D(1, 6, 3), mc.ReLU(), mc.GlobalAvgPool2D(), mc.Dense(out_features=2)],
                           (1, 5, 5), seed=0)
    last = stages(pooled, x[:, :, :5, :5])[-1]
    assert last[0] == "GlobalAvgPool2D" and last[3].shape == (2, 1, 2, 3)
    np.testing.assert_array_equal(last[3].reshape(2, 6), pooled.layers[2](last[2]))


def npz_run(tmp_path, tiny_data, name="run", pool="maxpool2d"):
    """A trained run folder of the tiny config on an npz copy of the tiny data set."""
    path = tmp_path / "tiny.npz"
    if not path.exists():
        np.savez(path, x_train=tiny_data.x_train, y_train=tiny_data.y_train, x_test=tiny_data.x_test,
                 y_test=tiny_data.y_test)
    raw = tiny_config(name, pool, data={"dataset": "npz", "path": str(path)}, train={"epochs": 1})
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path / f"{name}.yaml"


def test_show_draws_a_run_folder_into_it(tmp_path, tiny_data):
    config = npz_run(tmp_path, tiny_data)
    fit_config(mc_config(config), tmp_path / "run", log=lambda line: None)
    paths = show(tmp_path / "run", images=3)
    assert sorted(p.name for p in paths) == ["features.png", "switches.png"]
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in paths)
    figures = mc.show_figures({"": mc.load_run(tmp_path / "run").model}, tiny_data.x_test[:3])
    # 3 images x (input, conv block, max pool); switches: 3 images x 1 max-pooling layer
    assert len([a for a in figures["features.png"].axes if a.images]) == 9
    assert len([a for a in figures["switches.png"].axes if a.images]) == 3


def mc_config(path):
    from minicnn.config import load_config
    return load_config(path)


def test_show_draws_one_row_per_variant_of_a_study(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr("minicnn.data.load_dataset", lambda name, **kwargs: tiny_data)
    configs = {"max": tiny_config("max", train={"epochs": 1}), "avg": tiny_config("avg", "avgpool2d",
                                                                               train={"epochs": 1})}
    run_experiment(write_study(tmp_path, configs, seeds=(0,)), executor=InProcess(), log=lambda line: None)
    folder = tmp_path / "runs" / "study"
    show(folder, images=2, x=tiny_data.x_test)
    assert (folder / "features.png").read_bytes()[:8] == PNG_MAGIC
    models = {name: mc.load_run(folder / name / "seed0").model for name in configs}
    figures = mc.show_figures(models, tiny_data.x_test[:2])
    labels = [a.get_ylabel() for a in figures["features.png"].axes if a.get_ylabel()]
    assert labels == ["max\nimage 0", "max\nimage 1", "avg\nimage 0", "avg\nimage 1"]
    switch_rows = [a.get_ylabel() for a in figures["switches.png"].axes if a.get_ylabel()]
    assert switch_rows == ["max\nimage 0", "max\nimage 1"]  # average pooling has no switches


def test_the_command_line_show(tmp_path, tiny_data):
    config = npz_run(tmp_path, tiny_data)
    fit_config(mc_config(config), tmp_path / "run", log=lambda line: None)
    done = minicnn("show", tmp_path / "run", "--images", 2, env_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "run" / "features.png"), str(tmp_path / "run" / "switches.png")]
    done = minicnn("show", tmp_path, env_dir=tmp_path)
    assert done.returncode == 2 and "neither an experiment folder" in done.stderr
