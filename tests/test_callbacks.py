"""The training callback, gradcam_cli.callbacks.GradCAMCallback: fitted two epochs, read back from TensorBoard."""

from __future__ import annotations

import importlib.util
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.references import kind_and_age_model

# the tests that write or read TensorBoard summaries; the others run without tensorboard
needs_tensorboard = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None and not os.environ.get("CI"),
                                       reason="tensorboard is not installed (pip install -e '.[test]')")

IMAGES = 6
SIZE = 32
SAMPLES = str(Path(__file__).resolve().parent.parent / "sample_images" / "shapes")


def _tiny_classifier(keras, classes: int = 3):
    """conv -> BN -> conv -> GAP -> softmax Dense, built fresh: training must not touch shared fixtures."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.5, name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    return model


def _training_data(count: int = 64):
    """Images in [0, 1] holding one square somewhere, its colour (red, green, blue) is the class."""
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 0.2, (count, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.integers(0, 3, count)
    for image, label in zip(images, labels, strict=True):
        top, left = rng.integers(0, SIZE - 10, 2)
        image[top : top + 10, left : left + 10, label] = 1.0
    return images, labels


def _image_events(log_dir):
    """{tag: [(step, (height, width, channels), decoded grid)]} read back with TensorBoard's reader."""
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(str(log_dir), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    events = {}
    for tag in accumulator.Tags()["tensors"]:
        assert accumulator.SummaryMetadata(tag).plugin_data.plugin_name == "images"
        rows = []
        for event in accumulator.Tensors(tag):
            width, height, *pngs = tf.make_ndarray(event.tensor_proto)
            assert len(pngs) == 1  # one grid per method and epoch
            grid = np.asarray(Image.open(io.BytesIO(pngs[0])))
            assert grid.shape[:2] == (int(height), int(width))
            rows.append((event.step, grid.shape, grid))
        events[tag] = rows
    return events


@pytest.fixture(scope="module")
def trained(keras, tmp_path_factory):
    """A model fitted two epochs with the callback (two methods, true labels given)."""
    from gradcam_cli.callbacks import GradCAMCallback

    images, labels = _training_data()
    model = _tiny_classifier(keras)
    log_dir = tmp_path_factory.mktemp("tensorboard")
    png_dir = tmp_path_factory.mktemp("png")
    callback = GradCAMCallback(images[:IMAGES], method=["gradcam", "gradcam++"], classes=labels[:IMAGES],
                               log_dir=log_dir, png_dir=png_dir)
    traces_after_epoch = []

    class RecordTraces(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            traces_after_epoch.append((dict(callback.tracing_count), dict(callback.explainers)))
            heatmaps_after_epoch.append(callback.last_results["gradcam"].heatmaps.copy())

    heatmaps_after_epoch: list[np.ndarray] = []
    model.fit(images, labels, batch_size=16, epochs=2, verbose=0, callbacks=[callback, RecordTraces()])
    return model, images, labels, callback, log_dir, png_dir, traces_after_epoch, heatmaps_after_epoch


@needs_tensorboard
def test_callback_writes_one_grid_per_method_and_epoch(trained):
    _, _, _, _, log_dir, _, _, _ = trained
    events = _image_events(log_dir)
    assert set(events) == {"gradcam/gradcam", "gradcam/gradcam++"}
    for rows in events.values():
        assert [step for step, _, _ in rows] == [0, 1]
        # 6 tiles of 32 px in 3 columns x 2 rows, 2 px apart
        assert all(shape == (66, 100, 3) for _, shape, _ in rows)


@needs_tensorboard
def test_callback_step_is_traced_once_and_reused_every_epoch(trained):
    _, _, _, callback, _, _, traces, _ = trained
    (counts_1, explainers_1), (counts_2, explainers_2) = traces
    assert counts_1 == counts_2 == {"gradcam": 1, "gradcam++": 1}
    assert all(explainers_2[name] is explainers_1[name] for name in explainers_1)  # not rebuilt either


@needs_tensorboard
def test_callback_explains_the_trained_model_itself_with_the_true_labels(trained):
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.models.in_memory import spec_for_model

    model, images, labels, callback, _, _, _, heatmaps = trained
    explainer = callback.explainers["gradcam"]
    assert explainer.spec.model is model  # no copy
    np.testing.assert_array_equal(callback.targets, labels[:IMAGES])
    np.testing.assert_array_equal(callback.last_results["gradcam"].class_ids[:, 0], labels[:IMAGES])
    assert not np.allclose(heatmaps[0], heatmaps[1])  # the weights changed between epochs ...
    fresh = Explainer(spec_for_model(model), "gradcam", batch_size=IMAGES).run(images[:IMAGES], labels[:IMAGES, None])
    np.testing.assert_allclose(heatmaps[1], fresh.heatmaps, rtol=1e-5, atol=1e-6)  # ... and the step saw the last


@needs_tensorboard
def test_callback_grid_tiles_are_the_overlays_in_image_order(trained):
    from gradcam_cli import render

    _, images, _, _, log_dir, _, _, heatmaps = trained
    grid = _image_events(log_dir)["gradcam/gradcam"][1][2]  # epoch 2
    for index, (top, left) in [(0, (0, 0)), (2, (0, 68)), (4, (34, 34))]:
        shown = render.to_levels(render.normalize(images[index]))  # float input: stretched to its range
        expected = render.overlay(shown, heatmaps[1][index, 0])
        np.testing.assert_array_equal(grid[top : top + SIZE, left : left + SIZE], expected)
    assert (grid[SIZE : SIZE + 2] == 255).all()  # the white gap between rows


@needs_tensorboard
def test_callback_png_files_match_the_tensorboard_grids(trained):
    _, _, _, _, log_dir, png_dir, _, _ = trained
    events = _image_events(log_dir)
    assert sorted(p.name for p in png_dir.iterdir()) == [
        "gradcam++.epoch001.png", "gradcam++.epoch002.png", "gradcam.epoch001.png", "gradcam.epoch002.png"]
    for step, _, grid in events["gradcam/gradcam"]:
        written = np.asarray(Image.open(png_dir / f"gradcam.epoch{step + 1:03d}.png"))
        np.testing.assert_array_equal(written, grid)


@pytest.mark.slow
@needs_tensorboard
def test_callback_takes_paths_and_a_tf_data_batch(keras, tmp_path):
    import tensorflow as tf

    from gradcam_cli.callbacks import GradCAMCallback

    images, labels = _training_data(32)
    model = _tiny_classifier(keras)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    from_dataset = GradCAMCallback(dataset, log_dir=None, png_dir=tmp_path / "dataset", every=2)
    from_paths = GradCAMCallback(SAMPLES, preprocess="scale01", log_dir=tmp_path / "tb")
    model.fit(images, labels, batch_size=16, epochs=2, verbose=0, callbacks=[from_dataset, from_paths])

    np.testing.assert_array_equal(from_dataset.targets, labels[:4])  # the batch's y are the true labels
    assert [p.name for p in (tmp_path / "dataset").iterdir()] == ["gradcam.epoch002.png"]  # every=2
    assert from_paths.targets is None  # no labels: each image's top-1
    assert from_paths.count == 12
    steps = [step for step, _, _ in _image_events(tmp_path / "tb")["gradcam/gradcam"]]
    assert steps == [0, 1]


@needs_tensorboard
def test_callback_rejects_mismatched_inputs_before_training(keras):
    from gradcam_cli.callbacks import GradCAMCallback
    from gradcam_cli.errors import GradcamError

    with pytest.raises(GradcamError, match="unknown method"):
        GradCAMCallback(np.zeros((2, SIZE, SIZE, 3)), method="gradcamm")
    with pytest.raises(GradcamError, match="no such file"):
        GradCAMCallback(["missing_image.png"])
    images, labels = _training_data(16)
    epochs_ended = []
    recorder = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs_ended.append(epoch))
    model = _tiny_classifier(keras)
    wrong_size = GradCAMCallback(np.zeros((2, 16, 16, 3), np.float32), log_dir=None, png_dir="unused")
    with pytest.raises(GradcamError, match="do not fit the model's input"):
        model.fit(images, labels, epochs=1, verbose=0, callbacks=[recorder, wrong_size])
    wrong_labels = GradCAMCallback(images[:2], classes=[0, 7], log_dir=None, png_dir="unused")
    with pytest.raises(GradcamError, match="labels must lie in 0..2"):
        model.fit(images, labels, epochs=1, verbose=0, callbacks=[recorder, wrong_labels])
    assert epochs_ended == []  # both failed before the first epoch


@needs_tensorboard
def test_callback_on_a_model_of_any_input_size_uses_the_images_size(keras, tmp_path):
    from gradcam_cli.callbacks import GradCAMCallback

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    images = np.random.default_rng(0).integers(0, 256, (3, 24, 40, 3)).astype(np.uint8)
    callback = GradCAMCallback(images, log_dir=None, png_dir=tmp_path, columns=1)
    callback.set_model(keras.Model(inputs, outputs))
    grid = callback.explain(4)["gradcam"]
    assert grid.shape == (3 * 24 + 2 * 2, 40, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "gradcam.epoch005.png")), grid)


