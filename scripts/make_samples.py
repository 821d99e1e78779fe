"""Regenerate sample_images/shapes/ and its ground_truth.json: ``python scripts/make_samples.py``.

Twelve 256x256 images drawn by gradcam_cli.demo.shapes with a fixed seed: four with one object,
four with two objects of different classes, four with two or three objects of one class.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from gradcam_cli.demo.shapes import make_scene

OUT = Path(__file__).resolve().parent.parent / "sample_images" / "shapes"
SEED = 2026


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for stale in OUT.glob("*.png"):  # ground_truth.json must list exactly the images present
        stale.unlink()
    rng = np.random.default_rng(SEED)
    truth = {}
    number = 1
    for kind in ("single", "pair", "same"):
        for _ in range(4):
            scene = make_scene(rng, 256, kind)
            names = sorted({o.name for o in scene.objects}, key=[o.name for o in scene.objects].index)
            suffix = "_".join(names) + (f"_x{len(scene.objects)}" if kind == "same" else "")
            filename = f"{number:02d}_{kind}_{suffix}.png"
            Image.fromarray(scene.image).save(OUT / filename)
            truth[filename] = {
                "kind": kind,
                "objects": [{"class": o.name, "class_index": o.label, "box_xyxy": list(o.box)} for o in scene.objects],
            }
            number += 1
    (OUT / "ground_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    print(f"wrote {number - 1} images and ground_truth.json to {OUT}")


if __name__ == "__main__":
    main()
