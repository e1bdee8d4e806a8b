"""YAML config -> validated plain objects -> Sequential.

The schema is declared once, section by section, in the dataclasses below
(``minicnn.schema`` holds the machinery; docs/architecture.md shows the table
generated from them).  Every problem raises ConfigError naming the file, the
key path and what was expected.  YAML is read with a bounded safe loader: at
most ``MAX_FILE_BYTES`` bytes and ``MAX_NODES`` values once aliases are
expanded, so a hostile file fails in milliseconds with one line.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import os
import pathlib
import re

import numpy as np
import yaml

import minicnn.layers as L
from minicnn import memory
from minicnn.errors import ConfigError, UserError
from minicnn.layers.base import WeightedLayer, pair
from minicnn.model import Sequential, training_memory
from minicnn.optim import OPTIMIZERS, SGD, Adam
from minicnn.schema import (MAX_EPOCHS, MAX_SEED, MAX_SHIFT, REQUIRED, Bool, Choice, Grid, Int, IntList, ListOf,
                            Nested, Number, NumberList, OrNull, Ratio, Records, Shape, Size, Text, TextList, Variant,
                            as_plain, clip, key, parse, show)

MNIST_TRAIN_IMAGES = 60000   # MNIST and Fashion-MNIST alike
MNIST_SHAPE, MNIST_CLASSES = (1, 28, 28), 10
MAX_FILE_BYTES = 64 * 1024   # a config is about 1 KB; an experiment file less
MAX_NODES = 100_000          # YAML values after alias expansion
MAX_OVERRIDE_CHARS = 4096
MAX_KEY_CHARS = 200
MAX_CANVAS = 256             # eval.canvases: a 256x256 canvas is 84x MNIST's pixels per image


# ---------------------------------------------------------------- the schema

def _layer(kind: str, **keys):
    """A layer type's section: its keys are the layer constructor's."""
    fields = [(name, object, value) for name, value in keys.items()]
    return dataclasses.make_dataclass(f"{kind}_keys", fields, frozen=True, kw_only=True)


def _window(**more):
    """kernel_size, stride, padding of a pooling layer (fresh fields: dataclasses own them)."""
    return dict(kernel_size=key(Size(1), REQUIRED, "window height and width"),
                stride=key(Size(1), None, "step between windows (default: kernel_size)"),
                padding=key(Size(0), 0, "zero rows/columns added on each side"), **more)


LAYERS = {
    "conv2d": _layer("conv2d", in_channels=key(Int(1, null=True), None, "inferred from the previous layer"),
                     out_channels=key(Int(1), REQUIRED, "filters"),
                     kernel_size=key(Size(1), REQUIRED, "window height and width"),
                     stride=key(Size(1), 1, "step between windows"),
                     padding=key(Size(0), 0, "zero rows/columns added on each side")),
    "relu": _layer("relu"),
    "maxpool2d": _layer("maxpool2d", **_window()),
    "minpool2d": _layer("minpool2d", **_window()),
    "avgpool2d": _layer("avgpool2d", **_window(
        count_include_pad=key(Bool(), True, "divide by the full window, padding included"))),
    "globalavgpool2d": _layer("globalavgpool2d"),
    "globalmaxpool2d": _layer("globalmaxpool2d"),
    "flatten": _layer("flatten"),
    "dense": _layer("dense", in_features=key(Int(1, null=True), None, "inferred from the previous layer"),
                    out_features=key(Int(1), REQUIRED, "outputs")),
    "softmax": _layer("softmax"),
    # random pooling
    "fractionalmaxpool2d": _layer("fractionalmaxpool2d",
                                  kernel_size=key(Size(1), REQUIRED, "region height and width"),
                                  output_size=key(OrNull(Size(1)), None, "output height and width (or output_ratio)"),
                                  output_ratio=key(OrNull(Ratio()), None,
                                                   "output size as a fraction of the input's, int(H * ratio)")),
    "stochasticpool2d": _layer("stochasticpool2d", kernel_size=key(Size(1), REQUIRED, "window height and width"),
                               stride=key(Size(1), None, "step between windows (default: kernel_size)")),
    # normalisation, regularisation, activations
    **{kind: _layer(kind, num_features=key(Int(1, null=True), None, "inferred from the previous layer"),
                    momentum=key(Number(0.0, 1.0, open_high=False), 0.1, "weight of each batch in the running "
                                 "statistics"),
                    eps=key(Number(0.0, open_low=True), 1e-5, "added to the variance"),
                    affine=key(Bool(), True, "learn a scale gamma and a shift beta per channel"))
       for kind in ("batchnorm2d", "batchnorm1d")},
    **{kind: _layer(kind, p=key(Number(0.0, 1.0, open_high=False), 0.5, f"probability of zeroing {what}"))
       for kind, what in (("dropout", "an element"), ("dropout2d", "a whole channel"))},
    "leakyrelu": _layer("leakyrelu", negative_slope=key(Number(0.0), 0.01, "slope for x <= 0")),
    "tanh": _layer("tanh"),
    "sigmoid": _layer("sigmoid"),
    "gelu": _layer("gelu", approximate=key(Choice(("none", "tanh")), "none",
                                           "none: exact, with erf; tanh: PyTorch's tanh approximation")),
    # pooling family: LP, adaptive and spatial pyramid pooling
    "lppool2d": _layer("lppool2d",
                       norm_type=key(Number(0.0, open_low=True), REQUIRED, "p: (sum of abs(x)^p)^(1/p) per window"),
                       kernel_size=key(Size(1), REQUIRED, "window height and width"),
                       stride=key(Size(1), None, "step between windows (default: kernel_size)")),
    "adaptiveavgpool2d": _layer("adaptiveavgpool2d", output_size=key(Size(1), REQUIRED, "output height and width")),
    "adaptivemaxpool2d": _layer("adaptivemaxpool2d", output_size=key(Size(1), REQUIRED, "output height and width")),
    "spp2d": _layer("spp2d", levels=key(IntList(Int(1), nonempty=True), (1, 2, 4), "l x l grids, in order"),
                    mode=key(Choice(("max", "avg")), "max", "max or avg pooling in each bin")),
    # anti-aliased and learned max/average pooling
    "blurpool2d": _layer("blurpool2d", filter_size=key(Int(1, 7), 3, "taps of the binomial low-pass row"),
                         stride=key(Size(1), 2, "subsampling step")),
    "maxblurpool2d": _layer("maxblurpool2d", kernel_size=key(Size(1), 2, "stride-1 max window height and width"),
                            filter_size=key(Int(1, 7), 3, "taps of the binomial low-pass row"),
                            stride=key(Size(1), 2, "subsampling step")),
    "mixedpool2d": _layer("mixedpool2d", kernel_size=key(Size(1), REQUIRED, "window height and width"),
                          stride=key(Size(1), None, "step between windows (default: kernel_size)")),
    "gatedpool2d": _layer("gatedpool2d", kernel_size=key(Size(1), REQUIRED, "window height and width"),
                          stride=key(Size(1), None, "step between windows (default: kernel_size)")),
}
LAYER_CLASSES = {"conv2d": L.Conv2D, "relu": L.ReLU, "maxpool2d": L.MaxPool2D, "minpool2d": L.MinPool2D,
                 "avgpool2d": L.AvgPool2D, "globalavgpool2d": L.GlobalAvgPool2D,
                 "globalmaxpool2d": L.GlobalMaxPool2D, "flatten": L.Flatten, "dense": L.Dense, "softmax": L.Softmax,
                 # random pooling
                 "fractionalmaxpool2d": L.FractionalMaxPool2D, "stochasticpool2d": L.StochasticPool2D,
                 # normalisation, regularisation, activations
                 "batchnorm2d": L.BatchNorm2D, "batchnorm1d": L.BatchNorm1D, "dropout": L.Dropout,
                 "dropout2d": L.Dropout2D, "leakyrelu": L.LeakyReLU, "tanh": L.Tanh, "sigmoid": L.Sigmoid,
                 "gelu": L.GELU,
                 # pooling family: LP, adaptive and spatial pyramid pooling
                 "lppool2d": L.LPPool2D, "adaptiveavgpool2d": L.AdaptiveAvgPool2D,
                 "adaptivemaxpool2d": L.AdaptiveMaxPool2D, "spp2d": L.SpatialPyramidPool2D,
                 # anti-aliased and learned max/average pooling
                 "blurpool2d": L.BlurPool2D, "maxblurpool2d": L.MaxBlurPool2D, "mixedpool2d": L.MixedPool2D,
                 "gatedpool2d": L.GatedPool2D}

_UNIT = Number(0.0, 1.0)                   # [0, 1)
_LR_DOC, _WD_DOC = "learning rate", "L2 penalty added to the gradient"


_SGD = {k: p.default for k, p in inspect.signature(SGD).parameters.items()}    # the defaults live there
_ADAM = {k: p.default for k, p in inspect.signature(Adam).parameters.items()}


@dataclasses.dataclass(frozen=True, kw_only=True)
class SGDKeys:
    lr: float = key(Number(0.0, open_low=True), _SGD["lr"], _LR_DOC)
    momentum: float = key(_UNIT, _SGD["momentum"], "heavy-ball momentum (the one default, with or without "
                          "train.optimizer)")
    weight_decay: float = key(Number(0.0), _SGD["weight_decay"], _WD_DOC)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdamKeys:
    lr: float = key(Number(0.0, open_low=True), _ADAM["lr"], _LR_DOC)
    beta1: float = key(_UNIT, _ADAM["beta1"], "first-moment decay")
    beta2: float = key(_UNIT, _ADAM["beta2"], "second-moment decay")
    eps: float = key(Number(0.0, open_low=True), _ADAM["eps"], "added to the denominator")
    weight_decay: float = key(Number(0.0), _ADAM["weight_decay"], _WD_DOC)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConstantKeys:
    pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepKeys:
    step_epochs: int = key(Int(1, MAX_EPOCHS), REQUIRED, "multiply the rate by gamma every this many epochs")
    gamma: float = key(Number(0.0, 1.0, open_low=True, open_high=False), 0.1, "factor per step")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CosineKeys:
    warmup_epochs: int = key(Int(0, MAX_EPOCHS), 0, "linear warm-up before the cosine decay")


OPTIMIZER = Variant("name", {"sgd": SGDKeys, "adam": AdamKeys}, default="sgd", hint="a mapping with name and lr")
SCHEDULE = Variant("name", {"constant": ConstantKeys, "step": StepKeys, "cosine": CosineKeys}, default="constant",
                   hint="a mapping with name")
LAYER = Variant("type", {t: cls for t, cls in LAYERS.items()})


@dataclasses.dataclass(frozen=True, kw_only=True)
class AugmentKeys:
    shift: int = key(Int(0, MAX_SHIFT), 0, "random shift of up to this many pixels per training image and epoch")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataKeys:
    dataset: str = key(Choice(("mnist", "fashion_mnist", "npz")), "mnist", "the data set")
    val_size: int = key(Int(0), 5000, "training images held out for validation")
    train_size: int | None = key(Int(1, null=True), None, "use only the first N training images")
    test_size: int | None = key(Int(1, null=True), None, "evaluate on the first N test images")
    path: str | None = key(Text(null=True), None, "npz file, relative to the config's folder (npz only, required)")
    augment: AugmentKeys = key(Nested(AugmentKeys), AugmentKeys(), "training-time augmentation")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelKeys:
    input_shape: tuple = key(Shape(), MNIST_SHAPE, "[1, 28, 28] for mnist and fashion_mnist")
    layers: tuple = key(ListOf(LAYER, "layers"), REQUIRED, "the layers, first to last")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainKeys:
    epochs: int = key(Int(1, MAX_EPOCHS), 5, "passes over the training images")
    batch_size: int = key(Int(1), 64, "images per optimizer step")
    optimizer: tuple = key(OPTIMIZER, ("sgd", SGDKeys()), "sgd or adam")
    schedule: tuple = key(SCHEDULE, ("constant", ConstantKeys()), "learning-rate schedule")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalKeys:
    shifts: tuple = key(IntList(Int(0, MAX_SHIFT), distinct=True), (0, 1, 2, 3, 4),
                        "test-set shifts (pixels) evaluated after training")
    batch_size: int = key(Int(1), 128, "images per forward pass in evaluation")
    # the probes of minicnn.probes, each computed once after training ([] or 0: off)
    probe_images: int | None = key(Int(1, null=True), 5000, "test images the consistency, noise and canvas "
                                   "probes use: the first N (null: all)")
    consistency_shift: int = key(Int(0, MAX_SHIFT), 2, "shift consistency: share of test images whose class "
                                 "is the same under two random shifts of up to this many pixels (0: off)")
    gaussian_sigmas: tuple = key(NumberList(Number(0.0, 1.0, open_low=True, open_high=False)), (0.1, 0.2, 0.3),
                                 "test accuracy under additive Gaussian noise of each standard deviation "
                                 "(pixels in [0, 1], clipped)")
    salt_pepper: tuple = key(NumberList(Number(0.0, 1.0, open_low=True, open_high=False)), (0.05, 0.1, 0.2),
                             "test accuracy with each share of pixels set to 0 or 1 at random")
    canvases: tuple = key(IntList(Int(1, MAX_CANVAS), distinct=True), (40, 56), "test accuracy on SxS black "
                          "canvases, each test image at a random place (S >= the input's height and width; "
                          "null in summary.json for a model that takes only its input size)")
    gap_images: int = key(Int(0), 5000, "generalisation gap: accuracy on the first N training images "
                          "(inference mode) minus test accuracy (0: off)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConfigKeys:
    name: str | None = key(Text(), None, "run name (default: the file name without .yaml)")
    seed: int = key(Int(0, MAX_SEED), 0, "weights, batch order and augmentation")
    data: DataKeys = key(Nested(DataKeys), DataKeys(), "")
    model: ModelKeys = key(Nested(ModelKeys), REQUIRED, "")
    train: TrainKeys = key(Nested(TrainKeys), TrainKeys(), "")
    eval: EvalKeys = key(Nested(EvalKeys), EvalKeys(), "")


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuickKeys:
    seeds: tuple | None = key(IntList(Int(0, MAX_SEED), nonempty=True, distinct=True), None,
                              "seeds with --quick (default: the first seed)")
    set: tuple = key(TextList("KEY=VALUE strings"), ("train.epochs=1", "data.train_size=2000"),
                     "overrides added with --quick")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClaimKeys:
    text: str = key(Text(), REQUIRED, "the claim in one sentence")
    metric: str = key(Text(), REQUIRED, "the results.csv column that tests it, e.g. consistency")
    variant: str = key(Text(), REQUIRED, "the config name the claim is about")
    baseline: str = key(Text(), REQUIRED, "the config name it is compared with, seed by seed")
    direction: str = key(Choice(("higher", "lower", "equal", "not_lower")), REQUIRED,
                         "what the claim predicts for variant minus baseline")
    margin: float = key(Number(0.0, 1.0, open_low=True), 0.005, "for equal and not_lower: the difference "
                        "that still counts as none (in the metric's units: 0.005 is half a point)")
    cell: str | None = key(Text(null=True), None, "the grid cell's label (default: every cell)")
    baseline_metric: str | None = key(Text(null=True), None, "the baseline's column when it is another one "
                                      "(default: metric), e.g. a variant's canvas_56 against its own test_accuracy")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentKeys:
    name: str | None = key(Text(), None, "study name (default: the file name without .yaml)")
    configs: tuple = key(TextList("config file paths", nonempty=True), REQUIRED, "relative to the experiment file")
    seeds: tuple = key(IntList(Int(0, MAX_SEED), nonempty=True, distinct=True), (0,), "one run per config and seed")
    set: tuple = key(TextList("KEY=VALUE strings"), (), "overrides for every run")
    grid: tuple = key(Grid(), (), "grid cells: every config and seed runs once per cell")
    out: str | None = key(Text(null=True, what="a folder path"), None, "experiment folder, relative to the experiment file "
                                                 "(default: runs/NAME)")
    quick: QuickKeys = key(Nested(QuickKeys), QuickKeys(), "what --quick changes")
    claims: tuple = key(Records(ClaimKeys, "claims"), (), "claims the report tests (minicnn.claims)")


SCHEMA = {"": ConfigKeys}          # the tables of docs/architecture.md
EXPERIMENT_SCHEMA = {"": ExperimentKeys}


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    name: str
    options: dict  # keyword arguments of minicnn.optim.OPTIMIZERS[name]


ScheduleConfig = OptimizerConfig  # the same shape: name and the schedule's keys (step_epochs, gamma, ...)


@dataclasses.dataclass(frozen=True)
class Config:
    """A validated config.  ``resolved`` is the full dict, defaults filled in.

    The attributes after ``resolved`` serve the data sets, augmentation and
    schedules: ``dataset`` (mnist | fashion_mnist | npz), ``data_path`` (the
    npz file, absolute), ``augment_shift`` (pixels), ``schedule`` (.name,
    .options) and ``num_outputs`` (the last layer's score count, which the
    data loader compares with the number of classes).
    """

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
    dataset: str = "mnist"
    data_path: str | None = None   # absolute path of the npz file (dataset npz), else None
    augment_shift: int = 0
    schedule: ScheduleConfig = ScheduleConfig("constant", {})
    num_outputs: int = MNIST_CLASSES   # scores the last layer gives; the class count must match
    eval: EvalKeys = EvalKeys()        # the eval section, for the probes (minicnn.probes)


# ---------------------------------------------------------------- reading YAML

class _BoundedLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """SafeLoader that refuses documents of more than MAX_NODES values, aliases expanded.

    libyaml's parser when PyYAML has it: it refuses deep nesting in
    microseconds, where the Python parser takes 0.6 s to run out of stack.
    """

    def construct_document(self, node):
        sizes = {}

        def size(n):  # values under n with every alias expanded, memoised per node
            if id(n) not in sizes:
                sizes[id(n)] = 0  # a recursive alias counts once, then the limit catches it
                children = n.value if isinstance(n, yaml.SequenceNode) else \
                    [v for pair_ in n.value for v in pair_] if isinstance(n, yaml.MappingNode) else []
                sizes[id(n)] = min(MAX_NODES + 1, 1 + sum(size(c) for c in children))
            return sizes[id(n)]

        if size(node) > MAX_NODES:
            raise yaml.YAMLError(f"more than {MAX_NODES:,} values once aliases are expanded")
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        """A mapping, refused when a key appears twice in it (YAML would keep the last silently)."""
        seen = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key_node.value[:40]!r} appears twice in one mapping (first on "
                        f"line {seen[key_node.value] + 1}); keep one", key_node.start_mark)
                seen[key_node.value] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


class YamlDumper(yaml.SafeDumper):
    """SafeDumper that quotes every string _BoundedLoader would read as something else."""


# YAML 1.2 floats without a dot (1e-3, 5E4), which YAML 1.1 reads as strings: numbers, as a reader means
for _cls in (_BoundedLoader, YamlDumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"),
                               list("-+0123456789"))


def _yaml_value(text: str):
    return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 (a SafeLoader)


def load_yaml(path) -> dict:
    """Read a YAML mapping safely and boundedly; ConfigError on any problem."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise ConfigError(path, "", f"file is {size:,} bytes; a config or experiment file may have at "
                                  f"most {MAX_FILE_BYTES:,}")
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:  # grew, or a device that reports size 0
            raise ConfigError(path, "", f"file is over {MAX_FILE_BYTES:,} bytes, the most a config may have")
        raw = _yaml_value(data.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, "", "no such file") from None
    except IsADirectoryError:
        raise ConfigError(path, "", "is a folder, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, "", f"cannot read: {show(str(e))}") from None
    except yaml.YAMLError as e:
        raise ConfigError(path, "", f"invalid YAML: {_yaml_problem(e)}") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer of more than 4300 digits
        raise ConfigError(path, "", f"invalid YAML: {show(str(e))}") from None
    if not isinstance(raw, dict):
        raise ConfigError(path, "", f"expected a mapping of keys at the top, got {show(raw)}")
    return raw


def _yaml_problem(e) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return where + str(problem)[:100]


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
            raise ConfigError(file, clip(item), "bad override: expected KEY=VALUE, e.g. train.epochs=1")
        key, text = item.split("=", 1)
        key = key.strip()
        if len(key) > MAX_KEY_CHARS:
            raise ConfigError(file, clip(key), f"override key of {len(key):,} characters; a key path has "
                              f"at most {MAX_KEY_CHARS}")
        steps = parse_key(key, file)
        if len(text) > MAX_OVERRIDE_CHARS:
            raise ConfigError(file, key, f"override value of {len(text):,} characters; at most "
                              f"{MAX_OVERRIDE_CHARS:,} are read")
        try:
            value = _yaml_value(text) if text.strip() else None
        except yaml.YAMLError as e:
            if "aliases" in str(e):
                raise ConfigError(file, key, f"invalid YAML: {_yaml_problem(e)}") from None
            value = text
        except (ValueError, RecursionError) as e:
            raise ConfigError(file, key, f"invalid value: {show(str(e))}") from None
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

def validate(raw: dict, file: str) -> Config:
    """Check a config mapping against the schema; ConfigError names the first problem."""
    top = parse(ConfigKeys, raw, file, "")
    data, model, train, ev = top.data, top.model, top.train, _canvases(top.eval, top.model.input_shape, raw, file)
    name = top.name if top.name is not None else pathlib.Path(file).stem
    data_path = None
    if data.dataset == "npz":
        if data.path is None:
            raise ConfigError(file, "data.path", "missing; dataset npz needs the path of its .npz file")
        data_path = str((pathlib.Path(file).resolve().parent / data.path).resolve())
    else:
        if data.path is not None:
            raise ConfigError(file, "data.path", f"only for dataset npz; {data.dataset} has its own source")
        if data.val_size >= MNIST_TRAIN_IMAGES:
            raise ConfigError(file, "data.val_size", f"expected fewer than {MNIST_TRAIN_IMAGES} images, "
                              f"got {data.val_size}")
        if model.input_shape != MNIST_SHAPE:
            raise ConfigError(file, "model.input_shape", f"expected {list(MNIST_SHAPE)} for {data.dataset}, "
                              f"got {list(model.input_shape)}")
    layers = [(kind, {k: v for k, v in dataclasses.asdict(keys).items()
                      if not (k in INFERRED and v is None)})
              for kind, keys in model.layers]
    optimizer = OptimizerConfig(train.optimizer[0], dataclasses.asdict(train.optimizer[1]))
    schedule = ScheduleConfig(train.schedule[0], dataclasses.asdict(train.schedule[1]))
    resolved_data = {"dataset": data.dataset, "val_size": data.val_size, "train_size": data.train_size,
                     "test_size": data.test_size, "path": data_path, "augment": as_plain(data.augment)}
    resolved = {
        "name": name, "seed": top.seed, "data": resolved_data,
        "model": {"input_shape": list(model.input_shape),
                  "layers": [{"type": t, **{k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}}
                             for t, kw in layers]},
        "train": {"epochs": train.epochs, "batch_size": train.batch_size,
                  "optimizer": {"name": optimizer.name, **optimizer.options},
                  "schedule": {"name": schedule.name, **schedule.options}},
        "eval": as_plain(ev),
    }
    config = Config(file=file, name=name, seed=top.seed, val_size=data.val_size, train_size=data.train_size,
                    test_size=data.test_size, input_shape=model.input_shape, layers=layers,
                    epochs=train.epochs, batch_size=train.batch_size, optimizer=optimizer, shifts=ev.shifts,
                    eval_batch_size=ev.batch_size, resolved=resolved, dataset=data.dataset, data_path=data_path,
                    augment_shift=data.augment.shift, schedule=schedule, eval=ev)
    _check_epochs_and_sizes(config)
    plan = build_model(config, allocate=False)  # shape errors surface now, located by layer
    outputs = plan.output_shape
    if config.dataset != "npz" and outputs != (MNIST_CLASSES,):
        raise ConfigError(file, "model.layers", f"the last layer must give {MNIST_CLASSES} class scores, "
                          f"got output shape {list(outputs)}")
    if len(outputs) != 1:
        raise ConfigError(file, "model.layers", f"the last layer must give one score per class, "
                          f"got output shape {list(outputs)}; end with dense (and softmax)")
    return dataclasses.replace(config, num_outputs=outputs[0])


def _canvases(ev: EvalKeys, input_shape: tuple, raw: dict, file: str) -> EvalKeys:
    """The eval section with canvases that hold the input: one given smaller is an error, a default
    one smaller is left out (the defaults are for MNIST's 28x28)."""
    least = max(input_shape[1:])
    if isinstance(raw.get("eval"), dict) and "canvases" in raw["eval"]:
        for i, size in enumerate(ev.canvases):
            if size < least:
                raise ConfigError(file, f"eval.canvases[{i}]", f"expected a canvas at least as large as the "
                                  f"input's {input_shape[1]}x{input_shape[2]}, got {size}")
        return ev
    return dataclasses.replace(ev, canvases=tuple(size for size in ev.canvases if size >= least))


def _check_epochs_and_sizes(config: Config) -> None:
    """Values each valid alone that make no sense together: a warmup longer than the run, a
    training shift that can move every pixel out of the image."""
    if config.schedule.name == "cosine" and config.schedule.options["warmup_epochs"] > config.epochs:
        raise ConfigError(config.file, "train.schedule.warmup_epochs", f"expected at most train.epochs "
                          f"({config.epochs}), got {config.schedule.options['warmup_epochs']}: the rate would "
                          "never leave the warmup")
    size = min(config.input_shape[1:])
    if config.augment_shift >= size:
        raise ConfigError(config.file, "data.augment.shift", f"expected less than the image size "
                          f"({size} pixels, model.input_shape), got {config.augment_shift}: a shift that "
                          "large trains on blank images")


def build_model(config: Config, dtype=np.float32, allocate: bool = True) -> Sequential:
    """Instantiate the layers, inferring in_channels / in_features by shape propagation.

    Weights are drawn from one Generator seeded with config.seed, in layer order, as
    ``Sequential(layers, input_shape, seed=config.seed)`` draws them (the same numbers).
    ``allocate=False`` gives the same model without memory behind its weights
    (zero-stride views of the right shapes): enough for shapes, parameter
    counts, MACs and the memory estimate of ``summary``, whatever the size.
    """
    rng = np.random.default_rng(config.seed)
    shape = config.input_shape
    built = []
    for i, (kind, kwargs) in enumerate(config.layers):
        path = f"model.layers[{i}]"
        cls = LAYER_CLASSES[kind]
        kwargs = dict(kwargs)
        try:
            if kind == "conv2d":
                if len(shape) != 3:
                    raise ValueError(f"conv2d needs a (C, H, W) feature map, got shape {list(shape)}")
                _infer(kwargs, "in_channels", shape[0], file=config.file, path=path)
            elif kind == "dense":
                if len(shape) != 1:
                    raise ValueError(f"dense needs a flat (features,) input, got shape {list(shape)}; "
                                     "add {type: flatten} before it")
                _infer(kwargs, "in_features", shape[0], file=config.file, path=path)
            elif kind in ("batchnorm2d", "batchnorm1d"):
                _infer(kwargs, "num_features", shape[0], file=config.file, path=path)
            if (kind in PARAM_SHAPES or kind in STATE_SHAPES) and not allocate:
                layer = _hollow(kind, kwargs, dtype)
            elif kind in STATE_SHAPES:    # normalisation: no random draws, running state besides params
                layer = cls(**kwargs, dtype=dtype)
            elif issubclass(cls, WeightedLayer):  # built as Sequential builds: size from the shape, weights from rng
                layer = cls(**{k: v for k, v in kwargs.items() if k != cls.SIZE}, dtype=dtype)
                layer.build(shape, rng)
            elif kind in PARAM_SHAPES:
                layer = cls(**kwargs, dtype=dtype, rng=rng)
            else:
                layer = cls(**kwargs)
            if kind in ("maxpool2d", "minpool2d", "avgpool2d", "globalavgpool2d", "globalmaxpool2d",
                        # random pooling
                        "fractionalmaxpool2d", "stochasticpool2d",
                        # normalisation, regularisation
                        "batchnorm2d", "dropout2d",
                        # pooling family: LP, adaptive and spatial pyramid pooling
                        "lppool2d", "adaptiveavgpool2d", "adaptivemaxpool2d", "spp2d",
                        # anti-aliased and learned max/average pooling
                        "blurpool2d", "maxblurpool2d", "mixedpool2d", "gatedpool2d") \
                    and len(shape) != 3:
                raise ValueError(f"{kind} needs a (C, H, W) feature map, got shape {list(shape)}")
            if kind == "softmax" and len(shape) != 1:
                raise ValueError(f"softmax needs a flat (classes,) input, got shape {list(shape)}")
            shape = layer.output_shape(shape)
        except ValueError as e:
            raise ConfigError(config.file, path, f"{e} (input to this layer: {list(shape)})") from None
        built.append(layer)
    return Sequential(built, config.input_shape)


def from_config(config, overrides=(), dtype=np.float32) -> Sequential:
    """The model a config describes, its weights drawn from the config's ``seed``.

    Args:
        config: a YAML file's path, a config mapping (as the YAML file would hold it;
            errors then name the file ``<dict>``), or a validated Config.
        overrides: "KEY=VALUE" strings, as ``--set`` takes them (not for a Config).
        dtype: the weights' type, float32 (default) or float64.

    Returns:
        A Sequential; ConfigError names the key path of the first problem.

    Example::

        >>> import minicnn as mc
        >>> model = mc.from_config({"model": {"layers": [
        ...     {"type": "conv2d", "out_channels": 4, "kernel_size": 3}, {"type": "relu"},
        ...     {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
        ...     {"type": "dense", "out_features": 10}, {"type": "softmax"}]}})
        >>> model.output_shape, model.n_params
        ((10,), 6810)
    """
    return build_model(as_config(config, overrides), dtype)


def model_section(model: Sequential) -> dict:
    """The ``model`` section of a config that builds ``model``'s layers: {input_shape, layers}.

    Every layer must be one of LAYER_CLASSES; its keys are read from the layer's attributes
    (the constructor's arguments, resolved: a pooling stride of None is written as kernel_size).
    """
    types = {cls: kind for kind, cls in LAYER_CLASSES.items()}
    layers = []
    for i, layer in enumerate(model.layers):
        kind = types.get(type(layer))
        if kind is None:
            raise TypeError(f"layer {i}: {type(layer).__name__} has no YAML type; a run folder's config "
                            f"can only hold {', '.join(c.__name__ for c in LAYER_CLASSES.values())}")
        keys = {f.name: getattr(layer, f.name) for f in dataclasses.fields(LAYERS[kind])}
        layers.append({"type": kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in keys.items()}})
    return {"input_shape": list(model.input_shape), "layers": layers}


