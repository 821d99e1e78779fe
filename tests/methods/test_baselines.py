"""The baselines ``random`` and ``center`` (gradcam_cli/methods/baselines.py): fixed and model-free."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow
def test_baselines_are_fixed_and_model_free(demo_spec):
    from gradcam_cli.explainer import Explainer

    pixels = np.random.default_rng(0).uniform(0, 255, (3, *demo_spec.input_size, 3)).astype(np.float32)
    first = Explainer(demo_spec, "random", batch_size=3).run(pixels).heatmaps
    again = Explainer(demo_spec, "random", batch_size=3).run(pixels[::-1].copy()).heatmaps
    np.testing.assert_array_equal(first, again)  # a fixed seed per batch position, whatever the image
    assert not np.allclose(first[0], first[1])
    compiled_by_xla = Explainer(demo_spec, "random", batch_size=3, xla=True).run(pixels).heatmaps
    np.testing.assert_array_equal(first, compiled_by_xla)
    center = Explainer(demo_spec, "centre", batch_size=3).run(pixels).heatmaps[0, 0]
    peak = np.unravel_index(np.argmax(center), center.shape)
    assert all(abs(p - (s - 1) / 2) <= 0.5 for p, s in zip(peak, center.shape, strict=True))
    np.testing.assert_allclose(center, center[::-1, ::-1], atol=1e-6)
