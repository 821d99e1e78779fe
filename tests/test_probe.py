"""Vision Transformers: keras-hub ViT, DeiT and Swin classifiers (random weights, 32 px, patch 8,
two blocks, width 32) and plain-Keras token models. keras-hub is in the test extra, so these run in
CI; they skip only where it is not installed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gradcam_cli.cli import cli
from gradcam_cli.errors import LayerNotFound
from gradcam_cli.explainer import Explainer
from gradcam_cli.layers import auto_target_layer, candidate_layers, find_layer
from gradcam_cli.models import resolve_model
from gradcam_cli.models.in_memory import spec_for_model
from gradcam_cli.probe import token_grid

keras_hub = pytest.importorskip("keras_hub")

SIZE = 32


@pytest.fixture(scope="module")
def vit(keras):
    keras.utils.set_random_seed(21)
    backbone = keras_hub.models.ViTBackbone(image_shape=(SIZE, SIZE, 3), patch_size=8, num_layers=2,
                                            num_heads=2, hidden_dim=32, mlp_dim=64)
    return keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=3)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(4).uniform(-1, 1, (3, SIZE, SIZE, 3)).astype(np.float32)


def test_token_grid_drops_prefix_tokens_and_follows_the_aspect_ratio():
    assert token_grid(17, (32, 32)) == (1, 4, 4)  # class token
    assert token_grid(18, (32, 32)) == (2, 4, 4)  # class + distillation (DeiT)
    assert token_grid(64, (32, 32)) == (0, 8, 8)  # Swin: no prefix
    assert token_grid(9, (24, 48)) == (1, 2, 4)  # rows x columns follow height x width
    assert token_grid(34, (32, 32)) is None


def test_vit_auto_pick_is_the_tokens_entering_the_last_block(vit):
    pick = auto_target_layer(vit)
    assert pick.path.endswith("vit_encoder/transformer_block_2") and pick.tap == "input"
    assert pick.output_shape == (None, 17, 32)
    listed = [info.path for info in candidate_layers(vit)]
    assert listed[-2:] == [p.replace("_2", "_1") for p in [pick.path]] + [pick.path]
    assert find_layer(vit, "transformer_block_1").tap == "input"


def manual_vit_gradcam(vit, images, class_index):
    """Grad-CAM computed by calling keras-hub's layers by hand (no probe, no interception): tokens
    entering block 2, gradients of the class logit, class token dropped, reshaped rows first."""
    import tensorflow as tf

    backbone = vit.backbone
    encoder = backbone.get_layer("vit_encoder")
    embedded = backbone.get_layer("vit_patching_and_embedding")(images)
    tokens_in = tf.constant(encoder.encoder_layers[0](encoder.dropout(embedded)))
    with tf.GradientTape() as tape:
        tape.watch(tokens_in)
        encoded = encoder.layer_norm(encoder.encoder_layers[1](tokens_in))
        logits = vit.output_dense(encoded[:, 0])
        score = tf.reduce_sum(logits[:, class_index])
    gradients = tape.gradient(score, tokens_in).numpy()[:, 1:].reshape(-1, 4, 4, 32)
    activations = tokens_in.numpy()[:, 1:].reshape(-1, 4, 4, 32)
    weights = gradients.mean(axis=(1, 2))
    return np.maximum(np.einsum("bhwk,bk->bhw", activations, weights), 0), logits.numpy()


def test_vit_gradcam_matches_a_reference_built_without_the_probe(vit, images):
    result = Explainer(spec_for_model(vit), batch_size=3).run(images, classes=[1])
    expected, logits = manual_vit_gradcam(vit, images, 1)
    np.testing.assert_allclose(logits, vit.predict(images, verbose=0), rtol=1e-4, atol=1e-5)
    assert expected.max() > 0 and result.heatmaps.shape == (3, 1, 4, 4)
    np.testing.assert_allclose(result.heatmaps[:, 0], expected, rtol=2e-3, atol=1e-5 * expected.max())


@pytest.mark.parametrize("method", ["gradcam++", "layercam", "hirescam", "scorecam", "eigencam", "ablationcam"])
def test_other_methods_run_on_tokens(vit, images, method):
    options = {"chunk_size": 8} if method in ("scorecam", "ablationcam") else {}
    maps = Explainer(spec_for_model(vit), method=method, batch_size=3, **options).run(images).heatmaps
    assert maps.shape == (3, 1, 4, 4) and np.isfinite(maps).all()
    if method not in ("ablationcam",):  # random weights may leave every ablation drop negative
        assert (maps.max(axis=(1, 2, 3)) > maps.min(axis=(1, 2, 3))).all()


def test_ablationcam_on_tokens_matches_its_formula(vit, images):
    """Zeroing channel k of the patch tokens entering block 2, by hand, against the tool's weights."""
    import tensorflow as tf

    encoder = vit.backbone.get_layer("vit_encoder")
    embedded = vit.backbone.get_layer("vit_patching_and_embedding")(images)
    tokens_in = encoder.encoder_layers[0](encoder.dropout(embedded)).numpy()

    def logit(tokens):
        encoded = encoder.layer_norm(encoder.encoder_layers[1](tf.constant(tokens)))
        return vit.output_dense(encoded[:, 0]).numpy()[:, 0]

    base = logit(tokens_in)
    drops = []
    for k in range(32):
        ablated = tokens_in.copy()
        ablated[:, 1:, k] = 0
        drops.append(base - logit(ablated))
    weights = np.stack(drops, axis=1) / np.abs(base)[:, None]
    a = tokens_in[:, 1:].reshape(-1, 4, 4, 32)
    expected = np.maximum(np.einsum("bhwk,bk->bhw", a, weights), 0)
    maps = Explainer(spec_for_model(vit), method="ablationcam", batch_size=3, chunk_size=8).run(images, classes=[0])
    np.testing.assert_allclose(maps.heatmaps[:, 0], expected, rtol=5e-3, atol=1e-4 * max(np.abs(expected).max(), 1e-3))


