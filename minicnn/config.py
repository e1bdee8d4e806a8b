"""YAML config -> validated plain objects -> Sequential.

The schema is DESIGN.md's.  Every problem raises ConfigError naming the file,
the key path and what was expected.  Only ``yaml.safe_load`` is used.

Extensions to the fixed schema, all optional:
    data.train_size: int or null   use only the first N training images (smoke tests)
    data.test_size:  int or null   evaluate on the first N test images
    eval.shifts: [0, 1, 2, 3, 4]   test-set shifts (pixels) evaluated after training
    eval.batch_size: 500           images per forward pass in evaluation
"""
from __future__ import annotations

import copy
import dataclasses
import pathlib
import re

import numpy as np
import yaml

import minicnn.layers as L
from minicnn.errors import ConfigError
from minicnn.model import Sequential

MNIST_TRAIN_IMAGES = 60000

# type -> (layer class, {key: (kind, default or REQUIRED)}); kinds are checked by _value.
REQUIRED = object()
LAYER_TYPES = {
    "conv2d": (L.Conv2D, {"in_channels": ("int+", None), "out_channels": ("int+", REQUIRED),
                          "kernel_size": ("size+", REQUIRED), "stride": ("size+", 1),
                          "padding": ("size0", 0)}),
    "relu": (L.ReLU, {}),
    "maxpool2d": (L.MaxPool2D, {"kernel_size": ("size+", REQUIRED), "stride": ("size+", None),
                                "padding": ("size0", 0)}),
    "minpool2d": (L.MinPool2D, {"kernel_size": ("size+", REQUIRED), "stride": ("size+", None),
                                "padding": ("size0", 0)}),
    "avgpool2d": (L.AvgPool2D, {"kernel_size": ("size+", REQUIRED), "stride": ("size+", None),
                                "padding": ("size0", 0), "count_include_pad": ("bool", True)}),
    "globalavgpool2d": (L.GlobalAvgPool2D, {}),
    "globalmaxpool2d": (L.GlobalMaxPool2D, {}),
    "flatten": (L.Flatten, {}),
    "dense": (L.Dense, {"in_features": ("int+", None), "out_features": ("int+", REQUIRED)}),
    "softmax": (L.Softmax, {}),
}
OPTIMIZER_KEYS = {
    "sgd": {"lr": ("float+", 0.05), "momentum": ("unit", 0.0), "weight_decay": ("float0", 0.0)},
    "adam": {"lr": ("float+", 0.001), "beta1": ("unit", 0.9), "beta2": ("unit", 0.999),
             "eps": ("float+", 1e-8), "weight_decay": ("float0", 0.0)},
}
EXPECTED = {
    "int": "an integer", "int0": "an integer >= 0", "int+": "a positive integer",
    "int+?": "a positive integer or null", "float+": "a number > 0", "float0": "a number >= 0",
    "unit": "a number in [0, 1)", "bool": "true or false", "str": "a string",
    "size+": "a positive integer or a [h, w] pair of them",
    "size0": "an integer >= 0 or a [h, w] pair of them",
    "shape": "a [channels, height, width] list of positive integers",
    "shifts": "a list of integers >= 0",
}


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    name: str
    options: dict  # keyword arguments of minicnn.optim.OPTIMIZERS[name]


@dataclasses.dataclass(frozen=True)
class Config:
    """A validated config.  ``resolved`` is the full dict, defaults filled in."""

    file: str
    name: str
    seed: int
    val_size: int
    train_size: int | None
    test_size: int | None
    input_shape: tuple[int, int, int]
    layers: list  # [(type, {key: value})]
    epochs: int
    batch_size: int
    optimizer: OptimizerConfig
    shifts: tuple[int, ...]
    eval_batch_size: int
    resolved: dict