@needs_tensorboard
def test_callback_without_tensorboard_says_what_to_install(monkeypatch):
    import sys

    from gradcam_cli.callbacks import GradCAMCallback
    from gradcam_cli.errors import GradcamError

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    with pytest.raises(GradcamError, match="pip install tensorboard"):
        GradCAMCallback(np.zeros((1, SIZE, SIZE, 3)))
    GradCAMCallback(np.zeros((1, SIZE, SIZE, 3)), log_dir=None, png_dir="unused")  # PNG only: fine


@pytest.mark.parametrize("alpha", [float("nan"), 1.5])
def test_callback_refuses_an_alpha_the_api_refuses(tmp_path, alpha):
    import numpy as np

    from gradcam_cli.callbacks import GradCAMCallback
    from gradcam_cli.errors import OptionConflict

    with pytest.raises(OptionConflict, match="alpha"):
        GradCAMCallback(np.zeros((2, 32, 32, 3), np.float32), alpha=alpha, log_dir=None, png_dir=tmp_path)


@pytest.mark.slow
def test_callback_explains_one_output_of_a_multi_output_model(tmp_path, keras):
    import numpy as np

    from gradcam_cli.callbacks import GradCAMCallback

    model = kind_and_age_model(keras)
    model.compile("adam", ["categorical_crossentropy", "mse"])
    images = np.random.default_rng(0).random((4, 32, 32, 3)).astype("float32")
    watch = GradCAMCallback(images, model_output="kind", log_dir=None, png_dir=tmp_path)
    model.fit(images, [np.eye(3)[[0, 1, 2, 0]], np.zeros(4)], epochs=1, verbose=0, callbacks=[watch])
    assert (tmp_path / "gradcam.epoch001.png").exists()
    assert watch.explainers["gradcam"].spec.head.output_name == "kind"


