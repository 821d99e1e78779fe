"""A Keras model in memory (the Python API's entry point for a user's own model) as a :class:`ModelSpec`."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import UnsupportedModel, param, phrase
from ..graph import has_graph, input_preprocessing, model_channels
from ..trace import built_input_shape, set_input_shape
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
    """Wrap an in-memory Keras model (the Python API's entry point for user models).

    A Functional or Sequential model gives its input shape; a model without a graph (subclassed) is
    traced once (:mod:`gradcam_cli.trace`) at its built shape or ``input_size``."""
    label = name or model.name
    if has_graph(model):
        size = _graph_input_size(model, label, input_size)
    else:
        size = _traced_input_size(model, label, input_size)
    if callable(preprocess):
        preprocess_fn, preprocess_name = preprocess, getattr(preprocess, "__name__", "custom")
    else:
        preprocess_fn, preprocess_name = make_preprocess(preprocess)
    if preprocess_name not in ("none", "scale01"):
        check_preprocess_channels(preprocess_fn, preprocess_name, model_channels(model), name or model.name)
    if labels is not None:
        labels = labels_for_model(labels, model)
    notes = []
    inside = input_preprocessing(model)
    if inside and preprocess_name != "none":
        listed = ", ".join(f"{info.path} ({type(info.layer).__name__})" for info in inside)
        notes.append(phrase(f"note: {label} preprocesses its input itself ({listed}), and the preprocessing "
                            f"'{preprocess_name}' (given, or from the model's sidecar) is applied before it as well; "
                            f"pass {param('preprocess', 'none')} unless that is meant."))
    return ModelSpec(
        model=model,
        name=name or model.name,
        preprocess=preprocess_fn,
        input_size=(int(size[0]), int(size[1])),
        labels=labels,
        preprocess_name=preprocess_name,
        source=source or "in-memory",
        notes=notes,
    )


def _check_image_shape(shape: tuple, label: str) -> None:
    if len(shape) != 4 or shape[-1] not in (1, 3, None):
        raise UnsupportedModel(
            f"{label}: its input has shape {shape}, not an image batch (batch, height, width, 1 or 3 channels)."
        )


def _graph_input_size(model, label: str, input_size) -> tuple[int, int]:
    inputs = model.inputs
    if len(inputs) != 1:
        raise UnsupportedModel(f"{label}: the model has {len(inputs)} inputs; one image input is needed.")
    shape = tuple(inputs[0].shape)
    _check_image_shape(shape, label)
    size = (shape[1], shape[2])
    if size[0] is None or size[1] is None:
        return input_size or (DEFAULT_SIZE, DEFAULT_SIZE)
    if input_size is not None and tuple(input_size) != size:
        raise UnsupportedModel(f"{label}: the model's input is fixed at {size[0]}x{size[1]}; drop {param('input_size')}.")
    return size


def _traced_input_size(model, label: str, input_size) -> tuple[int, int]:
    """The size a model without a graph is traced at: ``input_size``, else the size of its first
    call, else (built without a size, e.g. fully convolutional) the default; a model never called
    needs ``input_size`` and is tried with 3 channels, then 1."""
    built = built_input_shape(model)
    if built is not None:
        _check_image_shape(built, label)
    elif input_size is None:
        raise UnsupportedModel(
            f"{label}: the model has never been called, so its input size is unknown; give "
            f"{param('input_size', 'H,W')} (or call it once on a batch of images)."
        )
    size = tuple(input_size) if input_size else (built[1], built[2])
    if size[0] is None or size[1] is None:
        size = (DEFAULT_SIZE, DEFAULT_SIZE)
    channel_tries = [built[-1]] if built is not None and built[-1] else [3, 1]
    failure = None
    for channels in channel_tries:
        try:
            set_input_shape(model, (None, int(size[0]), int(size[1]), int(channels)))
            return size
        except UnsupportedModel as error:
            failure = failure or error
    raise failure
