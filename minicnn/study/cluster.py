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

import asyncio
import concurrent.futures
import contextlib
import os
import pathlib
import re
import socket
import sys
import time
import uuid
from urllib.parse import urlparse

from minicnn.errors import UserError

INSTALL_HINT = 'pip install "minicnn[dask]"'
LOG_TOPIC = "minicnn-log"  # per-epoch lines of runs, forwarded from the workers to the driver (log_topic)
CONNECT_SECONDS = 10     # to reach a scheduler and finish Dask's handshake with it
WORKERLESS_SECONDS = 15  # a study whose scheduler has had no worker this long stops (cluster_health)
MAX_LOCAL_WORKERS = 256
# tcp://HOST:PORT or HOST:PORT; HOST a name, an IPv4 address or a bracketed IPv6 address
_ADDRESS = re.compile(r"(?:tcp://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})")
_FORMS = "tcp://HOST:PORT (a running scheduler, e.g. tcp://10.0.0.5:8786) or local:N (N worker processes here)"


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise UserError(f"--dask needs Dask's distributed scheduler, which is not installed; "
                        f"install it with: {INSTALL_HINT}") from None
    return distributed


def parse_target(text: str) -> tuple[str, int | str]:
    """'local:N' -> ('local', N); 'tcp://host:8786' or 'host:8786' -> ('remote', 'tcp://host:8786').

    UserError for anything else, before any connection is tried: an empty address, another
    scheme (inproc, ucx, tls, ws: minicnn connects over plain tcp), or a malformed one.
    """
    text = text.strip()
    if text.startswith("local"):
        _, _, n = text.partition(":")
        if not n.isdigit() or not 1 <= int(n) <= MAX_LOCAL_WORKERS:
            raise UserError(f"--dask local:N needs a number of worker processes from 1 to {MAX_LOCAL_WORKERS}, "
                            f"got {text[:60]!r}")
        return "local", int(n)
    scheme = text.partition("://")[0] if "://" in text else "tcp"
    if scheme != "tcp":
        raise UserError(f"--dask: the scheme {scheme[:20]}:// is not supported; expected {_FORMS}")
    found = _ADDRESS.fullmatch(text)
    if not found or not 1 <= int(found.group(2)) <= 65535:
        raise UserError(f"--dask expects {_FORMS}, got {text[:60]!r}")
    return "remote", f"tcp://{found.group(1)}:{int(found.group(2))}"


def _handshake(address: str) -> None:
    """Connect to ``address`` and finish Dask's handshake within CONNECT_SECONDS (in a thread of
    its own: the caller may be inside an event loop); OSError or TimeoutError if not.

    Client(timeout=...) bounds the TCP connection only: a server that accepts and never
    answers (an HTTP server, say) would hold it for minutes.
    """
    import distributed.comm

    async def probe():
        comm = await distributed.comm.connect(address, timeout=CONNECT_SECONDS)
        await comm.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, asyncio.wait_for(probe(), CONNECT_SECONDS + 1)).result()


@contextlib.contextmanager
def connect(target: str):
    """Yield a ``distributed.Client`` for ``--dask TARGET``; close what was started on exit."""
    kind, value = parse_target(target)
    distributed = _import_distributed()
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
        _handshake(value)
        client = distributed.Client(value, timeout=f"{CONNECT_SECONDS}s")
    except (OSError, TimeoutError) as e:
        why = f"{type(e).__name__}: {e}" if str(e) else f"no Dask handshake within {CONNECT_SECONDS} s"
        raise UserError(f"cannot reach a Dask scheduler at {value} ({why}); start one with `dask scheduler` "
                        f"and workers with `dask worker {value}`") from None
    try:
        if not client.scheduler_info().get("workers"):
            raise UserError(f"the Dask scheduler at {value} has no workers; start some with "
                            f"`dask worker {value} --nworkers N --nthreads 1`")
        yield client
    finally:
        client.close()


class ClusterLost(Exception):
    """The executor can run nothing more (its scheduler or every worker is gone); the message says why."""


def cluster_health(client, address: str, workerless_seconds: float = WORKERLESS_SECONDS):
    """A ``health()`` for run_experiment: raises ClusterLost once the client has lost its
    scheduler, or the scheduler has had no worker for ``workerless_seconds``."""
    since = None

    def health() -> None:
        nonlocal since
        if client.status != "running":
            raise ClusterLost(f"lost the Dask scheduler at {address} (killed or unreachable)")
        if client.scheduler_info().get("workers"):
            since = None
            return
        since = time.monotonic() if since is None else since
        if time.monotonic() - since >= workerless_seconds:
            raise ClusterLost(f"the Dask scheduler at {address} has had no worker for {workerless_seconds:.0f} s "
                              f"(all killed?); start workers with `dask worker {address}`")

    return health


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


def log_topic(study) -> str:
    """The Dask event topic of the runs of the study in folder ``study`` (None: not in a study).

    One topic per study, so that two studies on one cluster never print each other's lines;
    the folder names the study, as two studies never share one (its lock).
    """
    return LOG_TOPIC if study is None else f"{LOG_TOPIC}:{study}"


def forward_logs(client, emit, topic: str = LOG_TOPIC) -> None:
    """Call ``emit(line)`` on the driver for every line a run of ``topic`` logs on any worker."""
    client.subscribe_topic(topic, lambda event: emit(event[1]))


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


def worker_log(topic: str = LOG_TOPIC):
    """A ``log(line)`` that forwards to the driver (on ``topic``) when running inside a Dask
    worker, else None."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    return lambda line: worker.log_event(topic, line)
