"""fit_config() on the config's data set: schedules per batch, shift augmentation, exact resume of
both, your own .npz images end to end, and data errors reaching the CLI as exit-2 one-liners.
Small data made here; no test needs a real data set."""
import hashlib
import json
import pathlib

import numpy as np
import pytest
import yaml

import minicnn.data
import minicnn.optim
from conftest import tiny_config
from minicnn import schedules
from minicnn.config import load_config, validate
from minicnn.errors import UserError
from minicnn.files import read_csv
from minicnn.train import fit_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMING = {"train_seconds", "images_per_second", "seconds_per_epoch", "peak_memory_mib", "probe_seconds"}
# 300 training images in batches of 50: 6 batches an epoch
BATCHES, EPOCHS = 6, 3


def config(**sections):
    """The tiny config for 3 epochs, with ``sections`` merged in (data/train keys)."""
    raw = tiny_config("sched", seed=1, train={"epochs": EPOCHS}, eval={"shifts": [0, 2]})
    for section, keys in sections.items():
        raw[section].update(keys)
    return validate(raw, "sched.yaml")


def quiet(line):
    pass


def recorded_rates(monkeypatch) -> list[float]:
    """The optimizer's lr at every SGD step, from now on."""
    rates, step = [], minicnn.optim.SGD.step

    def recording(self):
        rates.append(self.lr)
        step(self)
    monkeypatch.setattr(minicnn.optim.SGD, "step", recording)
    return rates


@pytest.mark.parametrize("schedule", [{"name": "cosine", "warmup_epochs": 1},
                                      {"name": "step", "step_epochs": 1, "gamma": 0.5},
                                      {"name": "constant"}], ids=lambda s: s["name"])
def test_every_batch_gets_its_scheduled_rate_and_metrics_show_the_last(tmp_path, tiny_data, monkeypatch, schedule):
    rates = recorded_rates(monkeypatch)
    fit_config(config(train={"schedule": schedule}), tmp_path, data=tiny_data, log=quiet)
    expected = [schedules.learning_rate(schedule, 0.05, t, BATCHES, EPOCHS) for t in range(BATCHES * EPOCHS)]
    assert rates == expected
    lr_column = [float(r["lr"]) for r in read_csv(tmp_path / "metrics.csv")]
    assert lr_column == schedules.epoch_rates(schedule, 0.05, BATCHES, EPOCHS)
    if schedule["name"] == "cosine":  # a rise over epoch 1, then a fall towards 0
        assert rates[0] == pytest.approx(0.05 / BATCHES) and rates[BATCHES] == 0.05 and rates[-1] < 0.01
    if schedule["name"] == "step":
        assert lr_column == [0.05, 0.025, 0.0125]


def test_augmentation_only_with_a_shift_and_reproducible(tmp_path, tiny_data, monkeypatch):
    def weights(folder):
        with np.load(folder / "checkpoint.npz") as z:
            return {k: z[k] for k in z.files if k != "metrics"}

    plain = fit_config(config(), tmp_path / "plain", data=tiny_data, log=quiet)
    real_rng = minicnn.data.augment_rng
    drawn = []
    monkeypatch.setattr(minicnn.data, "augment_rng", lambda seed, epoch: drawn.append(epoch) or real_rng(seed, epoch))
    zero = fit_config(config(data={"augment": {"shift": 0}}), tmp_path / "zero", data=tiny_data, log=quiet)
    assert drawn == []                               # shift 0 draws nothing ...
    assert {k: v for k, v in zero.items() if k not in TIMING} == {k: v for k, v in plain.items() if k not in TIMING}
    assert all(np.array_equal(a, b) for a, b in zip(weights(tmp_path / "plain").values(),
                                                    weights(tmp_path / "zero").values()))  # ... and changes nothing
    a = fit_config(config(data={"augment": {"shift": 2}}), tmp_path / "a", data=tiny_data, log=quiet)
    assert drawn == [0, 1, 2]                        # one generator per epoch
    b = fit_config(config(data={"augment": {"shift": 2}}), tmp_path / "b", data=tiny_data, log=quiet)
    wa, wb, w0 = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "plain")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)           # same seed: the same shifts
    assert a["train_loss"] == b["train_loss"] and a["confusion"] == b["confusion"]
    assert not np.array_equal(wa["model.0.W"], w0["model.0.W"])    # and they changed training


