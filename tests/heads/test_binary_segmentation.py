"""One sigmoid channel per pixel (gradcam_cli/heads/segmentation.py, BinarySegmentationHead): the
classes negative/positive, their ``pred`` regions, the scores (sum of ``z`` or ``-z`` over the
region) against numpy, the reported pixel shares, and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gradcam_cli.explainer import Explainer
from gradcam_cli.heads import detect_head
from gradcam_cli.models.in_memory import spec_for_model
from tests.helpers import run

SIZE = 16


@pytest.fixture(scope="module")
def mask_model(keras, mask_images):
    """conv -> conv 'dec' -> Conv2D(1, 1, sigmoid) 'mask'; the mask's bias is set so that about half
    of the pixels of the images are predicted positive."""
    keras.utils.set_random_seed(11)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="enc")(inputs)
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="dec")(x)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x)
    model = keras.Model(inputs, outputs, name="binary_mask")
    kernel, _ = model.get_layer("mask").get_weights()
    a = keras.Model(inputs, model.get_layer("dec").output)(mask_images).numpy()
    bias = -np.median(a @ kernel[0, 0])
    model.get_layer("mask").set_weights([kernel, np.array([bias], np.float32)])
    return model


@pytest.fixture(scope="module")
def mask_images():
    return np.random.default_rng(12).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)


def logits_and_activations(keras, model, images):
    """(z (B, H, W) float64 the pre-sigmoid output, a (B, H, W, k) at 'dec', W (k,)) in numpy."""
    a = keras.Model(model.input, model.get_layer("dec").output)(images).numpy().astype(np.float64)
    kernel, bias = model.get_layer("mask").get_weights()
    weights = kernel[0, 0, :, 0].astype(np.float64)
    return a @ weights + bias[0], a, weights


def test_detected_with_two_classes_and_a_labels_file(mask_model, tmp_path):
    head = detect_head(mask_model)
    assert head.kind == "binary_segmentation" and head.num_classes == 2 and head.has_regions
    spec = spec_for_model(mask_model)
    assert [spec.label(0), spec.label(1)] == ["negative", "positive"]
    (tmp_path / "names.txt").write_text("background\nroad\n")
    named = spec_for_model(mask_model, labels=str(tmp_path / "names.txt"))
    assert [named.label(0), named.label(1)] == ["background", "road"]
    assert Explainer(spec).target.path == "dec"  # not the per-pixel classifier, whose map is the output


@pytest.mark.parametrize(("class_index", "sign"), [(1, 1.0), (0, -1.0)])
def test_pred_region_and_gradcam_against_numpy(keras, mask_model, mask_images, class_index, sign):
    z, a, weights = logits_and_activations(keras, mask_model, mask_images)
    probability = mask_model.predict(mask_images, verbose=0)[..., 0]
    region = (probability > 0.5) if class_index == 1 else (probability < 0.5)
    np.testing.assert_array_equal(region, sign * z > 0)
    assert 0 < region.sum() < region.size  # both classes have pixels
    result = Explainer(spec_for_model(mask_model), batch_size=3, region="pred").run(mask_images, classes=[class_index])
    np.testing.assert_array_equal(result.region_pixels[:, 0], region.sum(axis=(1, 2)))
    # score = sum over the region of sign * z, so d score / d a_ij = sign * R_ij * W
    gradients = sign * region[..., None] * weights
    expected = np.maximum(np.einsum("bhwk,bk->bhw", a, gradients.mean(axis=(1, 2))), 0)
    assert expected.max() > 0
    np.testing.assert_allclose(result.heatmaps[:, 0], expected, rtol=2e-3, atol=1e-5 * expected.max())


def test_reported_values_are_pixel_shares(mask_model, mask_images):
    result = Explainer(spec_for_model(mask_model), batch_size=3).run(mask_images, top_k=2)
    probability = mask_model.predict(mask_images, verbose=0)[..., 0]
    shares = np.stack([(probability < 0.5).mean(axis=(1, 2)), (probability > 0.5).mean(axis=(1, 2))], axis=1)
    np.testing.assert_allclose(result.probabilities, shares, atol=1e-6)
    assert (result.probabilities.sum(axis=1) <= 1 + 1e-6).all() and (result.probabilities >= 0).all()
    np.testing.assert_array_equal(result.class_ids[:, 0], shares.argmax(axis=1))


def test_cli_explains_the_positive_class(mask_model, tmp_path):
    model_path = tmp_path / "mask.keras"
    mask_model.save(model_path)
    picture = np.random.default_rng(13).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "a.png")
    result = run("explain", tmp_path / "a.png", "--model", model_path, "--class", "positive", "--region", "pred",
                 "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "of pixels" in result.output
    (row,) = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    positive = int((mask_model.predict(picture[None].astype(np.float32), verbose=0) > 0.5).sum())
    assert row["head"] == "binary_segmentation" and row["status"] == "ok"
    assert row["label"] == "positive" and row["class_index"] == 1 and row["region"] == "pred"
    assert row["region_pixels"] == positive
    assert {label for _, label, _ in row["top"]} == {"negative", "positive"}
    assert sum(share for _, _, share in row["top"]) <= 1 + 1e-6
