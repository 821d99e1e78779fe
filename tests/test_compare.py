"""The comparison sheet (gradcam_cli/compare.py): a row per (image, class), a column per method, the
named format, tiles that keep the aspect ratio, Guided Grad-CAM's saliency and each head's caption."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.helpers import PAIR, SHAPES, run


@pytest.mark.slow
def test_compare_sheet_has_a_row_per_image_and_a_column_per_method(tmp_path):
    sheet = tmp_path / "sheet.png"
    images = [SHAPES / "01_single_cross.png", SHAPES / "05_pair_circle_triangle.png"]
    result = run("compare", *images, "--methods", "gradcam,gradcam++,scorecam", "-o", sheet)
    assert result.exit_code == 0, result.output
    picture = Image.open(sheet)
    assert picture.size == (4 * 224, 2 * (224 + 22) + 22)


@pytest.mark.slow
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


def test_compare_tiles_show_a_regression_value_not_a_percentage(tmp_path, two_output_model_file, monkeypatch):
    from PIL import ImageDraw

    written = []
    original = ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text",
                        lambda self, xy, text, *a, **k: (written.append(text), original(self, xy, text, *a, **k)))
    result = run("compare", PAIR, "--model", two_output_model_file, "--model-output", "age", "--methods", "gradcam",
                 "-o", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    captions = [text for text in written if text.startswith("value")]
    assert captions and all("%" not in text and "value = " in text for text in captions), written
