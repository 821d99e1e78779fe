"""Issue 17: the manifest always matches the files, inputs are listed strictly, no option is
silently ignored, user errors never show a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gradcam_cli.cli import cli
from gradcam_cli.inputs import collect_inputs
from gradcam_cli.manifest import MANIFEST, Manifest

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ROOT / "sample_images" / "shapes"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def stored_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / MANIFEST).read_text().splitlines()]


@pytest.fixture
def inn(tmp_path):
    """Three small images in tmp_path/inn."""
    folder = tmp_path / "inn"
    folder.mkdir()
    for name in ("01_single_cross.png", "02_single_square.png", "05_pair_circle_triangle.png"):
        shutil.copy(SHAPES / name, folder / name)
    return folder


def _loop_tree(root: Path) -> Path:
    """tree/a.png, tree/sub/b.png, tree/sub/loop -> .., tree/empty/linktosub -> ../sub."""
    tree = root / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "empty").mkdir()
    shutil.copy(SHAPES / "01_single_cross.png", tree / "a.png")
    shutil.copy(SHAPES / "02_single_square.png", tree / "sub" / "b.png")
    os.symlink("..", tree / "sub" / "loop")
    os.symlink("../sub", tree / "empty" / "linktosub")
    return tree


# --- input listing -----------------------------------------------------------------------------

@pytest.fixture
def deadline():
    """Fail instead of hanging (or eating memory) when a listing explodes, as glob.glob does on loops."""
    import signal

    def stop(signum, frame):
        raise AssertionError("input listing did not finish in 30 s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("pattern", ["tree/**/*.png", "tree/*/*.png", "tree/*/*/*/*/*.png", "tree/**", "**/b.png"])
def test_glob_patterns_visit_each_real_folder_once_through_symlink_loops(tmp_path, pattern, monkeypatch, deadline):
    _loop_tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    items = collect_inputs([pattern], recursive=True)
    reals = [item.real for item in items]
    assert len(reals) == len(set(reals))
    assert not any(item.error for item in items), items
    if pattern != "tree/*/*/*/*/*.png":  # that depth is reachable only through the links
        assert all("loop" not in item.path and "linktosub" not in item.path for item in items)
    expected = {"tree/**/*.png": {"a.png", "b.png"}, "tree/*/*.png": {"b.png"},
                "tree/*/*/*/*/*.png": {"a.png", "b.png"}, "tree/**": {"a.png", "b.png"}, "**/b.png": {"b.png"}}[pattern]
    assert {Path(r).name for r in reals} == expected


def test_a_run_over_a_symlink_loop_ends_with_each_image_explained_once(tmp_path):
    tree = _loop_tree(tmp_path)
    result = subprocess.run([sys.executable, "-m", "gradcam_cli", "explain", str(tree / "**" / "*.png"), "-r",
                             "-o", str(tmp_path / "out"), "-q"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = stored_rows(tmp_path / "out")
    assert sorted(row["input"] for row in rows) == sorted(os.path.realpath(p) for p in (tree / "a.png", tree / "sub" / "b.png"))


def test_recursive_walk_keeps_the_real_path_not_the_symlinked_copy(tmp_path, deadline):
    tree = _loop_tree(tmp_path)
    items = collect_inputs([str(tree)], recursive=True)
    assert sorted(item.relative for item in items) == ["a.png", "sub/b.png"]


def test_one_input_whatever_the_spelling(tmp_path, inn, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    assert run("explain", "inn", "-o", out, "-q").exit_code == 0
    second = run("explain", str(tmp_path / "inn"), "-o", out)
    monkeypatch.chdir(inn)
    third = run("explain", ".", "-o", out)
    assert "3 already done" in second.output and "3 already done" in third.output
    rows = stored_rows(out)
    assert len(rows) == 3 and len({row["input"] for row in rows}) == 3
    page_cards = run("report", out)
    assert page_cards.exit_code == 0
    assert (out / "index.html").read_text().count('<article class="card"') == 3


def test_the_output_folder_is_never_an_input(tmp_path, inn):
    for extra in ([], ["--overwrite"]):
        result = run("explain", inn, "-r", "-o", inn / "out", *extra)
        assert result.exit_code == 0, result.output
        rows = stored_rows(inn / "out")
        assert len(rows) == 3 and not any("/out/" in row["input"] for row in rows), rows
    assert not (inn / "out" / "out").exists()
    refused = run("explain", inn, "-o", inn)
    assert refused.exit_code == 2 and "is the output folder" in refused.output


def test_an_output_folder_above_the_inputs_leaves_them_inputs(tmp_path, inn):
    items = collect_inputs([str(inn), str(inn / "*.png")], output_dir=tmp_path)
    assert len(items) == 3 and not any(item.error for item in items)


def test_exclude_patterns_leave_out_files_and_folders(tmp_path, inn):
    (inn / "skipme").mkdir()
    shutil.copy(SHAPES / "03_single_triangle.png", inn / "skipme" / "x.png")
    shutil.copy(SHAPES / "03_single_triangle.png", inn / "keep_thumb.png")
    items = collect_inputs([str(inn)], recursive=True, exclude=["skipme", "*_thumb.png"])
    assert sorted(item.relative for item in items) == sorted(p.name for p in inn.glob("0*.png"))
    items = collect_inputs([str(inn / "*.png")], exclude=[str(inn / "02_*")])
    assert "02_single_square.png" not in {Path(item.path).name for item in items}


def test_a_missing_input_is_reported_before_the_model_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from gradcam_cli.cli import explain as explain_command

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(explain_command, "load_spec", no_model)
    result = run("explain", "nosuchdir")
    assert result.exit_code == 2 and "nosuchdir: no such file or folder" in result.output
    assert not (tmp_path / "gradcam_out").exists()


# --- the manifest ------------------------------------------------------------------------------

def test_rows_describe_the_files_they_point_to_after_a_run_with_another_layer(tmp_path, inn):
    out = tmp_path / "out"
    assert run("explain", inn, "-o", out, "--top-k", "2", "-q").exit_code == 0
    assert run("explain", inn, "-o", out, "--layer", "block2_relu2", "-q").exit_code == 0
    rows = Manifest.read_rows(out / MANIFEST)
    assert len(stored_rows(out)) == len(rows)  # compacted to exactly the current rows
    overlays = [row["overlay"] for row in rows]
    assert len(overlays) == len(set(overlays))
    for row in rows:
        assert np.load(row["heatmap"]).shape == tuple(row["heatmap_shape"])
        expected = (24, 24)  # the demo keeps 24x24 from block2 on (dilated convolutions)
        assert tuple(row["heatmap_shape"]) == expected
    assert sum(row["layer"] == "block3_relu2" for row in rows) == 3  # the second classes survive
    # the first settings again: their top-1 rows were retired, so those images are redone
    rerun = run("explain", inn, "-o", out, "--top-k", "2")
    assert "already done" not in rerun.output


def test_manifest_paths_are_relative_to_the_manifest_and_the_folder_moves(tmp_path, inn, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("explain", "inn", "-o", "out", "--method", "guided-gradcam", "-q").exit_code == 0
    for row in stored_rows(tmp_path / "out"):
        assert row["format"] == 2 and os.path.isabs(row["input"])
        assert not os.path.isabs(row["overlay"]) and (tmp_path / "out" / row["overlay"]).exists()
        assert (tmp_path / "out" / row["saliency"]).exists()
        height, width = np.asarray(Image.open(row["input"])).shape[:2]
        assert row["image_size"] == [height, width]
    shutil.move(tmp_path / "out", tmp_path / "moved")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert run("report", tmp_path / "moved").exit_code == 0
    page = (tmp_path / "moved" / "index.html").read_text()
    assert page.count("<img") == 3 * 2  # every card has its original and its overlay
    assert "already done" in run("explain", tmp_path / "inn", "-o", tmp_path / "moved", "--method",
                                 "guided-gradcam").output


def test_older_manifests_are_still_read(tmp_path, inn, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("explain", "inn", "-o", "out", "-q").exit_code == 0
    rows = stored_rows(tmp_path / "out")
    old = []
    for row in rows:  # as version 0.1.0 wrote them: relative to the start directory, [W, H]
        row = {key: value for key, value in row.items() if key != "format"}
        row["overlay"], row["heatmap"] = f"out/{row['overlay']}", f"out/{row['heatmap']}"
        row["input"] = os.path.relpath(row["input"], tmp_path)
        row["image_size"] = row["image_size"][::-1]
        old.append(row)
    (tmp_path / "out" / MANIFEST).write_text("".join(json.dumps(row) + "\n" for row in old))
    monkeypatch.chdir(inn)
    rows = Manifest.read_rows(tmp_path / "out" / MANIFEST)
    assert all(Path(row["overlay"]).exists() and Path(row["heatmap"]).exists() for row in rows)
    assert all(row["image_size"] == list(np.asarray(Image.open(tmp_path / "inn" / Path(row["input"]).name)).shape[:2])
               for row in rows)
    assert run("report", tmp_path / "out").exit_code == 0
    assert (tmp_path / "out" / "index.html").read_text().count("<img") >= 3


# --- one input, one set of rows; no option silently ignored --------------------------------------

PAIR = SHAPES / "05_pair_circle_triangle.png"


def test_a_class_named_twice_is_explained_once(tmp_path):
    result = run("explain", PAIR, "-o", tmp_path, "--class", "circle", "--class", "0")
    assert result.exit_code == 0, result.output
    assert [row["class_index"] for row in stored_rows(tmp_path)] == [0]


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


def test_weights_with_a_model_file_and_nan_alpha_in_compare_are_refused(tmp_path):
    model = ROOT / "gradcam_cli" / "demo" / "shapes_cnn.keras"
    result = run("explain", PAIR, "--model", model, "--weights", tmp_path / "w.weights.h5", "-o", tmp_path / "o")
    assert result.exit_code == 2 and "carries its own weights" in result.output
    result = run("compare", PAIR, "--alpha", "nan", "-o", tmp_path / "s.png")
    assert result.exit_code == 2 and "finite" in result.output


def test_api_refuses_classes_with_top_k_in_python_words():
    from gradcam_cli import explain
    from gradcam_cli.errors import OptionConflict

    with pytest.raises(OptionConflict, match="top_k=2 and classes cannot be combined"):
        explain("demo", str(PAIR), classes="square", top_k=2)


# --- labels files ------------------------------------------------------------------------------

NAMES = ["circle", "square", "triangle", "star", "cross"]


@pytest.mark.parametrize(("content", "message"), [
    ("\n".join(NAMES[:4]).encode(), "4 labels for a model with 5 classes"),
    ("\n".join(["circle", "", *NAMES[1:]]).encode(), "line 2 is blank"),
    ("\n".join(["circle", "circle", *NAMES[2:]]).encode(), "line 2 repeats 'circle'"),
    ("\n".join(NAMES).encode("utf-16"), "not UTF-8"),
    ("\n".join(["circl\xe9", *NAMES[1:]]).encode("latin-1"), "not UTF-8 text (line 1)"),
])
def test_bad_labels_files_fail_with_one_line(tmp_path, content, message):
    labels = tmp_path / "labels.txt"
    labels.write_bytes(content)
    result = run("explain", PAIR, "--labels", labels, "-o", tmp_path / "out")
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and str(labels) in result.output


def test_labels_with_a_byte_order_mark_and_trailing_blank_lines_work(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_bytes("\n".join(NAMES + ["", ""]).encode("utf-8-sig"))
    result = run("explain", PAIR, "--labels", labels, "--class", "circle", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert stored_rows(tmp_path / "out")[0]["label"] == "circle"


def test_imagenet_names_come_with_the_architecture_not_the_weights(keras, tmp_path, monkeypatch):
    from gradcam_cli import models
    from gradcam_cli.models import applications

    names = [f"imagenet_{i}" for i in range(1000)]
    monkeypatch.setattr(applications, "imagenet_labels", lambda: names)
    weights = tmp_path / "mobilenet.weights.h5"
    keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3)).save_weights(weights)
    spec = models.resolve_model("mobilenet_v2", weights=str(weights), input_size=(32, 32))
    assert spec.label(7) == "imagenet_7"


# --- exit codes --------------------------------------------------------------------------------

def test_a_bad_sidecar_is_a_model_error_not_a_crash(tmp_path):
    model = tmp_path / "m.keras"
    shutil.copy(ROOT / "gradcam_cli" / "demo" / "shapes_cnn.keras", model)
    for content in ('{"preprocess": 5}', '{"labels": 3}', "[1, 2]"):
        (tmp_path / "m.keras.gradcam.json").write_text(content)
        result = run("explain", PAIR, "--model", model, "-o", tmp_path / "out")
        assert result.exit_code == 2 and "m.keras.gradcam.json" in result.output, (content, result.output)


def test_compare_without_methods_is_a_usage_error(tmp_path):
    result = run("compare", PAIR, "--methods", ",", "-o", tmp_path / "s.png")
    assert result.exit_code == 2 and "--methods" in result.output


def test_an_unexpected_exception_exits_4_not_1(monkeypatch, capsys):
    import gradcam_cli.cli as cli_module

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_module, "cli", broken)
    with pytest.raises(SystemExit) as stopped:
        cli_module.main()
    assert stopped.value.code == cli_module.INTERNAL_ERROR == 4
    assert "internal error (RuntimeError: boom)" in capsys.readouterr().err


# --- the Python API takes what notebooks hold ----------------------------------------------------

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


# --- compare -----------------------------------------------------------------------------------

def test_compare_writes_the_named_format_keeps_aspect_shows_guided_and_all_classes(tmp_path):
    wide = tmp_path / "wide.png"
    Image.open(PAIR).convert("RGB").resize((320, 160)).save(wide)
    sheet = tmp_path / "sheet.jpg"
    result = run("compare", wide, "--methods", "gradcam,guided-gradcam", "--class", "circle", "--class",
                 "triangle", "-o", sheet)
    assert result.exit_code == 0, result.output
    picture = Image.open(sheet)
    assert picture.format == "JPEG"
    assert picture.size == (3 * 224, 2 * (224 + 22) + 22)  # a row per class
    pixels = np.asarray(picture.convert("RGB")).astype(int)
    original_tile = pixels[44:44 + 224, 0:224]
    assert original_tile[:40].min() > 240 and original_tile[-40:].min() > 240  # white bands: aspect kept
    from gradcam_cli import explain
    from gradcam_cli.compare import fit_tile

    guided = explain("demo", wide, method="guided-gradcam", classes="circle")
    expected = np.asarray(fit_tile(guided.guided(0))).astype(int)
    overlay = np.asarray(fit_tile(guided.overlay(0, alpha=0.5))).astype(int)
    tile = pixels[44:44 + 224, 2 * 224:3 * 224]
    assert np.abs(tile - expected).mean() < 4 < np.abs(tile - overlay).mean()
    assert run("compare", wide, "-o", tmp_path / "sheet.gif").exit_code == 2


def test_compare_lists_unreadable_images_and_exits_1(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    result = run("compare", PAIR, broken, "--methods", "gradcam", "-o", tmp_path / "sheet.png")
    assert result.exit_code == 1 and "broken.png" in result.output and (tmp_path / "sheet.png").exists()


# --- documentation and layers --------------------------------------------------------------------

def test_explain_help_lists_every_method_and_xla_is_not_sold_as_faster():
    from gradcam_cli.methods import METHODS

    text = " ".join(run("explain", "--help").output.split())
    assert all(name in text for name in METHODS)
    assert "faster on some models" not in text and "slower on CPU" in text


def test_layer_may_name_a_nested_backbone(keras):
    from gradcam_cli import explain

    backbone = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(64, 64, 3))
    model = keras.Sequential([keras.Input((64, 64, 3)), backbone, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    result = explain(model, str(PAIR), layer=backbone.name)
    assert result.layer == backbone.name and result.heatmaps.shape == (1, 1, 2, 2)
