"""Draw docs/images/shapes_methods.png (shown in docs/methods.md) from real runs of the demo model.

    python scripts/readme_figure.py

One row per sample image: the original, then the overlay of each method for the top-1 class
(for two-class images, one row for each of the two classes the image holds, whatever the model
ranks them), labelled with the method, the explained class and its probability.
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
    for path in paths:
        # a pair's file name holds its two classes: 07_pair_cross_star.png -> cross, star
        classes = Path(path).stem.split("_")[2:4] if "_pair_" in path else None
        results = {m: gradcam_cli.explain("demo", [path], method=m, classes=classes) for m in METHODS}
        first = results[METHODS[0]]
        for target in range(first.class_ids.shape[1]):
            label = first.label(0, target)
            probability = first.probabilities[0, first.class_ids[0, target]]
            row = [(first.images[0], f"{Path(path).name[:18]}")]
            row += [(results[m].overlay(0, target), f"{m}: {label} {probability:.0%}") for m in METHODS]
            rows.append(row)
    sheet = Image.new("RGB", (TILE * (len(METHODS) + 1), (TILE + 18) * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        for c, (image, caption) in enumerate(row):
            y = r * (TILE + 18)
            sheet.paste(Image.fromarray(image).resize((TILE, TILE)), (c * TILE, y + 18))
            draw.text((c * TILE + 4, y + 3), caption, fill="black")
    out = ROOT / "docs" / "images" / "shapes_methods.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
