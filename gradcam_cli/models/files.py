"""``--model FILE``: a ``.keras`` / ``.h5`` file, with its optional sidecar ``FILE.gradcam.json``."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import ModelLoadError, UnsupportedModel, describe_error, first_line, param
from ..graph import model_input_size
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

    A sidecar beside the model, ``dog.h5.gradcam.json`` or ``dog.gradcam.json``, may give ``preprocess``,
    ``labels`` (a list, or a file name relative to the model) and ``input_size``; values given here win
    over it (:func:`read_sidecar` has its rules).
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
    _check_file_format(path)
    sidecar = read_sidecar(path)
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
        raise ModelLoadError(f"{path}: not a loadable Keras model ({first_line(message)}).") from None
    except Exception as error:
        missing = re.search(r"Could not locate (?:class|function) '([^']+)'", str(error))
        if missing:
            raise ModelLoadError(
                f"{path}: the model is built from '{missing.group(1)}', Python code that is not importable here; "
                "import the module that defines it (registered with @keras.saving.register_keras_serializable) "
                "and pass the loaded model to gradcam_cli.explain, or save the model as a Functional one."
            ) from None
        raise ModelLoadError(
            f"{path}: not a loadable Keras model ({describe_error(error)})."
        ) from None
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"{path}: holds a {type(model).__name__}, not a Keras model.")
    return spec_for_model(
        model,
        name=path.name,
        preprocess=preprocess or sidecar.get("preprocess") or "none",
        labels=labels if labels is not None else sidecar_labels(path, sidecar),
        input_size=input_size or sidecar_input_size(path, sidecar, model),
        source=str(path),
    )


def sidecar_input_size(path: Path, sidecar: dict, model) -> tuple[int, int] | None:
    """The sidecar's ``input_size`` for a model that accepts any size; for a fixed input it must agree."""
    if not sidecar.get("input_size"):
        return None
    size = (int(sidecar["input_size"][0]), int(sidecar["input_size"][1]))
    height, width = model_input_size(model)
    fixed = (height, width) if height and width else None
    if fixed is None:
        return size
    if tuple(fixed) != size:
        raise ModelLoadError(f'the sidecar of {path.name} says "input_size": {list(size)}, but the model\'s input is '
                             f"fixed at {fixed[0]}x{fixed[1]}; correct or remove it.")
    return None


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_file_format(path: Path) -> None:
    """A ``.keras`` file is a zip archive and an ``.h5`` file HDF5: say so when the file is neither,
    rather than pass on Keras's "File not found" for a file that exists."""
    import zipfile

    if not path.exists():
        return
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path}: not a .keras model (a .keras file is a zip archive written by "
                             "model.save('name.keras')); check the file or its name.")
    if path.suffix in (".h5", ".hdf5"):
        with open(path, "rb") as stream:
            if stream.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
                raise ModelLoadError(f"{path}: not an HDF5 model file (a legacy .h5 model is written by "
                                     "model.save('name.h5')); check the file or its name.")


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


SIDECAR_KEYS = {
    "preprocess": "a preprocessing name such as \"tf\" or \"scale01\"",
    "labels": "a list of class names or a labels file beside the model",
    "input_size": "[height, width] for a model that accepts any size",
}
RECORD_KEYS = ("trained", "head_retrained", "notes")
"""Sidecar keys that record where a model came from (the demo's training runs); kept, never read."""


def sidecar_paths(path: Path) -> list[Path]:
    """Where a model's sidecar may be: ``dog.h5.gradcam.json`` and ``dog.gradcam.json``."""
    return [path.with_name(path.name + SIDECAR_SUFFIX), path.with_name(path.stem + SIDECAR_SUFFIX)]


def read_sidecar(path: Path) -> dict:
    """The sidecar of the model file ``path`` ({} without one). Both names are read; two that say
    different things are refused rather than one silently chosen, as are unknown keys (a misspelled
    ``preproces`` would otherwise leave the model fed raw pixels) and values of the wrong type."""
    found = [candidate for candidate in dict.fromkeys(sidecar_paths(path)) if candidate.exists()]
    contents = [_sidecar_content(candidate) for candidate in found]
    if len(found) == 2 and contents[0] != contents[1]:
        raise ModelLoadError(f"{found[0]} and {found[1]} are two different sidecars for {path.name}; keep one.")
    return contents[0] if contents else {}


def _sidecar_content(sidecar: Path) -> dict:
    try:
        content = json.loads(sidecar.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{sidecar}: unreadable model sidecar ({error}).") from None
    if not isinstance(content, dict):
        raise ModelLoadError(f'{sidecar}: must hold a JSON object such as {{"preprocess": "tf", "labels": [...]}}.')
    unknown = [key for key in content if key not in SIDECAR_KEYS and key not in RECORD_KEYS]
    if unknown:
        accepted = "; ".join(f'"{key}": {meaning}' for key, meaning in SIDECAR_KEYS.items())
        raise ModelLoadError(f'{sidecar}: unknown key "{unknown[0]}"; a sidecar takes {accepted}.')
    if content.get("preprocess") is not None and not isinstance(content["preprocess"], str):
        raise ModelLoadError(f'{sidecar}: "preprocess" must be a name such as "tf" or "scale01", '
                             f"not {json.dumps(content['preprocess'])}.")
    labels = content.get("labels")
    if labels is not None and not isinstance(labels, (str, list)):
        raise ModelLoadError(f'{sidecar}: "labels" must be a list of names or a file name, not {json.dumps(labels)}.')
    size = content.get("input_size")
    if size is not None and not (isinstance(size, list) and len(size) == 2
                                 and all(isinstance(side, int) and side >= 8 for side in size)):
        raise ModelLoadError(f'{sidecar}: "input_size" must be [height, width] in pixels, not {json.dumps(size)}.')
    return content


def sidecar_labels(path: Path, sidecar: dict) -> list[str] | str | None:
    labels = sidecar.get("labels")
    if isinstance(labels, str):
        return str(path.parent / labels)
    return labels