def test_deit_and_swin_pick_their_last_block(keras, images):
    keras.utils.set_random_seed(3)
    deit = keras_hub.models.DeiTImageClassifier(
        backbone=keras_hub.models.DeiTBackbone(image_shape=(SIZE, SIZE, 3), patch_size=8, num_layers=2,
                                               num_heads=2, hidden_dim=32, intermediate_dim=64),
        num_classes=3)
    swin = keras_hub.models.SwinTransformerImageClassifier(
        backbone=keras_hub.models.SwinTransformerBackbone(image_shape=(SIZE, SIZE, 3), embed_dim=16, depths=[1, 1],
                                                          num_heads=[2, 2], window_size=4, patch_size=4),
        num_classes=3)
    deit_explainer = Explainer(spec_for_model(deit), batch_size=3)
    assert deit_explainer.target.path.endswith("transformer_block_2") and deit_explainer.probe.grid == (2, 4, 4)
    swin_explainer = Explainer(spec_for_model(swin), batch_size=3)
    assert swin_explainer.target.path.endswith("stage_1/blocks_0") and swin_explainer.probe.grid == (0, 4, 4)
    for explainer in (deit_explainer, swin_explainer):
        maps = explainer.run(images).heatmaps
        assert maps.shape == (3, 1, 4, 4) and np.isfinite(maps).all() and maps.max() > 0


def test_a_token_count_that_forms_no_grid_is_refused(keras):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 8, strides=8)(inputs)
    x = keras.layers.Flatten()(x)
    tokens = keras.layers.Reshape((34, 2), name="tokens")(keras.layers.Dense(68)(x))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(tokens)))
    with pytest.raises(LayerNotFound, match="34 tokens, which form no patch grid"):
        Explainer(spec_for_model(model), layer="tokens")


