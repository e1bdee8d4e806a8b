"""Optimizers against their textbook update rules (and PyTorch's when installed)."""
import numpy as np
import pytest

from minicnn.optim import SGD, Adam


def slots_for(p, g):
    return [({"w": p}, {"w": g}, "w")]


def test_sgd_momentum_weight_decay_rule():
    p = np.array([1.0, -2.0])
    g = np.zeros(2)
    opt = SGD(slots_for(p, g), lr=0.1, momentum=0.9, weight_decay=0.01)
    expected, v = p.copy(), None
    for grad in ([0.5, 1.0], [-1.0, 0.25], [0.0, 2.0]):
        g[...] = grad
        opt.step()
        d = np.array(grad) + 0.01 * expected
        v = d if v is None else 0.9 * v + d
        expected = expected - 0.1 * v
        np.testing.assert_allclose(p, expected, rtol=1e-12)


def test_adam_rule():
    p = np.array([1.0, -2.0])
    g = np.zeros(2)
    opt = Adam(slots_for(p, g), lr=0.01)
    expected, m, v = p.copy(), np.zeros(2), np.zeros(2)
    for t, grad in enumerate(([0.5, 1.0], [-1.0, 0.25], [0.0, 2.0]), start=1):
        g[...] = grad
        opt.step()
        m = 0.9 * m + 0.1 * np.array(grad)
        v = 0.999 * v + 0.001 * np.array(grad) ** 2
        expected = expected - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        np.testing.assert_allclose(p, expected, rtol=1e-12)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_matches_torch(name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    p = rng.standard_normal(5)
    g = np.zeros(5)
    tp = torch.tensor(p.copy(), requires_grad=True)
    if name == "sgd":
        ours = SGD(slots_for(p, g), lr=0.05, momentum=0.9, weight_decay=1e-3)
        theirs = torch.optim.SGD([tp], lr=0.05, momentum=0.9, weight_decay=1e-3)
    else:
        ours = Adam(slots_for(p, g), lr=0.01, weight_decay=1e-3)
        theirs = torch.optim.Adam([tp], lr=0.01, weight_decay=1e-3)
    for _ in range(5):
        grad = rng.standard_normal(5)
        g[...] = grad
        ours.step()
        tp.grad = torch.tensor(grad)
        theirs.step()
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-10)


def test_state_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    grads = rng.standard_normal((6, 3))
    p1, g1 = np.ones(3), np.zeros(3)
    a = Adam(slots_for(p1, g1), lr=0.1)
    for grad in grads:
        g1[...] = grad
        a.step()
    p2, g2 = np.ones(3), np.zeros(3)
    b = Adam(slots_for(p2, g2), lr=0.1)
    for grad in grads[:3]:
        g2[...] = grad
        b.step()
    c_p = p2.copy()
    c = Adam(slots_for(c_p, np.zeros(3)), lr=0.1)
    c.load_state_dict(b.state_dict())
    for grad in grads[3:]:
        c.slots[0][1]["w"][...] = grad
        c.step()
    np.testing.assert_array_equal(c_p, p1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_one_pass_update_is_numpys_bit_for_bit(dtype):
    """From the second step on, SGD with momentum runs minicnn._optim's
    one-pass kernel; it must give exactly NumPy's v *= m; v += g; p -= lr * v,
    in the parameters' own type, including inf and NaN gradients."""
    rng = np.random.default_rng(1)
    p = rng.standard_normal((7, 33)).astype(dtype)
    g = np.zeros_like(p)
    opt = SGD(slots_for(p, g), lr=0.0371, momentum=0.87)
    p_ref, v_ref = p.copy(), None
    for step in range(4):
        g[...] = rng.standard_normal(g.shape).astype(dtype)
        if step == 3:
            g[0, :3] = [np.inf, -np.inf, np.nan]
        opt.step()
        if v_ref is None:
            v_ref = g.copy()
        else:
            v_ref *= 0.87
            v_ref += g
        p_ref -= 0.0371 * v_ref
        np.testing.assert_array_equal(opt.velocity[0], v_ref)
        np.testing.assert_array_equal(p, p_ref)
        assert p.dtype == dtype
