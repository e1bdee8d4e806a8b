"""Sequential: whole-network gradient check, summary arithmetic, loss."""
import numpy as np
import pytest

import minicnn.layers as L
from minicnn.losses import softmax_cross_entropy
from minicnn.model import Sequential


def small_net(rng):
    kw = dict(dtype=np.float64, rng=rng)
    return Sequential([
        L.Conv2D(1, 3, 3, padding=1, **kw), L.ReLU(), L.MaxPool2D(2),
        L.Conv2D(3, 4, (3, 2), stride=(1, 2), **kw), L.ReLU(), L.AvgPool2D(2, 1, 1),
        L.Flatten(), L.Dense(4 * 3 * 3, 5, **kw), L.Softmax(),
    ], (1, 8, 8))


def loss_of(model, x, y):
    return softmax_cross_entropy(model.forward(x, logits=True), y)[0]


def test_whole_network_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    model = small_net(rng)
    x = rng.standard_normal((3, 1, 8, 8))
    y = np.array([0, 3, 4])
    _, d = softmax_cross_entropy(model.forward(x, logits=True), y)
    dx = model.backward(d, logits=True)
    eps = 1e-6
    for layer in model.layers:
        for key, p in layer.params.items():
            flat = p.reshape(-1)
            for i in rng.choice(flat.size, min(flat.size, 12), replace=False):
                old = flat[i]
                flat[i] = old + eps
                up = loss_of(model, x, y)
                flat[i] = old - eps
                down = loss_of(model, x, y)
                flat[i] = old
                numeric = (up - down) / (2 * eps)
                assert layer.grads[key].reshape(-1)[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8)
    flat = x.reshape(-1)
    for i in rng.choice(flat.size, 12, replace=False):
        old = flat[i]
        flat[i] = old + eps
        up = loss_of(model, x, y)
        flat[i] = old - eps
        down = loss_of(model, x, y)
        flat[i] = old
        assert dx.reshape(-1)[i] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)


def test_softmax_cross_entropy_is_stable_and_correct():
    logits = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    loss, grad = softmax_cross_entropy(logits, np.array([0, 2]))
    p = np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum()
    assert loss == pytest.approx((0 - np.log(p[2])) / 2)
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad[1], (p - [0, 0, 1]) / 2)


def test_summary_counts_params_macs_and_receptive_field():
    model = Sequential([L.Conv2D(1, 2, 3), L.ReLU(), L.MaxPool2D(2), L.Conv2D(2, 4, 3, stride=2),
                        L.GlobalAvgPool2D(), L.Dense(4, 10)], (1, 16, 16))
    rows = model.rows
    assert [r.output_shape for r in rows] == [(2, 14, 14), (2, 14, 14), (2, 7, 7), (4, 3, 3), (4,), (10,)]
    assert [r.params for r in rows] == [20, 0, 0, 76, 0, 50]
    assert [r.macs for r in rows] == [2 * 14 * 14 * 9, 0, 0, 4 * 3 * 3 * 18, 0, 40]
    # rf: 3 -> (pool 2, jump 1) 4 -> (conv 3, jump 2) 8
    assert [r.receptive_field for r in rows] == [(3, 3), (3, 3), (4, 4), (8, 8), None, None]
    assert model.receptive_field == (8, 8)
    text = model.summary()
    assert "total params: 146" in text and "MACs per image: 4,216" in text and "8x8" in text


def test_building_a_model_that_does_not_fit_names_the_layer():
    with pytest.raises(ValueError, match=r"layer 2 \(MaxPool2D\)"):
        Sequential([L.Conv2D(1, 2, 3), L.ReLU(), L.MaxPool2D(5)], (1, 6, 6))


def backward_calls(model):
    """Record which layers' backward ran, and with which input_grad."""
    calls = []
    for i, layer in enumerate(model.layers):
        def spy(dy, input_grad=True, _i=i, _orig=layer.backward):
            calls.append((_i, input_grad))
            return _orig(dy) if input_grad else _orig(dy, input_grad=False)
        layer.backward = spy
    return calls


