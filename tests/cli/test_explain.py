"""``gradcam explain`` end to end, through Click's CliRunner: its outputs, options, messages and
exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gradcam_cli.cli import cli
from gradcam_cli.manifest import MANIFEST, Manifest
from tests.corpus import photo
from tests.helpers import PAIR, SHAPE, SHAPES, run
from tests.references import NEVER, UNET_SIZE


def read_manifest(folder: Path) -> list[dict]:
    """The rows with absolute paths (stored relative to the manifest's folder)."""
    return Manifest.read_rows(folder / "manifest.jsonl")


def stored_rows(folder: Path) -> list[dict]:
    """The rows as stored (output paths relative to the manifest's folder)."""
    return [json.loads(line) for line in (folder / MANIFEST).read_text().splitlines()]


@pytest.mark.slow
def test_explain_demo_on_bundled_samples(tmp_path):
    result = run("explain", SHAPES, "--model", "demo", "-o", tmp_path, "--method", "gradcam++")
    assert result.exit_code == 0, result.output
    rows = read_manifest(tmp_path)
    pictures = sorted(p for p in SHAPES.iterdir() if p.suffix == ".png")
    assert len(rows) == len(pictures)
    for row in rows:
        assert row["status"] == "ok" and row["method"] == "gradcam++" and row["layer"] == "block3_relu2"
        overlay = Image.open(row["overlay"])
        assert overlay.size == Image.open(row["input"]).size
        heatmap = np.load(row["heatmap"], allow_pickle=False)
        assert heatmap.dtype == np.float32 and heatmap.shape == (24, 24) and heatmap.min() >= 0
    assert "01_single_cross.png: cross" in result.output


@pytest.mark.slow
def test_top_k_and_named_classes(tmp_path):
    image = SHAPES / "05_pair_circle_triangle.png"
    result = run("explain", image, "-o", tmp_path / "k", "--top-k", "3")
    assert result.exit_code == 0
    rows = read_manifest(tmp_path / "k")
    assert [r["rank"] for r in rows] == [0, 1, 2]
    assert [r["probability"] for r in rows] == sorted((r["probability"] for r in rows), reverse=True)
    result = run("explain", image, "-o", tmp_path / "c", "--class", "triangle", "--class", "0", "--method", "cam")
    assert result.exit_code == 0
    assert [(r["class_index"], r["label"]) for r in read_manifest(tmp_path / "c")] == [(2, "triangle"), (0, "circle")]


@pytest.mark.slow
def test_json_rows_on_stdout(tmp_path):
    result = run("explain", SHAPES / "02_single_square.png", "-o", tmp_path, "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["label"] == "square" and rows[0]["status"] == "ok"


@pytest.mark.slow
def test_outputs_never_collide(tmp_path):
    source = tmp_path / "in"
    (source / "a").mkdir(parents=True)
    (source / "b").mkdir()
    picture = Image.open(SHAPES / "01_single_cross.png")
    for relative in ("cat.jpg", "cat.png", "a/x.jpg", "b/x.jpg"):
        picture.save(source / relative)
    result = run("explain", source, "-r", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    overlays = {r["overlay"] for r in read_manifest(tmp_path / "out")}
    assert len(overlays) == 4 and all(Path(p).exists() for p in overlays)


@pytest.mark.slow
def test_exit_codes_for_usage_errors(tmp_path):
    image = SHAPES / "01_single_cross.png"
    cases = [
        (["--model", "resnet-5O"], "Did you mean"),
        (["--method", "gradcam+++"], "unknown method"),
        (["--layer", "block3_rleu2"], "block3_relu2"),
        (["--class", "hexagon"], "unknown class"),
        (["--class", "7"], "out of range"),
        (["--top-k", "9"], "out of range"),
        (["--batch-size", "0"], "batch-size"),
        (["--alpha", "1.5"], "alpha"),
    ]
    for extra, expected in cases:
        result = run("explain", image, "-o", tmp_path, *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert expected in result.output, (extra, result.output)
        assert "Traceback" not in result.output


@pytest.mark.parametrize("bad", ["model.keras", "missing_dir/model.keras"])
def test_bad_model_paths(tmp_path, bad):
    path = tmp_path / bad
    if bad == "model.keras":
        path.write_text("garbage")
    result = run("explain", SHAPES / "01_single_cross.png", "--model", path, "-o", tmp_path / "o")
    assert result.exit_code == 2 and str(path) in result.output


@pytest.mark.slow
def test_guided_gradcam_writes_a_saliency_image_beside_the_overlay(tmp_path):
    result = run("explain", SHAPES / "05_pair_circle_triangle.png", "-o", tmp_path, "--method", "guided-gradcam")
    assert result.exit_code == 0, result.output
    (row,) = read_manifest(tmp_path)
    saliency = Image.open(row["saliency"])
    assert saliency.size == Image.open(row["input"]).size and row["saliency"].endswith(".guided.png")


def test_empty_folder_says_what_was_looked_for(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    result = run("explain", tmp_path / "empty", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "no image files found" in result.output and "-r" in result.output


def test_a_missing_input_is_reported_before_the_model_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from gradcam_cli.cli import explain as explain_command

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(explain_command, "load_spec", no_model)
    result = run("explain", "nosuchdir")
    assert result.exit_code == 2 and "nosuchdir: no such file or folder" in result.output
    assert not (tmp_path / "gradcam_out").exists()


def test_explain_help_lists_every_method_and_xla_is_not_sold_as_faster():
    from gradcam_cli.methods import METHODS

    text = " ".join(run("explain", "--help").output.split())
    assert all(name in text for name in METHODS)
    assert "faster on some models" not in text and "slower on CPU" in text


@pytest.mark.parametrize(("extra", "message"), [
    (["--top-k", "2", "--class", "square"], "--top-k 2 and --class"),
    (["--max-channels", "4"], "--max-channels does not apply to gradcam"),
    (["--chunk-size", "8", "--method", "gradcam++"], "--chunk-size does not apply to gradcam++"),
    (["--max-channels", "4", "--method", "ablationcam"], "--max-channels does not apply to ablationcam"),
    (["--weights", "none"], "--weights none: the demo model carries its own weights"),
    (["--alpha", "nan"], "not a finite number"),
    (["--alpha", "inf"], "alpha"),
    (["--model", "mobilenet_v2", "--unsafe-model-code"], "--unsafe-model-code applies to model files only"),
])
def test_options_that_would_be_ignored_are_refused_before_any_image(tmp_path, extra, message):
    result = run("explain", PAIR, "-o", tmp_path / "out", *extra)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "out" / MANIFEST).exists()


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_max_megapixels_is_a_usage_error(tmp_path, value):
    result = run("explain", PAIR, "-o", tmp_path / "out", "--max-megapixels", value)
    assert result.exit_code == 2, result.output
    assert "--max-megapixels" in result.output and "finite" in result.output
    assert not (tmp_path / "out").exists()


def test_output_taken_for_the_output_folder_points_to_output_dir(tmp_path):
    """``--output`` is neither option: the model's output is --model-output, the folder -o/--output-dir."""
    result = run("explain", PAIR, "--output", tmp_path / "myout")
    assert result.exit_code == 2 and "No such option '--output'" in result.output, result.output
    assert "--output-dir" in result.output and "--model-output" in result.output, result.output


@pytest.mark.slow
def test_bad_models_and_layers_exit_2_before_any_image(keras, tmp_path):
    inputs = keras.Input((16, 16, 3))
    flat = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    flat.save(tmp_path / "flat.keras")
    vector_in = keras.Input((12,))
    keras.Model(vector_in, keras.layers.Dense(2)(vector_in)).save(tmp_path / "vector.keras")
    cases = [
        (["--model", tmp_path / "flat.keras"], "no convolutional layer"),
        (["--model", tmp_path / "vector.keras"], "not an image batch"),
        (["--model", "demo", "--layer", "predictions"], "not a spatial map"),
        (["--model", "demo", "--layer", "gap"], "not a spatial map"),
    ]
    for extra, message in cases:
        result = run("explain", SHAPE, "-o", tmp_path / "out", *extra)
        assert result.exit_code == 2 and message in result.output, (extra, result.output)
        assert not (tmp_path / "out" / "manifest.jsonl").exists()


@pytest.mark.slow
def test_cli_max_megapixels_fails_that_input_only(tmp_path, phone_jpeg):
    folder = tmp_path / "in"
    folder.mkdir()
    photo(2000, 1500).save(folder / "scan.png")
    (folder / "phone.jpg").write_bytes(phone_jpeg.read_bytes())
    result = run("explain", folder, "-o", tmp_path / "out", "--max-megapixels", "2", "-q")
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if "scan.png" in line]
    assert len(lines) == 1 and "--max-megapixels" in lines[0]
    rows = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert {Path(r["input"]).name: r["status"] for r in rows} == {"scan.png": "error", "phone.jpg": "ok"}


@pytest.mark.slow
def test_overlay_size_option_sets_the_longest_side_and_keeps_raw_heatmaps(tmp_path):
    source = tmp_path / "in.jpg"
    photo(1600, 1200).save(source, quality=90)
    sizes = {}
    for value in ("500", "original", None):
        out = tmp_path / f"out_{value}"
        extra = [] if value is None else ["--overlay-size", value]
        assert run("explain", source, "-o", out, "-q", *extra).exit_code == 0
        row = Manifest.read_rows(out / "manifest.jsonl")[0]  # paths made absolute
        sizes[value] = Image.open(row["overlay"]).size
        assert row["image_size"] == [1200, 1600]  # height, width
        assert np.load(row["heatmap"]).shape == tuple(row["heatmap_shape"]) and max(row["heatmap_shape"]) < 64
    assert sizes == {"500": (500, 375), "original": (1600, 1200), None: (1000, 750)}
    result = run("explain", source, "-o", tmp_path / "bad", "--overlay-size", "huge")
    assert result.exit_code == 2 and "original" in result.output


def test_cli_multi_output_without_output_lists_them_and_exits_2(saved_head_models, tmp_path):
    result = run("explain", saved_head_models["image"], "--model", saved_head_models["two"], "-o", tmp_path)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    message = [line for line in result.output.splitlines() if line.strip()]
    assert len(message) == 1 and "'kind'" in message[0] and "'age'" in message[0] and "--model-output" in message[0]
    result = run("explain", saved_head_models["image"], "--model", saved_head_models["two"], "--model-output", "nope", "-o", tmp_path)
    assert result.exit_code == 2 and "no such output" in result.output


@pytest.mark.slow
def test_cli_records_head_value_and_output(saved_head_models, tmp_path):
    result = run("explain", saved_head_models["image"], "--model", saved_head_models["two"], "--model-output", "age", "-o", tmp_path / "age")
    assert result.exit_code == 0, result.output
    assert "value = " in result.output and "%" not in result.output.split("\n")[0]
    row = stored_rows(tmp_path / "age")[0]
    assert row["head"] == "regression" and row["output"] == "age" and row["probability"] is None
    assert row["label"] == "value" and isinstance(row["value"], float)
    result = run("explain", saved_head_models["image"], "--model", saved_head_models["binary"], "--class", "negative", "-o", tmp_path / "bin")
    assert result.exit_code == 0, result.output
    row = stored_rows(tmp_path / "bin")[0]
    assert row["head"] == "binary" and row["label"] == "negative" and 0 <= row["probability"] <= 1
    assert {label for _, label, _ in row["top"]} == {"negative", "positive"}


@pytest.mark.slow
def test_cli_records_pixel_counts_and_reports_an_empty_region_per_image(unet, unet_images, tmp_path):
    model_path = tmp_path / "unet.keras"
    unet.save(model_path)
    for index, image in enumerate(unet_images):
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
    assert [row["region_pixels"] for row in rows] == [UNET_SIZE * UNET_SIZE] * 2
