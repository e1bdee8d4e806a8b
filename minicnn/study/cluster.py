"""Running a study on a Dask cluster: connect, check shared storage, give each run its threads.

``minicnn ablate EXPERIMENT --dask ADDRESS`` connects to a running scheduler
(``tcp://host:8786``); ``--dask local:N`` starts a ``LocalCluster`` of N worker
processes with one task slot each, to try the same path on one machine.  The
runner itself only sees ``client.get_executor()``: a run is the same pure
function of its config and seed wherever it executes.

What a cluster must give a study, and what is checked here before any run is
submitted:

- shared storage: every worker reads and writes the experiment folder (run
  folders, checkpoints) and the data cache (``MINICNN_DATA``); a probe task
  on every worker proves it can (``check_shared_folder``);
- threads: a worker's BLAS and minicnn's kernel threads must not exceed the
  cores its host gives it.  ``thread_plan`` divides each host's CPUs among
  the task slots (workers x threads per worker) on that host, and the run
  applies its share inside the task (``minicnn.threads.limit``), whatever the
  environment the worker was started with.

Dask is optional: ``pip install "minicnn[dask]"``.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import sys
import uuid
from urllib.parse import urlparse

from minicnn.errors import UserError

INSTALL_HINT = 'pip install "minicnn[dask]"'
LOG_TOPIC = "minicnn-log"  # per-epoch lines of every run, forwarded from the workers to the driver
CONNECT_TIMEOUT = "10s"


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise UserError(f"--dask needs Dask's distributed scheduler, which is not installed; "
                        f"install it with: {INSTALL_HINT}") from None
    return distributed


def parse_target(text: str) -> tuple[str, int | str]:
    """'local:N' -> ('local', N); 'tcp://host:8786' or 'host:8786' -> ('remote', address)."""
    text = text.strip()
    if text.startswith("local"):
        _, _, n = text.partition(":")
        if not n.isdigit() or not 1 <= int(n) <= 256:
            raise UserError(f"--dask local:N needs a number of worker processes from 1 to 256, got {text!r}")
        return "local", int(n)
    if not text or any(c.isspace() for c in text):
        raise UserError(f"--dask expects a scheduler address like tcp://host:8786 or local:N, got {text!r}")
    return "remote", text


@contextlib.contextmanager
def connect(target: str):
    """Yield a ``distributed.Client`` for ``--dask TARGET``; close what was started on exit."""
    distributed = _import_distributed()
    kind, value = parse_target(target)
    if kind == "local":
        # processes, one task slot each: a run is CPU-bound Python and NumPy
        cluster = distributed.LocalCluster(n_workers=value, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
        return
    try:
        client = distributed.Client(value, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as e:
        raise UserError(f"cannot reach the Dask scheduler at {value} ({type(e).__name__}: {e}); start one "
                        f"with `dask scheduler` and workers with `dask worker {value}`") from None
    try:
        if not client.scheduler_info().get("workers"):
            raise UserError(f"the Dask scheduler at {value} has no workers; start some with "
                            f"`dask worker {value} --nworkers N --nthreads 1`")
        yield client
    finally:
        client.close()


def host_of(address: str) -> str:
    """'tcp://10.0.0.5:40123' -> '10.0.0.5'."""
    return urlparse(address).hostname or address


def thread_plan(client) -> dict[str, int]:
    """{worker host: threads per run}: the host's CPUs divided among its task slots.

    A host's slots are the sum of ``nthreads`` over the workers it runs (each
    slot may run one run at a time).  At least one thread per run.
    """
    workers = client.scheduler_info()["workers"]
    cpus = client.run(os.cpu_count)  # {worker address: CPUs of its host}
    slots: dict[str, int] = {}
    host_cpus: dict[str, int] = {}
    for address, info in workers.items():
        host = host_of(address)
        slots[host] = slots.get(host, 0) + int(info.get("nthreads", 1))
        host_cpus[host] = int(cpus.get(address) or 1)
    return {host: max(1, host_cpus[host] // slots[host]) for host in slots}


def threads_here(plan: dict[str, int]) -> int:
    """The thread share of the worker this task runs on (1 if it joined after the plan)."""
    from distributed import get_worker

    worker = get_worker()
    share = plan.get(host_of(worker.address))
    if share is None:  # a worker that joined after the study started
        share = max(1, (os.cpu_count() or 1) // max(1, worker.state.nthreads))
    return share


def _probe(folder: str, token_name: str, token: str) -> str | None:
    """On a worker: read the driver's token in ``folder`` and write one back; None or the problem."""
    path = pathlib.Path(folder)
    try:
        seen = (path / token_name).read_text(encoding="utf-8")
    except OSError as e:
        return f"cannot read {path / token_name}: {e.strerror or e}"
    if seen != token:
        return f"{path / token_name} holds another study's token: the folder is not the driver's"
    mine = path / f"{token_name}.{socket.gethostname()}.{os.getpid()}"
    try:
        mine.write_text(token, encoding="utf-8")
        mine.unlink()
    except OSError as e:
        return f"cannot write in {path}: {e.strerror or e}"
    return None


def check_shared_folder(client, folder) -> None:
    """Prove every worker can read and write ``folder``; UserError naming the first that cannot."""
    folder = pathlib.Path(folder).resolve()
    token = uuid.uuid4().hex
    token_name = f".dask-probe-{token[:8]}"
    (folder / token_name).write_text(token, encoding="utf-8")
    try:
        answers = client.run(_probe, str(folder), token_name, token)
    finally:
        (folder / token_name).unlink(missing_ok=True)
    for address, problem in sorted(answers.items()):
        if problem:
            raise UserError(f"Dask worker {address} cannot use the experiment folder {folder}: {problem}. "
                            "Run folders and the data cache must be on storage every worker sees: "
                            "give --out and MINICNN_DATA a shared path")


def forward_logs(client, emit) -> None:
    """Call ``emit(line)`` on the driver for every line a run logs on any worker."""
    client.subscribe_topic(LOG_TOPIC, lambda event: emit(event[1]))


# glibc's mallopt parameters (malloc.h) and the values its dynamic thresholds reach on their own
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MMAP_THRESHOLD_MAX = 32 << 20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit


def undo_malloc_trim() -> bool:
    """Give a Dask worker back glibc's reuse of freed memory; True if it had been turned off.

    A Dask nanny starts its worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand
    memory back to the OS), and setting any malloc threshold switches off
    glibc's dynamic mmap threshold: then every large temporary of a training
    step is a fresh mmap that page-faults in, and training ran 25-30% slower
    (measured: 1,650 against 2,200 images/s on configs/max_pool.yaml).  Setting
    both thresholds to where the dynamic ones settle restores the speed at the
    same peak memory.  No-op off glibc, or when the variable is not set.
    """
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
    libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD_MAX)
    libc.mallopt(M_ARENA_MAX, 1)
    return True


def worker_log():
    """A ``log(line)`` that forwards to the driver when running inside a Dask worker, else None."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    return lambda line: worker.log_event(LOG_TOPIC, line)
