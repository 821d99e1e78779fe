"""Several target layers at once (issue 26, item 3): every layer's map from one forward pass, each
upsampled to the finest grid and scaled to [0, 1], then averaged or multiplied; checked against
Grad-CAM written here by hand (a GradientTape over the layers called one by one, a numpy bilinear
resize), through the explainer, the command line, the API and on JAX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradcam_cli.errors import OptionConflict
from gradcam_cli.manifest import Manifest
from gradcam_cli.methods import METHODS
from tests.helpers import run

ROOT = Path(__file__).resolve().parents[2]
SIZE = 24
LAYERS = ["a", "b", "c"]  # 22x22, 10x20 (another aspect), 8x18: combined on a's 22x22 grid
REFUSED = {"cam", "scorecam", "ablationcam", "shapleycam", "fullgrad"}


def _three_grid_model(keras):
    """a (3x3) -> b (3x3, strides 2x1) -> c (3x3, tanh) -> GAP -> Dense(softmax)."""
    keras.utils.set_random_seed(2605)
    layers = keras.layers
    inputs = keras.Input((SIZE, SIZE, 3))
    x = layers.Conv2D(5, 3, activation="relu", name="a")(inputs)
    x = layers.Conv2D(6, 3, strides=(2, 1), activation="relu", name="b")(x)
    x = layers.Conv2D(4, 3, activation="tanh", name="c")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax", name="head")(x), name="three_grids")


@pytest.fixture(scope="module")
def model(keras):
    return _three_grid_model(keras)


@pytest.fixture(scope="module")
def spec(model):
    from gradcam_cli.models.in_memory import spec_for_model

    return spec_for_model(model, preprocess="none")


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(26).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)


def _bilinear(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """(B, h, w) -> (B, height, width): bilinear with half-pixel centres, edges clamped."""
    def axis_weights(size_in: int, size_out: int):
        source = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
        low = np.floor(source).astype(int)
        return low, np.minimum(low + 1, size_in - 1), source - low

    rows_low, rows_high, row_frac = axis_weights(maps.shape[1], height)
    cols_low, cols_high, col_frac = axis_weights(maps.shape[2], width)
    rows = maps[:, rows_low] * (1 - row_frac)[None, :, None] + maps[:, rows_high] * row_frac[None, :, None]
    return rows[:, :, cols_low] * (1 - col_frac) + rows[:, :, cols_high] * col_frac


def _unit(maps: np.ndarray) -> np.ndarray:
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0.0)


def _reference(model, pixels: np.ndarray, layers: list[str], class_index: np.ndarray, combine: str) -> np.ndarray:
    """Grad-CAM of each of ``layers`` for each image's ``class_index``, by hand: the model's layers
    called one by one under a GradientTape, the pre-softmax logit, mean gradient weights, ReLU;
    then resized (numpy bilinear) to the finest grid, scaled to [0, 1], combined, scaled again."""
    import tensorflow as tf

    head = model.get_layer("head")
    outputs = {}
    with tf.GradientTape() as tape:
        x = tf.constant(pixels)
        for name in ("a", "b", "c"):
            x = model.get_layer(name)(x)
            outputs[name] = x
        logits = tf.matmul(tf.reduce_mean(x, axis=(1, 2)), head.kernel) + head.bias
        score = tf.reduce_sum(tf.gather(logits, class_index, axis=1, batch_dims=1))
    gradients = tape.gradient(score, [outputs[name] for name in layers])
    maps = []
    for name, gradient in zip(layers, gradients, strict=True):
        activations, gradient = outputs[name].numpy().astype(np.float64), gradient.numpy().astype(np.float64)
        weights = gradient.mean(axis=(1, 2))
        maps.append(np.maximum(np.einsum("bhwk,bk->bhw", activations, weights), 0))
    height, width = max(m.shape[1] for m in maps), max(m.shape[2] for m in maps)
    scaled = np.stack([_unit(_bilinear(m, height, width)) for m in maps])
    return _unit(scaled.prod(axis=0) if combine == "product" else scaled.mean(axis=0))


@pytest.mark.slow
@pytest.mark.parametrize("combine", ["mean", "product"])
def test_combined_map_equals_gradcam_of_each_layer_by_hand(model, spec, pixels, combine):
    from gradcam_cli.explainer import Explainer

    explainer = Explainer(spec, "gradcam", layer=LAYERS, batch_size=2, combine=combine)
    result = explainer.run(pixels, top_k=2)  # two batches (the second padded), two targets each
    assert result.heatmaps.shape == (3, 2, 22, 22)
    for rank in range(2):
        expected = _reference(model, pixels, LAYERS, result.class_ids[:, rank], combine)
        np.testing.assert_allclose(result.heatmaps[:, rank], expected, atol=2e-5)
    assert explainer.tracing_count == 1
    explainer.run(pixels[:1], top_k=2)  # a shorter batch is padded: no retrace
    assert explainer.tracing_count == 1


def test_the_layers_are_tapped_in_one_forward_pass(spec, pixels):
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.hooks import intercept

    calls = []
    explainer = Explainer(spec, "gradcam++", layer=["c", "a"], batch_size=3)
    with intercept(spec.model.get_layer("head"), lambda args, output: calls.append(1) or output):
        result = explainer.run(pixels)  # traced here: the head runs once per forward pass traced
    assert len(calls) == 1 and explainer.tracing_count == 1
    assert explainer.layer_name == "c+a" and explainer.combine == "mean" and result.heatmaps.shape[2:] == (22, 22)


def test_which_methods_take_several_layers():
    """Methods whose map is their formula on one layer's activations and gradients combine
    layers; those reading the model elsewhere (CAM's Dense weights, FullGrad's biases) or running
    passes on one layer (perturbation, Hessian products) refuse."""
    refused = {name for name, cls in METHODS.items() if cls.several_layers_refusal()}
    assert refused == REFUSED


@pytest.mark.parametrize("method", sorted(REFUSED))
def test_a_method_that_cannot_combine_layers_is_refused(spec, method):
    from gradcam_cli.explainer import Explainer

    with pytest.raises(OptionConflict, match=f"{method} cannot map several layers at once: .*give one layer"):
        Explainer(spec, method, layer=["a", "b"])


def test_combine_without_several_layers_is_refused(spec):
    from gradcam_cli.explainer import Explainer

    for layer in ("a", ["a", "a"], None):  # a layer named twice is one layer
        with pytest.raises(OptionConflict, match="combine=product combines the maps of several layers"):
            Explainer(spec, layer=layer, combine="product")
    with pytest.raises(OptionConflict, match="unknown combine=max"):
        Explainer(spec, layer=["a", "b"], combine="max")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("multilayer") / "three_grids.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def picture(tmp_path_factory, pixels):
    from PIL import Image

    path = tmp_path_factory.mktemp("multilayer_inputs") / "noise.png"
    Image.fromarray(pixels[0].astype(np.uint8)).save(path)
    return path


@pytest.mark.slow
def test_cli_writes_the_combined_map_at_the_finest_resolution(tmp_path, model_file, picture, model):
    out = tmp_path / "out"
    result = run("explain", picture, "-m", model_file, "--layer", "b", "--layer", "a", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    (row,) = Manifest.read_rows(out / "manifest.jsonl")
    assert (row["layer"], row["layers"], row["combine"]) == ("b+a", ["b", "a"], "mean")
    heatmap = np.load(row["heatmap"])
    assert heatmap.shape == (22, 22) and row["heatmap_shape"] == [22, 22]
    from PIL import Image

    decoded = np.asarray(Image.open(picture), np.float32)[None]  # the model's input size: no resize
    expected = _reference(model, decoded, ["b", "a"], np.array([row["class_index"]]), "mean")[0]
    np.testing.assert_allclose(heatmap, expected, atol=2e-5)
    again = run("explain", picture, "-m", model_file, "--layer", "b", "--layer", "a", "-o", out)
    assert "1 already done" in again.output  # the same layers and combine resume
    product = run("explain", picture, "-m", model_file, "--layer", "b", "--layer", "a", "--combine", "product",
                  "-o", out)
    assert "0 image(s)" not in product.output and "already done" not in product.output
    rows = Manifest.read_rows(out / "manifest.jsonl")
    assert [r["combine"] for r in rows] == ["product"] and rows[0]["config"] != row["config"]


@pytest.mark.parametrize("arguments, message", [
    (["--layer", "a", "--combine", "product"],
     "--combine product combines the maps of several layers: give two or more with --layer, or leave --combine "
     "out."),
    (["--layer", "a", "--layer", "b", "--method", "scorecam"],
     "scorecam cannot map several layers at once: its extra forward passes perturb one layer's map; give one "
     "--layer or use another --method."),
])
def test_cli_refusals_are_one_line_and_exit_2(tmp_path, model_file, picture, arguments, message):
    result = run("explain", picture, "-m", model_file, *arguments, "-o", tmp_path)
    assert result.exit_code == 2
    assert result.output.strip() == f"gradcam: error: {message}"
    assert not (tmp_path / "manifest.jsonl").exists()


def test_api_takes_a_list_of_layers(model, pixels):
    import gradcam_cli

    result = gradcam_cli.explain(model, pixels[:2].astype(np.uint8), layer=["a", "c"], combine="product",
                                 preprocess="none")
    assert result.layer == "a+c" and result.heatmaps.shape == (2, 1, 22, 22)
    expected = _reference(model, pixels[:2].astype(np.uint8).astype(np.float32), ["a", "c"],
                          result.class_ids[:, 0], "product")
    np.testing.assert_allclose(result.heatmaps[:, 0], expected, atol=2e-5)
    with pytest.raises(OptionConflict, match="layer=\\['a', 3\\]: give a layer name"):
        gradcam_cli.explain(model, pixels[:1].astype(np.uint8), layer=["a", 3])


@pytest.mark.slow
def test_compare_and_evaluate_take_several_layers(tmp_path, model_file, picture):
    sheet = tmp_path / "sheet.png"
    result = run("compare", picture, "-m", model_file, "--methods", "gradcam,eigencam", "--layer", "a", "--layer",
                 "b", "--combine", "product", "-o", sheet)
    assert result.exit_code == 0, result.output
    assert sheet.exists()
    result = run("evaluate", picture, "-m", model_file, "--methods", "gradcam,random", "--layer", "a", "--layer", "c",
                 "--metrics", "drop", "-o", tmp_path / "eval", "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["layer"] == "a+c"

    def configs() -> set[str]:
        return {json.loads(line)["config"] for line in (tmp_path / "eval" / "metrics.jsonl").read_text().splitlines()}

    mean_configs = configs()
    again = run("evaluate", picture, "-m", model_file, "--methods", "gradcam,random", "--layer", "a", "--layer", "c",
                "--combine", "product", "-o", tmp_path / "eval", "--json", "-q", "--metrics", "drop")
    assert again.exit_code == 0 and json.loads(again.stdout)["layer"] == "a+c"
    assert len(mean_configs) == 1 and configs() - mean_configs  # the product was scored again, not reused


JAX_SCRIPT = r'''
import sys
import numpy as np
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
from gradcam_cli.explainer import Explainer
from gradcam_cli.models import resolve_model

model_path, pixels_path, out = sys.argv[1:4]
spec = resolve_model(model_path, preprocess="none")
pixels = np.load(pixels_path)
maps = {}
for method, combine in (("gradcam", "mean"), ("gradcam++", "product"), ("eigencam", "mean")):
    explainer = Explainer(spec, method, layer=["a", "b", "c"], batch_size=len(pixels), combine=combine)
    maps[f"{method}/{combine}"] = explainer.run(pixels, classes=[1, 2]).heatmaps
np.savez(out, **maps)
'''


@pytest.mark.slow
def test_jax_gives_tensorflows_combined_maps(tmp_path, spec, model_file, pixels):
    """The several-tap gradients on JAX (``jax.vjp`` of one delta per layer) agree with TensorFlow's tape."""
    from gradcam_cli.explainer import Explainer

    np.save(tmp_path / "pixels.npy", pixels)
    environment = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(model_file), str(tmp_path / "pixels.npy"),
                    str(tmp_path / "jax.npz")], check=True, env=environment, cwd=ROOT, timeout=300)
    jax_maps = np.load(tmp_path / "jax.npz")
    for key in jax_maps.files:
        method, combine = key.split("/")
        explainer = Explainer(spec, method, layer=["a", "b", "c"], batch_size=len(pixels), combine=combine)
        np.testing.assert_allclose(jax_maps[key], explainer.run(pixels, classes=[1, 2]).heatmaps, atol=1e-3)
