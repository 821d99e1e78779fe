"""The resolved model: :class:`ModelSpec`, everything needed to feed a model and read its output."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import (
    UnsupportedModel,
)
from ..graph import model_channels, select_output
from ..heads import Head, detect_head

DEFAULT_SIZE = 224


def normalize_name(name: str) -> str:
    """Case-, dash-, underscore- and space-insensitive key: ``ResNet-50`` -> ``resnet50``."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


@dataclass
class ModelSpec:
    """A loaded classifier and everything needed to feed it and read its output."""

    model: Any  # keras.Model
    name: str
    preprocess: Callable[[np.ndarray], np.ndarray]
    input_size: tuple[int, int]
    labels: list[str] | None = None
    preprocess_name: str = "none"
    source: str = ""
    extra: dict = field(default_factory=dict)
    model_output: str | int | None = None  # which output of a multi-output model to explain
    notes: list[str] = field(default_factory=list)  # one-line notes on how the model is fed, shown once
    _head: Head | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def head(self) -> Head:
        """The explained output's head, detected once (:mod:`gradcam_cli.heads`). Raises
        :class:`UnsupportedModel` for a multi-output model without ``model_output``."""
        index = select_output(self.model, self.model_output)
        if self._head is None or self._head.output_index != index:
            self._head = detect_head(self.model, index)
        return self._head

    @property
    def known_head(self) -> Head | None:
        """:attr:`head`, or None where it cannot be known yet (a multi-output model, no ``model_output``)."""
        try:
            return self.head
        except UnsupportedModel:
            return None

    @property
    def channels(self) -> int:
        """Channels of the image input (1: grayscale, 3: RGB)."""
        return model_channels(self.model)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def class_names(self) -> list[str] | None:
        """Names of the classes a target may name: the labels, or a binary head's two defaults."""
        return self.head.class_names(self.labels)

    def label(self, class_index: int) -> str:
        labels = self.class_names
        if labels is not None and 0 <= class_index < len(labels):
            return labels[class_index]
        return self.head.default_label(class_index)


def suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(normalize_name(name), choices, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(close)}?" if close else ""
