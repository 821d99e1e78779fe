"""Review of issues 11, 15, 16, 17 as a new user: each test is a defect found by trying the tool."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gradcam_cli.cli import cli

ROOT = Path(__file__).resolve().parent.parent
PAIR = ROOT / "sample_images" / "shapes" / "05_pair_circle_triangle.png"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_max_megapixels_is_a_usage_error(tmp_path, value):
    result = run("explain", PAIR, "-o", tmp_path / "out", "--max-megapixels", value)
    assert result.exit_code == 2, result.output
    assert "--max-megapixels" in result.output and "finite" in result.output
    assert not (tmp_path / "out").exists()


def _two_output_model(keras):
    """A softmax output `kind` (3 classes) and a linear output `age`, on one conv -> GAP trunk."""
    layers = keras.layers
    inputs = keras.Input((32, 32, 3))
    features = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3, activation="relu", name="conv")(inputs))
    return keras.Model(inputs, [layers.Dense(3, activation="softmax", name="kind")(features),
                                layers.Dense(1, name="age")(features)])


@pytest.fixture(scope="module")
def two_output_model(tmp_path_factory, keras):
    model = _two_output_model(keras)
    path = tmp_path_factory.mktemp("two") / "two.keras"
    model.save(path)
    return path


def test_compare_on_a_multi_output_model_names_its_own_option(tmp_path, two_output_model):
    result = run("compare", PAIR, "--model", two_output_model, "--methods", "gradcam", "-o", tmp_path / "s.png")
    assert result.exit_code == 2, result.output
    assert "--model-output" in result.output, result.output
    result = run("compare", PAIR, "--model", two_output_model, "--model-output", "age", "--methods", "gradcam",
                 "-o", tmp_path / "s.png")
    assert result.exit_code == 0 and (tmp_path / "s.png").exists(), result.output


def test_top_level_help_counts_the_methods_right():
    from gradcam_cli.methods import METHODS

    words = {7: "seven"}
    result = run("--help")
    assert f"Grad-CAM++ and {words[len(METHODS) - 3]} more" in " ".join(result.output.split()), result.output


@pytest.mark.parametrize("alpha", [float("nan"), 1.5])
def test_callback_refuses_an_alpha_the_api_refuses(tmp_path, alpha):
    import numpy as np

    from gradcam_cli.callbacks import GradCAMCallback
    from gradcam_cli.errors import OptionConflict

    with pytest.raises(OptionConflict, match="alpha"):
        GradCAMCallback(np.zeros((2, 32, 32, 3), np.float32), alpha=alpha, log_dir=None, png_dir=tmp_path)


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


def test_compare_tiles_show_a_regression_value_not_a_percentage(tmp_path, two_output_model, monkeypatch):
    from PIL import ImageDraw

    written = []
    original = ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text",
                        lambda self, xy, text, *a, **k: (written.append(text), original(self, xy, text, *a, **k)))
    result = run("compare", PAIR, "--model", two_output_model, "--model-output", "age", "--methods", "gradcam",
                 "-o", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    captions = [text for text in written if text.startswith("value")]
    assert captions and all("%" not in text and "value = " in text for text in captions), written


def test_output_taken_for_the_output_folder_points_to_output_dir(tmp_path):
    """``--output`` is neither option: the model's output is --model-output, the folder -o/--output-dir."""
    result = run("explain", PAIR, "--output", tmp_path / "myout")
    assert result.exit_code == 2 and "No such option '--output'" in result.output, result.output
    assert "--output-dir" in result.output and "--model-output" in result.output, result.output


def test_callback_explains_one_output_of_a_multi_output_model(tmp_path, keras):
    import numpy as np

    from gradcam_cli.callbacks import GradCAMCallback

    model = _two_output_model(keras)
    model.compile("adam", ["categorical_crossentropy", "mse"])
    images = np.random.default_rng(0).random((4, 32, 32, 3)).astype("float32")
    watch = GradCAMCallback(images, model_output="kind", log_dir=None, png_dir=tmp_path)
    model.fit(images, [np.eye(3)[[0, 1, 2, 0]], np.zeros(4)], epochs=1, verbose=0, callbacks=[watch])
    assert (tmp_path / "gradcam.epoch001.png").exists()
    assert watch.explainers["gradcam"].spec.head.output_name == "kind"


def test_api_error_for_a_missing_file_ends_with_one_full_stop():
    from gradcam_cli.api import as_images
    from gradcam_cli.errors import ImageError

    with pytest.raises(ImageError) as caught:
        as_images("no_such_file.png")
    assert str(caught.value).endswith("no such file or folder."), str(caught.value)


def test_a_model_file_is_one_model_however_its_path_is_typed(tmp_path, monkeypatch):
    """The resume fingerprint held the model path as typed, so `--model m.keras` then
    `--model ./m.keras` redid everything, and the Ray engine (whose actors load the absolute path)
    refused every relative model path as 'a different model'."""
    import shutil

    shutil.copy(ROOT / "gradcam_cli" / "demo" / "shapes_cnn.keras", tmp_path / "m.keras")
    monkeypatch.chdir(tmp_path)
    first = run("explain", PAIR, "--model", "m.keras", "-o", "out")
    assert first.exit_code == 0, first.output
    again = run("explain", PAIR, "--model", tmp_path / "." / "m.keras", "-o", "out")
    assert again.exit_code == 0 and "0 image(s) explained, 1 already done" in again.output, again.output


@pytest.mark.parametrize("value", ["0", "10,abc"])
def test_a_bad_input_size_names_the_option(tmp_path, value):
    result = run("explain", PAIR, "--input-size", value, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "--input-size" in result.output.splitlines()[-1], result.output


def test_json_lists_the_inputs_a_resumed_run_skips(tmp_path):
    # '--json' used to print nothing for inputs already done, so a script reading stdout lost them.
    import json

    shapes = ROOT / "sample_images" / "shapes"
    first_two = [shapes / "01_single_cross.png", shapes / "02_single_square.png"]
    out = tmp_path / "out"
    first = run("explain", *first_two, "--model", "demo", "-o", out, "--json")
    assert first.exit_code == 0
    again = run("explain", *first_two, shapes / "03_single_triangle.png", "--model", "demo", "-o", out, "--json")
    rows = [json.loads(line) for line in again.stdout.splitlines()]
    assert again.exit_code == 0 and len(rows) == 3
    by_name = {Path(row["input"]).name: row for row in rows}
    assert by_name["01_single_cross.png"]["resumed"] and by_name["02_single_square.png"]["resumed"]
    assert "resumed" not in by_name["03_single_triangle.png"]
    before = {Path(json.loads(line)["input"]).name: json.loads(line) for line in first.stdout.splitlines()}
    assert by_name["01_single_cross.png"]["overlay"] == before["01_single_cross.png"]["overlay"]
    manifest = (out / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 3 and not any("resumed" in line for line in manifest)  # not written again
    human = run("explain", *first_two, "--model", "demo", "-o", out)
    assert "01_single_cross.png:" not in human.stdout  # predictions are printed only for new work


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
