"""``gradcam compare`` and ``gradcam evaluate`` on a detector (``--task detect``): a sheet row per box,
captioned with its label and score; evaluate's rows per box, its curves read on the box's score, the
metrics that make no sense for boxes refused in one line. The tiny detector of
tests/heads/test_detection.py, through a FILE.py:FACTORY (tests/cli/test_detect.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from gradcam_cli.compare import CAPTION, TILE
from tests.cli.test_detect import SCALE, pictures  # noqa: F401  (the module's fixture: square.png, black.png, det.py)
from tests.heads.test_detection import SIZE
from tests.helpers import run


@pytest.fixture(scope="module")
def labelled(pictures):  # noqa: F811
    """A labels file naming the detector's one class, and two.png: two squares (four boxes above 0.5)."""
    (pictures / "labels.txt").write_text("square\n")
    two = np.zeros((SIZE, SIZE, 3), np.uint8)
    two[4:12, 4:12] = 255
    two[20:28, 16:24] = 255
    Image.fromarray(two.repeat(SCALE, axis=0).repeat(SCALE, axis=1)).save(pictures / "two.png")
    return pictures


def detector_arguments(folder) -> list:
    return ["--model", f"{folder / 'det.py'}:build", "--task", "detect", "--labels", folder / "labels.txt"]


@pytest.mark.slow
def test_compare_has_a_row_per_box_captioned_with_its_label_and_score(labelled, tmp_path, monkeypatch):
    written = []
    plain_text = ImageDraw.ImageDraw.text

    def recording_text(self, xy, text, *args, **kwargs):
        written.append(text)
        return plain_text(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", recording_text)
    sheet = tmp_path / "sheet.png"
    result = run("compare", labelled / "square.png", labelled / "black.png", *detector_arguments(labelled),
                 "--methods", "gradcam,eigencam", "-o", sheet)
    assert result.exit_code == 1, result.output  # black.png has no box: left out, said in one line
    assert "black.png: no detection scores --min-score 0.5 or more" in result.output
    assert "left out of the sheet" in result.output and "Traceback" not in result.output
    explained = run("explain", labelled / "square.png", *detector_arguments(labelled), "-o", tmp_path / "out",
                    "--json")
    boxes = [json.loads(line) for line in explained.output.splitlines() if line.startswith("{")]
    assert len(boxes) == 2  # measured: the square's cells give two boxes that suppression keeps apart
    assert Image.open(sheet).size == (3 * TILE, len(boxes) * (TILE + CAPTION) + CAPTION)
    captions = [f"square {row['score']:.1%}" for row in boxes]
    for row, caption in zip(boxes, captions, strict=True):  # each box: its row's title, its caption under both methods
        assert f"square.png box {row['box_index']}" in written
        assert written.count(caption) == 2 * captions.count(caption)
    assert not any(text.startswith("class_") for text in written)  # the labels file names the class


def test_compare_with_a_detector_and_no_box_anywhere_is_one_line(labelled, tmp_path):
    result = run("compare", labelled / "black.png", *detector_arguments(labelled), "--methods", "eigencam",
                 "-o", tmp_path / "sheet.png")
    assert result.exit_code == 1 and "no image to compare: " in result.output and "black.png" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "sheet.png").exists()


@pytest.mark.slow
def test_evaluate_scores_each_box_on_its_score_and_grad_cam_deletes_it_faster_than_random(labelled, tmp_path):
    out = tmp_path / "out"
    truth = tmp_path / "ground_truth.json"  # the square of square.png, in its 64 px pixels
    truth.write_text(json.dumps({"square.png": {"objects": [{"class": "square", "box_xyxy": [16, 16, 32, 32]}]}}))
    result = run("evaluate", labelled / "square.png", labelled / "two.png", labelled / "black.png",
                 *detector_arguments(labelled), "--methods", "gradcam,random", "--metrics",
                 "deletion,insertion,road,pointing", "--ground-truth", truth, "--sanity", "--steps", "4", "-o", out,
                 "--json")
    assert result.exit_code == 1, result.output  # black.png: no box
    assert "black.png: no detection scores --min-score 0.5 or more" in result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scored = [row for row in rows if "error" not in row]
    for method in ("gradcam", "random"):  # two boxes in square.png, four in two.png: a row each, none padded
        own = [row for row in scored if row["method"] == method]
        counts = {name: sum(row["input"].endswith(name) for row in own) for name in ("square.png", "two.png")}
        assert counts == {"square.png": 2, "two.png": 4}
        assert sorted(row["box_index"] for row in own if row["input"].endswith("two.png")) == [0, 1, 2, 3]
    for row in scored:
        assert row["label"] == "square" and len(row["box"]) == 4 and row["probability"] > 0.5
        assert row["deletion_curve"][-1] < 0.01  # every pixel deleted: the box's score read on the black copy
        assert row["road"] is not None and -1 <= row["sanity_correlation"] <= 1  # the boxes kept for the re-run
        assert row["ground_truth"] == ("scored" if row["input"].endswith("square.png") else "unannotated")
    assert all(row["pointing"] == 1.0 for row in scored if row["method"] == "gradcam" and row["ground_truth"] == "scored")
    summary = json.loads(result.stdout)["methods"]
    # measured 2026-12-06: Grad-CAM 0.126 against random 0.41-0.83 per box (the box dies once its square goes)
    assert summary["gradcam"]["deletion"]["mean"] < summary["random"]["deletion"]["mean"] - 0.2


def test_evaluate_refuses_coherency_and_arcc_for_a_detector_in_one_line(labelled, tmp_path):
    result = run("evaluate", labelled / "square.png", *detector_arguments(labelled), "--methods", "gradcam",
                 "--metrics", "arcc", "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--metrics arcc,coherency does not apply to a detector" in lines[0]
    assert "score deletion, insertion, drop, increase, road or complexity" in lines[0]


def test_evaluate_rows_of_other_boxes_are_not_reused(labelled):
    """min_score and boxes choose the boxes scored: another choice is another fingerprint."""
    from gradcam_cli.evaluate import config_fingerprint
    from gradcam_cli.models import resolve_model
    from gradcam_cli.scoring import EvaluateOptions

    spec = resolve_model(f"{labelled / 'det.py'}:build", task="detect")
    prints = {config_fingerprint(spec, "features", EvaluateOptions(min_score=score, boxes=boxes))
              for score, boxes in ((0.5, None), (0.9, None), (0.5, [0]))}
    assert len(prints) == 3

