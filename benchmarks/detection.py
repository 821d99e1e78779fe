"""How much of each explained box's map lies inside that box: mtcnn's trained PNet as a one-scale
face detector (``benchmarks/pnet_detector.py``) on the bundled astronaut photo, one method at a time.

    python benchmarks/detection.py [--json benchmarks/detection.json]

For each box PNet keeps above 0.5 (its own windows, its boxes, the tool's non-max suppression), the
share of the displayed map (upsampled to the photo, min-max scaled) that falls inside the box, next to
the box's share of the photo's area (what a map spread evenly would give). Prints one line per method.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "sample_images" / "photos" / "astronaut.jpg"
MODEL = f"{ROOT / 'benchmarks' / 'pnet_detector.py'}:build"
METHODS = ("gradcam", "hirescam", "layercam", "eigencam")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write the figures here")
    arguments = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import gradcam_cli

    figures = {}
    for method in METHODS:
        started = time.perf_counter()
        result = gradcam_cli.explain(MODEL, PHOTO, task="detect", method=method, overlay_size=None)
        height, width = result.images[0].shape[:2]
        rows = []
        for target, box in enumerate(result.boxes[0]):
            shown = result.heatmap(0, target)
            left, top, right, bottom = (int(round(value)) for value in box["box"])
            rows.append({"box": box["box"], "score": round(box["score"], 4),
                         "inside": round(float(shown[top:bottom, left:right].sum() / max(shown.sum(), 1e-9)), 3),
                         "area": round((right - left) * (bottom - top) / (width * height), 3)})
        figures[method] = {"boxes": rows, "seconds": round(time.perf_counter() - started, 1)}
        inside = " ".join(f"{row['inside']:.2f}" for row in rows)
        areas = " ".join(f"{row['area']:.2f}" for row in rows)
        print(f"{method:9s} inside its box: {inside}   (box areas: {areas})")
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
