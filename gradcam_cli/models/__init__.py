"""Resolve a model: a ``keras.applications`` architecture by name, the bundled demo, a model file,
Python code that builds one (``FILE.py:FACTORY``, ``package.module:FACTORY``), a keras-hub preset
(``hub:PRESET``) or a Keras model in memory, into a :class:`ModelSpec`.

One module per source: :mod:`.applications`, :mod:`.files` (files and their sidecars),
:mod:`.factory`, :mod:`.hub`, :mod:`.in_memory`; :mod:`.preprocessing` and :mod:`.labels` are shared by all of them."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ModelNotFound, OptionConflict, param
from .applications import application_registry, build_application
from .factory import load_factory
from .files import load_model_file
from .in_memory import spec_for_model
from .labels import labels_for_model
from .preprocessing import make_preprocess
from .references import is_factory_reference
from .spec import ModelSpec, normalize_name

__all__ = ["ModelSpec", "application_registry", "build_application", "load_model_file", "resolve_model",
           "spec_for_model"]

HUB_PREFIX = "hub:"
TASKS = ("classify", "detect")


def resolve_model(
    model: str | Any,
    weights: str | None = None,
    preprocess: str | None = None,
    labels: str | list[str] | None = None,
    input_size: tuple[int, int] | None = None,
    safe_mode: bool = True,
    model_output: str | int | None = None,
    task: str | None = None,
) -> ModelSpec:
    """``--model``: a ModelSpec, a keras.Model, 'demo', an existing file, ``FILE.py:FACTORY`` or
    ``package.module:FACTORY`` (imports and runs that code, :mod:`.factory`), ``hub:PRESET`` (a
    keras-hub image classifier) or an application name. ``model_output``: which output of a multi-output model
    to explain (name or index). ``task``: 'detect' reads the model as an object detector
    (:mod:`gradcam_cli.heads.detection`), 'classify' as the other heads; None: a keras-hub object
    detector is a detector, any other model is read by its output.

    ``weights``: for keras.applications names, 'imagenet' (the default when None), 'none' (random) or
    a weights file. A model file, a keras-hub preset or an in-memory model carries its own weights, so
    giving ``weights`` with one is refused rather than ignored.
    """
    spec = _resolve(model, weights, preprocess, labels, input_size, safe_mode)
    if model_output is not None:
        spec.model_output = model_output
    if task is not None:
        if task not in TASKS:
            raise OptionConflict(f"{param('task', task)}: choose {' or '.join(TASKS)}.")
        spec.task = task
    return spec


def _resolve(model, weights, preprocess, labels, input_size, safe_mode) -> ModelSpec:
    if isinstance(model, ModelSpec):
        return model
    text = str(model) if isinstance(model, (str, os.PathLike)) else None
    is_hub = text is not None and text.lower().startswith(HUB_PREFIX) and not os.path.exists(text)
    is_factory = text is not None and not is_hub and is_factory_reference(text)
    is_application = text is not None and not is_hub and not is_factory and not (
        (normalize_name(text) == "demo" and not os.path.exists(text))
        or os.sep in text or text.endswith((".keras", ".h5")) or os.path.exists(text)
    )
    if weights is not None and not is_application:
        what = "the demo model" if text is not None and normalize_name(text) == "demo" else (
            "a keras-hub preset" if is_hub else "a model built by Python code" if is_factory
            else "a model file" if text is not None else "an in-memory model")
        raise OptionConflict(
            f"{param('weights', weights)}: {what} carries its own weights; {param('weights')} applies to "
            f"keras.applications names only (load the weights into your model and save it, or drop {param('weights')})."
        )
    if not safe_mode and (text is None or is_application or is_hub or is_factory):
        raise OptionConflict(f"{param('safe_mode', False)} applies to model files only (it lets Keras load Python code "
                             "from them); drop it.")
    if text is None:
        return spec_for_model(model, preprocess=preprocess or "none", labels=labels, input_size=input_size)
    if normalize_name(text) == "demo" and not os.path.exists(text):
        from ..demo import demo_model_path

        return load_model_file(demo_model_path(), preprocess=preprocess, labels=labels, input_size=input_size)
    if is_factory:
        return load_factory(text, preprocess, labels, input_size)
    if ".py:" in text and not os.path.exists(text):
        raise ModelNotFound(f"{text}: not FILE.py:FACTORY; after the colon comes one Python name (build_model) "
                            "or a dotted one (Nets.small).")
    if is_hub:
        from .hub import load_hub_preset

        spec = load_hub_preset(text[len(HUB_PREFIX):], input_size=input_size)
        if preprocess:
            spec.preprocess, spec.preprocess_name = make_preprocess(preprocess)
        if labels:
            spec.labels = labels_for_model(labels, spec.model)
        return spec
    if not is_application:
        if not os.path.exists(text):
            raise ModelNotFound(f"{text}: no such model file.")
        return load_model_file(text, preprocess, labels, input_size, safe_mode)
    spec = build_application(text, weights="imagenet" if weights is None else weights, input_size=input_size)
    if preprocess:
        spec.preprocess, spec.preprocess_name = make_preprocess(preprocess)
    if labels:
        spec.labels = labels_for_model(labels, spec.model)
    return spec
