"""Class names: labels files, their checks against the model, and the ImageNet names Keras ships."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import (
    ModelLoadError,
    UnsupportedModel,
)
from ..graph import outputs_of
from ..heads import detect_head


def read_labels(path: str | os.PathLike) -> list[str]:
    """One class name per line, UTF-8 (a byte-order mark is dropped); trailing blank lines ignored.

    A blank line inside the list, a repeated name, or a file that is not UTF-8 text is refused with
    a :class:`ModelLoadError` naming the line, since each would shift or hide a class.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise ModelLoadError(f"{path}: cannot read labels file ({error.strerror}).") from None
    except UnicodeDecodeError as error:
        line = Path(path).read_bytes()[: error.start].count(b"\n") + 1
        raise ModelLoadError(
            f"{path}: labels file is not UTF-8 text (line {line}); save it as UTF-8, one class name per line."
        ) from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return check_labels(lines, str(path))


def check_labels(labels: list, source: str, class_count: int | None = None) -> list[str]:
    """Labels as a list of distinct non-blank names, one per class when ``class_count`` is known."""
    where = f"{source}: " if source else ""
    if not all(isinstance(label, str) for label in labels):
        raise ModelLoadError(f"{where}labels must be text, one name per class.")
    for number, label in enumerate(labels, start=1):
        if not label.strip():
            raise ModelLoadError(f"{where}line {number} is blank; every class needs a name (remove the line "
                                 "or name the class).")
    seen: dict[str, int] = {}
    for number, label in enumerate(labels, start=1):
        if label in seen:
            raise ModelLoadError(f"{where}line {number} repeats '{label}' (line {seen[label]}); names must be distinct.")
        seen[label] = number
    if class_count is not None and len(labels) != class_count:
        raise ModelLoadError(f"{where}{len(labels)} labels for a model with {class_count} classes; give one name "
                             "per class, in the order of the model's outputs.")
    return list(labels)


def labels_for_model(labels: str | os.PathLike | list[str], model: Any) -> list[str]:
    """``--labels`` (a file) or a list of names, checked against the model's class count."""
    if isinstance(labels, (list, tuple)):
        return check_labels(list(labels), "labels", class_count(model))
    return check_labels(read_labels(labels), str(labels), class_count(model))


def class_count(model: Any) -> int | None:
    """Classes of a single-output model, None where unknown: its head's (two for one sigmoid unit,
    see :mod:`gradcam_cli.heads`), else the last axis of its output."""
    try:
        if len(outputs_of(model)) > 1:
            return None
        if outputs_of(model):
            return detect_head(model).num_classes
    except (UnsupportedModel, AttributeError, ValueError, RuntimeError):
        pass
    try:
        shape = model.output_shape
    except (AttributeError, ValueError, RuntimeError):
        return None
    if not isinstance(shape, tuple) or not shape or not isinstance(shape[-1], int):
        return None
    return int(shape[-1])


IMAGENET_CLASS_INDEX = Path(__file__).with_name("imagenet_class_index.json")
"""The 1000 ImageNet classes, ``{"0": ["n01440764", "tench"], ...}``: WordNet synset and name, in the
order of every 1000-class ``keras.applications`` head. The same public data as Keras's
``imagenet_class_index.json``, here taken from keras-hub's ``imagenet_utils`` (Apache-2.0), shipped so
that names work offline and no download runs. ImageNet itself names two classes twice ('crane', the
bird (134) and the machine (517); 'maillot' (638, 639)); a name picks its first index."""


@lru_cache(maxsize=1)
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names, from the index shipped in the package."""
    index = json.loads(IMAGENET_CLASS_INDEX.read_text(encoding="utf-8"))
    return [index[str(i)][1] for i in range(len(index))]