def test_plain_keras_token_layer_is_reshaped_rows_first(keras):
    """A graph-level token layer (no class token): the map equals the token features reshaped."""
    inputs = keras.Input((16, 32, 3))
    patches = keras.layers.Conv2D(6, 8, strides=8, name="patchify")(inputs)  # (2, 4, 6)
    tokens = keras.layers.Reshape((8, 6), name="tokens")(patches)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(tokens)))
    explainer = Explainer(spec_for_model(model), method="eigencam", layer="tokens", batch_size=1)
    assert explainer.probe.grid == (0, 2, 4)
    image = np.random.default_rng(0).uniform(0, 255, (1, 16, 32, 3)).astype(np.float32)
    maps = explainer.run(image).heatmaps[0, 0]
    expected = Explainer(spec_for_model(model), method="eigencam", layer="patchify", batch_size=1).run(image)
    np.testing.assert_allclose(maps, expected.heatmaps[0, 0], rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def saved_vit(vit, tmp_path_factory):
    path = tmp_path_factory.mktemp("vit") / "vit.keras"
    vit.save(path)
    return path


def test_saved_keras_hub_classifier_loads_and_lists_token_layers(saved_vit, tmp_path):
    from PIL import Image

    spec = resolve_model(str(saved_vit))
    assert spec.head.kind == "softmax" and spec.input_size == (SIZE, SIZE)
    result = CliRunner().invoke(cli, ["layers", "--model", str(saved_vit)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    picked = [line for line in result.output.splitlines() if line.startswith("*") and "tokens in" in line]
    assert len(picked) == 1 and "transformer_block_2" in picked[0] and "17x32" in picked[0]
    Image.fromarray(np.zeros((40, 40, 3), np.uint8) + 90).save(tmp_path / "a.png")
    result = CliRunner().invoke(cli, ["explain", str(tmp_path / "a.png"), "--model", str(saved_vit), "--layer",
                                      "transformer_block_1", "-o", str(tmp_path / "out")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[0])
    assert row["layer"].endswith("transformer_block_1") and row["heatmap_shape"] == [4, 4]


def test_hub_presets_fail_offline_with_a_clear_message(monkeypatch):
    """Offline as on this machine; the download is replaced by the failure it raises here, so CI
    machines with internet access never fetch a 330 MB preset."""

    def offline(*args, **kwargs):
        raise ConnectionError("HTTPSConnectionPool(host='api.kaggle.com', port=443): Max retries exceeded")

    monkeypatch.setattr(keras_hub.models.ImageClassifier, "from_preset", offline)
    runner = CliRunner()
    unknown = runner.invoke(cli, ["layers", "--model", "hub:vit_base_patch16_224_imagenett"], catch_exceptions=False)
    assert unknown.exit_code == 2 and "unknown keras-hub image classifier preset" in unknown.output
    assert "Did you mean vit_base_patch16_224_imagenet" in unknown.output
    result = runner.invoke(cli, ["layers", "--model", "hub:vit_base_patch16_224_imagenet"], catch_exceptions=False)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "could not get keras-hub preset 'vit_base_patch16_224_imagenet': ConnectionError" in result.output
    assert "needs internet" in result.output and "--model model.keras" in result.output


def test_keras_hub_cnn_classifier_uses_the_shape_rule(keras, images, tmp_path):
    """A keras-hub ResNet (no attention): the last spatial layer of its nested backbone, by file."""
    keras.utils.set_random_seed(9)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(SIZE, SIZE, 3))
    classifier = keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=3)
    classifier.save(tmp_path / "resnet.keras")
    spec = resolve_model(str(tmp_path / "resnet.keras"))
    explainer = Explainer(spec, batch_size=3)
    assert explainer.target.tap == "output" and len(explainer.target.output_shape) == 4
    assert explainer.target.path.startswith(backbone.name + "/")
    maps = explainer.run(images).heatmaps
    assert np.isfinite(maps).all() and maps.shape[:2] == (3, 1)


def test_hub_preset_path_uses_the_preset_converter(vit, monkeypatch):
    """The online path with the download replaced by a classifier built here: the converter's size
    and scale/offset become the spec's input size and preprocessing."""
    converter = keras_hub.layers.ViTImageConverter(image_size=(SIZE, SIZE), scale=1 / 127.5, offset=-1.0)
    vit.preprocessor = keras_hub.models.ViTImageClassifierPreprocessor(image_converter=converter)
    monkeypatch.setattr(keras_hub.models.ImageClassifier, "from_preset", lambda preset: vit)
    try:
        spec = resolve_model("hub:vit_base_patch16_224_imagenet")
    finally:
        vit.preprocessor = None
    assert spec.input_size == (SIZE, SIZE) and spec.source == "hub:vit_base_patch16_224_imagenet"
    pixels = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    np.testing.assert_allclose(spec.preprocess(pixels), [[[[-1.0, 0.0, 1.0]]]], atol=1e-6)
    assert spec.head.kind == "softmax" and spec.labels is None
