"""Method formulas against plain numpy implementations, and the identities between methods."""

from __future__ import annotations

import numpy as np
import pytest
from references import Reference, deep_head_model

from gradcam_cli.errors import MethodError
from gradcam_cli.explainer import Explainer
from gradcam_cli.models.in_memory import spec_for_model


def _maps(model, images, method, layer=None, classes=None, top_k=1):
    explainer = Explainer(spec_for_model(model), method=method, layer=layer, batch_size=4)
    return explainer.run(images, classes=classes, top_k=top_k)


def _positive_constant_ratio(a, b):
    mask = b > 1e-2 * b.max()
    ratio = a[mask] / b[mask]
    return ratio, mask


def test_gradcam_equals_cam_for_gap_dense_head(gap_dense_model, random_images):
    cam = _maps(gap_dense_model, random_images, "cam", top_k=2)
    gradcam = _maps(gap_dense_model, random_images, "gradcam", top_k=2)
    np.testing.assert_array_equal(cam.class_ids, gradcam.class_ids)
    ratio, mask = _positive_constant_ratio(cam.heatmaps, gradcam.heatmaps)
    assert mask.sum() > 50
    # Grad-CAM's weights are the Dense weights divided by h * w = 28 * 28
    np.testing.assert_allclose(ratio, 28 * 28, rtol=1e-3)
    assert np.array_equal(cam.heatmaps > 0, gradcam.heatmaps > 0)


@pytest.fixture(scope="module")
def deep_model(keras):
    return deep_head_model(keras)


def numpy_gradcam(activations, gradients):
    weights = gradients.mean(axis=(1, 2))
    return np.maximum(np.einsum("bhwk,bk->bhw", activations, weights), 0)


def numpy_gradcam_pp(activations, gradients):
    g2, g3 = gradients**2, gradients**3
    denominator = 2 * g2 + activations.sum(axis=(1, 2), keepdims=True) * g3
    alpha = np.divide(g2, denominator, out=np.zeros_like(g2), where=denominator != 0)
    weights = (alpha * np.maximum(gradients, 0)).sum(axis=(1, 2))
    return np.maximum(np.einsum("bhwk,bk->bhw", activations, weights), 0)


@pytest.mark.parametrize(("method", "formula"), [("gradcam", numpy_gradcam), ("gradcam++", numpy_gradcam_pp)])
def test_method_matches_numpy_formula(keras, deep_model, method, formula):
    images = np.random.default_rng(3).uniform(0, 1, (4, 20, 20, 3)).astype(np.float32)
    result = _maps(deep_model, images, method, layer="target", classes=[2])
    reference = Reference(keras, deep_model, images, class_index=2)
    expected = formula(reference.a, reference.g)
    assert expected.max() > 0
    np.testing.assert_allclose(result.heatmaps[:, 0], expected, rtol=2e-3, atol=1e-6 * expected.max())


def test_gradients_are_of_the_logit_whatever_the_head(gap_dense_model, logits_twin, random_images):
    softmax_in_dense = _maps(gap_dense_model, random_images, "gradcam++", classes=[1, 3])
    for twin in logits_twin:
        other = _maps(twin, random_images, "gradcam++", classes=[1, 3])
        np.testing.assert_allclose(other.heatmaps, softmax_in_dense.heatmaps, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(other.probabilities, softmax_in_dense.probabilities, rtol=1e-5, atol=1e-7)


def test_probabilities_are_the_models_own(gap_dense_model, random_images):
    result = _maps(gap_dense_model, random_images, "gradcam")
    np.testing.assert_allclose(result.probabilities, gap_dense_model.predict(random_images, verbose=0), rtol=1e-5, atol=1e-7)


def test_top_k_orders_classes_by_probability(gap_dense_model, random_images):
    result = _maps(gap_dense_model, random_images, "gradcam", top_k=3)
    expected = np.argsort(-result.probabilities, axis=1)[:, :3]
    np.testing.assert_array_equal(result.class_ids, expected)


def test_partial_batch_gives_same_maps_as_full(gap_dense_model, random_images):
    explainer = Explainer(spec_for_model(gap_dense_model), method="gradcam", batch_size=4)
    together = explainer.run(random_images).heatmaps
    alone = explainer.run(random_images[4:]).heatmaps
    np.testing.assert_allclose(alone, together[4:], rtol=1e-5)
    assert len(explainer._compiled) == 1


def test_cam_refuses_model_without_gap_dense_head(keras):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    with pytest.raises(MethodError, match="GlobalAveragePooling2D.*gradcam"):
        Explainer(spec_for_model(model), method="cam")

