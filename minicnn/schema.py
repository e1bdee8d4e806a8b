"""The YAML schema: one typed declaration per section, defaults and checks included.

A section is a frozen dataclass; each field is declared by ``key(kind, default,
doc)`` in one line.  ``parse(Section, node, file, path)`` checks a YAML mapping
against it: unknown keys, missing required keys and wrong values raise
ConfigError naming the file, the key path and what was expected.  Configs and
experiment files are both declared here; docs/architecture.md's schema table
is generated from these declarations (``schema_table``) and a test keeps the
two equal.

Every number is bounded (``MAX_INT`` unless a tighter bound is declared), so
no value can reach NumPy or a C int out of range, and every value echoed in a
message is cut to ``SHOW_CHARS`` characters without being expanded first.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import reprlib

from minicnn.errors import ConfigError

MAX_INT = 2**31 - 1          # sizes, channels, batch sizes: the kernels index with C int
MAX_SEED = 2**32 - 1         # numpy's SeedSequence takes any int; keep seeds to 32 bits
MAX_EPOCHS = 100_000
MAX_SHIFT = 1_000            # pixels; larger shifts leave an empty image
MAX_LIST = 1_000             # items in eval.shifts, seeds, configs, set
MAX_TEXT = 1_000             # characters in a string value
MAX_GRID_KEYS = 8            # axes of an experiment's grid
MAX_GRID_VALUES = 100        # values per axis
MAX_GRID_CELLS = 1_000       # cells: listed, or the product of the axes' lengths
MAX_GRID_RUNS = 10_000       # cells x configs x seeds of a study with a grid
GRID_RESERVED = {"seed": "the seeds are the experiment's seeds list",
                 "name": "each config's name names its variant"}
SHOW_CHARS = 60
REQUIRED = dataclasses.MISSING

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxdict, _repr.maxstring, _repr.maxother, _repr.maxlong = 3, 6, 4, 50, 50, 40


def show(value) -> str:
    """A short repr of a YAML value (never expands a deep or long value first)."""
    text = _repr.repr(value)
    return text if len(text) <= SHOW_CHARS else text[:SHOW_CHARS - 3] + "..."


def clip(text: str) -> str:
    """A key (or key path) cut to SHOW_CHARS characters for a message."""
    return text if len(text) <= SHOW_CHARS else text[:SHOW_CHARS - 3] + "..."


class Bad(Exception):
    """A value does not fit its kind; the message is what was expected."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ---------------------------------------------------------------- kinds of value

@dataclasses.dataclass(frozen=True)
class Int:
    least: int = 0
    most: int = MAX_INT
    null: bool = False

    @property
    def expected(self) -> str:
        text = {0: "an integer >= 0", 1: "a positive integer"}.get(self.least, f"an integer >= {self.least}")
        return text + (" or null" if self.null else "")

    def check(self, v):
        if v is None and self.null:
            return None
        if not _is_int(v) or v < self.least:
            raise Bad(self.expected)
        if v > self.most:
            raise Bad(f"{self.expected} of at most {self.most:,}")
        return v


@dataclasses.dataclass(frozen=True)
class Number:
    least: float = 0.0
    most: float = math.inf
    open_low: bool = False   # least itself excluded
    open_high: bool = True   # most itself excluded (always for inf)

    @property
    def expected(self) -> str:
        if self.most == math.inf:
            return f"a number {'>' if self.open_low else '>='} {self.least:g}"
        return (f"a number in {'(' if self.open_low else '['}{self.least:g}, "
                f"{self.most:g}{')' if self.open_high else ']'}")

    def check(self, v):
        try:
            x = float(v) if _is_int(v) or isinstance(v, float) else math.nan
        except OverflowError:
            x = math.nan
        if not (math.isfinite(x) and (x > self.least if self.open_low else x >= self.least)
                and (x < self.most if self.open_high else x <= self.most)):
            raise Bad(self.expected)
        return x


@dataclasses.dataclass(frozen=True)
class Bool:
    expected = "true or false"

    def check(self, v):
        if not isinstance(v, bool):
            raise Bad(self.expected)
        return v


