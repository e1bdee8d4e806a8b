"""The accuracy promise on real MNIST (needs the data: cache, mirrors or PyPI)."""
import pathlib

import pytest

from minicnn import data
from minicnn.config import load_config
from minicnn.train import fit

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.mnist
def test_max_pool_reaches_97_5_percent_after_one_epoch(tmp_path):
    mnist = data.load_mnist()
    config = load_config(CONFIGS / "max_pool.yaml", ["train.epochs=1", "eval.shifts=[]"])
    summary = fit(config, tmp_path, mnist=mnist, log=print)
    print(f"test accuracy {summary['test_accuracy']:.4f}, {summary['images_per_second']:.0f} images/s")
    assert summary["train_images"] == 55000 and summary["diverged"] is False
    assert summary["test_accuracy"] >= 0.975
