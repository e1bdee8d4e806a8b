"""Config parsing, validation errors (file, key path, expectation) and overrides."""
import pathlib

import numpy as np
import pytest
import yaml

from minicnn.config import build_model, load_config, parse_key
from minicnn.errors import ConfigError

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"
BASE = yaml.safe_load((CONFIGS / "max_pool.yaml").read_text())


def write(tmp_path, data, name="c.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_reference_config_builds_the_design_network():
    config = load_config(CONFIGS / "max_pool.yaml")
    model = build_model(config)
    assert config.epochs == 5 and config.batch_size == 64
    assert config.optimizer.name == "sgd" and config.optimizer.options["lr"] == 0.05
    assert model.layers[3].params["W"].shape == (64, 32, 3, 3)  # in_channels inferred
    assert model.layers[7].params["W"].shape == (3136, 128)      # in_features inferred
    assert model.n_params == 421_642
    assert model.output_shape == (10,)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_builds(path):
    model = build_model(load_config(path))
    assert model.output_shape == (10,)
    assert build_model(load_config(path), allocate=False).n_params == model.n_params


def test_overrides_set_nested_keys_and_list_items():
    config = load_config(CONFIGS / "max_pool.yaml",
                         ["train.epochs=2", "model.layers[2].kernel_size=[2, 1]",
                          "train.optimizer.lr=0.01", "seed=7"])
    assert config.epochs == 2 and config.seed == 7
    assert config.layers[2][1]["kernel_size"] == (2, 1)
    assert config.optimizer.options["lr"] == 0.01


def test_parse_key():
    assert parse_key("model.layers[2].kernel_size", "f") == ["model", "layers", 2, "kernel_size"]
    for bad in ("", "a..b", "a.[1]", "a.b[x]", "1a"):
        with pytest.raises(ConfigError):
            parse_key(bad, "f")


def mutate(path_steps, value):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    node = data
    for step in path_steps[:-1]:
        node = node[step]
    if value is KeyError:
        del node[path_steps[-1]]
    else:
        node[path_steps[-1]] = value
    return data


BROKEN = [
    # (description, config data or YAML text, overrides, expected key path, words in the message)
    ("yaml syntax", "name: x\nmodel: [1, 2\n", [], "", "invalid YAML"),
    ("not a mapping", "- 1\n- 2\n", [], "", "mapping"),
    ("unknown top key", mutate(["optimiser"], 1) | {}, [], "optimiser", "unknown key"),
    ("unknown layer key", mutate(["model", "layers", 2, "size"], 2), [], "model.layers[2].size", "unknown key"),
    ("unknown layer type", mutate(["model", "layers", 1, "type"], "swish"), [], "model.layers[1].type", "expected one of"),
    ("missing kernel_size", mutate(["model", "layers", 2, "kernel_size"], KeyError), [],
     "model.layers[2].kernel_size", "missing"),
    ("kernel_size string", mutate(["model", "layers", 2, "kernel_size"], "2"), [],
     "model.layers[2].kernel_size", "positive integer"),
    ("kernel_size zero", mutate(["model", "layers", 2, "kernel_size"], 0), [],
     "model.layers[2].kernel_size", "positive integer"),
    ("kernel_size negative", mutate(["model", "layers", 0, "kernel_size"], -3), [],
     "model.layers[0].kernel_size", "positive integer"),
    ("kernel_size bool", mutate(["model", "layers", 0, "kernel_size"], True), [],
     "model.layers[0].kernel_size", "positive integer"),
    ("kernel_size triple", mutate(["model", "layers", 0, "kernel_size"], [3, 3, 3]), [],
     "model.layers[0].kernel_size", "pair"),
    ("stride zero", mutate(["model", "layers", 2, "stride"], 0), [], "model.layers[2].stride", "positive"),
    ("padding negative", mutate(["model", "layers", 0, "padding"], -1), [], "model.layers[0].padding", ">= 0"),
    ("pool padding too big", mutate(["model", "layers", 2, "padding"], 2), [], "model.layers[2]", "padding"),
    ("pool window too big", mutate(["model", "layers", 5, "kernel_size"], 15), [], "model.layers[5]", "does not fit"),
    ("conv window too big", mutate(["model", "layers", 3, "kernel_size"], 30), [], "model.layers[3]", "does not fit"),
    ("out_channels zero", mutate(["model", "layers", 0, "out_channels"], 0), [], "model.layers[0].out_channels", "positive"),
    ("out_channels float", mutate(["model", "layers", 0, "out_channels"], 3.5), [], "model.layers[0].out_channels", "positive integer"),
    ("dense without flatten", mutate(["model", "layers", 6, "type"], "relu"), [], "model.layers[7]", "flatten"),
    ("wrong in_channels", mutate(["model", "layers", 3, "in_channels"], 5), [], "model.layers[3].in_channels", "32"),
    ("empty layers", mutate(["model", "layers"], []), [], "model.layers", "non-empty"),
    ("layers not a list", mutate(["model", "layers"], {"a": 1}), [], "model.layers", "list"),
    ("layer not a mapping", mutate(["model", "layers", 1], "relu"), [], "model.layers[1]", "mapping"),
    ("no model", mutate(["model"], KeyError), [], "model", "mapping"),
    ("wrong input shape", mutate(["model", "input_shape"], [3, 32, 32]), [], "model.input_shape", "[1, 28, 28]"),
    ("input shape not a list", mutate(["model", "input_shape"], 28), [], "model.input_shape", "list"),
    ("ten classes", mutate(["model", "layers", 9, "out_features"], 7), [], "model.layers", "10 class"),
    ("epochs zero", mutate(["train", "epochs"], 0), [], "train.epochs", "positive"),
    ("epochs string", mutate(["train", "epochs"], "five"), [], "train.epochs", "positive integer"),
    ("batch negative", mutate(["train", "batch_size"], -1), [], "train.batch_size", "positive"),
    ("lr negative", mutate(["train", "optimizer", "lr"], -0.1), [], "train.optimizer.lr", "> 0"),
    ("lr nan", mutate(["train", "optimizer", "lr"], float("nan")), [], "train.optimizer.lr", "> 0"),
    ("momentum one", mutate(["train", "optimizer", "momentum"], 1.0), [], "train.optimizer.momentum", "[0, 1)"),
    ("unknown optimizer", mutate(["train", "optimizer", "name"], "rmsprop"), [], "train.optimizer.name", "sgd, adam"),
    ("adam key for sgd", mutate(["train", "optimizer", "beta1"], 0.9), [], "train.optimizer.beta1", "unknown key"),
    ("unknown data set", mutate(["data", "dataset"], "cifar10"), [], "data.dataset", "mnist"),
    ("val_size too big", mutate(["data", "val_size"], 60000), [], "data.val_size", "fewer than"),
    ("seed negative", mutate(["seed"], -1), [], "seed", ">= 0"),
    ("name not a string", mutate(["name"], 5), [], "name", "string"),
    ("bad shifts", BASE | {"eval": {"shifts": [0, -1]}}, [], "eval.shifts", ">= 0"),
    ("override unknown key", BASE, ["train.foo=1"], "train.foo", "unknown key"),
    ("override missing index", BASE, ["model.layers[40].kernel_size=2"], "model.layers[40].kernel_size", "does not exist"),
    ("override without =", BASE, ["train.epochs"], "train.epochs", "KEY=VALUE"),
    ("override bad key", BASE, ["train..epochs=1"], "train..epochs", "dotted path"),
    ("override wrong type", BASE, ["train.epochs=abc"], "train.epochs", "positive integer"),
    ("override through a scalar", BASE, ["seed.x=1"], "seed.x", "not a mapping"),
    # normalisation, regularisation, activations
    ("batchnorm momentum", BASE, ["model.layers[1]={type: batchnorm2d, momentum: 2}"], "model.layers[1].momentum",
     "a number in [0, 1]"),
    ("batchnorm eps zero", BASE, ["model.layers[1]={type: batchnorm2d, eps: 0}"], "model.layers[1].eps", "> 0"),
    ("batchnorm affine", BASE, ["model.layers[1]={type: batchnorm2d, affine: 1}"], "model.layers[1].affine",
     "true or false"),
    ("batchnorm channels", BASE, ["model.layers[1]={type: batchnorm2d, num_features: 5}"],
     "model.layers[1].num_features", "expected 32 (inferred"),
    ("batchnorm2d on features", BASE, ["model.layers[7]={type: batchnorm2d}"], "model.layers[7]",
     "needs a (C, H, W) feature map"),
    ("batchnorm1d on a map", BASE, ["model.layers[1]={type: batchnorm1d}"], "model.layers[1]", "BatchNorm1D: expects"),
    ("batchnorm unknown key", BASE, ["model.layers[1]={type: batchnorm2d, momentum_: 0.1}"],
     "model.layers[1].momentum_", "unknown key"),
    ("dropout p", BASE, ["model.layers[1]={type: dropout, p: 1.5}"], "model.layers[1].p", "a number in [0, 1]"),
    ("dropout2d on features", BASE, ["model.layers[7]={type: dropout2d}"], "model.layers[7]", "needs a (C, H, W)"),
    ("leakyrelu slope", BASE, ["model.layers[1]={type: leakyrelu, negative_slope: x}"],
     "model.layers[1].negative_slope", "a number >= 0"),
    ("gelu approximate", BASE, ["model.layers[1]={type: gelu, approximate: erf}"], "model.layers[1].approximate",
     "one of none, tanh"),
]


@pytest.mark.parametrize("what, data, overrides, key_path, words", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_configs_name_file_path_and_expectation(tmp_path, what, data, overrides, key_path, words):
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    err = info.value
    assert err.file == str(path)
    assert err.path == key_path
    assert words in err.message
    assert str(err).startswith(f"{path}: ")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    pwned = tmp_path / "pwned"  # an absolute path: the command would create it wherever the cwd is
    path = write(tmp_path, f"name: !!python/object/apply:os.system ['touch {pwned}']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)
    assert not pwned.exists()
    yaml.unsafe_load(path.read_text())  # the same text with an unsafe loader does create it
    assert pwned.exists()


def test_seed_changes_weights_and_same_seed_repeats():
    a = build_model(load_config(CONFIGS / "max_pool.yaml"))
    b = build_model(load_config(CONFIGS / "max_pool.yaml"))
    c = build_model(load_config(CONFIGS / "max_pool.yaml", ["seed=1"]))
    assert (a.layers[0].params["W"] == b.layers[0].params["W"]).all()
    assert not (a.layers[0].params["W"] == c.layers[0].params["W"]).all()


# ---------------------------------------------------------------- schema additions and memory

def test_optimizer_left_out_or_named_only_gives_the_same_sgd(tmp_path):
    left_out = load_config(write(tmp_path, {k: v for k, v in BASE.items() if k != "train"}))
    named = load_config(write(tmp_path, BASE | {"train": {"optimizer": {"name": "sgd"}}}, "n.yaml"))
    assert left_out.optimizer == named.optimizer
    assert named.optimizer.options == {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0}


def test_new_keys_default_to_todays_behaviour_and_are_exposed(tmp_path):
    config = load_config(CONFIGS / "max_pool.yaml")
    assert (config.dataset, config.data_path, config.augment_shift) == ("mnist", None, 0)
    assert config.schedule.name == "constant" and config.num_outputs == 10
    data = BASE | {"data": {"dataset": "npz", "path": "sub/d.npz"},
                   "model": BASE["model"] | {"input_shape": [3, 32, 32]},
                   "train": BASE["train"] | {"schedule": {"name": "step", "step_epochs": 2, "gamma": 0.5}}}
    data["model"]["layers"] = [*BASE["model"]["layers"][:-2], {"type": "dense", "out_features": 7}]
    config = load_config(write(tmp_path, data))
    assert config.data_path == str((tmp_path / "sub" / "d.npz").resolve())
    assert config.num_outputs == 7 and config.input_shape == (3, 32, 32)
    assert (config.schedule.name, config.schedule.options) == ("step", {"step_epochs": 2, "gamma": 0.5})


NEW_KEYS_BROKEN = [
    ({"data": {"dataset": "npz"}}, "data.path", "missing"),
    ({"data": {"path": "x.npz"}}, "data.path", "only for dataset npz"),
    ({"data": {"augment": {"shift": -1}}}, "data.augment.shift", ">= 0"),
    ({"data": {"augment": {"flip": True}}}, "data.augment.flip", "unknown key"),
    ({"train": {"schedule": {"name": "step"}}}, "train.schedule.step_epochs", "missing"),
    ({"train": {"schedule": {"name": "step", "step_epochs": 1, "gamma": 0}}}, "train.schedule.gamma", "(0, 1]"),
    ({"train": {"schedule": {"name": "cosine", "warmup_epochs": -1}}}, "train.schedule.warmup_epochs", ">= 0"),
    ({"train": {"schedule": {"name": "cyclic"}}}, "train.schedule.name", "constant, step, cosine"),
    ({"data": {"dataset": "fashion_mnist"}, "model": {"input_shape": [3, 28, 28], "layers": [{"type": "flatten"}]}},
     "model.input_shape", "[1, 28, 28]"),
]


@pytest.mark.parametrize("edit, key_path, words", NEW_KEYS_BROKEN, ids=[c[1] + ":" + c[2] for c in NEW_KEYS_BROKEN])
def test_new_keys_are_checked(tmp_path, edit, key_path, words):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BASE | edit))
    assert (info.value.path, words in info.value.message) == (key_path, True), info.value


def test_memory_check_names_both_numbers_and_the_dominating_layer(tmp_path):
    from minicnn.config import check_memory, memory_estimate
    from minicnn.errors import UserError

    data = mutate(["model", "layers", 0, "out_channels"], 100000)
    config = load_config(write(tmp_path, data))
    estimate = memory_estimate(config)
    # 100000 x 28 x 28 float32 outputs, three arrays of them per batch of 64, for layers 0 and 1 each
    assert estimate.rows[0].activations == 3 * 64 * 100000 * 28 * 28 * 4
    assert estimate.dominant[0] == 0
    with pytest.raises(UserError, match=r"needs about [\d.]+ GiB .*more than the 8.0 GiB available.*layer 0 \(conv2d\)"):
        check_memory(config, available=8 * 2**30)
    small = load_config(CONFIGS / "max_pool.yaml")
    check_memory(small, available=8 * 2**30)  # 101 MiB: passes
    with pytest.raises(UserError, match="more than the 50 MiB available"):
        check_memory(small, available=50 * 2**20)


def test_the_plan_has_the_built_models_shapes_and_counts():
    config = load_config(CONFIGS / "max_pool.yaml")
    built, plan = build_model(config), build_model(config, allocate=False)
    assert plan.rows == built.rows
    assert [{k: p.shape for k, p in layer.params.items()} for layer in plan.layers] == \
        [{k: p.shape for k, p in layer.params.items()} for layer in built.layers]
    assert all(p.strides == (0,) * p.ndim for layer in plan.layers for p in layer.params.values())


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_builds(path):
    """A broken YAML in configs/ never reaches a user: each validates, builds and gives 10 scores."""
    config = load_config(path)
    model = build_model(config)
    assert model.output_shape == (10,)
    assert model.forward(np.zeros((2, *config.input_shape), dtype=np.float32)).shape == (2, 10)


def test_new_layer_types_build_with_inferred_sizes(tmp_path):
    layers = [{"type": "conv2d", "out_channels": 4, "kernel_size": 3}, {"type": "batchnorm2d", "momentum": 0.2},
              {"type": "leakyrelu", "negative_slope": 0.1}, {"type": "dropout2d", "p": 0.25},
              {"type": "flatten"}, {"type": "dense", "out_features": 8}, {"type": "batchnorm1d", "affine": False},
              {"type": "gelu", "approximate": "tanh"}, {"type": "dropout"}, {"type": "tanh"}, {"type": "sigmoid"},
              {"type": "dense", "out_features": 10}, {"type": "softmax"}]
    config = load_config(write(tmp_path, BASE | {"model": {"input_shape": [1, 28, 28], "layers": layers}}))
    model = build_model(config)
    names = [repr(layer) for layer in model.layers]
    assert names[1] == "BatchNorm2D(4, momentum=0.2, eps=1e-05, affine=True)"
    assert names[6] == "BatchNorm1D(8, momentum=0.1, eps=1e-05, affine=False)"
    assert names[2:4] == ["LeakyReLU(negative_slope=0.1)", "Dropout2D(p=0.25)"]
    assert names[7:11] == ["GELU(approximate='tanh')", "Dropout(p=0.5)", "Tanh()", "Sigmoid()"]
    assert config.resolved["model"]["layers"][1] == {"type": "batchnorm2d", "momentum": 0.2, "eps": 1e-05,
                                                     "affine": True}
    hollow = build_model(config, allocate=False)      # the summary's model: same counts, no memory
    assert (hollow.n_params, hollow.n_state) == (model.n_params, model.n_state) == (4 * 9 + 4 + 2 * 4
                                                                                     + 2704 * 8 + 8 + 8 * 10 + 10,
                                                                                     4 * 2 + 8 * 2)
    assert all(a.strides == (0,) for a in hollow.layers[1].state.values())


def test_a_bad_normalisation_key_exits_2_naming_the_path(tmp_path, run_cli):
    path = write(tmp_path, BASE)
    status, out, err = run_cli("summary", path, "--set", "model.layers[1]={type: batchnorm2d, eps: -1}")
    assert status == 2 and f"{path}: model.layers[1].eps: expected a number > 0" in err
