"""The similarity head (gradcam_cli/heads/similarity.py) and its references (gradcam_cli/reference.py):
the map of a cosine similarity lands on the patch that matches the reference, equals a GradientTape
reference of the same score, a concept is the mean of unit embeddings, a rank-4 embedding is
mean-pooled, and what cannot explain a similarity is refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gradcam_cli import explain
from gradcam_cli.errors import GradcamError, MethodError, UnsupportedModel
from gradcam_cli.explainer import Explainer
from gradcam_cli.models.in_memory import spec_for_model
from gradcam_cli.reference import Reference
from tests.similarity_models import (
    PATTERN_A,
    PATTERN_B,
    left_share,
    pattern_model,
    random_embedding_model,
    two_patch,
)


def save(picture: np.ndarray, path) -> str:
    Image.fromarray(np.asarray(picture, np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def patterns(keras):
    return pattern_model(keras)


@pytest.fixture(scope="module")
def pattern_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("patterns")
    return {"A": save(PATTERN_A, folder / "a.png"), "B": save(PATTERN_B, folder / "b.png")}


@pytest.mark.slow
def test_the_map_lands_on_the_patch_that_matches_the_reference_and_moves_with_it(patterns, pattern_files):
    query = two_patch(PATTERN_A, PATTERN_B)  # A on the left, B on the right
    on_a = explain(patterns, [query], reference=pattern_files["A"])
    on_b = explain(patterns, [query], reference=pattern_files["B"])
    assert on_a.layer == "features" and on_a.heatmaps.shape == (1, 1, 30, 30)
    assert left_share(on_a.heatmaps[0, 0]) > 0.95
    assert left_share(on_b.heatmaps[0, 0]) < 0.05
    swapped = explain(patterns, [two_patch(PATTERN_B, PATTERN_A)], reference=pattern_files["A"])
    assert left_share(swapped.heatmaps[0, 0]) < 0.05
    # half of the query matches either reference: cos 1/sqrt(2) of equal channel means; the labels name them
    assert on_a.probabilities[0, 0] == pytest.approx(on_b.probabilities[0, 0], abs=0.02)
    assert 0.6 < on_a.probabilities[0, 0] < 0.8
    assert (on_a.label(0), on_b.label(0)) == ("a.png", "b.png")
    assert on_a.spec.head.kind == "similarity" and on_a.spec.head.dimensions == 8


def test_the_map_equals_a_gradient_tape_reference_of_the_cosine_similarity(keras, tmp_path):
    import tensorflow as tf

    model = random_embedding_model(keras)
    rng = np.random.default_rng(4)
    queries = rng.integers(0, 256, (3, 20, 20, 3), dtype=np.uint8)
    reference_file = save(rng.integers(0, 256, (20, 20, 3)), tmp_path / "ref.png")
    result = explain(model, list(queries), reference=reference_file, method="gradcam", layer="target")

    # the reference, independently: the model's output for the file's pixels, normalised
    reference = model(np.asarray(Image.open(reference_file), np.float32)[None]).numpy()[0].astype(np.float64)
    reference /= np.linalg.norm(reference)
    tapped = keras.Model(model.input, [model.get_layer("target").output, model.output])
    with tf.GradientTape() as tape:
        activations, embedding = tapped(queries.astype(np.float32))
        tape.watch(activations)
        cosine = tf.reduce_sum(embedding * reference.astype(np.float32), axis=1) / tf.norm(embedding, axis=1)
    gradients = tape.gradient(cosine, activations).numpy().astype(np.float64)
    weights = gradients.mean(axis=(1, 2))  # Grad-CAM: the mean gradient of each channel
    expected = np.maximum((activations.numpy() * weights[:, None, None, :]).sum(axis=-1), 0)

    np.testing.assert_allclose(result.probabilities[:, 0], cosine.numpy(), rtol=1e-5, atol=1e-6)
    assert expected.max() > 0
    np.testing.assert_allclose(result.heatmaps[:, 0], expected, rtol=1e-4, atol=1e-6 * expected.max())


def test_a_folder_is_a_concept_the_mean_of_its_unit_embeddings(keras, tmp_path):
    model = random_embedding_model(keras)
    concept = tmp_path / "concept"
    concept.mkdir()
    rng = np.random.default_rng(8)
    bright = rng.integers(180, 256, (20, 20, 3))
    dim = rng.integers(0, 40, (20, 20, 3))  # a much shorter embedding than the bright image's
    save(bright, concept / "bright.png")
    save(dim, concept / "dim.png")
    query = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)

    spec = spec_for_model(model)
    reference = Reference.compute(spec, [str(concept)])
    assert reference.names == ("concept/",) and reference.counts == (2,)
    assert reference.entry(0) == {"path": str(concept.resolve()), "images": 2}

    embeddings = model(np.stack([bright, dim]).astype(np.float32)).numpy().astype(np.float64)
    units = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    mean = units.mean(axis=0)
    np.testing.assert_allclose(reference.vectors[0], mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)

    result = explain(model, [query], reference=reference)
    q = model(query[None].astype(np.float32)).numpy()[0].astype(np.float64)
    expected = q @ mean / (np.linalg.norm(q) * np.linalg.norm(mean))
    raw_mean = embeddings.mean(axis=0)  # what a mean of unnormalised embeddings would give instead
    unnormalised = q @ raw_mean / (np.linalg.norm(q) * np.linalg.norm(raw_mean))
    assert abs(expected - unnormalised) > 1e-3  # the test tells the two definitions apart
    assert result.probabilities[0, 0] == pytest.approx(expected, abs=1e-5)
    # and the concept's score is the mean of the per-image cosines, scaled by 1/|mean|
    per_image = units @ (q / np.linalg.norm(q))
    assert expected == pytest.approx(per_image.mean() / np.linalg.norm(mean), rel=1e-9)


def test_a_rank4_embedding_is_mean_pooled_as_global_average_pooling_would(keras, patterns, pattern_files):
    as_map = pattern_model(keras, rank4=True)
    query = [two_patch(PATTERN_A, PATTERN_B), PATTERN_B]
    pooled = explain(as_map, query, reference=pattern_files["A"])
    mixed = explain(patterns, query, reference=pattern_files["A"])  # the same channels, GAP then orthonormal mix
    assert pooled.layer == "features"
    np.testing.assert_allclose(pooled.probabilities, mixed.probabilities, atol=1e-5)
    np.testing.assert_allclose(pooled.heatmaps, mixed.heatmaps, rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_methods_that_cannot_explain_a_similarity_are_refused_in_one_line(keras, pattern_files):
    model = random_embedding_model(keras)
    query = [np.zeros((20, 20, 3), np.uint8)]
    with pytest.raises(MethodError, match="class-agnostic: its map is the same whatever the reference"):
        explain(model, query, reference=pattern_files["A"], method="eigencam")
    for embedding in (None, "after"):  # an inner map ends in no Dense layer: the reason is still the cosine
        with pytest.raises(MethodError, match="CAM reads the Dense weights of a class"):
            explain(model, query, reference=pattern_files["A"], method="cam", model_output=embedding)
    spec = spec_for_model(model)
    reference = Reference.compute(spec, [pattern_files["A"]])
    scored = Explainer(reference.apply(spec), method="scorecam").run(np.zeros((1, 20, 20, 3), np.float32))
    assert scored.heatmaps.shape == (1, 1, 16, 16)  # gradient-free but reference-dependent: it runs


def test_a_reference_named_twice_by_any_spelling_is_one_target(keras, pattern_files, tmp_path):
    # the hostile pass: --reference a.png twice gave two identical targets with the same label
    from pathlib import Path

    first = Path(pattern_files["A"])
    (tmp_path / "link.png").symlink_to(first)
    spec = spec_for_model(random_embedding_model(keras))
    reference = Reference.compute(spec, [first, first.parent / "." / first.name, tmp_path / "link.png",
                                         pattern_files["B"]])
    assert reference.names == ("a.png", "b.png") and reference.vectors.shape[0] == 2
    assert reference.paths == (str(first.resolve()), str(Path(pattern_files["B"]).resolve()))


def test_a_classifier_output_is_no_embedding_and_the_message_names_the_layer_before_it(gap_dense_model,
                                                                                     pattern_files):
    with pytest.raises(UnsupportedModel) as refused:
        explain(gap_dense_model, [np.zeros((32, 32, 3), np.uint8)], reference=pattern_files["A"])
    message = str(refused.value)
    assert "softmax over 5 classes" in message and "model_output=gap" in message and "\n" not in message
    # the penultimate layer, named, is an embedding
    inner = explain(gap_dense_model, [PATTERN_A], reference=pattern_files["B"], model_output="gap")
    assert inner.layer == "conv2" and inner.spec.head.dimensions == 12
    with pytest.raises(GradcamError, match="has no output or layer of that name"):
        explain(gap_dense_model, [PATTERN_A], reference=pattern_files["B"], model_output="nowhere")