@dataclasses.dataclass(frozen=True)
class Text:
    null: bool = False
    what: str = "a string"

    @property
    def expected(self) -> str:
        return self.what + (" or null" if self.null else "")

    def check(self, v):
        if v is None and self.null:
            return None
        if not isinstance(v, str) or not v:
            raise Bad(self.expected)
        if len(v) > MAX_TEXT:
            raise Bad(f"a string of at most {MAX_TEXT} characters")
        return v


@dataclasses.dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]

    @property
    def expected(self) -> str:
        return f"one of {', '.join(self.options)}"

    def check(self, v):
        if not isinstance(v, str) or v not in self.options:
            raise Bad(self.expected)
        return v


@dataclasses.dataclass(frozen=True)
class Size:
    """An int or an [h, w] pair (kernel sizes, strides, paddings); pairs come back as tuples."""

    least: int = 1

    @property
    def expected(self) -> str:
        return ("a positive integer" if self.least == 1 else f"an integer >= {self.least}") + \
            " or a [h, w] pair of them"

    def check(self, v):
        items = v if isinstance(v, list) and len(v) == 2 else [v]
        if not all(_is_int(i) and self.least <= i <= MAX_INT for i in items):
            raise Bad(self.expected)
        return tuple(v) if isinstance(v, list) else v


# random pooling (FractionalMaxPool2D's output_size / output_ratio)
@dataclasses.dataclass(frozen=True)
class OrNull:
    """``kind``'s value, or null."""

    kind: object

    @property
    def expected(self) -> str:
        return f"{self.kind.expected}, or null"

    def check(self, v):
        return None if v is None else self.kind.check(v)


@dataclasses.dataclass(frozen=True)
class Ratio:
    """A number in (0, 1) or an [h, w] pair of them; pairs come back as tuples."""

    expected = "a number in (0, 1) or a [h, w] pair of them"

    def check(self, v):
        items = v if isinstance(v, list) and len(v) == 2 else [v]
        if not all((_is_int(i) or isinstance(i, float)) and 0 < i < 1 for i in items):
            raise Bad(self.expected)
        return tuple(float(i) for i in v) if isinstance(v, list) else float(v)


@dataclasses.dataclass(frozen=True)
class IntList:
    """A list of bounded integers (eval.shifts, seeds); comes back as a tuple."""

    item: Int
    nonempty: bool = False
    distinct: bool = False

    @property
    def expected(self) -> str:
        words = ("a non-empty list" if self.nonempty else "a list") + (" of distinct" if self.distinct else " of")
        return f"{words} {self.item.expected.replace('an integer', 'integers').replace('a positive integer', 'positive integers')}"

    def check(self, v):
        if not isinstance(v, list) or len(v) > MAX_LIST or (self.nonempty and not v):
            raise Bad(self.expected if isinstance(v, list) and len(v) <= MAX_LIST
                      else f"{self.expected} (at most {MAX_LIST} items)")
        for i in v:
            if not _is_int(i) or not self.item.least <= i <= self.item.most:
                raise Bad(f"{self.expected}, each at most {self.item.most:,}")
        if self.distinct and len(set(v)) != len(v):
            raise Bad(self.expected)
        return tuple(v)


@dataclasses.dataclass(frozen=True)
class NumberList:
    """A list of distinct bounded numbers (eval.gaussian_sigmas); comes back as a tuple of floats."""

    item: Number

    @property
    def expected(self) -> str:
        return f"a list of distinct numbers, each {self.item.expected.replace('a number ', '')}"

    def check(self, v):
        if not isinstance(v, list) or len(v) > MAX_LIST:
            raise Bad(f"{self.expected} (at most {MAX_LIST} items)")
        values = []
        for i in v:
            try:
                values.append(self.item.check(i))
            except Bad:
                raise Bad(self.expected) from None
        if len(set(values)) != len(values):
            raise Bad(self.expected)
        return tuple(values)


