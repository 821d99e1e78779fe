"""FEM (gradcam_cli/methods/fem.py) against a numpy implementation of the paper's formula."""

from __future__ import annotations

import numpy as np

from gradcam_cli.explainer import Explainer
from gradcam_cli.methods.fem import FEM
from gradcam_cli.models.in_memory import spec_for_model
from tests.references import close, maps, numpy_fem


def test_fem_sums_the_k_sigma_masks_weighted_by_the_channel_means(deep_model, images, reference):
    a, _, _, _ = reference
    expected = numpy_fem(a)
    assert expected.max() > 0 and (expected == 0).any()  # some positions pass the threshold, some do not
    close(maps(deep_model, images, "fem"), expected)


def test_fem_threshold_is_a_parameter(deep_model, images, reference):
    a, _, _, _ = reference
    explainer = Explainer(spec_for_model(deep_model), method=FEM(sigmas=1.0), layer="target", batch_size=len(images))
    close(explainer.run(images).heatmaps[:, 0], numpy_fem(a, sigmas=1.0))


def test_fem_is_class_agnostic_and_says_so(deep_model, images):
    explainer = Explainer(spec_for_model(deep_model), method="fem", layer="target", batch_size=len(images))
    result = explainer.run(images, classes=[0, 2]).heatmaps
    np.testing.assert_array_equal(result[:, 0], result[:, 1])
    assert "class-agnostic" in FEM.description and FEM.class_agnostic
