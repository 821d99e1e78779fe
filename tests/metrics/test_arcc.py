"""ARCC's parts (gradcam_cli/metrics/arcc.py) against their formulas written here in numpy."""

from __future__ import annotations

import numpy as np
import pytest


def test_complexity_is_the_l1_norm_over_the_pixel_count():
    from gradcam_cli.metrics.arcc import complexity

    maps = np.random.default_rng(0).random((3, 6, 7))
    maps[2] = 0
    expected = [np.abs(m).sum() / m.size for m in maps]
    np.testing.assert_allclose(complexity(maps), expected)


def test_coherency_is_pearson_moved_to_zero_one_and_a_flat_map_correlates_with_nothing():
    from gradcam_cli.metrics.arcc import coherency, pearson

    rng = np.random.default_rng(1)
    first, second = rng.random((4, 5, 5)), rng.random((4, 5, 5))
    second[1] = 2 * first[1] + 3  # perfectly correlated
    second[2] = -first[2]  # perfectly anti-correlated
    second[3] = 0.7  # flat: no correlation can be measured
    expected = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(first[:3], second[:3], strict=True)] + [0.0]
    np.testing.assert_allclose(pearson(first, second), expected, atol=1e-12)
    np.testing.assert_allclose(coherency(first, second), (np.array(expected) + 1) / 2, atol=1e-12)
    assert coherency(first[1:3], second[1:3]) == pytest.approx([1.0, 0.0])


def test_arcc_is_the_harmonic_mean_of_coherency_one_minus_complexity_and_relevance():
    from gradcam_cli.metrics.arcc import arcc, relevance

    road = np.array([0.3, -0.1, 0.6, 0.2])
    assert relevance(road) == pytest.approx([0.6, 0.0, 1.0, 0.4])
    coherency, complexity = np.array([0.8, 0.9, 0.5, 0.7]), np.array([0.2, 0.1, 0.3, 1.0])
    expected = [3 / (1 / c + 1 / (1 - x) + 1 / r) if min(c, 1 - x, r) > 0 else 0.0
                for c, x, r in zip(coherency, complexity, relevance(road), strict=True)]
    np.testing.assert_allclose(arcc(coherency, complexity, relevance(road)), expected)
    assert expected[1] == expected[3] == 0.0  # a part at 0 (no relevance; a map covering everything)