def from_run_config(resolved: dict, file: str):
    """(model, optimizer) that a run folder's config.yaml (as a mapping) describes: its ``model``
    and ``seed``, and ``train.optimizer``; the data section is not read (nor checked against the model)."""
    model = resolved.get("model")
    if isinstance(model, dict) and isinstance(model.get("layers"), list):  # null: the key's default
        model = {**model, "layers": [{k: v for k, v in layer.items() if v is not None} if isinstance(layer, dict)
                                     else layer for layer in model["layers"]]}
    raw = {"seed": resolved.get("seed", 0), "model": model,
           "data": {"dataset": "npz", "path": file},  # npz: no bound on the input shape or class count
           "train": {"optimizer": (resolved.get("train") or {}).get("optimizer", {"name": "sgd"})}}
    config = validate(raw, file)
    model = build_model(config)
    return model, OPTIMIZERS[config.optimizer.name](model.parameters(), **config.optimizer.options)


def as_config(config, overrides=()) -> Config:
    """A Config from a path, a mapping (file ``<dict>``) or a Config (returned as it is)."""
    if isinstance(config, Config):
        if overrides:
            raise TypeError("overrides apply to a config file or mapping, not to a validated Config")
        return config
    if isinstance(config, dict):
        raw = copy.deepcopy(config)
        apply_overrides(raw, overrides, "<dict>")
        return validate(raw, "<dict>")
    return load_config(config, overrides)


