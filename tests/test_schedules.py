"""Learning-rate schedules: rates at chosen batches against the closed forms, worked by hand."""
from __future__ import annotations

import math

import pytest

from minicnn.schedules import SCHEDULES, epoch_rates, learning_rate, resolve

STEP = {"name": "step", "step_epochs": 2, "gamma": 0.5}
COSINE = {"name": "cosine", "warmup_epochs": 1}


def test_constant_is_the_base_rate_everywhere():
    assert {learning_rate(None, 0.05, t, 10, 3) for t in range(30)} == {0.05}
    assert learning_rate(resolve({"name": "constant"}), 0.05, 29, 10, 3) == 0.05


@pytest.mark.parametrize("step, rate", [(0, 0.1), (19, 0.1), (20, 0.05), (39, 0.05), (40, 0.025), (45, 0.025),
                                        (60, 0.0125)])
def test_step_halves_every_two_epochs(step, rate):
    # 10 batches per epoch: batches 0-19 are epochs 0-1, 20-39 epochs 2-3, ...
    assert learning_rate(STEP, 0.1, step, 10, 8) == pytest.approx(rate, rel=1e-15)


@pytest.mark.parametrize("step, rate", [
    (0, 0.025), (1, 0.05), (3, 0.1),                    # warmup: 4 batches, 0.1 * (t + 1) / 4
    (4, 0.1),                                           # cosine starts at the base rate
    (6, 0.1 * (1 + math.cos(math.pi / 4)) / 2),         # 0.0853553...
    (8, 0.05),                                          # half way: cos(pi / 2) = 0
    (11, 0.1 * (1 - 0.9238795325112867) / 2),           # last batch: cos(7 pi / 8)
])
def test_cosine_with_one_warmup_epoch(step, rate):
    # 4 batches per epoch, 3 epochs: T = 12, W = 4
    assert learning_rate(COSINE, 0.1, step, 4, 3) == pytest.approx(rate, rel=1e-12)


def test_cosine_without_warmup_and_hand_numbers():
    s = resolve({"name": "cosine"})
    assert s == {"name": "cosine", "warmup_epochs": 0}
    assert learning_rate(s, 0.2, 0, 5, 2) == 0.2
    assert learning_rate(s, 0.2, 5, 5, 2) == pytest.approx(0.1)            # t = T / 2
    assert learning_rate(s, 0.2, 10, 5, 2) == pytest.approx(0.0, abs=1e-15)  # would be 0 one batch after the end
    assert learning_rate({"name": "cosine", "warmup_epochs": 5}, 0.2, 9, 5, 2) == pytest.approx(0.2)  # only warmup
    assert learning_rate({"name": "cosine", "warmup_epochs": 0.5}, 0.2, 1, 4, 2) == pytest.approx(0.2)  # W = 2


def test_epoch_rates_are_the_last_batch_of_each_epoch():
    assert epoch_rates(STEP, 0.1, 10, 5) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert epoch_rates(COSINE, 0.1, 4, 3) == pytest.approx(
        [0.1, learning_rate(COSINE, 0.1, 7, 4, 3), learning_rate(COSINE, 0.1, 11, 4, 3)])


def test_cosine_matches_pytorch_per_batch():
    torch = pytest.importorskip("torch")
    bpe, epochs, warmup = 7, 3, 7
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.05)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=bpe * epochs - warmup)
    ours = [learning_rate(COSINE, 0.05, t, bpe, epochs) for t in range(warmup, bpe * epochs)]
    theirs = []
    for _ in ours:
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        cosine.step()
    assert ours == pytest.approx(theirs, rel=1e-12)


@pytest.mark.parametrize("spec, key, message", [
    ({"name": "linear"}, "name", "expected one of constant, step, cosine, got 'linear'"),
    ({"name": "step", "gamma": 0.5}, "step_epochs", "schedule step needs step_epochs"),
    ({"name": "step", "step_epochs": 0}, "step_epochs", "expected an integer >= 1, got 0"),
    ({"name": "step", "step_epochs": 2.5}, "step_epochs", "expected an integer >= 1"),
    ({"name": "step", "step_epochs": 2, "gamma": 0}, "gamma", "expected a number in (0, 1], got 0"),
    ({"name": "step", "step_epochs": 2, "gamma": True}, "gamma", "expected a number in (0, 1]"),
    ({"name": "cosine", "warmup_epochs": -1}, "warmup_epochs", "expected a number >= 0, got -1"),
    ({"name": "cosine", "warmup": 1}, "warmup", "unknown key for schedule cosine; expected warmup_epochs"),
    ({"name": "constant", "gamma": 1}, "gamma", "expected no other keys"),
])
def test_resolve_names_the_bad_key(spec, key, message):
    with pytest.raises(ValueError) as info:
        resolve(spec)
    assert info.value.args[0] == key and message in info.value.args[1]


def test_resolve_fills_defaults():
    assert resolve(None) == {"name": "constant"}
    assert resolve({"name": "step", "step_epochs": 3}) == {"name": "step", "step_epochs": 3, "gamma": 0.1}
    assert set(SCHEDULES) == {"constant", "step", "cosine"}
