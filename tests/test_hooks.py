"""Models that compute in low precision (gradcam_cli/hooks.py: low_precision_layers, float32_compute)
are explained in float32; and how the model is fed is recorded: the grey row of a 1-channel model,
the note on a model that rescales its input itself and is given a preprocessing as well."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gradcam_cli.decode import GREY_CONVERSION
from gradcam_cli.explainer import Explainer
from gradcam_cli.hooks import float32_compute, low_precision_layers
from gradcam_cli.methods import METHODS
from gradcam_cli.models.in_memory import spec_for_model
from tests.helpers import run

SIZE = 16
NOTE = "preprocesses its input itself"


def small_cnn(keras, channels=3, head_kernel=None):
    """conv 'enc' -> conv 'target' -> GAP -> Dense(3, softmax) 'head'."""
    inputs = keras.Input((SIZE, SIZE, channels))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="enc")(inputs)
    x = keras.layers.Conv2D(5, 3, activation="relu", name="target")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x))
    if head_kernel is not None:
        model.get_layer("head").set_weights([np.full((5, 3), head_kernel, np.float32), np.zeros(3, np.float32)])
    return model


def mixed_and_twin(keras, seed, head_kernel=None):
    """The model built under mixed_float16 and a float32 twin holding the same (float32) weights."""
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = small_cnn(keras, head_kernel=head_kernel)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    twin = small_cnn(keras)
    twin.set_weights(mixed.get_weights())
    return mixed, twin


@pytest.fixture(scope="module")
def mixed_pair(keras):
    return mixed_and_twin(keras, seed=3)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)


def explain(model, images, method="gradcam"):
    return Explainer(spec_for_model(model), method=method, layer="target", batch_size=len(images)).run(
        images, classes=[0])


def policies(model):
    return {layer.name: layer.dtype_policy.name for layer in model._flatten_layers(include_self=True)}


def test_the_mixed_model_computes_in_float16(keras, mixed_pair):
    mixed, twin = mixed_pair
    assert keras.mixed_precision.global_policy().name == "float32"
    assert set(policies(mixed).values()) == {"mixed_float16"} and set(policies(twin).values()) == {"float32"}
    assert {layer.name for layer in low_precision_layers(mixed)} >= {"enc", "target", "head"}
    assert low_precision_layers(twin) == []


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_on_the_mixed_model_equals_the_float32_twin(mixed_pair, images, method):
    mixed, twin = mixed_pair
    before = policies(mixed)
    predicted = np.asarray(mixed(images, training=False))
    got, expected = explain(mixed, images, method), explain(twin, images, method)
    assert np.isfinite(got.heatmaps).all() and expected.heatmaps.max() > 0
    np.testing.assert_allclose(got.heatmaps, expected.heatmaps, rtol=1e-3, atol=1e-6 * expected.heatmaps.max())
    np.testing.assert_allclose(got.probabilities, expected.probabilities, rtol=1e-3, atol=1e-6)
    if expected.saliency is not None:
        np.testing.assert_allclose(got.saliency, expected.saliency, rtol=1e-3, atol=1e-6 * np.abs(expected.saliency).max())
    assert policies(mixed) == before  # still mixed_float16, layer by layer
    after = mixed(images, training=False)
    assert after.dtype == "float16"  # the model computes in float16 again
    np.testing.assert_array_equal(np.asarray(after), predicted)


@pytest.mark.slow
def test_without_float32_compute_small_gradients_underflow_to_an_all_zero_map(keras, images, monkeypatch):
    """A head kernel of 1e-6 and a 12x12 average pool: d score / d activation is about 7e-9, below
    float16's smallest subnormal (6e-8), so in float16 every gradient is 0."""
    mixed, twin = mixed_and_twin(keras, seed=3, head_kernel=1e-6)
    expected = explain(twin, images).heatmaps
    assert expected.max() > 0
    np.testing.assert_allclose(explain(mixed, images).heatmaps, expected, rtol=1e-3, atol=1e-6 * expected.max())
    monkeypatch.setattr("gradcam_cli.probe.low_precision_layers", lambda model: [])
    assert explain(mixed, images).heatmaps.max() == 0


