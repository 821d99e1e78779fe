"""Segmentation models: a class explained over a region (--region pred|all|MASK.png), the score
being the sum of the class's pre-softmax output over the region."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gradcam_cli.cli import cli
from gradcam_cli.errors import TargetError
from gradcam_cli.explainer import Explainer
from gradcam_cli.models.in_memory import spec_for_model

SIZE = 32
NEVER = 2  # a class no pixel is predicted as (its bias is very negative)


@pytest.fixture(scope="module")
def unet(keras):
    """A small U-Net: two encoder levels, a skip connection, a per-pixel softmax classifier."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((SIZE, SIZE, 3))
    enc1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="enc1")(inputs)
    enc2 = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="enc2")(
        keras.layers.MaxPooling2D(name="down")(enc1))
    merged = keras.layers.Concatenate(name="merge")([enc1, keras.layers.UpSampling2D(name="up")(enc2)])
    decoded = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="dec")(merged)
    outputs = keras.layers.Conv2D(4, 1, activation="softmax", name="classifier")(decoded)
    model = keras.Model(inputs, outputs, name="tiny_unet")
    kernel, bias = model.get_layer("classifier").get_weights()
    bias[NEVER] = -100.0
    model.get_layer("classifier").set_weights([kernel, bias])
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(8).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)


def numpy_gradcam(unet, images, class_index, region):
    """Grad-CAM at 'dec' in numpy: z = a W + b (the 1x1 classifier before its softmax), the score
    sum_{ij in R} z_ij[c], so d score / d a_ij = R_ij W[:, c]."""
    import keras

    a = keras.Model(unet.inputs, unet.get_layer("dec").output)(images).numpy().astype(np.float64)
    kernel, bias = unet.get_layer("classifier").get_weights()
    weights_matrix = kernel[0, 0].astype(np.float64)
    z = a @ weights_matrix + bias
    if isinstance(region, str) and region == "pred":
        mask = (z.argmax(-1) == class_index).astype(np.float64)
    elif isinstance(region, str) and region == "all":
        mask = np.ones(z.shape[:3])
    else:
        mask = np.broadcast_to(region.astype(np.float64), z.shape[:3])
    gradients = mask[..., None] * weights_matrix[:, class_index]
    channel_weights = gradients.mean(axis=(1, 2))
    return np.maximum(np.einsum("bhwk,bk->bhw", a, channel_weights), 0), mask.sum(axis=(1, 2))


def test_segmentation_head_and_auto_pick(unet):
    explainer = Explainer(spec_for_model(unet), batch_size=2)
    assert explainer.head.kind == "segmentation" and explainer.head.num_classes == 4
    assert explainer.target.path == "dec"  # not the per-pixel classifier, whose map is the output
    assert explainer.region_name == "pred"


@pytest.mark.parametrize("region", ["pred", "all", "mask"])
def test_region_score_is_the_sum_of_the_class_logits_over_the_region(unet, images, region, tmp_path):
    chosen = region
    if region == "mask":
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[4:20, 10:30] = 255
        Image.fromarray(mask).save(tmp_path / "mask.png")
        chosen, region = str(tmp_path / "mask.png"), mask != 0
    explainer = Explainer(spec_for_model(unet), batch_size=2, region=chosen)
    result = explainer.run(images, classes=[1])
    expected, pixels = numpy_gradcam(unet, images, 1, region)
    assert expected.max() > 0
    np.testing.assert_allclose(result.heatmaps[:, 0], expected, rtol=2e-3, atol=1e-5 * expected.max())
    np.testing.assert_array_equal(result.region_pixels[:, 0], pixels)


def test_default_target_is_the_class_covering_most_pixels(unet, images):
    result = Explainer(spec_for_model(unet), batch_size=2).run(images)
    predicted = unet.predict(images, verbose=0).argmax(-1)
    shares = np.stack([(predicted == c).mean(axis=(1, 2)) for c in range(4)], axis=1)
    np.testing.assert_allclose(result.probabilities, shares, atol=1e-6)
    np.testing.assert_array_equal(result.class_ids[:, 0], shares.argmax(1))
    assert (shares[:, NEVER] == 0).all()


