"""Which classes a run explains: ``--class`` values (labels or indices) resolved against a model's classes,
and the one line for a segmentation class whose region is empty."""

from __future__ import annotations

import re

from .errors import TargetError, param, phrase
from .models.spec import ModelSpec


def resolve_classes(spec: ModelSpec, classes: list[str | int] | None, num_classes: int) -> list[int] | None:
    """``--class`` values (indices, label names, or the tool's own ``class_N`` spelling of a class
    without a name) to indices, checked against the model."""
    if not classes:
        return None
    indices = []
    labels = spec.class_names
    for value in classes:
        text = str(value).strip()
        if text.lstrip("-").isdigit():
            index = int(text)
        elif labels and text in labels:
            index = labels.index(text)
        elif re.fullmatch(r"class_\d+", text):
            index = int(text[len("class_"):])
        else:
            lowered = [label.lower() for label in labels or []]
            if text.lower() in lowered:
                index = lowered.index(text.lower())
            else:
                import difflib

                hint = ""
                if labels:
                    close = difflib.get_close_matches(text, labels, n=3)
                    hint = f" Did you mean {', '.join(close)}?" if close else ""
                else:
                    hint = f" This model has no labels; pass a class index or {param('labels', 'FILE')}."
                raise TargetError(f"unknown class '{text}'.{hint}")
        if not 0 <= index < num_classes:
            raise TargetError(f"class index {index} is out of range: the model has {num_classes} classes (0..{num_classes - 1}).")
        if index not in indices:  # '--class circle --class 0' is one class, explained once
            indices.append(index)
    return indices


def empty_region_message(source: str, region: str | None, label: str) -> str:
    """The one line for a segmentation class whose region holds no pixel (its map is all zero)."""
    return phrase(f"{source}: the {region} region of class '{label}' is empty (no pixel predicted as it); "
            f"pick another {param('classes')} or use {param('region', 'all')}.")
