"""The bundled demo: reproducible synthetic world, the trained model, and localization floors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gradcam_cli.demo.localization import make_scenes, score_method
from gradcam_cli.demo.shapes import CLASSES, make_dataset, make_scene
from gradcam_cli.engine import Explainer
from gradcam_cli.images import model_input
from gradcam_cli.methods import method_names

ROOT = Path(__file__).resolve().parent.parent


def test_generator_is_seeded_and_masks_match_objects():
    first = make_scene(np.random.default_rng(5), 96, "same")
    again = make_scene(np.random.default_rng(5), 96, "same")
    np.testing.assert_array_equal(first.image, again.image)
    assert 2 <= len(first.objects) <= 3 and len(set(first.labels)) == 1
    for obj in first.objects:
        assert obj.mask.shape == (96, 96) and obj.mask.sum() > 20
        x0, y0, x1, y1 = obj.box
        assert obj.mask[y0:y1, x0:x1].sum() == obj.mask.sum()
    masks = np.stack([o.mask for o in first.objects])
    assert masks.sum(axis=0).max() == 1  # objects never overlap
    pair = make_scene(np.random.default_rng(6), 64, "pair")
    assert len(set(pair.labels)) == 2


def test_dataset_targets_are_soft_labels():
    _, targets, scenes = make_dataset(3, 30)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0)
    for target, scene in zip(targets, scenes, strict=True):
        assert set(np.nonzero(target)[0]) == set(scene.labels)


def test_demo_model_is_small_and_labelled(demo_spec):
    assert demo_spec.labels == list(CLASSES)
    assert demo_spec.input_size == (64, 64) and demo_spec.preprocess_name == "scale01"
    assert (ROOT / "gradcam_cli" / "demo" / "shapes_cnn.keras").stat().st_size < 3_000_000


def test_demo_model_classifies_fresh_single_objects(demo_spec):
    images, targets, _ = make_dataset(4242, 300, mix={"single": 1.0})
    probabilities = demo_spec.model.predict(demo_spec.preprocess(images.astype(np.float32)), verbose=0)
    assert np.mean(probabilities.argmax(1) == targets.argmax(1)) >= 0.97


def test_sample_ground_truth_matches_files():
    folder = ROOT / "sample_images" / "shapes"
    truth = json.loads((folder / "ground_truth.json").read_text())
    assert sorted(truth) == sorted(p.name for p in folder.glob("*.png"))
    kinds = [entry["kind"] for entry in truth.values()]
    assert kinds.count("single") == kinds.count("pair") == kinds.count("same") == 4


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(seed=31337, per_kind=40)


# Floors well under the measured figures (README), so that a broken method fails, noise does not.
FLOORS = {"pointing_game": 0.9, "two_class": 0.85, "multi_instance_coverage": 0.8}


@pytest.mark.parametrize("method", method_names())
def test_methods_localize_shapes_with_the_demo_model(demo_spec, scenes, method):
    explainer = Explainer(demo_spec, method=method, batch_size=40)

    def explain_fn(images, classes):
        batch = np.stack([model_input(image, demo_spec.input_size) for image in images])
        return explainer.run(batch, classes).heatmaps

    summary = score_method(explain_fn, scenes).summary()
    for metric, floor in FLOORS.items():
        if method == "eigencam" and metric == "two_class":  # class-agnostic: the same map for A and B
            assert summary[metric] <= 0.6, summary
            continue
        assert summary[metric] >= floor, (method, metric, summary)
