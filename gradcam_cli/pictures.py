"""What the Python API and the callback take as images: files, folders and globs (decoded as the command
line decodes them), PIL images in any mode, and arrays (grey, RGB, RGBA; uint8 or floats in [0, 1]),
turned into uint8 RGB pictures."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image

from .decode import fit_longest_side, open_rgb, to_rgb
from .errors import (
    ImageError,
)
from .inputs import IMAGE_EXTENSIONS, collect_inputs
from .model_cache import MODELS_KEPT, explainer_for, release_models  # noqa: F401  (the API's own)
from .options import (
    DEFAULT_MAX_MEGAPIXELS,
    DEFAULT_OVERLAY_SIZE,
)
from .quiet import RETRACING_WARNING, import_tensorflow_quietly, quiet_own_retracing  # noqa: F401


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