# Parameter shapes of the layers with weights (DESIGN's public API), for _hollow.
PARAM_SHAPES = {
    "conv2d": lambda k: {"W": (k["out_channels"], k["in_channels"], *pair(k["kernel_size"], "", "")),
                         "b": (k["out_channels"],)},
    "dense": lambda k: {"W": (k["in_features"], k["out_features"]), "b": (k["out_features"],)},
    # normalisation
    **{kind: lambda k: {"gamma": (k["num_features"],), "beta": (k["num_features"],)} if k["affine"] else {}
       for kind in ("batchnorm2d", "batchnorm1d")},
    # learned max/average pooling
    "mixedpool2d": lambda k: {"theta": (1,)},
    "gatedpool2d": lambda k: {"w": (math.prod(pair(k["kernel_size"], "", "")),)},
}
# Shapes of the running state of the layers that keep one, for _hollow.
STATE_SHAPES = {
    # normalisation
    **{kind: lambda k: {"running_mean": (k["num_features"],), "running_var": (k["num_features"],)}
       for kind in ("batchnorm2d", "batchnorm1d")},
}
# Keys inferred from the previous layer's output when left out (or null).
INFERRED = ("in_channels", "in_features", "num_features")
_GEOMETRY = ("kernel_size", "stride", "padding")
_SIZES = ("in_channels", "out_channels", "in_features", "out_features", "num_features", *_GEOMETRY)