@pytest.mark.slow
def test_callback_epochs_print_no_retracing_warning_of_the_tools_own(keras, tmp_path, monkeypatch):
    # six methods trace six steps of the same Python function, which TensorFlow counted as retracing

    from gradcam_cli.api import RETRACING_WARNING
    from gradcam_cli.callbacks import GradCAMCallback
    from tests.helpers import tensorflow_warnings

    images, labels = _training_data(8)
    methods = ["gradcam", "gradcam++", "layercam", "hirescam", "xgradcam", "eigencam"]
    callback = GradCAMCallback(images[:2], method=methods, classes=labels[:2], log_dir=None, png_dir=tmp_path)
    callback.set_model(_tiny_classifier(keras))
    with tensorflow_warnings(monkeypatch) as records:
        callback.on_train_begin()
        callback.on_epoch_end(0)
    assert sorted(callback.tracing_count) == sorted(methods)
    assert [r for r in records if RETRACING_WARNING in r.getMessage()] == []


@pytest.mark.parametrize(("arguments", "error", "says"), [
    ({"every": 0}, "OptionConflict", "every=0: give a whole number of at least 1"),
    ({"log_dir": None, "png_dir": None}, "OptionConflict", "give log_dir (TensorBoard), png_dir (PNG files) or both"),
    ({"method": 3}, "MethodError", "method=3: give a method name"),
    ({"method": ["gradcam", 3]}, "MethodError", "method=3: give a method name"),
    ({"colormap": "viridis"}, "OptionConflict", "colormap='viridis': choose one of jet, turbo, hot, gray"),
    ({"columns": 0}, "OptionConflict", "columns=0"),
    ({"layer": 3}, "OptionConflict", "layer=3"),
    ({"chunk_size": 0, "method": "scorecam"}, "OptionConflict", "chunk_size=0"),
    ({"images": None}, "ImageError", "images=None: give a path"),
    ({"images": 5}, "ImageError", "images=5: give a path"),
])
def test_callback_arguments_are_refused_in_one_line_before_training(arguments, error, says):
    # they were ValueError, TypeError or AttributeError tracebacks, or (columns=0) accepted
    from gradcam_cli.callbacks import GradCAMCallback
    from gradcam_cli.errors import GradcamError

    arguments = {"images": np.zeros((2, SIZE, SIZE, 3), np.float32), "log_dir": None, "png_dir": "unused",
                 **arguments}
    with pytest.raises(GradcamError) as raised:
        GradCAMCallback(arguments.pop("images"), **arguments)
    assert type(raised.value).__name__ == error and says in str(raised.value) and "\n" not in str(raised.value)


def test_callback_with_an_unwritable_folder_fails_when_training_begins_not_after_an_epoch(keras, tmp_path):
    # the first epoch's PNG write raised FileNotFoundError, ending the training it watched
    from gradcam_cli.callbacks import GradCAMCallback
    from gradcam_cli.errors import OutputError

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    callback = GradCAMCallback(np.zeros((2, SIZE, SIZE, 3), np.float32), log_dir=None, png_dir=blocker / "png")
    callback.set_model(_tiny_classifier(keras))
    with pytest.raises(OutputError, match="png_dir=.*a_file/png' cannot be written"):
        callback.on_train_begin()
