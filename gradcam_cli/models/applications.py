"""Resolve ``--model``: a ``keras.applications`` architecture by name, the bundled demo, or a file.

The registry of architectures is read from the ``keras.applications`` module itself, so every model a
Keras release ships is available without a hand-typed list. Each entry knows its own
``preprocess_input``, ``decode_predictions`` family and native input size."""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    ModelLoadError,
    ModelNotFound,
    UnsupportedModel,
    WeightsUnavailable,
    param,
)
from .labels import class_count, imagenet_labels
from .spec import DEFAULT_SIZE, ModelSpec, normalize_name, suggest


@dataclass(frozen=True)
class AppEntry:
    """One ``keras.applications`` architecture."""

    name: str  # as Keras spells it, e.g. "ResNet50"
    module_name: str  # e.g. "resnet"

    @property
    def key(self) -> str:
        return normalize_name(self.name)

    def constructor(self) -> Callable[..., Any]:
        import keras

        return getattr(keras.applications, self.name)

    def module(self):
        return inspect.getmodule(self.constructor())

    def preprocess_input(self) -> Callable[[np.ndarray], np.ndarray]:
        return self.module().preprocess_input

    def native_size(self) -> int:
        return _native_size(self.name)

    def parameter_count(self) -> int:
        """Parameters of the full model (built once with random weights, then cached on disk)."""
        import keras

        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gradcam-cli"
        cache_file = cache / f"parameters-keras-{keras.__version__}.json"
        try:
            counts = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            counts = {}
        if self.name not in counts:
            model = self.constructor()(weights=None)
            counts[self.name] = int(model.count_params())
            del model
            keras.backend.clear_session()
            try:
                cache.mkdir(parents=True, exist_ok=True)
                cache_file.write_text(json.dumps(counts, indent=0, sort_keys=True))
            except OSError:
                pass
        return counts[self.name]


@lru_cache(maxsize=1)
def application_registry() -> dict[str, AppEntry]:
    """Every architecture exported by ``keras.applications``, keyed by normalised name."""
    import keras

    registry: dict[str, AppEntry] = {}
    for attr in sorted(dir(keras.applications)):
        constructor = getattr(keras.applications, attr)
        if not (attr[:1].isupper() and callable(constructor)):
            continue
        module = inspect.getmodule(constructor)
        if module is None or not hasattr(module, "preprocess_input"):
            continue
        entry = AppEntry(name=attr, module_name=module.__name__.rsplit(".", 1)[-1])
        registry[entry.key] = entry
    return registry


class _SizeProbe(Exception):
    def __init__(self, size: int):
        self.size = size


@cache
def _native_size(name: str) -> int:
    """The architecture's default input size, as its constructor declares it.

    Keras' constructors pass ``default_size`` to ``imagenet_utils.obtain_input_shape`` before
    building any layer; intercepting that call reads the size without building the model.
    Architectures that never call it (MobileNetV3 accepts any size) use 224, their documented size.
    """
    import keras  # noqa: F401
    from keras.src.applications import imagenet_utils

    original = imagenet_utils.obtain_input_shape

    def probe(input_shape, default_size, *args, **kwargs):
        raise _SizeProbe(default_size)

    imagenet_utils.obtain_input_shape = probe
    try:
        model = application_registry()[normalize_name(name)].constructor()(weights=None)
    except _SizeProbe as found:
        return int(found.size)
    finally:
        imagenet_utils.obtain_input_shape = original
    height = model.input_shape[1]
    return int(height) if height else DEFAULT_SIZE


def keras_cache_dir() -> str:
    return os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")


def _weights_failure(entry: AppEntry, error: Exception) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"could not get the ImageNet weights for {entry.name}: {type(error).__name__}: "
        f"{str(error).splitlines()[0] if str(error) else 'no detail'}. "
        f"Keras downloads them once into {keras_cache_dir()} (set KERAS_HOME to move it), which "
        "needs internet access the first time. Offline, copy the weights file there, or pass "
        f"{param('weights', 'PATH')} to a .h5/.weights.h5 file, or {param('weights', 'none')} for random weights "
        "(heatmaps are then meaningless, useful only for timing and testing)."
    )


def build_application(
    name: str,
    weights: str | None = "imagenet",
    input_size: tuple[int, int] | None = None,
) -> ModelSpec:
    """Build a ``keras.applications`` model. ``weights`` is 'imagenet', None/'none' or a path."""
    registry = application_registry()
    key = normalize_name(name)
    if key not in registry:
        raise ModelNotFound(
            f"unknown model '{name}': not a keras.applications architecture nor an existing file."
            f"{suggest(name, list(registry))} Run 'gradcam models' for the full list."
        )
    entry = registry[key]
    if weights is not None and str(weights).lower() == "none":
        weights = None
    kwargs: dict[str, Any] = {"weights": weights}
    if input_size is not None:
        kwargs["input_shape"] = (*input_size, 3)
    if weights not in (None, "imagenet") and not os.path.exists(str(weights)):
        raise WeightsUnavailable(f"{weights}: no such weights file (pass {param('weights', 'imagenet|none|PATH')}).")
    try:
        model = entry.constructor()(**kwargs)
    except ValueError as error:
        if weights == "imagenet" and "input_shape" in kwargs:
            raise UnsupportedModel(
                f"{entry.name}: ImageNet weights with the classifier head need the native input "
                f"size {entry.native_size()}; drop {param('input_size')}. ({error})"
            ) from None
        raise UnsupportedModel(f"{entry.name}: {error}") from None
    except Exception as error:  # download failures surface as many types
        if weights == "imagenet":
            raise _weights_failure(entry, error) from None
        raise ModelLoadError(f"{weights}: cannot load weights into {entry.name}: {error}") from None
    size = tuple(int(d) for d in model.input_shape[1:3] if d) or None
    if size is None or len(size) != 2:
        size = input_size or (entry.native_size(), entry.native_size())
    # the names belong to the architecture's 1000-class head, whatever weights fill it
    labels = imagenet_labels() if class_count(model) == 1000 else None
    return ModelSpec(
        model=model,
        name=entry.name,
        preprocess=entry.preprocess_input(),
        input_size=size,
        labels=labels,
        preprocess_name=entry.name,
        source=f"keras.applications.{entry.name}",
        extra={"weights": weights if weights is None or weights == "imagenet" else str(weights)},
    )
