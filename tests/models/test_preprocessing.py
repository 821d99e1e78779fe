"""Preprocessing by name (gradcam_cli/models/preprocessing.py)."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli.models.preprocessing import make_preprocess


@pytest.mark.parametrize(("mode", "value"), [("none", 255.0), ("scale01", 1.0), ("tf", 1.0)])
def test_preprocess_modes(mode, value):
    function, _ = make_preprocess(mode)
    assert function(np.full((1, 1, 1, 3), 255.0, np.float32)).max() == pytest.approx(value)
