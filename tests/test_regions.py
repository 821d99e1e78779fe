"""Segmentation regions (gradcam_cli/regions.py): a class explained over ``pred``, ``all`` or a mask,
the score being the sum of the class's pre-softmax output over the region, kept fixed for the
perturbation methods."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gradcam_cli.errors import TargetError
from gradcam_cli.explainer import Explainer
from gradcam_cli.models.in_memory import spec_for_model
from tests.references import UNET_SIZE, region_gradcam


@pytest.mark.parametrize("region", ["pred", "all", "mask"])
def test_region_score_is_the_sum_of_the_class_logits_over_the_region(unet, unet_images, region, tmp_path):
    chosen = region
    if region == "mask":
        mask = np.zeros((UNET_SIZE, UNET_SIZE), np.uint8)
        mask[4:20, 10:30] = 255
        Image.fromarray(mask).save(tmp_path / "mask.png")
        chosen, region = str(tmp_path / "mask.png"), mask != 0
    explainer = Explainer(spec_for_model(unet), batch_size=2, region=chosen)
    result = explainer.run(unet_images, classes=[1])
    expected, pixels = region_gradcam(unet, unet_images, 1, region)
    assert expected.max() > 0
    np.testing.assert_allclose(result.heatmaps[:, 0], expected, rtol=2e-3, atol=1e-5 * expected.max())
    np.testing.assert_array_equal(result.region_pixels[:, 0], pixels)


@pytest.mark.slow
def test_perturbation_methods_keep_the_region_fixed(unet, unet_images):
    for method in ("scorecam", "ablationcam"):
        maps = Explainer(spec_for_model(unet), method=method, batch_size=2, chunk_size=4).run(unet_images).heatmaps
        assert maps.shape == (2, 1, UNET_SIZE, UNET_SIZE) and np.isfinite(maps).all()


def test_region_errors(unet, tmp_path, gap_dense_model):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(TargetError, match="no nonzero pixel"):
        Explainer(spec_for_model(unet), region=str(tmp_path / "empty.png"))
    with pytest.raises(TargetError, match="applies to segmentation models"):
        Explainer(spec_for_model(gap_dense_model), region="all")
