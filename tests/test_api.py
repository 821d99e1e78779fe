"""The Python API (gradcam_cli/api.py): what notebooks hold (PIL images, float, grey and RGBA arrays,
folders), files decoded as the CLI decodes them, a chosen output, options refused as the CLI refuses
them, and one compiled explainer reused across calls."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from gradcam_cli import decode as decode_module
from gradcam_cli.manifest import Manifest
from tests.helpers import PAIR, run


@pytest.mark.slow
def test_api_takes_single_pil_images_float_grey_and_rgba_arrays(tmp_path):
    from gradcam_cli import explain
    from gradcam_cli.errors import ImageError

    picture = Image.open(PAIR)
    reference = explain("demo", picture.convert("RGB"), alpha=0.3)
    assert reference.heatmaps.shape[:2] == (1, 1) and reference.alpha == 0.3
    pixels = np.asarray(picture.convert("RGB"))
    as_float = explain("demo", pixels.astype(np.float32) / 255.0)
    np.testing.assert_allclose(as_float.probabilities, reference.probabilities, atol=1e-5)
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        explain("demo", pixels.astype(np.float32))
    grey = np.asarray(picture.convert("L"))
    rgba = np.dstack([pixels, np.full(pixels.shape[:2], 255, np.uint8)])
    result = explain("demo", [grey, grey[..., None], rgba, Image.fromarray(rgba)])
    assert result.heatmaps.shape[0] == 4
    np.testing.assert_allclose(result.probabilities[0], result.probabilities[1], atol=1e-6)
    np.testing.assert_allclose(result.probabilities[2], reference.probabilities[0], atol=1e-5)
    with pytest.raises(ImageError, match="no image"):
        explain("demo", [])


def test_api_skips_unreadable_files_and_takes_input_size(keras, tmp_path, gap_dense_model):
    from gradcam_cli import explain

    folder = tmp_path / "f"
    folder.mkdir()
    shutil.copy(PAIR, folder / "good.png")
    (folder / "bad.png").write_bytes(b"not an image")
    result = explain("demo", folder)
    assert len(result.images) == 1 and len(result.failures) == 1 and "bad.png" in result.failures[0][1]
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    any_size = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    assert explain(any_size, folder / "good.png", input_size=40).heatmaps.shape[2:] == (38, 38)


def test_api_error_for_a_missing_file_ends_with_one_full_stop():
    from gradcam_cli.api import as_images
    from gradcam_cli.errors import ImageError

    with pytest.raises(ImageError) as caught:
        as_images("no_such_file.png")
    assert str(caught.value).endswith("no such file or folder."), str(caught.value)


@pytest.mark.slow
def test_api_decodes_files_at_the_overlay_size_like_the_cli(tmp_path, phone_jpeg):
    """The Python API used to keep every file at full resolution (36 MB per 12 MP photo, for a
    whole folder); it now decodes as the CLI does, and so gives the CLI's heatmap."""
    from gradcam_cli import explain

    monkeypatched = []
    real = decode_module.Image.Image.load

    def counting_load(image):  # the largest decode made
        monkeypatched.append(image.size)
        return real(image)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decode_module.Image.Image, "load", counting_load)
        result = explain("demo", str(phone_jpeg))
    assert result.images[0].shape == (750, 1000, 3)
    assert max(width * height for width, height in monkeypatched) <= 1000 * 750  # DCT-scaled, never 12 MP
    assert explain("demo", str(phone_jpeg), overlay_size=500).images[0].shape == (375, 500, 3)
    # decoded at 1/2 scale (2000 px) for a 1200 px overlay: the model input comes from the decode,
    # not from the fitted picture, in the API as in the CLI
    for size, extra in ((None, []), (1200, ["--overlay-size", "1200"])):
        api = result if size is None else explain("demo", str(phone_jpeg), overlay_size=size)
        out = tmp_path / f"cli{size}"
        assert run("explain", phone_jpeg, "-o", out, "-q", *extra).exit_code == 0
        row = Manifest.read_rows(out / "manifest.jsonl")[0]
        assert api.images[0].shape[:2] == tuple(reversed(Image.open(row["overlay"]).size))
        np.testing.assert_allclose(np.load(row["heatmap"]), api.heatmaps[0, 0], rtol=1e-4, atol=1e-6)


def test_api_explains_a_chosen_output(two_output_model, head_images):
    from gradcam_cli.api import explain

    result = explain(two_output_model, head_images.astype(np.uint8), model_output="age", layer="target")
    assert result.spec.head.kind == "regression" and result.label(0) == "value"


def test_api_refuses_classes_with_top_k_in_python_words():
    from gradcam_cli import explain
    from gradcam_cli.errors import OptionConflict

    with pytest.raises(OptionConflict, match="top_k=2 and classes cannot be combined"):
        explain("demo", str(PAIR), classes="square", top_k=2)


def test_explain_in_a_loop_with_an_in_memory_model_traces_once(keras, random_images):
    # gradcam_cli.explain built a fresh Explainer per call, so a notebook loop retraced every time.
    import gc
    import weakref

    import numpy as np

    import gradcam_cli
    from gradcam_cli import api

    def small_model():
        return keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                                 keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])

    model = small_model()
    images = [random_images[i].astype(np.uint8) for i in range(3)]
    first = gradcam_cli.explain(model, images[0], method="gradcam++")
    explainers = list(getattr(model, api._EXPLAINERS).values())
    for image in images[1:]:
        later = gradcam_cli.explain(model, image, method="gradcam++")
    assert len(explainers) == 1 and list(getattr(model, api._EXPLAINERS).values()) == explainers  # reused
    assert explainers[0].tracing_count == 1
    np.testing.assert_allclose(gradcam_cli.explain(model, images[0], method="gradcam++").heatmap(0),
                               first.heatmap(0), rtol=1e-5, atol=1e-6)
    assert later.method == "gradcam++"
    other = gradcam_cli.explain(model, images[0], method="gradcam")  # other options: their own
    assert other.method == "gradcam" and len(getattr(model, api._EXPLAINERS)) == 2
    gone = weakref.ref(model)
    del model, explainers, first, later, other  # results hold their spec, and so the model
    gc.collect()
    assert gone() is None  # the cache does not keep a model alive


def test_a_result_prints_as_one_short_line():
    from gradcam_cli import explain
    from tests.helpers import PAIR

    result = explain("demo", [str(PAIR), "no_such_file.png"])
    text = repr(result)
    assert "\n" not in text and len(text) < 200, text
    assert "1 image(s) x 1 target(s)" in text and "method='gradcam'" in text and "1 failed" in text


def test_the_api_bounds_decodes_and_names_its_own_keywords(tmp_path):
    from PIL import Image

    from gradcam_cli import explain
    from tests.helpers import PAIR

    big = tmp_path / "big.png"
    Image.new("RGB", (1600, 1000), "gray").save(big)  # a PNG decodes whole: 1.6 MP
    result = explain("demo", [str(PAIR), str(big)], max_megapixels=1)
    assert len(result.images) == 1 and result.failures[0][0] == str(big)
    assert "max_megapixels=1" in result.failures[0][1] and "--" not in result.failures[0][1]
