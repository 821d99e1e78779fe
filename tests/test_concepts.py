"""Deep Feature Factorization (gradcam_cli/concepts.py): the NMF against Lee and Seung's updates and
a planted factorisation, the concept labels against the Dense layer by hand, the sheet."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from gradcam_cli.concepts import (
    DeepFeatureFactorization,
    concept_colours,
    concept_sheet,
    nmf,
    peak_normalized,
    relative_error,
)
from gradcam_cli.errors import OptionConflict


def lee_seung(matrix: np.ndarray, weights: np.ndarray, directions: np.ndarray, iterations: int):
    """Multiplicative updates for ||V - W H||_F (Lee and Seung, NIPS 2001, theorem 1), one matrix,
    float64, written from the paper."""
    weights, directions = weights.astype(np.float64), directions.astype(np.float64)
    for _ in range(iterations):
        directions = directions * (weights.T @ matrix) / (weights.T @ weights @ directions)
        weights = weights * (matrix @ directions.T) / (weights @ directions @ directions.T)
    return weights, directions


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_nmf_follows_lee_and_seungs_updates_for_every_matrix_of_the_stack():
    rng = np.random.default_rng(3)
    matrices = rng.uniform(0, 4, (3, 40, 9)).astype(np.float32)
    start_w = rng.uniform(0.1, 1, (3, 40, 4)).astype(np.float32)
    start_h = rng.uniform(0.1, 1, (3, 4, 9)).astype(np.float32)
    weights, directions = nmf(matrices, 4, iterations=30, initial=(start_w, start_h))
    for group in range(3):
        expected_w, expected_h = lee_seung(matrices[group].astype(np.float64), start_w[group], start_h[group], 30)
        np.testing.assert_allclose(weights[group] @ directions[group], expected_w @ expected_h, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(directions[group], expected_h, rtol=2e-3, atol=1e-4)


def test_nmf_recovers_two_separable_concepts_up_to_permutation_and_scale():
    """A = W0 H0 with every position holding one of two concepts, and channels only one of them uses
    (what makes the factorisation unique: Donoho and Stodden 2003): the factors found are W0 and H0,
    each column and row up to a factor, in some order."""
    rng = np.random.default_rng(0)
    planted_w = np.zeros((60, 2), np.float32)
    planted_w[:30, 0] = rng.uniform(0.5, 1.5, 30)
    planted_w[30:, 1] = rng.uniform(0.5, 1.5, 30)
    planted_h = rng.uniform(0, 1, (2, 16)).astype(np.float32)
    planted_h[0, 10:] = 0.0  # channels 0-5 are the first concept's own, 10-15 the second's
    planted_h[1, :6] = 0.0
    matrix = (planted_w @ planted_h)[None]
    weights, directions = nmf(matrix, 2)
    assert relative_error(matrix, weights, directions)[0] < 0.01  # multiplicative updates near zeros are slow
    best = max(itertools.permutations(range(2)),
               key=lambda order: sum(cosine(directions[0, k], planted_h[j]) for k, j in enumerate(order)))
    for found, planted in enumerate(best):
        assert cosine(directions[0, found], planted_h[planted]) > 0.999
        assert cosine(weights[0, :, found], planted_w[:, planted]) > 0.999


def test_nmf_error_never_increases_and_stays_above_the_best_rank_k_approximation():
    """The updates are monotone (Lee and Seung's theorem); no rank-K matrix beats the truncated SVD
    (Eckart-Young), a non-negative one included."""
    matrices = np.random.default_rng(1).gamma(1.0, 1.0, (2, 50, 20)).astype(np.float32)
    errors = np.stack([relative_error(matrices, *nmf(matrices, 3, iterations=n)) for n in (1, 5, 20, 100, 200)])
    assert np.all(np.diff(errors, axis=0) <= 1e-6), errors
    assert np.all(errors[-1] < errors[0] - 0.05), errors
    singular = np.linalg.svd(matrices.astype(np.float64), compute_uv=False)
    best_rank_3 = np.sqrt((singular[:, 3:] ** 2).sum(axis=1) / (singular ** 2).sum(axis=1))
    assert np.all(errors[-1] >= best_rank_3 - 1e-5)


def test_nmf_is_fixed_by_its_seed_and_refuses_negative_values():
    matrices = np.random.default_rng(2).uniform(0, 1, (1, 30, 8)).astype(np.float32)
    first, again = nmf(matrices, 2, seed=5), nmf(matrices, 2, seed=5)
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[0], nmf(matrices, 2, seed=6)[0])
    with pytest.raises(ValueError, match="non-negative"):
        nmf(-matrices, 2)


def test_an_all_zero_matrix_factorises_to_zeros_without_nan():
    weights, directions = nmf(np.zeros((2, 10, 4), np.float32), 2)
    assert np.all(np.isfinite(weights)) and not np.any(weights @ directions)


def test_peak_normalisation_keeps_the_product_peaks_at_one_and_orders_by_share():
    rng = np.random.default_rng(4)
    weights, directions = rng.uniform(0, 3, (2, 20, 3)), rng.uniform(0, 2, (2, 3, 5))
    directions[:, 0] *= 0.01  # the first concept is the smallest
    normal_w, normal_h = peak_normalized(weights, directions)
    np.testing.assert_allclose(normal_w @ normal_h, weights @ directions, rtol=1e-5)
    np.testing.assert_allclose(normal_w.max(axis=1), 1.0)
    mass = normal_w.sum(axis=1) * normal_h.sum(axis=2)
    assert np.all(np.diff(mass, axis=1) <= 0) and np.allclose(normal_h[:, -1], directions[:, 0] * weights[:, :, 0].max(axis=1)[:, None])


@pytest.fixture(scope="module")
def gap_dense_spec(gap_dense_model):
    from gradcam_cli.models.in_memory import spec_for_model

    return spec_for_model(gap_dense_model)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def test_concept_labels_are_the_dense_softmax_of_the_direction_for_a_gap_dense_head(gap_dense_spec, gap_dense_model,
                                                                                   random_images):
    """GAP of a map holding H_k everywhere is H_k, so the head scores softmax(H_k @ kernel + bias)."""
    dense = gap_dense_model.get_layer("head")
    kernel, bias = (np.asarray(weight.numpy(), np.float64) for weight in (dense.kernel, dense.bias))
    found = DeepFeatureFactorization(gap_dense_spec, concepts=3)(random_images)
    assert found.layer == "conv2" and found.scores.shape == (5, 3, 5)
    np.testing.assert_allclose(found.scores, softmax(found.directions @ kernel + bias), atol=5e-5)  # float32 logits against a float64 softmax


def test_concept_labels_without_the_models_tail_replace_the_map_in_a_whole_forward_pass(gap_dense_spec, random_images):
    factorization = DeepFeatureFactorization(gap_dense_spec, concepts=2)
    through_tail = factorization(random_images[:2], "batch")
    factorization.probe.tail = lambda: None
    through_model = factorization(random_images[:2], "batch")
    np.testing.assert_allclose(through_model.scores, through_tail.scores, atol=1e-5)


def test_per_image_concepts_rebuild_each_images_activations(gap_dense_spec, random_images):
    factorization = DeepFeatureFactorization(gap_dense_spec, concepts=3)
    found = factorization(random_images)
    activations, _ = factorization.activations(random_images)
    assert found.maps.shape == (5, 28, 28, 3) and found.directions.shape == (5, 3, 12)
    rebuilt = np.einsum("nhwk,nkc->nhwc", found.maps, found.directions)
    positive = np.maximum(activations, 0).reshape(5, -1)
    error = np.linalg.norm((positive - rebuilt.reshape(5, -1)), axis=1) / np.linalg.norm(positive, axis=1)
    np.testing.assert_allclose(found.errors, error, rtol=1e-4, atol=1e-6)
    assert np.all(found.errors < 0.5)
    np.testing.assert_allclose(found.maps.max(axis=(1, 2)), 1.0)  # each concept peaks at 1 in its own image
    np.testing.assert_allclose(found.shares.sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(np.diff(found.shares, axis=1) <= 1e-6)  # numbered by share, per image


def test_per_batch_concepts_share_one_direction_set_and_peak_once_over_the_batch(gap_dense_spec, random_images):
    found = DeepFeatureFactorization(gap_dense_spec, concepts=2)(random_images, "batch")
    assert found.directions.shape == (1, 2, 12) and found.scores.shape == (1, 2, 5)
    np.testing.assert_allclose(found.maps.max(axis=(0, 1, 2)), 1.0)
    assert found.group(4) == 0 and found.top_classes(4, 0, 2) == found.top_classes(0, 0, 2)


def test_more_concepts_than_channels_is_refused_with_the_limit(gap_dense_spec, random_images):
    with pytest.raises(OptionConflict, match=r"concepts.*12x?.*at most 12"):
        DeepFeatureFactorization(gap_dense_spec, concepts=13)(random_images[:1])
    with pytest.raises(OptionConflict, match="neither 'image' nor 'batch'"):
        DeepFeatureFactorization(gap_dense_spec, concepts=2)(random_images[:1], "pixel")


def test_the_sheet_shows_the_picture_every_concept_and_their_colours():
    picture = Image.new("RGB", (160, 120), (200, 200, 200))
    maps = np.zeros((6, 8, 3), np.float32)
    maps[:3, :4, 0] = maps[3:, 4:, 1] = maps[:, :, 2] = 1.0
    maps[:, :, 2] = 0.0  # an empty concept shows the faded picture only
    sheet = concept_sheet(picture, maps, [["concept 1", "circle 90.0%"], ["concept 2", "star 50.0%"],
                                          ["concept 3", "square 1.0%"]], "title")
    pixels = np.asarray(sheet)
    assert sheet.width >= 5 * 224 and sheet.height > 224
    colours = concept_colours(3)
    for colour in colours[:2]:  # each concept's swatch, and its colour in the pictures
        assert np.any(np.all(np.abs(pixels.astype(int) - colour) < 4, axis=-1))
    assert len({tuple(c) for c in concept_colours(15)}) == 15
