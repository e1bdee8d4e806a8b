"""Grid cells of an experiment: their overrides, labels and folder names.

An experiment file's ``grid`` either maps dotted config keys to lists of values,

    grid:
      data.dataset: [mnist, fashion_mnist]
      data.augment.shift: [0, 2]

whose cells are the cartesian product in file order (the first key varies
slowest): (mnist, 0), (mnist, 2), (fashion_mnist, 0), (fashion_mnist, 2); or
lists the cells themselves, for a study that needs only some combinations:

    grid:
      - {data.dataset: mnist, data.augment.shift: 0}
      - {data.dataset: mnist, data.augment.shift: 2}
      - {data.dataset: fashion_mnist, data.augment.shift: 0}

``minicnn.schema.Grid`` reads both into cells.  A cell is a tuple of (key,
value) pairs; it reaches ``load_config`` as ``key=value`` override strings,
after the experiment's ``set`` and ``--set``.  Its label ("fashion_mnist,
shift 2") heads its report section and marks its series in the figures; its
slug ("fashion_mnist-shift2") is the folder its runs live under,
OUT/SLUG/CONFIG/seedK.
"""
from __future__ import annotations

import re

import yaml

from minicnn.config import YamlDumper  # quotes what minicnn's loader would not read back as is

Cell = tuple  # ((key, value), ...) in the order of the grid's keys

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")
SLUG_PART_CHARS = 40


def yaml_text(value) -> str:
    """A YAML scalar as the text an override gives it: 2 -> '2', '2' -> "'2'", 1e-05 -> '1.0e-05'."""
    text = yaml.dump(value, Dumper=YamlDumper, default_flow_style=True, width=1_000_000)
    return text.removesuffix("\n...\n").rstrip("\n")


def overrides(cell: Cell) -> tuple[str, ...]:
    """The cell as ``key=value`` override strings."""
    return tuple(f"{key}={yaml_text(value)}" for key, value in cell)


def _name(key: str) -> str:
    """The last name of a dotted key: data.augment.shift -> shift, model.layers[2].stride -> stride."""
    return re.sub(r"\[\d+\]", "", key.rsplit(".", 1)[-1])


def _part(key: str, value, sep: str = " ") -> str:
    # a string value names itself (mnist, cosine); a number, boolean or null needs its key (shift 2)
    return value if isinstance(value, str) and value else f"{_name(key)}{sep}{yaml_text(value)}"


def label(cell: Cell) -> str:
    """"fashion_mnist, shift 2"; "" for the one cell of an experiment without a grid."""
    return ", ".join(_part(key, value) for key, value in cell)


def slug(cell: Cell) -> str:
    """The cell's folder name: "fashion_mnist-shift2" (characters outside [A-Za-z0-9_.+-] become _)."""
    parts = []
    for key, value in cell:
        part = _UNSAFE.sub("_", _part(key, value, sep=""))[:SLUG_PART_CHARS]
        parts.append(part if part.strip(".") else _name(key))  # never "." or ".."
    return "-".join(parts)
