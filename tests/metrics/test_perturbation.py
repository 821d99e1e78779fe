"""The faithfulness metrics, scored on perturbed copies in one graph (gradcam_cli/metrics/perturbation.py):
deletion and insertion (deletion.py), Average Drop and Increase in Confidence (confidence.py), each
against a plain numpy implementation written from the papers' definitions, one image and one step at
a time; the preprocessing they can read off; heads they refuse."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli import render
from tests.references import STEPS, make_evaluator, probability, reference_blur, reference_order


@pytest.mark.slow
@pytest.mark.parametrize("tied", [False, True], ids=["maps", "maps-with-ties"])
def test_deletion_insertion_drop_and_increase_match_numpy(caffe_spec, random_images, tied):
    from gradcam_cli.metrics.perturbation import blurred

    pixels = random_images[:4]
    evaluator = make_evaluator(caffe_spec, ["gradcam"], ["deletion", "insertion", "drop", "increase"])
    result = evaluator.explainers["gradcam"].run(pixels, top_k=2)
    if tied:  # three levels: wide plateaus whose order only the documented tie rule decides
        result.heatmaps = np.floor(result.heatmaps / result.heatmaps.max(axis=(2, 3), keepdims=True) * 2.99)
    scores = evaluator.score_maps(pixels, blurred(pixels), result.heatmaps, result.class_ids, result.probabilities)
    model, preprocess = caffe_spec.model, caffe_spec.preprocess
    for i in range(len(pixels)):
        for t in range(2):
            c = int(result.class_ids[i, t])
            shown = render.display_heatmap(result.heatmaps[i, t], (32, 32))
            order = reference_order(shown)
            soft = reference_blur(pixels[i])
            deletion, insertion = [], []
            for s in range(STEPS + 1):
                n = int(np.round(s * 1024 / STEPS))
                deleted = pixels[i].reshape(-1, 3).copy()
                deleted[order[:n]] = 0
                inserted = soft.reshape(-1, 3).copy()
                inserted[order[:n]] = pixels[i].reshape(-1, 3)[order[:n]]
                deletion.append(probability(model, preprocess, deleted.reshape(32, 32, 3), c))
                insertion.append(probability(model, preprocess, inserted.reshape(32, 32, 3), c))
            y = probability(model, preprocess, pixels[i], c)
            o = probability(model, preprocess, pixels[i] * shown[..., None], c)
            assert scores.curves["deletion"][i, t] == pytest.approx(deletion, abs=2e-5)
            assert scores.curves["insertion"][i, t] == pytest.approx(insertion, abs=2e-5)
            assert scores.values["deletion"][i, t] == pytest.approx(np.trapezoid(deletion, dx=1 / STEPS), abs=2e-5)
            assert scores.values["insertion"][i, t] == pytest.approx(np.trapezoid(insertion, dx=1 / STEPS), abs=2e-5)
            assert scores.values["drop"][i, t] == pytest.approx(max(0.0, y - o) / y, abs=1e-4)
            assert scores.values["increase"][i, t] == float(o > y)


def test_affine_preprocessing_is_read_off_and_others_refused():
    from gradcam_cli.errors import EvaluationError
    from gradcam_cli.metrics.perturbation import affine_preprocess
    from gradcam_cli.models.preprocessing import make_preprocess

    caffe, _ = make_preprocess("caffe")
    matrix, offset = affine_preprocess(caffe, (8, 8), 3)
    np.testing.assert_allclose(matrix, [[0, 0, 1], [0, 1, 0], [1, 0, 0]], atol=1e-5)  # RGB -> BGR
    np.testing.assert_allclose(offset, [-103.939, -116.779, -123.68], atol=1e-3)
    with pytest.raises(EvaluationError, match="affine"):
        affine_preprocess(lambda x: np.sqrt(x), (8, 8), 3)


def test_heads_without_probabilities_are_refused_for_faithfulness_metrics(keras):
    from gradcam_cli.errors import EvaluationError
    from gradcam_cli.models.in_memory import spec_for_model

    inputs = keras.Input((16, 16, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    regression = spec_for_model(keras.Model(inputs, keras.layers.Dense(1, name="value")(features)))
    with pytest.raises(EvaluationError, match="regression"):
        make_evaluator(regression, ["gradcam"], ["deletion"])