def test_shifts_are_applied_to_each_batch_in_order(tmp_path, tiny_data, monkeypatch):
    """The trained batches are exactly shift_batch of the shuffled images, with augment_rng(seed, epoch)."""
    seen = []
    real = minicnn.data.shift_batch

    def spy(images, max_shift, rng):
        out = real(images, max_shift, rng)
        seen.append((images.copy(), out))
        return out
    monkeypatch.setattr(minicnn.data, "shift_batch", spy)
    fit_config(config(data={"augment": {"shift": 3}}, train={"epochs": 1}), tmp_path, data=tiny_data, log=quiet)
    assert len(seen) == BATCHES
    rng = minicnn.data.augment_rng(1, 0)
    for images, out in seen:
        assert out.shape == images.shape == (50, 1, 28, 28)
        np.testing.assert_array_equal(out, real(images, 3, rng))
    assert any(not np.array_equal(images, out) for images, out in seen)


def test_resumed_run_with_schedule_and_augmentation_is_identical(tmp_path, tiny_data):
    """Interrupted after epoch 1, then resumed: metrics, checkpoint and summary exactly as uninterrupted."""
    cfg = config(data={"augment": {"shift": 2}}, train={"schedule": {"name": "cosine", "warmup_epochs": 1}})
    whole = fit_config(cfg, tmp_path / "whole", data=tiny_data, log=quiet)

    def stop(line):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        fit_config(cfg, tmp_path / "cut", data=tiny_data, log=stop)
    assert len(read_csv(tmp_path / "cut" / "metrics.csv")) == 1
    resumed = fit_config(cfg, tmp_path / "cut", data=tiny_data, resume=True, log=quiet)

    def untimed(summary):
        return {k: v for k, v in summary.items() if k not in TIMING}
    assert untimed(resumed) == untimed(whole)
    rows = [[{k: v for k, v in r.items() if k not in TIMING} for r in read_csv(folder / "metrics.csv")]
            for folder in (tmp_path / "whole", tmp_path / "cut")]
    assert rows[0] == rows[1] and len(rows[0]) == EPOCHS
    with np.load(tmp_path / "whole" / "checkpoint.npz") as x, np.load(tmp_path / "cut" / "checkpoint.npz") as y:
        assert x.files == y.files
        for k in x.files:
            if k != "metrics":
                np.testing.assert_array_equal(x[k], y[k])


def test_summary_names_the_data_the_blas_and_the_confusion(tmp_path, tiny_data):
    summary = fit_config(config(train={"epochs": 1}), tmp_path, data=tiny_data, log=quiet)
    assert summary["dataset"] == "mnist" and summary["data_sha256"] == tiny_data.sha256
    assert summary["classes"] == [str(k) for k in range(10)]
    counts = np.array(summary["confusion"])
    assert counts.shape == (10, 10) and counts.sum() == len(tiny_data.y_test)
    assert np.trace(counts) / counts.sum() == summary["test_accuracy"]
    assert counts.sum(axis=1).tolist() == np.bincount(tiny_data.y_test, minlength=10).tolist()
    assert summary["blas"].endswith(", 1 thread") and summary["blas_info"][0]["num_threads"] == 1


def test_the_epoch_line_says_what_diverged_means(tmp_path, tiny_data):
    lines = []
    fit_config(config(train={"optimizer": {"name": "sgd", "lr": 100.0}}), tmp_path, data=tiny_data, log=lines.append)
    assert "DIVERGED (loss" in lines[-1] and "non-finite or above 100 nats" in lines[-1]


# ---------------------------------------------------------------- your own images: .npz

