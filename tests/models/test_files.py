"""``--model FILE`` (gradcam_cli/models/files.py): model files, their sidecars, safe mode, and the
output a file's model is explained on."""

from __future__ import annotations

import json
import shutil

import pytest

from gradcam_cli.errors import ModelLoadError, UnsupportedModel
from gradcam_cli.models import resolve_model
from tests.helpers import PAIR, ROOT, run


def test_model_file_with_sidecar_and_labels(keras, gap_dense_model, tmp_path):
    path = tmp_path / "net.keras"
    gap_dense_model.save(path)
    (tmp_path / "names.txt").write_text("a\nb\nc\nd\ne\n")
    (tmp_path / "net.keras.gradcam.json").write_text(json.dumps({"preprocess": "scale01", "labels": "names.txt"}))
    spec = resolve_model(str(path))
    assert spec.labels == ["a", "b", "c", "d", "e"] and spec.preprocess_name == "scale01"
    assert spec.input_size == (32, 32)
    override = resolve_model(str(path), preprocess="tf")
    assert override.preprocess_name == "tf"


def test_lambda_layer_is_refused_in_safe_mode(keras, tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3)(x))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ModelLoadError, match="safe_mode=False"):
        resolve_model(str(path))
    trusted = resolve_model(str(path), safe_mode=False)  # what --unsafe-model-code asks for
    assert any(type(layer).__name__ == "Lambda" for layer in trusted.model.layers)


def test_not_a_model_file_and_non_image_models(keras, tmp_path):
    bogus = tmp_path / "model.keras"
    bogus.write_text("not a zip")
    with pytest.raises(ModelLoadError, match=r"not a .keras model \(a .keras file is a zip archive"):
        resolve_model(str(bogus))
    inputs = keras.Input((10,))
    with pytest.raises(UnsupportedModel, match="not an image batch"):
        resolve_model(keras.Model(inputs, keras.layers.Dense(2)(inputs)))


def test_a_bad_sidecar_is_a_model_error_not_a_crash(tmp_path):
    model = tmp_path / "m.keras"
    shutil.copy(ROOT / "gradcam_cli" / "demo" / "shapes_cnn.keras", model)
    for content in ('{"preprocess": 5}', '{"labels": 3}', "[1, 2]"):
        (tmp_path / "m.keras.gradcam.json").write_text(content)
        result = run("explain", PAIR, "--model", model, "-o", tmp_path / "out")
        assert result.exit_code == 2 and "m.keras.gradcam.json" in result.output, (content, result.output)


def test_resolve_model_passes_output(saved_head_models):
    spec = resolve_model(str(saved_head_models["two"]), model_output=1)
    assert spec.head.kind == "regression" and spec.head.output_name == "age"


def _demo_copy(tmp_path, name="dog.keras"):
    model = tmp_path / name
    shutil.copy(ROOT / "gradcam_cli" / "demo" / "shapes_cnn.keras", model)
    return model


def test_a_sidecar_named_without_the_model_s_extension_is_read(tmp_path):
    """The docs' MODEL.gradcam.json: for dog.keras, dog.gradcam.json is read as dog.keras.gradcam.json is."""
    model = _demo_copy(tmp_path)
    names = ["circle", "square", "triangle", "star", "cross"]
    (tmp_path / "dog.gradcam.json").write_text(json.dumps({"preprocess": "scale01", "labels": [n.upper() for n in names]}))
    spec = resolve_model(str(model))
    assert spec.preprocess_name == "scale01" and spec.labels[0] == "CIRCLE"


def test_two_sidecars_that_disagree_are_refused_not_one_silently_chosen(tmp_path):
    model = _demo_copy(tmp_path)
    (tmp_path / "dog.gradcam.json").write_text(json.dumps({"preprocess": "scale01"}))
    (tmp_path / "dog.keras.gradcam.json").write_text(json.dumps({"preprocess": "tf"}))
    result = run("explain", PAIR, "--model", model, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "two different sidecars for dog.keras; keep one" in result.output, result.output
    assert not (tmp_path / "out").exists()
    (tmp_path / "dog.keras.gradcam.json").write_text(json.dumps({"preprocess": "scale01"}))  # the same: fine
    assert resolve_model(str(model)).preprocess_name == "scale01"


def test_an_unknown_sidecar_key_is_refused_with_the_accepted_ones(tmp_path):
    model = _demo_copy(tmp_path)
    (tmp_path / "dog.gradcam.json").write_text(json.dumps({"preproces": "scale01"}))
    result = run("explain", PAIR, "--model", model, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert 'unknown key "preproces"' in result.output and '"preprocess"' in result.output and '"labels"' in result.output


def test_a_sidecar_input_size_is_checked_against_the_model(tmp_path):
    model = _demo_copy(tmp_path)
    (tmp_path / "dog.gradcam.json").write_text(json.dumps({"input_size": [64, 64]}))
    with pytest.raises(ModelLoadError, match=r'"input_size": \[64, 64\], but the model\'s input is fixed'):
        resolve_model(str(model))
    (tmp_path / "dog.gradcam.json").write_text(json.dumps({"input_size": "big"}))
    with pytest.raises(ModelLoadError, match=r'"input_size" must be \[height, width\]'):
        resolve_model(str(model))


def test_a_sidecar_input_size_sizes_a_model_that_accepts_any(keras, tmp_path):
    inputs = keras.Input((None, None, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    path = tmp_path / "any.keras"
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(features)).save(path)
    (tmp_path / "any.gradcam.json").write_text(json.dumps({"input_size": [48, 40]}))
    assert resolve_model(str(path)).input_size == (48, 40)


def test_a_file_that_is_not_the_format_its_name_says_is_named_so(tmp_path):
    fake_h5 = tmp_path / "model.h5"
    fake_h5.write_text("not hdf5")
    with pytest.raises(ModelLoadError, match=r"not an HDF5 model file"):
        resolve_model(str(fake_h5))


def test_a_model_of_a_class_not_importable_here_gets_the_fix_not_its_config(keras, tmp_path):
    import numpy as np

    @keras.saving.register_keras_serializable(package="gradcam_tests")
    class Net(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(4, 3, activation="relu")
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.dense = keras.layers.Dense(3, activation="softmax")

        def call(self, x):
            return self.dense(self.pool(self.conv(x)))

    net = Net()
    net(np.zeros((1, 16, 16, 3), np.float32))
    path = tmp_path / "net.keras"
    net.save(path)
    del keras.saving.get_custom_objects()["gradcam_tests>Net"]  # as in a process that never imported its module
    with pytest.raises(ModelLoadError) as caught:
        resolve_model(str(path))
    message = str(caught.value)
    assert "built from 'Net'" in message and "register_keras_serializable" in message
    assert "config" not in message and len(message) < 400
