"""The Python API: the same code path as the CLI, returning arrays instead of writing files."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from . import render
from .backend import configured_name
from .boxes import box_fields, pick_for_batch, refuse_box_options
from .decode import model_input
from .errors import (
    ImageError,
    MethodError,
    TargetError,
)
from .keywords import (  # noqa: F401
    check_alpha,
    check_colormap,
    check_detection_keywords,
    check_keywords,
    is_integer,
)
from .methods.base import ROUNDING_BALANCE
from .model_cache import MODELS_KEPT, explainer_for, release_models  # noqa: F401  (the API's own)
from .models.spec import ModelSpec
from .options import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_MEGAPIXELS,
    DEFAULT_MIN_SCORE,
    DEFAULT_OVERLAY_SIZE,
    RunOptions,
)
from .pictures import as_images, fit_pictures, listed_images  # noqa: F401
from .quiet import RETRACING_WARNING, import_tensorflow_quietly, quiet_own_retracing  # noqa: F401


@dataclass
class Explanation:
    """Results for N images and T targets each.

    ``heatmaps``: (N, T, h, w) float32, the raw maps at the target layer's resolution (after the
    method's ReLU, not normalised; several layers: their combined map, in [0, 1], at the finest
    one's); ``class_ids``: (N, T); ``probabilities``: (N, C) (a detector's: (N, T), each box's score;
    an image with fewer boxes than the batch's most has class id -1 and probability NaN past its last);
    ``images``: the pictures the overlays are drawn on (uint8 RGB): files decoded at the overlay size
    :func:`explain` was given (longest side 1000 px by default, as the CLI), in-memory pictures as
    passed; ``paths``: their files, when given;
    ``failures``: (path, one-line reason) for files that could not be read (skipped, as the CLI does);
    ``saliency``: (N, T, H, W, C) at the model's input size for guided-gradcam, else None;
    ``alpha``: the overlay opacity :meth:`overlay` uses by default; ``region_pixels``: (N, T) for a
    segmentation model, the pixels each class was explained over (0: an empty region, an all-zero
    map), else None; ``rounding_noise``: (N, T) bool, True for a map whose channel sum is rounding
    noise next to its terms (:data:`~gradcam_cli.methods.base.ROUNDING_BALANCE`: its look is
    meaningless), None for methods whose map is not such a sum.
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
    rounding_noise: np.ndarray | None = None
    boxes: list[list[dict]] | None = None  # a detector's: per image and target, its box (docs/detection.md)

    def __repr__(self) -> str:
        """One line (a plain REPL would otherwise print every array)."""
        count, targets = self.class_ids.shape[:2]
        failed = f", {len(self.failures)} failed" if self.failures else ""
        return (f"Explanation({count} image(s) x {targets} target(s), method={self.method!r}, "
                f"layer={self.layer!r}, heatmaps {tuple(self.heatmaps.shape)}{failed})")

    def _check(self, image: int, target: int) -> None:
        """One line, not an IndexError, for a target an image does not have (a detector's image may have
        fewer boxes than the batch's columns)."""
        count, targets = self.class_ids.shape[:2]
        if not -count <= image < count:
            raise TargetError(f"image={image} is out of range: this result has {count} image(s).")
        if self.boxes is not None:
            targets = len(self.boxes[image])
        if not -targets <= target < targets:
            which = f"{targets} box(es) explained" if self.boxes is not None else f"{targets} target(s)"
            raise TargetError(f"target={target} is out of range: image {image} has {which} (targets 0.."
                              f"{targets - 1}).")

    def label(self, image: int, target: int = 0) -> str:
        self._check(image, target)
        return self.spec.label(int(self.class_ids[image, target]))

    def heatmap(self, image: int, target: int = 0) -> np.ndarray:
        """The map as displayed: upsampled to the original image and normalised to [0, 1]."""
        self._check(image, target)
        return render.display_heatmap(self.heatmaps[image, target], self.images[image].shape[:2])

    def overlay(self, image: int, target: int = 0, alpha: float | None = None, colormap: str = "jet") -> np.ndarray:
        """uint8 RGB overlay at the original's size (``alpha``: this result's, unless given)."""
        alpha = self.alpha if alpha is None else check_alpha(alpha)
        self._check(image, target)
        picture = render.overlay(self.images[image], self.heatmaps[image, target], alpha, check_colormap(colormap))
        if self.boxes is not None:  # a detector's: the explained box, labelled
            box = self.boxes[image][target]
            picture = np.asarray(render.draw_box(Image.fromarray(picture), box["box"],
                                                 f"{box['label']} {box['score']:.0%}"))
        return picture

    def guided(self, image: int, target: int = 0) -> np.ndarray:
        """guided-gradcam's saliency image (uint8 RGB) at the original's size, as the CLI writes it."""
        if self.saliency is None:
            raise MethodError(f"{self.method} makes no saliency image; use method='guided-gradcam'.")
        self._check(image, target)
        return render.saliency_image(self.saliency[image, target], self.images[image].shape[:2])

    def show(self, image: int = 0, target: int = 0, alpha: float | None = None, colormap: str = "jet") -> Image.Image:
        """The overlay as a PIL image (a notebook displays it inline)."""
        return Image.fromarray(self.overlay(image, target, alpha, colormap))

    def _repr_html_(self) -> str:
        """Jupyter shows the overlays when a result is a cell's last expression."""
        from .notebook import explanation_html

        return explanation_html(self)


