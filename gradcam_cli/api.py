"""The Python API: the same code path as the CLI, returning arrays instead of writing files."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from . import render
from .decode import fit_longest_side, model_input, open_rgb, to_rgb
from .errors import ImageError, MethodError, OptionConflict, param
from .explainer import Explainer
from .inputs import collect_inputs
from .models import resolve_model
from .models.spec import ModelSpec
from .options import DEFAULT_ALPHA, DEFAULT_MAX_MEGAPIXELS, DEFAULT_OVERLAY_SIZE, RunOptions


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
        return render.overlay(self.images[image], self.heatmaps[image, target], alpha, colormap)

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
    if isinstance(images, (str, os.PathLike, Image.Image)):
        images = [images]
    elif isinstance(images, np.ndarray):
        images = list(images) if images.ndim == 4 else [images]
    arrays: list[np.ndarray] = []
    paths: list[str | None] = []
    failures: list[tuple[str, str]] = []
    for position, image in enumerate(images):
        if isinstance(image, (str, os.PathLike)):
            for item in collect_inputs([str(image)]):
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
        detail = f": {reasons.rstrip('.')}." if reasons else " (an empty list was given)."
        raise ImageError(f"no image to explain{detail}")
    return arrays, paths, failures


def fit_pictures(arrays: list[np.ndarray], paths: list[str | None], overlay_size: int | None) -> list[np.ndarray]:
    """Decoded files fitted to ``overlay_size`` once their model input is made (in-memory pictures
    stay as given)."""
    return [a if path is None else np.asarray(fit_longest_side(Image.fromarray(a), overlay_size))
            for a, path in zip(arrays, paths, strict=True)]


_EXPLAINERS = "_gradcam_explainers"  # an in-memory model's attribute: {options: Explainer}
_EXPLAINERS_PER_MODEL = 8


def _explainer(model: Any, model_options: dict, options: RunOptions) -> Explainer:
    """The Explainer for one :func:`explain` call. For an in-memory Keras model it is the one an
    earlier call with the same options built, kept on the model itself (so it goes when the model
    goes), so that calling :func:`explain` in a loop traces its graphs once instead of every call."""
    explainer_options = options.explainer_arguments()

    def build() -> Explainer:
        return Explainer(resolve_model(model, **model_options), **explainer_options)

    if isinstance(model, (str, os.PathLike, ModelSpec)):
        return build()
    key = tuple((name, tuple(value) if isinstance(value, list) else value)
                for name, value in sorted({**model_options, **explainer_options}.items()))
    cached = getattr(model, _EXPLAINERS, None)
    if cached is None:
        cached = {}
        try:
            object.__setattr__(model, _EXPLAINERS, cached)  # past Keras's attribute tracking
        except (AttributeError, TypeError):  # an object that takes no attributes: no reuse
            return build()
    if key not in cached:
        if len(cached) >= _EXPLAINERS_PER_MODEL:
            cached.pop(next(iter(cached)))
        cached[key] = build()
    return cached[key]


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
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    model_options = {"weights": weights, "preprocess": preprocess, "labels": labels,
                     "input_size": tuple(input_size) if input_size is not None else None,
                     "model_output": model_output, "safe_mode": safe_mode}
    if classes is not None and not isinstance(classes, np.ndarray):
        classes = [classes] if isinstance(classes, (int, str, np.integer)) else list(classes)
    options = RunOptions(method=method, layer=layer, classes=classes, top_k=top_k, batch_size=batch_size,
                         smooth=smooth, chunk_size=chunk_size, max_channels=max_channels, region=region,
                         alpha=alpha, overlay_size=overlay_size, max_megapixels=max_megapixels,
                         counterfactual=counterfactual)
    return explain_with_options(model, images, options, **model_options)


def explain_with_options(model: Any, images: Any, options: RunOptions, **model_options) -> Explanation:
    """:func:`explain` for a run already described by ``options`` (``compare`` runs one per method);
    ``model_options``: :func:`~gradcam_cli.models.resolve_model`'s keywords."""
    alpha = check_alpha(options.alpha)
    explainer = _explainer(model, model_options, options)
    spec = explainer.spec
    arrays, paths, failures = as_images(images, spec.input_size, options.overlay_size, options.max_megapixels)
    channels = spec.channels
    prepared = np.stack([model_input(a, spec.input_size, channels) for a in arrays])
    arrays = fit_pictures(arrays, paths, options.overlay_size)
    result = explainer.run(prepared, options.classes, options.top_k)
    return Explanation(result.heatmaps, result.class_ids, result.probabilities, arrays, paths,
                       explainer.layer_name, explainer.method.name, spec, failures, result.saliency, alpha,
                       result.region_pixels)
