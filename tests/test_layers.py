"""Automatic target-layer choice on real architectures (random weights, small inputs)."""

from __future__ import annotations

import pytest

from gradcam_cli.errors import LayerNotFound, UnsupportedModel
from gradcam_cli.layers import auto_target_layer, candidate_layers, find_layer

# DESIGN.md's expected picks; input sizes are the smallest that keep the last map larger than 1x1
EXPECTED = [
    ("Xception", 96, "block14_sepconv2_act"),
    ("ResNet50", 64, "conv5_block3_out"),
    ("VGG16", 64, "block5_conv3"),
    ("MobileNetV2", 64, "out_relu"),
    ("EfficientNetB0", 64, "top_activation"),
    ("DenseNet121", 64, "relu"),
    ("InceptionV3", 139, "mixed10"),
]


@pytest.mark.parametrize(("architecture", "size", "expected"), EXPECTED)
def test_auto_layer_matches_design_on_real_architectures(keras, architecture, size, expected):
    model = getattr(keras.applications, architecture)(weights=None, input_shape=(size, size, 3))
    pick = auto_target_layer(model)
    assert pick.path == expected
    assert pick.is_spatial


@pytest.fixture(scope="module")
def backbone(keras):
    return keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(64, 64, 3))


def test_nested_backbone_in_sequential(keras, backbone):
    model = keras.Sequential([keras.Input((64, 64, 3)), backbone, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    assert auto_target_layer(model).path == f"{backbone.name}/out_relu"


def test_nested_backbone_in_functional_with_extra_head(keras, backbone):
    inputs = keras.Input((64, 64, 3))
    x = backbone(inputs)
    x = keras.layers.Conv2D(8, 1, activation="relu", name="adapter")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    assert auto_target_layer(model).path == "adapter"
    assert find_layer(model, "out_relu").path == f"{backbone.name}/out_relu"
    assert find_layer(model, f"{backbone.name}/block_16_project").name == "block_16_project"


def test_layer_override_errors_name_candidates(keras, backbone):
    with pytest.raises(LayerNotFound, match="out_relu"):
        find_layer(backbone, "out_rleu")
    with pytest.raises(LayerNotFound, match="not a spatial map"):
        find_layer(keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3)), "predictions")


def test_model_without_convolution_is_refused(keras):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(UnsupportedModel, match="no convolutional layer"):
        auto_target_layer(model)


def test_candidates_exclude_pooling(keras):
    model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3))
    names = [info.name for info in candidate_layers(model)]
    assert "block5_conv3" in names and "block5_pool" not in names and "input_layer" not in str(names)
