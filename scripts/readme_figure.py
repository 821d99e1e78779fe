"""Draw docs/shapes_methods.png for the README from real runs of the demo model.

    python scripts/readme_figure.py

One row per sample image: the original, then the overlay of each method for the top-1 class
(for two-class images, one row per class), labelled with the method and the explained class.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import gradcam_cli  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ["02_single_square.png", "03_single_triangle.png", "07_pair_cross_star.png",
           "10_same_square_x2.png"]
METHODS = ["cam", "gradcam", "gradcam++"]
TILE = 192


def main() -> None:
    paths = [str(ROOT / "sample_images" / "shapes" / name) for name in SAMPLES]
    rows: list[list[tuple[np.ndarray, str]]] = []
    results = {m: gradcam_cli.explain("demo", paths, method=m, top_k=2) for m in METHODS}
    for index, path in enumerate(paths):
        targets = [0, 1] if "_pair_" in path else [0]
        for target in targets:
            first = results[METHODS[0]]
            label = first.label(index, target)
            probability = first.probabilities[index, first.class_ids[index, target]]
            row = [(first.images[index], f"{Path(path).name[:18]}")]
            row += [(results[m].overlay(index, target), f"{m}: {label} {probability:.0%}") for m in METHODS]
            rows.append(row)
    sheet = Image.new("RGB", (TILE * (len(METHODS) + 1), (TILE + 18) * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        for c, (image, caption) in enumerate(row):
            y = r * (TILE + 18)
            sheet.paste(Image.fromarray(image).resize((TILE, TILE)), (c * TILE, y + 18))
            draw.text((c * TILE + 4, y + 3), caption, fill="black")
    out = ROOT / "docs" / "shapes_methods.png"
    out.parent.mkdir(exist_ok=True)
    sheet.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
