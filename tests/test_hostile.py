"""Hostile files, addresses and folders (issue 21's fault round): each gives one line and exit
status 2 within seconds, or works; none loses a file minicnn did not write; none allocates
what a file only declares.  The bombs are built small here: a few MB on disk or in memory
that declare far more, with the available-memory figure lowered
(``minicnn.memory.available_memory``, the one figure for models and data alike).
"""
from __future__ import annotations

import concurrent.futures
import gzip
import io
import json
import os
import socket
import threading
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
import yaml

import minicnn.config
import minicnn.memory
from minicnn import plots, results
from minicnn.study import cluster, experiment, report
from minicnn.config import load_config
from minicnn.data import check_fits, idx, npz
from minicnn.data.dataset import Dataset
from minicnn.errors import ConfigError, DataError, UserError
from minicnn.study.cluster import ClusterLost
from minicnn.study.experiment import STUDY_MARK, run_experiment
from minicnn.runs import read_summary

from conftest import tiny_config
from test_cluster import scheduler  # noqa: F401 - a fixture
from test_experiment import TWO, InProcess, fake_data, run, write_study  # noqa: F401 - fake_data is a fixture

MIB = 2**20


def write_config(folder, raw=None, name="tiny.yaml"):
    path = folder / name
    path.write_text(yaml.safe_dump(raw or tiny_config(), sort_keys=False))
    return path


