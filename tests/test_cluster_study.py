"""`minicnn ablate --dask local:2` end to end, as a user runs it, on a real LocalCluster.

Each study is a real `minicnn ablate` subprocess (its own session) whose Dask
cluster is two worker processes under nannies.  They train on a slice of the
real MNIST (cache, mirrors or PyPI), so they are marked `mnist`; they skip when
Dask is not installed.

- results equal those of the local process pool (`--jobs 2`), exactly, but for timing;
- a worker SIGKILLed mid-run (found by the pid in its run folder's lock file)
  does not lose the study: the run is retried from its last checkpoint and
  the results equal the uninterrupted ones (MINICNN_FAULT_TRIALS times);
- Ctrl-C (SIGINT to the driver) cancels the study, and `--resume` then
  completes it with the same results.
"""
from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from minicnn.files import read_csv

from test_kill_resume import real_mnist_study

pytestmark = [pytest.mark.mnist]
pytest.importorskip("distributed")

ROOT = pathlib.Path(__file__).resolve().parent.parent
TRIALS = int(os.environ.get("MINICNN_FAULT_TRIALS", "1"))
TIMING = {"seconds_per_epoch", "images_per_second", "probe_seconds", "run_dir"}
METRIC_TIMING = {"train_seconds", "images_per_second"}
EPOCH_LINE = re.compile(r"^\[(\S+) seed (\d+)\] epoch (\d+)/(\d+) ")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """2 configs x 2 seeds x 3 epochs on 8,000 real MNIST images (about 0.5 s an epoch); skip without MNIST."""
    return real_mnist_study(tmp_path_factory.mktemp("dask"), "daskstudy", [0, 1],
                            data={"train_size": 8000}, train={"epochs": 3})


def ablate(*args, **popen):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "minicnn", "ablate", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **popen)


def finish(proc, timeout=300):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"ablate did not finish in {timeout} s:\n{out[-2000:]}\n{err[-2000:]}")
    return proc.returncode, out, err


def results(out):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_csv(out / "results.csv")]


def metrics(out):
    return {str(p.parent.relative_to(out)): [{k: v for k, v in r.items() if k not in METRIC_TIMING}
                                            for r in read_csv(p)]
            for p in sorted(out.glob("*/seed*/metrics.csv"))}


@pytest.fixture(scope="module")
def local_pool(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("pool") / "study"
    code, stdout, stderr = finish(ablate(study, "--jobs", "2", "--out", out))
    assert code == 0, stderr[-3000:]
    return out


def test_dask_local_cluster_gives_the_local_pools_results(study, local_pool, tmp_path):
    out = tmp_path / "study"
    code, stdout, stderr = finish(ablate(study, "--dask", "local:2", "--out", out))
    assert code == 0, stderr[-3000:]
    assert results(out) == results(local_pool)
    assert metrics(out) == metrics(local_pool)
    # every run's per-epoch lines reached the driver from whichever worker ran it
    seen = {(m[1], m[2], m[3]) for m in map(EPOCH_LINE.match, stdout.splitlines()) if m}
    assert seen == {(c, s, e) for c in ("max", "avg") for s in "01" for e in "123"}, stdout
    assert "threads per run by host: 127.0.0.1 1" in stdout


def _wait_for_line(proc, pattern, timeout=120):
    """Read proc's stdout until a line matches; return the match (the rest stays unread)."""
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.match(pattern, line)
        if m:
            return m
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("no line matched " + pattern + ":\n" + "".join(lines)[-3000:])


@pytest.mark.parametrize("trial", range(TRIALS))
def test_a_killed_worker_loses_nothing(study, local_pool, tmp_path, trial):
    out = tmp_path / "study"
    proc = ablate(study, "--dask", "local:2", "--out", out)
    _wait_for_line(proc, r"^\[\S+ seed \d+\] epoch 1/3 ")
    holders = [h for h in (lock.read_text().split() for lock in out.glob("*/seed*/.lock")) if h]  # "PID on HOST"
    assert holders, "no run is running"
    os.kill(int(holders[0][0]), signal.SIGKILL)  # a worker process, in the middle of a run
    code, stdout, stderr = finish(proc)
    assert code == 0, stderr[-3000:]
    assert results(out) == results(local_pool)
    assert metrics(out) == metrics(local_pool)


def test_ctrl_c_cancels_and_resume_completes(study, local_pool, tmp_path):
    out = tmp_path / "study"
    proc = ablate(study, "--dask", "local:2", "--out", out)
    _wait_for_line(proc, r"^\[\S+ seed \d+\] epoch 1/3 ")
    os.kill(proc.pid, signal.SIGINT)
    code, stdout, stderr = finish(proc, timeout=60)
    assert code == 130, stderr[-3000:]
    assert "--resume" in stdout + stderr
    assert not (out / "results.csv").exists() or len(read_csv(out / "results.csv")) < 4
    code, stdout, stderr = finish(ablate(study, "--dask", "local:2", "--out", out, "--resume"))
    assert code == 0, stderr[-3000:]
    assert results(out) == results(local_pool)
    assert metrics(out) == metrics(local_pool)
