"""Heads other than softmax (binary, multi-label, regression), several outputs: detection, the
differentiated score, what is reported and recorded, and the command line around them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gradcam_cli.cli import cli
from gradcam_cli.errors import UnsupportedModel
from gradcam_cli.explainer import Explainer
from gradcam_cli.heads import detect_head, select_output
from gradcam_cli.models import resolve_model
from gradcam_cli.models.in_memory import spec_for_model

SIZE = 24


def _trunk(keras, inputs):
    x = keras.layers.Conv2D(6, 3, activation="relu", name="target")(inputs)
    x = keras.layers.Conv2D(5, 3, activation="tanh", name="after")(x)
    return keras.layers.GlobalAveragePooling2D(name="gap")(x)


def head_model(keras, units: int, activation: str | None, name: str):
    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Dense(units, activation=activation, name="head")(_trunk(keras, inputs))
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="module")
def models(keras):
    keras.utils.set_random_seed(7)
    return {
        "binary": head_model(keras, 1, "sigmoid", "binary"),
        "multilabel": head_model(keras, 4, "sigmoid", "multilabel"),
        "regression": head_model(keras, 1, None, "regression"),
        "relu_regression": head_model(keras, 2, "relu", "counts"),
        "logits": head_model(keras, 3, None, "logits"),
    }


@pytest.fixture(scope="module")
def two_output_model(keras):
    inputs = keras.Input((SIZE, SIZE, 3))
    features = _trunk(keras, inputs)
    kind = keras.layers.Dense(3, activation="softmax", name="kind")(features)
    age = keras.layers.Dense(1, name="age")(features)
    return keras.Model(inputs, [kind, age], name="two_outputs")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(3).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)


def reference_gradcam(keras, model, images, score_of_output):
    """Grad-CAM of ``score_of_output(pre-activation head output)`` with sub-models built here."""
    import tensorflow as tf

    head = model.get_layer("head")
    to_target = keras.Model(model.inputs, model.get_layer("target").output)
    tail = keras.Model(model.get_layer("target").output, head.input)
    activations = tf.constant(to_target(images))
    with tf.GradientTape() as tape:
        tape.watch(activations)
        pre_activation = tf.matmul(tail(activations), head.kernel) + head.bias
        score = tf.reduce_sum(score_of_output(pre_activation))
    gradients = tape.gradient(score, activations).numpy()
    weights = gradients.mean(axis=(1, 2))
    return np.maximum(np.einsum("bhwk,bk->bhw", activations.numpy(), weights), 0)


def test_head_detection(models, keras, logits_twin, gap_dense_model):
    kinds = {name: detect_head(model).kind for name, model in models.items()}
    assert kinds == {"binary": "binary", "multilabel": "multilabel", "regression": "regression",
                     "relu_regression": "regression", "logits": "softmax"}
    separate_softmax, logits_only = logits_twin
    assert detect_head(separate_softmax).kind == detect_head(gap_dense_model).kind == "softmax"
    assert detect_head(logits_only).source == "output"
    assert detect_head(models["binary"]).num_classes == 2


def test_binary_head_explains_both_classes(keras, models, images):
    model = models["binary"]
    spec = spec_for_model(model)
    assert [spec.label(0), spec.label(1)] == ["negative", "positive"]
    result = Explainer(spec, layer="target", batch_size=3).run(images, classes=[0, 1])
    probability = model.predict(images / 1.0, verbose=0)[:, 0]
    np.testing.assert_allclose(result.probabilities[:, 1], probability, rtol=1e-5)
    np.testing.assert_allclose(result.probabilities[:, 0], 1 - probability, rtol=1e-4, atol=1e-6)
    for class_index, sign in ((0, -1.0), (1, 1.0)):
        expected = reference_gradcam(keras, model, images, lambda z, sign=sign: sign * z[:, 0])
        assert expected.max() > 0
        np.testing.assert_allclose(result.heatmaps[:, class_index], expected, rtol=2e-3, atol=1e-6 * expected.max())
    top1 = Explainer(spec, layer="target", batch_size=3).run(images, top_k=1).class_ids[:, 0]
    np.testing.assert_array_equal(top1, (probability > 0.5).astype(int))


def test_cam_on_a_binary_head_negates_the_weights_for_the_negative_class(models, images):
    spec = spec_for_model(models["binary"])
    cam = Explainer(spec, method="cam", batch_size=3).run(images, classes=[0, 1]).heatmaps
    gradcam = Explainer(spec, method="gradcam", batch_size=3).run(images, classes=[0, 1]).heatmaps
    positions = gradcam.shape[-1] * gradcam.shape[-2]  # CAM = Grad-CAM * h * w on a GAP -> Dense head
    assert gradcam[:, 0].max() > 0 and gradcam[:, 1].max() > 0
    np.testing.assert_allclose(cam, gradcam * positions, rtol=2e-3, atol=1e-5 * cam.max())


def test_api_explains_a_chosen_output(two_output_model, images):
    from gradcam_cli.api import explain

    result = explain(two_output_model, images.astype(np.uint8), model_output="age", layer="target")
    assert result.spec.head.kind == "regression" and result.label(0) == "value"


def test_binary_labels_file_names_both_classes(models):
    spec = spec_for_model(models["binary"], labels=["cat", "dog"])
    assert [spec.label(0), spec.label(1)] == ["cat", "dog"]


def test_multilabel_units_are_their_own_classes(keras, models, images):
    model = models["multilabel"]
    result = Explainer(spec_for_model(model), layer="target", batch_size=3).run(images, top_k=2)
    probabilities = model.predict(images, verbose=0)
    np.testing.assert_allclose(result.probabilities, probabilities, rtol=1e-5)
    np.testing.assert_array_equal(result.class_ids, np.argsort(-probabilities, axis=1)[:, :2])
    expected = reference_gradcam(keras, model, images, lambda z: z[:, 3])
    explicit = Explainer(spec_for_model(model), layer="target", batch_size=3).run(images, classes=[3])
    np.testing.assert_allclose(explicit.heatmaps[:, 0], expected, rtol=2e-3, atol=1e-6 * expected.max())


def test_regression_reports_the_value_and_differentiates_before_relu(keras, models, images):
    model = models["regression"]
    spec = spec_for_model(model)
    assert spec.label(0) == "value"
    result = Explainer(spec, layer="target", batch_size=3).run(images)
    np.testing.assert_allclose(result.probabilities[:, 0], model.predict(images, verbose=0)[:, 0], rtol=1e-5)
    counts = models["relu_regression"]
    result = Explainer(spec_for_model(counts), layer="target", batch_size=3).run(images, classes=[1])
    np.testing.assert_allclose(result.probabilities, counts.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    expected = reference_gradcam(keras, counts, images, lambda z: z[:, 1])  # before the ReLU
    np.testing.assert_allclose(result.heatmaps[:, 0], expected, rtol=2e-3, atol=1e-6 * max(expected.max(), 1e-9))


def test_output_selection(two_output_model):
    with pytest.raises(UnsupportedModel, match=r"2 outputs: 0 'kind' \(None, 3\), 1 'age' \(None, 1\)"):
        select_output(two_output_model, None)
    assert select_output(two_output_model, "age") == 1 and select_output(two_output_model, "0") == 0
    with pytest.raises(UnsupportedModel, match="model_output=5: no such output"):
        select_output(two_output_model, 5)
    assert detect_head(two_output_model, 1).kind == "regression"


def test_second_output_is_explained_not_the_first(two_output_model, images):
    spec = spec_for_model(two_output_model)
    spec.model_output = "age"
    result = Explainer(spec, layer="target", batch_size=3).run(images)
    age = two_output_model.predict(images, verbose=0)[1][:, 0]
    np.testing.assert_allclose(result.probabilities[:, 0], age, rtol=1e-5)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, models, two_output_model):
    folder = tmp_path_factory.mktemp("heads")
    paths = {}
    for name, model in {**models, "two": two_output_model}.items():
        paths[name] = folder / f"{name}.keras"
        model.save(paths[name])
    picture = np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    from PIL import Image

    Image.fromarray(picture).save(folder / "a.png")
    paths["image"] = folder / "a.png"
    return paths


def manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def test_cli_multi_output_without_output_lists_them_and_exits_2(saved, tmp_path):
    result = run("explain", saved["image"], "--model", saved["two"], "-o", tmp_path)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    message = [line for line in result.output.splitlines() if line.strip()]
    assert len(message) == 1 and "'kind'" in message[0] and "'age'" in message[0] and "--model-output" in message[0]
    result = run("explain", saved["image"], "--model", saved["two"], "--model-output", "nope", "-o", tmp_path)
    assert result.exit_code == 2 and "no such output" in result.output


def test_cli_records_head_value_and_output(saved, tmp_path):
    result = run("explain", saved["image"], "--model", saved["two"], "--model-output", "age", "-o", tmp_path / "age")
    assert result.exit_code == 0, result.output
    assert "value = " in result.output and "%" not in result.output.split("\n")[0]
    row = manifest(tmp_path / "age")[0]
    assert row["head"] == "regression" and row["output"] == "age" and row["probability"] is None
    assert row["label"] == "value" and isinstance(row["value"], float)
    result = run("explain", saved["image"], "--model", saved["binary"], "--class", "negative", "-o", tmp_path / "bin")
    assert result.exit_code == 0, result.output
    row = manifest(tmp_path / "bin")[0]
    assert row["head"] == "binary" and row["label"] == "negative" and 0 <= row["probability"] <= 1
    assert {label for _, label, _ in row["top"]} == {"negative", "positive"}


def test_resolve_model_passes_output(saved):
    spec = resolve_model(str(saved["two"]), model_output=1)
    assert spec.head.kind == "regression" and spec.head.output_name == "age"
