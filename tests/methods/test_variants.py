"""Element-wise Grad-CAM, ShapleyCAM and Finer-CAM (gradcam_cli/methods/variants.py), each against a
numpy implementation of its formula on the deep-head model, whose target conv is followed by a tanh
conv (so the score is curved in the map and ShapleyCAM's Hessian term is not zero)."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli.errors import MethodError
from gradcam_cli.explainer import Explainer
from gradcam_cli.methods.variants import FinerCAM
from gradcam_cli.models.in_memory import spec_for_model
from tests.references import (
    Reference,
    close,
    finer_comparisons,
    hessian_times_map,
    maps,
    numpy_elementwise_gradcam,
    relu,
)


def weighted_sum(a, weights):
    return relu(np.einsum("bhwk,bk->bhw", a, weights))


def test_gradcam_elementwise_formula(deep_model, images, reference):
    a, g, _, _ = reference
    close(maps(deep_model, images, "gradcam-elementwise", classes=[1]), numpy_elementwise_gradcam(a, g))


def test_shapleycam_formula_with_a_hessian_term_that_is_not_zero(keras, deep_model, images, reference):
    a, g, _, _ = reference
    hessian_products = hessian_times_map(keras, deep_model, images, 1)
    assert np.abs(hessian_products).max() > 0.05 * np.abs(g).max()  # the tanh after the layer curves the score
    expected = weighted_sum(a, (g - 0.5 * hessian_products).mean(axis=(1, 2)))
    shapley = maps(deep_model, images, "shapleycam", classes=[1])
    close(shapley, expected, rtol=5e-3)  # finite differences: O(step^2) from the exact product
    assert np.abs(shapley - weighted_sum(a, g.mean(axis=(1, 2)))).max() > 1e-3 * shapley.max()  # not Grad-CAM


def test_finercam_picks_the_classes_with_the_closest_scores():
    from keras import ops

    logits = np.random.default_rng(4).normal(0, 3, (5, 10)).astype(np.float32)
    targets = np.array([[0, 7], [3, 3], [9, 1], [2, 5], [4, 8]], np.int32)
    picked, weights = FinerCAM(comparisons=3).comparison_classes(ops.convert_to_tensor(logits), targets)
    picked, weights = np.asarray(picked), np.asarray(weights)
    for t in range(targets.shape[1]):
        for row in range(len(logits)):
            expected_classes, expected_weights = finer_comparisons(logits[row : row + 1], targets[row, t], 3)
            np.testing.assert_array_equal(picked[row, t], expected_classes[0])
            np.testing.assert_allclose(weights[row, t], expected_weights[0], rtol=1e-5)
    assert not (picked == targets[:, :, None]).any()


@pytest.mark.parametrize(("comparisons", "alpha"), [(3, 1.0), (2, 0.6)])
def test_finercam_is_gradcam_of_the_score_minus_its_closest_rivals(keras, deep_model, images, comparisons, alpha):
    target = 1
    references = [Reference(keras, deep_model, images, class_index=j) for j in range(4)]
    logits = references[0].logits_of_images(images)
    picked, weights = finer_comparisons(logits, target, comparisons)
    gradients = np.stack([ref.g for ref in references])  # (C, B, h, w, k)
    chosen = gradients[picked, np.arange(len(images))[:, None]]  # (B, N, h, w, k): each image's rivals
    rivals = np.einsum("bn,bnhwk->bhwk", weights, chosen)
    expected = weighted_sum(references[0].a, (gradients[target] - alpha * rivals).mean(axis=(1, 2)))
    method = FinerCAM(comparisons=comparisons, alpha=alpha)
    explainer = Explainer(spec_for_model(deep_model), method=method, layer="target", batch_size=len(images))
    close(explainer.run(images, classes=[target]).heatmaps[:, 0], expected)


def test_finercam_with_alpha_zero_is_gradcam(deep_model, images):
    explainer = Explainer(spec_for_model(deep_model), method=FinerCAM(alpha=0.0), layer="target",
                          batch_size=len(images))
    close(explainer.run(images, classes=[2]).heatmaps[:, 0], maps(deep_model, images, "gradcam", classes=[2]),
          rtol=1e-5)


def test_finercam_refuses_a_head_with_one_class(head_models):
    with pytest.raises(MethodError, match=r"head, 1 linear unit \(regression\), has one class; use") as refused:
        Explainer(spec_for_model(head_models["regression"]), method="finercam")
    assert "\n" not in str(refused.value)
