"""Layers give the same results on 1, 2 and 3 threads (minicnn.threads).

The other layer tests run at the machine's default thread count; these pin
the count.  Element-wise and pooling work is split into disjoint ranges of the same
loops, so results are bit for bit equal.  What goes through BLAS (Conv2D,
Dense) may differ in the last bits: BLAS runs one thread inside a part but
several otherwise, products come in blocks of another shape, and dW is summed
over parts; those are compared to float rounding.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import minicnn.layers as L
from minicnn import threads
from minicnn.errors import UserError

LAYERS = {
    "conv": (lambda rng, dt: L.Conv2D(3, 8, (3, 2), stride=(1, 2), padding=1, dtype=dt, rng=rng), (3, 30, 30)),
    "conv_big": (lambda rng, dt: L.Conv2D(32, 64, 3, padding=1, dtype=dt, rng=rng), (32, 14, 14)),
    # float32: the channels-last backward (minicnn/_channels_last.h)
    "conv_strided": (lambda rng, dt: L.Conv2D(32, 32, 3, stride=2, padding=1, dtype=dt, rng=rng), (32, 28, 28)),
    "dense": (lambda rng, dt: L.Dense(700, 50, dtype=dt, rng=rng), (700,)),
    "relu": (lambda rng, dt: L.ReLU(), (4, 30, 30)),
    "max": (lambda rng, dt: L.MaxPool2D(3, stride=2, padding=1), (8, 30, 30)),
    "max2x2": (lambda rng, dt: L.MaxPool2D(2), (8, 30, 30)),
    "min": (lambda rng, dt: L.MinPool2D(2), (8, 30, 30)),
    "avg": (lambda rng, dt: L.AvgPool2D((2, 3), stride=(2, 1), padding=(1, 0)), (8, 30, 30)),
    "global_avg": (lambda rng, dt: L.GlobalAvgPool2D(), (8, 30, 30)),
    "global_max": (lambda rng, dt: L.GlobalMaxPool2D(), (8, 30, 30)),
}
BLAS_LAYERS = {"conv", "conv_big", "conv_strided", "dense"}


@pytest.fixture
def kernel_threads(monkeypatch):
    """Set the thread count; any work, however small, is shared out."""
    monkeypatch.setattr(threads, "PARALLEL_MIN_WORK", 1)

    def set_threads(n):
        monkeypatch.setattr(threads, "KERNEL_THREADS", n)
    return set_threads


def run(name, n, dtype, count, kernel_threads):
    kernel_threads(count)
    make, shape = LAYERS[name]
    layer = make(np.random.default_rng(1), dtype)
    rng = np.random.default_rng(2)
    # rounded values give ties, so the max/min tie rule is exercised across parts too
    x = np.round(rng.standard_normal((n, *shape)), 1).astype(dtype)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    return y, dx, {k: g.copy() for k, g in layer.grads.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 2, 37, 64])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_same_results_on_any_thread_count(name, n, dtype, kernel_threads):
    y1, dx1, g1 = run(name, n, dtype, 1, kernel_threads)
    for count in (2, 3):
        y, dx, g = run(name, n, dtype, count, kernel_threads)
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        if name in BLAS_LAYERS:
            np.testing.assert_allclose(y, y1, rtol=rtol, atol=rtol)
            np.testing.assert_allclose(dx, dx1, rtol=rtol, atol=rtol)
        else:
            np.testing.assert_array_equal(y, y1)
            np.testing.assert_array_equal(dx, dx1)
        for key in g1:
            np.testing.assert_allclose(g[key], g1[key], rtol=rtol, atol=rtol * max(1.0, np.abs(g1[key]).max(initial=0)))


def test_work_is_spread_over_pool_threads(kernel_threads):
    kernel_threads(3)
    seen = []
    lock = threading.Lock()

    def work(part, items):
        with lock:
            seen.append((part, tuple(items), threading.current_thread().name))
        return part

    assert threads.run_parts(work, list(range(7))) == [0, 1, 2]
    seen.sort()
    assert [s[1] for s in seen] == [(0, 3, 6), (1, 4), (2, 5)]
    assert seen[0][2] == threading.current_thread().name
    assert all(s[2].startswith("minicnn") for s in seen[1:])


def test_an_error_in_a_part_is_raised_after_every_part_ended(kernel_threads):
    kernel_threads(2)
    finished = []

    def work(part, items):
        if part == 0:
            raise ValueError("part 0 failed")
        threading.Event().wait(0.05)
        finished.append(part)

    with pytest.raises(ValueError, match="part 0 failed"):
        threads.run_parts(work, [0, 1])
    assert finished == [1]


def test_blas_is_held_to_one_thread_only_inside_a_layer(kernel_threads):
    kernel_threads(2)
    before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    inside = []

    def work(part, items):
        inside.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    with threads.one_blas_thread():
        threads.run_parts(work, [0])
    assert inside and set(inside) == {1}
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == before


@pytest.mark.parametrize("value, expected", [("3", 3), (" 2 ", 2), ("", 5), ("8", 8)])
def test_thread_count_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setenv("MINICNN_KERNEL_THREADS", value)
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert threads._kernel_threads() == expected       # "" is unset: OMP_NUM_THREADS, 5
    monkeypatch.setenv("OMP_NUM_THREADS", "50")
    if not value.strip():
        assert threads._kernel_threads() == 8          # OMP_NUM_THREADS is capped at 4 x the CPUs
    monkeypatch.delenv("MINICNN_KERNEL_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 7)
    assert threads._kernel_threads() == 7           # neither variable: the number of CPUs
    monkeypatch.setattr(threads.os, "cpu_count", lambda: None)
    assert threads._kernel_threads() == 1           # unknown CPU count


@pytest.mark.parametrize("value", ["0", "-1", "abc", "9", "100000", "3000000000", "9" * 5000, "2.5"])
def test_a_bad_thread_count_is_refused_in_one_line(monkeypatch, value):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setenv("MINICNN_KERNEL_THREADS", value)
    with pytest.raises(UserError, match=r"^MINICNN_KERNEL_THREADS='.{1,30}': expected an integer from 1 to 8 "):
        threads._kernel_threads()
    count, error = threads._from_environment()
    assert count == 2 and isinstance(error, UserError)   # the library goes on with the CPU count
    monkeypatch.setattr(threads, "_ENVIRONMENT_ERROR", error)
    with pytest.raises(UserError):
        threads.check_environment()
    with pytest.warns(RuntimeWarning, match="MINICNN_KERNEL_THREADS"):   # what training says of it
        threads.warn_environment()


def test_the_cli_refuses_a_bad_thread_count_with_exit_status_2(tmp_path):
    env = {**os.environ, "MINICNN_KERNEL_THREADS": "3000000000"}
    done = subprocess.run([sys.executable, "-m", "minicnn", "summary", "configs/max_pool.yaml"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=pathlib.Path(__file__).parents[1])
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("minicnn: error: MINICNN_KERNEL_THREADS=")


def test_small_work_stays_on_the_calling_thread(monkeypatch):
    monkeypatch.setattr(threads, "KERNEL_THREADS", 2)
    assert threads.row_ranges(64, threads.PARALLEL_MIN_WORK - 1) == [(0, 64)]
    assert threads.row_ranges(64, threads.PARALLEL_MIN_WORK) == [(0, 32), (32, 64)]
    assert threads.row_ranges(1, threads.PARALLEL_MIN_WORK) == [(0, 1)]


def test_overlapping_limits_in_two_threads_hold_until_the_last_one_ends():
    """Two runs in threads of one process: the first to end must not lift the layers' thread
    count of the other, which would change how its products are cut (and their last bits)."""
    before = threads.KERNEL_THREADS
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with threads.limit(1):
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with threads.limit(1):
            second_in.set()
            first_out.wait(10)
            seen["inside"] = threads.KERNEL_THREADS

    workers = [threading.Thread(target=first), threading.Thread(target=second)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(20)
    assert first_out.is_set() and seen["inside"] == 1
    assert threads.KERNEL_THREADS == before
