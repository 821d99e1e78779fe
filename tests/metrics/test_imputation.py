"""ROAD's noisy linear imputation (gradcam_cli/metrics/imputation.py) against the paper's linear
system written here as a dense matrix and solved with numpy.linalg.solve."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from tests.metrics.imputation_reference import dense_imputation

SHAPE = (3, 8, 9, 3)  # one compiled step serves every test here


@functools.cache
def _step():
    from gradcam_cli import backend
    from gradcam_cli.metrics import imputation

    return backend.compile_step(imputation.impute, [(SHAPE, "float32"), ((*SHAPE[:3], 1), "float32")], xla=True)


def _imputed(images: np.ndarray, removed: np.ndarray) -> np.ndarray:
    from gradcam_cli import backend

    return backend.to_numpy(_step()(images.astype(np.float32), removed[..., None].astype(np.float32)))


def test_imputation_equals_a_dense_solve_of_the_neighbour_mean_system():
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 255, SHAPE)
    removed = np.zeros((3, 8, 9), bool)
    removed[0, [0, 0, 3, 7], [0, 8, 4, 5]] = True  # corners and edges: fewer neighbours there
    removed[1, 2:6, 2:7] = True  # a hole, its inside far from any kept pixel
    removed[2] = rng.random((8, 9)) < 0.9  # most of the image
    imputed = _imputed(images, removed)
    for image, mask, ours in zip(images, removed, imputed, strict=True):
        np.testing.assert_allclose(ours, dense_imputation(image, mask), atol=0.01)  # of 255 levels
        np.testing.assert_array_equal(ours[~mask], image[~mask].astype(np.float32))


def test_a_copy_is_imputed_the_same_whatever_shares_its_chunk():
    # each system stops on its own: a copy's pixels do not depend on the other copies of a pass
    rng = np.random.default_rng(4)
    images = rng.uniform(0, 255, SHAPE)
    removed = rng.random(SHAPE[:3]) < np.array([0.1, 0.5, 0.9])[:, None, None]
    together = _imputed(images, removed)
    alone = removed.copy()
    alone[[0, 2]] = False  # the other copies of the pass remove nothing: their systems end at once
    np.testing.assert_allclose(together[1], _imputed(images, alone)[1], atol=1e-4)


def test_noise_fields_are_seeded_per_index():
    from gradcam_cli.metrics.imputation import NOISE_SEED, noise_fields

    few, more = noise_fields(2, (5, 6), 3), noise_fields(4, (5, 6), 3)
    np.testing.assert_array_equal(few, more[:2])
    np.testing.assert_allclose(more[3], np.random.default_rng([NOISE_SEED, 3]).standard_normal((5, 6, 3)), rtol=1e-6)
    assert abs(more.std() - 1) < 0.2


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (9, 7)])
def test_weight_sums_count_the_in_image_neighbours(size):
    from gradcam_cli.metrics.imputation import weight_sums

    expected = np.zeros(size)
    for y in range(size[0]):
        for x in range(size[1]):
            expected[y, x] = sum((1 / 6 if dy == 0 or dx == 0 else 1 / 12)
                                 for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                                 if (dy, dx) != (0, 0) and 0 <= y + dy < size[0] and 0 <= x + dx < size[1])
    np.testing.assert_allclose(weight_sums(size), expected, atol=1e-6)
