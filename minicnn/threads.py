"""How many threads minicnn's layers use, and how work is spread over them.

``KERNEL_THREADS`` comes from ``MINICNN_KERNEL_THREADS``, else
``OMP_NUM_THREADS``, else the number of CPUs, and is at most
``max_threads()``: 4 x the CPUs (more threads than cores only wait on each
other: 100,000 trained 14x slower than 2).  A MINICNN_KERNEL_THREADS that is
not an integer from 1 to that maximum is a mistake: ``minicnn`` refuses it in
one line (``check_environment``, exit status 2) and the library warns and uses
the CPU count; an OMP_NUM_THREADS minicnn cannot use (a list, 0) is ignored,
one above the maximum is capped.  With more than one, each layer
cuts its work into that many parts, each with its own scratch buffers:

- Conv2D (by chunks of images), Dense (by ranges of W's rows) and SGD's
  update (by the same ranges of each parameter) run whole in C on minicnn's
  team of worker threads (minicnn/_team.h), without the GIL: a hand-off
  there costs about a microsecond, against 20 us to 0.2 ms for a Python
  thread that must take the GIL for each of its kernel calls.
- Pooling and ReLU, one kernel call per part, run on a pool of Python threads
  (``run_parts`` / ``split_rows``; the kernels release the GIL).

Meanwhile BLAS is held to one thread, so that there is only one team of
threads, ours.  Why not OpenMP ``prange`` in the kernels, nor OpenBLAS's
threads: on 2 cores, two teams fight.  An idle OpenMP or OpenBLAS team spins
before it sleeps and takes the core from the thread that has work next; one
measured case, a ReLU right after a BLAS product, ran 30x slower.  OpenMP's
wait policy cannot be changed once its runtime is loaded, and that runtime is
shared with PyTorch in the same process.  Our team spins only for a moment
right after its own work (yielding the core to any thread that wants it).

A run of a study owns a share of its host's cores (``ablate --jobs N``:
cpu_count // N; on Dask, the host's CPUs over its task slots) and takes it
inside its own process with ``limit(n)``, whatever the environment the
worker was started with.  Small work stays on the calling thread
(``PARALLEL_MIN_WORK``).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import os
import threading
import warnings


def max_threads() -> int:
    """The most kernel threads minicnn runs: 4 x the number of CPUs."""
    return 4 * (os.cpu_count() or 1)


def _kernel_threads() -> int:
    """MINICNN_KERNEL_THREADS, else OMP_NUM_THREADS, else the number of CPUs (module docstring);
    UserError for a MINICNN_KERNEL_THREADS that is not an integer in [1, max_threads()]."""
    from minicnn.errors import UserError

    most = max_threads()
    value = os.environ.get("MINICNN_KERNEL_THREADS", "")
    if value.strip():  # set and not empty
        text = value.strip()
        if not (text.isdigit() and len(text) <= 6 and 1 <= int(text) <= most):  # no 5,000-digit int()
            raise UserError(f"MINICNN_KERNEL_THREADS={value[:30]!r}: expected an integer from 1 to {most} "
                            f"(4 x the {os.cpu_count() or 1} CPUs); unset it to use one thread per CPU")
        return int(text)
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    if text.isdigit() and int(text[:7]) >= 1:  # 7 digits: anything longer is over the maximum anyway
        return min(int(text[:7]) if len(text) <= 7 else most, most)
    return os.cpu_count() or 1


def _from_environment() -> tuple[int, Exception | None]:
    """(KERNEL_THREADS, the UserError of a bad MINICNN_KERNEL_THREADS or None).

    Nothing is said at import: the CLI imports the whole package before it can print its one
    line (``check_environment``), and a library user hears of it when training (``warn_environment``)."""
    try:
        return _kernel_threads(), None
    except Exception as e:  # noqa: BLE001 - UserError; the library goes on with the CPU count
        return os.cpu_count() or 1, e


def check_environment() -> None:
    """Raise the UserError of a MINICNN_KERNEL_THREADS found bad at import (the CLI's first step)."""
    if _ENVIRONMENT_ERROR is not None:
        raise _ENVIRONMENT_ERROR


def warn_environment() -> None:
    """Warn (once: Python's default filter) of a bad MINICNN_KERNEL_THREADS; training's first step."""
    if _ENVIRONMENT_ERROR is not None:
        warnings.warn(f"{_ENVIRONMENT_ERROR}; using {KERNEL_THREADS} threads", RuntimeWarning, stacklevel=3)


KERNEL_THREADS, _ENVIRONMENT_ERROR = _from_environment()
# Work (array elements touched, or multiply-accumulates) below which a layer
# stays on the calling thread: handing out parts costs 50-100 us, and memory-bound
# loops gained nothing from a second thread below about a million elements.
PARALLEL_MIN_WORK = 1 << 20

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_blas = None
_held = False  # inside one_blas_thread (only the main thread enters it)
_limit_lock = threading.Lock()
_limit_blocks = 0      # limit() blocks open, over all threads
_limit_saved = 0       # KERNEL_THREADS from before the first of them


@contextlib.contextmanager
def limit(n: int):
    """Inside the block, minicnn's layers use ``n`` threads and BLAS at most ``n``.

    For a whole run in a worker (``experiment.run_one``).  With n > 1 the
    training loop still holds BLAS to one thread while the layers run their
    own (``one_blas_thread``).  The layers' thread count is process-wide, so
    blocks of runs that overlap in threads of one process (a thread pool, a
    Dask worker with several threads) share it: the first block in sets it,
    with its ``n``, and the last one out restores what was before, so that a
    run ending does not lift the limit of another still running.  The BLAS
    limit is set and restored by each block in its own thread.
    """
    global KERNEL_THREADS, _limit_blocks, _limit_saved
    from threadpoolctl import threadpool_limits

    with _limit_lock:
        if _limit_blocks == 0:
            _limit_saved, KERNEL_THREADS = KERNEL_THREADS, max(1, min(int(n), max_threads()))
        _limit_blocks += 1
    try:
        with threadpool_limits(limits=KERNEL_THREADS):
            yield
    finally:
        with _limit_lock:
            _limit_blocks -= 1
            if _limit_blocks == 0:
                KERNEL_THREADS = _limit_saved


def _executor(workers: int) -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None or _pool._max_workers < workers:
        _pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="minicnn")
    return _pool


