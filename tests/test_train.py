"""fit_config(): run folder, determinism, exact resume, divergence, unwritable folders."""
import json
import os

import numpy as np
import pytest

from conftest import tiny_config
from minicnn.config import validate
from minicnn.errors import UserError
from minicnn.files import read_csv
from minicnn.train import fit_config

SMALL = tiny_config("small", seed=3, data={"train_size": None},
                    train={"epochs": 3, "batch_size": 32}, eval={"shifts": [0, 2]})


def config(**train):
    raw = json.loads(json.dumps(SMALL))
    raw["train"].update(train)
    return validate(raw, "small.yaml")


def test_run_folder_and_learning(tmp_path, tiny_mnist):
    lines = []
    summary = fit_config(config(), tmp_path, mnist=tiny_mnist, log=lines.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz", "config.yaml", "metrics.csv", "summary.json"]
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3")
    rows = read_csv(tmp_path / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary
    for key in ("test_accuracy", "val_accuracy", "epochs", "seed", "params", "macs",
                "train_seconds", "images_per_second", "diverged"):
        assert key in summary
    assert summary["epochs"] == 3 and summary["seed"] == 3 and summary["diverged"] is False
    assert summary["test_accuracy"] > 0.9  # the bars are easy to learn; chance is 0.1
    assert summary["shift_accuracy"]["0"] == summary["test_accuracy"]
    assert summary["train_images"] == 500


def test_same_config_and_seed_give_the_same_numbers(tmp_path, tiny_mnist):
    a = fit_config(config(epochs=2), tmp_path / "a", mnist=tiny_mnist, log=lambda s: None)
    b = fit_config(config(epochs=2), tmp_path / "b", mnist=tiny_mnist, log=lambda s: None)
    for key in ("test_accuracy", "val_accuracy", "train_loss", "shift_accuracy"):
        assert a[key] == b[key]
    with np.load(tmp_path / "a" / "checkpoint.npz") as x, np.load(tmp_path / "b" / "checkpoint.npz") as y:
        for k in x.files:
            if k == "metrics":  # holds wall-clock seconds
                continue
            np.testing.assert_array_equal(x[k], y[k])


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, tiny_mnist):
    whole = fit_config(config(), tmp_path / "whole", mnist=tiny_mnist, log=lambda s: None)

    def stop_after_first_epoch(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_config(config(), tmp_path / "cut", mnist=tiny_mnist, log=stop_after_first_epoch)
    assert len(read_csv(tmp_path / "cut" / "metrics.csv")) == 1
    assert not (tmp_path / "cut" / "summary.json").exists()
    resumed = fit_config(config(), tmp_path / "cut", mnist=tiny_mnist, resume=True, log=lambda s: None)
    skip = {"train_seconds", "seconds_per_epoch", "images_per_second", "peak_memory_mib", "probe_seconds"}
    assert {k: v for k, v in resumed.items() if k not in skip} == {k: v for k, v in whole.items() if k not in skip}
    before = [r["test_accuracy"] for r in read_csv(tmp_path / "whole" / "metrics.csv")]
    after = [r["test_accuracy"] for r in read_csv(tmp_path / "cut" / "metrics.csv")]
    assert before == after


def test_divergence_is_recorded_not_raised(tmp_path, tiny_mnist):
    lines = []
    summary = fit_config(config(optimizer={"name": "sgd", "lr": 100.0, "momentum": 0.9}), tmp_path,
                  mnist=tiny_mnist, log=lines.append)
    assert summary["diverged"] is True
    assert summary["epochs"] == 1
    assert "DIVERGED" in lines[-1]                      # the epoch's log line says so
    rows = read_csv(tmp_path / "metrics.csv")           # and metrics.csv stays one numeric row per epoch
    assert len(rows) == 1 and all(isinstance(float(v), float) for v in rows[0].values())
    assert not float(rows[0]["train_loss"]) <= 100      # the loss that stopped it: above 100, or not finite


def test_folder_holding_another_run_is_refused(tmp_path, tiny_mnist):
    fit_config(config(epochs=1), tmp_path, mnist=tiny_mnist, log=lambda s: None)
    with pytest.raises(UserError, match="different config"):
        fit_config(config(epochs=2), tmp_path, mnist=tiny_mnist, log=lambda s: None)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_fails_before_training(tmp_path, tiny_mnist):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(UserError, match="cannot write"):
            fit_config(config(), tmp_path / "run", mnist=tiny_mnist)
    finally:
        tmp_path.chmod(0o700)


def test_folder_that_is_a_file_fails_before_training(tmp_path, tiny_mnist):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(UserError, match="cannot write"):
        fit_config(config(), tmp_path / "run", mnist=tiny_mnist)
