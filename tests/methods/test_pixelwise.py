"""XGrad-CAM, HiResCAM and Layer-CAM (gradcam_cli/methods/pixelwise.py), each against a plain numpy
implementation of its formula, and their identities on a GAP -> Dense head."""

from __future__ import annotations

import numpy as np
import pytest

from tests.references import close, maps, relu


def test_xgradcam_formula(deep_model, images, reference):
    a, g, _, _ = reference
    sums = a.sum(axis=(1, 2))
    weights = np.divide((a * g).sum(axis=(1, 2)), sums, out=np.zeros_like(sums), where=sums != 0)
    close(maps(deep_model, images, "xgradcam", classes=[1]), relu(np.einsum("bhwk,bk->bhw", a, weights)))


def test_hirescam_formula(deep_model, images, reference):
    a, g, _, _ = reference
    close(maps(deep_model, images, "hirescam", classes=[1]), relu((g * a).sum(-1)))


def test_layercam_formula(deep_model, images, reference):
    a, g, _, _ = reference
    close(maps(deep_model, images, "layercam", classes=[1]), relu((relu(g) * a).sum(-1)))


@pytest.mark.slow
def test_identities_on_a_gap_dense_head(gap_dense_model, random_images):
    cam = maps(gap_dense_model, random_images, "cam", classes=[2])
    gradcam = maps(gap_dense_model, random_images, "gradcam", classes=[2])
    mask = cam > 1e-2 * cam.max()
    xgradcam = maps(gap_dense_model, random_images, "xgradcam", classes=[2])
    np.testing.assert_allclose(xgradcam[mask], gradcam[mask], rtol=1e-3)
    assert np.array_equal(xgradcam > 0, gradcam > 0) or np.abs(xgradcam - gradcam).max() < 1e-5 * gradcam.max()
    np.testing.assert_allclose(maps(gap_dense_model, random_images, "hirescam", classes=[2])[mask] * 28 * 28, cam[mask], rtol=5e-3)
