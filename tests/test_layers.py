"""Target-layer search (gradcam_cli/layers.py): the automatic choice on real architectures (random
weights, small inputs), nested backbones, token models, ``--layer`` look-ups and their errors."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli.errors import LayerNotFound, UnsupportedModel
from gradcam_cli.explainer import Explainer
from gradcam_cli.layers import auto_target_layer, candidate_layers, find_layer
from gradcam_cli.models import resolve_model
from gradcam_cli.models.in_memory import spec_for_model
from tests.helpers import PAIR
from tests.references import TOKEN_SIZE

# DESIGN.md's expected picks; input sizes are the smallest that keep the last map larger than 1x1
EXPECTED = [
    ("Xception", 96, "block14_sepconv2_act"),
    ("ResNet50", 64, "conv5_block3_out"),
    ("VGG16", 64, "block5_conv3"),
    ("MobileNetV2", 64, "out_relu"),
    ("EfficientNetB0", 64, "top_activation"),
    pytest.param("DenseNet121", 64, "relu", marks=pytest.mark.slow),
    pytest.param("InceptionV3", 139, "mixed10", marks=pytest.mark.slow),
]


@pytest.mark.slow
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


@pytest.mark.slow
def test_layer_may_name_a_nested_backbone(keras):
    from gradcam_cli import explain

    backbone = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(64, 64, 3))
    model = keras.Sequential([keras.Input((64, 64, 3)), backbone, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    result = explain(model, str(PAIR), layer=backbone.name)
    assert result.layer == backbone.name and result.heatmaps.shape == (1, 1, 2, 2)


@pytest.mark.slow
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


def test_vit_auto_pick_is_the_last_blocks_first_norm_and_block_inputs_stay_reachable(vit):
    pick = auto_target_layer(vit)
    assert pick.path.endswith("vit_encoder/transformer_block_2/ln_1") and pick.tap == "output"
    assert pick.output_shape == (None, 17, 32)
    listed = [info.path for info in candidate_layers(vit)]
    block = pick.path.rpartition("/")[0]
    assert listed[-4:] == [block.replace("_2", "_1"), block.replace("_2", "_1") + "/ln_1", block, pick.path]
    assert find_layer(vit, "transformer_block_1").tap == "input"
    assert find_layer(vit, "transformer_block_1/ln_1").tap == "output"


@pytest.mark.slow
def test_deit_and_swin_pick_their_last_block(keras, keras_hub, vit_images):
    keras.utils.set_random_seed(3)
    deit = keras_hub.models.DeiTImageClassifier(
        backbone=keras_hub.models.DeiTBackbone(image_shape=(TOKEN_SIZE, TOKEN_SIZE, 3), patch_size=8, num_layers=2,
                                               num_heads=2, hidden_dim=32, intermediate_dim=64),
        num_classes=3)
    swin = keras_hub.models.SwinTransformerImageClassifier(
        backbone=keras_hub.models.SwinTransformerBackbone(image_shape=(TOKEN_SIZE, TOKEN_SIZE, 3), embed_dim=16, depths=[1, 1],
                                                          num_heads=[2, 2], window_size=4, patch_size=4),
        num_classes=3)
    deit_explainer = Explainer(spec_for_model(deit), batch_size=3)
    assert deit_explainer.target.path.endswith("transformer_block_2/ln_1") and deit_explainer.probe.grid == (2, 4, 4)
    swin_explainer = Explainer(spec_for_model(swin), batch_size=3)
    assert swin_explainer.target.path.endswith("stage_1/blocks_0/norm1") and swin_explainer.probe.grid == (0, 4, 4)
    for explainer in (deit_explainer, swin_explainer):
        maps = explainer.run(vit_images).heatmaps
        assert maps.shape == (3, 1, 4, 4) and np.isfinite(maps).all() and maps.max() > 0


@pytest.mark.slow
def test_keras_hub_cnn_classifier_uses_the_shape_rule(keras, keras_hub, vit_images, tmp_path):
    """A keras-hub ResNet (no attention): the last spatial layer of its nested backbone, by file."""
    keras.utils.set_random_seed(9)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(TOKEN_SIZE, TOKEN_SIZE, 3))
    classifier = keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=3)
    classifier.save(tmp_path / "resnet.keras")
    spec = resolve_model(str(tmp_path / "resnet.keras"))
    explainer = Explainer(spec, batch_size=3)
    assert explainer.target.tap == "output" and len(explainer.target.output_shape) == 4
    assert explainer.target.path.startswith(backbone.name + "/")
    maps = explainer.run(vit_images).heatmaps
    assert np.isfinite(maps).all() and maps.shape[:2] == (3, 1)


def test_a_token_count_that_forms_no_grid_is_refused(keras):
    inputs = keras.Input((TOKEN_SIZE, TOKEN_SIZE, 3))
    x = keras.layers.Conv2D(4, 8, strides=8)(inputs)
    x = keras.layers.Flatten()(x)
    tokens = keras.layers.Reshape((34, 2), name="tokens")(keras.layers.Dense(68)(x))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(tokens)))
    with pytest.raises(LayerNotFound, match="34 tokens, which form no patch grid"):
        Explainer(spec_for_model(model), layer="tokens")


def _two_branch_model(keras):
    inputs = keras.Input((32, 32, 3))
    a = keras.layers.Conv2D(4, 3, activation="relu", name="branch_a")(inputs)
    b = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="branch_b")(inputs)
    pooled = [keras.layers.GlobalAveragePooling2D()(a), keras.layers.GlobalAveragePooling2D()(b)]
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Concatenate()(pooled))
    return keras.Model(inputs, outputs, name="two_branches")


def test_a_head_reading_two_spatial_branches_is_said_on_one_line(keras, caplog):
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.models import spec_for_model

    spec = spec_for_model(_two_branch_model(keras))
    with caplog.at_level("WARNING", logger="gradcam_cli"):
        explainer = Explainer(spec)
    assert explainer.layer_name == "branch_a"
    (note,) = explainer.notes
    assert "also reads branch_b (15x15x4)" in note and "layer=branch_b" in note and "\n" not in note
    assert any("also reads branch_b" in record.getMessage() for record in caplog.records)
    assert Explainer(spec, layer="branch_b").notes == []  # chosen by hand: nothing to say


@pytest.mark.slow
def test_a_plain_cnn_or_a_block_after_the_pick_is_no_second_branch(keras, gap_dense_model, demo_spec):
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.models import spec_for_model

    assert Explainer(demo_spec).notes == [] and Explainer(spec_for_model(gap_dense_model)).notes == []
    inception = keras.applications.InceptionV3(weights=None, input_shape=(96, 96, 3))  # mixed8-10 are 1x1 here
    assert Explainer(spec_for_model(inception), batch_size=1).notes == []


def test_a_reshape_that_folds_anchors_into_rows_is_no_token_layer(keras):
    """(4, 6, 3 anchors x 2) -> (72, 2) rows interleave a position's anchors (keras-hub RetinaNet's
    cls_pred_P3): neither listed nor accepted by --layer; (4, 6, 2) -> (24, 2) tokens stay a candidate."""
    inputs = keras.Input((32, 48, 3))
    x = keras.layers.Conv2D(6, 8, strides=8, name="per_anchor")(inputs)
    folded = keras.layers.Reshape((-1, 2), name="anchors")(x)
    tokens = keras.layers.Reshape((-1, 6), name="tokens")(x)
    merged = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling1D()(folded),
                                         keras.layers.GlobalAveragePooling1D()(tokens)])
    model = keras.Model(inputs, keras.layers.Dense(2)(merged))
    listed = [info.path for info in candidate_layers(model)]
    assert "tokens" in listed and "anchors" not in listed
    with pytest.raises(LayerNotFound, match="anchors.*several rows per position"):
        find_layer(model, "anchors")
