"""The command line, through Click's CliRunner and the installed console script."""

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
from gradcam_cli.manifest import Manifest

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ROOT / "sample_images" / "shapes"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def read_manifest(folder: Path) -> list[dict]:
    """The rows with absolute paths (stored relative to the manifest's folder)."""
    return Manifest.read_rows(folder / "manifest.jsonl")


def test_help_imports_no_tensorflow():
    code = ("import sys; from click.testing import CliRunner; from gradcam_cli.cli import cli; "
            "r = CliRunner().invoke(cli, ['--help']); r2 = CliRunner().invoke(cli, ['explain', '--help']); "
            "assert r.exit_code == 0 and r2.exit_code == 0, r.output; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False False"


def test_console_script_and_module_entry_points():
    script = shutil.which("gradcam", path=os.path.dirname(sys.executable)) or shutil.which("gradcam")
    assert script, "the gradcam console script is not installed"
    version = subprocess.run([script, "--version"], capture_output=True, text=True, check=True).stdout
    assert "0.1.0" in version
    as_module = subprocess.run([sys.executable, "-m", "gradcam_cli", "--help"], capture_output=True, text=True)
    assert as_module.returncode == 0 and "explain" in as_module.stdout


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


def test_json_rows_on_stdout(tmp_path):
    result = run("explain", SHAPES / "02_single_square.png", "-o", tmp_path, "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["label"] == "square" and rows[0]["status"] == "ok"


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


def test_models_and_layers_commands():
    listing = run("models")
    assert listing.exit_code == 0 and "Xception" in listing.output and "299" in listing.output
    layers = run("layers", "--model", "demo")
    assert layers.exit_code == 0
    assert "* block3_relu2" in layers.output


@pytest.mark.parametrize("bad", ["model.keras", "missing_dir/model.keras"])
def test_bad_model_paths(tmp_path, bad):
    path = tmp_path / bad
    if bad == "model.keras":
        path.write_text("garbage")
    result = run("explain", SHAPES / "01_single_cross.png", "--model", path, "-o", tmp_path / "o")
    assert result.exit_code == 2 and str(path) in result.output


def test_guided_gradcam_writes_a_saliency_image_beside_the_overlay(tmp_path):
    result = run("explain", SHAPES / "05_pair_circle_triangle.png", "-o", tmp_path, "--method", "guided-gradcam")
    assert result.exit_code == 0, result.output
    (row,) = read_manifest(tmp_path)
    saliency = Image.open(row["saliency"])
    assert saliency.size == Image.open(row["input"]).size and row["saliency"].endswith(".guided.png")


def test_methods_command_lists_every_method():
    from gradcam_cli.methods import METHODS

    listing = run("methods")
    assert all(name in listing.output for name in METHODS)


def test_empty_folder_says_what_was_looked_for(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    result = run("explain", tmp_path / "empty", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "no image files found" in result.output and "-r" in result.output
