"""Preprocessing by name: ``none``, ``scale01``, ``tf``, ``caffe``, ``torch`` or an architecture's own."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import ModelNotFound, OptionConflict, param
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


def check_preprocess_channels(preprocess: Callable[[np.ndarray], np.ndarray], name: str, channels: int,
                              model_name: str) -> None:
    """Refuse, before anything is written, a preprocessing that cannot take the model's channels
    (``caffe``, ``torch`` and most applications subtract one mean per RGB channel, so a grayscale
    model cannot use them). Tried on a tiny blank batch: what it does is what counts."""
    blank = np.zeros((1, 2, 2, channels), np.float32)
    try:
        result = np.asarray(preprocess(blank.copy()))
        fits = result.shape == blank.shape
    except (IndexError, ValueError, TypeError):
        fits = False
    if not fits:
        raise OptionConflict(f"{model_name}: {param('preprocess', repr(name))} expects RGB input, but the model takes "
                             f"{channels} channel{'s' if channels != 1 else ''}; use "
                             f"{param('preprocess', 'none')}, scale01 or tf.")
