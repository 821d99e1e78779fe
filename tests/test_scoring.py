"""Scoring one batch for every method (gradcam_cli/scoring.py): on a model whose class is exactly the
object, a map equal to the object's mask points perfectly and deletes better than random."""

from __future__ import annotations

import numpy as np
import pytest

from tests.references import make_evaluator


@pytest.fixture(scope="session")
def red_detector(keras):
    """logit_0 = 8 * mean redness (r - (g + b) / 2, ReLU'd), logit_1 = 1: deleting red pixels lowers p_0."""
    from gradcam_cli.models.in_memory import spec_for_model

    inputs = keras.Input((32, 32, 3))
    redness = keras.layers.Conv2D(1, 1, activation="relu", name="redness")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(redness)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("redness").set_weights([np.array([1.0, -0.5, -0.5]).reshape(1, 1, 3, 1), np.zeros(1)])
    model.get_layer("head").set_weights([np.array([[8.0, 0.0]]), np.array([0.0, 1.0])])
    return spec_for_model(model, preprocess="scale01")


def test_a_map_equal_to_the_mask_points_perfectly_and_deletes_better_than_random(red_detector):
    from gradcam_cli.metrics.ground_truth import Box
    from gradcam_cli.metrics.perturbation import blurred

    rng = np.random.default_rng(5)
    pixels = np.zeros((6, 32, 32, 3), np.float32)
    pixels[..., 1:] = rng.uniform(60, 200, (6, 32, 32, 2))  # green-blue clutter
    masks, boxes = np.zeros((6, 32, 32), bool), []
    for i in range(6):
        x0, y0 = rng.integers(0, 20, 2)
        masks[i, y0:y0 + 10, x0:x0 + 12] = True
        pixels[i][masks[i]] = (250, 20, 20)
        boxes.append([Box("red", 0, (x0, y0, x0 + 12, y0 + 10))])
    evaluator = make_evaluator(red_detector, ["random"], ["deletion", "pointing"], batch_size=6)
    classes = np.zeros((6, 1), np.int32)
    random_maps = evaluator.explainers["random"].run(pixels, classes)
    sizes = [(32, 32)] * 6
    as_mask = evaluator.score_maps(pixels, blurred(pixels), masks[:, None].astype(np.float32), classes,
                                   random_maps.probabilities, boxes, sizes)
    baseline = evaluator.score_maps(pixels, blurred(pixels), random_maps.heatmaps, classes,
                                    random_maps.probabilities, boxes, sizes)
    assert np.all(as_mask.values["pointing"] == 1.0)
    assert as_mask.values["deletion"].mean() < baseline.values["deletion"].mean() - 0.05
    assert np.all(as_mask.values["deletion"] < baseline.values["deletion"])


@pytest.mark.slow
def test_a_detectors_deletion_curve_reads_the_kept_boxs_score_on_each_copy(keras):
    """Deletion on a detector: each step's value is the kept box's score on the copy, the best matching
    anchor's class probability times its IoU with the box (heads/detection.py), recomputed here from
    the detector's own outputs on copies made in numpy, with the IoU written corner by corner."""
    from gradcam_cli.boxes import pick_detections
    from gradcam_cli.metrics.deletion import step_counts
    from gradcam_cli.metrics.perturbation import blurred
    from gradcam_cli.models import resolve_model
    from tests.heads.test_detection import SIZE, _iou_reference, square_picture, tiny_detector

    detector, twin = tiny_detector(keras)
    spec = resolve_model(detector, task="detect")
    steps = 4
    evaluator = make_evaluator(spec, ["gradcam"], ["deletion"], batch_size=1, steps=steps)
    pixels = square_picture()[None].astype(np.float32)
    kept = pick_detections(evaluator.explainers["gradcam"].detect(pixels)[0], "square", 0.5, boxes=[0])
    saliency = np.random.default_rng(3).uniform(0, 1, (1, 1, SIZE, SIZE)).astype(np.float32)  # no ties
    scores = evaluator.score_maps(pixels, blurred(pixels), saliency, np.zeros((1, 1), np.int32),
                                  np.array([[kept[0].score]], np.float32), None, [(SIZE, SIZE)], boxes=[kept])
    order = np.argsort(-saliency[0, 0].ravel())
    expected = []
    for count in step_counts(SIZE * SIZE, steps):
        copy = pixels[0].copy().reshape(-1, 3)
        copy[order[:count]] = 0
        _, boxes, probabilities = (np.asarray(output)[0] for output in twin(copy.reshape(1, SIZE, SIZE, 3)))
        overlap = _iou_reference(kept[0].box, boxes)
        expected.append(float(np.max(np.where(overlap >= 0.5, overlap * probabilities[:, 0], 0.0))))
    curve = scores.curves["deletion"][0, 0]
    assert np.allclose(curve, expected, atol=1e-5), (curve, expected)
    assert np.isclose(curve[0], kept[0].score, atol=1e-5) and len(set(np.round(expected, 3))) > 3  # not flat
