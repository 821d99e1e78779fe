"""Colouring, overlays, output names and atomic writes.

Overlay convention: ``overlay = alpha * colormap(h) + (1 - alpha) * image``, in RGB, where ``h`` is
the raw map upsampled bilinearly to the image's size and min-max normalised to [0, 1] per map. A flat
map (max == min) becomes all zeros, never NaN."""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable

import numpy as np
from PIL import Image

from .options import COLORMAP_NAMES, DEFAULT_ALPHA


def _piecewise(points: list[tuple[float, float]], x: np.ndarray) -> np.ndarray:
    return np.interp(x, [p[0] for p in points], [p[1] for p in points])


def _jet(x: np.ndarray) -> np.ndarray:
    """The classic MATLAB/matplotlib ``jet`` segment definition."""
    red = _piecewise([(0, 0), (0.35, 0), (0.66, 1), (0.89, 1), (1, 0.5)], x)
    green = _piecewise([(0, 0), (0.125, 0), (0.375, 1), (0.64, 1), (0.91, 0), (1, 0)], x)
    blue = _piecewise([(0, 0.5), (0.11, 1), (0.34, 1), (0.65, 0), (1, 0)], x)
    return np.stack([red, green, blue], axis=-1)


def _turbo(x: np.ndarray) -> np.ndarray:
    """Turbo (Mikhailov, Google AI blog 2019), by its published degree-5 polynomial fit."""
    coefficients = {
        0: (0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943),
        1: (0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604),
        2: (0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973),
    }
    channels = [np.polynomial.polynomial.polyval(x, coefficients[c]) for c in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 1)


def _hot(x: np.ndarray) -> np.ndarray:
    red = _piecewise([(0, 0.0416), (0.365079, 1), (1, 1)], x)
    green = _piecewise([(0, 0), (0.365079, 0), (0.746032, 1), (1, 1)], x)
    blue = _piecewise([(0, 0), (0.746032, 0), (1, 1)], x)
    return np.stack([red, green, blue], axis=-1)


def _gray(x: np.ndarray) -> np.ndarray:
    return np.stack([x, x, x], axis=-1)


# in the order of options.COLORMAP_NAMES, the names the command line offers
COLORMAPS: dict[str, Callable[[np.ndarray], np.ndarray]] = dict(
    zip(COLORMAP_NAMES, (_jet, _turbo, _hot, _gray), strict=True))


def colormap_lut(name: str) -> np.ndarray:
    """A (256, 3) uint8 lookup table: colouring a map is one fancy-indexing step."""
    try:
        function = COLORMAPS[name]
    except KeyError:
        raise ValueError(f"unknown colormap '{name}': choose one of {', '.join(COLORMAPS)}") from None
    return np.round(function(np.linspace(0.0, 1.0, 256)) * 255).astype(np.uint8)


