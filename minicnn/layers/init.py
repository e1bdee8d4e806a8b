"""Parameter initialisation."""
from __future__ import annotations

import numpy as np


def he_normal(shape, fan_in: int, dtype, rng=None) -> np.ndarray:
    """N(0, 2 / fan_in) weights (He et al. 2015), for layers followed by ReLU.

    ``rng`` is a numpy Generator; None means a fixed seed (0), so that two
    layers built the same way start the same.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)
