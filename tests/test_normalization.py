"""BatchNorm, dropout and the activations beside ReLU: NumPy references, PyTorch, seeds, state.

test_layers.py checks their numerical gradients and bad input with every other
layer; this file checks values against the references of tests/reference.py
and torch.nn, the fused BatchNorm + ReLU, the dropout masks' statistics and
seeding (Sequential.seed_batch), and the running statistics as model state.
"""
from __future__ import annotations

import numpy as np
import pytest

import minicnn.layers as L
import reference as ref
from minicnn import _batchnorm
from minicnn.model import Sequential, training_memory
from reference import assert_close

DTYPES = [np.float32, np.float64]
# (shape, layer class): odd sizes, a single image, one pixel per map, (N, C, L)
BN_CASES = [((5, 3, 7, 4), L.BatchNorm2D), ((1, 4, 3, 5), L.BatchNorm2D), ((9, 2, 1, 1), L.BatchNorm2D),
            ((2, 16, 9, 11), L.BatchNorm2D), ((7, 5), L.BatchNorm1D), ((3, 6, 4), L.BatchNorm1D)]


def random_bn(cls, channels, dtype, seed=0, **kwargs):
    layer = cls(channels, dtype=dtype, **kwargs)
    rng = np.random.default_rng(seed)
    for array in (*layer.params.values(), *layer.state.values()):
        array[...] = rng.uniform(0.5, 2.0, array.shape)
    return layer


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, cls", BN_CASES)
def test_batchnorm_matches_reference(shape, cls, dtype):
    layer = random_bn(cls, shape[1], dtype)
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 3 + 40).astype(dtype)   # a mean far from 0: no cancellation allowed
    dy = rng.standard_normal(shape).astype(dtype)
    gamma, beta = layer.params["gamma"], layer.params["beta"]
    running = {k: v.copy() for k, v in layer.state.items()}
    y = layer.forward(x)
    assert_close(y, ref.batchnorm_forward(x, gamma, beta, layer.eps), dtype)
    dx, dgamma, dbeta = ref.batchnorm_backward(x, dy, gamma, layer.eps)
    assert_close(layer.backward(dy), dx, dtype)
    assert_close(layer.grads["gamma"], dgamma, dtype)
    assert_close(layer.grads["beta"], dbeta, dtype)
    axes = tuple(a for a in range(len(shape)) if a != 1)
    x64 = x.astype(np.float64)
    assert_close(layer.state["running_mean"], 0.9 * running["running_mean"] + 0.1 * x64.mean(axis=axes), dtype)
    assert_close(layer.state["running_var"], 0.9 * running["running_var"] + 0.1 * x64.var(axis=axes, ddof=1), dtype)
    evaluation = layer.forward(x, training=False)
    assert_close(evaluation, ref.batchnorm_forward(x, gamma, beta, layer.eps, layer.state["running_mean"],
                                                   layer.state["running_var"]), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, cls", BN_CASES)
def test_batchnorm_relu_fused_is_bit_for_bit_the_two_layers(shape, cls, dtype):
    x = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    dy = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    fused, apart, relu = random_bn(cls, shape[1], dtype), random_bn(cls, shape[1], dtype), L.ReLU()
    for training in (True, False):
        y = fused.forward(x, training, relu=True)
        np.testing.assert_array_equal(y, relu.forward(apart.forward(x, training), training))
        assert (y == 0).any() and (y > 0).any()
    fused.forward(x, relu=True)
    relu.forward(apart.forward(x))
    np.testing.assert_array_equal(fused.backward(dy), apart.backward(relu.backward(dy)))
    for key in fused.grads:
        np.testing.assert_array_equal(fused.grads[key], apart.grads[key])


def test_sequential_fuses_batchnorm_and_relu():
    model = Sequential([L.Conv2D(1, 2, 3), L.BatchNorm2D(2), L.ReLU(), L.Flatten(), L.Dense(18, 4),
                        L.BatchNorm1D(4), L.ReLU(), L.Dense(4, 2)], (1, 5, 5))
    assert model.fused_relus == {2, 6}


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_does_not_depend_on_the_thread_count(dtype):
    x = np.random.default_rng(4).standard_normal((6, 7, 33)).astype(dtype)
    dy = np.random.default_rng(5).standard_normal(x.shape).astype(dtype)
    m, a, b = (np.random.default_rng(6).standard_normal(7).astype(dtype) for _ in range(3))
    results = []
    for parts in (1, 2, 3, 7):
        mean, var, s1, s2 = (np.empty(7) for _ in range(4))
        y, dx = np.empty_like(x), np.empty_like(x)
        _batchnorm.channel_stats(x, mean, var, parts)
        _batchnorm.normalize(x, y, m, a, b, True, parts)
        _batchnorm.backward_sums(x, dy, m, a, b, True, s1, s2, parts)
        _batchnorm.backward_dx(x, dy, dx, m, a, b, True, a, b, m, parts)
        results.append((mean, var, y, s1, s2, dx))
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_array_equal(got, want)


def test_batchnorm_refuses_one_value_per_channel_in_training():
    with pytest.raises(ValueError, match="BatchNorm1D: training needs more than 1 value per channel"):
        L.BatchNorm1D(3).forward(np.ones((1, 3)))
    assert L.BatchNorm1D(3).forward(np.ones((1, 3)), training=False).shape == (1, 3)


@pytest.mark.parametrize("kwargs, error", [
    (dict(momentum=1.5), ValueError), (dict(momentum=-0.1), ValueError), (dict(momentum=None), TypeError),
    (dict(eps=0.0), ValueError), (dict(eps=float("inf")), ValueError), (dict(eps="1e-5"), TypeError),
    (dict(affine=1), TypeError), (dict(num_features=0), ValueError), (dict(num_features=2.0), TypeError)])
def test_batchnorm_arguments_are_checked(kwargs, error):
    with pytest.raises(error, match="BatchNorm2D"):
        L.BatchNorm2D(**{"num_features": 3, **kwargs})


def test_batchnorm_params_and_state():
    bn = L.BatchNorm2D(5, dtype=np.float32)
    assert set(bn.params) == set(bn.grads) == {"gamma", "beta"} and set(bn.state) == {"running_mean", "running_var"}
    np.testing.assert_array_equal(bn.params["gamma"], np.ones(5, np.float32))
    np.testing.assert_array_equal(bn.state["running_var"], np.ones(5, np.float32))
    assert all(a.dtype == np.float32 for a in (*bn.params.values(), *bn.state.values()))
    plain = L.BatchNorm1D(5, affine=False)
    assert plain.params == {} and set(plain.state) == {"running_mean", "running_var"}
    assert repr(bn) == "BatchNorm2D(5, momentum=0.1, eps=1e-05, affine=True)"


# ------------------------------------------------------------- PyTorch --

def torch_dtype(torch, dtype):
    return torch.float64 if dtype == np.float64 else torch.float32


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, cls", BN_CASES)
def test_batchnorm_matches_pytorch_in_training_and_evaluation(shape, cls, dtype, affine):
    torch = pytest.importorskip("torch")
    ours = cls(shape[1], momentum=0.3, eps=1e-4, affine=affine, dtype=dtype)
    theirs = (torch.nn.BatchNorm2d if cls is L.BatchNorm2D else torch.nn.BatchNorm1d)(
        shape[1], momentum=0.3, eps=1e-4, affine=affine, dtype=torch_dtype(torch, dtype))
    rng = np.random.default_rng(7)
    if affine:
        for key, param in (("gamma", theirs.weight), ("beta", theirs.bias)):
            ours.params[key][...] = rng.uniform(0.5, 2, shape[1])
            with torch.no_grad():
                param.copy_(torch.from_numpy(ours.params[key]))
    for step in range(4):                                  # running statistics after several steps
        x = (rng.standard_normal(shape) * (step + 1) + step).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = theirs.train()(tx)
        ty.backward(torch.from_numpy(dy))
        assert_close(ours.forward(x), ty.detach().numpy(), dtype)
        assert_close(ours.backward(dy), tx.grad.numpy(), dtype)
        if affine:
            assert_close(ours.grads["gamma"], theirs.weight.grad.numpy(), dtype)
            assert_close(ours.grads["beta"], theirs.bias.grad.numpy(), dtype)
            theirs.zero_grad()
        assert_close(ours.state["running_mean"], theirs.running_mean.numpy(), dtype)
        assert_close(ours.state["running_var"], theirs.running_var.numpy(), dtype)
    x = rng.standard_normal(shape).astype(dtype)
    assert_close(ours.forward(x, training=False), theirs.eval()(torch.from_numpy(x)).detach().numpy(), dtype)


ACTIVATIONS = {
    "LeakyReLU": (lambda: L.LeakyReLU(0.05), lambda t: t.nn.LeakyReLU(0.05)),
    "LeakyReLU default": (L.LeakyReLU, lambda t: t.nn.LeakyReLU()),
    "Tanh": (L.Tanh, lambda t: t.nn.Tanh()),
    "Sigmoid": (L.Sigmoid, lambda t: t.nn.Sigmoid()),
    "GELU": (L.GELU, lambda t: t.nn.GELU()),
    "GELU tanh": (lambda: L.GELU("tanh"), lambda t: t.nn.GELU(approximate="tanh")),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_match_pytorch(name, dtype):
    torch = pytest.importorskip("torch")
    ours, theirs = ACTIVATIONS[name][0](), ACTIVATIONS[name][1](torch)
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((3, 4, 5, 6)) * 4).astype(dtype)
    x.flat[:4] = [0.0, -0.0, 30.0, -30.0]
    dy = rng.standard_normal(x.shape).astype(dtype)
    # PyTorch in float64 on the same values: its float32 GELU rounds tiny gradients to 0, ours are in double
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    ty = theirs(tx)
    ty.backward(torch.from_numpy(dy.astype(np.float64)))
    assert_close(ours.forward(x), ty.detach().numpy(), dtype)
    assert_close(ours.backward(dy), tx.grad.numpy(), dtype)


def test_activation_values_by_hand():
    x = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_array_equal(L.LeakyReLU(0.5).forward(x), [[-1.0, 0.0, 3.0]])
    np.testing.assert_allclose(L.Sigmoid().forward(np.array([[0.0, -800.0, 800.0]])), [[0.5, 0.0, 1.0]])
    from math import erf, sqrt, tanh, pi
    np.testing.assert_allclose(L.GELU().forward(x), [[v * 0.5 * (1 + erf(v / sqrt(2))) for v in x[0]]], rtol=1e-15)
    np.testing.assert_allclose(L.GELU("tanh").forward(x), [[0.5 * v * (1 + tanh(sqrt(2 / pi) * (v + 0.044715 * v ** 3)))
                                                            for v in x[0]]], rtol=1e-15)
    with pytest.raises(ValueError, match="GELU: approximate must be 'none' or 'tanh'"):
        L.GELU("erf")
    with pytest.raises(TypeError, match="LeakyReLU"):
        L.LeakyReLU("0.1")
    with pytest.raises(ValueError, match="LeakyReLU"):
        L.LeakyReLU(float("nan"))


# ------------------------------------------------------------- dropout --

@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_drops_a_share_p_and_scales_the_rest(p):
    x = np.ones((100, 10, 10, 10), np.float32)
    y = L.Dropout(p, rng=np.random.default_rng(0)).forward(x)
    kept = y != 0
    n = x.size
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)   # 5 sigma
    np.testing.assert_allclose(y[kept], np.float32(1 / (1 - p)), rtol=1e-7)
    planes = L.Dropout2D(p, rng=np.random.default_rng(0)).forward(x)
    per_channel = planes.reshape(1000, 100)
    assert ((per_channel == 0).all(axis=1) | (per_channel != 0).all(axis=1)).all()   # whole channels
    share = (per_channel[:, 0] != 0).mean()
    assert abs(share - (1 - p)) < 5 * np.sqrt(p * (1 - p) / 1000)


