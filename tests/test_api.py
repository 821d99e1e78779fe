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
from tests.helpers import PAIR, run, tensorflow_warnings


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


@pytest.mark.slow
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
    from gradcam_cli.errors import ImageError
    from gradcam_cli.pictures import as_images

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


@pytest.mark.slow
def test_explain_in_a_loop_with_an_in_memory_model_traces_once(keras, random_images):
    # gradcam_cli.explain built a fresh Explainer per call, so a notebook loop retraced every time.
    import gc
    import weakref

    import numpy as np

    import gradcam_cli
    from gradcam_cli import model_cache

    def small_model():
        return keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                                 keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])

    model = small_model()
    images = [random_images[i].astype(np.uint8) for i in range(3)]
    first = gradcam_cli.explain(model, images[0], method="gradcam++")
    explainers = list(getattr(model, model_cache._EXPLAINERS).values())
    for image in images[1:]:
        later = gradcam_cli.explain(model, image, method="gradcam++")
    assert len(explainers) == 1 and list(getattr(model, model_cache._EXPLAINERS).values()) == explainers  # reused
    assert explainers[0].tracing_count == 1
    np.testing.assert_allclose(gradcam_cli.explain(model, images[0], method="gradcam++").heatmap(0),
                               first.heatmap(0), rtol=1e-5, atol=1e-6)
    assert later.method == "gradcam++"
    other = gradcam_cli.explain(model, images[0], method="gradcam")  # other options: their own
    assert other.method == "gradcam" and len(getattr(model, model_cache._EXPLAINERS)) == 2
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


@pytest.mark.slow
def test_an_api_loop_prints_no_retracing_warning_while_the_users_own_functions_still_do(keras, random_images,
                                                                                      monkeypatch):

    import tensorflow as tf

    import gradcam_cli
    from gradcam_cli import api

    with tensorflow_warnings(monkeypatch) as records:
        models = [keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                                    keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
                  for _ in range(2)]
        images = random_images.astype(np.uint8)
        for model in models:  # 6 model/method combos, with two batch shapes: 6 traces of the tool's step
            for method, count in (("gradcam", 2), ("gradcam++", 3), ("layercam", 2)):
                gradcam_cli.explain(model, list(images[:count]), method=method, batch_size=count)
        ours = [r for r in records if api.RETRACING_WARNING in r.getMessage()]

        @tf.function
        def users_own(x):
            return x * 2

        for size in range(1, 8):  # the user's function retraced on every call: TensorFlow's warning stays
            users_own(tf.zeros((size,)))
    assert ours == []
    theirs = [r.getMessage() for r in records if api.RETRACING_WARNING in r.getMessage()]
    assert theirs and all("users_own" in message for message in theirs)


@pytest.mark.parametrize(("keywords", "error", "names"), [
    ({"batch_size": 0}, "OptionConflict", "batch_size=0"),
    ({"batch_size": "16"}, "OptionConflict", "batch_size='16'"),
    ({"top_k": 0}, "TargetError", "top_k=0"),
    ({"classes": 1.5}, "TargetError", "classes holds 1.5"),
    ({"classes": np.array([[0.5]])}, "TargetError", "classes holds 0.5"),
    ({"method": 3}, "MethodError", "method=3"),
    ({"layer": 3}, "OptionConflict", "layer=3"),
    ({"input_size": "abc"}, "OptionConflict", "input_size='abc'"),
    ({"overlay_size": -5}, "OptionConflict", "overlay_size=-5"),
    ({"max_megapixels": 0}, "OptionConflict", "max_megapixels=0"),
    ({"chunk_size": 0, "method": "scorecam"}, "OptionConflict", "chunk_size=0"),
    ({"max_channels": -2, "method": "scorecam"}, "OptionConflict", "max_channels=-2"),
    ({"preprocess": 5}, "OptionConflict", "preprocess=5"),
    ({"labels": [1, 2]}, "OptionConflict", "labels=[1, 2]"),
    ({"safe_mode": "no"}, "OptionConflict", "safe_mode='no'"),
    ({"alpha": 2}, "OptionConflict", "alpha=2"),
    ({"model": None}, "UnsupportedModel", "model=None"),
    ({"model": 5}, "UnsupportedModel", "model=5"),
    ({"images": None}, "ImageError", "images=None"),
    ({"images": 5}, "ImageError", "images=5"),
    ({"images": []}, "ImageError", "an empty list"),
])
def test_a_wrong_keyword_is_one_line_naming_it_before_any_model_loads(keywords, error, names, monkeypatch):
    # these were TypeError, AttributeError or ValueError tracebacks from deep inside (batch_size=0:
    # "range() arg 3 must not be zero"), or silently accepted (overlay_size=-5, batch_size=2.5)
    from gradcam_cli import api, errors, model_cache

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the keywords were checked")

    monkeypatch.setattr(model_cache, "resolve_model", no_model)
    api.release_models()
    arguments = {"model": "demo", "images": [np.zeros((8, 8, 3), np.uint8)], **keywords}
    with pytest.raises(errors.GradcamError) as raised:
        api.explain(arguments.pop("model"), arguments.pop("images"), **arguments)
    message = str(raised.value)
    assert type(raised.value).__name__ == error and names in message and "\n" not in message
    assert "--" not in message  # Python's spelling, not the command line's


