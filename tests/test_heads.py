"""What a model's output means (gradcam_cli/heads.py): head detection, the differentiated score of
each kind (binary, multi-label, regression, segmentation), what is reported, and output selection."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli.errors import UnsupportedModel
from gradcam_cli.explainer import Explainer
from gradcam_cli.graph import select_output
from gradcam_cli.heads import detect_head
from gradcam_cli.models.in_memory import spec_for_model
from tests.references import NEVER


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


def test_head_detection(head_models, keras, logits_twin, gap_dense_model):
    kinds = {name: detect_head(model).kind for name, model in head_models.items()}
    assert kinds == {"binary": "binary", "multilabel": "multilabel", "regression": "regression",
                     "relu_regression": "regression", "logits": "softmax"}
    separate_softmax, logits_only = logits_twin
    assert detect_head(separate_softmax).kind == detect_head(gap_dense_model).kind == "softmax"
    assert detect_head(logits_only).source == "output"
    assert detect_head(head_models["binary"]).num_classes == 2


@pytest.mark.slow
def test_binary_head_explains_both_classes(keras, head_models, head_images):
    model = head_models["binary"]
    spec = spec_for_model(model)
    assert [spec.label(0), spec.label(1)] == ["negative", "positive"]
    result = Explainer(spec, layer="target", batch_size=3).run(head_images, classes=[0, 1])
    probability = model.predict(head_images / 1.0, verbose=0)[:, 0]
    np.testing.assert_allclose(result.probabilities[:, 1], probability, rtol=1e-5)
    np.testing.assert_allclose(result.probabilities[:, 0], 1 - probability, rtol=1e-4, atol=1e-6)
    for class_index, sign in ((0, -1.0), (1, 1.0)):
        expected = reference_gradcam(keras, model, head_images, lambda z, sign=sign: sign * z[:, 0])
        assert expected.max() > 0
        np.testing.assert_allclose(result.heatmaps[:, class_index], expected, rtol=2e-3, atol=1e-6 * expected.max())
    top1 = Explainer(spec, layer="target", batch_size=3).run(head_images, top_k=1).class_ids[:, 0]
    np.testing.assert_array_equal(top1, (probability > 0.5).astype(int))


def test_binary_labels_file_names_both_classes(head_models):
    spec = spec_for_model(head_models["binary"], labels=["cat", "dog"])
    assert [spec.label(0), spec.label(1)] == ["cat", "dog"]


@pytest.mark.slow
def test_multilabel_units_are_their_own_classes(keras, head_models, head_images):
    model = head_models["multilabel"]
    result = Explainer(spec_for_model(model), layer="target", batch_size=3).run(head_images, top_k=2)
    probabilities = model.predict(head_images, verbose=0)
    np.testing.assert_allclose(result.probabilities, probabilities, rtol=1e-5)
    np.testing.assert_array_equal(result.class_ids, np.argsort(-probabilities, axis=1)[:, :2])
    expected = reference_gradcam(keras, model, head_images, lambda z: z[:, 3])
    explicit = Explainer(spec_for_model(model), layer="target", batch_size=3).run(head_images, classes=[3])
    np.testing.assert_allclose(explicit.heatmaps[:, 0], expected, rtol=2e-3, atol=1e-6 * expected.max())


@pytest.mark.slow
def test_regression_reports_the_value_and_differentiates_before_relu(keras, head_models, head_images):
    model = head_models["regression"]
    spec = spec_for_model(model)
    assert spec.label(0) == "value"
    result = Explainer(spec, layer="target", batch_size=3).run(head_images)
    np.testing.assert_allclose(result.probabilities[:, 0], model.predict(head_images, verbose=0)[:, 0], rtol=1e-5)
    counts = head_models["relu_regression"]
    result = Explainer(spec_for_model(counts), layer="target", batch_size=3).run(head_images, classes=[1])
    np.testing.assert_allclose(result.probabilities, counts.predict(head_images, verbose=0), rtol=1e-5, atol=1e-6)
    expected = reference_gradcam(keras, counts, head_images, lambda z: z[:, 1])  # before the ReLU
    np.testing.assert_allclose(result.heatmaps[:, 0], expected, rtol=2e-3, atol=1e-6 * max(expected.max(), 1e-9))


def test_output_selection(two_output_model):
    with pytest.raises(UnsupportedModel, match=r"2 outputs: 0 'kind' \(None, 3\), 1 'age' \(None, 1\)"):
        select_output(two_output_model, None)
    assert select_output(two_output_model, "age") == 1 and select_output(two_output_model, "0") == 0
    with pytest.raises(UnsupportedModel, match="model_output=5: no such output"):
        select_output(two_output_model, 5)
    assert detect_head(two_output_model, 1).kind == "regression"


def test_second_output_is_explained_not_the_first(two_output_model, head_images):
    spec = spec_for_model(two_output_model)
    spec.model_output = "age"
    result = Explainer(spec, layer="target", batch_size=3).run(head_images)
    age = two_output_model.predict(head_images, verbose=0)[1][:, 0]
    np.testing.assert_allclose(result.probabilities[:, 0], age, rtol=1e-5)


def test_segmentation_head_and_auto_pick(unet):
    explainer = Explainer(spec_for_model(unet), batch_size=2)
    assert explainer.head.kind == "segmentation" and explainer.head.num_classes == 4
    assert explainer.target.path == "dec"  # not the per-pixel classifier, whose map is the output
    assert explainer.region_name == "pred"


@pytest.mark.slow
def test_default_target_is_the_class_covering_most_pixels(unet, unet_images):
    result = Explainer(spec_for_model(unet), batch_size=2).run(unet_images)
    predicted = unet.predict(unet_images, verbose=0).argmax(-1)
    shares = np.stack([(predicted == c).mean(axis=(1, 2)) for c in range(4)], axis=1)
    np.testing.assert_allclose(result.probabilities, shares, atol=1e-6)
    np.testing.assert_array_equal(result.class_ids[:, 0], shares.argmax(1))
    assert (shares[:, NEVER] == 0).all()
