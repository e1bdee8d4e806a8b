"""Processes and signals around ``minicnn ablate`` (issue 12, cases 2, 3 and 5), as a user meets them.

Each ``ablate`` is a real subprocess in its own session, so that ``ps`` can
list every process of the study (the runner, its pool workers, the
multiprocessing resource tracker) by session id.  Signals go to the runner
only, as ``kill PID`` or a closing terminal would send them.  The runs train
on a small slice of the real MNIST (cache, mirrors or PyPI; skipped without).

On the code before minicnn.runs: two studies on one folder both ran; SIGTERM
left the workers and the resource tracker running every queued run; a
SIGKILLed runner left them too; a SIGKILLed worker ended in a
BrokenProcessPool traceback.

``MINICNN_FAULT_TRIALS`` (default 2) sets how many times each case is tried.
"""
from __future__ import annotations

import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml

from minicnn import data as mnist_data

from test_kill_resume import config, stable_metrics, stable_results

pytestmark = pytest.mark.mnist

ROOT = pathlib.Path(__file__).resolve().parent.parent
TRIALS = int(os.environ.get("MINICNN_FAULT_TRIALS", "2"))
SEEDS = [0, 1]
EPOCH_LINE = re.compile(r"^\[(\S+) seed (\d+)\] epoch (\d+)/\d+ ")