@pytest.mark.parametrize("cls", [L.Dropout, L.Dropout2D])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_backward_uses_the_forward_mask_and_evaluation_is_identity(cls, dtype):
    layer = cls(0.4, rng=np.random.default_rng(1))
    x = np.random.default_rng(2).uniform(1, 2, (4, 6, 3, 5)).astype(dtype)
    y = layer.forward(x)
    dy = np.random.default_rng(3).standard_normal(x.shape).astype(dtype)
    dx = layer.backward(dy)
    scale = dtype(1 / 0.6)
    np.testing.assert_array_equal(dx, np.where(y != 0, dy * scale, 0))
    np.testing.assert_array_equal(y, np.where(y != 0, x * scale, 0))
    np.testing.assert_array_equal(layer.forward(x, training=False), x)
    np.testing.assert_array_equal(cls(0.0).forward(x), x)
    np.testing.assert_array_equal(cls(1.0).forward(x), np.zeros_like(x))


@pytest.mark.parametrize("bad, error", [(1.5, ValueError), (-0.1, ValueError), ("0.5", TypeError), (True, TypeError)])
def test_dropout_p_is_checked(bad, error):
    with pytest.raises(error, match="Dropout: p"):
        L.Dropout(bad)


def dropout_model():
    return Sequential([L.Dropout(0.5), L.Flatten(), L.Dense(12, 4), L.Dropout(0.5), L.Dense(4, 3)], (3, 2, 2))