def _hollow(kind: str, kwargs: dict, dtype):
    """The layer with its real attributes but weights that take no memory.

    Built with sizes of 1 (a few bytes), then given the real sizes; its params
    are read-only zero-stride views, so .size and .shape are right.
    """
    small = {**kwargs, **{k: 1 if k not in ("padding",) else 0 for k in kwargs if k in _SIZES}}
    layer = LAYER_CLASSES[kind](**small, dtype=dtype)
    for k, v in kwargs.items():
        if k == "stride" and v is None:   # a pooling stride defaults to its kernel_size
            v = kwargs["kernel_size"]
        setattr(layer, k, pair(v, k, kind) if k in _GEOMETRY else v)
    zero = np.zeros((), dtype=dtype)
    layer.params = {name: np.broadcast_to(zero, shape) for name, shape in PARAM_SHAPES[kind](kwargs).items()}
    layer.grads = {}
    layer.state = {name: np.broadcast_to(zero, shape)
                   for name, shape in STATE_SHAPES.get(kind, lambda k: {})(kwargs).items()}
    return layer


def _infer(kwargs, key, value, file, path):
    if key in kwargs and kwargs[key] != value:
        raise ConfigError(file, f"{path}.{key}", f"expected {value} (inferred from the previous layer), "
                          f"got {kwargs[key]}")
    kwargs[key] = value


