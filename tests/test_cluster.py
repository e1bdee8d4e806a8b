"""minicnn.study.cluster: the Dask side of a study (target parsing, thread plan, shared-storage probe).

These start real Dask processes (a LocalCluster, or a scheduler and workers
as subprocesses) on this machine; they skip when Dask is not installed.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from minicnn.study import cluster
from minicnn.errors import UserError


def test_parse_target():
    assert cluster.parse_target("local:2") == ("local", 2)
    assert cluster.parse_target(" tcp://10.1.2.3:8786 ") == ("remote", "tcp://10.1.2.3:8786")
    for bad in ("local", "local:0", "local:x", "local:-1", "", "tcp://a b"):
        with pytest.raises(UserError, match="--dask"):
            cluster.parse_target(bad)


def test_missing_dask_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(UserError, match=r'pip install "minicnn\[dask\]"'):
        with cluster.connect("local:1"):
            pass


def test_host_of():
    assert cluster.host_of("tcp://10.0.0.5:40123") == "10.0.0.5"
    assert cluster.host_of("tcp://[::1]:8786") == "::1"


def _can_unshare_mounts() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture()
def scheduler(tmp_path):
    """A `dask scheduler` subprocess on loopback; yields (address, scheduler file, processes list)."""
    pytest.importorskip("distributed")
    file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    deadline = time.monotonic() + 30
    while not file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    import json

    time.sleep(0.2)
    address = json.loads(file.read_text())["address"]
    try:
        yield address, file, procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _start_worker(procs, scheduler_file, prefix=()):
    procs.append(subprocess.Popen([*prefix, sys.executable, "-m", "distributed.cli.dask_worker",
                                   "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                                   "--no-dashboard", "--no-nanny"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


def _wait_for_workers(client, n):
    deadline = time.monotonic() + 60
    while len(client.scheduler_info()["workers"]) < n:
        assert time.monotonic() < deadline, "workers did not join"
        time.sleep(0.1)


def test_probe_accepts_a_shared_folder(scheduler, tmp_path):
    address, file, procs = scheduler
    _start_worker(procs, file)
    folder = tmp_path / "study"
    folder.mkdir()
    import distributed

    with distributed.Client(address, timeout="20s") as client:
        _wait_for_workers(client, 1)
        cluster.check_shared_folder(client, folder)
        assert cluster.thread_plan(client) == {"127.0.0.1": os.cpu_count()}
    assert os.listdir(folder) == []  # the probe cleans up after itself


@pytest.mark.skipif(not _can_unshare_mounts(), reason="needs unshare -m (mount namespaces) to hide a folder")
def test_probe_names_the_worker_that_cannot_see_the_folder(scheduler, tmp_path):
    """A worker whose view of the folder is another disk (here: a tmpfs mounted over it in
    its own mount namespace, as on a host where the path is not shared storage)."""
    address, file, procs = scheduler
    folder = tmp_path / "study"
    folder.mkdir()
    _start_worker(procs, file)
    hidden = f"mount -t tmpfs none {folder} && exec \"$@\""
    _start_worker(procs, file, prefix=("unshare", "-m", "sh", "-c", hidden, "sh"))
    import distributed

    with distributed.Client(address, timeout="20s") as client:
        _wait_for_workers(client, 2)
        with pytest.raises(UserError) as info:
            cluster.check_shared_folder(client, folder)
    message = str(info.value)
    assert f"cannot use the experiment folder {folder}" in message
    assert "cannot read" in message and "MINICNN_DATA" in message
    assert "Dask worker tcp://127.0.0.1:" in message


def _threads_in_task(plan):
    from threadpoolctl import threadpool_info

    from minicnn import threads

    def blas():
        return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})

    before = (threads.KERNEL_THREADS, blas())
    with threads.limit(cluster.threads_here(plan)):
        inside = (threads.KERNEL_THREADS, blas())
    return before, inside


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPUs to tell a share from the whole")
@pytest.mark.parametrize("workers", [1, 2])
def test_each_run_takes_its_hosts_share_inside_the_task(workers):
    """N worker processes with one slot each on this host: each run gets cpu_count // N
    threads, BLAS and minicnn's own.  Dask starts workers with OMP_NUM_THREADS=1 and the
    like; with one worker on 2 CPUs the share (2) differs from that, so only the task's
    own limit can give it."""
    distributed = pytest.importorskip("distributed")
    share = os.cpu_count() // workers
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as lc, distributed.Client(lc) as client:
        plan = cluster.thread_plan(client)
        assert plan == {"127.0.0.1": share}
        answers = client.gather([client.submit(_threads_in_task, plan, pure=False) for _ in range(2 * workers)])
    for before, inside in answers:
        assert inside == (share, [share])
        if workers == 1:
            assert before != inside  # the worker's environment said otherwise: the limit did the work


MMAPPED_BYTES = """
import ctypes, sys
import numpy as np
from minicnn.study import cluster

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                      "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
undone = cluster.undo_malloc_trim() if sys.argv[1] == "undo" else False
np.ones(2 << 20)  # a 16 MiB temporary, touched and freed, like a training step's
a = np.ones(2 << 20)  # the next one: a fresh mapping (hblkhd), or reused heap memory
print(undone, libc.mallinfo2().hblkhd)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_undo_malloc_trim_lets_large_temporaries_reuse_memory():
    """With Dask's MALLOC_TRIM_THRESHOLD_, glibc's mmap threshold stays at 128 KiB, so every
    16 MiB temporary is a fresh mapping (mallinfo2's hblkhd) that page-faults in anew; after
    undo_malloc_trim it comes from memory the heap keeps."""
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536")
    results = {}
    for mode in ("keep", "undo"):
        out = subprocess.run([sys.executable, "-c", MMAPPED_BYTES, mode], env=env, capture_output=True,
                             text=True, check=True).stdout.split()
        results[mode] = (out[0] == "True", int(out[1]))
    assert results["keep"] == (False, results["keep"][1]) and results["keep"][1] >= 16 << 20
    assert results["undo"][0] is True and results["undo"][1] < 16 << 20
    env.pop("MALLOC_TRIM_THRESHOLD_")
    out = subprocess.run([sys.executable, "-c", MMAPPED_BYTES, "undo"], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "False"  # nothing to undo outside a Dask worker
