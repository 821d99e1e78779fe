"""Inline display in Jupyter: the HTML an :class:`~gradcam_cli.api.Explanation` shows as a cell's value.

Each overlay is drawn at thumbnail size (the original is shrunk first, then the map is laid over
it), so a result over 12-megapixel photos still makes a light page; images are embedded as PNG
data URIs, and every file name and label is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from . import render
from .options import DEFAULT_ALPHA

MAX_IMAGES = 16
THUMBNAIL = 192


def thumbnail_overlay(image: np.ndarray, heatmap: np.ndarray, size: int = THUMBNAIL, alpha: float = DEFAULT_ALPHA,
                      colormap: str = "jet") -> Image.Image:
    """The overlay of ``heatmap`` on ``image``, at most ``size`` pixels on its longer side."""
    picture = Image.fromarray(np.asarray(image))
    picture.thumbnail((size, size), Image.BILINEAR)
    return render.overlay_image(picture.convert("RGB"), heatmap, alpha, colormap)


def _data_uri(picture: Image.Image) -> str:
    encoded = base64.b64encode(render.png_bytes(np.asarray(picture))).decode("ascii")
    return f"data:image/png;base64,{encoded}"


def explanation_html(result: Any, max_images: int = MAX_IMAGES, size: int = THUMBNAIL) -> str:
    """A figure per (image, target) for the first ``max_images`` images: the overlay, the image's
    name and the explained class with its probability."""
    count = len(result.images)
    shown = min(count, max_images)
    figures = []
    for image in range(shown):
        path = result.paths[image]
        name = Path(path).name if path else f"image {image}"
        for target in range(result.class_ids.shape[1]):
            class_index = int(result.class_ids[image, target])
            if class_index < 0:  # a detector's image with fewer boxes than the batch's most
                continue
            probability = float(result.boxes[image][target]["score"] if result.boxes is not None
                                else result.probabilities[image, class_index])
            picture = thumbnail_overlay(result.images[image], result.heatmaps[image, target], size)
            prediction = result.spec.head.format_prediction(result.label(image, target), probability)
            caption = f"{html.escape(name)}<br>{html.escape(prediction)}"
            figures.append(
                '<figure style="margin:0;text-align:center;font:12px sans-serif">'
                f'<img src="{_data_uri(picture)}" alt="{html.escape(name, quote=True)}" '
                f'width="{picture.width}" height="{picture.height}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
    header = (f"<p style='font:13px sans-serif'>{html.escape(result.method)} on layer "
              f"<code>{html.escape(result.layer)}</code>, {count} image(s)")
    if count > shown:
        header += f"; the first {shown} shown (<code>result.show(i)</code> for any one)"
    header += "</p>"
    return header + '<div style="display:flex;flex-wrap:wrap;gap:8px">' + "".join(figures) + "</div>"
