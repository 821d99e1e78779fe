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
from gradcam_cli.images import collect_inputs
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

@pytest.mark.parametrize("pattern", ["tree/**/*.png", "tree/*/*.png", "tree/*/*/*/*/*.png", "tree/**", "**/b.png"])
def test_glob_patterns_visit_each_real_folder_once_through_symlink_loops(tmp_path, pattern, monkeypatch):
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


def test_recursive_walk_keeps_the_real_path_not_the_symlinked_copy(tmp_path):
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
    import gradcam_cli.cli as cli_module

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(cli_module, "_load_spec", no_model)
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
        expected = (32, 32) if row["layer"] == "block2_relu2" else (16, 16)
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
