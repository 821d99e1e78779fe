"""The pointing game and energy-based pointing (gradcam_cli/metrics/pointing.py) against numpy, with boxes."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli import render
from tests.references import make_evaluator, reference_order


def test_pointing_and_energy_match_numpy_with_boxes(caffe_spec, random_images):
    from gradcam_cli.metrics.ground_truth import Box

    pixels = random_images[:4]
    evaluator = make_evaluator(caffe_spec, ["gradcam"], ["pointing", "energy"])
    result = evaluator.explainers["gradcam"].run(pixels, top_k=1)
    sizes = [(64, 48)] * 4  # originals twice as wide, 1.5x as tall as the 32 px model input
    annotations = [
        [Box(None, int(result.class_ids[0, 0]), (0, 0, 64, 48))],         # the whole image: a hit, all energy
        [Box("4", None, (10, 10, 20, 20)), Box(None, (int(result.class_ids[1, 0]) + 1) % 5, (0, 0, 64, 48))],
        [Box(None, int(result.class_ids[2, 0]), (30, 6, 44, 30)), Box(None, int(result.class_ids[2, 0]), (2, 30, 12, 46))],
        None,
    ]
    scores = evaluator.score_maps(pixels, pixels, result.heatmaps, result.class_ids, result.probabilities,
                                  annotations, sizes)
    assert scores.ground_truth == [["scored"], ["without_class"], ["scored"], ["unannotated"]]
    for i in (0, 2):
        shown = render.display_heatmap(result.heatmaps[i, 0], (32, 32))
        inside = np.zeros((32, 32), bool)
        for box in annotations[i]:
            x0, y0, x1, y1 = box.xyxy
            for y in range(32):
                for x in range(32):
                    if x0 / 2 <= x + 0.5 < x1 / 2 and y0 / 1.5 <= y + 0.5 < y1 / 1.5:
                        inside[y, x] = True
        top = reference_order(shown)[0]
        ty, tx = divmod(int(top), 32)
        distance = min(np.hypot(y - ty, x - tx) for y, x in zip(*np.nonzero(inside), strict=True))
        assert scores.values["pointing"][i, 0] == float(distance <= 15 / 224 * 32)
        assert scores.values["energy"][i, 0] == pytest.approx(shown[inside].sum() / shown.sum(), abs=1e-5)
    assert scores.values["energy"][0, 0] == pytest.approx(1.0)
    assert np.isnan(scores.values["pointing"][1, 0]) and np.isnan(scores.values["pointing"][3, 0])
