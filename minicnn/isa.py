"""Which instruction set the kernels may use: ``MINICNN_ISA=avx512|avx2|portable``.

One switch caps every kernel with a fast path (GEMM, Winograd, im2col /
col2im, the channels-last backward, pooling): ``avx512`` (AVX-512F),
``avx2`` (AVX2 + FMA) or ``portable`` (plain C loops, built for baseline
x86-64 or any other CPU). Unset, it is the best this CPU runs. The level is
decided once per process, the first time a kernel module is imported (or
``level()`` is called), and recorded in each run's summary.json.

Different levels may round differently (an FMA rounds once, a multiply and an
add twice), so a run reproduces bit for bit on the same level, not across them.

>>> level() in LEVELS
True
"""
from __future__ import annotations

import contextlib
import os

from minicnn.errors import UserError

LEVELS = ("portable", "avx2", "avx512")   # index = the C side's MC_ISA_* value (_isa.h)
VARIABLE = "MINICNN_ISA"

_level: str | None = None
_setters: list = []


def cpu() -> str:
    """The best level this CPU runs."""
    from minicnn._isa import cpu_level

    return LEVELS[cpu_level()]


def level() -> str:
    """The level the kernels use in this process: MINICNN_ISA, else ``cpu()``.

    Raises UserError (the CLI's exit 2) for an unknown value or one above ``cpu()``.
    """
    global _level
    if _level is None:
        _level = parse(os.environ.get(VARIABLE, ""), cpu())
    return _level


def parse(value: str, best: str) -> str:
    """The level MINICNN_ISA=value asks for on a CPU whose best is ``best`` ("" means best)."""
    name = value.strip().lower()
    if not name:
        return best
    if name not in LEVELS:
        raise UserError(f"{VARIABLE}={value[:40]!r} is not an instruction-set level: "
                        f"expected avx512, avx2 or portable (unset: the best this CPU runs, {best})")
    if LEVELS.index(name) > LEVELS.index(best):
        raise UserError(f"{VARIABLE}={name}: this CPU runs at most {best}")
    return name


def register(setter) -> None:
    """Called by each kernel module at import with its ``_set_isa``: sets the
    module's level now and on every ``override``.

    A bad MINICNN_ISA does not fail the import (the CLI imports every kernel before
    it can print one line): the module stays portable, and ``level()`` raises the
    UserError, which the CLI's first step and every training run call."""
    try:
        setter(LEVELS.index(level()))
    except UserError:
        setter(LEVELS.index("portable"))
    _setters.append(setter)


@contextlib.contextmanager
def override(name: str):
    """For tests only: run the kernels at level ``name`` (at most ``cpu()``)
    inside the block, in every kernel module, then restore the process's level.
    Layers keep weights packed for the level they were first run at: make them inside."""
    global _level
    before = level()
    name = parse(name, cpu())
    try:
        _level = name
        for setter in _setters:
            setter(LEVELS.index(name))
        yield name
    finally:
        _level = before
        for setter in _setters:
            setter(LEVELS.index(before))
