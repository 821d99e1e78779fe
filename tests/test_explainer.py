"""The compiled explainer (gradcam_cli/explainer.py): gradients of the logit whatever the head, the
model's own probabilities, classes and top-k, partial batches, and test-time augmentation smoothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gradcam_cli.explainer import Explainer
from gradcam_cli.manifest import MANIFEST
from gradcam_cli.models.in_memory import spec_for_model
from tests.helpers import PAIR, run
from tests.references import maps


def stored_rows(folder: Path) -> list[dict]:
    """The rows as stored (output paths relative to the manifest's folder)."""
    return [json.loads(line) for line in (folder / MANIFEST).read_text().splitlines()]


def _maps(model, images, method, layer=None, classes=None, top_k=1):
    explainer = Explainer(spec_for_model(model), method=method, layer=layer, batch_size=4)
    return explainer.run(images, classes=classes, top_k=top_k)


@pytest.mark.slow
def test_gradients_are_of_the_logit_whatever_the_head(gap_dense_model, logits_twin, random_images):
    softmax_in_dense = _maps(gap_dense_model, random_images, "gradcam++", classes=[1, 3])
    for twin in logits_twin:
        other = _maps(twin, random_images, "gradcam++", classes=[1, 3])
        np.testing.assert_allclose(other.heatmaps, softmax_in_dense.heatmaps, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(other.probabilities, softmax_in_dense.probabilities, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_probabilities_are_the_models_own(gap_dense_model, random_images):
    result = _maps(gap_dense_model, random_images, "gradcam")
    np.testing.assert_allclose(result.probabilities, gap_dense_model.predict(random_images, verbose=0), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_top_k_orders_classes_by_probability(gap_dense_model, random_images):
    result = _maps(gap_dense_model, random_images, "gradcam", top_k=3)
    expected = np.argsort(-result.probabilities, axis=1)[:, :3]
    np.testing.assert_array_equal(result.class_ids, expected)


@pytest.mark.slow
def test_a_class_named_twice_is_explained_once(tmp_path):
    result = run("explain", PAIR, "-o", tmp_path, "--class", "circle", "--class", "0")
    assert result.exit_code == 0, result.output
    assert [row["class_index"] for row in stored_rows(tmp_path)] == [0]


def test_partial_batch_gives_same_maps_as_full(gap_dense_model, random_images):
    explainer = Explainer(spec_for_model(gap_dense_model), method="gradcam", batch_size=4)
    together = explainer.run(random_images).heatmaps
    alone = explainer.run(random_images[4:]).heatmaps
    np.testing.assert_allclose(alone, together[4:], rtol=1e-5)
    assert len(explainer._compiled) == 1


@pytest.mark.slow
def test_aug_smoothing_is_mirror_symmetric_on_a_mirror_symmetric_image(gap_dense_model):
    rng = np.random.default_rng(5)
    half = rng.uniform(0, 255, (32, 16, 3))
    symmetric = np.concatenate([half, half[:, ::-1]], axis=1)[None].astype(np.float32)
    smoothed = maps(gap_dense_model, symmetric, "gradcam", smooth="aug")
    np.testing.assert_allclose(smoothed, smoothed[:, :, ::-1], rtol=1e-4, atol=1e-6 * smoothed.max())
    plain = maps(gap_dense_model, symmetric, "gradcam")
    assert not np.allclose(plain, smoothed)
