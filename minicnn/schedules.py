"""Learning-rate schedules (``train.schedule``): the rate of every batch as a pure function.

``learning_rate(schedule, base_lr, step, batches_per_epoch, epochs)`` is the rate for
the batch with global index ``step`` (0-based, counted over the whole run: epoch
``step // batches_per_epoch``), from the optimizer's ``lr`` (``base_lr``). Nothing is
stored between calls, so a run resumed at any epoch sets exactly the rates an
uninterrupted run sets. With T = epochs * batches_per_epoch:

constant                  lr(t) = base_lr                                   (the default)
step {step_epochs: k,     lr(t) = base_lr * gamma ** floor(e / k), e = t // batches_per_epoch
      gamma: g}           (times gamma after every k finished epochs)
cosine {warmup_epochs: w} W = round(w * batches_per_epoch) warmup batches, then
                          lr(t) = base_lr * (t + 1) / W                     for t < W
                          lr(t) = base_lr * (1 + cos(pi * (t - W) / (T - W))) / 2   for t >= W
                          a linear rise over the first w epochs from base_lr / W to base_lr,
                          then half a cosine period that would reach 0 at t = T (one batch
                          after the last); the same curve as PyTorch's CosineAnnealingLR with
                          T_max = T - W stepped once per batch, after the warmup.

The trainer sets ``optimizer.lr = learning_rate(...)`` before every batch; metrics.csv's
``lr`` is the rate of each epoch's last batch, ``learning_rate(..., (e + 1) * bpe - 1, ...)``.
"""
from __future__ import annotations

import dataclasses
import math

# name -> {key: default}; None marks a required key
SCHEDULES = {
    "constant": {},
    "step": {"step_epochs": None, "gamma": 0.1},
    "cosine": {"warmup_epochs": 0},
}


@dataclasses.dataclass(frozen=True)
class Constant:
    """The optimizer's ``lr`` for every batch (``{name: constant}``, the default).

    Example::

        >>> import minicnn as mc
        >>> mc.learning_rate(mc.Constant(), 0.05, step=10, batches_per_epoch=5, epochs=3)
        0.05
    """

    name = "constant"


@dataclasses.dataclass(frozen=True)
class Step:
    """``lr * gamma ** (e // step_epochs)`` in epoch e (``{name: step, step_epochs, gamma}``).

    Args:
        step_epochs: epochs between two multiplications by gamma.
        gamma: the factor, in (0, 1]. Default: 0.1.

    Example::

        >>> import minicnn as mc
        >>> round(mc.learning_rate(mc.Step(step_epochs=2), 0.05, step=10, batches_per_epoch=5, epochs=3), 6)
        0.005
    """

    step_epochs: int
    gamma: float = 0.1
    name = "step"


@dataclasses.dataclass(frozen=True)
class Cosine:
    """A linear warm-up over ``warmup_epochs``, then half a cosine down towards 0 over the rest of
    the run (``{name: cosine, warmup_epochs}``; the formula is in this module's docstring).

    Args:
        warmup_epochs: epochs of linear rise from lr / W to lr (W the warm-up batches). Default: 0.

    Example::

        >>> import minicnn as mc
        >>> [round(mc.learning_rate(mc.Cosine(), 1.0, t, 2, 2), 3) for t in range(4)]
        [1.0, 0.854, 0.5, 0.146]
    """

    warmup_epochs: float = 0
    name = "cosine"


def resolve(schedule) -> dict:
    """The schedule with its defaults filled in ({"name": "constant"} for None): ``schedule`` a
    mapping as a config's ``train.schedule``, or a Constant, Step or Cosine.

    ValueError(key, message) for an unknown name or key, a missing key or a bad value;
    ``key`` is the path below ``train.schedule`` ("name", "gamma", ...), for the caller's message.
    """
    if dataclasses.is_dataclass(schedule):
        schedule = {"name": schedule.name, **dataclasses.asdict(schedule)}
    schedule = dict(schedule or {"name": "constant"})
    name = schedule.pop("name", None)
    if name not in SCHEDULES:
        raise ValueError("name", f"expected one of {', '.join(SCHEDULES)}, got {name!r}")
    keys = SCHEDULES[name]
    for key in schedule:
        if key not in keys:
            raise ValueError(key, f"unknown key for schedule {name}; expected "
                             + (", ".join(keys) if keys else "no other keys"))
    out = {"name": name}
    for key, default in keys.items():
        value = schedule.get(key, default)
        if value is None:
            raise ValueError(key, f"schedule {name} needs {key}")
        out[key] = value
    _check(out)
    return out


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(s: dict) -> None:
    if s["name"] == "step":
        k = s["step_epochs"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError("step_epochs", f"expected an integer >= 1, got {k!r}")
        if not _number(s["gamma"]) or not 0 < s["gamma"] <= 1:
            raise ValueError("gamma", f"expected a number in (0, 1], got {s['gamma']!r}")
    if s["name"] == "cosine" and (not _number(s["warmup_epochs"]) or s["warmup_epochs"] < 0):
        raise ValueError("warmup_epochs", f"expected a number >= 0, got {s['warmup_epochs']!r}")


def learning_rate(schedule, base_lr: float, step: int, batches_per_epoch: int, epochs: int) -> float:
    """The learning rate of batch ``step`` (0-based over the whole run) from the optimizer's
    ``base_lr``: the formulas of this module's docstring.

    Args:
        schedule: as ``resolve`` returns it, or a Constant, Step or Cosine (None: constant).
        base_lr: the optimizer's learning rate.
        step: the batch's global index, epoch ``step // batches_per_epoch``.
        batches_per_epoch: batches in one epoch.
        epochs: epochs of the run.

    Example::

        >>> import minicnn as mc
        >>> mc.learning_rate({"name": "step", "step_epochs": 1, "gamma": 0.5}, 0.1, 3, 2, 4)
        0.05
    """
    if dataclasses.is_dataclass(schedule):
        schedule = resolve(schedule)
    name = (schedule or {"name": "constant"})["name"]
    if name == "constant":
        return float(base_lr)
    if name == "step":
        return float(base_lr * schedule["gamma"] ** (step // batches_per_epoch // schedule["step_epochs"]))
    if name == "cosine":
        total = epochs * batches_per_epoch
        warmup = min(round(schedule["warmup_epochs"] * batches_per_epoch), total)
        if step < warmup:
            return float(base_lr * (step + 1) / warmup)
        if warmup == total:  # warmup_epochs >= epochs: a run that only warms up
            return float(base_lr)
        return float(base_lr * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))) / 2)
    raise ValueError("name", f"unknown schedule {name!r}")


def epoch_rates(schedule: dict | None, base_lr: float, batches_per_epoch: int, epochs: int) -> list[float]:
    """The rate of each epoch's last batch (metrics.csv's ``lr`` column), epochs 1..epochs."""
    return [learning_rate(schedule, base_lr, (e + 1) * batches_per_epoch - 1, batches_per_epoch, epochs)
            for e in range(epochs)]
