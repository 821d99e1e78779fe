"""Ground-truth boxes for the pointing games, from three formats:

- the project's ``ground_truth.json`` (``sample_images/shapes``): ``{"file.png": {"objects":
  [{"class": "cross", "class_index": 4, "box_xyxy": [x0, y0, x1, y1]}]}}``, boxes in image pixels,
  ``x1``/``y1`` exclusive;
- COCO detection JSON: ``images`` (``id``, ``file_name``), ``annotations`` (``image_id``,
  ``category_id``, ``bbox`` = ``[x, y, width, height]``) and ``categories`` (``id``, ``name``);
- a folder of Pascal VOC XML files: ``<filename>`` and ``<object><name>`` with ``<bndbox>``
  ``xmin ymin xmax ymax`` (1-based, inclusive: converted to ``[xmin - 1, ymin - 1, xmax, ymax]``).

Images are matched by their path relative to the folder given on the command line, then by file
name. A box matches the explained class when its class index equals it or its name equals the
class's label, case-insensitively.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path, PurePath

from ..errors import EvaluationError, param


@dataclass(frozen=True)
class Box:
    label: str | None
    class_index: int | None
    xyxy: tuple[float, float, float, float]  # image pixels, end exclusive

    def matches(self, class_index: int, label: str) -> bool:
        if self.class_index is not None and self.class_index == class_index:
            return True
        return self.label is not None and self.label.strip().lower() == str(label).strip().lower()


class GroundTruth:
    """Boxes per image, looked up by relative path or file name."""

    def __init__(self, boxes: dict[str, list[Box]], source: str):
        self.source = source
        self._by_path = {PurePath(name).as_posix(): value for name, value in boxes.items()}
        self._by_name: dict[str, list[Box]] = {}
        for name, value in boxes.items():
            self._by_name.setdefault(PurePath(name).name, value)

    def __len__(self) -> int:
        return len(self._by_path)

    def boxes(self, path: str, relative: str | None = None) -> list[Box] | None:
        """The image's boxes, or None when the file has no entry at all."""
        for key in (relative, path):
            if key and PurePath(key).as_posix() in self._by_path:
                return self._by_path[PurePath(key).as_posix()]
        return self._by_name.get(PurePath(path).name)


def _bad(path: Path, detail: str) -> EvaluationError:
    return EvaluationError(f"{path}: {detail}; {param('ground_truth')} takes ground_truth.json, COCO detection JSON "
                           "or a folder of Pascal VOC XML files.")


def load_ground_truth(path: str | Path) -> GroundTruth:
    path = Path(path)
    if path.is_dir():
        return _load_voc(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _bad(path, "no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise _bad(path, f"not readable JSON ({str(error).splitlines()[0]})") from None
    try:
        if isinstance(data, dict) and "annotations" in data and "images" in data:
            return GroundTruth(_coco_boxes(data), str(path))
        if isinstance(data, dict):
            return GroundTruth({name: _project_boxes(entry) for name, entry in data.items()}, str(path))
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise _bad(path, f"unexpected layout ({type(error).__name__}: {error})") from None
    raise _bad(path, "a JSON object keyed by image file name was expected")


def _project_boxes(entry) -> list[Box]:
    objects = entry["objects"] if isinstance(entry, dict) else entry
    boxes = []
    for item in objects:
        index = item.get("class_index")
        box = item.get("box_xyxy", item.get("box"))
        boxes.append(Box(item.get("class", item.get("label")), None if index is None else int(index),
                         tuple(float(v) for v in box)))
    return boxes


def _coco_boxes(data: dict) -> dict[str, list[Box]]:
    names = {category["id"]: category["name"] for category in data.get("categories", [])}
    files = {image["id"]: image["file_name"] for image in data["images"]}
    boxes: dict[str, list[Box]] = {name: [] for name in files.values()}
    for annotation in data["annotations"]:
        x, y, width, height = (float(v) for v in annotation["bbox"])
        category = annotation["category_id"]
        boxes[files[annotation["image_id"]]].append(Box(names.get(category, str(category)), None,
                                                        (x, y, x + width, y + height)))
    return boxes


def _load_voc(folder: Path) -> GroundTruth:
    boxes: dict[str, list[Box]] = {}
    files = sorted(folder.rglob("*.xml"))
    if not files:
        raise _bad(folder, "a folder without .xml files")
    for file in files:
        try:
            root = ElementTree.parse(file).getroot()
            name = root.findtext("filename") or f"{file.stem}.jpg"
            entries = []
            for item in root.iter("object"):
                box = item.find("bndbox")
                xmin, ymin, xmax, ymax = (float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax"))
                entries.append(Box(item.findtext("name"), None, (xmin - 1, ymin - 1, xmax, ymax)))
        except (ElementTree.ParseError, AttributeError, TypeError, ValueError) as error:
            raise _bad(file, f"not a Pascal VOC annotation ({error})") from None
        boxes.setdefault(name, []).extend(entries)
    return GroundTruth(boxes, str(folder))