def test_float32_compute_restores_the_policies_when_the_block_raises(keras, mixed_pair):
    mixed, _ = mixed_pair
    layers = low_precision_layers(mixed)
    with pytest.raises(RuntimeError, match="inside"), float32_compute(layers):
        assert {layer.dtype_policy.compute_dtype for layer in layers} == {"float32"}
        assert mixed(np.zeros((1, SIZE, SIZE, 3), np.float32)).dtype == "float32"
        raise RuntimeError("inside")
    assert {layer.dtype_policy.name for layer in layers} == {"mixed_float16"}


def test_nested_low_precision_layers_are_found(keras):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        block = keras.Sequential([keras.layers.Conv2D(4, 3, name="inner")], name="block")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    inputs = keras.Input((SIZE, SIZE, 3))
    outer = keras.Model(inputs, keras.layers.Dense(2, name="outer_head")(block(inputs)))
    assert {layer.name for layer in low_precision_layers(outer)} == {"block", "inner"}


# ---- how the model is fed, in the rows and notes

def rows_of(folder):
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def colour_picture(tmp_path_factory):
    """Left half red, right half blue."""
    picture = np.zeros((SIZE, SIZE, 3), np.uint8)
    picture[:, : SIZE // 2, 0] = 230
    picture[:, SIZE // 2 :, 2] = 230
    path = tmp_path_factory.mktemp("colour") / "colour.png"
    Image.fromarray(picture).save(path)
    return path


@pytest.mark.slow
def test_a_grey_model_s_rows_say_so_and_its_overlay_is_in_colour(keras, tmp_path, colour_picture):
    keras.utils.set_random_seed(5)
    small_cnn(keras, channels=1).save(tmp_path / "grey.keras")
    result = run("explain", colour_picture, "--model", tmp_path / "grey.keras", "-o", tmp_path / "out",
                 "--alpha", "0", "--overlay-size", "original", "--top-k", "2")
    assert result.exit_code == 0, result.output
    rows = rows_of(tmp_path / "out")
    assert len(rows) == 2 and all(row["status"] == "ok" and row["model_input"] == GREY_CONVERSION for row in rows)
    overlay = np.asarray(Image.open(tmp_path / "out" / rows[0]["overlay"]).convert("RGB")).astype(int)
    left, right = overlay[:, : SIZE // 2 - 2], overlay[:, SIZE // 2 + 2 :]
    assert left[..., 0].mean() > 150 and left[..., 2].mean() < 80  # red stays red
    assert right[..., 2].mean() > 150 and right[..., 0].mean() < 80  # blue stays blue


def test_an_rgb_model_s_rows_have_no_model_input(keras, tmp_path, colour_picture):
    keras.utils.set_random_seed(5)
    small_cnn(keras).save(tmp_path / "rgb.keras")
    result = run("explain", colour_picture, "--model", tmp_path / "rgb.keras", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    (row,) = rows_of(tmp_path / "out")
    assert row["status"] == "ok" and "model_input" not in row


@pytest.mark.slow
def test_a_model_that_rescales_its_input_gets_one_note_with_a_preprocessing(keras, tmp_path, caplog):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="target")(x)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "hooks_rescaling_note.keras"  # a name of its own: each note is shown once a process
    keras.Model(inputs, outputs).save(path)
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(3):
        picture = np.random.default_rng(index).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
        Image.fromarray(picture).save(folder / f"{index}.png")
    result = run("explain", folder, "--model", path, "-o", tmp_path / "plain")
    assert result.exit_code == 0, result.output
    assert NOTE not in result.output and NOTE not in caplog.text
    result = run("explain", folder, "--model", path, "--preprocess", "tf", "-o", tmp_path / "tf",
                 "--method", "gradcam", "--top-k", "2", "-b", "1")
    assert result.exit_code == 0, result.output
    shown = (result.output + caplog.text).count(NOTE)
    assert shown == 1, result.output + caplog.text
    assert "scale (Rescaling)" in result.output + caplog.text and "--preprocess none" in result.output + caplog.text
