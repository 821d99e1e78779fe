"""gradcam_cli/backend.py: the same maps on JAX as on TensorFlow, the CLI, evaluate and the callback on
JAX, model files crossing backends, and PyTorch refused in one line.

The suite runs on TensorFlow; Keras picks its backend once per process, so the JAX side runs in one
subprocess (``KERAS_BACKEND=jax``) that loads models this process saved, computes their maps and
writes them to an ``.npz`` compared here, runs the CLI and the callback, and saves a model of its
own built on JAX for this process to load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradcam_cli import backend
from gradcam_cli.errors import UnsupportedBackend
from tests.helpers import SHAPES

ROOT = Path(__file__).resolve().parent.parent
DEMO_METHODS = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "scorecam", "ablationcam",
                "cam", "guided-gradcam", "random", "center")
MOBILENET_METHODS = ("gradcam", "gradcam++", "layercam", "scorecam", "ablationcam")
TOKEN_METHODS = ("gradcam", "layercam", "ablationcam")
TOLERANCE = 1e-3  # largest difference of min-max normalised maps; measured: under 1e-5
DETECTION_METHODS = ("gradcam", "eigencam")
SIMILARITY_METHODS = ("gradcam",)
JAX_SCRIPT = f"DETECTION_METHODS, SIMILARITY_METHODS = {DETECTION_METHODS}, {SIMILARITY_METHODS}\n" + r'''
import json, os, sys
import numpy as np
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
from click.testing import CliRunner
from gradcam_cli.cli import cli
from gradcam_cli.explainer import Explainer
from gradcam_cli.models import resolve_model

work = sys.argv[1]
job = json.load(open(os.path.join(work, "job.json")))
maps = {}
for case in job["cases"]:
    spec = resolve_model(case["model"], preprocess=case["preprocess"])
    images = np.load(os.path.join(work, case["images"]))
    for method in case["methods"]:
        result = Explainer(spec, method=method, batch_size=len(images)).run(images, classes=case["classes"])
        maps[f"{case['name']}/{method}"] = result.heatmaps

# issue 28: a detector's boxes and maps (and evaluate's deletion on its box score), a similarity's maps
import gradcam_cli
from gradcam_cli.boxes import pick_detections
from gradcam_cli.scoring import EvaluateOptions, Evaluator
from tests.heads.test_detection import grid_boxes_layer
grid_boxes_layer(keras)  # registers the detector's weightless box layer, for its file
detector = resolve_model(os.path.join(work, "detector.keras"), task="detect")
square = np.load(os.path.join(work, "square.npy"))
for method in DETECTION_METHODS:
    explainer = Explainer(detector, method=method, batch_size=1)
    kept = pick_detections(explainer.detect(square)[0], "square", 0.5)
    maps[f"detector/{method}"] = explainer.run(square, boxes=[kept]).heatmaps
    maps[f"detector/{method}/boxes"] = np.array([d.target() for d in kept])
evaluator = Evaluator(detector, EvaluateOptions(methods=["gradcam"], metrics=["deletion"], steps=4, batch_size=1))
maps["detector/deletion"] = evaluator.score_batch(square, None, [(32, 32)], [kept])["gradcam"].curves["deletion"]
for method in SIMILARITY_METHODS:
    similar = gradcam_cli.explain(os.path.join(work, "patterns.keras"), os.path.join(work, "ab.png"), method=method,
                                  reference=os.path.join(work, "a.png"))
    maps[f"similarity/{method}"] = similar.heatmaps
    maps[f"similarity/{method}/cosine"] = similar.probabilities
np.savez(os.path.join(work, "jax_maps.npz"), **maps)

report = {}
runner = CliRunner()
shapes = job["shapes"]
done = runner.invoke(cli, ["explain", *shapes, "--model", "demo", "-o", os.path.join(work, "explained"), "--json"])
report["explain"] = [done.exit_code, done.output[-2000:]]
done = runner.invoke(cli, ["evaluate", *shapes, "--model", "demo", "--methods", "gradcam,random", "--steps", "4",
                           "-o", os.path.join(work, "evaluated")])
report["evaluate"] = [done.exit_code, done.output[-2000:]]

from gradcam_cli.callbacks import GradCAMCallback
keras.utils.set_random_seed(3)
inputs = keras.Input((16, 16, 3))
x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
small = keras.Model(inputs, outputs)
small.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
x_train = np.random.default_rng(0).uniform(0, 1, (8, 16, 16, 3)).astype("float32")
y_train = np.array([0, 1] * 4)
small.fit(x_train, y_train, epochs=2, verbose=0,
          callbacks=[GradCAMCallback(x_train[:2], log_dir=None, png_dir=os.path.join(work, "callback"))])
report["callback_files"] = sorted(os.listdir(os.path.join(work, "callback")))

small.save(os.path.join(work, "built_on_jax.keras"))
np.save(os.path.join(work, "jax_predictions.npy"), np.asarray(small(x_train[:2])))
json.dump(report, open(os.path.join(work, "report.json"), "w"))
'''


def test_the_configured_backend_is_read_without_importing_keras(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert backend.configured_name() == "jax"
    monkeypatch.delenv("KERAS_BACKEND")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "keras.json").write_text('{"backend": "torch", "floatx": "float32"}')
    assert backend.configured_name() == "torch"
    (tmp_path / "keras.json").unlink()
    assert backend.configured_name() == "tensorflow"


def test_pytorch_is_refused_in_one_line_naming_the_backends():
    with pytest.raises(UnsupportedBackend) as refused:
        backend.check_supported("torch")
    message = str(refused.value)
    assert "KERAS_BACKEND=torch" in message and "tensorflow" in message and "jax" in message
    assert "\n" not in message
    assert backend.check_supported("jax") == "jax"


@pytest.mark.slow
def test_the_cli_under_keras_backend_torch_is_one_line_and_exit_2(tmp_path):
    environment = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "gradcam_cli", "explain", str(SHAPES), "--model", "demo",
                           "-o", str(tmp_path / "out")], capture_output=True, text=True, env=environment,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("gradcam:")]
    assert errors and "KERAS_BACKEND=torch" in errors[-1] and "Traceback" not in done.stderr


def _normalised(maps: np.ndarray) -> np.ndarray:
    low = maps.min(axis=(-2, -1), keepdims=True)
    high = maps.max(axis=(-2, -1), keepdims=True)
    return (maps - low) / np.where(high > low, high - low, 1.0)


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory, keras, vit, vit_images):
    """Models saved here, then maps, the CLI, evaluate and the callback in one JAX subprocess."""
    pytest.importorskip("jax", reason="the jax extra: pip install -e '.[jax]'")
    from PIL import Image

    work = tmp_path_factory.mktemp("jax")
    keras.utils.set_random_seed(11)
    mobilenet = keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), alpha=0.35, classes=4)
    mobilenet.save(work / "mobilenet.keras")
    vit.save(work / "vit.keras")
    demo_images = np.stack([np.asarray(Image.open(path).convert("RGB").resize((96, 96), Image.BILINEAR), np.float32)
                            for path in sorted(SHAPES.glob("*.png"))[:2]])
    mobilenet_images = np.random.default_rng(2).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    np.save(work / "demo.npy", demo_images)
    np.save(work / "mobilenet.npy", mobilenet_images)
    np.save(work / "vit.npy", vit_images)
    from tests.heads.test_detection import square_picture, tiny_detector
    from tests.similarity_models import PATTERN_A, PATTERN_B, pattern_model, two_patch

    tiny_detector(keras)[0].save(work / "detector.keras")
    np.save(work / "square.npy", square_picture()[None].astype(np.float32))
    pattern_model(keras).save(work / "patterns.keras")
    Image.fromarray(two_patch(PATTERN_A, PATTERN_B)).save(work / "ab.png")
    Image.fromarray(PATTERN_A).save(work / "a.png")
    cases = [
        {"name": "demo", "model": "demo", "preprocess": None, "images": "demo.npy", "methods": DEMO_METHODS,
         "classes": None},
        {"name": "mobilenet_v2", "model": str(work / "mobilenet.keras"), "preprocess": "tf",
         "images": "mobilenet.npy", "methods": MOBILENET_METHODS, "classes": [1]},
        {"name": "vit", "model": str(work / "vit.keras"), "preprocess": None, "images": "vit.npy",
         "methods": TOKEN_METHODS, "classes": [2]},
    ]
    shapes = [str(path) for path in sorted(SHAPES.glob("*.png"))[:2]]
    (work / "job.json").write_text(json.dumps({"cases": cases, "shapes": shapes}))
    (work / "jax_side.py").write_text(JAX_SCRIPT)
    environment = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
                   "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(work / "jax_side.py"), str(work)], capture_output=True, text=True,
                          env=environment, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return work, cases, json.loads((work / "report.json").read_text())


@pytest.mark.slow
def test_every_method_gives_the_same_maps_on_jax_as_on_tensorflow(jax_run):
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.models import resolve_model

    work, cases, _ = jax_run
    on_jax = np.load(work / "jax_maps.npz")
    compared = 0
    for case in cases:
        spec = resolve_model(case["model"], preprocess=case["preprocess"])
        images = np.load(work / case["images"])
        for method in case["methods"]:
            on_tensorflow = Explainer(spec, method=method, batch_size=len(images)).run(
                images, classes=case["classes"]).heatmaps
            jax_maps = on_jax[f"{case['name']}/{method}"]
            assert jax_maps.shape == on_tensorflow.shape, (case["name"], method)
            assert np.abs(on_tensorflow).max() > 0 or method == "random", (case["name"], method)
            difference = np.abs(_normalised(jax_maps) - _normalised(on_tensorflow)).max()
            assert difference < TOLERANCE, f"{case['name']} {method}: {difference:.2e}"
            compared += 1
    assert compared == len(DEMO_METHODS) + len(MOBILENET_METHODS) + len(TOKEN_METHODS)


@pytest.mark.slow
def test_detection_and_similarity_give_the_same_boxes_maps_and_scores_on_jax(jax_run):
    """Issue 28 on JAX: the tiny detector's kept boxes, each box's map and evaluate's deletion curve on
    the box's score; the two-texture embedding's maps and cosine similarity to its reference."""
    import gradcam_cli
    from gradcam_cli.boxes import pick_detections
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.models import resolve_model
    from gradcam_cli.scoring import EvaluateOptions, Evaluator

    work, _, _ = jax_run
    on_jax = np.load(work / "jax_maps.npz")
    detector = resolve_model(str(work / "detector.keras"), task="detect")
    square = np.load(work / "square.npy")
    for method in DETECTION_METHODS:
        explainer = Explainer(detector, method=method, batch_size=1)
        kept = pick_detections(explainer.detect(square)[0], "square", 0.5)
        np.testing.assert_allclose(on_jax[f"detector/{method}/boxes"], [d.target() for d in kept], atol=1e-4)
        maps = explainer.run(square, boxes=[kept]).heatmaps
        assert maps.shape == on_jax[f"detector/{method}"].shape and maps.max() > 0
        assert np.abs(_normalised(on_jax[f"detector/{method}"]) - _normalised(maps)).max() < TOLERANCE, method
    evaluator = Evaluator(detector, EvaluateOptions(methods=["gradcam"], metrics=["deletion"], steps=4, batch_size=1))
    curve = evaluator.score_batch(square, None, [(32, 32)], [kept])["gradcam"].curves["deletion"]
    np.testing.assert_allclose(on_jax["detector/deletion"], curve, atol=1e-4)
    assert np.ptp(curve) > 0.5  # the box's score falls as its square goes
    for method in SIMILARITY_METHODS:
        similar = gradcam_cli.explain(str(work / "patterns.keras"), str(work / "ab.png"), method=method,
                                      reference=str(work / "a.png"))
        np.testing.assert_allclose(on_jax[f"similarity/{method}/cosine"], similar.probabilities, atol=1e-5)
        assert similar.heatmaps.max() > 0
        difference = np.abs(_normalised(on_jax[f"similarity/{method}"]) - _normalised(similar.heatmaps)).max()
        assert difference < TOLERANCE, f"similarity {method}: {difference:.2e}"


@pytest.mark.slow
def test_the_cli_evaluate_and_the_callback_run_on_jax(jax_run):
    work, _, report = jax_run
    code, output = report["explain"]
    assert code == 0, output
    rows = [json.loads(line) for line in (work / "explained" / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(row["status"] == "ok" for row in rows)
    code, output = report["evaluate"]
    assert code == 0, output
    assert (work / "evaluated" / "metrics.json").exists()
    assert any(name.endswith(".png") for name in report["callback_files"]), report["callback_files"]


@pytest.mark.slow
def test_a_model_saved_on_jax_loads_on_tensorflow_with_the_same_predictions(jax_run, keras):
    work, _, _ = jax_run
    model = keras.models.load_model(work / "built_on_jax.keras", compile=False)
    images = np.random.default_rng(0).uniform(0, 1, (8, 16, 16, 3)).astype("float32")[:2]
    np.testing.assert_allclose(np.asarray(model(images)), np.load(work / "jax_predictions.npy"), rtol=1e-5, atol=1e-6)
