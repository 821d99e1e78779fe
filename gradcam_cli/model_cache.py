"""Models and compiled explainers kept between calls of :func:`gradcam_cli.explain`, so that a loop over
images, methods or models traces each graph once and keeps memory bounded (``benchmarks/long_lived_memory.py``).

A model given by reference (a name, a file, ``FILE.py:FACTORY``, ``hub:PRESET``) is resolved once and kept,
up to :data:`MODELS_KEPT`, the least recently used going first; an edited model file (size or time changed)
is read again. Each model (or spec) keeps up to 8 explainers, one per set of options, on itself, so
they go when it goes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .explainer import Explainer
from .models import resolve_model
from .models.files import sidecar_paths
from .models.spec import ModelSpec
from .options import RunOptions

MODELS_KEPT = 4
"""How many models :func:`explain` keeps between calls when it is given a reference (a name, a file,
``FILE.py:FACTORY``, ``hub:PRESET``) rather than a model, the least recently used going first;
:func:`release_models` lets them all go."""

_EXPLAINERS = "_gradcam_explainers"  # attribute of a model or a spec: {options: Explainer}
_EXPLAINERS_PER_MODEL = 8
_kept_models: OrderedDict[tuple, ModelSpec] = OrderedDict()
_kept_models_lock = threading.Lock()


def release_models() -> None:
    """Let go of the models :func:`explain` kept for references (names, files) and their compiled
    explainers; the next call with a reference builds its model again. An in-memory model's explainers
    live on the model and go with it."""
    with _kept_models_lock:
        _kept_models.clear()


_FILE_OPTIONS = ("model", "weights", "labels", "region")  # the options that may name a file


def _stamped(value: Any) -> Any:
    """A file option's value with the size and modification time of each file it names (the model, its
    sidecars, a factory's .py), so that an edited file is read again."""
    if isinstance(value, list):
        return tuple(value)
    if not isinstance(value, (str, os.PathLike)):
        return value
    text = os.fspath(value)
    stamps = []
    sidecars = [str(path) for path in sidecar_paths(Path(text))] if Path(text).name else []
    for candidate in dict.fromkeys((text, text.rpartition(":")[0], *sidecars)):
        try:
            status = os.stat(candidate) if candidate else None
        except (OSError, ValueError):
            status = None
        if status is not None:
            stamps.append((candidate, status.st_size, status.st_mtime_ns))
    return (text, *stamps)


def _options_key(options: dict) -> tuple | None:
    """``options`` as a cache key (lists as tuples, files stamped); None where a value is not hashable."""
    key = tuple((name, _stamped(value) if name in _FILE_OPTIONS else tuple(value) if isinstance(value, list)
                 else tuple(sorted(value.items())) if isinstance(value, dict) else value)
                for name, value in sorted(options.items()))
    try:
        hash(key)
    except TypeError:  # e.g. a preprocess object that is not hashable: built afresh every call
        return None
    return key


def _kept_explainer(owner: Any, key: tuple | None, build: Callable[[], Explainer]) -> Explainer:
    """The explainer kept on ``owner`` (a model or a spec) under ``key``, built once: so it goes when
    its owner goes, and calling :func:`explain` in a loop traces its graphs once instead of every call."""
    if key is None:
        return build()
    cached = getattr(owner, _EXPLAINERS, None)
    if cached is None:
        cached = {}
        try:
            object.__setattr__(owner, _EXPLAINERS, cached)  # past Keras's attribute tracking
        except (AttributeError, TypeError):  # an object that takes no attributes: no reuse
            return build()
    if key not in cached:
        if len(cached) >= _EXPLAINERS_PER_MODEL:
            cached.pop(next(iter(cached)))
        cached[key] = build()
    return cached[key]


def _kept_spec(reference: str | os.PathLike, model_options: dict) -> ModelSpec:
    """The model a reference resolves to, built once and kept (up to :data:`MODELS_KEPT`): every call
    of a loop over names would otherwise build and trace a new model, and TensorFlow never frees a
    traced graph that holds a ``tf.custom_gradient`` op (SiLU/swish: EfficientNet), so such a loop grew
    by the graphs of every call."""
    key = _options_key({"model": reference, **model_options})
    if key is None:
        return resolve_model(reference, **model_options)
    with _kept_models_lock:
        spec = _kept_models.get(key)
        if spec is not None:
            _kept_models.move_to_end(key)
            return spec
    spec = resolve_model(reference, **model_options)
    with _kept_models_lock:
        _kept_models[key] = spec
        while len(_kept_models) > MODELS_KEPT:
            _kept_models.popitem(last=False)
    return spec


def explainer_for(model: Any, model_options: dict, options: RunOptions) -> Explainer:
    """The Explainer for one :func:`explain` call: an earlier call's with the same options where there
    is one, kept on the model (an in-memory one), the spec given, or the spec a reference resolved to."""
    explainer_options = options.explainer_arguments()
    if isinstance(model, (str, os.PathLike)):
        spec = _kept_spec(model, model_options)
        return _kept_explainer(spec, _options_key(explainer_options), lambda: Explainer(spec, **explainer_options))
    if isinstance(model, ModelSpec):
        resolve_model(model, **model_options)  # sets its model_output, as for a reference
        key = _options_key({**explainer_options, "model_output": model.model_output, "input_size": model.input_size,
                            "preprocess": model.preprocess})
        return _kept_explainer(model, key, lambda: Explainer(model, **explainer_options))
    return _kept_explainer(model, _options_key({**model_options, **explainer_options}),
                           lambda: Explainer(resolve_model(model, **model_options), **explainer_options))
