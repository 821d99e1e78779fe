"""``keras.applications`` architectures by name (gradcam_cli/models/applications.py): the registry,
names, native sizes, offline weights and ImageNet class names."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli.errors import ModelNotFound, WeightsUnavailable
from gradcam_cli.models import resolve_model
from gradcam_cli.models.applications import application_registry
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_imagenet_names_come_with_the_architecture_not_the_weights(keras, tmp_path, monkeypatch):
    from gradcam_cli import models
    from gradcam_cli.models import applications

    names = [f"imagenet_{i}" for i in range(1000)]
    monkeypatch.setattr(applications, "imagenet_labels", lambda: names)
    weights = tmp_path / "mobilenet.weights.h5"
    keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3)).save_weights(weights)
    spec = models.resolve_model("mobilenet_v2", weights=str(weights), input_size=(32, 32))
    assert spec.label(7) == "imagenet_7"