def load_yaml(path) -> dict:
    """Read a YAML mapping safely; ConfigError on a missing file or bad syntax."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(path, "", "no such file") from None
    except IsADirectoryError:
        raise ConfigError(path, "", "is a folder, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, "", f"cannot read: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(path, "", f"invalid YAML: {where}{problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(path, "", f"expected a mapping of keys at the top, got {_show(raw)}")
    return raw


def load_config(path, overrides=()) -> Config:
    """Read, override ("a.b[2].c=value" strings) and validate a config file."""
    raw = load_yaml(path)
    apply_overrides(raw, overrides, str(path))
    return validate(raw, str(path))


# ---------------------------------------------------------------- overrides

_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def parse_key(key: str, file: str) -> list:
    """'model.layers[2].kernel_size' -> ['model', 'layers', 2, 'kernel_size']."""
    steps = []
    for part in key.split("."):
        matches = list(_STEP.finditer(part))
        if not part or not matches or "".join(m.group(0) for m in matches) != part or matches[0].group(1) is None:
            raise ConfigError(file, key, "bad override key: expected a dotted path like "
                              "train.epochs or model.layers[2].kernel_size")
        steps += [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in matches]
    return steps


def apply_overrides(raw: dict, overrides, file: str) -> None:
    """Set each "key.path=value" in raw (value parsed as YAML).

    The parent of the key must exist; the last key may be new (validation then
    rejects it if the schema does not know it).
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(file, item, "bad override: expected KEY=VALUE, e.g. train.epochs=1")
        key, text = item.split("=", 1)
        key = key.strip()
        steps = parse_key(key, file)
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node, path = raw, ""
        for step in steps[:-1]:
            node, path = _child(node, step, path, file, key)
        last = steps[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise ConfigError(file, key, f"override of a list item that does not exist ({_where(path)} "
                                  f"has {len(node) if isinstance(node, list) else 'no'} items)")
        elif not isinstance(node, dict):
            raise ConfigError(file, key, f"override under {_where(path)}, which is not a mapping")
        node[last] = value


def _child(node, step, path, file, key):
    if isinstance(step, int):
        if not isinstance(node, list) or step >= len(node):
            raise ConfigError(file, key, f"override of {path}[{step}], which does not exist")
        return node[step], f"{path}[{step}]"
    if not isinstance(node, dict):
        raise ConfigError(file, key, f"override under {_where(path)}, which is not a mapping")
    if step not in node:
        node[step] = {}
    return node[step], f"{path}.{step}" if path else step


def _where(path):
    return path or "the top level"


# ---------------------------------------------------------------- validation

def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _value(kind: str, value, file: str, path: str):
    """Check one scalar against its kind; return it normalised (tuples for pairs)."""
    def fail():
        raise ConfigError(file, path, f"expected {EXPECTED[kind]}, got {_show(value)}")

    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_num = (is_int or isinstance(value, float)) and np.isfinite(value)
    if kind in ("size+", "size0"):
        items = value if isinstance(value, list) and len(value) == 2 else [value]
        least = 1 if kind == "size+" else 0
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= least for v in items):
            fail()
        return tuple(value) if isinstance(value, list) else value
    if kind == "shape":
        if not (isinstance(value, list) and len(value) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
            fail()
        return tuple(value)
    if kind == "shifts":
        if not (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                for v in value)):
            fail()
        return tuple(value)
    ok = {
        "int": is_int, "int0": is_int and value >= 0, "int+": is_int and value > 0,
        "int+?": value is None or is_int and value > 0,
        "float+": is_num and value > 0, "float0": is_num and value >= 0,
        "unit": is_num and 0 <= value < 1, "bool": isinstance(value, bool), "str": isinstance(value, str),
    }[kind]
    if not ok:
        fail()
    return float(value) if kind in ("float+", "float0", "unit") else value


def _section(raw: dict, key: str, allowed: dict, file: str, path: str) -> dict:
    """Validate the mapping raw[key] against {name: (kind, default)}; fill defaults."""
    here = f"{path}.{key}" if path else key
    node = raw.get(key, {})
    if node is None:
        node = {}
    if not isinstance(node, dict):
        raise ConfigError(file, here, f"expected a mapping, got {_show(node)}")
    out = {}
    for name, value in node.items():
        if name not in allowed:
            raise ConfigError(file, f"{here}.{name}", f"unknown key; expected one of {', '.join(allowed)}")
    for name, (kind, default) in allowed.items():
        if name in node:
            out[name] = _value(kind, node[name], file, f"{here}.{name}")
        elif default is REQUIRED:
            raise ConfigError(file, f"{here}.{name}", f"missing; expected {EXPECTED[kind]}")
        else:
            out[name] = default
    return out


