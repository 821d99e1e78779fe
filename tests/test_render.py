"""Colour maps, overlays and heatmap normalisation (gradcam_cli/render.py)."""

from __future__ import annotations

import numpy as np

from gradcam_cli import render


def test_jet_runs_blue_to_red_in_rgb_order():
    lut = render.colormap_lut("jet")
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert tuple(lut[0]) == (0, 0, 128) and tuple(lut[-1]) == (128, 0, 0)  # RGB, not BGR
    assert lut[128][1] == 255  # green in the middle


def test_overlay_is_alpha_blend_of_colormap_and_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    heatmap = rng.uniform(0, 3, (5, 7)).astype(np.float32)
    lut = render.colormap_lut("jet")
    shown = render.display_heatmap(heatmap, (37, 53))
    expected = 0.3 * lut[np.floor(shown * 255 + 0.5).astype(int)] + 0.7 * image
    result = render.overlay(image, heatmap, alpha=0.3, colormap="jet")
    assert result.shape == image.shape and result.dtype == np.uint8
    assert np.abs(result.astype(float) - expected).max() <= 1.0


def test_display_heatmap_is_upsampled_then_min_max_normalised():
    heatmap = np.array([[0.0, 2.0], [4.0, 8.0]], np.float32)
    shown = render.display_heatmap(heatmap, (20, 30))
    assert shown.shape == (20, 30) and shown.min() == 0.0 and shown.max() == 1.0
    assert shown[0, 0] == 0.0 and shown[-1, -1] == 1.0


def test_batched_display_maps_equal_pillow_upsampling():
    maps = np.random.default_rng(3).random((4, 7, 9)).astype(np.float32)
    maps[1] = 0.0
    batched = render.display_heatmaps(maps, (40, 33))
    one_by_one = np.stack([render.display_heatmap(m, (40, 33)) for m in maps])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_flat_and_non_finite_maps_become_zeros():
    for heatmap in (np.zeros((4, 4)), np.full((4, 4), 3.0), np.full((4, 4), np.nan)):
        shown = render.display_heatmap(heatmap.astype(np.float32), (8, 8))
        assert np.isfinite(shown).all() and not shown.any()
        assert render.is_empty(heatmap)
    assert not render.is_empty(np.eye(3))


def test_every_colormap_is_monotone_in_its_ends():
    for name in render.COLORMAPS:
        lut = render.colormap_lut(name)
        assert lut.shape == (256, 3)
        assert not np.array_equal(lut[0], lut[-1])
