"""Error types. Each is caught once, at the CLI edge, and printed as one line.

``exit_code`` 2 means a usage or model problem found before any image is processed;
per-image problems (:class:`ImageError`) are recorded in the manifest and turn the
run's exit code into 1 while the rest of the batch goes on.

Messages name parameters in neutral words, :func:`param` ("classes", "top_k"), and are phrased for
whoever reads them when they are shown: ``--class`` and ``--top-k 3`` on the command line (the
``gradcam`` command switches to those names while it runs, :func:`command_line_names`), ``classes``
and ``top_k=3`` in Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

PARAMETERS: dict[str, str] = {
    # neutral name (the Python keyword) -> the command line's flag
    "alpha": "--alpha", "chunk_size": "--chunk-size", "classes": "--class", "combine": "--combine", "fem_sigmas": "--fem-sigmas", "finer_alpha": "--finer-alpha",
    "finer_comparisons": "--finer-comparisons", "kpca_gamma": "--kpca-gamma", "kpca_kernel": "--kpca-kernel",
    "counterfactual": "--counterfactual",
    "concepts": "-k/--concepts", "concepts_per": "--concepts-per",
    "engine": "--engine", "gates": "--fail-under", "ground_truth": "--ground-truth", "input_size": "--input-size",
    "labels": "--labels", "layer": "--layer", "max_channels": "--max-channels", "max_megapixels": "--max-megapixels",
    "method": "--method", "methods": "--methods", "metrics": "--metrics", "model": "--model",
    "model_output": "--model-output", "output_dir": "-o/--output-dir", "preprocess": "--preprocess",
    "ray_address": "--ray-address", "region": "--region", "safe_mode": "--unsafe-model-code",
    "sheet_path": "-o/--output", "smooth": "--smooth", "top_k": "--top-k", "weights": "--weights",
    "task": "--task", "min_score": "--min-score", "boxes": "--box", "reference": "--reference",
}
FLAGS_WITHOUT_VALUE = frozenset({"safe_mode"})  # --unsafe-model-code is safe_mode=False
_MARK = "\x00"
_MARKED = re.compile(f"{_MARK}([a-z_]+)(?:{_MARK}{_MARK}(.*?))?{_MARK}")
_command_line = False


def param(name: str, value: object = None) -> str:
    """A parameter (and its value) in a message, spelled when the message is shown: ``--top-k 3`` on
    the command line, ``top_k=3`` in Python (``safe_mode``'s flag takes no value)."""
    if name not in PARAMETERS:
        raise KeyError(f"unknown parameter {name!r}: add it to PARAMETERS")
    return f"{_MARK}{name}{_MARK}" if value is None else f"{_MARK}{name}{_MARK}{_MARK}{value}{_MARK}"


def phrase(text: str, command_line: bool | None = None) -> str:
    """``text`` with its :func:`param` marks spelled for the command line or for Python."""
    flags = _command_line if command_line is None else command_line

    def spell(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        if flags:
            return PARAMETERS[name] if value is None or name in FLAGS_WITHOUT_VALUE else f"{PARAMETERS[name]} {value}"
        return name if value is None else f"{name}={value}"

    return _MARKED.sub(spell, text)


def spells_command_line() -> bool:
    """Whether messages now spell parameters as command-line flags."""
    return _command_line


def spell_command_line(on: bool) -> None:
    """Spell parameters as command-line flags (``on``) or Python keywords from now on, in every
    thread of this process (a Ray actor follows its driver with this)."""
    global _command_line
    _command_line = bool(on)


@contextmanager
def command_line_names() -> Iterator[None]:
    """Spell parameters as command-line flags while the ``gradcam`` command runs."""
    previous = spells_command_line()
    spell_command_line(True)
    try:
        yield
    finally:
        spell_command_line(previous)


class GradcamError(Exception):
    """Base class for every error the tool reports to a user without a traceback."""

    exit_code = 2

    def __str__(self) -> str:
        return phrase(super().__str__())


class ModelNotFound(GradcamError):
    """``--model`` names neither a known architecture nor an existing file."""


class ModelLoadError(GradcamError):
    """A model file exists but cannot be loaded as a Keras model."""


class WeightsUnavailable(GradcamError):
    """Pretrained weights could not be downloaded or read."""


class UnsupportedModel(GradcamError):
    """The model cannot be explained: no image input, no convolutional layer, ..."""


class LayerNotFound(GradcamError):
    """``--layer`` names no layer, or one without a spatial output."""


class MethodError(GradcamError):
    """The method cannot run on this model (CAM without a GAP -> Dense head, ...)."""


class TargetError(GradcamError):
    """``--class`` is out of range or names an unknown label."""


class OptionConflict(GradcamError):
    """An option that does not apply here (to this method, this model, with that other option):
    refused rather than silently ignored."""


class ManifestNotFound(GradcamError):
    """A command needs an earlier run's ``manifest.jsonl`` and the folder has none."""


class OutputError(GradcamError):
    """The output folder cannot be created or written (permissions, full disk)."""

    exit_code = 3


class ImageError(GradcamError):
    """One input could not be read as an image. Recorded per file; the batch goes on."""

    exit_code = 1


class EvaluationError(GradcamError):
    """``gradcam evaluate`` cannot score: unreadable ground truth, a bad --fail-under, a metric that
    needs what was not given, a preprocessing the perturbations cannot go through."""


class UnsupportedBackend(GradcamError):
    """Keras runs on a backend the tool does not compute maps on (PyTorch)."""


class EngineError(GradcamError):
    """``--engine ray`` cannot run: the extra is not installed, or the cluster cannot be reached."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_KERAS_WRAPPER = ("Exception encountered when calling", "Arguments received by")


def first_line(error: BaseException | str, limit: int = 300) -> str:
    """The first informative line of an error from a user's model or code, without Keras's wrapper
    ("Exception encountered when calling X.call()", the arguments list) or terminal colour codes."""
    text = _ANSI.sub("", str(error))
    lines = []
    for line in text.splitlines():
        if line.strip().startswith(_KERAS_WRAPPER[1]):
            break
        if line.strip() and not line.strip().startswith(_KERAS_WRAPPER[0]):
            lines.append(line.strip())
    return (lines[0] if lines else "no detail")[:limit]


def describe_error(error: BaseException) -> str:
    """``TypeName: first line`` of an error raised by a user's model or code (see :func:`first_line`)."""
    return f"{type(error).__name__}: {first_line(error)}"
