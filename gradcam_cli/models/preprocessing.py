"""Preprocessing by name: ``none``, ``scale01``, ``tf``, ``caffe``, ``torch`` or an architecture's own."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import (
    ModelNotFound,
    param,
)
from .applications import application_registry
from .spec import normalize_name, suggest

PREPROCESS_MODES = ("none", "scale01", "tf", "caffe", "torch")


def make_preprocess(mode: str) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """Preprocessing by name: a mode or the name of a ``keras.applications`` architecture.

    All functions take float32 RGB batches in [0, 255] and return what the model expects.
    """
    key = normalize_name(mode)
    if key == "none":
        return (lambda batch: batch), "none"
    if key == "scale01":
        return (lambda batch: batch / np.float32(255.0)), "scale01"
    if key in ("tf", "caffe", "torch"):
        from keras.applications import imagenet_utils

        return (
            lambda batch: imagenet_utils.preprocess_input(batch, mode=key),
            key,
        )
    registry = application_registry()
    if key in registry:
        return registry[key].preprocess_input(), registry[key].name
    raise ModelNotFound(
        f"unknown {param('preprocess', repr(mode))}: use one of {', '.join(PREPROCESS_MODES)} "
        f"or an application name such as resnet50.{suggest(mode, list(registry))}"
    )
