"""The resolved model: :class:`ModelSpec`, everything needed to feed a model and read its output."""

from __future__ import annotations

import difflib
import functools
import hashlib
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import (
    UnsupportedModel,
)
from ..graph import model_channels, select_output
from ..heads import Head, detect_head, detection_head, is_keras_hub_detector
from .references import split_reference

DEFAULT_SIZE = 224
DIGEST_CHARS = 16  # 64 bits of a SHA-256: one model among millions, not a security boundary


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
    task: str | None = None  # 'detect': an object detector (heads/detection.py); None: a keras-hub detector is one
    _head: Head | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def head(self) -> Head:
        """The explained output's head, detected once (:mod:`gradcam_cli.heads`). Raises
        :class:`UnsupportedModel` for a multi-output model without ``model_output``."""
        if self.task == "detect" or (self.task is None and is_keras_hub_detector(self.model)):
            if not getattr(self._head, "takes_boxes", False):
                self._head = detection_head(self.model, self.input_size)
            return self._head
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

    @functools.cached_property
    def identity(self) -> str:
        """What the model is, never where it lives: the key of resume (``config`` in the manifest)
        and of the Ray engine's worker check (:func:`model_identity` has the rules)."""
        return model_identity(self)

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


def file_digest(path: str | os.PathLike) -> str:
    """``sha256:`` and the first hex digits of the SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:DIGEST_CHARS]}"


def weights_digest(model: Any) -> str:
    """``weights:`` and the digest of every weight's shape, dtype and values, in the model's order.
    Variable names are left out: Keras numbers unnamed layers per process (``conv2d_3``)."""
    import keras

    digest = hashlib.sha256()
    for variable in model.weights:
        values = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
        digest.update(f"{values.dtype.str}{values.shape}".encode())
        digest.update(values.tobytes())
    return f"weights:{digest.hexdigest()[:DIGEST_CHARS]}"


def model_identity(spec: ModelSpec) -> str:
    """The content identity of a resolved model, the same on every machine that has the same model:

    - a model file (``.keras``, ``.h5``; the bundled demo is one): the digest of its bytes;
    - ``FILE.py:FACTORY``: the digest of the Python file plus that of the built model's weights (the
      code may load weights from anywhere; a factory that draws random weights without a seed
      builds another model in every process, and is told so);
    - ``package.module:FACTORY``: the module and the digest of its file, plus the weights';
    - a ``keras.applications`` name: the name and its weights (``imagenet``, ``none``, or the digest
      of a weights file); the Keras version is checked with the rest of a Ray worker's environment;
    - ``hub:PRESET``: the preset (a handle names its version);
    - a model in memory: its weights' digest.
    """
    source, weights = spec.source, spec.extra.get("weights")
    if source.startswith("keras.applications."):
        if weights is not None and weights != "imagenet" and os.path.isfile(str(weights)):
            weights = file_digest(weights)
        return f"{source} weights={'none' if weights is None else weights}"
    if source.startswith("hub:"):
        return source
    if source and source != "in-memory" and os.path.isfile(source):
        return file_digest(source)
    reference = split_reference(source)
    if reference is not None and reference[2] and os.path.isfile(reference[0]):
        return f"{file_digest(reference[0])} {weights_digest(spec.model)}"
    if reference is not None and not reference[2]:
        code = getattr(sys.modules.get(reference[0]), "__file__", None)
        code_digest = f" {file_digest(code)}" if code and os.path.isfile(code) else ""
        return f"{reference[0]}{code_digest} {weights_digest(spec.model)}"
    return f"{source or 'in-memory'} {weights_digest(spec.model)}"


def suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(normalize_name(name), choices, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(close)}?" if close else ""
