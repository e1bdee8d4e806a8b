"""The evaluation probes (minicnn.probes), Sequential's other input sizes, and the eval keys."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest
import yaml

import minicnn.layers as L
from minicnn import probes
from minicnn.config import EvalKeys, build_model, load_config
from minicnn.layers.base import Layer
from minicnn.model import Sequential
from minicnn.train import Splits, evaluate, fit_config
from conftest import tiny_config


def position_model(h, w):
    """Class = index of the brightest pixel of a (1, h, w) image (Flatten, Dense identity): every
    move of a one-pixel image changes its class; an all-black image is class 0."""
    dense = L.Dense(h * w, h * w)
    dense.params["W"][...] = np.eye(h * w)
    dense.params["b"][...] = 0
    return Sequential([L.Flatten(), dense], (1, h, w))


def constant_model(h=28, w=28, k=10):
    dense = L.Dense(h * w, k)
    dense.params["W"][...] = 0
    dense.params["b"][...] = np.arange(k)
    return Sequential([L.Flatten(), dense], (1, h, w))


def one_pixel_images(n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, h, w), dtype=np.uint8)
    x[np.arange(n), 0, rng.integers(0, h, n), rng.integers(0, w, n)] = 255
    return x


def global_model(seed=0):
    """conv 3x3 -> relu -> 2x2 max pool -> global average -> dense 10: takes any size >= 4x4."""
    rng = np.random.default_rng(seed)
    return Sequential([L.Conv2D(1, 4, 3, padding=1, rng=rng), L.ReLU(), L.MaxPool2D(2), L.GlobalAvgPool2D(),
                       L.Dense(4, 10, rng=rng)], (1, 28, 28))


# ---------------------------------------------------------------- Sequential on other sizes

def test_output_shape_for_and_accepts_by_shape_propagation():
    model = global_model()
    assert model.output_shape_for((1, 56, 40)) == (10,) and model.accepts((1, 56, 40))
    assert not model.accepts((3, 56, 56))          # Conv2D wants 1 channel
    assert not model.accepts((1, 1, 1))            # the 2x2 pool does not fit
    flat = constant_model()
    assert flat.accepts((1, 28, 28)) and not flat.accepts((1, 40, 40))
    with pytest.raises(ValueError, match=r"layer 1 \(Dense\) on input \(1600,\)"):
        flat.output_shape_for((1, 40, 40))
    assert flat.rows == constant_model().rows      # nothing of the model changed


def test_forward_runs_on_every_size_accepts_says():
    model = global_model()
    for h, w in ((28, 28), (40, 40), (56, 33)):
        x = np.random.default_rng(h).random((3, 1, h, w), dtype=np.float32)
        assert model.forward(x, training=False).shape == (3, 10)
    # a one-image batch at another size is the same as that image's row in a bigger batch
    x = np.random.default_rng(1).random((4, 1, 40, 40), dtype=np.float32)
    np.testing.assert_allclose(model.forward(x[2:3], training=False)[0], model.forward(x, training=False)[2],
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- consistency

def test_consistency_of_a_constant_model_is_one():
    x = np.random.default_rng(0).integers(0, 256, (50, 1, 28, 28)).astype(np.uint8)
    assert probes.consistency(constant_model(), x, 4, batch_size=16) == 1.0


def test_consistency_matches_a_hand_count():
    h = w = 6
    x = one_pixel_images(40, h, w)
    found = probes.consistency(position_model(h, w), x, 1, batch_size=7)
    moves = np.random.default_rng([probes.PROBE_SEED, probes.CONSISTENCY]).integers(-1, 2, size=(2, 40, 2))
    same = 0
    for i in range(40):  # move the one pixel by hand; a pixel moved out leaves a black image: class 0
        (y, x0), classes = np.argwhere(x[i, 0])[0], []
        for k in (0, 1):
            ny, nx = y + moves[k, i, 0], x0 + moves[k, i, 1]
            classes.append(ny * w + nx if 0 <= ny < h and 0 <= nx < w else 0)
        same += classes[0] == classes[1]
    assert found == same / 40
    assert 0 < found < 1  # the case is not trivial: some pairs agree, some do not


def test_consistency_draws_the_same_shifts_for_every_model_and_batch_size():
    x = one_pixel_images(30, 8, 8, seed=3)
    model = position_model(8, 8)
    assert len({probes.consistency(model, x, 2, batch_size=b) for b in (1, 8, 30)}) == 1


# ---------------------------------------------------------------- noise

def test_noise_is_the_images_own_whatever_the_batch():
    z, u, salt = probes.noise_fields(0, (5, 1, 4, 4))
    z2, u2, salt2 = probes.noise_fields(3, (2, 1, 4, 4))  # images 3 and 4 alone
    np.testing.assert_array_equal(z[3:], z2)
    np.testing.assert_array_equal(u[3:], u2)
    np.testing.assert_array_equal(salt[3:], salt2)
    assert not np.array_equal(z[0], z[1]) and not np.array_equal(u[0], u[1])  # each image its own noise
    again = probes.noise_fields(0, (5, 1, 4, 4))
    for a, b in zip((z, u, salt), again):
        np.testing.assert_array_equal(a, b)


def test_noisy_images_gaussian_clipped_and_salt_pepper_shares():
    n, shape = 200, (200, 1, 28, 28)
    x = np.full(shape, 0.5, dtype=np.float32)
    z, u, salt = probes.noise_fields(0, shape)
    g1, g3, s5, s20 = probes.noisy(x, z, u, salt, (0.1, 0.3), (0.05, 0.2))
    assert g1.dtype == np.float32 and g1.min() >= 0 and g3.max() <= 1
    assert (g3 == 0).any() and (g3 == 1).any()                       # clipped, not wrapped
    assert abs(float((g1 - x).std()) - 0.1) < 0.002                  # 0.5 +- 0.1: clipping is rare
    np.testing.assert_allclose(g1 - x, np.clip(0.1 * z, -0.5, 0.5), atol=1e-6)
    for image, p in ((s5, 0.05), (s20, 0.2)):
        changed = image != x
        assert abs(changed.mean() - p) < 0.005 and set(np.unique(image[changed])) == {0.0, 1.0}
        assert abs((image[changed] == 1).mean() - 0.5) < 0.02
    assert not (s5 != x)[s20 == x].any()                             # nested: 5% is inside 20%
    assert n == len(g1)


def test_noise_accuracy_is_reproducible_and_independent_of_the_batch_size(tiny_data):
    model = global_model()
    x, y = tiny_data.x_test[:60], tiny_data.y_test[:60]
    first = probes.noise_accuracy(model, x, y, (0.1, 0.3), (0.05,), batch_size=16)
    assert list(first) == ["gaussian_0.1", "gaussian_0.3", "salt_pepper_0.05"]
    assert probes.noise_accuracy(model, x, y, (0.1, 0.3), (0.05,), batch_size=60) == first
    # and it is the accuracy on the images made by hand from their fields
    z, u, salt = probes.noise_fields(0, x.shape)
    made = probes.noisy(x.astype(np.float32) / 255, z, u, salt, (0.3,), ())[0]
    assert first["gaussian_0.3"] == evaluate(model, made, y)[1]


# ---------------------------------------------------------------- canvases

def test_place_puts_each_image_at_its_offset_on_black():
    x = np.arange(2 * 1 * 2 * 3, dtype=np.uint8).reshape(2, 1, 2, 3) + 1
    out = probes.place(x, 5, np.array([[0, 0], [3, 2]]))
    assert out.shape == (2, 1, 5, 5) and out.dtype == np.uint8
    expected = np.zeros((2, 1, 5, 5), dtype=np.uint8)
    expected[0, 0, 0:2, 0:3] = x[0, 0]
    expected[1, 0, 3:5, 2:5] = x[1, 0]
    np.testing.assert_array_equal(out, expected)


def test_canvas_of_the_input_size_is_the_test_accuracy(tiny_data):
    model = global_model()
    x, y = tiny_data.x_test, tiny_data.y_test
    assert probes.canvas_accuracy(model, x, y, 28, batch_size=64) == evaluate(model, x, y)[1]
    larger = probes.canvas_accuracy(model, x, y, 56, batch_size=64)
    assert 0 <= larger <= 1 and larger == probes.canvas_accuracy(model, x, y, 56, batch_size=7)


def test_a_flatten_dense_model_is_reported_unable_not_an_error(tiny_data):
    assert probes.canvas_accuracy(constant_model(), tiny_data.x_test, tiny_data.y_test, 40, 64) is None


# ---------------------------------------------------------------- the gap, in inference mode

class TrainingOnly(Layer):
    """Identity in inference; in training, every score but class 0's is pushed down by 1e6."""

    def forward(self, x, training=True):
        if not training:
            return x
        out = x.copy()
        out[:, 1:] -= 1e6
        return out


