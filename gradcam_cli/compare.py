"""``gradcam compare``: one PNG sheet, a row per image and a column per method, labelled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import render
from .api import as_images, explain
from .models import ModelSpec

TILE = 224
CAPTION = 22


def _font(size: int = 14):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def compare_sheet(
    spec: ModelSpec,
    images: list[str],
    methods: list[str],
    output: str | Path,
    layer: str | None = None,
    target=None,
    alpha: float = 0.5,
    colormap: str = "jet",
    batch_size: int = 16,
    **method_options,
) -> Path:
    """Explain ``images`` with every method and write the comparison sheet to ``output``."""
    arrays, paths = as_images(images)  # decoded once, shared by every method
    results = [explain(spec, arrays, method=m, target=target, layer=layer, batch_size=batch_size, **method_options)
               for m in methods]
    first = results[0]
    rows = len(first.images)
    columns = len(methods) + 1
    sheet = Image.new("RGB", (columns * TILE, rows * (TILE + CAPTION) + CAPTION), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font()
    draw.text((4, 3), "original", fill="black", font=font)
    for column, method in enumerate(methods, start=1):
        draw.text((column * TILE + 4, 3), method, fill="black", font=font)
    for row in range(rows):
        top = CAPTION + row * (TILE + CAPTION)
        original = first.images[row]
        name = Path(paths[row]).name if paths[row] else f"image {row}"
        draw.text((4, top + 3), f"{name[:28]}", fill="black", font=font)
        for column, result in enumerate([None, *results]):
            picture = original if result is None else result.overlay(row, 0, alpha=alpha, colormap=colormap)
            tile = Image.fromarray(np.asarray(picture)).resize((TILE, TILE), Image.BILINEAR)
            sheet.paste(tile, (column * TILE, top + CAPTION))
            if result is not None:
                text = f"{result.label(row)} {result.probabilities[row, result.class_ids[row, 0]]:.0%}"
                draw.text((column * TILE + 4, top + 3), text, fill="black", font=font)
    output = Path(output)
    render.atomic_write_bytes(output, render.png_bytes(np.asarray(sheet)))
    return output
