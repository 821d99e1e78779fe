"""Resolve ``--model``: a ``keras.applications`` architecture by name, the bundled demo, or a file.

The registry of architectures is read from the ``keras.applications`` module itself, so every model a
Keras release ships is available without a hand-typed list. Each entry knows its own
``preprocess_input``, ``decode_predictions`` family and native input size.
"""

from __future__ import annotations

import difflib
import inspect
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    ModelLoadError,
    ModelNotFound,
    OptionConflict,
    UnsupportedModel,
    WeightsUnavailable,
)
from ..graph import model_outputs
from ..heads import Head, class_labels, detect_head, select_output

PREPROCESS_MODES = ("none", "scale01", "tf", "caffe", "torch")
DEFAULT_SIZE = 224
SIDECAR_SUFFIX = ".gradcam.json"
HUB_PREFIX = "hub:"


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
    output: str | int | None = None  # --output: which output of a multi-output model to explain
    _head: Head | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def head(self) -> Head:
        """The explained output's head, detected once (:mod:`.heads`). Raises
        :class:`UnsupportedModel` for a multi-output model without ``output``."""
        if self._head is None or self._head.output_index != select_output(self.model, self.output):
            self._head = detect_head(self.model, select_output(self.model, self.output))
        return self._head

    @property
    def known_head(self) -> Head | None:
        """:attr:`head`, or None where it cannot be known yet (a multi-output model, no ``output``)."""
        try:
            return self.head
        except UnsupportedModel:
            return None

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def class_names(self) -> list[str] | None:
        """Names of the classes a target may name: the labels, or a binary head's two defaults."""
        return class_labels(self.head, self.labels)

    def label(self, class_index: int) -> str:
        labels = self.class_names
        if labels is not None and 0 <= class_index < len(labels):
            return labels[class_index]
        return self.head.default_label(class_index)


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


def suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(normalize_name(name), choices, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(close)}?" if close else ""


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
        f"unknown --preprocess '{mode}': use one of {', '.join(PREPROCESS_MODES)} "
        f"or an application name such as resnet50.{suggest(mode, list(registry))}"
    )


def read_labels(path: str | os.PathLike) -> list[str]:
    """One class name per line, UTF-8 (a byte-order mark is dropped); trailing blank lines ignored.

    A blank line inside the list, a repeated name, or a file that is not UTF-8 text is refused with
    a :class:`ModelLoadError` naming the line, since each would shift or hide a class.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise ModelLoadError(f"{path}: cannot read labels file ({error.strerror}).") from None
    except UnicodeDecodeError as error:
        line = Path(path).read_bytes()[: error.start].count(b"\n") + 1
        raise ModelLoadError(
            f"{path}: labels file is not UTF-8 text (line {line}); save it as UTF-8, one class name per line."
        ) from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return check_labels(lines, str(path))


def check_labels(labels: list, source: str, class_count: int | None = None) -> list[str]:
    """Labels as a list of distinct non-blank names, one per class when ``class_count`` is known."""
    where = f"{source}: " if source else ""
    if not all(isinstance(label, str) for label in labels):
        raise ModelLoadError(f"{where}labels must be text, one name per class.")
    for number, label in enumerate(labels, start=1):
        if not label.strip():
            raise ModelLoadError(f"{where}line {number} is blank; every class needs a name (remove the line "
                                 "or name the class).")
    seen: dict[str, int] = {}
    for number, label in enumerate(labels, start=1):
        if label in seen:
            raise ModelLoadError(f"{where}line {number} repeats '{label}' (line {seen[label]}); names must be distinct.")
        seen[label] = number
    if class_count is not None and len(labels) != class_count:
        raise ModelLoadError(f"{where}{len(labels)} labels for a model with {class_count} classes; give one name "
                             "per class, in the order of the model's outputs.")
    return list(labels)


def _labels_for(labels: str | os.PathLike | list[str], model: Any) -> list[str]:
    """``--labels`` (a file) or a list of names, checked against the model's class count."""
    if isinstance(labels, (list, tuple)):
        return check_labels(list(labels), "labels", class_count(model))
    return check_labels(read_labels(labels), str(labels), class_count(model))


def class_count(model: Any) -> int | None:
    """Classes of a single-output model, None where unknown: its head's (two for one sigmoid unit,
    see :mod:`.heads`), else the last axis of its output."""
    try:
        if len(model_outputs(model)) > 1:
            return None
        if model_outputs(model):
            return detect_head(model).num_classes
    except (UnsupportedModel, AttributeError, ValueError, RuntimeError):
        pass
    try:
        shape = model.output_shape
    except (AttributeError, ValueError, RuntimeError):
        return None
    if not isinstance(shape, tuple) or not shape or not isinstance(shape[-1], int):
        return None
    return int(shape[-1])


