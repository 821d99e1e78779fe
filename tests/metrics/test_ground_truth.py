"""Ground-truth boxes (gradcam_cli/metrics/ground_truth.py): the project's format, COCO and VOC."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import SHAPES


def test_coco_and_voc_ground_truth_give_the_project_files_boxes(tmp_path):
    from gradcam_cli.metrics.ground_truth import load_ground_truth

    project = json.loads((SHAPES / "ground_truth.json").read_text())
    names = sorted(project)
    categories = ["circle", "square", "triangle", "star", "cross"]
    coco = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(categories)]}
    voc = tmp_path / "voc"
    voc.mkdir()
    for image_id, name in enumerate(names):
        coco["images"].append({"id": image_id, "file_name": name, "width": 256, "height": 256})
        objects = ""
        for obj in project[name]["objects"]:
            x0, y0, x1, y1 = obj["box_xyxy"]
            coco["annotations"].append({"image_id": image_id, "category_id": obj["class_index"] + 1,
                                        "bbox": [x0, y0, x1 - x0, y1 - y0]})
            objects += (f"<object><name>{obj['class']}</name><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
                        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")
        (voc / f"{Path(name).stem}.xml").write_text(f"<annotation><filename>{name}</filename>{objects}</annotation>")
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    reference = load_ground_truth(SHAPES / "ground_truth.json")
    for other in (load_ground_truth(tmp_path / "coco.json"), load_ground_truth(voc)):
        for name in names:
            expected = reference.boxes(str(SHAPES / name), name)
            found = other.boxes(str(SHAPES / name), name)
            assert [b.xyxy for b in found] == [b.xyxy for b in expected]
            assert [b.matches(e.class_index, e.label) for b, e in zip(found, expected, strict=True)] == [True] * len(found)