@dataclasses.dataclass(frozen=True)
class TextList:
    """A list of strings (experiment configs, KEY=VALUE overrides)."""

    what: str
    nonempty: bool = False

    @property
    def expected(self) -> str:
        return f"{'a non-empty list' if self.nonempty else 'a list'} of {self.what}"

    def check(self, v):
        if not (isinstance(v, list) and (v or not self.nonempty) and len(v) <= MAX_LIST
                and all(isinstance(s, str) and 0 < len(s) <= MAX_TEXT for s in v)):
            raise Bad(self.expected)
        return tuple(v)


@dataclasses.dataclass(frozen=True)
class Shape:
    expected = "a [channels, height, width] list of positive integers"

    def check(self, v):
        if not (isinstance(v, list) and len(v) == 3 and all(_is_int(i) and 0 < i <= MAX_INT for i in v)):
            raise Bad(self.expected)
        return tuple(v)


@dataclasses.dataclass(frozen=True)
class Grid:
    """An experiment's grid, in one of two forms; comes back as its cells, a tuple of cells each a
    tuple of (dotted key, scalar) pairs (minicnn.study.grid), () without a grid.

    - axes, {dotted key: non-empty list of distinct scalars}: the cartesian product in file order,
      the first key slowest;
    - cells, a list of {dotted key: scalar} mappings: exactly those cells, for a study that needs
      only some combinations.

    Whether a key exists and a value fits is checked by loading each config with each cell."""

    expected = (f"a mapping of at most {MAX_GRID_KEYS} config keys, each to a non-empty list of at most "
                f"{MAX_GRID_VALUES} distinct scalars, or a list of at most {MAX_GRID_CELLS:,} mappings of "
                "config keys to scalars")

    def parse(self, v, file, path):
        if v is None:
            return ()
        if isinstance(v, list) and v and len(v) <= MAX_GRID_CELLS:
            return self._cells(v, file, path)
        if not isinstance(v, dict) or len(v) > MAX_GRID_KEYS:
            raise ConfigError(file, path, f"expected {self.expected}, got {show(v)}")
        axes, cells = [], 1
        for name, values in v.items():
            here = _grid_key(name, file, path)
            if not isinstance(values, list) or not values or len(values) > MAX_GRID_VALUES:
                raise ConfigError(file, here, f"expected a non-empty list of at most {MAX_GRID_VALUES} values, "
                                  f"got {show(values)}")
            seen = set()
            for i, x in enumerate(values):
                _grid_value(x, file, f"{here}[{i}]")
                if (type(x), x) in seen:
                    raise ConfigError(file, f"{here}[{i}]", f"{show(x)} is already in the list")
                seen.add((type(x), x))
            cells *= len(values)
            if cells > MAX_GRID_CELLS:
                raise ConfigError(file, path, f"more than {MAX_GRID_CELLS:,} cells (the product of the lists' "
                                  "lengths)")
            axes.append((name.strip(), tuple(values)))
        return tuple(tuple(zip([k for k, _ in axes], values))
                     for values in itertools.product(*(values for _, values in axes)))

    @staticmethod
    def _cells(items, file, path):
        cells, seen = [], {}
        for i, item in enumerate(items):
            where = f"{path}[{i}]"
            if not isinstance(item, dict) or not item or len(item) > MAX_GRID_KEYS:
                raise ConfigError(file, where, f"expected a mapping of 1 to {MAX_GRID_KEYS} config keys to "
                                  f"scalars, like {{data.dataset: mnist}}, got {show(item)}")
            cell = tuple((name.strip(), _grid_value(x, file, _grid_key(name, file, where)))
                         for name, x in item.items())
            identity = frozenset((k, type(x), x) for k, x in cell)
            if identity in seen:
                raise ConfigError(file, where, f"the same cell as {path}[{seen[identity]}]")
            seen[identity] = i
            cells.append(cell)
        return tuple(cells)


