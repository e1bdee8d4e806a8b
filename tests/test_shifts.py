"""shift_batch (training augmentation) against a slow per-pixel reference, and its seeding."""
from __future__ import annotations

import numpy as np
import pytest

from minicnn.data import augment_rng, shift_batch, shift_images
from minicnn.data.shifts import move_each


def slow_move(images, moves):
    """out[n, c, y, x] = images[n, c, y - dy, x - dx], 0 outside: loops over every pixel."""
    out = np.zeros_like(images)
    n_, c_, h, w = images.shape
    for n in range(n_):
        dy, dx = moves[n]
        for c in range(c_):
            for y in range(h):
                for x in range(w):
                    if 0 <= y - dy < h and 0 <= x - dx < w:
                        out[n, c, y, x] = images[n, c, y - dy, x - dx]
    return out


@pytest.mark.parametrize("shape, max_shift", [((9, 1, 7, 6), 2), ((20, 3, 5, 8), 3), ((4, 2, 3, 3), 5),
                                              ((1, 1, 1, 1), 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_shift_batch_is_exact_against_the_slow_reference(shape, max_shift, dtype):
    images = (np.random.default_rng(0).random(shape) * 200).astype(dtype)
    before = images.copy()
    out = shift_batch(images, max_shift, np.random.default_rng(7))
    moves = np.random.default_rng(7).integers(-max_shift, max_shift + 1, size=(shape[0], 2))
    np.testing.assert_array_equal(out, slow_move(images, moves))
    assert out.dtype == images.dtype and out.shape == images.shape
    np.testing.assert_array_equal(images, before)             # the input is not touched


def test_move_each_covers_every_move_and_moves_past_the_edge():
    images = np.random.default_rng(1).random((49 + 2, 2, 4, 5))
    moves = np.array([(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)] + [(4, 0), (0, -9)])
    np.testing.assert_array_equal(move_each(images, moves), slow_move(images, moves))
    assert not move_each(images, moves)[-2:].any()


def test_shift_batch_draws_only_from_the_generator():
    images = np.random.default_rng(2).random((64, 1, 28, 28)).astype(np.float32)
    np.random.seed(0)
    a = shift_batch(images, 2, augment_rng(3, 5))
    np.random.seed(1)                                           # the global state plays no part
    b = shift_batch(images, 2, augment_rng(3, 5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, shift_batch(images, 2, augment_rng(3, 6)))   # another epoch
    assert not np.array_equal(a, shift_batch(images, 2, augment_rng(4, 5)))   # another seed
    # the shuffle's generator default_rng([seed, epoch]) is a different stream
    assert not np.array_equal(a, shift_batch(images, 2, np.random.default_rng([3, 5])))


def test_an_epoch_of_batches_is_the_same_when_resumed():
    """Epoch e's draws depend on (seed, e) only: drawing epochs 0-2 in one go, or epoch 2 alone
    in a fresh process-like state (a resumed run), gives the same batches, exactly."""
    x = np.random.default_rng(3).random((100, 1, 8, 8))

    def epoch(e):
        rng = augment_rng(11, e)
        return [shift_batch(x[i:i + 32], 2, rng) for i in range(0, 100, 32)]

    straight = [epoch(e) for e in range(3)]
    resumed = epoch(2)
    for a, b in zip(straight[2], resumed):
        np.testing.assert_array_equal(a, b)


def test_shift_batch_zero_is_a_copy_and_draws_nothing():
    images = np.ones((3, 1, 4, 4), np.float32)
    rng = np.random.default_rng(0)
    out = shift_batch(images, 0, rng)
    np.testing.assert_array_equal(out, images)
    assert out is not images
    assert rng.integers(0, 1000) == np.random.default_rng(0).integers(0, 1000)


def test_shift_batch_moves_at_most_max_shift_and_uses_every_shift():
    images = np.zeros((2000, 1, 11, 11), np.float32)
    images[:, 0, 5, 5] = 1
    out = shift_batch(images, 2, np.random.default_rng(0))
    n, _, ys, xs = np.nonzero(out)
    assert n.tolist() == list(range(2000))                       # never moved out at max_shift 2
    assert set(zip(ys - 5, xs - 5)) == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}


@pytest.mark.parametrize("shift", [-1, 1.5, True])
def test_shift_batch_rejects_bad_shifts(shift):
    with pytest.raises(ValueError, match="shift_batch: shift must be an int >= 0"):
        shift_batch(np.zeros((1, 1, 4, 4)), shift, np.random.default_rng(0))


def test_shift_images_still_moves_by_exactly_shift():
    images = np.random.default_rng(4).random((30, 2, 9, 9))
    from minicnn.data import shift_directions
    np.testing.assert_array_equal(shift_images(images, 3, seed=2), slow_move(images, shift_directions(30, 2) * 3))


def test_move_each_handles_no_images_and_three_axes():
    assert move_each(np.zeros((0, 1, 5, 5)), np.zeros((0, 2), int)).shape == (0, 1, 5, 5)
    images = np.random.default_rng(5).random((6, 5, 4))
    moves = np.array([(1, -1), (0, 0), (-4, 2), (2, 2), (-1, 3), (5, 5)])
    out = move_each(images, moves)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, slow_move(images[:, None], moves)[:, 0])
