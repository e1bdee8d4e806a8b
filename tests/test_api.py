"""The notebook API (``import minicnn as mc``): its table of contents, one set of defaults, and
``fit`` on arrays giving exactly the numbers of the config-driven run."""
import ast
import importlib
import pathlib

import numpy as np
import pytest

import minicnn as mc
import minicnn.layers as L
from conftest import tiny_config
from minicnn.config import load_config, validate
from minicnn.train import fit_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
PUBLIC = {"Sequential", "Layer", "Conv2D", "Dense", "ReLU", "Softmax", "Flatten", "MaxPool2D", "AvgPool2D",
          "MinPool2D", "GlobalAvgPool2D", "GlobalMaxPool2D", "SGD", "Adam", "Constant", "Step", "Cosine",
          "learning_rate", "fit", "evaluate", "predict", "History", "from_config", "load_run", "load_study",
          "plot_history", "plot_study", "history_figures", "study_figures", "show", "show_figures"} | set(L.__all__)


def test_the_package_root_imports_and_lists_exactly_the_public_names():
    tree = ast.parse((ROOT / "minicnn" / "__init__.py").read_text())
    imported = {a.asname or a.name for node in tree.body if isinstance(node, ast.ImportFrom) for a in node.names}
    assert set(mc.__all__) == PUBLIC == imported | set(mc.LAZY)
    assert all(getattr(mc, name) is getattr(importlib.import_module(module), name) for name, module in mc.LAZY.items())
    assert len(mc.__all__) == len(PUBLIC)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_name_has_a_docstring_with_an_example(name):
    obj = getattr(mc, name)
    doc = obj.__doc__ or ""
    assert doc.strip(), name
    if name not in ("plot_study", "study_figures", "show"):  # they need a study or run folder: tests/test_show.py
        assert ">>> " in doc, f"{name} has no Example"


def test_defaults_are_float32_and_the_configs_sgd():
    assert mc.Conv2D(1, 2, 3).params["W"].dtype == np.float32
    assert mc.Dense(3, 2).params["W"].dtype == np.float32
    model = mc.Sequential([mc.Dense(3, 2)], (3,))
    opt = mc.SGD(model.parameters())
    default = validate({"model": tiny_config()["model"]}, "x.yaml").optimizer.options
    assert (opt.lr, opt.momentum, opt.weight_decay) == (default["lr"], default["momentum"], default["weight_decay"])


def test_positional_and_inferred_sizes_build_the_same_model():
    def net(positional):
        conv = mc.Conv2D(1, 4, 3, padding=1) if positional else mc.Conv2D(out_channels=4, kernel_size=3, padding=1)
        dense = mc.Dense(4 * 14 * 14, 10) if positional else mc.Dense(out_features=10)
        return mc.Sequential([conv, mc.ReLU(), mc.MaxPool2D(2), mc.Flatten(), dense, mc.Softmax()], (1, 28, 28),
                             seed=7)
    a, b = net(True), net(False)
    assert a.layers[0].in_channels == b.layers[0].in_channels == 1 and b.layers[4].in_features == 784
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[key])


def test_the_seed_draws_every_layer_made_without_rng_in_order():
    same = [mc.Conv2D(1, 2, 3), mc.Conv2D(2, 2, 3)]
    before = same[1].params["W"].copy()
    mc.Sequential(same, (1, 9, 9), seed=3)
    assert not np.array_equal(same[1].params["W"][:, :1], same[0].params["W"][:, :1])  # two draws, not seed 0 twice
    assert not np.array_equal(before, same[1].params["W"])
    own = mc.Conv2D(1, 2, 3, rng=np.random.default_rng(9))
    kept = own.params["W"].copy()
    mc.Sequential([own], (1, 5, 5), seed=3)
    np.testing.assert_array_equal(own.params["W"], kept)  # a layer's own rng wins
    with pytest.raises(ValueError, match="layer 1 .Dense."):
        mc.Sequential([mc.Flatten(), mc.Dense(3, 2)], (1, 2, 2))


def test_sequential_call_and_parameters():
    model = mc.Sequential([mc.Flatten(), mc.Dense(out_features=3), mc.Softmax()], (1, 2, 2), seed=0)
    x = np.random.default_rng(0).random((4, 1, 2, 2), dtype=np.float32)
    np.testing.assert_array_equal(model(x), model.forward(x, training=False))
    assert [(k, p[k].shape) for p, _, k in model.parameters()] == [("W", (4, 3)), ("b", (3,))]