def test_a_folder_without_images_is_named_with_what_was_looked_for(tmp_path):
    from gradcam_cli import explain
    from gradcam_cli.errors import ImageError

    with pytest.raises(ImageError, match=f"{tmp_path} holds no image file \\(looked for .bmp"):
        explain("demo", str(tmp_path))


@pytest.mark.slow
def test_a_fresh_api_loop_prints_nothing_and_leaves_tensorflows_settings_alone():
    # TensorFlow's start-up chatter (oneDNN, CUDA probing, CPU features, cuInit) and retracing warnings
    # were printed by a plain loop; quieting them must not change the user's log levels or environment
    import os
    import subprocess
    import sys

    code = """
import logging, os
import numpy as np
import gradcam_cli
picture = np.zeros((64, 64, 3), np.uint8)
for method in ("gradcam", "gradcam++", "layercam"):
    for count in (1, 2):
        gradcam_cli.explain("demo", [picture] * count, method=method, batch_size=count)
print(logging.getLogger("tensorflow").level, logging.getLogger("absl").level, os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
"""
    environment = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    assert done.stderr == ""
    tensorflow_level, absl_level, native_level = done.stdout.split()
    assert (tensorflow_level, absl_level) == ("0", "0") and native_level != "3"  # TensorFlow's own, not the CLI's


@pytest.mark.slow
def test_an_unknown_colormap_of_an_overlay_is_one_line():
    from gradcam_cli import explain
    from gradcam_cli.errors import OptionConflict

    result = explain("demo", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(OptionConflict, match="colormap='viridis': choose one of jet, turbo, hot, gray"):
        result.overlay(0, colormap="viridis")


def test_detector_keywords_on_a_classifier_and_a_pixel_reference_are_refused_in_one_line(gap_dense_model, tmp_path):
    # the hostile pass: boxes= and min_score= were ignored for a classifier, and reference=np.zeros(...)
    # printed the array in its message
    from gradcam_cli import explain
    from gradcam_cli.errors import OptionConflict

    picture = np.zeros((32, 32, 3), np.uint8)
    for keywords, named in (({"boxes": [0]}, "boxes=0 chooses"), ({"min_score": 0.5}, "min_score=0.5 chooses"),
                            ({"boxes": 1, "min_score": 0.2}, "min_score=0.2 and boxes=1 choose")):
        with pytest.raises(OptionConflict) as error:
            explain(gap_dense_model, picture, **keywords)
        assert str(error.value).startswith(f"{named} an object detector's boxes; this model's head is softmax over "
                                           "5 classes")
    assert explain(gap_dense_model, picture).class_ids.shape == (1, 1)  # left at their defaults: no refusal
    with pytest.raises(OptionConflict) as error:
        explain(gap_dense_model, picture, reference=np.zeros((64, 64, 3), np.uint8))
    message = str(error.value)
    assert message.startswith("reference is an array of shape (64, 64, 3) (ndarray): give an image or folder path")
    assert "0, 0" not in message and "\n" not in message