def validate(raw: dict, file: str) -> Config:
    raw = copy.deepcopy(raw)
    top = {"name": ("str", pathlib.Path(file).stem), "seed": ("int0", 0)}
    for key in raw:
        if key not in (*top, "data", "model", "train", "eval"):
            raise ConfigError(file, key, "unknown key; expected one of name, seed, data, model, train, eval")
    head = {k: _value(kind, raw[k], file, k) if k in raw else default for k, (kind, default) in top.items()}
    data = _section(raw, "data", {"dataset": ("str", "mnist"), "val_size": ("int0", 5000),
                                  "train_size": ("int+?", None), "test_size": ("int+?", None)}, file, "")
    if data["dataset"] != "mnist":
        raise ConfigError(file, "data.dataset", f"expected mnist (the only data set), got {_show(data['dataset'])}")
    if data["val_size"] >= MNIST_TRAIN_IMAGES:
        raise ConfigError(file, "data.val_size", f"expected fewer than {MNIST_TRAIN_IMAGES} images, "
                          f"got {data['val_size']}")
    model_raw = raw.get("model")
    if not isinstance(model_raw, dict):
        raise ConfigError(file, "model", f"expected a mapping with input_shape and layers, got {_show(model_raw)}")
    for key in model_raw:
        if key not in ("input_shape", "layers"):
            raise ConfigError(file, f"model.{key}", "unknown key; expected input_shape or layers")
    input_shape = _value("shape", model_raw.get("input_shape", [1, 28, 28]), file, "model.input_shape")
    if input_shape != (1, 28, 28):
        raise ConfigError(file, "model.input_shape", f"expected [1, 28, 28] for MNIST, got {list(input_shape)}")
    layers = _layers(model_raw.get("layers"), file)
    train = _train(raw, file)
    ev = _section(raw, "eval", {"shifts": ("shifts", [0, 1, 2, 3, 4]), "batch_size": ("int+", 500)}, file, "")
    resolved = {
        "name": head["name"], "seed": head["seed"], "data": data,
        "model": {"input_shape": list(input_shape),
                  "layers": [{"type": t, **{k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}}
                             for t, kw in layers]},
        "train": {"epochs": train["epochs"], "batch_size": train["batch_size"],
                  "optimizer": {"name": train["optimizer"].name, **train["optimizer"].options}},
        "eval": {"shifts": list(ev["shifts"]), "batch_size": ev["batch_size"]},
    }
    config = Config(file=file, name=head["name"], seed=head["seed"], val_size=data["val_size"],
                    train_size=data["train_size"], test_size=data["test_size"],
                    input_shape=input_shape, layers=layers, epochs=train["epochs"],
                    batch_size=train["batch_size"], optimizer=train["optimizer"],
                    shifts=tuple(ev["shifts"]), eval_batch_size=ev["batch_size"], resolved=resolved)
    build_model(config)  # shape errors surface now, located by layer
    return config


def _train(raw: dict, file: str) -> dict:
    node = raw.get("train", {}) or {}
    if not isinstance(node, dict):
        raise ConfigError(file, "train", f"expected a mapping, got {_show(node)}")
    opt = node.get("optimizer", {"name": "sgd", "lr": 0.05, "momentum": 0.9})
    rest = {k: v for k, v in node.items() if k != "optimizer"}
    out = _section({"train": rest}, "train", {"epochs": ("int+", 5), "batch_size": ("int+", 64)}, file, "")
    if not isinstance(opt, dict):
        raise ConfigError(file, "train.optimizer", f"expected a mapping with name and lr, got {_show(opt)}")
    name = opt.get("name", "sgd")
    if name not in OPTIMIZER_KEYS:
        raise ConfigError(file, "train.optimizer.name", f"expected one of {', '.join(OPTIMIZER_KEYS)}, got {_show(name)}")
    options = _section({"optimizer": {k: v for k, v in opt.items() if k != "name"}}, "optimizer",
                       OPTIMIZER_KEYS[name], file, "train")
    out["optimizer"] = OptimizerConfig(name, options)
    return out


