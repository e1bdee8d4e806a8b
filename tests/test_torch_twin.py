"""Whole training steps against PyTorch, and the benchmark scripts as a user runs them.

The layer and optimizer tests check each piece; this checks that they add up:
from the same weights, on the same batches, a few SGD or Adam steps of minicnn
leave the same losses and weights as PyTorch's (float64, so any gap is a bug, not rounding).
"""
import importlib.util
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import minicnn.layers as L
from minicnn import data
from minicnn.config import build_model, load_config
from minicnn.losses import softmax_cross_entropy
from minicnn.optim import OPTIMIZERS
from minicnn.train import split

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from torch_twin import torch_network, torch_optimizer  # noqa: E402

CONFIGS = ["max_pool", "avg_pool", "min_pool", "max_pool_overlap", "global_pool", "strided_conv", "allconv",
           "max_pool_bn", "global_pool_bn",
           # pooling family: LP, adaptive and spatial pyramid pooling
           "lp_pool", "adaptive_max_pool", "adaptive_avg_pool", "spp",
           "maxblur_pool", "mixed_pool", "gated_pool"]
OPTIMIZER_OVERRIDES = {
    "sgd": ["train.optimizer.weight_decay=0.001"],
    "adam": ["train.optimizer={name: adam, lr: 0.001, weight_decay: 0.001}"],
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER_OVERRIDES))
@pytest.mark.parametrize("name", CONFIGS)
def test_training_steps_match_pytorch(name, optimizer, tiny_data):
    torch = pytest.importorskip("torch")
    config = load_config(ROOT / "configs" / f"{name}.yaml",
                         ["data.val_size=100", "train.batch_size=16", *OPTIMIZER_OVERRIDES[optimizer]])
    splits = split(config, tiny_data)
    x, y = data.to_float32(splits.x_train).astype(np.float64), splits.y_train
    model = build_model(config, dtype=np.float64)
    net = torch_network(model, torch)
    ours = OPTIMIZERS[config.optimizer.name](model.slots(), **config.optimizer.options)
    theirs = torch_optimizer(config, net.parameters(), torch)
    order = np.random.default_rng(0).permutation(len(x))

    for step in range(4):
        idx = order[step * 16:(step + 1) * 16]
        logits = model.forward(x[idx], training=True, logits=True)
        loss, dlogits = softmax_cross_entropy(logits, y[idx])
        model.backward(dlogits, logits=True, input_grad=False)
        ours.step()

        theirs.zero_grad()
        their_loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
        their_loss.backward()
        theirs.step()
        assert loss == pytest.approx(their_loss.item(), rel=1e-9), f"loss differs at step {step}"

    twin = torch_network(model, torch)  # minicnn's weights after the steps, in PyTorch's layout
    # a convolution's bias right before a BatchNorm has a gradient of rounding noise only, which Adam
    # scales up to full steps, in each framework its own way; that BatchNorm's running mean follows it
    noise = {name for i, after in enumerate(model.layers[1:]) if isinstance(after, L.BatchNorm2D)
             and optimizer == "adam" for name in (f"{i}.bias", f"{i + 1}.running_mean")}
    for (name, mine), reference in zip(twin.named_parameters(), net.parameters(), strict=True):
        if name not in noise:
            np.testing.assert_allclose(mine.detach().numpy(), reference.detach().numpy(), rtol=1e-7, atol=1e-10)
    for (name, mine), reference in zip(twin.named_buffers(), net.buffers(), strict=True):   # running statistics
        if mine.dtype.is_floating_point and name not in noise:
            np.testing.assert_allclose(mine.numpy(), reference.numpy(), rtol=1e-9, atol=1e-12)


def _run(script, *args):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_bench_train_runs_and_prints_ratios():
    out = _run("bench_train.py", str(ROOT / "configs" / "strided_conv.yaml"), "--steps", "2", "--repeats", "1",
               "--threads", "1")
    assert "minicnn:" in out and "images/s" in out and "| **sum of layers** |" in out
    if importlib.util.find_spec("torch") is not None:
        assert "PyTorch:" in out and "| strided_conv |" in out


def test_bench_train_caps_both_sides_and_takes_larger_inputs():
    out = _run("bench_train.py", "--input", "3x36x36", "--isa", "portable", "--steps", "1", "--repeats", "1",
               "--threads", "1")
    assert "minicnn isa portable, GEMM plain" in out and "## max_pool (max_pool.yaml), input 3x36x36" in out
    if importlib.util.find_spec("torch") is not None:
        assert "(DEFAULT, oneDNN max SSE41, MKL max SSE4_2)" in out and "| max_pool |" in out


def test_bench_pool_runs_and_prints_every_layer():
    out = _run("bench_pool.py", "--rounds", "1", "--no-torch")
    for layer in ("max 2x2/2", "max 3x3/2", "avg 2x2/2", "min 2x2/2", "global avg", "global max",
                  "blur 3/2", "maxblur 2, 3/2", "mixed 2x2/2", "gated 2x2/2"):
        assert out.count(f"| {layer} |") == 2, layer
    for layer in ("frac max 3x3 r0.5", "stochastic 2x2/2", "stochastic 3x3/2"):   # random pooling
        assert out.count(f"| {layer} |") == 2, layer