def synthetic_npz(path, n_train=700, n_test=200, seed=0):
    """10 learnable classes of 3-channel 40x40 uint8 images: class k is a bright 8x8 square in
    channel k % 3 at one of 4 corners-ish places (k // 3), on noise in every channel."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 80, (n, 3, 40, 40)).astype(np.uint8)
        for i, k in enumerate(y):
            top, left = [(4, 4), (4, 28), (28, 4), (28, 28)][k // 3]
            x[i, k % 3, top:top + 8, left:left + 8] = 240
        return x, y.astype(np.int64)

    x_train, y_train = make(n_train)
    x_test, y_test = make(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def own_config(folder, npz_name="mine.npz", **data):
    """configs/max_pool.yaml with only ``data`` and ``model.input_shape`` changed; its path."""
    raw = yaml.safe_load((ROOT / "configs" / "max_pool.yaml").read_text())
    raw["data"] = {"dataset": "npz", "path": npz_name, "val_size": 100, **data}
    raw["model"]["input_shape"] = [3, 40, 40]
    path = folder / "mine.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_own_3_channel_40x40_npz_trains_from_the_max_pool_config(tmp_path, run_cli):
    npz_file = synthetic_npz(tmp_path / "mine.npz")
    path = own_config(tmp_path)
    status, out, err = run_cli("train", path, "--out", tmp_path / "run")
    assert status == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["dataset"] == "npz"
    assert summary["data_sha256"] == hashlib.sha256(npz_file.read_bytes()).hexdigest()
    assert summary["train_images"] == 600 and summary["classes"] == [str(k) for k in range(10)]
    assert summary["test_accuracy"] >= 0.9, out   # chance is 0.1
    assert set(summary["shift_accuracy"]) == {"0", "1", "2", "3", "4"}  # shifted 3-channel test images
    assert np.array(summary["confusion"]).shape == (10, 10)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["path"] == str(npz_file)


def _out_of_range_labels(path):
    synthetic_npz(path)
    with np.load(path) as z:
        arrays = dict(z)
    arrays["y_test"][7] = 12
    np.savez(path, **arrays)


def _missing_y_test(path):
    synthetic_npz(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in ("x_train", "y_train", "x_test")}
    np.savez(path, **arrays)


def _grey_28(path):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 255, (50, 28, 28), dtype=np.uint8), y_train=np.zeros(50, np.int64),
             x_test=rng.integers(0, 255, (10, 28, 28), dtype=np.uint8), y_test=np.zeros(10, np.int64))


NPZ_CLI_ERRORS = {
    "label beyond the model's classes": (_out_of_range_labels, [], ["y_test[7] = 12", "out_features 10"]),
    "missing array": (_missing_y_test, [], ["no array y_test"]),
    "images of another shape": (_grey_28, [], ["(1, 28, 28)", "model.input_shape is [3, 40, 40]"]),
    "val_size takes every image": (synthetic_npz, ["data.val_size=700"],
                                   ["data.val_size", "fewer than the 700 training images", "got 700"]),
    "missing file": (lambda path: None, [], ["no such file"]),
}


@pytest.mark.parametrize("make, sets, words", NPZ_CLI_ERRORS.values(), ids=NPZ_CLI_ERRORS.keys())
def test_npz_errors_reach_minicnn_train_as_one_line(tmp_path, run_cli, make, sets, words):
    make(tmp_path / "mine.npz")
    path = own_config(tmp_path)
    args = [a for s in sets for a in ("--set", s)]
    status, out, err = run_cli("train", path, *args, "--out", tmp_path / "run")
    assert status == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("minicnn: error: ") and "Traceback" not in err
    assert len([line for line in lines if line.startswith("minicnn")]) == 1
    for word in words:
        assert word in lines[-1], lines[-1]
    assert str(path) in lines[-1] or str(tmp_path / "mine.npz") in lines[-1]
    assert not (tmp_path / "run" / "config.yaml").exists()  # nothing half-made


def test_minicnn_train_refuses_a_model_too_big_for_memory(tmp_path, run_cli, monkeypatch):
    import minicnn.memory

    monkeypatch.setattr(minicnn.memory, "available_memory", lambda: 10 * 2**20)
    status, _, err = run_cli("train", ROOT / "configs" / "max_pool.yaml", "--out", tmp_path / "run")
    assert status == 2 and "training needs about" in err and "more than the 10 MiB available" in err
    assert not (tmp_path / "run").exists()


def test_a_study_preloads_each_data_set_once(tmp_path, tiny_data, monkeypatch):
    """The runner's preload: every distinct (dataset, path) is loaded once and checked against
    each config before any run starts; a data set that fits no config stops the study there."""
    from minicnn.train import preload

    loaded = []
    synthetic_npz(tmp_path / "mine.npz", n_train=150, n_test=20)
    real = minicnn.data.load_dataset

    def load(name, **kwargs):
        loaded.append(name)
        return tiny_data if name != "npz" else real(name, **kwargs)
    monkeypatch.setattr(minicnn.data, "load_dataset", load)
    own = load_config(own_config(tmp_path))
    mnist = [validate(tiny_config(pool=p), "t.yaml") for p in ("maxpool2d", "avgpool2d")]
    preload([*mnist, own, own], data_dir=None)
    assert sorted(loaded) == ["mnist", "npz"]
    with pytest.raises(UserError, match="data.val_size: expected fewer than the 150 training images"):
        preload([load_config(own_config(tmp_path), ["data.val_size=150"])])
    with pytest.raises(UserError, match=r"= [4-9], but the last dense layer has out_features 4"):  # labels 0..9
        preload([load_config(own_config(tmp_path), ["model.layers[9].out_features=4"])])


def test_data_fetch_takes_the_data_set_by_name(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("MINICNN_DATA", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    status, _, err = run_cli("data", "fetch", "--dataset", "fashion_mnist", "--data-dir", tmp_path / "empty")
    assert status == 2 and "Fashion-MNIST" in err and "train-images-idx3-ubyte" in err
    assert not (tmp_path / "cache" / "fashion_mnist.npz").exists()
    status, _, err = run_cli("data", "fetch", "--dataset", "npz")  # npz has nothing to fetch: argparse refuses it
    assert status == 2 and "invalid choice: 'npz'" in err