def test_seed_batch_makes_the_masks_a_function_of_seed_epoch_batch_and_layer():
    x = np.ones((8, 3, 2, 2))
    a, b = dropout_model(), dropout_model()

    def masks(model, *where):
        model.seed_batch(*where)
        model.forward(x)
        return [layer._cache[0].copy() for layer in model.layers if layer.draws_random]

    first = masks(a, 0, 1, 2)
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(masks(b, 0, 1, 2)))
    for other in [(1, 1, 2), (0, 2, 2), (0, 1, 3)]:
        assert not np.array_equal(first[0], masks(b, *other)[0]), other
    assert not np.array_equal(first[0][:12], first[1][:12])     # each layer its own stream
    np.testing.assert_array_equal(first[0], np.random.default_rng([0, 1, 1, 2, 0]).bit_generator.random_raw(
        48).view(np.uint32)[:96])
    model = Sequential([L.Flatten(), L.Dense(12, 3)], (3, 2, 2))  # nothing random: nothing changes
    model.seed_batch(0, 0, 0)
    assert not hasattr(model.layers[1], "rng")


def test_state_dict_holds_the_running_statistics_and_loads_them_back():
    def make():
        return Sequential([L.Conv2D(1, 2, 3), L.BatchNorm2D(2), L.ReLU(), L.Flatten(), L.Dense(18, 3)], (1, 5, 5))

    a, b = make(), make()
    a.forward(np.random.default_rng(0).standard_normal((4, 1, 5, 5)))
    assert list(a.state_dict()) == ["0.W", "0.b", "1.gamma", "1.beta", "1.running_mean", "1.running_var",
                                    "4.W", "4.b"]
    assert [p for _, _, p in a.slots()] == ["W", "b", "gamma", "beta", "W", "b"]     # state is not trained
    b.load_state_dict({k: v.copy() for k, v in a.state_dict().items()})
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[key], value)
    assert a.n_params == 2 * 9 + 2 + 4 + 18 * 3 + 3 and a.n_state == 4
    assert "state (running statistics, not trained): 4" in a.summary()
    assert "state" not in Sequential([L.Flatten()], (1, 2, 2)).summary()
    rows = training_memory(a, batch_size=8, eval_batch_size=8, optimizer_slots=1, itemsize=4).rows
    assert rows[1].weights == (4 * 3 + 4) * 4           # gamma, beta: value, gradient, momentum; the state once
    assert rows[1].activations == 3 * 8 * 2 * 3 * 3 * 4
