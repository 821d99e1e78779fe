"""Regenerate sample_images/shapes/ and its ground_truth.json: ``python scripts/make_samples.py``.

Twelve 256x256 images drawn by lab.shapes with a fixed seed at difficulty 0.7 (the
full randomization is 1): four with one object, four with two objects of different classes, four
with two or three objects of one class. The classes follow a fixed plan, so the file names (which
tests and the README use) stay the same when the generator changes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the lab (not installed) imports from the repo root

import numpy as np
from PIL import Image

from lab.shapes import CLASSES, make_scene

OUT = Path(__file__).resolve().parent.parent / "sample_images" / "shapes"
SEED = 2026
DIFFICULTY = 0.7
PLAN = [("single", ["cross"]), ("single", ["square"]), ("single", ["triangle"]), ("single", ["square"]),
        ("pair", ["circle", "triangle"]), ("pair", ["square", "star"]), ("pair", ["cross", "star"]),
        ("pair", ["triangle", "circle"]), ("same", ["cross"] * 2), ("same", ["square"] * 2),
        ("same", ["cross"] * 2), ("same", ["triangle"] * 3)]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for stale in OUT.glob("*.png"):  # ground_truth.json must list exactly the images present
        stale.unlink()
    rng = np.random.default_rng(SEED)
    truth = {}
    for number, (kind, names) in enumerate(PLAN, start=1):
        scene = make_scene(rng, 256, kind, DIFFICULTY, labels=[CLASSES.index(name) for name in names])
        suffix = "_".join(dict.fromkeys(names)) + (f"_x{len(names)}" if kind == "same" else "")
        filename = f"{number:02d}_{kind}_{suffix}.png"
        Image.fromarray(scene.image).save(OUT / filename)
        truth[filename] = {
            "kind": kind,
            "objects": [{"class": o.name, "class_index": o.label, "box_xyxy": list(o.box)} for o in scene.objects],
        }
    (OUT / "ground_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    print(f"wrote {len(truth)} images and ground_truth.json to {OUT}")


if __name__ == "__main__":
    main()
