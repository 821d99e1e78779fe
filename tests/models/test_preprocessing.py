"""Preprocessing by name (gradcam_cli/models/preprocessing.py)."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli.models.preprocessing import make_preprocess


@pytest.mark.parametrize(("mode", "value"), [("none", 255.0), ("scale01", 1.0), ("tf", 1.0)])
def test_preprocess_modes(mode, value):
    function, _ = make_preprocess(mode)
    assert function(np.full((1, 1, 1, 3), 255.0, np.float32)).max() == pytest.approx(value)


@pytest.mark.parametrize("mode", ["caffe", "torch", "resnet50"])
def test_an_rgb_preprocessing_on_a_grayscale_model_is_one_line_before_anything_is_written(keras, tmp_path, mode):
    from tests.helpers import PAIR, run

    inputs = keras.Input((24, 24, 1))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    path = tmp_path / "grey.keras"
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(features)).save(path)
    result = run("explain", PAIR, "--model", path, "--preprocess", mode, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "expects RGB input, but the model takes 1 channel" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    assert run("explain", PAIR, "--model", path, "--preprocess", "tf", "-q", "-o", tmp_path / "tf").exit_code == 0