@pytest.mark.parametrize("first", ["conv", "relu_then_conv", "dense_only", "no_params"])
def test_backward_without_input_grad_fills_the_same_grads_and_skips_the_rest(first):
    rng = np.random.default_rng(3)
    kw = dict(dtype=np.float64, rng=rng)
    layers = {
        "conv": [L.Conv2D(1, 3, 3, padding=1, **kw), L.ReLU(), L.Flatten(), L.Dense(3 * 8 * 8, 5, **kw)],
        "relu_then_conv": [L.ReLU(), L.MaxPool2D(2), L.Conv2D(1, 2, 3, **kw), L.Flatten(), L.Dense(2 * 2 * 2, 5, **kw)],
        "dense_only": [L.Flatten(), L.Dense(64, 5, **kw)],
        "no_params": [L.MaxPool2D(2), L.Flatten()],
    }[first]
    model = Sequential(layers, (1, 8, 8))
    x = rng.standard_normal((4, 1, 8, 8))
    out = model.forward(x)
    d = rng.standard_normal(out.shape)
    dx = model.backward(d)
    expected = {(i, k): g.copy() for i, layer in enumerate(model.layers) for k, g in layer.grads.items()}
    for layer in model.layers:
        for g in layer.grads.values():
            g[...] = np.nan
    calls = backward_calls(model)
    assert model.backward(d, input_grad=False) is None
    assert dx.shape == x.shape
    for (i, k), g in expected.items():
        np.testing.assert_array_equal(model.layers[i].grads[k], g)
    with_params = [i for i, layer in enumerate(model.layers) if layer.params]
    if with_params:  # nothing below the first layer with parameters runs; it skips its dx
        lowest = with_params[0]
        assert calls[-1] == (lowest, False)
        assert [i for i, _ in calls] == [i for i in range(len(model.layers) - 1, lowest - 1, -1)
                                         if i not in model.fused_relus]
    else:
        assert calls == []


def run_apart(layers, x, dy):
    """Forward and backward through ``layers`` one at a time, nothing fused."""
    for layer in layers:
        x = layer.forward(x)
    out = x
    for layer in reversed(layers):
        dy = layer.backward(dy)
    return out, dy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("conv", [
    dict(c=8, o=5, k=3, stride=1, padding=1, hw=(9, 7)),      # Winograd
    dict(c=1, o=4, k=3, stride=1, padding=1, hw=(20, 18)),    # im2col, one product per image
    dict(c=3, o=4, k=(3, 2), stride=2, padding=1, hw=(9, 8)),  # im2col, one product per chunk
])
def test_conv_then_relu_runs_fused_and_equals_the_two_layers_apart(conv, dtype):
    """Sequential folds each ReLU into the Conv2D before it; outputs, weight
    gradients and dx are bit for bit those of the layers run one by one,
    including NaN, +-inf and exact zeros in the input and the gradient."""
    def layers():
        rng = np.random.default_rng(5)
        kw = dict(dtype=dtype, rng=rng)
        return [L.Conv2D(conv["c"], conv["o"], conv["k"], conv["stride"], conv["padding"], **kw), L.ReLU(),
                L.Conv2D(conv["o"], 2, 1, **kw), L.ReLU(), L.ReLU()]
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, conv["c"], *conv["hw"])).astype(dtype)
    x.reshape(-1)[:4] = [np.nan, np.inf, -np.inf, 0.0]
    fused = Sequential(layers(), (conv["c"], *conv["hw"]))
    assert fused.fused_relus == {1, 3}
    y = fused.forward(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dy.reshape(-1)[-3:] = [np.nan, np.inf, 0.0]
    dx = fused.backward(dy)
    apart = layers()
    y_ref, dx_ref = run_apart(apart, x, dy)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref)
    for a, b in zip(fused.layers, apart):
        for key in a.grads:
            if key == "b":  # a sum over the batch: the fused Winograd path adds in another order
                np.testing.assert_allclose(a.grads[key], b.grads[key], rtol=10 * np.finfo(dtype).eps)
            else:
                np.testing.assert_array_equal(a.grads[key], b.grads[key])
    assert (y >= 0).all() or np.isnan(y).any()
    assert fused.layers[1]._cache is None  # the fused ReLU layer itself never ran