def _layers(raw_layers, file: str) -> list:
    if not isinstance(raw_layers, list) or not raw_layers:
        raise ConfigError(file, "model.layers", f"expected a non-empty list of layers, got {_show(raw_layers)}")
    layers = []
    for i, spec in enumerate(raw_layers):
        path = f"model.layers[{i}]"
        if not isinstance(spec, dict):
            raise ConfigError(file, path, f"expected a mapping like {{type: relu}}, got {_show(spec)}")
        kind = spec.get("type")
        if kind not in LAYER_TYPES:
            raise ConfigError(file, f"{path}.type", f"expected one of {', '.join(LAYER_TYPES)}, got {_show(kind)}")
        _, keys = LAYER_TYPES[kind]
        for key in spec:
            if key != "type" and key not in keys:
                expected = f"one of {', '.join(keys)}" if keys else "no other keys"
                raise ConfigError(file, f"{path}.{key}", f"unknown key for {kind}; expected {expected}")
        kwargs = {}
        for key, (k, default) in keys.items():
            if key in spec:
                kwargs[key] = _value(k, spec[key], file, f"{path}.{key}")
            elif default is REQUIRED:
                raise ConfigError(file, f"{path}.{key}", f"missing; {kind} needs {EXPECTED[k]}")
            elif key not in ("in_channels", "in_features"):
                kwargs[key] = default
        layers.append((kind, kwargs))
    return layers


def build_model(config: Config, dtype=np.float32) -> Sequential:
    """Instantiate the layers, inferring in_channels / in_features by shape propagation.

    Weights are drawn from one Generator seeded with config.seed, in layer order.
    """
    rng = np.random.default_rng(config.seed)
    shape = config.input_shape
    built = []
    for i, (kind, kwargs) in enumerate(config.layers):
        path = f"model.layers[{i}]"
        cls, _ = LAYER_TYPES[kind]
        kwargs = dict(kwargs)
        try:
            if kind == "conv2d":
                if len(shape) != 3:
                    raise ValueError(f"conv2d needs a (C, H, W) feature map, got shape {list(shape)}")
                _infer(kwargs, "in_channels", shape[0], file=config.file, path=path)
                layer = cls(**kwargs, dtype=dtype, rng=rng)
            elif kind == "dense":
                if len(shape) != 1:
                    raise ValueError(f"dense needs a flat (features,) input, got shape {list(shape)}; "
                                     "add {type: flatten} before it")
                _infer(kwargs, "in_features", shape[0], file=config.file, path=path)
                layer = cls(**kwargs, dtype=dtype, rng=rng)
            else:
                layer = cls(**kwargs)
            if kind in ("maxpool2d", "minpool2d", "avgpool2d", "globalavgpool2d", "globalmaxpool2d") \
                    and len(shape) != 3:
                raise ValueError(f"{kind} needs a (C, H, W) feature map, got shape {list(shape)}")
            if kind == "softmax" and len(shape) != 1:
                raise ValueError(f"softmax needs a flat (classes,) input, got shape {list(shape)}")
            shape = layer.output_shape(shape)
        except (ValueError, TypeError) as e:
            raise ConfigError(config.file, path, f"{e} (input to this layer: {list(shape)})") from None
        built.append(layer)
    if shape != (10,):
        raise ConfigError(config.file, "model.layers", f"the last layer must give 10 class scores, "
                          f"got output shape {list(shape)}")
    return Sequential(built, config.input_shape)


def _infer(kwargs, key, value, file, path):
    if key in kwargs and kwargs[key] != value:
        raise ConfigError(file, f"{path}.{key}", f"expected {value} (inferred from the previous layer), "
                          f"got {kwargs[key]}")
    kwargs[key] = value


def dump_yaml(resolved: dict) -> str:
    return yaml.safe_dump(resolved, sort_keys=False, default_flow_style=None)
