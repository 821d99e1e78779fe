"""A Keras model in memory (the Python API's entry point for a user's own model) as a :class:`ModelSpec`."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import (
    UnsupportedModel,
    param,
)
from ..graph import model_channels
from .labels import labels_for_model
from .preprocessing import check_preprocess_channels, make_preprocess
from .spec import DEFAULT_SIZE, ModelSpec


def spec_for_model(
    model: Any,
    name: str | None = None,
    preprocess: str | Callable[[np.ndarray], np.ndarray] = "none",
    labels: str | os.PathLike | list[str] | None = None,
    input_size: tuple[int, int] | None = None,
    source: str = "",
) -> ModelSpec:
    """Wrap an in-memory Keras model (the Python API's entry point for user models)."""
    inputs = model.inputs if getattr(model, "inputs", None) else None
    if inputs is None:
        raise UnsupportedModel(
            f"{name or model.name}: the model has no defined input; build it (call it once on data "
            "or give an Input shape) before explaining it."
        )
    if len(inputs) != 1:
        raise UnsupportedModel(f"{name or model.name}: the model has {len(inputs)} inputs; one image input is needed.")
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or shape[-1] not in (1, 3, None):
        raise UnsupportedModel(
            f"{name or model.name}: its input has shape {shape}, not an image batch "
            "(batch, height, width, 1 or 3 channels)."
        )
    size = (shape[1], shape[2])
    if size[0] is None or size[1] is None:
        size = input_size or (DEFAULT_SIZE, DEFAULT_SIZE)
    elif input_size is not None and tuple(input_size) != size:
        raise UnsupportedModel(
            f"{name or model.name}: the model's input is fixed at {size[0]}x{size[1]}; drop {param('input_size')}."
        )
    if callable(preprocess):
        preprocess_fn, preprocess_name = preprocess, getattr(preprocess, "__name__", "custom")
    else:
        preprocess_fn, preprocess_name = make_preprocess(preprocess)
    if preprocess_name not in ("none", "scale01"):
        check_preprocess_channels(preprocess_fn, preprocess_name, model_channels(model), name or model.name)
    if labels is not None:
        labels = labels_for_model(labels, model)
    return ModelSpec(
        model=model,
        name=name or model.name,
        preprocess=preprocess_fn,
        input_size=(int(size[0]), int(size[1])),
        labels=labels,
        preprocess_name=preprocess_name,
        source=source or "in-memory",
    )
