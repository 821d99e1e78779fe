"""``gradcam explain --task detect``: a row, an overlay with its box and a heatmap per explained box,
one-line refusals, the API, and a keras-hub RetinaNet end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gradcam_cli.manifest import Manifest
from tests.heads.test_detection import SQUARE, square_picture
from tests.helpers import ROOT, SHAPES, run

FACTORY = f'''
import sys

sys.path.insert(0, {str(ROOT)!r})

import keras

from tests.heads.test_detection import tiny_detector


def build():
    return tiny_detector(keras)[0]
'''
SCALE = 2  # the pictures are twice the detector's 32 px input


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """square.png: the bright square at 2x (64 px); black.png: nothing to detect."""
    folder = tmp_path_factory.mktemp("detect")
    (folder / "det.py").write_text(FACTORY)
    Image.fromarray(square_picture().repeat(SCALE, axis=0).repeat(SCALE, axis=1)).save(folder / "square.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(folder / "black.png")
    return folder


@pytest.mark.slow
def test_each_kept_box_gets_a_row_an_overlay_with_its_box_and_a_heatmap(pictures, tmp_path):
    result = run("explain", pictures / "square.png", pictures / "black.png", "--model", f"{pictures / 'det.py'}:build",
                 "--task", "detect", "-o", tmp_path)
    assert result.exit_code == 1, result.output  # black.png has no box
    assert "black.png: no detection scores --min-score 0.5 or more" in result.output and "Traceback" not in result.output
    rows = Manifest.read_rows(tmp_path / "manifest.jsonl")
    ok = [row for row in rows if row["status"] == "ok"]
    assert ok and all(row["input"].endswith("square.png") for row in ok)
    assert [row["box_index"] for row in ok] == list(range(len(ok))) and ok[0]["layer"] == "features"
    start, end = (value * SCALE for value in SQUARE)
    left, top, right, bottom = ok[0]["box"]  # in the 64 px original's pixels
    assert start <= (left + right) / 2 <= end and start <= (top + bottom) / 2 <= end
    assert ok[0]["head"] == "detection" and ok[0]["label"] == "class_0" and ok[0]["score"] > 0.99
    assert ok[0]["probability"] == ok[0]["score"] and ok[0]["targets"] == "boxes>=0.5"
    overlay = np.asarray(Image.open(ok[0]["overlay"]), np.float32)
    assert overlay.shape == (64, 64, 3) and ok[0]["overlay"].endswith(".c0.box0.jpg")
    outline = overlay[round(bottom) - 1, round(left) + 2 : round(right) - 2]  # the box's bottom edge, white
    assert outline.mean() > 200
    heatmap = np.load(ok[0]["heatmap"])
    assert heatmap.shape == (8, 8) and heatmap.max() > 0


@pytest.mark.slow
def test_box_picks_one_and_a_number_out_of_range_is_one_line_per_image(pictures, tmp_path):
    model = f"{pictures / 'det.py'}:build"
    result = run("explain", pictures / "square.png", "--model", model, "--task", "detect", "--box", "0",
                 "--method", "eigencam", "-o", tmp_path / "one", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [(row["box_index"], row["method"]) for row in rows] == [(0, "eigencam")]
    result = run("explain", pictures / "square.png", "--model", model, "--task", "detect", "--box", "9",
                 "-o", tmp_path / "nine")
    assert result.exit_code == 1 and "square.png: --box 9 is out of range" in result.output
    assert "Traceback" not in result.output


def test_detect_on_a_classifier_and_top_k_with_detect_are_refused_in_one_line(pictures, tmp_path):
    result = run("explain", SHAPES / "02_single_square.png", "--model", "demo", "--task", "detect", "-o", tmp_path)
    assert result.exit_code == 2 and "--task detect needs two outputs" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = run("explain", pictures / "square.png", "--model", f"{pictures / 'det.py'}:build", "--task", "detect",
                 "--top-k", "2", "-o", tmp_path)
    assert result.exit_code == 2 and "--top-k 2 ranks a classifier's classes" in result.output


def test_min_score_and_box_on_a_classifier_are_refused_in_one_line(tmp_path):
    # the hostile pass: both were silently ignored (exit 0) where --region and --combine are refused
    result = run("explain", SHAPES / "02_single_square.png", "--model", "demo", "--min-score", "0.3", "--box", "0",
                 "-o", tmp_path)
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("gradcam: error: --min-score 0.3 and --box 0 choose an object detector's boxes; "
                                     "this model's head is softmax over 5 classes: leave them out, or give --task "
                                     "detect for a detector.")
    assert not (tmp_path / "manifest.jsonl").exists()


@pytest.mark.slow
def test_the_api_explains_boxes_with_their_coordinates(pictures):
    import gradcam_cli

    result = gradcam_cli.explain(f"{pictures / 'det.py'}:build", [pictures / "square.png"], task="detect",
                                 boxes=[0], min_score=0.9)
    assert result.heatmaps.shape == (1, 1, 8, 8) and result.class_ids.tolist() == [[0]]
    left, top, right, bottom = result.boxes[0][0]["box"]
    start, end = (value * SCALE for value in SQUARE)
    assert start <= (left + right) / 2 <= end and result.boxes[0][0]["score"] > 0.99


@pytest.mark.slow
def test_the_apis_padded_targets_are_nan_refused_in_one_line_and_maps_flag_rounding_noise(pictures, tmp_path):
    # the hostile pass: overlay(1, target=5) for an image with 5 boxes in a batch padded to 7 was a bare
    # IndexError, padded probabilities read 0.0, and rounding_noise was always None for a detector
    import gradcam_cli
    from gradcam_cli.errors import TargetError

    one_cell = np.zeros((32, 32, 3), np.uint8)
    one_cell[8:12, 8:12] = 255  # a single bright cell: one box, where the square has more
    result = gradcam_cli.explain(f"{pictures / 'det.py'}:build", [square_picture(), one_cell], task="detect")
    counts = [len(boxes) for boxes in result.boxes]
    assert counts[1] == 1 and counts[0] > 1 and result.probabilities.shape == result.class_ids.shape == (2, counts[0])
    padded = result.class_ids < 0
    assert padded.tolist() == [[False] * counts[0], [False] + [True] * (counts[0] - 1)]
    assert np.isnan(result.probabilities[padded]).all() and (result.probabilities[~padded] > 0.5).all()
    with pytest.raises(TargetError, match=r"^target=1 is out of range: image 1 has 1 box\(es\) explained \(targets "
                                          r"0\.\.0\)\.$"):
        result.overlay(1, target=1)
    assert result.overlay(0, target=counts[0] - 1).shape == (32, 32, 3)
    assert result.rounding_noise is not None and result.rounding_noise.shape == padded.shape
    assert not result.rounding_noise.any()  # real maps of confident boxes; padding is never flagged
    page = result._repr_html_()  # a notebook shows each real box once, captioned with its own score
    assert page.count("<figure") == sum(counts) and f"{result.boxes[1][0]['score']:.1%}" in page


@pytest.mark.slow
def test_keras_hub_retinanet_file_end_to_end(keras, tmp_path):
    """A saved RetinaNet (random weights, 64 px) needs no --task: its rows are per box."""
    pytest.importorskip("keras_hub")
    from tests.heads.test_detection import small_retinanet

    small_retinanet(keras).save(tmp_path / "retinanet.keras")
    picture = tmp_path / "square.png"
    Image.fromarray(square_picture().repeat(4, axis=0).repeat(4, axis=1)).save(picture)  # 128 px
    result = run("explain", picture, "--model", tmp_path / "retinanet.keras", "--preprocess", "scale01",
                 "--min-score", "0", "--box", "0", "--box", "1", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    rows = Manifest.read_rows(tmp_path / "out" / "manifest.jsonl")
    assert [row["box_index"] for row in rows] == [0, 1] and rows[0]["layer"].endswith("stack1_block0_out")
    assert all(len(row["box"]) == 4 and 0 <= row["box"][0] <= row["box"][2] <= 128 for row in rows)
    assert rows[0]["score"] >= rows[1]["score"]


@pytest.mark.slow
def test_mtcnn_pnet_finds_the_astronauts_face_and_the_boxs_map_lands_on_it(tmp_path):
    """A trained detector from PyPI (mtcnn 1.0.0's PNet, at one scale, benchmarks/pnet_detector.py)
    on a photo nobody here made: its best box is the face mtcnn's full pipeline finds, and the box's
    Layer-CAM map puts most of its mass on that face (3.4 % of the photo)."""
    from gradcam_cli import render
    from tests.models.test_packaged_models import ASTRONAUT, FACE_BOX, require

    require("mtcnn", "pip install mtcnn==1.0.0")
    result = run("explain", ASTRONAUT, "--model", f"{ROOT / 'benchmarks' / 'pnet_detector.py'}:build", "--task",
                 "detect", "--box", "0", "--method", "layercam", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    [row] = Manifest.read_rows(tmp_path / "manifest.jsonl")
    x, y, width, height = FACE_BOX
    left, top, right, bottom = row["box"]
    overlap = max(0, min(right, x + width) - max(left, x)) * max(0, min(bottom, y + height) - max(top, y))
    iou = overlap / ((right - left) * (bottom - top) + width * height - overlap)
    assert iou > 0.6 and row["score"] > 0.99 and row["layer"] == "prelu3"
    shown = render.display_heatmap(np.load(row["heatmap"]), (512, 512))
    assert shown[y : y + height, x : x + width].sum() / shown.sum() > 0.5


@pytest.mark.slow
def test_a_rerun_resumes_images_with_several_boxes_and_with_box(pictures, tmp_path):
    # the manifest counted 'boxes>=0.5' as one row per image, so an image with several boxes, and every
    # --box run, was redone by each rerun (found by the hostile pass)
    model = f"{pictures / 'det.py'}:build"
    for extra in ((), ("--box", "0")):
        out = tmp_path / f"out{len(extra)}"
        first = run("explain", pictures / "square.png", "--model", model, "--task", "detect", "--min-score", "0.01",
                    "-o", out, *extra)
        assert first.exit_code == 0, first.output
        again = run("explain", pictures / "square.png", "--model", model, "--task", "detect", "--min-score", "0.01",
                    "-o", out, *extra)
        assert "0 image(s) explained, 1 already done" in again.output, again.output
    rows = Manifest.read_rows(tmp_path / "out0" / "manifest.jsonl")
    assert len(rows) > 1 and {row["boxes_explained"] for row in rows} == {len(rows)}
