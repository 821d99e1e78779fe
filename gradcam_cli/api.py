"""The Python API: the same code path as the CLI, returning arrays instead of writing files."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from . import render
from .backend import configured_name
from .decode import fit_longest_side, model_input, open_rgb, to_rgb
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
from .inputs import IMAGE_EXTENSIONS, collect_inputs
from .methods import CamMethod
from .model_cache import MODELS_KEPT, explainer_for, release_models  # noqa: F401  (the API's own)
from .models.spec import ModelSpec
from .options import (
    COLORMAP_NAMES,
    DEFAULT_ALPHA,
    DEFAULT_MAX_MEGAPIXELS,
    DEFAULT_OVERLAY_SIZE,
    RunOptions,
)
from .quiet import RETRACING_WARNING, import_tensorflow_quietly, quiet_own_retracing  # noqa: F401


@dataclass
class Explanation:
    """Results for N images and T targets each.

    ``heatmaps``: (N, T, h, w) float32, the raw maps at the target layer's resolution (after the
    method's ReLU, not normalised); ``class_ids``: (N, T); ``probabilities``: (N, C);
    ``images``: the pictures the overlays are drawn on (uint8 RGB): files decoded at the overlay size
    :func:`explain` was given (longest side 1000 px by default, as the CLI), in-memory pictures as
    passed; ``paths``: their files, when given;
    ``failures``: (path, one-line reason) for files that could not be read (skipped, as the CLI does);
    ``saliency``: (N, T, H, W, C) at the model's input size for guided-gradcam, else None;
    ``alpha``: the overlay opacity :meth:`overlay` uses by default; ``region_pixels``: (N, T) for a
    segmentation model, the pixels each class was explained over (0: an empty region, an all-zero
    map), else None.
    """

    heatmaps: np.ndarray
    class_ids: np.ndarray
    probabilities: np.ndarray
    images: list[np.ndarray]
    paths: list[str | None]
    layer: str
    method: str
    spec: ModelSpec
    failures: list[tuple[str, str]] = field(default_factory=list)
    saliency: np.ndarray | None = None
    alpha: float = DEFAULT_ALPHA
    region_pixels: np.ndarray | None = None

    def __repr__(self) -> str:
        """One line (a plain REPL would otherwise print every array)."""
        count, targets = self.class_ids.shape[:2]
        failed = f", {len(self.failures)} failed" if self.failures else ""
        return (f"Explanation({count} image(s) x {targets} target(s), method={self.method!r}, "
                f"layer={self.layer!r}, heatmaps {tuple(self.heatmaps.shape)}{failed})")

    def label(self, image: int, target: int = 0) -> str:
        return self.spec.label(int(self.class_ids[image, target]))

    def heatmap(self, image: int, target: int = 0) -> np.ndarray:
        """The map as displayed: upsampled to the original image and normalised to [0, 1]."""
        return render.display_heatmap(self.heatmaps[image, target], self.images[image].shape[:2])

    def overlay(self, image: int, target: int = 0, alpha: float | None = None, colormap: str = "jet") -> np.ndarray:
        """uint8 RGB overlay at the original's size (``alpha``: this result's, unless given)."""
        alpha = self.alpha if alpha is None else check_alpha(alpha)
        return render.overlay(self.images[image], self.heatmaps[image, target], alpha, check_colormap(colormap))

    def guided(self, image: int, target: int = 0) -> np.ndarray:
        """guided-gradcam's saliency image (uint8 RGB) at the original's size, as the CLI writes it."""
        if self.saliency is None:
            raise MethodError(f"{self.method} makes no saliency image; use method='guided-gradcam'.")
        return render.saliency_image(self.saliency[image, target], self.images[image].shape[:2])

    def show(self, image: int = 0, target: int = 0, alpha: float | None = None, colormap: str = "jet") -> Image.Image:
        """The overlay as a PIL image (a notebook displays it inline)."""
        return Image.fromarray(self.overlay(image, target, alpha, colormap))

    def _repr_html_(self) -> str:
        """Jupyter shows the overlays when a result is a cell's last expression."""
        from .notebook import explanation_html

        return explanation_html(self)


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


