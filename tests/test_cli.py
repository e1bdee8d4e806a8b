"""The ``minicnn`` command line as a user meets it: a subprocess, its exit status and stderr.

Bad input (a broken config, experiment, argument, folder or data source)
must exit with status 2 and one line ``minicnn: error: FILE: KEY.PATH: what
was expected`` on stderr, never a traceback.  ``train`` validates its config
before it loads any data, so none of these tests needs MNIST: every command
runs with ``MINICNN_DATA`` pointing to an empty temporary folder and, where
data could be loaded, ``--data-dir`` pointing to an empty folder, so that a
config that wrongly passes validation fails with a data message (which names
no key path) instead of starting to download or train.
"""
from __future__ import annotations

import concurrent.futures
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
TIMEOUT = 120


def minicnn(*args, env_dir, cwd=ROOT, timeout=TIMEOUT):
    """Run ``python -m minicnn ARGS``; return the CompletedProcess (text)."""
    env = dict(os.environ)
    env["MINICNN_DATA"] = str(env_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("XDG_CACHE_HOME", None)
    return subprocess.run([sys.executable, "-m", "minicnn", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_user_error(done, *words):
    """Status 2, exactly one non-empty stderr line ``minicnn: error: ...`` holding ``words``, no traceback."""
    assert done.returncode == 2, f"status {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("minicnn: error: ")]
    assert len(errors) == 1, done.stderr
    message = errors[0]
    for word in words:
        assert str(word) in message, f"{word!r} not in {message!r}"
    return message


# ---------------------------------------------------------------- broken configs

# A small valid config (flow style in the file, so the YAML cases below can edit it as text).
BASE = {
    "name": "tiny",
    "seed": 0,
    "data": {"dataset": "mnist", "val_size": 100, "train_size": 300, "test_size": 200},
    "model": {
        "input_shape": [1, 28, 28],
        "layers": [
            {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
            {"type": "relu"},
            {"type": "maxpool2d", "kernel_size": 2},
            {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2},
            {"type": "relu"},
            {"type": "flatten"},
            {"type": "dense", "out_features": 10},
            {"type": "softmax"},
        ],
    },
    "train": {"epochs": 1, "batch_size": 32, "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}},
    "eval": {"shifts": [0, 2]},
}

DELETE = object()


def edit(*changes):
    """BASE with ``(path, value)`` changes; a path is a tuple of keys and indexes; DELETE removes."""
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for path, value in changes:
        node = data
        for step in path[:-1]:
            node = node[step]
        if value is DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return data


L = ("model", "layers")
OPT = ("train", "optimizer")
PWNED = "minicnn-yaml-payload-ran"   # the file a YAML code-execution payload would create

# (id, config: dict | str | bytes | "<dir>" | "<missing>", --set overrides, key path or "", words)
BROKEN = [
    # the file itself
    ("yaml syntax error", "name: x\nmodel: {layers: [}\n", [], "", ["invalid YAML", "line 2"]),
    ("yaml bad indentation", "name: x\n model: 1\n  train: 2\n", [], "", ["invalid YAML", "line"]),
    ("yaml tab indentation", "name: x\ntrain:\n\tepochs: 1\n", [], "", ["invalid YAML"]),
    ("yaml unclosed quote", 'name: "x\nseed: 0\n', [], "", ["invalid YAML"]),
    ("yaml python tag (safe load only)", f"name: !!python/object/apply:os.system ['touch {PWNED}']\n",
     [], "", ["invalid YAML"]),
    ("top level is a list", "- conv2d\n- relu\n", [], "", ["expected a mapping"]),
    ("top level is a scalar", "just words\n", [], "", ["expected a mapping"]),
    ("empty file", "", [], "", ["expected a mapping"]),
    ("binary garbage", bytes(range(256)) * 8, [], "", []),
    ("a directory", "<dir>", [], "", ["folder"]),
    ("missing file", "<missing>", [], "", ["no such file"]),
    # top-level keys and sections
    ("unknown top-level key", edit((("optimiser",), {"lr": 1})), [], "optimiser", ["unknown key", "expected"]),
    ("name not a string", edit((("name",), 42)), [], "name", ["expected a string"]),
    ("negative seed", edit((("seed",), -1)), [], "seed", ["expected an integer >= 0"]),
    ("data not a mapping", edit((("data",), [1, 2])), [], "data", ["expected a mapping"]),
    ("unknown data key", edit((("data", "shuffle"), True)), [], "data.shuffle", ["unknown key", "expected"]),
    ("other data set", edit((("data", "dataset"), "cifar10")), [], "data.dataset", ["expected one of mnist, fashion_mnist, npz"]),
    ("negative val_size", edit((("data", "val_size"), -5)), [], "data.val_size", ["expected an integer >= 0"]),
    ("val_size takes all images", edit((("data", "val_size"), 60000)), [], "data.val_size", ["expected fewer"]),
    ("zero train_size", edit((("data", "train_size"), 0)), [], "data.train_size", ["expected a positive"]),
    ("model not a mapping", edit((("model",), "lenet")), [], "model", ["expected a mapping"]),
    ("unknown model key", edit((("model", "dropout"), 0.5)), [], "model.dropout", ["unknown key", "expected"]),
    ("colour input shape", edit((("model", "input_shape"), [3, 28, 28])), [], "model.input_shape",
     ["expected [1, 28, 28]"]),
    ("2-D input shape", edit((("model", "input_shape"), [28, 28])), [], "model.input_shape", ["expected a"]),
    ("empty layer list", edit(((*L,), [])), [], "model.layers", ["expected a non-empty list"]),
    ("no layer list", edit(((*L,), DELETE)), [], "model.layers", ["expected a non-empty list"]),
    ("train not a mapping", edit((("train",), "fast")), [], "train", ["expected a mapping"]),
    ("unknown train key", edit((("train", "lr"), 0.1)), [], "train.lr", ["unknown key", "expected"]),
    ("epochs a word", edit((("train", "epochs"), "five")), [], "train.epochs", ["expected a positive integer"]),
    ("epochs zero", edit((("train", "epochs"), 0)), [], "train.epochs", ["expected a positive integer"]),
    ("epochs fractional", edit((("train", "epochs"), 2.5)), [], "train.epochs", ["expected a positive integer"]),
    ("epochs boolean", edit((("train", "epochs"), True)), [], "train.epochs", ["expected a positive integer"]),
    ("negative batch size", edit((("train", "batch_size"), -32)), [], "train.batch_size",
     ["expected a positive integer"]),
    ("unknown optimizer", edit(((*OPT, "name"), "rmsprop")), [], "train.optimizer.name", ["expected one of"]),
    ("negative lr", edit(((*OPT, "lr"), -0.1)), [], "train.optimizer.lr", ["expected a number > 0"]),
    ("lr a word", edit(((*OPT, "lr"), "fast")), [], "train.optimizer.lr", ["expected a number > 0"]),
    ("lr nan", "<base>\n" + "train: {epochs: 1, optimizer: {name: sgd, lr: .nan}}\n", [], "train.optimizer.lr",
     ["expected a number > 0"]),
    ("momentum above 1", edit(((*OPT, "momentum"), 1.5)), [], "train.optimizer.momentum", ["expected a number in"]),
    ("momentum for adam", edit(((*OPT, "name"), "adam")), [], "train.optimizer.momentum", ["unknown key"]),
    ("optimizer not a mapping", edit(((*OPT,), "sgd")), [], "train.optimizer", ["expected a mapping"]),
    ("bad shifts", edit((("eval", "shifts"), [0, -1])), [], "eval.shifts",
     ["expected a list of distinct integers >= 0"]),
    # layers
    ("unknown layer type", edit(((*L, 2, "type"), "maxpool")), [], "model.layers[2].type", ["expected one of"]),
    ("layer without type", edit(((*L, 1), {"size": 1})), [], "model.layers[1].type", ["expected one of"]),
    ("layer not a mapping", edit(((*L, 1), "relu")), [], "model.layers[1]", ["expected a mapping"]),
    ("unknown layer key", edit(((*L, 0, "dilation"), 2)), [], "model.layers[0].dilation",
     ["unknown key for conv2d", "expected"]),
    ("key on a keyless layer", edit(((*L, 1, "inplace"), True)), [], "model.layers[1].inplace",
     ["unknown key for relu", "expected no other keys"]),
    ("missing out_channels", edit(((*L, 0, "out_channels"), DELETE)), [], "model.layers[0].out_channels",
     ["missing", "positive integer"]),
    ("out_channels a string", edit(((*L, 0, "out_channels"), "4")), [], "model.layers[0].out_channels",
     ["expected a positive integer"]),
    ("zero kernel_size", edit(((*L, 0, "kernel_size"), 0)), [], "model.layers[0].kernel_size",
     ["expected a positive integer"]),
    ("negative kernel_size", edit(((*L, 2, "kernel_size"), -2)), [], "model.layers[2].kernel_size",
     ["expected a positive integer"]),
    ("kernel_size of three", edit(((*L, 0, "kernel_size"), [3, 3, 3])), [], "model.layers[0].kernel_size",
     ["pair"]),
    ("kernel_size float", edit(((*L, 2, "kernel_size"), 2.0)), [], "model.layers[2].kernel_size",
     ["expected a positive integer"]),
    ("zero stride", edit(((*L, 3, "stride"), 0)), [], "model.layers[3].stride", ["expected a positive integer"]),
    ("negative padding", edit(((*L, 0, "padding"), -1)), [], "model.layers[0].padding",
     ["expected an integer >= 0"]),
    ("pool padding above half the window", edit(((*L, 2, "padding"), 2)), [], "model.layers[2]", ["padding"]),
    ("pool window larger than its input", edit(((*L, 2, "kernel_size"), 29)), [], "model.layers[2]",
     ["kernel_size", "does not fit", "28x28"]),
    ("conv kernel larger than its input", edit(((*L, 3, "kernel_size"), 15)), [], "model.layers[3]",
     ["does not fit", "14x14"]),
    ("wrong in_channels", edit(((*L, 3, "in_channels"), 3)), [], "model.layers[3].in_channels",
     ["expected 4"]),
    ("dense after 4-D output without flatten", edit(((*L, 5), {"type": "relu"})), [], "model.layers[6]",
     ["flatten"]),
    ("pooling after flatten", edit(((*L, 6), {"type": "maxpool2d", "kernel_size": 2})), [], "model.layers[6]",
     ["(C, H, W)"]),
    ("softmax on a feature map", edit(((*L, 2), {"type": "softmax"})), [], "model.layers[2]", ["softmax"]),
    ("count_include_pad a word", edit(((*L, 2), {"type": "avgpool2d", "kernel_size": 2, "count_include_pad": "yes"})),
     [], "model.layers[2].count_include_pad", ["expected true or false"]),
    ("not 10 class scores", edit(((*L, 6, "out_features"), 9)), [], "model.layers", ["10 class scores"]),
    # overrides (--set) on the valid BASE
    ("override of a key that does not exist", BASE, ["train.epochz=1"], "train.epochz", ["unknown key"]),
    ("override of a list item that does not exist", BASE, ["model.layers[20].kernel_size=3"],
     "model.layers[20].kernel_size", ["does not exist"]),
    ("override without =", BASE, ["train.epochs"], "train.epochs", ["expected KEY=VALUE"]),
    ("override with an empty key", BASE, ["=3"], "", ["bad override key"]),
    ("override key with ..", BASE, ["train..epochs=1"], "train..epochs", ["bad override key"]),
    ("override with a bad index", BASE, ["model.layers[x].kernel_size=1"], "model.layers[x].kernel_size",
     ["bad override key"]),
    ("override under a scalar", BASE, ["train.epochs.value=1"], "train.epochs.value", ["not a mapping"]),
    ("override to a bad value", BASE, ["train.epochs=-3"], "train.epochs", ["expected a positive integer"]),
    ("override to a word", BASE, ["train.optimizer.lr=abc"], "train.optimizer.lr", ["expected a number > 0"]),
    ("override breaking the shapes", BASE, ["model.layers[2].kernel_size=40"], "model.layers[2]",
     ["does not fit"]),
]
assert len(BROKEN) >= 30 and len({case[0] for case in BROKEN}) == len(BROKEN)


def _write_config(folder: pathlib.Path, case_id: str, config) -> pathlib.Path:
    path = folder / (case_id.replace(" ", "_").replace("/", "_") + ".yaml")
    if config == "<dir>":
        path.mkdir()
    elif config == "<missing>":
        pass
    elif isinstance(config, bytes):
        path.write_bytes(config)
    elif isinstance(config, str) and config.startswith("<base>\n"):
        # flow-style BASE, then a replacement line for one top-level key (YAML-only values like .nan)
        line = config.split("\n", 1)[1]
        key = line.split(":", 1)[0]
        base = {k: v for k, v in BASE.items() if k != key}
        path.write_text(yaml.safe_dump(base, default_flow_style=None, sort_keys=False) + line)
    elif isinstance(config, str):
        path.write_text(config)
    else:
        path.write_text(yaml.safe_dump(config, default_flow_style=None, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def broken_results(tmp_path_factory):
    """Run ``summary`` and ``train`` on every broken config, several at a time; {(id, command): result}."""
    folder = tmp_path_factory.mktemp("broken")
    env_dir = tmp_path_factory.mktemp("cache")
    empty = tmp_path_factory.mktemp("no-data")
    jobs = {}
    for case_id, config, overrides, _, _ in BROKEN:
        path = _write_config(folder, case_id, config)
        sets = [a for s in overrides for a in ("--set", s)]
        out = folder / "runs" / path.stem
        jobs[(case_id, "summary")] = (["summary", path, *sets], None)
        jobs[(case_id, "train")] = (["train", path, *sets, "--out", out, "--data-dir", empty], out)
    with concurrent.futures.ThreadPoolExecutor(max(2, os.cpu_count() or 1) * 2) as pool:
        futures = {key: pool.submit(minicnn, *args, env_dir=env_dir, cwd=folder)
                   for key, (args, _) in jobs.items()}
        results = {key: (f.result(), jobs[key][1], folder) for key, f in futures.items()}
    return results


@pytest.mark.parametrize("command", ["summary", "train"])
@pytest.mark.parametrize("case_id, config, overrides, key_path, words", BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_config_exits_2_naming_file_and_key(broken_results, command, case_id, config, overrides,
                                                   key_path, words):
    done, out, folder = broken_results[(case_id, command)]
    path = folder / (case_id.replace(" ", "_").replace("/", "_") + ".yaml")
    message = assert_user_error(done, *words)
    assert str(path.name) in message, f"the file is not named: {message!r}"
    if key_path:
        assert f": {key_path}: " in message or f": {key_path} " in message, \
            f"the key path {key_path} is not named: {message!r}"
    if command == "train":
        assert not (out and out.exists()), "a run folder was created for a broken config"
        assert "--data-dir" not in message and "IDX" not in message, "the config was not validated first"
    assert not (folder / PWNED).exists(), "a YAML tag ran code"


def test_number_of_broken_configs(capsys):
    with capsys.disabled():
        print(f"\n[cli] {len(BROKEN)} broken configs tried, each with `minicnn summary` and `minicnn train`")
    assert len(BROKEN) >= 30


def test_valid_config_passes_summary(tmp_path):
    path = _write_config(tmp_path, "good", BASE)
    done = minicnn("summary", path, env_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Conv2D" in done.stdout and "total params" in done.stdout
    for name in ("max_pool", "avg_pool", "global_pool", "strided_conv"):
        done = minicnn("summary", CONFIGS / f"{name}.yaml", env_dir=tmp_path)
        assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- broken experiments

def _experiment(folder, data, name="exp.yaml"):
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture()
def exp_folder(tmp_path):
    (tmp_path / "configs").mkdir()
    _write_config(tmp_path / "configs", "a", BASE)
    _write_config(tmp_path / "configs", "b", edit((("name",), "other")))
    return tmp_path


GOOD_EXPERIMENT = {"name": "study", "configs": ["configs/a.yaml", "configs/b.yaml"], "seeds": [0, 1],
                   "set": ["train.epochs=1"], "out": "runs/study"}

BROKEN_EXPERIMENTS = [
    ("unknown key", {**GOOD_EXPERIMENT, "repeats": 3}, "repeats", ["unknown key"]),
    ("missing config file", {**GOOD_EXPERIMENT, "configs": ["configs/a.yaml", "configs/nope.yaml"]},
     "configs[1]", ["no such file"]),
    ("no configs", {**GOOD_EXPERIMENT, "configs": []}, "configs", ["non-empty list"]),
    ("configs not a list", {**GOOD_EXPERIMENT, "configs": "configs/a.yaml"}, "configs", ["non-empty list"]),
    ("seeds a word", {**GOOD_EXPERIMENT, "seeds": "zero"}, "seeds", ["distinct integers"]),
    ("negative seed", {**GOOD_EXPERIMENT, "seeds": [0, -1]}, "seeds", ["distinct integers"]),
    ("repeated seed", {**GOOD_EXPERIMENT, "seeds": [1, 1]}, "seeds", ["distinct integers"]),
    ("no seeds", {**GOOD_EXPERIMENT, "seeds": []}, "seeds", ["distinct integers"]),
    ("fractional seed", {**GOOD_EXPERIMENT, "seeds": [0.5]}, "seeds", ["distinct integers"]),
    ("set not a list", {**GOOD_EXPERIMENT, "set": "train.epochs=1"}, "set", ["KEY=VALUE"]),
    ("set breaking every config", {**GOOD_EXPERIMENT, "set": ["train.epochs=0"]}, "train.epochs",
     ["a.yaml", "expected a positive integer"]),
    ("set of a key that does not exist", {**GOOD_EXPERIMENT, "set": ["train.epoch=2"]}, "train.epoch",
     ["unknown key"]),
    ("two configs with one name", {**GOOD_EXPERIMENT, "configs": ["configs/a.yaml", "configs/a.yaml"]},
     "configs[1]", ["both named"]),
    ("name not a string", {**GOOD_EXPERIMENT, "name": ["x"]}, "name", ["expected a string"]),
    ("out not a path", {**GOOD_EXPERIMENT, "out": 5}, "out", ["folder path"]),
    ("grid key that does not exist", {**GOOD_EXPERIMENT, "grid": {"data.datset": ["mnist"]}}, "grid.data.datset",
     ["exp.yaml", "unknown key"]),
    ("grid key of bad syntax", {**GOOD_EXPERIMENT, "grid": {"train..epochs": [1]}}, "grid.train..epochs",
     ["bad override key"]),
    ("grid value the schema refuses", {**GOOD_EXPERIMENT, "grid": {"data.dataset": ["mnist", "cifar10"]}},
     "grid.data.dataset", ["exp.yaml", "one of mnist", "cifar10"]),
    ("grid value not a scalar", {**GOOD_EXPERIMENT, "grid": {"train.batch_size": [8, [16]]}},
     "grid.train.batch_size[1]", ["a number, string"]),
    ("grid value twice", {**GOOD_EXPERIMENT, "grid": {"train.batch_size": [8, 8]}}, "grid.train.batch_size[1]",
     ["already in the list"]),
    ("grid empty list", {**GOOD_EXPERIMENT, "grid": {"train.batch_size": []}}, "grid.train.batch_size",
     ["non-empty list"]),
    ("grid not a mapping", {**GOOD_EXPERIMENT, "grid": "train.batch_size=8"}, "grid", ["a mapping of at most 8"]),
    ("grid empty cell list", {**GOOD_EXPERIMENT, "grid": []}, "grid", ["a mapping of at most 8"]),
    ("grid cell not a mapping", {**GOOD_EXPERIMENT, "grid": [{"train.batch_size": 8}, "train.batch_size=8"]},
     "grid[1]", ["a mapping of 1 to 8 config keys"]),
    ("grid cell twice", {**GOOD_EXPERIMENT, "grid": [{"train.batch_size": 8, "data.val_size": 5},
                                                     {"data.val_size": 5, "train.batch_size": 8}]},
     "grid[1]", ["the same cell as grid[0]"]),
    ("grid cell value not a scalar", {**GOOD_EXPERIMENT, "grid": [{"train.batch_size": [8]}]},
     "grid[0].train.batch_size", ["a number, string"]),
    ("grid cell over the seed", {**GOOD_EXPERIMENT, "grid": [{"train.batch_size": 8}, {"seed": 2}]},
     "grid[1].seed", ["seeds list"]),
    ("grid cell key that does not exist", {**GOOD_EXPERIMENT, "grid": [{"data.datset": "mnist"}]},
     "grid.data.datset", ["exp.yaml", "unknown key"]),
    ("grid cell key also in set", {**GOOD_EXPERIMENT, "grid": [{"train.batch_size": 8}, {"train.epochs": 2}]},
     "grid.train.epochs", ["either"]),
    ("grid over the seed", {**GOOD_EXPERIMENT, "grid": {"seed": [1, 2]}}, "grid.seed", ["seeds list"]),
    ("grid key also in set", {**GOOD_EXPERIMENT, "grid": {"train.epochs": [1, 2]}}, "grid.train.epochs",
     ["either"]),
    ("grid of too many cells", {**GOOD_EXPERIMENT, "grid": {"train.batch_size": list(range(1, 41)),
                                                            "data.val_size": list(range(30))}}, "grid",
     ["more than 1,000 cells"]),
    ("yaml syntax", "name: [study\n", "", ["invalid YAML"]),
    ("not a mapping", "- configs/a.yaml\n", "", ["expected a mapping"]),
]


@pytest.mark.parametrize("case_id, data, key_path, words", BROKEN_EXPERIMENTS, ids=[c[0] for c in BROKEN_EXPERIMENTS])
def test_broken_experiment_exits_2(exp_folder, case_id, data, key_path, words):
    path = _experiment(exp_folder, data)
    done = minicnn("ablate", path, "--data-dir", exp_folder / "configs", env_dir=exp_folder, cwd=exp_folder)
    message = assert_user_error(done, *words)
    if key_path:
        assert f": {key_path}: " in message, message
    assert not (exp_folder / "runs").exists(), "an experiment folder was created for a broken experiment"


def test_broken_quick_section_exits_2(exp_folder):
    path = _experiment(exp_folder, {**GOOD_EXPERIMENT, "quick": {"epochs": 1}})
    done = minicnn("ablate", path, "--quick", env_dir=exp_folder, cwd=exp_folder)
    assert_user_error(done, "exp.yaml", "quick")


def test_missing_experiment_file_exits_2(tmp_path):
    assert_user_error(minicnn("ablate", tmp_path / "nope.yaml", env_dir=tmp_path), "nope.yaml", "no such file")


def test_ablate_bad_set_exits_2(exp_folder):
    path = _experiment(exp_folder, GOOD_EXPERIMENT)
    assert_user_error(minicnn("ablate", path, "--set", "train.epochs", env_dir=exp_folder, cwd=exp_folder),
                      "train.epochs", "KEY=VALUE")
    assert_user_error(minicnn("ablate", path, "--set", "model.layers[99].type=relu", env_dir=exp_folder,
                              cwd=exp_folder), "model.layers[99]", "does not exist")


@pytest.mark.parametrize("jobs", ["0", "-2"])
def test_jobs_below_one_exits_2(exp_folder, jobs):
    path = _experiment(exp_folder, GOOD_EXPERIMENT)
    assert_user_error(minicnn("ablate", path, "--jobs", jobs, env_dir=exp_folder, cwd=exp_folder), "--jobs")


def test_jobs_not_a_number_exits_2(exp_folder):
    path = _experiment(exp_folder, GOOD_EXPERIMENT)
    assert_user_error(minicnn("ablate", path, "--jobs", "two", env_dir=exp_folder, cwd=exp_folder), "--jobs")


def test_ablate_into_a_folder_with_runs_needs_resume(exp_folder):
    """Checked before any data is loaded (so it works here without MNIST)."""
    path = _experiment(exp_folder, GOOD_EXPERIMENT)
    run = exp_folder / "runs" / "study" / "tiny" / "seed0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: tiny\n")
    done = minicnn("ablate", path, env_dir=exp_folder, cwd=exp_folder)
    assert_user_error(done, "already holds", "--resume")


def test_ablate_resume_refuses_runs_of_an_older_config(exp_folder):
    """Resume skips finished runs; a run folder of an edited config must not slip into the results."""
    path = _experiment(exp_folder, GOOD_EXPERIMENT)
    run = exp_folder / "runs" / "study" / "tiny" / "seed0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: tiny\nseed: 0\n")   # not what configs/a.yaml gives now
    (run / "summary.json").write_text("{}")
    done = minicnn("ablate", path, "--resume", "--data-dir", exp_folder / "configs", env_dir=exp_folder,
                   cwd=exp_folder)
    assert_user_error(done, "tiny/seed0", "older version", "a.yaml")


def test_train_resume_removes_temporaries_of_a_killed_write(tmp_path):
    path = _write_config(tmp_path, "good", BASE)
    run = tmp_path / "run"
    run.mkdir()
    orphan = run / ".checkpoint.npz.a1b2c3d4.tmp"
    orphan.write_bytes(b"half")
    (tmp_path / "empty").mkdir()
    done = minicnn("train", path, "--out", run, "--resume", "--data-dir", tmp_path / "empty",
                   env_dir=tmp_path / "cache", cwd=tmp_path)
    assert_user_error(done, "train-images-idx3-ubyte")
    assert not orphan.exists()


def test_ablate_into_an_unwritable_folder_exits_2(exp_folder):
    path = _experiment(exp_folder, GOOD_EXPERIMENT)
    (exp_folder / "a-file").write_text("")
    done = minicnn("ablate", path, "--out", exp_folder / "a-file" / "study", env_dir=exp_folder, cwd=exp_folder)
    assert_user_error(done, "cannot write")


def test_ablate_with_empty_data_dir_says_what_to_do(exp_folder, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty-data")
    path = _experiment(exp_folder, GOOD_EXPERIMENT)
    done = minicnn("ablate", path, "--data-dir", empty, env_dir=exp_folder, cwd=exp_folder)
    assert_user_error(done, str(empty), "train-images-idx3-ubyte", "--data-dir")
    assert not (exp_folder / "cache" / "mnist.npz").exists()


# ---------------------------------------------------------------- other commands and arguments

def test_plot_on_an_empty_folder_exits_2(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_user_error(minicnn("plot", tmp_path / "empty", env_dir=tmp_path), "empty", "results.csv")


def test_plot_on_a_missing_folder_exits_2(tmp_path):
    assert_user_error(minicnn("plot", tmp_path / "nope", env_dir=tmp_path), "nope")


@pytest.mark.parametrize("content", ["", "garbage\x00\x01,,\n\"unclosed", "config,seed\nx,0\n"],
                         ids=["empty", "garbage", "missing columns"])
def test_plot_on_a_broken_results_csv_exits_2(tmp_path, content):
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "results.csv").write_text(content)
    assert_user_error(minicnn("plot", folder, env_dir=tmp_path), "results.csv")


def test_plot_on_a_broken_metrics_csv_exits_2(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.csv").write_text("epoch,val_accuracy\n1,abc\n")
    assert_user_error(minicnn("plot", folder, env_dir=tmp_path), "metrics.csv")


@pytest.mark.parametrize("args", [["bogus"], [], ["train"], ["summary"], ["ablate"], ["data", "pull"],
                                  ["train", "x.yaml", "--epochs", "3"]],
                         ids=["unknown command", "no command", "train without config", "summary without config",
                              "ablate without experiment", "unknown data action", "unknown option"])
def test_bad_arguments_exit_2(tmp_path, args):
    done = minicnn(*args, env_dir=tmp_path)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    assert "minicnn: error: " in done.stderr


def test_train_resume_without_out_exits_2(tmp_path):
    path = _write_config(tmp_path, "good", BASE)
    assert_user_error(minicnn("train", path, "--resume", env_dir=tmp_path, cwd=tmp_path), "--resume", "--out")


def test_train_into_an_unwritable_folder_exits_2(tmp_path):
    path = _write_config(tmp_path, "good", BASE)
    (tmp_path / "a-file").write_text("")
    done = minicnn("train", path, "--out", tmp_path / "a-file" / "run", env_dir=tmp_path, cwd=tmp_path)
    assert_user_error(done, "cannot write")


def test_train_with_empty_data_dir_says_what_to_do(tmp_path):
    path = _write_config(tmp_path, "good", BASE)
    (tmp_path / "empty").mkdir()
    done = minicnn("train", path, "--out", tmp_path / "run", "--data-dir", tmp_path / "empty",
                   env_dir=tmp_path / "cache", cwd=tmp_path)
    message = assert_user_error(done, "empty", "train-images-idx3-ubyte", "--data-dir")
    assert "leave out --data-dir" in message or "re-download" in message, message   # says what to do
    assert not (tmp_path / "cache" / "mnist.npz").exists()


def test_data_fetch_with_empty_data_dir_exits_2(tmp_path):
    (tmp_path / "empty").mkdir()
    done = minicnn("data", "fetch", "--data-dir", tmp_path / "empty", env_dir=tmp_path / "cache")
    assert_user_error(done, "train-images-idx3-ubyte")


def test_data_dir_with_bad_idx_files_exits_2(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (data / name).write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 10)   # truncated header
    path = _write_config(tmp_path, "good", BASE)
    done = minicnn("train", path, "--out", tmp_path / "run", "--data-dir", data, env_dir=tmp_path / "cache",
                   cwd=tmp_path)
    assert_user_error(done, "train-images-idx3-ubyte", "truncated")