def upsample(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (h, w) map to ``size`` = (height, width), half-pixel centres."""
    height, width = size
    image = Image.fromarray(np.asarray(heatmap, dtype=np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.BILINEAR), dtype=np.float32)


def normalize(heatmap: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; a flat or non-finite map gives zeros."""
    heatmap = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if not heatmap.size:
        return heatmap
    low, high = float(heatmap.min()), float(heatmap.max())
    if not high > low:
        return np.zeros_like(heatmap)
    return (heatmap - low) / (high - low)


def display_heatmap(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The map as shown: upsampled to ``size`` and normalised to [0, 1]. Flatness is judged on the
    raw map, since interpolation rounding would otherwise turn a constant map into amplified noise."""
    if is_empty(heatmap):
        return np.zeros(size, np.float32)
    return normalize(upsample(heatmap, size))


@functools.lru_cache(maxsize=64)
def _axis_weights(source: int, target: int) -> np.ndarray:
    """(target, source) weights of Pillow's bilinear resize along one axis, read off by resizing the
    identity: Pillow resamples each axis separately, so two such matrices reproduce :func:`upsample`."""
    identity = Image.fromarray(np.eye(source, dtype=np.float32), mode="F")
    return np.asarray(identity.resize((target, source), Image.BILINEAR), dtype=np.float32).T.copy()


def display_heatmaps(heatmaps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """:func:`display_heatmap` for a stack of maps (N, h, w) at once: (N, H, W) in [0, 1], flat
    maps all zero. The bilinear upsampling is two matrix products, equal to Pillow's to float
    rounding."""
    heatmaps = np.nan_to_num(np.asarray(heatmaps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    rows = _axis_weights(heatmaps.shape[1], size[0])
    columns = _axis_weights(heatmaps.shape[2], size[1])
    shown = np.einsum("Hh,nhw,Ww->nHW", rows, heatmaps, columns, optimize=True)
    low = shown.min(axis=(1, 2), keepdims=True)
    span = shown.max(axis=(1, 2), keepdims=True) - low
    shown = np.where(span > 0, (shown - low) / np.where(span > 0, span, 1), 0.0).astype(np.float32)
    shown[are_empty(heatmaps)] = 0.0
    return shown


def are_empty(heatmaps: np.ndarray) -> np.ndarray:
    """:func:`is_empty` for a stack of maps (N, ...): (N,) bool."""
    finite = np.nan_to_num(np.asarray(heatmaps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    flat = finite.reshape(len(finite), -1)
    if not flat.shape[1]:
        return np.ones(len(flat), bool)
    return ~(flat.max(axis=1) > flat.min(axis=1))


def is_empty(heatmap: np.ndarray) -> bool:
    """True when the map carries no location (all zero, constant or non-finite)."""
    finite = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return finite.size == 0 or not float(finite.max()) > float(finite.min())


def to_levels(shown: np.ndarray) -> np.ndarray:
    """[0, 1] map to uint8 colour-table indices (rounded)."""
    return (shown * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def colorize(levels: np.ndarray, lut: np.ndarray) -> Image.Image:
    """uint8 levels to an RGB image through the colour table, as a Pillow palette (one C pass)."""
    image = Image.fromarray(levels, mode="L")
    image.putpalette(lut.astype(np.uint8).tobytes(), rawmode="RGB")
    return image.convert("RGB")


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = DEFAULT_ALPHA, colormap: str | np.ndarray = "jet") -> np.ndarray:
    """Blend the coloured map onto ``image`` (H, W, 3) uint8; returns uint8 RGB."""
    return np.asarray(overlay_image(Image.fromarray(image), heatmap, alpha, colormap))


def overlay_image(image: Image.Image, heatmap: np.ndarray, alpha: float = DEFAULT_ALPHA,
                  colormap: str | np.ndarray = "jet") -> Image.Image:
    """:func:`overlay` on Pillow images, without array copies (the batch pipeline's path)."""
    lut = colormap_lut(colormap) if isinstance(colormap, str) else colormap
    coloured = colorize(to_levels(display_heatmap(heatmap, (image.height, image.width))), lut)
    return Image.blend(image, coloured, float(alpha))


def saliency_image(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (H, W, C) gradient image as uint8 RGB at ``size``: centred on grey, 0.15 per standard
    deviation (the usual display of guided backpropagation), clipped."""
    saliency = np.nan_to_num(np.asarray(saliency, dtype=np.float32))
    if saliency.shape[-1] == 1:
        saliency = np.repeat(saliency, 3, axis=-1)
    spread = float(saliency.std())
    shown = (saliency - saliency.mean()) / spread * 0.15 + 0.5 if spread > 0 else np.full_like(saliency, 0.5)
    image = Image.fromarray(np.round(np.clip(shown, 0, 1) * 255).astype(np.uint8))
    return np.asarray(image.resize((size[1], size[0]), Image.BILINEAR))


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()




def jpeg_bytes(image: np.ndarray | Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def font(size: int = 14):
    """Pillow's default font at ``size`` pixels (its one bitmap size before Pillow 10.1)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def caption(image: Image.Image, text: str) -> Image.Image:
    """``image`` with ``text`` on a dark strip along its top edge (e.g. a segmentation region's
    pixel count), scaled to the image's width."""
    from PIL import ImageDraw

    size = max(10, min(image.width, image.height) // 20)
    text_font = font(size)
    captioned = image.copy()
    draw = ImageDraw.Draw(captioned)
    draw.rectangle((0, 0, image.width, size + 4), fill=(0, 0, 0))
    draw.text((3, 2), text, fill=(255, 255, 255), font=text_font)
    return captioned


BOX_COLOUR = (255, 255, 255)
"""RGB of an explained box's outline and label text (white, outlined in black: it reads on every
colour of the colour maps)."""


def draw_box(image: Image.Image, box: tuple[float, float, float, float], text: str,
             colour: tuple[int, int, int] = BOX_COLOUR) -> Image.Image:
    """``image`` with ``box`` (left, top, right, bottom, in its pixels) outlined and ``text`` (a label
    and score) on a black strip above it, or inside its top edge where the image has no room above."""
    from PIL import ImageDraw

    width = max(2, min(image.width, image.height) // 150)
    size = max(10, min(image.width, image.height) // 30)
    left, top, right, bottom = (float(value) for value in box)
    drawn = image.copy()
    draw = ImageDraw.Draw(drawn)
    draw.rectangle((left - width, top - width, right + width, bottom + width), outline=(0, 0, 0), width=width)
    draw.rectangle((left, top, right, bottom), outline=colour, width=width)
    label_top = top - size - 4 if top - size - 4 >= 0 else top + width
    text_font = font(size)
    text_width = draw.textlength(text, font=text_font)
    draw.rectangle((left, label_top, left + text_width + 6, label_top + size + 4), fill=(0, 0, 0))
    draw.text((left + 3, label_top + 2), text, fill=colour, font=text_font)
    return drawn


def tile_grid(tiles: list[np.ndarray], columns: int | None = None, gap: int = 2) -> np.ndarray:
    """Equal-sized (H, W, 3) uint8 tiles in reading order on a white grid, ``gap`` pixels apart;
    ``columns`` defaults to ceil(sqrt(n)), so 16 tiles make 4x4."""
    if not tiles:
        raise ValueError("tile_grid needs at least one tile")
    height, width = tiles[0].shape[:2]
    columns = max(1, min(len(tiles), columns or math.ceil(math.sqrt(len(tiles)))))
    rows = math.ceil(len(tiles) / columns)
    grid = np.full((rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap, 3), 255, np.uint8)
    for index, tile in enumerate(tiles):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        grid[top : top + height, left : left + width] = tile
    return grid
