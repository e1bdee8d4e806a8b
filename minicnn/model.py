"""Sequential: a stack of layers with one input shape, and its summary table."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from minicnn.layers import BatchNorm1D, BatchNorm2D, Conv2D, Layer, ReLU, Softmax

# Layers whose forward takes relu=True: a ReLU right after one runs inside it.
RELU_FUSING = (Conv2D, BatchNorm2D, BatchNorm1D)


class LayerError(ValueError):
    """A layer that does not fit the shape it is given: ``index``, ``layer``, ``input_shape``
    (per example) and ``reason`` (the layer's own message)."""

    def __init__(self, index: int, layer: Layer, input_shape: tuple[int, ...], reason: Exception) -> None:
        self.index, self.layer, self.input_shape, self.reason = index, layer, tuple(input_shape), str(reason)
        super().__init__(f"layer {index} ({type(layer).__name__}) on input {self.input_shape}: {reason}")


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One line of the summary: per-example output shape, cost, receptive field."""

    name: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    receptive_field: tuple[int, int] | None  # None once the spatial map is gone
    state: int = 0     # elements of running state (BatchNorm's statistics), not trained


class Sequential:
    """Layers applied in order to batches of ``input_shape`` examples.

    Building the model walks the layers once with the per-example shape: each
    layer infers the input size it was not given (Conv2D's ``in_channels``,
    Dense's ``in_features``) and must accept the shape the one before it
    produces (ValueError naming the layer otherwise).

    Weights come from one place: ``seed``.  Every layer made without its own
    ``rng`` draws its weights from ``np.random.default_rng(seed)`` (or from
    ``seed`` itself, a numpy Generator), in layer order, when the model is
    built; so a model built from a config with ``seed: k`` and the same layers
    built here with ``seed=k`` start from the same weights.  ``seed=None``
    leaves the weights a layer already holds as they are and draws those of
    the layers still without (their input size left out) from seed 0.

    A Conv2D or BatchNorm directly followed by a ReLU runs as one step: the
    layer rectifies its output as it writes it (the convolution chunk by chunk
    while it is in cache), and masks the gradient the same way in backward
    (their forward's ``relu``), instead of two more passes over the whole
    activation.  Outputs and gradients are bit for bit those of the two layers
    run apart, but for the bias gradient of a Winograd convolution, summed in
    another order; the ReLU layer itself is then not called.

    Args:
        layers: the layers, first to last.
        input_shape: one example's shape, e.g. (1, 28, 28) (C, H, W) for images.
        seed: an int or a numpy Generator for the weights (see above).

    Shape:
        - Input: (N, *input_shape)
        - Output: (N, *output_shape)

    Example::

        >>> import numpy as np, minicnn as mc
        >>> model = mc.Sequential([mc.Conv2D(out_channels=4, kernel_size=3), mc.ReLU(), mc.MaxPool2D(2),
        ...                        mc.Flatten(), mc.Dense(out_features=10), mc.Softmax()], (1, 8, 8), seed=0)
        >>> model(np.zeros((5, 1, 8, 8), np.float32)).shape
        (5, 10)
        >>> model.n_params, model.output_shape
        (410, (10,))
    """

    def __init__(self, layers: list[Layer], input_shape: tuple[int, ...], seed=None) -> None:
        self.layers = list(layers)
        self.input_shape = tuple(input_shape)
        self.rows = self._propagate(seed)
        # indices of the ReLUs folded into the Conv2D or BatchNorm before them
        self.fused_relus = {i + 1 for i in range(len(self.layers) - 1)
                            if type(self.layers[i]) in RELU_FUSING and type(self.layers[i + 1]) is ReLU}

    def _propagate(self, seed) -> list[LayerRow]:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(0 if seed is None else seed)
        rows = []
        shape = self.input_shape
        rf, jump = (1, 1), (1, 1)
        for i, layer in enumerate(self.layers):
            try:
                layer.build(shape, rng if seed is not None or layer.needs_build else None)
                out = layer.output_shape(shape)
                macs = layer.macs(shape)
                window = layer.window(shape) if len(shape) == 3 else None
            except ValueError as e:
                raise LayerError(i, layer, shape, e) from None
            if window is not None:
                (kh, kw), (sh, sw) = window
                rf = (rf[0] + (kh - 1) * jump[0], rf[1] + (kw - 1) * jump[1])
                jump = (jump[0] * sh, jump[1] * sw)
            params = sum(p.size for p in layer.params.values())
            rows.append(LayerRow(type(layer).__name__, tuple(out), params, macs,
                                 rf if len(out) == 3 else None, sum(a.size for a in layer.state.values())))
            shape = out
        return rows

    def output_shape_for(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The per-example output shape for a per-example ``input_shape`` other than the model's
        (e.g. a larger image), by shape propagation alone: nothing is allocated or run.

        ValueError naming the first layer that refuses the shape (a Dense after a Flatten
        refuses any other spatial size). ``forward`` runs on every shape this accepts.
        """
        shape = tuple(input_shape)
        for i, layer in enumerate(self.layers):
            try:
                shape = tuple(layer.output_shape(shape))
            except ValueError as e:
                raise LayerError(i, layer, shape, e) from None
        return shape

    def accepts(self, input_shape: tuple[int, ...]) -> bool:
        """Whether the model runs on per-example ``input_shape`` and gives its usual output shape
        (the same class scores); ``output_shape_for`` says why not."""
        try:
            return self.output_shape_for(input_shape) == self.output_shape
        except ValueError:
            return False

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``forward(x, training=False)``: the model's outputs for a batch, for inference."""
        return self.forward(x, training=False)

    def parameters(self) -> list[tuple[dict, dict, str]]:
        """What an optimizer updates: (params, grads, key) for every parameter, in layer order.

        Example::

            >>> import minicnn as mc
            >>> model = mc.Sequential([mc.Flatten(), mc.Dense(out_features=3)], (2, 2), seed=0)
            >>> opt = mc.SGD(model.parameters(), lr=0.1)
            >>> [key for _, _, key in model.parameters()]
            ['W', 'b']
        """
        return self.slots()

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.rows[-1].output_shape if self.rows else self.input_shape

    @property
    def n_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def n_state(self) -> int:
        """Elements of running state (not parameters: the optimizer never sees them)."""
        return sum(r.state for r in self.rows)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per example in forward."""
        return sum(r.macs for r in self.rows)

    @property
    def receptive_field(self) -> tuple[int, int] | None:
        """Receptive field of the last layer that still has a spatial map."""
        fields = [r.receptive_field for r in self.rows if r.receptive_field is not None]
        return fields[-1] if fields else None

    @property
    def ends_in_softmax(self) -> bool:
        return bool(self.layers) and isinstance(self.layers[-1], Softmax)

    def forward(self, x: np.ndarray, training: bool = True, logits: bool = False) -> np.ndarray:
        """x (N, *input_shape) -> (N, *output_shape).

        logits=True stops before a final Softmax, for a loss that folds it in.
        """
        layers = self.layers[:-1] if logits and self.ends_in_softmax else self.layers
        for i, layer in enumerate(layers):
            if i in self.fused_relus:
                continue
            if i + 1 in self.fused_relus:
                x = layer.forward(x, training, relu=True)
            else:
                x = layer.forward(x, training)
        return x

    def backward(self, dy: np.ndarray, logits: bool = False, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate dy through the layers (skipping a final Softmax if logits).

        Fills every layer's grads; returns the gradient for the input, or None
        with input_grad=False, which training uses: then the layers below the
        first one with parameters are not run, and that one skips its dx.
        """
        layers = self.layers[:-1] if logits and self.ends_in_softmax else self.layers
        first = 0 if input_grad else next((i for i, layer in enumerate(layers) if layer.params), len(layers))
        for i in range(len(layers) - 1, first - 1, -1):
            if i in self.fused_relus:
                continue      # the Conv2D or BatchNorm below masks dy itself
            if i == first and not input_grad:
                layers[i].backward(dy, input_grad=False)
                return None
            dy = layers[i].backward(dy)
        return dy if input_grad else None

    def slots(self) -> list[tuple[dict, dict, str]]:
        """(params, grads, key) for every parameter, in a fixed order."""
        return [(layer.params, layer.grads, key) for layer in self.layers for key in layer.params]

    def seed_batch(self, seed: int, epoch: int, batch: int) -> None:
        """Give every layer that draws_random a fresh ``rng``, default_rng([seed, 1, epoch, batch, i])
        for layer i: what a training batch draws (dropout masks, ...) follows from its place in the
        run alone, so a resumed run draws what an uninterrupted one does.  Other layers are untouched."""
        for i, layer in enumerate(self.layers):
            if layer.draws_random:
                layer.rng = np.random.default_rng([seed, 1, epoch, batch, i])

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every layer's params and state (running statistics), keyed "i.name" (layer index, array
        name, e.g. "0.W", "1.gamma", "1.running_mean"); the arrays themselves, not copies."""
        return {f"{i}.{key}": array for i, layer in enumerate(self.layers)
                for key, array in (*layer.params.items(), *layer.state.items())}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for name, target in self.state_dict().items():
            if name not in state or state[name].shape != target.shape:
                raise ValueError(f"checkpoint does not match the model at array {name}")
            target[...] = state[name]

    def summary(self) -> str:
        """Keras-style table: layer, output shape, params, MACs, receptive field; totals."""
        head = ("#", "layer", "output shape", "params", "MACs", "RF")
        lines = [(str(i), r.name, "x".join(map(str, r.output_shape)), f"{r.params:,}",
                  f"{r.macs:,}", f"{r.receptive_field[0]}x{r.receptive_field[1]}" if r.receptive_field else "-")
                 for i, r in enumerate(self.rows)]
        lines.insert(0, ("", "input", "x".join(map(str, self.input_shape)), "", "", "1x1"))
        widths = [max(len(row[c]) for row in [head, *lines]) for c in range(len(head))]
        fmt = lambda row: "  ".join(v.rjust(w) if c in (0, 3, 4) else v.ljust(w)
                                    for c, (v, w) in enumerate(zip(row, widths))).rstrip()
        rule = "-" * len(fmt(head))
        rf = self.receptive_field
        out = [fmt(head), rule, *map(fmt, lines), rule,
               f"total params: {self.n_params:,}",
               *([f"state (running statistics, not trained): {self.n_state:,}"] if self.n_state else []),
               f"MACs per image: {self.macs:,}",
               f"receptive field of the last spatial layer: {rf[0]}x{rf[1]}" if rf else "receptive field: -"]
        return "\n".join(out)


@dataclasses.dataclass(frozen=True)
class MemoryRow:
    """One layer's share of the training-memory estimate, in bytes."""

    weights: int       # parameters, gradients and optimizer state
    activations: int   # per training batch: output, backward cache, gradient

    @property
    def total(self) -> int:
        return self.weights + self.activations


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    rows: list[MemoryRow]
    eval_peak: int     # largest input + output of one layer at the evaluation batch size

    @property
    def total(self) -> int:
        weights = sum(r.weights for r in self.rows)
        return weights + max(sum(r.activations for r in self.rows), self.eval_peak)

    @property
    def dominant(self) -> tuple[int, MemoryRow]:
        """(index, row) of the layer with the largest share."""
        return max(enumerate(self.rows), key=lambda ir: ir[1].total)


def training_memory(model: Sequential, batch_size: int, eval_batch_size: int, optimizer_slots: int,
                    itemsize: int = 4) -> MemoryEstimate:
    """Estimate the bytes training ``model`` needs, from shapes alone (nothing is allocated).

    Per layer: its parameters times (1 + 1 gradient + ``optimizer_slots``, e.g.
    1 for SGD momentum, 2 for Adam) and its state once, plus three arrays of its output per
    training batch (the output, the cache a layer keeps for backward, and the
    gradient coming back).  Evaluation runs without caches, one batch of
    ``eval_batch_size`` at a time; it counts when its largest layer input plus
    output exceeds all of training's activations.  Not counted: the data set,
    Python and NumPy themselves, and Conv2D's cache-sized scratch buffers.
    """
    rows, eval_peak, shape = [], 0, model.input_shape
    for row in model.rows:
        out = math.prod(row.output_shape)
        rows.append(MemoryRow((row.params * (2 + optimizer_slots) + row.state) * itemsize,
                              3 * batch_size * out * itemsize))
        eval_peak = max(eval_peak, eval_batch_size * (math.prod(shape) + out) * itemsize)
        shape = row.output_shape
    return MemoryEstimate(rows, eval_peak)
