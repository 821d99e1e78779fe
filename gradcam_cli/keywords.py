"""The Python API's keywords checked as the command line checks its flags: one line naming the keyword (in
Python's spelling) and what it takes, before any model loads."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import (
    PARAMETERS,
    GradcamError,
    ImageError,
    MethodError,
    OptionConflict,
    TargetError,
    UnsupportedModel,
    param,
)
from .layers import layer_names
from .methods import CamMethod
from .model_cache import MODELS_KEPT, explainer_for, release_models  # noqa: F401  (the API's own)
from .models.spec import ModelSpec
from .options import (
    COLORMAP_NAMES,
    TUNING_FIELDS,
)
from .pictures import NO_IMAGE_GIVEN
from .quiet import RETRACING_WARNING, import_tensorflow_quietly, quiet_own_retracing  # noqa: F401


def check_colormap(colormap: str) -> str:
    """A colour map's name, one of :data:`~gradcam_cli.options.COLORMAP_NAMES`."""
    if colormap not in COLORMAP_NAMES:
        raise OptionConflict(f"colormap={colormap!r}: choose one of {', '.join(COLORMAP_NAMES)}.")
    return colormap


def check_alpha(alpha: float) -> float:
    """An overlay opacity: a finite number in [0, 1]."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise OptionConflict(f"{param('alpha', repr(alpha))}: the overlay opacity must be a finite number in [0, 1].")
    return value


def named(name: str, value: Any) -> str:
    """``name=value`` in a message (through :func:`param` where the name is one of the CLI's too)."""
    return param(name, repr(value)) if name in PARAMETERS else f"{name}={value!r}"


def is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_whole_number(name: str, value: Any, minimum: int, optional: bool = False,
                       error: type[GradcamError] = OptionConflict) -> int | None:
    """``value`` as an int of at least ``minimum`` (None passes where ``optional``); anything else, a bool
    or a float included, is refused in one line naming ``name``."""
    if value is None and optional:
        return None
    if not is_integer(value) or value < minimum:
        raise error(f"{named(name, value)}: give a whole number of at least {minimum}"
                    f"{' (or None)' if optional else ''}.")
    return int(value)


def check_text(name: str, value: Any, what: str, error: type[GradcamError] = OptionConflict,
               paths: bool = False) -> None:
    """None, a str (or a path, where ``paths``) passes; anything else is refused in one line naming
    ``name`` and ``what`` to give."""
    if value is None or isinstance(value, str) or (paths and isinstance(value, os.PathLike)):
        return
    raise error(f"{named(name, value)}: give {what}.")


def check_keywords(model: Any, images: list, keywords: dict[str, Any]) -> None:
    """:func:`explain`'s keywords checked before any model loads: a wrong type or value is one line
    naming the keyword and what to give (a :class:`GradcamError`), never a traceback from deep inside."""
    if model is None or not (isinstance(model, (str, os.PathLike, ModelSpec)) or hasattr(model, "layers")):
        raise UnsupportedModel(f"{named('model', model)}: give a keras.Model, a keras.applications name, 'demo', "
                               "a model file, or FILE.py:FACTORY.")
    if not images:
        raise ImageError(NO_IMAGE_GIVEN)
    method = keywords["method"]
    if not isinstance(method, (str, CamMethod)):
        raise MethodError(f"{named('method', method)}: give a method name such as 'gradcam' "
                          "(gradcam_cli.methods.METHODS lists them).")
    check_whole_number("batch_size", keywords["batch_size"], 1)
    check_whole_number("top_k", keywords["top_k"], 1, error=TargetError)
    check_whole_number("chunk_size", keywords["chunk_size"], 1, optional=True)
    check_whole_number("max_channels", keywords["max_channels"], 1, optional=True)
    check_whole_number("overlay_size", keywords["overlay_size"], 16, optional=True)
    classes = keywords["classes"]
    values = [] if classes is None else classes.ravel().tolist() if isinstance(classes, np.ndarray) else classes
    wrong = [value for value in values if not (is_integer(value) or isinstance(value, str))]
    if wrong:
        raise TargetError(f"{param('classes')} holds {wrong[0]!r}: give a class index or label, a list of them, or "
                          "an (N, T) integer array of each image's classes.")
    size = keywords["input_size"]
    sizes = [size] if is_integer(size) else list(size) if isinstance(size, (tuple, list)) else None
    if size is not None and (not sizes or len(sizes) > 2 or not all(is_integer(s) and s >= 8 for s in sizes)):
        raise OptionConflict(f"{named('input_size', size)}: give H or (H, W) in pixels, each at least 8.")
    megapixels = keywords["max_megapixels"]
    if megapixels is not None and not (isinstance(megapixels, (int, float, np.number)) and not isinstance(megapixels, bool)
                                       and math.isfinite(megapixels) and megapixels >= 1):
        raise OptionConflict(f"{named('max_megapixels', megapixels)}: give a finite number of at least 1 (or None).")
    layer_names(keywords["layer"])  # a name, a list of names, or None
    check_text("combine", keywords["combine"], "'mean' or 'product' (with several layers), or None")
    tuning = keywords["tuning"]
    if tuning is not None and (not isinstance(tuning, dict) or not set(tuning) <= set(TUNING_FIELDS)):
        raise OptionConflict(f"{named('tuning', tuning)}: give a dict whose keys are among {', '.join(TUNING_FIELDS)}.")
    for key, value in (tuning or {}).items():
        check_tuning_value(key, value)
    check_text("weights", keywords["weights"], "'imagenet', 'none' or a weights file", paths=True)
    check_text("region", keywords["region"], "'pred', 'all' or a mask image path", paths=True)
    check_text("smooth", keywords["smooth"], "'aug', 'eigen' or None", error=MethodError)
    preprocess = keywords["preprocess"]
    if not (preprocess is None or isinstance(preprocess, str) or callable(preprocess)):
        raise OptionConflict(f"{named('preprocess', preprocess)}: give a name (none, scale01, tf, caffe, torch, an "
                             "application name) or a function of a float32 (N, H, W, C) batch.")
    labels = keywords["labels"]
    if not (labels is None or isinstance(labels, (str, os.PathLike))
            or (isinstance(labels, Sequence) and all(isinstance(label, str) for label in labels))):
        raise OptionConflict(f"{named('labels', labels)}: give a labels file or a list of class names (str).")
    output = keywords["model_output"]
    if not (output is None or isinstance(output, str) or is_integer(output)):
        raise OptionConflict(f"{named('model_output', output)}: give an output's name or index.")
    check_detection_keywords(keywords["task"], keywords["min_score"], keywords["boxes"])
    for name in ("safe_mode", "counterfactual"):
        if not isinstance(keywords[name], (bool, np.bool_)):
            raise OptionConflict(f"{named(name, keywords[name])}: give True or False.")


def check_detection_keywords(task: Any, min_score: Any, boxes: Any) -> None:
    """``task``, ``min_score`` and ``boxes`` (a detector's) checked in one line each."""
    if task not in (None, "classify", "detect"):
        raise OptionConflict(f"{named('task', task)}: give 'detect', 'classify' or None.")
    if min_score is not None and (isinstance(min_score, bool) or not isinstance(min_score, (int, float, np.number))
                                  or not 0 <= min_score <= 1):
        raise TargetError(f"{named('min_score', min_score)}: give a score in [0, 1] (or None: 0.5).")
    numbers = [boxes] if is_integer(boxes) else list(boxes) if isinstance(boxes, (list, tuple)) else None
    if boxes is not None and (not numbers or not all(is_integer(n) and n >= 0 for n in numbers)):
        raise TargetError(f"{named('boxes', boxes)}: give box numbers (0: each image's best), a list of them, or None.")


def check_tuning_value(key: str, value: Any) -> None:
    """One ``tuning`` value, checked as its command-line option checks it: a whole number of at least 1
    (finer_comparisons), a finite number in [0, 1] (finer_alpha), above 0 (kpca_gamma), at least 0
    (fem_sigmas), a kernel name (kpca_kernel); None leaves the default."""
    if value is None:
        return
    if key == "kpca_kernel":
        if value not in ("sigmoid", "rbf", "linear"):
            raise OptionConflict(f"{named('tuning', {key: value})}: the kernel is 'sigmoid', 'rbf' or 'linear'.")
        return
    if key == "finer_comparisons":
        check_whole_number(f"tuning['{key}']", value, 1)
        return
    number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)
    low, high, what = {"finer_alpha": (0.0, 1.0, "in [0, 1]"), "kpca_gamma": (0.0, None, "above 0"),
                       "fem_sigmas": (0.0, None, "of at least 0")}[key]
    if not number or value < low or (high is not None and value > high) or (key == "kpca_gamma" and value == 0):
        raise OptionConflict(f"{named('tuning', {key: value})}: give a finite number {what}.")