def one_line(stderr: str) -> str:
    """The one ``minicnn: error:`` line of ``stderr`` (which holds no traceback)."""
    errors = [line for line in stderr.splitlines() if line.startswith("minicnn: error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


@pytest.fixture()
def little_memory(monkeypatch):
    """The memory available, as minicnn reads it, lowered to 32 MiB."""
    monkeypatch.setattr(minicnn.memory, "available_memory", lambda: 32 * MIB)


# ---------------------------------------------------------------- folders minicnn did not make

def test_train_never_writes_into_a_folder_another_tool_wrote(tmp_path, run_cli):
    out = tmp_path / "D"
    out.mkdir()
    (out / "metrics.csv").write_text("mine\n")
    status, _, err = run_cli("train", write_config(tmp_path), "--out", out)
    assert status == 2 and "metrics.csv" in one_line(err) and "did not write" in err
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv"]       # no lock, no config.yaml
    assert (out / "metrics.csv").read_text() == "mine\n"


def test_train_uses_an_empty_folder_and_resumes_its_own(tmp_path, fake_data):
    from minicnn.train import fit_config

    out = tmp_path / "empty"
    out.mkdir()
    config = load_config(write_config(tmp_path, tiny_config(train={"epochs": 1})))
    first = fit_config(config, out, log=lambda line: None)
    (out / "notes.txt").write_text("a file of the user's beside a run of minicnn's\n")
    assert fit_config(config, out, resume=True, log=lambda line: None) == first
    assert (out / "notes.txt").exists()


def test_ablate_never_writes_into_a_folder_another_tool_wrote(tmp_path, fake_data):
    path = write_study(tmp_path, TWO, seeds=[0])
    out = tmp_path / "D2"
    out.mkdir()
    mine = {"results.csv": "a,b\n1,2\n", "report.md": "# my report\n", "loss.png": "not a png"}
    for name, text in mine.items():
        (out / name).write_text(text)
    with pytest.raises(UserError, match="did not write .*choose another --out"):
        run(path, out=out)
    assert {p.name: p.read_text() for p in out.iterdir()} == mine
    assert fake_data["fit"] == 0


def test_a_study_marks_its_folder_and_resumes_one_made_before_the_mark(tmp_path, fake_data):
    path = write_study(tmp_path, TWO, seeds=[0], set=["train.epochs=1"])
    out = tmp_path / "runs" / "study"
    run(path)
    assert (out / STUDY_MARK).is_file()
    (out / STUDY_MARK).unlink()                        # a study folder of an older minicnn
    rows, _ = run(path, resume=True)
    assert len(rows) == 2 and (out / STUDY_MARK).is_file()


# ---------------------------------------------------------------- data: bombs, devices, pipes

def _deflated_zeros(archive: zipfile.ZipFile, name: str, header: bytes, nbytes: int) -> None:
    """An archive member ``name``: ``header`` then ``nbytes`` zeros, written 1 MiB at a time."""
    with archive.open(name, "w", force_zip64=True) as f:
        f.write(header)
        chunk = bytes(MIB)
        for _ in range(nbytes // MIB):
            f.write(chunk)


def _npy_header(shape, dtype) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


def test_an_npz_zip_bomb_is_refused_before_its_arrays_are_read(tmp_path, little_memory):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        _deflated_zeros(archive, "x_train.npy", _npy_header((64 * 1024, 32, 32), np.uint8), 64 * MIB)
        for key, shape in (("y_train", (64 * 1024,)), ("x_test", (1, 32, 32)), ("y_test", (1,))):
            buf = io.BytesIO()
            np.save(buf, np.zeros(shape, np.uint8))
            archive.writestr(f"{key}.npy", buf.getvalue())
    assert path.stat().st_size < 2 * MIB                      # 64 MiB declared, 32 MiB available
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"bomb\.npz: its arrays, as their headers declare them: reading it "
                                            r"needs about \d+ MiB, more than the 32 MiB available"):
            npz.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB


def _gzip_stream(header: bytes, nbytes: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [z.compress(header)]
    chunk = bytes(MIB)
    out += [z.compress(chunk) for _ in range(nbytes // MIB)]
    return b"".join(out) + z.flush()


def _idx_folder(folder, images: bytes):
    """A --data-dir whose training images are ``images`` (gzipped) and whose other files are small and valid."""
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(images)
    labels = (0x801).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\0"
    (folder / "train-labels-idx1-ubyte").write_bytes(labels)
    (folder / "t10k-images-idx3-ubyte").write_bytes((0x803).to_bytes(4, "big") + b"".join(
        n.to_bytes(4, "big") for n in (1, 28, 28)) + bytes(784))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(labels)
    return folder


@pytest.mark.parametrize("magic, error", [(0x803, r"its IDX header declares 64,000,016 bytes: reading it needs "
                                                   r"about 61 MiB, more than the 32 MiB available"),
                                          (0x0, r"IDX magic number 0x00000000, expected 0x00000803")])
def test_a_gzip_idx_bomb_fails_at_its_header(tmp_path, little_memory, magic, error):
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (1000, 1000, 64))
    folder = _idx_folder(tmp_path / "idx", _gzip_stream(header, 64 * MIB))
    assert (folder / "train-images-idx3-ubyte.gz").stat().st_size < MIB
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=error):
            idx.read_folder(folder, idx.FILES, "fix it")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MIB


def test_gzip_idx_decodes_exactly_what_its_header_declares():
    header = (0x803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (2, 3, 4))
    body = bytes(range(24))
    raw = idx.gunzip_idx(gzip.compress(header + body), 0x803, "x")
    assert idx.parse_idx(raw, 0x803, "x").tolist() == np.arange(24).reshape(2, 3, 4).tolist()
    with pytest.raises(DataError, match="decompresses to more than the 40 bytes"):
        idx.gunzip_idx(gzip.compress(header + body + b"extra"), 0x803, "x")
    with pytest.raises(DataError, match="not a valid gzip file"):
        idx.gunzip_idx(gzip.compress(header + body)[:-12], 0x803, "x")


def test_a_huge_label_is_refused_before_any_class_name_is_made(tmp_path):
    path = tmp_path / "labels.npz"
    x = np.zeros((2, 4, 4), np.uint8)
    np.savez(path, x_train=x, y_train=np.array([0, 2**31 - 1]), x_test=x, y_test=np.array([0, 1]))
    start = time.monotonic()
    with pytest.raises(DataError, match=r"y_train\[1\] = 2147483647; .*at most 1,000 classes"):
        npz.load(path)
    assert time.monotonic() - start < 2


def test_a_model_of_more_classes_than_minicnn_takes_is_refused():
    x = np.zeros((2, 1, 4, 4), np.uint8)
    data = Dataset("npz", x, np.array([0, 1]), x, np.array([0, 1]), ("0", "1"), "", "d.npz")
    with pytest.raises(DataError, match="out_features 5,000; minicnn takes at most 1,000 classes"):
        check_fits(data, (1, 4, 4), 5000)


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_a_device_or_a_pipe_as_data_path_fails_at_once(tmp_path, kind):
    path = _special_file(tmp_path, kind)
    start = time.monotonic()
    with pytest.raises(DataError, match="not a regular file"):
        npz.load(path)
    assert time.monotonic() - start < 2


def _special_file(tmp_path, kind):
    if kind == "device":
        return type(tmp_path)("/dev/zero")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    return fifo


def test_channels_last_images_are_told_how_to_transpose():
    x = np.zeros((2, 28, 28, 3), np.uint8)
    data = Dataset("npz", x, np.array([0, 1]), x, np.array([0, 1]), ("0", "1"), "", "rgb.npz")
    with pytest.raises(DataError, match=r"look channels-last \(N, H, W, C\) with 3 channels; .*"
                                        r"x\.transpose\(0, 3, 1, 2\), then set model\.input_shape: \[3, 28, 28\]"):
        check_fits(data, (3, 28, 28), 2)


# ---------------------------------------------------------------- --dask addresses and clusters

@pytest.mark.parametrize("address", ["garbage", "tcp://[::1", "inproc://x", "ucx://10.0.0.1:8786",
                                     "tls://10.0.0.1:8786", "", "tcp://host:0", "tcp://host:99999",
                                     "tcp://host:port", "local:257"])
def test_a_bad_dask_address_is_refused_before_connecting(address):
    with pytest.raises(UserError, match="^--dask"):
        cluster.parse_target(address)


def test_dask_address_forms():
    assert cluster.parse_target("10.1.2.3:8786") == ("remote", "tcp://10.1.2.3:8786")
    assert cluster.parse_target("tcp://[::1]:8786") == ("remote", "tcp://[::1]:8786")
    assert cluster.parse_target("tcp://sched-1.lab:08786") == ("remote", "tcp://sched-1.lab:8786")


def test_an_empty_dask_address_exits_2_instead_of_using_the_local_pool(tmp_path, run_cli):
    status, _, err = run_cli("ablate", tmp_path / "none.yaml", "--dask", "")
    assert status == 2 and "--dask expects tcp://HOST:PORT" in one_line(err)


def test_a_server_that_never_answers_the_handshake_fails_within_the_connect_timeout(monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1)
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()  # then silence
    port = server.getsockname()[1]
    start = time.monotonic()
    try:
        with pytest.raises(UserError, match=f"^cannot reach a Dask scheduler at tcp://127.0.0.1:{port} "):
            with cluster.connect(f"tcp://127.0.0.1:{port}"):
                pass
    finally:
        server.close()
    assert time.monotonic() - start < 5


def test_a_real_scheduler_passes_the_handshake(scheduler):  # noqa: F811 - the fixture
    address, _, _ = scheduler
    with pytest.raises(UserError, match=f"the Dask scheduler at {address} has no workers"):
        with cluster.connect(address):
            pass


def test_each_study_has_its_own_log_topic(tmp_path, fake_data, monkeypatch):
    assert cluster.log_topic(tmp_path / "a") != cluster.log_topic(tmp_path / "b")
    topics = []
    monkeypatch.setattr(cluster, "worker_log", lambda topic: topics.append(topic))
    path = write_study(tmp_path, {"max": TWO["max"]}, seeds=[0], set=["train.epochs=1"])
    run(path)
    assert topics == [cluster.log_topic(tmp_path / "runs" / "study")]


class FakeClient:
    def __init__(self, status="running", workers=("w",)):
        self.status, self.workers = status, {w: {} for w in workers}

    def scheduler_info(self):
        return {"workers": self.workers}


def test_cluster_health_notices_a_lost_scheduler_and_a_cluster_without_workers():
    cluster.cluster_health(FakeClient(), "tcp://s:1")()
    with pytest.raises(ClusterLost, match="lost the Dask scheduler at tcp://s:1"):
        cluster.cluster_health(FakeClient("connecting"), "tcp://s:1")()
    health = cluster.cluster_health(FakeClient(workers=()), "tcp://s:1", workerless_seconds=0.2)
    health()                                 # no worker yet: that may pass
    time.sleep(0.3)
    with pytest.raises(ClusterLost, match="has had no worker for 0 s"):
        health()


class Cancelling(concurrent.futures.Executor):
    """Runs the first call, then cancels every later one, as a killed scheduler does."""

    def __init__(self):
        self.calls = 0

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()
        self.calls += 1
        if self.calls == 1:
            fn(*args, **kwargs)
        future.cancel()        # the first run finished on disk, but its result never came back
        future.set_running_or_notify_cancel()
        return future


def test_a_lost_scheduler_stops_the_study_with_a_resume_command(tmp_path, fake_data):
    path = write_study(tmp_path, TWO, seeds=[0], set=["train.epochs=1"])
    client = FakeClient("connecting")
    with pytest.raises(UserError, match=r"^lost the Dask scheduler at tcp://s:1 .*Continue with: minicnn ablate "
                                        r".* --resume --dask tcp://s:1$"):
        run_experiment(path, executor=Cancelling(), health=cluster.cluster_health(client, "tcp://s:1"),
                       resume_args=" --dask tcp://s:1", log=lambda line: None)


def test_a_cancelled_run_that_finished_on_disk_counts_as_finished(tmp_path, fake_data):
    path = write_study(tmp_path, {"max": TWO["max"]}, seeds=[0], set=["train.epochs=1"])
    lines = []
    rows = run_experiment(path, executor=Cancelling(), log=lines.append)
    assert len(rows) == 1 and any(line.startswith("[1/1] max seed 0: test ") for line in lines)


def test_a_cancelled_run_says_why(tmp_path):
    reason = experiment._reason(concurrent.futures.CancelledError())
    assert reason.startswith("its task was cancelled: the executor lost it")


# ---------------------------------------------------------------- results and summaries read back

@pytest.fixture()
def finished(tmp_path, fake_data):
    path = write_study(tmp_path, TWO, seeds=[0], set=["train.epochs=1"])
    run(path)
    return path, tmp_path / "runs" / "study"


def _edit_results(out, column, value):
    rows = results.read_results(out / "results.csv")
    text = (out / "results.csv").read_text().splitlines()
    head = text[0].split(",")
    cells = text[1].split(",")
    cells[head.index(column)] = value
    (out / "results.csv").write_text("\n".join([text[0], ",".join(cells), *text[2:]]) + "\n")
    return rows


def test_plot_takes_a_count_saved_as_a_float(finished, run_cli):
    _, out = finished
    rows = _edit_results(out, "params", "421642.0")
    assert results.read_results(out / "results.csv")[0]["params"] == 421642 != rows[0]["params"]
    status, printed, _ = run_cli("plot", out)
    assert status == 0 and "test_accuracy.png" in printed


@pytest.mark.parametrize("column, value", [("test_accuracy", "inf"), ("test_accuracy", "1.5"), ("params", "-3"),
                                           ("params", "2.5"), ("diverged", "maybe"), ("seconds_per_epoch", "nan?")])
def test_plot_refuses_a_value_results_csv_cannot_hold(finished, run_cli, column, value):
    _, out = finished
    _edit_results(out, column, value)
    status, _, err = run_cli("plot", out)
    assert status == 2 and f"results.csv: line 2, column {column}: expected " in one_line(err)


def test_plot_refuses_a_null_summary(finished, run_cli):
    _, out = finished
    (out / "max" / "seed0" / "summary.json").write_text("null")
    status, _, err = run_cli("plot", out)
    assert status == 2 and "summary.json: expected a JSON object, got NoneType" in one_line(err)


def test_resume_with_a_summary_missing_its_accuracy_names_the_file_and_entry(finished):
    path, out = finished
    summary = out / "avg" / "seed0" / "summary.json"
    summary.write_text(json.dumps({k: v for k, v in json.loads(summary.read_text()).items()
                                   if k != "test_accuracy"}))
    with pytest.raises(UserError, match=r"avg/seed0/summary\.json: no entry 'test_accuracy'; delete it and resume"):
        run(path, resume=True)


@pytest.mark.parametrize("entry, value", [("test_accuracy", "inf"), ("epochs", -1), ("diverged", "no"),
                                          ("receptive_field", [3]), ("shift_accuracy", {"x": 0.5})])
def test_read_summary_checks_what_it_reads(tmp_path, entry, value):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"test_accuracy": 0.5, entry: value}).replace('"inf"', "Infinity"))
    with pytest.raises(UserError, match=f"summary.json: {entry}: expected "):
        read_summary(path)


