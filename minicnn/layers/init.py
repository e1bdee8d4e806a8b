"""Parameter initialisation."""
from __future__ import annotations

import numpy as np


def he_normal(shape, fan_in: int, dtype, rng: np.random.Generator) -> np.ndarray:
    """N(0, 2 / fan_in) weights (He et al. 2015), for layers followed by ReLU: drawn in float64
    from ``rng``, then cast to ``dtype``."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)
