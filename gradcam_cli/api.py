"""The Python API: the same code path as the CLI, returning arrays instead of writing files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from . import render
from .engine import Explainer
from .errors import ImageError
from .images import collect_inputs, load_image, model_input
from .models import ModelSpec, resolve_model


@dataclass
class Explanation:
    """Results for N images and T targets each.

    ``heatmaps``: (N, T, h, w) float32, the raw maps at the target layer's resolution (after the
    method's ReLU, not normalised); ``class_ids``: (N, T); ``probabilities``: (N, C);
    ``images``: the decoded originals (uint8 RGB, own sizes); ``paths``: their files, when given.
    """

    heatmaps: np.ndarray
    class_ids: np.ndarray
    probabilities: np.ndarray
    images: list[np.ndarray]
    paths: list[str | None]
    layer: str
    method: str
    spec: ModelSpec

    def label(self, image: int, target: int = 0) -> str:
        return self.spec.label(int(self.class_ids[image, target]))

    def heatmap(self, image: int, target: int = 0) -> np.ndarray:
        """The map as displayed: upsampled to the original image and normalised to [0, 1]."""
        return render.display_heatmap(self.heatmaps[image, target], self.images[image].shape[:2])

    def overlay(self, image: int, target: int = 0, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
        return render.overlay(self.images[image], self.heatmaps[image, target], alpha, colormap)

    def show(self, image: int = 0, target: int = 0, alpha: float = 0.4, colormap: str = "jet") -> Image.Image:
        """The overlay as a PIL image (a notebook displays it inline)."""
        return Image.fromarray(self.overlay(image, target, alpha, colormap))

    def _repr_html_(self) -> str:
        """Jupyter shows the overlays when a result is a cell's last expression."""
        from .notebook import explanation_html

        return explanation_html(self)


def as_images(images: Any) -> tuple[list[np.ndarray], list[str | None]]:
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    arrays: list[np.ndarray] = []
    paths: list[str | None] = []
    for image in images:
        if isinstance(image, (str, os.PathLike)):
            for item in collect_inputs([str(image)]):
                if item.error:
                    raise ImageError(f"{item.path}: {item.error}.")
                arrays.append(load_image(item.path))
                paths.append(item.path)
        elif hasattr(image, "convert"):  # a PIL image
            arrays.append(np.asarray(image.convert("RGB")))
            paths.append(None)
        else:
            array = np.asarray(image)
            if array.ndim == 2:
                array = np.stack([array] * 3, axis=-1)
            if array.dtype != np.uint8:
                array = np.clip(array, 0, 255).astype(np.uint8)
            arrays.append(array)
            paths.append(None)
    return arrays, paths


def explain(
    model: Any,
    images: Any,
    method: str = "gradcam",
    target: int | str | Sequence[int | str] | None = None,
    top_k: int = 1,
    layer: str | None = None,
    weights: str | None = "imagenet",
    batch_size: int = 16,
    preprocess: str | None = None,
    labels: str | list[str] | None = None,
    smooth: str | None = None,
    max_channels: int | None = None,
    chunk_size: int = 32,
) -> Explanation:
    """Explain ``images`` with ``model``.

    ``model``: a keras.Model, a keras.applications name, 'demo', or a model file.
    ``images``: paths (files, folders, globs), PIL images, or uint8 RGB arrays (H, W, 3) or (N, H, W, 3).
    ``smooth``: None, 'aug' (average over flips and brightness) or 'eigen'; ``max_channels`` and
    ``chunk_size`` bound Score-CAM / Ablation-CAM's extra passes.
    ``target``: class index/label or a list of them, explained for every image, or an (N, T)
    integer array with each image's own classes; default: each image's ``top_k`` best classes.

    >>> result = explain("demo", "sample_images/shapes", method="gradcam++")   # doctest: +SKIP
    >>> result.label(0), result.heatmap(0).shape                               # doctest: +SKIP
    """
    spec = resolve_model(model, weights=weights, preprocess=preprocess, labels=labels)
    explainer = Explainer(spec, method=method, layer=layer, batch_size=batch_size, smooth=smooth,
                          chunk_size=chunk_size, max_channels=max_channels)
    arrays, paths = as_images(images)
    channels = int(spec.model.inputs[0].shape[-1] or 3)
    prepared = np.stack([model_input(a, spec.input_size, channels) for a in arrays])
    if target is None or isinstance(target, np.ndarray):
        classes = target
    else:
        classes = [target] if isinstance(target, (int, str, np.integer)) else list(target)
    result = explainer.run(prepared, classes, top_k)
    return Explanation(result.heatmaps, result.class_ids, result.probabilities, arrays, paths,
                       explainer.layer_name, explainer.method.name, spec)