# ---------------------------------------------------------------- interrupted while the figures are drawn

def test_ctrl_c_while_the_figures_are_written_says_how_to_resume(tmp_path, fake_data, monkeypatch):
    path = write_study(tmp_path, {"max": TWO["max"]}, seeds=[0], set=["train.epochs=1"])

    def interrupted(folder):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "plot_experiment", interrupted)
    lines = []
    with pytest.raises(KeyboardInterrupt):
        run_experiment(path, executor=InProcess(), log=lines.append)
    assert "Continue with:" in lines[-1] and lines[-1].rstrip().endswith("--resume")


# ---------------------------------------------------------------- YAML

def _config(tmp_path, text):
    path = tmp_path / "c.yaml"
    raw = tiny_config()
    path.write_text(yaml.safe_dump({k: v for k, v in raw.items() if k != "train"}, sort_keys=False) + text)
    return path


@pytest.mark.parametrize("text, where, message", [
    ("train: {epochs: 2, schedule: {name: cosine, warmup_epochs: 3}}\n", "train.schedule.warmup_epochs",
     r"expected at most train\.epochs \(2\), got 3"),
    ("train: {epochs: 1}\ndata: {augment: {shift: 28}}\n", "", "the key 'data' appears twice"),
    ("train: {schedule: {name:cosine}}\n", "train.schedule.name:cosine", "write `name: cosine`"),
    ("train: {epochs: 1}\ntrain: {epochs: 2}\n", "", r"line \d+, column 1: the key 'train' appears twice in one "
                                                     r"mapping \(first on line \d+\)"),
])
def test_yaml_mistakes_in_one_line(tmp_path, text, where, message):
    with pytest.raises(ConfigError, match=message) as e:
        load_config(_config(tmp_path, text))
    assert e.value.path == where


