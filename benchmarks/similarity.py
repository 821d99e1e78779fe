"""Where the map of a similarity lands (docs/similarity.md), on a model where the answer is known and on
the bundled trained model.

    python benchmarks/similarity.py [--json F]

1. Two patches: the two-texture embedding model of ``tests/similarity_models.py`` (horizontal stripes
   A, vertical stripes B, hand-set kernels); the query is A on the left half and B on the right. Per
   method: the share of the raw map's mass on the left half for the reference A, and on the right
   half for the reference B.
2. The bundled demo classifier's penultimate layer (``--model demo --model-output gap``, 144
   dimensions) as an embedding, on the bundled shape scenes that hold two shapes: the reference is a
   scene holding one of them alone; the share of the displayed map's mass inside that shape's box
   and inside the other shape's box (``sample_images/shapes/ground_truth.json``). The demo model
   was trained on the lab's generator; these scenes come from ``scripts/``, which draws differently.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHAPES = ROOT / "sample_images" / "shapes"
METHODS = ("gradcam", "gradcam++", "hirescam", "layercam", "scorecam")
# (query with two shapes, the reference scene holding one of them alone, that shape's class)
PAIRS = (("05_pair_circle_triangle.png", "03_single_triangle.png", "triangle"),
         ("08_pair_triangle_circle.png", "03_single_triangle.png", "triangle"),
         ("06_pair_square_star.png", "02_single_square.png", "square"),
         ("07_pair_cross_star.png", "01_single_cross.png", "cross"))


def two_patches() -> dict:
    import keras

    from gradcam_cli import explain
    from tests.similarity_models import PATTERN_A, PATTERN_B, left_share, pattern_model, two_patch

    model = pattern_model(keras)
    query = [two_patch(PATTERN_A, PATTERN_B)]
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        references = {}
        for name, picture in (("A", PATTERN_A), ("B", PATTERN_B)):
            references[name] = str(Path(folder) / f"{name}.png")
            Image.fromarray(picture).save(references[name])
        for method in METHODS:
            on_a = explain(model, query, reference=references["A"], method=method)
            on_b = explain(model, query, reference=references["B"], method=method)
            figures[method] = {"A_on_left": round(left_share(on_a.heatmaps[0, 0]), 4),
                               "B_on_right": round(1 - left_share(on_b.heatmaps[0, 0]), 4),
                               "similarity": round(float(on_a.probabilities[0, 0]), 4)}
    return figures


def box_mass(heatmap: np.ndarray, box: list[int]) -> float:
    left, top, right, bottom = box
    return float(heatmap[top:bottom, left:right].sum() / heatmap.sum())


def demo_shapes() -> dict:
    from gradcam_cli import explain

    truth = json.loads((SHAPES / "ground_truth.json").read_text())
    figures = {}
    for method in METHODS:
        rows = []
        for query, reference, shape in PAIRS:
            result = explain("demo", str(SHAPES / query), reference=str(SHAPES / reference), model_output="gap",
                             method=method)
            shown = result.heatmap(0)  # at the scene's size, in [0, 1]
            boxes = {item["class"]: item["box_xyxy"] for item in truth[query]["objects"]}
            other = next(name for name in boxes if name != shape)
            rows.append({"query": query, "reference": reference, "similarity": round(float(result.probabilities[0, 0]), 4),
                         "in_reference_shape": round(box_mass(shown, boxes[shape]), 4),
                         "in_other_shape": round(box_mass(shown, boxes[other]), 4)})
        figures[method] = rows
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write the figures here too")
    arguments = parser.parse_args()
    figures = {"two_patches": two_patches(), "demo_shapes": demo_shapes()}
    print("two patches (A left, B right): share of the map on the reference's half")
    for method, entry in figures["two_patches"].items():
        print(f"  {method:10s} A -> left {entry['A_on_left']:.3f}   B -> right {entry['B_on_right']:.3f}   "
              f"cos(query, A) {entry['similarity']:.3f}")
    print("demo --model-output gap on two-shape scenes: share of the displayed map in the reference's shape box "
          "/ the other shape's box")
    for method, rows in figures["demo_shapes"].items():
        cells = "  ".join(f"{row['query'][:7]} {row['in_reference_shape']:.2f}/{row['in_other_shape']:.2f}" for row in rows)
        print(f"  {method:10s} {cells}")
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
