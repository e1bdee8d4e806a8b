"""The layer contract and the input checks every layer shares."""
from __future__ import annotations

import numpy as np

from minicnn.layers.init import he_normal

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Layer:
    """Base class of every layer.  Subclasses set ``params``/``grads`` and override the hooks.

    ``forward(x, training=True) -> y`` and ``backward(dy) -> dx`` work on
    batches; ``output_shape`` and ``macs`` work on per-example shapes (no batch
    axis), so a model can be checked and summarised without running it.
    ``window`` gives the spatial (kernel, stride) for receptive-field
    arithmetic, or None for a layer that leaves the spatial domain.  Calling a
    layer runs ``forward(x, training=False)``.

    ``state`` holds arrays a layer updates itself, not the optimizer (BatchNorm's
    running statistics): saved in checkpoints beside ``params``, never trained.
    A layer with ``draws_random`` draws its randomness only from ``self.rng`` (a
    numpy Generator), which ``Sequential.seed_batch`` replaces before every
    training batch, so that a run's draws follow from its seed alone.

    Example::

        >>> import numpy as np, minicnn as mc
        >>> class Double(mc.Layer):
        ...     def forward(self, x, training=True):
        ...         return 2 * x
        ...     def backward(self, dy):
        ...         return 2 * dy
        >>> mc.Sequential([Double(), mc.Flatten()], (1, 2, 2))(np.ones((1, 1, 2, 2))).tolist()
        [[2.0, 2.0, 2.0, 2.0]]
    """

    draws_random = False

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.state: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy (N, *output) -> dx (N, *input); fills ``grads``.  Layers with
        parameters also take ``input_grad=False``: grads only, returns None."""
        raise NotImplementedError

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    def macs(self, input_shape: tuple[int, ...]) -> int:
        """Multiply-accumulates per example in forward."""
        return 0

    def window(self, input_shape: tuple[int, ...]):
        """((kh, kw), (sh, sw)) seen by the receptive-field arithmetic."""
        return (1, 1), (1, 1)

    @property
    def needs_build(self) -> bool:
        """Whether the layer still lacks its weights (its input size was left out)."""
        return False

    def build(self, input_shape: tuple[int, ...], rng) -> None:
        """Called by Sequential, in layer order, with the per-example input shape and the model's
        numpy Generator (None: keep the weights the layer holds).  A layer with weights infers the
        input size it was not given and draws its weights from ``rng``, unless it was made with an
        ``rng`` of its own; a layer without weights has nothing to do."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``forward(x, training=False)``: the layer applied for inference."""
        return self.forward(x, training=False)

    def _describe(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe()})"


# Largest kernel size, stride or padding, and largest kh * kw window: the
# kernels compute window offsets and divisors in 32-bit C ints.
MAX_GEOMETRY = 2**31 - 1


def pair(value, name: str, layer: str) -> tuple[int, int]:
    """An int or an (h, w) pair of ints -> (h, w); anything else is a TypeError."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        h, w = value
    else:
        h = w = value
    if any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) for v in (h, w)):
        raise TypeError(f"{layer}: {name} must be an int or a pair of ints, got {value!r}")
    if not all(-MAX_GEOMETRY <= v <= MAX_GEOMETRY for v in (h, w)):  # the kernels index with C int
        raise ValueError(f"{layer}: {name} must be at most {MAX_GEOMETRY} in size, got {value!r}")
    return int(h), int(w)


def count(value, name: str, layer: str) -> int:
    """A positive int (channels, features): TypeError for a non-integer, ValueError for <= 0.

    The same rule as ``pair``: the wrong type of value is a TypeError, a
    value out of range a ValueError.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{layer}: {name} must be a positive int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{layer}: {name} must be a positive int, got {value!r}")
    return int(value)


def check_array(x, layer: str, ndim: int | None, name: str = "input") -> np.ndarray:
    """Validate a float array of ``ndim`` dims (None: any, at least 1); return it C-contiguous."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{layer}: {name} must be a numpy array, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{layer}: {name} dtype must be float32 or float64, got {x.dtype}")
    if (x.ndim != ndim) if ndim is not None else x.ndim < 1:
        raise ValueError(
            f"{layer}: {name} must have {ndim or 'at least 1'} dimensions, got {x.ndim} (shape {x.shape})"
        )
    return np.ascontiguousarray(x)


def check_grad(dy, layer: str, expected_shape: tuple[int, ...], dtype) -> np.ndarray:
    """Validate the upstream gradient against the last forward's output."""
    dy = check_array(dy, layer, len(expected_shape), "gradient")
    if dy.shape != tuple(expected_shape):
        raise ValueError(
            f"{layer}: gradient shape {dy.shape} does not match the forward output {tuple(expected_shape)}"
        )
    return dy.astype(dtype, copy=False)


class WeightedLayer(Layer):
    """A layer whose weights are drawn once its input size is known (Conv2D, Dense).

    ``in_size`` is the input channels or features, None until Sequential builds
    the layer (``build``).  With an input size the weights are drawn at once,
    from ``rng``, else from a fixed seed (0), so that a layer used alone is
    reproducible; Sequential then draws again from its own seed every layer
    made without ``rng`` (see minicnn.model.Sequential).
    """

    SIZE = "in_size"  # the constructor's name for the input size (Conv2D: in_channels, Dense: in_features)

    def __init__(self, in_size, dtype, rng) -> None:
        super().__init__()
        self.dtype = np.dtype(dtype)
        if self.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{type(self).__name__}: dtype must be float32 or float64, got {self.dtype}")
        self._rng = rng
        self._in_size = in_size
        if in_size is not None:
            self._draw(np.random.default_rng(0) if rng is None else rng)

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        """{param: shape}, the weight "W" first; from _in_size."""
        raise NotImplementedError

    def _fan_in(self) -> int:
        raise NotImplementedError

    def _infer(self, input_shape) -> int:
        """The input size read from a per-example input shape (ValueError if it has the wrong rank)."""
        raise NotImplementedError

    def _draw(self, rng) -> None:
        shapes = self._shapes()
        self.params = {"W": he_normal(shapes["W"], self._fan_in(), self.dtype, rng),
                       "b": np.zeros(shapes["b"], dtype=self.dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    @property
    def needs_build(self) -> bool:
        return self._in_size is None

    def build(self, input_shape, rng) -> None:
        if self._in_size is None:
            self._in_size = self._infer(input_shape)
            self._draw(rng if self._rng is None else self._rng)
        elif rng is not None and self._rng is None:
            self._draw(rng)


def require_forward(cache, layer: str):
    if cache is None:
        raise RuntimeError(f"{layer}: backward called before forward(training=True)")
    return cache