def _grid_key(name, file, path) -> str:
    """The key path of grid key ``name`` under ``path``, once ``name`` is a usable axis."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_TEXT:
        raise ConfigError(file, path, f"expected dotted config keys like data.dataset, got {show(name)}")
    here = clip(f"{path}.{name}")
    if name.strip() in GRID_RESERVED:
        raise ConfigError(file, here, f"cannot be a grid axis: {GRID_RESERVED[name.strip()]}")
    return here


def _grid_value(x, file, path):
    """``x`` if it is a scalar a grid may set."""
    if x is not None and not isinstance(x, (bool, int, float, str)) or isinstance(x, str) and len(x) > MAX_TEXT:
        raise ConfigError(file, path, f"expected a number, string, true, false or null, got {show(x)}")
    return x


@dataclasses.dataclass(frozen=True)
class Nested:
    """A mapping declared by another section (``data.augment``)."""

    section: type

    @property
    def expected(self) -> str:
        return f"a mapping with {', '.join(f.name for f in dataclasses.fields(self.section))}"

    def parse(self, v, file, path):
        return parse(self.section, v, file, path)


@dataclasses.dataclass(frozen=True)
class Records:
    """A list of mappings each declared by one section (an experiment's ``claims``); comes back as a
    tuple of the section's instances, () when left out."""

    section: type
    what: str

    @property
    def expected(self) -> str:
        keys = ", ".join(f.name for f in dataclasses.fields(self.section))
        return f"a list of {self.what}, each a mapping with {keys}"

    def parse(self, v, file, path):
        if v is None:
            return ()
        if not isinstance(v, list) or len(v) > MAX_LIST:
            limit = f" (at most {MAX_LIST})" if isinstance(v, list) else ""
            raise ConfigError(file, path, f"expected {self.expected}{limit}, got {show(v)}")
        return tuple(parse(self.section, x, file, f"{path}[{i}]") for i, x in enumerate(v))


@dataclasses.dataclass(frozen=True)
class Variant:
    """A mapping whose ``tag`` key picks its section: {name: sgd, ...}, {type: conv2d, ...}."""

    tag: str
    sections: dict
    default: str | None = None   # the tag's value when it is left out (None: required)
    hint: str = ""               # what the mapping holds, for "expected a mapping with ..."

    @property
    def expected(self) -> str:
        return f"a mapping like {{{self.tag}: {next(iter(self.sections))}}}"

    def parse(self, v, file, path):
        if v is None and self.default is not None:
            v = {}
        if not isinstance(v, dict):
            raise ConfigError(file, path, f"expected {self.hint or self.expected}, got {show(v)}")
        name = v.get(self.tag, self.default)
        if name not in self.sections:
            here = f"{path}.{self.tag}"
            if self.tag not in v and self.default is None:
                raise ConfigError(file, here, f"missing; expected one of {', '.join(self.sections)}"
                                  + "".join(colon_hint(k) for k in v if str(k).startswith(f"{self.tag}:"))[:200])
            raise ConfigError(file, here, f"expected one of {', '.join(self.sections)}, got {show(name)}")
        body = {k: x for k, x in v.items() if k != self.tag}
        return name, parse(self.sections[name], body, file, path, owner=name)


@dataclasses.dataclass(frozen=True)
class ListOf:
    item: Variant
    what: str

    @property
    def expected(self) -> str:
        return f"a non-empty list of {self.what}"

    def parse(self, v, file, path):
        if not isinstance(v, list) or not v or len(v) > MAX_LIST:
            limit = f" (at most {MAX_LIST})" if isinstance(v, list) and v else ""
            raise ConfigError(file, path, f"expected {self.expected}{limit}, got {show(v)}")
        return tuple(self.item.parse(x, file, f"{path}[{i}]") for i, x in enumerate(v))


def colon_hint(name) -> str:
    """For a key like 'name:cosine' (``{name:cosine}`` is one key to YAML), how to write it; else ""."""
    if not isinstance(name, str) or ":" not in name.strip(":"):
        return ""
    left, _, right = name.partition(":")
    return f" (YAML needs a space after the colon: write `{clip(left)}: {clip(right)}`, not `{clip(name)}`)"


def key(kind, default=REQUIRED, doc: str = ""):
    """Declare one key of a section: its kind of value, default (REQUIRED: none) and meaning."""
    return dataclasses.field(default=default, metadata={"kind": kind, "doc": doc})


def parse(section: type, node, file: str, path: str, owner: str | None = None):
    """Check the mapping ``node`` against ``section``'s declarations; return an instance.

    ``owner`` (a layer type or optimizer name) words the messages of a variant's keys.
    """
    if node is None:
        node = {}
    if not isinstance(node, dict):
        raise ConfigError(file, path, f"expected a mapping, got {show(node)}")
    fields = dataclasses.fields(section)
    names = [f.name for f in fields]
    for name in node:
        if name not in names:
            where = clip(f"{path}.{name}" if path else str(name))
            expected = f"one of {', '.join(names)}" if names else "no other keys"
            raise ConfigError(file, where, f"unknown key{f' for {owner}' if owner else ''}; expected {expected}"
                              + colon_hint(name))
    values = {}
    for f in fields:
        kind, here = f.metadata["kind"], f"{path}.{f.name}" if path else f.name
        if f.name in node:
            values[f.name] = check(kind, node[f.name], file, here)
        elif f.default is REQUIRED:
            raise ConfigError(file, here, f"missing; {owner + ' needs' if owner else 'expected'} {kind.expected}")
    return section(**values)


def check(kind, value, file: str, path: str):
    """One value against its kind: the normalised value, or ConfigError."""
    if hasattr(kind, "parse"):
        return kind.parse(value, file, path)
    try:
        return kind.check(value)
    except Bad as e:
        raise ConfigError(file, path, f"expected {e}, got {show(value)}") from None


def as_plain(section) -> dict:
    """A parsed section back as YAML-ready plain data (tuples -> lists, variants inlined)."""
    out = {}
    for f in dataclasses.fields(section):
        out[f.name] = _plain(getattr(section, f.name), f.metadata["kind"])
    return out


def _plain(value, kind):
    if isinstance(kind, Variant):
        name, body = value
        return {kind.tag: name, **as_plain(body)}
    if isinstance(kind, ListOf):
        return [_plain(v, kind.item) for v in value]
    if isinstance(kind, Nested):
        return as_plain(value)
    if isinstance(kind, Records):
        return [as_plain(v) for v in value]
    if isinstance(kind, Grid):
        return [dict(cell) for cell in value]
    return list(value) if isinstance(value, tuple) else value


def _yaml_text(value) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value).replace("'", "")


