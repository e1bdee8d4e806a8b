"""Optimizers.  Each step reads every (layer, key) slot of a model's params.

The update rules match PyTorch's torch.optim.SGD and torch.optim.Adam, so a
learning rate tuned there means the same here.
"""
from __future__ import annotations

import numpy as np

from minicnn import _optim, threads


def _fused(p, g, v) -> bool:
    """Whether the one-pass kernel can update p: same float type, all contiguous."""
    return (p.dtype == g.dtype == v.dtype and p.dtype in (np.float32, np.float64)
            and p.flags.c_contiguous and g.flags.c_contiguous and v.flags.c_contiguous)


class Optimizer:
    """Base class: ``step()`` updates every slot from its gradient.

    ``slots``: (params dict, grads dict, key) triples, ``Sequential.parameters()``.
    ``lr`` is the rate of the next step (a schedule sets it before every batch);
    ``base_lr``, the rate the optimizer was made with, is what schedules scale.
    """

    def __init__(self, slots, lr: float) -> None:
        self.slots = list(slots)
        self.lr = self.base_lr = float(lr)
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        for i, (params, grads, key) in enumerate(self.slots):
            self._update(i, params[key], grads[key])

    def _update(self, i: int, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat dict of arrays for checkpoints."""
        return {"steps": np.array(self.steps)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.steps = int(state["steps"])


class SGD(Optimizer):
    r"""Stochastic gradient descent with heavy-ball momentum, PyTorch's ``torch.optim.SGD``.

    .. math::
        v \leftarrow \mu v + (g + \lambda p), \qquad p \leftarrow p - \eta v

    with :math:`v` starting at the first step's gradient.  The defaults are
    the config's (``train.optimizer`` of a YAML file): this signature is where
    they are declared.

    Args:
        slots: what to update, ``model.parameters()``.
        lr: learning rate :math:`\eta`. Default: 0.05.
        momentum: :math:`\mu`, in [0, 1). Default: 0.9.
        weight_decay: L2 penalty :math:`\lambda` added to the gradient. Default: 0.

    Example::

        >>> import numpy as np, minicnn as mc
        >>> model = mc.Sequential([mc.Flatten(), mc.Dense(out_features=2)], (3,), seed=0)
        >>> opt = mc.SGD(model.parameters(), lr=0.1)
        >>> opt.momentum
        0.9
    """

    def __init__(self, slots, lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 0.0) -> None:
        super().__init__(slots, lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.velocity = [np.zeros_like(params[key]) for params, _, key in self.slots]

    def step(self) -> None:
        """With momentum and no weight decay, from the second step on, every
        parameter in one pass on minicnn's threads (minicnn._optim), when all
        qualify (_fused); else one parameter at a time in NumPy."""
        if self.momentum and not self.weight_decay and self.steps >= 1:
            triples = [(params[key], grads[key], v) for (params, grads, key), v in zip(self.slots, self.velocity)]
            if all(_fused(*t) and t[0].ndim for t in triples):
                self.steps += 1
                _optim.sgd_momentum_all(triples, self.lr, self.momentum, threads.KERNEL_THREADS)
                return
        super().step()

    def _update(self, i, p, g):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            v = self.velocity[i]
            if self.steps > 1 and _fused(p, g, v):
                # the three lines below, in one pass (minicnn._optim)
                _optim.sgd_momentum(p.reshape(-1), g.reshape(-1), v.reshape(-1), self.lr, self.momentum)
                return
            if self.steps == 1:
                v[...] = g  # PyTorch starts the buffer at the first gradient
            else:
                v *= self.momentum
                v += g
            g = v
        p -= self.lr * g

    def state_dict(self):
        state = super().state_dict()
        state.update({f"velocity.{i}": v for i, v in enumerate(self.velocity)})
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        for i, v in enumerate(self.velocity):
            v[...] = state[f"velocity.{i}"]


class Adam(Optimizer):
    r"""Adam (Kingma & Ba) with bias correction, PyTorch's ``torch.optim.Adam``; weight decay is
    added to the gradient.

    .. math::
        m \leftarrow \beta_1 m + (1 - \beta_1) g, \quad v \leftarrow \beta_2 v + (1 - \beta_2) g^2, \quad
        p \leftarrow p - \eta \, \hat m / (\sqrt{\hat v} + \epsilon)

    Args:
        slots: what to update, ``model.parameters()``.
        lr: learning rate :math:`\eta`. Default: 0.001.
        beta1, beta2: moment decays. Default: 0.9, 0.999.
        eps: added to the denominator. Default: 1e-8.
        weight_decay: L2 penalty added to the gradient. Default: 0.

    Example::

        >>> import minicnn as mc
        >>> model = mc.Sequential([mc.Dense(2, 2)], (2,), seed=0)
        >>> mc.Adam(model.parameters()).lr
        0.001
    """

    def __init__(self, slots, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(slots, lr)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.weight_decay = float(weight_decay)
        self.m = [np.zeros_like(params[key]) for params, _, key in self.slots]
        self.v = [np.zeros_like(params[key]) for params, _, key in self.slots]

    def _update(self, i, p, g):
        if self.weight_decay:
            g = g + self.weight_decay * p
        m, v = self.m[i], self.v[i]
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        m_hat = m / (1 - self.beta1 ** self.steps)
        v_hat = v / (1 - self.beta2 ** self.steps)
        p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def state_dict(self):
        state = super().state_dict()
        state.update({f"m.{i}": a for i, a in enumerate(self.m)})
        state.update({f"v.{i}": a for i, a in enumerate(self.v)})
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        for i in range(len(self.slots)):
            self.m[i][...] = state[f"m.{i}"]
            self.v[i][...] = state[f"v.{i}"]


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