def _array_to_rgb(array: np.ndarray, where: str) -> np.ndarray:
    """An in-memory picture to (H, W, 3) uint8 RGB, with the CLI's conversions.

    Accepted: (H, W) grey, (H, W, 1) grey, (H, W, 3) RGB, (H, W, 4) RGBA (composited on white, as the
    CLI does for transparent files). uint8 is taken as is; other integer types must hold 0..255;
    floats must lie in [0, 1] (the convention of ``skimage.img_as_float`` and of matplotlib) and are
    scaled by 255 -- float pixels in 0..255 are refused rather than guessed, pass them as uint8.
    """
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageError(f"{where}: shape {array.shape} is not an image; pass (H, W), (H, W, 1), (H, W, 3) "
                         "or (H, W, 4) arrays, or a list of them.")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise ImageError(f"{where}: dtype {array.dtype} is not a pixel type; pass uint8, or floats in [0, 1].")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min(initial=0) < 0 or array.max(initial=0) > 1:
            raise ImageError(
                f"{where}: float pixels must lie in [0, 1] (found {np.nanmin(array):.3g}..{np.nanmax(array):.3g}); "
                "for 0..255 values pass array.astype('uint8')."
            )
        array = np.round(array * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        if array.min(initial=0) < 0 or array.max(initial=0) > 255:
            raise ImageError(f"{where}: integer pixels must lie in 0..255 (found {array.min()}..{array.max()}).")
        array = array.astype(np.uint8)
    return np.asarray(to_rgb(Image.fromarray(array)))


NO_IMAGE_GIVEN = "no image to explain (an empty list was given)."


def listed_images(images: Any) -> list:
    """``images`` as a list: one path, PIL image or array as a list of one, an (N, H, W, C) array as N
    arrays, any other iterable as its items; anything else is refused in one line."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if images is None or isinstance(images, (bytes, dict)) or not hasattr(images, "__iter__"):
        raise ImageError(f"images={images!r}"[:120] + ": give a path (file, folder, glob), a PIL image, an array, "
                         "or a list of them.")
    return list(images)


def as_images(images: Any, min_size: tuple[int, int] | None = None,
              overlay_size: int | None = DEFAULT_OVERLAY_SIZE,
              max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
              ) -> tuple[list[np.ndarray], list[str | None], list[tuple[str, str]]]:
    """What a notebook holds, to (RGB uint8 arrays, their paths or None, failures).

    ``images``: a path (file, folder, glob) or a PIL image or an array, or a list of those; an
    (N, H, W, 3) array counts as N images. Files that cannot be read become failures
    (path, reason), as in the CLI; in-memory pictures of the wrong shape or range raise
    :class:`ImageError`. Files are decoded as the CLI decodes them: at the smallest scale covering
    ``min_size`` (the model's input) and ``overlay_size`` (a longest side; None: full resolution),
    so a 12 MP photo is held at 1000-2000 px, not at 36 MB; the caller makes the model input from
    that and then fits the picture to ``overlay_size`` (:func:`fit_pictures`), as the CLI does.
    """
    images = listed_images(images)
    arrays: list[np.ndarray] = []
    paths: list[str | None] = []
    failures: list[tuple[str, str]] = []
    empty: list[str] = []  # paths that name no image file (an empty folder, a glob matching nothing)
    for position, image in enumerate(images):
        if isinstance(image, (str, os.PathLike)):
            items = collect_inputs([str(image)])
            if not items:
                empty.append(str(image))
            for item in items:
                try:
                    if item.error:
                        raise ImageError(f"{item.path}: {item.error}.")
                    arrays.append(np.asarray(open_rgb(item.path, min_size=min_size, longest_side=overlay_size,
                                                        max_megapixels=max_megapixels)))
                    paths.append(item.path)
                except ImageError as error:
                    failures.append((item.path, str(error)))
        elif isinstance(image, Image.Image):
            arrays.append(np.asarray(to_rgb(image)))
            paths.append(None)
        else:
            arrays.append(_array_to_rgb(np.asarray(image), f"image {position}"))
            paths.append(None)
    if not arrays:
        reasons = "; ".join(message for _, message in failures[:3])
        if reasons:
            raise ImageError(f"no image to explain: {reasons.rstrip('.')}.")
        raise ImageError(f"no image to explain: {', '.join(empty)} holds no image file (looked for "
                         f"{', '.join(sorted(IMAGE_EXTENSIONS))})." if empty else NO_IMAGE_GIVEN)
    return arrays, paths, failures


def fit_pictures(arrays: list[np.ndarray], paths: list[str | None], overlay_size: int | None) -> list[np.ndarray]:
    """Decoded files fitted to ``overlay_size`` once their model input is made (in-memory pictures
    stay as given)."""
    return [a if path is None else np.asarray(fit_longest_side(Image.fromarray(a), overlay_size))
            for a, path in zip(arrays, paths, strict=True)]


def _named(name: str, value: Any) -> str:
    """``name=value`` in a message (through :func:`param` where the name is one of the CLI's too)."""
    return param(name, repr(value)) if name in PARAMETERS else f"{name}={value!r}"


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_whole_number(name: str, value: Any, minimum: int, optional: bool = False,
                       error: type[GradcamError] = OptionConflict) -> int | None:
    """``value`` as an int of at least ``minimum`` (None passes where ``optional``); anything else, a bool
    or a float included, is refused in one line naming ``name``."""
    if value is None and optional:
        return None
    if not _is_integer(value) or value < minimum:
        raise error(f"{_named(name, value)}: give a whole number of at least {minimum}"
                    f"{' (or None)' if optional else ''}.")
    return int(value)


def check_text(name: str, value: Any, what: str, error: type[GradcamError] = OptionConflict,
               paths: bool = False) -> None:
    """None, a str (or a path, where ``paths``) passes; anything else is refused in one line naming
    ``name`` and ``what`` to give."""
    if value is None or isinstance(value, str) or (paths and isinstance(value, os.PathLike)):
        return
    raise error(f"{_named(name, value)}: give {what}.")


def _check_keywords(model: Any, images: list, keywords: dict[str, Any]) -> None:
    """:func:`explain`'s keywords checked before any model loads: a wrong type or value is one line
    naming the keyword and what to give (a :class:`GradcamError`), never a traceback from deep inside."""
    if model is None or not (isinstance(model, (str, os.PathLike, ModelSpec)) or hasattr(model, "layers")):
        raise UnsupportedModel(f"{_named('model', model)}: give a keras.Model, a keras.applications name, 'demo', "
                               "a model file, or FILE.py:FACTORY.")
    if not images:
        raise ImageError(NO_IMAGE_GIVEN)
    method = keywords["method"]
    if not isinstance(method, (str, CamMethod)):
        raise MethodError(f"{_named('method', method)}: give a method name such as 'gradcam' "
                          "(gradcam_cli.methods.METHODS lists them).")
    check_whole_number("batch_size", keywords["batch_size"], 1)
    check_whole_number("top_k", keywords["top_k"], 1, error=TargetError)
    check_whole_number("chunk_size", keywords["chunk_size"], 1, optional=True)
    check_whole_number("max_channels", keywords["max_channels"], 1, optional=True)
    check_whole_number("overlay_size", keywords["overlay_size"], 16, optional=True)
    classes = keywords["classes"]
    values = [] if classes is None else classes.ravel().tolist() if isinstance(classes, np.ndarray) else classes
    wrong = [value for value in values if not (_is_integer(value) or isinstance(value, str))]
    if wrong:
        raise TargetError(f"{param('classes')} holds {wrong[0]!r}: give a class index or label, a list of them, or "
                          "an (N, T) integer array of each image's classes.")
    size = keywords["input_size"]
    sizes = [size] if _is_integer(size) else list(size) if isinstance(size, (tuple, list)) else None
    if size is not None and (not sizes or len(sizes) > 2 or not all(_is_integer(s) and s >= 8 for s in sizes)):
        raise OptionConflict(f"{_named('input_size', size)}: give H or (H, W) in pixels, each at least 8.")
    megapixels = keywords["max_megapixels"]
    if megapixels is not None and not (isinstance(megapixels, (int, float, np.number)) and not isinstance(megapixels, bool)
                                       and math.isfinite(megapixels) and megapixels >= 1):
        raise OptionConflict(f"{_named('max_megapixels', megapixels)}: give a finite number of at least 1 (or None).")
    check_text("layer", keywords["layer"], "a layer name or nested path (str), or None for the automatic pick")
    check_text("weights", keywords["weights"], "'imagenet', 'none' or a weights file", paths=True)
    check_text("region", keywords["region"], "'pred', 'all' or a mask image path", paths=True)
    check_text("smooth", keywords["smooth"], "'aug', 'eigen' or None", error=MethodError)
    preprocess = keywords["preprocess"]
    if not (preprocess is None or isinstance(preprocess, str) or callable(preprocess)):
        raise OptionConflict(f"{_named('preprocess', preprocess)}: give a name (none, scale01, tf, caffe, torch, an "
                             "application name) or a function of a float32 (N, H, W, C) batch.")
    labels = keywords["labels"]
    if not (labels is None or isinstance(labels, (str, os.PathLike))
            or (isinstance(labels, Sequence) and all(isinstance(label, str) for label in labels))):
        raise OptionConflict(f"{_named('labels', labels)}: give a labels file or a list of class names (str).")
    output = keywords["model_output"]
    if not (output is None or isinstance(output, str) or _is_integer(output)):
        raise OptionConflict(f"{_named('model_output', output)}: give an output's name or index.")
    for name in ("safe_mode", "counterfactual"):
        if not isinstance(keywords[name], (bool, np.bool_)):
            raise OptionConflict(f"{_named(name, keywords[name])}: give True or False.")


def explain(
    model: Any,
    images: Any,
    method: str = "gradcam",
    classes: int | str | Sequence[int | str] | None = None,
    top_k: int = 1,
    layer: str | None = None,
    weights: str | None = None,
    batch_size: int = 16,
    preprocess: str | Callable[[np.ndarray], np.ndarray] | None = None,
    labels: str | list[str] | None = None,
    smooth: str | None = None,
    max_channels: int | None = None,
    chunk_size: int | None = None,
    input_size: int | tuple[int, int] | None = None,
    alpha: float = DEFAULT_ALPHA,
    model_output: str | int | None = None,
    region: str | None = None,
    overlay_size: int | None = DEFAULT_OVERLAY_SIZE,
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
    safe_mode: bool = True,
    counterfactual: bool = False,
) -> Explanation:
    """Explain ``images`` with ``model``.

    ``model``: a keras.Model (Functional, Sequential or subclassed), a keras.applications name,
    'demo', a model file, or ``FILE.py:FACTORY`` / ``package.module:FACTORY`` (imports and runs that
    code to build the model); ``weights`` applies to keras.applications names only ('imagenet' by
    default, 'none', or a file). ``preprocess``: a name (none, scale01, tf, caffe, torch, or an
    application name) or, for a keras.Model or a model file, a function of a float32 (N, H, W, C)
    batch of pixels in [0, 255].
    ``images``: one image or a list: paths (files, folders, globs), PIL images (any mode), or arrays
    (H, W), (H, W, 1), (H, W, 3), (H, W, 4), or (N, H, W, 3). Arrays: uint8 as is, floats in [0, 1]
    (scaled by 255; other float ranges are refused). RGBA goes on white and grey to RGB, as in the
    CLI. Unreadable files are skipped and listed in ``result.failures``.
    ``classes``: class index/label or a list of them, explained for every image, or an (N, T)
    integer array with each image's own classes; default: each image's ``top_k`` best classes
    (``top_k`` > 1 with ``classes`` is refused).
    ``smooth``: None, 'aug' (average over flips and brightness) or 'eigen'; ``max_channels`` and
    ``chunk_size`` bound Score-CAM / Ablation-CAM's extra passes (refused for other methods).
    ``input_size``: H or (H, W) for models that accept any size; ``alpha``: the default opacity of
    :meth:`Explanation.overlay`.
    ``model_output``: the output to explain, by name or index, for a multi-output model; ``region``:
    for a segmentation model, 'pred' (default), 'all' or a mask image path.
    ``overlay_size``: the longest side files are decoded at (the CLI's ``--overlay-size``; None: full
    resolution, memory then grows with every photo); ``max_megapixels``: a file whose decode would be
    larger is refused (listed in ``failures``); ``safe_mode``: False lets Keras load Python code (a
    Lambda layer) from a model file you trust; ``counterfactual``: negate the class score's gradients
    (Selvaraju 2017, 3.3), so the maps show what lowers the class (gradient methods only).

    >>> result = explain("demo", "sample_images/shapes", method="gradcam++")   # doctest: +SKIP
    >>> result.label(0), result.heatmap(0).shape                               # doctest: +SKIP
    """
    images = listed_images(images)
    if classes is not None and not isinstance(classes, np.ndarray):
        single = isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__")
        classes = [classes] if single else list(classes)
    _check_keywords(model, images, {
        "method": method, "classes": classes, "top_k": top_k, "layer": layer, "weights": weights,
        "batch_size": batch_size, "preprocess": preprocess, "labels": labels, "smooth": smooth,
        "max_channels": max_channels, "chunk_size": chunk_size, "input_size": input_size,
        "model_output": model_output, "region": region, "overlay_size": overlay_size,
        "max_megapixels": max_megapixels, "safe_mode": safe_mode, "counterfactual": counterfactual})
    if _is_integer(input_size):
        input_size = (int(input_size), int(input_size))
    model_options = {"weights": weights, "preprocess": preprocess, "labels": labels,
                     "input_size": tuple(input_size) if input_size is not None else None,
                     "model_output": model_output, "safe_mode": safe_mode}
    options = RunOptions(method=method, layer=layer, classes=classes, top_k=top_k, batch_size=batch_size,
                         smooth=smooth, chunk_size=chunk_size, max_channels=max_channels, region=region,
                         alpha=alpha, overlay_size=overlay_size, max_megapixels=max_megapixels,
                         counterfactual=counterfactual)
    return explain_with_options(model, images, options, **model_options)


def explain_with_options(model: Any, images: Any, options: RunOptions, **model_options) -> Explanation:
    """:func:`explain` for a run already described by ``options`` (``compare`` runs one per method);
    ``model_options``: :func:`~gradcam_cli.models.resolve_model`'s keywords."""
    alpha = check_alpha(options.alpha)
    if "keras" not in sys.modules and configured_name() == "tensorflow":  # else the user's import has spoken
        import_tensorflow_quietly()
    with quiet_own_retracing():
        return _explain(model, images, options, alpha, model_options)


def _explain(model: Any, images: Any, options: RunOptions, alpha: float, model_options: dict) -> Explanation:
    explainer = explainer_for(model, model_options, options)
    spec = explainer.spec
    arrays, paths, failures = as_images(images, spec.input_size, options.overlay_size, options.max_megapixels)
    channels = spec.channels
    prepared = np.stack([model_input(a, spec.input_size, channels) for a in arrays])
    arrays = fit_pictures(arrays, paths, options.overlay_size)
    result = explainer.run(prepared, options.classes, options.top_k)
    return Explanation(result.heatmaps, result.class_ids, result.probabilities, arrays, paths,
                       explainer.layer_name, explainer.method.name, spec, failures, result.saliency, alpha,
                       result.region_pixels)
