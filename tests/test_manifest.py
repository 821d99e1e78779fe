"""``manifest.jsonl`` (gradcam_cli/manifest.py): every row describes the file it points to, paths are
relative to the manifest so the folder can move, and older manifests are still read."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradcam_cli.manifest import MANIFEST, Manifest
from tests.helpers import run


def stored_rows(folder: Path) -> list[dict]:
    """The rows as stored (output paths relative to the manifest's folder)."""
    return [json.loads(line) for line in (folder / MANIFEST).read_text().splitlines()]


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_lines_that_are_not_rows_of_a_run_are_passed_over(tmp_path):
    """A JSON object without an ``input`` (another tool's file, a hand edit) is not a row: reading
    passes over it rather than failing later on its missing key (the report did, with a traceback)."""
    from gradcam_cli.manifest import Manifest

    path = tmp_path / "manifest.jsonl"
    path.write_text('{"status": "ok", "label": "cat"}\n[1, 2]\n{"input": "a.png", "status": "error", "error": "x"}\n')
    rows = Manifest.read_rows(path)
    assert [row["status"] for row in rows] == ["error"]
