"""Listing inputs and their identity (gradcam_cli/inputs.py): glob patterns and recursive walks through
symlink loops, one input however its path is spelled, the output folder never an input, exclusions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gradcam_cli.inputs import collect_inputs
from gradcam_cli.manifest import MANIFEST
from tests.helpers import SHAPES, run


def stored_rows(folder: Path) -> list[dict]:
    """The rows as stored (output paths relative to the manifest's folder)."""
    return [json.loads(line) for line in (folder / MANIFEST).read_text().splitlines()]


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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
