"""Inline display of API results in notebooks (gradcam_cli/notebook.py): Explanation._repr_html_
and Explanation.show."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image


def _decoded_images(markup: str) -> list[Image.Image]:
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', markup)
    return [Image.open(io.BytesIO(base64.b64decode(uri))) for uri in uris]


def test_notebook_representation_shows_every_image_and_class(gap_dense_model, random_images):
    import gradcam_cli
    from gradcam_cli.notebook import thumbnail_overlay

    originals = [image.astype(np.uint8) for image in random_images]
    originals[1] = np.asarray(Image.fromarray(originals[1]).resize((400, 200)))  # a larger, wide one
    result = gradcam_cli.explain(gap_dense_model, originals, top_k=2, labels=list("abcde"))
    markup = result._repr_html_()
    pictures = _decoded_images(markup)
    assert len(pictures) == 5 * 2  # every (image, class)
    assert pictures[0].size == (32, 32) and pictures[2].size == (192, 96)  # thumbnails keep the aspect
    for image in range(5):
        for target in range(2):
            label = result.label(image, target)
            probability = result.probabilities[image, result.class_ids[image, target]]
            assert f"image {image}<br>{label} {probability:.1%}" in markup
    np.testing.assert_array_equal(np.asarray(pictures[3]),
                                  np.asarray(thumbnail_overlay(originals[1], result.heatmaps[1, 1])))


def test_notebook_representation_caps_the_page_and_escapes_names(gap_dense_model, random_images, tmp_path):
    import gradcam_cli

    for index in range(18):
        Image.fromarray(random_images[index % 5].astype(np.uint8)).save(tmp_path / f"<b>{index:02d}.png")
    result = gradcam_cli.explain(gap_dense_model, str(tmp_path))
    markup = result._repr_html_()
    assert len(_decoded_images(markup)) == 16
    assert "18 image(s); the first 16 shown" in markup
    assert "&lt;b&gt;00.png" in markup and "<b>00" not in markup


def test_show_returns_the_overlay_as_a_pil_image(gap_dense_model, random_images):
    import gradcam_cli

    result = gradcam_cli.explain(gap_dense_model, random_images.astype(np.uint8))
    picture = result.show(2)
    assert isinstance(picture, Image.Image) and picture.size == (32, 32) and picture.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(picture), result.overlay(2))


def test_notebook_caption_of_a_regression_shows_the_value_not_a_percentage(keras):
    import numpy as np

    from gradcam_cli import explain

    layers = keras.layers
    inputs = keras.Input((32, 32, 3))
    features = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3, activation="relu", name="conv")(inputs))
    model = keras.Model(inputs, layers.Dense(1, name="age")(features))
    result = explain(model, np.full((32, 32, 3), 0.5, np.float32))
    value = float(result.probabilities[0, 0])
    page = result._repr_html_()
    assert f"value = {value:.4g}" in page and "%" not in page.split("<figcaption>")[1], page[-300:]