def test_gap_is_taken_in_inference_mode(tiny_data):
    model = Sequential([*global_model().layers, TrainingOnly()], (1, 28, 28))
    x, y = tiny_data.x_train[:100], tiny_data.y_train[:100]
    splits = Splits(x, y, x[:0], y[:0], tiny_data.x_test, tiny_data.y_test)
    fields = probes.run(model, splits, EvalKeys(gap_images=80, canvases=(), gaussian_sigmas=(), salt_pepper=(),
                                                consistency_shift=0), test_accuracy=0.25)
    inference = evaluate(model, x[:80], y[:80])[1]
    in_training = float((model.forward(x[:80].astype(np.float32) / 255, training=True).argmax(1) == y[:80]).mean())
    assert fields["train_eval_accuracy"] == inference != in_training == (y[:80] == 0).mean()
    assert fields["generalisation_gap"] == inference - 0.25
    assert fields["consistency"] is None and fields["noise_accuracy"] == {} and fields["canvas_accuracy"] == {}
    assert fields["probe_seconds"] > 0


def test_gap_images_beyond_the_training_set_take_all_of_it(tiny_data):
    x, y = tiny_data.x_train[:30], tiny_data.y_train[:30]
    splits = Splits(x, y, x[:0], y[:0], x, y)
    fields = probes.run(global_model(), splits, EvalKeys(gap_images=10_000), test_accuracy=0.0)
    assert fields["train_eval_accuracy"] == evaluate(global_model(), x, y)[1]
    assert fields["generalisation_gap"] == fields["train_eval_accuracy"]


