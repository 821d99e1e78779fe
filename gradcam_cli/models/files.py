"""``--model FILE``: a ``.keras`` / ``.h5`` file, with its optional sidecar ``FILE.gradcam.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import (
    ModelLoadError,
    UnsupportedModel,
    param,
)
from .in_memory import spec_for_model
from .spec import ModelSpec

SIDECAR_SUFFIX = ".gradcam.json"


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
                f"pass {param('safe_mode', False)}."
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
