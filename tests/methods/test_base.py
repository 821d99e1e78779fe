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
