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

import contextlib
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
from .references import absolute_reference, split_reference
from .spec import ModelSpec

MODULE_PREFIX = "gradcam_user_"  # the name a factory file is imported under (plus its stem and a digest)


def load_factory(reference: str, preprocess: str | None = None, labels: Any = None,
                 input_size: tuple[int, int] | None = None) -> ModelSpec:
    """The :class:`ModelSpec` of the model the reference builds (module docstring)."""
    import keras

    target, attribute, is_file = split_reference(reference)
    where = Path(target) if is_file else None
    with _leading_path(where.parent if where is not None else None), _printed_elsewhere():
        module = _import_file(where, reference) if where is not None else _import_module(target, reference)
        found = _attribute(module, attribute, reference)
        if isinstance(found, keras.Model):
            model = found
        elif callable(found):
            try:
                model = found()
            except (Exception, SystemExit) as error:  # the user's code: its failure in one line
                raise ModelLoadError(f"{reference}: calling {attribute}() {_failure(error)}; fix the factory "
                                     "(it is called with no arguments and must return a keras.Model).") from None
        else:
            raise ModelLoadError(f"{reference}: {attribute} is {_a(type(found).__name__)}, not a keras.Model or a "
                                 "function returning one.")
        if not isinstance(model, keras.Model):
            raise ModelLoadError(f"{reference}: {attribute}() returned {_a(type(model).__name__)}, not a keras.Model.")
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
    """The folder leads ``sys.path`` meanwhile; modules imported from it are forgotten afterwards
    (the model keeps what it uses), so that another factory's folder gets its own ``helper.py``."""
    if folder is None:
        yield
        return
    entry = str(folder.resolve())
    # modules loaded from elsewhere under the name of a file here would shadow it: set aside meanwhile
    local = {path.stem for path in folder.glob("*.py")} | {path.parent.name for path in folder.glob("*/__init__.py")}
    shadowed = {name: module for name, module in sys.modules.items()
                if name.split(".")[0] in local and not _is_inside(getattr(module, "__file__", None), entry)}
    for name in shadowed:
        del sys.modules[name]
    before = set(sys.modules)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if sys.path and sys.path[0] == entry:
            sys.path.pop(0)
        for name in set(sys.modules) - before:
            if not name.startswith(MODULE_PREFIX) and _is_inside(getattr(sys.modules[name], "__file__", None), entry):
                del sys.modules[name]
        sys.modules.update(shadowed)


@contextmanager
def _printed_elsewhere():
    """What the user's code prints (``model.summary()``, an argparse usage) is held back: standard
    output may carry ``--json`` rows, and a failure is reported in one line. On success the text goes
    to standard error."""
    import io

    held = io.StringIO()
    with contextlib.redirect_stdout(held), contextlib.redirect_stderr(held):
        yield
    if held.getvalue():
        sys.stderr.write(held.getvalue())


def _is_inside(path: str | None, folder: str) -> bool:
    return bool(path) and os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep)


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _failure(error: BaseException) -> str:
    """How the user's code failed: ``raised ValueError: ...`` or ``exited (status 3)`` (a script
    that runs, and exits, when imported; guard it with ``if __name__ == "__main__":``)."""
    if isinstance(error, SystemExit):
        return (f"exited (status {error.code}); code that runs as a script when imported needs "
                "if __name__ == \"__main__\": around it")
    return f"raised {describe_error(error)}"


def _import_file(path: Path, reference: str):
    if not path.is_file():
        raise ModelNotFound(f"{reference}: no such Python file {path}.")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"{MODULE_PREFIX}{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    if name in sys.modules:  # imported already in this process: the same module, not a second copy
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:
        del sys.modules[name]
        raise ModelLoadError(f"{reference}: importing {path.name} {_failure(error)}.") from None
    return module


def _import_module(name: str, reference: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and name.startswith(error.name):
            here = Path(name.replace(".", os.sep) + ".py")
            hint = (f"; for the file here, give {here}:{reference.split(':', 1)[1]}" if here.is_file()
                    else "; install it, or give a file as FILE.py:FACTORY")
            raise ModelNotFound(f"{reference}: no module named '{error.name}'{hint}.") from None
        raise ModelLoadError(f"{reference}: importing {name} {_failure(error)}.") from None
    except (Exception, SystemExit) as error:
        raise ModelLoadError(f"{reference}: importing {name} {_failure(error)}.") from None


def _attribute(module, attribute: str, reference: str):
    import keras

    found = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            offered = sorted(name for name, value in vars(module).items()
                             if not name.startswith("_") and (isinstance(value, keras.Model) or (
                                 callable(value) and getattr(value, "__module__", None) == module.__name__)))
            hint = f"; it defines {', '.join(offered[:8])}" if offered else ""
            raise ModelLoadError(f"{reference}: no attribute '{attribute}' in {getattr(module, '__file__', None) or module.__name__}"
                                 f"{hint}.")
        found = getattr(found, part)
    return found
