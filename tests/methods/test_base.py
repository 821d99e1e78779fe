"""What the method base gives every method (gradcam_cli/methods/base.py): eigen smoothing."""

from __future__ import annotations

import pytest

from gradcam_cli.errors import MethodError
from gradcam_cli.explainer import Explainer
from gradcam_cli.models.in_memory import spec_for_model
from tests.references import close, maps, numpy_first_component


def test_eigen_smooth_projects_the_weighted_activations(deep_model, images, reference):
    a, g, _, _ = reference
    weighted = a * g.mean(axis=(1, 2))[:, None, None, :]
    close(maps(deep_model, images, "gradcam", classes=[1], smooth="eigen"), numpy_first_component(weighted), rtol=1e-3)
    with pytest.raises(MethodError, match="eigen"):
        Explainer(spec_for_model(deep_model), method="eigencam", smooth="eigen")


def test_balance_tells_a_sum_that_cancels_from_a_map_and_from_an_empty_one():
    """``cam_and_balance``: max |sum_k T_k| / max sum_k |T_k| per image. Gradients orthogonal to the
    activations at every position (g = (b, -a) for A = (a, b)) make HiResCAM's terms cancel exactly;
    random gradients do not; all-zero terms are an empty map (balance 1), not noise."""
    import numpy as np

    from gradcam_cli.methods import get_method
    from gradcam_cli.methods.base import ROUNDING_BALANCE, CamContext

    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 2.0, (3, 4, 4, 2)).astype(np.float32)
    orthogonal = np.stack([a[..., 1], -a[..., 0]], axis=-1)
    noisy = rng.normal(size=a.shape).astype(np.float32)
    gradients = np.stack([orthogonal[0], noisy[1], np.zeros_like(a[2])])
    method = get_method("hirescam")
    context = CamContext(a, gradients, np.zeros(3, np.int32), None, None, None)
    cam, balance = (np.asarray(x) for x in method.cam_and_balance(context))
    terms = gradients * a
    expected = np.abs(terms.sum(-1)).max(axis=(1, 2)) / np.maximum(np.abs(terms).sum(-1).max(axis=(1, 2)), 1e-30)
    assert balance[0] < ROUNDING_BALANCE and balance[1] > 1e-2 and balance[2] == 1.0
    np.testing.assert_allclose(balance[:2], expected[:2], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(cam, np.maximum(terms.sum(-1), 0), rtol=1e-5, atol=1e-7)
    assert get_method("eigencam").cam_and_balance(context)[1] is None  # not a channel sum: not judged