@lru_cache(maxsize=1)
def imagenet_labels() -> list[str] | None:
    """The 1000 ImageNet class names from Keras' class index (cached in ~/.keras/models)."""
    from keras.src.applications import imagenet_utils
    from keras.utils import get_file

    try:
        path = get_file(
            "imagenet_class_index.json",
            imagenet_utils.CLASS_INDEX_PATH,
            cache_subdir="models",
            file_hash="c2c37ea517e94d9795004a39431a14cb",
        )
        with open(path, encoding="utf-8") as handle:
            index = json.load(handle)
    except Exception:  # offline: indices only
        return None
    return [index[str(i)][1] for i in range(len(index))]


def keras_cache_dir() -> str:
    return os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")


def _weights_failure(entry: AppEntry, error: Exception) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"could not get the ImageNet weights for {entry.name}: {type(error).__name__}: "
        f"{str(error).splitlines()[0] if str(error) else 'no detail'}. "
        f"Keras downloads them once into {keras_cache_dir()} (set KERAS_HOME to move it), which "
        "needs internet access the first time. Offline, copy the weights file there, or pass "
        "--weights PATH to a .h5/.weights.h5 file, or --weights none for random weights "
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
        raise WeightsUnavailable(f"{weights}: no such weights file (pass --weights imagenet|none|PATH).")
    try:
        model = entry.constructor()(**kwargs)
    except ValueError as error:
        if weights == "imagenet" and "input_shape" in kwargs:
            raise UnsupportedModel(
                f"{entry.name}: ImageNet weights with the classifier head need the native input "
                f"size {entry.native_size()}; drop --input-size. ({error})"
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


def _is_savedmodel_dir(path: Path) -> bool:
    return path.is_dir() and (path / "saved_model.pb").exists()


def load_model_file(
    path: str | os.PathLike,
    preprocess: str | None = None,
    labels: str | os.PathLike | list[str] | None = None,
    input_size: tuple[int, int] | None = None,
    safe_mode: bool = True,
) -> ModelSpec:
    """Load a ``.keras`` / ``.h5`` model (Keras safe_mode stays on unless asked otherwise).

    A sidecar ``<file>.gradcam.json`` beside the model may give ``preprocess`` and ``labels``
    (a list, or a file name relative to the model); command-line values win over it.
    """
    import keras

    path = Path(path)
    if _is_savedmodel_dir(path):
        raise UnsupportedModel(
            f"{path}: a TensorFlow SavedModel holds a traced graph, not Keras layers, so no "
            "intermediate activation can be read from it under Keras 3. Re-save the model from "
            "its code with model.save('model.keras') and pass that file."
        )
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a folder, not a .keras/.h5 model file.")
    sidecar = _read_sidecar(path)
    _register_keras_hub_if_needed(path)
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=safe_mode)
    except ValueError as error:
        message = str(error)
        if "safe_mode" in message or "lambda" in message.lower():
            raise ModelLoadError(
                f"{path}: refused to load: the model contains a Lambda layer or other Python code, "
                "which could run anything on this machine (Keras safe_mode). If you trust the file, "
                "pass --unsafe-model-code."
            ) from None
        raise ModelLoadError(f"{path}: not a loadable Keras model ({_first_line(message)}).") from None
    except Exception as error:
        raise ModelLoadError(
            f"{path}: not a loadable Keras model ({type(error).__name__}: {_first_line(str(error))})."
        ) from None
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"{path}: holds a {type(model).__name__}, not a Keras model.")
    return spec_for_model(
        model,
        name=path.name,
        preprocess=preprocess or sidecar.get("preprocess") or "none",
        labels=labels if labels is not None else _sidecar_labels(path, sidecar),
        input_size=input_size,
        source=str(path),
    )


