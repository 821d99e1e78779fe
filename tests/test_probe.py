"""Call interception (gradcam_cli/probe.py) on token models: a keras-hub ViT (random weights, 32 px,
patch 8, two blocks, width 32) and plain-Keras token layers, the tokens reshaped into their patch
grid, checked against references built by calling the layers by hand."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli.explainer import Explainer
from gradcam_cli.models.in_memory import spec_for_model
from gradcam_cli.probe import token_grid


def test_token_grid_drops_prefix_tokens_and_follows_the_aspect_ratio():
    assert token_grid(17, (32, 32)) == (1, 4, 4)  # class token
    assert token_grid(18, (32, 32)) == (2, 4, 4)  # class + distillation (DeiT)
    assert token_grid(64, (32, 32)) == (0, 8, 8)  # Swin: no prefix
    assert token_grid(9, (24, 48)) == (1, 2, 4)  # rows x columns follow height x width
    assert token_grid(34, (32, 32)) is None


def manual_vit_terms(vit, images, class_index, tap="norm"):
    """Activations and gradients of the class logit at block 2 of the ViT, computed by calling
    keras-hub's layers by hand (no probe, no interception), the block written out as keras-hub's
    ``ViTEncoderBlock.call``: ``tap`` 'input' reads the tokens entering block 2, 'norm' its first
    normalisation's output. The class token dropped, reshaped rows first: ((B,4,4,32) x 2, logits)."""
    import tensorflow as tf

    backbone = vit.backbone
    encoder = backbone.get_layer("vit_encoder")
    block = encoder.encoder_layers[1]
    embedded = backbone.get_layer("vit_patching_and_embedding")(images)
    tokens_in = tf.constant(encoder.encoder_layers[0](encoder.dropout(embedded)))
    with tf.GradientTape() as tape:
        tape.watch(tokens_in)
        normed = block.layer_norm_1(tokens_in)
        tape.watch(normed)
        x = block.dropout(block.mha(normed, normed)) + tokens_in
        encoded = encoder.layer_norm(x + block.mlp(block.layer_norm_2(x)))
        logits = vit.output_dense(encoded[:, 0])
        score = tf.reduce_sum(logits[:, class_index])
    tapped = normed if tap == "norm" else tokens_in
    gradients = tape.gradient(score, tapped).numpy()[:, 1:].reshape(-1, 4, 4, 32)
    return tapped.numpy()[:, 1:].reshape(-1, 4, 4, 32), gradients, logits.numpy()


def manual_vit_gradcam(vit, images, class_index, tap="norm"):
    activations, gradients, logits = manual_vit_terms(vit, images, class_index, tap)
    weights = gradients.mean(axis=(1, 2))
    return np.maximum(np.einsum("bhwk,bk->bhw", activations, weights), 0), logits


@pytest.mark.slow
@pytest.mark.parametrize("layer, tap", [(None, "norm"), ("transformer_block_2", "input")])
def test_vit_gradcam_matches_a_reference_built_without_the_probe(vit, vit_images, layer, tap):
    explainer = Explainer(spec_for_model(vit), batch_size=3, layer=layer)
    result = explainer.run(vit_images, classes=[1])
    expected, logits = manual_vit_gradcam(vit, vit_images, 1, tap)
    np.testing.assert_allclose(logits, vit.predict(vit_images, verbose=0), rtol=1e-4, atol=1e-5)
    assert expected.max() > 0 and result.heatmaps.shape == (3, 1, 4, 4)
    np.testing.assert_allclose(result.heatmaps[:, 0], expected, rtol=2e-3, atol=1e-5 * expected.max())


@pytest.mark.slow
def test_hirescam_vanishes_on_the_tokens_entering_a_pre_norm_block_and_not_at_its_norm(vit, vit_images):
    """The tokens entering block 2 reach the class token only through its first LayerNorm, which is
    scale-invariant per token: sum_k g_k A_k = 0 at every position, up to rounding (issue 26). At the
    norm's output (the automatic tap) HiResCAM equals its formula and is far from zero."""
    activations, gradients, _ = manual_vit_terms(vit, vit_images, 0, "input")
    terms = gradients * activations
    assert np.abs(terms.sum(-1)).max() < 1e-5 * np.abs(terms).sum(-1).max()
    activations, gradients, _ = manual_vit_terms(vit, vit_images, 0, "norm")
    expected = np.maximum((gradients * activations).sum(-1), 0)
    assert expected.max() > 1e-3 * np.abs(gradients * activations).sum(-1).max()
    maps = Explainer(spec_for_model(vit), method="hirescam", batch_size=3).run(vit_images, classes=[0]).heatmaps
    np.testing.assert_allclose(maps[:, 0], expected, rtol=2e-3, atol=1e-5 * expected.max())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradcam++", "layercam", "hirescam", "scorecam", "eigencam", "ablationcam"])
def test_other_methods_run_on_tokens(vit, vit_images, method):
    options = {"chunk_size": 8} if method in ("scorecam", "ablationcam") else {}
    maps = Explainer(spec_for_model(vit), method=method, batch_size=3, **options).run(vit_images).heatmaps
    assert maps.shape == (3, 1, 4, 4) and np.isfinite(maps).all()
    if method not in ("ablationcam",):  # random weights may leave every ablation drop negative
        assert (maps.max(axis=(1, 2, 3)) > maps.min(axis=(1, 2, 3))).all()


@pytest.mark.slow
def test_ablationcam_on_tokens_matches_its_formula(vit, vit_images):
    """Zeroing channel k of the patch tokens entering block 2, by hand, against the tool's weights."""
    import tensorflow as tf

    encoder = vit.backbone.get_layer("vit_encoder")
    embedded = vit.backbone.get_layer("vit_patching_and_embedding")(vit_images)
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
    maps = Explainer(spec_for_model(vit), method="ablationcam", batch_size=3, chunk_size=8,
                     layer="transformer_block_2").run(vit_images, classes=[0])
    np.testing.assert_allclose(maps.heatmaps[:, 0], expected, rtol=5e-3, atol=1e-4 * max(np.abs(expected).max(), 1e-3))


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