def explain(
    model: Any,
    images: Any,
    method: str = "gradcam",
    classes: int | str | Sequence[int | str] | None = None,
    top_k: int = 1,
    layer: str | Sequence[str] | None = None,
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
    combine: str | None = None,
    tuning: dict[str, Any] | None = None,
    reference: Any = None,
    task: str | None = None,
    min_score: float | None = None,
    boxes: Sequence[int] | None = None,
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
    ``layer``: the target layer, or a list of layers whose maps (one forward pass) are combined at the
    finest one's resolution by ``combine``: 'mean' (default) or 'product' (docs/methods.md, "Several
    layers"). ``tuning``: options that tune one method, e.g. ``{"fem_sigmas": 3}`` or
    ``{"finer_comparisons": 2, "finer_alpha": 0.5}`` (:data:`gradcam_cli.options.TUNING_FIELDS`).
    ``reference``: for an embedding model, an image or a folder (a concept: the mean of its images'
    unit embeddings), a list of them, or a :class:`gradcam_cli.reference.Reference`: the maps explain the
    cosine similarity of each image's embedding (``model_output``: an output or an inner layer;
    default the model's output) to each reference, one target per reference (docs/similarity.md).

    ``task``: 'detect' for an object detector (a keras-hub one is one without it): each box its
    decoder keeps scoring ``min_score`` (None: 0.5) or more (of ``classes`` if given; ``boxes``: only
    these, by number, 0 the best) is a target, and both are refused for a model that is no detector; ``result.boxes[i][t]`` holds its ``box`` [left, top, right,
    bottom] in pixels of ``result.images[i]``, ``class_index``, ``label``, ``score``, ``box_index``
    (docs/detection.md). An image with no such box is listed in ``failures``.

    >>> result = explain("demo", "sample_images/shapes", method="gradcam++")   # doctest: +SKIP
    >>> result.label(0), result.heatmap(0).shape                               # doctest: +SKIP
    """
    images = listed_images(images)
    if classes is not None and not isinstance(classes, np.ndarray):
        single = isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__")
        classes = [classes] if single else list(classes)
    check_keywords(model, images, {
        "method": method, "classes": classes, "top_k": top_k, "layer": layer, "weights": weights,
        "batch_size": batch_size, "preprocess": preprocess, "labels": labels, "smooth": smooth,
        "max_channels": max_channels, "chunk_size": chunk_size, "input_size": input_size,
        "model_output": model_output, "region": region, "overlay_size": overlay_size,
        "max_megapixels": max_megapixels, "safe_mode": safe_mode, "counterfactual": counterfactual,
        "combine": combine, "task": task, "min_score": min_score, "boxes": boxes, "tuning": tuning})
    if is_integer(input_size):
        input_size = (int(input_size), int(input_size))
    model_options = {"weights": weights, "preprocess": preprocess, "labels": labels,
                     "input_size": tuple(input_size) if input_size is not None else None,
                     "model_output": model_output, "safe_mode": safe_mode, "task": task}
    options = RunOptions(method=method, layer=layer, classes=classes, top_k=top_k, batch_size=batch_size,
                         smooth=smooth, chunk_size=chunk_size, max_channels=max_channels, region=region,
                         alpha=alpha, overlay_size=overlay_size, max_megapixels=max_megapixels,
                         counterfactual=counterfactual, combine=combine, tuning=tuning, reference=reference,
                         min_score=DEFAULT_MIN_SCORE if min_score is None else float(min_score),
                         boxes=[int(box) for box in ([boxes] if is_integer(boxes) else boxes)] if boxes is not None
                         else None)
    return explain_with_options(model, images, options, given_min_score=min_score, **model_options)


def explain_with_options(model: Any, images: Any, options: RunOptions, given_min_score: float | None = None,
                         **model_options) -> Explanation:
    """:func:`explain` for a run already described by ``options`` (``compare`` runs one per method);
    ``given_min_score``: the ``min_score`` the caller gave (None: left at its default), refused with
    ``options.boxes`` for a model that is no detector; ``model_options``:
    :func:`~gradcam_cli.models.resolve_model`'s keywords."""
    alpha = check_alpha(options.alpha)
    if "keras" not in sys.modules and configured_name() == "tensorflow":  # else the user's import has spoken
        import_tensorflow_quietly()
    with quiet_own_retracing():
        return _explain(model, images, options, alpha, model_options, given_min_score)


def _explain(model: Any, images: Any, options: RunOptions, alpha: float, model_options: dict,
             given_min_score: float | None) -> Explanation:
    if options.reference is None:
        explainer = explainer_for(model, model_options, options)
    else:
        from .reference import similarity_explainer

        explainer, options = similarity_explainer(model, model_options, options)
    spec = explainer.spec
    refuse_box_options(explainer.head, given_min_score, options.boxes)
    arrays, paths, failures = as_images(images, spec.input_size, options.overlay_size, options.max_megapixels)
    channels = spec.channels
    prepared = np.stack([model_input(a, spec.input_size, channels) for a in arrays])
    arrays = fit_pictures(arrays, paths, options.overlay_size)
    found = None
    if explainer.head.takes_boxes:  # a detector: its kept boxes are the targets
        classes = explainer.resolve_targets(options.classes, options.top_k)
        sources = [path or f"image {i}" for i, path in enumerate(paths)]
        kept, found, refused = pick_for_batch(explainer.detect(prepared), sources, options.min_score, options.boxes,
                                              classes)
        if not kept:
            raise ImageError(f"no image to explain: {refused[0][1]}" if len(refused) == 1 else
                             f"no image has a box to explain: {refused[0][1]} (and {len(refused) - 1} more)")
        failures = failures + refused
        prepared, arrays, paths = prepared[kept], [arrays[i] for i in kept], [paths[i] for i in kept]
    result = explainer.run(prepared, options.classes, options.top_k, boxes=found)
    if found is not None:
        return _detections(result, found, arrays, paths, explainer, spec, failures, alpha)
    return Explanation(result.heatmaps, result.class_ids, result.probabilities, arrays, paths,
                       explainer.layer_name, explainer.method.name, spec, failures, result.saliency, alpha,
                       result.region_pixels, _rounding_noise(result, explainer.head))


def _rounding_noise(result, head) -> np.ndarray | None:
    """(N, T): maps whose terms cancel (the balance), or whose score sits at a maximum (``Head.saturated``)."""
    reported = np.take_along_axis(result.probabilities, result.class_ids, axis=1)
    saturated = np.vectorize(lambda value: head.saturated(float(value)), otypes=[bool])(reported)
    if result.balance is None:
        return saturated if saturated.any() else None
    return (result.balance < ROUNDING_BALANCE) | saturated


def _detections(result, found, arrays, paths, explainer, spec, failures, alpha) -> Explanation:
    """A detector's :class:`Explanation`: its boxes in the pixels of each picture."""
    boxes = [[{**box_fields(box, spec.input_size, (picture.shape[1], picture.shape[0])),
               "class_index": box.class_index, "label": spec.label(box.class_index), "score": box.score}
              for box in image_boxes] for image_boxes, picture in zip(found, arrays, strict=True)]
    padding = result.class_ids < 0  # past an image's last box: no score (NaN, not a plausible 0.0)
    probabilities = np.where(padding, np.nan, result.probabilities).astype(np.float32)
    noise = None if result.balance is None else (result.balance < ROUNDING_BALANCE) & ~padding
    return Explanation(result.heatmaps, result.class_ids, probabilities, arrays, paths, explainer.layer_name,
                       explainer.method.name, spec, failures, result.saliency, alpha, rounding_noise=noise, boxes=boxes)