@contextlib.contextmanager
def one_blas_thread():
    """Hold the BLAS libraries NumPy loaded to one thread inside the block
    when minicnn runs its own threads (KERNEL_THREADS > 1); else do nothing.

    A training loop holds it for the whole run (switching OpenBLAS's thread
    count costs about 0.2 ms per switch back, too much per layer); float32
    layers call no BLAS, float64 ones (checks) go through NumPy inside it.
    """
    global _blas, _held
    if KERNEL_THREADS == 1 or _held:
        yield
        return
    if _blas is None:
        from threadpoolctl import ThreadpoolController  # only paid for when threads > 1
        _blas = ThreadpoolController()
    with _blas.limit(limits=1, user_api="blas"):
        _held = True
        try:
            yield
        finally:
            _held = False


def run_parts(work, items: list, parts: int | None = None) -> list:
    """Split ``items`` into ``parts`` interleaved parts and run them at once.

    ``work(part, part_items)`` is called once per part with the part's index
    (0..parts-1, to pick per-part scratch buffers) and ``items[part::parts]``;
    the results come back in part order, so that combining them is
    deterministic for a given thread count.  Part 0 runs in the calling thread.
    ``parts`` defaults to KERNEL_THREADS and is capped at len(items).
    """
    parts = max(1, min(KERNEL_THREADS if parts is None else parts, len(items)))
    if parts == 1:
        return [work(0, items)]
    pool = _executor(parts - 1)
    futures = [pool.submit(work, i, items[i::parts]) for i in range(1, parts)]
    try:
        first = work(0, items[0::parts])
    finally:
        concurrent.futures.wait(futures)  # they write into the caller's arrays
    return [first] + [f.result() for f in futures]


def split_range(n: int, parts: int) -> list[tuple[int, int]]:
    """0..n as ``parts`` contiguous (lo, hi) ranges of near-equal length."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


def row_ranges(n: int, work: int) -> list[tuple[int, int]]:
    """Cut rows 0..n into up to KERNEL_THREADS ranges (one range when
    ``work`` is below PARALLEL_MIN_WORK)."""
    parts = KERNEL_THREADS if work >= PARALLEL_MIN_WORK else 1
    return split_range(n, max(1, min(parts, n)))


def split_rows(kernel, arrays, *args) -> None:
    """Run ``kernel(*row_slices, *args)`` on contiguous row ranges in parallel.

    ``arrays``: the kernel's array arguments, all with the same first axis
    (pooling planes, or flat elements), which the kernel treats independently;
    each part gets the same range of every array.
    """
    ranges = row_ranges(arrays[0].shape[0], max(a.size for a in arrays))

    def work(_, my_ranges):
        for lo, hi in my_ranges:
            kernel(*(a[lo:hi] for a in arrays), *args)

    run_parts(work, ranges)
