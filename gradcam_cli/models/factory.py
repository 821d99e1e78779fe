"""``--model FILE.py:FACTORY`` and ``--model package.module:FACTORY``: a model that Python code builds.

The module:attribute convention of ASGI/WSGI servers and entry points. The file (or the importable
module) is imported, which **runs its code**, and the attribute is looked up: a ``keras.Model``
instance is taken as it is; anything else callable (a function, a ``keras.Model`` subclass) is called
with no arguments and must return a ``keras.Model``. A dotted attribute (``Nets.small``) is followed.

While the file is imported and its factory runs, the file's folder leads ``sys.path``, so that it
imports its neighbours as ``python FILE.py`` would. A sidecar beside the file (``FILE.gradcam.json``
or ``FILE.py.gradcam.json``) gives ``preprocess``, ``labels`` and ``input_size`` as for model files
(:mod:`.files`). Ray actors receive the reference (the file made absolute) and build the model the
same way; the model itself never travels.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError, ModelNotFound, describe_error
from .files import read_sidecar, sidecar_input_size, sidecar_labels
from .in_memory import spec_for_model
from .spec import ModelSpec

IDENTIFIER = r"[A-Za-z_]\w*"
ATTRIBUTE = rf"{IDENTIFIER}(?:\.{IDENTIFIER})*"
MODULE_REFERENCE = re.compile(rf"^(?P<module>{ATTRIBUTE}):(?P<attribute>{ATTRIBUTE})$")
FILE_REFERENCE = re.compile(rf"^(?P<file>.+\.py):(?P<attribute>{ATTRIBUTE})$")
RESERVED_PREFIXES = ("hub",)  # ``hub:PRESET`` names a keras-hub preset, never a module called hub


def split_reference(text: str) -> tuple[str, str, bool] | None:
    """``(file or module, attribute, is_file)`` for a factory reference, None for anything else."""
    match = FILE_REFERENCE.match(text)
    if match:
        return match.group("file"), match.group("attribute"), True
    match = MODULE_REFERENCE.match(text)
    if match and match.group("module").lower() not in RESERVED_PREFIXES:
        return match.group("module"), match.group("attribute"), False
    return None


def is_factory_reference(text: str) -> bool:
    return split_reference(text) is not None and not os.path.exists(text)


def absolute_reference(text: str) -> str:
    """The reference with its file made absolute (for Ray actors, whose working folder may differ)."""
    parts = split_reference(text)
    if parts is None or not parts[2] or not os.path.exists(parts[0]):
        return text
    return f"{os.path.realpath(parts[0])}:{parts[1]}"


def load_factory(reference: str, preprocess: str | None = None, labels: Any = None,
                 input_size: tuple[int, int] | None = None) -> ModelSpec:
    """The :class:`ModelSpec` of the model the reference builds (module docstring)."""
    import keras

    target, attribute, is_file = split_reference(reference)
    where = Path(target) if is_file else None
    with _leading_path(where.parent if where is not None else None):
        module = _import_file(where, reference) if where is not None else _import_module(target, reference)
        found = _attribute(module, attribute, reference)
        if isinstance(found, keras.Model):
            model = found
        elif callable(found):
            try:
                model = found()
            except Exception as error:  # the user's code: its failure in one line, not its traceback
                raise ModelLoadError(f"{reference}: calling {attribute}() raised {describe_error(error)}; fix the factory "
                                     "(it is called with no arguments and must return a keras.Model).") from None
        else:
            raise ModelLoadError(f"{reference}: {attribute} is a {type(found).__name__}, not a keras.Model or a "
                                 "function returning one.")
        if not isinstance(model, keras.Model):
            raise ModelLoadError(f"{reference}: {attribute}() returned a {type(model).__name__}, not a keras.Model.")
        source = Path(where if where is not None else getattr(module, "__file__", "") or target)
        sidecar = read_sidecar(source) if source.suffix == ".py" else {}
        return spec_for_model(
            model,
            name=f"{source.name if where is not None else target}:{attribute}",
            preprocess=preprocess or sidecar.get("preprocess") or "none",
            labels=labels if labels is not None else sidecar_labels(source, sidecar),
            input_size=input_size or sidecar_input_size(source, sidecar, model),
            source=absolute_reference(reference),  # one identity however the path is typed (Ray's check)
        )


@contextmanager
def _leading_path(folder: Path | None):
    if folder is None:
        yield
        return
    entry = str(folder.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if sys.path and sys.path[0] == entry:
            sys.path.pop(0)


def _import_file(path: Path, reference: str):
    if not path.is_file():
        raise ModelNotFound(f"{reference}: no such Python file {path}.")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"gradcam_user_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    if name in sys.modules:  # imported already in this process: the same module, not a second copy
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise ModelLoadError(f"{reference}: importing {path.name} raised {describe_error(error)}.") from None
    return module


def _import_module(name: str, reference: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and name.startswith(error.name):
            raise ModelNotFound(f"{reference}: no module named '{error.name}' here; install it, or give a file as "
                                "FILE.py:FACTORY.") from None
        raise ModelLoadError(f"{reference}: importing {name} raised {describe_error(error)}.") from None
    except Exception as error:
        raise ModelLoadError(f"{reference}: importing {name} raised {describe_error(error)}.") from None


def _attribute(module, attribute: str, reference: str):
    import keras

    found = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            offered = sorted(name for name, value in vars(module).items()
                             if not name.startswith("_") and (isinstance(value, keras.Model) or callable(value))
                             and getattr(value, "__module__", module.__name__) == module.__name__)
            hint = f"; it defines {', '.join(offered[:8])}" if offered else ""
            raise ModelLoadError(f"{reference}: no attribute '{attribute}' in {getattr(module, '__file__', None) or module.__name__}"
                                 f"{hint}.")
        found = getattr(found, part)
    return found
