"""Images moved by whole pixels with zero fill: the shifted test sets and training augmentation.

Convention for a move (dy, dx): content goes dy rows down and dx columns right
(negative: up, left); ``out[n, ..., y, x] = images[n, ..., y - dy, x - dx]``, 0 where
that pixel is outside the image.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# the 8 moves (dy, dx) of shift_images, dy for rows (down is +), dx for columns (right is +)
SHIFT_DIRECTIONS = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                             if (dy, dx) != (0, 0)])
AUGMENT_STREAM = 1  # third seed word of augment_rng, so it never equals the shuffle's default_rng([seed, epoch])


def move_each(images: np.ndarray, moves: np.ndarray) -> np.ndarray:
    """Image i moved by ``moves[i] = (dy, dx)`` (module docstring); zero fill.

    images: (N, ..., H, W), any dtype; moves: (N, 2) integers. Returns a new C-contiguous
    array of the same shape and dtype. One padded copy and one gather, no loop over images:
    pad by the largest move, then take from each image the H x W window its move selects.
    Measured on 2 cores: 0.1 ms for 64 28x28 images, 0.2 s for 55,000 (a copy alone: 0.07 s).
    """
    height, width = images.shape[-2:]
    moves = np.clip(np.asarray(moves, dtype=np.int64).reshape(-1, 2), [-height, -width], [height, width])
    pad_y, pad_x = (np.abs(moves).max(axis=0) if len(moves) else (0, 0))
    padded = np.pad(images, [(0, 0)] * (images.ndim - 2) + [(pad_y, pad_y), (pad_x, pad_x)])
    windows = sliding_window_view(padded, (height, width), axis=(-2, -1))  # (N, ..., 2pad_y+1, 2pad_x+1, H, W)
    return np.ascontiguousarray(windows[np.arange(len(images)), ..., pad_y - moves[:, 0], pad_x - moves[:, 1], :, :])


def shift_directions(n: int, seed: int = 0) -> np.ndarray:
    """The (n, 2) int array of per-image directions (dy, dx) that shift_images uses."""
    return SHIFT_DIRECTIONS[np.random.default_rng(seed).integers(0, 8, size=n)]


def _check_shift(name: str, images: np.ndarray, shift) -> None:
    if images.ndim not in (3, 4):
        raise ValueError(f"{name}: images must be (N, H, W) or (N, C, H, W), got shape {images.shape}")
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)) or shift < 0:
        raise ValueError(f"{name}: shift must be an int >= 0, got {shift!r}")


def shift_images(images: np.ndarray, shift: int, seed: int = 0) -> np.ndarray:
    """Move each image by ``shift`` pixels in one of 8 directions; zero fill.

    images: (N, H, W) or (N, C, H, W), any dtype; returns a new array of the same
    shape and dtype. Image i moves by shift_directions(N, seed)[i] * shift: ``shift``
    pixels along each nonzero axis (so diagonals move ``shift`` rows and ``shift``
    columns). Pixels moved out are lost; shift=0 returns an unchanged copy.
    """
    images = np.asarray(images)
    _check_shift("shift_images", images, shift)
    if shift == 0:
        return images.copy()
    return move_each(images, shift_directions(len(images), seed) * int(shift))


def augment_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of one epoch's augmentation draws: default_rng([seed, epoch, 1]).

    Drawn from in batch order, so an epoch's shifts depend only on (seed, epoch) and
    a run resumed at an epoch boundary draws exactly what an uninterrupted one does.
    """
    return np.random.default_rng([seed, epoch, AUGMENT_STREAM])


def shift_batch(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``images`` with each image moved by its own random (dy, dx); zero fill.

    images: (N, C, H, W) (or (N, H, W)), any dtype. dy and dx are drawn independently
    and uniformly from the integers -max_shift..max_shift with one call
    ``rng.integers(-max_shift, max_shift + 1, size=(N, 2))``, so the result depends only on
    the images and the generator's state. max_shift=0 returns a copy and draws nothing.
    """
    images = np.asarray(images)
    _check_shift("shift_batch", images, max_shift)
    if max_shift == 0:
        return images.copy()
    return move_each(images, rng.integers(-max_shift, max_shift + 1, size=(len(images), 2)))
