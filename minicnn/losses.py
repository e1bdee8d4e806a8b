"""Softmax cross-entropy, computed from logits so it never takes log(0)."""
from __future__ import annotations

import numpy as np


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    logits (N, K) float, labels (N,) ints in [0, K).
    Returns (loss, dlogits) with dlogits (N, K) in the logits' dtype:
    (softmax(logits) - onehot(labels)) / N.
    """
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - log_norm
    rows = np.arange(n)
    loss = float(-log_probs[rows, labels].astype(np.float64).mean())
    grad = np.exp(log_probs)
    grad[rows, labels] -= 1
    grad /= n
    return loss, grad