# ---------------------------------------------------------------- memory

def memory_estimate(config: Config, dtype=np.float32):
    """training_memory() of the config's model, built without allocating its weights."""
    slots = {"sgd": 1 if config.optimizer.options.get("momentum", 0) else 0, "adam": 2}[config.optimizer.name]
    return training_memory(build_model(config, dtype, allocate=False), config.batch_size,
                           config.eval_batch_size, slots, np.dtype(dtype).itemsize)


def check_memory(config: Config, available: int | None = None, dtype=np.float32) -> None:
    """Refuse (UserError, exit 2) a model whose training estimate exceeds the memory available.

    ``available`` in bytes, default minicnn.memory.available_memory(); no check when that is unknown.
    """
    available = memory.available_memory() if available is None else available
    if available is None:
        return
    estimate = memory_estimate(config, dtype)
    if estimate.total > available:
        i, row = estimate.dominant
        if estimate.eval_peak > sum(r.activations for r in estimate.rows) and estimate.eval_peak > row.total:
            raise UserError(f"{config.file}: eval.batch_size: evaluation needs about {_gib(estimate.total)} "
                            f"(eval.batch_size {config.eval_batch_size:,}), more than the {_gib(available)} "
                            f"available; most of it, {_gib(estimate.eval_peak)}, is one evaluation batch: "
                            "make eval.batch_size smaller")
        raise UserError(f"{config.file}: model.layers: training needs about {_gib(estimate.total)} "
                        f"(batch_size {config.batch_size}), more than the {_gib(available)} available; "
                        f"most of it, {_gib(row.total)}, is layer {i} ({config.layers[i][0]})")


def memory_summary(config: Config, dtype=np.float32) -> str:
    """One line for ``minicnn summary``: the training estimate, its largest layer, what is available."""
    estimate, available = memory_estimate(config, dtype), memory.available_memory()
    i, row = estimate.dominant
    largest = (f"one evaluation batch of eval.batch_size {config.eval_batch_size:,}, {_gib(estimate.eval_peak)}"
               if estimate.eval_peak > max(row.total, sum(r.activations for r in estimate.rows))
               else f"layer {i}, {config.layers[i][0]}, {_gib(row.total)}")
    return (f"training memory estimate: {_gib(estimate.total)} at batch_size {config.batch_size} "
            f"(largest: {largest}); "
            + (f"available: {_gib(available)}" if available is not None else "available: unknown"))


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def dump_yaml(resolved: dict) -> str:
    return yaml.dump(resolved, Dumper=YamlDumper, sort_keys=False, default_flow_style=None)


if __name__ == "__main__":  # print the tables of docs/architecture.md
    from minicnn.schema import schema_table

    print(schema_table(SCHEMA), schema_table(EXPERIMENT_SCHEMA), sep="\n\n")
