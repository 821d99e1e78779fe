"""Resolving --model: the registry, names, preprocessing, model files and offline weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradcam_cli.errors import ModelLoadError, ModelNotFound, UnsupportedModel, WeightsUnavailable
from gradcam_cli.models import resolve_model
from gradcam_cli.models.applications import application_registry
from gradcam_cli.models.preprocessing import make_preprocess
from gradcam_cli.models.spec import normalize_name


def test_registry_covers_every_keras_application(keras):
    exported = {name for name in dir(keras.applications) if name[:1].isupper()}
    assert {entry.name for entry in application_registry().values()} == exported
    for key in ("xception", "vgg16", "resnet50v2", "inceptionresnetv2", "mobilenetv3small",
                "densenet201", "nasnetlarge", "efficientnetb7", "efficientnetv2s", "convnexttiny"):
        assert key in application_registry()


@pytest.mark.parametrize("spelling", ["ResNet50", "resnet-50", "RESNET_50", "resnet50"])
def test_names_are_case_dash_and_underscore_insensitive(spelling):
    assert application_registry()[normalize_name(spelling)].name == "ResNet50"


def test_entries_know_native_size_and_preprocessing():
    registry = application_registry()
    assert registry["xception"].native_size() == 299
    assert registry["efficientnetb3"].native_size() == 300
    assert registry["nasnetlarge"].native_size() == 331
    assert registry["mobilenetv3small"].native_size() == 224
    batch = np.full((1, 2, 2, 3), 255.0, np.float32)
    assert registry["xception"].preprocess_input()(batch.copy()).max() == pytest.approx(1.0)


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ModelNotFound, match="Did you mean.*resnet50"):
        resolve_model("resnet-5O")


@pytest.mark.parametrize(("mode", "value"), [("none", 255.0), ("scale01", 1.0), ("tf", 1.0)])
def test_preprocess_modes(mode, value):
    function, _ = make_preprocess(mode)
    assert function(np.full((1, 1, 1, 3), 255.0, np.float32)).max() == pytest.approx(value)


def test_offline_imagenet_download_fails_with_one_clear_paragraph(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr("urllib.request.urlopen", _no_network)
    monkeypatch.setattr("urllib.request.urlretrieve", _no_network)
    with pytest.raises(WeightsUnavailable) as caught:
        resolve_model("mobilenet_v3_small", weights="imagenet")
    message = str(caught.value)
    assert "MobileNetV3Small" in message and str(tmp_path / "keras") in message and "weights=none" in message
    assert "\n" not in message


def _no_network(*args, **kwargs):
    raise OSError("[Errno -3] Temporary failure in name resolution")


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
    with pytest.raises(ModelLoadError, match="not a loadable Keras model"):
        resolve_model(str(bogus))
    inputs = keras.Input((10,))
    with pytest.raises(UnsupportedModel, match="not an image batch"):
        resolve_model(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