def _register_keras_hub_if_needed(path: Path) -> None:
    """keras-hub's classes deserialise only once ``keras_hub`` is imported; import it for a
    ``.keras`` file whose configuration names it (and say how to get it when it is missing)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            mentions_hub = b"keras_hub" in archive.read("config.json")
    except (OSError, KeyError, zipfile.BadZipFile):
        return
    if not mentions_hub:
        return
    try:
        import keras_hub  # noqa: F401  (registers its serialisable classes)
    except ImportError:
        raise ModelLoadError(
            f"{path}: is a keras-hub model; install keras-hub (pip install 'gradcam-cli[hub]')."
        ) from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no detail"


def _read_sidecar(path: Path) -> dict:
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if not sidecar.exists():
        return {}
    try:
        content = json.loads(sidecar.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{sidecar}: unreadable model sidecar ({error}).") from None
    if not isinstance(content, dict):
        raise ModelLoadError(f'{sidecar}: must hold a JSON object such as {{"preprocess": "tf", "labels": [...]}}.')
    if content.get("preprocess") is not None and not isinstance(content["preprocess"], str):
        raise ModelLoadError(f'{sidecar}: "preprocess" must be a name such as "tf" or "scale01", '
                             f"not {json.dumps(content['preprocess'])}.")
    labels = content.get("labels")
    if labels is not None and not isinstance(labels, (str, list)):
        raise ModelLoadError(f'{sidecar}: "labels" must be a list of names or a file name, not {json.dumps(labels)}.')
    return content


def _sidecar_labels(path: Path, sidecar: dict) -> list[str] | str | None:
    labels = sidecar.get("labels")
    if isinstance(labels, str):
        return str(path.parent / labels)
    return labels


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
            f"{name or model.name}: the model's input is fixed at {size[0]}x{size[1]}; drop --input-size."
        )
    if callable(preprocess):
        preprocess_fn, preprocess_name = preprocess, getattr(preprocess, "__name__", "custom")
    else:
        preprocess_fn, preprocess_name = make_preprocess(preprocess)
    if labels is not None:
        labels = _labels_for(labels, model)
    return ModelSpec(
        model=model,
        name=name or model.name,
        preprocess=preprocess_fn,
        input_size=(int(size[0]), int(size[1])),
        labels=labels,
        preprocess_name=preprocess_name,
        source=source or "in-memory",
    )


def resolve_model(
    model: str | Any,
    weights: str | None = None,
    preprocess: str | None = None,
    labels: str | list[str] | None = None,
    input_size: tuple[int, int] | None = None,
    safe_mode: bool = True,
    output: str | int | None = None,
) -> ModelSpec:
    """``--model``: a ModelSpec, a keras.Model, 'demo', an existing file, ``hub:PRESET`` (a keras-hub
    image classifier) or an application name. ``output``: ``--output`` for multi-output models.

    ``weights``: for keras.applications names, 'imagenet' (the default when None), 'none' (random) or
    a weights file. A model file, a keras-hub preset or an in-memory model carries its own weights, so
    giving ``weights`` with one is refused rather than ignored.
    """
    spec = _resolve(model, weights, preprocess, labels, input_size, safe_mode)
    if output is not None:
        spec.output = output
    return spec


def _resolve(model, weights, preprocess, labels, input_size, safe_mode) -> ModelSpec:
    if isinstance(model, ModelSpec):
        return model
    text = str(model) if isinstance(model, (str, os.PathLike)) else None
    is_hub = text is not None and text.lower().startswith(HUB_PREFIX) and not os.path.exists(text)
    is_application = text is not None and not is_hub and not (
        (normalize_name(text) == "demo" and not os.path.exists(text))
        or os.sep in text or text.endswith((".keras", ".h5")) or os.path.exists(text)
    )
    if weights is not None and not is_application:
        what = "the demo model" if text is not None and normalize_name(text) == "demo" else (
            "a keras-hub preset" if is_hub else "a model file" if text is not None else "an in-memory model")
        raise OptionConflict(
            f"--weights {weights}: {what} carries its own weights; --weights applies to keras.applications "
            "names only (load the weights into your model and save it, or drop --weights)."
        )
    if not safe_mode and (text is None or is_application or is_hub):
        raise OptionConflict("--unsafe-model-code applies to model files only (it lets Keras load Python code "
                             "from them); drop it.")
    if text is None:
        return spec_for_model(model, preprocess=preprocess or "none", labels=labels, input_size=input_size)
    if normalize_name(text) == "demo" and not os.path.exists(text):
        from ..demo import demo_model_path

        return load_model_file(demo_model_path(), preprocess=preprocess, labels=labels, input_size=input_size)
    if is_hub:
        from .hub import load_hub_preset

        spec = load_hub_preset(text[len(HUB_PREFIX):], input_size=input_size)
        if preprocess:
            spec.preprocess, spec.preprocess_name = make_preprocess(preprocess)
        if labels:
            spec.labels = _labels_for(labels, spec.model)
        return spec
    if not is_application:
        if not os.path.exists(text):
            raise ModelNotFound(f"{text}: no such model file.")
        return load_model_file(text, preprocess, labels, input_size, safe_mode)
    spec = build_application(text, weights="imagenet" if weights is None else weights, input_size=input_size)
    if preprocess:
        spec.preprocess, spec.preprocess_name = make_preprocess(preprocess)
    if labels:
        spec.labels = _labels_for(labels, spec.model)
    return spec