def schema_table(sections: dict) -> str:
    """A Markdown table of every key: path, expected value, default, meaning.

    ``sections``: {path prefix: section class}; variants and nested sections
    are expanded under their own paths.
    """
    rows = []

    def walk(section, prefix, only=""):
        for f in dataclasses.fields(section):
            kind, here = f.metadata["kind"], f"{prefix}.{f.name}" if prefix else f.name
            default = "required" if f.default is REQUIRED else f"`{_yaml_text(_plain(f.default, kind))}`"
            if isinstance(kind, Nested):
                walk(kind.section, here, only)
            elif isinstance(kind, Records):
                walk(kind.section, f"{here}[i]", only)
            elif isinstance(kind, (Variant, ListOf)):
                variant = kind.item if isinstance(kind, ListOf) else kind
                sub = f"{here}[i]" if isinstance(kind, ListOf) else here
                rows.append((f"{sub}.{variant.tag}", Choice(tuple(variant.sections)).expected,
                             "required" if variant.default is None else f"`{variant.default}`", f.metadata["doc"]))
                for name, cls in variant.sections.items():
                    walk(cls, sub, name)
            else:
                rows.append((here, kind.expected, default, (f"({only}) " if only else "") + f.metadata["doc"]))

    for prefix, section in sections.items():
        walk(section, prefix)
    lines = ["| key | value | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {e} | {d} | {m} |" for k, e, d, m in rows]
    return "\n".join(lines)

