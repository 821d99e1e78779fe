"""CAM, Grad-CAM and Grad-CAM++ (gradcam_cli/methods/gradcam.py) against plain numpy implementations,
and the identities between them."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli.errors import MethodError
from gradcam_cli.explainer import Explainer
from gradcam_cli.models.in_memory import spec_for_model
from tests.references import Reference


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


def test_cam_refuses_model_without_gap_dense_head(keras):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    with pytest.raises(MethodError, match="GlobalAveragePooling2D.*gradcam"):
        Explainer(spec_for_model(model), method="cam")


def test_cam_on_a_binary_head_negates_the_weights_for_the_negative_class(head_models, head_images):
    spec = spec_for_model(head_models["binary"])
    cam = Explainer(spec, method="cam", batch_size=3).run(head_images, classes=[0, 1]).heatmaps
    gradcam = Explainer(spec, method="gradcam", batch_size=3).run(head_images, classes=[0, 1]).heatmaps
    positions = gradcam.shape[-1] * gradcam.shape[-2]  # CAM = Grad-CAM * h * w on a GAP -> Dense head
    assert gradcam[:, 0].max() > 0 and gradcam[:, 1].max() > 0
    np.testing.assert_allclose(cam, gradcam * positions, rtol=2e-3, atol=1e-5 * cam.max())