def test_perturbation_methods_keep_the_region_fixed(unet, images):
    for method in ("scorecam", "ablationcam"):
        maps = Explainer(spec_for_model(unet), method=method, batch_size=2, chunk_size=4).run(images).heatmaps
        assert maps.shape == (2, 1, SIZE, SIZE) and np.isfinite(maps).all()


def test_region_errors(unet, tmp_path, gap_dense_model):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(TargetError, match="no nonzero pixel"):
        Explainer(spec_for_model(unet), region=str(tmp_path / "empty.png"))
    with pytest.raises(TargetError, match="applies to segmentation models"):
        Explainer(spec_for_model(gap_dense_model), region="all")


def test_cli_records_pixel_counts_and_reports_an_empty_region_per_image(unet, images, tmp_path):
    model_path = tmp_path / "unet.keras"
    unet.save(model_path)
    for index, image in enumerate(images):
        Image.fromarray(image.astype(np.uint8)).save(tmp_path / f"img{index}.png")
    runner = CliRunner()
    inputs = [str(tmp_path / "img0.png"), str(tmp_path / "img1.png")]
    result = runner.invoke(cli, ["explain", *inputs, "--model", str(model_path), "-o", str(tmp_path / "out")],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "of pixels" in result.output
    rows = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert all(row["head"] == "segmentation" and row["region"] == "pred" and row["region_pixels"] > 0 for row in rows)
    overlay = np.asarray(Image.open(tmp_path / "out" / rows[0]["overlay"])).astype(int)  # relative to the manifest
    assert overlay[0].max() < 60 and overlay[:14].max() > 150  # a dark caption strip with white text
    result = runner.invoke(cli, ["explain", *inputs, "--model", str(model_path), "--class", str(NEVER),
                                 "-o", str(tmp_path / "never")], catch_exceptions=False)
    assert result.exit_code == 1
    assert "region of class 'class_2' is empty" in result.output and "Traceback" not in result.output
    result = runner.invoke(cli, ["explain", *inputs, "--model", str(model_path), "--class", str(NEVER),
                                 "--region", "all", "-o", str(tmp_path / "all")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "all" / "manifest.jsonl").read_text().splitlines()]
    assert [row["region_pixels"] for row in rows] == [SIZE * SIZE] * 2


def test_compare_and_the_callback_take_a_region(unet, images, tmp_path):
    """Both lacked --region / region=: a class no pixel is predicted as could not be compared or
    watched in training; over 'all' it can, and the callback's map is the numpy reference's."""
    from gradcam_cli.callbacks import GradCAMCallback

    model_path = tmp_path / "unet.keras"
    unet.save(model_path)
    inputs = []
    for index, image in enumerate(images):
        inputs.append(str(tmp_path / f"img{index}.png"))
        Image.fromarray(image.astype(np.uint8)).save(inputs[-1])
    runner = CliRunner()
    command = ["compare", *inputs, "--model", str(model_path), "--methods", "gradcam,gradcam++", "--class", str(NEVER)]
    empty = runner.invoke(cli, [*command, "-o", str(tmp_path / "pred.png")], catch_exceptions=False)
    assert empty.exit_code != 0 and "is empty" in empty.output and "Traceback" not in empty.output
    assert "--region" in empty.output  # the message names the fix
    result = runner.invoke(cli, [*command, "--region", "all", "-o", str(tmp_path / "all.png")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "all.png").size == (3 * 224, 2 * (224 + 22) + 22)

    callback = GradCAMCallback(images, classes=[NEVER, NEVER], region="all", log_dir=None, png_dir=tmp_path / "cb")
    callback.set_model(unet)
    callback.explain(0)
    expected, _ = numpy_gradcam(unet, images, NEVER, "all")
    watched = callback.last_results["gradcam"].heatmaps[:, 0]
    assert expected.max() > 0 and np.corrcoef(watched.ravel(), expected.ravel())[0, 1] > 0.999
    np.testing.assert_allclose(watched, expected, rtol=1e-2, atol=1e-3 * expected.max())