def write_study(folder: pathlib.Path, train_size: int, epochs: int) -> pathlib.Path:
    for name, pool in (("max", "maxpool2d"), ("avg", "avgpool2d")):
        raw = config(name, pool)
        raw["data"]["train_size"], raw["train"]["epochs"] = train_size, epochs
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "faults", "configs": ["max.yaml", "avg.yaml"], "seeds": SEEDS}))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A study of 2 x 3 runs of about 1 s a worker: long enough that a second process, or a
    signal, comes while it runs, even on a loaded machine."""
    try:
        mnist_data.load_mnist()
    except mnist_data.DataError as e:
        pytest.skip(f"real MNIST is not available: {e}")
    return write_study(tmp_path_factory.mktemp("study"), 20000, 3)


class Ablate:
    """``minicnn ablate EXPERIMENT --out OUT --jobs N [ARGS]`` in its own session; output collected as it comes."""

    def __init__(self, experiment, out, *args, jobs=2):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        env["MINICNN_DATA"] = str(mnist_data.cache_dir())
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [sys.executable, "-m", "minicnn", "ablate", str(experiment), "--jobs", str(jobs), "--out", str(out),
               *args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self.lines, self.errors = [], []
        self.readers = [threading.Thread(target=self._read, args=(s, into), daemon=True)
                        for s, into in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors))]
        for reader in self.readers:
            reader.start()

    def _read(self, stream, into):
        for line in stream:
            into.append(line.rstrip("\n"))

    @property
    def stdout(self):
        return "\n".join(self.lines)

    @property
    def stderr(self):
        return "\n".join(self.errors)

    def wait_for_epoch_line(self, timeout=120):
        deadline = time.monotonic() + timeout
        while not any(EPOCH_LINE.match(line) for line in list(self.lines)):
            assert self.proc.poll() is None, f"ended before its first epoch:\n{self.stderr}"
            assert time.monotonic() < deadline, "no epoch line"
            time.sleep(0.01)

    def finish(self, timeout=300):
        self.proc.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(timeout=10)
        return self.proc.returncode

    def session(self):
        """The live processes of its session (zombies waiting to be reaped are not running)."""
        ps = subprocess.run(["ps", "-ww", "-e", "-o", "pid=,sid=,stat=,args="], capture_output=True, text=True,
                            check=True).stdout
        found = []
        for line in ps.splitlines():
            pid, sid, stat, args = line.split(None, 3)
            if int(sid) == self.pid and not stat.startswith("Z"):
                found.append(f"{pid} {stat} {args}")
        return found

    def workers(self):
        """Pids of its pool workers (not the resource tracker)."""
        return [int(p.split()[0]) for p in self.session()
                if "multiprocessing.spawn" in p and "resource_tracker" not in p and int(p.split()[0]) != self.pid]

    def assert_session_gone_within(self, seconds):
        deadline = time.monotonic() + seconds
        while (left := self.session()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if left:
            os.killpg(self.pid, signal.SIGKILL)      # do not leave them to the next test
            raise AssertionError(f"{seconds} s after, processes of the study still run:\n" + "\n".join(left))


def assert_no_traceback(ablate):
    assert "Traceback" not in ablate.stderr and "BrokenProcessPool" not in ablate.stderr, ablate.stderr


def assert_equal_studies(whole, out):
    assert stable_results(out) == stable_results(whole)
    for name in ("max", "avg"):
        for seed in SEEDS:
            a, b = whole / name / f"seed{seed}", out / name / f"seed{seed}"
            assert stable_metrics(a) == stable_metrics(b)
            with np.load(a / "checkpoint.npz") as x, np.load(b / "checkpoint.npz") as y:
                assert x.files == y.files
                for key in x.files:
                    if key != "metrics":
                        np.testing.assert_array_equal(x[key], y[key])
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name == ".lock"]


@pytest.fixture(scope="module")
def whole(study, tmp_path_factory):
    """The slow study, uninterrupted, with --jobs 2."""
    out = tmp_path_factory.mktemp("whole") / "study"
    ablate = Ablate(study, out)
    assert ablate.finish() == 0, ablate.stderr
    return out


# ---------------------------------------------------------------- 2. one study per folder

@pytest.mark.parametrize("trial", range(TRIALS))
def test_two_ablates_started_together_one_runs_the_other_exits_2(study, tmp_path, trial):
    out = tmp_path / "study"
    a, b = Ablate(study, out), Ablate(study, out)
    statuses = {a: a.finish(), b: b.finish()}
    assert sorted(statuses.values()) == [0, 2], {x.pid: (s, x.stderr) for x, s in statuses.items()}
    winner, loser = (a, b) if statuses[a] == 0 else (b, a)
    errors = [line for line in loser.stderr.splitlines() if line.strip()]
    assert errors == [f"minicnn: error: the experiment folder {out} is in use by process {winner.pid} on "
                      f"{os.uname().nodename}; wait until it ends, or choose another --out folder"], loser.stderr
    assert "epoch" not in loser.stdout
    assert len(stable_results(out)) == 4


def test_resume_beside_a_running_study_exits_2(study, tmp_path):
    out = tmp_path / "study"
    running = Ablate(study, out)
    running.wait_for_epoch_line()
    second = Ablate(study, out, "--resume")
    assert second.finish() == 2, second.stderr
    assert f"in use by process {running.pid}" in second.stderr
    assert running.finish() == 0, running.stderr


# ---------------------------------------------------------------- 3. signals: nothing outlives the runner

@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigterm_mid_study_leaves_no_process_and_resume_completes(study, whole, tmp_path, trial):
    out = tmp_path / "study"
    ablate = Ablate(study, out)
    ablate.wait_for_epoch_line()
    time.sleep(random.Random(trial).uniform(0, 0.8))
    assert ablate.workers(), "no pool worker to leave behind"
    os.kill(ablate.pid, signal.SIGTERM)
    assert ablate.finish(timeout=30) == 128 + signal.SIGTERM, ablate.stderr
    assert_no_traceback(ablate)
    assert "stopped by SIGTERM" in ablate.stderr
    assert f"minicnn ablate {study} --resume --out {out}" in ablate.stdout
    ablate.assert_session_gone_within(5)
    resumed = Ablate(study, out, "--resume")
    assert resumed.finish() == 0, resumed.stderr
    assert_equal_studies(whole, out)


def test_sighup_acts_as_ctrl_c(study, tmp_path):
    out = tmp_path / "study"
    ablate = Ablate(study, out)
    ablate.wait_for_epoch_line()
    os.kill(ablate.pid, signal.SIGHUP)
    assert ablate.finish(timeout=30) == 128 + signal.SIGHUP, ablate.stderr
    assert "stopped by SIGHUP" in ablate.stderr and "--resume" in ablate.stdout
    ablate.assert_session_gone_within(5)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_a_sigkilled_runner_leaves_no_worker(study, whole, tmp_path, trial):
    out = tmp_path / "study"
    ablate = Ablate(study, out)
    ablate.wait_for_epoch_line()
    time.sleep(random.Random(trial).uniform(0, 0.5))
    assert ablate.workers(), "no pool worker to leave behind"
    os.kill(ablate.pid, signal.SIGKILL)
    ablate.finish(timeout=30)
    ablate.assert_session_gone_within(5)
    resumed = Ablate(study, out, "--resume")
    assert resumed.finish() == 0, resumed.stderr
    assert_equal_studies(whole, out)


# ---------------------------------------------------------------- 5. a killed worker is a failed run

def test_a_sigkilled_worker_is_reported_failed_and_resumable(study, whole, tmp_path):
    out = tmp_path / "study"
    ablate = Ablate(study, out)
    ablate.wait_for_epoch_line()
    workers = ablate.workers()
    assert workers, ablate.session()
    os.kill(workers[0], signal.SIGKILL)
    assert ablate.finish(timeout=60) == 1, ablate.stderr
    assert_no_traceback(ablate)
    assert re.search(r"minicnn: error: \d of 4 runs failed:", ablate.stderr), ablate.stderr
    assert "its worker process died" in ablate.stderr and "--resume" in ablate.stderr
    ablate.assert_session_gone_within(5)
    resumed = Ablate(study, out, "--resume")
    assert resumed.finish() == 0, resumed.stderr
    assert_equal_studies(whole, out)
