"""The run folder's rules (minicnn.runs) and the faults of issue 12, in-process on tiny fake data.

Each numbered case of issue 12 that needs no second process is here, first as
the bug a user met (each of these tests fails on the code before minicnn.runs):
1. a resume into a finished run of another config returned that run's summary;
2. a run without --resume silently replaced a finished run;
4. corrupt checkpoints gave tracebacks or were broadcast into the optimizer;
5. a full disk gave a traceback, failed runs of a study a RuntimeError;
6. val_size=0 wrote NaN into summary.json.
The cases that need processes and signals are in test_faults.py.
"""
from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import pathlib
import sys

import numpy as np
import pytest
import yaml

import minicnn.data
import minicnn.study.experiment
import minicnn.train
from minicnn.config import validate
from minicnn.errors import UserError
from minicnn.files import read_csv
from minicnn.runs import FolderLock, RunFolder
from minicnn.train import fit_config, peak_memory_mib

from test_experiment import InProcess, TWO, write_study
from test_experiment import study_config as tiny_config


def config(pool="maxpool2d", **changes):
    raw = tiny_config("small", pool=pool, epochs=1)
    for path, value in changes.items():
        section, key = path.split(".")
        raw[section][key] = value
    return validate(raw, "small.yaml")


def quiet(line):
    pass


def files(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture()
def finished(tmp_path, tiny_mnist):
    """A finished 1-epoch run of the max-pooling config, and the bytes of its files."""
    folder = tmp_path / "run"
    fit_config(config(), folder, mnist=tiny_mnist, log=quiet)
    return folder, files(folder)


@pytest.fixture()
def run_cli(run_cli, monkeypatch, tiny_data):
    """conftest's ``run_cli`` on tiny fake data."""
    monkeypatch.setattr(minicnn.data, "load_dataset", lambda name, **kwargs: tiny_data)
    return run_cli


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("minicnn: error: ")]
    assert len(errors) == 1, err
    return errors[0]


# ---------------------------------------------------------------- 1. config identity before read-back

def test_resume_into_a_finished_run_of_another_config_is_refused(finished, tiny_mnist):
    folder, before = finished
    with pytest.raises(UserError, match=r"different config \(model\.layers\[2\]\.type is \"maxpool2d\" there, "
                                        r"\"avgpool2d\" here\)"):
        fit_config(config("avgpool2d"), folder, mnist=tiny_mnist, resume=True, log=quiet)
    assert files(folder) == before


def test_resume_with_more_epochs_on_a_finished_run_is_refused(finished, tiny_mnist):
    folder, before = finished
    with pytest.raises(UserError, match=r"train\.epochs is 1 there, 2 here"):
        fit_config(config(**{"train.epochs": 2}), folder, mnist=tiny_mnist, resume=True, log=quiet)
    assert files(folder) == before


def test_cli_train_resume_into_another_configs_folder_exits_2(finished, run_cli, tmp_path):
    folder, before = finished
    path = tmp_path / "avg.yaml"
    path.write_text(yaml.safe_dump(tiny_config("small", pool="avgpool2d", epochs=1)))
    status, out, err = run_cli("train", path, "--out", folder, "--resume")
    assert status == 2 and "test accuracy" not in out
    assert "different config" in one_error_line(err)
    assert files(folder) == before


def test_resume_of_a_finished_run_returns_its_summary_without_training(finished, tiny_mnist):
    folder, before = finished
    summary = fit_config(config(), folder, mnist=None, resume=True, log=quiet)   # no data needed
    assert summary == json.loads(before["summary.json"])
    assert files(folder) == before


# ---------------------------------------------------------------- 2. no silent overwrite; the lock

def test_a_finished_run_is_not_replaced_without_resume(finished, tiny_mnist):
    folder, before = finished
    with pytest.raises(UserError, match="already holds a finished run.*--resume.*delete the folder"):
        fit_config(config(), folder, mnist=tiny_mnist, log=quiet)
    assert files(folder) == before


def test_an_unfinished_run_is_not_replaced_without_resume(tmp_path, tiny_mnist):
    folder = tmp_path / "run"

    def stop(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_config(config(**{"train.epochs": 2}), folder, mnist=tiny_mnist, log=stop)
    before = files(folder)
    with pytest.raises(UserError, match="already holds an unfinished run.*--resume to continue it"):
        fit_config(config(**{"train.epochs": 2}), folder, mnist=tiny_mnist, log=quiet)
    assert files(folder) == before


def test_a_held_folder_is_refused_naming_the_holder(tmp_path, tiny_mnist):
    folder = tmp_path / "run"
    with FolderLock(folder, "run folder"):
        with pytest.raises(UserError, match=rf"run folder {folder} is in use by process {os.getpid()} on "):
            fit_config(config(), folder, mnist=tiny_mnist, log=quiet)
    assert not folder.joinpath("config.yaml").exists()
    fit_config(config(), folder, mnist=tiny_mnist, log=quiet)                # released: free again
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.npz", "config.yaml", "metrics.csv",
                                                        "summary.json"]