def test_from_config_equals_the_same_layers_built_in_python():
    config = tiny_config(seed=5)
    model = mc.from_config(config)
    by_hand = mc.Sequential([mc.Conv2D(out_channels=4, kernel_size=3, stride=2), mc.ReLU(), mc.MaxPool2D(2),
                             mc.Flatten(), mc.Dense(out_features=10), mc.Softmax()], (1, 28, 28), seed=5)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, by_hand.state_dict()[key])
        assert value.dtype == np.float32


def test_fit_on_arrays_gives_the_config_runs_numbers_bit_for_bit(tmp_path, tiny_data):
    """mc.fit on the arrays of a config's splits, with its model, optimizer, schedule, seed and
    augmentation, is the run ``minicnn train`` makes: same weights, same metric rows."""
    config = load_config_dict(tiny_config(seed=2, data={"augment": {"shift": 1}},
                                          train={"schedule": {"name": "cosine", "warmup_epochs": 1}}), tmp_path)
    fit_config(config, tmp_path / "cli", data=tiny_data, log=lambda line: None)
    run = mc.load_run(tmp_path / "cli")

    model = mc.from_config(tiny_config(seed=2))
    x, y = tiny_data.x_train[:300], tiny_data.y_train[:300]
    val = (tiny_data.x_train[500:], tiny_data.y_train[500:])
    history = mc.fit(model, x, y, val=val, epochs=2, batch_size=50, optimizer={"name": "sgd", "lr": 0.05},
                     schedule=mc.Cosine(warmup_epochs=1), seed=2, augment={"shift": 1}, out=tmp_path / "api",
                     log=None)
    for key, value in run.model.state_dict().items():
        np.testing.assert_array_equal(value, model.state_dict()[key])
    keys = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")
    assert [[r[k] for k in keys] for r in history.rows] == [[r[k] for k in keys] for r in run.history.rows]
    again = mc.load_run(tmp_path / "api")
    for key, value in again.model.state_dict().items():
        np.testing.assert_array_equal(value, model.state_dict()[key])
    assert again.summary["epochs"] == 2 and (tmp_path / "api" / "metrics.csv").exists()


def load_config_dict(raw, tmp_path):
    import yaml
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def test_predict_needs_no_labels_and_evaluate_agrees():
    model = mc.Sequential([mc.Flatten(), mc.Dense(out_features=3)], (1, 3, 3), seed=1)
    x = np.random.default_rng(1).random((10, 1, 3, 3), dtype=np.float32)
    predicted = mc.predict(model, x, batch_size=4)
    np.testing.assert_array_equal(predicted, model(x).argmax(axis=1))
    _, acc = mc.evaluate(model, x, predicted)
    assert acc == 1.0


def test_fit_refuses_arrays_that_do_not_fit_the_model():
    model = mc.Sequential([mc.Flatten(), mc.Dense(out_features=3)], (1, 3, 3), seed=1)
    with pytest.raises(ValueError, match="takes .N, 1, 3, 3. images"):
        mc.fit(model, np.zeros((4, 1, 4, 4), np.float32), np.zeros(4, int), epochs=1, batch_size=2, log=None)
    with pytest.raises(ValueError, match="labels 0..3; the model gives 3 class scores"):
        mc.fit(model, np.zeros((4, 1, 3, 3), np.float32), np.arange(4), epochs=1, batch_size=2, log=None)


def test_history_figures_take_live_histories():
    model = mc.Sequential([mc.Flatten(), mc.Dense(out_features=2)], (1, 2, 2), seed=0)
    x, y = np.random.default_rng(0).random((16, 1, 2, 2), dtype=np.float32), np.arange(16) % 2
    h = mc.fit(model, x, y, val=(x, y), epochs=3, batch_size=4, log=None)
    figures = mc.plot_history({"a": h, "b": [h, h]})
    lines = figures["val_accuracy.png"].axes[0].get_lines()
    assert [list(line.get_ydata()) for line in lines] == [[100 * v for v in h.history["val_accuracy"]]] * 2
