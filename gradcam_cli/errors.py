"""Error types. Each is caught once, at the CLI edge, and printed as one line.

``exit_code`` 2 means a usage or model problem found before any image is processed;
per-image problems (:class:`ImageError`) are recorded in the manifest and turn the
run's exit code into 1 while the rest of the batch goes on.
"""

from __future__ import annotations


class GradcamError(Exception):
    """Base class for every error the tool reports to a user without a traceback."""

    exit_code = 2


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


class EngineError(GradcamError):
    """``--engine ray`` cannot run: the extra is not installed, or the cluster cannot be reached."""