def test_a_training_shift_as_large_as_the_image_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="expected less than the image size") as e:
        load_config(write_config(tmp_path, tiny_config(data={"augment": {"shift": 28}})))
    assert e.value.path == "data.augment.shift"
    load_config(write_config(tmp_path, tiny_config(data={"augment": {"shift": 27}})))


def test_repeated_eval_shifts_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="distinct") as e:
        load_config(write_config(tmp_path, tiny_config(eval={"shifts": [0, 2] * 500})))
    assert e.value.path == "eval.shifts"


def test_a_float_without_a_dot_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(), sort_keys=False).replace("lr: 0.05", "lr: 1e-3"))
    assert load_config(path).optimizer.options["lr"] == 0.001
    assert load_config(write_config(tmp_path), ["train.optimizer.lr=5E-2"]).optimizer.options["lr"] == 0.05


def test_a_huge_eval_batch_is_blamed_on_eval_batch_size(tmp_path):
    config = load_config(write_config(tmp_path, tiny_config(eval={"batch_size": 10**9})))
    with pytest.raises(UserError, match=r"eval\.batch_size: evaluation needs about .* one evaluation batch: make "
                                        r"eval\.batch_size smaller"):
        minicnn.config.check_memory(config, available=2**30)
    assert "largest: one evaluation batch of eval.batch_size 1,000,000,000" in minicnn.config.memory_summary(config)