def test_the_lock_is_held_while_the_run_trains(tmp_path, tiny_mnist):
    folder = tmp_path / "run"
    seen = []

    def try_to_take_it(line):
        with pytest.raises(UserError, match="in use by process"):
            FolderLock(folder).acquire()
        seen.append(line)

    fit_config(config(**{"train.epochs": 2}), folder, mnist=tiny_mnist, log=try_to_take_it)
    assert len(seen) == 2


def test_a_lock_taken_on_a_file_its_holder_just_unlinked_is_taken_again(tmp_path, monkeypatch):
    """The holder unlinks .lock as it releases it: a process that opened the file just before, and
    flocks it just after, holds a lock on a file nobody else will open; it must take the new one."""
    holder = FolderLock(tmp_path).acquire()
    real_flock = fcntl.flock

    def flock_after_the_holder_let_go(fd, operation):
        if holder._fd is not None:
            holder.release()                                  # between our open() and our flock()
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_the_holder_let_go)
    ours = FolderLock(tmp_path).acquire()
    monkeypatch.setattr(fcntl, "flock", real_flock)
    with pytest.raises(UserError, match="in use"):             # the lock on disk is the one we hold
        FolderLock(tmp_path).acquire()
    ours.release()


def test_two_studies_on_one_folder_the_second_is_refused(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr(minicnn.data, "load_dataset", lambda name, **kwargs: tiny_data)
    path = write_study(tmp_path, TWO, seeds=[0])
    out = tmp_path / "runs" / "study"
    with FolderLock(out, "experiment folder"):
        for resume in (False, True):
            with pytest.raises(UserError, match=rf"experiment folder {out} is in use by process {os.getpid()}"):
                minicnn.study.experiment.run_experiment(path, executor=InProcess(), resume=resume, log=quiet)
    assert sorted(p.name for p in out.iterdir()) == []


# ---------------------------------------------------------------- 4. corrupt checkpoints

def _flip(data: bytes, at: float) -> bytes:
    i = int(len(data) * at)
    return data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1:]


def _replace(data: bytes, key: str, value) -> bytes:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if value is None:
        del arrays[key]
    else:
        arrays[key] = value
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _rows(data: bytes, edit) -> bytes:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        rows = json.loads(str(npz["metrics"]))
    return _replace(data, "metrics", np.array(json.dumps(edit(rows))))


