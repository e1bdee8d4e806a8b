"""minicnn's team of worker threads (minicnn/_team.h): every part runs once,
on its own share, whoever calls and however often; after fork() the child's
team works; SGD's update on the team equals NumPy's, bit for bit."""
from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest

from minicnn import _optim, _team


@pytest.mark.parametrize("parts", [1, 2, 3, 5])
def test_every_part_runs_once_on_its_own_share(parts):
    rng = np.random.default_rng(0)
    for n in [0, 1, 2, 7, 100]:
        for _ in range(200):     # many hand-offs in a row: a lost wake-up or a race shows as a wrong element
            out = np.full(n, -1, dtype=np.int64)
            _team.fill(out, parts, int(rng.integers(0, 50)))
            np.testing.assert_array_equal(out, np.arange(n) % parts)


def test_two_callers_at_once_both_get_their_parts():
    """The team serves one caller; another calling meanwhile runs its parts itself."""
    errors = []

    def caller(seed):
        rng = np.random.default_rng(seed)
        try:
            for _ in range(300):
                parts = int(rng.integers(1, 4))
                out = np.full(64, -1, dtype=np.int64)
                _team.fill(out, parts, int(rng.integers(0, 200)))
                np.testing.assert_array_equal(out, np.arange(64) % parts)
        except AssertionError as e:     # pragma: no cover - reported below
            errors.append(e)

    callers = [threading.Thread(target=caller, args=(seed,)) for seed in range(3)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in callers), "a caller hung"
    assert not errors, errors[0]


def _fill_in_child(queue):
    out = np.full(10, -1, dtype=np.int64)
    _team.fill(out, 2, 10)
    queue.put(out.tolist())


def test_a_forked_child_starts_its_own_team():
    out = np.full(10, -1, dtype=np.int64)
    _team.fill(out, 2)                          # the parent's team has a worker now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_fill_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the child hung or failed"
    assert queue.get(timeout=5) == [i % 2 for i in range(10)]


def test_a_hand_off_takes_microseconds_not_milliseconds():
    """Between calls a worker sleeps after MC_TEAM_SPIN_NS; one that never woke
    would make this hang, one that woke late would take milliseconds.  Measured
    on the 2-core machine: 0.5 us for 2 parts (spinning worker)."""
    assert _team.handoff_seconds(2, 200) < 2e-3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("parts", [1, 2, 3])
def test_sgd_on_the_team_is_numpys_update_bit_for_bit(dtype, parts):
    rng = np.random.default_rng(1)
    shapes = [(5, 3, 3, 3), (5,), (7, 11), (1,), (0, 4), (3, 1)]
    p = [rng.standard_normal(s).astype(dtype) for s in shapes]
    g = [rng.standard_normal(s).astype(dtype) for s in shapes]
    v = [rng.standard_normal(s).astype(dtype) for s in shapes]
    expected_p, expected_v = [a.copy() for a in p], [a.copy() for a in v]
    for pe, ge, ve in zip(expected_p, g, expected_v):
        ve *= dtype(0.9)
        ve += ge
        pe -= dtype(0.05) * ve
    _optim.sgd_momentum_all(list(zip(p, g, v)), 0.05, 0.9, parts)
    for a, b in zip(p + v, expected_p + expected_v):
        np.testing.assert_array_equal(a, b)


def test_sgd_on_the_team_refuses_mismatched_arrays():
    a = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="one shape"):
        _optim.sgd_momentum_all([(a, np.zeros(5, np.float32), a.copy())], 0.1, 0.9, 2)
    with pytest.raises(ValueError, match="one shape"):
        _optim.sgd_momentum_all([(a, a.astype(np.float64), a.copy())], 0.1, 0.9, 2)