def test_probes_take_the_first_probe_images_test_images(tiny_data):
    model = global_model()
    x, y = tiny_data.x_test, tiny_data.y_test
    splits = Splits(x, y, x[:0], y[:0], x, y)
    keys = dict(canvases=(28,), gap_images=0, consistency_shift=0, gaussian_sigmas=(), salt_pepper=())
    for n, expected in ((50, evaluate(model, x[:50], y[:50])[1]), (None, evaluate(model, x, y)[1])):
        fields = probes.run(model, splits, EvalKeys(probe_images=n, **keys), test_accuracy=0.0)
        assert fields["canvas_accuracy"] == {"28": expected}
    assert evaluate(model, x[:50], y[:50])[1] != evaluate(model, x, y)[1]  # the two cases differ


# ---------------------------------------------------------------- the run's summary and the keys

def test_a_run_records_every_probe_in_summary_json(tmp_path, tiny_mnist):
    from minicnn.config import validate

    raw = tiny_config(eval={"canvases": [28, 40], "gaussian_sigmas": [0.2], "salt_pepper": [0.1]})
    summary = fit_config(validate(raw, "tiny.yaml"), tmp_path, mnist=tiny_mnist, log=lambda line: None)
    assert summary["canvas_accuracy"] == {"28": summary["test_accuracy"], "40": None}  # flatten + dense
    assert set(summary["noise_accuracy"]) == {"gaussian_0.2", "salt_pepper_0.1"}
    assert 0 <= summary["consistency"] <= 1
    assert summary["generalisation_gap"] == pytest.approx(summary["train_eval_accuracy"] - summary["test_accuracy"])
    row = probes.result_fields(summary)
    assert probes.columns(row) == ["consistency", "gaussian_0.2", "salt_pepper_0.1", "canvas_28", "canvas_40",
                                   "train_eval_accuracy", "generalisation_gap", "probe_seconds"]
    assert row["canvas_40"] == ""  # an empty cell of results.csv


def test_default_eval_keys_and_canvases_that_do_not_fit_a_larger_input(tmp_path):
    from minicnn.config import validate

    config = validate(tiny_config(), "tiny.yaml")
    assert (config.eval.consistency_shift, config.eval.gaussian_sigmas, config.eval.salt_pepper,
            config.eval.canvases, config.eval.gap_images, config.eval.probe_images) == \
        (2, (0.1, 0.2, 0.3), (0.05, 0.1, 0.2), (40, 56), 5000, 5000)
    assert config.resolved["eval"]["canvases"] == [40, 56]
    raw = tiny_config(data={"dataset": "npz", "path": "x.npz"})
    raw["model"]["input_shape"] = [1, 48, 48]
    assert validate(raw, str(tmp_path / "c.yaml")).eval.canvases == (56,)  # a default 40 would not hold it


@pytest.mark.parametrize("key, value, words", [
    ("consistency_shift", -1, "integer >= 0"),
    ("consistency_shift", 1001, "at most 1,000"),
    ("gaussian_sigmas", [0], "(0, 1]"),
    ("gaussian_sigmas", [0.1, 1.5], "(0, 1]"),
    ("gaussian_sigmas", 0.1, "list"),
    ("salt_pepper", [0.1, 0.1], "distinct"),
    ("salt_pepper", ["a"], "(0, 1]"),
    ("canvases", [0], "positive"),
    ("canvases", [300], "at most 256"),
    ("canvases", [40, 40], "distinct"),
    ("canvases", [20], "at least as large as the input's 28x28"),
    ("gap_images", -5, "integer >= 0"),
    ("gap_images", 1.5, "integer >= 0"),
    ("probe_images", 0, "positive integer or null"),
])
def test_bad_eval_values_exit_2_naming_the_key(tmp_path, run_cli, key, value, words):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(eval={key: value})))
    status, _, err = run_cli("summary", path)
    where = f"eval.{key}[0]" if key == "canvases" and value == [20] else f"eval.{key}"
    assert status == 2 and where in err and words in err, err


def test_shipped_configs_keep_their_models_and_take_the_probe_defaults():
    for name, takes_canvas in (("max_pool", False), ("global_pool", True)):
        config = load_config(pathlib.Path(__file__).resolve().parent.parent / "configs" / f"{name}.yaml")
        assert build_model(config, allocate=False).accepts((1, 56, 56)) is takes_canvas