CORRUPTIONS = {
    "truncated to half": (lambda d: d[:len(d) // 2], "not a readable .npz"),
    "empty file": (lambda d: b"", "not a readable .npz"),
    "flipped byte in the data": (lambda d: _flip(d, 0.5), "not a readable .npz"),
    "flipped byte in a header": (lambda d: _flip(d, 0.01), "not a readable .npz|array"),
    "flipped byte in the directory": (lambda d: _flip(d, 0.995), "not a readable .npz|array"),
    "metrics a number": (lambda d: _replace(d, "metrics", np.array(3.0)), "array 'metrics' is float64"),
    "metrics not json": (lambda d: _replace(d, "metrics", np.array("[{")), "metrics are not JSON"),
    "metrics a dict": (lambda d: _rows(d, lambda rows: rows[0]), "metrics are a dict"),
    "a metric a string": (lambda d: _rows(d, lambda rows: [{**rows[0], "val_loss": "low"}]),
                          "val_loss is 'low', expected a number"),
    "a metric missing": (lambda d: _rows(d, lambda rows: [{k: v for k, v in rows[0].items() if k != "epoch"}]),
                         "metrics row 0 has"),
    "epochs out of order": (lambda d: _rows(d, lambda rows: [{**rows[1], "epoch": 1}, rows[0]]),
                            "diverged|epoch is"),
    "diverged a string": (lambda d: _rows(d, lambda rows: [{**rows[0], "diverged": "no"}, rows[1]]),
                          "diverged is 'no'"),
    "optimizer velocity a scalar": (lambda d: _replace(d, "optim.velocity.0", np.array(0.5, np.float32)),
                                    r"'optim.velocity.0' is float32\[\], the model and optimizer need float32\[4, 1, 3, 3\]"),
    "optimizer steps an array": (lambda d: _replace(d, "optim.steps", np.arange(3)), "'optim.steps' is int64"),
    "weights float64": (lambda d: _replace(d, "model.0.W", np.zeros((4, 1, 3, 3))), "'model.0.W' is float64"),
    "weights missing": (lambda d: _replace(d, "model.4.b", None), "'model.4.b' is missing"),
    "an extra array": (lambda d: _replace(d, "model.9.W", np.zeros(3)), "unexpected array 'model.9.W'"),
    "a pickled array": (lambda d: _replace(d, "metrics", np.array([{"a": 1}], dtype=object)),
                         "Object arrays cannot be loaded"),
}


@pytest.fixture()
def two_epochs(tmp_path, tiny_mnist):
    """A finished 2-epoch run whose summary.json is removed: --resume would finish it from its checkpoint."""
    folder = tmp_path / "run"
    fit_config(config(**{"train.epochs": 2}), folder, mnist=tiny_mnist, log=quiet)
    (folder / "summary.json").unlink()
    return folder


@pytest.mark.parametrize("case", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_a_corrupt_checkpoint_is_refused_before_anything_is_loaded(two_epochs, tiny_mnist, case, monkeypatch):
    corrupt, words = CORRUPTIONS[case]
    path = two_epochs / "checkpoint.npz"
    path.write_bytes(corrupt(path.read_bytes()))
    before = files(two_epochs)
    loaded = []
    import minicnn.model
    import minicnn.optim

    for cls in (minicnn.model.Sequential, minicnn.optim.SGD):
        real = cls.load_state_dict
        monkeypatch.setattr(cls, "load_state_dict", lambda self, state, real=real: (loaded.append(1), real(self, state)))
    with pytest.raises(UserError, match=rf"checkpoint.npz: cannot resume from this checkpoint: .*({words})"
                                        r".*delete it to start the run over"):
        fit_config(config(**{"train.epochs": 2}), two_epochs, mnist=tiny_mnist, resume=True, log=quiet)
    assert loaded == [], "state was loaded from a checkpoint that does not fit"
    assert files(two_epochs) == before, "a refused resume changed the folder"


def test_cli_resume_from_a_corrupt_checkpoint_exits_2(two_epochs, run_cli, tmp_path):
    (two_epochs / "checkpoint.npz").write_bytes(b"")
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(tiny_config("small", epochs=2)))
    status, _, err = run_cli("train", path, "--out", two_epochs, "--resume")
    assert status == 2, err
    assert "cannot resume from this checkpoint" in one_error_line(err)


def test_an_intact_checkpoint_resumes(two_epochs, tiny_mnist):
    summary = fit_config(config(**{"train.epochs": 2}), two_epochs, mnist=tiny_mnist, resume=True, log=quiet)
    assert summary["epochs"] == 2 and summary["test_accuracy"] > 0.5


# ---------------------------------------------------------------- 5. disk full, failed runs

@pytest.fixture()
def disk_full(monkeypatch):
    """Set ``name`` and ``at``: os.fsync then raises ENOSPC at the at-th atomic write of that file."""
    if not pathlib.Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to tell which file is written")
    state = {"name": None, "at": None, "seen": 0}
    real = os.fsync

    def fsync(fd):
        written = pathlib.Path(os.readlink(f"/proc/self/fd/{fd}")).name   # .NAME.XXXXXXXX.tmp
        if state["name"] and written.startswith(f".{state['name']}."):
            state["seen"] += 1
            if state["seen"] == state["at"]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return state


def test_a_full_disk_is_one_message_and_the_last_epoch_stays_resumable(tmp_path, tiny_mnist, disk_full):
    folder = tmp_path / "run"
    whole = fit_config(config(**{"train.epochs": 2}), tmp_path / "whole", mnist=tiny_mnist, log=quiet)
    disk_full.update(name="checkpoint.npz", at=2)
    with pytest.raises(UserError) as error:
        fit_config(config(**{"train.epochs": 2}), folder, mnist=tiny_mnist, log=quiet)
    size = len((tmp_path / "whole" / "checkpoint.npz").read_bytes())
    message = str(error.value)
    assert message.startswith(f"disk full: cannot write checkpoint.npz in {folder} (")
    assert f"{size / 1024:.1f} KiB needed" in message and " free)" in message
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")], "a temporary file was left"
    assert len(read_csv(folder / "metrics.csv")) == 1                     # epoch 1 is intact
    resumed = fit_config(config(**{"train.epochs": 2}), folder, mnist=tiny_mnist, resume=True, log=quiet)
    timing = {"train_seconds", "seconds_per_epoch", "images_per_second", "peak_memory_mib", "probe_seconds"}
    assert {k: v for k, v in resumed.items() if k not in timing} == {k: v for k, v in whole.items() if k not in timing}


def test_cli_on_a_full_disk_exits_2_with_one_line(tmp_path, run_cli, disk_full):
    disk_full.update(name="summary.json", at=1)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(tiny_config("small", epochs=1)))
    status, _, err = run_cli("train", path, "--out", tmp_path / "run")
    assert status == 2, err
    line = one_error_line(err)
    assert f"disk full: cannot write summary.json in {tmp_path / 'run'}" in line and "needed" in line


def test_cli_ablate_with_failed_runs_prints_a_table_and_exits_1(tmp_path, run_cli, monkeypatch):
    monkeypatch.setattr(minicnn.study.experiment, "process_pool", lambda jobs: _in_process())
    real_fit = minicnn.train.fit_config

    def flaky(config, out_dir, **kwargs):
        if config.seed == 1:
            raise RuntimeError(f"disk on fire in {config.name}")
        return real_fit(config, out_dir, **kwargs)

    monkeypatch.setattr(minicnn.train, "fit_config", flaky)
    path = write_study(tmp_path, TWO, seeds=[0, 1])
    status, out, err = run_cli("ablate", path)
    assert status == 1, err
    assert "Traceback" not in err
    assert "minicnn: error: 2 of 4 runs failed:" in err
    assert "max seed 1  RuntimeError: disk on fire in max" in err
    assert "avg seed 1  RuntimeError: disk on fire in avg" in err
    assert f"minicnn ablate {path} --resume" in err and "--verbose" in err
    assert len(read_csv(tmp_path / "runs" / "study" / "results.csv")) == 2   # the others are kept
    status, _, err = run_cli("ablate", path, "--resume", "--verbose")
    assert status == 1 and err.count("Traceback") == 2 and "disk on fire in max" in err


def test_cli_ablate_whose_runs_all_fail_ends_in_the_table(tmp_path, run_cli, monkeypatch, recwarn):
    monkeypatch.setattr(minicnn.study.experiment, "process_pool", lambda jobs: _in_process())

    def broken(config, out_dir, **kwargs):
        raise UserError(f"the run folder {out_dir} is in use by process 1 on elsewhere")

    monkeypatch.setattr(minicnn.train, "fit_config", broken)
    status, _, err = run_cli("ablate", write_study(tmp_path, TWO, seeds=[0]))
    assert status == 1 and "Traceback" not in err
    assert "2 of 2 runs failed" in err and "max seed 0  the run folder" in err
    assert not list(recwarn), [str(w.message) for w in recwarn]           # no empty figures drawn


def _in_process():
    import contextlib

    return contextlib.nullcontext(InProcess())


def test_a_dead_worker_is_a_reason_in_the_table():
    import concurrent.futures.process

    from minicnn.study.experiment import Run, RunsFailed

    run = Run("a.yaml", 0, (), "max", pathlib.Path("x"))
    failed = RunsFailed([(run, concurrent.futures.process.BrokenProcessPool("A child process terminated"))],
                        4, "minicnn ablate e.yaml --resume")
    assert "1 of 4 runs failed" in failed.table()
    assert "max seed 0  its worker process died" in failed.table() and "--resume" in failed.table()


# ---------------------------------------------------------------- 6. strict JSON, memory

def test_summary_json_is_strict_json_when_a_split_is_empty(tmp_path, tiny_mnist):
    summary = fit_config(config(**{"data.val_size": 0}), tmp_path, mnist=tiny_mnist, log=quiet)

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    on_disk = json.loads((tmp_path / "summary.json").read_text(), parse_constant=refuse)
    assert on_disk["val_accuracy"] is None and on_disk == summary
    assert on_disk["test_accuracy"] > 0.5


def test_a_study_with_an_empty_validation_split_still_reports(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr(minicnn.data, "load_dataset", lambda name, **kwargs: tiny_data)
    path = write_study(tmp_path, {"max": tiny_config("max", epochs=1)}, seeds=[0], set=["data.val_size=0"])
    rows = minicnn.study.experiment.run_experiment(path, executor=InProcess(), log=quiet)
    assert np.isnan(rows[0]["val_accuracy"]) and rows[0]["test_accuracy"] > 0.5


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_peak_memory_is_in_mib():
    status = pathlib.Path("/proc/self/status").read_text()
    hwm_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    assert peak_memory_mib() == pytest.approx(hwm_kib / 1024, rel=0.05)


# ---------------------------------------------------------------- the API a remote executor uses

def test_run_folder_api_states(tmp_path, tiny_mnist):
    text = "name: x\n"
    run = RunFolder(tmp_path / "r", text)
    assert not run.started and not run.finished
    with run.claim(resume=False):
        run.start()
        assert run.started and (tmp_path / "r" / ".lock").exists()
    assert not (tmp_path / "r" / ".lock").exists()
    with pytest.raises(UserError, match="name is \"x\" there, \"y\" here"):
        RunFolder(tmp_path / "r", "name: y\n").check_identity()
    assert run.finish({"a": float("nan"), "b": [float("inf"), 1.0]}) == {"a": None, "b": [None, 1.0]}
    assert run.summary() == {"a": None, "b": [None, 1.0]}
    (tmp_path / "r" / "summary.json").write_text("{not json")
    with pytest.raises(UserError, match="summary.json: cannot read it"):
        run.summary()
